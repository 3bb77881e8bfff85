"""The email_imap connector against a real Dovecot: site-request mails become leads, stored before they
are marked, each once."""

from __future__ import annotations

import json
from email.message import EmailMessage

import pytest
from imap_tools import MailBoxUnencrypted

from hub.config import load_config
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from tests.conftest import FIXTURES
from tests.helpers.db import events

MAIL = (FIXTURES / "email_imap" / "site_form_mail.eml").read_bytes()


def source_toml(account: dict, **extra) -> str:
    lines = [f'{k} = {json.dumps(v)}' for k, v in extra.items()]
    return "\n".join(["[[sources]]", 'name = "mail"', 'connector = "email_imap"', f'host = "{account["host"]}"',
                      f'port = {account["port"]}', "ssl = false", f'username = "{account["user"]}"',
                      f'password = "{account["password"]}"', *lines, ""])


@pytest.fixture
def mail_hub(write_config, imap_account):
    def make(**extra):
        return Hub(load_config(write_config(source_toml(imap_account, **extra))))
    return make


def html_mail(to: str, phone: str) -> bytes:
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = "site@example.ru", to, "Заявка"
    msg["Message-ID"] = f"<{phone}@example.ru>"
    msg.set_content("see HTML")
    msg.add_alternative(f"<html><body><table><tr><td>Имя:</td><td>Ирина</td></tr>"
                        f"<tr><td>Телефон:</td><td>{phone}</td></tr></table>"
                        f"<p>utm_source: yandex</p></body></html>", subtype="html")
    msg.add_attachment(b"%PDF-1.4 not a lead", maintype="application", subtype="pdf", filename="price.pdf")
    return msg.as_bytes()


def seen_flags(account: dict, folder: str = "INBOX") -> list[tuple[str, ...]]:
    with MailBoxUnencrypted(account["host"], account["port"]).login(account["user"], account["password"],
                                                                    initial_folder=folder) as mb:
        return [m.flags for m in mb.fetch(mark_seen=False)]


def test_a_site_request_mail_becomes_a_lead_and_is_marked_seen(mail_hub, dovecot, imap_account, runner):
    hub = mail_hub()
    dovecot.deliver(imap_account["user"], MAIL)
    assert "mail: 1 fetched, 1 new" in runner("poll").output
    assert seen_flags(imap_account) == [("\\Seen",)]              # marked only after the store committed
    [stored] = events(hub)
    assert stored.external_id.startswith(f"{imap_account['user']}/INBOX/") and stored.external_id.endswith("/1")
    assert stored.payload["message_id"] == "<20261123101500.4F2A1@example-shop.ru>"
    Worker(hub).drain()
    [lead] = json.loads(runner("leads", "list", "--json").output)
    assert (lead["name"], lead["phones"], lead["emails"], lead["source"]) == (
        "Мария", ["+79035556677"], ["maria@example.org"], "mail")
    touch = lead["first_touch"]
    assert (touch["utm_source"], touch["utm_medium"], touch["utm_campaign"]) == ("vk", "social", "kitchens_nov")
    assert touch["message"] == "Перезвоните, хочу заказать кухню" and touch["channel"] == "email_imap"
    assert "mail: 0 fetched, 0 new" in runner("poll").output          # nothing twice
    hub.dispose()


def test_html_mail_with_an_attachment_and_move_after_storing(mail_hub, dovecot, imap_account, runner):
    hub = mail_hub(after="move", move_to="Leads done")
    dovecot.deliver(imap_account["user"], html_mail(imap_account["user"], "+7 916 111-22-33"))
    dovecot.deliver(imap_account["user"], MAIL)
    assert "mail: 2 fetched, 2 new" in runner("poll").output
    assert seen_flags(imap_account) == [] and len(seen_flags(imap_account, "Leads done")) == 2
    Worker(hub).drain()
    leads = {lead["name"]: lead for lead in json.loads(runner("leads", "list", "--json").output)}
    assert leads["Ирина"]["phones"] == ["+79161112233"]
    assert leads["Ирина"]["first_touch"]["utm_source"] == "yandex"
    hub.dispose()


def test_a_crash_before_marking_refetches_but_stores_once(mail_hub, dovecot, imap_account, runner, monkeypatch):
    from connectors.email_imap import EmailImapConnector

    hub = mail_hub()
    dovecot.deliver(imap_account["user"], MAIL)

    def crash(self, events):
        raise ConnectionResetError("the server went away before the flags were set")
    monkeypatch.setattr(EmailImapConnector, "acknowledge", crash)
    assert "1 fetched, 1 new" in runner("poll").output
    assert seen_flags(imap_account) == [()]                      # not marked …
    monkeypatch.undo()
    from hub.store.db import transaction
    from hub.store.models import PollState
    with transaction(hub.engine) as s:                          # … and, worst case, the cursor lost too
        s.get(PollState, "mail").state = {}
    assert "1 fetched, 0 new" in runner("poll").output           # fetched again, stored once
    assert seen_flags(imap_account) == [("\\Seen",)]
    assert len(events(hub)) == 1
    hub.dispose()


def test_a_wrong_password_is_reported_not_fatal(write_config, imap_account, runner):
    bad = dict(imap_account, password="wrong")
    write_config(source_toml(bad))
    result = runner("poll", "--json", expect=1)
    [report] = json.loads(result.output)
    assert report["error"].startswith("MailboxLoginError") and "wrong" not in report["error"]


def test_the_scheduler_leader_polls_when_due(mail_hub, dovecot, imap_account):
    from datetime import timedelta

    from hub.scheduler import Scheduler
    from hub.store.models import utcnow

    hub = mail_hub(poll_seconds=60)
    leader, standby = Scheduler(hub, "leader"), Scheduler(hub, "standby")
    now = utcnow()
    dovecot.deliver(imap_account["user"], MAIL)
    assert standby.tick(now - timedelta(seconds=1)) == [] and leader.tick(now) is None   # one poller at a time
    assert len(events(hub)) == 1
    dovecot.deliver(imap_account["user"], html_mail(imap_account["user"], "+7 916 111-22-33"))
    standby.tick(now + timedelta(seconds=30))                   # not due yet
    assert len(events(hub)) == 1
    standby.tick(now + timedelta(seconds=61))
    assert len(events(hub)) == 2
    hub.dispose()
