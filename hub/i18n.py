"""Russian and English for everything a person reads: pages, flash messages, notifications, labels.

Messages are written in English in the code and templates and translated from gettext catalogs in
``hub/translations/<lang>/LC_MESSAGES/messages.po`` (compiled ``.mo`` beside them; ``tests/test_i18n.py``
fails when a string has no translation or a ``.mo`` is older than its ``.po``). Flask-Babel serves the pages;
outside a request (notifications sent by workers) the same catalogs are used through Babel directly.

Machine codes stay stable everywhere in the store and the API (``refused``, ``hot``, ``no_answer_5_attempts``);
only their human labels are translated. So do the config's own names: a refusal reason, a routing or warmth
rule, a team may carry ``labels = {ru = "…"}``. Sentences the hub stores in English (why a delivery was
rejected, why a phone was not understood) are read back into a code and parameters and shown translated
(``REASONS``). CLI messages stay English (operators' convention).

Updating the catalogs after changing a message:

    .venv/bin/pybabel extract -F babel.cfg -k N_ -k lazy_gettext -o /tmp/messages.pot .
    .venv/bin/pybabel update -i /tmp/messages.pot -d hub/translations --no-fuzzy-matching
    (translate the new entries in hub/translations/ru/LC_MESSAGES/messages.po)
    .venv/bin/pybabel compile -d hub/translations
"""

from __future__ import annotations

import ast
import re
from collections.abc import Callable
from datetime import date, datetime
from functools import cache
from pathlib import Path
from typing import Any, NamedTuple
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

    def translate(self, gettext: Callable[[str], str], names: Names | None = None) -> str:
        """In the language of ``gettext``; with ``names``, rule and team parameters by their labels there."""
        text = gettext(self.template)
        if not self.params:
            return text

        def shown(key: str, value: Any) -> Any:
            if isinstance(value, Msg):
                return value.translate(gettext, names)
            return names.param(key, value) if names else value
        return text % {k: shown(k, v) for k, v in self.params.items()}

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

    def translate(self, gettext: Callable[[str], str], names: Names | None = None) -> str:
        return "; ".join(p.translate(gettext, names) for p in self.parts)

    def to_json(self) -> dict[str, Any]:
        return {"join": [p.to_json() for p in self.parts]}


def why_of(entry: dict[str, Any], gettext: Callable[[str], str], names: Names | None = None) -> str:
    """A lead history entry's reason in the reader's language: the hub's own reasons are recorded as
    messages (``why_msg``), their rules and teams named by ``names``; a person's own words (``why`` alone)
    are shown as written."""
    if entry.get("why_msg"):
        return Msg.from_json(entry["why_msg"]).translate(gettext, names)
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
    "note": N_("note"), "tags": N_("tags changed"), "task": N_("call-back set"), "task_done": N_("call-back done"),
    "task_reminded": N_("reminded of the call-back"), "follow_up_reminded": N_("reminded to follow up"),
    "follow_up_escalated": N_("follow-up escalated"), "queue_escalated": N_("waiting in the queue: escalated"),
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


# A touch's flags (hub/mapping.py, hub/pipeline/process.py): codes in the store and the API, these on pages.
FLAG_LABELS = {"invalid_phone": N_("a phone number not understood"),
               "invalid_email": N_("an e-mail address not understood"),
               "unmapped_payload": N_("a link payload the mapping does not know, kept as a UTM mark")}
# "<field>_truncated", "<field>_unparsable": the field is named by the code itself, shown beside the label.
FIELD_FLAG_LABELS = {"_truncated": N_("cut to the longest value kept"),
                     "_unparsable": N_("not a link that can be read")}


def flag_label(code: str, gettext: Callable[[str], str]) -> str:
    if code in FLAG_LABELS:
        return gettext(FLAG_LABELS[code])
    suffix = next((s for s in FIELD_FLAG_LABELS if code.endswith(s)), None)
    return gettext(FIELD_FLAG_LABELS[suffix]) if suffix else code


