"""schemathesis against /openapi.json: every documented operation, fed generated valid and invalid input,
answers without a server error and as its document says — on both stores, as an admin (who may call
every operation), with real leads and events in the store."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers.web import WEB_CONFIG, deliver, make_users, token_for


@pytest.fixture
def config_path(write_config):
    return write_config(WEB_CONFIG)


@pytest.fixture
def admin_headers(app, hub, client):
    make_users(hub)
    deliver(client, hub, "site", "+79120000001", "I want to pay", utm_campaign="spring")
    deliver(client, hub, "ads", "+79120000002")
    return token_for(hub, "admin@example.ru")


def test_api_matches_its_openapi_document(live_server, admin_headers, tmp_path):
    """schemathesis's own CLI, as a user would run it (its pytest plugin does not run on pytest 9 yet)."""
    cli = Path(sys.executable).with_name("schemathesis")
    result = subprocess.run(
        [str(cli), "run", f"{live_server}/openapi.json", "--checks", "all", "--max-examples", "25",
         "--seed", "1", "--generation-deterministic", "--no-color",
         "--header", f"Authorization: {admin_headers['Authorization']}",
         "--report", "junit", "--report-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stdout[-6000:] + result.stderr[-2000:]
    assert "No issues found" in result.stdout or "passed" in result.stdout, result.stdout[-3000:]


def test_the_document_is_generated_from_the_code(app, client):
    doc = client.get("/openapi.json").json
    assert doc["openapi"].startswith("3.")
    operations = {(method.upper(), path) for path, item in doc["paths"].items() for method in item}
    api_rules = {(m, str(r).replace("<int:", "{").replace("<", "{").replace(">", "}"))
                 for r in app.url_map.iter_rules() if r.endpoint.startswith("api.") for m in r.methods
                 if m not in ("HEAD", "OPTIONS")}
    assert operations == api_rules            # every API route is documented, and nothing else
    assert doc["components"]["securitySchemes"]["bearer"] == {"type": "http", "scheme": "bearer"}
