"""The notifier: sends the outbox (Telegram, e-mail) after the lead's transaction has committed.

A notification is claimed with a lease in a short transaction, sent with no transaction open (a slow
Telegram must never hold the store's write lock or delay a lead), then marked sent — or retried with
backoff, or ``dead`` after ``[notify] max_attempts`` or at once on an answer that will never change
(chat not found, bot blocked). Tokens never appear in logs or stored errors. The claim, the lease and
the backoff are the leased queue's (hub.outbox.queue).
"""

from __future__ import annotations

import logging
import smtplib
import threading
from datetime import datetime
from email.message import EmailMessage

import requests
from sqlalchemy import bindparam

from hub.outbox.queue import LeasedQueue, Retries, run_loop
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import Notification, NotificationStatus, utcnow

log = logging.getLogger("hub.outbox.notify")
LEASE_SECONDS = 120
# A failed send is tried again after about 5 s, then twice as long each time, at most half an hour apart.
BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS = 5, 1800


class SendFailed(Exception):
    def __init__(self, message: str, retriable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retriable, self.retry_after = retriable, retry_after


_NOTIFICATIONS = Notification.__table__
# A claimed notification stays pending: its lease is its next_attempt_at, so if we die mid-send it is due
# again, and sent again, after the lease.
NOTIFICATIONS = LeasedQueue(
    _NOTIFICATIONS, waiting=NotificationStatus.PENDING, dead=NotificationStatus.DEAD,
    due=(_NOTIFICATIONS.c.status == NotificationStatus.PENDING, _NOTIFICATIONS.c.next_attempt_at <= bindparam("now")),
    order_by=(_NOTIFICATIONS.c.id,), lease=_NOTIFICATIONS.c.next_attempt_at, claimed={},
    returning=(_NOTIFICATIONS.c.id, _NOTIFICATIONS.c.lead_id, _NOTIFICATIONS.c.channel, _NOTIFICATIONS.c.recipient,
               _NOTIFICATIONS.c.subject, _NOTIFICATIONS.c.text, _NOTIFICATIONS.c.attempts),
    peek=True)


class Notifier:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.config = hub.config.notify
        self.retries = Retries(self.config.max_attempts, BACKOFF_BASE_SECONDS, BACKOFF_MAX_SECONDS)
        self.http = requests.Session()

    def _scrub(self, text: str) -> str:
        for secret in (self.config.telegram.bot_token if self.config.telegram else None,
                       self.config.email.password if self.config.email else None):
            if secret:
                text = text.replace(secret, "***")
        return text

    def send_telegram(self, chat_id: str, text: str) -> None:
        tg = self.config.telegram
        if tg is None:
            raise SendFailed("no [notify.telegram] configured", retriable=False)
        try:
            resp = self.http.post(f"{tg.api_url.rstrip('/')}/bot{tg.bot_token}/sendMessage",
                                  json={"chat_id": chat_id, "text": text[:4096], "disable_web_page_preview": True},
                                  timeout=self.config.timeout_seconds)
        except requests.RequestException as exc:
            raise SendFailed(f"Telegram unreachable: {type(exc).__name__}") from None
        try:
            body = resp.json()
        except ValueError:
            body = {}
        if resp.status_code == 200 and body.get("ok"):
            return
        description = body.get("description") or f"HTTP {resp.status_code}"
        if resp.status_code == 429:
            raise SendFailed(f"Telegram: {description}", retry_after=(body.get("parameters") or {}).get("retry_after"))
        # 400 (chat not found), 401 (bad token), 403 (bot blocked) will not change by retrying.
        raise SendFailed(f"Telegram: {description}", retriable=resp.status_code >= 500)

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
            try:
                if n.channel == "telegram":
                    self.send_telegram(n.recipient, f"{n.subject}\n{n.text}")   # a chat has no subject line
                else:
                    self.send_email(n.recipient, n.subject, n.text)
            except SendFailed as exc:
                error = self._scrub(str(exc))
                # A Retry-After of 0 (or none) leaves the wait to the backoff.
                values, delay = NOTIFICATIONS.failed(n.attempts, error, self.retries, utcnow(),
                                                     retry_after=exc.retry_after or None, final=not exc.retriable)
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
                NOTIFICATIONS.write(s, n.id, values)
        return counts

    def run_forever(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        run_loop(lambda: sum(self.send_due().values()), stop, self.hub.notification_queued, poll_seconds,
                 pause_after_error=poll_seconds, what="notifier: sending")
