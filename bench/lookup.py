"""Benchmark: caller lookup latency (GET /api/v1/lookup's work, in-process) at 1M stored persons.

One command:  .venv/bin/python -m bench.lookup [--persons 1000000] [--lookups 2000] [--postgres URL]

The store gets --persons persons with a phone (every third an e-mail) and an open lead each (bench.identity's
generator); then --lookups numbers — half known, spelled the national way ("8 (9xx) …"), half unknown — are
looked up one transaction each, as the API does, and p50/p99 are printed for each half together with the
live-call routing decision (hub.pipeline.calls.decide) for known callers. Target: p99 under 10 ms in-process.
Results go to bench/results/lookup.json.
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

from bench.identity import make_hub, phone_of, populate
from hub.pipeline.calls import decide, lookup
from hub.store.db import transaction
from hub.store.models import utcnow

RESULTS = Path(__file__).parent / "results"


def national(e164: str) -> str:
    d = e164[2:]
    return f"8 ({d[:3]}) {d[3:6]}-{d[6:8]}-{d[8:]}"


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {"p50_ms": statistics.median(ordered) * 1000, "p99_ms": ordered[int(len(ordered) * 0.99) - 1] * 1000,
            "max_ms": ordered[-1] * 1000}


def run(url: str, workdir: Path, persons: int, lookups: int) -> dict:
    hub = make_hub(url, workdir)
    print(f"{hub.engine.dialect.name}: generating {persons} persons …", file=sys.stderr, flush=True)
    populate(hub, persons)
    rnd = random.Random(7)
    known = [national(phone_of(rnd.randrange(persons))) for _ in range(lookups // 2)]
    unknown = [national(phone_of(900_000_000 + i)) for i in range(lookups // 2)]
    out: dict = {"database": hub.engine.dialect.name, "persons": persons}
    for name, numbers, expect in (("known", known, True), ("unknown", unknown, False)):
        times = []
        for number in numbers:
            started = time.perf_counter()
            with transaction(hub.engine, read_only=True) as s:
                found = lookup(s, hub.config, number, "RU")
            times.append(time.perf_counter() - started)
            assert (found is not None) == expect, number
        out[f"lookup_{name}"] = percentiles(times)
    times = []
    for number in known:
        started = time.perf_counter()
        with transaction(hub.engine, read_only=True) as s:
            decide(s, hub.config, "site", number, "RU", utcnow())
        times.append(time.perf_counter() - started)
    out["call_decision_known"] = percentiles(times)
    hub.dispose()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--persons", type=int, default=1_000_000)
    parser.add_argument("--lookups", type=int, default=2000)
    parser.add_argument("--postgres", help="also run against this (empty, scratch) PostgreSQL database URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results = [run(f"sqlite:///{workdir / 'lookup.db'}", workdir, args.persons, args.lookups)]
        if args.postgres:
            results.append(run(args.postgres, workdir, args.persons, args.lookups))
    for r in results:
        print(f"\n{r['database']}, {r['persons']} persons: ms per call, in-process, one transaction each")
        print(f"{'':<28} {'p50':>7} {'p99':>7} {'max':>7}")
        for key in ("lookup_known", "lookup_unknown", "call_decision_known"):
            p = r[key]
            print(f"{key:<28} {p['p50_ms']:>7.2f} {p['p99_ms']:>7.2f} {p['max_ms']:>7.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "lookup.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {RESULTS / 'lookup.json'}")


if __name__ == "__main__":
    main()
