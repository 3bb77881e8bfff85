"""Benchmark: is intake slower while a sink is down? Webhook acknowledgement with no sink, and with a sink
whose endpoint answers every request after a second with 503.

One command:  .venv/bin/python -m bench.sink_outage [--rate 100] [--seconds 10]

Each case runs `hub run` (web, worker and forwarder in one process, as the embedded default) on a fresh
SQLite store and sends --rate deliveries a second for --seconds; printed: p50/p99 of the acknowledgement,
how many leads were made, how many forwarding attempts the dead sink received, and the p99 ratio (failing
sink / no sink). The forwarder runs on its own thread with no transaction open while it waits, so the
ratio should stay near 1. Results go to bench/results/sink_outage.json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from sqlalchemy import func, select

from bench.intake import HUB, RESULTS, fixed_rate, free_port, wait_up, write_config
from hub.store.db import make_engine
from hub.store.models import Lead

WHSEC = "whsec_MDEyMzQ1Njc4OWFiY2RlZjAxMjM0NTY3ODlhYmNkZWY="


class DeadSink(BaseHTTPRequestHandler):
    hits = 0

    def do_POST(self):
        DeadSink.hits += 1
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(1.0)
        self.send_response(503)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


def run_case(workdir: Path, name: str, sink_port: int | None, rate: int, seconds: int) -> dict:
    db = workdir / f"{name}.db"
    config = write_config(workdir / f"{name}.toml", f"sqlite:///{db}")
    if sink_port:
        config.write_text(config.read_text() + f'\n[[sinks]]\nname = "dead"\ntype = "webhook"\n'
                          f'url = "http://127.0.0.1:{sink_port}/leads"\nsecret = "{WHSEC}"\n'
                          f'rate_per_second = 50\nburst = 50\ntimeout_seconds = 5\n')
    port = free_port()
    hub = subprocess.Popen([HUB, "run", "--config", str(config), "--port", str(port)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_up(port)
        fixed_rate(port, rate, 2, 800_000)                       # warm-up
        hits_before = DeadSink.hits
        result = fixed_rate(port, rate, seconds, 0)
        time.sleep(2)
        result["sink_attempts"] = DeadSink.hits - hits_before
    finally:
        hub.terminate()
        hub.wait()
    engine = make_engine(f"sqlite:///{db}")
    with engine.connect() as conn:
        result["leads"] = conn.execute(select(func.count()).select_from(Lead.__table__)).scalar()
    engine.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=int, default=100)
    parser.add_argument("--seconds", type=int, default=10)
    args = parser.parse_args()
    sink = ThreadingHTTPServer(("127.0.0.1", 0), DeadSink)
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        subprocess.run([HUB, "--help"], check=True, capture_output=True)
        results = {"no_sink": run_case(workdir, "no_sink", None, args.rate, args.seconds),
                   "dead_sink": run_case(workdir, "dead_sink", sink.server_port, args.rate, args.seconds)}
    sink.shutdown()
    results["p99_ratio"] = round(results["dead_sink"]["p99_ms"] / results["no_sink"]["p99_ms"], 2)
    print(f"{'case':<12}{'p50 ms':>8}{'p99 ms':>8}{'leads':>7}{'sink attempts':>15}")
    for name in ("no_sink", "dead_sink"):
        r = results[name]
        print(f"{name:<12}{r['p50_ms']:>8}{r['p99_ms']:>8}{r['leads']:>7}{r.get('sink_attempts', 0):>15}")
    print(f"p99 with a dead sink / without: {results['p99_ratio']}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "sink_outage.json").write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    sys.exit(main())
