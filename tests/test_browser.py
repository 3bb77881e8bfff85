"""Browser tests: Debian's Chromium, headless, driven by Playwright against the real web app on a real
SQLite store. Nothing is fetched from the internet (how, and what to install: tests/README.md). Every page
is saved as a screenshot under test-artifacts/browser/<run>/ (BROWSER_ARTIFACTS moves them; BROWSER_RUN
names the run, else the time it started), at a desktop's width and, where a test says so, a phone's."""

from __future__ import annotations

import os
import pathlib
import shutil
import time
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy import select, update

from hub.desk.listings import handover_log
from hub.pipeline.worker import Worker
from hub.store import schema as store
from hub.store.db import make_engine, transaction
from hub.store.models import EventStatus, InboundEvent, Lead, LeadTask, utcnow
from tests.helpers.web import PASSWORD, USERS, WEB_CONFIG, deliver, make_users

playwright = pytest.importorskip("playwright.sync_api")
expect = playwright.expect

CHROMIUM = os.environ.get("CHROMIUM_PATH") or shutil.which("chromium") or "/usr/bin/chromium"
REQUIRE_BROWSER = os.environ.get("HUB_TEST_REQUIRE_BROWSER") == "1"
ARTIFACTS = pathlib.Path(os.environ.get("BROWSER_ARTIFACTS", "test-artifacts/browser")) / (
    os.environ.get("BROWSER_RUN") or time.strftime("%Y%m%d-%H%M%S"))
PHONE, DESKTOP = 390, 1366                  # an iPhone 12-14's CSS width; the commonest laptop's
# Chromium looks up Google hosts even with every background feature off: resolve nothing but loopback.
LAUNCH_ARGS = ["--host-resolver-rules=MAP * ~NOTFOUND , EXCLUDE 127.0.0.1 , EXCLUDE localhost"]

# What Chromium reports for the page's 404; the reason phrase is the server's ("Not Found" from granian,
# "NOT FOUND" from werkzeug's own server), hence compared lower-cased.
NOT_FOUND_LOADED = "failed to load resource: the server responded with a status of 404 (not found)"


@pytest.fixture
def database_url(tmp_path):
    """Browser tests run on the embedded store only: the pages' queries run on both in tests/test_web.py."""
    url = f"sqlite:///{tmp_path / 'hub.db'}"
    engine = make_engine(url)
    store.upgrade(engine)
    engine.dispose()
    return url


@pytest.fixture(scope="session")
def browser():
    if not os.path.exists(CHROMIUM):
        message = f"{CHROMIUM} missing: apt-get install -y chromium (or set CHROMIUM_PATH; see tests/README.md)"
        if REQUIRE_BROWSER:
            pytest.fail(message)
        pytest.skip(message)
    with playwright.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    rep = (yield).get_result()
    setattr(item, f"rep_{rep.when}", rep)


def _save(pg, name: str) -> pathlib.Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    pg.screenshot(path=path, full_page=True)
    return path


@pytest.fixture
def locale():
    return "en-US"


@pytest.fixture
def width():
    return 1280


@pytest.fixture
def page(browser, request, locale, width):
    phone = width <= PHONE
    context = browser.new_context(viewport={"width": width, "height": 844 if phone else 800}, locale=locale,
                                  is_mobile=phone, has_touch=phone)
    context.set_default_timeout(10_000)
    pg = context.new_page()
    errors: list[str] = []
    pg.js_errors = errors                    # a test that expects an error page clears what it caused
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    yield pg
    if getattr(request.node, "rep_call", None) and request.node.rep_call.failed:
        _save(pg, f"{request.node.name}-FAILED")
    context.close()
    assert errors == [], f"the browser reported errors (CSP violations included): {errors}"


@pytest.fixture
def screenshot(page):
    def take(name: str) -> pathlib.Path:
        path = _save(page, name)
        assert path.stat().st_size > 5_000, f"{path} looks empty"
        return path
    return take


