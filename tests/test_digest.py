"""The team leads' daily digest: at digest_at in each team lead's own time zone (else [ui] timezone), once a
day however often the scheduler ticks, with their teams' overdue leads only and yesterday's numbers per
manager — the same numbers as the managers report for that day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from hub.config import load_config
from hub.desk.digest import digests_due
from hub.desk.period import Period
from hub.desk.report_managers import managers_report
from hub.pipeline.routing.lifecycle import count_attempt, take
from hub.runtime import Hub
from hub.scheduler import Scheduler
from hub.store.db import transaction
from hub.store.models import Lead, Notification, Person

CONFIG = '''
[ui]
timezone = "Europe/Moscow"
[[teams]]
name = "north"
lead = "Olga"
[[teams]]
name = "south"
lead = "Sam"
[[managers]]
name = "Olga"
team = "north"
telegram_chat_id = "1"
[[managers]]
name = "Max"
team = "north"
[[managers]]
name = "Sam"
team = "south"
telegram_chat_id = "2"
timezone = "Asia/Yerevan"
[[managers]]
name = "Sid"
team = "south"
[[routing.rules]]
name = "all"
team = "north"
sla_minutes = 15
[notify]
base_url = "https://hub.example.ru"
digest_at = "09:00"
[notify.telegram]
bot_token = "123456:abcdefghij"
'''

# Friday 6 March 2026: 09:00 in Yerevan (UTC+4) is 05:00 UTC, 09:00 in Moscow (UTC+3) is 06:00 UTC.
FRIDAY = datetime(2026, 3, 6, tzinfo=UTC)


@pytest.fixture
def hub(write_config):
    h = Hub(load_config(write_config(CONFIG)))
    yield h
    h.dispose()


def _lead(hub, owner: str, created: datetime, rule: str | None = "all") -> int:
    with transaction(hub.engine) as s:
        person = Person(name="Клиент")
        s.add(person)
        s.flush()
        lead = Lead(person_id=person.id, source="site", owner=owner, status="new", created_at=created,
                    updated_at=created, assigned_at=created, routing_rule=rule)
        s.add(lead)
        s.flush()
        return lead.id


def _digests(hub) -> list[Notification]:
    with transaction(hub.engine, read_only=True) as s:
        return list(s.scalars(select(Notification).where(Notification.lead_id.is_(None)).order_by(Notification.id)))


def test_each_team_lead_gets_the_digest_at_nine_of_their_own_clock_once_a_day(hub):
    assert digests_due(hub.config, FRIDAY.replace(hour=4, minute=59)) == []
    assert [d[0] for d in digests_due(hub.config, FRIDAY.replace(hour=5))] == ["Sam"]
    assert [d[0] for d in digests_due(hub.config, FRIDAY.replace(hour=6))] == ["Olga", "Sam"]
    # Moscow's Friday 00:30 is Thursday 21:30 UTC: Olga's "today" is the team's day, not UTC's.
    _lead(hub, "Max", FRIDAY - timedelta(days=2))                      # overdue in Olga's team
    _lead(hub, "Sid", FRIDAY - timedelta(days=2))                      # overdue in Sam's team
    scheduler = Scheduler(hub, "only")
    scheduler.tick(FRIDAY.replace(hour=4, minute=59))
    assert _digests(hub) == []
    scheduler.tick(FRIDAY.replace(hour=5, minute=1))
    scheduler.tick(FRIDAY.replace(hour=5, minute=30))                  # however often it ticks
    assert [d.recipient for d in _digests(hub)] == ["2"]
    scheduler.tick(FRIDAY.replace(hour=6, minute=1))
    sent = _digests(hub)
    assert [d.recipient for d in sent] == ["2", "1"]
    sam, olga = sent
    assert "Not taken in time: 1\n  #2 Sid" in sam.text and "Max" not in sam.text
    assert "Not taken in time: 1\n  #1 Max" in olga.text and "Sid" not in olga.text
    scheduler.tick((FRIDAY + timedelta(days=1)).replace(hour=6, minute=1))      # the next day: again
    assert sorted(d.recipient for d in _digests(hub)[2:]) == ["1", "2"] and len(_digests(hub)) == 4


def test_yesterdays_numbers_per_manager_are_the_managers_report_of_that_day(hub):
    # Thursday in Moscow: Max takes one lead and tries to call twice; Olga takes one.
    thursday_morning = datetime(2026, 3, 5, 7, 0, tzinfo=UTC)              # 10:00 MSK
    first, second = _lead(hub, "Max", thursday_morning), _lead(hub, "Olga", thursday_morning)
    late_wednesday = datetime(2026, 3, 4, 20, 30, tzinfo=UTC)                # 23:30 MSK Wednesday: not yesterday
    third = _lead(hub, "Max", late_wednesday - timedelta(minutes=5))
    with transaction(hub.engine) as s:
        take(s, hub.config, first, "Max", thursday_morning + timedelta(minutes=4))
        count_attempt(s, hub.config, first, "Max", thursday_morning + timedelta(minutes=10))
        count_attempt(s, hub.config, first, "Max", thursday_morning + timedelta(minutes=40))
        take(s, hub.config, second, "Olga", thursday_morning + timedelta(hours=1))
        take(s, hub.config, third, "Max", late_wednesday)
    Scheduler(hub, "only").tick(FRIDAY.replace(hour=6, minute=1))
    olga = next(d for d in _digests(hub) if d.recipient == "1")
    assert "Yesterday: received / taken / converted / refused / attempts\n" in olga.text
    assert "  Olga: 0 / 1 / 0 / 0 / 0\n  Max: 0 / 1 / 0 / 0 / 2\n" in olga.text
    assert "Sid" not in olga.text
    with transaction(hub.engine, read_only=True) as s:
        rows = {r["name"]: r for r in managers_report(
            s, hub.config, Period(FRIDAY.date() - timedelta(days=1), FRIDAY.date() - timedelta(days=1),
                                  "Europe/Moscow"), ["Olga", "Max"])["managers"]}
    assert (rows["Max"]["taken"], rows["Max"]["attempts"], rows["Olga"]["taken"]) == (1, 2, 1)
