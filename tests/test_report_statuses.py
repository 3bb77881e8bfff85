"""Leads by status and refusal reason, per source and per owner, and the handover log: a store built here
with known counts (the real webhook, worker, lifecycle, SLA sweep and merge), every number asserted, on
SQLite and PostgreSQL — through hub.desk, the API, the page (in Russian) and the CSV, as each role."""

from __future__ import annotations

import csv
import io
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select, update

from hub.desk.period import Period
from hub.desk.report_statuses import handover_log, statuses_report
from hub.pipeline.persons import merge_persons
from hub.pipeline.routing.lifecycle import count_attempt, reassign, set_status, take
from hub.pipeline.routing.sla import sweep_sla
from hub.pipeline.worker import Worker
from hub.store.db import transaction
from hub.store.models import Lead, utcnow
from tests.conftest import SITE_TOKEN
from tests.helpers.web import WEB_CONFIG, deliver, make_users, sign_in, token_for

MOSCOW = ZoneInfo("Europe/Moscow")
MANAGERS = ("Lena", "Max", "Mia", "Sam", "Sid")
RU = {"Accept-Language": "ru-RU,ru;q=0.9"}
SLA_RU = "SLA: не взят за 15 мин; нет свободных менеджеров (Max: текущий ответственный); передан руководителю команды"


@pytest.fixture
def config_path(write_config):
    return write_config(WEB_CONFIG + '\n[ui]\ntimezone = "Europe/Moscow"\n')


def _counts(leads, new, in_work, converted, refused, reasons, conversion, refusal):
    return {"leads": leads, "new": new, "in_work": in_work, "converted": converted, "refused": refused,
            "refused_by_reason": reasons, "conversion": conversion, "refusal": refusal}


@pytest.fixture
def store(app, hub, client):
    """Twelve leads in the period (and one before it, and one merged away), their statuses and owners set by
    the real functions, six handovers at known moments. Returns the lead ids by name, the moments, the period."""
    make_users(hub)
    names = (["s1", "s2", "s3", "s4"], ["a0", "a1", "a2", "a3", "a4", "a5"], ["e1", "e2", "e3"])
    phone = iter(range(1, 100))
    for source, batch in zip(("site", "ads", "seo"), names, strict=True):
        for _ in batch:
            deliver(client, hub, source, f"+7912000{next(phone):04d}")
    r = client.post(f"/hooks/locked?token={SITE_TOKEN}", json={"phone": "+79120009999", "token": SITE_TOKEN})
    assert r.status_code == 200
    Worker(hub).drain()
    config = hub.config
    today = datetime.now(MOSCOW).date()
    period = Period(today - timedelta(days=1), today + timedelta(days=1), "Europe/Moscow")
    with transaction(hub.engine) as s:
        ids = list(s.scalars(select(Lead.id).order_by(Lead.id)))
        lead = dict(zip([n for batch in names for n in batch] + ["q1"], ids, strict=True))
        persons = {n: s.get(Lead, i).person_id for n, i in lead.items()}
    now = utcnow()
    with transaction(hub.engine) as s:
        take(s, config, lead["s1"], "Max", now)
        set_status(s, config, lead["s1"], "converted", None, "Max", now)
        take(s, config, lead["s2"], "Max", now)
        set_status(s, config, lead["s2"], "refused", "chose_competitor", "Max", now)
        take(s, config, lead["s3"], "Max", now)
        take(s, config, lead["a1"], "Mia", now)
        set_status(s, config, lead["a1"], "refused", "poor_quality", "Mia", now)
        for _ in range(5):
            count_attempt(s, config, lead["e1"], "Sid", now)
        set_status(s, config, lead["e1"], "refused", "no_answer_5_attempts", "Sid", now)
        take(s, config, lead["e2"], "Sid", now)
        set_status(s, config, lead["e2"], "converted", None, "Sid", now)
        # Before the period: not counted. Merged into a4: not counted either.
        s.execute(update(Lead).where(Lead.id == lead["a0"]).values(created_at=period.start - timedelta(seconds=1)))
        merge_persons(s, persons["a4"], persons["a5"], "admin@example.ru")
    start = now.replace(microsecond=0) + timedelta(minutes=1)
    at = {m: start + timedelta(minutes=m) for m in (0, 10, 16, 30, 40, 50)}
    with transaction(hub.engine) as s:
        reassign(s, config, lead["a2"], "Sid", "vacation", "Lena", at[0])           # never came back
        reassign(s, config, lead["a3"], "Max", "Mia is busy", "Lena", at[10])       # came back at 40
        done = sweep_sla(s, config, at[16])                                         # s4: not taken in 15 min
        assert done == [{"lead_id": lead["s4"], "from": "Max", "to": "Lena", "kind": "escalated"}]
        reassign(s, config, lead["s4"], "Max", "back to Max", "Lena", at[30])
        reassign(s, config, lead["a3"], "Mia", "back from lunch", "Lena", at[40])
        reassign(s, config, lead["e3"], "Sam", "Sid is ill", "admin@example.ru", at[50])   # the south: not Lena's
    return {"lead": lead, "at": at, "period": period}


