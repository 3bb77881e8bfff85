"""A marketer never sees a lead's contact details, and nobody sees a source's secrets: every GET route of the
app (pages and /api/v1, taken from its URL map, so a new route is walked without anyone remembering to)
and the mapping tester, answered for leads whose phones, e-mails, names and messenger ids are known — on
real SQLite and PostgreSQL stores. The masking is by role: an admin still sees the contacts, never a secret.
"""

from __future__ import annotations

import html
import json
import re

import pytest
from sqlalchemy import select, update

from hub.desk.redact import configured_secrets, is_secret_key
from hub.pipeline.worker import Worker
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent, Lead
from tests.conftest import SITE_TOKEN, fixture_bytes
from tests.helpers.web import WEB_CONFIG, make_users, post_form, sign_in, token_for

VK_SECRET = "vk-callback-secret-7Q2x"
TILDA_TOKEN = "tilda-token-0123456789"
TELEGRAM_SECRET = "tg-secret_token-1"
SOURCES = f'''
[[sources]]
name = "vk"
connector = "vk"
secret = "{VK_SECRET}"
confirmation = "a1b2c3d4"
group_id = 218000111

[[sources]]
name = "tilda"
connector = "tilda"
token = "{TILDA_TOKEN}"

[[sources]]
name = "bot"
connector = "telegram"
secret_token = "{TELEGRAM_SECRET}"
'''
SECRETS = (VK_SECRET, SITE_TOKEN, TILDA_TOKEN, TELEGRAM_SECRET)

SITE_FORM = {"name": "Иван Петров", "phone": "+7 999 111-22-44", "email": "ivan.petrov@example.ru",
             "message": "Перезвоните на +7 999 111-22-44 после обеда",
             "page_url": "https://example.com/pricing?utm_source=google&utm_campaign=brand&name=Иван"}
VK_TEXT = "Здравствуйте! мой номер 8 (926) 565-53-66"
# The fixtures' own leads: Tilda's Анна Смирнова (+7 913 555-01-02 here), Telegram's Ольга (79261112233, id
# 700000001); the VK writer's id is 512345679.
PHONES = ("9991112244", "9265655366", "9135550102", "9261112233")
MESSENGER_IDS = ("512345679", "700000001")
WORDS = ("ivan.petrov@example.ru", "anna.smirnova@example.ru", "Иван", "Петров", "Анна", "Смирнова", "Ольга",
         "olga_k", "Перезвоните", "Здравствуйте", "консультацию")
# Phones as people write them, read back as their digits: "+7 (999) 111-22-44" -> "79991112244".
DIGIT_RUNS = re.compile(r"\d[\d\s().+-]*\d")
# The routes that are not the app's answers about its data: providers' door (it answers providers with
# what they sent) and static files.
NOT_WALKED = {"hooks.webhook", "static", "pages.static"}


def vk_event(text: str = VK_TEXT, group_id: int = 218000111) -> bytes:
    event = json.loads(fixture_bytes("vk", "message_new.json"))
    event["object"]["message"]["text"] = text
    event["secret"], event["group_id"] = VK_SECRET, group_id
    return json.dumps(event, ensure_ascii=False).encode()


def tilda_form() -> bytes:
    """Tilda's fixture with its API key in the form, and a phone of this test's own (the fixture's is the
    API's documented example, which /openapi.json shows)."""
    form = fixture_bytes("tilda", "form_with_cookie_utm.txt").strip()
    return form.replace(b"%2B7+%28912%29+345-67-89", b"%2B7+%28913%29+555-01-02") + f"&api_key={TILDA_TOKEN}".encode()


TELEGRAM_UPDATE = fixture_bytes("telegram", "contact_shared.json")


@pytest.fixture
def config_path(write_config):
    return write_config(WEB_CONFIG + SOURCES)


