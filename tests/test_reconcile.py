"""`hub reconcile`: the day's books balance, and a broken one is named by event id."""

from __future__ import annotations

import json

from sqlalchemy import delete

from hub.pipeline.worker import Worker
from hub.store.db import transaction
from hub.store.models import Touch, utcnow
from tests.conftest import fixture_bytes


def test_a_days_books_balance_per_source(client, hub, runner):
    client.post("/hooks/site", data=fixture_bytes("site_form", "landing_json.json"), content_type="application/json")
    client.post("/hooks/site", json={"phone": "89123456789", "message": "again"})      # the same person: a touch
    client.post("/hooks/site", json={"name": "no contact"})                             # rejected
    client.post("/hooks/site", data=b"{broken", content_type="application/json")        # rejected at intake
    client.post("/hooks/site", json={"phone": "+79120000001"})                           # left pending
    Worker(hub).drain()
    client.post("/hooks/site", json={"phone": "+79120000002"})
    today = utcnow().date().isoformat()
    report = json.loads(runner("reconcile", "--date", today, "--json").output)
    site = report["sources"]["site"]
    assert {k: site[k] for k in ("received", "created", "merged", "rejected", "dead", "pending")} == \
        {"received": 6, "created": 2, "merged": 1, "rejected": 2, "dead": 0, "pending": 1}
    assert report["ok"] and site["errors"] == []
    assert sum(site["rejected_by_reason"].values()) == 2
    table = runner("reconcile", "--date", today).output
    assert "site    6         2          1" in table and "yes" in table
    assert "no events received on 2001-01-01" in runner("reconcile", "--date", "2001-01-01").output


def test_a_lost_lead_is_named_by_its_event(client, hub, runner):
    client.post("/hooks/site", json={"phone": "+79120000001"})
    Worker(hub).drain()
    with transaction(hub.engine) as s:                         # a lead lost behind the hub's back
        s.execute(delete(Touch))
    result = runner("reconcile", "--date", utcnow().date().isoformat(), expect=1)
    assert "error: site: event 1: processed but no touch: the lead is missing" in result.stderr


def test_a_calls_recording_balances_without_a_touch_of_its_own(write_config, runner):

    from hub.config import load_config
    from hub.runtime import Hub
    from hub.web.app import create_app
    from tests.conftest import FIXTURES

    hub = Hub(load_config(write_config('[[sources]]\nname = "mango"\nconnector = "mango"\n'
                                       'api_key = "mango-api-key-1"\napi_salt = "mango-salt-1"\n')))
    client = create_app(hub=hub).test_client()
    for path, name in (("events/summary", "summary_missed_call.txt"), ("events/recording", "recording_added.txt")):
        body = (FIXTURES / "mango" / name).read_bytes().rstrip(b"\n")
        assert client.post(f"/hooks/mango/{path}", data=body,
                           content_type="application/x-www-form-urlencoded").status_code == 200
    Worker(hub).drain()
    report = json.loads(runner("reconcile", "--date", utcnow().date().isoformat(), "--json").output)
    assert report["ok"], report
    assert report["sources"]["mango"]["created"] == 1 and report["sources"]["mango"]["merged"] == 1
    hub.dispose()
