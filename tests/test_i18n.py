"""Russian and English: the catalogs are complete and compiled, every page as every role renders in Russian
with no English left and in English with no Russian left (stored rejection reasons, contact problems, flags,
the config's rule and team names included), dates follow the reader's time zone, notifications speak the
manager's language."""

from __future__ import annotations

import io
import itertools
import json
import re
import subprocess
import sys
from datetime import timedelta
from html.parser import HTMLParser
from pathlib import Path

import pytest
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from sqlalchemy import select

from hub.desk.access import set_language
from hub.outbox.notify import Notifier
from hub.pipeline.worker import Worker
from hub.store.db import transaction
from hub.store.models import Lead
from hub.web.common import roles_of
from tests.helpers.web import USERS, WEB_CONFIG, deliver, make_users, post_form, sign_in, with_manager

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
    """The text a reader sees: not code samples, not what they typed; of the attributes, those read as text
    (a placeholder, a tooltip, a label for a screen reader)."""

    READ_ATTRIBUTES = ("placeholder", "title", "aria-label", "alt")

    def __init__(self):
        super().__init__()
        self.skip, self.parts = 0, []

    def handle_starttag(self, tag, attrs):
        if tag in ("code", "pre", "script", "style", "textarea"):
            self.skip += 1
        elif not self.skip:
            self.parts += [value for name, value in attrs if name in self.READ_ATTRIBUTES and value]

    def handle_endtag(self, tag):
        if tag in ("code", "pre", "script", "style", "textarea"):
            self.skip -= 1

    def handle_data(self, data):
        if not self.skip:
            self.parts.append(data)


def visible_text(html: str) -> str:
    parser = VisibleText()
    parser.feed(html)
    return " ".join(parser.parts)


LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z_'-]+")
CYRILLIC_WORD = re.compile(r"[А-Яа-яЁё][А-Яа-яЁё-]*+(?!•)")      # not a masked value's first letter: "И•••"
PRODUCT = "lead hub"            # the product's name, Latin in every language


def english_words(html: str, data: set[str]) -> list[str]:
    words = [w.strip("'") for w in LATIN_WORD.findall(visible_text(html).replace(PRODUCT, ""))]
    return [w for w in words if w not in data and w.lower() not in data]


def cyrillic_words(html: str, data: set[str]) -> list[str]:
    return [w for w in CYRILLIC_WORD.findall(visible_text(html)) if w not in data]


# What may stay Latin on a Russian page: technical names, and (data_words) the data of this test.
TECHNICAL = {"Excel", "utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", "UTC", "URL", "CSV",
             "JSON", "E-mail", "English", "RUB", "hooks", "events", "summary", "site_form", "Telegram"}
# What may stay Cyrillic on an English page besides the data: the language menu names Russian in Russian.
AUTONYMS = {"Русский"}

# Teams, routing and warmth rules carry Russian labels: a Russian page names them by these, never by the name.
LABELS = {"north": "Север", "south": "Юг", "asks to pay": "просит оплатить", "asks advice": "просит совета",
          "site to Max": "с сайта — Максу", "ads to Mia": "с рекламы — Мие", "seo to Sid": "с поиска — Сиду"}


def labelled(config: str) -> str:
    for name, label in LABELS.items():
        entry = f'name = "{name}"\n'
        assert config.count(entry) == 1, name
        config = config.replace(entry, f'{entry}labels = {{ ru = "{label}" }}\n')
    return config


@pytest.fixture
def config_path(write_config):
    return write_config(labelled(with_manager(WEB_CONFIG, "Max", timezone="Asia/Yekaterinburg")))


# The store's and the mapping tester's data, shown as it is in either language.
INVALID_CONTACTS = {"phone": "12345", "tel": "+79120000003", "email": "ivan@", "name": "Пётр Сидоров",
                    "message": "Перезвоните"}                   # a lead with a bad phone and a bad e-mail
NO_CONTACT = {"name": "Без контакта", "message": "перезвоните вечером"}     # rejected: nothing to call
BROKEN_JSON = '{"phone": '                                                  # rejected: not JSON
LONG_MESSAGE = "Перезвоните после обеда. " * 500                            # over 10,000 characters: cut
DATA = ["Иван Петров", "Хочу оплатить", "весна", "Ольга", "консультация", "Анна", "Где оплатить",
        *INVALID_CONTACTS.values(), *NO_CONTACT.values(), LONG_MESSAGE]


