"""`GET /metrics` in the Prometheus text format: the store's counts (the same for every process) and this
process's webhook acknowledgement latency (scrape every web process)."""

from __future__ import annotations

import bisect
import threading
from collections import Counter, defaultdict

from sqlalchemy import func, select

from hub.intake.group import group_writer
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent, Notification

BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class AckLatency:
    """A histogram of how long a delivery took from request to acknowledgement, per source and status."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._buckets: dict[str, list[int]] = {}
        self._sum: defaultdict[str, float] = defaultdict(float)
        self._count: Counter[str] = Counter()
        self.replies: Counter[tuple[str, int]] = Counter()

    def observe(self, source: str, status: int, seconds: float) -> None:
        with self._lock:
            buckets = self._buckets.setdefault(source, [0] * len(BUCKETS))
            for i in range(bisect.bisect_left(BUCKETS, seconds), len(BUCKETS)):
                buckets[i] += 1
            self._sum[source] += seconds
            self._count[source] += 1
            self.replies[(source, status)] += 1

    def lines(self) -> list[str]:
        out = ["# HELP leadhub_ack_seconds Time from a provider's request to the hub's answer (this process).",
               "# TYPE leadhub_ack_seconds histogram"]
        with self._lock:
            for source, buckets in sorted(self._buckets.items()):
                for le, n in zip(BUCKETS, buckets, strict=True):
                    out.append(f'leadhub_ack_seconds_bucket{{source="{source}",le="{le}"}} {n}')
                out.append(f'leadhub_ack_seconds_bucket{{source="{source}",le="+Inf"}} {self._count[source]}')
                out.append(f'leadhub_ack_seconds_sum{{source="{source}"}} {self._sum[source]:.6f}')
                out.append(f'leadhub_ack_seconds_count{{source="{source}"}} {self._count[source]}')
            out += ["# HELP leadhub_webhook_replies_total Answers to providers by HTTP status (this process).",
                    "# TYPE leadhub_webhook_replies_total counter"]
            out += [f'leadhub_webhook_replies_total{{source="{s}",status="{st}"}} {n}'
                    for (s, st), n in sorted(self.replies.items())]
        return out


def render(hub: Hub, latency: AckLatency) -> str:
    with transaction(hub.engine, read_only=True) as s:
        events = s.execute(select(InboundEvent.source, InboundEvent.status, func.count())
                           .group_by(InboundEvent.source, InboundEvent.status)).all()
        notes = s.execute(select(Notification.status, func.count()).group_by(Notification.status)).all()
    waiting = sum(n for _, status, n in events if status in (EventStatus.PENDING, EventStatus.PROCESSING))
    lines = ["# HELP leadhub_events Inbound events in the store by source and status.",
             "# TYPE leadhub_events gauge"]
    lines += [f'leadhub_events{{source="{src}",status="{status}"}} {n}' for src, status, n in sorted(events)]
    lines += ["# HELP leadhub_queue_depth Events waiting for a worker (pending or being processed).",
              "# TYPE leadhub_queue_depth gauge", f"leadhub_queue_depth {waiting}",
              "# HELP leadhub_dead_events Events that failed every attempt (replay with hub events replay).",
              "# TYPE leadhub_dead_events gauge",
              f"leadhub_dead_events {sum(n for _, status, n in events if status == EventStatus.DEAD)}",
              "# HELP leadhub_notifications Notifications in the outbox by status.",
              "# TYPE leadhub_notifications gauge"]
    lines += [f'leadhub_notifications{{status="{status}"}} {n}' for status, n in sorted(notes)]
    writer = group_writer(hub.engine)
    if writer is not None:
        lines += ["# HELP leadhub_intake_commits_total Transactions the intake's group writer committed "
                  "(this process); deliveries ÷ commits is the mean batch.",
                  "# TYPE leadhub_intake_commits_total counter", f"leadhub_intake_commits_total {writer.batches}",
                  "# HELP leadhub_intake_batched_deliveries_total Deliveries written by the group writer "
                  "(this process).",
                  "# TYPE leadhub_intake_batched_deliveries_total counter",
                  f"leadhub_intake_batched_deliveries_total {writer.jobs}",
                  "# HELP leadhub_intake_batch_fallbacks_total Batches that failed and were written again one "
                  "delivery a transaction (this process).",
                  "# TYPE leadhub_intake_batch_fallbacks_total counter",
                  f"leadhub_intake_batch_fallbacks_total {writer.fallbacks}"]
    return "\n".join(lines + latency.lines()) + "\n"
