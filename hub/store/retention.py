"""Raw payload retention: personal data in raw deliveries is kept only as long as configured.

Events older than ``[privacy] retention_days`` that reached a final state lose their raw body, parsed
payload and headers; the rows stay (source, status, times, lead), so reports and `hub reconcile` still add
up. Events still pending or dead keep theirs: they may yet need to be processed or replayed.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.store.models import EventStatus, InboundEvent

PURGED_STATUSES = (EventStatus.PROCESSED, EventStatus.MERGED, EventStatus.REJECTED)


def purge_raw_payloads(session: Session, retention_days: int, now: datetime, limit: int = 5000) -> int:
    cutoff = now - timedelta(days=retention_days)
    ids = list(session.scalars(select(InboundEvent.id).where(
        InboundEvent.received_at < cutoff, InboundEvent.status.in_(PURGED_STATUSES),
        InboundEvent.payload.is_not(None)).order_by(InboundEvent.id).limit(limit)))
    if ids:
        session.execute(update(InboundEvent).where(InboundEvent.id.in_(ids)).values(body=b"", payload=None,
                                                                                      headers={}))
    return len(ids)
