"""Benchmark: how long the web app's pages and API calls take with 1k and with 100k leads in the store.

One command:  .venv/bin/python -m bench.pages [--small 1000] [--large 100000] [--repeat 15] [--postgres URL]

The store is filled with generated leads spread over 90 days, five sources, three warmths, eight managers
(with touches carrying UTM marks); then each page is requested through the real app (Flask's test client:
routing, access check, queries, templates — no network) ``--repeat`` times as a signed-in user, and the
median is printed. The ratio large/small shows whether a page's cost grows with the store: the inbox and
report queries must be served by indexes, so it should stay near 1 for the inbox and grow with the leads
*in the chosen range* (not in the store) for the report. Results go to bench/results/pages.json.
"""

from __future__ import annotations

import argparse
import json
import random
import re
import statistics
import sys
import tempfile
import time
from datetime import timedelta
from pathlib import Path

from sqlalchemy import insert, text

from hub.config import parse_config
from hub.desk.access import add_user
from hub.runtime import Hub
from hub.store import schema as store
from hub.store.db import transaction
from hub.store.models import IdentityKey, InboundEvent, Lead, Person, Touch, utcnow
from hub.web.app import create_app

RESULTS = Path(__file__).parent / "results"
SOURCES = ["site", "ads", "seo", "vk", "calls"]
MANAGERS = [f"Manager {i}" for i in range(8)]
PASSWORD = "benchmark password"


def make_hub(url: str, workdir: Path) -> Hub:
    config = parse_config({
        "sources": [{"name": s, "connector": "site_form"} for s in SOURCES],
        "teams": [{"name": "sales", "lead": MANAGERS[0]}],
        "managers": [{"name": m, "team": "sales"} for m in MANAGERS],
    }, workdir)
    config.database_url = url
    hub = Hub(config)
    store.upgrade(hub.engine)
    return hub


def populate(hub: Hub, upto: int, batch: int = 20_000) -> float:
    """Add leads (with a person, a phone key, an event and a touch each) until the store holds ``upto``."""
    started = time.perf_counter()
    now = utcnow()
    rnd = random.Random(upto)
    with transaction(hub.engine) as s:
        start = s.execute(text("SELECT COALESCE(MAX(id), 0) FROM lead")).scalar_one()
    for lo in range(start, upto, batch):
        hi = min(upto, lo + batch)
        rows = range(lo, hi)
        at = {n: now - timedelta(days=90 * (upto - n) / upto, seconds=rnd.randrange(60)) for n in rows}
        with transaction(hub.engine) as s:
            conn = s.connection()
            conn.execute(insert(Person.__table__), [{"id": n + 1, "name": f"Client {n}", "created_at": at[n]}
                                                    for n in rows])
            conn.execute(insert(IdentityKey.__table__), [
                {"kind": "phone", "value": f"+7912{n:07d}", "person_id": n + 1, "created_at": at[n]} for n in rows])
            conn.execute(insert(Lead.__table__), [
                {"id": n + 1, "person_id": n + 1, "status": rnd.choice(["new", "in_work", "converted", "refused"]),
                 "source": SOURCES[n % 5], "warmth": rnd.choice(["cold", "warm", "hot"]),
                 "owner": MANAGERS[n % 8], "tags": [], "reopened_count": 0, "created_at": at[n], "updated_at": at[n],
                 "utm_campaign": f"campaign_{n % 12}", "sla_due_at": at[n] + timedelta(minutes=15)} for n in rows])
            conn.execute(insert(InboundEvent.__table__), [
                {"id": n + 1, "source": SOURCES[n % 5], "external_id": f"bench:{n}", "received_at": at[n],
                 "method": "POST", "headers": {}, "body": b"{}", "payload": {}, "status": "processed",
                 "attempts": 1, "lead_id": n + 1} for n in rows])
            conn.execute(insert(Touch.__table__), [
                {"lead_id": n + 1, "event_id": n + 1, "source": SOURCES[n % 5], "channel": "site_form", "at": at[n],
                 "utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": f"campaign_{n % 12}",
                 "click_ids": {}, "contacts": [], "flags": []} for n in rows])
    if hub.engine.dialect.name == "postgresql":
        with transaction(hub.engine) as s:
            for table in ("person", "inbound_event", "lead"):
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT MAX(id) FROM {table}))"))
            s.execute(text("ANALYZE"))
    return time.perf_counter() - started


