"""What every `hub` command shares: the --config and --json options, logging, opening the hub, failing with
one line, and printing JSON (UTF-8, Cyrillic kept as is) or a table."""

from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

import click
from sqlalchemy.orm import Session

from hub.config import Config, load_config
from hub.errors import ConfigError
from hub.runtime import Hub
from hub.store import schema as store
from hub.store.db import transaction

config_option = click.option("--config", "-c", "config_path", envvar="HUB_CONFIG", default="config.toml",
                             show_default=True, type=click.Path(dir_okay=False),
                             help="Config file (or $HUB_CONFIG).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")

Row = dict[str, Any]
Columns = list[tuple[str, Callable[[Row], Any]]]
T = TypeVar("T")


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line (HUB_LOG_FORMAT=json), for log collectors. Messages name events and leads by
    id only: phones, e-mails and tokens are never logged."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("HUB_LOG_FORMAT", "").lower() == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=os.environ.get("HUB_LOG_LEVEL", "INFO").upper(), handlers=[handler])
    # Alembic narrates every start-up check; only `hub db upgrade` has something to say.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def load(config_path: str) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {config_path}; nothing was started.", err=True)
        sys.exit(2)


def open_hub(config_path: str) -> Hub:
    """Load config and make sure the schema is current: an embedded SQLite store is upgraded in place;
    a shared PostgreSQL store is upgraded only by an explicit `hub db upgrade`, never by a racing process."""
    hub = Hub(load(config_path))
    if hub.is_embedded:
        store.upgrade(hub.engine)
    else:
        try:
            current = store.current_revision(hub.engine)
        except Exception as exc:  # noqa: BLE001
            fail(f"cannot reach the database: {exc}")
        if current != store.head_revision():
            fail(f"database schema is at {current or 'nothing'}, this hub needs {store.head_revision()}: "
                 f"run `hub db upgrade --config {config_path}`")
    return hub


def actor(by: str | None) -> str:
    """Who an operator action is logged as: --by, else $HUB_ACTOR, else the login name."""
    import getpass

    return by or os.environ.get("HUB_ACTOR") or getpass.getuser()


def print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def print_table(rows: list[Row], columns: Columns) -> None:
    cells = [[str(get(r) if get(r) is not None else "") for _, get in columns] for r in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (title, _) in enumerate(columns)]
    click.echo("  ".join(t.ljust(w) for (t, _), w in zip(columns, widths, strict=True)).rstrip())
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths, strict=True)).rstrip())


def read(config_path: str, query: Callable[[Session, Hub], T]) -> T:
    """Open the hub and run one query in a read-only transaction."""
    hub = open_hub(config_path)
    with transaction(hub.engine, read_only=True) as session:
        return query(session, hub)


def record(config_path: str, query: Callable[[Session, Hub], T | None], missing: str) -> T:
    """A show command's one record; exit 1 saying ``missing`` when the query finds none."""
    data = read(config_path, query)
    if data is None:
        fail(missing)
    return data


def listing(config_path: str, as_json: bool, query: Callable[[Session, Hub], list[Row]], columns: Columns) -> None:
    """A listing command: the query's rows as JSON, or as a table of these columns."""
    rows = read(config_path, query)
    if as_json:
        print_json(rows)
    else:
        print_table(rows, columns)
