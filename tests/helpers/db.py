"""Read the store directly in tests: counts and rows, no mocks."""

from __future__ import annotations

import time

from sqlalchemy import func, select

from hub.store.db import transaction
from hub.store.models import InboundEvent, Touch


def count(hub, model) -> int:
    with transaction(hub.engine, read_only=True) as s:
        return s.scalar(select(func.count()).select_from(model))


def events(hub) -> list[InboundEvent]:
    with transaction(hub.engine, read_only=True) as s:
        return list(s.scalars(select(InboundEvent).order_by(InboundEvent.id)))


def event(hub, event_id: int) -> InboundEvent:
    with transaction(hub.engine, read_only=True) as s:
        return s.get(InboundEvent, event_id)



def touches_per_event(hub) -> dict[int, int]:
    with transaction(hub.engine, read_only=True) as s:
        return dict(s.execute(select(Touch.event_id, func.count()).group_by(Touch.event_id)).all())


def wait_until_processed(hub, timeout: float = 120) -> None:
    """Wait until no event is pending or being processed (workers running elsewhere)."""
    deadline = time.monotonic() + timeout
    while True:
        with transaction(hub.engine, read_only=True) as s:
            if not s.scalar(select(func.count()).select_from(InboundEvent).where(
                    InboundEvent.status.in_(["pending", "processing"]))):
                return
        assert time.monotonic() < deadline, f"events still waiting after {timeout}s"
        time.sleep(0.2)
