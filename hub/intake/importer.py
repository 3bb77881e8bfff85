"""`hub import`: historical leads from a CSV file, through the same mapping, identity and touch rules as a
live delivery. Every row becomes a stored event (processed, merged or rejected with its reason), so an
import is visible in `hub events list` and counted like any other intake; importing a file twice imports
each row once.

Rows go in batches (a transaction each), set-based: every row of the batch mapped and normalised first
(in a helper process, a batch ahead, for a file of several batches), its events stored in one statement,
the batch's new persons made together (hub.pipeline.bulk), and every other row through the per-row path in
file order. Measured on SQLite, 100k rows (bench/identity.py): 116 s one row at a time (five statements a
row, most of their cost SQLAlchemy's per-execute overhead), ~24 s set-based."""

from __future__ import annotations

import gc
import json
import multiprocessing
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from itertools import chain, islice
from typing import Any

from sqlalchemy import bindparam, update
from sqlalchemy.orm import Session

from hub.config import IdentityConfig, SourceConfig
from hub.connector import FileConnector, RawEvent, available_connectors
from hub.errors import ConfigError, PayloadError
from hub.mapping import LeadDraft, load_mapping
from hub.pipeline.bulk import BatchEvent, KeysTaken, attach_new_persons, new_persons, owners_of
from hub.pipeline.process import (
    DeferredWrites,
    EventRef,
    Outcome,
    Prepared,
    Seen,
    map_event,
    occurred_at,
    prepare,
    process_draft,
)
from hub.runtime import Hub, Source
from hub.store.db import InsertRows, Prebuilt, insert_ignoring_conflicts, transaction
from hub.store.models import EventStatus, InboundEvent, utcnow

# The connector that reads the file, found like any other: by its entry-point name.
CSV_CONNECTOR = "csv_import"
_EVENTS = InboundEvent.__table__
FINISH_EVENT = Prebuilt(update(_EVENTS).where(_EVENTS.c.id == bindparam("event_id")).values(
    status=bindparam("status"), lead_id=bindparam("lead_id"), processed_at=bindparam("now")))
# Rows a transaction (and, on SQLite, a hold of the write lock, which live deliveries wait for). Measured
# on SQLite, 100k rows: 500 → 42.6 s, 2000 → 39.7 s (a commit's fsync and a batch's few statements, fewer
# times); 2000 rows hold the lock ~0.6 s, what 500 rows did one at a time before the batches were set-based.
BATCH_ROWS = 2000
# Phones, e-mails and dates normalised so far, by spelling, kept for the rows after (an old CRM's export
# repeats its customers and its dates); forgotten at this many (~300 bytes each: a larger memo costs more
# in garbage collection than it saves).
SPELLINGS_KEPT = 20_000
# A batch's events in one statement; a row whose event is there already (imported before) is not returned.
INSERT_EVENTS = InsertRows(_EVENTS, returning=("id", "external_id"), ignoring_conflicts_on=("source", "external_id"))


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
            FINISH_EVENT.run(session, self.finished_events)
        self.finished_events = []


@dataclass
class _Row:
    """A row of a batch: its event's values, and its draft and prepared contacts unless it is rejected."""

    line: Any
    now: datetime
    event: dict[str, Any]
    made: tuple[LeadDraft, Prepared] | None = None      # None: rejected (reason)
    reason: str | None = None
    event_id: int | None = None
    outcome: Outcome | None = None


@dataclass(frozen=True)
class _Mapping:
    """What mapping and preparing a row needs: the source, the same with its mapping cut to the file's
    columns (_mapping_for_file), the identity rules."""

    source: Source
    mapped: Source
    identity: IdentityConfig


_Mapped = tuple[bytes, tuple[LeadDraft, Prepared] | None, str | None]     # body, (draft, prepared) | reason


def _map_rows(how: _Mapping, batch: list[RawEvent], seen: Seen) -> list[_Mapped]:
    """Pure: each row's stored body, and its draft and prepared contacts, or why it is rejected."""
    if len(seen) > SPELLINGS_KEPT:
        seen.clear()
    mapped: list[_Mapped] = []
    for raw in batch:
        body = json.dumps(raw.payload, ensure_ascii=False).encode()
        try:
            try:
                draft = map_event(how.mapped, raw.payload)
            except PayloadError:
                draft = map_event(how.source, raw.payload)  # the reason names every field the mapping looks for
            prepared = prepare(draft, how.source, how.identity, seen)     # a bad date rejects the row
            mapped.append((body, (draft, prepared), None))
        except PayloadError as exc:
            mapped.append((body, None, str(exc)))
    return mapped


