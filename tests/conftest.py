"""Fixtures: a real SQLite file and a real PostgreSQL database for every store test.

PostgreSQL: $HUB_TEST_POSTGRES_URL (default postgresql://postgres@127.0.0.1:5432/test) is used only to
create a fresh database for this run, dropped at the end; the database it names is created when the server
answers without it. If it is unreachable the PostgreSQL half of the suite is skipped with the reason, unless
HUB_TEST_REQUIRE_POSTGRES=1 (as in .ci/run), which makes it fail. More: tests/README.md.
"""

from __future__ import annotations

import json
import os
import textwrap
import time
import uuid
from pathlib import Path

import psycopg
import pytest
from click.testing import CliRunner
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo
from sqlalchemy import text

from hub.cli import main as hub_cli
from hub.config import load_config
from hub.runtime import Hub
from hub.store import schema as store
from hub.store.db import make_engine
from hub.web.app import create_app
from tests.helpers.fake_telegram import fake_telegram  # noqa: F401 - a fixture, for every Telegram test
from tests.helpers.fake_vk import fake_vk  # noqa: F401 - a fixture, for every VK test

FIXTURES = Path(__file__).parent / "fixtures"
PG_ADMIN_URL = os.environ.get("HUB_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test")
REQUIRE_PG = os.environ.get("HUB_TEST_REQUIRE_POSTGRES") == "1"
REQUIRE_IMAP = os.environ.get("HUB_TEST_REQUIRE_IMAP") == "1"
TABLES = ("notification_message", "telegram_link", "telegram_link_code",
          "vk_profile",
          "lead_task", "web_session", "sign_in_counter", "call_alert", "web_presence", "sink_delivery", "sink_link",
          "sink_state", "api_token", "hub_user", "source_spend", "poll_state", "notification", "manager_state",
          "routing_position", "scheduler_lease", "lead_history", "possible_duplicate", "person_merge", "touch",
          "inbound_event", "lead", "identity_key", "person")
SITE_TOKEN = "s3cret-token-for-tests"


def fixture_bytes(connector: str, name: str) -> bytes:
    return (FIXTURES / connector / name).read_bytes()


class PostgresUnavailable(Exception):
    """Why this run cannot have a PostgreSQL database, said so that the reader can fix it."""


def connect_admin() -> psycopg.Connection:
    """The connection that creates and drops this run's database.

    A fresh cluster has only `postgres`: when the server answers but lacks the database the URL names, it is
    created from the `postgres` maintenance database, so a first run does not skip the PostgreSQL half for
    want of one `createdb`. (A connection error carries no SQLSTATE and its text follows the server's
    language, so pg_database is asked whether the database is there, not the message.)"""
    url = PG_ADMIN_URL.replace("postgresql+psycopg://", "postgresql://")
    try:
        return psycopg.connect(url, autocommit=True, connect_timeout=5)
    except psycopg.OperationalError as exc:
        unreachable = PostgresUnavailable(
            f"PostgreSQL unreachable at {PG_ADMIN_URL} (set HUB_TEST_POSTGRES_URL): {exc}")
    target = conninfo_to_dict(url)
    dbname, host, port = target.get("dbname"), target.get("host", "localhost"), target.get("port", "5432")
    try:
        maintenance = psycopg.connect(make_conninfo(url, dbname="postgres"), autocommit=True, connect_timeout=5)
    except psycopg.OperationalError:
        raise unreachable from None
    with maintenance:
        if not dbname or maintenance.execute("SELECT 1 FROM pg_database WHERE datname = %s", (dbname,)).fetchone():
            raise unreachable                 # the database is there: the first error was something else
        try:
            maintenance.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(dbname)))
        except psycopg.errors.DuplicateDatabase:
            pass                              # another run created it meanwhile
        except psycopg.Error as exc:
            options = f"-h {host}" + ("" if port == "5432" else f" -p {port}") + (
                f" -U {target['user']}" if "user" in target else "")
            raise PostgresUnavailable(
                f"database '{dbname}' does not exist on {host}:{port} and could not be created ({exc}): create it "
                f"with `createdb {options} {dbname}` or set HUB_TEST_POSTGRES_URL") from None
    return psycopg.connect(url, autocommit=True, connect_timeout=5)


