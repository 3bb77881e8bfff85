"""The client hears back, once per lead, by the way they came, in the source's language: the Telegram bot and
the VK community reply in the chat (against the local fake Bot API and VK API servers), a site form sends an
e-mail (a local SMTP server) when the form gave an address. A failing channel is retried and never holds up
the lead; a config that cannot answer says what to add."""

from __future__ import annotations

import email
import email.policy
import json
from datetime import timedelta

import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import insert, select
from sqlalchemy.exc import IntegrityError

from hub.config import load_config
from hub.errors import ConfigError
from hub.outbox.client_answer import ClientContacts, queue_client_answer
from hub.outbox.notify import Notifier
from hub.pipeline.routing.lifecycle import set_status
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent, Lead, Notification, utcnow
from hub.web.app import create_app
from tests.helpers.fake_vk import GROUP_ID, TOKEN as VK_TOKEN
from tests.helpers.procs import free_port

BOT_TOKEN = "123456789:AAF-client-answer-bot-token"
TG_SECRET = "tg-secret"
VK_SECRET = "vk-secret-123"
CLIENT_TG = 700000001
CLIENT_VK = 512345679


class Inbox:
    def __init__(self):
        self.messages = []
        self.refuse: set[str] = set()

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        if address in self.refuse:
            return "550 5.1.1 mailbox unavailable"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        self.messages.append((envelope.rcpt_tos, email.message_from_bytes(envelope.content,
                                                                           policy=email.policy.default)))
        return "250 OK"


