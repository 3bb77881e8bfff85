"""The manager bot: a manager links their Telegram, gets their leads there with buttons, and works them from the
chat exactly as from the web — against a real local Bot API server (tests/helpers/fake_telegram.py), on SQLite
and PostgreSQL."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from click.testing import CliRunner
from sqlalchemy import select

from hub.cli import main as hub_cli
from hub.config import load_config
from hub.desk.manager_bot import create_link_code, stored_offset
from hub.desk.manager_bot_updates import LEASE, UpdatesPoller, holds_lease, process
from hub.outbox.notify import Notifier
from hub.pipeline.routing.assignment import queue_notifications
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import Lead, LeadHistory, LeadTask, NotificationMessage, TelegramLink, TelegramLinkCode, utcnow
from hub.telegram_api import TelegramApi
from tests.helpers.web import WEB_CONFIG, deliver, make_users, token_for, with_manager

TOKEN = "123456789:AAF-manager-bot-token"
MAX, LENA, SID, STRANGER = 5001, 5002, 5003, 6666


def bot_config(fake_url: str, config: str = WEB_CONFIG, telegram: str = "") -> str:
    return config + f'''
[notify]
base_url = "https://hub.example.ru"
[notify.telegram]
bot_token = "{TOKEN}"
api_url = "{fake_url}"
{telegram}'''


@pytest.fixture
def bot(write_config, fake_telegram):
    hub = Hub(load_config(write_config(bot_config(fake_telegram.url))))
    make_users(hub)
    api = TelegramApi(TOKEN, fake_telegram.url)
    yield hub, api, fake_telegram
    api.close()
    hub.dispose()


def web(hub: Hub):
    from hub.web.app import create_app
    return create_app(hub=hub).test_client()


def cli(hub: Hub, *args: str, expect: int = 0):
    """The `hub` command against this hub's own config file (the runner fixture would write its own)."""
    result = CliRunner().invoke(hub_cli, [*args, "--config", str(hub.config.path)], catch_exceptions=False)
    assert result.exit_code == expect, result.output
    return result


def link(hub: Hub, api: TelegramApi, fake, manager: str, user_id: int) -> str:
    with transaction(hub.engine) as s:
        code = create_link_code(s, hub.config, manager, utcnow())
    reply = process(hub, api, fake.text_update(user_id, f"/link {code}"))
    return reply.messages[0][1]


def new_lead(hub: Hub, fake, chat: int, source: str = "site", phone: str = "+79120000001") -> tuple[int, int]:
    """A lead delivered and its notification sent: (lead id, the message's id in ``chat``)."""
    deliver(web(hub), hub, source, phone)
    Notifier(hub).send_due()
    with transaction(hub.engine, read_only=True) as s:
        lead_id = s.scalar(select(Lead.id).order_by(Lead.id.desc()).limit(1))
    message = fake.last_message(chat)
    return lead_id, message["message_id"]


def press(hub: Hub, api: TelegramApi, fake, user_id: int, chat: int, message_id: int, data: str):
    return process(hub, api, fake.press_update(user_id, chat, message_id, data))


def lead_row(hub: Hub, lead_id: int) -> Lead:
    with transaction(hub.engine, read_only=True) as s:
        return s.get(Lead, lead_id)


def history(hub: Hub, lead_id: int) -> list[tuple[str, str]]:
    with transaction(hub.engine, read_only=True) as s:
        return [(h.kind, h.actor) for h in s.scalars(select(LeadHistory).where(LeadHistory.lead_id == lead_id)
                                                     .order_by(LeadHistory.id))]


def last_answer(fake) -> dict:
    return fake.of("answerCallbackQuery")[-1]


