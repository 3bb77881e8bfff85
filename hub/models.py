"""The lead store: raw inbound events, and the persons, leads and touches made from them."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from sqlalchemy import (JSON, BigInteger, Boolean, DateTime, ForeignKey, Index, Integer, LargeBinary, String,
                        Text, TypeDecorator, UniqueConstraint)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

# SQLite only auto-increments an INTEGER PRIMARY KEY; PostgreSQL gets a 64-bit key.
BigId = BigInteger().with_variant(Integer(), "sqlite")


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend (SQLite would hand back naive ones)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetime given to the store; use hub.models.utcnow()")
        value = value.astimezone(timezone.utc)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=timezone.utc) if value.tzinfo is None else value.astimezone(timezone.utc)


class Base(DeclarativeBase):
    pass


class EventStatus:
    PENDING = "pending"        # stored, waiting for a worker (or for its next retry)
    PROCESSING = "processing"  # claimed by a worker until claimed_until
    PROCESSED = "processed"    # became a new lead
    MERGED = "merged"          # became a touch on an existing lead
    REJECTED = "rejected"      # can never become a lead (reason kept); raw body kept
    DEAD = "dead"              # failed max_attempts times; replayable
    ALL = (PENDING, PROCESSING, PROCESSED, MERGED, REJECTED, DEAD)
    FINAL = (PROCESSED, MERGED, REJECTED, DEAD)


class InboundEvent(Base):
    """One delivery, stored before it is acknowledged. Unique on (source, external_id): a retry is a no-op."""

    __tablename__ = "inbound_event"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_inbound_event_source_external_id"),
        Index("ix_inbound_event_claimable", "status", "next_attempt_at"),
        Index("ix_inbound_event_received_at", "received_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(64))
    external_id: Mapped[str] = mapped_column(String(255))
    received_at: Mapped[datetime] = mapped_column(UTCDateTime())
    method: Mapped[str] = mapped_column(String(8), default="POST")
    content_type: Mapped[str | None] = mapped_column(String(255))
    headers: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    body: Mapped[bytes] = mapped_column(LargeBinary, default=b"")
    payload: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=EventStatus.PENDING)
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    claim_token: Mapped[str | None] = mapped_column(String(36))
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)
    reject_reason: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id"))


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    contacts: Mapped[list[Contact]] = relationship(back_populates="person", order_by="Contact.id")


class Contact(Base):
    """A phone or e-mail of a person: ``value`` is normalised (E.164, normalised e-mail) or None when the
    raw text was invalid; the raw text is always kept."""

    __tablename__ = "contact"
    __table_args__ = (Index("ix_contact_kind_value", "kind", "value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    kind: Mapped[str] = mapped_column(String(16))        # phone | email
    value: Mapped[str | None] = mapped_column(String(320))
    raw: Mapped[str] = mapped_column(String(320))
    valid: Mapped[bool] = mapped_column(Boolean)

    person: Mapped[Person] = relationship(back_populates="contacts")


class Lead(Base):
    __tablename__ = "lead"
    __table_args__ = (Index("ix_lead_status_created", "status", "created_at"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default="new")   # new | in_work | converted | refused
    refuse_reason: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(64))                  # the first touch's source; never empty
    warmth: Mapped[str | None] = mapped_column(String(8))            # cold | warm | hot
    score: Mapped[int | None] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(128))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    person: Mapped[Person] = relationship()
    touches: Mapped[list[Touch]] = relationship(back_populates="lead", order_by="Touch.at, Touch.id")


class Touch(Base):
    """One contact of a person through one channel: where they came from and with which marks."""

    __tablename__ = "touch"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("lead.id"), index=True)
    # One touch per event, enforced by the database: a second processing of an event cannot add a touch.
    event_id: Mapped[int] = mapped_column(ForeignKey("inbound_event.id"), unique=True)
    source: Mapped[str] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(32))                 # the connector: site_form, tilda, ...
    at: Mapped[datetime] = mapped_column(UTCDateTime())
    utm_source: Mapped[str | None] = mapped_column(String(255))
    utm_medium: Mapped[str | None] = mapped_column(String(255))
    utm_campaign: Mapped[str | None] = mapped_column(String(255))
    utm_content: Mapped[str | None] = mapped_column(String(255))
    utm_term: Mapped[str | None] = mapped_column(String(255))
    click_ids: Mapped[dict[str, str]] = mapped_column(JSON, default=dict)
    referrer: Mapped[str | None] = mapped_column(String(2048))
    landing_page: Mapped[str | None] = mapped_column(String(2048))
    message: Mapped[str | None] = mapped_column(Text)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)

    lead: Mapped[Lead] = relationship(back_populates="touches")
