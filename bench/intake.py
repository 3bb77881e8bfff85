"""Benchmark: webhook acknowledgement against a floor, and end-to-end leads/s with 1, 2 and 4 workers.

One command:  .venv/bin/python -m bench.intake [--postgres URL] [--requests 3000]

(1) `POST /hooks/site` through `hub serve` (waitress, 32 threads) under 16 concurrent senders: throughput and
    p50/p99 latency, against a *floor* measured in the same run — a minimal WSGI app on the same server that
    only inserts the raw body into the same database with the same durability settings. Then a fixed
    200 requests/s for 10 s: p99 latency. Targets: throughput ≥ 0.5× the floor, p99 < 50 ms at 200/s.
(2) End to end: N deliveries stored, then 1, 2 and 4 `hub worker` processes take them to assigned leads
    (identity, round-robin over 5 managers): leads/s. Target ≥ 500 leads/s.
Results: printed, and bench/results/intake.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path

import requests

RESULTS = Path(__file__).parent / "results"
HUB = str(Path(sys.executable).with_name("hub"))

FLOOR_APP = textwrap.dedent('''
    """The floor: read the body, insert it, commit, answer. Same server, same database, same durability."""
    import os, sys
    from sqlalchemy import text
    from waitress import serve
    from hub.store.db import make_engine

    engine = make_engine(os.environ["FLOOR_DB"])
    with engine.begin() as c:
        c.execute(text("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY "
                       + ("AUTOINCREMENT" if engine.dialect.name == "sqlite" else "GENERATED ALWAYS AS IDENTITY")
                       + (", body BLOB NOT NULL)" if engine.dialect.name == "sqlite" else ", body BYTEA NOT NULL)")))
    INSERT = text("INSERT INTO floor (body) VALUES (:b)")

    def app(environ, start_response):
        if environ["PATH_INFO"] == "/healthz":
            start_response("200 OK", [("Content-Type", "text/plain")]); return [b"ok"]
        body = environ["wsgi.input"].read(int(environ.get("CONTENT_LENGTH") or 0))
        with engine.begin() as c:
            c.execute(INSERT, {"b": body})
        start_response("200 OK", [("Content-Type", "application/json")]); return [b'{"status": "accepted"}']

    serve(app, host="127.0.0.1", port=int(sys.argv[1]), threads=8, ident="floor")
''')


def free_port() -> int:
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_up(port: int) -> None:
    for _ in range(300):
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return
        except requests.ConnectionError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answers on {port}")


def load(port: int, count: int, concurrency: int, offset: int) -> dict:
    """``count`` distinct deliveries from ``concurrency`` senders as fast as answered."""
    latencies: list[float] = []
    lock = threading.Lock()
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=concurrency))

    def send(i: int) -> None:
        body = {"phone": f"+7915{offset + i:07d}", "name": f"bench {i}", "request_id": f"b{offset + i}",
                "page_url": "https://example.com/?utm_source=bench&utm_campaign=load"}
        t = time.perf_counter()
        resp = session.post(f"http://127.0.0.1:{port}/hooks/site", json=body, timeout=30)
        took = time.perf_counter() - t
        assert resp.status_code == 200, resp.text
        with lock:
            latencies.append(took)
    started = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        list(pool.map(send, range(count)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"requests": count, "per_second": round(count / elapsed),
            "p50_ms": round(latencies[len(latencies) // 2] * 1e3, 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1e3, 1)}


def fixed_rate(port: int, rate: int, seconds: int, offset: int) -> dict:
    latencies: list[float] = []
    lock = threading.Lock()
    session = requests.Session()
    session.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=64))

    def send(i: int) -> None:
        body = {"phone": f"+7916{offset + i:07d}", "request_id": f"f{offset + i}"}
        t = time.perf_counter()
        session.post(f"http://127.0.0.1:{port}/hooks/site", json=body, timeout=30)
        with lock:
            latencies.append(time.perf_counter() - t)
    start = time.perf_counter()
    with ThreadPoolExecutor(64) as pool:
        for i in range(rate * seconds):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
            pool.submit(send, i)
    latencies.sort()
    return {"rate": rate, "seconds": seconds, "p50_ms": round(statistics.median(latencies) * 1e3, 1),
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1e3, 1)}


def write_config(path: Path, url: str) -> Path:
    managers = "".join(f'\n[[managers]]\nname = "m{i}"\nteam = "sales"\nworking_days = ["mon", "tue", "wed", '
                       f'"thu", "fri", "sat", "sun"]\n' for i in range(5))
    # poll_interval 0.1 s: an idle `hub worker` looks for new events this often (default 0.5 s).
    path.write_text(f'[database]\nurl = {json.dumps(url)}\n[worker]\nthreads = 1\npoll_interval_seconds = 0.1\n'
                    f'[[sources]]\nname = "site"\n'
                    f'connector = "site_form"\n[[teams]]\nname = "sales"\n{managers}\n[[routing.rules]]\n'
                    f'name = "all"\nteam = "sales"\n')
    return path


STORE = textwrap.dedent('''
    """Deliveries stored as `POST /hooks/site` stores them (same intake code), without the HTTP part."""
    import json, sys
    from hub.config import load_config
    from hub.connector import InboundRequest
    from hub.intake.webhook import handle_webhook
    from hub.runtime import Hub
    hub = Hub(load_config(sys.argv[1]))
    for i in range(int(sys.argv[2])):
        body = json.dumps({"phone": f"+7915{i:07d}", "name": f"bench {i}", "request_id": f"b{i}",
                           "page_url": "https://example.com/?utm_source=bench&utm_campaign=load"}).encode()
        request = InboundRequest("POST", "", {}, {}, body, "application/json", None)
        reply = handle_webhook(hub, hub.sources["site"], request)
        assert reply.status == 200, reply
''')


def run_one(url: str, floor_url: str, workdir: Path, count: int, e2e_only: bool = False) -> dict:
    config = write_config(workdir / f"config-{abs(hash(url))}.toml", url)
    subprocess.run([HUB, "db", "upgrade", "--config", str(config)], check=True, capture_output=True)
    result: dict = {"database": url.split(":", 1)[0].split("+")[0]}
    if e2e_only:
        subprocess.run([sys.executable, "-c", STORE, str(config), str(count)], check=True)
        result["end_to_end"] = end_to_end(url, config, workdir)
        return result
    floor_port, hub_port = free_port(), free_port()
    floor = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(floor_port)],
                             env={**os.environ, "FLOOR_DB": floor_url},
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    serve = subprocess.Popen([HUB, "serve", "--config", str(config), "--port", str(hub_port), "--threads", "8"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(floor_port)
        wait_up(hub_port)
        load(hub_port, 200, 16, 900_000)                          # warm-up
        load(floor_port, 200, 16, 900_000)
        result["floor"] = load(floor_port, count, 16, 0)
        result["hub"] = load(hub_port, count, 16, 0)
        result["ack_ratio"] = round(result["hub"]["per_second"] / result["floor"]["per_second"], 2)
        result["fixed_rate"] = fixed_rate(hub_port, 200, 10, 0)
    finally:
        serve.terminate(), floor.terminate()
        serve.wait(), floor.wait()
    result["end_to_end"] = end_to_end(url, config, workdir)
    return result


RESET = textwrap.dedent('''
    import sys
    from sqlalchemy import text
    from hub.store.db import make_engine
    e = make_engine(sys.argv[1])
    with e.begin() as c:
        # Every stored delivery back to "pending", not due yet: the workers start and idle until released.
        c.execute(text("UPDATE inbound_event SET status='pending', attempts=0, lead_id=NULL, processed_at=NULL, "
                       "claim_token=NULL, claimed_until=NULL, next_attempt_at='2999-01-01' WHERE status <> 'rejected'"))
        for table in ("notification", "lead_history", "touch", "possible_duplicate", "person_merge", "sink_delivery",
                      "lead", "identity_key", "person", "routing_position"):
            c.execute(text(f"DELETE FROM {table}"))
        print(c.execute(text("SELECT COUNT(*) FROM inbound_event WHERE status='pending'")).scalar())
''')


def end_to_end(url: str, config: Path, workdir: Path) -> dict:
    """Stored deliveries → assigned leads by 1, 2 and 4 long-running `hub worker` processes. The workers are
    started first and idle (a process takes over a second to start: production workers run for days);
    then every delivery is made due at one instant, and the clock runs from that instant to the last
    event's processed_at. The store is checked after each run: one lead per delivery (all distinct people),
    every lead assigned, round-robin even."""
    from sqlalchemy import func, select, text, update

    from hub.store.db import make_engine
    from hub.store.models import InboundEvent, utcnow

    events = InboundEvent.__table__
    engine = make_engine(url)
    out = {}
    for workers in (1, 2, 4):
        pending = int(subprocess.run([sys.executable, "-c", RESET, url], check=True, capture_output=True,
                                     text=True).stdout.strip())
        logs = [workdir / f"worker-{workers}-{i}.log" for i in range(workers)]
        procs = [subprocess.Popen([HUB, "worker", "--config", str(config)], stdout=subprocess.DEVNULL,
                                  stderr=log.open("w")) for log in logs]
        try:
            deadline = time.monotonic() + 60
            while not all("started" in log.read_text() for log in logs):
                if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                    raise RuntimeError("workers did not start: " + " | ".join(log.read_text()[-500:] for log in logs))
                time.sleep(0.05)
            with engine.begin() as c:
                released = utcnow()
                c.execute(update(events).where(events.c.status == "pending").values(next_attempt_at=released))
            while True:
                time.sleep(0.1)
                with engine.connect() as c:
                    left = c.execute(text("SELECT COUNT(*) FROM inbound_event WHERE status IN "
                                          "('pending', 'processing')")).scalar()
                if not left:
                    break
        finally:
            for p in procs:
                p.terminate()
            for p in procs:
                p.wait(timeout=60)
        with engine.connect() as c:
            last = c.execute(select(func.max(events.c.processed_at))).scalar()
            leads, unassigned = c.execute(text("SELECT COUNT(*), COUNT(*) - COUNT(owner) FROM lead")).one()
            per_owner = [n for (n,) in c.execute(text("SELECT COUNT(*) FROM lead GROUP BY owner"))]
            not_processed = c.execute(text("SELECT COUNT(*) FROM inbound_event WHERE status NOT IN "
                                           "('processed', 'rejected')")).scalar()
        elapsed = (_utc(last) - released).total_seconds()
        checks = {"leads": leads == pending, "all_assigned": unassigned == 0, "all_processed": not_processed == 0,
                  "round_robin_even": max(per_owner) - min(per_owner) <= 1}
        if not all(checks.values()):
            raise RuntimeError(f"{workers} worker(s): the store is wrong after the run: {checks}, "
                               f"{leads} leads for {pending} deliveries, per owner {per_owner}")
        out[workers] = {"leads": pending, "seconds": round(elapsed, 2), "leads_per_second": round(pending / elapsed)}
        print(f"  end to end, {workers} worker(s): {out[workers]}", file=sys.stderr, flush=True)
    engine.dispose()
    return out


def _utc(moment: datetime | str) -> datetime:
    """func.max() loses the column's type: SQLite hands back its text, PostgreSQL an aware datetime."""
    if isinstance(moment, str):
        moment = datetime.fromisoformat(moment)
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--postgres", help="also run on this scratch PostgreSQL database (it is written to)")
    parser.add_argument("--e2e-only", action="store_true",
                        help="only the end-to-end part, on --requests deliveries stored without HTTP")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results.append(run_one(f"sqlite:///{workdir / 'hub.db'}", f"sqlite:///{workdir / 'floor.db'}", workdir,
                               args.requests, args.e2e_only))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        if args.postgres:
            results.append(run_one(args.postgres, args.postgres, workdir, args.requests, args.e2e_only))
    if args.e2e_only:
        print(f"{'database':<11}{'e2e 1w':>8}{'2w':>6}{'4w':>6}  (target: e2e ≥ 500 leads/s)")
        for r in results:
            e = r["end_to_end"]
            print(f"{r['database']:<11}{e[1]['leads_per_second']:>8}{e[2]['leads_per_second']:>6}"
                  f"{e[4]['leads_per_second']:>6}")
        RESULTS.mkdir(exist_ok=True)
        (RESULTS / "intake-e2e.json").write_text(json.dumps(results, indent=2))
        return
    print(f"{'database':<11}{'hub req/s':>10}{'floor req/s':>12}{'ratio':>7}{'p50 ms':>8}{'p99 ms':>8}"
          f"{'p99@200/s':>11}{'e2e 1w':>8}{'2w':>6}{'4w':>6}  (targets: ratio ≥ 0.5, p99@200/s < 50, e2e ≥ 500)")
    for r in results:
        e = r["end_to_end"]
        print(f"{r['database']:<11}{r['hub']['per_second']:>10}{r['floor']['per_second']:>12}{r['ack_ratio']:>7}"
              f"{r['hub']['p50_ms']:>8}{r['hub']['p99_ms']:>8}{r['fixed_rate']['p99_ms']:>11}"
              f"{e[1]['leads_per_second']:>8}{e[2]['leads_per_second']:>6}{e[4]['leads_per_second']:>6}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "intake.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
