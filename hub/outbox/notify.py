"""The notifier: sends the outbox (Telegram, e-mail) after the lead's transaction has committed.

A notification is claimed with a lease in a short transaction, sent with no transaction open (a slow
Telegram must never hold the store's write lock or delay a lead), then marked sent — or retried with
backoff, or ``dead`` after ``[notify] max_attempts`` or at once on an answer that will never change
(chat not found, bot blocked). Tokens never appear in logs or stored errors.
"""

from __future__ import annotations

import logging
import smtplib
import threading
from datetime import datetime, timedelta
from email.message import EmailMessage

import requests
from sqlalchemy import bindparam, select, update

from hub.store.db import transaction
from hub.store.models import Notification, NotificationStatus, utcnow
from hub.runtime import Hub
from hub.pipeline.worker import backoff_seconds

log = logging.getLogger("hub.outbox.notify")
LEASE_SECONDS = 120


class SendFailed(Exception):
    def __init__(self, message: str, retriable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.retriable, self.retry_after = retriable, retry_after


DUE_NOTIFICATION = (select(Notification.__table__.c.id)
                    .where(Notification.__table__.c.status == NotificationStatus.PENDING,
                           Notification.__table__.c.next_attempt_at <= bindparam("now")).limit(1))


class Notifier:
    def __init__(self, hub: Hub):
        self.hub = hub
        self.config = hub.config.notify
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

    def _claim(self, now: datetime, limit: int) -> list[Notification]:
        # Look before taking the write lock: most polls find nothing, and on SQLite a write transaction
        # for nothing still queues behind every worker's.
        with transaction(self.hub.engine, read_only=True) as s:
            if s.execute(DUE_NOTIFICATION, {"now": now}).first() is None:
                return []
        with transaction(self.hub.engine) as s:
            rows = list(s.scalars(select(Notification).where(
                Notification.status == NotificationStatus.PENDING, Notification.next_attempt_at <= now)
                .order_by(Notification.id).limit(limit).with_for_update(skip_locked=True)))
            for n in rows:       # the lease: if we die mid-send, it is sent again after this
                n.attempts += 1
                n.next_attempt_at = now + timedelta(seconds=LEASE_SECONDS)
            return rows

    def send_due(self, now: datetime | None = None, limit: int = 50) -> dict[str, int]:
        """Send what is due; returns counts of sent / retried / dead."""
        counts = {"sent": 0, "retried": 0, "dead": 0}
        for n in self._claim(now or utcnow(), limit):
            values: dict[str, object]
            try:
                if n.channel == "telegram":
                    self.send_telegram(n.recipient, f"{n.subject}\n{n.text}")   # a chat has no subject line
                else:
                    self.send_email(n.recipient, n.subject, n.text)
            except SendFailed as exc:
                error = self._scrub(str(exc))
                if not exc.retriable or n.attempts >= self.config.max_attempts:
                    values, outcome = {"status": NotificationStatus.DEAD, "last_error": error}, "dead"
                    log.error("notification=%s lead=%s %s dead: %s", n.id, n.lead_id, n.channel, error)
                else:
                    delay = exc.retry_after or backoff_seconds(n.attempts, 5, 1800)
                    values = {"next_attempt_at": utcnow() + timedelta(seconds=delay), "last_error": error}
                    outcome = "retried"
                    log.warning("notification=%s lead=%s %s failed (attempt %s), retry in %.0fs: %s",
                                n.id, n.lead_id, n.channel, n.attempts, delay, error)
            else:
                values, outcome = {"status": NotificationStatus.SENT, "sent_at": utcnow()}, "sent"
                log.info("notification=%s lead=%s sent by %s", n.id, n.lead_id, n.channel)
            counts[outcome] += 1
            with transaction(self.hub.engine) as s:
                s.execute(update(Notification).where(Notification.id == n.id).values(**values))
        return counts

    def run_forever(self, stop: threading.Event, poll_seconds: float = 1.0) -> None:
        while not stop.is_set():
            try:
                self.send_due()
            except Exception:  # noqa: BLE001 — the store may be away for a moment; keep going
                log.exception("notifier: sending failed; retrying")
            self.hub.notification_queued.wait(poll_seconds)
            self.hub.notification_queued.clear()