def signed_in(app, login: str):
    client = app.test_client()
    token = re.search(r'name="csrf_token" value="([^"]+)"', client.get("/login").text).group(1)
    r = client.post("/login", data={"login": login, "password": PASSWORD, "csrf_token": token})
    assert r.status_code == 302, r.status_code
    return client


def pages_to_time(hub: Hub) -> list[tuple[str, str, str]]:
    with transaction(hub.engine, read_only=True) as s:
        newest = s.execute(text("SELECT MAX(id) FROM lead")).scalar_one()
    return [
        ("inbox, admin, newest 50", "admin", "/leads"),
        ("inbox, manager's own", "manager", "/leads"),
        ("inbox, filtered: new + hot + source", "admin", "/leads?status=new&warmth=hot&source=ads"),
        ("inbox, overdue only", "admin", "/leads?overdue=1"),
        ("inbox, page 2 (keyset)", "admin", f"/leads?before={newest - 50}"),
        ("lead card", "admin", f"/leads/{newest}"),
        ("report, 30 days by source", "admin", "/report"),
        ("report, 30 days by campaign", "admin", "/report?group_by=utm_campaign"),
        ("channels health", "admin", "/channels"),
        ("API /leads?limit=50", "api", "/api/v1/leads?limit=50"),
    ]


def measure(hub: Hub, repeat: int) -> dict[str, float]:
    app = create_app(hub=hub)
    clients = {"admin": signed_in(app, "admin@bench"), "manager": signed_in(app, "manager@bench")}
    with transaction(hub.engine) as s:
        from hub.desk.access import add_token
        _, plain = add_token(s, "admin@bench", "bench")
    api = app.test_client()
    out = {}
    for name, who, path in pages_to_time(hub):
        times = []
        for _ in range(repeat):
            started = time.perf_counter()
            r = api.get(path, headers={"Authorization": f"Bearer {plain}"}) if who == "api" else \
                clients[who].get(path)
            times.append(time.perf_counter() - started)
            assert r.status_code == 200, (path, r.status_code)
        out[name] = statistics.median(times) * 1000
    return out


def run(url: str, workdir: Path, small: int, large: int, repeat: int) -> dict:
    hub = make_hub(url, workdir)
    with transaction(hub.engine) as s:
        add_user(s, hub.config, "admin@bench", PASSWORD, "admin")
        add_user(s, hub.config, "manager@bench", PASSWORD, "manager", MANAGERS[3])
    results = {"database": hub.engine.dialect.name, "sizes": {}}
    for size in (small, large):
        print(f"{hub.engine.dialect.name}: filling to {size} leads …", file=sys.stderr, flush=True)
        populate(hub, size)
        results["sizes"][size] = measure(hub, repeat)
    hub.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--postgres", help="also run against this (empty, scratch) PostgreSQL database URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results = [run(f"sqlite:///{workdir / 'pages.db'}", workdir, args.small, args.large, args.repeat)]
        if args.postgres:
            results.append(run(args.postgres, workdir, args.small, args.large, args.repeat))
    for r in results:
        small, large = r["sizes"][args.small], r["sizes"][args.large]
        print(f"\n{r['database']}: median ms per request ({args.repeat} requests each)")
        print(f"{'page':<40} {args.small:>9} {args.large:>9}  ratio")
        for name in small:
            print(f"{name:<40} {small[name]:>9.1f} {large[name]:>9.1f}  {large[name] / small[name]:>5.2f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pages.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {RESULTS / 'pages.json'}")


if __name__ == "__main__":
    main()
