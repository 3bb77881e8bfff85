"""The lead's timeline (created, reopened, assigned, taken, status, merged, …): append-only, one writer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from hub.outbox.manager_keyboard import queue_redraw
from hub.store.db import execute
from hub.store.models import LeadHistory, utcnow

INSERT_HISTORY = insert(LeadHistory.__table__)
# The changes a manager's Telegram message shows (its status line: who has it, attempts, the next call-back):
# each redraws the lead's messages in the chats (hub/outbox/manager_keyboard.py), wherever it was made.
SHOWN_IN_TELEGRAM = frozenset({"taken", "status", "attempt", "task", "task_done", "assigned", "unassigned",
                               "reopened"})


def history(session: Session, lead_id: int, kind: str, actor: str = "hub", event_id: int | None = None,
            at: datetime | None = None, **data: Any) -> None:
    at = at or utcnow()
    execute(session, INSERT_HISTORY, dict(lead_id=lead_id, at=at, kind=kind, actor=actor,
                                          event_id=event_id, data=data))
    # A new lead routed by the worker has no message yet (its first is being queued): no lookup on that path.
    if kind in SHOWN_IN_TELEGRAM and not (kind == "assigned" and event_id is not None and data.get("from") is None):
        queue_redraw(session, lead_id, at)


def from_to(before: Any, after: Any) -> dict[str, Any]:
    """A change's ``from`` and ``to`` for ``history(..., **from_to(a, b))``: ``from`` is a keyword, so it
    cannot be written as an argument."""
    return {"from": before, "to": after}
