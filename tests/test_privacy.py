"""A person's data on request: export everything, erase it, and the books still balance."""

from __future__ import annotations

import json

from hub.models import utcnow
from hub.worker import Worker
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
