"""The scheduler's APScheduler jobs: one per polling source at its own interval, the SLA sweeps, retention,
and a cron digest per team-lead time zone; and only the lease holder's jobs do anything."""

from __future__ import annotations

import socket
import threading
import time
from datetime import UTC, datetime, timedelta

import pytest
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy import select

from hub.config import load_config
from hub.runtime import Hub
from hub.scheduler import LEASE, Scheduler
from hub.store.db import transaction
from hub.store.models import Lead, Notification, Person, PollState, SchedulerLease


def closed_port() -> int:
    """A port nothing listens on: a poll there fails at once (connection refused), and is recorded."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def config_toml(port: int) -> str:
    mailbox = ('connector = "email_imap"\nhost = "127.0.0.1"\nport = {port}\nssl = false\nusername = "u"\n'
               'password = "p"\npoll_seconds = {seconds}\n')
    return f'''
[[sources]]
name = "mail-sales"
{mailbox.format(port=port, seconds=30)}
[[sources]]
name = "mail-support"
{mailbox.format(port=port, seconds=300)}
[routing]
sla_check_seconds = 20
[privacy]
retention_days = 30
[ui]
timezone = "Europe/Moscow"
[[teams]]
name = "north"
lead = "Olga"
[[teams]]
name = "west"
lead = "Hans"
[[teams]]
name = "east"
lead = "Ivan"
[[managers]]
name = "Olga"
team = "north"
telegram_chat_id = "1"
[[managers]]
name = "Hans"
team = "west"
telegram_chat_id = "2"
timezone = "Europe/Berlin"
[[managers]]
name = "Ivan"
team = "east"
telegram_chat_id = "3"
[notify]
base_url = "https://hub.example.ru"
digest_at = "09:00"
[notify.telegram]
bot_token = "123456:abcdefghij"
'''


@pytest.fixture
def hub(write_config):
    h = Hub(load_config(write_config(config_toml(closed_port()))))
    yield h
    h.dispose()


def registered(scheduler: Scheduler) -> BackgroundScheduler:
    aps = BackgroundScheduler(timezone="UTC")
    scheduler.add_jobs(aps)
    return aps


def digests(hub) -> list[str]:
    with transaction(hub.engine, read_only=True) as s:
        return list(s.scalars(select(Notification.recipient).where(Notification.lead_id.is_(None))
                              .order_by(Notification.id)))


def queue_a_lead(hub, created: datetime) -> None:
    """A lead nobody took: every team lead's digest has something to say."""
    with transaction(hub.engine) as s:
        person = Person(name="Клиент")
        s.add(person)
        s.flush()
        s.add(Lead(person_id=person.id, source="site", status="new", created_at=created, updated_at=created))


def polled(hub) -> dict[str, str | None]:
    with transaction(hub.engine, read_only=True) as s:
        return dict(s.execute(select(PollState.source, PollState.last_error)).all())


def test_a_job_per_polling_source_sweeps_retention_and_a_digest_per_time_zone(hub):
    jobs = {job.id: job for job in registered(Scheduler(hub, "only")).get_jobs()}
    assert sorted(jobs) == ["digest:Europe/Berlin", "digest:Europe/Moscow", "poll:mail-sales", "poll:mail-support",
                            "retention", "sla"]
    intervals = {job_id: job.trigger.interval for job_id, job in jobs.items()
                 if isinstance(job.trigger, IntervalTrigger)}
    assert intervals == {"sla": timedelta(seconds=20), "poll:mail-sales": timedelta(seconds=30),
                         "poll:mail-support": timedelta(seconds=300), "retention": timedelta(hours=1)}
    assert jobs["poll:mail-sales"].args == ("mail-sales",)
    for zone in ("Europe/Berlin", "Europe/Moscow"):
        trigger = jobs[f"digest:{zone}"].trigger
        assert isinstance(trigger, CronTrigger) and str(trigger.timezone) == zone
        assert {f.name: str(f) for f in trigger.fields if f.name in ("hour", "minute")} == {"hour": "9", "minute": "0"}
    assert all(job.max_instances == 1 and job.coalesce for job in jobs.values())


def test_no_digest_jobs_without_digest_at_nor_retention_without_retention_days(write_config):
    toml = config_toml(closed_port()).replace('digest_at = "09:00"\n', "").replace("retention_days = 30\n", "")
    h = Hub(load_config(write_config(toml)))
    try:
        assert sorted(job.id for job in registered(Scheduler(h, "only")).get_jobs()) == [
            "poll:mail-sales", "poll:mail-support", "sla"]
    finally:
        h.dispose()


