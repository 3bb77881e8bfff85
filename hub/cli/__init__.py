"""The `hub` command. Every listing takes --json (UTF-8, Cyrillic kept as is) for scripts."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click
from sqlalchemy import select
from sqlalchemy.orm import selectinload

from hub.config import Config, load_config
from hub.store.db import transaction
from hub.errors import ConfigError
from hub.store.models import EventStatus, InboundEvent, Lead, LeadStatus, Person, utcnow
from hub.runtime import Hub
from hub.store.serialize import event_to_dict, lead_to_dict
from hub.store import schema as store

config_option = click.option("--config", "-c", "config_path", envvar="HUB_CONFIG", default="config.toml",
                             show_default=True, type=click.Path(dir_okay=False),
                             help="Config file (or $HUB_CONFIG).")
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")


class JsonLogFormatter(logging.Formatter):
    """One JSON object a line (HUB_LOG_FORMAT=json), for log collectors. Messages name events and leads by
    id only: phones, e-mails and tokens are never logged."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {"time": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"), "level": record.levelname,
                 "logger": record.name, "message": record.getMessage()}
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, ensure_ascii=False)


def _setup_logging() -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("HUB_LOG_FORMAT", "").lower() == "json":
        handler.setFormatter(JsonLogFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=os.environ.get("HUB_LOG_LEVEL", "INFO").upper(), handlers=[handler])
    # Alembic narrates every start-up check; only `hub db upgrade` has something to say.
    logging.getLogger("alembic").setLevel(logging.WARNING)
    logging.getLogger("apscheduler").setLevel(logging.WARNING)


def _load(config_path: str) -> Config:
    try:
        return load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            click.echo(f"error: {problem}", err=True)
        click.echo(f"{len(exc.problems)} problem(s) in {config_path}; nothing was started.", err=True)
        sys.exit(2)


def _open_hub(config_path: str) -> Hub:
    """Load config and make sure the schema is current: an embedded SQLite store is upgraded in place;
    a shared PostgreSQL store is upgraded only by an explicit `hub db upgrade`, never by a racing process."""
    hub = Hub(_load(config_path))
    if hub.is_embedded:
        store.upgrade(hub.engine)
    else:
        try:
            current = store.current_revision(hub.engine)
        except Exception as exc:  # noqa: BLE001
            _fail(f"cannot reach the database: {exc}")
        if current != store.head_revision():
            _fail(f"database schema is at {current or 'nothing'}, this hub needs {store.head_revision()}: "
                  f"run `hub db upgrade --config {config_path}`")
    return hub


def _fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _print_json(data: Any) -> None:
    click.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _print_table(rows: list[dict[str, Any]], columns: list[tuple[str, Callable[[dict[str, Any]], Any]]]) -> None:
    cells = [[str(get(r) if get(r) is not None else "") for _, get in columns] for r in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (title, _) in enumerate(columns)]
    click.echo("  ".join(t.ljust(w) for (t, _), w in zip(columns, widths)).rstrip())
    for c in cells:
        click.echo("  ".join(v.ljust(w) for v, w in zip(c, widths)).rstrip())


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="leadhub")
def main() -> None:
    """lead hub: every lead channel into one store, none lost, none doubled."""
    _setup_logging()


# -- running -------------------------------------------------------------------------------------------

@contextmanager
def _running_workers(hub: Hub, count: int, scheduler: bool = False) -> Iterator[threading.Event]:
    """Worker threads and a notifier (and, for `hub run`, the scheduler) for the duration of the block;
    set the yielded event to stop them early."""
    from hub.outbox.forwarding import Forwarder
    from hub.outbox.notify import Notifier
    from hub.scheduler import Scheduler
    from hub.pipeline.worker import Worker

    stop = threading.Event()
    threads = [threading.Thread(target=lambda: Worker(hub).run_forever(stop), name=f"worker-{i + 1}", daemon=True)
               for i in range(count)]
    threads.append(threading.Thread(target=Notifier(hub).run_forever, args=(stop,), name="notifier", daemon=True))
    if hub.config.sinks:
        threads.append(threading.Thread(target=Forwarder(hub).run_forever, args=(stop,), name="forwarder",
                                        daemon=True))
    if scheduler:
        threads.append(threading.Thread(target=Scheduler(hub).run_forever, args=(stop,), name="scheduler",
                                        daemon=True))
    for t in threads:
        t.start()
    try:
        yield stop
    finally:
        stop.set()
        hub.event_stored.set()      # wake idle workers so they see the stop at once
        hub.notification_queued.set()
        hub.forward_queued.set()
        for t in threads:
            t.join(timeout=30)


def _serve(hub: Hub, host: str | None, port: int | None, threads: int, on_start: str = "") -> None:
    from waitress import create_server

    from hub.web.app import create_app

    app = create_app(hub=hub)
    # The thread that holds the store's write lock waits on the disk, then needs the GIL back to commit
    # and let the next writer in; by default Python hands the GIL over every 5 ms, so busy request
    # threads kept it waiting. Every 0.5 ms: +11% acks under 16 senders, p99 lower (A/B, same run).
    sys.setswitchinterval(0.0005)
    host, port = host or hub.config.server.host, port or hub.config.server.port
    server = create_server(app, host=host, port=port, threads=threads, ident="leadhub")
    click.echo(f"lead hub listening on http://{host}:{port}{on_start}", err=True)
    for name, source in hub.sources.items():
        click.echo(f"  source {name} ({source.connector.name}): http://{host}:{port}/hooks/{name}", err=True)
    from hub.store.models import User
    with transaction(hub.engine, read_only=True) as session:
        if session.scalar(select(User.id).limit(1)) is None:
            click.echo(f"  web app: http://{host}:{port}/ — no users yet: create one with "
                       "`hub users add you@example.com --role admin`", err=True)

    def _stop(signum: int, _frame: Any) -> None:
        raise SystemExit(0)    # waitress's loop catches it and shuts its threads down

    signal.signal(signal.SIGTERM, _stop)
    server.run()


