"""The managers report on both stores, against a store this test builds with known counts: every number of
every manager's and team's row (received, taken, converted, refused by reason, open and overdue now, speed to
lead and to the first attempt as medians and 90th percentiles, SLA lost and won, attempts, notes, call-backs
done, revenue), the period's bounds in the team's time zone, who may read it (API, page, CSV) and what a team
lead sees of it. Every entry is written by the hub's own functions with an explicit time."""

from __future__ import annotations

import csv
import io
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import insert, select

from hub.desk.period import Period
from hub.desk.report_managers import managers_report, yesterday_per_manager
from hub.i18n import Msg
from hub.pipeline import identity, process
from hub.pipeline.persons import merge_persons
from hub.pipeline.routing.assignment import assign
from hub.pipeline.routing.lifecycle import count_attempt, set_status, take
from hub.pipeline.routing.sla import sweep_sla
from hub.pipeline.worker import Worker
from hub.pipeline.worklog import add_note, add_task, complete_task
from hub.store.db import transaction
from hub.store.models import InboundEvent, Lead, LeadHistory, utcnow
from tests.helpers.web import ALL_DAYS, make_users, sign_in, token_for

T = datetime(2026, 12, 1, 7, 0, tzinfo=UTC)               # a Tuesday, 10:00 in Moscow
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)            # when "open now" and "overdue now" are read
PERIOD = Period(date(2026, 12, 1), date(2026, 12, 2), "Europe/Moscow")   # 30 Nov 21:00 – 2 Dec 21:00 UTC
RU = {"Accept-Language": "ru-RU,ru;q=0.9"}

# North (Lena leads: Lena, Max, Mia), south (Sam leads: Sam, Sid). The rules route no delivery (the leads
# come from "site"); the test hands each lead over itself, under a rule for its SLA and follow-up clocks.
CONFIG = '''
[ui]
timezone = "Europe/Moscow"

[[sources]]
name = "ads"
connector = "site_form"

[[teams]]
name = "north"
lead = "Lena"

[[teams]]
name = "south"
lead = "Sam"
''' + "".join(f'''
[[managers]]
name = "{name}"
team = "{team}"
working_days = {ALL_DAYS}
''' for name, team in [("Lena", "north"), ("Max", "north"), ("Mia", "north"), ("Sam", "south"), ("Sid", "south")]) \
    + '''
[[routing.rules]]
name = "north"
sources = ["ads"]
team = "north"
strategy = "fixed"
manager = "Max"
sla_minutes = 15

[[routing.rules]]
name = "south"
sources = ["ads"]
team = "south"
strategy = "round_robin"
sla_minutes = 15
follow_up_hours = 24

[[routing.rules]]
name = "south fixed"
sources = ["ads"]
team = "south"
strategy = "fixed"
manager = "Sid"
sla_minutes = 15
'''


@pytest.fixture
def config_path(write_config):
    return write_config(CONFIG)


def at(seconds: float) -> datetime:
    return T + timedelta(seconds=seconds)


class Desk:
    """Leads made through the worker at a chosen time, and the hub's lifecycle functions at chosen times."""

    def __init__(self, hub, monkeypatch):
        self.hub, self.config, self.clock, self.count = hub, hub.config, [T], 0
        for module in (process, identity):                 # the worker's own clock, for created_at
            monkeypatch.setattr(module, "utcnow", lambda: self.clock[0])

    def lead(self, when: datetime) -> int:
        """A new person's lead, created at ``when`` (no rule routes it: it waits in the queue)."""
        self.clock[0], self.count = when, self.count + 1
        now = utcnow()
        with transaction(self.hub.engine) as s:
            s.execute(insert(InboundEvent).values(
                source="site", external_id=f"e{self.count}", received_at=when, method="POST", headers={}, body=b"",
                payload={"phone": f"+7912000{self.count:04d}", "name": f"Client {self.count}"}, status="pending",
                attempts=0, next_attempt_at=now))
        Worker(self.hub).drain()
        with transaction(self.hub.engine, read_only=True) as s:
            return s.scalars(select(Lead.id).order_by(Lead.id.desc())).first()

    def given(self, to: str, when: datetime, rule: str = "north") -> int:
        """A lead created and handed to ``to`` at ``when`` under ``rule`` (its SLA clock starts)."""
        lead_id = self.lead(when)
        routing_rule = next(r for r in self.config.routing.rules if r.name == rule)
        self.do(assign, lead_id, to, None, Msg("test"), routing_rule, when)
        return lead_id

    def do(self, action, *args, **kwargs):
        with transaction(self.hub.engine) as s:
            return action(s, self.config, *args, **kwargs)


