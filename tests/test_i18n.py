"""Russian and English: the catalogs are complete and compiled, every page renders in Russian with no
English left, dates follow the reader's time zone, notifications speak the manager's language."""

from __future__ import annotations

import io
import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
import responses
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from sqlalchemy import select

from hub.desk.access import set_language
from hub.outbox.notify import Notifier
from hub.store.db import transaction
from hub.store.models import Lead
from tests.helpers.web import WEB_CONFIG, deliver, make_users, post_form, sign_in, with_manager

ROOT = Path(__file__).parent.parent
CATALOG = ROOT / "hub" / "translations" / "ru" / "LC_MESSAGES"
RU = {"Accept-Language": "ru-RU,ru;q=0.9,en;q=0.5"}


def _catalog():
    with open(CATALOG / "messages.po", "rb") as f:
        return read_po(f, locale="ru")


def test_every_message_in_the_code_and_templates_has_a_russian_translation(tmp_path):
    pot = tmp_path / "messages.pot"
    subprocess.run([str(Path(sys.executable).with_name("pybabel")), "extract", "-F", str(ROOT / "babel.cfg"),
                    "-k", "N_", "-k", "Msg", "-k", "lazy_gettext", "-o", str(pot), str(ROOT)],
                   check=True, cwd=ROOT, capture_output=True)
    with open(pot, "rb") as f:
        extracted = {m.id if isinstance(m.id, str) else m.id[0] for m in read_po(f) if m.id}
    catalog = _catalog()
    translated = {m.id if isinstance(m.id, str) else m.id[0]: m for m in catalog if m.id}
    missing = sorted(extracted - set(translated))
    assert not missing, f"not in hub/translations/ru (run the pybabel commands in hub/i18n.py): {missing}"
    empty = sorted(k for k, m in translated.items() if k in extracted and
                   (not m.string or (isinstance(m.string, tuple) and not all(m.string)) or m.fuzzy))
    assert not empty, f"untranslated or fuzzy in Russian: {empty}"
    stale = sorted(set(translated) - extracted)
    assert not stale, f"translations of messages no longer used (pybabel update drops them): {stale}"


def test_the_compiled_catalog_is_the_current_one():
    compiled = io.BytesIO()
    write_mo(compiled, _catalog())
    assert (CATALOG / "messages.mo").read_bytes() == compiled.getvalue(), \
        "messages.mo is older than messages.po: run .venv/bin/pybabel compile -d hub/translations"


class VisibleText(HTMLParser):
    """The text a reader sees: not code samples, not what they typed, not attribute values."""

    def __init__(self):
        super().__init__()
        self.skip, self.parts = 0, []

    def handle_starttag(self, tag, attrs):
        if tag in ("code", "pre", "script", "style", "textarea"):
            self.skip += 1

    def handle_endtag(self, tag):
        if tag in ("code", "pre", "script", "style", "textarea"):
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def english_words(html: str, data: set[str]) -> list[str]:
    parser = VisibleText()
    parser.feed(html)
    text = " ".join(parser.parts)
    words = [w.strip("'") for w in re.findall(r"[A-Za-z][A-Za-z_'-]+", text)]
    return [w for w in words if w not in data and w.lower() not in data]


# What may stay Latin on a Russian page: the product's name, technical names, the data of this test.
TECHNICAL = {"lead", "hub", "Excel", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "UTC", "URL",
             "CSV", "JSON", "E-mail", "English", "RUB", "hooks", "events", "summary", "site_form"}


@pytest.fixture
def config_path(write_config):
    return write_config(with_manager(WEB_CONFIG, "Max", timezone="Asia/Yekaterinburg"))


@pytest.fixture
def seeded(app, hub, client):
    make_users(hub)
    deliver(client, hub, "site", "+79120000001", "Хочу оплатить", name="Иван Петров", utm_campaign="весна")
    deliver(client, hub, "ads", "+79120000002", "консультация", name="Ольга")
    with transaction(hub.engine, read_only=True) as s:
        return {lead.owner: lead.id for lead in s.scalars(select(Lead))}