@pytest.fixture
def seeded(app, hub, client):
    """A paying client's lead routed by a labelled rule, a lead with a phone and an e-mail not understood,
    a lead handed over (the timeline), deliveries rejected for want of a contact and for broken JSON."""
    make_users(hub)
    deliver(client, hub, "site", "+79120000001", "Хочу оплатить", name="Иван Петров", utm_campaign="весна")
    deliver(client, hub, "ads", "+79120000002", "консультация", name="Ольга")
    deliver(client, hub, "seo", "+79120000004", "Где оплатить", name="Анна")
    assert client.post("/hooks/site", json=INVALID_CONTACTS).status_code == 200
    assert client.post("/hooks/site", json=NO_CONTACT).status_code == 422
    assert client.post("/hooks/site", data=BROKEN_JSON, content_type="application/json").status_code == 400
    Worker(hub).drain()
    with transaction(hub.engine, read_only=True) as s:
        leads = {lead.person.name: lead.id for lead in s.scalars(select(Lead))}
    lena = app.test_client()
    sign_in(lena, "lena@example.ru")
    post_form(lena, f"/leads/{leads['Ольга']}/owner", {"owner": "Max"}, page=f"/leads/{leads['Ольга']}")
    return {"paying": leads["Иван Петров"], "handed_over": leads["Ольга"], "invalid": leads["Пётр Сидоров"],
            "south": leads["Анна"]}


def data_words(hub) -> set[str]:
    """The words of what a page shows as it is: sources, their connectors and tags, managers and their time
    zones, logins, the mappings' field names (a rejection names those it looked for) and this test's data.
    Not teams or rules: they are labelled."""
    config = hub.config
    fields = [name for source in hub.sources.values() for names in source.mapping.fields.model_dump().values()
              for name in names]
    texts = [s.name for s in config.sources] + [s.connector for s in config.sources] + \
        [tag for s in config.sources for tag in s.tags] + [m.name for m in config.managers] + \
        [m.timezone for m in config.managers] + list(USERS) + fields + DATA
    words = {w for text in texts for w in LATIN_WORD.findall(text) + CYRILLIC_WORD.findall(text)}
    return words | {w.lower() for w in words}


def page_paths(app, seeded, hub):
    """Every page route in the app's URL map (GET, the pages blueprint, static files aside), with every real
    value of its arguments: (endpoint, path)."""
    values = {"lead_id": sorted(seeded.values()), "source_name": list(hub.sources)}
    urls = app.url_map.bind("localhost")
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        if not rule.endpoint.startswith("pages.") or "GET" not in rule.methods or rule.endpoint == "pages.static":
            continue
        unknown = rule.arguments - values.keys()
        assert not unknown, f"{rule.rule}: give this test real values of {sorted(unknown)}"
        names = sorted(rule.arguments)
        for combination in itertools.product(*(values[name] for name in names)):
            yield rule.endpoint, urls.build(rule.endpoint, dict(zip(names, combination, strict=True)))
    # The same pages with what a query string changes: the other grouping, filters that are not understood.
    yield "pages.report", "/report?group_by=utm_campaign"
    yield "pages.inbox", "/leads?status=bogus&date_from=x"


# Page routes that answer no page: a download, or JSON for a page's own script (the inbox's live rows are
# the inbox's own template, checked on the inbox).
NOT_PAGES = {"pages.calls_poll", "pages.inbox_poll", "pages.leads_export", "pages.report_csv",
             "pages.report_funnel_csv", "pages.report_statuses_csv", "pages.report_handovers_csv",
             "pages.report_activity_csv", "pages.report_managers_csv"}

TESTER = {  # the mapping tester, each payload once as every role that may use it
    "rejected": {"source": "site", "payload": json.dumps(NO_CONTACT, ensure_ascii=False)},
    "flags": {"source": "site", "payload": json.dumps({**INVALID_CONTACTS, "message": LONG_MESSAGE},
                                                      ensure_ascii=False)},
    "broken": {"source": "site", "payload": BROKEN_JSON, "content_type": "application/json"},
}