@pytest.fixture
def seeded(app, hub, client):
    """Users of every role; Max owns three leads (site), Mia two (ads, one from a campaign), Sid one."""
    make_users(hub)
    deliver(client, hub, "site", "+79120000001", "I want to pay")
    deliver(client, hub, "site", "+79120000002", "need advice")
    deliver(client, hub, "site", "+79120000003")
    deliver(client, hub, "ads", "+79120000004", utm_source="yandex", utm_campaign="black_friday")
    deliver(client, hub, "ads", "+79120000005", "pay please")
    deliver(client, hub, "seo", "+79120000006")
    with transaction(hub.engine, read_only=True) as s:
        return {lead.id: lead.owner for lead in s.scalars(select(Lead))}


def sign_in(page, base: str, login: str) -> None:
    page.goto(base + "/login")
    page.locator("#login").fill(login)                      # by id: the labels follow the browser's language
    page.locator("#password").fill(PASSWORD)
    page.locator("form button[type=submit]").click()
    role, manager = USERS[login]
    expect(page.locator("#whoami")).to_contain_text(manager or login)


def test_manager_sees_own_leads_takes_one_and_refuses_another(live_server, page, screenshot, seeded, hub):
    page.goto(live_server + "/login")
    screenshot("login")
    sign_in(page, live_server, "max@example.ru")
    rows = page.locator("#leads tbody tr[data-lead-id]")
    mine = sorted(i for i, owner in seeded.items() if owner == "Max")
    expect(rows).to_have_count(len(mine))
    assert sorted(int(rows.nth(i).get_attribute("data-lead-id")) for i in range(len(mine))) == mine
    screenshot("inbox-manager")

    first, second = mine[-1], mine[0]
    page.locator(f'tr[data-lead-id="{first}"] a').first.click()
    page.get_by_role("button", name="Take into work").click()
    expect(page.locator("#lead-status")).to_have_attribute("data-status", "in_work")
    expect(page.get_by_role("status")).to_have_text("Taken into work.")
    screenshot("lead-card-taken")

    page.goto(f"{live_server}/leads/{second}")
    page.get_by_label("Refusal reason").select_option("by_mistake")
    page.get_by_role("button", name="Refuse").click()
    expect(page.locator("#confirm-dialog")).to_contain_text("Refuse lead")
    page.get_by_role("button", name="Yes, refuse").click()
    expect(page.locator("#lead-status")).to_have_attribute("data-status", "refused")
    expect(page.locator("#refuse-reason")).to_have_text("contacted by mistake")
    expect(page.locator('#timeline li[data-kind="status"]')).to_contain_text("Max")
    screenshot("lead-card-refused")

    foreign = next(i for i, owner in seeded.items() if owner == "Mia")
    page.goto(f"{live_server}/leads/{foreign}")
    expect(page.locator(".error-message")).to_contain_text("not yours to see")
    assert [e.lower() for e in page.js_errors] == [NOT_FOUND_LOADED]
    page.js_errors.clear()
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(Lead, first).status == "in_work" and s.get(Lead, second).refuse_reason == "by_mistake"


def test_marketer_sees_the_chart_with_the_right_numbers(live_server, page, screenshot, seeded):
    sign_in(page, live_server, "marketer@example.ru")
    expect(page).to_have_url(live_server + "/report")
    chart = page.locator("#chart")
    expect(chart).to_have_attribute("data-drawn", "1")
    expect(chart).to_have_attribute("data-total", str(len(seeded)))
    bars = {b.get_attribute("data-group"): int(b.get_attribute("data-count"))
            for b in page.locator("#chart rect.bar").all()}
    assert bars == {"site": 3, "ads": 2, "seo": 1}
    # The bars are drawn, not just present: the tallest is three times the shortest, on screen.
    heights = {g: page.locator(f'#chart rect.bar[data-group="{g}"]').bounding_box()["height"] for g in bars}
    assert heights["seo"] > 10 and abs(heights["site"] / heights["seo"] - 3) < 0.05
    row = page.locator('#conversion tr[data-group="ads"]')
    expect(row.locator('[data-warmth="hot"]')).to_have_text("1")
    expect(row.locator('[data-warmth="cold"]')).to_have_text("1")
    screenshot("report")
    page.get_by_label("By").select_option("utm_campaign")
    page.get_by_role("button", name="Show").click()
    expect(page.locator('#conversion tr[data-group="black_friday"] td').nth(1)).to_have_text("1")
    screenshot("report-by-campaign")
    page.goto(live_server + "/mapping-tester")
    page.get_by_label("Payload").fill('{"phone": "8 (912) 345-67-89", "name": "Ivan", "utm_source": "vk"}')
    page.get_by_role("button", name="Try it").click()
    expect(page.locator("#result")).to_contain_text("+79•••••••89")     # the marketer's view: masked
    screenshot("mapping-tester")


