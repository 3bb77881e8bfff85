"""Notifications: Telegram through python-telegram-bot against a real local Bot API server
(tests/helpers/fake_telegram.py), a real local SMTP server, and proof that a failing notifier never loses or
delays a lead."""

from __future__ import annotations

from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import select

from hub.config import load_config
from hub.outbox.notify import Notifier
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from hub.scheduler import Scheduler
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent, Lead, Notification, utcnow
from tests.helpers.procs import free_port

TOKEN = "123456789:AAF-test-token-not-real"


class Inbox:
    def __init__(self):
        self.messages = []

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, envelope.content.decode("utf-8", "replace")))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


def notify_config(smtp_port: int, email: bool = True, api_url: str = "https://api.telegram.org") -> str:
    return f'''
[[teams]]
name = "sales"
[[managers]]
name = "Olga"
team = "sales"
telegram_chat_id = "100500"
email = "olga@example.ru"
working_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[[routing.rules]]
name = "all"
team = "sales"
sla_minutes = 15
[notify]
base_url = "https://hub.example.ru"
max_attempts = 3
[notify.telegram]
bot_token = "{TOKEN}"
api_url = "{api_url}"
''' + (f'''[notify.email]
host = "127.0.0.1"
port = {smtp_port}
from = "hub@example.ru"
''' if email else "")


@pytest.fixture
def hub_with_notify(write_config, smtp, fake_telegram):
    h = Hub(load_config(write_config(notify_config(smtp[0], api_url=fake_telegram.url))))
    yield h
    h.dispose()


def deliver(hub: Hub, payload: dict) -> None:
    from hub.web.app import create_app

    with create_app(hub=hub).test_client() as c:
        assert c.post("/hooks/site", json=payload).status_code == 200


def notifications(hub: Hub) -> list[Notification]:
    with transaction(hub.engine, read_only=True) as s:
        return list(s.scalars(select(Notification).order_by(Notification.id)))


def test_the_owner_gets_a_telegram_message_and_an_email(hub_with_notify, smtp, fake_telegram):
    hub, (_, inbox) = hub_with_notify, smtp
    deliver(hub, {"name": "Иван", "phone": "8 912 345-67-89", "message": "Где оплатить?"})
    Worker(hub).drain()
    assert fake_telegram.calls == []                  # nothing is sent inside the lead's transaction
    assert Notifier(hub).send_due() == {"sent": 2, "retried": 0, "dead": 0}
    [call] = fake_telegram.calls
    sent = call.params
    assert (call.token, call.method, sent["chat_id"]) == (TOKEN, "sendMessage", "100500")
    assert sent["link_preview_options"] == {"is_disabled": True}
    # The manager bot's buttons; "Open" too, as the hub's address is https.
    assert fake_telegram.buttons(sent) == ["take:1", "try:1", "cb1h:1", "cbtm:1", "ref?:1",
                                           "https://hub.example.ru/leads/1"]
    assert "Иван" in sent["text"] and "+79123456789" in sent["text"] and "· site ·" in sent["text"]
    assert sent["text"].startswith("New lead #1\n")
    assert "https://hub.example.ru/leads/1" in sent["text"]
    [(to, mail)] = inbox.messages
    assert to == ["olga@example.ru"] and "Subject: New lead #1" in mail
    assert {n.status for n in notifications(hub)} == {"sent"}


def test_a_failing_telegram_never_loses_or_delays_a_lead(hub_with_notify, caplog, fake_telegram):
    hub = hub_with_notify
    caplog.set_level("DEBUG")                         # PTB and httpx log URLs (with the token) at DEBUG and INFO
    fake_telegram.fail("sendMessage", 502, times=100)
    deliver(hub, {"phone": "+79120000001"})
    deliver(hub, {"phone": "+79120000002"})
    assert Worker(hub).drain() == 2                   # the leads are in, owned, committed …
    with transaction(hub.engine, read_only=True) as s:
        assert [e.status for e in s.scalars(select(InboundEvent))] == [EventStatus.PROCESSED] * 2
        assert [lead.owner for lead in s.scalars(select(Lead))] == ["Olga", "Olga"]
    notifier = Notifier(hub)
    assert notifier.send_due()["retried"] == 2        # … while Telegram is down: retried later, with backoff
    telegram = [n for n in notifications(hub) if n.channel == "telegram"]
    assert all(n.status == "pending" and n.attempts == 1 and n.next_attempt_at > utcnow() for n in telegram)
    assert all(TOKEN not in (n.last_error or "") for n in telegram)
    assert TOKEN not in caplog.text
    later = utcnow() + timedelta(days=1)
    notifier.send_due(now=later)
    notifier.send_due(now=later + timedelta(days=1))
    telegram = [n for n in notifications(hub) if n.channel == "telegram"]
    assert [(n.status, n.attempts) for n in telegram] == [("dead", 3), ("dead", 3)]
    assert telegram[0].last_error == "Telegram unreachable: Bad Gateway"
    assert TOKEN not in caplog.text