def every_page(app, hub, seeded, lang: str, leftovers) -> dict[str, str]:
    """Every page as every role that may see it (anyone for the public ones), in ``lang``, the user's own
    language. Fails listing every page with ``leftovers(html)``; returns a page per endpoint and tester case."""
    with transaction(hub.engine) as s:
        for login in USERS:
            set_language(s, login, lang)
    readers = {}
    for login in USERS:
        readers[login] = app.test_client()
        readers[login].environ_base["HTTP_ACCEPT_LANGUAGE"] = "en" if lang == "ru" else "ru"   # the user's wins
        sign_in(readers[login], login)
    anonymous = app.test_client()
    anonymous.environ_base["HTTP_ACCEPT_LANGUAGE"] = lang
    found, pages, seen = [], {}, set()

    def check(who: str, what: str, r):
        assert f'<html lang="{lang}">' in r.text, (who, what)
        if left := leftovers(r.text):
            found.append(f"{who} {what}: {left}")

    for endpoint, path in page_paths(app, seeded, hub):
        roles = roles_of(app.view_functions[endpoint])
        who = ["anonymous"] if roles is None else [login for login, (role, _) in USERS.items() if role in roles]
        assert who, endpoint
        for login in who:
            r = (anonymous if login == "anonymous" else readers[login]).get(path, follow_redirects=True)
            if r.mimetype != "text/html":
                r.close()
                assert endpoint in NOT_PAGES, f"{path} answers {r.mimetype}: add it to NOT_PAGES if it is no page"
                continue
            assert r.status_code in (200, 404), (login, path, r.status_code)
            check(login, path, r)
            if r.status_code == 200:
                seen.add(endpoint)
                pages.setdefault(path, r.text)
    for case, form in TESTER.items():
        for login, (role, _) in USERS.items():
            if role in roles_of(app.view_functions["pages.mapping_tester"]):
                r = post_form(readers[login], "/mapping-tester", form, page="/mapping-tester")
                assert r.status_code == 200
                check(login, f"mapping tester, {case}", r)
                pages.setdefault(f"tester {case}", r.text)
    assert not found, "\n".join(found)
    html = {endpoint for endpoint, _ in page_paths(app, seeded, hub)} - NOT_PAGES
    assert html <= seen, f"never shown as a page: {sorted(html - seen)}"
    return pages


def axis_days(report: str) -> list[str]:
    """The days under the report's chart."""
    return re.findall(r'text-anchor="middle" class="tick">([^<]+)</text>', report)


def test_every_page_as_every_role_in_russian_has_no_english_left(app, hub, seeded):
    allowed = TECHNICAL | data_words(hub)
    pages = every_page(app, hub, seeded, "ru", lambda html: english_words(html, allowed))
    # Not vacuous: the rejections, the contacts not understood and the flags were on the pages, in Russian.
    channel = pages["/channels/site"]
    assert "нет ни телефона, ни e-mail, ни идентификатора в мессенджере (искали в полях: phone, tel," in channel
    assert "JSON с ошибкой: ожидалось значение (строка 1, столбец 11)" in channel
    assert "Отклонено: нет ни телефона" in pages["tester rejected"]
    flags = pages["tester flags"]
    assert "недействительный номер телефона для региона RU" in flags and "после знака @ ничего нет" in flags
    assert "<code>message_truncated</code> обрезано до наибольшей хранимой длины" in flags
    assert "JSON с ошибкой: ожидалось значение (строка 1, столбец 10)" in pages["tester broken"]   # trimmed
    # The config's names by their labels, the timeline's hand-over, the report's own words.
    assert "правило &#39;с сайта — Максу&#39;: закреплённый менеджер" in pages[f"/leads/{seeded['paying']}"]
    invalid = pages[f"/leads/{seeded['invalid']}"]
    assert "12345 (недействительный номер телефона для региона RU)" in invalid
    assert "ivan@ (после знака @ ничего нет)" in invalid
    assert "передан вручную" in pages[f"/leads/{seeded['handed_over']}"]
    assert re.search(r'<tr data-manager="Max"[^>]*>.*?<td>Север</td>', pages["/managers"], re.S)
    report = pages["/report"]
    assert ">Группировать по <select" in report and ">По <input" in report
    assert axis_days(report) and all(re.fullmatch(r"\d\d\.\d\d", day) for day in axis_days(report))  # 02.12
    assert "Путь после /hooks/&lt;источник&gt;/" in pages["/mapping-tester"]


def test_every_page_as_every_role_in_english_has_no_russian_left(app, hub, seeded):
    allowed = AUTONYMS | data_words(hub)
    pages = every_page(app, hub, seeded, "en", lambda html: cyrillic_words(html, allowed))
    assert "no phone, e-mail or messenger id (looked for fields: phone, tel," in pages["/channels/site"]
    flags = pages["tester flags"]
    assert "not a valid phone number for region RU" in flags and "nothing after the @ sign" in flags
    assert "<code>message_truncated</code> cut to the longest value kept" in flags
    assert "rule &#39;site to Max&#39;: fixed" in pages[f"/leads/{seeded['paying']}"]
    assert re.search(r'<tr data-manager="Max"[^>]*>.*?<td>north</td>', pages["/managers"], re.S)
    assert ">Group by <select" in pages["/report"]
    report = pages["/report"]
    assert axis_days(report) and all(re.fullmatch(r"[A-Z][a-z]{2} \d{1,2}", day) for day in axis_days(report))
    assert "Path after /hooks/&lt;source&gt;/ (e.g. events/summary)" in pages["/mapping-tester"]