def data_words(hub) -> set[str]:
    config = hub.config
    words = set(TECHNICAL)
    names = [s.name for s in config.sources] + [s.connector for s in config.sources] + \
        [m.name for m in config.managers] + [t.name for t in config.teams] + \
        [r.name for r in config.routing.rules] + [r.name for r in config.warmth.rules]
    for name in names:
        words.update(re.findall(r"[A-Za-z][A-Za-z_'-]+", name))
    return words | {w.lower() for w in words}


def test_every_page_renders_in_russian_with_no_english_left(app, hub, seeded):
    allowed = data_words(hub) | {"example", "ru", "admin", "marketer", "max", "mia", "sid", "lena"}
    checked = []
    for login, paths in {
        "admin@example.ru": ["/leads", f"/leads/{seeded['Max']}", "/report", "/report?group_by=utm_campaign",
                             "/channels", "/channels/site", "/mapping-tester", "/managers", "/profile",
                             "/no-such-page"],
        "max@example.ru": ["/leads", f"/leads/{seeded['Max']}", "/leads?status=bogus&date_from=x"],
        "lena@example.ru": [f"/leads/{seeded['Mia']}"],
    }.items():
        client = app.test_client()
        client.environ_base["HTTP_ACCEPT_LANGUAGE"] = RU["Accept-Language"]
        login_page = client.get("/login").text
        assert english_words(login_page, allowed) == [], "login page"
        sign_in(client, login)
        for path in paths:
            r = client.get(path)
            assert r.status_code in (200, 404), (path, r.status_code)
            assert 'lang="ru"' in r.text
            leftovers = english_words(r.text, allowed)
            assert leftovers == [], f"{login} {path}: English left on a Russian page: {leftovers}"
            checked.append(path)
    # Results of actions, too: the flash messages and the mapping tester's answer.
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = RU["Accept-Language"]
    sign_in(client, "max@example.ru")
    lead = seeded["Max"]
    post_form(client, f"/leads/{lead}/status", {"status": "refused", "reason": "no_answer_5_attempts"},
              page=f"/leads/{lead}")
    card = client.get(f"/leads/{lead}").text
    assert "для причины «не отвечает после 5 попыток» нужно попыток связи: 5; у лида 1 их 0" in card
    post_form(client, f"/leads/{lead}/take", page=f"/leads/{lead}")
    card = client.get(f"/leads/{lead}").text
    assert "Лид взят в работу." in card and english_words(card, allowed) == []
    sign_in(client, "admin@example.ru")
    r = post_form(client, "/mapping-tester", {"source": "site", "payload": '{"phone": "8 912 345-67-89"}'},
                  page="/mapping-tester")
    assert "Теплота" in r.text and english_words(r.text, allowed) == []
    assert len(checked) == 14


def test_a_users_own_language_wins_over_the_browser(app, hub, seeded):
    client = app.test_client()
    sign_in(client, "max@example.ru")
    assert ">Inbox<" in client.get("/leads").text                      # no Accept-Language: the default, en
    post_form(client, "/profile", {"language": "ru"}, page="/profile")
    assert ">Входящие<" in client.get("/leads", headers={"Accept-Language": "en"}).text
    with transaction(hub.engine) as s:
        set_language(s, "max@example.ru", None)
    assert ">Inbox<" in client.get("/leads", headers={"Accept-Language": "en"}).text


def test_dates_are_shown_in_the_managers_time_zone_and_locale(app, hub, seeded):
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = RU["Accept-Language"]
    sign_in(client, "max@example.ru")                                    # Max lives in Yekaterinburg (UTC+5)
    with transaction(hub.engine, read_only=True) as s:
        created = s.get(Lead, seeded["Max"]).created_at
    from datetime import timedelta
    local = created + timedelta(hours=5)
    card = client.get(f"/leads/{seeded['Max']}").text
    shown = re.search(r'<dd id="created-at">([^<]+)</dd>', card).group(1)
    assert shown == f"{local:%d.%m.%Y}, {local:%H:%M}"                  # Russian short format, local time
    sign_in(client, "admin@example.ru")                                  # an admin: [ui] timezone, UTC
    card = client.get(f"/leads/{seeded['Max']}").text
    assert re.search(r'<dd id="created-at">([^<]+)</dd>', card).group(1) == f"{created:%d.%m.%Y}, {created:%H:%M}"


