"""The connector contract suite: every connector with a tests/fixtures/<connector>/cases.toml is run
through the real HTTP endpoint and a real worker against real stores. A connector joins by adding
fixtures only: its source config, each request with the exact reply the provider expects and the lead it
must become, the requests that must be refused (signature missing or wrong), and a malformed body.
For every case a provider's retry of the same delivery must store and create nothing new."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from sqlalchemy import func, select

from hub.config import parse_config
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import InboundEvent, Lead
from hub.store.serialize import lead_to_dict
from hub.web.app import create_app
from tests.conftest import FIXTURES

SUITES = sorted(p.parent.name for p in FIXTURES.glob("*/cases.toml"))


def load(connector: str) -> dict:
    return tomllib.loads((FIXTURES / connector / "cases.toml").read_text(encoding="utf-8"))


def ids(kind: str) -> tuple[list, list]:
    params, names = [], []
    for connector in SUITES:
        for i, case in enumerate(load(connector).get(kind, [])):
            params.append((connector, i))
            names.append(f"{connector}: {case['name']}")
    return params, names


def _value(connector: str, value: str) -> str:
    """"@file" in a header means the (stripped) content of that fixture file."""
    return (FIXTURES / connector / value[1:]).read_text().strip() if value.startswith("@") else value


def make_hub(connector: str, database_url: str, tmp_path: Path) -> Hub:
    config = parse_config({"sources": [load(connector)["source"]], "worker": {"backoff_base_seconds": 0}}, tmp_path)
    config.database_url = database_url
    return Hub(config)


def send(client, connector: str, case: dict):
    source = load(connector)["source"]["name"]
    body = (FIXTURES / connector / case["body"]).read_bytes().rstrip(b"\n") if "body" in case else b""
    if "replace" in case:
        old, new = case["replace"]
        body = body.replace(old.encode(), new.encode())
    path = f"/hooks/{source}" + (f"/{case['path']}" if case.get("path") else "")
    if case.get("query"):
        path += "?" + case["query"]
    headers = {k: _value(connector, v) for k, v in case.get("headers", {}).items()}
    return client.open(path, method=case.get("method", "POST"), data=body, headers=headers,
                       content_type=case.get("content_type", "application/json"))


def counts(hub: Hub) -> tuple[int, int]:
    with transaction(hub.engine, read_only=True) as s:
        return (s.scalar(select(func.count()).select_from(InboundEvent)),
                s.scalar(select(func.count()).select_from(Lead)))


@pytest.fixture
def contract_hub(request, database_url, tmp_path):
    hubs = []

    def make(connector: str) -> Hub:
        hubs.append(make_hub(connector, database_url, tmp_path))
        return hubs[-1]
    yield make
    for h in hubs:
        h.dispose()


def check_reply(resp, case: dict) -> None:
    text = resp.get_data(as_text=True)
    assert resp.status_code == case["status"], text
    if "reply" in case:
        assert text == case["reply"]
    if "reply_contains" in case:
        assert case["reply_contains"] in text, text


CASES, CASE_IDS = ids("cases")


@pytest.mark.parametrize("connector, index", CASES, ids=CASE_IDS)
def test_each_sample_becomes_the_right_lead_and_a_retry_changes_nothing(contract_hub, connector, index):
    case = load(connector)["cases"][index]
    hub = contract_hub(connector)
    client = create_app(hub=hub).test_client()
    # Cases of one connector build on each other (a call's end after its start): send the earlier ones first.
    for earlier in load(connector)["cases"][:index]:
        send(client, connector, earlier)
    Worker(hub).drain()
    events_before, leads_before = counts(hub)

    check_reply(send(client, connector, case), case)
    events_after, _ = counts(hub)
    assert events_after - events_before == case.get("stored", 1)
    check_reply(send(client, connector, case), case)                       # the provider's retry
    assert counts(hub)[0] == events_after

    Worker(hub).drain()
    if "lead" not in case:
        assert counts(hub)[1] == leads_before
        return
    expected = case["lead"]
    with transaction(hub.engine, read_only=True) as s:
        event = s.scalars(select(InboundEvent).order_by(InboundEvent.id.desc())).first()
        assert event.status in ("processed", "merged"), event.reject_reason or event.last_error
        lead = lead_to_dict(s.get(Lead, event.lead_id))
    last = lead["last_touch"]
    for key, value in expected.items():
        if key == "recordings":
            actual = [t["recording"] for t in lead["touches"] if t["recording"]]
        else:
            actual = last.get(key) if key.startswith("utm_") or key == "message" else lead.get(key)
        assert actual == value, f"{key}: {actual!r} != {value!r}"


REFUSED, REFUSED_IDS = ids("refused")


@pytest.mark.parametrize("connector, index", REFUSED, ids=REFUSED_IDS)
def test_a_bad_signature_is_refused_and_stores_nothing(contract_hub, connector, index):
    case = load(connector)["refused"][index]
    hub = contract_hub(connector)
    resp = send(create_app(hub=hub).test_client(), connector, case)
    assert resp.status_code == case["status"], resp.get_data(as_text=True)
    Worker(hub).drain()
    assert counts(hub) == (0, 0)


@pytest.mark.parametrize("connector", [c for c in SUITES if "malformed" in load(c)])
def test_a_malformed_body_is_refused_clearly_and_makes_no_lead(contract_hub, connector):
    case = load(connector)["malformed"]
    hub = contract_hub(connector)
    body = b"{not json, not a form \xff"
    source = load(connector)["source"]["name"]
    path = f"/hooks/{source}" + (f"/{case['path']}" if case.get("path") else "") + (
        f"?{case['query']}" if case.get("query") else "")
    resp = create_app(hub=hub).test_client().post(path, data=body, content_type=case["content_type"],
                                                  headers=case.get("headers", {}))
    assert resp.status_code == case["status"], resp.get_data(as_text=True)
    assert json.loads(resp.get_data(as_text=True))["message"]
    Worker(hub).drain()
    assert counts(hub)[1] == 0


def test_hub_mapping_test_shows_the_lead_a_payload_would_become(tmp_path):
    from click.testing import CliRunner

    from hub.cli import main as hub_cli

    config = tmp_path / "config.toml"
    config.write_text('[[sources]]\nname = "vk"\nconnector = "vk"\nsecret = "vk-secret-123"\nconfirmation = "abc"\n')
    run = CliRunner().invoke(hub_cli, ["mapping", "test", "vk", str(FIXTURES / "vk" / "lead_forms_new.json"),
                                       "--json", "--config", str(config)])
    assert run.exit_code == 0, run.output
    [event] = json.loads(run.output)["events"]
    assert event["draft"]["name"] == "Пётр" and event["contacts"][0]["value"] == "+79160001122"
    assert not (tmp_path / "hub.db").exists()                    # nothing stored, not even a database
    run = CliRunner().invoke(hub_cli, ["mapping", "test", "vk", str(FIXTURES / "vk" / "confirmation.json"),
                                       "--config", str(config)])
    assert "no lead: the connector answers 'abc' and stores nothing" in run.output


@pytest.mark.parametrize("age, status", [(10, 200), (3600, 403), (-3600, 403)])
def test_a_timestamped_signature_refuses_stale_and_future_deliveries(contract_hub, age, status, database_url,
                                                                      tmp_path):
    import time

    config = parse_config({"sources": [{**load("telephony_generic")["source"], "timestamp_header": "X-Timestamp",
                                        "max_age_seconds": 300}]}, tmp_path)
    config.database_url = database_url
    hub = Hub(config)
    body = (FIXTURES / "telephony_generic" / "call_missed.json").read_bytes().rstrip(b"\n")
    stamp = str(int(time.time()) - age)
    connector = hub.sources["pbx"].connector
    resp = create_app(hub=hub).test_client().post("/hooks/pbx", data=body, content_type="application/json",
                                                  headers={"X-Timestamp": stamp,
                                                           "X-Signature": connector.signature(body, stamp)})
    assert resp.status_code == status, resp.get_data(as_text=True)
    assert counts(hub)[0] == (1 if status == 200 else 0)
    hub.dispose()


def test_a_recording_that_arrives_before_its_call_waits_for_it(contract_hub):
    from datetime import timedelta

    from sqlalchemy import update

    from hub.store.models import utcnow

    hub = contract_hub("mango")
    hub.config.worker.backoff_base_seconds = 60
    client = create_app(hub=hub).test_client()
    recording = {"name": "r", "path": "events/recording", "body": "recording_added.txt",
                 "content_type": "application/x-www-form-urlencoded"}
    summary = {**recording, "path": "events/summary", "body": "summary_missed_call.txt"}
    assert send(client, "mango", recording).status_code == 200
    Worker(hub).drain()                                         # its call is unknown yet: retried later
    with transaction(hub.engine, read_only=True) as s:
        waiting = s.scalars(select(InboundEvent)).one()
        assert (waiting.status, waiting.attempts) == ("pending", 1)
        assert "not processed yet" in waiting.last_error
    assert send(client, "mango", summary).status_code == 200
    Worker(hub).drain()
    with transaction(hub.engine) as s:                          # the retry comes due
        s.execute(update(InboundEvent).values(next_attempt_at=utcnow() - timedelta(seconds=1)))
    Worker(hub).drain()
    with transaction(hub.engine, read_only=True) as s:
        assert sorted(e.status for e in s.scalars(select(InboundEvent))) == ["merged", "processed"]
        lead = lead_to_dict(s.scalars(select(Lead)).one())
    assert lead["touch_count"] == 1 and lead["touches"][0]["recording"].startswith("mango:")
