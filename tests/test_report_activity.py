"""Each manager's work per day: a store built here with known actions at known moments (the real lifecycle
and worklog functions, calls through the real Mango and Zadarma webhooks), in a Moscow team — an attempt at
23:30 and one at 00:10 land on two days — every number asserted on SQLite and PostgreSQL, through hub.desk,
the API, the page (in Russian) and the CSV, as each role."""

from __future__ import annotations

import csv
import io
import json
from datetime import date, datetime, time, timedelta
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select

from connectors.mango import MangoSettings, signed_form
from connectors.zadarma import signature
from hub.desk.period import Period
from hub.desk.report_activity import METRICS, activity_report
from hub.pipeline.history import history
from hub.pipeline.routing.lifecycle import count_attempt, set_status, take
from hub.pipeline.worker import Worker
from hub.pipeline.worklog import add_note, add_task, complete_task
from hub.store.db import transaction
from hub.store.models import Lead, Touch
from tests.helpers.web import WEB_CONFIG, deliver, make_users, sign_in, token_for

MOSCOW = ZoneInfo("Europe/Moscow")
D = date(2026, 3, 10)                       # a Tuesday; the period is D, D+1, D+2
ZADARMA_SECRET = "zadarma-secret-key"
PBX = f'''
[ui]
timezone = "Europe/Moscow"

[[sources]]
name = "mango"
connector = "mango"
api_key = "mango-api-key-1"
api_salt = "mango-salt-1"

[[sources]]
name = "pbx"
connector = "zadarma"
secret = "{ZADARMA_SECRET}"
timezone = "Europe/Moscow"
'''
MAX_CLIENT, MIA_CLIENT = "+79161234567", "+79120000003"


def msk(days: int, clock: str) -> datetime:
    """D + days at this Moscow wall-clock time, as the aware moment it is."""
    hours, minutes = map(int, clock.split(":"))
    return datetime.combine(D + timedelta(days=days), time(hours, minutes), tzinfo=MOSCOW)


@pytest.fixture
def config_path(write_config):
    return write_config(WEB_CONFIG + PBX)


def mango_summary(client, entry_id: str, answered: bool, at: datetime) -> None:
    created = int(at.timestamp())
    summary = {"entry_id": entry_id, "call_direction": 1, "from": {"number": MAX_CLIENT[1:]},
               "to": {"extension": "", "number": "74951234567"}, "line_number": "74951234567",
               "create_time": created, "forward_time": 0, "talk_time": created + 5 if answered else 0,
               "end_time": created + 60, "entry_result": 1 if answered else 0, "disconnect_reason": 1110}
    form = signed_form(MangoSettings(api_key="mango-api-key-1", api_salt="mango-salt-1"), summary)
    r = client.post("/hooks/mango/events/summary", data=urlencode(form),
                    content_type="application/x-www-form-urlencoded")
    assert r.status_code == 200, r.text


def zadarma(client, event: str, call_id: str, call_start: str, disposition: str | None = None) -> None:
    fields = {"event": event, "call_start": call_start, "pbx_call_id": call_id, "caller_id": MIA_CLIENT[1:],
              "called_did": "74951112233"}
    if disposition:
        fields |= {"disposition": disposition, "duration": "35" if disposition == "answered" else "0"}
    r = client.post("/hooks/pbx", data=urlencode(fields), content_type="application/x-www-form-urlencoded",
                    headers={"Signature": signature(ZADARMA_SECRET, fields)})
    assert r.status_code == 200, r.text


