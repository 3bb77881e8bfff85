"""The lead's timeline (created, reopened, assigned, taken, status, merged, …): append-only, one writer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy.orm import Session

from hub.outbox.manager_keyboard import queue_redraw
from hub.store.db import InsertRows
from hub.store.models import LeadHistory, utcnow

# Written for nearly every lead a worker routes: on SQLite on the DBAPI cursor (hub.store.db.InsertRows).
INSERT_HISTORY = InsertRows(LeadHistory.__table__)
# The changes a manager's Telegram message shows (its status line: who has it, attempts, the next call-back):
# each redraws the lead's messages in the chats (hub/outbox/manager_keyboard.py), wherever it was made.
SHOWN_IN_TELEGRAM = frozenset({"taken", "status", "attempt", "task", "task_done", "assigned", "unassigned",
                               "reopened"})


_DEFERRED = "hub.history_deferred"


def defer_history(session: Session) -> None:
    """Collect this session's entries until flush_history writes them in one statement: a worker's batch
    writes one or more a lead, and nothing in the batch reads them back. If the transaction fails, the
    session (and what it collected) is dropped with it."""
    session.info[_DEFERRED] = []


def flush_history(session: Session) -> None:
    """Write the entries collected since defer_history, in the order they were made; stop collecting."""
    rows = session.info.pop(_DEFERRED, None)
    if rows:
        INSERT_HISTORY(session, rows)


def history(session: Session, lead_id: int, kind: str, actor: str = "hub", event_id: int | None = None,
            at: datetime | None = None, **data: Any) -> None:
    at = at or utcnow()
    row = dict(lead_id=lead_id, at=at, kind=kind, actor=actor, event_id=event_id, data=data)
    deferred = session.info.get(_DEFERRED)
    if deferred is not None:
        deferred.append(row)
    else:
        INSERT_HISTORY(session, [row])
    # A new lead routed by the worker has no message yet (its first is being queued): no lookup on that path.
    if kind in SHOWN_IN_TELEGRAM and not (kind == "assigned" and event_id is not None and data.get("from") is None):
        queue_redraw(session, lead_id, at)


def from_to(before: Any, after: Any) -> dict[str, Any]:
    """A change's ``from`` and ``to`` for ``history(..., **from_to(a, b))``: ``from`` is a keyword, so it
    cannot be written as an argument."""
    return {"from": before, "to": after}