@pytest.fixture(scope="session")
def pg_url():
    try:
        admin = connect_admin()
    except PostgresUnavailable as exc:
        if REQUIRE_PG:
            pytest.fail(f"PostgreSQL required (HUB_TEST_REQUIRE_POSTGRES=1): {exc}")
        pytest.skip(str(exc))
    name = f"hubtest_{uuid.uuid4().hex[:12]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    url = "postgresql+psycopg://" + url.split("://", 1)[1]
    engine = make_engine(url)
    store.upgrade(engine)
    engine.dispose()
    yield url
    admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    admin.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request, tmp_path):
    """A migrated, empty store of each kind."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'hub.db'}"
        engine = make_engine(url)
        store.upgrade(engine)
    else:
        url = request.getfixturevalue("pg_url")
        engine = make_engine(url)
        with engine.begin() as conn:
            conn.execute(text(f"TRUNCATE {', '.join(TABLES)} RESTART IDENTITY CASCADE"))
    engine.dispose()
    return url


@pytest.fixture
def write_config(tmp_path, database_url):
    """Write a config file for this test's store; extra TOML is appended. Returns its path."""
    def write(extra: str = "", **worker_settings) -> Path:
        worker = {"poll_interval_seconds": 0.05, "lease_seconds": 30, "max_attempts": 3, "backoff_base_seconds": 0,
                  **worker_settings}
        path = tmp_path / "config.toml"
        path.write_text("\n".join([
            'default_region = "RU"',
            f"[database]\nurl = {json.dumps(database_url)}",
            "[server]\nmax_body_bytes = 1048576",
            "[worker]", *(f"{k} = {v}" for k, v in worker.items()),
            '[[sources]]\nname = "site"\nconnector = "site_form"\ntags = ["website"]',
            f'[[sources]]\nname = "locked"\nconnector = "site_form"\ntoken = "{SITE_TOKEN}"',
            textwrap.dedent(extra)]), encoding="utf-8")
        return path
    return write


@pytest.fixture
def config_path(write_config):
    return write_config()


@pytest.fixture
def hub(config_path):
    h = Hub(load_config(config_path))
    yield h
    h.dispose()


@pytest.fixture
def app(hub):
    app = create_app(hub=hub)
    app.config["TESTING"] = True
    return app


@pytest.fixture
def live_server(app, hub):
    """The app on the production web server (granian, hub/web/rsgi.py) on a free port, in a thread, for a
    browser or schemathesis."""
    import socket
    import threading

    from hub.processes import GranianServer
    from tests.helpers.procs import free_port

    server = GranianServer(hub, "127.0.0.1", free_port(), threads=8, app=app)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    for _ in range(200):
        try:
            socket.create_connection(("127.0.0.1", server.port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.025)
    yield server.url
    server.stop()
    thread.join(timeout=10)


@pytest.fixture
def client(app):
    return app.test_client()


@pytest.fixture
def runner(config_path):
    """Invoke the `hub` CLI against this test's config: runner("leads", "list", "--json")."""
    cli = CliRunner()

    def invoke(*args: str, expect: int = 0):
        result = cli.invoke(hub_cli, [*args, "--config", str(config_path)], catch_exceptions=False)
        assert result.exit_code == expect, result.output + result.stderr
        return result
    return invoke


@pytest.fixture(scope="session")
def dovecot():
    """A real Dovecot for the whole run (apt-get install dovecot-imapd); skipped without it unless required."""
    from tests.helpers.dovecot import DOVECOT, Dovecot

    if not os.path.exists(DOVECOT):
        if REQUIRE_IMAP:
            pytest.fail("dovecot-imapd is required (HUB_TEST_REQUIRE_IMAP=1) but not installed (see tests/README.md)")
        pytest.skip("dovecot-imapd is not installed (apt-get install dovecot-imapd; see tests/README.md)")
    server = Dovecot().start()
    yield server
    server.cleanup()


@pytest.fixture
def imap_account(dovecot):
    """A fresh, empty mailbox: dict(host, port, user, password)."""
    return dovecot.add_user()