class Names:
    """The config's own names in one language: a routing or warmth rule, or a team, may carry
    ``labels = {ru = "…"}`` (like a refusal reason); without one for the language its name shows as written.
    The hub's messages name rules and teams in parameters called ``rule`` and ``team`` (hub/pipeline/routing),
    so a reason recorded before a label was added is shown by it too."""

    def __init__(self, config: Any, lang: str):
        self.rules = {r.name: r.labels[lang] for r in config.warmth.rules if lang in r.labels}
        # A routing rule's label wins over a warmth rule's of the same name: the reasons name routing rules.
        self.rules.update({r.name: r.labels[lang] for r in config.routing.rules if lang in r.labels})
        self.teams = {t.name: t.labels[lang] for t in config.teams if lang in t.labels}

    def rule(self, name: str | None) -> str:
        return self.rules.get(name, name) if name else ""

    def team(self, name: str | None) -> str:
        return self.teams.get(name, name) if name else ""

    def param(self, key: str, value: Any) -> Any:
        """A message's parameter as shown: a rule or team by its label."""
        if key == "rule" and isinstance(value, str):
            return self.rule(value)
        if key == "team" and isinstance(value, str):
            return self.team(value)
        return value


# -- why a delivery was rejected, why a contact was not understood -----------------------------------------
#
# Both are stored as English sentences: an event's ``reject_reason``, a touch contact's ``problem``. The API,
# the CSV exports and the logs keep showing them as they are, and rows stored before these lines read the
# same, so neither a column nor a migration: a page reads a sentence back, by the template it was written
# from, into its code and parameters (``read_reason``) and shows it in the reader's language. The hub writes
# its own sentences through ``Reason``, from the templates below, so the words written and the words read
# back cannot drift apart. Libraries' sentences (libphonenumber, email-validator, json, the codecs) are stored
# as the library wrote them, their details intact for the API, and read through THEIR_WORDS into ours. A
# sentence nobody registered (a third-party connector's own) is shown as written.

REASONS: dict[str, str] = {
    # hub/mapping.py
    "no_contact": N_("no phone, e-mail or messenger id (looked for fields: %(fields)s)"),
    "no_contact_fields": N_("(the mapping names no contact fields)"),
    "not_fields": N_("payload is not an object of named fields"),
    # hub/connector.py: a body that is not text, or not JSON the store can keep
    "malformed": N_("malformed %(what)s: %(problem)s"),
    "at_line": N_("%(problem)s at line %(line)s column %(column)s"),
    "too_deep": N_("nested deeper than %(levels)s levels"),
    "half_pair": N_("%(char)s is half of a UTF-16 pair, not a character"),
    "not_json_number": N_("%(value)s is not a number JSON can hold"),
    "not_json_constant": N_("%(name)s is not a number JSON allows"),
    "out_of_range": N_("the number %(literal)s is out of range"),
    "too_many_digits": N_("a number of %(digits)s digits, more than %(limit)s"),
    "bad_escape": N_("a %%-escaped field is not valid utf-8: %(reason)s"),
    "unknown_charset": N_("unknown charset %(charset)r in Content-Type"),
    "not_in_charset": N_("%(what)s is not valid %(charset)s: %(reason)s at byte %(at)s"),
    # hub/intake/webhook.py
    "unreadable": N_("the connector could not read this delivery: %(error)s"),
    # hub/pipeline/normalise.py
    "not_a_phone": N_("not a phone number: %(detail)s"),
    "invalid_phone_for_region": N_("not a valid phone number for region %(region)s"),
    # Ours for libphonenumber's words (the detail of not_a_phone)
    "no_number": N_("it does not look like one"),
    "phone_too_short": N_("too short"),
    "phone_too_long": N_("too long"),
    "unknown_country_code": N_("unknown country calling code"),
    "no_region": N_("no country code, and no region to read it in"),
    # Ours for email-validator's words. Which characters are not allowed is plain from the address shown
    # beside the reason (and the API keeps the library's sentence whole).
    "no_at_sign": N_("no @ sign"),
    "nothing_before_at": N_("nothing before the @ sign"),
    "nothing_after_at": N_("nothing after the @ sign"),
    "no_dot_in_domain": N_("no dot in the domain after the @ sign"),
    "unknown_top_level_domain": N_("the domain after the @ sign does not end in a known zone"),
    "reserved_domain": N_("the domain after the @ sign is reserved and receives no mail"),
    "two_dots": N_("two dots in a row"),
    "dot_at_start": N_("starts with a dot"),
    "dot_before_at": N_("a dot right before the @ sign"),
    "dot_or_hyphen_after_at": N_("a dot or a hyphen right after the @ sign"),
    "dot_or_hyphen_at_end": N_("ends with a dot or a hyphen"),
    "dot_next_to_hyphen": N_("a dot and a hyphen side by side"),
    "bad_chars_before_at": N_("characters not allowed before the @ sign"),
    "bad_chars_after_at": N_("characters not allowed after the @ sign"),
    "bad_chars": N_("characters not allowed in an address"),
    "quoted_local_part": N_("quotes before the @ sign"),
    "display_name": N_("a name and angle brackets around the address"),
    "too_long_before_at": N_("too long before the @ sign"),
    "too_long_after_at": N_("too long after the @ sign"),
    "domain_part_too_long": N_("a part of the domain after the @ sign is too long"),
    "email_too_long": N_("too long for an address"),
    # Ours for json's words (the problem of at_line)
    "json_value_expected": N_("a value was expected"),
    "json_name_expected": N_("a field name in double quotes was expected"),
    "json_colon_expected": N_("a colon was expected"),
    "json_comma_expected": N_("a comma was expected"),
    "json_string_not_closed": N_("a string is not closed"),
    "json_control_character": N_("a control character inside a string"),
    "json_bad_escape": N_("a backslash escape that does not exist"),
    "json_extra_data": N_("more text after the end of the JSON"),
    # Ours for the codecs' words (the reason of not_in_charset and bad_escape)
    "bad_start_byte": N_("a byte that cannot start a character"),
    "bad_continuation_byte": N_("a byte that cannot continue a character"),
    "ends_inside_character": N_("the text ends inside a character"),
}

