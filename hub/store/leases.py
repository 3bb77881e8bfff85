"""Named leases in the store: which one process of a deployment does a job (the scheduler's jobs, the manager
bot's getUpdates). A holder takes a free or expired lease, or renews its own, with one conditional UPDATE — so
of several processes on one database exactly one wins, and a dead holder is replaced once its lease runs out."""

from __future__ import annotations

from datetime import datetime, timedelta

from sqlalchemy import Engine, or_, update

from hub.store.db import execute, insert_ignoring_conflicts, transaction
from hub.store.models import SchedulerLease

_LEASES = SchedulerLease.__table__


def take_lease(engine: Engine, name: str, holder: str, now: datetime, seconds: float) -> bool:
    """Take the lease ``name`` for ``holder`` until ``now + seconds`` if it is free or expired, renew it if the
    holder's; False when another holder's is still running."""
    with transaction(engine) as s:
        insert_ignoring_conflicts(s, _LEASES, ["name"],
                                  {"name": name, "holder": holder, "expires_at": now - timedelta(seconds=1)})
        won = execute(s, update(_LEASES).where(_LEASES.c.name == name, or_(
            _LEASES.c.holder == holder, _LEASES.c.expires_at < now)).values(
            holder=holder, expires_at=now + timedelta(seconds=seconds)))
        return won.rowcount == 1