def build(hub, monkeypatch) -> dict[str, int]:
    """The store, in time order (an SLA sweep sees every lead then waiting). Expected numbers: see the tests."""
    d = Desk(hub, monkeypatch)
    L = {}
    # Before the period (23:50 in Moscow on 30 Nov) given to Mia, taken in it (00:10 on 1 Dec): taken, not received.
    L[13] = d.given("Mia", datetime(2026, 11, 30, 20, 50, tzinfo=UTC))
    d.do(take, L[13], "Mia", datetime(2026, 11, 30, 21, 10, tzinfo=UTC))                    # waited 1200 s
    L[1], L[5], L[6], L[7] = (d.given("Max", at(0)), d.given("Mia", at(0)), d.given("Mia", at(0)),
                              d.given("Mia", at(0)))
    L[8] = d.given("Sid", at(0), rule="south")
    L[10] = d.lead(at(0))                                                        # in the queue
    L[15] = d.given("Mia", at(0))                                                # merged later: never counted
    L[16] = d.lead(at(0))
    d.do(take, L[7], "Mia", at(30))
    d.do(take, L[1], "Max", at(60))
    d.do(take, L[15], "Mia", at(100))
    d.do(take, L[5], "Mia", at(120))
    for second in (120, 180, 240, 300, 360):                                     # Max's first after 120 s
        d.do(count_attempt, L[1], "Max", at(second))
    d.do(count_attempt, L[15], "Mia", at(150))
    d.do(take, L[6], "Mia", at(600))
    L[2] = d.given("Max", at(600))
    d.do(take, L[2], "Max", at(900))                                             # waited 300 s
    d.do(sweep_sla, at(960))                  # L8 not taken in 15 min: Sid → Sam (round-robin of the south)
    d.do(count_attempt, L[2], "Max", at(1000))                                   # 400 s after given
    d.do(add_note, L[2], "called, interested", "Max", at(1000))
    d.do(take, L[8], "Sam", at(1160))                                            # 200 s after the SLA gave it
    L[3] = d.given("Max", at(1200))
    L[4] = d.given("Max", at(1800))
    d.do(take, L[3], "Max", at(2100))                                            # waited 900 s
    d.do(take, L[10], "Sid", at(2700))                                           # from the queue: 2700 s
    d.do(sweep_sla, at(2760))                 # L4: the fixed rule has nobody else: escalated Max → Lena
    d.do(count_attempt, L[10], "Sid", at(3000))                                  # 300 s after taking it
    d.do(take, L[4], "Lena", at(3000))                                           # 240 s after the escalation
    d.do(add_note, L[4], "will call tomorrow", "Lena", at(3000))
    d.do(set_status, L[1], "refused", "no_answer_5_attempts", "Max", at(3600))
    L[9] = d.given("Sid", at(3600), rule="south fixed")
    d.do(sweep_sla, at(4560))                 # L9: escalated Sid → Sam
    d.do(take, L[9], "Sam", at(5060))                                            # 500 s after
    d.do(set_status, L[2], "converted", None, "Max", at(7200), amount=Decimal("150000.50"))
    d.do(set_status, L[6], "converted", None, "Lena", at(7200), amount=Decimal("1000"))   # the team lead, for Mia
    task = d.do(add_task, L[3], at(10800), "call back", "Max", at(7200))
    d.do(complete_task, L[3], task.id, "Max", at(7300))
    d.do(set_status, L[5], "refused", "chose_competitor", "Mia", at(10800))
    d.do(set_status, L[7], "refused", "chose_competitor", "Mia", at(10800))
    with transaction(hub.engine) as s:
        persons = dict(s.execute(select(Lead.id, Lead.person_id).where(Lead.id.in_((L[15], L[16])))).all())
        merge_persons(s, persons[L[16]], persons[L[15]], "admin")
    # The period's last day: 23:00 and 23:30 in Moscow count; 00:05 and 00:10 the next day do not.
    L[11] = d.given("Max", datetime(2026, 12, 2, 20, 0, tzinfo=UTC))
    d.do(take, L[11], "Max", datetime(2026, 12, 2, 20, 30, tzinfo=UTC))                     # waited 1800 s
    d.do(add_task, L[11], datetime(2026, 12, 3, 9, 0, tzinfo=UTC), "send the offer", "Max",
         datetime(2026, 12, 2, 20, 31, tzinfo=UTC))                                          # overdue now
    L[12] = d.given("Max", datetime(2026, 12, 2, 21, 5, tzinfo=UTC))
    d.do(take, L[12], "Max", datetime(2026, 12, 2, 21, 10, tzinfo=UTC))
    L[14] = d.given("Max", datetime(2026, 12, 3, 10, 0, tzinfo=UTC))                        # past its SLA now
    return L