def test_replay_a_dead_letter_from_the_channels_page(live_server, page, screenshot, seeded, hub, client):
    assert client.post("/hooks/ads", json={"phone": "+79120000099", "name": "Late"}).status_code == 200
    with transaction(hub.engine) as s:
        dead_id = s.scalar(select(InboundEvent.id).order_by(InboundEvent.id.desc()).limit(1))
        s.execute(update(InboundEvent).where(InboundEvent.id == dead_id).values(
            status=EventStatus.DEAD, attempts=8, last_error="OperationalError: database is locked"))
    sign_in(page, live_server, "admin@example.ru")
    page.goto(live_server + "/channels")
    expect(page.locator('tr[data-source="ads"] td.dead')).to_have_text("1")
    screenshot("channels")
    page.locator('tr[data-source="ads"] td.dead a').click()
    row = page.locator(f'#dead-letters tr[data-event-id="{dead_id}"]')
    expect(row).to_contain_text("database is locked")
    screenshot("channel-dead-letter")
    row.get_by_role("button", name="Replay").click()
    expect(page.get_by_role("status")).to_have_text(f"Event {dead_id} queued again.")
    Worker(hub).drain()
    page.reload()
    expect(page.locator("#dead-letters")).to_contain_text("Nothing is stuck")
    with transaction(hub.engine, read_only=True) as s:
        assert s.get(InboundEvent, dead_id).status == EventStatus.PROCESSED
    page.goto(live_server + "/managers")
    expect(page.locator('tr[data-manager="Max"] button[data-on-duty="1"]')).to_be_visible()
    screenshot("managers")
    page.goto(live_server + "/leads")
    expect(page.locator("#leads tbody tr[data-lead-id]")).to_have_count(len(seeded) + 1)
    screenshot("inbox-admin")


@pytest.mark.parametrize("locale", ["ru-RU"])
def test_a_russian_speaking_team_lead_works_in_russian_in_their_time_zone(live_server, page, screenshot, seeded,
                                                                         hub, locale):
    sign_in(page, live_server, "lena@example.ru")           # the browser asks for Russian; Lena is UTC+5
    expect(page.get_by_role("heading", level=1)).to_contain_text("Входящие")
    expect(page.locator("#leads thead")).to_contain_text("Ответственный")
    screenshot("inbox-ru")
    lead_id = next(i for i, owner in seeded.items() if owner == "Mia")
    with transaction(hub.engine, read_only=True) as s:
        created = s.get(Lead, lead_id).created_at + timedelta(hours=5)
    row = page.locator(f'tr[data-lead-id="{lead_id}"]')
    expect(row.locator("td.created")).to_have_text(f"{created:%d.%m.%Y}, {created:%H:%M}")
    expect(row).to_contain_text("новый")
    row.locator("a").first.click()
    expect(page.locator("#lead-status")).to_have_text("новый")
    expect(page.locator("#created-at")).to_have_text(f"{created:%d.%m.%Y}, {created:%H:%M}")
    expect(page.get_by_role("button", name="Учесть попытку связи")).to_be_visible()
    page.get_by_label("Передать").select_option("Max")
    page.get_by_role("button", name="Передать").click()
    expect(page.get_by_role("status")).to_have_text("Передан: Max.")
    expect(page.locator('#timeline li[data-kind="reassigned"]')).to_contain_text("передан")
    screenshot("lead-card-ru")
    page.get_by_role("link", name="Отчёт").click()
    expect(page.get_by_role("heading", level=1)).to_contain_text("Отчёт по каналам")
    expect(page.locator("#conversion thead")).to_contain_text("горячий: лидов")
    screenshot("report-ru")


