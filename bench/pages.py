"""Benchmark: how long the web app's pages and API calls take with 1k and with 100k leads in the store.

One command:  .venv/bin/python -m bench.pages [--small 1000] [--large 100000] [--repeat 15]
                                              [--search-repeat 100] [--postgres URL]

The store is filled with generated leads spread over 90 days, five sources, three warmths, eight managers
(with touches carrying UTM marks, Russian and Latin names, an e-mail for every third person, tags on some
leads, call-back tasks on some in work); then each page is requested through the real app (Flask's test
client: routing, access check, queries, templates — no network) ``--repeat`` times as a signed-in user, and
the median is printed. The ratio large/small shows whether a page's cost grows with the store: the inbox and
report queries must be served by indexes, so it should stay near 1 for the inbox and grow with the leads
*in the chosen range* (not in the store) for the report. Then the API's search, tag filter and due-first
order are requested ``--search-repeat`` times each and their p50 and p99 printed: a search by name reads
every person's name, so it grows with the store. Results go to bench/results/pages.json.
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
from urllib.parse import quote

from sqlalchemy import insert, text

from hub.config import parse_config
from hub.desk.access import add_user
from hub.runtime import Hub
from hub.store import schema as store
from hub.store.db import transaction
from hub.store.models import IdentityKey, InboundEvent, Lead, LeadHistory, LeadTask, Person, Touch, utcnow
from hub.web.app import create_app

RESULTS = Path(__file__).parent / "results"
SOURCES = ["site", "ads", "seo", "vk", "calls"]
MANAGERS = [f"Manager {i}" for i in range(8)]
PASSWORD = "benchmark password"
FIRST_NAMES = ["Иван", "Мария", "Алексей", "Ольга", "Дмитрий", "Анна", "Сергей", "Елена", "John", "Anna", "Peter",
               "Kate"]
LAST_NAMES = ["Петров", "Смирнова", "Иванов", "Кузнецова", "Соколов", "Попова", "Лебедев", "Новикова", "Morozov",
              "Volkova", "Smith", "Brown", "Фёдоров", "Орлова", "Ivanov", "Зайцев", "Белова", "Козлов", "Lee", "Stone"]
STATUSES = ["new", "in_work", "converted", "refused"]
# Lead n gets TAG_SETS[n % 50]: VIP on 1 lead in 10, "Перезвонить" on 1 in 50.
TAG_SETS = [["VIP"]] * 4 + [["опт", "VIP"], ["Перезвонить"]] + [[]] * 44


def _phone(n: int) -> str:
    return f"+7912{n:07d}"


def make_hub(url: str, workdir: Path) -> Hub:
    config = parse_config({
        "sources": [{"name": s, "connector": "site_form"} for s in SOURCES],
        "teams": [{"name": "north", "lead": MANAGERS[0]}, {"name": "south", "lead": MANAGERS[4]}],
        "managers": [{"name": m, "team": "north" if i < 4 else "south"} for i, m in enumerate(MANAGERS)],
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
        status = {n: rnd.choice(STATUSES) for n in rows}
        waited = {n: rnd.randrange(30, 3600) for n in rows}           # seconds from assignment to taken
        reasons = [r.code for r in hub.config.refuse_reasons] or ["no_answer"]
        with transaction(hub.engine) as s:
            conn = s.connection()
            conn.execute(insert(Person.__table__), [
                {"id": n + 1, "name": f"{FIRST_NAMES[n % 12]} {LAST_NAMES[n // 12 % 20]}", "created_at": at[n]}
                for n in rows])
            conn.execute(insert(IdentityKey.__table__), [
                {"kind": "phone", "value": _phone(n), "person_id": n + 1, "created_at": at[n]} for n in rows])
            conn.execute(insert(IdentityKey.__table__), [
                {"kind": "email", "value": f"client{n}@example.ru", "person_id": n + 1, "created_at": at[n]}
                for n in rows if n % 3 == 0])
            conn.execute(insert(Lead.__table__), [
                {"id": n + 1, "person_id": n + 1, "status": status[n],
                 "source": SOURCES[n % 5], "warmth": rnd.choice(["cold", "warm", "hot"]),
                 "owner": MANAGERS[n % 8], "tags": TAG_SETS[n % 50], "reopened_count": 0, "created_at": at[n],
                 "updated_at": at[n], "utm_campaign": f"campaign_{n % 12}", "assigned_at": at[n],
                 "taken_at": at[n] + timedelta(seconds=waited[n]) if status[n] != "new" else None,
                 "refuse_reason": reasons[n % len(reasons)] if status[n] == "refused" else None,
                 "amount": 1000 + n % 50 * 500 if status[n] == "converted" else None,
                 "contact_attempts": 1 + n % 3 if status[n] != "new" else 0,
                 "sla_due_at": at[n] + timedelta(minutes=15) if status[n] == "new" else None,
                 "follow_up_due_at": at[n] + timedelta(hours=24) if status[n] == "in_work" else None,
                 "follow_up_stage": 0} for n in rows])
            tasks = [{"lead_id": n + 1, "text": "call back", "created_at": at[n], "created_by": MANAGERS[n % 8],
                      "due_at": now + timedelta(hours=rnd.uniform(-48, 48))}
                     for n in rows if status[n] == "in_work" and n % 10 == 0]
            if tasks:
                conn.execute(insert(LeadTask.__table__), tasks)
            conn.execute(insert(InboundEvent.__table__), [
                {"id": n + 1, "source": SOURCES[n % 5], "external_id": f"bench:{n}", "received_at": at[n],
                 "method": "POST", "headers": {}, "body": b"{}", "payload": {}, "status": "processed",
                 "attempts": 1, "lead_id": n + 1} for n in rows])
            conn.execute(insert(LeadHistory.__table__), _history(rows, at, status, waited, reasons))
            conn.execute(insert(Touch.__table__), [
                {"lead_id": n + 1, "event_id": n + 1, "source": SOURCES[n % 5], "channel": "site_form", "at": at[n],
                 "utm_source": "yandex", "utm_medium": "cpc", "utm_campaign": f"campaign_{n % 12}",
                 "click_ids": {}, "contacts": [], "flags": []} for n in rows])
    if hub.engine.dialect.name == "postgresql":
        with transaction(hub.engine) as s:
            for table in ("person", "inbound_event", "lead"):
                s.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                               f"(SELECT MAX(id) FROM {table}))"))
            s.execute(text("ANALYZE"))
    return time.perf_counter() - started


def _history(rows: range, at: dict, status: dict, waited: dict, reasons: list[str]) -> list[dict]:
    """A lead's timeline as the desk writes it: assigned; then, for a lead in work or closed, taken, one to
    three attempts and a note; a status change for a closed one; an SLA reassignment on 1 lead in 20.
    About five entries a lead, so that the reports read a history of the size a real team's would be."""
    out = []
    for n in rows:
        owner, t0 = MANAGERS[n % 8], at[n]
        out.append({"lead_id": n + 1, "at": t0, "kind": "assigned", "actor": "hub",
                    "data": {"from": None, "to": owner, "why": "round robin"}})
        if n % 20 == 0:
            out.append({"lead_id": n + 1, "at": t0 + timedelta(seconds=1), "kind": "reassigned", "actor": "hub",
                        "data": {"from": MANAGERS[(n + 1) % 8], "to": owner, "why": "SLA"}})
        if status[n] == "new":
            continue
        taken = t0 + timedelta(seconds=waited[n])
        out.append({"lead_id": n + 1, "at": taken, "kind": "taken", "actor": owner,
                    "data": {"from": owner, "to": owner, "waited_s": waited[n]}})
        for i in range(1 + n % 3):
            out.append({"lead_id": n + 1, "at": taken + timedelta(minutes=5 * (i + 1)), "kind": "attempt",
                        "actor": owner, "data": {"number": i + 1, **({"after_s": waited[n] + 300} if i == 0 else {})}})
        out.append({"lead_id": n + 1, "at": taken + timedelta(minutes=20), "kind": "note", "actor": owner,
                    "data": {"text": "перезвонить завтра"}})
        if status[n] in ("converted", "refused"):
            out.append({"lead_id": n + 1, "at": taken + timedelta(hours=2), "kind": "status", "actor": owner,
                        "data": {"from": "in_work", "to": status[n],
                                 "reason": reasons[n % len(reasons)] if status[n] == "refused" else None}})
    return out


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
        ("report: managers, 30 days", "admin", "/report/managers"),
        ("report: managers, a team lead's", "lead", "/report/managers"),
        ("report: funnel by source, 30 days", "admin", "/report/funnel"),
        ("report: funnel by tag, 30 days", "admin", "/report/funnel?group_by=tag"),
        ("report: statuses, 30 days", "admin", "/report/statuses"),
        ("report: activity, 7 days", "admin", "/report/activity"),
        ("API reports/managers, 30 days", "api", "/api/v1/reports/managers"),
        ("API reports/funnel, 30 days", "api", "/api/v1/reports/funnel"),
        ("API /leads?limit=50", "api", "/api/v1/leads?limit=50"),
    ]


