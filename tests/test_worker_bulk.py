"""A worker's batch (its new persons set-based, hub.pipeline.bulk.attach_batch) leaves the store exactly as
processing the same events one at a time does: persons, keys, leads with their owners, touches, history,
notifications, round-robin positions."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import insert, text

import hub.pipeline.bulk as bulk
from hub.config import load_config
from hub.pipeline.worker import CLAIM_BATCH, CLAIM_BATCH_SQLITE, Worker
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import InboundEvent
from tests.test_import_bulk import snapshot, wipe

ROUTING = """
[[teams]]
name = "sales"
[[managers]]
name = "Max"
team = "sales"
telegram_chat_id = "501"
working_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[[managers]]
name = "Mia"
team = "sales"
telegram_chat_id = "502"
working_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[[managers]]
name = "Ola"
team = "sales"
email = "ola@example.ru"
working_days = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]
[[routing.rules]]
name = "all"
team = "sales"
strategy = "round_robin"
[notify]
base_url = "https://hub.example.ru"
[notify.telegram]
bot_token = "1234567890:AAtoken"
[notify.email]
host = "127.0.0.1"
from = "hub@example.ru"
"""
RECEIVED = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)
SEED = [{"phone": "+79160000001", "email": "anna@example.ru", "name": "Анна"},
        {"phone": "+79160000002", "name": "Борис"},
        {"email": "vera@example.ru"}]
EVENTS = (
    [{"phone": f"8 (916) 100-00-{i:02d}", "email": f"new{i}@example.ru", "name": f"Новый {i}"} for i in range(20)]
    + [{"phone": "+7 916 1000003", "message": "a repeat in the same batch, spelled differently"},
       {"phone": "8 916 000 00 01", "name": "Анна П.", "message": "known person"},
       {"phone": "+79160000002", "email": "VERA@example.ru", "message": "Борис's phone, Вера's e-mail"},
       {"phone": "123", "name": "an invalid phone only"},
       {"email": "new5@example.ru", "phone": "+79161000099", "message": "a known mail, a new phone"}]
    + [{"phone": f"+7916200{i:04d}", "utm_source": "vk"} for i in range(15)]
    + [{"phone": "8 (916) 100-00-07", "message": "a repeat in a later batch"}])


def store_events(hub, payloads, prefix) -> None:
    with transaction(hub.engine) as s:
        s.connection().execute(insert(InboundEvent.__table__), [
            {"source": "site", "external_id": f"{prefix}{i}", "received_at": RECEIVED, "method": "POST",
             "headers": {}, "body": json.dumps(p).encode(), "payload": p, "status": "pending", "attempts": 0,
             "next_attempt_at": RECEIVED + timedelta(seconds=i)} for i, p in enumerate(payloads)])


def drain_one_by_one(worker) -> None:
    while claims := worker.claim_many(1):
        worker.process(claims[0])


def routed(hub, one_by_one: bool):
    wipe(hub)
    with transaction(hub.engine) as s:
        s.execute(text("DELETE FROM notification"))
        s.execute(text("DELETE FROM routing_position"))
    worker = Worker(hub, "test")
    store_events(hub, SEED, "seed")
    drain_one_by_one(worker)
    store_events(hub, EVENTS, "e")
    started = datetime.now(UTC) - timedelta(seconds=1)
    if one_by_one:
        drain_one_by_one(worker)
    else:
        assert worker.drain() == len(EVENTS)
    shown = snapshot(hub, started)
    with transaction(hub.engine, read_only=True) as s:
        lead_of = {r.id: r.external_id for r in s.execute(text(
            "SELECT lead.id, MIN(inbound_event.external_id) AS external_id FROM lead JOIN touch ON touch.lead_id = "
            "lead.id JOIN inbound_event ON inbound_event.id = touch.event_id GROUP BY lead.id"))}
        shown["notification"] = sorted(
            f"{lead_of[r.lead_id]} {r.channel} {r.recipient} {r.kind} {r.subject} "
            + r.text.replace(f"/leads/{r.lead_id}", f"/leads/<{lead_of[r.lead_id]}>")
            for r in s.execute(text("SELECT * FROM notification")))
        shown["routing_position"] = [f"{r.key}={r.position}" for r in s.execute(text("SELECT * FROM routing_position"))]
    return shown


@pytest.fixture
def routing_hub(write_config):
    hub = Hub(load_config(write_config(ROUTING)))
    yield hub
    hub.dispose()


def test_a_batch_routes_what_one_by_one_routes(routing_hub):
    assert len(EVENTS) > max(CLAIM_BATCH, CLAIM_BATCH_SQLITE)     # repeats within a batch and across batches
    one_by_one, batched = routed(routing_hub, True), routed(routing_hub, False)
    for table in one_by_one:
        assert batched[table] == one_by_one[table], table
    assert len(one_by_one["notification"]) == 3 + 36      # every new lead's owner told (Ola by e-mail)
    assert any('"kind": "possible_duplicate"' in h for h in one_by_one["lead_history"])


def test_keys_claimed_meanwhile_redo_the_batch_event_by_event(routing_hub, monkeypatch):
    """The owners query misses every owner (as if another worker claimed the keys in between): the batch's
    claim loses the known keys, the batch is rolled back and done event by event — the same store."""
    one_by_one = routed(routing_hub, True)
    lost = []
    real_attach = bulk.attach_new_persons

    def attach_counting(session, batch, writes):
        try:
            return real_attach(session, batch, writes)
        except bulk.KeysTaken:
            lost.append(len(batch))
            raise

    monkeypatch.setattr(bulk, "owners_of", lambda session, keys: {})
    monkeypatch.setattr(bulk, "attach_new_persons", attach_counting)
    batched = routed(routing_hub, False)
    assert lost
    for table in one_by_one:
        assert batched[table] == one_by_one[table], table
