"""The pages' blueprint and what every page shares: the template globals and filters, the roles' groups,
the query-string readers."""

from __future__ import annotations

import re
from datetime import date
from decimal import Decimal

from flask import Blueprint, current_app, flash, g, request
from flask_babel import format_decimal, get_locale, get_timezone, gettext

from hub.desk.period import MAX_DAYS, Period, lenient_period
from hub.i18n import N_, format_day, format_moment, label, label_helpers, reason_label
from hub.store.models import KeyKind, utcnow
from hub.store.users import Role
from hub.web.common import current_hub

pages = Blueprint("pages", __name__, template_folder="../templates", static_folder="../static",
                  static_url_path="/static")

SALES = (Role.ADMIN, Role.LEAD, Role.MANAGER)
MARKETING = (Role.ADMIN, Role.MARKETER)
PAGE_SIZE = 50
CSV_WARMTH_COLUMNS = (N_("%(warmth)s: leads"), N_("%(warmth)s: converted"), N_("%(warmth)s: converted, %%"))
CHART_COLOURS = ("#2f6fde", "#e8833a", "#3aa655", "#c94f7c", "#8a63d2", "#7f8c8d")


@pages.app_context_processor
def _globals():
    lang = str(get_locale())
    config = current_hub().config

    def reason(code: str | None) -> str:
        rr = config.refuse_reason(code) if code else None
        return reason_label(rr, lang, gettext) if rr else (code or "")

    return {"actor": g.get("actor"), "Role": Role, "now": utcnow(), "lang": lang,
            "actor_label": actor_label, "contact_href": contact_href,
            "status_label": lambda code: label("status", code, gettext),
            "warmth_label": lambda code: label("warmth", code, gettext),
            "history_label": lambda code: label("history", code, gettext),
            "role_label": lambda code: label("role", code, gettext),
            "event_label": lambda code: label("event", code, gettext),
            "reason_label": reason, "report_tabs": report_tabs,
            **label_helpers(config, lang, gettext)}


# The reports' tabs, in the order a head of sales reads them: endpoint, label, who may open it.
REPORT_TABS = (
    ("pages.report", N_("Channels"), (Role.ADMIN, Role.MARKETER, Role.LEAD)),
    ("pages.report_funnel", N_("Funnel"), (Role.ADMIN, Role.MARKETER, Role.LEAD)),
    ("pages.report_managers", N_("Managers"), (Role.ADMIN, Role.LEAD)),
    ("pages.report_statuses", N_("Statuses"), (Role.ADMIN, Role.MARKETER, Role.LEAD)),
    ("pages.report_activity", N_("Activity"), (Role.ADMIN, Role.LEAD)),
)


def report_tabs() -> list[tuple[str, str]]:
    """The report tabs this reader may open (endpoint, label in their language)."""
    actor = g.get("actor")
    return [(endpoint, gettext(text)) for endpoint, text, roles in REPORT_TABS
            if actor and actor.role in roles and endpoint in current_app.view_functions]


def actor_label(name: str | None) -> str:
    """Who did it, as the timeline says: a person's name, or the hub itself (its history entries' actor)."""
    return gettext("the hub") if name in (None, "hub") else name


TELEGRAM_USERNAME = re.compile(r"^@?([A-Za-z][A-Za-z0-9_]{3,31})$")
VK_SCREEN_NAME = re.compile(r"^[A-Za-z0-9_.]{2,64}$")


def contact_href(kind: str, value: str) -> str | None:
    """Where a tap on a contact goes: a call, a letter, a Telegram or VK chat; None when the value cannot
    be one (an id that is neither a number nor a user name)."""
    if kind == KeyKind.PHONE:
        return f"tel:{value}"
    if kind == KeyKind.EMAIL:
        return f"mailto:{value}"
    if kind == KeyKind.TELEGRAM:
        if value.isascii() and value.isdigit():
            return f"tg://user?id={value}"
        username = TELEGRAM_USERNAME.match(value)
        return f"https://t.me/{username.group(1)}" if username else None
    if kind == KeyKind.VK:
        if value.isascii() and value.isdigit():
            return f"https://vk.com/id{value}"
        return f"https://vk.com/{value}" if VK_SCREEN_NAME.match(value) else None
    return None


@pages.app_template_filter("moment")
def _moment(value, fmt: str = "short") -> str:
    """A stored UTC moment in the reader's language and time zone."""
    return format_moment(value, str(get_locale()), str(get_timezone()), fmt)


@pages.app_template_filter("day")
def _day(value, fmt: str = "medium") -> str:
    return format_day(value, str(get_locale()), fmt)


@pages.app_template_filter("number")
def _number(value, digits: int = 0) -> str:
    if value is None:
        return "—"
    if isinstance(value, str):              # money travels as decimal text ("12500.00"), exact
        value = Decimal(value)
    return format_decimal(value, format=f"#,##0.{'0' * digits}" if digits else "#,##0")




# -- query-string readers ----------------------------------------------------------------------------------

def date_arg(name: str, quiet: bool = False) -> date | None:
    """The date in the query string, else None; a malformed one is ignored, and said so unless ``quiet``
    (a script's request, whose message no page would show)."""
    value = request.args.get(name) or ""
    try:
        day = date.fromisoformat(value) if value else None
    except ValueError:
        if not quiet:
            flash(gettext("%(value)s is not a date (YYYY-MM-DD); ignored", value=value), "error")
        return None
    return day if day is None or date(2000, 1, 1) <= day <= date(2100, 12, 31) else None


def choice_arg(name: str, choices) -> str | None:
    value = request.args.get(name) or None
    return value if value in choices else None


def period_arg(default_days: int = 30) -> Period:
    """The report period in the query string (date_from, date_to: the team's days), defaulting to the last
    ``default_days`` days; a reversed range is turned round and a too long one shortened, each said so."""
    date_from, date_to = date_arg("date_from"), date_arg("date_to")
    period, note = lenient_period(current_hub().config, date_from, date_to, default_days)
    if note and date_from and date_to and date_from > date_to:
        flash(gettext("The dates were the wrong way round: swapped."), "error")
    elif note:
        flash(gettext("At most %(days)s days at a time: the range was shortened.", days=MAX_DAYS), "error")
    return period