def test_a_linked_manager_takes_a_lead_and_sets_call_backs_as_the_web_would(bot):
    hub, api, fake = bot
    assert link(hub, api, fake, "Max", MAX).startswith("Linked: you are Max.")
    lead_id, message_id = new_lead(hub, fake, MAX)           # Max's linked chat gets it: nothing was configured
    sent = fake.last_message(MAX)
    assert sent["text"].startswith(f"New lead #{lead_id}\n")
    assert fake.buttons(sent) == [f"take:{lead_id}", f"try:{lead_id}", f"cb1h:{lead_id}", f"cbtm:{lead_id}",
                                  f"ref?:{lead_id}", f"https://hub.example.ru/leads/{lead_id}"]

    reply = press(hub, api, fake, MAX, MAX, message_id, f"take:{lead_id}")
    assert last_answer(fake)["text"] == "Taken into work." and reply.changed
    lead = lead_row(hub, lead_id)
    assert (lead.status, lead.owner) == ("in_work", "Max")
    shown = fake.messages[(str(MAX), message_id)]
    assert shown["text"].startswith(f"New lead #{lead_id}\n") and "✅ In work with Max since" in shown["text"]
    assert f"take:{lead_id}" not in fake.buttons(shown) and f"try:{lead_id}" in fake.buttons(shown)

    before = utcnow()
    press(hub, api, fake, MAX, MAX, message_id, f"cb1h:{lead_id}")
    press(hub, api, fake, MAX, MAX, message_id, f"cbtm:{lead_id}")
    with transaction(hub.engine, read_only=True) as s:
        tasks = list(s.scalars(select(LeadTask).where(LeadTask.lead_id == lead_id).order_by(LeadTask.due_at)))
    assert [t.created_by for t in tasks] == ["Max", "Max"]
    assert timedelta(minutes=59) < tasks[0].due_at - before < timedelta(minutes=61)
    tomorrow = (before + timedelta(days=1)).date()              # Max's time zone is UTC
    assert tasks[1].due_at == datetime(tomorrow.year, tomorrow.month, tomorrow.day, 10, 0, tzinfo=UTC)
    assert "⏰ Call back:" in fake.messages[(str(MAX), message_id)]["text"]

    # The web API tells the same story: the same history entries, by Max.
    api_lead = web(hub).get(f"/api/v1/leads/{lead_id}", headers=token_for(hub, "max@example.ru")).json
    assert [(h["kind"], h["actor"]) for h in api_lead["history"] if h["actor"] == "Max"] == \
        [("taken", "Max"), ("task", "Max"), ("task", "Max")]
    assert api_lead["status"] == "in_work" and len(api_lead["tasks"]) == 2


def test_a_refusal_opens_the_reasons_and_stores_the_chosen_one(bot):
    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake, MAX)
    press(hub, api, fake, MAX, MAX, message_id, f"ref?:{lead_id}")
    reasons = fake.buttons(fake.messages[(str(MAX), message_id)])
    assert reasons == [f"ref:{lead_id}:{r.code}" for r in hub.config.refuse_reasons] + [f"back:{lead_id}"]
    assert reasons[:4] == [f"ref:{lead_id}:poor_quality", f"ref:{lead_id}:by_mistake",
                           f"ref:{lead_id}:product_not_offered", f"ref:{lead_id}:no_answer_5_attempts"]
    press(hub, api, fake, MAX, MAX, message_id, f"back:{lead_id}")
    assert fake.buttons(fake.messages[(str(MAX), message_id)])[0] == f"take:{lead_id}"

    # A reason that needs five attempts is refused with the web's own words; nothing changes.
    press(hub, api, fake, MAX, MAX, message_id, f"ref:{lead_id}:no_answer_5_attempts")
    answer = last_answer(fake)
    assert answer["show_alert"] is True and "needs 5 contact attempts" in answer["text"]
    assert lead_row(hub, lead_id).status == "new"

    press(hub, api, fake, MAX, MAX, message_id, f"ref:{lead_id}:poor_quality")
    lead = lead_row(hub, lead_id)
    assert (lead.status, lead.refuse_reason) == ("refused", "poor_quality")
    shown = fake.messages[(str(MAX), message_id)]
    assert "❌ Refused: poor quality: wrong contacts" in shown["text"]
    assert fake.buttons(shown) == [f"https://hub.example.ru/leads/{lead_id}"]       # closed: only "Open" stays
    api_lead = web(hub).get(f"/api/v1/leads/{lead_id}", headers=token_for(hub, "max@example.ru")).json
    assert (api_lead["status"], api_lead["refuse_reason"]) == ("refused", "poor_quality")
    assert [h for h in api_lead["history"] if h["kind"] == "status"][0]["actor"] == "Max"

    # A stale press on the closed lead says so and changes nothing.
    press(hub, api, fake, MAX, MAX, message_id, f"take:{lead_id}")
    assert last_answer(fake)["show_alert"] is True and "only a new lead can be taken" in last_answer(fake)["text"]
    assert lead_row(hub, lead_id).status == "refused"


