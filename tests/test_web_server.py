"""The production web server (granian, hub/web/rsgi.py): the webhook door on its event loop and the pages on
a thread pool answer as Flask does, a live-call source still routes before its answer, and a body that stops
coming is answered 408. The hostile-sender cases, on both engines, are in tests/test_server_hardening.py."""

from __future__ import annotations

import re
import socket
import time
from dataclasses import dataclass, field

import pytest
import requests
from sqlalchemy import select

from hub.pipeline.worker import Worker
from hub.store.db import transaction
from hub.store.models import InboundEvent, Lead
from hub.web.rsgi import wsgi_environ
from tests.helpers import procs
from tests.helpers.web import PASSWORD, WEB_CONFIG, make_users, with_manager

ASTERISK = '''
[[sources]]
name = "asterisk"
connector = "telephony_generic"
caller_path = "from"
status_path = "state"
id_path = "uniqueid"
route_reply = '{"action": "transfer", "exten": "{extension}"}'
'''


@pytest.fixture
def config_path(write_config):
    return write_config(with_manager(WEB_CONFIG, "Lena", extensions={"asterisk": "7003"}) + ASTERISK)


@dataclass
class Headers:
    pairs: list[tuple[str, str]] = field(default_factory=list)

    def items(self) -> list[tuple[str, str]]:
        return self.pairs


@dataclass
class Scope:
    """What granian hands an RSGI app, for the fields wsgi_environ reads."""
    path: str
    query_string: str = ""
    method: str = "GET"
    client: str = "127.0.0.1:50123"
    server: str = "127.0.0.1:8000"
    scheme: str = "http"
    http_version: str = "1.1"
    headers: Headers = field(default_factory=Headers)


def test_the_wsgi_environ_is_what_waitress_gave():
    environ = wsgi_environ(Scope(
        path="/leads/Иван", query_string="q=%D0%98&x=1", method="POST", client="[::1]:50123",
        headers=Headers([("host", "hub.example.ru"), ("content-type", "application/json"), ("content-length", "12"),
                         ("x-a", "1"), ("x-a", "2"), ("cookie", "a=1"), ("cookie", "b=2"),
                         ("x_forwarded_for", "6.6.6.6"), ("x-forwarded-for", "10.0.0.1")])))
    assert environ["PATH_INFO"] == "/leads/Иван".encode().decode("latin-1")      # PEP 3333: bytes as latin-1
    assert environ["QUERY_STRING"] == "q=%D0%98&x=1"
    assert (environ["REQUEST_METHOD"], environ["REMOTE_ADDR"]) == ("POST", "::1")
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert (environ["CONTENT_TYPE"], environ["CONTENT_LENGTH"]) == ("application/json", "12")
    assert "HTTP_CONTENT_TYPE" not in environ
    assert environ["HTTP_X_A"] == "1,2" and environ["HTTP_COOKIE"] == "a=1; b=2"
    assert environ["HTTP_X_FORWARDED_FOR"] == "10.0.0.1"          # the underscore spelling cannot pass for it


def test_pages_and_deliveries_through_granian(live_server, hub):
    make_users(hub)
    with requests.Session() as browser:
        page = browser.get(f"{live_server}/login", params={"next": "/leads?q=Иван"}, timeout=5)
        assert page.status_code == 200 and 'lang="' in page.text
        token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
        signed_in = browser.post(f"{live_server}/login", timeout=5, allow_redirects=False, data={
            "csrf_token": token, "login": "admin@example.ru", "password": PASSWORD})
        assert signed_in.status_code == 302, signed_in.text[:300]
        inbox = browser.get(f"{live_server}/leads", params={"q": "Иван"}, timeout=5)
        assert inbox.status_code == 200 and "Иван" in inbox.text
        assert inbox.headers["Content-Security-Policy"].startswith("default-src 'none'")

    fast = requests.post(f"{live_server}/hooks/ads", json={"phone": "+79123456789", "name": "Иван"}, timeout=5)
    assert fast.status_code == 200 and fast.json()["status"] == "accepted"
    assert fast.headers["X-Content-Type-Options"] == "nosniff" and fast.headers["Cache-Control"] == "no-store"

    def chunks():             # no Content-Length: requests sends it chunked, and Flask's view takes it
        yield b'{"phone": "+79123456780", '
        yield '"name": "Пётр"}'.encode()

    chunked = requests.post(f"{live_server}/hooks/ads", data=chunks(), timeout=5,
                            headers={"Content-Type": "application/json"})
    assert chunked.status_code == 200 and chunked.json()["status"] == "accepted", chunked.text
    assert requests.post(f"{live_server}/hooks/nowhere", json={}, timeout=5).status_code == 404
    assert Worker(hub).drain() == 2
    with transaction(hub.engine, read_only=True) as s:
        assert len(s.scalars(select(Lead)).all()) == 2


def test_a_live_call_source_routes_before_its_answer(live_server, hub):
    # A PBX's ringing call is answered from the store (who owns the caller): on the thread pool, not the loop.
    first = requests.post(f"{live_server}/hooks/ads", json={"phone": "+79123456789", "name": "Иван"}, timeout=5)
    assert first.status_code == 200
    Worker(hub).drain()
    with transaction(hub.engine) as s:
        s.scalars(select(Lead)).one().owner = "Lena"
    ringing = requests.post(f"{live_server}/hooks/asterisk", timeout=5,
                            json={"uniqueid": "1733.1", "from": "+79123456789", "state": "ringing"})
    assert ringing.status_code == 200 and ringing.json() == {"action": "transfer", "exten": "7003"}
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalars(select(InboundEvent.source).where(InboundEvent.source == "asterisk")).all() == ["asterisk"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_a_body_that_stops_coming_is_answered_408(write_config):
    config = write_config()
    config.write_text(config.read_text().replace("[server]\n", "[server]\nidle_timeout_seconds = 1\n"))
    port = procs.free_port()
    proc = procs.start("serve", "--config", str(config), "--port", str(port))
    try:
        procs.wait_healthy(proc, port)
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"POST /hooks/site HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                         b"Content-Length: 100\r\n\r\n{\"phone\": ")
            started = time.monotonic()
            reply = sock.recv(4096)
            waited = time.monotonic() - started
        assert reply.startswith(b"HTTP/1.1 408"), reply[:200]
        assert 0.8 < waited < 3, waited
    finally:
        procs.stop(proc)