# Another library's sentence, as it writes it (parameters where it varies), and our reason for it.
THEIR_WORDS: dict[str, str] = {
    # libphonenumber: str(NumberParseException), "(<error type>) <message>"
    "(%(kind)s) The string supplied did not seem to be a phone number.": "no_number",
    "(%(kind)s) The string supplied is too short to be a phone number.": "phone_too_short",
    "(%(kind)s) Phone number had an IDD, but after this was not long enough to be a viable phone number.":
        "phone_too_short",
    "(%(kind)s) The string supplied is too long to be a phone number.": "phone_too_long",
    "(%(kind)s) The string supplied was too long to parse.": "phone_too_long",
    "(%(kind)s) Country calling code supplied was not recognised.": "unknown_country_code",
    "(%(kind)s) Could not interpret numbers after plus-sign.": "unknown_country_code",
    "(%(kind)s) Missing or invalid default region.": "no_region",
    # email-validator 2 (check_deliverability off: it never looks the domain up)
    "An email address must have an @-sign.": "no_at_sign",
    "There must be something before the @-sign.": "nothing_before_at",
    "There must be something after the @-sign.": "nothing_after_at",
    "The part after the @-sign is not valid. It should have a period.": "no_dot_in_domain",
    "The part after the @-sign is not valid. It is not within a valid top-level domain.": "unknown_top_level_domain",
    "The part after the @-sign is a special-use or reserved name that cannot be used with email.": "reserved_domain",
    "An email address cannot have two periods in a row.": "two_dots",
    "An email address cannot start with a period.": "dot_at_start",
    "An email address cannot have a period immediately before the @-sign.": "dot_before_at",
    "An email address cannot have a %(mark)s immediately after the @-sign.": "dot_or_hyphen_after_at",
    "An email address cannot end with a %(mark)s.": "dot_or_hyphen_at_end",
    "An email address cannot have a period and a hyphen next to each other.": "dot_next_to_hyphen",
    "The email address contains invalid characters before the @-sign: %(chars)s.": "bad_chars_before_at",
    "The email address contains invalid characters before the @-sign.": "bad_chars_before_at",
    "The part after the @-sign contains invalid characters: %(chars)s.": "bad_chars_after_at",
    "The email address contains unsafe characters: %(chars)s.": "bad_chars",
    "The email address contains an invalid character.": "bad_chars",
    "Quoting the part before the @-sign is not allowed here.": "quoted_local_part",
    "A display name and angle brackets around the email address are not permitted here.": "display_name",
    "The email address is too long before the @-sign %(excess)s.": "too_long_before_at",
    "The email address is too long after the @-sign %(excess)s.": "too_long_after_at",
    "After the @-sign, periods cannot be separated by so many characters %(excess)s.": "domain_part_too_long",
    "The email address is too long %(excess)s.": "email_too_long",
    # json.JSONDecodeError.msg
    "Expecting value": "json_value_expected",
    "Expecting property name enclosed in double quotes": "json_name_expected",
    "Expecting ':' delimiter": "json_colon_expected",
    "Expecting ',' delimiter": "json_comma_expected",
    "Unterminated string starting at": "json_string_not_closed",
    "Invalid control character at": "json_control_character",
    "Invalid \\escape": "json_bad_escape",
    "Invalid \\uXXXX escape": "json_bad_escape",
    "Extra data": "json_extra_data",
    # UnicodeDecodeError.reason (utf-8)
    "invalid start byte": "bad_start_byte",
    "invalid continuation byte": "bad_continuation_byte",
    "unexpected end of data": "ends_inside_character",
}

