"""The sales desk through /api/v1 and the CLI: search (phone in any spelling, part of a name in any case, part
of an e-mail), tags, what is due first, notes, call-back tasks, the deal's amount, assigning a batch, and
forgetting a person's notes — on real SQLite and PostgreSQL stores."""

from __future__ import annotations

import json
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hub.store.db import transaction
from hub.store.models import Lead, utcnow
from tests.helpers.web import WEB_CONFIG, deliver, make_users, token_for


@pytest.fixture
def config_path(write_config):
    return write_config(WEB_CONFIG)


@pytest.fixture
def team(app, hub, client):
    """Users of every role; Max (north) has Иван Петров's lead, Mia (north) Мария's, Sid (south) Ivan's."""
    make_users(hub)
    deliver(client, hub, "site", "+79123456789", "hello", name="Иван Петров", email="Ivan.Petrov@Gmail.com")
    deliver(client, hub, "ads", "+79120000002", "need advice", name="Мария Иванова", email="maria@example.org")
    deliver(client, hub, "seo", "+79120000003", "hello", name="Ivan Sidorov")
    with transaction(hub.engine, read_only=True) as s:
        return {lead.owner: lead.id for lead in s.scalars(select(Lead))}


def _ids(api, headers, **query) -> list[int]:
    r = api.get("/api/v1/leads", headers=headers, query_string=query)
    assert r.status_code == 200, r.json
    return [lead["id"] for lead in r.json["items"]]


@pytest.mark.parametrize("persons_max", [1000, 0], ids=["by-person-ids", "as-subquery"])
def test_search_by_phone_in_any_spelling_by_part_of_a_name_in_any_case_and_by_part_of_an_email(
        app, hub, team, monkeypatch, persons_max):
    """Both ways a search is answered: from the ids of the few persons it names, or, when it names many,
    as a subquery."""
    monkeypatch.setattr("hub.desk.queries.SEARCH_PERSONS_MAX", persons_max, raising=False)
    api, admin = app.test_client(), token_for(hub, "admin@example.ru")
    for spelling in ("8 912 345-67-89", "+7 (912) 345 67 89", "79123456789"):
        assert _ids(api, admin, q=spelling) == [team["Max"]], spelling
    assert _ids(api, admin, q="иван") == [team["Mia"], team["Max"]]          # Иван Петров, Мария Иванова
    assert _ids(api, admin, q="ПЕТРОВ") == [team["Max"]]
    assert _ids(api, admin, q="iVaN") == [team["Sid"], team["Max"]]          # Ivan Sidorov; ivan.petrov@gmail.com
    assert _ids(api, admin, q="Petrov@GMAIL") == [team["Max"]]
    assert _ids(api, admin, q="example.org") == [team["Mia"]]
    assert _ids(api, admin, q="8 912 000-00-99") == []                        # a phone nobody has
    assert _ids(api, admin, q="%") == [] and _ids(api, admin, q="*") == [] and _ids(api, admin, q="[и]") == []


def test_a_managers_search_never_returns_anothers_lead(app, hub, team):
    api, max_ = app.test_client(), token_for(hub, "max@example.ru")
    assert _ids(api, max_, q="иван") == [team["Max"]]                         # not Mia's Мария Иванова
    assert _ids(api, max_, q="+79120000002") == []
    assert _ids(api, max_, q="maria@") == []
    lena = token_for(hub, "lena@example.ru")                                   # north: Max and Mia, not Sid
    assert _ids(api, lena, q="ivan") == [team["Max"]]


def test_tags_are_set_whole_and_filter_in_any_case(app, hub, team):
    api, mia = app.test_client(), token_for(hub, "mia@example.ru")
    r = api.post(f"/api/v1/leads/{team['Mia']}/tags", headers=mia, json={"tags": ["VIP", "Перезвонить", "vip"]})
    assert r.status_code == 200 and r.json["tags"] == ["VIP", "Перезвонить"]
    admin = token_for(hub, "admin@example.ru")
    assert _ids(api, admin, tag="vip") == [team["Mia"]]
    assert _ids(api, admin, tag="ПЕРЕЗВОНИТЬ") == [team["Mia"]]
    assert _ids(api, admin, tag="vi") == []                                   # a whole tag, not a part
    assert _ids(api, admin, tag="vip", q="иван") == [team["Mia"]]
    r = api.post(f"/api/v1/leads/{team['Mia']}/tags", headers=mia, json={"tags": ["Перезвонить"]})
    assert r.json["tags"] == ["Перезвонить"] and _ids(api, admin, tag="vip") == []
    change = [h for h in r.json["history"] if h["kind"] == "tags"][-1]
    assert change["from"] == ["VIP", "Перезвонить"] and change["to"] == ["Перезвонить"] and change["actor"] == "Mia"
    max_ = token_for(hub, "max@example.ru")
    assert api.post(f"/api/v1/leads/{team['Mia']}/tags", headers=max_, json={"tags": ["x"]}).status_code == 404


