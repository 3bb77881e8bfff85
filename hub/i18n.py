"""Russian and English for everything a person reads: pages, flash messages, notifications, labels.

Messages are written in English in the code and templates and translated from gettext catalogs in
``hub/translations/<lang>/LC_MESSAGES/messages.po`` (compiled ``.mo`` beside them; ``tests/test_i18n.py``
fails when a string has no translation or a ``.mo`` is older than its ``.po``). Flask-Babel serves the pages;
outside a request (notifications sent by workers) the same catalogs are used through Babel directly.

Machine codes stay stable everywhere in the store and the API (``refused``, ``hot``, ``no_answer_5_attempts``);
only their human labels are translated. CLI messages stay English (operators' convention).

Updating the catalogs after changing a message:

    .venv/bin/pybabel extract -F babel.cfg -k N_ -k lazy_gettext -o /tmp/messages.pot .
    .venv/bin/pybabel update -i /tmp/messages.pot -d hub/translations --no-fuzzy-matching
    (translate the new entries in hub/translations/ru/LC_MESSAGES/messages.po)
    .venv/bin/pybabel compile -d hub/translations
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_date as _babel_date, format_datetime as _babel_datetime
from babel.support import NullTranslations, Translations

LANGUAGES = ("en", "ru")
TRANSLATIONS_DIR = Path(__file__).parent / "translations"


def N_(message: str) -> str:
    """Marks a message for extraction where it is defined; it is translated where it is shown."""
    return message


class Msg:
    """A message with parameters that can be shown in any language later: ``str()`` gives English (logs,
    CLI, API), ``translate(gettext)`` the reader's language. Parameters may be messages themselves.
    ``to_json``/``from_json`` keep one in the store (the lead history records why, in every language)."""

    def __init__(self, template: str, **params: Any):
        self.template, self.params = template, params

    def __str__(self) -> str:
        return self.template % self.params if self.params else self.template

    def __repr__(self) -> str:
        return f"Msg({str(self)!r})"

    def translate(self, gettext: Callable[[str], str]) -> str:
        text = gettext(self.template)
        if not self.params:
            return text
        return text % {k: v.translate(gettext) if isinstance(v, Msg) else v for k, v in self.params.items()}

    @staticmethod
    def join(*parts: Msg) -> Msg:
        """Several reasons in a row, "first; second"."""
        return _Joined(parts)

    def to_json(self) -> dict[str, Any]:
        return {"t": self.template, "p": {k: v.to_json() if isinstance(v, Msg) else v for k, v in self.params.items()}}

    @staticmethod
    def from_json(data: dict[str, Any]) -> Msg:
        if "join" in data:
            return _Joined([Msg.from_json(p) for p in data["join"]])
        return Msg(data["t"], **{k: Msg.from_json(v) if isinstance(v, dict) and ("t" in v or "join" in v) else v
                                 for k, v in data.get("p", {}).items()})


class _Joined(Msg):
    def __init__(self, parts):
        super().__init__("")
        self.parts = list(parts)

    def __str__(self) -> str:
        return "; ".join(map(str, self.parts))

    def translate(self, gettext: Callable[[str], str]) -> str:
        return "; ".join(p.translate(gettext) for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {"join": [p.to_json() for p in self.parts]}


def why_of(entry: dict[str, Any], gettext: Callable[[str], str]) -> str:
    """A lead history entry's reason in the reader's language: the hub's own reasons are recorded as
    messages (``why_msg``); a person's own words (``why`` alone) are shown as written."""
    if entry.get("why_msg"):
        return Msg.from_json(entry["why_msg"]).translate(gettext)
    return entry.get("why") or ""


@cache
def translations(lang: str) -> Translations | NullTranslations:
    if lang == "en" or lang not in LANGUAGES:
        return NullTranslations()
    return Translations.load(str(TRANSLATIONS_DIR), [lang], domain="messages")


def gettext_for(lang: str) -> Callable[[str], str]:
    return translations(lang).gettext


# -- labels of machine codes ------------------------------------------------------------------------------

STATUS_LABELS = {"new": N_("new"), "in_work": N_("in work"), "converted": N_("converted"), "refused": N_("refused")}
WARMTH_LABELS = {"hot": N_("hot"), "warm": N_("warm"), "cold": N_("cold"), "none": N_("no warmth")}
EVENT_LABELS = {"pending": N_("waiting"), "processing": N_("being processed"), "processed": N_("became a new lead"),
                "merged": N_("added to a lead"), "rejected": N_("rejected"), "dead": N_("dead")}
ROLE_LABELS = {"admin": N_("admin"), "marketer": N_("marketer"), "manager": N_("manager"), "lead": N_("team lead"),
               "telephony": N_("telephony")}
HISTORY_LABELS = {
    "created": N_("created"), "reopened": N_("reopened"), "assigned": N_("assigned"), "reassigned": N_("reassigned"),
    "escalated": N_("escalated"), "taken": N_("taken into work"), "status": N_("status changed"),
    "attempt": N_("contact attempt"), "possible_duplicate": N_("possible duplicate"), "merged": N_("merged"),
    "unmerged": N_("unmerged"), "call": N_("call"), "forgotten": N_("personal data erased"),
    "warmth": N_("warmth changed"), "unassigned": N_("left unassigned"), "call_routed": N_("call put through"),
}


def label(kind: str, code: str | None, gettext: Callable[[str], str]) -> str:
    labels = {"status": STATUS_LABELS, "warmth": WARMTH_LABELS, "history": HISTORY_LABELS, "role": ROLE_LABELS,
              "event": EVENT_LABELS}[kind]
    if code is None:
        return gettext(WARMTH_LABELS["none"]) if kind == "warmth" else ""
    return gettext(labels[code]) if code in labels else code


def reason_label(reason: Any, lang: str, gettext: Callable[[str], str]) -> str:
    """A refusal reason's label: the config's own for this language, else the catalog's."""
    own = (reason.labels or {}).get(lang)
    return own or gettext(reason.label)


# -- dates and numbers ------------------------------------------------------------------------------------

def _as_datetime(value: datetime | str | None) -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    return value


def format_moment(value: datetime | str | None, lang: str, tz: str, fmt: str = "short") -> str:
    """A moment in the reader's language and time zone ("02.12.2026, 09:15" in ru)."""
    moment = _as_datetime(value)
    if moment is None:
        return ""
    return _babel_datetime(moment, fmt, tzinfo=ZoneInfo(tz), locale=lang)


def format_day(value: date | str, lang: str, fmt: str = "medium") -> str:
    day = date.fromisoformat(value) if isinstance(value, str) else value
    return _babel_date(day, fmt, locale=lang)


def best_language(preferred: str | None, accept: Any, default: str) -> str:
    """The user's own choice, else the browser's (Accept-Language), else the config's default."""
    if preferred in LANGUAGES:
        return preferred
    if accept is not None:
        match = accept.best_match(LANGUAGES)
        if match:
            return match
    return default if default in LANGUAGES else "en"
