"""A person's data on request: export everything, erase it, and the books still balance."""

from __future__ import annotations

import json

from hub.pipeline.worker import Worker
from hub.store.models import utcnow
from tests.conftest import fixture_bytes


def test_export_then_forget_a_person(client, hub, runner):
    client.post("/hooks/site", data=fixture_bytes("site_form", "landing_json.json"), content_type="application/json")
    client.post("/hooks/site", json={"phone": "8 912 345 67 89", "message": "Перезвоните, пожалуйста"})
    Worker(hub).drain()
    exported = json.loads(runner("persons", "export", "+7 912 345-67-89").output)
    assert exported["person"]["name"] == "Ivan Petrov"
    assert {k["value"] for k in exported["person"]["keys"]} == {"+79123456789", "ivan.petrov@gmail.com"}
    assert len(exported["leads"]) == 1 and len(exported["raw_events"]) == 2
    assert "Where do I pay" in exported["raw_events"][0]["body"]

    assert "forgotten: 2 key(s), 1 lead(s), 2 touch(es), 2 raw event(s)" in \
        runner("persons", "forget", "ivan.petrov@gmail.com", "--yes", "--by", "dpo").output
    dump = json.dumps(json.loads(runner("leads", "list", "--json").output), ensure_ascii=False)
    events = runner("events", "show", "1", "--json").output + runner("events", "show", "2", "--json").output
    for personal in ("Ivan", "+79123456789", "ivan.petrov", "Where do I pay", "Перезвоните", "8 912"):
        assert personal not in dump and personal not in events
    [lead] = json.loads(dump)
    assert lead["source"] == "site" and lead["first_touch"]["utm_campaign"] == "brand"   # reports still add up
    assert lead["history"][-1]["kind"] == "forgotten" and lead["history"][-1]["actor"] == "dpo"
    report = json.loads(runner("reconcile", "--date", utcnow().date().isoformat(), "--json").output)
    assert report["ok"] and report["sources"]["site"]["received"] == 2
    assert "no person matches" in runner("persons", "export", "+79123456789", expect=1).stderr
    client.post("/hooks/site", json={"phone": "+79123456789"})      # if they write again: a new person
    Worker(hub).drain()
    assert len(json.loads(runner("leads", "list", "--json").output)) == 2


def test_raw_payloads_are_erased_after_the_retention_period(write_config):
    from datetime import timedelta

    from sqlalchemy import select

    from hub.config import load_config
    from hub.runtime import Hub
    from hub.scheduler import Scheduler
    from hub.store.db import transaction
    from hub.store.models import InboundEvent, utcnow
    from hub.web.app import create_app

    hub = Hub(load_config(write_config("[privacy]\nretention_days = 30\n")))
    client = create_app(hub=hub).test_client()
    client.post("/hooks/site", json={"phone": "+79120000001", "name": "Old"})
    client.post("/hooks/site", json={"phone": "+79120000002", "name": "Waiting"})
    Worker(hub).run_once()                                      # the second stays pending
    scheduler = Scheduler(hub, "only")
    scheduler.tick(utcnow() + timedelta(days=29))
    with transaction(hub.engine, read_only=True) as s:
        assert all(e.payload for e in s.scalars(select(InboundEvent)))
    scheduler.tick(utcnow() + timedelta(days=31))
    with transaction(hub.engine, read_only=True) as s:
        old, waiting = s.scalars(select(InboundEvent).order_by(InboundEvent.id)).all()
        assert (old.body, old.payload, old.headers, old.status) == (b"", None, {}, "processed")
        assert waiting.payload == {"phone": "+79120000002", "name": "Waiting"}    # may still be needed
    hub.dispose()


def test_a_persons_export_holds_their_data_but_not_the_hubs_secrets(client, hub, runner):
    """The export hands raw deliveries to the data subject: a token a form sent in its body or header (the
    source's secret, not theirs) is replaced; their own phone and message stay."""
    from tests.conftest import SITE_TOKEN

    client.post("/hooks/locked", json={"phone": "+7 912 345-67-80", "message": "call me", "token": SITE_TOKEN},
                headers={"X-Hub-Token": SITE_TOKEN})
    Worker(hub).drain()
    exported = runner("persons", "export", "+79123456780").output
    assert SITE_TOKEN not in exported
    event = json.loads(exported)["raw_events"][0]
    assert "call me" in event["body"] and "+7 912 345-67-80" in event["body"]
