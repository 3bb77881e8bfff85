"""`hub leads`: list (search, filter, due first), show and export leads, the handover log, and an operator's
actions on a lead (take, close, count an attempt, reassign, write a note, set tags, set a call-back)."""

from __future__ import annotations

import sys
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

import click
from sqlalchemy.orm import Session

from hub.cli.common import actor, config_option, fail, json_option, listing, open_hub, print_json, record
from hub.config import Config
from hub.store.db import transaction
from hub.store.models import LeadStatus, utcnow

LeadAction = Callable[[Session, Config, datetime], Any]


@click.group()
def leads() -> None:
    """Leads in the store."""


def _utm(row: dict[str, Any]) -> str:
    first_touch = row["first_touch"] or {}
    return "/".join(filter(None, [first_touch.get(k) for k in ("utm_source", "utm_medium", "utm_campaign")]))


@leads.command("list")
@config_option
@json_option
@click.option("--status", type=click.Choice(LeadStatus.ALL))
@click.option("--source")
@click.option("--q", "q", help="A phone in any spelling, or part of a name or an e-mail.")
@click.option("--tag", help="Only leads with this tag (in any case).")
@click.option("--order", type=click.Choice(["newest", "due"]), default="newest", show_default=True,
              help="due: open leads first, by SLA, call-back task, follow-up, then warmth.")
@click.option("--limit", type=click.IntRange(1, 10_000), default=50, show_default=True)
def leads_list(config_path: str, as_json: bool, status: str | None, source: str | None, q: str | None,
               tag: str | None, order: str, limit: int) -> None:
    """Newest leads first (or what is due first)."""
    from hub.desk.listings import newest_leads
    from hub.desk.queries import LeadFilter

    f = LeadFilter(status=status, source=source, q=q, tag=tag)
    listing(config_path, as_json, lambda s, hub: newest_leads(s, hub.config, f, limit, order, with_touches=as_json),
            [("ID", lambda r: r["id"]), ("STATUS", lambda r: r["status"]), ("SOURCE", lambda r: r["source"]),
             ("NAME", lambda r: r["name"]), ("PHONE", lambda r: ", ".join(r["phones"])),
             ("EMAIL", lambda r: ", ".join(r["emails"])), ("UTM", _utm),
             ("CREATED", lambda r: r["created_at"])])


@leads.command("show")
@config_option
@json_option
@click.argument("lead_id", type=int)
def leads_show(config_path: str, as_json: bool, lead_id: int) -> None:
    """One lead with all its touches."""
    from hub.desk.listings import lead_details

    data = record(config_path, lambda s, _: lead_details(s, lead_id), f"no lead {lead_id}")
    if as_json:
        print_json(data)
        return
    for key in ("id", "status", "refuse_reason", "amount", "name", "person_id", "phones", "emails", "messengers",
                "invalid_contacts", "source", "warmth", "owner", "tags", "reopened_count", "follow_up_due_at",
                "created_at"):
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
    for task in data["tasks"]:
        state = f"done {task['done_at']} by {task['done_by']}" if task["done_at"] else \
            "OVERDUE" if task["overdue"] else "open"
        click.echo(f"  task {task['id']} due {task['due_at']} ({state}): {task['text']}")
    for t in data["touches"]:
        marks = " ".join(f"{k}={t[k]}" for k in ("utm_source", "utm_medium", "utm_campaign", "utm_content",
                                                 "utm_term") if t[k])
        click.echo(f"  touch {t['id']} {t['at']} {t['source']} ({t['channel']}) event {t['event_id']} {marks}")


def _lead_command(config_path: str, as_json: bool, lead_id: int, action: LeadAction, message: str) -> None:
    """Run one operator action on a lead in a transaction; print the lead after it."""
    from hub.desk.listings import lead_details
    from hub.pipeline.routing.lifecycle import RoutingError

    hub = open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            action(session, hub.config, utcnow())
    except RoutingError as exc:
        fail(str(exc))
    hub.notification_queued.set()
    with transaction(hub.engine, read_only=True) as session:
        data = lead_details(session, lead_id)
    assert data is not None         # the action has just written it
    if as_json:
        print_json(data)
    else:
        click.echo(message.format(**data))


@leads.command("take")
@config_option
@json_option
@click.argument("lead_id", type=int)
@click.option("--as", "manager", required=True, help="The manager taking it into work.")
def leads_take(config_path: str, as_json: bool, lead_id: int, manager: str) -> None:
    """A manager takes a new lead into work (stops its SLA clock)."""
    from hub.pipeline.routing.lifecycle import take

    _lead_command(config_path, as_json, lead_id, lambda s, c, now: take(s, c, lead_id, manager, now),
                  "lead {id}: {status}, owner {owner}")


AMOUNT_LIMIT = Decimal(10) ** 12            # lead.amount is NUMERIC(14, 2)