@main.command()
@config_option
@click.option("--host", help="Listen address (default: [server] host).")
@click.option("--port", type=int, help="Listen port (default: [server] port, 8000).")
@click.option("--workers", type=int, help="Worker threads (default: [worker] threads).")
def run(config_path: str, host: str | None, port: int | None, workers: int | None) -> None:
    """Web, workers and scheduler in one process: the embedded default."""
    hub = _open_hub(config_path)
    count = workers or hub.config.worker.threads
    with _running_workers(hub, count, scheduler=True):
        _serve(hub, host, port, threads=8, on_start=f" with {count} worker(s), database {hub.engine.url!r}")


@main.command()
@config_option
@click.option("--host")
@click.option("--port", type=int)
@click.option("--threads", type=int, default=8, show_default=True, help="HTTP threads.")
def serve(config_path: str, host: str | None, port: int | None, threads: int) -> None:
    """Only the web part (run `hub worker` separately)."""
    _serve(_open_hub(config_path), host, port, threads)


@main.command()
@config_option
@click.option("--threads", type=int, help="Worker threads (default: [worker] threads).")
@click.option("--once", is_flag=True, help="Process what is waiting now, then exit.")
def worker(config_path: str, threads: int | None, once: bool) -> None:
    """Process stored events into leads."""
    from hub.pipeline.worker import Worker

    hub = _open_hub(config_path)
    if once:
        click.echo(f"processed {Worker(hub).drain()} event(s)", err=True)
        return
    with _running_workers(hub, threads or hub.config.worker.threads) as stop:
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        try:
            while not stop.wait(1):
                pass
        except KeyboardInterrupt:
            pass


@main.command()
@config_option
@click.option("--once", is_flag=True, help="One round (if this process is the leader), then exit.")
def scheduler(config_path: str, once: bool) -> None:
    """Scheduled jobs (SLA reassignment). Run any number: one leader works, the others stand by."""
    from hub.scheduler import Scheduler

    hub = _open_hub(config_path)
    sched = Scheduler(hub)
    if once:
        done = sched.tick()
        click.echo("not the leader: another scheduler holds the lease" if done is None
                   else f"{len(done)} lead(s) reassigned or escalated", err=True)
        return
    with _running_workers(hub, 0) as stop:         # a notifier, so its reassignments are announced
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        thread = threading.Thread(target=sched.run_forever, args=(stop,), daemon=True)
        thread.start()
        try:
            while not stop.wait(1):
                pass
        except KeyboardInterrupt:
            stop.set()
        thread.join(timeout=30)


