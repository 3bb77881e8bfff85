"""Sessions kept on the server and the sign-in throttle, on real SQLite and PostgreSQL stores.

A session ends on the server: a cookie saved before sign-out (or before a password, role or disable change)
is refused when it is sent again. Sign-ins are counted in the database per (address, login) and per address,
atomically: a guesser is stopped without locking the real user out from their own address.
"""

from __future__ import annotations

import re
import threading
from datetime import timedelta

import pytest
import requests
from sqlalchemy import select, update

from hub.desk.access import SESSION_SEEN_INTERVAL, SIGN_IN_WINDOW
from hub.store.db import transaction
from hub.store.models import utcnow
from hub.store.users import SignInCounter, WebSession
from tests.helpers.web import PASSWORD, WEB_CONFIG, make_users, post_form, sign_in, token_for

PER_LOGIN, PER_ADDRESS = 4, 12
GUESSER, USER = "10.0.0.66", "10.0.0.7"


@pytest.fixture
def config_path(write_config):
    return write_config(WEB_CONFIG + f"\n[web]\nmax_failed_logins = {PER_LOGIN}\n"
                                     f"max_failed_logins_per_address = {PER_ADDRESS}\n")


@pytest.fixture
def users(hub):
    make_users(hub)


def client_at(app, address: str):
    """A browser at this address (what request.remote_addr says)."""
    client = app.test_client()
    client.environ_base["REMOTE_ADDR"] = address
    return client


def signed_in(app, login: str, address: str = USER):
    client = client_at(app, address)
    assert sign_in(client, login).status_code == 302
    assert client.get("/leads").status_code == 200
    return client


def replay(app, cookie: str, path: str = "/leads"):
    """Send a saved session cookie from a fresh browser, as whoever copied it would."""
    client = client_at(app, USER)
    client.set_cookie("session", cookie)
    return client.get(path)


def refused(response) -> bool:
    return response.status_code == 302 and response.headers["Location"].startswith("/login")


# -- sessions -------------------------------------------------------------------------------------------

def test_a_cookie_saved_before_sign_out_is_refused_after_it(app, hub, users):
    admin = signed_in(app, "admin@example.ru")
    saved = admin.get_cookie("session").value
    api = token_for(hub, "admin@example.ru")
    assert replay(app, saved).status_code == 200
    assert refused(post_form(admin, "/logout"))
    assert refused(replay(app, saved))
    assert refused(admin.get("/leads"))
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalars(select(WebSession)).all() == []
    # Signing out ends the browser's session only: the admin's API token goes on working.
    assert app.test_client().get("/api/v1/me", headers=api).json["login"] == "admin@example.ru"


def test_signing_out_in_one_browser_leaves_the_other_signed_in(app, users):
    laptop, phone = signed_in(app, "max@example.ru"), signed_in(app, "max@example.ru", "10.0.0.8")
    post_form(laptop, "/logout")
    assert refused(laptop.get("/leads"))
    assert phone.get("/leads").status_code == 200


@pytest.mark.parametrize("change", [
    ("users", "passwd", "max@example.ru", "--password-env", "NEW_PASSWORD"),
    ("users", "role", "max@example.ru", "admin"),
    ("users", "disable", "max@example.ru"),
])
def test_password_role_and_disable_end_every_session_of_the_user(app, users, runner, monkeypatch, change):
    monkeypatch.setenv("NEW_PASSWORD", "a brand new password")
    laptop, phone = signed_in(app, "max@example.ru"), signed_in(app, "max@example.ru", "10.0.0.8")
    saved = laptop.get_cookie("session").value
    admin = signed_in(app, "admin@example.ru")
    runner(*change)
    assert refused(replay(app, saved))
    assert refused(phone.get("/leads"))
    assert admin.get("/leads").status_code == 200          # another user's session is not touched


def test_a_session_expires_on_the_server(app, hub, users):
    client = signed_in(app, "max@example.ru")
    with transaction(hub.engine) as s:
        row = s.scalars(select(WebSession)).one()
        assert row.expires_at - row.created_at == timedelta(hours=hub.config.web.session_hours)
        row.expires_at = utcnow() - timedelta(seconds=1)
    assert refused(client.get("/leads"))


def test_last_seen_is_written_at_most_every_few_minutes(app, hub, users):
    client = signed_in(app, "max@example.ru")
    long_ago = utcnow() - SESSION_SEEN_INTERVAL - timedelta(seconds=1)
    with transaction(hub.engine) as s:
        s.execute(update(WebSession).values(last_seen_at=long_ago))
    client.get("/leads")
    with transaction(hub.engine, read_only=True) as s:
        seen = s.scalars(select(WebSession.last_seen_at)).one()
    assert seen > long_ago
    client.get("/leads")                        # within the interval: no write
    with transaction(hub.engine, read_only=True) as s:
        assert s.scalars(select(WebSession.last_seen_at)).one() == seen


# -- the sign-in throttle -------------------------------------------------------------------------------

def test_a_guesser_is_stopped_but_the_user_still_signs_in_from_elsewhere(app, hub, users):
    guesser = client_at(app, GUESSER)
    assert [sign_in(guesser, "admin@example.ru", "guess").status_code for _ in range(PER_LOGIN)] \
        == [401] * PER_LOGIN
    assert sign_in(guesser, "admin@example.ru").status_code == 429       # even the right password, from there
    assert sign_in(client_at(app, USER), "admin@example.ru").status_code == 302
    # The window over, the guesser's address may try again.
    with transaction(hub.engine) as s:
        s.execute(update(SignInCounter).values(window_start=utcnow() - SIGN_IN_WINDOW))
    assert sign_in(guesser, "admin@example.ru", "guess").status_code == 401


def test_a_right_password_starts_the_count_again(app, users):
    client = client_at(app, USER)
    for _ in range(2):
        assert [sign_in(client, "max@example.ru", "typo").status_code for _ in range(PER_LOGIN - 1)] \
            == [401] * (PER_LOGIN - 1)
        assert sign_in(client, "max@example.ru").status_code == 302


def test_one_password_across_many_logins_is_slowed_per_address(app, users):
    guesser = client_at(app, GUESSER)
    codes = [sign_in(guesser, f"user{n}@example.ru", "Summer2026!").status_code for n in range(PER_ADDRESS)]
    assert codes == [401] * PER_ADDRESS
    assert sign_in(guesser, "sid@example.ru", "Summer2026!").status_code == 429
    assert sign_in(client_at(app, USER), "sid@example.ru", "Summer2026!").status_code == 401


def test_parallel_guesses_are_counted_atomically(live_server, users):
    """Thirty wrong passwords at once against a real server: exactly the limit reach the password check."""
    page = requests.get(live_server + "/login")
    cookies = page.cookies.get_dict()
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    start = threading.Barrier(30)
    codes: list[int] = []

    def guess() -> None:
        start.wait()
        r = requests.post(live_server + "/login", allow_redirects=False, cookies=cookies,
                          data={"login": "admin@example.ru", "password": "guess", "csrf_token": token})
        codes.append(r.status_code)

    threads = [threading.Thread(target=guess) for _ in range(30)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(codes) == [401] * PER_LOGIN + [429] * (30 - PER_LOGIN)
    assert requests.post(live_server + "/login", allow_redirects=False, cookies=cookies,
                         data={"login": "admin@example.ru", "password": PASSWORD, "csrf_token": token}
                         ).status_code == 429