ALL_SOURCES = [
    {"source": "ads", **_counts(4, 3, 0, 0, 1, {"poor_quality": 1}, 0.0, 25.0)},
    {"source": "site", **_counts(4, 1, 1, 1, 1, {"chose_competitor": 1}, 25.0, 25.0)},
    {"source": "seo", **_counts(3, 1, 0, 1, 1, {"no_answer_5_attempts": 1}, 33.3, 33.3)},
    {"source": "locked", **_counts(1, 1, 0, 0, 0, {}, 0.0, 0.0)},
]
ALL_OWNERS = [
    {"owner": "Max", **_counts(4, 1, 1, 1, 1, {"chose_competitor": 1}, 25.0, 25.0)},
    {"owner": "Mia", **_counts(3, 2, 0, 0, 1, {"poor_quality": 1}, 0.0, 33.3)},
    {"owner": "Sam", **_counts(1, 1, 0, 0, 0, {}, 0.0, 0.0)},
    {"owner": "Sid", **_counts(3, 1, 0, 1, 1, {"no_answer_5_attempts": 1}, 33.3, 33.3)},
    {"owner": None, **_counts(1, 1, 0, 0, 0, {}, 0.0, 0.0)},
]
ALL_TOTAL = _counts(12, 6, 1, 2, 3, {"chose_competitor": 1, "poor_quality": 1, "no_answer_5_attempts": 1},
                    16.7, 25.0)
REASONS = ["poor_quality", "by_mistake", "product_not_offered", "no_answer_5_attempts", "chose_competitor"]


def test_statuses_per_source_and_owner_with_refusal_reasons(hub, store):
    with transaction(hub.engine, read_only=True) as s:
        report = statuses_report(s, hub.config, store["period"], None)
        lena = statuses_report(s, hub.config, store["period"], ["Lena", "Max", "Mia"])
        channels = statuses_report(s, hub.config, store["period"], None, by_owner=False)
    assert report["statuses"] == ["new", "in_work", "converted", "refused"] and report["reasons"] == REASONS
    assert report["total"] == ALL_TOTAL
    assert report["by_source"] == ALL_SOURCES
    assert report["by_owner"] == ALL_OWNERS
    # A team lead: their teams' owners and the queue; the lead handed to Sid (a2) is not theirs.
    assert lena["total"] == _counts(8, 4, 1, 1, 2, {"chose_competitor": 1, "poor_quality": 1}, 12.5, 25.0)
    assert lena["by_source"] == [
        {"source": "site", **_counts(4, 1, 1, 1, 1, {"chose_competitor": 1}, 25.0, 25.0)},
        {"source": "ads", **_counts(3, 2, 0, 0, 1, {"poor_quality": 1}, 0.0, 33.3)},
        {"source": "locked", **_counts(1, 1, 0, 0, 0, {}, 0.0, 0.0)}]
    assert [row["owner"] for row in lena["by_owner"]] == ["Max", "Mia", None]
    # Channel level: the same sources, no owner at all.
    assert channels["by_source"] == ALL_SOURCES and "by_owner" not in channels


def _handover(store, kind, lead, minute, frm, to, by, why, back=None):
    return {"lead_id": store["lead"][lead], "at": store["at"][minute].isoformat(), "kind": kind, "from": frm,
            "to": to, "by": by, "why": why,
            "came_back_at": store["at"][back].isoformat() if back is not None else None}


def expected_log(store):
    sla = "SLA: not taken within 15 min; nobody available (Max: the current owner); escalated to the team lead"
    return [
        _handover(store, "reassigned", "e3", 50, "Sid", "Sam", "admin@example.ru", "Sid is ill"),
        _handover(store, "reassigned", "a3", 40, "Max", "Mia", "Lena", "back from lunch"),
        _handover(store, "reassigned", "s4", 30, "Lena", "Max", "Lena", "back to Max"),
        _handover(store, "escalated", "s4", 16, "Max", "Lena", "hub", sla, back=30),
        _handover(store, "reassigned", "a3", 10, "Mia", "Max", "Lena", "Mia is busy", back=40),
        _handover(store, "reassigned", "a2", 0, "Mia", "Sid", "Lena", "vacation"),
    ]


