"""`hub events`: the raw inbound events, what became of each, and replaying the dead or rejected."""

from __future__ import annotations

import json
import sys

import click

from hub.cli.common import config_option, fail, json_option, listing, open_hub, print_json, record
from hub.store.db import transaction
from hub.store.models import EventStatus


@click.group()
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
    from hub.desk.listings import newest_events

    listing(config_path, as_json, lambda s, _: newest_events(s, status, source, limit),
            [("ID", lambda r: r["id"]), ("SOURCE", lambda r: r["source"]), ("STATUS", lambda r: r["status"]),
             ("TRIES", lambda r: r["attempts"]), ("LEAD", lambda r: r["lead_id"]),
             ("RECEIVED", lambda r: r["received_at"]),
             ("NOTE", lambda r: (r["reject_reason"] or (r["last_error"] or "").split("\n")[0])[:80])])


@events.command("show")
@config_option
@json_option
@click.argument("event_id", type=int)
def events_show(config_path: str, as_json: bool, event_id: int) -> None:
    """One event with its raw body and headers."""
    from hub.desk.listings import event_details

    data = record(config_path, lambda s, _: event_details(s, event_id), f"no event {event_id}")
    if as_json:
        print_json(data)
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
        fail("name event ids, or --dead for all dead events", code=2)
    from hub.intake.replay import replay_events

    hub = open_hub(config_path)
    with transaction(hub.engine) as session:
        replayed, refused = replay_events(session, list(event_ids), all_dead, source)
    if as_json:
        print_json({"replayed": replayed, "refused": refused})
    else:
        click.echo(f"replayed {len(replayed)} event(s)" + (f": {', '.join(map(str, replayed))}" if replayed else ""))
        for r in refused:
            click.echo(f"not replayed {r['id']}: {r['reason']}", err=True)
    if refused and not replayed:
        sys.exit(1)
