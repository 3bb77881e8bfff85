"""The client hears back: their request is taken, by whom, and when they will be called.

A source with ``[sources.answer]`` answers each lead once, in the source's language, by the way the client
came: the Telegram bot or the VK community replies in the chat, a site form (or any other source) sends an
e-mail when the client gave an address. The answer is queued in the worker's transaction right after the
lead is routed (an outbox row of kind ``client_answer``), and sent after commit by the notifier like any
notification: retried with backoff, never holding up the lead.

Never twice for one lead: a partial unique index allows one ``client_answer`` row per lead, and the INSERT
ignores the conflict, so a client who writes again (a touch on the open lead, a reopened lead) or two workers
racing on one lead's events still produce one answer. A lead that comes back as a *new* lead
(``[identity] on_return = "new_lead"``) is a new request, and is answered again.

When:
- The owner is known: "<first name> … will call you within <within_minutes> minutes".
- The lead waits in the queue (nobody available, out of working hours): answered at once, without a name or
  a time ("a manager will call you as soon as one is free"). Waiting for an owner could mean a night of
  silence, and the client's first question is whether the request arrived at all; a time we cannot keep
  would be worse than none.
- Telegram: only once the client has shared their phone. Before that the bot's own conversation is asking
  for it (connectors/telegram.py), and "we will call you" to someone whose number we lack would be false.
- VK: the first routed message or lead form; "will call you" with a phone, else "will get in touch".
- E-mail: only when this delivery carries a valid address ("will call you" when it carries a phone too).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from functools import cache
from typing import Any, Protocol

from jinja2 import TemplateError
from sqlalchemy import bindparam, select, text
from sqlalchemy.orm import Session

from hub.answer_config import answer_channel
from hub.config import Config, SourceConfig
from hub.outbox.messages import render
from hub.outbox.queue import SendFailed
from hub.runtime import Hub
from hub.store.db import dialect_insert_for, mark_queued
from hub.store.models import CLIENT_ANSWER_PREDICATE, Notification, NotificationStatus, utcnow
from hub.telegram_api import TelegramApi, TelegramError
from hub.vk_api_client import VkClient, VkError, community_api

log = logging.getLogger("hub.outbox.client_answer")

KIND = "client_answer"
TELEGRAM, VK, EMAIL = "client_telegram", "client_vk", "client_email"
# VK keeps random_id per community as a signed 32-bit number: a retry of notification N sends the same one, so
# VK delivers it once even when our first try timed out after VK had sent it.
VK_RANDOM_ID_MODULO = 2 ** 31
_NOTIFICATIONS = Notification.__table__
ANSWERED = select(_NOTIFICATIONS.c.id).where(_NOTIFICATIONS.c.lead_id == bindparam("lead_id"),
                                             _NOTIFICATIONS.c.kind == KIND).limit(1)


@dataclass(frozen=True)
class ClientContacts:
    """What this delivery says about the client: the valid contacts, as normalised."""

    name: str | None
    phones: list[str]
    emails: list[str]
    messenger_ids: dict[str, str]


def recipient_for(channel: str, contacts: ClientContacts) -> str | None:
    """The chat, VK peer or address the answer goes to; None: this delivery gives no way to answer (yet)."""
    if channel == TELEGRAM:
        # A private chat's id is the user's id.
        return contacts.messenger_ids.get("telegram") if contacts.phones else None
    if channel == VK:
        return contacts.messenger_ids.get("vk")
    return contacts.emails[0] if contacts.emails else None


def first_name(manager: str) -> str:
    """The manager's first name: the first word of their [[managers]] name ("Olga Smirnova" → "Olga")."""
    return manager.split()[0] if manager.strip() else manager


@cache
def _insert(dialect: str) -> Any:
    # The conflict target names the partial index by its columns and predicate (both databases require the
    # predicate to match the index's for it to count as the target).
    return (dialect_insert_for(dialect)(_NOTIFICATIONS)
            .on_conflict_do_nothing(index_elements=["lead_id"], index_where=text(CLIENT_ANSWER_PREDICATE))
            .returning(_NOTIFICATIONS.c.id))


