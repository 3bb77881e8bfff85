"""Scheduled jobs (the lead clocks: SLA reassignment, the queue's SLA, follow-ups and call-back reminders; the
daily digest, polling sources, raw payload retention), run by exactly one process: the holder of a lease row
in the store.

Every process may run a scheduler (`hub run` does, `hub scheduler` is one on its own); before each run a
scheduler takes or renews the lease with one conditional UPDATE, so across several processes on one
PostgreSQL database only the leader works, and a dead leader is replaced once its lease expires.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from datetime import datetime, timedelta

from sqlalchemy import or_, update

from hub.desk.digest import send_due_digests
from hub.intake.polling import poll_due, poll_seconds, polling_sources
from hub.pipeline.routing.sla import SWEEPS
from hub.runtime import Hub
from hub.store.db import execute, insert_ignoring_conflicts, transaction
from hub.store.models import SchedulerLease, utcnow
from hub.store.retention import purge_raw_payloads

log = logging.getLogger("hub.scheduler")
LEASE = "scheduler"


class Scheduler:
    def __init__(self, hub: Hub, name: str | None = None, lease_seconds: float | None = None):
        self.hub = hub
        self.name = name or f"{socket.gethostname()}:{os.getpid()}"
        self.lease_seconds = lease_seconds or max(60.0, hub.config.routing.sla_check_seconds * 3)

    def is_leader(self, now: datetime) -> bool:
        """Take the lease if it is free or expired, renew it if ours. One statement decides."""
        table = SchedulerLease.__table__
        with transaction(self.hub.engine) as s:
            insert_ignoring_conflicts(s, table, ["name"],
                                      {"name": LEASE, "holder": self.name, "expires_at": now - timedelta(seconds=1)})
            won = execute(s, update(table).where(table.c.name == LEASE, or_(
                table.c.holder == self.name, table.c.expires_at < now)).values(
                holder=self.name, expires_at=now + timedelta(seconds=self.lease_seconds)))
            return won.rowcount == 1

    def tick(self, now: datetime | None = None) -> list[dict] | None:
        """One round of the jobs; None when another process leads."""
        now = now or utcnow()
        if not self.is_leader(now):
            return None
        done: list[dict] = []
        for sweep in SWEEPS:        # a transaction each: one sweep's locks are not held through the next
            with transaction(self.hub.engine) as s:
                done += sweep(s, self.hub.config, now)
        self._digest_if_due(now)
        poll_due(self.hub, now)
        if self.hub.config.privacy.retention_days:
            with transaction(self.hub.engine) as s:
                purged = purge_raw_payloads(s, self.hub.config.privacy.retention_days, now)
            if purged:
                log.info("retention: raw payloads of %s event(s) erased", purged)
        for d in done:
            log.info("lead=%s %s: %s -> %s", d["lead_id"], d["kind"], d["from"], d["to"])
        if done:
            self.hub.notification_queued.set()
        return done

    def _digest_if_due(self, now: datetime) -> None:
        """Each team lead's digest at [notify] digest_at in their time zone, once a day (hub/desk/digest.py)."""
        with transaction(self.hub.engine) as s:
            queued = send_due_digests(s, self.hub.config, now, self.name)
        if queued:
            log.info("daily digest: %s message(s) queued", queued)

    def run_forever(self, stop: threading.Event) -> None:
        """APScheduler 3 drives the ticks; this thread only waits for the stop."""
        from apscheduler.schedulers.background import BackgroundScheduler

        scheduler = BackgroundScheduler(timezone="UTC")
        every = min([self.hub.config.routing.sla_check_seconds] + [poll_seconds(s) for s in polling_sources(self.hub)])
        scheduler.add_job(self._safe_tick, "interval", seconds=every,
                          id="sla", max_instances=1, coalesce=True, next_run_time=datetime.now().astimezone())
        scheduler.start()
        log.info("scheduler %s started", self.name)
        try:
            stop.wait()
        finally:
            scheduler.shutdown(wait=True)

    def _safe_tick(self) -> None:
        try:
            self.tick()
        except Exception:  # a failed round is retried at the next tick
            log.exception("scheduler: round failed")
