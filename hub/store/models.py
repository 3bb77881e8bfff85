"""The lead store: raw inbound events, and the persons, leads and touches made from them."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from hub.store.base import Base, BigId, QueuedRow, UTCDateTime, utcnow


class EventStatus:
    PENDING = "pending"        # stored, waiting for a worker (or for its next retry)
    PROCESSING = "processing"  # claimed by a worker until claimed_until
    PROCESSED = "processed"    # became a new lead
    MERGED = "merged"          # became a touch on an existing lead
    REJECTED = "rejected"      # can never become a lead (reason kept); raw body kept
    DEAD = "dead"              # failed max_attempts times; replayable
    ALL = (PENDING, PROCESSING, PROCESSED, MERGED, REJECTED, DEAD)
    FINAL = (PROCESSED, MERGED, REJECTED, DEAD)


class InboundEvent(QueuedRow, Base):
    """One delivery, stored before it is acknowledged. Unique on (source, external_id): a retry is a no-op."""

    __tablename__ = "inbound_event"
    __table_args__ = (
        UniqueConstraint("source", "external_id", name="uq_inbound_event_source_external_id"),
        Index("ix_inbound_event_claimable", "status", "next_attempt_at"),
        Index("ix_inbound_event_received_at", "received_at"),
        Index("ix_inbound_event_source_received", "source", "received_at"),   # channel health
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
    next_attempt_at: Mapped[datetime | None] = mapped_column(UTCDateTime())      # none once it is final
    # The lease is a column of its own, with the token the claim's outcome is written under.
    claim_token: Mapped[str | None] = mapped_column(String(36))
    claimed_by: Mapped[str | None] = mapped_column(String(128))
    claimed_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    reject_reason: Mapped[str | None] = mapped_column(Text)
    processed_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id"))


class Person(Base):
    __tablename__ = "person"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str | None] = mapped_column(String(255))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Set when this person was merged into another (undone by unmerge); such a person holds no keys.
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("person.id"))

    keys: Mapped[list[IdentityKey]] = relationship(back_populates="person", order_by="IdentityKey.id")


class KeyKind:
    PHONE = "phone"            # E.164
    EMAIL = "email"            # normalised, casefolded
    TELEGRAM = "telegram"      # Telegram user id
    VK = "vk"                  # VK user id


class IdentityKey(Base):
    """A normalised phone, e-mail or messenger id, owned by exactly one person: the unique key is what
    makes find-or-create atomic — two deliveries of one new person cannot both create it."""

    __tablename__ = "identity_key"
    __table_args__ = (UniqueConstraint("kind", "value", name="uq_identity_key_kind_value"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(16))
    value: Mapped[str] = mapped_column(String(320))
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)

    person: Mapped[Person] = relationship(back_populates="keys")


class LeadStatus:
    NEW = "new"
    IN_WORK = "in_work"
    CONVERTED = "converted"
    REFUSED = "refused"
    ALL = (NEW, IN_WORK, CONVERTED, REFUSED)
    OPEN = (NEW, IN_WORK)


# A person has at most one open lead; leads merged into another do not count.
OPEN_LEAD_PREDICATE = "status IN ('new', 'in_work') AND merged_into_id IS NULL"


class Lead(Base):
    __tablename__ = "lead"
    __table_args__ = (
        Index("ix_lead_status_created", "status", "created_at"),
        # The inbox (newest first, per owner) and the channel report read by these; the report's index
        # covers every column it groups by, so it never reads the table.
        Index("ix_lead_owner_id", "owner", "id"),
        Index("ix_lead_report", "created_at", "source", "utm_campaign", "warmth", "status", "merged_into_id"),
        Index("uq_lead_open_per_person", "person_id", unique=True,
              sqlite_where=text(OPEN_LEAD_PREDICATE), postgresql_where=text(OPEN_LEAD_PREDICATE)),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"), index=True)
    status: Mapped[str] = mapped_column(String(16), default=LeadStatus.NEW)
    refuse_reason: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(64))                  # the first touch's source; never empty
    # The first touch's campaign, kept on the lead so that the per-campaign report needs no join.
    utm_campaign: Mapped[str | None] = mapped_column(String(255))
    warmth: Mapped[str | None] = mapped_column(String(8))            # cold | warm | hot
    score: Mapped[int | None] = mapped_column(Integer)
    owner: Mapped[str | None] = mapped_column(String(128))
    tags: Mapped[list[str]] = mapped_column(JSON, default=list)
    reopened_count: Mapped[int] = mapped_column(Integer, default=0)
    merged_into_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id"))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # Routing: which warmth rule and routing rule decided, and the SLA clock of the current owner.
    warmth_rule: Mapped[str | None] = mapped_column(String(128))
    routing_rule: Mapped[str | None] = mapped_column(String(128))
    assigned_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    taken_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    sla_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    reassign_count: Mapped[int] = mapped_column(Integer, default=0)
    contact_attempts: Mapped[int] = mapped_column(Integer, default=0)
    # The deal's amount, given when the lead is converted (the reports' revenue).
    amount: Mapped[Decimal | None] = mapped_column(Numeric(14, 2))
    # Follow-up of a lead in work: by when its owner must act again (an attempt, a note, a task), restarted
    # by each of those; the stage says how far the sweep went (0 running, 1 owner reminded, 2 escalated).
    follow_up_due_at: Mapped[datetime | None] = mapped_column(UTCDateTime(), index=True)
    follow_up_stage: Mapped[int] = mapped_column(Integer, default=0)

    person: Mapped[Person] = relationship()
    touches: Mapped[list[Touch]] = relationship(back_populates="lead", order_by="Touch.at, Touch.id")
    history: Mapped[list[LeadHistory]] = relationship(order_by="LeadHistory.id")
    tasks: Mapped[list[LeadTask]] = relationship(order_by="LeadTask.due_at, LeadTask.id")


class LeadTask(Base):
    """A call-back: "call back after 18:00". Its owner is reminded when it is due (the scheduler's sweep,
    once: ``reminded_at``) and it shows as overdue until done. Notes are not a table: they are the lead's
    history entries of kind ``note``."""

    __tablename__ = "lead_task"
    __table_args__ = (
        # The due sweep reads the open tasks by due time.
        Index("ix_lead_task_open_due", "done_at", "due_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("lead.id"), index=True)
    text: Mapped[str] = mapped_column(Text)
    due_at: Mapped[datetime] = mapped_column(UTCDateTime())
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    created_by: Mapped[str] = mapped_column(String(128))
    reminded_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    done_by: Mapped[str | None] = mapped_column(String(128))


class LeadHistory(Base):
    """The lead's timeline: created, reopened, possible duplicate, merged, unmerged (and, with routing,
    assignments and status changes). Append-only."""

    __tablename__ = "lead_history"
    __table_args__ = (
        # The reports read a period's entries by kind and by who acted (speed to lead, handovers, the
        # activity per day); this index covers those columns, so a period costs a range scan.
        Index("ix_lead_history_at_kind", "at", "kind", "actor"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("lead.id"), index=True)
    at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    kind: Mapped[str] = mapped_column(String(32))
    actor: Mapped[str] = mapped_column(String(128), default="hub")
    event_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_event.id"))
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class PossibleDuplicate(Base):
    """Two persons that one delivery's keys pointed to: never merged silently, shown for a human."""

    __tablename__ = "possible_duplicate"
    __table_args__ = (UniqueConstraint("person_id", "other_person_id", name="uq_possible_duplicate_pair"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))        # the one the touch went to
    other_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    event_id: Mapped[int | None] = mapped_column(ForeignKey("inbound_event.id"))
    keys: Mapped[list[str]] = mapped_column(JSON, default=list)            # "email:…" keys of the other one
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    resolved_by_merge_id: Mapped[int | None] = mapped_column(ForeignKey("person_merge.id"))