def test_a_strangers_press_is_refused_and_changes_nothing(bot):
    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    link(hub, api, fake, "Sid", SID)                 # another team's manager
    lead_id, message_id = new_lead(hub, fake, MAX)
    edits_before = len(fake.of("editMessageText"))
    press(hub, api, fake, STRANGER, MAX, message_id, f"take:{lead_id}")
    assert last_answer(fake)["show_alert"] is True and "not linked to a manager" in last_answer(fake)["text"]
    press(hub, api, fake, SID, MAX, message_id, f"try:{lead_id}")
    assert last_answer(fake)["text"].startswith("Not your lead")
    lead = lead_row(hub, lead_id)
    assert (lead.status, lead.contact_attempts) == ("new", 0)
    assert history(hub, lead_id) == [("assigned", "hub")]
    assert len(fake.of("editMessageText")) == edits_before          # nothing of the lead shown to them
    press(hub, api, fake, MAX, MAX, message_id, "take:not-a-number")  # nonsense data: an answer, no crash
    assert last_answer(fake)["text"] == "This button is no longer valid."


def test_a_configured_chat_alone_authorises_nothing(write_config, fake_telegram):
    config = with_manager(WEB_CONFIG, "Max", telegram_chat_id=str(MAX))
    hub = Hub(load_config(write_config(bot_config(fake_telegram.url, config))))
    api = TelegramApi(TOKEN, fake_telegram.url)
    lead_id, message_id = new_lead(hub, fake_telegram, MAX)       # the configured chat gets the message …
    press(hub, api, fake_telegram, MAX, MAX, message_id, f"take:{lead_id}")
    assert "not linked to a manager" in last_answer(fake_telegram)["text"]      # … but cannot act on it
    assert lead_row(hub, lead_id).status == "new"
    link(hub, api, fake_telegram, "Max", 7007)                    # linked elsewhere: the linked chat wins
    new_lead(hub, fake_telegram, 7007, phone="+79120000002")
    assert fake_telegram.of("sendMessage")[-2]["chat_id"] == "7007"
    api.close()
    hub.dispose()


def test_a_team_lead_may_act_on_the_teams_leads_and_everyone_sees_who_won(bot):
    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    assert link(hub, api, fake, "Lena", LENA).startswith("Linked: you are Lena.")
    lead_id, message_id = new_lead(hub, fake, MAX)
    press(hub, api, fake, LENA, MAX, message_id, f"try:{lead_id}")
    assert last_answer(fake)["text"] == "Contact attempt counted."
    assert lead_row(hub, lead_id).contact_attempts == 1 and history(hub, lead_id)[-1] == ("attempt", "Lena")
    press(hub, api, fake, LENA, MAX, message_id, f"take:{lead_id}")        # Max's lead: the web's own refusal
    assert "belongs to Max; reassign it first" in last_answer(fake)["text"]
    assert lead_row(hub, lead_id).owner == "Max" and lead_row(hub, lead_id).status == "new"

    # Lena has a message about the same lead too; Max takes it from his, and hers shows who won.
    with transaction(hub.engine) as s:
        queue_notifications(s, hub.config, "Lena", lead_id, "new_lead", about="the same lead")
    Notifier(hub).send_due()
    lenas = fake.last_message(LENA)
    assert f"take:{lead_id}" in fake.buttons(lenas)
    press(hub, api, fake, MAX, MAX, message_id, f"take:{lead_id}")
    lenas = fake.messages[(str(LENA), lenas["message_id"])]
    assert "✅ In work with Max since" in lenas["text"] and f"take:{lead_id}" not in fake.buttons(lenas)
    assert lenas["text"].startswith(f"New lead #{lead_id}\nthe same lead")


