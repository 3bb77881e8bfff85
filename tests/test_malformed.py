"""Bodies no connector can read — nested too deep, numbers too long, not UTF-8, and the like — through the real
webhook endpoint against real stores: answered with a 4xx that says what is wrong, stored once as rejected with
that reason, never a lead; a 503 (which a provider retries for ever) only when the store itself is down."""

from __future__ import annotations

import hashlib
import json
import tomllib
import uuid
from urllib.parse import parse_qs, quote, urlencode

import pytest

from connectors.zadarma import signature as zadarma_signature
from hub.config import parse_config
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from hub.store.db import make_engine
from hub.store.models import EventStatus, InboundEvent, Lead
from hub.web.app import create_app
from tests.conftest import FIXTURES, fixture_bytes
from tests.helpers.db import count, events

BAD = b'"@BAD@"'             # where each payload below gets the bad value
DEEP = b"[" * 1000 + b"]" * 1000
UNREADABLE = {
    "nested 1,000 deep": (DEEP, "nested deeper than 64 levels"),
    "a 5,000-digit number": (b"9" * 5000, "a number of 5000 digits"),
    "not UTF-8": (b'"caf\xe9"', "not valid utf-8"),
}
MANGO_KEY, MANGO_SALT = "mango-api-key-1", "mango-salt-1"
TILDA_TOKEN = "tilda-token-0123456789"
TELEGRAM_TOKEN = "tg-secret_token-1"


def _source(connector: str) -> dict:
    if connector == "site_form":
        return {"name": "site", "connector": "site_form"}
    return tomllib.loads((FIXTURES / connector / "cases.toml").read_text(encoding="utf-8"))["source"]


def _json_with(payload: dict, bad: bytes) -> bytes:
    """A provider's real payload, with one more field holding ``bad`` (raw bytes, in place of a JSON value)."""
    return json.dumps({**payload, "x": "@BAD@"}, ensure_ascii=False).encode().replace(BAD, bad)


def _mango_form(raw_json: bytes) -> bytes:
    # Signed over the json field's bytes, as Mango signs it: the signature holds even when they are not UTF-8.
    sign = hashlib.sha256(MANGO_KEY.encode() + raw_json + MANGO_SALT.encode()).hexdigest()
    return f"vpbx_api_key={MANGO_KEY}&sign={sign}&json={quote(raw_json)}".encode()


def request_for(hub: Hub, connector: str, bad: bytes) -> dict:
    """An authentic delivery of this connector (token, secret or signature right) carrying ``bad``."""
    if connector == "site_form":
        body = _json_with(json.loads(fixture_bytes("site_form", "landing_json.json")), bad)
        return dict(path="/hooks/site", data=body, content_type="application/json")
    if connector == "tilda":
        body = _json_with({"Name": "Anna", "Phone": "+79161234567", "tranid": "1:2"}, bad)
        return dict(path=f"/hooks/tilda?token={TILDA_TOKEN}", data=body, content_type="application/json")
    if connector == "vk":        # its secret travels in the body: VK's connector stores what it cannot check
        body = _json_with(json.loads(fixture_bytes("vk", "lead_forms_new.json")), bad)
        return dict(path="/hooks/vk", data=body, content_type="application/json")
    if connector == "telegram":
        body = _json_with(json.loads(fixture_bytes("telegram", "plain_text.json")), bad)
        return dict(path="/hooks/bot", data=body, content_type="application/json",
                    headers={"X-Telegram-Bot-Api-Secret-Token": TELEGRAM_TOKEN})
    if connector == "telephony_generic":
        body = _json_with(json.loads(fixture_bytes("telephony_generic", "call_missed.json")), bad)
        return dict(path="/hooks/pbx", data=body, content_type="application/json",
                    headers={"X-Signature": hub.sources["pbx"].connector.signature(body, None)})
    if connector == "mango":
        summary = json.loads(parse_qs(fixture_bytes("mango", "summary_missed_call.txt").decode())["json"][0])
        return dict(path="/hooks/mango/events/summary", data=_mango_form(_json_with(summary, bad)),
                    content_type="application/x-www-form-urlencoded")
    raise AssertionError(connector)


@pytest.fixture
def hub_of(database_url, tmp_path):
    hubs = []

    def make(connector: str) -> Hub:
        config = parse_config({"sources": [_source(connector)]}, tmp_path)
        config.database_url = database_url
        hubs.append(Hub(config))
        return hubs[-1]
    yield make
    for h in hubs:
        h.dispose()


def assert_rejected_and_kept(hub: Hub, send, problem: str) -> None:
    resp = send()
    assert 400 <= resp.status_code < 500, resp.get_data(as_text=True)
    answer = resp.get_json()
    assert answer["status"] == "rejected" and problem in answer["message"], answer
    [stored] = events(hub)
    assert stored.status == EventStatus.REJECTED and problem in stored.reject_reason, stored.reject_reason
    assert resp.status_code == send().status_code and count(hub, InboundEvent) == 1   # a retry: the same event
    Worker(hub).drain()
    assert count(hub, Lead) == 0


