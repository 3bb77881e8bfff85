"""The notifier: sends the outbox (Telegram, e-mail) after the lead's transaction has committed.

A notification is claimed with a lease in a short transaction, sent with no transaction open (a slow
Telegram must never hold the store's write lock or delay a lead), then marked sent — or retried with
backoff, or ``dead`` after ``[notify] max_attempts`` or at once on an answer that will never change
(chat not found, bot blocked). Tokens never appear in logs or stored errors. The claim, the lease and
the backoff are the leased queue's (hub.outbox.queue).

Telegram goes through hub.telegram_api (python-telegram-bot). A message about a lead carries the manager
bot's buttons (hub/outbox/manager_keyboard.py), and the message it became is stored (notification_message) so
that a press can redraw it.
"""

from __future__ import annotations

import logging
import smtplib
import threading
import traceback
from datetime import datetime
from email.message import EmailMessage

from sqlalchemy import bindparam, select

from hub.outbox.client_answer import send_client_answer
from hub.outbox.manager_keyboard import LEAD_ACTION_KINDS, REDRAW, lead_buttons, manager_for_chat, redraws
from hub.outbox.messages import language_of
from hub.outbox.queue import LeasedQueue, Retries, SendFailed, run_loop
from hub.runtime import Hub
from hub.store.db import insert_ignoring_conflicts, transaction
from hub.store.models import Lead, Notification, NotificationMessage, NotificationStatus, utcnow
from hub.telegram_api import Buttons, TelegramApi, TelegramError

log = logging.getLogger("hub.outbox.notify")
LEASE_SECONDS = 120
# A failed send is tried again after about 5 s, then twice as long each time, at most half an hour apart.
BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS = 5, 1800


_NOTIFICATIONS = Notification.__table__
# A claimed notification stays pending: its lease is its next_attempt_at, so if we die mid-send it is due
# again, and sent again, after the lease.
NOTIFICATIONS = LeasedQueue(
    _NOTIFICATIONS, waiting=NotificationStatus.PENDING, dead=NotificationStatus.DEAD,
    due=(_NOTIFICATIONS.c.status == NotificationStatus.PENDING, _NOTIFICATIONS.c.next_attempt_at <= bindparam("now")),
    order_by=(_NOTIFICATIONS.c.id,), lease=_NOTIFICATIONS.c.next_attempt_at, claimed={},
    returning=(_NOTIFICATIONS.c.id, _NOTIFICATIONS.c.lead_id, _NOTIFICATIONS.c.channel, _NOTIFICATIONS.c.kind,
               _NOTIFICATIONS.c.source, _NOTIFICATIONS.c.recipient,
               _NOTIFICATIONS.c.subject, _NOTIFICATIONS.c.text, _NOTIFICATIONS.c.attempts),
    peek=True)


