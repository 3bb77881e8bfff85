"""The connector contract and the one door through which connectors are found.

A connector is pure: it turns what a provider sends (or what a poll returns) into ``RawEvent``s and says
what to answer. It never touches the database, the web framework or the scheduler; the hub does that.
Built-in connectors are registered exactly like third-party ones, in the ``leadhub.connectors``
entry-point group of their package's metadata; the entry point's key is the connector's name, and the
class says the same name in ``name`` (checked when the connectors are loaded).
"""

from __future__ import annotations

import json
import math
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar, Generic, NoReturn, TypeVar
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict

from hub.errors import PayloadError
from hub.i18n import Msg, Reason

ENTRY_POINT_GROUP = "leadhub.connectors"


class NoSettings(BaseModel):
    """Settings of a connector that has none of its own."""

    model_config = ConfigDict(extra="forbid")


@dataclass(frozen=True)
class InboundRequest:
    """One HTTP delivery, as the hub hands it to a webhook connector."""

    method: str
    subpath: str                    # what follows /hooks/<source>/, e.g. "events/call"; "" for most providers
    query: dict[str, list[str]]
    headers: dict[str, str]         # keys lower-cased
    body: bytes
    mimetype: str                   # "application/json", lower-cased, no parameters
    charset: str | None             # the charset parameter of Content-Type, if any


@dataclass
class RawEvent:
    """One delivery that may become a lead. ``external_id`` is the provider's own id (or a content hash):
    the store keeps one event per (source, external_id), so a provider's retry is a no-op. None leaves it to
    the hub: the id field the mapping names, else a hash of the content."""

    external_id: str | None
    payload: dict[str, Any]


@dataclass
class WebhookReply:
    """The exact HTTP answer a provider expects."""

    status: int = 200
    body: str = ""
    content_type: str = "text/plain; charset=utf-8"


@dataclass
class WebhookResult:
    """What ``receive`` found: the events to store, and the reply. ``reply=None`` lets the hub answer with
    its default JSON (``{"status": "accepted"|"duplicate", "event_ids": [...]}``)."""

    events: list[RawEvent] = field(default_factory=list)
    reply: WebhookReply | None = None


@dataclass
class LiveCall:
    """An incoming call still ringing, which the PBX lets us route by our answer."""

    phone: str                      # the caller, as the provider spelled it
    call_id: str
    routable: bool = False          # the provider reads our answer to put the call through (route_reply)


@dataclass
class OutboundRequest:
    """A request a connector wants made to its provider (a PBX's routing command); the hub sends it."""

    method: str
    url: str
    form: dict[str, str] | None = None
    json: Any = None


@dataclass
class PollResult:
    events: list[RawEvent]
    state: dict[str, Any]


# How deep a delivery's JSON may nest. Providers' payloads are under ten levels; json.loads, the store's JSON
# encoder and the mapping walk a payload on the Python stack, and a body nested ~1,000 deep overflows it
# (RecursionError) wherever it goes next. 64 leaves every real payload a wide margin.
MAX_JSON_DEPTH = 64
_SURROGATE = re.compile("[\ud800-\udfff]")


def _malformed(what: str, problem: Msg | str) -> PayloadError:
    return PayloadError(str(Reason("malformed", what=what, problem=problem)), status=400)


def check_payload(payload: Any, what: str = "payload") -> None:
    """PayloadError (400) unless the store can keep ``payload`` as JSON and read it back: nested at most
    ``MAX_JSON_DEPTH`` deep, every string (key or value) text (no unpaired surrogate, which no UTF-8 can
    hold), every float finite (JSON has no NaN or Infinity). Walks without recursion, so any depth is safe."""
    pending = [(payload, 1)]
    while pending:
        value, depth = pending.pop()
        if isinstance(value, dict | list):
            if depth > MAX_JSON_DEPTH:
                raise _malformed(what, Reason("too_deep", levels=MAX_JSON_DEPTH))
            items = value.items() if isinstance(value, dict) else enumerate(value)
            for key, item in items:
                if isinstance(key, str):
                    pending.append((key, depth))
                pending.append((item, depth + 1))
        elif isinstance(value, str) and (found := _SURROGATE.search(value)):
            raise _malformed(what, Reason("half_pair", char=found.group().encode("utf-8", "backslashreplace").decode()))
        elif isinstance(value, float) and not math.isfinite(value):
            raise _malformed(what, Reason("not_json_number", value=value))


