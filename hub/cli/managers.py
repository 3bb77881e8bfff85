"""`hub managers`: who can take a lead now, and their duty and vacation switches."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import click

from hub.cli.common import actor, config_option, fail, json_option, listing, open_hub, print_json
from hub.store.db import transaction
from hub.store.models import utcnow


@click.group()
def managers() -> None:
    """Managers: who is available now, on/off duty, vacations."""


@managers.command("list")
@config_option
@json_option
def managers_list(config_path: str, as_json: bool) -> None:
    """Every manager with their team, state, open leads and whether they can take a lead right now."""
    from hub.desk.reports import managers_overview

    listing(config_path, as_json, lambda s, hub: managers_overview(s, hub.config),
            [("NAME", lambda r: r["name"]), ("TEAM", lambda r: r["team"]), ("WEIGHT", lambda r: r["weight"]),
             ("OPEN", lambda r: r["open_leads"]),
             ("TELEGRAM", lambda r: "linked" if r["telegram_linked"] else "-"),
             ("AVAILABLE", lambda r: "yes" if r["available"] else f"no: {r['unavailable_because']}")])


def _manager_command(config_path: str, name: str, by: str | None, **change: Any) -> None:
    from hub.pipeline.routing.lifecycle import RoutingError, set_manager_state

    hub = open_hub(config_path)
    try:
        with transaction(hub.engine) as session:
            state = set_manager_state(session, hub.config, name, actor(by), utcnow(), **change)
            on_duty, vacation = state.on_duty, state.vacation_until
    except RoutingError as exc:
        fail(str(exc))
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
def managers_set_vacation(config_path: str, name: str, until: datetime | None, clear: bool, by: str | None) -> None:
    """Send a manager on vacation (no new leads until the date), or bring them back."""
    if (until is None) == (not clear):
        fail("give --until DATE or --clear", code=2)
    _manager_command(config_path, name, by, vacation_until=until.replace(tzinfo=UTC) if until else None,
                     clear_vacation=clear)


@managers.command("link-telegram")
@config_option
@click.argument("name")
@json_option
def managers_link_telegram(config_path: str, name: str, as_json: bool) -> None:
    """A one-time code (15 minutes) that links NAME's own Telegram to the notification bot: they send
    /link CODE to the bot, and from then on their leads come to that chat with buttons to work them."""
    from hub.desk.manager_bot import LINK_CODE_MINUTES, create_link_code
    from hub.pipeline.routing.lifecycle import RoutingError
    from hub.telegram_api import bot_username

    hub = open_hub(config_path)
    tg = hub.config.notify.telegram
    if tg is None:
        fail("no [notify.telegram] in the config: set bot_token there first (the bot managers link to)")
    try:
        with transaction(hub.engine) as session:
            code = create_link_code(session, hub.config, name, utcnow())
    except RoutingError as exc:
        fail(str(exc))
    username = bot_username(tg.bot_token, tg.api_url)     # whom to write to; the code works without it
    bot = f"@{username}" if username else "the hub's notification bot"
    instruction = f"send /link {code} to {bot} in Telegram (within {LINK_CODE_MINUTES} minutes; the code works once)"
    if as_json:
        print_json({"manager": name, "code": code, "bot": bot, "expires_in_minutes": LINK_CODE_MINUTES,
                    "instruction": instruction})
    else:
        click.echo(f"{name}: {instruction}")


@managers.command("unlink-telegram")
@config_option
@click.argument("name")
def managers_unlink_telegram(config_path: str, name: str) -> None:
    """Forget NAME's linked Telegram (a lost phone, someone who left): its buttons stop working at once, and
    notifications go to the configured telegram_chat_id again, if any."""
    from hub.desk.manager_bot import unlink

    hub = open_hub(config_path)
    with transaction(hub.engine) as session:
        done = unlink(session, name)
    click.echo(f"{name}: Telegram unlinked" if done else f"{name}: no Telegram was linked")
