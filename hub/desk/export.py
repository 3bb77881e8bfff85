"""Exporting leads to CSV or Excel: stable machine column names, one row per lead, read in batches."""

from __future__ import annotations

import csv
from collections.abc import Callable, Iterator
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import selectinload

from hub.desk.queries import LeadFilter
from hub.mapping import UTM_KEYS
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import Lead, Person, utcnow
from hub.store.serialize import lead_to_dict

COLUMNS = ["id", "created_at", "status", "refuse_reason", "warmth", "score", "owner", "source", "name", "phones",
           "emails", *UTM_KEYS, "touch_count", "contact_attempts", "updated_at"]
BATCH = 1000


def rows(hub: Hub, f: LeadFilter) -> Iterator[list[Any]]:
    last = 0
    while True:
        with transaction(hub.engine, read_only=True) as session:
            query = f.apply(select(Lead).where(Lead.merged_into_id.is_(None), Lead.id > last), utcnow())
            batch = list(session.scalars(query.order_by(Lead.id).limit(BATCH).options(
                selectinload(Lead.person).selectinload(Person.keys), selectinload(Lead.touches))))
            dicts = [lead_to_dict(lead, with_touches=False) for lead in batch]
        if not dicts:
            return
        for d in dicts:
            first = d["first_touch"] or {}
            yield [d["id"], d["created_at"], d["status"], d["refuse_reason"], d["warmth"], d["score"], d["owner"],
                   d["source"], d["name"], ", ".join(d["phones"]), ", ".join(d["emails"]),
                   *[first.get(k) for k in UTM_KEYS], d["touch_count"], d["contact_attempts"], d["updated_at"]]
        last = dicts[-1]["id"]


def _write_rows(append: Callable[[list[Any]], Any], hub: Hub, f: LeadFilter,
                progress: Callable[[int], Any] | None) -> int:
    append(COLUMNS)
    count = 0
    for row in rows(hub, f):
        append(row)
        count += 1
        if progress and count % BATCH == 0:
            progress(count)
    return count


def export_leads(hub: Hub, f: LeadFilter, fmt: str, path: str, progress: Callable[[int], Any] | None = None) -> int:
    if fmt == "xlsx":
        from openpyxl import Workbook
        book = Workbook(write_only=True)
        sheet = book.create_sheet("leads")
        count = _write_rows(sheet.append, hub, f, progress)
        book.save(path)
        return count
    with open(path, "w", encoding="utf-8-sig", newline="") as out:     # the BOM: Excel reads Cyrillic
        return _write_rows(csv.writer(out).writerow, hub, f, progress)
