"""Sign-in, sign-out, the user's own settings, and the home page that sends each role where it works."""

from __future__ import annotations

from dataclasses import replace
from urllib.parse import urlsplit

from flask import flash, g, redirect, render_template, request, url_for
from flask_babel import gettext, refresh
from flask_login import current_user, login_user, logout_user

from hub.config import config_flag
from hub.desk.access import (
    actor_of,
    authenticate,
    count_sign_in_attempt,
    end_session,
    set_language,
    sign_in_succeeded,
    start_session,
    timezone_of,
)
from hub.i18n import LANGUAGES
from hub.store.db import transaction
from hub.store.users import Role, User
from hub.web.common import SessionUser, allow, current_hub
from hub.web.pages.blueprint import (
    pages,
)
from hub.web.pages.telegram_link import telegram_card

# -- sign-in ------------------------------------------------------------------------------------------

def _safe_next(target: str | None) -> str | None:
    """Only a path on this hub: never an absolute URL (an open redirect would help phishing)."""
    if not target:
        return None
    parts = urlsplit(target)
    return target if not parts.scheme and not parts.netloc and target.startswith("/") \
        and not target.startswith("//") else None


@pages.route("/login", methods=["GET", "POST"])
def login():
    hub = current_hub()
    with transaction(hub.engine, read_only=True) as session:
        no_users = session.query(User.id).first() is None
    error = None
    if request.method == "POST":
        login_name = (request.form.get("login") or "").strip().casefold()[:320]
        # The peer's address. Behind a reverse proxy that is the proxy's, shared by everyone (the hub trusts
        # no X-Forwarded-For by itself): wrap the app in werkzeug's ProxyFix for the proxy's hops there.
        address = request.remote_addr or ""
        with transaction(hub.engine) as session:        # committed before the check: every process sees it
            allowed = count_sign_in_attempt(session, hub.config.web, address, login_name)
        if not allowed:
            return render_template("login.html", error=gettext("Too many failed sign-ins: wait 15 minutes."),
                                   no_users=no_users, config_flag=config_flag(hub.config)), 429
        with transaction(hub.engine, read_only=True) as session:
            user = authenticate(session, login_name, request.form.get("password") or "")
        token = None
        if user is not None:
            with transaction(hub.engine) as session:
                token = start_session(session, user, hub.config.web.session_hours)
                if token is not None:
                    sign_in_succeeded(session, address, login_name)
        if user is None or token is None:
            error = gettext("Wrong login or password.")
        else:
            login_user(SessionUser(actor_of(user), token))
            return redirect(_safe_next(request.args.get("next")) or url_for("pages.home"))
    return render_template("login.html", error=error, no_users=no_users,
                           config_flag=config_flag(hub.config)), 401 if error else 200


@pages.post("/logout")
@allow(*Role.ALL)
def logout():
    with transaction(current_hub().engine) as session:
        end_session(session, current_user.get_id())
    logout_user()
    return redirect(url_for("pages.login"))


@pages.route("/profile", methods=["GET", "POST"])
@allow(*Role.ALL)
def profile():
    """The user's own settings: the language of the pages (and of their notifications)."""
    hub = current_hub()
    if request.method == "POST":
        language = request.form.get("language") or None
        if language not in (None, *LANGUAGES):
            flash(gettext("Choose a language from the list."), "error")
            return redirect(url_for("pages.profile"))
        with transaction(hub.engine) as session:
            set_language(session, g.actor.login, language)
        g.actor = replace(g.actor, language=language)
        refresh()                                    # the next message is already in the new language
        flash(gettext("Saved."), "ok")
        return redirect(url_for("pages.profile"))
    return render_template("profile.html", timezone=timezone_of(g.actor, hub.config), telegram=telegram_card())


@pages.get("/")
@allow(*Role.ALL)
def home():
    target = {Role.MARKETER: "pages.report", Role.TELEPHONY: "pages.profile"}.get(g.actor.role, "pages.inbox")
    return redirect(url_for(target))


