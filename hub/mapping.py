"""Declarative field maps: how a provider's fields become a ``LeadDraft``.

A mapping is a TOML file in ``mappings/`` (a deployment's own ``mappings/`` folder next to its config
wins over the built-in one of the same name). Field names are matched case-insensitively; for single
values the first listed name present wins, phones and e-mails are collected from every listed name.
Applying a mapping is pure and raises only ``PayloadError``.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from functools import lru_cache
from importlib.resources import files
from pathlib import Path
from typing import Any, Literal, overload
from urllib.parse import parse_qsl, unquote, urlsplit

import phonenumbers
from pydantic import BaseModel, ConfigDict, ValidationError

from hub.errors import ConfigError, PayloadError
from hub.i18n import Reason

UTM_KEYS = ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term")
UtmKey = Literal["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"]
# [sources.numbers]: a call-tracking number (E.164 once loaded) → the UTM marks of the one ad it is printed in.
TrackingNumbers = dict[str, dict[UtmKey, str]]
CLICK_ID_KEYS = ("gclid", "yclid", "fbclid")
# Longest value kept per field: a form cannot make the store hold megabytes in a name.
MAX_FIELD_CHARS = {"name": 255, "message": 10_000, "page_url": 2048, "referrer": 2048, "recording": 2048,
                   "external_id": 255}
MAX_VALUE_CHARS = 255
_CONTROL_CHARS = {c: None for c in range(32) if chr(c) not in "\t\n\r"} | {0x7F: None}


class _FieldNames(BaseModel):
    model_config = ConfigDict(extra="forbid")
    external_id: list[str] = []
    name: list[str] = []
    phone: list[str] = []
    email: list[str] = []
    message: list[str] = []
    page_url: list[str] = []
    referrer: list[str] = []
    telegram_id: list[str] = []
    vk_id: list[str] = []
    occurred_at: list[str] = []       # when the contact happened, if the provider says (imports, call logs)
    recording: list[str] = []         # a call recording's URL or reference
    called: list[str] = []            # the number the client called: a tracking number gives the marks


class _UtmRules(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Take utm_* and click ids from top-level fields of the same name.
    from_fields: bool = True
    # Else take them from the query string of these draft fields (e.g. the page the form was sent from).
    from_url: list[str] = ["page_url"]
    # Else from Tilda's TILDAUTM cookie inside these fields (Tilda's "send cookies" puts it in COOKIES).
    from_tilda_cookie: list[str] = []
    # Else from a deep-link payload (Telegram "/start <payload>"): this field's value looked up in
    # payload_map, e.g. autumn_vk = {utm_source = "vk", utm_campaign = "autumn"}. An unknown payload is kept
    # as unmapped_payload_to (set it to "" to drop it), so a new link never loses its mark.
    payload_field: str | None = None
    payload_map: dict[str, dict[Literal["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"],
                                str]] = {}
    unmapped_payload_to: Literal["utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term", ""] = \
        "utm_campaign"


class Mapping(BaseModel):
    model_config = ConfigDict(extra="forbid")
    fields: _FieldNames = _FieldNames()
    utm: _UtmRules = _UtmRules()


@dataclass
class LeadDraft:
    """What one event says about a lead, before normalisation and identification."""

    external_id: str | None = None
    name: str | None = None
    phones: list[str] = field(default_factory=list)
    emails: list[str] = field(default_factory=list)
    message: str | None = None
    page_url: str | None = None
    referrer: str | None = None
    messenger_ids: dict[str, str] = field(default_factory=dict)    # {"telegram": "123", "vk": "456"}
    occurred_at: str | None = None                                  # as the provider wrote it
    recording: str | None = None
    called: str | None = None                                       # the number the client dialled
    utm: dict[str, str] = field(default_factory=dict)
    click_ids: dict[str, str] = field(default_factory=dict)
    flags: list[str] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items()}


def _mapping_path(name: str, base_dir: Path | None) -> Path | Any:
    if base_dir is not None:
        own = base_dir / "mappings" / f"{name}.toml"
        if own.is_file():
            return own
    return files("mappings").joinpath(f"{name}.toml")


@lru_cache(maxsize=256)
def _load_cached(name: str, base_dir: Path | None) -> Mapping:
    if not name.replace("_", "").replace("-", "").isalnum():
        raise ConfigError([f"mapping name {name!r} must be letters, digits, '_' or '-'"])
    path = _mapping_path(name, base_dir)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError([f"no mapping {name!r} (looked for {path})"]) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError([f"mapping {name!r} ({path}) is not valid TOML: {exc}"]) from None
    try:
        return Mapping.model_validate(data)
    except ValidationError as exc:
        raise ConfigError([f"mapping {name!r}: {'.'.join(map(str, e['loc']))}: {e['msg']}"
                           for e in exc.errors()]) from None


def load_mapping(name: str, base_dir: Path | None = None) -> Mapping:
    return _load_cached(name, base_dir)


def _as_text(value: Any) -> str | None:
    """A scalar as stripped text; lists give their first non-empty item; anything else is ignored."""
    if isinstance(value, list):
        for item in value:
            text = _as_text(item)
            if text:
                return text
        return None
    if isinstance(value, bool) or value is None or isinstance(value, dict):
        return None
    # Control characters (NUL above all: PostgreSQL refuses it in text) are never part of a name or a phone.
    text = str(value).translate(_CONTROL_CHARS).strip()
    return text or None


def _all_texts(value: Any) -> list[str]:
    if isinstance(value, list):
        return [t for item in value for t in _all_texts(item)]
    text = _as_text(value)
    return [text] if text else []


@overload
def _clip(key: str, text: str, flags: list[str]) -> str: ...
@overload
def _clip(key: str, text: str | None, flags: list[str]) -> str | None: ...
def _clip(key: str, text: str | None, flags: list[str]) -> str | None:
    limit = MAX_FIELD_CHARS.get(key, MAX_VALUE_CHARS)
    if text is not None and len(text) > limit:
        flags.append(f"{key}_truncated")
        return text[:limit]
    return text


def tilda_utm_cookie(cookies: str) -> list[tuple[str, str]]:
    """UTM pairs from Tilda's TILDAUTM cookie. Its value is encodeURIComponent("utm_source=…|||utm_medium=…|||")
    with every value percent-encoded once more inside: decode the cookie, split on "|||", decode each value."""
    for part in cookies.split(";"):
        name, _, value = part.strip().partition("=")
        if name == "TILDAUTM":
            pairs = []
            for item in unquote(value).split("|||"):
                key, sep, mark = item.partition("=")
                if sep:
                    pairs.append((key, unquote(mark)))
            return pairs
    return []


def apply_mapping(mapping: Mapping, fields: dict[str, Any], contacts_only: bool = False) -> LeadDraft:
    """Turn a provider's fields into a LeadDraft. Raises PayloadError when there is nothing to contact.

    ``contacts_only``: the check intake makes before its answer — the external id and the contacts, read
    exactly as the full mapping reads them, so it refuses what the worker's mapping would refuse; the name,
    message, URLs and UTM marks are left for the worker (a site form: 93 → 31 µs of CPU, measured)."""
    if not isinstance(fields, dict):
        raise PayloadError(str(Reason("not_fields")))
    by_lower: dict[str, Any] = {}
    for key, value in fields.items():
        by_lower.setdefault(str(key).strip().lower(), value)

    def first(names: list[str]) -> str | None:
        for n in names:
            text = _as_text(by_lower.get(n.lower()))
            if text:
                return text
        return None

    def every(names: list[str]) -> list[str]:
        out: list[str] = []
        for n in names:
            for text in _all_texts(by_lower.get(n.lower())):
                if text not in out:
                    out.append(text)
        return out

    names = mapping.fields
    draft = LeadDraft()
    flags = draft.flags
    draft.external_id = _clip("external_id", first(names.external_id), flags)
    draft.phones = [_clip("phone", p, flags) for p in every(names.phone)][:10]
    draft.emails = [_clip("email", e, flags) for e in every(names.email)][:10]
    for kind in ("telegram", "vk"):
        user_id = _clip(kind, first(getattr(names, f"{kind}_id")), flags)
        if user_id:
            draft.messenger_ids[kind] = user_id
    if contacts_only:
        _check_contacts(draft, names)
        return draft
    draft.name = _clip("name", first(names.name), flags)
    draft.message = _clip("message", first(names.message), flags)
    draft.page_url = _clip("page_url", first(names.page_url), flags)
    draft.referrer = _clip("referrer", first(names.referrer), flags)
    draft.occurred_at = _clip("occurred_at", first(names.occurred_at), flags)
    draft.recording = _clip("recording", first(names.recording), flags)
    draft.called = _clip("called", first(names.called), flags)

    marks = UTM_KEYS + CLICK_ID_KEYS
    found: dict[str, str] = {}
    if mapping.utm.from_fields:
        for key in marks:
            text = _as_text(by_lower.get(key))
            if text:
                found[key] = _clip(key, text, flags)
    def take(pairs: list[tuple[str, str]]) -> None:
        for key, value in pairs:
            key = key.strip().lower()
            if key in marks and value.strip() and key not in found:
                found[key] = _clip(key, value.strip(), flags)

    rules = mapping.utm
    for url_field in rules.from_url:
        url = getattr(draft, url_field, None) if url_field in _FieldNames.model_fields else first([url_field])
        if url:
            try:
                take(parse_qsl(urlsplit(url).query))
            except ValueError:
                flags.append(f"{url_field}_unparsable")
    for cookie_field in rules.from_tilda_cookie:
        take(tilda_utm_cookie(first([cookie_field]) or ""))
    if rules.payload_field:
        payload = first([rules.payload_field])
        if payload in rules.payload_map:
            take(list(rules.payload_map[payload].items()))
        elif payload and rules.unmapped_payload_to:
            take([(rules.unmapped_payload_to, payload)])
            flags.append("unmapped_payload")
    draft.utm = {k: v for k, v in found.items() if k in UTM_KEYS}
    draft.click_ids = {k: v for k, v in found.items() if k in CLICK_ID_KEYS}
    _check_contacts(draft, names)
    return draft


def _check_contacts(draft: LeadDraft, names: _FieldNames) -> None:
    if not draft.phones and not draft.emails and not draft.messenger_ids:
        looked = ", ".join(names.phone + names.email + names.telegram_id + names.vk_id) \
            or Reason("no_contact_fields")
        raise PayloadError(str(Reason("no_contact", fields=looked)))


def phone_e164(raw: str, region: str) -> str:
    """A phone number in E.164, as hub/pipeline/normalise.py writes a client's; ValueError says why not."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(str(exc).partition(") ")[2].rstrip(".") or str(exc)) from None   # less its "(1) "
    if not phonenumbers.is_valid_number(number):
        raise ValueError(f"no such number in its country (one without a country code is read as {region})")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def tracking_numbers(numbers: TrackingNumbers, region: str) -> tuple[TrackingNumbers, list[str]]:
    """[sources.numbers] keyed by E.164, and a problem for each key that is not a phone number."""
    out: TrackingNumbers = {}
    problems = []
    for raw, marks in numbers.items():
        try:
            key = phone_e164(raw, region)
        except ValueError as exc:
            problems.append(f"{raw!r} is not a phone number ({exc}): write it with its country code, "
                            f"e.g. \"+7 495 123-45-67\"")
            continue
        if key in out:
            problems.append(f"{raw!r} is {key} again, listed twice")
        out[key] = marks
    return out, problems


def mark_tracked_call(draft: LeadDraft, numbers: TrackingNumbers, region: str) -> None:
    """A call to a tracking number takes that number's marks, in place of any the payload carried.

    The number is printed in exactly one ad, so the call's campaign is certain; marks in a PBX payload
    (when a mapping reads any) describe a line or a number-substitution session the hub cannot check, and
    mixing the two would make a source/campaign pair that no ad ever had. A number not listed (a pool of
    dynamic numbers, the office line) leaves the payload's marks as they are."""
    if not numbers or not draft.called:
        return
    try:
        marks = numbers.get(phone_e164(draft.called, region))
    except ValueError:
        return                        # an internal extension, a SIP URI: not a tracking number
    if marks:
        draft.utm = {str(key): value for key, value in marks.items()}