@main.command()
@config_option
@json_option
def check(config_path: str, as_json: bool) -> None:
    """Validate the config; print every problem with its path."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        if as_json:
            _print_json({"ok": False, "problems": exc.problems})
        else:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            click.echo(f"{len(exc.problems)} problem(s) in {config_path}", err=True)
        sys.exit(1)
    sources = [{"name": s.name, "connector": s.connector, "enabled": s.enabled} for s in config.sources]
    if as_json:
        _print_json({"ok": True, "sources": sources})
    else:
        click.echo(f"{config_path}: OK, {len(sources)} source(s): "
                   + (", ".join(f"{s['name']} ({s['connector']})" for s in sources) or "none"))


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: str) -> None:
    """Apply pending migrations (run once per deployment before starting PostgreSQL processes)."""
    hub = Hub(_load(config_path))
    before = store.current_revision(hub.engine)
    store.upgrade(hub.engine)
    after = store.current_revision(hub.engine)
    click.echo(f"schema {before or 'empty'} -> {after}" if before != after else f"schema already at {after}")


# -- leads ---------------------------------------------------------------------------------------------

@main.group()
def leads() -> None:
    """Leads in the store."""


def _lead_query():
    return select(Lead).where(Lead.merged_into_id.is_(None)).options(
        selectinload(Lead.person).selectinload(Person.keys), selectinload(Lead.touches),
        selectinload(Lead.history))


@leads.command("list")
@config_option
@json_option
@click.option("--status", type=click.Choice(LeadStatus.ALL))
@click.option("--source")
@click.option("--limit", type=int, default=50, show_default=True)
def leads_list(config_path: str, as_json: bool, status: str | None, source: str | None, limit: int) -> None:
    """Newest leads first."""
    hub = _open_hub(config_path)
    query = _lead_query().order_by(Lead.id.desc()).limit(limit)
    if status:
        query = query.where(Lead.status == status)
    if source:
        query = query.where(Lead.source == source)
    with transaction(hub.engine, read_only=True) as session:
        rows = [lead_to_dict(lead, with_touches=as_json) for lead in session.scalars(query)]
    if as_json:
        _print_json(rows)
        return
    _print_table(rows, [("ID", lambda r: r["id"]), ("STATUS", lambda r: r["status"]),
                        ("SOURCE", lambda r: r["source"]), ("NAME", lambda r: r["name"]),
                        ("PHONE", lambda r: ", ".join(r["phones"])), ("EMAIL", lambda r: ", ".join(r["emails"])),
                        ("UTM", lambda r: "/".join(filter(None, [(r["first_touch"] or {}).get(k) for k in
                                                                 ("utm_source", "utm_medium", "utm_campaign")]))),
                        ("CREATED", lambda r: r["created_at"])])


@leads.command("show")
@config_option
@json_option
@click.argument("lead_id", type=int)
def leads_show(config_path: str, as_json: bool, lead_id: int) -> None:
    """One lead with all its touches."""
    hub = _open_hub(config_path)
    with transaction(hub.engine, read_only=True) as session:
        lead = session.scalars(_lead_query().where(Lead.id == lead_id)).one_or_none()
        if lead is None:
            _fail(f"no lead {lead_id}")
        data = lead_to_dict(lead)
    if as_json:
        _print_json(data)
        return
    for key in ("id", "status", "refuse_reason", "name", "person_id", "phones", "emails", "messengers",
                "invalid_contacts", "source", "warmth", "owner", "tags", "reopened_count", "created_at"):
        value = data[key]
        if value not in (None, [], {}, "", 0):
            if isinstance(value, list):
                value = ", ".join(v["raw"] if isinstance(v, dict) else str(v) for v in value)
            elif isinstance(value, dict):
                value = ", ".join(f"{k}:{v}" for k, v in value.items())
            click.echo(f"{key:>16}: {value}")
    for h in data["history"]:
        details = " ".join(f"{k}={v}" for k, v in h.items() if k not in ("at", "kind", "actor") and v is not None)
        click.echo(f"  {h['at']} {h['kind']} by {h['actor']} {details}".rstrip())
    for t in data["touches"]:
        marks = " ".join(f"{k}={t[k]}" for k in ("utm_source", "utm_medium", "utm_campaign", "utm_content",
                                                 "utm_term") if t[k])
        click.echo(f"  touch {t['id']} {t['at']} {t['source']} ({t['channel']}) event {t['event_id']} {marks}")


def _lead_command(config_path: str, as_json: bool, action, message: str) -> None:
    """Run one operator action on a lead in a transaction; print the lead after it."""
    from hub.pipeline.routing import RoutingError

    hub = _open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            lead = action(session, hub.config, utcnow())
            lead_id = lead.id
    except RoutingError as exc:
        _fail(str(exc))
    hub.notification_queued.set()
    with transaction(hub.engine, read_only=True) as session:
        data = lead_to_dict(session.scalars(_lead_query().where(Lead.id == lead_id)).one())
    if as_json:
        _print_json(data)
    else:
        click.echo(message.format(**data))


@leads.command("take")
@config_option
@json_option
@click.argument("lead_id", type=int)
@click.option("--as", "manager", required=True, help="The manager taking it into work.")
def leads_take(config_path: str, as_json: bool, lead_id: int, manager: str) -> None:
    """A manager takes a new lead into work (stops its SLA clock)."""
    from hub.pipeline.routing import take

    _lead_command(config_path, as_json, lambda s, c, now: take(s, c, lead_id, manager, now),
                  "lead {id}: {status}, owner {owner}")


@leads.command("status")
@config_option
@json_option
@click.argument("lead_id", type=int)
@click.argument("status", type=click.Choice([LeadStatus.CONVERTED, LeadStatus.REFUSED]))
@click.option("--reason", help="Refusal reason code (see [[refuse_reasons]]).")
@click.option("--by", help="Who (default: $HUB_ACTOR or the login name).")
def leads_status(config_path: str, as_json: bool, lead_id: int, status: str, reason: str | None,
                 by: str | None) -> None:
    """Close a lead: converted, or refused with a reason. Nothing is deleted."""
    from hub.pipeline.routing import set_status

    _lead_command(config_path, as_json, lambda s, c, now: set_status(s, c, lead_id, status, reason, _actor(by), now),
                  "lead {id}: {status} {refuse_reason}")


@leads.command("attempt")
@config_option
@json_option
@click.argument("lead_id", type=int)
@click.option("--by", help="Who tried (default: $HUB_ACTOR or the login name).")
def leads_attempt(config_path: str, as_json: bool, lead_id: int, by: str | None) -> None:
    """Count one contact attempt (some refusal reasons need several)."""
    from hub.pipeline.routing import count_attempt

    _lead_command(config_path, as_json, lambda s, c, now: count_attempt(s, lead_id, _actor(by), now),
                  "lead {id}: {contact_attempts} contact attempt(s)")


@leads.command("reassign")
@config_option
@json_option
@click.argument("lead_id", type=int)
@click.option("--to", "to", required=True, help="The new owner.")
@click.option("--why", default="reassigned by hand", show_default=True)
@click.option("--by", help="Who (default: $HUB_ACTOR or the login name).")
def leads_reassign(config_path: str, as_json: bool, lead_id: int, to: str, why: str, by: str | None) -> None:
    """Hand a lead to another manager (logged as a handover)."""
    from hub.pipeline.routing import reassign

    _lead_command(config_path, as_json, lambda s, c, now: reassign(s, c, lead_id, to, why, _actor(by), now),
                  "lead {id}: owner {owner}")


HANDOVER_KINDS = ("assigned", "reassigned", "escalated", "taken")


@leads.command("handovers")
@config_option
@json_option
@click.option("--lead", "lead_id", type=int, help="Only this lead.")
@click.option("--limit", type=int, default=100, show_default=True)
def leads_handovers(config_path: str, as_json: bool, lead_id: int | None, limit: int) -> None:
    """The handover log: every assignment, reassignment, escalation and take, newest first."""
    from hub.store.models import LeadHistory

    hub = _open_hub(config_path)
    query = select(LeadHistory).where(LeadHistory.kind.in_(HANDOVER_KINDS)).order_by(LeadHistory.id.desc())
    if lead_id:
        query = query.where(LeadHistory.lead_id == lead_id)
    with transaction(hub.engine, read_only=True) as session:
        rows = [{"lead_id": h.lead_id, "at": h.at.isoformat(), "kind": h.kind, "from": h.data.get("from"),
                 "to": h.data.get("to"), "why": h.data.get("why"), "by": h.actor}
                for h in session.scalars(query.limit(limit))]
    if as_json:
        _print_json(rows)
        return
    _print_table(rows, [("LEAD", lambda r: r["lead_id"]), ("AT", lambda r: r["at"][:19]),
                        ("KIND", lambda r: r["kind"]), ("FROM", lambda r: r["from"]), ("TO", lambda r: r["to"]),
                        ("BY", lambda r: r["by"]), ("WHY", lambda r: r["why"])])


# -- managers ------------------------------------------------------------------------------------------

@main.group()
def managers() -> None:
    """Managers: who is available now, on/off duty, vacations."""


@managers.command("list")
@config_option
@json_option
def managers_list(config_path: str, as_json: bool) -> None:
    """Every manager with their team, state, open leads and whether they can take a lead right now."""
    from hub.desk.queries import managers_overview

    hub = _open_hub(config_path)
    with transaction(hub.engine, read_only=True) as session:
        rows = managers_overview(session, hub.config)
    if as_json:
        _print_json(rows)
        return
    _print_table(rows, [("NAME", lambda r: r["name"]), ("TEAM", lambda r: r["team"]),
                        ("WEIGHT", lambda r: r["weight"]), ("OPEN", lambda r: r["open_leads"]),
                        ("AVAILABLE", lambda r: "yes" if r["available"] else f"no: {r['unavailable_because']}")])


def _manager_command(config_path: str, name: str, by: str | None, **change) -> None:
    from hub.pipeline.routing import RoutingError, set_manager_state

    hub = _open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            state = set_manager_state(session, hub.config, name, _actor(by), utcnow(), **change)
            on_duty, vacation = state.on_duty, state.vacation_until
    except RoutingError as exc:
        _fail(str(exc))
    click.echo(f"{name}: {'on' if on_duty else 'off'} duty"
               + (f", on vacation until {vacation:%Y-%m-%d %H:%M} UTC" if vacation else ""))


@managers.command("set-duty")
@config_option
@click.argument("name")
@click.argument("duty", type=click.Choice(["on", "off"]))
@click.option("--by")
def managers_set_duty(config_path: str, name: str, duty: str, by: str | None) -> None:
    """Put a manager on or off duty: off duty, they receive no new leads."""
    _manager_command(config_path, name, by, on_duty=duty == "on")


@managers.command("set-vacation")
@config_option
@click.argument("name")
@click.option("--until", "until", type=click.DateTime(["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
              help="Back on this date (UTC).")
@click.option("--clear", is_flag=True, help="Back now.")
@click.option("--by")
def managers_set_vacation(config_path: str, name: str, until, clear: bool, by: str | None) -> None:
    """Send a manager on vacation (no new leads until the date), or bring them back."""
    from datetime import timezone

    if (until is None) == (not clear):
        _fail("give --until DATE or --clear", code=2)
    _manager_command(config_path, name, by, vacation_until=until.replace(tzinfo=timezone.utc) if until else None,
                     clear_vacation=clear)


@main.command()
@config_option
@json_option
@click.argument("source_names", nargs=-1)
def poll(config_path: str, as_json: bool, source_names: tuple[str, ...]) -> None:
    """Poll polling sources (IMAP inboxes, …) now: all of them, or those named."""
    from hub.intake.polling import poll_source, polling_sources

    hub = _open_hub(config_path)
    sources = polling_sources(hub)
    if source_names:
        unknown = set(source_names) - {s.name for s in sources}
        if unknown:
            _fail(f"not polling sources: {', '.join(sorted(unknown))} "
                  f"(polling sources: {', '.join(s.name for s in sources) or 'none'})")
        sources = [s for s in sources if s.name in source_names]
    reports = [poll_source(hub, s) for s in sources]
    if as_json:
        _print_json([r.__dict__ for r in reports])
    else:
        for r in reports:
            click.echo(f"{r.source}: " + (f"failed: {r.error}" if r.error else f"{r.fetched} fetched, {r.stored} new"))
    if any(r.error for r in reports):
        sys.exit(1)


@main.command("reconcile")
@config_option
@json_option
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), required=True, help="The day (YYYY-MM-DD).")
@click.option("--source")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="Whose midnight starts the day.")
def reconcile_command(config_path: str, as_json: bool, day, source: str | None, tz: str) -> None:
    """Prove a day's books: events received = leads created + touches merged + rejected + dead + pending,
    and each processed event has exactly its touch. Exit 1, with the event ids, if anything does not add up."""
    from hub.desk.reconcile import reconcile

    hub = _open_hub(config_path)
    with transaction(hub.engine, read_only=True) as session:
        report = reconcile(session, day.date(), tz, source)
    if as_json:
        _print_json(report)
    else:
        rows = [{"source": name, **s} for name, s in report["sources"].items()]
        _print_table(rows, [("SOURCE", lambda r: r["source"]), ("RECEIVED", lambda r: r["received"]),
                            ("NEW LEADS", lambda r: r["created"]), ("TOUCHES", lambda r: r["merged"]),
                            ("REJECTED", lambda r: r["rejected"]), ("DEAD", lambda r: r["dead"]),
                            ("PENDING", lambda r: r["pending"]), ("BALANCED", lambda r: "yes" if r["ok"] else "NO")])
        for r in rows:
            for reason, n in r["rejected_by_reason"].items():
                click.echo(f"  {r['source']}: {n} rejected: {reason}")
            for e in r["errors"]:
                click.echo(f"error: {r['source']}: event {e['event_id']}: {e['error']}", err=True)
        if not rows:
            click.echo(f"no events received on {report['date']}")
    if not report["ok"]:
        sys.exit(1)


# -- mapping -------------------------------------------------------------------------------------------

@main.group()
def mapping() -> None:
    """Field maps: try one on a payload."""


@mapping.command("test")
@config_option
@json_option
@click.argument("source_name")
@click.argument("payload_file", type=click.Path(exists=True, dir_okay=False))
@click.option("--content-type", help="Default: JSON if the file parses as JSON, else a urlencoded form.")
@click.option("--path", "subpath", default="", help="For providers with several URLs, e.g. events/summary.")
def mapping_test(config_path: str, as_json: bool, source_name: str, payload_file: str, content_type: str | None,
                 subpath: str) -> None:
    """Show the lead a provider's payload would become, without storing anything or checking signatures."""
    from pathlib import Path

    from hub.intake.dryrun import try_payload
    from hub.errors import PayloadError

    hub = Hub(_load(config_path))
    source = hub.sources.get(source_name)
    if source is None:
        _fail(f"no source named {source_name!r} (configured: {', '.join(hub.sources) or 'none'})")
    try:
        result = try_payload(hub, source, Path(payload_file).read_bytes().rstrip(b"\n"), content_type, subpath)
    except ValueError as exc:
        _fail(str(exc))
    except PayloadError as exc:
        _fail(f"the connector refuses this payload ({exc.status}): {exc}")
    results, reply = result["events"], result["reply"]
    if as_json:
        _print_json({"events": results, "reply": reply})
        return
    if not results:
        click.echo(f"no lead: the connector answers {reply!r} and stores nothing")
    for r in results:
        click.echo(f"event {r['external_id'] or '(content hash)'}:")
        if "rejected" in r:
            click.echo(f"  rejected: {r['rejected']}")
            continue
        for key, value in r["draft"].items():
            if value not in (None, [], {}, ""):
                click.echo(f"  {key:>14}: {value}")
        for c in r["contacts"]:
            click.echo(f"  {c['kind']:>14}: {c['raw']!r} -> {c['value'] or 'INVALID: ' + c.get('problem', '')}")
        click.echo(f"  {'warmth':>14}: {r['warmth']} ({r['warmth_rule']})")