def test_the_handover_log_says_when_a_lead_came_back(hub, store):
    period = store["period"]
    with transaction(hub.engine, read_only=True) as s:
        log = handover_log(s, hub.config, period, None)
        page = handover_log(s, hub.config, period, None, limit=2, offset=2)
        beyond = handover_log(s, hub.config, period, None, limit=2, offset=10)
        lena = handover_log(s, hub.config, period, ["Lena", "Max", "Mia"])
        later = handover_log(s, hub.config, Period(period.date_to + timedelta(days=1),
                                                   period.date_to + timedelta(days=2), period.timezone), None)
    items = [{k: v for k, v in e.items() if k != "why_msg"} for e in log["items"]]
    assert log["total"] == 6 and items == expected_log(store)
    assert "why_msg" in log["items"][3] and "why_msg" not in log["items"][0]    # the hub's own reason only
    assert page["total"] == 6 and [e["at"] for e in page["items"]] == [store["at"][30].isoformat(),
                                                                      store["at"][16].isoformat()]
    assert beyond["total"] == 6 and beyond["items"] == []
    assert lena["total"] == 5 and [e["lead_id"] for e in lena["items"]] == \
        [store["lead"][n] for n in ("a3", "s4", "s4", "a3", "a2")]
    assert later == {"period": later["period"], "total": 0, "limit": 50, "offset": 0, "items": []}


def _query(store) -> str:
    p = store["period"]
    return f"date_from={p.date_from}&date_to={p.date_to}"


def test_the_api_by_role(app, hub, store):
    q = _query(store)
    api = app.test_client()
    admin, lena = token_for(hub, "admin@example.ru"), token_for(hub, "lena@example.ru")
    marketer, manager = token_for(hub, "marketer@example.ru"), token_for(hub, "max@example.ru")
    report = api.get(f"/api/v1/reports/statuses?{q}", headers=admin).json
    assert report["by_source"] == ALL_SOURCES and report["by_owner"] == ALL_OWNERS and report["total"] == ALL_TOTAL
    assert report["period"] == {**store["period"].as_dict()}
    assert [r["owner"] for r in api.get(f"/api/v1/reports/statuses?{q}", headers=lena).json["by_owner"]] == \
        ["Max", "Mia", None]
    channels = api.get(f"/api/v1/reports/statuses?{q}", headers=marketer)
    assert channels.status_code == 200 and channels.json["by_source"] == ALL_SOURCES
    assert "by_owner" not in channels.json and not any(name in channels.text for name in MANAGERS)
    log = api.get(f"/api/v1/reports/handovers?{q}", headers=admin).json
    assert log["total"] == 6 and log["items"] == expected_log(store)                 # no why_msg in the API
    paged = api.get(f"/api/v1/reports/handovers?{q}&limit=2&offset=4", headers=admin).json
    assert [e["lead_id"] for e in paged["items"]] == [store["lead"]["a3"], store["lead"]["a2"]]
    assert api.get(f"/api/v1/reports/handovers?{q}", headers=lena).json["total"] == 5
    assert api.get(f"/api/v1/reports/handovers?{q}", headers=marketer).status_code == 403
    for path in ("statuses", "handovers", "activity"):
        assert api.get(f"/api/v1/reports/{path}?{q}", headers=manager).status_code == 403
    turned = api.get("/api/v1/reports/statuses?date_from=2026-03-02&date_to=2026-03-01", headers=admin)
    assert turned.status_code == 200 and turned.json["period"]["date_from"] == "2026-03-01"
    assert turned.json["total"]["leads"] == 0