def _row(source: Source, raw: RawEvent, mapped: _Mapped, now: datetime) -> _Row:
    """A row with its event's values: the same as _import_one's."""
    body, made, reason = mapped
    row = _Row(raw.payload.get("_row"), now, dict(
        source=source.name, external_id=raw.external_id, received_at=now, method="IMPORT", content_type="text/csv",
        headers={}, attempts=1, next_attempt_at=None, body=body, payload=raw.payload, status=EventStatus.PROCESSING,
        reject_reason=None, processed_at=None), made, reason)
    if made is None:
        row.event.update(status=EventStatus.REJECTED, reject_reason=reason, processed_at=now)
    return row


# Mapping and normalising (pure Python: ~40% of a set-based import) run in a helper process, a batch ahead
# of the one being written, when the file has more than one batch and the platform can fork: the helper
# starts as a copy of this process (nothing to pickle but the rows and their drafts), never touches the
# store, and exits without running finalizers (os._exit); the import froze the objects that existed before
# it (_young_objects_only), so the copy never collects a connection either. Measured on SQLite, 100k rows:
# 34.7 s in one process, 24.3 s with the helper (quiet machine; two cores).
_helper_mapping: _Mapping | None = None
_helper_seen = Seen()


def _helper_start(how: _Mapping) -> None:
    global _helper_mapping, _helper_seen
    _helper_mapping, _helper_seen = how, Seen()


def _helper_map(batch: list[RawEvent]) -> list[_Mapped]:
    if _helper_mapping is None:
        raise RuntimeError("the import's helper process was not started with its mapping")
    return _map_rows(_helper_mapping, batch, _helper_seen)


def _mapped_batches(how: _Mapping, batches: Iterator[list[RawEvent]]
                    ) -> Iterator[tuple[list[RawEvent], list[_Mapped]]]:
    """Each batch with its rows mapped: in this process, or, when there is more than one batch, one batch
    ahead in a helper process while this one writes."""
    first = next(batches, [])
    second = next(batches, []) if first else []
    if not second or "fork" not in multiprocessing.get_all_start_methods():
        seen = Seen()
        for batch in chain([first, second], batches):
            if batch:
                yield batch, _map_rows(how, batch, seen)
        return
    with ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("fork"), initializer=_helper_start,
                             initargs=(how,)) as helper:
        ahead = first, helper.submit(_helper_map, first)
        for batch in chain([second], batches):
            following = batch, helper.submit(_helper_map, batch)
            yield ahead[0], ahead[1].result()
            ahead = following
        yield ahead[0], ahead[1].result()


def _import_batch(session: Session, hub: Hub, source: Source, batch: list[RawEvent], mapped: list[_Mapped],
                  report: ImportReport) -> None:
    """A batch set-based: its events in one statement, its new persons together, the other rows one by one
    in file order. If the new persons' keys were claimed meanwhile, the batch again, row by row."""
    now = utcnow()      # the batch's rows are received together (one datetime: bound to SQL once)
    rows = [_row(source, raw, row, now) for raw, row in zip(batch, mapped, strict=True)]
    writes = _ImportWrites()
    savepoint = session.begin_nested()
    try:
        per_row = _store_and_attach_new(session, source, rows, writes)
    except KeysTaken:
        savepoint.rollback()
        writes = _ImportWrites()
        for raw in batch:
            _import_one(session, hub, source, raw, report, writes)
        writes.flush(session)
        return
    savepoint.commit()
    for row, item in per_row:
        row.outcome, _ = process_draft(session, source, item.event, item.draft, hub.config.identity, writes,
                                       item.prepared)
    for row in rows:
        if row.outcome is not None:
            writes.finished_events.append({"event_id": row.event_id, "status": row.outcome.status,
                                           "lead_id": row.outcome.lead_id, "now": row.now})
    writes.flush(session)
    for row in rows:
        if row.event_id is None:
            report.already_imported += 1
        elif row.outcome is None:
            report.rejected.append({"row": row.line, "reason": row.reason})
        elif row.outcome.status == EventStatus.PROCESSED:
            report.created += 1
        else:
            report.merged += 1