def test_due_first_puts_an_overdue_sla_then_the_earliest_task_before_the_newest(app, hub, client, team):
    api = app.test_client()
    admin, mia, sid = (token_for(hub, login) for login in ("admin@example.ru", "mia@example.ru", "sid@example.ru"))
    with transaction(hub.engine) as s:        # Max's lead (site: SLA 15 min) is now 5 minutes late
        s.execute(update(Lead).where(Lead.id == team["Max"]).values(sla_due_at=utcnow() - timedelta(minutes=5)))
    now = utcnow()
    for token, lead, hours in ((mia, team["Mia"], 2), (sid, team["Sid"], 1)):
        assert api.post(f"/api/v1/leads/{lead}/status", headers=token, json={"status": "in_work"}).status_code == 200
        r = api.post(f"/api/v1/leads/{lead}/tasks", headers=token,
                     json={"due_at": (now + timedelta(hours=hours)).isoformat(), "text": "call back"})
        assert r.status_code == 200, r.json
    deliver(client, hub, "ads", "+79120000004", "I want to pay")            # hot, new, no SLA, no task
    deliver(client, hub, "site", "+79120000005")                            # SLA running
    deliver(client, hub, "seo", "+79120000006")                             # to be closed: last
    with transaction(hub.engine, read_only=True) as s:
        hot, sla_running, closed = (s.scalars(select(Lead.id).order_by(Lead.id.desc()).limit(3)).all())[::-1]
    sid_closes = api.post(f"/api/v1/leads/{closed}/status", headers=sid, json={"status": "converted"})
    assert sid_closes.status_code == 200
    assert _ids(api, admin, order="due") == [team["Max"], sla_running, team["Sid"], team["Mia"], hot, closed]
    assert _ids(api, admin) == [closed, sla_running, hot, team["Sid"], team["Mia"], team["Max"]]
    due = api.get("/api/v1/leads", headers=admin, query_string={"order": "due", "limit": 2}).json
    assert [lead["id"] for lead in due["items"]] == [team["Max"], sla_running]
    assert due["next_before"] is None and due["total"] == 6                 # one page: no keyset for "due"
    assert _ids(api, mia, order="due") == [team["Mia"], hot]                 # her task first, then hot


def test_notes_tasks_and_the_amount_through_the_api(app, hub, team):
    api, mia = app.test_client(), token_for(hub, "mia@example.ru")
    lead = team["Mia"]
    r = api.post(f"/api/v1/leads/{lead}/notes", headers=mia,
                 json={"text": "Просит перезвонить после 18:00\nпо WhatsApp"})
    assert r.status_code == 200
    due_at = (utcnow() + timedelta(hours=3)).replace(microsecond=0)
    r = api.post(f"/api/v1/leads/{lead}/tasks", headers=mia,
                 json={"due_at": due_at.astimezone().isoformat(), "text": "перезвонить"})
    assert r.status_code == 200
    [task] = r.json["tasks"]
    assert task["due_at"] == due_at.isoformat().replace("+00:00", "Z") and task["created_by"] == "Mia"
    assert task["overdue"] is False and task["done_at"] is None
    r = api.post(f"/api/v1/leads/{lead}/tasks/{task['id']}/done", headers=mia)
    assert r.status_code == 200 and r.json["tasks"][0]["done_by"] == "Mia"
    assert api.post(f"/api/v1/leads/{lead}/tasks/{task['id'] + 1}/done", headers=mia).status_code == 404
    r = api.post(f"/api/v1/leads/{lead}/status", headers=mia, json={"status": "converted", "amount": 12500.5})
    assert r.status_code == 200 and r.json["amount"] == "12500.50"

    shown = api.get(f"/api/v1/leads/{lead}", headers=mia).json
    assert shown["amount"] == "12500.50" and shown["status"] == "converted"
    [note] = shown["notes"]
    assert note["text"] == "Просит перезвонить после 18:00\nпо WhatsApp" and note["actor"] == "Mia"
    assert shown["tasks"][0]["text"] == "перезвонить" and shown["tasks"][0]["done_at"]
    kinds = [h["kind"] for h in shown["history"]]
    assert kinds[-4:] == ["note", "task", "task_done", "status"]
    assert shown["history"][-1]["amount"] == "12500.50"
    listed = api.get("/api/v1/leads", headers=mia).json["items"][0]
    assert listed["amount"] == "12500.50" and "notes" not in listed
    # Another manager cannot write on it.
    max_ = token_for(hub, "max@example.ru")
    assert api.post(f"/api/v1/leads/{lead}/notes", headers=max_, json={"text": "mine now"}).status_code == 404