@pytest.fixture
def leads(app, hub, client):
    """Deliveries of every kind from five sources, processed; one of them dead with an error that quotes
    its contacts, as a database error quotes its parameters. Returns the site lead's id."""
    make_users(hub)
    posts = [
        ("/hooks/site", dict(json=SITE_FORM)),
        (f"/hooks/locked?token={SITE_TOKEN}", dict(json={**SITE_FORM, "token": SITE_TOKEN})),
        ("/hooks/site", dict(json={"name": "Иван Петров", "message": "Перезвоните"})),   # rejected: no contact
        ("/hooks/vk", dict(data=vk_event(), content_type="application/json")),
        ("/hooks/vk", dict(data=vk_event(group_id=1), content_type="application/json")),  # rejected unread
        ("/hooks/tilda", dict(data=tilda_form(), content_type="application/x-www-form-urlencoded")),
        ("/hooks/bot", dict(data=TELEGRAM_UPDATE, content_type="application/json",
                            headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_SECRET})),
    ]
    for path, request in posts:
        assert client.post(path, **request).status_code < 500, path
    Worker(hub).drain()
    with transaction(hub.engine) as session:
        locked = session.scalar(select(InboundEvent.id).where(InboundEvent.source == "locked"))
        session.execute(update(InboundEvent).where(InboundEvent.id == locked).values(
            status=EventStatus.DEAD, last_error="IntegrityError: [SQL: INSERT INTO person] [parameters: "
            f"('Иван Петров', '+79991112244', 'ivan.petrov@example.ru', '{SITE_TOKEN}')]"))
        return session.scalar(select(Lead.id).where(Lead.source == "site"))


def walk(app, hub, pages, api_headers):
    """(url, answer) for every GET route of the app, its path filled with every real id and name."""
    with transaction(hub.engine, read_only=True) as session:
        values = {"source_name": list(hub.sources), "name": [m.name for m in hub.config.managers],
                  "lead_id": list(session.scalars(select(Lead.id))),
                  "event_id": list(session.scalars(select(InboundEvent.id)))}
    for rule in app.url_map.iter_rules():
        if "GET" not in rule.methods or rule.endpoint in NOT_WALKED:
            continue
        unknown = set(rule.arguments) - set(values)
        assert not unknown, f"{rule.rule}: teach this test real values for {sorted(unknown)}"
        fillings = [{}]
        for arg in rule.arguments:
            fillings = [{**f, arg: v} for f in fillings for v in values[arg]]
        for args in fillings:
            url = rule.build(args, append_unknown=False)[1]
            if rule.endpoint.startswith("api."):
                yield url, app.test_client().get(url, headers=api_headers)
            else:
                yield url, pages.get(url)


def served_text(answer) -> str:
    """The answer as served, and for JSON also with its \\u escapes decoded."""
    text = answer.get_data(as_text=True)
    if answer.is_json:
        text += json.dumps(answer.get_json(), ensure_ascii=False)
    return text


def secrets_in(text: str) -> list[str]:
    return [s for s in SECRETS if s in text]


def contacts_in(text: str) -> list[str]:
    digits = [re.sub(r"\D", "", run) for run in DIGIT_RUNS.findall(text)]
    found = [n for n in PHONES + MESSENGER_IDS if any(n in d for d in digits)]
    return found + [w for w in WORDS if w.casefold() in text.casefold()]


def without_own_input(page: str, posted: str) -> str:
    """The mapping tester's page without the payload the reader pasted, echoed back in its textarea: the
    marketer's own input, not something the hub tells them."""
    match = re.search(r'(<textarea id="payload"[^>]*>)(.*?)(</textarea>)', page, re.S)
    assert match and html.unescape(match.group(2)) == posted
    return page[:match.start(2)] + page[match.end(2):]


TRIED = [("site", json.dumps(SITE_FORM, ensure_ascii=False), ""),
         ("vk", vk_event().decode(), ""),
         ("tilda", tilda_form().decode(), "application/x-www-form-urlencoded"),
         ("bot", TELEGRAM_UPDATE.decode(), "")]


