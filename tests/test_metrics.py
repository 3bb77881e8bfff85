"""`/metrics` through prometheus_client: the store's counts read at scrape time, this process's
acknowledgement latency, and — under PROMETHEUS_MULTIPROC_DIR — every process's latency added up."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from hub.pipeline.worker import Worker
from hub.web import gunicorn_conf
from hub.web.metrics import MULTIPROCESS_DIR_ENV

ROOT = Path(__file__).resolve().parent.parent


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """{(sample name, sorted labels): value} of a scrape, parsed as Prometheus would."""
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def test_scrape_shows_store_counts_and_latency(client, hub):
    for body in ({"phone": "+79120000001"}, {"phone": "+79120000002"}, {"name": "no contact"}):
        client.post("/hooks/site", json=body)
    Worker(hub).drain()
    client.post("/hooks/site", json={"phone": "+79120000003"})
    client.post("/hooks/locked", json={"phone": "+79120000004"})        # no token: 401, nothing stored
    scrape = client.get("/metrics")
    assert scrape.status_code == 200 and scrape.mimetype == "text/plain"
    got = samples(scrape.get_data(as_text=True))
    assert got[("leadhub_events", (("source", "site"), ("status", "processed")))] == 2
    assert got[("leadhub_events", (("source", "site"), ("status", "rejected")))] == 1
    assert got[("leadhub_events", (("source", "site"), ("status", "pending")))] == 1
    assert got[("leadhub_queue_depth", ())] == 1 and got[("leadhub_dead_events", ())] == 0
    assert got[("leadhub_ack_seconds_count", (("source", "site"),))] == 4
    assert got[("leadhub_ack_seconds_bucket", (("le", "+Inf"), ("source", "site")))] == 4
    assert 0 < got[("leadhub_ack_seconds_sum", (("source", "site"),))] < 4 * 5.0
    buckets = [got[("leadhub_ack_seconds_bucket", (("le", le), ("source", "site")))]
               for le in ("0.005", "0.01", "0.1", "1.0", "5.0")]
    assert buckets == sorted(buckets) and buckets[-1] == 4                # cumulative, as Prometheus wants
    assert got[("leadhub_webhook_replies_total", (("source", "site"), ("status", "200")))] == 3
    assert got[("leadhub_webhook_replies_total", (("source", "site"), ("status", "422")))] == 1
    assert got[("leadhub_webhook_replies_total", (("source", "locked"), ("status", "401")))] == 1
    assert not any(name.endswith("_created") for name, _ in got)          # the per-series timestamps are off


def test_each_app_counts_its_own_deliveries(hub):
    """A registry per app, not the process-global one: a second app starts from nothing."""
    from hub.web.app import create_app

    first, second = create_app(hub=hub).test_client(), create_app(hub=hub).test_client()
    first.post("/hooks/site", json={"phone": "+79120000001"})
    assert samples(first.get("/metrics").get_data(as_text=True))[
        ("leadhub_ack_seconds_count", (("source", "site"),))] == 1
    assert ("leadhub_ack_seconds_count", (("source", "site"),)) not in samples(
        second.get("/metrics").get_data(as_text=True))


DELIVER = textwrap.dedent("""
    import sys
    from hub.web.app import create_app
    config, first, count = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    client = create_app(config).test_client()
    for i in range(first, first + count):
        assert client.post("/hooks/site", json={"phone": f"+7912000{i:04d}"}).status_code == 200
    assert client.post("/hooks/site", json={"name": "no contact"}).status_code == 422
