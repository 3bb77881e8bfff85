"""Benchmark: webhook acknowledgement against a floor, and end-to-end leads/s with 1, 2 and 4 workers.

One command:  .venv/bin/python -m bench.intake [--postgres URL] [--requests 3000]

(1) `POST /hooks/site` through `hub serve` (waitress, 8 threads) under 16 concurrent senders: throughput and
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
from pathlib import Path

import requests

RESULTS = Path(__file__).parent / "results"
HUB = str(Path(sys.executable).with_name("hub"))

FLOOR_APP = textwrap.dedent('''
    """The floor: read the body, insert it, commit, answer. Same server, same database, same durability."""
    import os, sys
    from sqlalchemy import text
    from waitress import serve
    from hub.db import make_engine

    engine = make_engine(os.environ["FLOOR_DB"])
    with engine.begin() as c:
        c.execute(text("CREATE TABLE IF NOT EXISTS floor (id INTEGER PRIMARY KEY "
                       + ("AUTOINCREMENT" if engine.dialect.name == "sqlite" else "GENERATED ALWAYS AS IDENTITY")
                       + ", body BYTEA NOT NULL)".replace("BYTEA", "BLOB" if engine.dialect.name == "sqlite" else "BYTEA")))
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
    return {"requests": count, "per_second": round(count / elapsed), "p50_ms": round(latencies[len(latencies) // 2] * 1e3, 1),
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
    path.write_text(f'[database]\nurl = {json.dumps(url)}\n[worker]\nthreads = 1\n[[sources]]\nname = "site"\n'
                    f'connector = "site_form"\n[[teams]]\nname = "sales"\n{managers}\n[[routing.rules]]\n'
                    f'name = "all"\nteam = "sales"\n')
    return path


def run_one(url: str, floor_url: str, workdir: Path, count: int) -> dict:
    config = write_config(workdir / f"config-{abs(hash(url))}.toml", url)
    subprocess.run([HUB, "db", "upgrade", "--config", str(config)], check=True, capture_output=True)
    result: dict = {"database": url.split(":", 1)[0].split("+")[0]}
    floor_port, hub_port = free_port(), free_port()
    floor = subprocess.Popen([sys.executable, "-c", FLOOR_APP, str(floor_port)], env={**os.environ, "FLOOR_DB": floor_url},
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
    # (2) end to end: what the load stored (count + warm-up + fixed rate), taken by 1, 2, 4 workers.
    e2e = {}
    for workers in (1, 2, 4):
        reset = [sys.executable, "-c", textwrap.dedent(f'''
            from sqlalchemy import text
            from hub.db import make_engine
            e = make_engine({url!r})
            with e.begin() as c:
                c.execute(text("UPDATE inbound_event SET status='pending', attempts=0, lead_id=NULL, "
                               "next_attempt_at=received_at WHERE status <> 'rejected'"))
                for table in ("notification", "lead_history", "touch", "possible_duplicate", "person_merge",
                              "lead", "identity_key", "person", "routing_position"):
                    c.execute(text(f"DELETE FROM {{table}}"))
                print(c.execute(text("SELECT COUNT(*) FROM inbound_event WHERE status='pending'")).scalar())
        ''')]
        pending = int(subprocess.run(reset, check=True, capture_output=True, text=True).stdout.strip())
        started = time.perf_counter()
        procs = [subprocess.Popen([HUB, "worker", "--once", "--config", str(config)], stdout=subprocess.DEVNULL,
                                  stderr=subprocess.DEVNULL) for _ in range(workers)]
        for p in procs:
            p.wait()
        e2e[workers] = {"leads": pending, "leads_per_second": round(pending / (time.perf_counter() - started))}
    result["end_to_end"] = e2e
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--postgres", help="also run on this scratch PostgreSQL database (it is written to)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results.append(run_one(f"sqlite:///{workdir / 'hub.db'}", f"sqlite:///{workdir / 'floor.db'}", workdir,
                               args.requests))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        if args.postgres:
            results.append(run_one(args.postgres, args.postgres, workdir, args.requests))
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
