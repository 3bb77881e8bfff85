"""Merge and unmerge: audited, and an unmerge restores the exact prior state."""

from __future__ import annotations

import json

import pytest
from sqlalchemy import select

from hub.pipeline.worker import Worker
from hub.store.db import transaction
from hub.store.models import IdentityKey, Lead, Person, PersonMerge, PossibleDuplicate, Touch
from tests.helpers.db import event

# The state a merge may change. Audit tables (lead_history, person_merge) only ever grow.
STATE = {Person: ("id", "name", "merged_into_id"), IdentityKey: ("id", "kind", "value", "person_id"),
         Lead: ("id", "person_id", "status", "refuse_reason", "owner", "source", "merged_into_id", "updated_at"),
         Touch: ("id", "lead_id", "event_id"), PossibleDuplicate: ("id", "person_id", "other_person_id",
                                                                   "resolved_by_merge_id")}


def snapshot(hub) -> dict:
    with transaction(hub.engine, read_only=True) as s:
        return {model.__name__: [tuple(getattr(row, c) for c in cols)
                                 for row in s.scalars(select(model).order_by(model.id))]
                for model, cols in STATE.items()}


def deliver(client, payload) -> int:
    return client.post("/hooks/site", json=payload).get_json()["event_ids"][0]


@pytest.fixture
def two_persons(client, hub):
    """Person A (phone; open lead with 2 touches) and person B (e-mail; a lead refused, then reopened by a
    later delivery: 2 touches), flagged as a possible duplicate by a delivery carrying both keys."""
    a = deliver(client, {"name": "Anna", "phone": "+79120000001"})
    b = deliver(client, {"email": "anna@example.ru", "utm_source": "vk"})
    Worker(hub).drain()
    with transaction(hub.engine) as s:         # B had an earlier lead, refused
        lead_b = s.get(Lead, event(hub, b).lead_id)
        lead_b.status, lead_b.refuse_reason = "refused", "by mistake"
    b2 = deliver(client, {"email": "anna@example.ru", "message": "again"})
    both = deliver(client, {"phone": "89120000001", "email": "anna@example.ru"})
    Worker(hub).drain()
    pa = event(hub, a)
    with transaction(hub.engine, read_only=True) as s:
        person_a = s.get(Lead, pa.lead_id).person_id
        person_b = s.get(Lead, event(hub, b).lead_id).person_id
    assert event(hub, both).lead_id == pa.lead_id
    return person_a, person_b, pa.lead_id, event(hub, b2).lead_id


def test_merge_moves_everything_and_unmerge_restores_it_exactly(hub, runner, two_persons):
    person_a, person_b, lead_a, lead_b = two_persons
    before = snapshot(hub)
    out = json.loads(runner("persons", "merge", str(person_a), str(person_b), "--by", "olga",
                            "--reason", "same phone owner", "--json").output)
    merge_id = out["merge_id"]
    after = snapshot(hub)
    assert after != before
    shown = json.loads(runner("persons", "show", "anna@example.ru", "--json").output)
    assert shown["id"] == person_a                                   # her e-mail now finds person A
    assert shown["keys"] == ["phone:+79120000001", "email:anna@example.ru"]
    leads = json.loads(runner("leads", "list", "--json").output)
    assert [lead["id"] for lead in leads] == [lead_a]                # B's open lead folded into A's ...
    assert leads[0]["touch_count"] == 4                              # ... with its touch
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(Person, person_b).merged_into_id == person_a
        assert s.get(Lead, lead_b).merged_into_id == lead_a
        assert s.scalars(select(PossibleDuplicate.resolved_by_merge_id)).all() == [merge_id]
        audit = s.get(PersonMerge, merge_id)
        assert (audit.merged_by, audit.reason) == ("olga", "same phone owner")
    assert "merged by olga" in runner("leads", "show", str(lead_a)).output
    assert json.loads(runner("persons", "duplicates", "--json").output) == []

    runner("persons", "unmerge", str(merge_id), "--by", "olga")
    assert snapshot(hub) == before
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(PersonMerge, merge_id).undone_by == "olga"
    assert "already undone by olga" in runner("persons", "unmerge", str(merge_id), expect=1).stderr


def test_after_a_merge_new_deliveries_reach_the_kept_person(client, hub, runner, two_persons):
    person_a, person_b, lead_a, _ = two_persons
    runner("persons", "merge", str(person_a), str(person_b))
    e = deliver(client, {"email": "ANNA@example.ru"})
    Worker(hub).drain()
    assert event(hub, e).lead_id == lead_a


def test_merge_refuses_nonsense(hub, runner, two_persons):
    person_a, person_b, _, _ = two_persons
    assert "cannot be merged into itself" in runner("persons", "merge", str(person_a), str(person_a), expect=1).stderr
    assert "no person 999" in runner("persons", "merge", str(person_a), "999", expect=1).stderr
    runner("persons", "merge", str(person_a), str(person_b))
    assert f"person {person_b} was already merged into person {person_a}" in \
        runner("persons", "merge", str(person_a), str(person_b), expect=1).stderr
    assert "no merge 42" in runner("persons", "unmerge", "42", expect=1).stderr


def test_persons_show_by_any_phone_spelling(hub, runner, two_persons):
    person_a, *_ = two_persons
    assert f"person {person_a}: Anna" in runner("persons", "show", "8 (912) 000-00-01").output
    assert "no person matches" in runner("persons", "show", "+79990000000", expect=1).stderr