def speed(median, p90, count):
    return {"median": median, "p90": p90, "count": count}


NONE = speed(None, None, 0)
ZERO = dict(received=0, taken=0, converted=0, refused=0, refused_by_reason={}, open_now=0, overdue_now=0,
            speed_to_lead=NONE, to_first_attempt=NONE, sla_lost=0, sla_won=0, attempts=0, notes=0, tasks_done=0,
            revenue="0.00")
EXPECTED = {
    # received L1 L2 L3 L4 L11; taken L1 60 s, L2 300, L3 900, L11 1800; open L3 L11 L12 L14 (L11's call-back
    # and L14's SLA are past); L4 escalated away; first attempts 120 s (L1) and 400 s (L2).
    "Max": dict(ZERO, received=5, taken=4, converted=1, refused=1, refused_by_reason={"no_answer_5_attempts": 1},
                open_now=4, overdue_now=2, speed_to_lead=speed(600.0, 1530.0, 4),
                to_first_attempt=speed(260.0, 372.0, 2), sla_lost=1, attempts=6, notes=1, tasks_done=1,
                revenue="150000.50"),
    # received L5 L6 L7 (L13 before the period, L15 merged); taken L7 30 s, L5 120, L6 600, L13 1200; L6
    # converted by Lena counts for Mia; open L13.
    "Mia": dict(ZERO, received=3, taken=4, converted=1, refused=2, refused_by_reason={"chose_competitor": 2},
                open_now=1, speed_to_lead=speed(360.0, 1020.0, 4), revenue="1000.00"),
    "Lena": dict(ZERO, received=1, taken=1, open_now=1, speed_to_lead=speed(240.0, 240.0, 1), notes=1),
    # L8 from Sid by the SLA (won), L9 escalated from Sid (received, not won); L8 in work past its follow-up.
    "Sam": dict(ZERO, received=2, taken=2, open_now=2, overdue_now=1, speed_to_lead=speed(350.0, 470.0, 2),
                sla_won=1),
    "Sid": dict(ZERO, received=2, taken=1, open_now=1, speed_to_lead=speed(2700.0, 2700.0, 1),
                to_first_attempt=speed(300.0, 300.0, 1), sla_lost=2, attempts=1),
}
TEAMS = {
    # speeds over all members' takes: 30 60 120 240 300 600 900 1200 1800 s
    "north": dict(ZERO, lead="Lena", managers=3, received=9, taken=9, converted=2, refused=3,
                  refused_by_reason={"no_answer_5_attempts": 1, "chose_competitor": 2}, open_now=6, overdue_now=2,
                  speed_to_lead=speed(300.0, 1320.0, 9), to_first_attempt=speed(260.0, 372.0, 2), sla_lost=1,
                  attempts=6, notes=2, tasks_done=1, revenue="151000.50"),
    "south": dict(ZERO, lead="Sam", managers=2, received=4, taken=3, open_now=3, overdue_now=1,
                  speed_to_lead=speed(500.0, 2260.0, 3), to_first_attempt=speed(300.0, 300.0, 1), sla_lost=2,
                  sla_won=1, attempts=1),
}