class Notifier:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.config = hub.config.notify
        self.retries = Retries(self.config.max_attempts, BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS)
        self._telegram: TelegramApi | None = None     # made by the first Telegram send, in the notifier's thread

    def _scrub(self, text: str) -> str:
        for secret in (self.config.telegram.bot_token if self.config.telegram else None,
                       self.config.email.password if self.config.email else None):
            if secret:
                text = text.replace(secret, "***")
        return text

    def send_telegram(self, chat_id: str, text: str, buttons: Buttons | None = None) -> int:
        """Sends through the Bot API; returns the message_id. Raises SendFailed, retriable or not."""
        try:
            return self._telegram_api().send_message(chat_id, text, buttons)
        except TelegramError as exc:
            raise SendFailed(exc.message, exc.retriable, exc.retry_after) from None

    def _telegram_api(self) -> TelegramApi:
        tg = self.config.telegram
        if tg is None:
            raise SendFailed("no [notify.telegram] configured", retriable=False)
        if self._telegram is None:
            self._telegram = TelegramApi(tg.bot_token, tg.api_url, self.config.timeout_seconds)
        return self._telegram

    def redraw(self, lead_id: int | None) -> None:
        """Edit the lead's recent Telegram messages to show where it stands now (a change made in the web, the
        API, the CLI or by the SLA sweep). A message that cannot be edited any more (its chat deleted it) is left
        as it is; a Telegram that is down is tried again."""
        if lead_id is None or self.config.telegram is None:
            return
        with transaction(self.hub.engine, read_only=True) as s:
            lead = s.get(Lead, lead_id)
            edits = redraws(s, self.hub.config, lead) if lead is not None else []
        for edit in edits:
            try:
                self._telegram_api().edit_message(edit.chat_id, edit.message_id, edit.text, edit.buttons)
            except TelegramError as exc:
                if exc.retriable:
                    raise SendFailed(exc.message, True, exc.retry_after) from None
                log.info("lead=%s: a message was not redrawn: %s", lead_id, exc.message)

    def _lead_buttons(self, lead_id: int | None, kind: str | None, chat_id: str) -> Buttons | None:
        """The manager bot's keyboard for a message about a lead, in its recipient's language."""
        if lead_id is None or kind not in LEAD_ACTION_KINDS:
            return None
        config = self.hub.config
        with transaction(self.hub.engine, read_only=True) as s:
            status = s.scalar(select(Lead.status).where(Lead.id == lead_id))
            manager = manager_for_chat(s, config, chat_id)
            lang = language_of(s, config, manager) if manager else config.ui.default_language
        return lead_buttons(config, lead_id, status, lang)

    def send_email(self, to: str, subject: str, text: str) -> None:
        cfg = self.config.email
        if cfg is None:
            raise SendFailed("no [notify.email] configured", retriable=False)
        message = EmailMessage()
        message["From"], message["To"], message["Subject"] = cfg.sender, to, subject
        message.set_content(text)
        try:
            with smtplib.SMTP(cfg.host, cfg.port, timeout=self.config.timeout_seconds) as smtp:
                if cfg.starttls:
                    smtp.starttls()
                if cfg.username:
                    smtp.login(cfg.username, cfg.password or "")
                smtp.send_message(message)
        except smtplib.SMTPRecipientsRefused as exc:
            raise SendFailed(f"SMTP refused the recipient: {exc.recipients}", retriable=False) from None
        except (OSError, smtplib.SMTPException) as exc:
            raise SendFailed(f"SMTP: {type(exc).__name__}: {exc}") from None

    def send_due(self, now: datetime | None = None, limit: int = 50) -> dict[str, int]:
        """Send what is due; returns counts of sent / retried / dead."""
        counts = {"sent": 0, "retried": 0, "dead": 0}
        for n in NOTIFICATIONS.claim(self.hub.engine, now or utcnow(), limit, LEASE_SECONDS).rows:
            values: dict[str, object]
            message_id: int | None = None
            try:
                if n.channel.startswith("client_"):       # the answer to a client, by their source's channel
                    send_client_answer(self.hub, n, self.send_email, self.config.timeout_seconds)
                elif n.kind == REDRAW:                  # the lead changed elsewhere: its chats show it
                    self.redraw(n.lead_id)
                elif n.channel == "telegram":
                    message_id = self.send_telegram(n.recipient, f"{n.subject}\n{n.text}",   # a chat has no subject
                                                    self._lead_buttons(n.lead_id, n.kind, n.recipient))
                else:
                    self.send_email(n.recipient, n.subject, n.text)
            except Exception as exc:  # noqa: BLE001 - one row's surprise must not strand the other claimed rows
                failure = exc if isinstance(exc, SendFailed) else SendFailed(f"unexpected {type(exc).__name__}")
                if not isinstance(exc, SendFailed):     # where, not what: its text may hold a chat id or address
                    frame = traceback.extract_tb(exc.__traceback__)[-1]
                    log.error("notification=%s lead=%s: %s at %s:%s", n.id, n.lead_id, type(exc).__name__,
                              frame.filename, frame.lineno)
                error = self._scrub(str(failure))
                # A Retry-After of 0 (or none) leaves the wait to the backoff.
                values, delay = NOTIFICATIONS.failed(n.attempts, error, self.retries, utcnow(),
                                                     retry_after=failure.retry_after or None,
                                                     final=not failure.retriable)
                if delay is None:
                    outcome = "dead"
                    log.error("notification=%s lead=%s %s dead: %s", n.id, n.lead_id, n.channel, error)
                else:
                    outcome = "retried"
                    log.warning("notification=%s lead=%s %s failed (attempt %s), retry in %.0fs: %s",
                                n.id, n.lead_id, n.channel, n.attempts, delay, error)
            else:
                values, outcome = {"status": NotificationStatus.SENT, "sent_at": utcnow()}, "sent"
                log.info("notification=%s lead=%s sent by %s", n.id, n.lead_id, n.channel)
            counts[outcome] += 1
            with transaction(self.hub.engine) as s:
                # Only over a row still pending: `hub persons forget` may have made it dead (and erased its
                # recipient) while it was in flight, and a retry must not bring it back.
                NOTIFICATIONS.write(s, n.id, values, _NOTIFICATIONS.c.status == NotificationStatus.PENDING)
                if message_id is not None and outcome == "sent":
                    insert_ignoring_conflicts(s, NotificationMessage.__table__, ["notification_id"], dict(
                        notification_id=n.id, lead_id=n.lead_id, chat_id=str(n.recipient), message_id=message_id,
                        sent_at=utcnow()))
        return counts

    def run_forever(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        run_loop(lambda: sum(self.send_due().values()), stop, self.hub.notification_queued, poll_seconds,
                 pause_after_error=poll_seconds, what="notifier: sending")
        if self._telegram is not None:
            self._telegram.close()