@pytest.fixture
def store(app, hub, client):
    """Max, Mia and Sid at work over three Moscow days, with entries just before and just after them."""
    make_users(hub)
    deliver(client, hub, "site", MAX_CLIENT)            # s1: Max's
    deliver(client, hub, "site", "+79120000002")        # s2: Max's
    deliver(client, hub, "ads", MIA_CLIENT)             # a1: Mia's
    deliver(client, hub, "ads", "+79120000004")         # a2: Mia's
    deliver(client, hub, "seo", "+79120000005")         # e1: Sid's
    with transaction(hub.engine, read_only=True) as s:
        s1, s2, a1, a2, e1 = s.scalars(select(Lead.id).order_by(Lead.id)).all()
    config = hub.config
    with transaction(hub.engine) as s:
        take(s, config, s1, "Max", msk(0, "09:00"))
        count_attempt(s, config, s1, "Max", msk(0, "23:30"))            # Tuesday, late
        add_note(s, config, s1, "called, no answer", "Max", msk(0, "23:30"))
        count_attempt(s, config, s1, "Max", msk(1, "00:10"))            # Wednesday, just after midnight
        task = add_task(s, config, s1, msk(1, "12:00"), "call back", "Max", msk(1, "00:10"))
        complete_task(s, config, s1, task.id, "Max", msk(1, "11:00"))
        set_status(s, config, s1, "converted", None, "Max", msk(1, "11:00"))
        take(s, config, s2, "Max", msk(1, "12:00"))
        set_status(s, config, s2, "refused", "chose_competitor", "Max", msk(1, "12:05"))
        add_note(s, config, s1, "after the period", "Max", msk(3, "00:00"))       # Friday 00:00: not counted
        count_attempt(s, config, a1, "Mia", msk(-1, "23:59"))                     # Monday: not counted
        take(s, config, a1, "Mia", msk(0, "10:00"))
        count_attempt(s, config, a1, "Mia", msk(0, "10:05"))
        count_attempt(s, config, a1, "Mia", msk(0, "10:10"))
        add_note(s, config, a2, "sent the price list", "Mia", msk(2, "09:00"))
        count_attempt(s, config, e1, "Sid", msk(0, "12:00"))
        # Calls the hub put through (the worker writes these as a call is routed; here at known moments).
        history(s, s1, "call_routed", at=msk(0, "15:00"), to="Max", extension="101", why="test")
        history(s, a1, "call_routed", at=msk(1, "09:59"), to="Mia", extension="102", why="test")
    mango_summary(client, "m1", answered=False, at=msk(0, "23:30"))     # Max's client: missed on Tuesday
    mango_summary(client, "m2", answered=True, at=msk(1, "00:10"))      # answered on Wednesday
    zadarma(client, "NOTIFY_END", "z1", "2026-03-11 10:00:00", "busy")            # Mia's client: missed
    zadarma(client, "NOTIFY_START", "z2", "2026-03-12 23:29:00")                  # ringing: no outcome
    zadarma(client, "NOTIFY_END", "z2", "2026-03-12 23:30:00", "answered")        # Thursday: answered
    Worker(hub).drain()
    with transaction(hub.engine, read_only=True) as s:
        calls = s.execute(select(Touch.lead_id, Touch.message).where(Touch.channel.in_(("mango", "zadarma")))
                          .order_by(Touch.id)).all()
    assert calls == [(s1, "missed call to 74951234567"), (s1, "answered call to 74951234567, talked 55 s"),
                     (a1, "call busy, 0 s"), (a1, "incoming call to 74951112233"), (a1, "call answered, 35 s")]
    return Period(D, D + timedelta(days=2), "Europe/Moscow")


def counts(**given: int) -> dict[str, int]:
    return {m: given.get(m, 0) for m in METRICS}


MAX_DAYS = [counts(taken=1, attempts=1, notes=1, calls_routed=1, calls_missed=1),
            counts(attempts=1, tasks_set=1, tasks_done=1, converted=1, taken=1, refused=1, calls_answered=1),
            counts()]
MIA_DAYS = [counts(taken=1, attempts=2), counts(calls_routed=1, calls_missed=1),
            counts(notes=1, calls_answered=1)]
SID_DAYS = [counts(attempts=1), counts(), counts()]
IDLE = [counts(), counts(), counts()]
DAYS = ["2026-03-10", "2026-03-11", "2026-03-12"]


def row(name: str, team: str, days: list[dict[str, int]]) -> dict:
    total = counts(**{m: sum(d[m] for d in days) for m in METRICS})
    return {"manager": name, "team": team, "total": total,
            "days": [{"day": day, **d} for day, d in zip(DAYS, days, strict=True)]}


def test_activity_per_manager_per_day(hub, store):
    with transaction(hub.engine, read_only=True) as s:
        report = activity_report(s, hub.config, store, None)
        lena = activity_report(s, hub.config, store, ["Lena", "Max", "Mia"])
    assert report["days"] == DAYS and report["metrics"] == list(METRICS)
    assert report["managers"] == [row("Lena", "north", IDLE), row("Max", "north", MAX_DAYS),
                                  row("Mia", "north", MIA_DAYS), row("Sam", "south", IDLE),
                                  row("Sid", "south", SID_DAYS)]
    assert report["managers"][1]["total"] == counts(attempts=2, taken=2, converted=1, refused=1, notes=1,
                                                    tasks_set=1, tasks_done=1, calls_routed=1, calls_answered=1,
                                                    calls_missed=1)
    assert report["per_day"] == [
        {"day": DAYS[0], **counts(attempts=4, taken=2, notes=1, calls_routed=1, calls_missed=1)},
        {"day": DAYS[1], **counts(attempts=1, taken=1, converted=1, refused=1, tasks_set=1, tasks_done=1,
                                  calls_routed=1, calls_answered=1, calls_missed=1)},
        {"day": DAYS[2], **counts(notes=1, calls_answered=1)}]
    assert report["total"] == counts(attempts=5, taken=3, converted=1, refused=1, notes=2, tasks_set=1,
                                     tasks_done=1, calls_routed=2, calls_answered=2, calls_missed=2)
    # A team lead's: their team and themselves, and the totals of those only.
    assert [r["manager"] for r in lena["managers"]] == ["Lena", "Max", "Mia"]
    assert lena["total"] == counts(attempts=4, taken=3, converted=1, refused=1, notes=2, tasks_set=1, tasks_done=1,
                                   calls_routed=2, calls_answered=2, calls_missed=2)


