"""Scale-out under fire: 2 web and 2 worker processes on one store, one of each killed with SIGKILL while
deliveries stream in. Senders retry like providers do (another process, same delivery). 0 lost, 0 doubled,
and reconcile balances."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import requests
from sqlalchemy import func, select

from hub.store.db import transaction
from hub.store.models import InboundEvent, Lead, Touch, utcnow
from tests.helpers import procs
from tests.helpers.db import wait_until_processed

DELIVERIES = 600


def test_killing_a_web_and_a_worker_process_loses_and_doubles_nothing(write_config, runner):
    config = write_config(lease_seconds=2)
    from hub.config import load_config
    from hub.runtime import Hub

    hub = Hub(load_config(config))
    ports = [procs.free_port(), procs.free_port()]
    webs = [procs.start("serve", "--config", str(config), "--port", str(p), "--threads", "8") for p in ports]
    workers = [procs.start("worker", "--config", str(config)) for _ in range(2)]
    for proc, port in zip(webs, ports, strict=True):
        procs.wait_healthy(proc, port)
    sent = threading.Semaphore(0)
    retries = []

    def deliver(i: int) -> int:
        payload = {"phone": f"+7913{i:07d}", "request_id": f"r-{i}", "name": f"n{i}"}
        for attempt in range(40):                           # a provider retrying, possibly elsewhere
            port = ports[(i + attempt) % 2]
            try:
                resp = requests.post(f"http://127.0.0.1:{port}/hooks/site", json=payload, timeout=10)
                if resp.status_code == 200:
                    sent.release()
                    return attempt
            except requests.RequestException:
                pass
            retries.append(i)
            time.sleep(0.05)
        raise AssertionError(f"delivery {i} never acknowledged")

    def killer():
        for _ in range(DELIVERIES // 3):
            sent.acquire()
        os.kill(webs[0].pid, signal.SIGKILL)
        os.kill(workers[0].pid, signal.SIGKILL)

    kill = threading.Thread(target=killer)
    kill.start()
    try:
        with ThreadPoolExecutor(12) as pool:
            list(pool.map(deliver, range(DELIVERIES)))
        kill.join()
        assert webs[0].wait(5) == -signal.SIGKILL and workers[0].wait(5) == -signal.SIGKILL
        wait_until_processed(hub)
    finally:
        for p in webs + workers:
            procs.stop(p)
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalar(select(func.count()).select_from(InboundEvent)) == DELIVERIES      # none lost, none twice
        assert s.scalar(select(func.count(func.distinct(InboundEvent.external_id)))) == DELIVERIES
        assert s.scalar(select(func.count()).select_from(Lead)) == DELIVERIES
        assert s.scalar(select(func.count()).select_from(Touch)) == DELIVERIES
        statuses = set(s.scalars(select(InboundEvent.status)))
    assert statuses == {"processed"}
    report = json.loads(runner("reconcile", "--date", utcnow().date().isoformat(), "--json").output)
    assert report["ok"] and report["sources"]["site"]["created"] == DELIVERIES
    hub.dispose()