def test_actions_answer_in_the_readers_language(app, hub, seeded):
    """The flash messages and a refusal's reason, in Russian."""
    allowed = TECHNICAL | data_words(hub)
    client = app.test_client()
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = RU["Accept-Language"]
    sign_in(client, "max@example.ru")
    lead = seeded["paying"]
    post_form(client, f"/leads/{lead}/status", {"status": "refused", "reason": "no_answer_5_attempts"},
              page=f"/leads/{lead}")
    card = client.get(f"/leads/{lead}").text
    assert f"для причины «не отвечает после 5 попыток» нужно попыток связи: 5; у лида {lead} их 0" in card
    post_form(client, f"/leads/{lead}/take", page=f"/leads/{lead}")
    card = client.get(f"/leads/{lead}").text
    assert "Лид взят в работу." in card and english_words(card, allowed) == []


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
        created = s.get(Lead, seeded["paying"]).created_at
    local = created + timedelta(hours=5)
    card = client.get(f"/leads/{seeded['paying']}").text
    shown = re.search(r'<dd id="created-at">([^<]+)</dd>', card).group(1)
    assert shown == f"{local:%d.%m.%Y}, {local:%H:%M}"                  # Russian short format, local time
    sign_in(client, "admin@example.ru")                                  # an admin: [ui] timezone, UTC
    card = client.get(f"/leads/{seeded['paying']}").text
    assert re.search(r'<dd id="created-at">([^<]+)</dd>', card).group(1) == f"{created:%d.%m.%Y}, {created:%H:%M}"


NOTIFY = '''
[notify]
base_url = "https://hub.example.ru"
[notify.telegram]
bot_token = "1234567890:AAtoken"
'''


def test_a_telegram_notification_in_russian_keeps_the_cyrillic_name(write_config, tmp_path, fake_telegram):
    from hub.config import load_config
    from hub.runtime import Hub
    from hub.web.app import create_app

    config = with_manager(WEB_CONFIG, "Max", telegram_chat_id="100500", language="ru",
                          timezone="Europe/Moscow") + NOTIFY + f'api_url = "{fake_telegram.url}"\n'
    hub = Hub(load_config(write_config(config)))
    client = create_app(hub=hub).test_client()
    deliver(client, hub, "site", "8 912 345-67-89", "Где оплатить?", name="Иван Петров")
    assert Notifier(hub).send_due()["sent"] == 1
    [sent] = fake_telegram.of("sendMessage")
    assert sent["text"].splitlines() == ["Новый лид №1", "Иван Петров · +79123456789 · site · Где оплатить?",
                                         "https://hub.example.ru/leads/1"]
    # The manager bot's buttons speak the manager's language too.
    assert [b["text"] for row in sent["reply_markup"]["inline_keyboard"] for b in row] == [
        "Взять в работу", "Попытка связи", "Перезвонить через 1 ч", "Завтра в 10:00", "Отказ", "Открыть"]
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


def test_rules_and_teams_carry_their_own_labels_and_a_recorded_why_uses_them(write_config):
    from hub.config import load_config
    from hub.i18n import Msg, Names, gettext_for, why_of
    config = load_config(write_config(labelled(WEB_CONFIG)))
    ru, en = Names(config, "ru"), Names(config, "en")
    assert ru.rule("site to Max") == "с сайта — Максу" and ru.rule("asks to pay") == "просит оплатить"
    assert ru.team("north") == "Север" and en.team("north") == "north" and ru.rule("no such rule") == "no such rule"
    # A reason recorded before the label was written: the rule and the team are parameters, shown by label.
    why = Msg.join(Msg("nobody available (%(reasons)s)", reasons=Msg("team %(team)r has no active members",
                                                                       team="north")),
                   Msg("rule %(rule)r: fixed", rule="site to Max"))
    entry = {"why": str(why), "why_msg": why.to_json()}
    shown = why_of(entry, gettext_for("ru"), ru)
    assert "'Север'" in shown and "'с сайта — Максу'" in shown
    assert why_of(entry, gettext_for("en"), en) == str(why)


def test_every_stored_reason_reads_back_as_itself():
    """Each template's sentence is read back into its own code (no two templates claim one sentence), and
    each library sentence into ours."""
    from hub.i18n import _PARAMETER, REASONS, THEIR_WORDS, Reason, read_reason
    for code, template in REASONS.items():
        params = {m.group(1): f"v{i}" for i, m in enumerate(_PARAMETER.finditer(template))}
        text = str(Reason(code, **params))
        assert (read_reason(text).code, str(read_reason(text))) == (code, text), template
    for words, code in THEIR_WORDS.items():
        text = words % {m.group(1): "x" for m in _PARAMETER.finditer(words)}
        assert read_reason(text).code == code, words


