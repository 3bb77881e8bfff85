"""Polling sources (IMAP inboxes, …): fetch, store durably, then acknowledge at the provider.

Order matters for "no lead lost": the events and the source's new cursor are committed in one
transaction *before* the connector marks anything read at the provider; a crash in between only means a
re-fetch, which the unique (source, external_id) key turns into nothing. Polls run in the scheduler, whose
lease makes one process the poller at a time.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import select

from hub.connector import PollingConnector
from hub.intake.webhook import prepare_event
from hub.runtime import Hub, Source
from hub.store.db import dialect_insert, execute, insert_ignoring_conflicts, transaction
from hub.store.models import InboundEvent, PollState, utcnow

log = logging.getLogger("hub.intake.polling")


@dataclass
class PollReport:
    source: str
    fetched: int = 0
    stored: int = 0
    error: str | None = None


def polling_sources(hub: Hub) -> list[Source]:
    return [s for s in hub.sources.values() if s.config.enabled and isinstance(s.connector, PollingConnector)]


def poll_seconds(source: Source) -> float:
    connector = _poller(source)
    return float(getattr(connector.settings, "poll_seconds", None) or connector.default_poll_seconds)


def _poller(source: Source) -> PollingConnector:
    if not isinstance(source.connector, PollingConnector):
        raise TypeError(f"source {source.name!r} is not polled: its connector is {source.connector.name}")
    return source.connector


def poll_source(hub: Hub, source: Source, now: datetime | None = None) -> PollReport:
    now = now or utcnow()
    report = PollReport(source.name)
    connector = _poller(source)
    with transaction(hub.engine, read_only=True) as s:
        row = s.get(PollState, source.name)
        state = dict(row.state) if row else {}
    table = PollState.__table__
    try:
        result = connector.poll(state)                       # network I/O: no transaction open
    except Exception as exc:  # noqa: BLE001 — a provider being away is reported, never fatal
        report.error = f"{type(exc).__name__}: {exc}"
        log.warning("source=%s poll failed: %s", source.name, report.error)
        with transaction(hub.engine) as s:
            _save_state(s, table, source.name, state, now, error=report.error)
        return report
    report.fetched = len(result.events)
    with transaction(hub.engine) as s:
        for event in result.events:
            prepared = prepare_event(source, event, now)
            values = dict(source=source.name, received_at=now, method="POLL", content_type=None, headers={},
                          body=b"", attempts=0, next_attempt_at=now, **prepared)
            if insert_ignoring_conflicts(s, InboundEvent.__table__, ["source", "external_id"], values) is not None:
                report.stored += 1
        _save_state(s, table, source.name, result.state, now)
    if report.stored:
        hub.event_stored.set()
    try:
        connector.acknowledge(result.events)
    except Exception as exc:  # noqa: BLE001 — they will be fetched again and stored once
        log.warning("source=%s acknowledging %s message(s) failed: %s", source.name, len(result.events), exc)
    log.info("source=%s polled: %s fetched, %s new", source.name, report.fetched, report.stored)
    return report


def _save_state(session, table, name: str, state: dict, now: datetime, error: str | None = None) -> None:
    values = {"state": state, "polled_at": now, "last_error": error}
    if error is None:
        values["ok_at"] = now
    execute(session, dialect_insert(session)(table).values(source=name, **values)
            .on_conflict_do_update(index_elements=["source"], set_=values))


def poll_is_due(source: Source, polled: datetime | None, now: datetime, share: float = 1.0) -> bool:
    """Whether ``share`` of the source's interval has passed since its last poll (never polled: due)."""
    return polled is None or polled + timedelta(seconds=poll_seconds(source) * share) <= now


def poll_due(hub: Hub, now: datetime) -> list[PollReport]:
    """Poll every polling source whose interval has passed since its last poll."""
    reports = []
    with transaction(hub.engine, read_only=True) as s:
        last = dict(s.execute(select(PollState.source, PollState.polled_at)).all())
    for source in polling_sources(hub):
        if poll_is_due(source, last.get(source.name), now):
            reports.append(poll_source(hub, source, now))
    return reports
