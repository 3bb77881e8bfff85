"""Config: every problem reported at once, with its path; env: secrets; database URL resolution."""

from __future__ import annotations

import re
import textwrap
from importlib.metadata import EntryPoint
from pathlib import Path

import pytest
from click.testing import CliRunner

import hub.connector as connector
from hub.cli import main as hub_cli
from hub.config import load_config
from hub.errors import ConfigError

ROOT = Path(__file__).parent.parent


def _write(tmp_path: Path, body: str) -> Path:
    path = tmp_path / "config.toml"
    path.write_text(textwrap.dedent(body), encoding="utf-8")
    return path


def test_example_config_is_valid_and_uses_sqlite_next_to_it(monkeypatch):
    monkeypatch.delenv("HUB_DATABASE_URL", raising=False)
    config = load_config(ROOT / "config.example.toml")
    assert [s.name for s in config.sources] == ["site"]
    assert config.database_url == f"sqlite:///{ROOT / 'hub.db'}"


def test_every_problem_is_reported_with_its_path(tmp_path, monkeypatch):
    monkeypatch.delenv("MISSING_SECRET", raising=False)
    path = _write(tmp_path, """
        default_region = "XX"
        [server]
        port = 70000
        [[sources]]
        name = "site"
        connector = "site_form"
        [[sources]]
        name = "site"
        connector = "site_form"
        tokn = "typo-in-a-setting-name"
        [[sources]]
        name = "tilda"
        connector = "tilda2"
        [[sources]]
        name = "locked"
        connector = "site_form"
        token = "env:MISSING_SECRET"
        region = "ZZ"
        mapping = "no_such_mapping"
    """)
    result = CliRunner().invoke(hub_cli, ["check", "--config", str(path)])
    assert result.exit_code == 1
    # pydantic problems come first and stop the rest only when the shape itself is wrong
    assert "server.port: Input should be less than or equal to 65535" in result.stderr

    path = _write(tmp_path, path.read_text().replace("port = 70000", "port = 8000"))
    result = CliRunner().invoke(hub_cli, ["check", "--config", str(path)])
    assert result.exit_code == 1
    err = result.stderr
    assert "sources[3].token: environment variable MISSING_SECRET is not set" in err
    assert "default_region: unknown phone region 'XX'" in err
    assert "sources[1].name: duplicate source name 'site'" in err
    assert "sources[1].tokn: Extra inputs are not permitted" in err
    assert ("sources[2].connector: unknown connector 'tilda2' (known: csv_import, email_imap, mango, site_form, "
            "telegram, telegram_polling, telephony_generic, tilda, vk, vk_longpoll, zadarma)") in err
    assert "sources[3].region: unknown phone region 'ZZ'" in err
    assert "sources[3].mapping: no mapping 'no_such_mapping'" in err
    assert "7 problem(s)" in err


def test_check_json_and_ok(tmp_path):
    path = _write(tmp_path, """
        [[sources]]
        name = "site"
        connector = "site_form"
    """)
    result = CliRunner().invoke(hub_cli, ["check", "--json", "--config", str(path)])
    assert result.exit_code == 0
    assert '"ok": true' in result.output
    bad = _write(tmp_path, "[[sources]]\nname = 'Bad Name'\nconnector = 'site_form'\n")
    result = CliRunner().invoke(hub_cli, ["check", "--json", "--config", str(bad)])
    assert result.exit_code == 1
    assert "sources[0].name: Value error, must be 1-64 characters" in result.output


def test_env_secret_and_database_url_override(tmp_path, monkeypatch):
    monkeypatch.setenv("SITE_TOKEN_FOR_TEST", "abcdefghijklmnop-0123")
    monkeypatch.setenv("HUB_DATABASE_URL", "postgresql://hub@db.internal/leads")
    path = _write(tmp_path, """
        [database]
        url = "sqlite:///ignored.db"
        [[sources]]
        name = "site"
        connector = "site_form"
        token = "env:SITE_TOKEN_FOR_TEST"
    """)
    config = load_config(path)
    assert config.sources[0].connector_settings()["token"] == "abcdefghijklmnop-0123"
    assert config.database_url == "postgresql+psycopg://hub@db.internal/leads"


def test_relative_sqlite_path_is_next_to_the_config(tmp_path, monkeypatch):
    monkeypatch.delenv("HUB_DATABASE_URL", raising=False)
    path = _write(tmp_path, '[database]\nurl = "sqlite:///data/leads.db"\n')
    assert load_config(path).database_url == f"sqlite:///{tmp_path / 'data' / 'leads.db'}"


@pytest.mark.parametrize("body, message", [
    (None, "no such config file (pass --config PATH or set HUB_CONFIG"),
    ("[server\nport=1", "not valid TOML"),
    ("[[sources]]\nname='x'\n", "sources[0].connector: Field required"),
    ("[[sources]]\nname='x'\nconnector='site_form'\ntoken='short'\n",
     "sources[0].token: String should have at least 16 characters"),
])
def test_clear_errors(tmp_path, body, message):
    path = tmp_path / "config.toml"
    if body is not None:
        path.write_text(body)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert message in str(exc.value)


def test_a_mapping_next_to_the_config_overrides_the_builtin(tmp_path):
    (tmp_path / "mappings").mkdir()
    (tmp_path / "mappings" / "my_form.toml").write_text('[fields]\nphone = ["Телефон клиента"]\n')
    (tmp_path / "mappings" / "broken.toml").write_text('[fields]\nphone = "not a list"\n')
    path = _write(tmp_path, """
        [[sources]]
        name = "a"
        connector = "site_form"
        mapping = "my_form"
        [[sources]]
        name = "b"
        connector = "site_form"
        mapping = "broken"
    """)
    with pytest.raises(ConfigError) as exc:
        load_config(path)
    assert exc.value.problems == ["sources[1].mapping: mapping 'broken': fields.phone: Input should be a valid list"]


@pytest.mark.parametrize("target, said", [("connectors.site_form:SiteFormConnector", "calls itself 'site_form'"),
                                          ("hub.connector:WebhookConnector", "sets no name")])
def test_a_connector_is_named_once_by_its_entry_point(monkeypatch, target, said):
    """A connector's name is its entry point's key; a class that says another name is refused at load."""
    registered = EntryPoint(name="web_form", value=target, group=connector.ENTRY_POINT_GROUP)
    monkeypatch.setattr(connector, "entry_points", lambda group: [registered])
    connector.available_connectors.cache_clear()
    try:
        with pytest.raises(TypeError, match=re.escape(
                f"connector entry point 'web_form' = '{target}': the class {said}; its name must be the entry "
                "point's key, 'web_form'")):
            connector.available_connectors()
    finally:
        monkeypatch.undo()
        connector.available_connectors.cache_clear()
    assert connector.available_connectors()["site_form"].name == "site_form"