ZADARMA_SECRET = "zadarma-secret-key"


@pytest.fixture
def config_path(write_config, request):
    extra = ""
    if "screen_pop" in request.node.name:
        extra = f'''
[[sources]]
name = "pbx"
connector = "zadarma"
secret = "{ZADARMA_SECRET}"
'''
    return write_config(WEB_CONFIG + extra)


def test_the_screen_pop_arrives_within_a_second_of_the_call(live_server, page, screenshot, seeded, client):
    import time
    from urllib.parse import urlencode

    from connectors.zadarma import signature

    sign_in(page, live_server, "max@example.ru")
    expect(page.locator("#leads")).to_be_visible()
    page.wait_for_timeout(700)                             # the page has polled once: Max is online
    lead_id = min(i for i, owner in seeded.items() if owner == "Max")
    fields = {"event": "NOTIFY_START", "call_start": "2026-12-02 10:15:00", "pbx_call_id": "in_77",
              "caller_id": "79120000001", "called_did": "74951112233"}
    r = client.post("/hooks/pbx", data=urlencode(fields), content_type="application/x-www-form-urlencoded",
                    headers={"Signature": signature(ZADARMA_SECRET, fields)})
    assert r.status_code == 200
    rang = time.monotonic()
    alert = page.locator("#call-alert")
    expect(alert).to_be_visible(timeout=1000)
    arrived = time.monotonic() - rang
    expect(alert).to_contain_text("Client 0001 is calling")
    expect(alert).to_have_attribute("data-lead-id", str(lead_id))
    screenshot("screen-pop")
    alert.locator("a").click()
    expect(page).to_have_url(f"{live_server}/leads/{lead_id}")
    assert arrived < 1.0


# -- the sales desk, on a desktop and on a phone -------------------------------------------------------------