def test_bad_input_is_refused_with_a_clear_message(app, hub, team):
    api, max_ = app.test_client(), token_for(hub, "max@example.ru")
    lead = team["Max"]
    r = api.post(f"/api/v1/leads/{lead}/notes", headers=max_, json={"text": ""})
    assert r.status_code == 422 and r.json["message"].startswith("text:")
    r = api.post(f"/api/v1/leads/{lead}/notes", headers=max_, json={"text": "   "})
    assert r.status_code == 409 and r.json["message"] == "the note is empty"
    r = api.post(f"/api/v1/leads/{lead}/tasks", headers=max_, json={"due_at": "2030-01-01T18:00:00", "text": "x"})
    assert r.status_code == 422 and r.json["message"].startswith("due_at:") and "offset" in r.json["message"]
    r = api.post(f"/api/v1/leads/{lead}/tasks", headers=max_, json={"due_at": "2020-01-01T18:00:00+03:00",
                                                                    "text": "x"})
    assert r.status_code == 409 and r.json["message"] == "the task's time is in the past"
    r = api.post(f"/api/v1/leads/{lead}/tags", headers=max_, json={"tags": [f"t{i}" for i in range(21)]})
    assert r.status_code == 422 and r.json["message"].startswith("tags:") and "20" in r.json["message"]
    r = api.post(f"/api/v1/leads/{lead}/status", headers=max_, json={"status": "in_work", "amount": 5})
    assert r.status_code == 409 and "converted only" in r.json["message"]
    r = api.post(f"/api/v1/leads/{lead}/status", headers=max_,
                 json={"status": "refused", "reason": "by_mistake", "amount": 100})
    assert r.status_code == 409 and "converted only" in r.json["message"]
    r = api.post(f"/api/v1/leads/{lead}/status", headers=max_, json={"status": "converted", "amount": -1})
    assert r.status_code == 422 and r.json["message"].startswith("amount:")
    with transaction(hub.engine, read_only=True) as s:
        row = s.get(Lead, lead)
        assert (row.status, row.amount, row.tags) == ("new", None, ["website"])      # the source's tag
        assert [h.kind for h in row.history if h.kind in ("note", "task", "tags", "status")] == []