class PersonMerge(Base):
    """An audited merge of ``merged_person_id`` into ``kept_person_id``; ``moved`` records every row it
    changed and its previous value, so that unmerge restores the state exactly."""

    __tablename__ = "person_merge"

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    kept_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    merged_person_id: Mapped[int] = mapped_column(ForeignKey("person.id"))
    merged_by: Mapped[str] = mapped_column(String(128))
    merged_at: Mapped[datetime] = mapped_column(UTCDateTime())
    reason: Mapped[str | None] = mapped_column(Text)
    moved: Mapped[dict[str, Any]] = mapped_column(JSON)
    undone_by: Mapped[str | None] = mapped_column(String(128))
    undone_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


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
    # A call's recording: a URL, or the provider's reference ("mango:<recording_id>") to fetch it by API.
    recording: Mapped[str | None] = mapped_column(String(2048))
    # Every phone/e-mail/messenger id as the delivery spelled it: {kind, raw, value, problem}; invalid ones
    # (value None) are kept here, flagged, never dropped.
    contacts: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list)
    flags: Mapped[list[str]] = mapped_column(JSON, default=list)

    lead: Mapped[Lead] = relationship(back_populates="touches")


class ManagerState(Base):
    """What changes about a manager at run time (the rest is config): on/off duty, vacation."""

    __tablename__ = "manager_state"

    name: Mapped[str] = mapped_column(String(128), primary_key=True)
    on_duty: Mapped[bool] = mapped_column(Boolean, default=True)
    vacation_until: Mapped[datetime | None] = mapped_column(UTCDateTime())
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(128))