def queue_client_answer(session: Session, config: Config, source: SourceConfig, lead_id: int, owner: str | None,
                        contacts: ClientContacts) -> int | None:
    """Queue the lead's one answer to the client, in the caller's (the worker's) transaction. Returns the new
    notification's id, or None: no answer configured, no way to reach the client, or answered already."""
    answer = source.answer
    if answer is None:
        return None
    channel = answer_channel(source.connector)
    recipient = recipient_for(channel, contacts)
    if recipient is None:
        return None
    if session.execute(ANSWERED, {"lead_id": lead_id}).first() is not None:
        return None                 # the common case of a client writing again: skip rendering
    lang = answer.language or config.ui.default_language
    context: dict[str, Any] = dict(owner=first_name(owner) if owner else None, minutes=answer.within_minutes,
                   by_phone=bool(contacts.phones), client_name=contacts.name)
    subject, body = render(config, KIND, lang, config.ui.timezone, **context)
    if answer.text:
        # The config's text is the body only: a placeholder first line stands for the subject it has none of.
        try:
            _, body = render(config, KIND, lang, config.ui.timezone, own_text="-\n" + answer.text, **context)
        except TemplateError as exc:
            # Checked at load with sample values, but a value can still surprise it: the client gets the built-in
            # text rather than the lead failing (this runs in the lead's transaction).
            log.error("source=%s: [sources.answer] text failed (%s), the built-in answer is sent instead",
                      source.name, type(exc).__name__)
    now = utcnow()
    new_id = session.connection().execute(_insert(session.get_bind().dialect.name), dict(
        lead_id=lead_id, channel=channel, kind=KIND, recipient=recipient, source=source.name,
        subject=(answer.subject or subject)[:255], text=body, status=NotificationStatus.PENDING, attempts=0,
        next_attempt_at=now, created_at=now)).scalar_one_or_none()
    if new_id is not None:
        mark_queued(session, "notification")
    return new_id


class ClaimedAnswer(Protocol):
    """The notifier's claimed row, as far as sending an answer needs it."""

    id: int
    channel: str
    source: str | None          # the source whose bot or community answers
    recipient: str
    subject: str
    text: str


class EmailSender(Protocol):
    def __call__(self, to: str, subject: str, text: str) -> None: ...


def send_client_answer(hub: Hub, row: ClaimedAnswer, send_email: EmailSender, timeout: float) -> None:
    """Send one claimed answer by its source's bot or community, or by the notifier's SMTP. Raises
    SendFailed (retriable or not); the client's address and the tokens stay out of its text."""
    if row.channel == EMAIL:
        try:
            send_email(row.recipient, row.subject, row.text)
        except SendFailed as exc:               # SMTP's refusal names the recipient: the client's address
            raise SendFailed(str(exc).replace(row.recipient, "***"), exc.retriable, exc.retry_after) from None
        return
    source = hub.sources.get(row.source or "")
    if source is None:
        raise SendFailed(f"source {row.source!r} is no longer in the config: its bot or community cannot "
                         f"send the answer", retriable=False)
    settings = source.connector.settings
    if row.channel == TELEGRAM:
        token = getattr(settings, "bot_token", None)
        if not token:
            raise SendFailed(f"source {source.name!r} has no bot_token to answer with", retriable=False)
        # A client of its own per answer, closed after it: answers are one per lead and each source has its own
        # bot, so keeping one open per source in the notifier's thread would save a connection set-up (a few ms
        # next to the HTTPS round trip) at the price of clients to track and close.
        api = TelegramApi(token, getattr(settings, "api_url", "https://api.telegram.org"), timeout)
        try:
            api.send_message(row.recipient, row.text)      # a chat has no subject line
        except TelegramError as exc:
            raise SendFailed(exc.message, exc.retriable, exc.retry_after) from None
        finally:
            api.close()
    elif row.channel == VK:
        community = community_api(settings)
        if community is None:
            raise SendFailed(f"source {source.name!r} has no access_token to answer with", retriable=False)
        client = VkClient(*community, timeout=timeout)
        try:
            client.send_message(int(row.recipient), row.text, random_id=row.id % VK_RANDOM_ID_MODULO)
        except VkError as exc:
            raise SendFailed(exc.message, exc.retriable) from None
    else:
        raise SendFailed(f"unknown answer channel {row.channel!r}", retriable=False)
