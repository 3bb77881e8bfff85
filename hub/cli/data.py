"""The config and the store as a whole: `hub check` (the config), `hub db upgrade` (the schema),
`hub import` (historical leads from CSV), `hub reconcile` (a day's books) and `hub mapping test` (a field
map tried on a payload, nothing stored)."""

from __future__ import annotations

import sys
from datetime import datetime

import click

from hub.cli.common import config_option, fail, json_option, load, open_hub, print_json, print_table, read
from hub.config import load_config
from hub.connector import FileConnector
from hub.errors import ConfigError
from hub.runtime import Hub
from hub.store import schema as store


@click.command()
@config_option
@json_option
def check(config_path: str, as_json: bool) -> None:
    """Validate the config; print every problem with its path."""
    try:
        config = load_config(config_path)
    except ConfigError as exc:
        if as_json:
            print_json({"ok": False, "problems": exc.problems})
        else:
            for problem in exc.problems:
                click.echo(f"error: {problem}", err=True)
            click.echo(f"{len(exc.problems)} problem(s) in {config_path}", err=True)
        sys.exit(1)
    sources = [{"name": s.name, "connector": s.connector, "enabled": s.enabled} for s in config.sources]
    if as_json:
        print_json({"ok": True, "sources": sources})
    else:
        click.echo(f"{config_path}: OK, {len(sources)} source(s): "
                   + (", ".join(f"{s['name']} ({s['connector']})" for s in sources) or "none"))


@click.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: str) -> None:
    """Apply pending migrations (run once per deployment before starting PostgreSQL processes)."""
    hub = Hub(load(config_path))
    before = store.current_revision(hub.engine)
    store.upgrade(hub.engine)
    after = store.current_revision(hub.engine)
    click.echo(f"schema {before or 'empty'} -> {after}" if before != after else f"schema already at {after}")


@click.command("reconcile")
@config_option
@json_option
@click.option("--date", "day", type=click.DateTime(["%Y-%m-%d"]), required=True, help="The day (YYYY-MM-DD).")
@click.option("--source")
@click.option("--timezone", "tz", default="UTC", show_default=True, help="Whose midnight starts the day.")
def reconcile_command(config_path: str, as_json: bool, day: datetime, source: str | None, tz: str) -> None:
    """Prove a day's books: events received = leads created + touches merged + rejected + dead + pending,
    and each processed event has exactly its touch. Exit 1, with the event ids, if anything does not add up."""
    from hub.desk.reconcile import reconcile

    report = read(config_path, lambda s, _: reconcile(s, day.date(), tz, source))
    if as_json:
        print_json(report)
    else:
        rows = [{"source": name, **s} for name, s in report["sources"].items()]
        print_table(rows, [("SOURCE", lambda r: r["source"]), ("RECEIVED", lambda r: r["received"]),
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


@click.group()
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

    from hub.errors import PayloadError
    from hub.intake.dryrun import try_payload

    hub = Hub(load(config_path))
    source = hub.sources.get(source_name)
    if source is None:
        fail(f"no source named {source_name!r} (configured: {', '.join(hub.sources) or 'none'})")
    try:
        result = try_payload(hub, source, Path(payload_file).read_bytes().rstrip(b"\n"), content_type, subpath)
    except ValueError as exc:
        fail(str(exc))
    except PayloadError as exc:
        fail(f"the connector refuses this payload ({exc.status}): {exc}")
    results, reply = result["events"], result["reply"]
    if as_json:
        print_json({"events": results, "reply": reply})
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


@click.command("import")
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
    from hub.config import SOURCE_NAME
    from hub.desk.export import SafeCsvWriter
    from hub.errors import PayloadError
    from hub.intake.importer import check_header, import_source, run_import

    if not SOURCE_NAME.match(source_name):
        fail(f"--source {source_name!r}: use a-z, 0-9, '_' or '-'", code=2)
    columns = {}
    for item in column_map:
        field_name, sep, column = item.partition("=")
        if not sep or not column:
            fail(f"--map {item!r}: write it as field=Column, e.g. phone=\"Телефон\"", code=2)
        columns[field_name.strip()] = column
    hub = open_hub(config_path)
    try:
        source = import_source(hub, source_name, csv_path, mapping_name, columns, encoding, delimiter, timezone,
                               list(tags))
        check_header(source)
        total = source.connector_as(FileConnector).count_rows()
    except (ConfigError, PayloadError) as exc:
        fail(str(exc))
    show_progress = not as_json and sys.stderr.isatty()
    with click.progressbar(length=total, label=f"importing {total} rows", file=sys.stderr,
                           hidden=not show_progress) as bar:
        report = run_import(hub, source, dry_run=dry_run, progress=bar.update)
    if rejected_csv:
        with open(rejected_csv, "w", newline="", encoding="utf-8-sig") as f:
            writer = SafeCsvWriter(f)       # a reason quotes the rejected value, which may be a formula
            writer.writerow(["row", "reason"])
            for r in report.rejected:
                writer.writerow([r["row"], r["reason"]])
    if as_json:
        print_json(report.as_dict())
        return
    prefix = "dry run, nothing saved: would import" if dry_run else "imported"
    click.echo(f"{prefix} {report.rows} row(s): {report.created} new lead(s), {report.merged} touch(es) on known "
               f"persons, {report.already_imported} already imported, {len(report.rejected)} rejected")
    for r in report.rejected[:20]:
        click.echo(f"  row {r['row']}: {r['reason']}", err=True)
    if len(report.rejected) > 20:
        click.echo(f"  … and {len(report.rejected) - 20} more (--rejected-csv FILE lists them all)", err=True)
