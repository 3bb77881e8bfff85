"""Intake against real stores: stored once, answered clearly, nothing half-written on bad input."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import urlencode

import pytest

from hub.store.models import EventStatus, InboundEvent, Lead
from tests.conftest import SITE_TOKEN, fixture_bytes
from tests.helpers.db import count, event, events

LANDING = fixture_bytes("site_form", "landing_json.json")
JSON = {"Content-Type": "application/json"}
FORM = "application/x-www-form-urlencoded"


def test_a_form_is_stored_and_acknowledged(client, hub):
    resp = client.post("/hooks/site", data=LANDING, headers=JSON)
    assert resp.status_code == 200
    body = resp.get_json()
    assert body["status"] == "accepted" and len(body["event_ids"]) == 1
    stored = event(hub, body["event_ids"][0])
    assert stored.status == EventStatus.PENDING
    assert stored.source == "site"
    assert stored.body == LANDING
    assert stored.payload["phone"] == "8 (912) 345-67-89"
    assert stored.headers["content-type"] == "application/json"
    assert stored.external_id.startswith("sha256:")
    assert count(hub, Lead) == 0          # processing is the worker's job, after the answer


def test_a_provider_retry_stores_one_event(client, hub):
    first = client.post("/hooks/site", data=LANDING, headers=JSON).get_json()
    again = client.post("/hooks/site", data=LANDING, headers=JSON).get_json()
    assert again == {"status": "duplicate", "event_ids": first["event_ids"]}
    # the same fields in another order and encoding are the same delivery
    as_form = client.post("/hooks/site", data=urlencode(json.loads(LANDING)), content_type=FORM).get_json()
    assert as_form["status"] == "duplicate"
    assert count(hub, InboundEvent) == 1


def test_the_forms_own_id_identifies_it(client, hub):
    a = client.post("/hooks/site", json={"phone": "89123456789", "request_id": "r-1"}).get_json()
    b = client.post("/hooks/site", json={"phone": "89123456789", "request_id": "r-1", "name": "edited"}).get_json()
    c = client.post("/hooks/site", json={"phone": "89123456789", "request_id": "r-2"}).get_json()
    assert b["status"] == "duplicate" and a["event_ids"] == b["event_ids"]
    assert c["status"] == "accepted"
    assert event(hub, a["event_ids"][0]).external_id == "id:r-1"


def test_concurrent_retries_store_one_event(app, hub):
    def post(_):
        with app.test_client() as c:
            return c.post("/hooks/site", data=LANDING, headers=JSON).status_code
    with ThreadPoolExecutor(8) as pool:
        codes = list(pool.map(post, range(24)))
    assert codes == [200] * 24
    assert count(hub, InboundEvent) == 1


def test_urlencoded_and_multipart_and_get(client, hub):
    r1 = client.post("/hooks/site", data={"Имя": "Анна", "Телефон": "+7 912 000-00-01"}, content_type=FORM)
    r2 = client.post("/hooks/site", data={"name": "Oleg", "phone": "89120000002"}, content_type="multipart/form-data")
    r3 = client.get("/hooks/site?phone=89120000003&utm_source=billboard")
    assert [r.status_code for r in (r1, r2, r3)] == [200, 200, 200]
    payloads = [e.payload for e in events(hub)]
    assert payloads == [{"Имя": "Анна", "Телефон": "+7 912 000-00-01"}, {"name": "Oleg", "phone": "89120000002"},
                        {"phone": "89120000003", "utm_source": "billboard"}]


def test_windows_1251_form_with_its_charset_is_read(client, hub):
    body = urlencode({"name": "Иван", "phone": "89123456789"}, encoding="cp1251")
    resp = client.post("/hooks/site", data=body, content_type=f"{FORM}; charset=windows-1251")
    assert resp.status_code == 200
    assert events(hub)[0].payload["name"] == "Иван"


@pytest.mark.parametrize("data, content_type, status, message", [
    (b'{"name": "Ivan", "phone": ', "application/json", 400, "malformed JSON: Expecting value at line 1"),
    (b'["not", "an", "object"]', "application/json", 400, "JSON body must be an object of fields, not list"),
    (urlencode({"name": "Иван", "phone": "89123456789"}, encoding="cp1251").encode(), FORM, 400,
     "form fields are not valid utf-8; if the site sends windows-1251, make it say so"),
    ("name=Иван&phone=8912".encode("cp1251"), FORM, 400, "body is not valid utf-8"),
    (b'{"name": "Ivan"}', "application/json", 422, "no phone, e-mail or messenger id"),
    (b"phone=&email=", FORM, 422, "no phone, e-mail or messenger id"),
    (b"", FORM, 400, "empty body: the form sent no fields"),
    (b"<lead><phone>89123456789</phone></lead>", "text/xml", 415, "unsupported Content-Type 'text/xml'"),
    (b'{"phone": "89123456789"}', "application/json; charset=klingon", 415, "unknown charset 'klingon'"),
])
def test_bad_input_is_refused_clearly_and_kept_as_rejected(client, hub, data, content_type, status, message):
    resp = client.post("/hooks/site", data=data, content_type=content_type)
    assert resp.status_code == status, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == "rejected" and message in body["message"]
    [stored] = events(hub)
    assert stored.status == EventStatus.REJECTED and message in stored.reject_reason
    assert stored.body == data                      # the raw delivery is kept, nothing is lost silently
    assert count(hub, Lead) == 0
    # the same bad delivery again is the same rejected event, not a second one
    assert client.post("/hooks/site", data=data, content_type=content_type).status_code == status
    assert count(hub, InboundEvent) == 1


def test_a_10_mb_body_is_refused_before_it_is_read(client, hub):
    resp = client.post("/hooks/site", data=b"a" * (10 * 1024 * 1024), content_type=FORM)
    assert resp.status_code == 413
    assert resp.get_json()["message"] == "body larger than this hub accepts (1048576 bytes)"
    assert count(hub, InboundEvent) == 0


def test_unknown_source_and_wrong_method(client, hub):
    resp = client.post("/hooks/nope", data=LANDING, headers=JSON)
    assert resp.status_code == 404
    assert resp.get_json() == {"error": "unknown_source",
                               "message": "no webhook source named 'nope' is configured here"}
    resp = client.put("/hooks/site", data=LANDING, headers=JSON)
    assert resp.status_code == 405 and resp.headers["Allow"] == "POST, GET"
    assert count(hub, InboundEvent) == 0


def test_token_protected_source(client, hub):
    assert client.post("/hooks/locked", json={"phone": "89123456789"}).status_code == 401
    resp = client.post("/hooks/locked?token=wrong-token-0000000", json={"phone": "89123456789"})
    assert resp.status_code == 403 and resp.get_json()["message"] == "wrong token for this source"
    assert count(hub, InboundEvent) == 0            # strangers' bodies are not stored
    ok = client.post(f"/hooks/locked?token={SITE_TOKEN}", json={"phone": "89123456789", "token": SITE_TOKEN})
    assert ok.status_code == 200
    by_header = client.post("/hooks/locked", json={"phone": "89120000000"}, headers={"X-Hub-Token": SITE_TOKEN})
    assert by_header.status_code == 200
    stored = events(hub)
    assert all("token" not in e.payload and "x-hub-token" not in e.headers for e in stored)


def test_healthz(client):
    client.post("/hooks/site", data=LANDING, headers=JSON)
    assert client.get("/healthz").get_json() == {"status": "ok", "database": "ok", "queue": 1, "dead": 0}


def test_metrics_in_prometheus_text(client, hub):
    from hub.pipeline.worker import Worker

    client.post("/hooks/site", data=LANDING, headers=JSON)
    client.post("/hooks/site", json={"name": "no contact"})
    client.post("/hooks/site", json={"phone": "+79120000001"})
    Worker(hub).drain()
    client.post("/hooks/site", json={"phone": "+79120000002"})
    text = client.get("/metrics").get_data(as_text=True)
    lines = set(text.splitlines())
    assert 'leadhub_events{source="site",status="processed"} 2.0' in lines      # prometheus_client's floats
    assert 'leadhub_events{source="site",status="rejected"} 1.0' in lines
    assert "leadhub_queue_depth 1.0" in lines and "leadhub_dead_events 0.0" in lines
    assert 'leadhub_ack_seconds_count{source="site"} 4.0' in lines
    assert 'leadhub_ack_seconds_bucket{le="+Inf",source="site"} 4.0' in lines
    assert 'leadhub_webhook_replies_total{source="site",status="422"} 1.0' in lines
    assert "# TYPE leadhub_ack_seconds histogram" in lines


def test_per_source_rate_limit_and_body_cap(write_config):
    from hub.config import load_config
    from hub.runtime import Hub
    from hub.web.app import create_app

    hub = Hub(load_config(write_config('[[sources]]\nname = "limited"\nconnector = "site_form"\n'
                                       'rate_limit_per_minute = 3\nmax_body_bytes = 300\n')))
    client = create_app(hub=hub).test_client()
    codes = [client.post("/hooks/limited", json={"phone": f"+7912000000{i}"}).status_code for i in range(5)]
    assert codes == [200, 200, 200, 429, 429]
    limited = client.post("/hooks/limited", json={"phone": "+79120000009"})
    assert int(limited.headers["Retry-After"]) >= 1 and "retry later" in limited.get_json()["message"]
    assert client.post("/hooks/site", json={"phone": "+79120000009"}).status_code == 200    # other sources free
    big = client.post("/hooks/site", json={"phone": "+79120000008", "message": "x" * 400})
    assert big.status_code == 200                                # the global cap is 1 MiB
    before = count(hub, InboundEvent)
    small = '[[sources]]\nname = "small"\nconnector = "site_form"\nmax_body_bytes = 300\n'
    hub2 = Hub(load_config(write_config(small)))
    resp = create_app(hub=hub2).test_client().post("/hooks/small", json={"phone": "+7912", "message": "x" * 400})
    assert resp.status_code == 413 and "300 bytes" in resp.get_json()["message"]
    assert count(hub2, InboundEvent) == before                    # the same store: the 413 stored nothing
    hub.dispose()
    hub2.dispose()


def test_security_headers(client):
    resp = client.post("/hooks/site", json={"phone": "+79120000001"})
    assert resp.headers["X-Content-Type-Options"] == "nosniff" and resp.headers["Cache-Control"] == "no-store"
    assert resp.headers["X-Frame-Options"] == "DENY"
