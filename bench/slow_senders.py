"""Benchmark: does a normal sender get through while many connections trickle their bodies a byte a second?

One command:  .venv/bin/python -m bench.slow_senders [--slow 200] [--requests 200]

Starts `hub serve` on a fresh SQLite store on 127.0.0.1, and measures one normal sender (`POST /hooks/site`,
one delivery after another, each given 5 s) first alone, then beside --slow connections that sent their
headers with Content-Length 1000 and trickle the body one byte a second (so none finishes during the run).
Printed: answered, timed out, p50/p99 of the answered. Bounded: the normal sender stops after three
timeouts in a row, or after --seconds. Results go to bench/results/slow_senders.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import requests

from bench.intake import HUB, RESULTS, free_port, wait_up, write_config

REQUEST_TIMEOUT_SECONDS = 5
TIMEOUTS_IN_A_ROW_TO_STOP = 3


def open_slow(port: int, count: int) -> list[socket.socket]:
    head = (f"POST /hooks/site HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n"
            f"Content-Length: 1000\r\n\r\n").encode()
    slow = []
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        sock.sendall(head)     # past waitress's connection limit it still connects: the listen queue holds it
        slow.append(sock)
    return slow


def trickle(slow: list[socket.socket], stop: threading.Event) -> None:
    while not stop.wait(1):
        for sock in slow:
            with contextlib.suppress(OSError):      # closed by the server
                sock.send(b" ")


def normal_sender(port: int, count: int, seconds: float, offset: int) -> dict:
    latencies: list[float] = []
    timeouts = in_a_row = 0
    session = requests.Session()
    deadline = time.monotonic() + seconds
    for i in range(count):
        if in_a_row >= TIMEOUTS_IN_A_ROW_TO_STOP or time.monotonic() > deadline:
            break
        body = {"phone": f"+7917{offset + i:07d}", "name": f"bench {i}", "request_id": f"s{offset + i}"}
        started = time.perf_counter()
        try:
            resp = session.post(f"http://127.0.0.1:{port}/hooks/site", json=body, timeout=REQUEST_TIMEOUT_SECONDS)
        except requests.Timeout:
            timeouts += 1
            in_a_row += 1
            session = requests.Session()       # a timed-out connection is not reused
            continue
        in_a_row = 0
        if resp.ok:
            latencies.append(time.perf_counter() - started)
    latencies.sort()
    return {"requests": count, "answered": len(latencies), "timed_out": timeouts,
            "p50_ms": round(latencies[len(latencies) // 2] * 1e3, 1) if latencies else None,
            "p99_ms": round(latencies[int(len(latencies) * 0.99)] * 1e3, 1) if latencies else None}


def run_case(port: int, slow_count: int, count: int, seconds: float, offset: int) -> dict:
    slow = open_slow(port, slow_count)
    stop = threading.Event()
    trickler = threading.Thread(target=trickle, args=(slow, stop), daemon=True)
    trickler.start()
    try:
        time.sleep(2 if slow_count else 0)    # every slow sender has trickled before the normal one starts
        return {"slow_senders": slow_count, **normal_sender(port, count, seconds, offset)}
    finally:
        stop.set()
        trickler.join()
        for sock in slow:
            sock.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=200, help="trickling connections (default 200)")
    parser.add_argument("--requests", type=int, default=200, help="the normal sender's deliveries per case")
    parser.add_argument("--seconds", type=float, default=60, help="the most a case's normal sender runs")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        config = write_config(Path(tmp) / "config.toml", f"sqlite:///{Path(tmp) / 'hub.db'}")
        port = free_port()
        hub = subprocess.Popen([HUB, "serve", "--config", str(config), "--port", str(port)],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            wait_up(port)
            results = [run_case(port, slow, args.requests, args.seconds, offset=n * args.requests)
                       for n, slow in enumerate((0, args.slow))]
        finally:
            hub.terminate()
            hub.wait()
    print(f"{'slow senders':>13}{'answered':>10}{'timed out':>11}{'p50 ms':>8}{'p99 ms':>8}")
    for r in results:
        answered = f"{r['answered']}/{r['requests']}"
        p50, p99 = (r[k] if r[k] is not None else "-" for k in ("p50_ms", "p99_ms"))
        print(f"{r['slow_senders']:>13}{answered:>10}{r['timed_out']:>11}{p50:>8}{p99:>8}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "slow_senders.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