SEND = "https://api.telegram.org/bot1234567890:AAtoken/sendMessage"
NOTIFY = '''
[notify]
base_url = "https://hub.example.ru"
[notify.telegram]
bot_token = "1234567890:AAtoken"
'''


@responses.activate
def test_a_telegram_notification_in_russian_keeps_the_cyrillic_name(write_config, tmp_path):
    from hub.config import load_config
    from hub.runtime import Hub
    from hub.web.app import create_app

    config = with_manager(WEB_CONFIG, "Max", telegram_chat_id="100500", language="ru",
                          timezone="Europe/Moscow") + NOTIFY
    hub = Hub(load_config(write_config(config)))
    responses.post(SEND, json={"ok": True, "result": {"message_id": 1}})
    client = create_app(hub=hub).test_client()
    deliver(client, hub, "site", "8 912 345-67-89", "Где оплатить?", name="Иван Петров")
    assert Notifier(hub).send_due()["sent"] == 1
    sent = json.loads(responses.calls[0].request.body)
    assert sent["text"].splitlines() == ["Новый лид №1", "Иван Петров · +79123456789 · site · Где оплатить?",
                                         "https://hub.example.ru/leads/1"]
    hub.dispose()


def test_notification_templates_can_be_replaced_per_deployment(write_config, tmp_path):
    from hub.config import load_config
    from hub.outbox.messages import render

    folder = tmp_path / "my_templates"
    folder.mkdir()
    (folder / "new_lead.txt").write_text("{{ _('New lead #%(id)s', id=lead_id) }} 🔥\n{{ about }}\n", "utf-8")
    config = load_config(write_config('[ui]\nnotification_templates = "my_templates"\n'))
    assert render(config, "new_lead", "ru", "UTC", lead_id=7, about="Анна", link="x") == ("Новый лид №7 🔥", "Анна")
    assert render(config, "lead_back", "ru", "UTC", lead_id=7, about="Анна", link="x")[0] == "Лид №7 вернулся"


def test_configured_refusal_reasons_carry_their_own_labels(write_config):
    from hub.config import load_config
    from hub.i18n import gettext_for, reason_label
    config = load_config(write_config('''
[[refuse_reasons]]
code = "too_expensive"
label = "too expensive"
labels = {ru = "дорого"}
'''))
    rr = config.refuse_reason("too_expensive")
    assert reason_label(rr, "ru", gettext_for("ru")) == "дорого"
    assert reason_label(rr, "en", gettext_for("en")) == "too expensive"


def test_the_cli_shows_cyrillic_data_as_is(app, hub, client, runner):
    deliver(client, hub, "site", "+79120000001", "Перезвоните после обеда", name="Иван Петров")
    listing = runner("leads", "list", "--json").output
    assert "Иван Петров" in listing and "\\u04" not in listing
    assert json.loads(listing)[0]["name"] == "Иван Петров"
    assert "Иван Петров" in runner("leads", "list").output
    shown = runner("leads", "show", "1").output
    assert "Иван Петров" in shown
    event = runner("events", "show", "1").output
    assert "Перезвоните после обеда" in event


def test_notifications_are_plain_text_not_html_escaped(write_config):
    from hub.config import load_config
    from hub.outbox.messages import render
    config = load_config(write_config(""))
    subject, text = render(config, "new_lead", "en", "UTC", lead_id=3, about="O'Brien <vip> & co", link="x")
    assert text.splitlines()[0] == "O'Brien <vip> & co"
