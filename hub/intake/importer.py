"""`hub import`: historical leads from a CSV file, through the same mapping, identity and touch rules as a
live delivery. Every row becomes a stored event (processed, merged or rejected with its reason), so an
import is visible in `hub events list` and counted like any other intake; importing a file twice imports
each row once."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from itertools import islice

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from hub.config import SourceConfig
from hub.connector import FileConnector, RawEvent, available_connectors
from hub.errors import ConfigError, PayloadError
from hub.mapping import load_mapping
from hub.pipeline.process import DeferredWrites, EventRef, map_event, occurred_at, process_draft
from hub.runtime import Hub, Source
from hub.store.db import execute, insert_ignoring_conflicts, transaction
from hub.store.models import EventStatus, InboundEvent, utcnow

# The connector that reads the file, found like any other: by its entry-point name.
CSV_CONNECTOR = "csv_import"
_EVENTS = InboundEvent.__table__
FINISH_EVENT = update(_EVENTS).where(_EVENTS.c.id == bindparam("event_id")).values(
    status=bindparam("status"), lead_id=bindparam("lead_id"), processed_at=bindparam("now"))


@dataclass
class ImportReport:
    rows: int = 0
    created: int = 0            # new leads
    merged: int = 0             # touches on leads that existed (or came earlier in the file)
    already_imported: int = 0   # rows stored by an earlier import of the same data
    rejected: list[dict] = field(default_factory=list)   # {"row": line number, "reason": ...}
    dry_run: bool = False

    def as_dict(self) -> dict:
        return {"rows": self.rows, "created": self.created, "merged": self.merged,
                "already_imported": self.already_imported, "rejected": len(self.rejected),
                "rejected_rows": self.rejected, "dry_run": self.dry_run}


def import_source(hub: Hub, source_name: str, path: str, mapping_name: str, columns: dict[str, str],
                  encoding: str, delimiter: str | None, timezone: str, tags: list[str]) -> Source:
    """The ad-hoc source an import runs as; ``columns`` ({"phone": "Моб. телефон"}) go first in the mapping."""
    mapping = load_mapping(mapping_name, hub.config.base_dir)
    unknown = sorted(set(columns) - set(type(mapping.fields).model_fields))
    if unknown:
        raise ConfigError([f"--map {name}=…: unknown field (known: {', '.join(type(mapping.fields).model_fields)})"
                           for name in unknown])
    fields = mapping.fields.model_copy(update={k: [v, *getattr(mapping.fields, k)] for k, v in columns.items()})
    mapping = mapping.model_copy(update={"fields": fields})
    connector = available_connectors()[CSV_CONNECTOR]
    settings = connector.config_schema(path=path, encoding=encoding, delimiter=delimiter)
    config = SourceConfig(name=source_name, connector=CSV_CONNECTOR, tags=tags, timezone=timezone)
    return Source(config=config, connector=connector(source_name, settings), mapping=mapping,
                  region=hub.config.default_region)


def check_header(source: Source) -> list[str]:
    """Refuse a file none of whose columns can give a contact, before importing anything."""
    header = source.connector_as(FileConnector).header()
    lowered = {h.strip().lower() for h in header}
    names = source.mapping.fields
    contact_columns = names.phone + names.email + names.telegram_id + names.vk_id
    if not any(c.lower() in lowered for c in contact_columns):
        raise PayloadError(f"no phone or e-mail column: the file has {', '.join(header)}; the mapping looks for "
                           f"{', '.join(contact_columns)} (name yours with --map phone=\"Column\")")
    return header


def _import_one(session: Session, hub: Hub, source: Source, raw: RawEvent, report: ImportReport,
                writes: _ImportWrites) -> None:
    now = utcnow()
    line = raw.payload.get("_row")
    values = dict(source=source.name, external_id=raw.external_id, received_at=now, method="IMPORT",
                  content_type="text/csv", headers={}, attempts=1, next_attempt_at=None,
                  body=json.dumps(raw.payload, ensure_ascii=False).encode(), payload=raw.payload)
    try:
        draft = map_event(source, raw.payload)
        occurred_at(draft, source)          # a bad date rejects the row before anything is written
    except PayloadError as exc:
        draft, reason = None, str(exc)
    if draft is None:
        stored = insert_ignoring_conflicts(session, InboundEvent.__table__, ["source", "external_id"],
                                           dict(values, status=EventStatus.REJECTED, reject_reason=reason,
                                                processed_at=now))
        if stored is None:
            report.already_imported += 1
        else:
            report.rejected.append({"row": line, "reason": reason})
        return
    event_id = insert_ignoring_conflicts(session, InboundEvent.__table__, ["source", "external_id"],
                                         dict(values, status=EventStatus.PROCESSING))
    if event_id is None:
        report.already_imported += 1
        return
    outcome, _ = process_draft(session, source, EventRef(event_id, now), draft, hub.config.identity, writes)
    writes.finished_events.append({"event_id": event_id, "status": outcome.status, "lead_id": outcome.lead_id,
                                     "now": now})
    if outcome.status == EventStatus.PROCESSED:
        report.created += 1
    else:
        report.merged += 1


class _ImportWrites(DeferredWrites):
    """The pipeline's deferred rows, plus each imported row's final event status."""

    def __init__(self) -> None:
        super().__init__()
        self.finished_events: list[dict] = []

    def flush(self, session: Session) -> None:
        super().flush(session)
        if self.finished_events:
            execute(session, FINISH_EVENT, self.finished_events)
        self.finished_events = []


class _RollBack(Exception):
    """Ends a dry run's transaction without committing it."""


def run_import(hub: Hub, source: Source, dry_run: bool = False, batch_rows: int = 500,
               progress: Callable[[int], None] | None = None) -> ImportReport:
    """Import every row; commits every ``batch_rows`` (a dry run keeps one transaction and rolls it back)."""
    report = ImportReport(dry_run=dry_run)
    rows = source.connector_as(FileConnector).events()
    if dry_run:
        try:
            with transaction(hub.engine) as session:
                writes = _ImportWrites()
                for raw in rows:
                    _import_one(session, hub, source, raw, report, writes)
                    report.rows += 1
                    if progress:
                        progress(1)
                writes.flush(session)
                raise _RollBack
        except _RollBack:
            pass
        return report
    while batch := list(islice(rows, batch_rows)):
        with transaction(hub.engine) as session:
            writes = _ImportWrites()
            for raw in batch:
                _import_one(session, hub, source, raw, report, writes)
            writes.flush(session)
        report.rows += len(batch)
        if progress:
            progress(len(batch))
    return report