""")


def test_multiprocess_scrape_adds_up_every_process(config_path, client, tmp_path, monkeypatch):
    """Two real processes answer deliveries with PROMETHEUS_MULTIPROC_DIR set; one scrape sees both."""
    shared = tmp_path / "prometheus"
    shared.mkdir()
    env = {**os.environ, MULTIPROCESS_DIR_ENV: str(shared), "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", DELIVER, str(config_path), str(first), str(count)],
                              env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
             for first, count in ((0, 3), (100, 5))]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    assert len(list(shared.glob("*.db"))) >= 2                          # a file per process and kind
    monkeypatch.setenv(MULTIPROCESS_DIR_ENV, str(shared))
    got = samples(client.get("/metrics").get_data(as_text=True))
    assert got[("leadhub_ack_seconds_count", (("source", "site"),))] == 3 + 1 + 5 + 1
    assert got[("leadhub_ack_seconds_bucket", (("le", "+Inf"), ("source", "site")))] == 10
    assert got[("leadhub_webhook_replies_total", (("source", "site"), ("status", "200")))] == 8
    assert got[("leadhub_webhook_replies_total", (("source", "site"), ("status", "422")))] == 2
    assert got[("leadhub_events", (("source", "site"), ("status", "pending")))] == 8      # the store's, once


def test_gunicorn_hooks_clear_the_directory_and_keep_a_dead_workers_counts(tmp_path, monkeypatch, client):
    shared = tmp_path / "prometheus"
    shared.mkdir()
    (shared / "counter_999999.db").write_bytes(b"left by the previous run")
    monkeypatch.setenv(MULTIPROCESS_DIR_ENV, str(shared))
    gunicorn_conf.on_starting(server=None)
    assert list(shared.iterdir()) == []
    subprocess.run([sys.executable, "-c", "from hub.web.metrics import AckLatency; "
                    "AckLatency().observe('site', 200, 0.002)"],
                   env={**os.environ, MULTIPROCESS_DIR_ENV: str(shared), "PYTHONPATH": str(ROOT)}, cwd=ROOT,
                   check=True)
    worker_pid = int(next(shared.glob("counter_*.db")).stem.rsplit("_", 1)[1])
    gunicorn_conf.child_exit(server=None, worker=type("Worker", (), {"pid": worker_pid})())
    got = samples(client.get("/metrics").get_data(as_text=True))
    assert got[("leadhub_webhook_replies_total", (("source", "site"), ("status", "200")))] == 1


def test_under_gunicorn_every_workers_deliveries_add_up_even_a_killed_ones(config_path, tmp_path):
    """Real gunicorn, 2 sync workers, the shipped config: both original workers are killed halfway, so the
    second half is answered by new processes; every scrape, whichever worker answers it, counts all."""
    import signal
    import tempfile

    import requests

    from tests.helpers.procs import free_port, stop, wait_healthy

    gunicorn = Path(sys.executable).with_name("gunicorn")
    if not gunicorn.exists():
        pytest.skip("gunicorn is not installed (pip install -e '.[production]')")
    shared = tmp_path / "prometheus"
    shared.mkdir()
    (shared / "histogram_999999.db").write_bytes(b"left by the previous run")
    port = free_port()
    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 — closed by stop()
    proc = subprocess.Popen(
        [str(gunicorn), "-c", "python:hub.web.gunicorn_conf", "-w", "2", "-b", f"127.0.0.1:{port}",
         "hub.web:create_app()"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, MULTIPROCESS_DIR_ENV: str(shared), "HUB_CONFIG": str(config_path)})
    proc.log = log  # type: ignore[attr-defined]
    try:
        wait_healthy(proc, port)
        url = f"http://127.0.0.1:{port}"

        def deliver(first: int) -> None:
            for i in range(first, first + 5):
                reply = requests.post(f"{url}/hooks/site", json={"phone": f"+7912000{i:04d}"}, timeout=10)
                assert reply.status_code == 200, reply.text

        def workers() -> set[int]:
            return {int(pid) for pid in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                       text=True).stdout.split()}

        deliver(0)
        originals = workers()
        assert len(originals) == 2
        for pid in originals:
            os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while not (len(workers()) == 2 and not workers() & originals) and time.monotonic() < deadline:
            time.sleep(0.1)
        wait_healthy(proc, port)
        deliver(100)
        for _ in range(4):                                  # each scrape may be answered by either worker
            got = samples(requests.get(f"{url}/metrics", timeout=10).text)
            assert got[("leadhub_ack_seconds_count", (("source", "site"),))] == 10
            assert got[("leadhub_webhook_replies_total", (("source", "site"), ("status", "200")))] == 10
        pids = {int(f.stem.rsplit("_", 1)[1]) for f in shared.glob("*.db")}
        assert 999999 not in pids                           # the previous run's file was cleared at start
        assert pids & originals and pids - originals        # old (killed) and new workers' files both count
    finally:
        text = stop(proc)
    assert "Traceback" not in text, text
