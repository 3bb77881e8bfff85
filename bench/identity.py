"""Benchmark: what recognising a person and attaching a touch costs per lead, as the store grows.

One command:  .venv/bin/python -m bench.identity [--deliveries 2000] [--large 1000000] [--postgres URL]
              [--import-rows 100000] [--import-only]

For each store size (10k, then --large persons, generated with their phones, e-mails and leads), the same
set of deliveries (half from known persons spelled differently, half from new ones) is stored and processed
by a real Worker, one transaction per event as in production. Printed: µs per lead at each size and the
ratio large/small (target ≤ 1.5: the cost must not grow with the store). Also a 100k-row CSV import, with
its rate, against a floor measured in the same run: a plain executemany of the same rows into one table.
Results are written to bench/results/identity.json.
"""

from __future__ import annotations

import argparse
import csv
import json
import random
import sys
import tempfile
import time
from pathlib import Path

from sqlalchemy import Column, MetaData, String, Table, insert, select, text

from bench.gen_csv import write as write_csv
from hub.config import parse_config
from hub.intake.importer import check_header, import_source, run_import
from hub.pipeline.process import process_event
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from hub.store import schema as store
from hub.store.db import transaction
from hub.store.models import IdentityKey, InboundEvent, Lead, Person, utcnow

RESULTS = Path(__file__).parent / "results"
# Issue 21: a 100k-row CSV import under 30 s (it was 60 s before).
IMPORT_TARGET_SECONDS = 30
PHONE_BASE = 10_000_000


def phone_of(n: int) -> str:
    return f"+79{PHONE_BASE + n:09d}"


def make_hub(url: str, workdir: Path) -> Hub:
    config = parse_config({"sources": [{"name": "site", "connector": "site_form"}],
                           "worker": {"backoff_base_seconds": 0}}, workdir)
    config.database_url = url
    hub = Hub(config)
    store.upgrade(hub.engine)
    return hub


def populate(hub: Hub, persons: int, batch: int = 50_000) -> float:
    """Generate ``persons`` persons, each with a phone key (every third an e-mail too) and an open lead."""
    started = time.perf_counter()
    now = utcnow()
    with transaction(hub.engine) as s:
        start = (s.execute(text("SELECT COALESCE(MAX(id), 0) FROM person")).scalar_one())
    for lo in range(start, persons, batch):
        hi = min(persons, lo + batch)
        with transaction(hub.engine) as s:
            conn = s.connection()
            conn.execute(insert(Person.__table__), [{"id": n + 1, "name": f"p{n}", "created_at": now}
                                                    for n in range(lo, hi)])
            keys = [{"kind": "phone", "value": phone_of(n), "person_id": n + 1, "created_at": now}
                    for n in range(lo, hi)]
            keys += [{"kind": "email", "value": f"p{n}@example.ru", "person_id": n + 1, "created_at": now}
                     for n in range(lo, hi, 3)]
            conn.execute(insert(IdentityKey.__table__), keys)
            conn.execute(insert(Lead.__table__), [
                {"person_id": n + 1, "status": "new", "source": "site", "tags": [], "reopened_count": 0,
                 "created_at": now, "updated_at": now} for n in range(lo, hi)])
    if hub.engine.dialect.name == "postgresql":
        # The generated rows set their ids themselves; the sequence must continue after them.
        with transaction(hub.engine) as s:
            s.execute(text("SELECT setval(pg_get_serial_sequence('person', 'id'), (SELECT MAX(id) FROM person))"))
    return time.perf_counter() - started


def deliveries(persons: int, count: int, seed: int, run: int) -> list[dict]:
    rnd = random.Random(seed)
    out = []
    for i in range(count):
        if i % 2 == 0:                          # a known person, spelled the national way
            n = rnd.randrange(persons)
            digits = phone_of(n)[2:]
            out.append({"phone": f"8 ({digits[:3]}) {digits[3:6]}-{digits[6:8]}-{digits[8:]}", "delivery": i})
        else:                                   # a new person (numbers above every generated one)
            out.append({"phone": phone_of(900_000_000 + run * count + i), "email": f"new{run}.{i}@example.ru"})
    return out