def test_the_utc_day_would_be_wrong(hub, store):
    """Not vacuous: by UTC days the 23:30 and the 00:10 entries (20:30 and 21:10 UTC) both fall on Tuesday;
    the team's days are what put the second on Wednesday."""
    with transaction(hub.engine, read_only=True) as s:
        utc = activity_report(s, hub.config, Period(D, D + timedelta(days=2), "UTC"), ["Max"])
    tuesday = utc["managers"][0]["days"][0]
    assert tuesday["attempts"] == 2 and tuesday["calls_missed"] == 1 and tuesday["calls_answered"] == 1


def _query(period: Period) -> str:
    return f"date_from={period.date_from}&date_to={period.date_to}"


def test_the_api_by_role(app, hub, store):
    q = _query(store)
    api = app.test_client()
    answer = api.get(f"/api/v1/reports/activity?{q}", headers=token_for(hub, "admin@example.ru"))
    assert answer.status_code == 200
    with transaction(hub.engine, read_only=True) as s:
        assert answer.json == json.loads(json.dumps(activity_report(s, hub.config, store, None)))
    week = api.get("/api/v1/reports/activity", headers=token_for(hub, "admin@example.ru")).json
    assert len(week["days"]) == 7 and week["days"][-1] == datetime.now(MOSCOW).date().isoformat()
    lena = api.get(f"/api/v1/reports/activity?{q}", headers=token_for(hub, "lena@example.ru")).json
    assert [r["manager"] for r in lena["managers"]] == ["Lena", "Max", "Mia"]
    assert lena["managers"][1]["days"][0] == {"day": DAYS[0], **MAX_DAYS[0]}
    for login in ("marketer@example.ru", "max@example.ru"):
        assert api.get(f"/api/v1/reports/activity?{q}", headers=token_for(hub, login)).status_code == 403


def test_the_page_in_russian_reads_like_a_daily_report(app, hub, store):
    q = _query(store)
    admin = app.test_client()
    admin.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru-RU,ru;q=0.9"
    sign_in(admin, "admin@example.ru")
    html = admin.get(f"/report/activity?{q}&metric=attempts").text
    assert "Активность по дням" in html and 'aria-current="page">Активность</a>' in html
    assert '<th class="num" data-day="2026-03-10">вт 10.03</th>' in html
    assert "<h2>По дням: Попыток связи</h2>" in html
    grid = html[html.index('id="activity-days"'):]
    max_row = grid[grid.index('<tr data-manager="Max">'):]
    max_row = max_row[:max_row.index("</tr>")]
    assert ('<td class="num" data-day="2026-03-10">1</td><td class="num" data-day="2026-03-11">1</td>'
            '<td class="num" data-day="2026-03-12"><span class="zero">0</span></td>'
            '<td class="num" data-day="total"><b>2</b></td>') in max_row
    assert '<td class="num" data-day="2026-03-10">4</td>' in grid[grid.index("<tfoot>"):]       # the day's total
    summary = html[html.index('id="activity-total"'):html.index('id="activity-days"')]
    mia = summary[summary.index('<tr data-manager="Mia">'):]
    assert '<td class="num" data-metric="calls_missed">1</td>' in mia[:mia.index("</tr>")]
    calls = admin.get(f"/report/activity?{q}&metric=calls_missed").text
    assert "<h2>По дням: Звонков клиентов пропущено</h2>" in calls
    # The default: the last seven days, to today.
    default = admin.get("/report/activity").text
    assert default.count('<th class="num" data-day="') == 7
    lena = app.test_client()
    sign_in(lena, "lena@example.ru")
    lena_page = lena.get(f"/report/activity?{q}").text
    assert 'data-manager="Mia"' in lena_page and 'data-manager="Sid"' not in lena_page
    for login in ("marketer@example.ru", "max@example.ru"):
        other = app.test_client()
        sign_in(other, login)
        assert other.get(f"/report/activity?{q}").status_code == 403
        assert other.get(f"/report/activity.csv?{q}").status_code == 403


def test_the_csv(app, hub, store):
    q = _query(store)
    admin = app.test_client()
    admin.environ_base["HTTP_ACCEPT_LANGUAGE"] = "ru-RU,ru;q=0.9"
    sign_in(admin, "admin@example.ru")
    answer = admin.get(f"/report/activity.csv?{q}&header=local")
    assert answer.status_code == 200 and answer.mimetype == "text/csv"
    rows = list(csv.reader(io.StringIO(answer.get_data(as_text=True))))
    assert rows[0] == ["manager", "team", "day", "attempts", "taken", "converted", "refused", "notes", "tasks_set",
                       "tasks_done", "calls_routed", "calls_answered", "calls_missed"]
    assert rows[1][:4] == ["Менеджер", "Команда", "День", "Попыток связи"]
    assert len(rows) == 2 + 5 * 3
    assert rows[5] == ["Max", "north", "2026-03-10", "1", "1", "0", "0", "1", "0", "0", "1", "0", "1"]
    assert rows[6] == ["Max", "north", "2026-03-11", "1", "1", "1", "1", "0", "1", "1", "0", "1", "0"]
    lena = app.test_client()
    sign_in(lena, "lena@example.ru")
    lena_rows = list(csv.reader(io.StringIO(lena.get(f"/report/activity.csv?{q}").get_data(as_text=True))))
    assert {r[0] for r in lena_rows[1:]} == {"Lena", "Max", "Mia"}