def searches_to_time(hub: Hub) -> list[tuple[str, str, str]]:
    """The API's search, tag filter and due-first order (who: "api" an admin, "api-manager" a manager)."""
    with transaction(hub.engine, read_only=True) as s:
        newest = s.execute(text("SELECT MAX(id) FROM lead")).scalar_one()
    known = newest // 2 // 3 * 3                            # a person in the middle, with an e-mail
    national = f"8 (912) {known:07d}"
    national = f"{national[:11]}-{national[11:13]}-{national[13:]}"
    return [
        ("search: phone, national spelling", "api", f"/api/v1/leads?q={quote(national)}"),
        ("search: part of a name, other case", "api", f"/api/v1/leads?q={quote('ИВАНОВ')}"),
        ("search: a name nobody has", "api", f"/api/v1/leads?q={quote('Ковальчук')}"),
        ("search: part of an e-mail", "api", f"/api/v1/leads?q={quote(f'client{known}@')}"),
        ("search: a manager's own, part of a name", "api-manager", f"/api/v1/leads?q={quote('иван')}"),
        ("tag on 1 lead in 10", "api", f"/api/v1/leads?tag={quote('vip')}"),
        ("tag on 1 lead in 50", "api", f"/api/v1/leads?tag={quote('перезвонить')}"),
        ("due first, admin", "api", "/api/v1/leads?order=due"),
        ("due first, a manager", "api-manager", "/api/v1/leads?order=due"),
    ]