def _store_pending(hub: Hub, payloads: list[dict], run: int) -> list[int]:
    now = utcnow()
    with transaction(hub.engine) as s:
        s.connection().execute(insert(InboundEvent.__table__), [
            {"source": "site", "external_id": f"bench:{run}:{i}", "received_at": now, "method": "POST",
             "headers": {}, "body": b"", "payload": p, "status": "pending", "attempts": 0, "next_attempt_at": now}
            for i, p in enumerate(payloads)])
        return list(s.scalars(select(InboundEvent.id).where(InboundEvent.external_id.like(f"bench:{run}:%"))))


def measure_pipeline(hub: Hub, payloads: list[dict], run: int) -> float:
    """µs per lead of map → normalise → identify → touch alone: every event in one transaction, so neither
    commits (fsync) nor claims hide what the store's size does to recognising a person."""
    ids = _store_pending(hub, payloads, run)
    source = hub.sources["site"]
    with transaction(hub.engine) as s:
        events = list(s.scalars(select(InboundEvent).where(InboundEvent.id.in_(ids))))
        started = time.perf_counter()
        for event in events:
            outcome = process_event(s, source, event, hub.config)
            event.status, event.lead_id = outcome.status, outcome.lead_id
        elapsed = time.perf_counter() - started
    return elapsed / len(payloads) * 1e6


def measure_worker(hub: Hub, payloads: list[dict], run: int) -> float:
    """µs per lead end to end through a real Worker: claim, process and commit each event on its own."""
    _store_pending(hub, payloads, run)
    started = time.perf_counter()
    handled = Worker(hub, "bench").drain()
    elapsed = time.perf_counter() - started
    assert handled == len(payloads), (handled, len(payloads))
    return elapsed / len(payloads) * 1e6


def bench_import(hub: Hub, workdir: Path, rows: int) -> dict:
    path = workdir / "import.csv"
    write_csv(str(path), rows)
    # Floor: the same rows, parsed and inserted as they are into one table, no mapping, no identity.
    floor_table = Table("bench_floor", MetaData(), *(Column(f"c{i}", String) for i in range(7)))
    floor_table.drop(hub.engine, checkfirst=True)      # a scratch PostgreSQL database used before
    floor_table.create(hub.engine)
    started = time.perf_counter()
    with path.open(encoding="utf-8") as f, transaction(hub.engine) as s:
        reader = csv.reader(f, delimiter=";")
        next(reader)
        s.connection().execute(insert(floor_table), [{f"c{i}": v for i, v in enumerate(r)} for r in reader])
    floor = time.perf_counter() - started
    source = import_source(hub, "old_crm", str(path), "csv_import", {}, "utf-8", ";", "UTC", [])
    check_header(source)
    started = time.perf_counter()
    report = run_import(hub, source)
    seconds = time.perf_counter() - started
    return {"rows": rows, "seconds": round(seconds, 2), "rows_per_second": round(rows / seconds),
            "floor_seconds": round(floor, 2), "ratio_to_floor": round(seconds / floor, 1),
            "created": report.created, "merged": report.merged, "target_seconds": IMPORT_TARGET_SECONDS,
            "meets_target": seconds < IMPORT_TARGET_SECONDS}


def run_import_only(url: str, workdir: Path, import_rows: int) -> dict:
    """The import alone, on a fresh store (its own results file: identity.json keeps the full run's)."""
    hub = make_hub(url, workdir)
    result = {"database": hub.engine.dialect.name, "import": bench_import(hub, workdir, import_rows)}
    hub.dispose()
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"identity_import_{result['database']}.json").write_text(json.dumps(result, indent=2))
    return result


