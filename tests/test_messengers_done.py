"""Issue #20's "done when", in one story: a manager linked to the bot takes a lead, sets a call-back and
refuses another with a reason, all from Telegram (a local fake Bot API), and the web app, Bitrix24 and amoCRM
(their request and answer shapes, through `responses`) show the same."""

from __future__ import annotations

import pytest
import responses
from sqlalchemy import select

from hub.config import load_config
from hub.desk.manager_bot import create_link_code
from hub.desk.manager_bot_updates import process
from hub.outbox.forwarding import Forwarder
from hub.outbox.notify import Notifier
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import Lead, LeadTask, utcnow
from hub.telegram_api import TelegramApi
from hub.web.app import create_app
from tests.helpers.web import WEB_CONFIG, make_users, token_for
from tests.test_manager_bot import TOKEN, bot_config
from tests.test_sink_worklog import SINKS, Amo, Portal
from tests.test_sinks import deliver, drain

MAX = 5001


@pytest.fixture
def story(write_config, fake_telegram):
    hub = Hub(load_config(write_config(bot_config(fake_telegram.url, WEB_CONFIG + SINKS)
                                       + '\n[ui]\ndefault_language = "ru"\n')))
    make_users(hub)
    api = TelegramApi(TOKEN, fake_telegram.url)
    yield hub, api, fake_telegram
    api.close()
    hub.dispose()


def press(hub: Hub, api: TelegramApi, fake, message_id: int, data: str) -> str:
    """Max presses a button under the message; returns the toast Telegram shows him."""
    process(hub, api, fake.press_update(MAX, MAX, message_id, data))
    return fake.of("answerCallbackQuery")[-1].get("text") or ""


def test_a_linked_manager_works_two_leads_from_telegram_and_the_web_and_both_crms_agree(story):
    hub, api, fake = story
    client = create_app(hub=hub).test_client()
    with transaction(hub.engine) as s:
        code = create_link_code(s, hub.config, "Max", utcnow())
    process(hub, api, fake.text_update(MAX, f"/start {code}"))

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal, amo = Portal(rsps), Amo(rsps)
        forwarder = Forwarder(hub)
        deliver(hub, client, "+79120000001")                       # "site": routed to Max
        deliver(hub, client, "+79120000002")
        Notifier(hub).send_due()
        with transaction(hub.engine, read_only=True) as s:
            first, second = s.scalars(select(Lead.id).order_by(Lead.id)).all()
        messages = {m["text"].split("\n")[0]: mid for (chat, mid), m in fake.messages.items() if chat == str(MAX)}
        first_message = next(mid for title, mid in messages.items() if str(first) in title)
        second_message = next(mid for title, mid in messages.items() if str(second) in title)
        assert drain(forwarder)["sent"] == 4                       # each lead created in each CRM

        assert press(hub, api, fake, first_message, f"take:{first}") == "Лид взят в работу."
        assert press(hub, api, fake, first_message, f"cb1h:{first}") == "Перезвон запланирован."
        press(hub, api, fake, second_message, f"ref?:{second}")
        assert press(hub, api, fake, second_message, f"ref:{second}:chose_competitor") == "Лид закрыт с отказом."
        drain(forwarder)

    # Telegram: each message redrawn with where its lead stands.
    assert "В работе у Max" in fake.messages[(str(MAX), first_message)]["text"]
    assert "Перезвонить" in fake.messages[(str(MAX), first_message)]["text"]
    assert "Отказ" in fake.messages[(str(MAX), second_message)]["text"]
    # The web app (the API Max's own token reads): the same statuses, owner, reason and call-back.
    headers = token_for(hub, "max@example.ru")
    taken = client.get(f"/api/v1/leads/{first}", headers=headers).get_json()
    refused = client.get(f"/api/v1/leads/{second}", headers=headers).get_json()
    assert (taken["status"], taken["owner"]) == ("in_work", "Max")
    assert (refused["status"], refused["refuse_reason"]) == ("refused", "chose_competitor")
    with transaction(hub.engine, read_only=True) as s:
        task = s.scalars(select(LeadTask).where(LeadTask.lead_id == first)).one()
        assert task.created_by == "Max" and 3590 <= (task.due_at - task.created_at).total_seconds() <= 3610
    # Bitrix24: in work, and the refusal as JUNK with its reason told once on the timeline.
    assert portal.leads[100]["STATUS_ID"] == "IN_PROCESS" and portal.leads[100]["ASSIGNED_BY_ID"] == 7
    assert portal.leads[101]["STATUS_ID"] == "JUNK"
    assert [c["COMMENT"] for c in portal.comments] == ["Причина отказа: выбрал конкурента"]
    # amoCRM: the refused lead lost (143) with the mapped loss reason.
    lost = [p for p in amo.patches if p.get("status_id") == 143]
    assert len(lost) == 1 and lost[0]["loss_reason_id"] == 555
