"""The `hub` command as an operator uses it, against real stores."""

from __future__ import annotations

import json
import socket
import subprocess

import pytest

from hub.pipeline.worker import Worker
from tests.conftest import fixture_bytes
from tests.helpers.procs import HUB

LANDING = fixture_bytes("site_form", "landing_json.json")


def test_leads_list_and_show(client, hub, runner):
    client.post("/hooks/site", data=LANDING, content_type="application/json")
    client.post("/hooks/site", json={"Имя": "Анна Смирнова", "Телефон": "+7 (903) 555-66-77"})
    Worker(hub).drain()
    table = runner("leads", "list").output.splitlines()
    assert table[0].split() == ["ID", "STATUS", "SOURCE", "NAME", "PHONE", "EMAIL", "UTM", "CREATED"]
    assert "Анна Смирнова" in table[1] and "+79035556677" in table[1]
    assert "google/cpc/brand" in table[2]
    shown = json.loads(runner("leads", "show", "1", "--json").output)
    assert shown["touches"][0]["utm_campaign"] == "brand"
    text = runner("leads", "show", "2").output
    assert "Анна Смирнова" in text                                # no mojibake, no \u escapes
    assert "Анна" in runner("leads", "list", "--json").output
    assert runner("leads", "list", "--status", "refused", "--json").output.strip() == "[]"
    assert "no lead 99" in runner("leads", "show", "99", expect=1).stderr


def test_events_list_show_and_replay_rules(client, hub, runner):
    client.post("/hooks/site", json={"name": "no contact"})
    client.post("/hooks/site", data=LANDING, content_type="application/json")
    client.post("/hooks/site", data=b"{broken", content_type="application/json")
    Worker(hub).drain()
    listed = json.loads(runner("events", "list", "--json").output)
    assert [(e["id"], e["status"]) for e in listed] == [(3, "rejected"), (2, "processed"), (1, "rejected")]
    shown = json.loads(runner("events", "show", "1", "--json").output)
    assert shown["payload"] == {"name": "no contact"}
    assert shown["reject_reason"].startswith("no phone, e-mail or messenger id")
    assert "body:\n{broken" in runner("events", "show", "3").output

    out = runner("events", "replay", "2", "3", "--json", expect=1).output
    assert json.loads(out) == {"replayed": [], "refused": [
        {"id": 2, "reason": "status is processed; only dead or rejected events are replayed"},
        {"id": 3, "reason": "rejected at intake: its body never parsed, there is nothing to replay"}]}
    # a rejected event is replayed with the current mapping (here: unchanged, so it is rejected again)
    assert "replayed 1 event(s): 1" in runner("events", "replay", "1").output
    Worker(hub).drain()
    assert json.loads(runner("events", "show", "1", "--json").output)["status"] == "rejected"
    assert "name event ids, or --dead" in runner("events", "replay", expect=2).stderr


def test_db_upgrade_is_idempotent(runner):
    assert "schema already at 0013" in runner("db", "upgrade").output


@pytest.mark.parametrize("command", ["run", "serve"])
def test_a_busy_port_is_one_clear_line_before_anything_starts(config_path, command):
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]
        done = subprocess.run([HUB, command, "--config", str(config_path), "--port", str(port)],
                              capture_output=True, text=True, timeout=60)
    assert done.returncode == 1, done.stderr
    assert done.stderr.strip() == (f"error: port {port} on 127.0.0.1 is in use: stop what holds it or pick another "
                                   "with --port or [server] port")


def test_json_log_lines():
    import logging

    from hub.cli.common import JsonLogFormatter

    record = logging.LogRecord("hub.pipeline.worker", logging.INFO, __file__, 1, "event=%s processed lead=%s", (7, 3),
                               None)
    line = json.loads(JsonLogFormatter().format(record))
    assert line["message"] == "event=7 processed lead=3" and line["level"] == "INFO"
    assert line["logger"] == "hub.pipeline.worker"