def test_a_resent_update_is_handled_once(bot):
    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake, MAX)
    update = fake.press_update(MAX, MAX, message_id, f"try:{lead_id}")
    process(hub, api, update)
    process(hub, api, update)
    assert lead_row(hub, lead_id).contact_attempts == 1
    assert stored_offset(hub.engine) == update["update_id"] + 1


def test_link_codes_are_one_time_expire_and_wrong_ones_are_throttled(bot):
    hub, api, fake = bot
    out = json.loads(cli(hub, "managers", "link-telegram", "Max", "--json").output)
    assert out["bot"] == "@leadhub_test_bot" and len(out["code"]) >= 8 and out["expires_in_minutes"] == 15
    assert f"/link {out['code']}" in out["instruction"]
    reply = process(hub, api, fake.text_update(MAX, f"/link {out['code'].lower()}"))    # typed in lower case
    assert reply.messages == [(str(MAX), "Linked: you are Max. Your leads will come here, with buttons to work them.")]
    assert fake.of("sendMessage")[-1]["text"].startswith("Linked: you are Max.")
    reply = process(hub, api, fake.text_update(LENA, f"/link {out['code']}"))
    assert reply.messages[0][1].startswith("This code was used already")
    with transaction(hub.engine, read_only=True) as s:
        assert [(t.manager, t.telegram_user_id) for t in s.scalars(select(TelegramLink))] == [("Max", MAX)]
    with transaction(hub.engine) as s:
        stale = create_link_code(s, hub.config, "Lena", utcnow() - timedelta(minutes=16))
    assert process(hub, api, fake.text_update(LENA, f"/link {stale}")).messages[0][1].startswith(
        "This code has expired")
    assert "no manager named 'Nobody'" in cli(hub, "managers", "link-telegram", "Nobody", expect=1).output
    # Ten wrong codes in 15 minutes; the eleventh is not even checked, whatever it is.
    answers = [process(hub, api, fake.text_update(SID, f"/link WRONG{n}")).messages[0][1] for n in range(10)]
    assert all(a.startswith("This code is wrong") for a in answers)
    with transaction(hub.engine) as s:
        good = create_link_code(s, hub.config, "Sid", utcnow())
    assert process(hub, api, fake.text_update(SID, f"/link {good}")).messages[0][1].startswith("Too many wrong codes")
    assert process(hub, api, fake.text_update(SID, "/start")).messages[0][1].startswith("This is the hub's bot")