# -- import --------------------------------------------------------------------------------------------

@main.command("import")
@config_option
@json_option
@click.argument("csv_path", type=click.Path(exists=True, dir_okay=False))
@click.option("--source", "source_name", default="import", show_default=True,
              help="Source name the imported leads carry (e.g. old_crm).")
@click.option("--mapping", "mapping_name", default="csv_import", show_default=True)
@click.option("--map", "column_map", multiple=True, metavar='FIELD="Column"',
              help="Which column is which field, e.g. --map phone=\"Моб. телефон\" (repeatable).")
@click.option("--encoding", default="utf-8-sig", show_default=True, help="cp1251 for old Excel exports.")
@click.option("--delimiter", help="Default: detected.")
@click.option("--timezone", default="UTC", show_default=True, help="Of dates written without an offset.")
@click.option("--tag", "tags", multiple=True, help="Tag every imported lead (repeatable).")
@click.option("--dry-run", is_flag=True, help="Do everything, then roll it back: see what would happen.")
@click.option("--rejected-csv", type=click.Path(dir_okay=False), help="Write rejected rows and reasons here.")
def import_csv(config_path: str, as_json: bool, csv_path: str, source_name: str, mapping_name: str,
               column_map: tuple[str, ...], encoding: str, delimiter: str | None, timezone: str,
               tags: tuple[str, ...], dry_run: bool, rejected_csv: str | None) -> None:
    """Import historical leads from a CSV file through the same identity rules as live deliveries."""
    import csv as csv_module

    from hub.config import SOURCE_NAME
    from hub.errors import PayloadError
    from hub.intake.importer import check_header, import_source, run_import

    if not SOURCE_NAME.match(source_name):
        _fail(f"--source {source_name!r}: use a-z, 0-9, '_' or '-'", code=2)
    columns = {}
    for item in column_map:
        field_name, sep, column = item.partition("=")
        if not sep or not column:
            _fail(f"--map {item!r}: write it as field=Column, e.g. phone=\"Телефон\"", code=2)
        columns[field_name.strip()] = column
    hub = _open_hub(config_path)
    try:
        source = import_source(hub, source_name, csv_path, mapping_name, columns, encoding, delimiter, timezone,
                               list(tags))
        check_header(source)
        total = source.connector.count_rows()
    except (ConfigError, PayloadError) as exc:
        _fail(str(exc))
    show_progress = not as_json and sys.stderr.isatty()
    with click.progressbar(length=total, label=f"importing {total} rows", file=sys.stderr,
                           hidden=not show_progress) as bar:
        report = run_import(hub, source, dry_run=dry_run, progress=bar.update)
    if rejected_csv:
        with open(rejected_csv, "w", newline="", encoding="utf-8-sig") as f:
            writer = csv_module.writer(f)
            writer.writerow(["row", "reason"])
            writer.writerows([r["row"], r["reason"]] for r in report.rejected)
    if as_json:
        _print_json(report.as_dict())
        return
    prefix = "dry run, nothing saved: would import" if dry_run else "imported"
    click.echo(f"{prefix} {report.rows} row(s): {report.created} new lead(s), {report.merged} touch(es) on known "
               f"persons, {report.already_imported} already imported, {len(report.rejected)} rejected")
    for r in report.rejected[:20]:
        click.echo(f"  row {r['row']}: {r['reason']}", err=True)
    if len(report.rejected) > 20:
        click.echo(f"  … and {len(report.rejected) - 20} more (--rejected-csv FILE lists them all)", err=True)