@pytest.mark.parametrize("what", UNREADABLE)
@pytest.mark.parametrize("connector", ["site_form", "tilda", "vk", "telegram", "mango", "telephony_generic"])
def test_an_unreadable_body_is_refused_with_its_reason_and_stored_as_rejected(hub_of, connector, what):
    bad, problem = UNREADABLE[what]
    hub = hub_of(connector)
    client = create_app(hub=hub).test_client()
    request = request_for(hub, connector, bad)
    assert_rejected_and_kept(hub, lambda: client.open(method="POST", **request), problem)
    assert events(hub)[0].body == request["data"]           # the raw delivery is kept as it came


def _multipart(part_headers: str) -> bytes:
    return (f"--b\r\nContent-Disposition: form-data; name=\"phone\"\r\n\r\n+79120000001\r\n"
            f"--b\r\nContent-Disposition: form-data; name=\"x\"\r\n{part_headers}\r\n\r\nX: y\r\n\r\nhi\r\n"
            "--b--\r\n").encode()


OTHER = {    # name: (body, content type, what the reason says); all sent to a site form
    "NaN": (b'{"phone": "+79120000001", "x": NaN}', "application/json", "NaN is not a number JSON allows"),
    "a number beyond a float": (b'{"phone": "+79120000001", "x": 1e400}', "application/json",
                                "the number 1e400 is out of range"),
    "half a UTF-16 pair": (b'{"phone": "+79120000001", "x": "\\ud800"}', "application/json",
                           "is half of a UTF-16 pair"),
    "nested 100 deep": (b'{"phone": "+79120000001", "x": ' + b"[" * 100 + b"]" * 100 + b"}", "application/json",
                        "nested deeper than 64 levels"),
    "a whole message as a form field": (_multipart("Content-Type: message/rfc822"),
                                        "multipart/form-data; boundary=b", "is a message/rfc822 part, not a value"),
    "a charset that makes half a UTF-16 pair": (b'{"phone": "+79120000001", "x": "\\udc00"}',
                                                "application/json; charset=unicode_escape",
                                                "is half of a UTF-16 pair"),
}


@pytest.mark.parametrize("what", OTHER)
def test_other_unreadable_bodies_are_refused_and_stored_as_rejected(hub_of, what):
    body, content_type, problem = OTHER[what]
    hub = hub_of("site_form")
    client = create_app(hub=hub).test_client()
    assert_rejected_and_kept(hub, lambda: client.post("/hooks/site", data=body, content_type=content_type), problem)


def test_a_signed_zadarma_notification_that_is_not_utf8_is_stored_as_rejected(hub_of):
    hub = hub_of("zadarma")
    client = create_app(hub=hub).test_client()
    fields = {"event": "NOTIFY_START", "call_start": "2025-11-23 10:00:00", "pbx_call_id": "in_1",
              "caller_id": "+79160000001", "called_did": "74950000000"}
    body = urlencode(fields).encode() + b"&caller_id_name=%E9"          # the name in Latin-1, not UTF-8
    headers = {"Signature": zadarma_signature("zadarma-secret-1", fields)}
    assert_rejected_and_kept(hub, lambda: client.post("/hooks/zadarma", data=body, headers=headers,
                                                      content_type="application/x-www-form-urlencoded"),
                             "not valid utf-8")


def test_a_reason_that_quotes_a_nul_is_stored(hub_of):
    hub = hub_of("mango")
    client = create_app(hub=hub).test_client()
    body = _mango_form(b'{"entry_id": "e1"}')
    assert_rejected_and_kept(hub, lambda: client.post("/hooks/mango/events/%00x", data=body,
                                                      content_type="application/x-www-form-urlencoded"),
                             "unknown Mango event path /events/\\x00x")


def test_a_connector_failing_on_a_delivery_stores_it_as_rejected(hub_of):
    hub = hub_of("site_form")

    def receive(request, received_at):
        raise KeyError("a field its author never met")
    hub.sources["site"].connector.receive = receive
    client = create_app(hub=hub).test_client()
    assert_rejected_and_kept(hub, lambda: client.post("/hooks/site", json={"phone": "+79120000001"}),
                             "the connector could not read this delivery: KeyError: 'a field its author never met'")


@pytest.mark.parametrize("what", ["a good delivery", "nested 1,000 deep"])
def test_the_store_down_is_still_a_503(hub_of, database_url, tmp_path, what):
    """Not stored means not acknowledged, a bad body's rejection included: the provider must retry."""
    hub = hub_of("site_form")
    client = create_app(hub=hub).test_client()
    if database_url.startswith("sqlite"):          # the file turned to garbage under the running hub
        broken = tmp_path / "broken.db"
        broken.write_bytes(b"not a database " * 512)
        url = f"sqlite:///{broken}"
    else:                                          # the database dropped under it
        url = database_url.rsplit("/", 1)[0] + f"/hubtest_dropped_{uuid.uuid4().hex[:8]}"
    hub.engine.dispose()
    hub.engine = make_engine(url)
    body = fixture_bytes("site_form", "landing_json.json")
    if what != "a good delivery":
        body = _json_with(json.loads(body), DEEP)
    resp = client.post("/hooks/site", data=body, content_type="application/json")
    assert resp.status_code == 503, resp.get_data(as_text=True)
    assert resp.get_json()["error"] == "store_unavailable"
