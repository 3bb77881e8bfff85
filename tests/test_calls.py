"""Calls: a known client is put straight through to their manager, live, through the real webhook
endpoints with Zadarma- and generic-PBX-shaped payloads; the caller lookup API; the screen-pop."""

from __future__ import annotations

import json
from urllib.parse import urlencode

import pytest
import responses
from sqlalchemy import select

from connectors.zadarma import signature
from hub.pipeline.routing.lifecycle import set_manager_state
from hub.pipeline.worker import Worker
from hub.store.db import transaction
from hub.store.models import CallAlert, InboundEvent, Lead, LeadHistory, Notification, utcnow
from tests.helpers.web import WEB_CONFIG, deliver, make_users, sign_in, token_for, with_manager

SECRET = "zadarma-secret-key"
PBX = f'''
[[sources]]
name = "pbx"
connector = "zadarma"
secret = "{SECRET}"
route_calls = true
return_timeout = 15

[[sources]]
name = "asterisk"
connector = "telephony_generic"
caller_path = "from"
status_path = "state"
id_path = "uniqueid"
route_reply = '{{"action": "transfer", "exten": "{{extension}}"}}'

[[routing.rules]]
name = "calls to north"
sources = ["pbx", "asterisk"]
team = "north"
strategy = "round_robin"

[notify]
base_url = "https://hub.example.ru"
[notify.telegram]
bot_token = "1234567890:AAtoken"
'''


def config_text() -> str:
    text = with_manager(WEB_CONFIG, "Max", extension="101", telegram_chat_id="555")
    text = with_manager(text, "Mia", extension="102")
    return with_manager(text, "Lena", extensions={"asterisk": "7003"}) + PBX


@pytest.fixture
def config_path(write_config, fake_telegram):
    return write_config(config_text() + f'api_url = "{fake_telegram.url}"\n')      # to [notify.telegram]


def ring(client, caller: str, event: str = "NOTIFY_START", call_id: str = "in_1"):
    fields = {"event": event, "call_start": "2026-12-02 10:15:00", "pbx_call_id": call_id, "caller_id": caller,
              "called_did": "74951112233"}
    return client.post("/hooks/pbx", data=urlencode(fields), content_type="application/x-www-form-urlencoded",
                       headers={"Signature": signature(SECRET, fields)})


@pytest.fixture
def max_client(hub, client):
    """A client of Max's: a site lead (site routes to Max)."""
    make_users(hub)
    deliver(client, hub, "site", "+79123456789", "I want to pay", name="Иван Петров")
    with transaction(hub.engine, read_only=True) as s:
        return s.scalars(select(Lead)).one()


def history(hub, lead_id: int) -> list[LeadHistory]:
    with transaction(hub.engine, read_only=True) as s:
        return list(s.scalars(select(LeadHistory).where(LeadHistory.lead_id == lead_id).order_by(LeadHistory.id)))


def test_a_known_client_is_put_through_to_their_manager(hub, client, max_client):
    r = ring(client, "79123456789")                    # Zadarma's spelling of +7 912 345-67-89
    assert r.status_code == 200 and r.mimetype == "application/json"
    assert r.json == {"redirect": "101", "return_timeout": 15}
    Worker(hub).drain()
    routed = [h for h in history(hub, max_client.id) if h.kind == "call_routed"]
    assert len(routed) == 1 and routed[0].data["to"] == "Max" and routed[0].data["extension"] == "101"
    assert "client's manager Max" in routed[0].data["why"]
    with transaction(hub.engine, read_only=True) as s:
        alert = s.scalars(select(CallAlert)).one()
        calling = [n for n in s.scalars(select(Notification)) if n.subject.endswith("is calling")]
    assert alert.manager == "Max" and alert.caller == "+79123456789" and alert.lead_id == max_client.id
    assert len(calling) == 1 and calling[0].recipient == "555"          # Max has no page open: Telegram
    assert ring(client, "79123456789").json == {"redirect": "101", "return_timeout": 15}   # a retry: same answer
    with transaction(hub.engine, read_only=True) as s:
        assert len(s.scalars(select(CallAlert)).all()) == 1             # and no second alert


def test_an_owner_off_duty_gives_the_call_to_the_rules_next_available_manager(hub, client, max_client):
    with transaction(hub.engine) as s:
        set_manager_state(s, hub.config, "Max", "test", utcnow(), on_duty=False)
    r = ring(client, "79123456789")
    assert r.json == {"redirect": "102", "return_timeout": 15}          # Mia: north, available, extension 102
    Worker(hub).drain()
    routed = [h for h in history(hub, max_client.id) if h.kind == "call_routed"][0]
    assert routed.data["to"] == "Mia" and "Max: off duty" in routed.data["why"]
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(Lead, max_client.id).owner == "Max"                 # a call does not take the lead away


def test_an_unknown_number_is_not_redirected_and_becomes_a_lead(hub, client, max_client):
    r = ring(client, "79990001122", call_id="in_2")
    assert r.status_code == 200 and r.data == b""                        # the PBX's own scenario stands
    Worker(hub).drain()
    with transaction(hub.engine, read_only=True) as s:
        lead = s.scalars(select(Lead).where(Lead.id != max_client.id)).one()
        assert s.scalars(select(CallAlert)).all() == []
    assert lead.source == "pbx"


def test_a_store_error_means_no_redirect_and_a_normal_answer(hub, client, max_client, monkeypatch):
    import hub.pipeline.calls as calls

    def broken(*args, **kwargs):
        raise RuntimeError("database is locked")
    monkeypatch.setattr(calls, "find_caller", broken)
    r = ring(client, "79123456789", call_id="in_3")
    assert r.status_code == 200 and r.data == b""
    with transaction(hub.engine, read_only=True) as s:                  # the call is still recorded
        assert s.scalar(select(InboundEvent.id).where(InboundEvent.external_id == "notify_start:in_3"))


