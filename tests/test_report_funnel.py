"""The funnel per channel (/report/funnel, its CSV, /api/v1/reports/funnel) against a store built here with
known counts, on real SQLite and PostgreSQL: first and last touch, the cold base against inbound channels,
tags, spend for whole and partial months, cost per lead and per client, revenue, return on spend, the
period's bounds in the team's time zone, and who may read it.

The store (the team's zone is Moscow, UTC+3; the period 2026-03-01 … 2026-04-15 unless said otherwise):

  lead  source   campaign  created (Moscow)   later                                       tags
  L1    site     —         03-02 10:00        taken, converted 50 000                     website, VIP
  L2    ads      spring    03-05 10:00        came back via seo/brand; taken, conv 120 000 VIP, опт
  L3    ads      spring    03-10 10:00        taken, refused                              —
  L4    ads      spring    04-14 23:30 (in)   open                                        —
  L5    ads      —         04-16 00:30 (out)  converted 999                               —
  L6    seo      —         03-01 00:30 (in)   converted without being taken, no amount    —
  L7    seo      —         02-28 23:30 (out)  refused                                     —
  L8    site     —         03-12 10:00        open; L9's person merged into L8's person   website
  L9    seo      —         03-13 10:00        merged into L8 (never counted)              —
  C1    old_crm  winter    03-03 10:00        CSV import; came back via ads/retarget;     база
                                              taken, converted 30 000
  C2    old_crm  winter    03-04 10:00        CSV import; refused without being taken     база
  C3    old_crm  —         03-20 10:00        CSV import; open                            база
  C4    old_crm  —         2025-12-01 (out)   CSV import                                  база

Spend: ads 03: 31 000, 04: 30 000; seo 03: 10 000, 04: 9 000; locked 03: 3 000 (no leads); site 02: 2 800 and
05: 5 000 (both outside the period).

Lead times come from the deliveries' own clock and are then set to the table's (a webhook delivery carries
no time of its own); the CSV rows carry theirs; takes and status changes are given theirs."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from hub.desk.access import set_language
from hub.pipeline.persons import merge_persons
from hub.pipeline.routing.lifecycle import set_status, take
from hub.pipeline.worklog import set_tags
from hub.store.db import transaction
from hub.store.models import IdentityKey, Lead
from tests.helpers.web import WEB_CONFIG, deliver, make_users, sign_in, token_for

PERIOD = "date_from=2026-03-01&date_to=2026-04-15"
MSK_CONFIG = WEB_CONFIG + '\n[ui]\ntimezone = "Europe/Moscow"\n'
PHONES = {"L1": "+79120000001", "L2": "+79120000002", "L3": "+79120000003", "L4": "+79120000004",
          "L5": "+79120000005", "L6": "+79120000006", "L7": "+79120000007", "L8": "+79120000008",
          "L9": "+79120000009", "C1": "+79120000101", "C2": "+79120000102", "C3": "+79120000103",
          "C4": "+79120000104"}
# Creation instants in UTC (Moscow is UTC+3 all year).
CREATED = {"L1": "2026-03-02T07:00", "L2": "2026-03-05T07:00", "L3": "2026-03-10T07:00",
           "L4": "2026-04-14T20:30", "L5": "2026-04-15T21:30", "L6": "2026-02-28T21:30", "L7": "2026-02-28T20:30",
           "L8": "2026-03-12T07:00", "L9": "2026-03-13T07:00"}
IMPORT_CSV = """name,phone,created_at,utm_campaign
Cold One,+79120000101,2026-03-03 10:00,winter
Cold Two,+79120000102,2026-03-04 10:00,winter
Cold Three,+79120000103,2026-03-20 10:00,
Cold Four,+79120000104,2025-12-01 10:00,
"""
SPEND = [("ads", "2026-03", 31000), ("ads", "2026-04", 30000), ("seo", "2026-03", 10000), ("seo", "2026-04", 9000),
         ("locked", "2026-03", 3000), ("site", "2026-02", 2800), ("site", "2026-05", 5000)]
COUNT_NAMES = ("received", "taken", "converted", "refused", "open")
MONEY_NAMES = ("spend", "cost_per_lead", "cost_per_client", "revenue", "return_on_spend")


def at(moment: str) -> datetime:
    return datetime.fromisoformat(moment).replace(tzinfo=UTC)


@pytest.fixture
def config_path(write_config):
    return write_config(MSK_CONFIG)


def lead_of(session, phone: str) -> Lead:
    return session.scalars(select(Lead).join(IdentityKey, IdentityKey.person_id == Lead.person_id)
                           .where(IdentityKey.value == phone, Lead.merged_into_id.is_(None))).one()


@pytest.fixture
def store(app, hub, client, runner, tmp_path):
    make_users(hub)
    for name, source, campaign in [("L1", "site", None), ("L2", "ads", "spring"), ("L3", "ads", "spring"),
                                   ("L4", "ads", "spring"), ("L5", "ads", None), ("L6", "seo", None),
                                   ("L7", "seo", None), ("L8", "site", None), ("L9", "seo", None)]:
        deliver(client, hub, source, PHONES[name], **({"utm_campaign": campaign} if campaign else {}))
    deliver(client, hub, "seo", PHONES["L2"], utm_campaign="brand")         # the same open lead: a last touch
    path = tmp_path / "old_crm.csv"
    path.write_text(IMPORT_CSV, encoding="utf-8")
    imported = json.loads(runner("import", str(path), "--source", "old_crm", "--timezone", "Europe/Moscow",
                                 "--tag", "база", "--json").output)
    assert imported["created"] == 4 and imported["rejected"] == 0
    deliver(client, hub, "ads", PHONES["C1"], utm_campaign="retarget")      # the cold base answers an ad
    with transaction(hub.engine) as s:
        ids = {name: lead_of(s, phone).id for name, phone in PHONES.items()}
        for name, moment in CREATED.items():
            s.execute(update(Lead).where(Lead.id == ids[name]).values(created_at=at(moment)))
        l8, l9 = s.get(Lead, ids["L8"]), s.get(Lead, ids["L9"])
        merge_persons(s, l8.person_id, l9.person_id, "admin@example.ru")
    config = hub.config
    with transaction(hub.engine) as s:
        take(s, config, ids["L1"], "Max", at("2026-03-02T08:00"))
        set_status(s, config, ids["L1"], "converted", None, "Max", at("2026-03-03T08:00"), Decimal("50000"))
        set_tags(s, config, ids["L1"], ["website", "VIP"], "Max", at("2026-03-03T08:00"))
        take(s, config, ids["L2"], "Mia", at("2026-03-05T08:00"))
        set_status(s, config, ids["L2"], "converted", None, "Mia", at("2026-03-06T08:00"), Decimal("120000.00"))
        set_tags(s, config, ids["L2"], ["VIP", "опт"], "Mia", at("2026-03-06T08:00"))
        take(s, config, ids["L3"], "Mia", at("2026-03-10T08:00"))
        set_status(s, config, ids["L3"], "refused", "chose_competitor", "Mia", at("2026-03-11T08:00"))
        set_status(s, config, ids["L5"], "converted", None, "Mia", at("2026-04-16T08:00"), Decimal("999"))
        set_status(s, config, ids["L6"], "converted", None, "Sid", at("2026-03-02T08:00"))
        set_status(s, config, ids["L7"], "refused", "by_mistake", "Sid", at("2026-03-02T08:00"))
        c1 = s.get(Lead, ids["C1"])
        take(s, config, ids["C1"], c1.owner or "Max", at("2026-03-07T08:00"))
        set_status(s, config, ids["C1"], "converted", None, "Max", at("2026-03-08T08:00"), Decimal("30000"))
        set_status(s, config, ids["C2"], "refused", "by_mistake", "admin@example.ru", at("2026-03-05T08:00"))
    marketer = token_for(hub, "marketer@example.ru")
    for source, month, amount in SPEND:
        r = app.test_client().put(f"/api/v1/sources/{source}/spend", headers=marketer,
                                  json={"month": month, "amount": amount})
        assert r.status_code == 200, r.text
    return ids


def funnel(app, hub, query: str = "", login: str = "admin@example.ru"):
    r = app.test_client().get(f"/api/v1/reports/funnel?{PERIOD}{'&' + query if query else ''}",
                              headers=token_for(hub, login))
    assert r.status_code == 200, r.text
    return r.json


def counts(rows) -> dict[tuple[str, str], tuple]:
    return {(r["kind"], r["key"]): tuple(r[n] for n in COUNT_NAMES) for r in rows}


def money(rows) -> dict[tuple[str, str], tuple]:
    return {(r["kind"], r["key"]): tuple(r[n] for n in MONEY_NAMES) for r in rows}


def test_first_and_last_touch_by_source_with_the_money(app, hub, store):
    report = funnel(app, hub)
    assert report["period"] == {"date_from": "2026-03-01", "date_to": "2026-04-15", "timezone": "Europe/Moscow"}
    assert report["attributions"] == ["first_touch", "last_touch"]
    first, last = report["first_touch"], report["last_touch"]
    # Most leads first. L5 and L7 are outside the period (00:30 on the 16th, 23:30 on Feb 28, Moscow), L6 inside
    # (00:30 on Mar 1, Moscow: still Feb 28 in UTC), L9 merged; locked cost money and brought nothing.
    assert [(r["kind"], r["key"]) for r in first] == [
        ("inbound", "ads"), ("cold_base", "old_crm"), ("inbound", "site"), ("inbound", "seo"), ("inbound", "locked")]
    assert counts(first) == {
        ("inbound", "ads"): (3, 2, 1, 1, 1),            # L2 converted, L3 refused, L4 open
        ("cold_base", "old_crm"): (3, 1, 1, 1, 1),      # C1 converted, C2 refused untaken, C3 open
        ("inbound", "site"): (2, 1, 1, 0, 1),           # L1 converted, L8 open
        ("inbound", "seo"): (1, 1, 1, 0, 0),            # L6 converted without being taken: taken too
        ("inbound", "locked"): (0, 0, 0, 0, 0)}
    assert money(first) == {
        ("inbound", "ads"): ("46000.00", "15333.33", "46000.00", "120000.00", 2.61),   # 31 000 + 15/30 of 30 000
        ("cold_base", "old_crm"): (None, None, None, "30000.00", None),
        ("inbound", "site"): (None, None, None, "50000.00", None),                     # its spend is outside
        ("inbound", "seo"): ("14500.00", "14500.00", "14500.00", None, None),          # no amount on L6
        ("inbound", "locked"): ("3000.00", None, None, None, None)}
    rates = {r["key"]: (r["taken_rate"], r["conversion"]) for r in first}
    assert rates == {"ads": (66.7, 33.3), "old_crm": (33.3, 33.3), "site": (50.0, 50.0), "seo": (100.0, 100.0),
                     "locked": (None, None)}
    # By last touch: L2 moves to seo (brand), L8 to seo (the merged person's touch), C1 to ads (retarget),
    # and C1 is inbound there.
    assert [(r["kind"], r["key"]) for r in last] == [
        ("inbound", "ads"), ("inbound", "seo"), ("cold_base", "old_crm"), ("inbound", "site"), ("inbound", "locked")]
    assert counts(last) == {
        ("inbound", "ads"): (3, 2, 1, 1, 1),            # L3, L4, C1
        ("inbound", "seo"): (3, 2, 2, 0, 1),            # L2, L6, L8
        ("cold_base", "old_crm"): (2, 0, 0, 1, 1),      # C2, C3
        ("inbound", "site"): (1, 1, 1, 0, 0),           # L1
        ("inbound", "locked"): (0, 0, 0, 0, 0)}
    assert money(last) == {
        ("inbound", "ads"): ("46000.00", "15333.33", "46000.00", "30000.00", 0.65),
        ("inbound", "seo"): ("14500.00", "4833.33", "7250.00", "120000.00", 8.28),
        ("cold_base", "old_crm"): (None, None, None, None, None),
        ("inbound", "site"): (None, None, None, "50000.00", None),
        ("inbound", "locked"): ("3000.00", None, None, None, None)}
    assert report["lowest_cost_per_client"] == {
        "first_touch": {"source": "seo", "kind": "inbound", "cost_per_client": "14500.00", "converted": 1,
                        "spend": "14500.00"},
        "last_touch": {"source": "seo", "kind": "inbound", "cost_per_client": "7250.00", "converted": 2,
                       "spend": "14500.00"}}
    assert report["spend"] == [
        {"source": "ads", "month": "2026-03", "amount": "31000.00", "days_counted": 31, "days_in_month": 31,
         "counted": "31000.00"},
        {"source": "ads", "month": "2026-04", "amount": "30000.00", "days_counted": 15, "days_in_month": 30,
         "counted": "15000.00"},
        {"source": "locked", "month": "2026-03", "amount": "3000.00", "days_counted": 31, "days_in_month": 31,
         "counted": "3000.00"},
        {"source": "seo", "month": "2026-03", "amount": "10000.00", "days_counted": 31, "days_in_month": 31,
         "counted": "10000.00"},
        {"source": "seo", "month": "2026-04", "amount": "9000.00", "days_counted": 15, "days_in_month": 30,
         "counted": "4500.00"}]


def test_inbound_channels_against_the_cold_base(app, hub, store):
    totals = funnel(app, hub)["totals"]
    first = {t["kind"]: t for t in totals["first_touch"]}
    last = {t["kind"]: t for t in totals["last_touch"]}
    assert [t["kind"] for t in totals["first_touch"]] == ["inbound", "cold_base", "all"]
    assert counts([{**t, "key": ""} for t in totals["first_touch"]]) == {
        ("inbound", ""): (6, 4, 3, 1, 2), ("cold_base", ""): (3, 1, 1, 1, 1), ("all", ""): (9, 5, 4, 2, 3)}
    assert counts([{**t, "key": ""} for t in totals["last_touch"]]) == {
        ("inbound", ""): (7, 5, 4, 1, 2), ("cold_base", ""): (2, 0, 0, 1, 1), ("all", ""): (9, 5, 4, 2, 3)}
    assert tuple(first["inbound"][n] for n in MONEY_NAMES) == ("63500.00", "10583.33", "21166.67", "170000.00", 2.68)
    assert tuple(first["cold_base"][n] for n in MONEY_NAMES) == (None, None, None, "30000.00", None)
    assert tuple(first["all"][n] for n in MONEY_NAMES) == ("63500.00", "7055.56", "15875.00", "200000.00", 3.15)
    assert tuple(last["inbound"][n] for n in MONEY_NAMES) == ("63500.00", "9071.43", "15875.00", "200000.00", 3.15)
    assert tuple(last["cold_base"][n] for n in MONEY_NAMES) == (None, None, None, None, None)
    assert (first["inbound"]["taken_rate"], first["inbound"]["conversion"]) == (66.7, 50.0)
    assert (first["all"]["taken_rate"], first["all"]["conversion"]) == (55.6, 44.4)
    assert (last["inbound"]["taken_rate"], last["inbound"]["conversion"]) == (71.4, 57.1)
    assert (last["cold_base"]["taken_rate"], last["cold_base"]["conversion"]) == (0.0, 0.0)


def test_by_campaign_first_and_last_touch_and_no_spend_per_campaign(app, hub, store):
    report = funnel(app, hub, "group_by=utm_campaign")
    assert counts(report["first_touch"]) == {
        ("inbound", "spring"): (3, 2, 1, 1, 1), ("inbound", "(none)"): (3, 2, 2, 0, 1),
        ("cold_base", "winter"): (2, 1, 1, 1, 0), ("cold_base", "(none)"): (1, 0, 0, 0, 1)}
    assert counts(report["last_touch"]) == {
        ("inbound", "(none)"): (3, 2, 2, 0, 1), ("inbound", "spring"): (2, 1, 0, 1, 1),
        ("inbound", "brand"): (1, 1, 1, 0, 0), ("inbound", "retarget"): (1, 1, 1, 0, 0),
        ("cold_base", "winter"): (1, 0, 0, 1, 0), ("cold_base", "(none)"): (1, 0, 0, 0, 1)}
    # Spend is per source: a campaign's money columns are empty, its revenue is not.
    assert money(report["first_touch"])[("inbound", "spring")] == (None, None, None, "120000.00", None)
    assert money(report["last_touch"])[("inbound", "retarget")] == (None, None, None, "30000.00", None)
    assert {r["spend"] for r in report["first_touch"] + report["last_touch"]} == {None}
    # The totals and the cheapest client are per source whatever the grouping.
    assert report["lowest_cost_per_client"]["first_touch"]["source"] == "seo"
    assert [t["received"] for t in report["totals"]["first_touch"]] == [6, 3, 9]


def test_by_tag_a_lead_counts_once_in_each_of_its_tags(app, hub, store):
    report = funnel(app, hub, "group_by=tag")
    assert report["attributions"] == ["first_touch"] and report["last_touch"] is None
    assert [(r["kind"], r["key"]) for r in report["first_touch"]] == [
        ("inbound", "(none)"), ("cold_base", "база"), ("inbound", "VIP"), ("inbound", "website"), ("inbound", "опт")]
    assert counts(report["first_touch"]) == {
        ("inbound", "(none)"): (3, 2, 1, 1, 1),         # L3, L4, L6
        ("cold_base", "база"): (3, 1, 1, 1, 1),         # C1, C2, C3 (C4 is outside)
        ("inbound", "VIP"): (2, 2, 2, 0, 0),            # L1, L2
        ("inbound", "website"): (2, 1, 1, 0, 1),        # L1, L8
        ("inbound", "опт"): (1, 1, 1, 0, 0)}            # L2
    assert money(report["first_touch"]) == {
        ("inbound", "(none)"): (None, None, None, None, None),
        ("cold_base", "база"): (None, None, None, "30000.00", None),
        ("inbound", "VIP"): (None, None, None, "170000.00", None),
        ("inbound", "website"): (None, None, None, "50000.00", None),
        ("inbound", "опт"): (None, None, None, "120000.00", None)}
    assert [t["received"] for t in report["totals"]["first_touch"]] == [6, 3, 9]     # a lead once, not per tag


def test_a_partly_covered_month_counts_by_its_days_rounded_once_to_the_cent(app, hub, store):
    r = app.test_client().get("/api/v1/reports/funnel?date_from=2026-03-10&date_to=2026-04-15",
                              headers=token_for(hub, "admin@example.ru"))
    report = r.json
    parts = {(p["source"], p["month"]): (p["days_counted"], p["counted"]) for p in report["spend"]}
    assert parts == {("ads", "2026-03"): (22, "22000.00"), ("ads", "2026-04"): (15, "15000.00"),
                     ("locked", "2026-03"): (22, "2129.03"), ("seo", "2026-03"): (22, "7096.77"),
                     ("seo", "2026-04"): (15, "4500.00")}
    rows = {r["key"]: r for r in report["first_touch"]}
    # seo: 10 000 × 22/31 + 4 500 = 11 596.774… → 11 596.77 (not 7 096.77 + 4 500 rounded apart: the same here)
    assert rows["seo"]["spend"] == "11596.77" and rows["seo"]["received"] == 0
    assert counts(report["first_touch"]) == {("inbound", "ads"): (2, 1, 0, 1, 1), ("inbound", "site"): (1, 0, 0, 0, 1),
                                             ("cold_base", "old_crm"): (1, 0, 0, 0, 1), ("inbound", "seo"): (0,) * 5,
                                             ("inbound", "locked"): (0,) * 5}
    assert (rows["ads"]["spend"], rows["ads"]["cost_per_lead"], rows["ads"]["cost_per_client"]) == \
        ("37000.00", "18500.00", None)
    assert report["lowest_cost_per_client"] == {"first_touch": None, "last_touch": None}


def test_the_periods_bounds_are_the_teams_days(app, hub, store):
    # Mar 1 alone: L6 (00:30 Moscow, 21:30 UTC the day before) is in; L7 (23:30 Moscow on Feb 28) is not.
    one_day = app.test_client().get("/api/v1/reports/funnel?date_from=2026-03-01&date_to=2026-03-01",
                                    headers=token_for(hub, "admin@example.ru")).json
    assert counts(one_day["first_touch"]) == {("inbound", "seo"): (1, 1, 1, 0, 0), ("inbound", "ads"): (0,) * 5,
                                              ("inbound", "locked"): (0,) * 5}
    feb_28 = app.test_client().get("/api/v1/reports/funnel?date_from=2026-02-28&date_to=2026-02-28",
                                   headers=token_for(hub, "admin@example.ru")).json
    assert counts(feb_28["first_touch"]) == {("inbound", "seo"): (1, 0, 0, 1, 0), ("inbound", "site"): (0,) * 5}
    assert feb_28["spend"][0]["counted"] == "100.00"                  # 2 800 × 1/28
    # Apr 16: L5 (00:30 Moscow, still Apr 15 in UTC).
    apr_16 = app.test_client().get("/api/v1/reports/funnel?date_from=2026-04-16&date_to=2026-04-16",
                                   headers=token_for(hub, "admin@example.ru")).json
    assert counts(apr_16["first_touch"])[("inbound", "ads")] == (1, 1, 1, 0, 0)
    assert apr_16["first_touch"][0]["revenue"] == "999.00"
    # Reversed dates are turned round, as on the pages; the answer's period says what was counted.
    swapped = app.test_client().get("/api/v1/reports/funnel?date_from=2026-03-01&date_to=2026-02-28",
                                    headers=token_for(hub, "admin@example.ru")).json
    assert swapped["period"]["date_from"] == "2026-02-28" and swapped["period"]["date_to"] == "2026-03-01"
    assert sum(r["received"] for r in swapped["first_touch"]) == 2                  # L7 and L6
    assert app.test_client().get("/api/v1/reports/funnel?group_by=owner",
                                 headers=token_for(hub, "admin@example.ru")).status_code == 422


def test_the_marketer_and_the_team_lead_read_every_channel_and_no_person_a_manager_nothing(app, hub, store):
    admin = funnel(app, hub)
    assert funnel(app, hub, login="lena@example.ru") == admin           # a team lead: every channel
    marketer = funnel(app, hub, login="marketer@example.ru")
    assert marketer == admin
    text = json.dumps(marketer, ensure_ascii=False)
    assert not any(phone[2:] in text for phone in PHONES.values())
    assert not any(word in text for word in ("Client", "Cold One", "Max", "Mia", "Sid", "Lena"))
    manager = app.test_client().get(f"/api/v1/reports/funnel?{PERIOD}", headers=token_for(hub, "max@example.ru"))
    assert manager.status_code == 403
    for login in ("marketer@example.ru", "lena@example.ru"):
        reader = app.test_client()
        sign_in(reader, login)
        page = reader.get(f"/report/funnel?{PERIOD}")
        assert page.status_code == 200
        assert not any(phone[2:] in page.text for phone in PHONES.values()) and "Client 0" not in page.text
        assert reader.get(f"/report/funnel.csv?{PERIOD}").status_code == 200
    max_ = app.test_client()
    sign_in(max_, "max@example.ru")
    assert max_.get(f"/report/funnel?{PERIOD}").status_code == 403
    assert max_.get(f"/report/funnel.csv?{PERIOD}").status_code == 403


def test_the_csv_has_stable_columns_every_row_and_the_totals(app, hub, store):
    reader = app.test_client()
    sign_in(reader, "marketer@example.ru")
    r = reader.get(f"/report/funnel.csv?{PERIOD}")
    assert r.mimetype == "text/csv"
    assert 'filename="leadhub-funnel-source-2026-03-01-2026-04-15.csv"' in r.headers["Content-Disposition"]
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["row", "attribution", "kind", "source", "received", "taken", "converted", "refused", "open",
                       "taken_rate", "conversion", "spend", "cost_per_lead", "cost_per_client", "revenue",
                       "return_on_spend"]
    assert ["group", "first_touch", "inbound", "ads", "3", "2", "1", "1", "1", "66.7", "33.3", "46000.00",
            "15333.33", "46000.00", "120000.00", "2.61"] in rows
    assert ["group", "last_touch", "inbound", "seo", "3", "2", "2", "0", "1", "66.7", "66.7", "14500.00",
            "4833.33", "7250.00", "120000.00", "8.28"] in rows
    assert ["total", "first_touch", "cold_base", "", "3", "1", "1", "1", "1", "33.3", "33.3", "", "", "",
            "30000.00", ""] in rows
    assert len(rows) == 1 + 5 + 5 + 3 + 3
    local = list(csv.reader(io.StringIO(reader.get(f"/report/funnel.csv?{PERIOD}&group_by=tag&header=local").text)))
    assert local[0][3] == "tag" and len(local) == 2 + 5 + 6
    with transaction(hub.engine) as s:
        set_language(s, "marketer@example.ru", "ru")
    local = list(csv.reader(io.StringIO(reader.get(f"/report/funnel.csv?{PERIOD}&header=local").text)))
    assert local[1][:6] == ["Строка", "Атрибуция", "Тип", "источник", "Лидов", "Взято"]


def test_the_page_in_russian_answers_first_then_the_kinds_and_both_touches(app, hub, store):
    with transaction(hub.engine) as s:
        set_language(s, "admin@example.ru", "ru")
    reader = app.test_client()
    sign_in(reader, "admin@example.ru")
    page = reader.get(f"/report/funnel?{PERIOD}").text
    assert '<html lang="ru">' in page
    assert "Самая низкая цена клиента: seo (14\u00a0500,00 RUB)" in page
    assert "по последнему касанию — seo (7\u00a0250,00 RUB)" in page
    assert page.index('id="answer"') < page.index('id="totals"') < page.index('id="side-by-side"')
    # The side-by-side row of seo: first touch 1 lead, last touch 3.
    seo = page[page.index('<tr data-kind="inbound" data-group="seo">', page.index('id="side-by-side"')):]
    seo = seo[:seo.index("</tr>")]
    assert '<td class="num first" data-touch="first" data-name="received">1</td>' in seo
    assert '<td class="num last" data-touch="last" data-name="received">3</td>' in seo
    assert "Холодная база (импорт CSV)" in page and "Входящие каналы" in page
    # The funnel picture: received, taken, converted for the top groups.
    assert 'data-group="ads" data-stage="received" data-count="3"' in page
    assert 'data-group="ads" data-stage="converted" data-count="1"' in page
    last = reader.get(f"/report/funnel?{PERIOD}&touch=last").text
    assert 'id="detail" data-attribution="last_touch"' in last
    tags = reader.get(f"/report/funnel?{PERIOD}&group_by=tag").text
    assert 'id="side-by-side"' not in tags and "одна атрибуция" in tags