def decode_body(body: bytes, charset: str | None, what: str = "body") -> str:
    """The body as text in its charset (UTF-8 when Content-Type names none); PayloadError 415 for a charset
    that does not exist, 400 for bytes that are not text in it."""
    try:
        return body.decode(charset or "utf-8")
    except LookupError:
        raise PayloadError(str(Reason("unknown_charset", charset=charset)), status=415) from None
    except UnicodeDecodeError as exc:
        raise PayloadError(str(Reason("not_in_charset", what=what, charset=charset or "utf-8", reason=exc.reason,
                                      at=exc.start)), status=400) from None


class _NotStorable(Exception):
    """Raised from inside json.loads by the number readers below; parse_json says it in its own words."""


def _no_json_constant(name: str) -> NoReturn:
    raise _NotStorable(str(Reason("not_json_constant", name=name)))


def _finite_float(literal: str) -> float:
    number = float(literal)
    if not math.isfinite(number):
        raise _NotStorable(str(Reason("out_of_range", literal=f"{literal[:20]}{'…' if len(literal) > 20 else ''}")))
    return number


def _int_of_bounded_length(literal: str) -> int:
    try:
        return int(literal)
    except ValueError:      # longer than Python converts, for conversion is quadratic in the digits
        raise _NotStorable(str(Reason("too_many_digits", digits=len(literal.lstrip("-")),
                                      limit=sys.get_int_max_str_digits()))) from None


def parse_json(text: str, what: str = "JSON") -> Any:
    """Parse a delivery's JSON text into what the hub can store, or PayloadError (400) saying what is wrong:
    not JSON, NaN or Infinity, a number too long or too large, nested too deep, a string that is not text.
    Nothing else escapes, so a connector that reads its JSON here never turns a bad body into a 503."""
    try:
        data = json.loads(text, parse_constant=_no_json_constant, parse_float=_finite_float,
                          parse_int=_int_of_bounded_length)
    except json.JSONDecodeError as exc:
        raise _malformed(what, Reason("at_line", problem=exc.msg, line=exc.lineno, column=exc.colno)) from None
    except _NotStorable as exc:
        raise _malformed(what, str(exc)) from None
    except RecursionError:
        raise _malformed(what, Reason("too_deep", levels=MAX_JSON_DEPTH)) from None
    check_payload(data, what)
    return data


def form_fields(request: InboundRequest, what: str = "form") -> dict[str, str]:
    """A urlencoded body as {name: first value}; PayloadError when it is not text in its charset or a
    %-escape undoes into bytes that are not UTF-8."""
    text = decode_body(request.body, request.charset, what)
    try:
        pairs = parse_qs(text, keep_blank_values=True, errors="strict")
    except UnicodeDecodeError as exc:
        raise _malformed(what, Reason("bad_escape", reason=exc.reason)) from None
    return {k: v[0] for k, v in pairs.items()}


def signed_form_fields(request: InboundRequest, what: str = "form") -> dict[str, bytes]:
    """A urlencoded body as {name: first value} in the bytes its sender signed: UTF-8, or the %-escaped bytes
    as they are where they are not UTF-8. A provider's signature over fields is thus checked before knowing
    the values are text, and a signed delivery that is not is stored as rejected by ``receive`` (through
    ``form_fields``) rather than refused unheard. PayloadError only when the body itself is not text."""
    text = decode_body(request.body, request.charset, what)
    pairs = parse_qs(text, keep_blank_values=True, errors="surrogateescape")
    return {k: v[0].encode("utf-8", "surrogateescape") for k, v in pairs.items()}