def test_a_generic_pbx_gets_its_own_transfer_answer(hub, client, max_client):
    with transaction(hub.engine) as s:                  # Lena is the only one with an Asterisk extension
        lead = s.get(Lead, max_client.id)
        lead.owner = "Lena"
    r = client.post("/hooks/asterisk", json={"uniqueid": "1733.1", "from": "+79123456789", "state": "ringing"})
    assert r.status_code == 200 and r.json == {"action": "transfer", "exten": "7003"}
    r = client.post("/hooks/asterisk", json={"uniqueid": "1733.1", "from": "+79123456789", "state": "answered"})
    assert r.data == b"ok"                               # not ringing: the usual answer


def test_the_caller_lookup_api(app, hub, max_client):
    api = app.test_client()
    pbx = token_for(hub, "pbx@example.ru")
    r = api.get("/api/v1/lookup", query_string={"phone": "8 (912) 345-67-89"}, headers=pbx)
    assert r.status_code == 200
    assert r.json["person"]["name"] == "Иван Петров" and r.json["phone"] == "+79123456789"
    assert r.json["lead"]["owner"] == "Max" and r.json["lead"]["owner_extension"] == "101"
    assert r.json["lead"]["warmth"] == "hot" and r.json["last_touches"][0]["source"] == "site"
    assert api.get("/api/v1/lookup?phone=%2B79990001122", headers=pbx).status_code == 404
    assert api.get("/api/v1/lookup?phone=call-me", headers=pbx).status_code == 422
    assert api.get("/api/v1/lookup?phone=79123456789", headers=token_for(hub, "max@example.ru")).status_code == 403


def test_the_screen_pop_reaches_an_open_page_and_not_telegram(app, hub, client, max_client):
    page = app.test_client()
    sign_in(page, "max@example.ru")
    first = page.get("/calls/poll").json                 # the page opens: marks Max online
    assert first["alerts"] == []
    ring(client, "79123456789", call_id="in_4")
    alerts = page.get(f"/calls/poll?after={first['last']}").json["alerts"]
    assert len(alerts) == 1 and alerts[0]["text"] == "Иван Петров is calling"
    assert alerts[0]["url"] == f"/leads/{max_client.id}"
    with transaction(hub.engine, read_only=True) as s:
        assert not [n for n in s.scalars(select(Notification)) if n.subject.endswith("is calling")]


def test_the_telegram_call_message_is_in_the_managers_language(hub, client, max_client, fake_telegram):
    from hub.desk.access import set_language
    from hub.outbox.notify import Notifier
    with transaction(hub.engine) as s:
        set_language(s, "max@example.ru", "ru")
    ring(client, "79123456789", call_id="in_5")
    Notifier(hub).send_due()
    texts = [c["text"] for c in fake_telegram.of("sendMessage")]
    assert any(t.startswith("Звонит Иван Петров\n+79123456789") for t in texts), texts


MANGO = '''
[[sources]]
name = "mango"
connector = "mango"
api_key = "mango-api-key-1"
api_salt = "mango-salt-1"
route_calls = true
api_url = "https://mango.example/vpbx"
'''


def mango_event(client, path: str, event: dict):
    from connectors.mango import MangoSettings, signed_form
    form = signed_form(MangoSettings(api_key="mango-api-key-1", api_salt="mango-salt-1"), event)
    return client.post(f"/hooks/mango/{path}", data=urlencode(form), content_type="application/x-www-form-urlencoded")


@responses.activate
def test_mango_routes_a_known_client_with_its_route_command(write_config, tmp_path):
    import threading
    from urllib.parse import parse_qs

    from hub.config import load_config
    from hub.runtime import Hub
    from hub.web.app import create_app

    hub = Hub(load_config(write_config(config_text() + MANGO)))
    client = create_app(hub=hub).test_client()
    make_users(hub)
    deliver(client, hub, "site", "+79123456789", "I want to pay", name="Иван Петров")
    routed = threading.Event()
    commands = []

    def route(request):
        commands.append(parse_qs(request.body))
        routed.set()
        return 200, {}, json.dumps({"result": 1000})
    responses.add_callback(responses.POST, "https://mango.example/vpbx/commands/route", callback=route)
    appeared = {"entry_id": "e1", "call_id": "MTAx", "timestamp": 1764670000, "seq": 1, "call_state": "Appeared",
                "location": "ivr", "from": {"number": "79123456789"}, "to": {"number": "74951234567"}}
    r = mango_event(client, "events/call", appeared)
    assert r.status_code == 200 and r.data == b""          # Mango reads only the status
    assert routed.wait(5), "no route command was sent"
    form = commands[0]
    sent = json.loads(form["json"][0])
    assert sent["call_id"] == "MTAx" and sent["to_number"] == "101"
    import hashlib
    signed = ("mango-api-key-1" + form["json"][0] + "mango-salt-1").encode()
    assert form["sign"][0] == hashlib.sha256(signed).hexdigest()
    mango_event(client, "events/call", {**appeared, "seq": 2, "location": "abonent"})   # reported again
    import time
    time.sleep(0.3)
    assert len(commands) == 1                              # routed once
    with transaction(hub.engine, read_only=True) as s:
        assert len(s.scalars(select(CallAlert)).all()) == 1
        lead = s.scalars(select(Lead)).one()
        kinds = [h.kind for h in s.scalars(select(LeadHistory).where(LeadHistory.lead_id == lead.id))]
    assert "call_routed" in kinds
    hub.dispose()