def test_a_team_lead_assigns_a_batch_within_their_teams(app, hub, client, team, runner):
    api, lena = app.test_client(), token_for(hub, "lena@example.ru")
    deliver(client, hub, "site", "+79120000007")                             # Max's second lead
    with transaction(hub.engine, read_only=True) as s:
        maxs = s.scalars(select(Lead.id).where(Lead.owner == "Max").order_by(Lead.id)).all()
    batch = [*maxs, team["Mia"]]
    r = api.post("/api/v1/leads/assign", headers=lena, json={"lead_ids": batch, "to": "Sid"})
    assert r.status_code == 409 and "not in your teams" in r.json["message"]
    r = api.post("/api/v1/leads/assign", headers=lena, json={"lead_ids": [*batch, team["Sid"]], "to": "Mia"})
    assert r.status_code == 404 and str(team["Sid"]) in r.json["message"]    # Sid's lead: south, not hers
    manager = token_for(hub, "max@example.ru")
    assert api.post("/api/v1/leads/assign", headers=manager, json={"lead_ids": maxs, "to": "Mia"}).status_code == 403

    r = api.post("/api/v1/leads/assign", headers=lena, json={"lead_ids": batch, "to": "Mia", "why": "Max is ill"})
    assert r.status_code == 200, r.json
    assert r.json == {"to": "Mia", "reassigned": maxs, "unchanged": [team["Mia"]]}
    log = json.loads(runner("leads", "handovers", "--json").output)
    handed = [h for h in log if h["kind"] == "reassigned"]
    assert sorted(h["lead_id"] for h in handed) == maxs
    assert all((h["from"], h["to"], h["by"], h["why"]) == ("Max", "Mia", "Lena", "Max is ill") for h in handed)

    # All or nothing: one closed lead in the batch and none moves.
    mia = token_for(hub, "mia@example.ru")
    assert api.post(f"/api/v1/leads/{maxs[0]}/status", headers=mia, json={"status": "converted"}).status_code == 200
    r = api.post("/api/v1/leads/assign", headers=lena, json={"lead_ids": [*maxs, team["Mia"]], "to": "Max"})
    assert r.status_code == 409 and r.json["message"].startswith("nothing reassigned:")
    with transaction(hub.engine, read_only=True) as s:
        assert set(s.scalars(select(Lead.owner).where(Lead.id.in_(batch)))) == {"Mia"}


def test_forgetting_a_person_erases_the_notes_and_tasks_about_them(app, hub, team, runner):
    from hub.pipeline.worklog import add_note, add_task

    lead, now = team["Max"], utcnow()
    with transaction(hub.engine) as s:
        add_note(s, hub.config, lead, "Иван просит звонить жене", "Max", now)
        add_task(s, hub.config, lead, now + timedelta(days=1), "Ивану после 18:00", "Max", now)
    erased = json.loads(runner("persons", "forget", "+79123456789", "--yes", "--json").output)["erased"]
    with transaction(hub.engine, read_only=True) as s:
        row = s.get(Lead, lead)
        texts = [h.data.get("text") for h in row.history if h.kind in ("note", "task")] + [t.text for t in row.tasks]
    assert texts == ["(erased)"] * 3
    assert erased["notes"] == 1 and erased["tasks"] == 1
    shown = app.test_client().get(f"/api/v1/leads/{lead}", headers=token_for(hub, "max@example.ru")).json
    dump = json.dumps(shown, ensure_ascii=False)
    assert "жене" not in dump and "после 18:00" not in dump
    assert shown["notes"][0]["text"] == "(erased)" and shown["tasks"][0]["text"] == "(erased)"


def test_the_cli_searches_writes_notes_tags_tasks_and_closes_with_an_amount(hub, client, team, runner):
    lead = team["Max"]
    listed = json.loads(runner("leads", "list", "--q", "8 (912) 345-67-89", "--json").output)
    assert [row["id"] for row in listed] == [lead]
    assert "Иван Петров" in runner("leads", "list", "--q", "ИВАН П").output
    runner("leads", "note", str(lead), "перезвонить вечером", "--by", "Max")
    tagged = json.loads(runner("leads", "tag", str(lead), "VIP", "опт", "--json").output)
    assert tagged["tags"] == ["VIP", "опт"]
    assert [row["id"] for row in json.loads(runner("leads", "list", "--tag", "Опт", "--json").output)] == [lead]
    due = (utcnow() + timedelta(hours=2)).replace(microsecond=0)
    task = json.loads(runner("leads", "task", str(lead), "--due", due.isoformat(), "--text", "call back",
                             "--json").output)["tasks"][0]
    assert task["due_at"] == due.isoformat().replace("+00:00", "Z") and task["text"] == "call back"
    assert "offset" in runner("leads", "task", str(lead), "--due", "2030-01-01T18:00", "--text", "x",
                              expect=1).stderr
    assert [row["id"] for row in json.loads(runner("leads", "list", "--order", "due", "--json").output)][0] == lead
    closed = json.loads(runner("leads", "status", str(lead), "converted", "--amount", "12 500,50", "--json").output)
    assert closed["amount"] == "12500.50" and closed["notes"][0]["text"] == "перезвонить вечером"
    assert "not an amount" in runner("leads", "status", str(team["Mia"]), "converted", "--amount", "lots",
                                     expect=2).stderr