def test_the_page_in_russian(app, hub, store):
    q = _query(store)
    admin = app.test_client()
    admin.environ_base["HTTP_ACCEPT_LANGUAGE"] = RU["Accept-Language"]
    sign_in(admin, "admin@example.ru")
    page = admin.get(f"/report/statuses?{q}")
    assert page.status_code == 200
    html = page.text
    assert "Лиды по статусам" in html and "Журнал передач" in html and "(очередь)" in html
    assert 'aria-current="page">Статусы</a>' in html
    # Per owner: Max's row, the reasons translated in the head of the reasons table.
    assert '<tr data-key="Max"><td>Max</td><td class="num" data-count="leads">4</td>' in html
    assert 'data-count="refused">1</td><td class="num" data-share="conversion">25,0</td>' in html
    assert '<th class="num">выбрал конкурента</th>' in html
    assert '<th class="num">не отвечает после 5 попыток</th>' in html
    # The log: the SLA's escalation in Russian, by the hub, and its came-back moment; none for the others.
    assert '<td class="c-by" data-label="Кто передал">хаб</td>' in html
    assert f"<td class=\"c-why\">{SLA_RU}</td>" in html and "передан руководителю</span>" in html
    s4_back = store["at"][30].isoformat()
    assert f'data-came-back="{s4_back}"' in html
    assert html.count('data-came-back=""') == 4
    # The team lead: the south's handover is not theirs; the marketer: no person, no log.
    lena = app.test_client()
    sign_in(lena, "lena@example.ru")
    lena_page = lena.get(f"/report/statuses?{q}").text
    assert lena_page.count("<tr data-lead=") == 5 and 'data-key="Sid"' not in lena_page
    marketer = app.test_client()
    sign_in(marketer, "marketer@example.ru")
    shown = marketer.get(f"/report/statuses?{q}")
    assert shown.status_code == 200 and 'id="by-source"' in shown.text and 'id="handover-log"' not in shown.text
    assert not any(name in shown.text for name in MANAGERS) and "(queue)" not in shown.text
    manager = app.test_client()
    sign_in(manager, "max@example.ru")
    assert manager.get(f"/report/statuses?{q}").status_code == 403
    assert manager.get(f"/report/statuses.csv?{q}").status_code == 403
    assert manager.get(f"/report/handovers.csv?{q}").status_code == 403


def _csv(answer) -> list[list[str]]:
    assert answer.status_code == 200 and answer.mimetype == "text/csv", answer.status_code
    return list(csv.reader(io.StringIO(answer.get_data(as_text=True))))


def test_the_csv_columns_and_rows(app, hub, store):
    q = _query(store)
    admin = app.test_client()
    sign_in(admin, "admin@example.ru")
    rows = _csv(admin.get(f"/report/statuses.csv?{q}"))
    assert rows[0] == ["group", "name", "leads", "new", "in_work", "converted", "refused", "conversion_%",
                       "refusal_%", *[f"refused_{r}" for r in REASONS]]
    assert rows[1] == ["source", "ads", "4", "3", "0", "0", "1", "0.0", "25.0", "1", "0", "0", "0", "0"]
    assert rows[2] == ["source", "site", "4", "1", "1", "1", "1", "25.0", "25.0", "0", "0", "0", "0", "1"]
    assert [r[:3] for r in rows[1:]] == [["source", "ads", "4"], ["source", "site", "4"], ["source", "seo", "3"],
                                        ["source", "locked", "1"], ["owner", "Max", "4"], ["owner", "Mia", "3"],
                                        ["owner", "Sam", "1"], ["owner", "Sid", "3"], ["owner", "(queue)", "1"],
                                        ["total", "", "12"]]
    admin.environ_base["HTTP_ACCEPT_LANGUAGE"] = RU["Accept-Language"]
    local = _csv(admin.get(f"/report/statuses.csv?{q}&header=local"))
    assert local[0] == rows[0] and local[1][:4] == ["Группа", "Имя", "Лидов", "новый"] and local[2] == rows[1]
    log = _csv(admin.get(f"/report/handovers.csv?{q}"))
    assert log[0] == ["lead_id", "at", "kind", "from", "to", "by", "why", "came_back_at"]
    moscow = {m: at.astimezone(MOSCOW).isoformat(timespec="minutes") for m, at in store["at"].items()}
    assert log[1] == [str(store["lead"]["e3"]), moscow[50], "reassigned", "Sid", "Sam", "admin@example.ru",
                      "Sid is ill", ""]
    assert log[4] == [str(store["lead"]["s4"]), moscow[16], "escalated", "Max", "Lena", "hub", SLA_RU, moscow[30]]
    assert len(log) == 7
    # The marketer's CSV: the sources and the total, no owner row, no name.
    marketer = app.test_client()
    sign_in(marketer, "marketer@example.ru")
    answer = marketer.get(f"/report/statuses.csv?{q}")
    channel_rows = _csv(answer)
    assert [r[0] for r in channel_rows[1:]] == ["source"] * 4 + ["total"]
    assert not any(name in answer.get_data(as_text=True) for name in MANAGERS)
    assert marketer.get(f"/report/handovers.csv?{q}").status_code == 403
    lena = app.test_client()
    sign_in(lena, "lena@example.ru")
    assert len(_csv(lena.get(f"/report/handovers.csv?{q}"))) == 6