# -- persons -------------------------------------------------------------------------------------------

@main.group()
def persons() -> None:
    """Persons: show, possible duplicates, merge and unmerge (audited)."""


def _person_to_dict(session, person: Person) -> dict[str, Any]:
    leads_of = session.scalars(select(Lead).where(Lead.person_id == person.id).order_by(Lead.id)).all()
    return {"id": person.id, "name": person.name, "merged_into_id": person.merged_into_id,
            "keys": [f"{k.kind}:{k.value}" for k in person.keys],
            "leads": [{"id": lead.id, "status": lead.status, "merged_into_id": lead.merged_into_id}
                      for lead in leads_of]}


@persons.command("show")
@config_option
@json_option
@click.argument("ref")
def persons_show(config_path: str, as_json: bool, ref: str) -> None:
    """A person by id, phone (any spelling) or e-mail."""
    from hub.pipeline.persons import find_person

    hub = _open_hub(config_path)
    with transaction(hub.engine, read_only=True) as session:
        person = find_person(session, ref, hub.config.default_region)
        if person is None:
            _fail(f"no person matches {ref!r}")
        data = _person_to_dict(session, person)
    if as_json:
        _print_json(data)
        return
    click.echo(f"person {data['id']}: {data['name'] or '(no name)'}"
               + (f" (merged into {data['merged_into_id']})" if data["merged_into_id"] else ""))
    click.echo(f"  keys: {', '.join(data['keys']) or '(none)'}")
    for lead in data["leads"]:
        click.echo(f"  lead {lead['id']}: {lead['status']}"
                   + (f", merged into lead {lead['merged_into_id']}" if lead["merged_into_id"] else ""))


@persons.command("export")
@config_option
@click.argument("ref")
def persons_export(config_path: str, ref: str) -> None:
    """Everything held about a person (id, phone or e-mail), as JSON: for a data subject's request."""
    from hub.pipeline.persons import export_person, find_person

    hub = _open_hub(config_path)
    with transaction(hub.engine, read_only=True) as session:
        person = find_person(session, ref, hub.config.default_region)
        if person is None:
            _fail(f"no person matches {ref!r}")
        _print_json(export_person(session, person))