class RoutingPosition(Base):
    """A routing rule's round-robin position: advanced with UPDATE … RETURNING inside the transaction that
    assigns the lead, so restarts, several workers and rolled-back attempts never skew it."""

    __tablename__ = "routing_position"

    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    position: Mapped[int] = mapped_column(BigInteger, default=0)


CLIENT_ANSWER_PREDICATE = "kind = 'client_answer'"


class NotificationStatus:
    PENDING = "pending"
    SENT = "sent"
    DEAD = "dead"


class Notification(QueuedRow, Base):
    """Outbox: written in the lead's transaction, sent after commit by the notifier, retried with backoff."""

    __tablename__ = "notification"
    __table_args__ = (Index("ix_notification_due", "status", "next_attempt_at"),
                      # A client hears back once per lead, however often they write and however many workers
                      # race: the second answer's INSERT meets this index (hub/outbox/client_answer.py).
                      Index("uq_notification_client_answer", "lead_id", unique=True,
                            sqlite_where=text(CLIENT_ANSWER_PREDICATE),
                            postgresql_where=text(CLIENT_ANSWER_PREDICATE)))

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id"))
    channel: Mapped[str] = mapped_column(String(16))          # telegram | email
    # What the message is: the notification template's name (new_lead, handed_over, ...) — it decides the
    # buttons a Telegram message carries — or "client_answer" for the answer to the client.
    kind: Mapped[str | None] = mapped_column(String(32))
    recipient: Mapped[str] = mapped_column(String(320))       # chat id / address
    # A client answer's source: its bot or community sends it. None: the hub's own channels ([notify]).
    source: Mapped[str | None] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(255))
    text: Mapped[str] = mapped_column(Text)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)    # also a claim's lease
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class NotificationMessage(Base):
    """The Telegram message a notification became: the manager bot edits it when its lead is acted on."""

    __tablename__ = "notification_message"

    notification_id: Mapped[int] = mapped_column(ForeignKey("notification.id"), primary_key=True)
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id"), index=True)
    chat_id: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[int] = mapped_column(BigInteger)
    sent_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TelegramLink(Base):
    """A manager's own Telegram (``/link CODE`` to the notification bot): their notifications go to this chat,
    and this Telegram user — only this one — may work their leads from the buttons."""

    __tablename__ = "telegram_link"

    manager: Mapped[str] = mapped_column(String(128), primary_key=True)
    telegram_user_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    chat_id: Mapped[str] = mapped_column(String(64))
    linked_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class TelegramLinkCode(Base):
    """A one-time code of ``hub managers link-telegram``: its SHA-256 only, good for 15 minutes, once."""

    __tablename__ = "telegram_link_code"

    code_hash: Mapped[str] = mapped_column(String(64), primary_key=True)
    manager: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SchedulerLease(Base):
    """Who runs the scheduled jobs: one leader across processes, by a lease it renews."""

    __tablename__ = "scheduler_lease"

    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    holder: Mapped[str] = mapped_column(String(128))
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())