def expected_rows(names=("Lena", "Max", "Mia", "Sam", "Sid")):
    team = {"Lena": "north", "Max": "north", "Mia": "north", "Sam": "south", "Sid": "south"}
    return [{"name": n, "team": team[n], **EXPECTED[n]} for n in names]


def expected_teams(names=("north", "south")):
    return [{"name": n, **TEAMS[n]} for n in names]


def test_every_number_of_every_row(hub, monkeypatch):
    build(hub, monkeypatch)
    with transaction(hub.engine, read_only=True) as s:
        report = managers_report(s, hub.config, PERIOD, None, now=NOW)
    assert report["period"] == {"date_from": "2026-12-01", "date_to": "2026-12-02", "timezone": "Europe/Moscow"}
    assert report["managers"] == expected_rows()
    assert report["teams"] == expected_teams()
    assert report["reasons"] == ["no_answer_5_attempts", "chose_competitor"]      # in the config's order


def test_the_period_is_the_teams_days(hub, monkeypatch):
    """The last day's 23:30 in Moscow is in; the next day's 00:10 is the next day's; a day of its own."""
    build(hub, monkeypatch)
    with transaction(hub.engine, read_only=True) as s:
        last_day = managers_report(s, hub.config, Period(date(2026, 12, 2), date(2026, 12, 2), "Europe/Moscow"),
                                   ["Max"], now=NOW)["managers"][0]
        next_day = yesterday_per_manager(s, hub.config, date(2026, 12, 3))
        first_day = yesterday_per_manager(s, hub.config, date(2026, 12, 1), ["Mia"])
    assert (last_day["received"], last_day["taken"], last_day["speed_to_lead"]) == (1, 1, speed(1800.0, 1800.0, 1))
    assert next_day["Max"] == {"received": 2, "taken": 1, "converted": 0, "refused": 0, "attempts": 0}   # L12, L14
    assert first_day == {"Mia": {"received": 3, "taken": 4, "converted": 1, "refused": 2, "attempts": 0}}


def test_take_and_the_first_attempt_record_their_seconds(hub, monkeypatch):
    """The numbers the report reads: take() since the lead was given (or entered the queue), the owner's first
    attempt since it was given to them; a later attempt, or someone else's, records none."""
    lead_ids = build(hub, monkeypatch)
    with transaction(hub.engine, read_only=True) as s:
        entries = s.execute(select(LeadHistory.lead_id, LeadHistory.kind, LeadHistory.data)
                            .where(LeadHistory.kind.in_(("taken", "attempt"))).order_by(LeadHistory.id)).all()
    waited = {lead: data["waited_s"] for lead, kind, data in entries if kind == "taken"}
    after = [(lead, data.get("after_s")) for lead, kind, data in entries if kind == "attempt"]
    assert [waited[lead_ids[n]] for n in (1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 13)] == \
        [60, 300, 900, 240, 120, 600, 30, 200, 500, 2700, 1200]
    assert after == [(lead_ids[1], 120), *[(lead_ids[1], None)] * 4, (lead_ids[15], 150), (lead_ids[2], 400),
                     (lead_ids[10], 300)]


