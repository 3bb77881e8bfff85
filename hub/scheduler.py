"""Scheduled jobs (the lead clocks: SLA reassignment, the queue's SLA, follow-ups and call-back reminders; the
daily digest, polling sources, raw payload retention), run by exactly one process: the holder of a lease row
in the store.

Each is its own APScheduler 3 job on its own clock: the SLA sweeps every [routing] sla_check_seconds, a
polling source every its poll_seconds (a slow IMAP server no longer holds up the sweeps), retention
hourly, and the digest on a cron at [notify] digest_at in each team lead's time zone (one job per zone).

Every process may run a scheduler (`hub run` does, `hub scheduler` is one on its own) with all the jobs;
before each run a job takes or renews the lease with one conditional UPDATE, so across several processes on
one PostgreSQL database only the leader works — a job that finds another leader does nothing — and a dead
leader is replaced once its lease expires. `Scheduler.tick(now)` runs every job once, as the leader, at
any instant (the tests' clock, `hub scheduler --once`).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import select

from hub.desk.digest import send_due_digests, zone_of
from hub.intake.polling import PollReport, poll_due, poll_is_due, poll_seconds, poll_source, polling_sources
from hub.pipeline.routing.sla import SWEEPS
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.leases import take_lease
from hub.store.models import PollState, utcnow
from hub.store.retention import purge_raw_payloads

log = logging.getLogger("hub.scheduler")
LEASE = "scheduler"
RETENTION_SECONDS = 3600      # raw payloads are kept for days: an hour late erasing one changes nothing
# A poll job fires every poll_seconds, but its clock and the last poll's recorded time drift apart by the
# milliseconds a run takes; polling at 90 % of the interval keeps a late-by-1-ms run from skipping a whole
# interval, while a restart or a new leader still never polls a source twice in quick succession.
POLL_DUE_SHARE = 0.9
# A digest cron run that starts late (the process busy or suspended) still runs within the hour; one missed
# altogether (the process was down, or became leader after 09:00) is caught up when a scheduler takes the
# lease: send_due_digests sends what is due and not yet sent today, so nothing goes twice.
DIGEST_GRACE_SECONDS = 3600


class Scheduler:
    def __init__(self, hub: Hub, name: str | None = None, lease_seconds: float | None = None):
        self.hub = hub
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_seconds = lease_seconds or max(60.0, hub.config.routing.sla_check_seconds * 3)
        self._leading = False
        self._leading_lock = threading.Lock()

    def is_leader(self, now: datetime) -> bool:
        """Take the lease if it is free or expired, renew it if ours. One statement decides."""
        return take_lease(self.hub.engine, LEASE, self.name, now, self.lease_seconds)

    def _lead(self, now: datetime) -> bool:
        """is_leader for a job; the job that finds this scheduler newly leading first catches up the digest."""
        leading = self.is_leader(now)
        with self._leading_lock:
            became, self._leading = leading and not self._leading, leading
        if became:
            log.info("scheduler %s holds the lease: it runs the jobs now", self.name)
            try:
                self._digest(now)
            except Exception:
                with self._leading_lock:
                    self._leading = False         # the next job catches up again
                raise
        return leading

    # The jobs: each does nothing (and returns None) when another scheduler leads.

    def sweep_job(self, now: datetime | None = None) -> list[dict] | None:
        now = now or utcnow()
        return self._sweep(now) if self._lead(now) else None

    def poll_job(self, source_name: str, now: datetime | None = None) -> PollReport | None:
        """Poll one source when its interval has (nearly) passed since its last poll, by anyone."""
        now = now or utcnow()
        if not self._lead(now):
            return None
        source = self.hub.sources[source_name]
        with transaction(self.hub.engine, read_only=True) as s:
            polled = s.scalar(select(PollState.polled_at).where(PollState.source == source_name))
        if not poll_is_due(source, polled, now, POLL_DUE_SHARE):
            return None
        return poll_source(self.hub, source, now)

    def retention_job(self, now: datetime | None = None) -> int | None:
        now = now or utcnow()
        return self._retention(now) if self._lead(now) else None

    def digest_job(self, now: datetime | None = None) -> int | None:
        now = now or utcnow()
        if not self._lead(now):
            return None
        return self._digest(now)

    def tick(self, now: datetime | None = None) -> list[dict] | None:
        """Every job once, at ``now``, if this scheduler leads; None when another process leads."""
        now = now or utcnow()
        if not self.is_leader(now):
            return None
        done = self._sweep(now)
        self._digest(now)
        poll_due(self.hub, now)
        self._retention(now)
        return done

    def _sweep(self, now: datetime) -> list[dict]:
        done: list[dict] = []
        for sweep in SWEEPS:        # a transaction each: one sweep's locks are not held through the next
            with transaction(self.hub.engine) as s:
                done += sweep(s, self.hub.config, now)
        for d in done:
            log.info("lead=%s %s: %s -> %s", d["lead_id"], d["kind"], d["from"], d["to"])
        if done:
            self.hub.notification_queued.set()
        return done

    def _digest(self, now: datetime) -> int:
        """Each due team lead's digest, once a day (hub/desk/digest.py)."""
        with transaction(self.hub.engine) as s:
            queued = send_due_digests(s, self.hub.config, now, self.name)
        if queued:
            log.info("daily digest: %s message(s) queued", queued)
            self.hub.notification_queued.set()
        return queued

    def _retention(self, now: datetime) -> int:
        days = self.hub.config.privacy.retention_days
        if not days:
            return 0
        with transaction(self.hub.engine) as s:
            purged = purge_raw_payloads(s, days, now)
        if purged:
            log.info("retention: raw payloads of %s event(s) erased", purged)
        return purged

    def digest_zones(self) -> list[str]:
        """The distinct time zones of the team leads (hub/desk/digest.py zone_of)."""
        config = self.hub.config
        return sorted({zone_of(config, t.lead) for t in config.teams if t.lead})

    def add_jobs(self, scheduler: Any) -> None:
        """Register the jobs on an APScheduler 3 scheduler (not yet started)."""
        from apscheduler.triggers.cron import CronTrigger
        from apscheduler.triggers.interval import IntervalTrigger

        config = self.hub.config
        start = datetime.now().astimezone()           # the first run of each interval job: at once

        def add(job_id: str, func: Callable[..., Any], trigger: Any, *args: Any, **options: Any) -> None:
            scheduler.add_job(self._safe(job_id, func), trigger, args=args, id=job_id, name=job_id,
                              max_instances=1, coalesce=True, **options)

        add("sla", self.sweep_job, IntervalTrigger(seconds=config.routing.sla_check_seconds, timezone="UTC"),
            next_run_time=start)
        for source in polling_sources(self.hub):
            add(f"poll:{source.name}", self.poll_job,
                IntervalTrigger(seconds=poll_seconds(source), timezone="UTC"), source.name, next_run_time=start)
        if config.privacy.retention_days:
            add("retention", self.retention_job, IntervalTrigger(seconds=RETENTION_SECONDS, timezone="UTC"),
                next_run_time=start)
        if config.notify.digest_at is not None:
            hour, minute = (int(part) for part in config.notify.digest_at.split(":"))
            for zone in self.digest_zones():
                add(f"digest:{zone}", self.digest_job,
                    CronTrigger(hour=hour, minute=minute, timezone=ZoneInfo(zone)),
                    misfire_grace_time=DIGEST_GRACE_SECONDS)

    def _safe(self, job_id: str, func: Callable[..., Any]) -> Callable[..., None]:
        def run(*args: Any) -> None:
            try:
                func(*args)
            except Exception:  # a failed run is retried at the job's next run
                log.exception("scheduler: job %s failed", job_id)
        return run

    def run_forever(self, stop: threading.Event) -> None:
        """APScheduler 3 runs the jobs in its threads; this thread only waits for the stop."""
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone="UTC")
        self.add_jobs(scheduler)
        scheduler.start()
        log.info("scheduler %s started: %s", self.name, ", ".join(job.id for job in scheduler.get_jobs()))
        try:
            stop.wait()
        finally:
            scheduler.shutdown(wait=True)