def _amount(_ctx: click.Context, _param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        amount = Decimal(value.replace(" ", "").replace(",", "."))
    except InvalidOperation:
        raise click.BadParameter(f"{value!r} is not an amount (e.g. 12500 or 12500.50)") from None
    if not amount.is_finite() or not 0 <= amount < AMOUNT_LIMIT:
        raise click.BadParameter(f"{value!r}: from 0 up to {AMOUNT_LIMIT - Decimal('0.01')}")
    return amount.quantize(Decimal("0.01"))


@leads.command("status")
@config_option
@json_option
@click.argument("lead_id", type=int)
@click.argument("status", type=click.Choice([LeadStatus.CONVERTED, LeadStatus.REFUSED]))
@click.option("--reason", help="Refusal reason code (see [[refuse_reasons]]).")
@click.option("--amount", callback=_amount, help="Converted: the deal's amount, in [web] currency.")
@click.option("--by", help="Who (default: $HUB_ACTOR or the login name).")
def leads_status(config_path: str, as_json: bool, lead_id: int, status: str, reason: str | None,
                 amount: Decimal | None, by: str | None) -> None:
    """Close a lead: converted (with the deal's amount), or refused with a reason. Nothing is deleted."""
    from hub.pipeline.routing.lifecycle import set_status

    _lead_command(config_path, as_json, lead_id,
                  lambda s, c, now: set_status(s, c, lead_id, status, reason, actor(by), now, amount=amount),
                  "lead {id}: {status} {refuse_reason}")


@leads.command("note")
@config_option
@json_option
@click.argument("lead_id", type=int)
@click.argument("text")
@click.option("--by", help="Who (default: $HUB_ACTOR or the login name).")
def leads_note(config_path: str, as_json: bool, lead_id: int, text: str, by: str | None) -> None:
    """Write a note on a lead (kept in its history)."""
    from hub.pipeline.worklog import add_note

    _lead_command(config_path, as_json, lead_id, lambda s, c, now: add_note(s, c, lead_id, text, actor(by), now),
                  "lead {id}: note written")


@leads.command("tag")
@config_option
@json_option
@click.argument("lead_id", type=int)
@click.argument("tags", nargs=-1)
@click.option("--by", help="Who (default: $HUB_ACTOR or the login name).")
def leads_tag(config_path: str, as_json: bool, lead_id: int, tags: tuple[str, ...], by: str | None) -> None:
    """Set a lead's tags: the whole list (a tag left out is taken off; none: no tags)."""
    from hub.pipeline.worklog import set_tags

    _lead_command(config_path, as_json, lead_id,
                  lambda s, c, now: set_tags(s, c, lead_id, list(tags), actor(by), now), "lead {id}: tags {tags}")


@leads.command("task")
@config_option
@json_option
@click.argument("lead_id", type=int)
@click.option("--due", "due", required=True, type=datetime.fromisoformat,
              help="When to call back, ISO with its offset: 2026-12-31T18:00+03:00.")
@click.option("--text", required=True, help="What to do, e.g. \"call back after 18:00\".")
@click.option("--by", help="Who (default: $HUB_ACTOR or the login name).")
def leads_task(config_path: str, as_json: bool, lead_id: int, due: datetime, text: str, by: str | None) -> None:
    """Set a call-back task: the lead's owner is reminded when it is due."""
    from hub.pipeline.worklog import add_task

    if due.tzinfo is None:
        fail(f"--due {due.isoformat()}: give the time with its offset, e.g. {due.isoformat()}+03:00 (or Z for UTC)")
    _lead_command(config_path, as_json, lead_id,
                  lambda s, c, now: add_task(s, c, lead_id, due.astimezone(UTC), text, actor(by), now),
                  "lead {id}: call-back set")


@leads.command("attempt")
@config_option
@json_option
@click.argument("lead_id", type=int)
@click.option("--by", help="Who tried (default: $HUB_ACTOR or the login name).")
def leads_attempt(config_path: str, as_json: bool, lead_id: int, by: str | None) -> None:
    """Count one contact attempt (some refusal reasons need several)."""
    from hub.pipeline.routing.lifecycle import count_attempt

    _lead_command(config_path, as_json, lead_id, lambda s, c, now: count_attempt(s, c, lead_id, actor(by), now),
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
    from hub.pipeline.routing.lifecycle import reassign

    _lead_command(config_path, as_json, lead_id,
                  lambda s, c, now: reassign(s, c, lead_id, to, why, actor(by), now), "lead {id}: owner {owner}")


@leads.command("handovers")
@config_option
@json_option
@click.option("--lead", "lead_id", type=int, help="Only this lead.")
@click.option("--limit", type=int, default=100, show_default=True)
def leads_handovers(config_path: str, as_json: bool, lead_id: int | None, limit: int) -> None:
    """The handover log: every assignment, reassignment, escalation and take, newest first."""
    from hub.desk.listings import handover_log

    listing(config_path, as_json, lambda s, _: handover_log(s, lead_id, limit),
            [("LEAD", lambda r: r["lead_id"]), ("AT", lambda r: r["at"][:19]), ("KIND", lambda r: r["kind"]),
             ("FROM", lambda r: r["from"]), ("TO", lambda r: r["to"]), ("BY", lambda r: r["by"]),
             ("WHY", lambda r: r["why"])])


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
                 owner: str | None, since: datetime | None, until: datetime | None) -> None:
    """Every matching lead with contacts, source, UTM of the first touch, owner and status, for an admin
    (contact details: keep the file safe). Written in batches, so a large store fits in memory."""
    from hub.desk.export import export_leads
    from hub.desk.queries import LeadFilter

    hub = open_hub(config_path)
    f = LeadFilter(status=status, source=source, owner=owner, date_from=since.date() if since else None,
                   date_to=until.date() if until else None)
    count = export_leads(hub, f, fmt, output, progress=lambda n: click.echo(f"\r{n} leads", nl=False, err=True)
                         if sys.stderr.isatty() else None)
    click.echo(f"wrote {count} lead(s) to {output}")
