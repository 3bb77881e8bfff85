"""What managers record in the hub reaches Bitrix24 and amoCRM (emulated with `responses`, in their own
request and answer shapes): each note once (a timeline comment, an amoCRM note), the tags, the deal's
amount, a refusal with its reason; a failed post is retried and posts nothing twice."""

from __future__ import annotations

import json
import re
from datetime import timedelta
from decimal import Decimal
from urllib.parse import unquote

import pytest
import requests
import responses
from sqlalchemy import select

import sinks.bitrix24
from hub.config import load_config
from hub.outbox.forwarding import Forwarder
from hub.pipeline.routing.lifecycle import set_status
from hub.pipeline.worklog import add_note, set_tags
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import DeliveryStatus, Lead, SinkDelivery, SinkLink, utcnow
from hub.web.app import create_app
from tests.helpers.web import WEB_CONFIG
from tests.test_sinks import AMO, BITRIX, Bitrix, deliver, drain, only

SINKS = f'''
[[sinks]]
name = "b24"
type = "bitrix24"
webhook_url = "{BITRIX}"
users = {{ Max = 7 }}

[[sinks]]
name = "amo"
type = "amocrm"
base_url = "{AMO}"
access_token = "long-lived-token"
users = {{ Max = 101 }}
loss_reasons = {{ chose_competitor = 555 }}
'''


@pytest.fixture
def config_path(write_config):
    return write_config(WEB_CONFIG + SINKS)


class Portal(Bitrix):
    """The Bitrix24 portal of tests/test_sinks.py, with the lead's timeline: crm.timeline.comment.add."""

    def __init__(self, rsps):
        super().__init__(rsps)
        self.comments: list[dict] = []
        self.comment_requests = 0
        # The n-th comment request (from 1) → the status it gets, or "lost": taken, but the answer never comes.
        self.comment_failures: dict[int, int | str] = {}
        rsps.add_callback(responses.POST, f"{BITRIX}crm.timeline.comment.add.json", callback=self._comment)
        rsps.add_callback(responses.POST, f"{BITRIX}crm.timeline.comment.list.json", callback=self._list)

    def _comment(self, request):
        params = json.loads(request.body)
        self.calls.append(("crm.timeline.comment.add", params))
        self.comment_requests += 1
        failure = self.comment_failures.get(self.comment_requests)
        if isinstance(failure, int):
            return failure, {}, json.dumps({"error": "INTERNAL_SERVER_ERROR", "error_description": "try later"})
        self.comments.append(params["fields"])
        if failure == "lost":
            raise requests.ConnectionError("read timed out")
        return 200, {}, json.dumps({"result": 1000 + len(self.comments), "time": {"start": 1.0}})

    def _list(self, request):
        params = json.loads(request.body)
        self.calls.append(("crm.timeline.comment.list", params))
        mine = [{"ID": str(1001 + i), "COMMENT": c["COMMENT"].replace("\n", "\r\n")}    # stored its own way
                for i, c in enumerate(self.comments) if c["ENTITY_ID"] == params["filter"]["ENTITY_ID"]]
        return 200, {}, json.dumps({"result": mine[::-1][:50], "total": len(mine)})

    def methods(self) -> list[str]:
        return [m for m, _ in self.calls]


class Amo:
    """An amoCRM account: leads/complex, PATCH leads/{id}, POST leads/{id}/notes, as API v4 answers."""

    def __init__(self, rsps):
        self.created: list[dict] = []
        self.patches: list[dict] = []
        self.notes: list[dict] = []
        self.note_failures: list[int | str] = []      # statuses for the next note posts, or "lost"
        self.lookups: list[str] = []
        rsps.add_callback(responses.GET, re.compile(rf"{AMO}/api/v4/leads/\d+/notes\?.*"), callback=self._list)
        rsps.add_callback(responses.POST, f"{AMO}/api/v4/leads/complex", callback=self._complex)
        rsps.add_callback(responses.PATCH, re.compile(rf"{AMO}/api/v4/leads/\d+$"), callback=self._patch)
        rsps.add_callback(responses.POST, re.compile(rf"{AMO}/api/v4/leads/\d+/notes$"), callback=self._notes)

    def _complex(self, request):
        self.created.append(json.loads(request.body)[0])
        return 200, {}, json.dumps([{"id": 9000 + len(self.created), "contact_id": 500, "company_id": None,
                                     "request_id": ["0"], "merged": False}])

    def _patch(self, request):
        lead_id = int(request.url.rsplit("/", 1)[-1])
        self.patches.append({"id": lead_id, **json.loads(request.body)})
        return 200, {}, json.dumps({"id": lead_id, "updated_at": 1700000000})

    def _notes(self, request):
        failure = self.note_failures.pop(0) if self.note_failures else None
        if isinstance(failure, int):
            return failure, {}, json.dumps({"title": "Service Unavailable", "status": failure})
        lead_id = int(request.url.rsplit("/", 2)[-2])
        posted = [{"lead": lead_id, **n} for n in json.loads(request.body)]
        self.notes.extend(posted)
        if failure == "lost":
            raise requests.ConnectionError("read timed out")
        return 200, {}, json.dumps({"_embedded": {"notes": [
            {"id": 70 + i, "entity_id": lead_id, "request_id": str(i)} for i in range(len(posted))]}})

    def _list(self, request):
        self.lookups.append(request.url)
        lead_id = int(request.url.split("/notes")[0].rsplit("/", 1)[-1])
        mine = [{"id": 70 + i, "entity_id": lead_id, "note_type": n["note_type"], "params": n["params"]}
                for i, n in enumerate(self.notes) if n["lead"] == lead_id]
        if not mine:
            return 204, {}, ""
        return 200, {}, json.dumps({"_page": 1, "_embedded": {"notes": mine[::-1][:50]}})

    def texts(self) -> list[str]:
        return [n["params"]["text"] for n in self.notes]


