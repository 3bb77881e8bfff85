"""The sales desk's pages as a manager and a team lead use them, on SQLite and PostgreSQL: the inbox's search,
default view and live refresh, the card's notes, tags, call-backs and deal amount, converting and refusing
only after a confirmation, and a team lead assigning a batch."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from html import unescape

import pytest
from sqlalchemy import select, update

from hub.desk.listings import handover_log
from hub.i18n import format_moment
from hub.store.db import transaction
from hub.store.models import IdentityKey, Lead, LeadHistory, LeadTask, utcnow
from tests.helpers.web import WEB_CONFIG, csrf_token, deliver, make_users, post_form, sign_in, with_manager

RU = "ru-RU,ru;q=0.9"


@pytest.fixture
def config_path(write_config):
    # Max lives in Yekaterinburg (UTC+5): his call-backs are typed in his time.
    return write_config(with_manager(WEB_CONFIG, "Max", timezone="Asia/Yekaterinburg"))


@pytest.fixture
def team(app, hub, client):
    """Users of every role; Max owns two site leads, Mia one (ads), Sid one (seo)."""
    make_users(hub)
    deliver(client, hub, "site", "+79123456789", "I want to pay", name="Ivan Petrov", email="Ivan.Petrov@Mail.ru")
    deliver(client, hub, "site", "+79120000002", "hello", name="Olga")
    deliver(client, hub, "ads", "+79120000003", "need advice", name="Anna")
    deliver(client, hub, "seo", "+79120000004", "hello", name="Boris")
    with transaction(hub.engine, read_only=True) as s:
        return {lead.person.name: lead.id for lead in s.scalars(select(Lead))}


def _rows(html: str) -> list[int]:
    return [int(i) for i in re.findall(r'<tr data-lead-id="(\d+)"', html)]


def _card(client, lead_id: int) -> str:
    r = client.get(f"/leads/{lead_id}")
    assert r.status_code == 200
    return r.text


def _lead(hub, lead_id: int) -> Lead:
    with transaction(hub.engine, read_only=True) as s:
        lead = s.get(Lead, lead_id)
        _ = lead.tasks, lead.history
        return lead


# -- the inbox ------------------------------------------------------------------------------------------

def test_the_search_box_finds_a_client_by_a_phone_spelled_their_way_by_name_and_by_e_mail(app, client, team):
    sign_in(client, "max@example.ru")
    inbox = client.get("/leads").text
    assert 'name="q"' in inbox and 'type="search"' in inbox
    ivan = team["Ivan Petrov"]
    for typed in ("8 912 345-67-89", "+7 (912) 345 67 89", "89123456789", "petr", "IVAN", "ivan.petrov@mail",
                  "MAIL.RU"):
        assert _rows(client.get("/leads", query_string={"q": typed}).text) == [ivan], typed
    assert _rows(client.get("/leads", query_string={"q": "8 912 000-00-03"}).text) == []    # Mia's, not his
    page = client.get("/leads", query_string={"q": "nobody"}).text
    assert "No leads match." in page and 'value="nobody"' in page


def test_a_managers_default_view_is_their_open_leads_due_first(app, hub, client, team):
    ivan, olga = team["Ivan Petrov"], team["Olga"]
    with transaction(hub.engine) as s:                  # Olga's SLA runs out first: she is due first
        s.execute(update(Lead).where(Lead.id == olga).values(sla_due_at=utcnow() + timedelta(minutes=2)))
    sign_in(client, "max@example.ru")
    inbox = client.get("/leads").text
    assert _rows(inbox) == [olga, ivan]
    assert re.search(r'<a href="/leads\?[^"]*order=newest[^"]*">Newest first</a>', unescape(inbox))
    assert re.search(r'class="current" aria-current="true">Due first<', inbox)
    assert _rows(client.get("/leads?order=newest").text) == sorted([olga, ivan], reverse=True)
    post_form(client, f"/leads/{olga}/status", {"status": "converted", "confirmed": "1"}, page=f"/leads/{olga}")
    assert _rows(client.get("/leads").text) == [ivan]                       # closed leads are not mixed in
    assert _rows(client.get("/leads?status=closed").text) == [olga]
    assert sorted(_rows(client.get("/leads?status=all").text)) == sorted([ivan, olga])
    sign_in(client, "lena@example.ru")                   # a team lead: her teams' open leads, newest first
    assert _rows(client.get("/leads").text) == sorted([ivan, team["Anna"]], reverse=True)


def test_a_tag_filter_offers_the_configured_tags_and_those_in_use(write_config, tmp_path):
    from hub.config import load_config
    from hub.runtime import Hub
    from hub.web.app import create_app

    hub = Hub(load_config(write_config(WEB_CONFIG + '\n[desk]\ntags = ["VIP", "call after 18"]\n')))
    try:
        client = create_app(hub=hub).test_client()
        make_users(hub)
        deliver(client, hub, "site", "+79120000001", name="Ivan")
        deliver(client, hub, "site", "+79120000002", name="Olga")
        sign_in(client, "max@example.ru")
        with transaction(hub.engine, read_only=True) as s:
            ivan = s.scalar(select(Lead.id).join(Lead.person).where(Lead.person.has(name="Ivan")))
        post_form(client, f"/leads/{ivan}/tags", {"tag": ["VIP"], "new_tags": "wholesale"}, page=f"/leads/{ivan}")
        inbox = client.get("/leads").text
        offered = re.search(r'<datalist id="tag-list">(.*?)</datalist>', inbox, re.S).group(1)
        assert re.findall(r'value="([^"]+)"', offered) == ["call after 18", "VIP", "website", "wholesale"]
        assert _rows(client.get("/leads?tag=vip").text) == [ivan]
        assert _rows(client.get("/leads?tag=WHOLESALE").text) == [ivan]
    finally:
        hub.dispose()


# -- the lead card ----------------------------------------------------------------------------------------

def test_contacts_are_links_a_call_a_letter_a_telegram_or_vk_chat(app, hub, client, team):
    from hub.web.pages.blueprint import contact_href

    ivan = team["Ivan Petrov"]
    with transaction(hub.engine) as s:
        person_id = s.get(Lead, ivan).person_id
        s.add_all([IdentityKey(kind="telegram", value="123456789", person_id=person_id),
                   IdentityKey(kind="vk", value="777", person_id=person_id)])
    sign_in(client, "max@example.ru")
    card = _card(client, ivan)
    assert '<a href="tel:+79123456789">+79123456789</a>' in card
    assert '<a href="mailto:ivan.petrov@mail.ru">ivan.petrov@mail.ru</a>' in card
    assert '<a href="tg://user?id=123456789">123456789</a>' in card
    assert '<a href="https://vk.com/id777">777</a>' in card
    assert '<a href="tel:+79123456789">' in client.get("/leads").text          # and in the inbox
    assert contact_href("telegram", "@ivan_petrov") == "https://t.me/ivan_petrov"
    assert contact_href("vk", "durov") == "https://vk.com/durov"
    assert contact_href("telegram", "not a name!") is None


def test_notes_tags_call_backs_and_the_deal_amount_through_the_cards_forms(app, hub, client, team):
    ivan = team["Ivan Petrov"]
    sign_in(client, "max@example.ru")
    post_form(client, f"/leads/{ivan}/take", page=f"/leads/{ivan}")
    post_form(client, f"/leads/{ivan}/notes", {"text": "Asked to call after 18:00\nprefers WhatsApp"},
              page=f"/leads/{ivan}")
    card = _card(client, ivan)
    assert "Note added." in card
    assert re.search(r'<section class="card" id="notes">.*Asked to call after 18:00\nprefers WhatsApp', card, re.S)
    post_form(client, f"/leads/{ivan}/notes", {"text": "   "}, page=f"/leads/{ivan}")
    assert "the note is empty" in _card(client, ivan)

    post_form(client, f"/leads/{ivan}/tags", {"new_tags": "VIP, wholesale, vip"}, page=f"/leads/{ivan}")
    assert _lead(hub, ivan).tags == ["VIP", "wholesale"]
    card = _card(client, ivan)
    assert 'name="tag" value="VIP" checked' in card and 'name="tag" value="wholesale" checked' in card
    post_form(client, f"/leads/{ivan}/tags", {"tag": ["wholesale"]}, page=f"/leads/{ivan}")   # VIP unticked
    assert _lead(hub, ivan).tags == ["wholesale"]

    # A call-back for tomorrow 18:00 in Max's time (Yekaterinburg, UTC+5): 13:00 UTC.
    tomorrow = (utcnow() + timedelta(hours=5)).date() + timedelta(days=1)
    post_form(client, f"/leads/{ivan}/tasks", {"due_date": tomorrow.isoformat(), "due_time": "18:00",
                                               "text": "call back after 18:00"}, page=f"/leads/{ivan}")
    task = _lead(hub, ivan).tasks[0]
    assert task.due_at == datetime(tomorrow.year, tomorrow.month, tomorrow.day, 13, 0, tzinfo=UTC)
    card = _card(client, ivan)
    assert "Call-back set." in card and f'data-task-id="{task.id}"' in card
    shown = format_moment(task.due_at, "en", "Asia/Yekaterinburg")
    assert shown.endswith("6:00\u202fPM") and f"{shown}</time> call back after 18:00" in card   # in his time
    post_form(client, f"/leads/{ivan}/tasks", {"due_date": "2020-01-01", "due_time": "18:00", "text": "late"},
              page=f"/leads/{ivan}")
    assert "the task&#39;s time is in the past" in _card(client, ivan)
    post_form(client, f"/leads/{ivan}/tasks", {"due_date": "tomorrow", "due_time": "", "text": "x"},
              page=f"/leads/{ivan}")
    assert "Give the call-back&#39;s date and time." in _card(client, ivan)
    # Overdue once its time has passed; done with the button.
    with transaction(hub.engine) as s:
        s.execute(update(LeadTask).where(LeadTask.id == task.id).values(due_at=utcnow() - timedelta(minutes=1)))
    card = _card(client, ivan)
    assert re.search(rf'data-task-id="{task.id}".*?overdue-badge', card, re.S)
    post_form(client, f"/leads/{ivan}/tasks/{task.id}/done", page=f"/leads/{ivan}")
    assert _lead(hub, ivan).tasks[0].done_by == "Max"
    assert "Call-back done." in _card(client, ivan)

    post_form(client, f"/leads/{ivan}/status", {"status": "converted", "amount": "12 500,50", "confirmed": "1"},
              page=f"/leads/{ivan}")
    lead = _lead(hub, ivan)
    assert lead.status == "converted" and lead.amount == Decimal("12500.50")
    card = _card(client, ivan)
    assert 'data-amount="12500.50">12,500.50 RUB' in card
    kinds = [h.kind for h in lead.history]
    assert kinds[-6:] == ["note", "tags", "tags", "task", "task_done", "status"]


def test_a_bad_amount_is_refused_and_nothing_changes(app, hub, client, team):
    ivan = team["Ivan Petrov"]
    sign_in(client, "max@example.ru")
    for typed in ("twelve", "-5", "1.005", "1e20"):
        post_form(client, f"/leads/{ivan}/status", {"status": "converted", "amount": typed, "confirmed": "1"},
                  page=f"/leads/{ivan}")
        assert "is not an amount" in _card(client, ivan), typed
    assert _lead(hub, ivan).status == "new"


def test_converting_and_refusing_ask_for_a_confirmation_and_no_reason_is_chosen_for_you(app, hub, client, team):
    ivan = team["Ivan Petrov"]
    sign_in(client, "max@example.ru")
    card = _card(client, ivan)
    select_ = re.search(r'<select id="reason".*?</select>', card, re.S).group(0)
    assert '<option value="" disabled selected>choose a reason…</option>' in select_
    assert select_.count("selected") == 1                                  # the placeholder only
    assert 'id="confirm-dialog"' in card and "/static/lead.js" in card
    # Unconfirmed: a page that asks, and nothing changed.
    r = post_form(client, f"/leads/{ivan}/status", {"status": "converted", "amount": "5000"}, page=f"/leads/{ivan}")
    assert r.status_code == 200 and "Mark lead" in r.text and 'name="confirmed" value="1"' in r.text
    assert 'name="amount" value="5000"' in r.text and "5,000.00 RUB" in r.text
    assert _lead(hub, ivan).status == "new"
    # A refusal without a reason is refused, saying so; one its attempts do not allow yet, at once.
    post_form(client, f"/leads/{ivan}/status", {"status": "refused"}, page=f"/leads/{ivan}")
    assert "Choose the refusal reason first: none is chosen for you." in _card(client, ivan)
    post_form(client, f"/leads/{ivan}/status", {"status": "refused", "reason": "no_answer_5_attempts"},
              page=f"/leads/{ivan}")
    assert "needs 5 contact attempts" in _card(client, ivan)
    r = post_form(client, f"/leads/{ivan}/status", {"status": "refused", "reason": "by_mistake"}, page=f"/leads/{ivan}")
    assert r.status_code == 200 and "Refuse lead" in r.text and "contacted by mistake" in r.text
    assert _lead(hub, ivan).status == "new"
    # The confirmation page's own form is what confirms.
    form = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', r.text))
    assert client.post(f"/leads/{ivan}/status", data=form).status_code == 302
    assert _lead(hub, ivan).status == "refused"


def test_after_the_attempts_a_reason_asks_for_the_card_proposes_that_refusal(app, hub, client, team):
    olga = team["Olga"]
    sign_in(client, "max@example.ru")
    for n in range(5):
        card = _card(client, olga)
        assert 'id="proposal"' not in card
        assert re.search(r'<option value="no_answer_5_attempts"\s+disabled>', card), n      # not yet
        post_form(client, f"/leads/{olga}/attempt", page=f"/leads/{olga}")
    card = _card(client, olga)
    assert "5 contact attempts made: the lead can be refused as \"no answer after 5 attempts\"." in card
    assert re.search(r'<option value="no_answer_5_attempts" selected >', card)
    assert '<option value="" disabled >' in card


def test_the_timeline_says_who_took_it_and_names_the_hub(app, hub, client, team):
    ivan = team["Ivan Petrov"]
    sign_in(client, "max@example.ru")
    post_form(client, f"/leads/{ivan}/take", page=f"/leads/{ivan}")
    card = _card(client, ivan)
    taken = re.search(r'<li data-kind="taken">.*?</li>', card, re.S).group(0)
    assert "taken into work by Max" in taken and "Max → Max" not in taken and "Max</b>" in taken
    assigned = re.search(r'<li data-kind="assigned">.*?</li>', card, re.S).group(0)
    assert "· the hub" in assigned
    client.environ_base["HTTP_ACCEPT_LANGUAGE"] = RU
    card = _card(client, ivan)
    assert re.search(r'<li data-kind="assigned">.*?· хаб', card, re.S)
    assert "взят в работу: Max" in card


# -- the team lead's batch ----------------------------------------------------------------------------------

def test_a_team_lead_assigns_a_batch_each_in_the_handover_log(app, hub, client, team):
    ivan, olga, anna, boris = team["Ivan Petrov"], team["Olga"], team["Anna"], team["Boris"]
    sign_in(client, "lena@example.ru")
    inbox = client.get("/leads").text
    assert 'id="batch"' in inbox and f'name="lead_id" value="{ivan}" form="batch"' in inbox
    r = post_form(client, "/leads/assign?status=open", {"owner": "Mia", "lead_id": [str(ivan), str(olga), str(anna)]},
                  page="/leads")
    assert r.status_code == 302 and r.headers["Location"] == "/leads?status=open"
    assert "2 leads handed over to Mia." in client.get("/leads").text       # Anna was Mia's already
    with transaction(hub.engine, read_only=True) as s:
        assert {s.get(Lead, i).owner for i in (ivan, olga, anna)} == {"Mia"}
        log = handover_log(s)
    moved = [(e["lead_id"], e["from"], e["to"], e["by"]) for e in log if e["kind"] == "reassigned"]
    assert sorted(moved) == sorted([(ivan, "Max", "Mia", "Lena"), (olga, "Max", "Mia", "Lena")])
    # Boris is Sid's (team south): not hers to see, so the whole batch is refused and nothing moves.
    post_form(client, "/leads/assign", {"owner": "Max", "lead_id": [str(ivan), str(boris)]}, page="/leads")
    assert f"Nothing was handed over: no lead {boris}." in client.get("/leads").text
    assert _lead(hub, ivan).owner == "Mia" and _lead(hub, boris).owner == "Sid"
    post_form(client, "/leads/assign", {"owner": "Sid", "lead_id": [str(ivan)]}, page="/leads")
    assert "Choose whom to hand the leads to." in client.get("/leads").text
    post_form(client, "/leads/assign", {"owner": "Max"}, page="/leads")
    assert "Tick the leads to hand over first." in client.get("/leads").text
    # The form carries the CSRF token like every other; a manager has no batch.
    assert client.post("/leads/assign", data={"owner": "Max", "lead_id": str(ivan)}).status_code == 400
    sign_in(client, "max@example.ru")
    assert 'id="batch"' not in client.get("/leads").text
    r = client.post("/leads/assign", data={"owner": "Max", "lead_id": str(ivan), "csrf_token": csrf_token(client, "/")})
    assert r.status_code == 403


# -- the live inbox -------------------------------------------------------------------------------------

def _live(client, path: str = "/leads") -> tuple[str, int, set[str]]:
    page = client.get(path).text
    script = re.search(r'<script src="/static/inbox.js"[^>]*>', page, re.S).group(0)
    poll = unescape(re.search(r'data-poll="([^"]+)"', script).group(1))
    cursor = int(re.search(r'data-cursor="(\d+)"', script).group(1))
    known = set(filter(None, re.search(r'data-known="([^"]*)"', script).group(1).split(",")))
    return poll, cursor, known


def _after(poll: str, cursor: int) -> str:
    return f"{poll}{'&' if '?' in poll else '?'}after={cursor}"


def _arrived(client, poll: str, cursor: int, known: set[str]) -> list[int]:
    """What the page's script would put on top: the rows of arrivals it does not know yet."""
    r = client.get(_after(poll, cursor))
    assert r.status_code == 200 and r.is_json
    rows = re.findall(r'<tr data-lead-id="(\d+)" data-arrival="(\d+)"', r.json["rows"])
    return [int(lead) for lead, arrival in rows if arrival not in known]


