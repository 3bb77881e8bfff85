"""`hub report managers|funnel|statuses|handovers|activity`: the head of sales' reports from a shell — for a
cron job that mails a CSV, or a quick look on the server. The same functions as the pages and /api/v1, with an
operator's (admin's) scope: every manager."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from typing import Any

import click
from sqlalchemy.orm import Session

from hub.cli.common import config_option, json_option, print_json, print_table, read
from hub.desk.period import Period, lenient_period
from hub.desk.report_activity import activity_report
from hub.desk.report_funnel import funnel_report
from hub.desk.report_managers import managers_report
from hub.desk.report_statuses import handover_log, statuses_report
from hub.runtime import Hub


def _period_options(command: Callable) -> Callable:
    command = click.option("--to", "date_to", type=click.DateTime(["%Y-%m-%d"]),
                           help="The last day, included (YYYY-MM-DD); default: today in [ui] timezone.")(command)
    return click.option("--from", "date_from", type=click.DateTime(["%Y-%m-%d"]),
                        help="The first day (YYYY-MM-DD); default: 29 days before --to.")(command)


def _day(value: datetime | None) -> date | None:
    return value.date() if value else None


def _run(config_path: str, date_from: datetime | None, date_to: datetime | None,
         report: Callable[[Session, Hub, Period], dict[str, Any]], default_days: int = 30) -> dict[str, Any]:
    def query(session: Session, hub: Hub) -> dict[str, Any]:
        period, note = lenient_period(hub.config, _day(date_from), _day(date_to), default_days)
        if note:
            click.echo(f"note: --from/--to: {note}", err=True)
        return report(session, hub, period)
    return read(config_path, query)


def _minutes(speed: dict[str, Any]) -> str:
    """A median (p90) in minutes, as a head of sales reads it."""
    if speed.get("median") is None:
        return "—"
    return f"{speed['median'] / 60:.1f} ({speed['p90'] / 60:.1f})"


def _cell(key: str, within: str | None = None) -> Callable[[dict[str, Any]], Any]:
    """A table column's getter: row[key], or row[within][key]."""
    return (lambda r: r[within].get(key)) if within else (lambda r: r.get(key))


def _period_line(report: dict[str, Any]) -> None:
    p = report["period"]
    click.echo(f"{p['date_from']} – {p['date_to']} ({p['timezone']})")


@click.group("report")
def report() -> None:
    """The sales reports: per manager, the funnel per channel, statuses, handovers, activity per day."""


@report.command("managers")
@config_option
@json_option
@_period_options
def managers(config_path: str, as_json: bool, date_from: datetime | None, date_to: datetime | None) -> None:
    """Per manager: received, taken, converted, refused, open and overdue now, speed to lead, revenue."""
    data = _run(config_path, date_from, date_to, lambda s, hub, p: managers_report(s, hub.config, p))
    if as_json:
        print_json(data)
        return
    _period_line(data)
    print_table(data["managers"], [
        ("manager", lambda r: r["name"]), ("team", lambda r: r["team"]), ("received", lambda r: r["received"]),
        ("taken", lambda r: r["taken"]), ("converted", lambda r: r["converted"]),
        ("refused", lambda r: r["refused"]), ("open", lambda r: r["open_now"]),
        ("overdue", lambda r: r["overdue_now"]), ("to take, min (p90)", lambda r: _minutes(r["speed_to_lead"])),
        ("attempts", lambda r: r["attempts"]), ("revenue", lambda r: r["revenue"])])


@report.command("funnel")
@config_option
@json_option
@_period_options
@click.option("--group-by", type=click.Choice(["source", "utm_campaign", "tag"]), default="source", show_default=True)
def funnel(config_path: str, as_json: bool, date_from: datetime | None, date_to: datetime | None,
           group_by: str) -> None:
    """Received → taken → converted per channel, by first and by last touch; cost per lead and per client."""
    data = _run(config_path, date_from, date_to, lambda s, hub, p: funnel_report(s, hub.config, p, group_by))
    if as_json:
        print_json(data)
        return
    _period_line(data)
    for attribution in ("first_touch", "last_touch"):
        rows = data.get(attribution)
        if not rows:
            continue
        click.echo(f"\n{attribution.replace('_', ' ')}:")
        print_table(rows, [
            (group_by, lambda r: r.get("key")), ("kind", lambda r: r.get("kind")),
            ("received", lambda r: r.get("received")), ("taken", lambda r: r.get("taken")),
            ("converted", lambda r: r.get("converted")), ("spend", lambda r: r.get("spend")),
            ("per lead", lambda r: r.get("cost_per_lead")), ("per client", lambda r: r.get("cost_per_client")),
            ("revenue", lambda r: r.get("revenue"))])


@report.command("statuses")
@config_option
@json_option
@_period_options
def statuses(config_path: str, as_json: bool, date_from: datetime | None, date_to: datetime | None) -> None:
    """The period's leads by status now, per source and per owner, and refusals by reason."""
    data = _run(config_path, date_from, date_to, lambda s, hub, p: statuses_report(s, hub.config, p, None))
    if as_json:
        print_json(data)
        return
    _period_line(data)
    for part, title in (("by_source", "source"), ("by_owner", "owner")):
        click.echo("")
        print_table(data.get(part) or [], [(title, lambda r, title=title: r.get(title) or "(queue)")] +
                    [(status, _cell(status)) for status in (*data["statuses"], "leads")])


@report.command("handovers")
@config_option
@json_option
@_period_options
@click.option("--limit", type=click.IntRange(1, 10_000), default=200, show_default=True)
def handovers(config_path: str, as_json: bool, date_from: datetime | None, date_to: datetime | None,
              limit: int) -> None:
    """Every reassignment and escalation in the period, and when the lead came back to its owner."""
    data = _run(config_path, date_from, date_to, lambda s, hub, p: handover_log(s, hub.config, p, None, limit=limit))
    if as_json:
        print_json(data)
        return
    _period_line(data)
    print_table(data["items"], [
        ("lead", lambda r: r["lead_id"]), ("at", lambda r: r["at"]), ("kind", lambda r: r.get("kind")),
        ("from", lambda r: r.get("from")), ("to", lambda r: r.get("to")), ("by", lambda r: r.get("by")),
        ("came back", lambda r: r.get("came_back_at") or "")])
    click.echo(f"{len(data['items'])} of {data['total']}")


@report.command("activity")
@config_option
@json_option
@_period_options
def activity(config_path: str, as_json: bool, date_from: datetime | None, date_to: datetime | None) -> None:
    """Per manager per day: attempts, status changes, notes, call-backs, calls (default: the last 7 days)."""
    data = _run(config_path, date_from, date_to, lambda s, hub, p: activity_report(s, hub.config, p, None), 7)
    if as_json:
        print_json(data)
        return
    _period_line(data)
    metrics = data["metrics"]
    print_table(data["managers"], [("manager", lambda r: r["manager"])] +
                [(m, _cell(m, "total")) for m in metrics])