@persons.command("forget")
@config_option
@json_option
@click.argument("ref")
@click.option("--by", help="Who (default: $HUB_ACTOR or the login name).")
@click.option("--yes", is_flag=True, help="Do not ask for confirmation.")
def persons_forget(config_path: str, as_json: bool, ref: str, by: str | None, yes: bool) -> None:
    """Erase a person's personal data (name, phones, e-mails, messages, raw payloads, notification texts);
    statuses, sources and UTM marks stay so reports still add up. Cannot be undone."""
    from hub.pipeline.persons import find_person, forget_person

    hub = _open_hub(config_path)
    with transaction(hub.engine) as session:
        person = find_person(session, ref, hub.config.default_region)
        if person is None:
            _fail(f"no person matches {ref!r}")
        if not yes and not click.confirm(f"Erase person {person.id}'s personal data for good?", err=True):
            _fail("nothing erased", code=1)
        person_id, counts = person.id, forget_person(session, person, _actor(by))
    if as_json:
        _print_json({"person_id": person_id, "erased": counts})
    else:
        click.echo(f"person {person_id} forgotten: {counts['keys']} key(s), {counts['leads']} lead(s), "
                   f"{counts['touches']} touch(es), {counts['raw_events']} raw event(s) erased")


@persons.command("duplicates")
@config_option
@json_option
@click.option("--all", "show_all", is_flag=True, help="Include those resolved by a merge.")
def persons_duplicates(config_path: str, as_json: bool, show_all: bool) -> None:
    """Persons that one delivery's keys pointed to at once: candidates for `hub persons merge`."""
    from hub.store.models import PossibleDuplicate

    hub = _open_hub(config_path)
    query = select(PossibleDuplicate).order_by(PossibleDuplicate.id)
    if not show_all:
        query = query.where(PossibleDuplicate.resolved_by_merge_id.is_(None))
    with transaction(hub.engine, read_only=True) as session:
        rows = [{"id": d.id, "person_id": d.person_id, "other_person_id": d.other_person_id, "keys": d.keys,
                 "event_id": d.event_id, "created_at": d.created_at.isoformat(),
                 "resolved_by_merge_id": d.resolved_by_merge_id} for d in session.scalars(query)]
    if as_json:
        _print_json(rows)
        return
    _print_table(rows, [("ID", lambda r: r["id"]), ("PERSON", lambda r: r["person_id"]),
                        ("OTHER", lambda r: r["other_person_id"]), ("SHARED KEYS", lambda r: ", ".join(r["keys"])),
                        ("EVENT", lambda r: r["event_id"]), ("MERGE", lambda r: r["resolved_by_merge_id"])])


def _actor(by: str | None) -> str:
    import getpass

    return by or os.environ.get("HUB_ACTOR") or getpass.getuser()


@persons.command("merge")
@config_option
@json_option
@click.argument("kept_id", type=int)
@click.argument("merged_id", type=int)
@click.option("--by", help="Who merges (default: $HUB_ACTOR or the login name).")
@click.option("--reason")
def persons_merge(config_path: str, as_json: bool, kept_id: int, merged_id: int, by: str | None,
                  reason: str | None) -> None:
    """Merge person MERGED_ID into KEPT_ID: keys, leads and touches move; undo with `unmerge`."""
    from hub.pipeline.persons import MergeError, merge_persons

    hub = _open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            merge = merge_persons(session, kept_id, merged_id, _actor(by), reason)
            result = {"merge_id": merge.id, "kept_person_id": kept_id, "merged_person_id": merged_id,
                      "moved": merge.moved}
    except MergeError as exc:
        _fail(str(exc))
    if as_json:
        _print_json(result)
    else:
        m = result["moved"]
        click.echo(f"merge {result['merge_id']}: person {merged_id} into {kept_id} ({len(m['keys'])} key(s), "
                   f"{len(m['leads'])} lead(s), {len(m['touches'])} touch(es) moved); "
                   f"undo: hub persons unmerge {result['merge_id']}")


@persons.command("unmerge")
@config_option
@json_option
@click.argument("merge_id", type=int)
@click.option("--by", help="Who undoes it (default: $HUB_ACTOR or the login name).")
def persons_unmerge(config_path: str, as_json: bool, merge_id: int, by: str | None) -> None:
    """Undo a merge exactly as it was recorded."""
    from hub.pipeline.persons import MergeError, unmerge_persons

    hub = _open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            merge = unmerge_persons(session, merge_id, _actor(by))
            result = {"merge_id": merge.id, "kept_person_id": merge.kept_person_id,
                      "restored_person_id": merge.merged_person_id}
    except MergeError as exc:
        _fail(str(exc))
    if as_json:
        _print_json(result)
    else:
        click.echo(f"merge {merge_id} undone: person {result['restored_person_id']} is separate again")


# -- events --------------------------------------------------------------------------------------------

@main.group()
def events() -> None:
    """Raw inbound events: what each provider sent, and what became of it."""


@events.command("list")
@config_option
@json_option
@click.option("--status", type=click.Choice(EventStatus.ALL))
@click.option("--source")
@click.option("--limit", type=int, default=50, show_default=True)
def events_list(config_path: str, as_json: bool, status: str | None, source: str | None, limit: int) -> None:
    """Newest events first."""
    hub = _open_hub(config_path)
    query = select(InboundEvent).order_by(InboundEvent.id.desc()).limit(limit)
    if status:
        query = query.where(InboundEvent.status == status)
    if source:
        query = query.where(InboundEvent.source == source)
    with transaction(hub.engine, read_only=True) as session:
        rows = [event_to_dict(e) for e in session.scalars(query)]
    if as_json:
        _print_json(rows)
        return
    _print_table(rows, [("ID", lambda r: r["id"]), ("SOURCE", lambda r: r["source"]),
                        ("STATUS", lambda r: r["status"]), ("TRIES", lambda r: r["attempts"]),
                        ("LEAD", lambda r: r["lead_id"]), ("RECEIVED", lambda r: r["received_at"]),
                        ("NOTE", lambda r: (r["reject_reason"] or (r["last_error"] or "").split("\n")[0])[:80])])


