"""Forwarding to Bitrix24, amoCRM and signed webhooks, against their real request/response shapes
(emulated with `responses`): once per sink, never over the rate limit, nothing lost in an outage,
intake untouched by a failing sink."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import threading
import time
from datetime import timedelta

import pytest
import requests
import responses
from sqlalchemy import select

from hub.config import load_config
from hub.outbox.forwarding import Forwarder
from hub.pipeline.routing.lifecycle import set_status, take
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from hub.store.db import transaction
from hub.store.models import DeliveryStatus, Lead, SinkDelivery, SinkLink, SinkState, utcnow
from hub.web.app import create_app
from tests.helpers.web import WEB_CONFIG

BITRIX = "https://example.bitrix24.ru/rest/1/s3cr3tw3bh00k/"
AMO = "https://example.amocrm.ru"
HOOK = "https://receiver.example.com/leads"
WHSEC = "whsec_" + base64.b64encode(b"0123456789abcdef0123456789abcdef").decode()

SINKS = f'''
[[sinks]]
name = "b24"
type = "bitrix24"
webhook_url = "{BITRIX}"
users = {{ Max = 7, Mia = 8 }}

[[sinks]]
name = "amo"
type = "amocrm"
base_url = "{AMO}"
access_token = "old-access-token"
client_id = "client"
client_secret = "amo-client-secret"
refresh_token = "first-refresh-token"
redirect_uri = "https://hub.example.ru/amo"
users = {{ Max = 101 }}

[[sinks]]
name = "hook"
type = "webhook"
url = "{HOOK}"
secret = "{WHSEC}"
'''


@pytest.fixture
def config_path(write_config):
    return write_config(WEB_CONFIG + SINKS)


def deliver(hub, client, phone: str, source: str = "site", **fields) -> None:
    r = client.post(f"/hooks/{source}", json={"phone": phone, "name": "Иван Петров", "utm_source": "yandex",
                                              "utm_campaign": "spring", "message": "хочу оплатить", **fields})
    assert r.status_code == 200
    Worker(hub).drain()


def drain(forwarder: Forwarder, now=None) -> dict[str, int]:
    total = {"sent": 0, "retried": 0, "dead": 0}
    for _ in range(50):
        counts = forwarder.send_due(now=now)
        for k, v in counts.items():
            total[k] += v
        if not any(counts.values()):
            return total
    raise AssertionError("the forwarder never went idle")


class Bitrix:
    """A Bitrix24 portal: crm.lead.add / update / list over an incoming webhook, as its REST answers."""

    def __init__(self, rsps):
        self.leads: dict[int, dict] = {}
        self.calls: list[tuple[str, dict]] = []
        self.fail_next: list = []
        self.before_add = None             # called as a create arrives (the lead changing meanwhile)
        for method in ("crm.lead.add", "crm.lead.update", "crm.lead.list"):
            rsps.add_callback(responses.POST, f"{BITRIX}{method}.json", callback=self._answer(method))

    def _answer(self, method):
        def answer(request):
            params = json.loads(request.body)
            self.calls.append((method, params))
            failure = self.fail_next.pop(0) if self.fail_next else None
            if failure == "limit":
                return 503, {}, json.dumps({"error": "QUERY_LIMIT_EXCEEDED", "error_description": "Too many requests"})
            if method == "crm.lead.add":
                if self.before_add:
                    self.before_add()
                    self.before_add = None
                new_id = 100 + len(self.leads)
                self.leads[new_id] = params["fields"]
                if failure == "lost":              # done at the portal, but the answer never arrives
                    raise requests.ConnectionError("connection reset")
                return 200, {}, json.dumps({"result": new_id, "time": {"start": 1.0}})
            if method == "crm.lead.update":
                self.leads[int(params["id"])].update(params["fields"])
                return 200, {}, json.dumps({"result": True})
            found = [{"ID": str(i)} for i, f in self.leads.items()
                     if f["ORIGIN_ID"] == params["filter"]["ORIGIN_ID"] and f["ORIGINATOR_ID"] == "leadhub"]
            return 200, {}, json.dumps({"result": found, "total": len(found)})
        return answer


def only(hub, *sinks: str) -> Hub:
    """The same store and config with only these sinks enabled."""
    for sc in hub.config.sinks:
        sc.enabled = sc.name in sinks
    return hub


def test_bitrix24_each_lead_is_created_once_then_updated(hub, client):
    only(hub, "b24")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal = Bitrix(rsps)
        for n in range(3):
            deliver(hub, client, f"+7912000000{n}")
        deliver(hub, client, "+79120000001", message="ещё вопрос")        # a second touch: an update
        forwarder = Forwarder(hub)
        assert drain(forwarder)["sent"] == 3
        with transaction(hub.engine) as s:
            max_lead = s.scalar(select(Lead.id).where(Lead.owner == "Max").limit(1))
            take(s, hub.config, max_lead, "Max", utcnow())
        with transaction(hub.engine) as s:
            set_status(s, hub.config, max_lead, "converted", None, "Max", utcnow())
        assert drain(forwarder)["sent"] == 1                 # take and convert ride in one delivery
    adds = [p for m, p in portal.calls if m == "crm.lead.add"]
    assert len(adds) == 3 and len(portal.leads) == 3
    assert sorted(p["fields"]["ORIGIN_ID"] for p in adds) == ["1", "2", "3"]
    first = adds[0]["fields"]
    assert first["PHONE"] == [{"VALUE": "+79120000000", "VALUE_TYPE": "WORK"}] and first["NAME"] == "Иван Петров"
    assert first["UTM_SOURCE"] == "yandex" and first["UTM_CAMPAIGN"] == "spring"
    assert first["SOURCE_DESCRIPTION"] == "site"
    assert first["ASSIGNED_BY_ID"] == 7                     # site leads go to Max, Bitrix24 user 7
    with transaction(hub.engine, read_only=True) as s:
        remote = s.get(SinkLink, ("b24", max_lead)).remote_id
    updates = [p for m, p in portal.calls if m == "crm.lead.update"]
    assert updates and updates[-1]["id"] == remote and portal.leads[int(remote)]["STATUS_ID"] == "CONVERTED"


def test_bitrix24_a_lost_answer_and_a_rate_limit_never_make_a_duplicate(hub, client):
    only(hub, "b24")
    slept = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal = Bitrix(rsps)
        portal.fail_next = ["lost"]
        deliver(hub, client, "+79120000001")
        forwarder = Forwarder(hub, sleep=slept.append)
        assert forwarder.send_due() == {"sent": 0, "retried": 1, "dead": 0}
        portal.fail_next = ["limit"]                        # the retry's lookup first hits the limit
        counts = drain(forwarder, now=utcnow() + timedelta(hours=1))
    assert counts["sent"] == 1
    methods = [m for m, _ in portal.calls]
    assert methods == ["crm.lead.add", "crm.lead.list", "crm.lead.list", "crm.lead.update"]
    assert len(portal.leads) == 1                           # created once, found again, updated
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalars(select(SinkLink)).one().remote_id == "100"


def test_the_rate_limit_is_never_exceeded_with_two_forwarders(write_config):
    burst, rate = 4, 25.0
    config = WEB_CONFIG + f'''
[[sinks]]
name = "hook"
type = "webhook"
url = "{HOOK}"
secret = "{WHSEC}"
burst = {burst}
rate_per_second = {rate}
'''
    hub = Hub(load_config(write_config(config)))
    client = create_app(hub=hub).test_client()
    times: list[float] = []
    lock = threading.Lock()

    def receive(request):
        with lock:
            times.append(time.monotonic())
        return 200, {}, ""

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, HOOK, callback=receive)
        for n in range(30):
            r = client.post("/hooks/site", json={"phone": f"+7912000{n:04d}"})
            assert r.status_code == 200
        Worker(hub).drain()
        forwarders = [Forwarder(hub), Forwarder(hub)]
        threads = [threading.Thread(target=drain, args=(f,)) for f in forwarders]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
    assert len(times) == 30
    times.sort()
    # In any window, at most the burst plus what the rate refills (and one in flight at the window's edge).
    worst = max(j - i + 1 - (burst + rate * (times[j] - times[i])) for i in range(len(times))
                for j in range(i, len(times)))
    assert worst <= 1, f"{worst:.2f} requests over the limit in some window"
    assert times[-1] - times[0] >= (30 - burst - 1) / rate      # it really was held back
    with transaction(hub.engine, read_only=True) as s:
        assert {d.status for d in s.scalars(select(SinkDelivery))} == {DeliveryStatus.SENT}
    hub.dispose()


def test_a_sink_down_for_an_hour_loses_nothing_and_catches_up(hub, client):
    only(hub, "hook")
    clock = [utcnow()]
    down_until = clock[0] + timedelta(hours=1)
    received: dict[str, int] = {}

    def receive(request):
        if clock[0] < down_until:
            return 503, {}, "maintenance"
        received[request.headers["webhook-id"]] = received.get(request.headers["webhook-id"], 0) + 1
        return 204, {}, ""

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, HOOK, callback=receive)
        for n in range(5):
            deliver(hub, client, f"+7912000000{n}")
        forwarder = Forwarder(hub, now=lambda: clock[0])
        while clock[0] < down_until + timedelta(minutes=30):
            forwarder.send_due(now=clock[0])
            clock[0] += timedelta(minutes=2)
    assert len(received) == 5 and set(received.values()) == {1}     # all five, each once
    with transaction(hub.engine, read_only=True) as s:
        rows = list(s.scalars(select(SinkDelivery)))
    assert {d.status for d in rows} == {DeliveryStatus.SENT} and max(d.attempts for d in rows) > 5


def test_the_webhook_is_signed_per_standard_webhooks_and_keeps_its_id_on_retry(hub, client):
    only(hub, "hook")
    seen = []

    def receive(request):
        seen.append(request)
        return (500, {}, "") if len(seen) == 1 else (200, {}, "")

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, HOOK, callback=receive)
        deliver(hub, client, "+79120000001")
        drain(Forwarder(hub), now=utcnow() + timedelta(hours=1))
    assert len(seen) == 2
    key = base64.b64decode(WHSEC.removeprefix("whsec_"))
    for request in seen:
        h = request.headers
        signed = f"{h['webhook-id']}.{h['webhook-timestamp']}.".encode() + request.body
        expected = base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()
        assert h["webhook-signature"] == f"v1,{expected}"
        assert abs(int(h["webhook-timestamp"]) - time.time()) < 60
    assert seen[0].headers["webhook-id"] == seen[1].headers["webhook-id"]     # the receiver can drop a repeat
    body = json.loads(seen[1].body)
    assert body["type"] == "lead.created" and body["data"]["name"] == "Иван Петров"
    assert body["data"]["first_touch"]["utm_source"] == "yandex"


def test_amocrm_refreshes_an_expired_token_once_and_keeps_the_new_pair(hub, client):
    only(hub, "amo")
    tokens_seen, refreshes = [], []
    created = []

    def complex_(request):
        tokens_seen.append(request.headers["Authorization"])
        if request.headers["Authorization"] != "Bearer new-access-token":
            return 401, {}, json.dumps({"title": "Unauthorized", "type": "https://httpstatus.es/401",
                                        "status": 401, "detail": "Token has expired"})
        body = json.loads(request.body)
        created.append(body[0])
        return 200, {}, json.dumps([{"id": 9000 + len(created), "contact_id": 500, "company_id": None,
                                     "request_id": ["0"], "merged": False}])

    def oauth(request):
        sent = json.loads(request.body)
        refreshes.append(sent)
        return 200, {}, json.dumps({"token_type": "Bearer", "expires_in": 86400,
                                    "access_token": "new-access-token", "refresh_token": "second-refresh-token"})

    patches, notes = [], []

    def patch(request):
        tokens_seen.append(request.headers["Authorization"])
        patches.append(json.loads(request.body))
        return 200, {}, json.dumps({"id": 9001, "updated_at": 1700000000})

    def note(request):
        tokens_seen.append(request.headers["Authorization"])
        notes.extend(json.loads(request.body))
        return 200, {}, json.dumps({"_embedded": {"notes": [{"id": 1, "entity_id": 9001, "request_id": "0"}]}})

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, f"{AMO}/api/v4/leads/complex", callback=complex_)
        rsps.add_callback(responses.POST, f"{AMO}/oauth2/access_token", callback=oauth)
        rsps.add_callback(responses.PATCH, f"{AMO}/api/v4/leads/9001", callback=patch)
        rsps.add_callback(responses.POST, f"{AMO}/api/v4/leads/9001/notes", callback=note)
        deliver(hub, client, "+79120000001")
        deliver(hub, client, "+79120000002", source="ads")
        forwarder = Forwarder(hub)
        assert drain(forwarder)["sent"] == 2
        with transaction(hub.engine) as s:
            lead_id = s.scalar(select(SinkLink.lead_id).where(SinkLink.remote_id == "9001"))
            set_status(s, hub.config, lead_id, "refused", "by_mistake", "Max", utcnow())
        assert drain(forwarder)["sent"] == 1
    assert len(refreshes) == 1 and refreshes[0]["refresh_token"] == "first-refresh-token"
    assert refreshes[0]["grant_type"] == "refresh_token"
    assert tokens_seen == ["Bearer old-access-token", "Bearer new-access-token", "Bearer new-access-token",
                           "Bearer new-access-token", "Bearer new-access-token"]
    # No statuses configured: refused is amoCRM's own "lost" (143); the reason, not mapped to a
    # loss_reason_id, is told by a note.
    assert patches[-1]["status_id"] == 143 and "loss_reason_id" not in patches[-1]
    assert notes == [{"note_type": "common", "params": {"text": "Refusal reason: contacted by mistake"}}]
    with transaction(hub.engine, read_only=True) as s:
        state = s.get(SinkState, "amo").data
    assert state == {"access_token": "new-access-token", "refresh_token": "second-refresh-token"}
    lead = created[0]
    assert lead["name"].endswith("[leadhub-1]") and lead["responsible_user_id"] == 101
    contact = lead["_embedded"]["contacts"][0]
    assert contact["first_name"] == "Иван Петров"
    assert contact["custom_fields_values"][0] == {"field_code": "PHONE",
                                                  "values": [{"value": "+79120000001", "enum_code": "WORK"}]}
    assert {"field_code": "UTM_SOURCE", "values": [{"value": "yandex"}]} in lead["custom_fields_values"]
    assert {t["name"] for t in lead["_embedded"]["tags"]} >= {"site"}


def test_intake_and_processing_never_touch_a_failing_sink(hub, client):
    """A sink that is down cannot slow intake: the webhook answer and the worker's transaction make no
    request to any sink (they only queue); only the forwarder does, after commit, on its own thread."""
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, HOOK, body=requests.ConnectionError("down"))
        for n in range(10):
            assert client.post("/hooks/site", json={"phone": f"+7912000000{n}"}).status_code == 200
        Worker(hub).drain()
        assert len(rsps.calls) == 0
    with transaction(hub.engine, read_only=True) as s:
        queued = s.scalars(select(SinkDelivery)).all()
        leads = s.scalars(select(Lead)).all()
    assert len(leads) == 10 and len(queued) == 30            # three sinks, ten leads, all waiting


def test_dead_letters_are_listed_and_replayed(hub, client, runner):
    only(hub, "hook")
    answers = [(400, {}, json.dumps({"error": "unknown field"}))]
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, HOOK, callback=lambda r: answers[0])
        deliver(hub, client, "+79120000001")
        assert Forwarder(hub).send_due() == {"sent": 0, "retried": 0, "dead": 1}
    status = json.loads(runner("sinks", "status", "--json").output)
    assert {r["sink"]: r["dead"] for r in status["sinks"]}["hook"] == 1
    assert "webhook answered 400" in status["dead"][0]["last_error"] and WHSEC not in runner("sinks", "status").output
    assert "replayed 1" in runner("sinks", "replay", "--sink", "hook").output
    answers[0] = (200, {}, "")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, HOOK, callback=lambda r: answers[0])
        assert Forwarder(hub).send_due()["sent"] == 1


def test_a_bad_sink_config_is_reported_with_every_problem(write_config, runner):
    path = write_config(WEB_CONFIG + '''
[[sinks]]
name = "x"
type = "bitrix25"

[[sinks]]
name = "y"
type = "webhook"
url = "ftp://nope"
secret = "plain"
sources = ["nowhere"]
''')
    out = runner("check", "--config", str(path), expect=1)
    text = out.output + out.stderr
    assert "sinks[0].type: unknown sink type 'bitrix25'" in text
    assert "sinks[1].url" in text and "sinks[1].secret" in text and "no source named 'nowhere'" in text


def test_leads_export_csv_and_xlsx(hub, client, runner, tmp_path):
    only(hub)
    for n in range(3):
        deliver(hub, client, f"+7912000000{n}", source="site" if n < 2 else "ads")
    out = runner("leads", "export", "--format", "csv", "-o", str(tmp_path / "leads.csv")).output
    assert "wrote 3 lead(s)" in out
    text = (tmp_path / "leads.csv").read_text("utf-8-sig").splitlines()
    assert text[0].startswith("id,created_at,status") and "Иван Петров" in text[1] and "yandex" in text[1]
    runner("leads", "export", "--format", "xlsx", "-o", str(tmp_path / "leads.xlsx"), "--source", "site")
    from openpyxl import load_workbook
    rows = list(load_workbook(tmp_path / "leads.xlsx").active.values)
    assert rows[0][:3] == ("id", "created_at", "status") and len(rows) == 3 and rows[1][8] == "Иван Петров"
    assert {row[7] for row in rows[1:]} == {"site"}


def test_amocrm_a_lost_answer_is_found_by_its_marker_not_created_twice(hub, client):
    only(hub, "amo")
    created: list[dict] = []

    def complex_(request):
        body = json.loads(request.body)[0]
        created.append(body)
        if len(created) == 1:
            raise requests.ConnectionError("reset after the lead was made")
        return 200, {}, json.dumps([{"id": 9000 + len(created)}])

    def search(request):
        query = request.url.split("query=", 1)[1]
        found = [{"id": 9001, "name": c["name"]} for c in created if "[leadhub-1]" in c["name"]]
        # amoCRM's search is fuzzy: it also returns a lead whose name merely looks alike.
        leads = [{"id": 7777, "name": "Иван [leadhub-10]"}] + found
        return (200, {}, json.dumps({"_embedded": {"leads": leads}})) if "leadhub-1" in query else (204, {}, "")

    patched = []
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add_callback(responses.POST, f"{AMO}/api/v4/leads/complex", callback=complex_)
        rsps.add_callback(responses.GET, f"{AMO}/api/v4/leads", callback=search)
        rsps.add_callback(responses.PATCH, f"{AMO}/api/v4/leads/9001",
                          callback=lambda r: (patched.append(json.loads(r.body)), (200, {}, "{}"))[1])
        deliver(hub, client, "+79120000001")
        forwarder = Forwarder(hub)
        assert forwarder.send_due()["retried"] == 1
        assert drain(forwarder, now=utcnow() + timedelta(hours=1))["sent"] == 1
    assert len(created) == 1 and len(patched) == 1           # found by its marker and updated: one lead
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalars(select(SinkLink)).one().remote_id == "9001"


def test_a_change_during_a_lost_create_does_not_make_a_second_lead(hub, client):
    """The lead changes while its create is in flight (a new pending delivery is queued); the create's
    answer is lost. The newer delivery must find the lead, not create it again."""
    from hub.outbox.forwarding import queue_forwarding
    only(hub, "b24")

    def lead_changes():
        with transaction(hub.engine) as s:
            assert queue_forwarding(s, hub.config, 1) == 1

    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        portal = Bitrix(rsps)
        deliver(hub, client, "+79120000001")
        portal.before_add, portal.fail_next = lead_changes, ["lost"]
        forwarder = Forwarder(hub)
        assert forwarder.send_due()["sent"] == 1         # the lost one, superseded by the newer delivery
        drain(forwarder, now=utcnow() + timedelta(hours=1))
    assert len(portal.leads) == 1, [m for m, _ in portal.calls]
    assert [m for m, _ in portal.calls] == ["crm.lead.add", "crm.lead.list", "crm.lead.update"]


def test_an_sla_escalation_is_forwarded_too(hub, client):
    from hub.pipeline.routing.sla import sweep_sla
    only(hub, "hook")
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.add(responses.POST, HOOK, status=200)
        deliver(hub, client, "+79120000001")               # site → Max, 15-minute SLA
        assert drain(Forwarder(hub))["sent"] == 1
        with transaction(hub.engine) as s:
            [done] = sweep_sla(s, hub.config, utcnow() + timedelta(minutes=20))
        assert done["kind"] == "escalated" and done["to"] == "Lena"
        assert drain(Forwarder(hub))["sent"] == 1
        sent = json.loads(rsps.calls[-1].request.body)
    assert sent["type"] == "lead.updated" and sent["data"]["owner"] == "Lena"
