"""The lead's timeline (created, reopened, assigned, taken, status, merged, …): append-only, one writer."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import insert
from sqlalchemy.orm import Session

from hub.store.db import execute
from hub.store.models import LeadHistory, utcnow

INSERT_HISTORY = insert(LeadHistory.__table__)


def history(session: Session, lead_id: int, kind: str, actor: str = "hub", event_id: int | None = None,
            at: datetime | None = None, **data: Any) -> None:
    execute(session, INSERT_HISTORY, dict(lead_id=lead_id, at=at or utcnow(), kind=kind, actor=actor,
                                          event_id=event_id, data=data))


def from_to(before: Any, after: Any) -> dict[str, Any]:
    """A change's ``from`` and ``to`` for ``history(..., **from_to(a, b))``: ``from`` is a keyword, so it
    cannot be written as an argument."""
    return {"from": before, "to": after}