@events.command("show")
@config_option
@json_option
@click.argument("event_id", type=int)
def events_show(config_path: str, as_json: bool, event_id: int) -> None:
    """One event with its raw body and headers."""
    hub = _open_hub(config_path)
    with transaction(hub.engine, read_only=True) as session:
        event = session.get(InboundEvent, event_id)
        if event is None:
            _fail(f"no event {event_id}")
        data = event_to_dict(event, with_body=True)
    if as_json:
        _print_json(data)
        return
    for key, value in data.items():
        if key not in ("body", "payload", "headers", "last_error") and value is not None:
            click.echo(f"{key:>16}: {value}")
    if data["last_error"]:
        click.echo(f"{'last_error':>16}:\n{data['last_error']}")
    click.echo(f"{'headers':>16}: {json.dumps(data['headers'], ensure_ascii=False)}")
    if data["payload"] is not None:     # parsed: readable even when the sender escaped its Cyrillic (\u0418…)
        click.echo(f"{'payload':>16}: {json.dumps(data['payload'], ensure_ascii=False)}")
    click.echo(f"{'body':>16}:\n{data['body']}")


@events.command("replay")
@config_option
@json_option
@click.argument("event_ids", type=int, nargs=-1)
@click.option("--dead", "all_dead", is_flag=True, help="Replay every dead event (of --source, if given).")
@click.option("--source")
def events_replay(config_path: str, as_json: bool, event_ids: tuple[int, ...], all_dead: bool,
                  source: str | None) -> None:
    """Queue dead or rejected events again (after fixing what failed them). The stored raw payload is
    mapped again with the current mapping."""
    if not event_ids and not all_dead:
        _fail("name event ids, or --dead for all dead events", code=2)
    from hub.intake.replay import replay_events

    hub = _open_hub(config_path)
    with transaction(hub.engine) as session:
        replayed, refused = replay_events(session, list(event_ids), all_dead, source)
    if as_json:
        _print_json({"replayed": replayed, "refused": refused})
    else:
        click.echo(f"replayed {len(replayed)} event(s)" + (f": {', '.join(map(str, replayed))}" if replayed else ""))
        for r in refused:
            click.echo(f"not replayed {r['id']}: {r['reason']}", err=True)
    if refused and not replayed:
        sys.exit(1)



# -- sinks and export ----------------------------------------------------------------------------------

@main.group()
def sinks() -> None:
    """Forwarding to Bitrix24, amoCRM and webhooks: what is sent, waiting, dead."""


@sinks.command("status")
@config_option
@json_option
def sinks_status(config_path: str, as_json: bool) -> None:
    """Deliveries per sink and state; dead ones with their last error."""
    from hub.outbox.forwarding import sink_status
    from hub.store.models import DeliveryStatus, SinkDelivery

    hub = _open_hub(config_path)
    with transaction(hub.engine, read_only=True) as session:
        rows = sink_status(session)
        dead = [{"id": d.id, "sink": d.sink, "lead_id": d.lead_id, "attempts": d.attempts,
                 "last_error": d.last_error}
                for d in session.scalars(select(SinkDelivery).where(SinkDelivery.status == DeliveryStatus.DEAD)
                                         .order_by(SinkDelivery.id).limit(100))]
    configured = {s.name for s in hub.config.sinks}
    rows += [{"sink": name, **{s: 0 for s in DeliveryStatus.ALL}} for name in sorted(configured - {r["sink"] for r in rows})]
    if as_json:
        _print_json({"sinks": rows, "dead": dead})
        return
    _print_table(rows, [("SINK", lambda r: r["sink"]), ("SENT", lambda r: r["sent"]),
                        ("PENDING", lambda r: r["pending"] + r["sending"]), ("DEAD", lambda r: r["dead"])])
    for d in dead:
        click.echo(f"dead {d['id']}: {d['sink']} lead {d['lead_id']} after {d['attempts']} attempts: {d['last_error']}")


@sinks.command("replay")
@config_option
@click.argument("delivery_ids", type=int, nargs=-1)
@click.option("--sink", help="Only this sink's dead deliveries.")
def sinks_replay(config_path: str, delivery_ids: tuple[int, ...], sink: str | None) -> None:
    """Queue dead deliveries again (after fixing what killed them): all, a sink's, or the ids named."""
    from hub.outbox.forwarding import replay_dead

    hub = _open_hub(config_path)
    with transaction(hub.engine) as session:
        count = replay_dead(session, sink, list(delivery_ids) or None)
    click.echo(f"replayed {count} delivery(ies)")


@leads.command("export")
@config_option
@click.option("--format", "fmt", type=click.Choice(["csv", "xlsx"]), default="csv", show_default=True)
@click.option("--output", "-o", type=click.Path(dir_okay=False), required=True, help="File to write.")
@click.option("--status", type=click.Choice(LeadStatus.ALL))
@click.option("--source")
@click.option("--owner")
@click.option("--since", type=click.DateTime(["%Y-%m-%d"]), help="Created on or after (UTC day).")
@click.option("--until", type=click.DateTime(["%Y-%m-%d"]), help="Created on or before (UTC day).")
def leads_export(config_path: str, fmt: str, output: str, status: str | None, source: str | None,
                 owner: str | None, since, until) -> None:
    """Every matching lead with contacts, source, UTM of the first touch, owner and status, for an admin
    (contact details: keep the file safe). Written in batches, so a large store fits in memory."""
    from hub.desk.export import export_leads
    from hub.desk.queries import LeadFilter

    hub = _open_hub(config_path)
    f = LeadFilter(status=status, source=source, owner=owner, date_from=since.date() if since else None,
                   date_to=until.date() if until else None)
    count = export_leads(hub, f, fmt, output, progress=lambda n: click.echo(f"\r{n} leads", nl=False, err=True)
                         if sys.stderr.isatty() else None)
    click.echo(f"wrote {count} lead(s) to {output}")


# -- users and API tokens ------------------------------------------------------------------------------

@main.group()
def users() -> None:
    """People who sign in to the web app, their roles, and their API tokens."""


def _password(given: str | None) -> str:
    """From --password-env's variable, else asked twice on the terminal (never on the command line)."""
    if given is not None:
        value = os.environ.get(given)
        if not value:
            _fail(f"${given} is empty or unset", code=2)
        return value
    return click.prompt("Password", hide_input=True, confirmation_prompt=True)