def test_the_api_the_page_and_the_csv_by_role(app, hub, client, monkeypatch):
    build(hub, monkeypatch)
    make_users(hub)
    query = {"date_from": "2026-12-01", "date_to": "2026-12-02"}
    admin = client.get("/api/v1/reports/managers", query_string=query, headers=token_for(hub, "admin@example.ru"))
    assert admin.status_code == 200, admin.json
    assert admin.json["managers"] == expected_rows() and admin.json["teams"] == expected_teams()
    lena = client.get("/api/v1/reports/managers", query_string=query, headers=token_for(hub, "lena@example.ru"))
    assert lena.json["managers"] == expected_rows(("Lena", "Max", "Mia"))
    assert lena.json["teams"] == expected_teams(("north",))
    for login in ("marketer@example.ru", "max@example.ru"):
        r = client.get("/api/v1/reports/managers", query_string=query, headers=token_for(hub, login))
        assert r.status_code == 403, login
    # Dates the wrong way round are turned round, as on the page; the answer says which period it is.
    swapped = client.get("/api/v1/reports/managers", query_string={"date_from": query["date_to"],
                                                                   "date_to": query["date_from"]},
                         headers=token_for(hub, "admin@example.ru"))
    assert swapped.status_code == 200 and swapped.json["managers"] == expected_rows()
    assert (swapped.json["period"]["date_from"], swapped.json["period"]["date_to"]) == \
        (query["date_from"], query["date_to"])
    too_long = client.get("/api/v1/reports/managers", query_string={"date_from": "2000-01-01",
                                                                    "date_to": query["date_to"]},
                          headers=token_for(hub, "admin@example.ru"))
    assert too_long.status_code == 200 and too_long.json["period"]["date_from"] == \
        (date.fromisoformat(query["date_to"]) - timedelta(days=366)).isoformat()

    for login in ("marketer@example.ru", "max@example.ru"):
        reader = app.test_client()
        sign_in(reader, login)
        assert reader.get("/report/managers", query_string=query).status_code == 403, login
        assert reader.get("/report/managers.csv", query_string=query).status_code == 403, login

    reader = app.test_client()
    sign_in(reader, "lena@example.ru")
    rows = list(csv.reader(io.StringIO(reader.get("/report/managers.csv", query_string=query).text)))
    assert rows[0][:6] == ["kind", "name", "team", "received", "taken", "converted"]
    assert rows[0][-5:] == ["refused_poor_quality", "refused_by_mistake", "refused_product_not_offered",
                            "refused_no_answer_5_attempts", "refused_chose_competitor"]
    assert [(r[0], r[1]) for r in rows[1:]] == [("manager", "Lena"), ("manager", "Max"), ("manager", "Mia"),
                                               ("team", "north")]
    max_row = dict(zip(rows[0], rows[2], strict=True))
    assert (max_row["speed_to_lead_median_s"], max_row["speed_to_lead_p90_s"], max_row["revenue"],
            max_row["refused_no_answer_5_attempts"]) == ("600.0", "1530.0", "150000.50", "1")

    page = reader.get("/report/managers", query_string=query, headers=RU)
    assert page.status_code == 200
    assert "Sid" not in page.text and "Sam" not in page.text                        # not Lena's team
    for words in ("Менеджеры", "Получено", "Команда north", "10 мин",
                  "Дольше всех берёт лид в работу: Max (медиана 10 мин).",
                  "Больше всех отказов: Mia (2, в основном «выбрал конкурента»)."):
        assert words in page.text, words
    local = reader.get("/report/managers.csv", query_string={**query, "header": "local"}, headers=RU).text
    assert list(csv.reader(io.StringIO(local)))[1][:4] == ["Строка", "Имя", "Команда", "Получено"]


def test_durations_read_as_a_person_says_them(app):
    from hub.web.pages.report_managers import duration
    with app.test_request_context(headers=RU):
        assert [duration(s) for s in (None, 45, 240, 4800, 3600, 93600, 86400)] == \
            ["—", "45 с", "4 мин", "1 ч 20 мин", "1 ч", "1 д 2 ч", "1 д"]