@pytest.fixture
def smtp():
    inbox = Inbox()
    controller = Controller(inbox, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield controller.port, inbox
    controller.stop()


def answer_config(fake_telegram, fake_vk, smtp_port: int, *, on_duty: bool = True, extra: str = "") -> str:
    hours = "" if on_duty else "active = false"
    return f'''
[[sources]]
name = "bot"
connector = "telegram"
secret_token = "{TG_SECRET}"
bot_token = "{BOT_TOKEN}"
api_url = "{fake_telegram.url}"
[sources.answer]
language = "ru"
within_minutes = 15

[[sources]]
name = "vkgroup"
connector = "vk"
secret = "{VK_SECRET}"
confirmation = "a1b2c3d4"
group_id = {GROUP_ID}
access_token = "{VK_TOKEN}"
api_url = "{fake_vk.api_url}"
[sources.answer]
language = "ru"
within_minutes = 10

[[sources]]
name = "form"
connector = "site_form"
[sources.answer]
language = "ru"
within_minutes = 21

[[sources]]
name = "landing_en"
connector = "site_form"
[sources.answer]
language = "en"
within_minutes = 1
{extra}

[[teams]]
name = "sales"
[[managers]]
name = "Ольга Смирнова"
team = "sales"
working_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
{hours}
[[routing.rules]]
name = "all"
team = "sales"
sla_minutes = 15

[notify]
max_attempts = 3
[notify.email]
host = "127.0.0.1"
port = {smtp_port}
from = "hub@example.ru"
'''


@pytest.fixture
def answering_hub(write_config, fake_telegram, fake_vk, smtp):
    h = Hub(load_config(write_config(answer_config(fake_telegram, fake_vk, smtp[0]))))
    yield h
    h.dispose()


def post(hub: Hub, source: str, payload: dict, headers: dict | None = None) -> None:
    with create_app(hub=hub).test_client() as c:
        resp = c.post(f"/hooks/{source}", json=payload, headers=headers or {})
        assert resp.status_code == 200, resp.get_data(as_text=True)


def telegram_says(hub: Hub, fake_telegram, text: str | None = None, phone: str | None = None,
                  user_id: int = CLIENT_TG) -> None:
    update = fake_telegram.text_update(user_id, text or "")
    update["message"]["from"]["first_name"] = "Пётр"
    if phone:
        del update["message"]["text"]
        update["message"]["contact"] = {"phone_number": phone, "first_name": "Пётр", "user_id": user_id}
    post(hub, "bot", update, {"X-Telegram-Bot-Api-Secret-Token": TG_SECRET})


def vk_says(hub: Hub, text: str, event_id: str, user_id: int = CLIENT_VK) -> None:
    post(hub, "vkgroup", {"type": "message_new", "group_id": GROUP_ID, "event_id": event_id, "v": "5.199",
                          "secret": VK_SECRET, "object": {"message": {
                              "date": 1763900000, "from_id": user_id, "id": 77, "out": 0, "peer_id": user_id,
                              "text": text, "attachments": []}}})


def body_of(mail) -> str:
    return mail.get_content().replace("\r\n", "\n").strip()


def process_and_send(hub: Hub, now=None) -> dict[str, int]:
    Worker(hub).drain()
    return Notifier(hub).send_due(now=now)


def answers(hub: Hub) -> list[Notification]:
    with transaction(hub.engine, read_only=True) as s:
        return list(s.scalars(select(Notification).where(Notification.kind == "client_answer")
                              .order_by(Notification.id)))


def client_messages(fake_telegram) -> list[dict]:
    return [c.params for c in fake_telegram.calls if c.method == "sendMessage" and c.token == BOT_TOKEN]


def test_a_telegram_client_hears_once_from_the_bot_after_sharing_the_contact(answering_hub, fake_telegram):
    hub = answering_hub
    telegram_says(hub, fake_telegram, "/start")
    process_and_send(hub)
    assert client_messages(fake_telegram) == []        # no phone yet: the bot's conversation is asking for it
    telegram_says(hub, fake_telegram, phone="79261112233")
    assert process_and_send(hub)["sent"] == 1
    [sent] = client_messages(fake_telegram)
    assert str(sent["chat_id"]) == str(CLIENT_TG)
    assert sent["text"] == ("Здравствуйте, Пётр!\nВаша заявка принята.\n"     # a chat has no subject line
                            "Ольга перезвонит вам в течение 15 минут.")
    assert "Смирнова" not in sent["text"]              # the first name only
    telegram_says(hub, fake_telegram, "А когда позвоните?")       # the same client writes again
    telegram_says(hub, fake_telegram, phone="79261112233")
    process_and_send(hub)
    assert len(client_messages(fake_telegram)) == 1
    [row] = answers(hub)
    assert (row.channel, row.recipient, row.source, row.status) == ("client_telegram", str(CLIENT_TG), "bot", "sent")


def test_a_vk_client_gets_one_message_from_the_community(answering_hub, fake_vk):
    hub = answering_hub
    vk_says(hub, "Здравствуйте! Сколько стоит доставка? мой номер 89031234567", "e1")
    assert process_and_send(hub)["sent"] == 1
    [sent] = fake_vk.sent
    [row] = answers(hub)
    assert sent["peer_id"] == str(CLIENT_VK) and sent["random_id"] == str(row.id)
    assert sent["message"].endswith("Ваша заявка принята.\nОльга перезвонит вам в течение 10 минут.")
    vk_says(hub, "Ещё вопрос", "e2")
    process_and_send(hub)
    assert len(fake_vk.calls_to("messages.send")) == 1


def test_a_vk_client_without_a_phone_is_told_the_manager_will_get_in_touch(answering_hub, fake_vk):
    hub = answering_hub
    vk_says(hub, "Сколько стоит?", "e1")
    process_and_send(hub)
    [sent] = fake_vk.sent
    assert sent["message"].endswith("Ольга свяжется с вами в течение 10 минут.")


def test_a_site_form_client_with_an_email_gets_one_email_and_without_one_nothing(answering_hub, smtp):
    hub, (_, inbox) = answering_hub, smtp
    post(hub, "form", {"name": "Иван", "phone": "+79120000001", "email": "Ivan@Example.ru"})
    post(hub, "form", {"name": "Пётр", "phone": "+79120000002"})          # no address: nothing to answer by
    assert process_and_send(hub)["sent"] == 1
    [(to, mail)] = inbox.messages
    assert to == ["ivan@example.ru"]
    assert mail["Subject"] == "Мы получили вашу заявку"
    assert body_of(mail) == ("Здравствуйте, Иван!\nВаша заявка принята.\n"
                                          "Ольга перезвонит вам в течение 21 минуты.")
    post(hub, "form", {"name": "Иван", "phone": "+79120000001", "email": "ivan@example.ru", "message": "Ещё"})
    process_and_send(hub)
    assert len(inbox.messages) == 1
    assert [(a.channel, a.recipient) for a in answers(hub)] == [("client_email", "ivan@example.ru")]


def test_the_answer_speaks_the_sources_language(answering_hub, smtp):
    hub, (_, inbox) = answering_hub, smtp
    post(hub, "landing_en", {"name": "John", "email": "john@example.com"})
    process_and_send(hub)
    [(_, mail)] = inbox.messages
    assert mail["Subject"] == "We have your request"
    assert body_of(mail) == ("Hello, John!\nYour request is accepted.\n"
                                          "Ольга will get in touch with you within 1 minute.")


def test_a_source_without_an_answer_sends_nothing(answering_hub, smtp):
    hub, (_, inbox) = answering_hub, smtp
    post(hub, "site", {"name": "Иван", "phone": "+79120000001", "email": "ivan@example.ru"})
    assert process_and_send(hub) == {"sent": 0, "retried": 0, "dead": 0}
    assert answers(hub) == [] and inbox.messages == []


def test_a_lead_waiting_in_the_queue_is_answered_without_a_name_or_a_time(write_config, fake_telegram, fake_vk,
                                                                          smtp):
    hub = Hub(load_config(write_config(answer_config(fake_telegram, fake_vk, smtp[0], on_duty=False))))
    try:
        post(hub, "form", {"phone": "+79120000001", "email": "ivan@example.ru"})
        process_and_send(hub)
        with transaction(hub.engine, read_only=True) as s:
            assert s.scalar(select(Lead.owner)) is None
        [(_, mail)] = smtp[1].messages
        assert body_of(mail) == ("Здравствуйте!\nВаша заявка принята.\n"
                                              "Менеджер перезвонит вам, как только освободится.")
    finally:
        hub.dispose()


def test_a_reopened_lead_is_not_answered_again(answering_hub, smtp):
    hub, (_, inbox) = answering_hub, smtp
    post(hub, "form", {"phone": "+79120000001", "email": "ivan@example.ru"})
    process_and_send(hub)
    with transaction(hub.engine) as s:
        lead_id = s.scalar(select(Lead.id))
        set_status(s, hub.config, lead_id, "converted", None, "Ольга Смирнова", utcnow())
    post(hub, "form", {"phone": "+79120000001", "email": "ivan@example.ru", "message": "снова"})
    process_and_send(hub)
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalar(select(Lead.status)) == "new"       # reopened, the same lead
    assert len(inbox.messages) == 1 and len(answers(hub)) == 1


def test_one_answer_per_lead_is_the_databases_rule(answering_hub):
    """Two workers racing on one lead's events, or a check-then-insert that lost: the index decides."""
    hub = answering_hub
    post(hub, "form", {"phone": "+79120000001"})          # a lead with no address: nothing queued yet
    Worker(hub).drain()
    source = next(s for s in hub.config.sources if s.name == "form")
    contacts = ClientContacts(name=None, phones=[], emails=["ivan@example.ru"], messenger_ids={})
    with transaction(hub.engine) as s:
        lead_id = s.scalar(select(Lead.id))
        assert queue_client_answer(s, hub.config, source, lead_id, None, contacts) is not None
        assert queue_client_answer(s, hub.config, source, lead_id, None, contacts) is None
    with pytest.raises(IntegrityError), transaction(hub.engine) as s:
        s.execute(insert(Notification).values(lead_id=lead_id, channel="client_email", kind="client_answer",
                                              recipient="x@example.ru", subject="", text="", status="pending",
                                              attempts=0, next_attempt_at=utcnow(), created_at=utcnow()))
    assert len(answers(hub)) == 1


def test_a_failing_bot_is_retried_and_never_holds_up_the_lead(answering_hub, fake_telegram, caplog):
    hub = answering_hub
    fake_telegram.fail("sendMessage", 502)
    telegram_says(hub, fake_telegram, phone="79261112233")
    assert process_and_send(hub)["retried"] == 1
    with transaction(hub.engine, read_only=True) as s:      # the lead is in and owned all the same
        assert s.scalar(select(InboundEvent.status)) == EventStatus.PROCESSED
        assert s.scalar(select(Lead.owner)) == "Ольга Смирнова"
    [row] = answers(hub)
    assert row.status == "pending" and row.attempts == 1 and BOT_TOKEN not in (row.last_error or "")
    assert Notifier(hub).send_due(now=utcnow() + timedelta(hours=1))["sent"] == 1
    assert len([m for m in client_messages(fake_telegram) if m["text"].startswith("Здравствуйте")]) == 2
    assert BOT_TOKEN not in caplog.text


def test_a_client_who_blocked_the_bot_is_not_retried(answering_hub, fake_telegram):
    hub = answering_hub
    fake_telegram.fail("sendMessage", 403)
    telegram_says(hub, fake_telegram, phone="79261112233")
    assert process_and_send(hub)["dead"] == 1
    [row] = answers(hub)
    assert (row.status, row.last_error) == ("dead", "Telegram: Forbidden: bot was blocked by the user")


def test_vk_failures_retry_with_the_same_random_id_or_give_up(answering_hub, fake_vk):
    hub = answering_hub
    fake_vk.fail("messages.send", code=10)                 # VK's internal error: try again
    vk_says(hub, "мой номер 89031234567", "e1")
    assert process_and_send(hub)["retried"] == 1
    assert Notifier(hub).send_due(now=utcnow() + timedelta(hours=1))["sent"] == 1
    first, second = fake_vk.calls_to("messages.send")
    assert first.params["random_id"] == second.params["random_id"]
    fake_vk.fail("messages.send", code=901)                # the user has not allowed the community's messages
    vk_says(hub, "мой номер 89030000000", "e2", user_id=CLIENT_VK + 1)
    assert process_and_send(hub)["dead"] == 1
    assert [a.last_error for a in answers(hub)][1] == \
        "VK messages.send: error 901: Can't send messages for users without permission"
    assert VK_TOKEN not in "".join(a.last_error or "" for a in answers(hub))


def test_a_refused_address_is_not_retried_and_not_written_down(answering_hub, smtp):
    hub, (_, inbox) = answering_hub, smtp
    inbox.refuse.add("gone@example.ru")
    post(hub, "form", {"phone": "+79120000001", "email": "gone@example.ru"})
    assert process_and_send(hub)["dead"] == 1
    [row] = answers(hub)
    assert "gone@example.ru" not in row.last_error and "refused the recipient" in row.last_error


def test_the_sources_own_text_and_subject(write_config, fake_telegram, fake_vk, smtp):
    extra = '''
[[sources]]
name = "promo"
connector = "site_form"
[sources.answer]
text = "{{ owner }} позвонит в течение {{ minutes }} мин. Ваш код: ПРОМО"
subject = "Заявка принята"
'''
    hub = Hub(load_config(write_config(answer_config(fake_telegram, fake_vk, smtp[0], extra=extra))))
    try:
        post(hub, "promo", {"name": "Иван", "phone": "+79120000001", "email": "ivan@example.ru"})
        process_and_send(hub)
        [(_, mail)] = smtp[1].messages
        assert mail["Subject"] == "Заявка принята"
        assert body_of(mail) == "Ольга позвонит в течение 15 мин. Ваш код: ПРОМО"
    finally:
        hub.dispose()


def test_an_answer_that_cannot_be_sent_is_a_config_error_that_says_what_to_add(write_config):
    bad = '''
[[sources]]
name = "bot"
connector = "telegram"
secret_token = "s"
[sources.answer]

[[sources]]
name = "vkgroup"
connector = "vk"
secret = "s"
confirmation = "c"
[sources.answer]

[[sources]]
name = "form"
connector = "site_form"
[sources.answer]
text = "{{ owner "

[[sources]]
name = "form2"
connector = "site_form"
[sources.answer]
text = "{{ manager_name }} перезвонит"
'''
    with pytest.raises(ConfigError) as caught:
        load_config(write_config(bad))
    problems = "\n".join(caught.value.problems)
    assert "sources[2].answer: the bot answers the client in the chat, and needs its token: add bot_token" \
        in problems
    assert "sources[3].answer: the community answers the client in VK messages, and needs its token: add " \
        "access_token" in problems
    assert "sources[4].answer: a site_form client is answered by e-mail: add [notify.email]" in problems
    assert "sources[4].answer.text: not a valid template" in problems
    # Parses, but would fail for every lead: caught by rendering it with sample values.
    assert "sources[5].answer.text: fails when rendered ('manager_name' is undefined); it may use owner" in problems


def test_an_answers_promise_is_a_number_of_minutes(write_config):
    with pytest.raises(ConfigError) as caught:
        load_config(write_config('[[sources]]\nname = "form"\nconnector = "site_form"\n'
                                 '[sources.answer]\nwithin_minutes = 0\nlanguage = "de"\n'))
    assert [p.split(":")[0] for p in caught.value.problems] == ["sources[2].answer.language",
                                                                 "sources[2].answer.within_minutes"]


def test_the_answer_is_queued_with_the_lead_not_sent_inside_its_transaction(answering_hub, fake_telegram):
    hub = answering_hub
    telegram_says(hub, fake_telegram, phone="79261112233")
    Worker(hub).drain()
    assert client_messages(fake_telegram) == []
    assert [a.status for a in answers(hub)] == ["pending"]
    assert json.dumps(answers(hub)[0].text, ensure_ascii=False).count("Ольга") == 1


def test_a_forgotten_client_is_not_answered_and_their_address_is_erased(answering_hub, smtp):
    from hub.pipeline.persons import find_person, forget_person

    hub, (_, inbox) = answering_hub, smtp
    post(hub, "form", {"name": "Иван", "phone": "+79120000001", "email": "ivan@example.ru"})
    Worker(hub).drain()
    with transaction(hub.engine) as s:
        forget_person(s, find_person(s, "ivan@example.ru", "RU"), "admin")
    assert Notifier(hub).send_due()["sent"] == 0 and inbox.messages == []
    [row] = answers(hub)
    assert (row.recipient, row.status, row.text) == ("(erased)", "dead", "(erased)")


def test_without_a_language_the_answer_speaks_the_ui_default(write_config, fake_telegram, fake_vk, smtp):
    extra = '''
[[sources]]
name = "plain"
connector = "site_form"
[sources.answer]
within_minutes = 5
'''
    hub = Hub(load_config(write_config(answer_config(fake_telegram, fake_vk, smtp[0], extra=extra)
                                       + '[ui]\ndefault_language = "en"\n')))
    try:
        post(hub, "plain", {"phone": "+79120000001", "email": "ivan@example.ru"})
        process_and_send(hub)
        [(_, mail)] = smtp[1].messages
        assert body_of(mail) == "Hello!\nYour request is accepted.\nОльга will call you within 5 minutes."
    finally:
        hub.dispose()