def test_polling_through_the_lease_with_the_offset_in_the_store(bot):
    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake, MAX)
    poller = UpdatesPoller(hub, holder="first", poll_seconds=1)
    assert holds_lease(hub.engine, "second", utcnow())              # free: "second" takes it
    assert poller.poll_once() is None                               # … so "first" stands by
    with transaction(hub.engine) as s:                              # "second" died: its lease lapses
        from hub.store.models import SchedulerLease
        s.get(SchedulerLease, LEASE).expires_at = utcnow() - timedelta(seconds=1)
    offset_before = stored_offset(hub.engine)
    stop = threading.Event()
    thread = threading.Thread(target=poller.run_forever, args=(stop,), daemon=True)
    thread.start()
    pushed = fake.push_update(fake.press_update(MAX, MAX, message_id, f"take:{lead_id}"))
    deadline = time.monotonic() + 10
    while lead_row(hub, lead_id).status != "in_work" and time.monotonic() < deadline:
        time.sleep(0.05)
    stop.set()
    thread.join(timeout=10)
    assert lead_row(hub, lead_id).status == "in_work"
    assert stored_offset(hub.engine) == pushed["update_id"] + 1
    polls = fake.of("getUpdates")
    # It asked from where the store said (past the /link handled earlier), and never again for what it had.
    assert polls[0]["offset"] == offset_before and all(p["offset"] in (offset_before, pushed["update_id"] + 1)
                                                       for p in polls)
    assert fake.messages[(str(MAX), message_id)]["text"].count("✅ In work with Max") == 1


def test_polling_end_to_end_in_hub_run(write_config, fake_telegram):
    from tests.helpers.procs import free_port, start, stop, wait_healthy
    port = free_port()
    path = write_config(bot_config(fake_telegram.url))
    hub = Hub(load_config(path))
    api = TelegramApi(TOKEN, fake_telegram.url)
    link(hub, api, fake_telegram, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake_telegram, MAX)
    proc = start("run", "--config", str(path), "--port", str(port))
    try:
        wait_healthy(proc, port)
        fake_telegram.push_update(fake_telegram.press_update(MAX, MAX, message_id, f"take:{lead_id}"))
        deadline = time.monotonic() + 20
        while lead_row(hub, lead_id).status != "in_work" and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        log = stop(proc)
    assert lead_row(hub, lead_id).status == "in_work", log
    assert TOKEN not in log
    api.close()
    hub.dispose()


WEBHOOK = 'updates = "webhook"\nwebhook_secret = "s3cret-webhook-secret-0123"\n'


def test_the_webhook_checks_the_secret_and_handles_the_update(write_config, fake_telegram):
    from hub.web.app import create_app
    hub = Hub(load_config(write_config(bot_config(fake_telegram.url, telegram=WEBHOOK))))
    api = TelegramApi(TOKEN, fake_telegram.url)
    link(hub, api, fake_telegram, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake_telegram, MAX)
    client = create_app(hub=hub).test_client()
    update = fake_telegram.press_update(MAX, MAX, message_id, f"take:{lead_id}")
    url = "/telegram/manager-bot"
    assert client.post(url, json=update).status_code == 403
    assert client.post(url, json=update, headers={"X-Telegram-Bot-Api-Secret-Token": "wrong"}).status_code == 403
    assert lead_row(hub, lead_id).status == "new"
    right = {"X-Telegram-Bot-Api-Secret-Token": "s3cret-webhook-secret-0123"}
    assert client.post(url, data=b"x" * 70_000, headers=right, content_type="application/json").status_code == 413
    assert client.post(url, data=b"[1]", headers=right, content_type="application/json").status_code == 400
    assert client.post(url, json=update, headers=right).status_code == 200
    assert lead_row(hub, lead_id).status == "in_work"
    assert client.post(url, json=update, headers=right).status_code == 200        # Telegram's retry: once only
    assert history(hub, lead_id).count(("taken", "Max")) == 1
    api.close()
    hub.dispose()


def test_the_webhook_route_is_closed_when_the_bot_polls(bot):
    hub, _, fake = bot
    update = fake.text_update(MAX, "/start")
    assert web(hub).post("/telegram/manager-bot", json=update,
                       headers={"X-Telegram-Bot-Api-Secret-Token": "anything-at-all-here"}).status_code == 404