def lead_id(hub) -> int:
    with transaction(hub.engine, read_only=True) as s:
        return s.scalar(select(Lead.id).order_by(Lead.id).limit(1))


def record(hub, change, *args, **kwargs) -> None:
    """A manager's change in the hub, in its own transaction (as the web and the CLI make it)."""
    with transaction(hub.engine) as s:
        change(s, hub.config, *args, **kwargs)


def test_a_note_reaches_bitrix24_once_as_a_timeline_comment_with_tags_and_the_amount(hub, client):
    only(hub, "b24")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal = Portal(rsps)
        deliver(hub, client, "+79120000001")
        forwarder = Forwarder(hub)
        assert drain(forwarder)["sent"] == 1
        lead = lead_id(hub)
        record(hub, add_note, lead, "Перезвонить после обеда", "Max", utcnow())
        assert drain(forwarder)["sent"] == 1
        record(hub, set_tags, lead, ["опт", "VIP"], "Max", utcnow())
        record(hub, set_status, lead, "converted", None, "Max", utcnow(), amount=Decimal("12500.5"))
        assert drain(forwarder)["sent"] == 1                 # tags and the deal ride in one delivery
    assert portal.methods() == ["crm.lead.add", "crm.lead.update", "crm.timeline.comment.add", "crm.lead.update"]
    assert portal.comments == [{"ENTITY_ID": 100, "ENTITY_TYPE": "lead",
                                "COMMENT": "Перезвонить после обеда\n— Max"}]
    fields = portal.leads[100]
    assert fields["COMMENTS"] == "хочу оплатить\n\nTags: опт, VIP"      # the first message, then the tags
    assert fields["OPPORTUNITY"] == "12500.50" and fields["CURRENCY_ID"] == "RUB"
    assert fields["STATUS_ID"] == "CONVERTED"
    with transaction(hub.engine, read_only=True) as s:
        link = s.get(SinkLink, ("b24", lead))
    assert link.remote_id == "100" and link.remembered == {"notes": [link.remembered["notes"][0]], "in_flight": []}


def test_a_note_written_before_the_first_delivery_goes_with_the_create(hub, client):
    only(hub, "b24")
    deliver(hub, client, "+79120000001")
    lead = lead_id(hub)
    record(hub, add_note, lead, "first", "Max", utcnow())
    record(hub, add_note, lead, "second", "Mia", utcnow())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal = Portal(rsps)
        assert drain(Forwarder(hub))["sent"] == 1
    assert portal.methods() == ["crm.lead.add", "crm.timeline.comment.add", "crm.timeline.comment.add"]
    assert [c["COMMENT"] for c in portal.comments] == ["first\n— Max", "second\n— Mia"]


def test_bitrix24_a_503_on_a_comment_is_retried_and_nothing_is_posted_twice(hub, client):
    only(hub, "b24")
    deliver(hub, client, "+79120000001")
    lead = lead_id(hub)
    record(hub, add_note, lead, "one", "Max", utcnow())
    record(hub, add_note, lead, "two", "Max", utcnow())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal = Portal(rsps)
        portal.comment_failures = {2: 503}                   # the first note goes, the second fails
        forwarder = Forwarder(hub)
        assert forwarder.send_due() == {"sent": 0, "retried": 1, "dead": 0}
        with transaction(hub.engine, read_only=True) as s:
            link = s.get(SinkLink, ("b24", lead))
            delivery = s.scalars(select(SinkDelivery)).one()
        # The lead was created and the first note taken: both kept though the delivery failed after them.
        assert link.remote_id == "100" and len(link.remembered["notes"]) == 1
        assert delivery.status == DeliveryStatus.PENDING and "503" in delivery.last_error
        assert drain(forwarder, now=utcnow() + timedelta(hours=1))["sent"] == 1
    # No lead lookup, no second create; the comment in doubt is looked for, not found, posted.
    assert portal.methods() == ["crm.lead.add", "crm.timeline.comment.add", "crm.timeline.comment.add",
                                "crm.timeline.comment.list", "crm.lead.update", "crm.timeline.comment.add"]
    assert [c["COMMENT"] for c in portal.comments] == ["one\n— Max", "two\n— Max"]
    assert len(portal.leads) == 1


