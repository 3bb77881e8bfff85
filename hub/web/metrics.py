"""`GET /metrics` in the Prometheus text format, through prometheus_client.

Two kinds of numbers, kept apart because they behave differently under several web processes:

* the store's counts (events by source and status, queue depth, dead events, the outbox) are the same
  whichever process answers, so they are a custom collector that reads the database at scrape time;
* the webhook acknowledgement latency and the replies by status happen in the process that answered, so
  they are prometheus_client Histogram/Counter. With ``PROMETHEUS_MULTIPROC_DIR`` set (gunicorn with
  several workers, or several ``hub serve`` processes) every process writes them to files in that
  directory and any process's scrape adds them all up (``hub/web/gunicorn_conf.py`` sets it up for
  gunicorn); without it a scrape shows the process that answered it.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.multiprocess import MultiProcessCollector
from sqlalchemy import func, select

from hub.intake.group import group_writer
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent, Notification

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)

# The "<name>_created" series (a timestamp per label set) say when this process first saw a source; they
# double the series and nobody graphs them. Process-wide, as prometheus_client has it.
disable_created_metrics()


class AckLatency:
    """How long a delivery took from request to acknowledgement per source, and the answers by status.

    ``observe`` is on the webhook fast lane (~1 ms of CPU a delivery): the labelled children are looked up
    once per (source, status) and kept, so an observation is a dict lookup, a histogram observe and a
    counter inc. Measured with timeit on the 2-core test machine: 1.0 µs a call with the hand-written
    histogram this replaced, 1.0 µs now, 2.3 µs in multiprocess mode (two mmap writes) — 0.1–0.2 % of a
    delivery.
    """

    def __init__(self) -> None:
        # A registry per app, not prometheus_client's global one: every app built in one process (tests
        # build many) counts its own deliveries.
        self.registry = CollectorRegistry()
        self.seconds = Histogram("leadhub_ack_seconds",
                                 "Time from a provider's request to the hub's answer (this process, or all "
                                 "processes under PROMETHEUS_MULTIPROC_DIR).",
                                 ["source"], buckets=BUCKETS, registry=self.registry)
        self.replies = Counter("leadhub_webhook_replies", "Answers to providers by HTTP status.",
                               ["source", "status"], registry=self.registry)
        self._children: dict[tuple[str, int], tuple[Histogram, Counter]] = {}

    def observe(self, source: str, status: int, seconds: float) -> None:
        children = self._children.get((source, status))
        if children is None:
            children = self._children.setdefault(
                (source, status), (self.seconds.labels(source), self.replies.labels(source, str(status))))
        children[0].observe(seconds)
        children[1].inc()

    def collect(self) -> Iterable[Metric]:
        return self.registry.collect()


class StoreCounts:
    """The store's counts, read when scraped; and this process's group-writer totals (hub/intake/group.py)."""

    def __init__(self, hub: Hub) -> None:
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        with transaction(self.hub.engine, read_only=True) as s:
            events = s.execute(select(InboundEvent.source, InboundEvent.status, func.count())
                               .group_by(InboundEvent.source, InboundEvent.status)).all()
            notes = s.execute(select(Notification.status, func.count()).group_by(Notification.status)).all()
        by_status = GaugeMetricFamily("leadhub_events", "Inbound events in the store by source and status.",
                                      labels=["source", "status"])
        for source, status, n in sorted(events):
            by_status.add_metric([source, str(status)], n)
        yield by_status
        waiting = sum(n for _, status, n in events if status in (EventStatus.PENDING, EventStatus.PROCESSING))
        yield GaugeMetricFamily("leadhub_queue_depth", "Events waiting for a worker (pending or being processed).",
                                value=waiting)
        yield GaugeMetricFamily("leadhub_dead_events",
                                "Events that failed every attempt (replay with hub events replay).",
                                value=sum(n for _, status, n in events if status == EventStatus.DEAD))
        outbox = GaugeMetricFamily("leadhub_notifications", "Notifications in the outbox by status.",
                                   labels=["status"])
        for status, n in sorted(notes):
            outbox.add_metric([str(status)], n)
        yield outbox
        writer = group_writer(self.hub.engine)
        if writer is not None:
            # Counted by the writer itself, in the process answering this scrape only.
            yield CounterMetricFamily("leadhub_intake_commits",
                                      "Transactions the intake's group writer committed (this process); "
                                      "deliveries ÷ commits is the mean batch.", value=writer.batches)
            yield CounterMetricFamily("leadhub_intake_batched_deliveries",
                                      "Deliveries written by the group writer (this process).", value=writer.jobs)
            yield CounterMetricFamily("leadhub_intake_batch_fallbacks",
                                      "Batches that failed and were written again one delivery a transaction "
                                      "(this process).", value=writer.fallbacks)


def render(hub: Hub, latency: AckLatency) -> bytes:
    """The scrape: the store's counts, and the latency of this process — or of every process writing to
    $PROMETHEUS_MULTIPROC_DIR when it is set."""
    registry = CollectorRegistry()
    registry.register(StoreCounts(hub))
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        MultiProcessCollector(registry)
    else:
        registry.register(latency)
    return generate_latest(registry)