def test_messages_are_stored_and_the_russian_keyboard_speaks_russian(write_config, fake_telegram):
    config = with_manager(WEB_CONFIG, "Max", language="ru", timezone="Europe/Moscow")
    hub = Hub(load_config(write_config(bot_config(fake_telegram.url, config))))
    api = TelegramApi(TOKEN, fake_telegram.url)
    assert link(hub, api, fake_telegram, "Max", MAX).startswith("Готово")
    lead_id, message_id = new_lead(hub, fake_telegram, MAX)
    rows = fake_telegram.last_message(MAX)["reply_markup"]["inline_keyboard"]
    assert [b["text"] for row in rows for b in row] == ["Взять в работу", "Попытка связи", "Перезвонить через 1 ч",
                                                        "Завтра в 10:00", "Отказ", "Открыть"]
    with transaction(hub.engine, read_only=True) as s:
        [stored] = s.scalars(select(NotificationMessage)).all()
    assert (stored.lead_id, stored.chat_id, stored.message_id) == (lead_id, str(MAX), message_id)
    before = utcnow()
    press(hub, api, fake_telegram, MAX, MAX, message_id, f"cbtm:{lead_id}")
    assert last_answer(fake_telegram)["text"] == "Перезвон запланирован."
    with transaction(hub.engine, read_only=True) as s:
        task = s.scalars(select(LeadTask)).one()
    moscow = before.astimezone(ZoneInfo("Europe/Moscow"))
    assert task.due_at.astimezone(ZoneInfo("Europe/Moscow")).replace(tzinfo=None) == \
        datetime.combine(moscow.date() + timedelta(days=1), datetime.min.time()).replace(hour=10)
    api.close()
    hub.dispose()


def test_a_failing_redraw_is_logged_and_the_action_stands(bot, caplog):
    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake, MAX)
    fake.fail("editMessageText", 400, "Bad Request: message can't be edited")
    fake.fail("answerCallbackQuery", 400, "Bad Request: query is too old and response timeout expired")
    press(hub, api, fake, MAX, MAX, message_id, f"take:{lead_id}")
    assert lead_row(hub, lead_id).status == "in_work"
    assert "Message can't be edited" in caplog.text and TOKEN not in caplog.text


def test_a_refusal_reason_too_long_for_callback_data_goes_by_its_place():
    from hub.config import Config
    from hub.outbox.manager_keyboard import reason_from_data, refuse_buttons
    from hub.sales_config import RefuseReason
    long_code = "x" * 64
    config = Config(refuse_reasons=[RefuseReason(code="spam", label="spam"), RefuseReason(code=long_code, label="l")])
    data = [action for row in refuse_buttons(config, 10**17, "en") for _, action in row]
    assert data == ["ref:100000000000000000:spam", "ref:100000000000000000:#1", "back:100000000000000000"]
    assert all(len(d.encode()) <= 64 for d in data)
    assert reason_from_data(config, "#1") == long_code and reason_from_data(config, "#7") is None
    assert reason_from_data(config, "spam") == "spam" and reason_from_data(config, "nope") is None


def test_a_press_on_a_lead_handed_to_someone_else_says_so_and_shows_where_it_went(bot):
    from hub.pipeline.routing.lifecycle import reassign
    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake, MAX)
    with transaction(hub.engine) as s:
        reassign(s, hub.config, lead_id, "Mia", "holiday", "lena@example.ru", utcnow())
    press(hub, api, fake, MAX, MAX, message_id, f"take:{lead_id}")
    assert last_answer(fake)["show_alert"] is True and last_answer(fake)["text"].startswith("Not your lead")
    shown = fake.messages[(str(MAX), message_id)]
    assert "🆕 Waits for Mia to take it" in shown["text"]
    assert (lead_row(hub, lead_id).owner, lead_row(hub, lead_id).status) == ("Mia", "new")