@pytest.mark.parametrize("status, error", [(403, "Telegram: Forbidden: bot was blocked by the user"),
                                           (400, "Telegram: Chat not found")])
def test_telegram_answers_that_will_not_change_are_not_retried(write_config, smtp, fake_telegram, status, error):
    hub = Hub(load_config(write_config(notify_config(smtp[0], email=False, api_url=fake_telegram.url))))
    fake_telegram.fail("sendMessage", status)
    deliver(hub, {"phone": "+79120000001"})
    Worker(hub).drain()
    Notifier(hub).send_due()
    [n] = notifications(hub)
    assert (n.status, n.attempts, n.last_error) == ("dead", 1, error)
    hub.dispose()


def test_telegram_flood_control_is_respected(write_config, smtp, fake_telegram):
    hub = Hub(load_config(write_config(notify_config(smtp[0], email=False, api_url=fake_telegram.url))))
    fake_telegram.fail("sendMessage", 429, retry_after=37)
    deliver(hub, {"phone": "+79120000001"})
    Worker(hub).drain()
    before = utcnow()
    Notifier(hub).send_due()
    [n] = notifications(hub)
    assert 36 <= (n.next_attempt_at - before).total_seconds() <= 39
    assert Notifier(hub).send_due(now=before + timedelta(seconds=30))["sent"] == 0      # not before it is due
    assert Notifier(hub).send_due(now=before + timedelta(seconds=40))["sent"] == 1
    assert len(fake_telegram.of("sendMessage")) == 2
    hub.dispose()


def test_telegram_unreachable_is_retried(write_config, smtp, caplog):
    nobody = f"http://127.0.0.1:{free_port()}"         # nothing listens there
    hub = Hub(load_config(write_config(notify_config(smtp[0], email=False, api_url=nobody))))
    caplog.set_level("DEBUG")
    deliver(hub, {"phone": "+79120000001"})
    Worker(hub).drain()
    assert Notifier(hub).send_due()["retried"] == 1
    [n] = notifications(hub)
    assert n.last_error.startswith("Telegram unreachable: httpx.ConnectError")
    assert TOKEN not in n.last_error and TOKEN not in caplog.text
    hub.dispose()


def test_an_smtp_server_that_is_down_is_retried(write_config):
    hub = Hub(load_config(write_config(_email_only(free_port()))))      # nothing listens on that port
    deliver(hub, {"phone": "+79120000001"})
    Worker(hub).drain()
    assert Notifier(hub).send_due()["retried"] == 1
    [n] = notifications(hub)
    assert n.channel == "email" and n.last_error.startswith("SMTP: ConnectionRefusedError")
    hub.dispose()


def _email_only(port: int) -> str:
    config = notify_config(port)
    return config.replace(f'[notify.telegram]\nbot_token = "{TOKEN}"\napi_url = "https://api.telegram.org"\n', "")


def test_one_scheduler_leads_and_another_takes_over_when_it_dies(hub):
    first, second = Scheduler(hub, "first", lease_seconds=60), Scheduler(hub, "second", lease_seconds=60)
    now = utcnow()
    assert first.tick(now) == [] and second.tick(now) is None
    assert first.tick(now + timedelta(seconds=30)) == []            # renews its own lease
    assert second.tick(now + timedelta(seconds=80)) is None         # renewed at +30: still valid at +80
    assert second.tick(now + timedelta(seconds=91)) == []           # first stopped renewing: second leads
    assert first.tick(now + timedelta(seconds=92)) is None


def test_a_daily_digest_of_queued_and_overdue_leads_reaches_the_team_lead(write_config, smtp, fake_telegram):
    config = notify_config(smtp[0], email=False, api_url=fake_telegram.url).replace('[[teams]]\nname = "sales"\n',
                                                         '[[teams]]\nname = "sales"\nlead = "Olga"\n')
    config = config.replace("max_attempts = 3\n", 'max_attempts = 3\ndigest_at = "09:00"\n')
    hub = Hub(load_config(write_config(config)))
    deliver(hub, {"phone": "+79120000001"})
    Worker(hub).drain()
    Notifier(hub).send_due()                                   # the assignment message
    with transaction(hub.engine, read_only=True) as s:
        due = s.scalars(select(Lead)).one().sla_due_at
    day = due.replace(hour=8, minute=0) + timedelta(days=1)
    scheduler = Scheduler(hub, "only")
    scheduler.tick(day)                                        # 08:00: escalated (nobody else), no digest yet
    assert [n.subject for n in notifications(hub)] == ["New lead #1", "Lead #1 escalated"]
    scheduler.tick(day.replace(hour=9, minute=1))
    scheduler.tick(day.replace(hour=9, minute=30))             # once a day, however often it ticks
    digests = [n for n in notifications(hub) if n.subject.startswith("Leads digest, ")]
    assert len(digests) == 1 and digests[0].recipient == "100500"
    assert "Not taken in time: 1\n  #1 Olga" in digests[0].text
    hub.dispose()
