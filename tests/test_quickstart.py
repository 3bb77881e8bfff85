"""The README's first command, as a new user runs it: `hub run` with config.example.toml, then curl."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import requests

from tests.helpers.procs import HUB, free_port, start, stop, wait_healthy

ROOT = Path(__file__).parent.parent


def test_hub_run_with_the_example_config(tmp_path, monkeypatch):
    monkeypatch.delenv("HUB_DATABASE_URL", raising=False)
    config = tmp_path / "config.example.toml"
    shutil.copy(ROOT / "config.example.toml", config)
    port = free_port()
    proc = start("run", "--config", str(config), "--port", str(port))
    try:
        wait_healthy(proc, port)
        deadline = time.monotonic() + 30
        landing = (ROOT / "tests/fixtures/site_form/landing_json.json").read_bytes()
        started = time.monotonic()
        resp = requests.post(f"http://127.0.0.1:{port}/hooks/site", data=landing,
                             headers={"Content-Type": "application/json"}, timeout=5)
        assert resp.status_code == 200 and resp.json()["status"] == "accepted"
        assert time.monotonic() - started < 5      # generous: this is a correctness test, not a benchmark

        leads = []
        while not leads and time.monotonic() < deadline:
            time.sleep(0.2)
            out = subprocess.run([HUB, "leads", "list", "--json", "--config", str(config)],
                                 capture_output=True, text=True, check=True)
            leads = json.loads(out.stdout)
        [lead] = leads
        assert lead["phones"] == ["+79123456789"] and lead["source"] == "site"
        assert lead["first_touch"]["utm_source"] == "google" and lead["first_touch"]["utm_campaign"] == "brand"

        again = requests.post(f"http://127.0.0.1:{port}/hooks/site", data=landing,
                              headers={"Content-Type": "application/json"}, timeout=5)
        assert again.json()["status"] == "duplicate"
        time.sleep(0.5)
        out = subprocess.run([HUB, "leads", "list", "--json", "--config", str(config)],
                             capture_output=True, text=True, check=True)
        assert len(json.loads(out.stdout)) == 1
        assert (tmp_path / "hub.db").exists()          # the embedded store lives next to the config

        # The README's next step: the web app, in Russian for a Russian browser ([ui] default_language = "ru"),
        # says how to create the first user; created with the command the README gives, they sign in.
        login = requests.get(f"http://127.0.0.1:{port}/login", timeout=5)
        assert login.status_code == 200 and "hub users add you@example.com --role admin" in login.text
        assert "Войти" in login.text                  # no Accept-Language: the config's default, ru
        subprocess.run([HUB, "users", "add", "you@example.com", "--role", "admin", "--config", str(config),
                        "--password-env", "QUICKSTART_PASSWORD"], check=True, capture_output=True,
                       env={**os.environ, "QUICKSTART_PASSWORD": "a quick start password"})
        session = requests.Session()
        token = session.get(f"http://127.0.0.1:{port}/login", timeout=5).text.split('name="csrf_token" value="')[1]
        token = token.split('"')[0]
        inbox = session.post(f"http://127.0.0.1:{port}/login", timeout=5, data={
            "login": "you@example.com", "password": "a quick start password", "csrf_token": token})
        assert inbox.status_code == 200 and 'data-lead-id="1"' in inbox.text
    finally:
        output = stop(proc)
    assert proc.returncode == 0, output
    assert f"lead hub listening on http://127.0.0.1:{port}" in output
    # One command to paste as it is: the config is not ./config.toml, so the hint names it.
    assert ("no users yet: create one with `hub users add you@example.com --role admin --config "
            f"{tmp_path / 'config.example.toml'}`") in output