def run(url: str, workdir: Path, small: int, large: int, count: int, import_rows: int) -> dict:
    hub = make_hub(url, workdir)
    populate(hub, small)
    measure_pipeline(hub, deliveries(small, 200, seed=99, run=99), run=99)   # warm-up: caches, compiled SQL
    small_us = measure_pipeline(hub, deliveries(small, count, seed=1, run=1), run=1)
    small_worker_us = measure_worker(hub, deliveries(small, count // 4, seed=3, run=3), run=3)
    fill_seconds = populate(hub, large)
    large_us = measure_pipeline(hub, deliveries(large, count, seed=2, run=2), run=2)
    large_worker_us = measure_worker(hub, deliveries(large, count // 4, seed=4, run=4), run=4)
    result = {"database": hub.engine.dialect.name, "deliveries": count,
              "small_persons": small, "small_us_per_lead": round(small_us),
              "large_persons": large, "large_us_per_lead": round(large_us),
              "ratio": round(large_us / small_us, 2), "target_ratio": 1.5,
              "meets_target": large_us / small_us <= 1.5, "generate_seconds": round(fill_seconds, 1),
              "worker_small_us_per_lead": round(small_worker_us), "worker_large_us_per_lead": round(large_worker_us)}
    if import_rows:
        import_hub = make_hub(url.replace("bench.db", "bench_import.db"), workdir)
        result["import"] = bench_import(import_hub, workdir, import_rows)
        import_hub.dispose()
    hub.dispose()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--deliveries", type=int, default=2000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--large", type=int, default=1_000_000)
    parser.add_argument("--import-rows", type=int, default=100_000)
    parser.add_argument("--postgres", help="also run against this (empty, scratch) PostgreSQL database URL")
    parser.add_argument("--import-only", action="store_true",
                        help="only the CSV import (on SQLite, and on --postgres if given)")
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        if args.import_only:
            results.append(run_import_only(f"sqlite:///{workdir / 'bench_import.db'}", workdir, args.import_rows))
            if args.postgres:
                results.append(run_import_only(args.postgres, workdir, args.import_rows))
            print_imports(results)
            return
        print(f"sqlite: generating {args.small} then {args.large} persons …", file=sys.stderr, flush=True)
        results.append(run(f"sqlite:///{workdir / 'bench.db'}", workdir, args.small, args.large, args.deliveries,
                           args.import_rows))
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
        if args.postgres:
            print(f"postgresql: generating {args.small} then {args.large} persons …", file=sys.stderr, flush=True)
            results.append(run(args.postgres, workdir, args.small, args.large, args.deliveries, 0))
    print("dedup + touch per lead (pipeline in one transaction), and end to end through a worker (each event")
    print("claimed and committed on its own, fsync included):")
    print(f"{'database':<11}{'persons':>10}{'µs/lead':>10}{'persons':>10}{'µs/lead':>10}{'ratio':>8}  target ≤ 1.5"
          f"   worker µs/lead small/large")
    for r in results:
        print(f"{r['database']:<11}{r['small_persons']:>10}{r['small_us_per_lead']:>10}{r['large_persons']:>10}"
              f"{r['large_us_per_lead']:>10}{r['ratio']:>8}  {'ok    ' if r['meets_target'] else 'MISSED'}"
              f"         {r['worker_small_us_per_lead']}/{r['worker_large_us_per_lead']}")
    print_imports(results)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "identity.json").write_text(json.dumps(results, indent=2))


def print_imports(results: list[dict]) -> None:
    for r in results:
        if "import" in r:
            i = r["import"]
            print(f"import {i['rows']} CSV rows ({r['database']}): {i['seconds']} s, {i['rows_per_second']} rows/s; "
                  f"plain insert floor {i['floor_seconds']} s (×{i['ratio_to_floor']}); target < "
                  f"{i['target_seconds']} s: {'ok' if i['meets_target'] else 'MISSED'}")


if __name__ == "__main__":
    main()