def fits(pg, width: int) -> None:
    """No sideways scrolling: the page is no wider than the screen (else: what sticks out)."""
    wide = pg.evaluate("document.scrollingElement.scrollWidth")
    if wide > width:
        culprits = pg.evaluate("""(width) => [...document.querySelectorAll('body *')]
            .filter(e => e.getClientRects().length && e.getBoundingClientRect().right > width + 0.5)
            .slice(0, 8)
            .map(e => `${e.tagName}#${e.id}.${e.className} → ${Math.round(e.getBoundingClientRect().right)}`)""",
                               width)
        pytest.fail(f"{pg.url} is {wide} px wide on a {width} px screen: {culprits}")


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_a_manager_finds_a_client_sees_a_new_lead_arrive_and_works_it_to_a_deal(live_server, page, screenshot, seeded,
                                                                               hub, client, width):
    deliver(client, hub, "site", "+79123456789", "call me after 18:00", name="Ivan Petrov")
    with transaction(hub.engine, read_only=True) as s:
        ivan = s.scalar(select(Lead.id).order_by(Lead.id.desc()).limit(1))
    sign_in(page, live_server, "max@example.ru")
    rows = page.locator("#leads tbody tr[data-lead-id]")
    expect(rows).to_have_count(4)
    fits(page, width)
    screenshot(f"inbox-{width}")

    # The client calls: the manager types the number the way the client says it.
    page.get_by_role("searchbox").fill("8 912 345-67-89")
    page.get_by_role("button", name="Find", exact=True).click()
    expect(rows).to_have_count(1)
    expect(rows.first).to_have_attribute("data-lead-id", str(ivan))
    screenshot(f"inbox-search-{width}")

    # A new lead comes through the webhook and a worker while the inbox is open: it shows without a reload.
    page.goto(live_server + "/leads")
    expect(rows).to_have_count(4)
    sound = page.get_by_label("Sound on a new lead")
    sound.check()                                   # remembered in this browser, and it beeps on arrival
    page.reload()
    expect(sound).to_be_checked()
    deliver(client, hub, "site", "+79125550000", "I want to pay", name="Petr Arrived")
    with transaction(hub.engine, read_only=True) as s:
        arrived = s.scalar(select(Lead.id).order_by(Lead.id.desc()).limit(1))
    expect(page.locator(f'#leads tr.fresh[data-lead-id="{arrived}"]')).to_be_visible(timeout=15_000)
    expect(rows.first).to_have_attribute("data-lead-id", str(arrived))
    expect(rows).to_have_count(5)
    assert page.title().startswith("(1) Inbox")
    fits(page, width)
    screenshot(f"inbox-new-lead-{width}")

    page.locator(f'tr[data-lead-id="{ivan}"] td.c-name a').click()
    expect(page.locator("#lead-status")).to_have_attribute("data-status", "new")
    expect(page.locator('#person a[href="tel:+79123456789"]')).to_be_visible()
    fits(page, width)
    screenshot(f"lead-card-{width}")
    page.get_by_role("button", name="Take into work").click()
    expect(page.locator("#lead-status")).to_have_attribute("data-status", "in_work")

    page.get_by_label("A note on the lead").fill("Asked to call back after 18:00, prefers WhatsApp")
    page.get_by_role("button", name="Add the note").click()
    expect(page.get_by_role("status")).to_have_text("Note added.")
    expect(page.locator("#notes")).to_contain_text("prefers WhatsApp")

    tomorrow = utcnow().date() + timedelta(days=1)                  # Max's time zone is UTC
    page.get_by_label("Call back on").fill(tomorrow.isoformat())
    page.locator('input[name="due_time"]').fill("18:00")
    page.get_by_label("What to do").fill("call back after 18:00")
    page.get_by_role("button", name="Set the call-back").click()
    expect(page.get_by_role("status")).to_have_text("Call-back set.")
    expect(page.locator("#tasks li[data-task-id]")).to_contain_text("6:00")
    with transaction(hub.engine, read_only=True) as s:
        task = s.scalars(select(LeadTask).where(LeadTask.lead_id == ivan)).one()
    assert task.due_at == datetime(tomorrow.year, tomorrow.month, tomorrow.day, 18, tzinfo=UTC)

    # Converting asks first; "Back" changes nothing.
    page.get_by_label("Deal amount, RUB").fill("12 000")
    page.get_by_role("button", name="Converted", exact=True).click()
    dialog = page.locator("#confirm-dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text(f"Mark lead {ivan} as converted?")
    expect(dialog).to_contain_text("Deal amount: 12 000")
    screenshot(f"lead-card-confirm-{width}")
    dialog.get_by_role("button", name="Back").click()
    expect(dialog).to_be_hidden()
    expect(page.locator("#lead-status")).to_have_attribute("data-status", "in_work")
    page.get_by_role("button", name="Converted", exact=True).click()
    dialog.get_by_role("button", name="Yes, converted").click()
    expect(page.locator("#lead-status")).to_have_attribute("data-status", "converted")
    expect(page.locator("#amount")).to_have_attribute("data-amount", "12000.00")
    expect(page.locator('#timeline li[data-kind="taken"]')).to_contain_text("taken into work by Max")
    fits(page, width)
    screenshot(f"lead-card-converted-{width}")
    with transaction(hub.engine, read_only=True) as s:
        lead = s.get(Lead, ivan)
        assert lead.status == "converted" and lead.amount == Decimal("12000")

    sign_out = page.get_by_role("button", name="Sign out")
    if width == PHONE:                                  # folded into the menu, one tap away
        expect(sign_out).to_be_hidden()
        page.locator(".menu-toggle").click()
        screenshot(f"menu-{width}")
    expect(sign_out).to_be_visible()
    sign_out.click()
    expect(page).to_have_url(live_server + "/login")


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_a_team_lead_assigns_a_batch(live_server, page, screenshot, seeded, hub, width):
    sign_in(page, live_server, "lena@example.ru")
    batch = sorted(i for i, owner in seeded.items() if owner == "Max")[:2]
    for lead_id in batch:
        page.locator(f'tr[data-lead-id="{lead_id}"] input[name="lead_id"]').check()
    page.get_by_label("Hand the ticked leads to").select_option("Mia")
    fits(page, width)
    screenshot(f"inbox-batch-{width}")
    page.get_by_role("button", name="Assign", exact=True).click()
    expect(page.get_by_role("status")).to_have_text("2 leads handed over to Mia.")
    for lead_id in batch:
        expect(page.locator(f'tr[data-lead-id="{lead_id}"] td.c-owner')).to_have_text("Mia")
    with transaction(hub.engine, read_only=True) as s:
        log = handover_log(s)
    assert sorted(e["lead_id"] for e in log if e["kind"] == "reassigned" and e["by"] == "Lena" and e["to"] == "Mia") \
        == batch


@pytest.mark.parametrize("width", [DESKTOP, PHONE])
def test_every_page_fits_the_screen(live_server, page, screenshot, seeded, width):
    page.goto(live_server + "/login")
    fits(page, width)
    screenshot(f"login-{width}")
    sign_in(page, live_server, "admin@example.ru")
    lead = min(seeded)
    for name, path in [("inbox-admin", "/leads"), ("lead-card-admin", f"/leads/{lead}"), ("report", "/report"),
                       ("report-by-campaign", "/report?group_by=utm_campaign"), ("channels", "/channels"),
                       ("channel", "/channels/site"), ("mapping-tester", "/mapping-tester"), ("managers", "/managers"),
                       ("profile", "/profile"), ("not-found", "/no-such-page")]:
        page.goto(live_server + path)
        fits(page, width)
        screenshot(f"{name}-{width}")
    assert [e.lower() for e in page.js_errors] == [NOT_FOUND_LOADED]
    page.js_errors.clear()
    # The report's heading, its filters and its chart stack, none over another.
    page.goto(live_server + "/report")
    boxes = [page.locator(sel).bounding_box() for sel in ("h1", "form.filters[method=get]", "#chart")]
    for above, below in zip(boxes, boxes[1:], strict=False):
        assert above["y"] + above["height"] <= below["y"] + 0.5, boxes


# What each role works with, in both languages: every page it may open, at a desk and on a phone.
REPORTS = ["/report/funnel", "/report/managers", "/report/statuses", "/report/activity"]
ROLE_PAGES = {
    "admin@example.ru": ["/leads", "/leads/{lead}", "/report", *REPORTS, "/channels", "/channels/site",
                         "/mapping-tester", "/managers", "/profile"],
    "marketer@example.ru": ["/report", "/report/funnel", "/report/statuses", "/channels", "/channels/ads",
                            "/mapping-tester", "/profile"],
    "max@example.ru": ["/leads", "/leads/{lead}", "/profile"],
    "lena@example.ru": ["/leads", "/leads/{lead}", "/report", *REPORTS, "/managers", "/profile"],
}


@pytest.mark.parametrize("locale", ["ru-RU", "en-US"])
@pytest.mark.parametrize("width", [DESKTOP, PHONE])
@pytest.mark.parametrize("login", list(ROLE_PAGES))
def test_every_role_sees_its_pages_fit_in_both_languages(live_server, page, screenshot, seeded, width, locale,
                                                         login):
    sign_in(page, live_server, login)
    lead = min(lead for lead, owner in seeded.items() if owner == "Max")
    lang = locale[:2]
    assert page.locator("html").get_attribute("lang") == lang
    for path in ROLE_PAGES[login]:
        page.goto(live_server + path.format(lead=lead))
        assert page.locator("html").get_attribute("lang") == lang, path
        fits(page, width)
        screenshot(f"{login.split('@')[0]}-{path.strip('/').replace('/', '-').replace('{lead}', 'lead') or 'home'}"
                   f"-{lang}-{width}")