def _user_command(config_path: str, action, as_json: bool = False) -> None:
    from hub.desk.access import UserError

    hub = _open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            user = action(session, hub.config)
            data = {"login": user.login, "role": user.role, "manager": user.manager, "disabled": user.disabled}
    except UserError as exc:
        _fail(str(exc))
    if as_json:
        _print_json(data)
    else:
        click.echo(f"{data['login']}: {data['role']}" + (f" ({data['manager']})" if data["manager"] else "")
                   + (", disabled" if data["disabled"] else ""))


ROLE_CHOICE = click.Choice(["admin", "marketer", "manager", "lead", "telephony"])
password_env_option = click.option("--password-env", metavar="VAR",
                                   help="Read the password from this environment variable (for scripts).")


@users.command("add")
@config_option
@json_option
@click.argument("login")
@click.option("--role", type=ROLE_CHOICE, required=True,
              help="admin: everything; marketer: sources, mappings, reports; manager: own leads; lead: a team "
                   "lead, their teams' leads; telephony: a PBX's caller lookup (give it a token).")
@click.option("--manager", help="For managers and team leads: their [[managers]] name (default: the manager "
                                "whose email is LOGIN).")
@click.option("--language", type=click.Choice(["en", "ru"]),
              help="Pages and notifications in this language (default: the browser's; users can change it).")
@password_env_option
def users_add(config_path: str, as_json: bool, login: str, role: str, manager: str | None, language: str | None,
              password_env: str | None) -> None:
    """Add a user who signs in with LOGIN (an e-mail or a name) and a password."""
    from hub.desk.access import add_user

    password = _password(password_env)
    _user_command(config_path, lambda s, c: add_user(s, c, login, password, role, manager, language), as_json)


@users.command("passwd")
@config_option
@click.argument("login")
@password_env_option
def users_passwd(config_path: str, login: str, password_env: str | None) -> None:
    """Set a user's password (signs out their open sessions)."""
    from hub.desk.access import set_password

    password = _password(password_env)
    _user_command(config_path, lambda s, c: set_password(s, login, password))


@users.command("role")
@config_option
@click.argument("login")
@click.argument("role", type=ROLE_CHOICE)
@click.option("--manager", help="For managers and team leads: their [[managers]] name.")
def users_role(config_path: str, login: str, role: str, manager: str | None) -> None:
    """Change a user's role (signs out their open sessions)."""
    from hub.desk.access import set_role

    _user_command(config_path, lambda s, c: set_role(s, c, login, role, manager))


@users.command("disable")
@config_option
@click.argument("login")
@click.option("--enable", is_flag=True, help="Enable again instead.")
def users_disable(config_path: str, login: str, enable: bool) -> None:
    """Stop a user signing in; their sessions end and their API tokens are revoked. Nothing is deleted."""
    from hub.desk.access import set_disabled

    _user_command(config_path, lambda s, c: set_disabled(s, login, not enable))


@users.command("list")
@config_option
@json_option
def users_list(config_path: str, as_json: bool) -> None:
    """Every user with role, manager link and last sign-in."""
    from hub.store.models import User

    hub = _open_hub(config_path)
    with transaction(hub.engine, read_only=True) as session:
        rows = [{"login": u.login, "role": u.role, "manager": u.manager, "disabled": u.disabled,
                 "last_login_at": u.last_login_at.isoformat() if u.last_login_at else None}
                for u in session.scalars(select(User).order_by(User.login))]
    if as_json:
        _print_json(rows)
        return
    _print_table(rows, [("LOGIN", lambda r: r["login"]), ("ROLE", lambda r: r["role"]),
                        ("MANAGER", lambda r: r["manager"]), ("DISABLED", lambda r: "yes" if r["disabled"] else ""),
                        ("LAST SIGN-IN", lambda r: (r["last_login_at"] or "never")[:19])])


@users.group("token")
def users_token() -> None:
    """API tokens for /api/v1: each acts as its user, with the user's role."""


@users_token.command("add")
@config_option
@json_option
@click.argument("login")
@click.option("--name", default="api", show_default=True, help="What the token is for (shown in listings).")
def token_add(config_path: str, as_json: bool, login: str, name: str) -> None:
    """Make a token; it is printed once and only its hash is kept."""
    from hub.desk.access import UserError, add_token

    hub = _open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            token, plain = add_token(session, login, name[:128])
            token_id = token.id
    except UserError as exc:
        _fail(str(exc))
    if as_json:
        _print_json({"id": token_id, "token": plain})
    else:
        click.echo(f"token {token_id} for {login} (shown once; keep it secret):\n{plain}")


@users_token.command("list")
@config_option
@json_option
def token_list(config_path: str, as_json: bool) -> None:
    """Every token: its user, name, prefix, last use, and whether it is revoked."""
    from hub.store.models import ApiToken, User

    hub = _open_hub(config_path)
    with transaction(hub.engine, read_only=True) as session:
        rows = [{"id": t.id, "login": u.login, "name": t.name, "prefix": t.prefix,
                 "created_at": t.created_at.isoformat(),
                 "last_used_at": t.last_used_at.isoformat() if t.last_used_at else None,
                 "revoked": t.revoked_at is not None}
                for t, u in session.execute(select(ApiToken, User).join(User, User.id == ApiToken.user_id)
                                            .order_by(ApiToken.id))]
    if as_json:
        _print_json(rows)
        return
    _print_table(rows, [("ID", lambda r: r["id"]), ("LOGIN", lambda r: r["login"]), ("NAME", lambda r: r["name"]),
                        ("PREFIX", lambda r: r["prefix"] + "…"), ("LAST USED", lambda r: (r["last_used_at"] or
                                                                                          "never")[:19]),
                        ("REVOKED", lambda r: "yes" if r["revoked"] else "")])


@users_token.command("revoke")
@config_option
@click.argument("token_id", type=int)
def token_revoke(config_path: str, token_id: int) -> None:
    """Revoke a token at once."""
    from hub.desk.access import UserError, revoke_token

    hub = _open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            revoke_token(session, token_id)
    except UserError as exc:
        _fail(str(exc))
    click.echo(f"token {token_id} revoked")

if __name__ == "__main__":
    main()