def test_an_unlinked_telegram_can_do_nothing_more(bot):
    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake, MAX)
    def linked() -> dict[str, bool]:
        return {m["name"]: m["telegram_linked"] for m in json.loads(cli(hub, "managers", "list", "--json").output)}

    assert linked()["Max"] is True and linked()["Mia"] is False    # the admin sees who gets leads in Telegram
    assert cli(hub, "managers", "unlink-telegram", "Max").output == "Max: Telegram unlinked\n"
    assert linked()["Max"] is False
    assert cli(hub, "managers", "unlink-telegram", "Max").output == "Max: no Telegram was linked\n"
    press(hub, api, fake, MAX, MAX, message_id, f"take:{lead_id}")
    assert "not linked to a manager" in last_answer(fake)["text"]
    assert lead_row(hub, lead_id).status == "new"


def test_a_manager_links_their_own_telegram_from_the_profile_page(bot):
    """One tap on a phone: the profile page's button makes a code and a t.me link; Start sends /start CODE."""
    import re

    from tests.helpers.web import post_form, sign_in

    hub, api, fake = bot
    client = web(hub)
    sign_in(client, "max@example.ru")
    page = client.get("/profile").text
    assert "Link Telegram" in page and "Linked since" not in page
    shown = post_form(client, "/profile/telegram", page="/profile").text
    found = re.search(r'href="https://t\.me/leadhub_test_bot\?start=([A-Z0-9]+)"', shown)
    assert found, shown
    code = found.group(1)
    assert f"/link {code}" in shown
    process(hub, api, fake.text_update(MAX, f"/start {code}"))      # what Telegram sends when Max presses Start
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalar(select(TelegramLink.manager).where(TelegramLink.telegram_user_id == MAX)) == "Max"
    assert "Linked since" in client.get("/profile").text
    # The code worked once; Max can unlink, and only himself.
    assert "used already" in link_reply(hub, api, fake, STRANGER, code)
    post_form(client, "/profile/telegram/unlink", page="/profile")
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalar(select(TelegramLink.manager)) is None


def test_roles_without_a_manager_have_nothing_to_link(bot):
    from tests.helpers.web import post_form, sign_in

    hub, api, fake = bot
    for login, status in (("marketer@example.ru", 403), ("admin@example.ru", 302)):
        client = web(hub)
        sign_in(client, login)
        assert "Link Telegram" not in client.get("/profile").text
        assert post_form(client, "/profile/telegram", page="/profile").status_code == status
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalar(select(TelegramLinkCode.code_hash)) is None


def link_reply(hub: Hub, api: TelegramApi, fake, user_id: int, code: str) -> str:
    return process(hub, api, fake.text_update(user_id, f"/link {code}")).messages[0][1]


def test_a_bad_update_is_answered_remembered_and_never_blocks_the_next(bot):
    hub, api, fake = bot
    broken = fake.text_update(MAX, "/link NOTACODE")
    broken["message"]["from"]["id"] = "not-a-number"            # fails inside the handling, not as a refusal
    process(hub, api, broken)
    assert stored_offset(hub.engine) == broken["update_id"] + 1     # moved past it: the poller goes on
    pressed = fake.press_update(MAX, MAX, 1, "take:1")
    pressed["callback_query"]["from"]["id"] = "not-a-number"
    process(hub, api, pressed)
    assert "nothing was changed" in last_answer(fake)["text"]        # the button stops spinning, and says so
    assert link(hub, api, fake, "Max", MAX).startswith("Linked")     # the next update is handled as ever


def test_disabling_a_managers_user_unlinks_their_telegram(bot):
    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake, MAX)
    cli(hub, "users", "disable", "max@example.ru")
    press(hub, api, fake, MAX, MAX, message_id, f"take:{lead_id}")
    assert "not linked to a manager" in last_answer(fake)["text"]
    assert lead_row(hub, lead_id).status == "new"


def test_a_call_back_on_a_closed_lead_is_refused(bot):
    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake, MAX)
    press(hub, api, fake, MAX, MAX, message_id, f"ref:{lead_id}:by_mistake")
    assert lead_row(hub, lead_id).status == "refused"
    press(hub, api, fake, MAX, MAX, message_id, f"cb1h:{lead_id}")
    assert "closed" in last_answer(fake)["text"] and last_answer(fake)["show_alert"]
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalars(select(LeadTask).where(LeadTask.lead_id == lead_id)).all() == []