def test_the_cron_digest_fires_at_nine_of_each_zone_through_daylight_saving(hub):
    jobs = {job.id: job for job in registered(Scheduler(hub, "only")).get_jobs()}
    moscow, berlin = jobs["digest:Europe/Moscow"].trigger, jobs["digest:Europe/Berlin"].trigger

    def next_fire(trigger, after: datetime) -> datetime:
        return trigger.get_next_fire_time(None, after).astimezone(UTC)

    friday = datetime(2026, 3, 27, tzinfo=UTC)           # Berlin switches to summer time on Sunday the 29th
    assert next_fire(moscow, friday) == datetime(2026, 3, 27, 6, 0, tzinfo=UTC)      # MSK is UTC+3 all year
    assert next_fire(berlin, friday) == datetime(2026, 3, 27, 8, 0, tzinfo=UTC)      # CET, UTC+1
    assert next_fire(berlin, datetime(2026, 3, 29, tzinfo=UTC)) == datetime(2026, 3, 29, 7, 0, tzinfo=UTC)  # CEST
    assert next_fire(moscow, datetime(2026, 3, 27, 6, 0, 1, tzinfo=UTC)) == datetime(2026, 3, 28, 6, 0, tzinfo=UTC)


def test_the_digest_job_at_its_fire_time_sends_that_zones_digests_once(hub):
    scheduler = Scheduler(hub, "only")
    jobs = {job.id: job for job in registered(scheduler).get_jobs()}
    friday = datetime(2026, 3, 27, tzinfo=UTC)
    queue_a_lead(hub, friday - timedelta(days=1))
    scheduler.sweep_job(friday)                                           # leads from midnight: nothing due yet
    assert digests(hub) == []
    moscow_nine = jobs["digest:Europe/Moscow"].trigger.get_next_fire_time(None, friday)
    assert scheduler.digest_job(moscow_nine) == 2                         # Olga and Ivan, both on Moscow time
    assert sorted(digests(hub)) == ["1", "3"]
    assert scheduler.digest_job(moscow_nine + timedelta(minutes=1)) == 0  # once a day
    berlin_nine = jobs["digest:Europe/Berlin"].trigger.get_next_fire_time(None, friday)
    assert scheduler.digest_job(berlin_nine) == 1 and digests(hub)[-1] == "2"


def test_only_the_leader_runs_the_jobs(hub):
    leader, standby = Scheduler(hub, "leader", lease_seconds=60), Scheduler(hub, "standby", lease_seconds=60)
    now = datetime.now(UTC)
    assert leader.sweep_job(now) == []                                    # swept: nothing overdue
    # The standby's every registered job, as APScheduler would call it: nothing happens.
    for job in registered(standby).get_jobs():
        job.func(*job.args)
    assert polled(hub) == {} and digests(hub) == []
    assert standby.sweep_job(now) is None and standby.poll_job("mail-sales", now) is None
    assert standby.retention_job(now) is None and standby.digest_job(now) is None
    # The leader's: each source polled (nothing listens: the failure is recorded as the poll).
    for job in registered(leader).get_jobs():
        job.func(*job.args)
    errors = polled(hub)
    assert sorted(errors) == ["mail-sales", "mail-support"] and all(errors.values())
    assert leader.poll_job("mail-sales", datetime.now(UTC)) is None       # polled a moment ago: not due
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(SchedulerLease, LEASE).holder == "leader"


def test_a_new_leader_catches_up_the_digest_the_old_one_died_before(hub):
    """The leader stopped at 08:59 Moscow time; the standby takes the lease at 09:00:30 once it expires,
    after its 09:00 cron run found another leader: its first job as leader sends the digest."""
    old, new = Scheduler(hub, "old", lease_seconds=90), Scheduler(hub, "new", lease_seconds=90)
    nine = datetime(2026, 3, 27, 6, 0, tzinfo=UTC)
    queue_a_lead(hub, nine - timedelta(days=1))
    assert old.sweep_job(nine - timedelta(minutes=1)) == []
    assert new.digest_job(nine) is None and digests(hub) == []           # the cron run, not leading
    assert new.sweep_job(nine + timedelta(seconds=31)) == []              # the lease expired: new leads
    assert sorted(digests(hub)) == ["1", "3"]
    assert new.digest_job(nine + timedelta(minutes=2)) == 0               # and never twice


def test_run_forever_polls_and_sweeps_on_apschedulers_threads(hub):
    stop = threading.Event()
    thread = threading.Thread(target=Scheduler(hub, "threads").run_forever, args=(stop,))
    thread.start()
    try:
        deadline = time.monotonic() + 20
        while len(polled(hub)) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert sorted(polled(hub)) == ["mail-sales", "mail-support"]       # the first run of each: at once
        with transaction(hub.engine, read_only=True) as s:
            assert s.get(SchedulerLease, LEASE).holder == "threads"
    finally:
        stop.set()
        thread.join(timeout=30)
    assert not thread.is_alive()
