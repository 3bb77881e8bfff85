"""The web app and /api/v1 as their users use them: sign-in, roles, who sees which leads, lead actions,
the channel report's numbers, channel health and replay — on real SQLite and PostgreSQL stores."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from sqlalchemy import select, update

from hub.pipeline.worker import Worker
from hub.store.db import transaction
from hub.store.models import EventStatus, InboundEvent, Lead, utcnow
from hub.web.common import PUBLIC_ENDPOINTS, roles_of
from tests.helpers.web import PASSWORD, WEB_CONFIG, csrf_token, deliver, make_users, post_form, sign_in, token_for

ADMIN, MARKETER, MANAGER, LEAD, TELEPHONY = "admin", "marketer", "manager", "lead", "telephony"
EVERYONE = {ADMIN, MARKETER, MANAGER, LEAD, TELEPHONY}
SALES = {ADMIN, LEAD, MANAGER}
MARKETING = {ADMIN, MARKETER}

# Who may call what. A route missing here fails test_every_route_has_the_expected_rule: adding a route
# means deciding, in this table, who may use it.
EXPECTED_ACCESS = {
    "pages.logout": EVERYONE,
    "pages.home": EVERYONE,
    "pages.profile": EVERYONE,
    "pages.telegram_link": SALES,          # a user with a manager links their own Telegram
    "pages.telegram_unlink": SALES,
    "pages.calls_poll": SALES,
    "pages.inbox": SALES,
    "pages.leads_export": {ADMIN},
    "pages.lead_card": SALES,
    "pages.lead_take": SALES,
    "pages.lead_attempt": SALES,
    "pages.lead_status": SALES,
    "pages.lead_reassign": {ADMIN, LEAD},
    "pages.lead_note": SALES,
    "pages.lead_tags": SALES,
    "pages.lead_task": SALES,
    "pages.lead_task_done": SALES,
    "pages.inbox_poll": SALES,
    "pages.leads_assign": {ADMIN, LEAD},
    "pages.report": {ADMIN, MARKETER, LEAD},
    "pages.report_csv": {ADMIN},
    "pages.report_spend": MARKETING,
    "pages.report_funnel": {ADMIN, MARKETER, LEAD},
    "pages.report_funnel_csv": {ADMIN, MARKETER, LEAD},
    "pages.report_managers": {ADMIN, LEAD},
    "pages.report_managers_csv": {ADMIN, LEAD},
    "pages.report_statuses": {ADMIN, MARKETER, LEAD},
    "pages.report_statuses_csv": {ADMIN, MARKETER, LEAD},
    "pages.report_handovers_csv": {ADMIN, LEAD},
    "pages.report_activity": {ADMIN, LEAD},
    "pages.report_activity_csv": {ADMIN, LEAD},
    "pages.channels": MARKETING,
    "pages.channel": MARKETING,
    "pages.event_replay": MARKETING,
    "pages.channel_replay_dead": MARKETING,
    "pages.mapping_tester": MARKETING,
    "pages.managers": {ADMIN, LEAD},
    "pages.manager_update": {ADMIN, LEAD},
    "api.me": EVERYONE,
    "api.lookup_caller": {ADMIN, TELEPHONY},
    "api.leads_list": SALES,
    "api.leads_show": SALES,
    "api.leads_status": SALES,
    "api.leads_attempt": SALES,
    "api.leads_reassign": {ADMIN, LEAD},
    "api.leads_note": SALES,
    "api.leads_tags": SALES,
    "api.leads_task": SALES,
    "api.leads_task_done": SALES,
    "api.leads_assign": {ADMIN, LEAD},
    "api.events_list": MARKETING,
    "api.events_show": MARKETING,
    "api.events_replay": MARKETING,
    "api.report_channels": {ADMIN, MARKETER, LEAD},
    "api.report_funnel": {ADMIN, MARKETER, LEAD},
    "api.report_managers": {ADMIN, LEAD},
    "api.report_statuses": {ADMIN, MARKETER, LEAD},
    "api.report_handovers": {ADMIN, LEAD},
    "api.report_activity": {ADMIN, LEAD},
    "api.sources_list": MARKETING,
    "api.sources_spend": MARKETING,
    "api.sources_try": MARKETING,
    "api.managers_list": {ADMIN, LEAD},
    "api.managers_update": {ADMIN, LEAD},
}
PUBLIC = {"pages.login", "hooks.webhook", "health.healthz", "health.metrics", "openapi", "static", "pages.static",
          "telegram_bot.webhook"}      # Telegram's secret header (tests/test_manager_bot.py)
ROLE_LOGIN = {ADMIN: "admin@example.ru", MARKETER: "marketer@example.ru", MANAGER: "max@example.ru",
              LEAD: "lena@example.ru", TELEPHONY: "pbx@example.ru"}
SAMPLE_ARGS = {"lead_id": 1, "task_id": 1, "event_id": 1, "source_name": "site", "name": "Max",
               "filename": "hub.css"}


@pytest.fixture
def config_path(write_config):
    return write_config(WEB_CONFIG)


@pytest.fixture
def team(app, hub, client):
    """Users of every role, and one lead per source: site → Max, ads → Mia, seo → Sid."""
    make_users(hub)
    deliver(client, hub, "site", "+79120000001", "I want to pay")
    deliver(client, hub, "ads", "+79120000002", "need advice")
    deliver(client, hub, "seo", "+79120000003", "hello")
    with transaction(hub.engine, read_only=True) as s:
        return {lead.owner: lead.id for lead in s.scalars(select(Lead))}


def _routes(app):
    for rule in app.url_map.iter_rules():
        if rule.endpoint in PUBLIC:
            continue
        url = rule.build({k: SAMPLE_ARGS[k] for k in rule.arguments}, append_unknown=False)[1]
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            yield rule.endpoint, method, url


def test_every_route_has_the_expected_rule(app):
    endpoints = {rule.endpoint for rule in app.url_map.iter_rules()}
    assert PUBLIC_ENDPOINTS | {"openapi", "pages.static"} >= PUBLIC & endpoints
    missing = endpoints - set(EXPECTED_ACCESS) - PUBLIC
    assert not missing, f"routes with no entry in EXPECTED_ACCESS: {sorted(missing)}"
    for endpoint, roles in EXPECTED_ACCESS.items():
        assert roles_of(app.view_functions[endpoint]) == roles, endpoint


def test_anonymous_users_are_refused_everywhere(app, client, team):
    checked = 0
    for endpoint, method, url in _routes(app):
        if endpoint in PUBLIC:
            continue
        r = client.open(url, method=method, json={} if endpoint.startswith("api.") else None)
        if endpoint.startswith("api."):
            assert r.status_code == 401, (endpoint, method, r.status_code)
            assert r.json["error"] == "unauthorized" and "Bearer" in r.headers["WWW-Authenticate"]
        else:
            # Pages send people to sign in; a POST without a session has no CSRF token either.
            assert r.status_code in (302, 400), (endpoint, method, r.status_code)
            if r.status_code == 302:
                assert "/login" in r.headers["Location"]
        checked += 1
    assert checked == sum(1 for e, _, _ in _routes(app) if e not in PUBLIC)


@pytest.mark.parametrize("role", [ADMIN, MARKETER, MANAGER, LEAD, TELEPHONY])
def test_the_wrong_role_is_refused_everywhere(app, hub, team, role):
    pages = app.test_client()
    assert sign_in(pages, ROLE_LOGIN[role]).status_code == 302
    token = csrf_token(pages, "/")
    api = token_for(hub, ROLE_LOGIN[role])
    for endpoint, method, url in _routes(app):
        if endpoint in PUBLIC:
            continue
        allowed = role in EXPECTED_ACCESS[endpoint]
        if endpoint.startswith("api."):
            r = app.test_client().open(url, method=method, headers=api, json={})
        else:
            r = pages.open(url, method=method, data={"csrf_token": token})
        if allowed:
            assert r.status_code != 403, (role, endpoint, method)
        else:
            assert r.status_code == 403, (role, endpoint, method, r.status_code)
            if endpoint.startswith("api."):
                assert r.json == {"error": "forbidden", "message": f"a {role} may not do this"}
        if endpoint == "pages.logout" and allowed:       # signed out by the sweep: sign in again
            sign_in(pages, ROLE_LOGIN[role])
            token = csrf_token(pages, "/")


def test_a_manager_sees_only_their_own_leads(app, hub, client, team):
    sign_in(client, "max@example.ru")
    inbox = client.get("/leads").text
    assert re.findall(r'data-lead-id="(\d+)"', inbox) == [str(team["Max"])]
    assert client.get(f"/leads/{team['Mia']}").status_code == 404
    api = app.test_client()
    h = token_for(hub, "max@example.ru")
    assert [lead["id"] for lead in api.get("/api/v1/leads", headers=h).json["items"]] == [team["Max"]]
    assert api.get(f"/api/v1/leads/{team['Sid']}", headers=h).status_code == 404
    # Acting on someone else's lead is refused as if it did not exist.
    r = api.post(f"/api/v1/leads/{team['Mia']}/status", headers=h, json={"status": "in_work"})
    assert r.status_code == 404
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(Lead, team["Mia"]).status == "new"


def test_a_team_lead_sees_their_teams_leads_and_hands_over_within_them(app, hub, team):
    client = app.test_client()
    h = token_for(hub, "lena@example.ru")
    ids = {lead["id"] for lead in client.get("/api/v1/leads", headers=h).json["items"]}
    assert ids == {team["Max"], team["Mia"]}                  # north only; Sid is south
    r = client.post(f"/api/v1/leads/{team['Max']}/owner", headers=h, json={"owner": "Sid", "why": "x"})
    assert r.status_code == 409 and "not in your teams" in r.json["message"]
    r = client.post(f"/api/v1/leads/{team['Max']}/owner", headers=h, json={"owner": "Mia", "why": "Max is ill"})
    assert r.status_code == 200 and r.json["owner"] == "Mia"
    handover = [h for h in r.json["history"] if h["kind"] == "reassigned"][-1]
    assert handover["from"] == "Max" and handover["to"] == "Mia" and handover["actor"] == "Lena"


def test_a_marketer_sees_no_lead_and_no_contact(app, hub, client, team):
    sign_in(client, "marketer@example.ru")
    assert client.get("/leads").status_code == 403
    assert client.get(f"/leads/{team['Max']}").status_code == 403
    report = client.get("/report").text
    assert "+7912" not in report and "Client" not in report
    assert client.get("/report.csv").status_code == 403          # CSV download is for admins


def test_take_refuse_convert_through_the_pages(app, hub, client, team):
    sign_in(client, "max@example.ru")
    lead = team["Max"]
    r = post_form(client, f"/leads/{lead}/take", page=f"/leads/{lead}")
    assert r.status_code == 302
    card = client.get(f"/leads/{lead}").text
    assert "Taken into work." in card and 'data-status="in_work"' in card
    # A refusal needs a reason; the 5-attempts reason needs 5 attempts.
    post_form(client, f"/leads/{lead}/status", {"status": "refused", "reason": "no_answer_5_attempts"},
              page=f"/leads/{lead}")
    card = client.get(f"/leads/{lead}").text
    assert "needs 5 contact attempts" in card and 'data-status="in_work"' in card
    post_form(client, f"/leads/{lead}/status", {"status": "refused", "reason": "by_mistake", "confirmed": "1"},
              page=f"/leads/{lead}")
    card = client.get(f"/leads/{lead}").text
    assert 'data-status="refused"' in card and 'data-reason="by_mistake"' in card
    with transaction(hub.engine, read_only=True) as s:
        kinds = [h.kind for h in s.get(Lead, lead).history]
    assert kinds[-2:] == ["taken", "status"]


def test_api_status_changes_and_their_errors(app, hub, team):
    client = app.test_client()
    h = token_for(hub, "mia@example.ru")
    lead = team["Mia"]
    r = client.post(f"/api/v1/leads/{lead}/status", headers=h, json={"status": "refused"})
    assert r.status_code == 409 and "needs a reason" in r.json["message"]
    r = client.post(f"/api/v1/leads/{lead}/status", headers=h, json={"status": "won"})
    assert r.status_code == 422 and r.json["error"] == "invalid_request" and r.json["message"].startswith("status")
    assert client.post(f"/api/v1/leads/{lead}/status", headers=h, json={"status": "in_work"}).json["status"] == \
        "in_work"
    for _ in range(5):
        assert client.post(f"/api/v1/leads/{lead}/attempts", headers=h).status_code == 200
    r = client.post(f"/api/v1/leads/{lead}/status", headers=h,
                    json={"status": "refused", "reason": "no_answer_5_attempts"})
    assert r.status_code == 200 and r.json["refuse_reason"] == "no_answer_5_attempts"
    r = client.post(f"/api/v1/leads/{lead}/status", headers=h, json={"status": "converted"})
    assert r.status_code == 409 and "already refused" in r.json["message"]
    assert client.get("/api/v1/leads/999999", headers=h).json["error"] == "not_found"


def test_sign_in_failures_csrf_and_sessions(app, hub, client, team):
    r = sign_in(client, "max@example.ru", "wrong password")
    assert r.status_code == 401 and "Wrong login or password." in r.text
    assert sign_in(client, "nobody@example.ru").status_code == 401
    # A form without the CSRF token is refused, signed in or not.
    assert client.post("/login", data={"login": "max@example.ru", "password": PASSWORD}).status_code == 400
    r = client.post("/login?next=//evil.example/x",
                    data={"login": "max@example.ru", "password": PASSWORD, "csrf_token": csrf_token(client)})
    assert r.headers["Location"] == "/"                  # never an open redirect
    assert client.post(f"/leads/{team['Max']}/take").status_code == 400
    # A password change signs out every open session.
    from hub.desk.access import set_password
    with transaction(hub.engine) as s:
        set_password(s, "max@example.ru", "a brand new password")
    assert client.get("/leads").status_code == 302
    cookie = client.get_cookie("session")
    assert cookie is None or "HttpOnly" in str(cookie) or cookie.http_only


def test_failed_sign_ins_are_throttled(app, client, hub, team):
    limit = hub.config.web.max_failed_logins
    for _ in range(limit):
        assert sign_in(client, "max@example.ru", "guess").status_code == 401
    assert sign_in(client, "max@example.ru").status_code == 429      # even the right password, for a while


def test_revoked_and_unknown_tokens_are_refused(app, hub, team):
    client = app.test_client()
    h = token_for(hub, "admin@example.ru")
    assert client.get("/api/v1/me", headers=h).json == {"login": "admin@example.ru", "role": "admin",
                                                        "manager": None}
    from hub.desk.access import revoke_token
    from hub.store.users import ApiToken
    with transaction(hub.engine) as s:
        for token in s.scalars(select(ApiToken)):
            revoke_token(s, token.id)
    assert client.get("/api/v1/me", headers=h).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer lh_nope"}).status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Basic abc"}).status_code == 401


def test_channel_report_numbers(app, hub, client, team):
    # On top of the team's three leads (site hot, ads warm, seo cold): two more on ads, one converted.
    deliver(client, hub, "ads", "+79120000004", "pay now", utm_campaign="black_friday")
    deliver(client, hub, "ads", "+79120000005", "hello", utm_campaign="black_friday")
    api = app.test_client()
    mia = token_for(hub, "mia@example.ru")
    five = api.get("/api/v1/leads?source=ads&warmth=hot", headers=mia).json["items"][0]["id"]
    api.post(f"/api/v1/leads/{five}/status", headers=mia, json={"status": "converted"})
    h = token_for(hub, "marketer@example.ru")
    month = utcnow().strftime("%Y-%m")
    r = api.put("/api/v1/sources/ads/spend", headers=h, json={"month": month, "amount": 3000})
    assert r.status_code == 200 and r.json == {"source": "ads", "month": month, "spend": 3000.0, "leads": 3,
                                               "cost_per_lead": 1000.0}
    report = api.get("/api/v1/reports/channels", headers=h).json
    groups = {g["key"]: g for g in report["groups"]}
    assert {k: g["leads"] for k, g in groups.items()} == {"ads": 3, "site": 1, "seo": 1}
    assert groups["ads"]["warmth"]["hot"] == {"leads": 1, "converted": 1, "refused": 0, "conversion": 100.0}
    assert groups["ads"]["warmth"]["warm"]["leads"] == 1 and groups["ads"]["warmth"]["cold"]["leads"] == 1
    assert groups["ads"]["conversion"] == 33.3
    assert report["days"][-1] == {"day": utcnow().date().isoformat(), "total": 5,
                                  "counts": {"ads": 3, "site": 1, "seo": 1}}
    by_campaign = api.get("/api/v1/reports/channels?group_by=utm_campaign", headers=h).json
    assert {g["key"]: g["leads"] for g in by_campaign["groups"]} == {"black_friday": 2, "(none)": 3}
    # The page shows the same numbers; the chart's bars add up to them.
    sign_in(client, "marketer@example.ru")
    page = client.get("/report").text
    bars = re.findall(r'data-group="(\w+)" data-count="(\d+)"', page)
    assert sorted(bars) == [("ads", "3"), ("seo", "1"), ("site", "1")]
    assert re.search(r'<td class="num cpl" data-value="1000.0">1,000.00</td>', page)
    bad = api.get("/api/v1/reports/channels?days=400", headers=h)
    assert bad.status_code == 422 and bad.json["message"].startswith("days:")
    r = api.put("/api/v1/sources/ads/spend", headers=h, data="month=2026-01&amount=1",
                content_type="application/x-www-form-urlencoded")
    assert r.status_code == 415 and r.json["error"] == "unsupported_media_type"


def test_channels_page_shows_health_and_replays_a_dead_letter(app, hub, client, team):
    # A delivery that died before any attempt succeeded (a dead event never holds a touch: its attempts
    # rolled back).
    assert client.post("/hooks/site", json={"phone": "+79120000009"}).status_code == 200
    with transaction(hub.engine) as s:
        dead_id = s.scalar(select(InboundEvent.id).order_by(InboundEvent.id.desc()).limit(1))
        s.execute(update(InboundEvent).where(InboundEvent.id == dead_id).values(
            status=EventStatus.DEAD, last_error="TimeoutError: lock wait"))
    sign_in(client, "marketer@example.ru")
    row = re.search(r'<tr data-source="site".*?</tr>', client.get("/channels").text, re.S).group(0)
    assert "/hooks/site" in row and '<td class="num">2</td>' in row       # two deliveries today
    page = client.get("/channels/site").text
    assert f'data-event-id="{dead_id}"' in page and "TimeoutError: lock wait" in page
    r = post_form(client, f"/events/{dead_id}/replay", page="/channels/site")
    assert r.status_code == 302
    assert f"Event {dead_id} queued again." in client.get("/channels/site").text
    Worker(hub).drain()
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(InboundEvent, dead_id).status in (EventStatus.PROCESSED, EventStatus.MERGED)
    r = post_form(client, f"/events/{dead_id}/replay", page="/channels/site")
    assert "only dead or rejected events are replayed" in client.get("/channels/site").text


def test_mapping_tester_shows_the_lead_draft(app, hub, client, team):
    sign_in(client, "marketer@example.ru")
    r = post_form(client, "/mapping-tester", {"source": "site", "payload":
                  '{"phone": "8 (912) 345-67-89", "name": "Ivan", "utm_source": "yandex"}'}, page="/mapping-tester")
    assert r.status_code == 200
    # The marketer sees that a name and a phone were found, masked; the marks in clear.
    assert 'data-field="name">I•••<' in r.text and "+79•••••••89" in r.text and 'data-field="utm"' in r.text
    r = post_form(client, "/mapping-tester", {"source": "site", "payload": "{broken"}, page="/mapping-tester")
    assert r.status_code == 200 and ("refuses" in r.text or "Rejected" in r.text)
    assert client.get("/api/v1/events").status_code == 401        # pages' sessions do not open the API


def test_managers_page_switches_duty_and_vacation(app, hub, client, team):
    sign_in(client, "lena@example.ru")
    page = client.get("/managers").text
    assert 'data-manager="Max"' in page and 'data-manager="Sid"' not in page     # her team only
    post_form(client, "/managers/Max", {"duty": "off"}, page="/managers")
    row = re.search(r'<tr data-manager="Max".*?</tr>', client.get("/managers").text, re.S).group(0)
    assert "no: off duty" in row
    until = (utcnow() + timedelta(days=7)).date().isoformat()
    post_form(client, "/managers/Mia", {"vacation_until": until}, page="/managers")
    api = app.test_client()
    items = api.get("/api/v1/managers", headers=token_for(hub, "lena@example.ru")).json["items"]
    mia = next(m for m in items if m["name"] == "Mia")
    assert mia["vacation_until"].startswith(until) and not mia["available"]
    assert post_form(client, "/managers/Sid", {"duty": "off"}, page="/managers").status_code == 404


def test_an_admin_exports_the_filtered_inbox(app, client, team):
    sign_in(client, "admin@example.ru")
    r = client.get("/leads/export?source=ads")
    assert r.status_code == 200 and r.headers["Content-Disposition"].startswith("attachment;")
    lines = r.data.decode("utf-8-sig").splitlines()
    assert lines[0].startswith("id,created_at") and len(lines) == 2 and ",ads," in lines[1]
    overdue = client.get("/leads/export?overdue=1").data.decode("utf-8-sig").splitlines()
    assert len(overdue) == 1                                   # the inbox's overdue filter holds too: none yet
    r = client.get("/leads/export?format=xlsx")
    assert r.data[:2] == b"PK"                                   # an Excel (zip) file


def test_pages_carry_security_headers_and_serve_their_own_assets(app, client, team):
    r = client.get("/login")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "style-src 'self'" in csp and "frame-ancestors 'none'" in csp
    assert r.headers["X-Frame-Options"] == "DENY"
    assert re.search(r'href="(/static/hub\.css)"', r.text)
    assert client.get("/static/hub.css").status_code == 200
    assert "http://" not in r.text.replace("http://127.0.0.1", "") and "https://" not in r.text


def test_users_cli(runner, hub):
    runner("users", "add", "anna@example.ru", "--role", "admin", "--password-env", "HUB_TEST_PW", expect=2)
    import os
    os.environ["HUB_TEST_PW"] = "short"
    out = runner("users", "add", "anna@example.ru", "--role", "admin", "--password-env", "HUB_TEST_PW", expect=1)
    assert "at least 10 characters" in out.output + out.stderr
    os.environ["HUB_TEST_PW"] = PASSWORD
    out = runner("users", "add", "boss@example.ru", "--role", "manager", "--password-env", "HUB_TEST_PW", expect=1)
    assert "--manager" in out.output + out.stderr
    runner("users", "add", "Anna@Example.ru", "--role", "admin", "--password-env", "HUB_TEST_PW")
    out = runner("users", "add", "anna@example.ru", "--role", "admin", "--password-env", "HUB_TEST_PW", expect=1)
    assert "exists already" in out.output + out.stderr
    token = runner("users", "token", "add", "anna@example.ru", "--json").output
    import json
    plain = json.loads(token)["token"]
    listing = runner("users", "token", "list").output
    assert plain not in listing and plain[:10] in listing
    runner("users", "disable", "anna@example.ru")
    assert json.loads(runner("users", "token", "list", "--json").output)[0]["revoked"] is True
    del os.environ["HUB_TEST_PW"]


def test_the_web_app_on_an_unmigrated_database_says_to_run_the_migrations(tmp_path):
    from hub.errors import ConfigError
    from hub.web.app import create_app
    config = tmp_path / "config.toml"
    config.write_text('[database]\nurl = "sqlite:///fresh.db"\n[[sources]]\nname = "site"\nconnector = "site_form"\n')
    with pytest.raises(ConfigError, match="hub db upgrade"):
        create_app(config)