def test_the_managers_bot_may_not_be_a_sources_bot(write_config, fake_telegram):
    from hub.errors import ConfigError

    shared = bot_config(fake_telegram.url) + f'''
[[sources]]
name = "clients"
connector = "telegram_polling"
bot_token = "{TOKEN}"
'''
    with pytest.raises(ConfigError) as raised:
        load_config(write_config(shared))
    assert any("same bot as [notify.telegram]" in p and p.startswith("sources[") for p in raised.value.problems)


def test_a_surprise_while_sending_one_notification_retries_it_and_sends_the_rest(bot, monkeypatch):
    from hub.store.models import Notification

    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    web_client = web(hub)
    for phone in ("+79120000001", "+79120000002"):
        deliver(web_client, hub, "site", phone)
    calls = {"n": 0}
    original = Notifier._lead_buttons

    def flaky(self, *args):
        calls["n"] += 1
        if calls["n"] == 1:
            raise RuntimeError("+79120000001 surprise")          # its text must not reach the log or the row
        return original(self, *args)

    monkeypatch.setattr(Notifier, "_lead_buttons", flaky)
    counts = Notifier(hub).send_due()
    assert counts["retried"] == 1 and counts["sent"] >= 1
    with transaction(hub.engine, read_only=True) as s:
        errors = [n.last_error for n in s.scalars(select(Notification).where(Notification.channel == "telegram"))
                  if n.last_error]
    assert errors == ["unexpected RuntimeError"]


def test_a_lead_taken_in_the_web_is_redrawn_in_telegram_and_a_press_queues_no_second_round(bot):
    from hub.store.models import Notification
    from tests.helpers.web import post_form, sign_in

    hub, api, fake = bot
    link(hub, api, fake, "Max", MAX)
    lead_id, message_id = new_lead(hub, fake, MAX)
    assert "take:" in " ".join(fake.buttons(fake.messages[(str(MAX), message_id)]))
    client = web(hub)
    sign_in(client, "max@example.ru")
    assert post_form(client, f"/leads/{lead_id}/take", page=f"/leads/{lead_id}").status_code in (200, 302, 303)
    assert lead_row(hub, lead_id).status == "in_work"
    Notifier(hub).send_due()                                   # the redraw the web's take queued
    shown = fake.messages[(str(MAX), message_id)]
    assert "In work with Max" in shown["text"]
    assert not any(b.startswith("take:") for b in fake.buttons(shown))       # nothing left to take
    edits = len(fake.of("editMessageText"))
    press(hub, api, fake, MAX, MAX, message_id, f"try:{lead_id}")     # the bot redraws at once, itself
    assert "Contact attempts: 1" in fake.messages[(str(MAX), message_id)]["text"]
    Notifier(hub).send_due()
    assert len(fake.of("editMessageText")) == edits + 1                 # and the notifier adds no second round
    with transaction(hub.engine, read_only=True) as s:
        kinds = [n.kind for n in s.scalars(select(Notification).where(Notification.lead_id == lead_id))]
    assert kinds.count("redraw") == 1


def test_after_a_quiet_week_the_poller_asks_without_an_offset_and_follows_restarted_ids(bot):
    """Telegram restarts update ids at a random (maybe lower) number after a week without updates: an offset
    above them would drop them unseen."""
    hub, api, fake = bot
    process(hub, api, {**fake.text_update(MAX, "/help"), "update_id": 90_000})
    assert stored_offset(hub.engine) == 90_001
    assert stored_offset(hub.engine, utcnow() + timedelta(days=7)) is None          # a quiet week: no offset
    process(hub, api, {**fake.text_update(MAX, "/help"), "update_id": 1_234})          # the restarted, lower id
    assert stored_offset(hub.engine) == 1_235                                         # follows it down