def _times(get, path: str, repeat: int) -> list[float]:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        r = get(path)
        times.append((time.perf_counter() - started) * 1000)
        assert r.status_code == 200, (path, r.status_code)
    return times


def measure(hub: Hub, repeat: int, search_repeat: int) -> tuple[dict[str, float], dict[str, dict[str, float]]]:
    """Pages: median ms. Searches: p50 and p99 ms."""
    app = create_app(hub=hub)
    clients = {"admin": signed_in(app, "admin@bench"), "manager": signed_in(app, "manager@bench"),
               "lead": signed_in(app, "lead@bench")}
    with transaction(hub.engine) as s:
        from hub.desk.access import add_token
        tokens = {"api": add_token(s, "admin@bench", "bench")[1],
                  "api-manager": add_token(s, "manager@bench", "bench")[1]}
    api = app.test_client()

    def getter(who: str):
        if who in tokens:
            return lambda path: api.get(path, headers={"Authorization": f"Bearer {tokens[who]}"})
        return clients[who].get

    pages = {name: statistics.median(_times(getter(who), path, repeat)) for name, who, path in pages_to_time(hub)}
    searches = {}
    for name, who, path in searches_to_time(hub):
        _times(getter(who), path, 1)          # the first of a kind compiles its statement: not what is measured
        times = _times(getter(who), path, search_repeat)
        searches[name] = {"p50": statistics.median(times),
                          "p99": statistics.quantiles(times, n=100, method="inclusive")[98]}
    return pages, searches


def run(url: str, workdir: Path, small: int, large: int, repeat: int, search_repeat: int) -> dict:
    hub = make_hub(url, workdir)
    with transaction(hub.engine) as s:
        add_user(s, hub.config, "admin@bench", PASSWORD, "admin")
        add_user(s, hub.config, "manager@bench", PASSWORD, "manager", MANAGERS[3])
        add_user(s, hub.config, "lead@bench", PASSWORD, "lead", MANAGERS[0])
    results: dict = {"database": hub.engine.dialect.name, "sizes": {}, "searches": {}}
    for size in (small, large):
        print(f"{hub.engine.dialect.name}: filling to {size} leads …", file=sys.stderr, flush=True)
        populate(hub, size)
        results["sizes"][size], results["searches"][size] = measure(hub, repeat, search_repeat)
    hub.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[1])
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--large", type=int, default=100_000)
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--search-repeat", type=int, default=100, help="requests per search (for its p99)")
    parser.add_argument("--postgres", help="also run against this (empty, scratch) PostgreSQL database URL")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        results = [run(f"sqlite:///{workdir / 'pages.db'}", workdir, args.small, args.large, args.repeat,
                       args.search_repeat)]
        if args.postgres:
            results.append(run(args.postgres, workdir, args.small, args.large, args.repeat, args.search_repeat))
    for r in results:
        small, large = r["sizes"][args.small], r["sizes"][args.large]
        print(f"\n{r['database']}: median ms per request ({args.repeat} requests each)")
        print(f"{'page':<40} {args.small:>9} {args.large:>9}  ratio")
        for name in small:
            print(f"{name:<40} {small[name]:>9.1f} {large[name]:>9.1f}  {large[name] / small[name]:>5.2f}")
        print(f"\n{r['database']}: API search, ms per request ({args.search_repeat} requests each)")
        print(f"{'request':<40} {'p50 ' + str(args.small):>10} {'p99':>7} {'p50 ' + str(args.large):>12} {'p99':>7}")
        for name, at_small in r["searches"][args.small].items():
            at_large = r["searches"][args.large][name]
            print(f"{name:<40} {at_small['p50']:>10.1f} {at_small['p99']:>7.1f} {at_large['p50']:>12.1f} "
                  f"{at_large['p99']:>7.1f}")
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "pages.json").write_text(json.dumps(results, indent=2))
    print(f"\nwritten to {RESULTS / 'pages.json'}")


if __name__ == "__main__":
    main()