def test_the_live_inbox_gets_new_and_handed_over_leads_for_whoever_may_see_them(app, hub, client, team):
    pages = {}
    for login in ("max@example.ru", "mia@example.ru", "lena@example.ru", "sid@example.ru", "admin@example.ru"):
        c = app.test_client()
        sign_in(c, login)
        pages[login] = (c, *_live(c))
    searching = app.test_client()
    sign_in(searching, "max@example.ru")
    search_view = (searching, *_live(searching, "/leads?q=Olga"))
    for c, poll, cursor, known in (*pages.values(), search_view):
        assert _arrived(c, poll, cursor, known) == []                    # what was there is known
    deliver(client, hub, "site", "+79125550000", "new one", name="Petr")
    with transaction(hub.engine, read_only=True) as s:
        petr = s.scalar(select(Lead.id).order_by(Lead.id.desc()).limit(1))
    seen = {login: _arrived(*view) for login, view in pages.items()}
    assert seen == {"max@example.ru": [petr], "mia@example.ru": [], "lena@example.ru": [petr],
                    "sid@example.ru": [], "admin@example.ru": [petr]}
    assert _arrived(*search_view) == []                                  # not what Max is looking for
    # A lead handed to Mia shows in her inbox; not again in Lena's, who handed it over.
    lena = pages["lena@example.ru"][0]
    post_form(lena, f"/leads/{team['Olga']}/owner", {"owner": "Mia"}, page=f"/leads/{team['Olga']}")
    assert _arrived(*pages["mia@example.ru"]) == [team["Olga"]]
    assert _arrived(*pages["lena@example.ru"]) == [petr]
    # The cursor stays behind what may still be joined by a late commit; a minute on, it moves past.
    c, poll, cursor, known = pages["mia@example.ru"]
    assert c.get(_after(poll, cursor)).json["cursor"] == cursor
    with transaction(hub.engine) as s:
        for entry in s.scalars(select(LeadHistory)):
            entry.at -= timedelta(minutes=2)
    later = c.get(_after(poll, cursor)).json["cursor"]
    assert later > cursor and c.get(_after(poll, later)).json["count"] == 0
    assert c.get(poll).status_code == 400
    assert app.test_client().get(_after(poll, 0)).status_code == 302   # signed out: sign in