def _store_and_attach_new(session: Session, source: Source, rows: list[_Row],
                          writes: _ImportWrites) -> list[tuple[_Row, BatchEvent]]:
    """Store the batch's events (an event stored before, by an earlier import or earlier in this batch, is
    not stored again: that row was imported already), then attach the rows of new persons. Returns the rows
    left for the per-row path, with their events, in file order."""
    stored = {external_id: event_id for event_id, external_id in INSERT_EVENTS(session, [r.event for r in rows])}
    todo: list[tuple[_Row, BatchEvent]] = []
    for row in rows:
        row.event_id = stored.pop(row.event["external_id"], None)      # a repeat of the row finds it taken
        if row.event_id is not None and row.made is not None:
            todo.append((row, BatchEvent(source, EventRef(row.event_id, row.now), *row.made)))
    batch = [item for _, item in todo]
    verdicts = new_persons(batch, owners_of(session, (key for item in batch for key in item.keys)))
    new = [(row, item) for (row, item), is_new in zip(todo, verdicts, strict=True) if is_new]
    outcomes = attach_new_persons(session, [item for _, item in new], writes)
    for (row, _), outcome in zip(new, outcomes, strict=True):
        row.outcome = outcome
    return [(row, item) for (row, item), is_new in zip(todo, verdicts, strict=True) if not is_new]


def _mapping_for_file(source: Source) -> Source:
    """The source with its mapping's column names cut to the columns the file has (apply_mapping looks for
    every name of every field in each row: 37 names for 7 columns in csv_import's; ~3% of an import). The
    same drafts: a name the header lacks matches no row's field (each row has the header's columns, "_row"
    and "_extra"); only a rejection's reason, which lists the names looked for, needs the whole mapping."""
    try:
        header = source.connector_as(FileConnector).header()
    except PayloadError:
        return source                   # an empty file: nothing to map
    present = {column.strip().lower() for column in header} | {"_row", "_extra"}
    fields = source.mapping.fields
    cut = fields.model_copy(update={name: [n for n in getattr(fields, name) if n.lower() in present]
                                    for name in type(fields).model_fields})
    return replace(source, mapping=source.mapping.model_copy(update={"fields": cut}))


class _RollBack(Exception):
    """Ends a dry run's transaction without committing it."""


def run_import(hub: Hub, source: Source, dry_run: bool = False, batch_rows: int = BATCH_ROWS,
               progress: Callable[[int], None] | None = None, set_based: bool = True) -> ImportReport:
    """Import every row; commits every ``batch_rows`` (a dry run keeps one transaction and rolls it back).
    ``set_based=False``: every row on its own (_import_one), as before hub.pipeline.bulk — what the tests
    compare the set-based import with."""
    with _young_objects_only():
        return _run_import(hub, source, dry_run, batch_rows, progress, set_based)


@contextmanager
def _young_objects_only() -> Iterator[None]:
    """Keep the garbage collector to the import's own objects. A batch's rows (tens of thousands of
    containers) live through many young collections, reach the oldest generation and set off full
    collections every batch or two, each scanning every object of the process (~140k, mostly SQLAlchemy's
    and the hub's modules): ~15% of a 100k-row import, growing as it went (measured: 50.8 s; with what
    existed before the import frozen, 42.6 s, flat). Left alone when the process froze objects itself."""
    if gc.get_freeze_count():
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _run_import(hub: Hub, source: Source, dry_run: bool, batch_rows: int,
                progress: Callable[[int], None] | None, set_based: bool) -> ImportReport:
    report = ImportReport(dry_run=dry_run)
    rows = source.connector_as(FileConnector).events()
    raw_batches = iter(lambda: list(islice(rows, batch_rows)), [])
    batches: Iterator[tuple[list[RawEvent], list[_Mapped] | None]]
    if set_based:
        batches = _mapped_batches(_Mapping(source, _mapping_for_file(source), hub.config.identity), raw_batches)
    else:
        batches = ((batch, None) for batch in raw_batches)

    def import_batch(session: Session, batch: list[RawEvent], mapped: list[_Mapped] | None) -> None:
        if mapped is not None:
            _import_batch(session, hub, source, batch, mapped, report)
            return
        writes = _ImportWrites()
        for raw in batch:
            _import_one(session, hub, source, raw, report, writes)
        writes.flush(session)

    if dry_run:
        try:
            with transaction(hub.engine) as session:
                for batch, mapped in batches:
                    import_batch(session, batch, mapped)
                    report.rows += len(batch)
                    if progress:
                        progress(len(batch))
                raise _RollBack
        except _RollBack:
            pass
        return report
    for batch, mapped in batches:
        with transaction(hub.engine) as session:
            import_batch(session, batch, mapped)
        report.rows += len(batch)
        if progress:
            progress(len(batch))
    return report
