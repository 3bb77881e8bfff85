"""Processing against real stores: exactly once, through kills, failures, replays and concurrency."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sqlalchemy import insert

from hub.outbox.queue import backoff_seconds
from hub.pipeline.worker import Worker
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent, Lead, Touch, utcnow
from tests.conftest import fixture_bytes
from tests.helpers.db import count, event, events, touches_per_event, wait_until_processed

ROOT = Path(__file__).parent.parent
LANDING = fixture_bytes("site_form", "landing_json.json")


def post(client, payload) -> int:
    resp = client.post("/hooks/site", json=payload) if isinstance(payload, dict) else \
        client.post("/hooks/site", data=payload, content_type="application/json")
    assert resp.status_code == 200, resp.get_data(as_text=True)
    return resp.get_json()["event_ids"][0]


def test_a_form_becomes_a_lead_with_e164_phone_source_and_utm(client, hub, runner):
    event_id = post(client, LANDING)
    assert Worker(hub).drain() == 1
    [lead] = json.loads(runner("leads", "list", "--json").output)
    assert lead["phones"] == ["+79123456789"]
    assert lead["emails"] == ["ivan.petrov@gmail.com"]
    assert lead["name"] == "Ivan Petrov" and lead["status"] == "new" and lead["source"] == "site"
    assert lead["tags"] == ["website"]
    touch = lead["first_touch"]
    assert (touch["utm_source"], touch["utm_medium"], touch["utm_campaign"]) == ("google", "cpc", "brand")
    assert touch["click_ids"] == {"gclid": "abc"}
    assert touch["referrer"] == "https://www.google.com/"
    assert touch["landing_page"].startswith("https://example.com/pricing?")
    assert touch["event_id"] == event_id and lead["last_touch"] == touch
    stored = event(hub, event_id)
    assert (stored.status, stored.lead_id, stored.attempts) == (EventStatus.PROCESSED, lead["id"], 1)
    # posting it again changes nothing
    post(client, LANDING)
    assert Worker(hub).drain() == 0
    assert count(hub, Lead) == 1


def test_invalid_contacts_are_kept_and_flagged(client, hub, runner):
    post(client, {"phone": "12345", "email": "anna@example.ru"})
    Worker(hub).drain()
    [lead] = json.loads(runner("leads", "list", "--json").output)
    assert lead["phones"] == [] and lead["emails"] == ["anna@example.ru"]
    assert lead["invalid_contacts"] == [{"kind": "phone", "raw": "12345",
                                         "problem": "not a valid phone number for region RU"}]
    assert lead["first_touch"]["flags"] == ["invalid_phone"]


def test_a_failing_event_retries_then_ends_dead_and_replays(client, hub, runner, monkeypatch):
    import hub.pipeline.process as pipeline

    event_id = post(client, LANDING)
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("notification outbox unavailable")
    monkeypatch.setattr(pipeline, "attach_touch", broken)
    Worker(hub).drain()                       # backoff 0 in tests: all attempts now
    dead = event(hub, event_id)
    assert len(calls) == 3 == dead.attempts
    assert dead.status == EventStatus.DEAD
    assert "RuntimeError: notification outbox unavailable" in dead.last_error
    assert count(hub, Lead) == 0 and count(hub, Touch) == 0      # nothing half-written by the failures
    assert "dead" in runner("events", "list", "--status", "dead").output

    monkeypatch.undo()
    out = json.loads(runner("events", "replay", "--dead", "--json").output)
    assert out == {"replayed": [event_id], "refused": []}
    assert Worker(hub).drain() == 1
    replayed = event(hub, event_id)
    assert (replayed.status, replayed.attempts) == (EventStatus.PROCESSED, 1)
    assert count(hub, Lead) == 1


def test_retriable_failure_backs_off(client, hub, monkeypatch):
    import hub.pipeline.process as pipeline

    hub.config.worker.backoff_base_seconds = 30
    event_id = post(client, LANDING)
    monkeypatch.setattr(pipeline, "attach_touch", lambda *a, **k: 1 / 0)
    before = utcnow()
    assert Worker(hub).drain() == 1           # the retry is not due yet
    failed = event(hub, event_id)
    assert failed.status == EventStatus.PENDING and failed.attempts == 1
    assert 14 <= (failed.next_attempt_at - before).total_seconds() <= 46
    assert "ZeroDivisionError" in failed.last_error


def test_backoff_grows_and_is_capped():
    for attempt, nominal in [(1, 2), (2, 4), (5, 32), (30, 3600)]:
        delays = [backoff_seconds(attempt, 2, 3600) for _ in range(50)]
        assert all(nominal * 0.5 <= d <= nominal * 1.5 for d in delays)
        assert len(set(delays)) > 1           # jittered


def test_a_worker_killed_mid_event_leaves_it_to_the_next_one(client, hub, config_path, tmp_path, write_config):
    config_path = write_config(lease_seconds=2)
    event_id = post(client, LANDING)
    marker = tmp_path / "in-the-middle"
    proc = subprocess.Popen([sys.executable, "-m", "tests.helpers.slow_worker", str(config_path), str(marker)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not marker.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the slow worker never reached the middle of the event"
            time.sleep(0.05)
        claimed = event(hub, event_id)
        assert claimed.status == EventStatus.PROCESSING and claimed.attempts == 1
    finally:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    assert count(hub, Lead) == 0 and count(hub, Touch) == 0     # its uncommitted writes are gone

    assert Worker(hub).drain() == 0           # the lease has not run out: nobody steals a live claim
    time.sleep(2.1)
    assert Worker(hub).drain() == 1
    done = event(hub, event_id)
    assert (done.status, done.attempts) == (EventStatus.PROCESSED, 2)
    assert count(hub, Lead) == 1 and touches_per_event(hub) == {event_id: 1}


def test_an_event_that_keeps_killing_workers_ends_dead(client, hub):
    event_id = post(client, LANDING)
    worker = Worker(hub)
    for _ in range(3):                         # max_attempts = 3; each claim is a worker that then "dies"
        assert worker.claim().event_id == event_id
        with transaction(hub.engine) as s:      # its lease runs out
            s.get(InboundEvent, event_id).claimed_until = utcnow()
    assert worker.claim() is None
    dead = event(hub, event_id)
    assert dead.status == EventStatus.DEAD and "worker stopped while processing it, 3 times" in dead.last_error


def test_a_lost_claim_is_not_processed(client, hub):
    event_id = post(client, LANDING)
    slow, fast = Worker(hub, "slow"), Worker(hub, "fast")
    stale = slow.claim()
    with transaction(hub.engine) as s:          # slow's lease runs out before it starts
        s.get(InboundEvent, event_id).claimed_until = utcnow()
    assert fast.run_once() == EventStatus.PROCESSED
    assert slow.process(stale) is None
    assert count(hub, Touch) == 1 and event(hub, event_id).claimed_by == "fast"


def test_two_worker_processes_never_process_the_same_event(client, hub, config_path):
    # Both workers run and poll before the events arrive, so they contend for every claim.
    procs = [subprocess.Popen([sys.executable, "-m", "hub.cli", "worker", "--config", str(config_path)],
                              cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
             for _ in range(2)]
    try:
        for p in procs:                                     # each logs "worker … started" when it polls
            line = ""
            while "started" not in line:
                line = p.stderr.readline()
                assert line or p.poll() is None, "a worker exited before it started"
        ids = [post(client, {"phone": f"+7912{n:07d}", "name": f"n{n}"}) for n in range(300)]
        wait_until_processed(hub)
    finally:
        for p in procs:
            p.terminate()
            p.communicate(timeout=60)
    stored = events(hub)
    assert {e.status for e in stored} == {EventStatus.PROCESSED}
    assert all(e.attempts == 1 for e in stored)           # a second claim would have counted a second attempt
    assert touches_per_event(hub) == {i: 1 for i in ids}
    assert count(hub, Lead) == 300
    assert len({e.claimed_by for e in stored}) == 2       # both really worked


NASTY_PAYLOADS = [
    None, [], "a string", 42, {"phone": {"nested": ["x"]}}, {"phone": [None, [], {}]}, {"phone": True},
    {"phone": "٨٩١٢٣٤٥٦٧٨٩"}, {"phone": "+" + "9" * 300}, {"email": "@" * 500}, {"phone": "\x00\x01"},
    {"": "", "phone": "89123456789", "page_url": "http://[::1/?utm_source=x"}, {"email": "a@b.ru", "name": 12.5},
    {"phone": "8 912 345 67 89", "page_url": "https://x.ru/?" + "utm_source=x&" * 5000},
]


@pytest.mark.parametrize("payload", NASTY_PAYLOADS, ids=range(len(NASTY_PAYLOADS)))
def test_the_worker_never_crashes_on_a_stored_payload(hub, payload):
    with transaction(hub.engine) as s:
        s.execute(insert(InboundEvent).values(source="site", external_id="x", received_at=utcnow(), headers={},
                                              body=b"", payload=payload, status=EventStatus.PENDING,
                                              attempts=0, next_attempt_at=utcnow()))
    Worker(hub).drain()
    [stored] = events(hub)
    assert stored.status in (EventStatus.PROCESSED, EventStatus.REJECTED), stored.last_error
    assert stored.attempts == 1


def test_an_event_of_a_removed_source_is_rejected_not_retried(hub):
    with transaction(hub.engine) as s:
        s.execute(insert(InboundEvent).values(source="gone", external_id="x", received_at=utcnow(), headers={},
                                              body=b"", payload={"phone": "89123456789"},
                                              status=EventStatus.PENDING, attempts=0, next_attempt_at=utcnow()))
    Worker(hub).drain()
    assert events(hub)[0].reject_reason == "source 'gone' is no longer configured"