def test_a_refusal_reaches_bitrix24_as_junk_with_its_reason_once_in_the_users_language(write_config):
    hub = Hub(load_config(write_config(WEB_CONFIG + SINKS + '\n[ui]\ndefault_language = "ru"\n')))
    try:
        only(hub, "b24")
        client = create_app(hub=hub).test_client()
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            portal = Portal(rsps)
            deliver(hub, client, "+79120000001")
            lead = lead_id(hub)
            record(hub, set_tags, lead, ["опт"], "Max", utcnow())
            record(hub, set_status, lead, "refused", "chose_competitor", "Max", utcnow())
            forwarder = Forwarder(hub)
            assert drain(forwarder)["sent"] == 1
            record(hub, set_tags, lead, ["опт", "повтор"], "Max", utcnow())
            assert drain(forwarder)["sent"] == 1
        assert [c["COMMENT"] for c in portal.comments] == ["Причина отказа: выбрал конкурента"]   # once
        assert portal.leads[100]["STATUS_ID"] == "JUNK"
        assert portal.leads[100]["COMMENTS"] == "хочу оплатить\n\nТеги: опт, повтор"
    finally:
        hub.dispose()


def test_bitrix24_tags_go_to_the_user_field_named_in_settings(write_config):
    hub = Hub(load_config(write_config(WEB_CONFIG + SINKS.replace(
        'users = { Max = 7 }', 'users = { Max = 7 }\ntags_field = "UF_CRM_TAGS"'))))
    try:
        only(hub, "b24")
        client = create_app(hub=hub).test_client()
        with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
            portal = Portal(rsps)
            deliver(hub, client, "+79120000001")
            record(hub, set_tags, lead_id(hub), ["опт", "VIP"], "Max", utcnow())
            assert drain(Forwarder(hub))["sent"] == 1
        assert portal.leads[100]["UF_CRM_TAGS"] == "опт, VIP" and portal.leads[100]["COMMENTS"] == "хочу оплатить"
    finally:
        hub.dispose()


def test_a_long_backlog_of_notes_goes_in_several_deliveries_each_once(hub, client, monkeypatch):
    monkeypatch.setattr(sinks.bitrix24, "COMMENTS_PER_DELIVERY", 2)
    only(hub, "b24")
    deliver(hub, client, "+79120000001")
    lead = lead_id(hub)
    for n in range(5):
        record(hub, add_note, lead, f"note {n}", "Max", utcnow())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal = Portal(rsps)
        assert drain(Forwarder(hub))["sent"] == 3              # 2 + 2 + 1, each delivery asking for the next
    assert [c["COMMENT"] for c in portal.comments] == [f"note {n}\n— Max" for n in range(5)]
    assert portal.methods().count("crm.lead.add") == 1


def test_amocrm_gets_each_note_once_the_tags_the_price_and_a_mapped_loss_reason(hub, client):
    only(hub, "amo")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        amo = Amo(rsps)
        deliver(hub, client, "+79120000001")
        lead = lead_id(hub)
        record(hub, add_note, lead, "Клиент просил КП", "Max", utcnow())
        forwarder = Forwarder(hub)
        assert drain(forwarder)["sent"] == 1                 # created, then its note
        record(hub, set_tags, lead, ["опт", "Site"], "Max", utcnow())
        assert drain(forwarder)["sent"] == 1
        record(hub, set_status, lead, "refused", "chose_competitor", "Max", utcnow())
        assert drain(forwarder)["sent"] == 1
    assert amo.texts() == ["Клиент просил КП\n— Max"]          # once; the mapped reason needs no note
    assert amo.notes[0]["lead"] == 9001 and amo.notes[0]["note_type"] == "common"
    tags = [t["name"] for t in amo.patches[0]["_embedded"]["tags"]]
    assert tags[0] == "site" and "опт" in tags and "Site" not in tags      # amoCRM's tags ignore case
    refused = amo.patches[-1]
    assert refused["status_id"] == 143 and refused["loss_reason_id"] == 555