def test_a_marketer_sees_no_contact_and_no_secret_anywhere(app, hub, leads):
    pages = app.test_client()
    assert sign_in(pages, "marketer@example.ru").status_code == 302
    api = token_for(hub, "marketer@example.ru")
    leaks, answered = {}, set()
    for url, answer in walk(app, hub, pages, api):
        text = served_text(answer)
        if found := contacts_in(text) + secrets_in(text):
            leaks[url] = found
        if answer.status_code == 200:
            answered.add(url)
    tester = {}
    for source, payload, content_type in TRIED:
        page = post_form(pages, "/mapping-tester", {"source": source, "payload": payload,
                                                    "content_type": content_type}, page="/mapping-tester")
        assert page.status_code == 200 and 'id="result"' in page.text, page.text
        tried = app.test_client().post(f"/api/v1/sources/{source}/try", headers=api,
                                       json={"payload": payload, "content_type": content_type or None})
        assert tried.status_code == 200, tried.text
        tester[source] = page.text, tried.json
        text = without_own_input(page.text, payload) + served_text(tried)
        if found := contacts_in(text) + secrets_in(text):
            leaks[f"mapping tester: {source}"] = found
    assert not leaks, leaks
    # Masked, not gone: the marketer sees that a phone arrived, and in which field.
    page, tried = tester["site"]
    assert "+7 9•• •••-••-44" in page and tried["events"][0]["draft"]["phones"] == ["+7 9•• •••-••-44"]
    assert all(tried["contacts_hidden"] is True for _, tried in tester.values())
    # Not vacuous: the marketer was answered where the contacts used to show.
    with transaction(hub.engine, read_only=True) as session:
        event_ids = list(session.scalars(select(InboundEvent.id).order_by(InboundEvent.id)))
    assert {"/channels/site", "/channels/vk", "/channels/locked", "/api/v1/events", "/api/v1/sources"} <= answered
    assert {f"/api/v1/events/{i}" for i in event_ids} <= answered
    shown = app.test_client().get(f"/api/v1/events/{event_ids[0]}", headers=api).json
    assert shown["contacts_hidden"] is True and shown["body"] is None
    assert shown["payload"]["phone"] == "+7 9•• •••-••-44" and shown["payload"]["name"] == "И•••"
    assert shown["payload"]["page_url"] == "https://example.com/pricing?utm_source=google&utm_campaign=brand&name=•••"


def test_an_admin_sees_contacts_but_no_secret(app, hub, leads):
    pages = app.test_client()
    assert sign_in(pages, "admin@example.ru").status_code == 302
    api = token_for(hub, "admin@example.ru")
    leaks, answered = {}, set()
    for url, answer in walk(app, hub, pages, api):
        text = served_text(answer)
        if found := secrets_in(text):
            leaks[url] = found
        if answer.status_code == 200:
            answered.add(url)
    for source, payload, content_type in TRIED:
        tried = app.test_client().post(f"/api/v1/sources/{source}/try", headers=api,
                                       json={"payload": payload, "content_type": content_type or None})
        if found := secrets_in(served_text(tried)):
            leaks[f"mapping tester: {source}"] = found
    assert not leaks, leaks
    assert "9991112244" in re.sub(r"\D", "", pages.get(f"/leads/{leads}").text)
    with transaction(hub.engine, read_only=True) as session:
        events: dict[str, int] = {}
        for event in session.scalars(select(InboundEvent).order_by(InboundEvent.id)):
            events.setdefault(event.source, event.id)
    site = app.test_client().get(f"/api/v1/events/{events['site']}", headers=api).json
    assert "contacts_hidden" not in site and site["payload"]["phone"] == "+7 999 111-22-44"
    # The raw body as received, but for the secrets it carried.
    vk = app.test_client().get(f"/api/v1/events/{events['vk']}", headers=api).json
    assert VK_TEXT in vk["body"] and '"secret": "•••"' in vk["body"]
    tilda = app.test_client().get(f"/api/v1/events/{events['tilda']}", headers=api).json
    assert tilda["body"].endswith("&api_key=•••") and "Phone=" in tilda["body"]
    assert "/channels/vk" in answered and VK_TEXT in pages.get("/channels/vk").text


@pytest.mark.parametrize("key", ["secret", "token", "X-Hub-Token", "X-Telegram-Bot-Api-Secret-Token", "sign",
                                 "vpbx_api_key", "Signature", "Authorization", "Cookie", "apiKey", "access_token",
                                 "password", "api_salt"])
def test_a_secret_is_known_by_its_name(key):
    assert is_secret_key(key)


@pytest.mark.parametrize("key", ["confirmation", "key", "name", "phone", "tranid", "form_id", "COOKIES"])
def test_other_names_are_not_secrets(key):
    """VK's confirmation string is no secret (VK shows it to anyone who asks the server); the "key" of a VK
    lead form's answer names the question."""
    assert not is_secret_key(key)


def test_the_secrets_of_every_source_are_known_and_only_those(hub):
    """Tilda's api_key_field and VK's confirmation are settings, not secrets."""
    assert configured_secrets(hub) == set(SECRETS)
