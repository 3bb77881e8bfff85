"""`hub sinks`: forwarding to CRMs and webhooks, what is sent, waiting or dead, and replaying the dead."""

from __future__ import annotations

import click

from hub.cli.common import config_option, json_option, open_hub, print_json, print_table, read
from hub.store.db import transaction


@click.group()
def sinks() -> None:
    """Forwarding to Bitrix24, amoCRM and webhooks: what is sent, waiting, dead."""


@sinks.command("status")
@config_option
@json_option
def sinks_status(config_path: str, as_json: bool) -> None:
    """Deliveries per sink and state; dead ones with their last error."""
    from hub.desk.listings import dead_deliveries
    from hub.outbox.forwarding import sink_status
    from hub.store.models import DeliveryStatus

    def overview(session, hub):
        rows = sink_status(session)
        idle = sorted({sink.name for sink in hub.config.sinks} - {r["sink"] for r in rows})
        return rows + [{"sink": name, **{s: 0 for s in DeliveryStatus.ALL}} for name in idle], dead_deliveries(session)

    rows, dead = read(config_path, overview)
    if as_json:
        print_json({"sinks": rows, "dead": dead})
        return
    print_table(rows, [("SINK", lambda r: r["sink"]), ("SENT", lambda r: r["sent"]),
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

    hub = open_hub(config_path)
    with transaction(hub.engine) as session:
        count = replay_dead(session, sink, list(delivery_ids) or None)
    click.echo(f"replayed {count} delivery(ies)")
