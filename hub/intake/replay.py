"""Replaying dead or rejected events: they go back to pending and are mapped again with today's mapping."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from hub.store.models import EventStatus, InboundEvent, utcnow


def replay_events(session: Session, event_ids: list[int] | None = None, all_dead: bool = False,
                  source: str | None = None) -> tuple[list[int], list[dict]]:
    """Queue the named events (or every dead one, of ``source`` if given) again. Returns the replayed ids
    and, for each event that was not replayed, why."""
    query = select(InboundEvent).order_by(InboundEvent.id)
    if all_dead:
        query = query.where(InboundEvent.status == EventStatus.DEAD)
        if source:
            query = query.where(InboundEvent.source == source)
    else:
        query = query.where(InboundEvent.id.in_(event_ids or []))
    found = {e.id: e for e in session.scalars(query.with_for_update())}
    refused: list[dict[str, Any]] = [{"id": i, "reason": "no such event"} for i in event_ids or [] if i not in found]
    replayed = []
    now = utcnow()
    for event in found.values():
        if event.status not in (EventStatus.DEAD, EventStatus.REJECTED):
            refused.append({"id": event.id, "reason": f"status is {event.status}; only dead or rejected "
                                                      "events are replayed"})
        elif event.payload is None:
            refused.append({"id": event.id, "reason": "rejected at intake: its body never parsed, "
                                                      "there is nothing to replay"})
        else:
            session.execute(update(InboundEvent).where(InboundEvent.id == event.id).values(
                status=EventStatus.PENDING, attempts=0, next_attempt_at=now, processed_at=None,
                claim_token=None, claimed_until=None, reject_reason=None))
            replayed.append(event.id)
    refused.sort(key=lambda r: r["id"])
    return replayed, refused