# What hub/connector.py's readers call the body they refuse (their ``what``), the built-in connectors' too.
WHAT_LABELS = {"payload": N_("payload"), "body": N_("body"), "form": N_("form"), "call event": N_("call event"),
               "notification": N_("notification"), "Telegram Update": N_("Telegram Update"),
               "Mango event": N_("Mango event"), "json field": N_("json field")}


class Reason(Msg):
    """One of REASONS: a stable ``code`` and its parameters; ``str()`` is the English sentence stored."""

    def __init__(self, code: str, **params: Any):
        super().__init__(REASONS[code], **params)
        self.code = code


class _Pattern(NamedTuple):
    """A template as an expression that reads its sentences back. Most sentences are told apart by their
    first and last words alone (``prefix``, ``suffix``), without running the expression."""

    code: str
    prefix: str
    suffix: str
    regex: re.Pattern[str]
    quoted: frozenset[str]  # parameters written with %r: read back with literal_eval


_PARAMETER = re.compile(r"%\((\w+)\)([sr])")


def _literal(template_part: str) -> str:
    return template_part.replace("%%", "%")


def _pattern(template: str, code: str) -> _Pattern:
    params = list(_PARAMETER.finditer(template))
    regex, pos = "", 0
    for m in params:
        regex += re.escape(_literal(template[pos:m.start()]))
        regex += (rf"(?P<{m.group(1)}>'(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\")" if m.group(2) == "r"
                  else rf"(?P<{m.group(1)}>.*?)")
        pos = m.end()
    regex += re.escape(_literal(template[pos:]))
    prefix = _literal(template[:params[0].start()] if params else template)
    suffix = _literal(template[params[-1].end():]) if params else ""
    return _Pattern(code, prefix, suffix, re.compile(regex, re.DOTALL),
                    frozenset(m.group(1) for m in params if m.group(2) == "r"))


@cache
def _patterns() -> tuple[_Pattern, ...]:
    return (*(_pattern(template, code) for code, template in REASONS.items()),
            *(_pattern(words, code) for words, code in THEIR_WORDS.items()))


def read_reason(text: str) -> Reason | None:
    """A stored sentence back as the reason it was written from, its parameters read back too (a JSON
    error inside "malformed …"); None for a sentence that is no one's we know."""
    for pattern in _patterns():
        if not (text.startswith(pattern.prefix) and text.endswith(pattern.suffix)):
            continue
        match = pattern.regex.fullmatch(text)
        if match:
            return Reason(pattern.code, **{name: _read_parameter(name, value, name in pattern.quoted)
                                           for name, value in match.groupdict().items()})
    return None


def _read_parameter(name: str, value: str, quoted: bool) -> Any:
    if quoted:
        try:
            return ast.literal_eval(value)
        except (ValueError, SyntaxError):
            return value
    if name == "what":
        return Msg(WHAT_LABELS[value]) if value in WHAT_LABELS else value
    return read_reason(value) or value


def reason_text(text: str | None, gettext: Callable[[str], str]) -> str:
    """A stored rejection reason or contact problem in the reader's language; a sentence we do not know,
    as written."""
    if not text:
        return ""
    reason = read_reason(text)
    return reason.translate(gettext) if reason else text


def label_helpers(config: Any, lang: str, gettext: Callable[[str], str]) -> dict[str, Callable[[Any], str]]:
    """What the pages' templates call to show the config's names, stored reasons and flags in ``lang``
    (template globals, like status_label and the others)."""
    names = Names(config, lang)
    return {"rule_label": names.rule, "team_label": names.team,
            "reason_text": lambda text: reason_text(text, gettext),
            "flag_label": lambda code: flag_label(code, gettext),
            "why_text": lambda entry: why_of(entry, gettext, names)}


# A day on a chart's axis, short, in the reader's order: "Dec 2" in English, "02.12" in Russian.
AXIS_DAY_FORMATS = {"en": "MMM d", "ru": "dd.MM"}


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