def test_amocrm_price_is_the_amount_in_whole_units_and_a_503_on_notes_is_retried_once(hub, client):
    only(hub, "amo")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        amo = Amo(rsps)
        deliver(hub, client, "+79120000001")
        forwarder = Forwarder(hub)
        assert drain(forwarder)["sent"] == 1
        lead = lead_id(hub)
        record(hub, add_note, lead, "договор подписан", "Max", utcnow())
        record(hub, set_status, lead, "converted", None, "Max", utcnow(), amount=Decimal("12500.50"))
        amo.note_failures = [503]
        assert forwarder.send_due() == {"sent": 0, "retried": 1, "dead": 0}
        assert amo.notes == []
        assert drain(forwarder, now=utcnow() + timedelta(hours=1))["sent"] == 1
        assert len(amo.lookups) == 1                         # the post in doubt was looked for: not there
        record(hub, set_tags, lead, ["повтор"], "Max", utcnow())
        assert drain(forwarder)["sent"] == 1
    assert amo.texts() == ["договор подписан\n— Max"]
    assert [p["price"] for p in amo.patches] == [12501, 12501, 12501] and amo.patches[0]["status_id"] == 142


def test_bitrix24_a_comment_whose_answer_was_lost_is_found_and_not_posted_again(hub, client):
    only(hub, "b24")
    deliver(hub, client, "+79120000001")
    lead = lead_id(hub)
    record(hub, add_note, lead, "one", "Max", utcnow())
    record(hub, add_note, lead, "two", "Max", utcnow())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal = Portal(rsps)
        portal.comment_failures = {2: "lost"}                # the portal takes "two"; its answer is lost
        forwarder = Forwarder(hub)
        assert forwarder.send_due() == {"sent": 0, "retried": 1, "dead": 0}
        assert drain(forwarder, now=utcnow() + timedelta(hours=1))["sent"] == 1
        record(hub, add_note, lead, "three", "Max", utcnow())
        assert drain(forwarder)["sent"] == 1
    assert [c["COMMENT"] for c in portal.comments] == ["one\n— Max", "two\n— Max", "three\n— Max"]
    assert portal.methods().count("crm.timeline.comment.list") == 1         # only after the answer in doubt


def test_amocrm_notes_whose_answer_was_lost_are_found_and_not_posted_again(hub, client):
    only(hub, "amo")
    deliver(hub, client, "+79120000001")
    lead = lead_id(hub)
    record(hub, add_note, lead, "one", "Max", utcnow())
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        amo = Amo(rsps)
        amo.note_failures = ["lost"]
        forwarder = Forwarder(hub)
        assert forwarder.send_due() == {"sent": 0, "retried": 1, "dead": 0}
        record(hub, add_note, lead, "two", "Mia", utcnow())      # rides along with the retry
        assert drain(forwarder, now=utcnow() + timedelta(hours=1))["sent"] == 1
    assert amo.texts() == ["one\n— Max", "two\n— Mia"]
    assert len(amo.created) == 1 and len(amo.lookups) == 1
    assert "filter[note_type]=common" in unquote(amo.lookups[0])


def test_a_lead_refused_again_after_reopening_gets_its_reason_told_again(hub, client):
    only(hub, "b24")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal = Portal(rsps)
        deliver(hub, client, "+79120000001")
        lead = lead_id(hub)
        record(hub, set_status, lead, "refused", "chose_competitor", "Max", utcnow())
        forwarder = Forwarder(hub)
        assert drain(forwarder)["sent"] == 1
        deliver(hub, client, "+79120000001", message="передумал, перезвоните")     # the client is back
        with transaction(hub.engine, read_only=True) as s:
            assert s.get(Lead, lead).status == "new" and s.get(Lead, lead).reopened_count == 1
        assert drain(forwarder)["sent"] == 1
        record(hub, set_status, lead, "refused", "chose_competitor", "Max", utcnow())
        assert drain(forwarder)["sent"] == 1
    assert [c["COMMENT"] for c in portal.comments] == ["Refusal reason: chose a competitor"] * 2
    assert portal.methods().count("crm.lead.add") == 1


def test_forgetting_a_person_clears_the_texts_of_a_crm_post_in_flight(hub, client):
    """A post whose answer was lost keeps its texts to be recognised later; a note may quote a phone."""
    from hub.pipeline.persons import find_person, forget_person

    only(hub, "b24")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal = Portal(rsps)
        deliver(hub, client, "+79120000001")
        lead = lead_id(hub)
        record(hub, add_note, lead, "Перезвонить на +79120000555", "Max", utcnow())
        portal.comment_failures[1] = "lost"                         # taken, but the answer never comes
        drain(Forwarder(hub))
    with transaction(hub.engine, read_only=True) as s:
        assert any("+79120000555" in t for t in s.get(SinkLink, ("b24", lead)).remembered["in_flight"])
    with transaction(hub.engine) as s:
        forget_person(s, find_person(s, "+79120000001", "RU"), "admin")
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(SinkLink, ("b24", lead)).remembered["in_flight"] == []
