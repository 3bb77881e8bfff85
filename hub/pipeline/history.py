"""The lead's timeline (created, reopened, assigned, taken, status, merged, …): append-only, one writer."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import insert
from sqlalchemy.orm import Session

from hub.store.db import execute
from hub.store.models import LeadHistory, utcnow

INSERT_HISTORY = insert(LeadHistory.__table__)


def history(session: Session, lead_id: int, kind: str, actor: str = "hub", event_id: int | None = None,
            at: datetime | None = None, **data) -> None:
    execute(session, INSERT_HISTORY, dict(lead_id=lead_id, at=at or utcnow(), kind=kind, actor=actor,
                                          event_id=event_id, data=data))