# Bad input as it reaches the hub, and a word of what each is said to be in Russian.
BAD_EMAILS = {"no at sign": "нет знака @", "ivan@": "после знака @ ничего нет", "@example.ru": "перед знаком @",
              "ivan@example": "нет точки", "ivan@x.local": "зарезервирован", "iv..an@x.ru": "две точки",
              ".ivan@x.ru": "начинается с точки", "ivan.@x.ru": "перед знаком @", "ivan@-x.ru": "сразу после",
              "ivan@x.ru.": "кончается", "a b@x.ru": "до знака @", "ivan@x_y.ru": "после знака @",
              '"ivan"@x.ru': "кавычки", "Ivan <ivan@x.ru>": "угловые скобки", "ivan@123.456": "зоной",
              "i" * 300 + "@x.ru": "слишком длинный для адреса", f"ivan@{'x' * 300}.ru": "слишком длинно после",
              f"ivan@{'x' * 70}.ru": "слишком длинная часть домена"}
BAD_PHONES = {"12345": "недействительный номер", "not a phone": "не похоже на номер", "": "не похоже на номер",
              "+999 123": "неизвестный код страны", "1" * 30: "слишком длинный"}
BAD_JSON = ['{"a": 1,}', '{"a" 1}', "[1 2]", '"abc', '"a\x01"', '"\\q"', '"\\u12"', "1 2", "", "[1,]", "NaN",
            "1e999", "9" * 5000, "[" * 100 + "]" * 100]


def test_what_the_libraries_say_is_read_back_and_said_in_russian():
    """email-validator's, libphonenumber's and json's sentences, stored as they wrote them (the API keeps
    them whole), are shown in Russian on a page: a library that rewords one fails here, not on a page."""
    from hub.connector import InboundRequest, decode_body, form_fields, parse_json
    from hub.errors import PayloadError
    from hub.i18n import gettext_for, reason_text
    from hub.pipeline.normalise import normalise_email, normalise_phone
    ru = gettext_for("ru")
    for raw, said in BAD_EMAILS.items():
        problem = normalise_email(raw).problem
        assert said in reason_text(problem, ru) and not english_words(reason_text(problem, ru), set()), (raw, problem)
    for raw, said in BAD_PHONES.items():
        problem = normalise_phone(raw, "RU").problem
        assert said in reason_text(problem, ru) and english_words(reason_text(problem, ru), set()) == ["RU"] * (
            "RU" in problem), (raw, problem)
    refusals = []
    for text in BAD_JSON:
        with pytest.raises(PayloadError) as refused:
            parse_json(text)
        refusals.append(str(refused.value))
    for body, charset in ((b"\xff", None), (b"a\xc3", None), (b"\xc3\x28", None), (b"x", "x-no-such")):
        with pytest.raises(PayloadError) as refused:
            decode_body(body, charset)
        refusals.append(str(refused.value))
    with pytest.raises(PayloadError) as refused:
        form_fields(InboundRequest("POST", "", {}, {}, b"name=%ff", "application/x-www-form-urlencoded", None))
    refusals.append(str(refused.value))
    for stored in refusals:
        shown = reason_text(stored, ru)
        allowed = TECHNICAL | {"NaN", "utf-", "x-no-such", "Content-Type"}
        assert shown != stored and not english_words(shown, allowed), stored
    assert reason_text("malformed JSON: Expecting value at line 1 column 1", ru) == \
        "JSON с ошибкой: ожидалось значение (строка 1, столбец 1)"
    assert reason_text("a sentence of a plugin's own", ru) == "a sentence of a plugin's own"


def test_every_flag_the_hub_sets_has_a_label():
    from hub.i18n import flag_label, gettext_for
    from hub.mapping import CLICK_ID_KEYS, MAX_FIELD_CHARS, UTM_KEYS
    flags = ["invalid_phone", "invalid_email", "unmapped_payload", "page_url_unparsable", "referrer_unparsable",
             *(f"{key}_truncated" for key in (*MAX_FIELD_CHARS, "phone", "email", "telegram", "vk", *UTM_KEYS,
                                              *CLICK_ID_KEYS))]
    for flag in flags:
        assert flag_label(flag, gettext_for("en")) != flag, flag
        assert not english_words(flag_label(flag, gettext_for("ru")), TECHNICAL | {"e-mail"}), flag


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
