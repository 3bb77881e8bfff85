"""The team leads' daily digest: when it is due for each team lead (at [notify] digest_at in their own time
zone, else the team's [ui] timezone), and yesterday's numbers per manager of their teams, from the managers
report — so the digest and the report never disagree."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy.orm import Session

from hub.config import Config
from hub.desk.report_managers import yesterday_per_manager
from hub.pipeline.routing.sla import digest
from hub.store.db import insert_ignoring_conflicts
from hub.store.models import SchedulerLease


def zone_of(config: Config, manager_name: str) -> str:
    """A team lead's own time zone when their [[managers]] entry sets one, else the team's."""
    manager = config.manager(manager_name)
    return manager.timezone if manager and "timezone" in manager.model_fields_set else config.ui.timezone


def digests_due(config: Config, now: datetime) -> list[tuple[str, date, str]]:
    """(team lead, their today, their zone) for each team lead whose local clock has passed digest_at."""
    at = config.notify.digest_at
    if at is None:
        return []
    due = []
    for name in sorted({t.lead for t in config.teams if t.lead}):
        zone = zone_of(config, name)
        local = now.astimezone(ZoneInfo(zone))
        if local.strftime("%H:%M") >= at:
            due.append((name, local.date(), zone))
    return due


def _marker(name: str, day: date) -> str:
    """The once-a-day marker's key (the lease table's name: 64 characters; a manager's name may be 128)."""
    return f"digest:{day.isoformat()}:{hashlib.sha256(name.encode()).hexdigest()[:16]}"


def yesterday_numbers(session: Session, config: Config, team_lead: str, today: date, zone: str) -> list[dict]:
    """Yesterday's row per manager of the team lead's teams (and the team lead's own), as the report has it."""
    teams = {t.name for t in config.teams if t.lead == team_lead}
    names = [m.name for m in config.managers if m.team in teams or m.name == team_lead]
    numbers = yesterday_per_manager(session, config, today - timedelta(days=1), names, zone)
    return [{"name": name, **counts} for name, counts in numbers.items()]


def send_due_digests(session: Session, config: Config, now: datetime, holder: str) -> int:
    """Queue each due team lead's digest once per their local day (a marker row makes it once, whoever
    leads the scheduler and however often it ticks). Returns the messages queued."""
    queued = 0
    for name, today, zone in digests_due(config, now):
        first = insert_ignoring_conflicts(session, SchedulerLease.__table__, ["name"],
                                          {"name": _marker(name, today), "holder": holder, "expires_at": now})
        if first is None:
            continue
        numbers = yesterday_numbers(session, config, name, today, zone)
        queued += digest(session, config, now, team_leads=[name], yesterday={name: numbers})
    return queued
