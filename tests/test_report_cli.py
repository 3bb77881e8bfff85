"""`hub report …`: the same numbers as the pages and the API, from a shell (JSON for scripts, a table to read)."""

from __future__ import annotations

import json

import pytest

from tests.test_report_managers import CONFIG, build, expected_rows


@pytest.fixture
def config_path(write_config):
    return write_config(CONFIG)


PERIOD = ("--from", "2026-12-01", "--to", "2026-12-02")


def test_the_managers_report_from_the_command_line(hub, runner, monkeypatch):
    build(hub, monkeypatch)
    data = json.loads(runner("report", "managers", *PERIOD, "--json").output)
    assert data["period"] == {"date_from": "2026-12-01", "date_to": "2026-12-02", "timezone": "Europe/Moscow"}
    # "now" differs from the report test's fixed clock: open and overdue are read as of this moment.
    now_fields = ("open_now", "overdue_now")
    assert [{k: v for k, v in r.items() if k not in now_fields} for r in data["managers"]] == \
        [{k: v for k, v in r.items() if k not in now_fields} for r in expected_rows()]
    table = runner("report", "managers", *PERIOD).output.splitlines()
    assert table[0] == "2026-12-01 – 2026-12-02 (Europe/Moscow)"
    assert table[1].split()[:6] == ["manager", "team", "received", "taken", "converted", "refused"]
    max_row = next(line for line in table if line.startswith("Max "))
    max_expected = next(r for r in expected_rows() if r["name"] == "Max")
    assert max_row.split()[2:6] == [str(max_expected[k]) for k in ("received", "taken", "converted", "refused")]


def test_every_report_answers_and_dates_the_wrong_way_round_are_swapped(hub, runner, monkeypatch):
    build(hub, monkeypatch)
    for command in (("funnel",), ("funnel", "--group-by", "tag"), ("statuses",), ("handovers",), ("activity",)):
        data = json.loads(runner("report", *command, "--from", "2026-12-02", "--to", "2026-12-01", "--json").stdout)
        assert (data["period"]["date_from"], data["period"]["date_to"]) == ("2026-12-01", "2026-12-02"), command
        assert runner("report", *command, *PERIOD).output.startswith("2026-12-01 – 2026-12-02"), command
    handovers = json.loads(runner("report", "handovers", *PERIOD, "--json").output)
    assert handovers["total"] >= 1 and all(item["lead_id"] for item in handovers["items"])
    assert "Invalid value for '--from'" in runner("report", "managers", "--from", "2026-13-01", expect=2).output
