"""What every table of the store is made of: the declarative base, 64-bit ids, aware UTC datetimes, and the
columns every leased queue claims by."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import BigInteger, DateTime, Integer, String, Table, Text, TypeDecorator
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(UTC)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use hub.store.models.utcnow()")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    # Every model here maps to a Table, never to a join or a subquery: type it so (SQLAlchemy says any FromClause).
    __table__: ClassVar[Table]


class QueuedRow:
    """The columns every leased queue (hub.outbox.queue: inbound events, notifications, sink deliveries)
    claims by: the row's ``status`` — "pending" while it waits to be claimed, in each queue — the
    ``attempts`` counted at each claim, and the latest failure's error. Each table declares its own
    ``next_attempt_at``: an outbox row's always has one (it is also a claim's lease), an event's is none
    once the event is final."""

    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