class PollState(Base):
    """A polling source's cursor (IMAP UIDs, a long-poll ``ts``, a Telegram offset), kept by the hub."""

    __tablename__ = "poll_state"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    state: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)
    polled_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    ok_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    last_error: Mapped[str | None] = mapped_column(Text)


class SourceSpend(Base):
    """What a source cost in a month (entered by a marketer): the report divides it by the leads."""

    __tablename__ = "source_spend"

    source: Mapped[str] = mapped_column(String(64), primary_key=True)
    month: Mapped[str] = mapped_column(String(7), primary_key=True)   # YYYY-MM
    amount: Mapped[Decimal] = mapped_column(Numeric(14, 2))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    updated_by: Mapped[str | None] = mapped_column(String(128))


class DeliveryStatus:
    PENDING = "pending"        # waiting to be sent (or for its next retry)
    SENDING = "sending"        # claimed by a dispatcher until next_attempt_at (its lease)
    SENT = "sent"
    DEAD = "dead"              # refused by the sink, or out of attempts; replayable
    ALL = (PENDING, SENDING, SENT, DEAD)


class SinkDelivery(QueuedRow, Base):
    """Outbox of forwarding: "send lead L to sink S as it is now". Written in the transaction that changed
    the lead, sent after commit. At most one pending row per (sink, lead): later changes ride along,
    because the lead is read when it is sent, not when it was queued."""

    __tablename__ = "sink_delivery"
    __table_args__ = (
        Index("ix_sink_delivery_due", "status", "next_attempt_at"),
        Index("uq_sink_delivery_pending", "sink", "lead_id", unique=True,
              sqlite_where=text("status = 'pending'"), postgresql_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    sink: Mapped[str] = mapped_column(String(64))
    lead_id: Mapped[int] = mapped_column(ForeignKey("lead.id"), index=True)
    next_attempt_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)    # also a claim's lease
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    sent_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class SinkLink(Base):
    """The lead's id in the sink, once created there: every later delivery updates it instead of creating
    a second one."""

    __tablename__ = "sink_link"

    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("lead.id"), primary_key=True)
    remote_id: Mapped[str | None] = mapped_column(String(128))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)
    # What the sink posted once and must not post again (the ids of the notes sent, the refusal commented):
    # hub.sink.Step.remember, kept as each answer comes. None: nothing yet.
    remembered: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class SinkState(Base):
    """Per sink, shared by every process: the token bucket of its rate limit (tokens, and the epoch second
    they were counted at), and what the sink keeps between deliveries (OAuth tokens)."""

    __tablename__ = "sink_state"

    sink: Mapped[str] = mapped_column(String(64), primary_key=True)
    tokens: Mapped[float] = mapped_column(Float)
    counted_at: Mapped[float] = mapped_column(Float)
    data: Mapped[dict[str, Any]] = mapped_column(JSON, default=dict)


class CallAlert(Base):
    """A known client is calling: shown at once on their manager's open page (which polls for these)."""

    __tablename__ = "call_alert"
    __table_args__ = (Index("ix_call_alert_manager_id", "manager", "id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    manager: Mapped[str] = mapped_column(String(128))
    lead_id: Mapped[int | None] = mapped_column(ForeignKey("lead.id"))
    caller: Mapped[str] = mapped_column(String(64))          # E.164
    name: Mapped[str | None] = mapped_column(String(255))
    source: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utcnow)


class WebPresence(Base):
    """When a manager's web page last asked for call alerts: online managers get a screen-pop, the others
    a Telegram message."""

    __tablename__ = "web_presence"

    manager: Mapped[str] = mapped_column(String(128), primary_key=True)
    seen_at: Mapped[datetime] = mapped_column(UTCDateTime())


class VkProfile(Base):
    """A VK user's name and city as users.get last gave them: a lead from VK is named without asking VK
    again for every message of the same client (re-asked after hub.pipeline.vk_profiles.PROFILE_MAX_AGE)."""

    __tablename__ = "vk_profile"

    user_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    name: Mapped[str | None] = mapped_column(String(255))
    city: Mapped[str | None] = mapped_column(String(255))
    fetched_at: Mapped[datetime] = mapped_column(UTCDateTime())