SettingsT = TypeVar("SettingsT", bound=BaseModel)


class Connector(Generic[SettingsT]):
    """Base of every connector, generic in its settings model: ``class VkConnector(WebhookConnector[VkSettings])``.
    Subclasses set ``name`` (their entry point's key) and may declare ``config_schema``: that same pydantic
    model, for the connector's own settings in a ``[[sources]]`` table, validated when the hub starts.
    ``default_mapping`` names the mapping a source gets when it names none (None: it must name one)."""

    name: ClassVar[str]
    config_schema: ClassVar[type[BaseModel]] = NoSettings
    default_mapping: ClassVar[str | None] = None

    def __init__(self, source: str, settings: SettingsT):
        self.source = source
        self.settings = settings

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Flatten a stored payload into named fields for the mapping. Most providers send flat fields."""
        return payload


class WebhookConnector(Connector[SettingsT]):
    methods: ClassVar[tuple[str, ...]] = ("POST",)

    def verify(self, request: InboundRequest) -> None:
        """Raise ``SignatureError`` unless the delivery is authentic. Default: nothing to check."""

    def receive(self, request: InboundRequest, received_at: datetime) -> WebhookResult:
        raise NotImplementedError

    def live_call(self, request: InboundRequest) -> LiveCall | None:
        """An incoming call still ringing: the manager sees who calls, and, if ``routable``, the hub's answer
        may put it through (hub/pipeline/calls.py decides where). None: not a ringing call."""
        return None

    def route_reply(self, extension: str) -> WebhookReply | None:
        """The provider's exact answer that puts the call through to ``extension``; None: not by answer."""
        return None

    def route_request(self, call: LiveCall, extension: str) -> OutboundRequest | None:
        """For a provider that routes by an API command instead of by our answer: that command."""
        return None


class PollingConnector(Connector[SettingsT]):
    #: seconds between polls when the source does not say (``poll_seconds`` in its settings)
    default_poll_seconds: ClassVar[float] = 60

    def poll(self, state: dict[str, Any]) -> PollResult:
        """Fetch what is new since ``state``; never mark anything at the provider here (see ``acknowledge``)."""
        raise NotImplementedError

    def acknowledge(self, events: list[RawEvent]) -> None:
        """Called after the events are committed to the store: now it is safe to mark them read or move
        them at the provider. A failure here only means they are fetched again, and stored once."""


class FileConnector(PollingConnector[SettingsT]):
    """A polling connector that reads a file of rows: polled a batch at a time, or imported whole by
    `hub import`, which checks the header and counts the rows first."""

    def header(self) -> list[str]:
        """The file's column names; PayloadError for a file that cannot be read or has no header."""
        raise NotImplementedError

    def count_rows(self) -> int:
        raise NotImplementedError

    def events(self, start: int = 0) -> Iterator[RawEvent]:
        """Every row from data row ``start`` on, read once, as an event."""
        raise NotImplementedError


@cache
def available_connectors() -> dict[str, type[Connector]]:
    """Every connector installed in this Python environment, by name. TypeError for an entry point that is
    not a connector, or whose connector calls itself by another name (the name a source's ``connector =``
    gives and the name its touches record as their channel must be one)."""
    found: dict[str, type[Connector]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Connector)):
            raise TypeError(f"entry point {ep.name!r} = {ep.value!r} is not a hub Connector subclass")
        name = getattr(cls, "name", None)
        if name != ep.name:
            said = f"calls itself {name!r}" if name is not None else "sets no name"
            raise TypeError(f"connector entry point {ep.name!r} = {ep.value!r}: the class {said}; its name "
                            f"must be the entry point's key, {ep.name!r}")
        found[ep.name] = cls
    return found
