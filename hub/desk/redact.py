"""What a reader may see of a delivery, by role: the one place the channel pages, the events API and the
mapping tester pass what they show through.

Two rules:

* Secrets — a provider's callback secret, a source's token, a signature, an API key, a password — are
  shown to no one. They are found by their key's name in payloads and headers (``is_secret_key``), and by
  their value in raw bodies and texts: every configured source's secrets, and whatever a delivery carried
  under a secret's name. VK's ``confirmation`` is not one: VK shows it to anyone who asks the server.
* Contact details — phones, e-mails, names, messenger ids, and the free text that may hold them (a
  message, a raw body) — are shown only to the roles that work leads (``ROLES_SEEING_CONTACTS``). Anyone
  else (the marketer) sees a delivery's shape and its channel facts (UTM marks, click ids, form, event and
  request ids) in clear, every other value masked, phones and e-mails masked in texts, no raw body.

Masked rather than dropped, so that a marketer fixing a mapping still sees that a phone arrived, and in
which field: "+7 9•• •••-••-44", "i•••@example.ru", "И•••".
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from contextlib import suppress
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit, urlunsplit

from hub.mapping import CLICK_ID_KEYS, UTM_KEYS
from hub.runtime import Hub, Source
from hub.store.models import InboundEvent
from hub.store.serialize import event_to_dict
from hub.store.users import Role

HIDDEN = "•••"
ROLES_SEEING_CONTACTS = frozenset({Role.ADMIN, Role.LEAD, Role.MANAGER, Role.TELEPHONY})

# A key names a secret when one of its words is one of these ("X-Hub-Token", "secret_token", "Signature",
# Mango's "sign", "Authorization", "Cookie"), or two of its words make an API or access key ("vpbx_api_key").
SECRET_WORDS = frozenset({"secret", "token", "signature", "sign", "password", "passwd", "pwd", "salt", "hash",
                          "authorization", "auth", "cookie", "apikey", "accesskey"})
SECRET_WORD_PAIRS = frozenset({("api", "key"), ("access", "key"), ("private", "key")})
# A setting named like a secret whose value only says where the secret travels (tilda's api_key_field,
# telephony_generic's signature_header) is not a secret itself.
WHERE_A_SECRET_TRAVELS = frozenset({"field", "header", "path", "url"})
# Shorter secret values are not searched for in texts: replacing "ok" would garble a body, and a secret
# that short protects nothing.
MIN_SECRET_CHARS = 4

# Values the marketer sees in clear: where a lead came from and the ids that tell deliveries apart, never
# who the lead is. A source's mapping adds the fields it reads its external id and time from.
MARKS = frozenset({*UTM_KEYS, *CLICK_ID_KEYS})
CHANNEL_KEYS = MARKS | {"type", "event", "vk_event", "event_id", "update_id", "group_id", "v", "form_id",
                        "form_name", "formid", "formname", "ad_id", "tranid", "content-type", "user-agent",
                        "x-retry-counter"}
# URLs the marketer sees without their query's values other than the marks (a form may put a name there).
URL_KEYS = frozenset({"page_url", "pageurl", "page", "url", "landing", "referrer", "referer"})
# A number this large may be a phone or a messenger id (VK's and Telegram's have 6-10 digits); smaller
# ones are counts, flags and amounts, shown.
MASKED_NUMBER_FROM = 10_000
# Walking a payload deeper than the intake stores (hub/connector.py MAX_JSON_DEPTH): masked whole.
MAX_DEPTH = 64

_CAMEL = re.compile(r"([a-z0-9])([A-Z])")
_WORD = re.compile(r"[a-z0-9]+")
# Seven digits or more, grouped as people write phones: "+7 (999) 111-22-44", "565-53-66", "79991112244";
# not a run of digits inside a longer word (a hash, an id).
_PHONE = re.compile(r"(?<!\w)\+?\d(?:[ ().-]{0,3}\d){6,}(?!\w)", re.ASCII)
_EMAIL = re.compile(r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+")
_NAME_KEY = re.compile(r"name|fio", re.IGNORECASE)


def _words(key: str) -> list[str]:
    return _WORD.findall(_CAMEL.sub(r"\1_\2", key).lower())


def is_secret_key(key: str) -> bool:
    words = _words(key)
    pairs = zip(words, words[1:], strict=False)
    return bool(SECRET_WORDS.intersection(words)) or any(pair in SECRET_WORD_PAIRS for pair in pairs)


def configured_secrets(hub: Hub) -> set[str]:
    """Every secret in the sources' settings (callback secrets, tokens, API keys and salts, passwords)."""
    found = set()
    for source in hub.sources.values():
        for name, value in source.connector.settings:
            if isinstance(value, str) and is_secret_key(name) and _words(name)[-1] not in WHERE_A_SECRET_TRAVELS:
                found.add(value)
    return found


def mask_phone(text: str) -> str:
    """'+7 999 111-22-44' -> '+7 9•• •••-••-44': the spelling kept, all but the first and last two digits
    hidden."""
    total = sum(c in "0123456789" for c in text)
    if total < 7:
        return HIDDEN
    out, seen = [], 0
    for c in text:
        if c in "0123456789":
            seen += 1
            out.append(c if seen <= 2 or seen > total - 2 else "•")
        else:
            out.append(c)
    return "".join(out)


def mask_email(text: str) -> str:
    """'ivan.petrov@example.ru' -> 'i•••@example.ru'."""
    local, _, domain = text.strip().rpartition("@")
    return f"{local[:1]}{HIDDEN}@{domain}" if local else HIDDEN


def mask_value(text: str) -> str:
    """Any other text: its first character, so that a reader sees something arrived (a name -> 'И•••')."""
    stripped = text.strip()
    if _EMAIL.fullmatch(stripped):
        return mask_email(stripped)
    if _PHONE.fullmatch(stripped):
        return mask_phone(stripped)
    return stripped[:1] + HIDDEN if stripped else text


def _spellings(secret: str) -> set[str]:
    """A secret as a body may carry it: as is, %-encoded (a form, a URL), JSON-escaped."""
    return {secret, quote(secret, safe=""), quote_plus(secret, safe=""), json.dumps(secret)[1:-1]}


def _replace_all(text: str, values: Iterable[str], by: str) -> str:
    ordered = sorted({v for v in values if v}, key=len, reverse=True)      # "Иван Петров" before "Иван"
    return re.sub("|".join(map(re.escape, ordered)), by, text) if ordered else text


class Redactor:
    """What one reader, by role, may see. Made per request: it reads the sources' secrets when made."""

    def __init__(self, hub: Hub, role: str):
        self.hub = hub
        self.sees_contacts = role in ROLES_SEEING_CONTACTS
        self.secrets = {s for s in configured_secrets(hub) if len(s) >= MIN_SECRET_CHARS}

    def text(self, text: str | None) -> str | None:
        """An error text, a rejection reason, a poll error: without secrets, and without phones and e-mails
        for a reader who may not see them."""
        return _Reading(self, None).text(text)

    def event(self, event: InboundEvent, with_body: bool = False) -> dict[str, Any]:
        """``event_to_dict`` as this reader may see it. Without contacts: the payload masked, no raw body,
        and ``contacts_hidden`` set."""
        reading = _Reading(self, self.hub.sources.get(event.source))
        body = (event.body or b"").decode("utf-8", "replace")
        # First learn what the texts below may quote: the secrets the delivery carried, its contacts.
        headers = reading.headers(event.headers or {})
        reading.learn(body)
        reading.learn_fields(event.payload)
        out = event_to_dict(event, with_body=with_body)
        if with_body:
            out["headers"] = headers
            out["payload"] = reading.value(event.payload)
            out["body"] = reading.text(body) if self.sees_contacts else None
        out["external_id"] = reading.mark(out["external_id"])
        for key in ("reject_reason", "last_error"):
            out[key] = reading.text(out[key])
        if not self.sees_contacts:
            out["contacts_hidden"] = True
        return out

    def exported(self, event: dict[str, Any]) -> dict[str, Any]:
        """A raw event (``event_to_dict(..., with_body=True)``) in a data subject's export: their own data
        whole — it is theirs — but the hub's secrets (a callback secret, a source's token) never."""
        reading = _Reading(self, self.hub.sources.get(event["source"]))
        out = dict(event)
        out["headers"] = reading.headers(event.get("headers") or {})
        reading.learn(event.get("body") or "")
        out["payload"] = reading.value(event.get("payload"))
        out["body"] = reading.text(event.get("body"))
        for key in ("external_id", "reject_reason", "last_error"):
            out[key] = reading.text(out.get(key))
        return out

    def tried(self, source: Source, result: dict[str, Any]) -> dict[str, Any]:
        """The mapping tester's answer (hub/intake/dryrun.py) as this reader may see it."""
        reading = _Reading(self, source)
        events = []
        for tried in result["events"]:
            if "draft" in tried and not self.sees_contacts:
                tried = {**tried, "draft": reading.draft(tried["draft"]),
                         "contacts": [reading.contact(c) for c in tried["contacts"]]}
            events.append(tried)
        # The texts last, once every draft has told which contacts they may quote.
        for tried in events:
            tried["external_id"] = reading.mark(tried["external_id"])
            if "rejected" in tried:
                tried["rejected"] = reading.text(tried["rejected"])
            if "draft" in tried:
                tried["draft"] = {**tried["draft"], "external_id": reading.mark(tried["draft"]["external_id"])}
                tried["contacts"] = [{**c, "problem": reading.text(c["problem"])} if c.get("problem") else c
                                     for c in tried["contacts"]]
        out = {**result, "events": events, "reply": reading.text(result["reply"])}
        if not self.sees_contacts:
            out["contacts_hidden"] = True
        return out

    def health(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Channel health rows (hub/desk/queries.py): a poll error may quote a URL with the source's token."""
        return [{**row, "last_poll_error": self.text(row["last_poll_error"])} for row in rows]


class _Reading:
    """One delivery read for one reader: the secrets and contacts learnt from it, so that a text about the
    delivery (why it was rejected, why it failed) is cleared of them too."""

    def __init__(self, redactor: Redactor, source: Source | None):
        self.redactor = redactor
        self.source = source
        self.secrets: set[str] = set()
        self.contacts: set[str] = set()
        names = source.mapping.fields if source else None
        own = {n.lower() for n in (*names.external_id, *names.occurred_at)} if names else set()
        urls = {n.lower() for n in (*names.page_url, *names.referrer)} if names else set()
        self.name_keys = {n.lower() for n in names.name} if names else set()
        self.contact_keys = self.name_keys | ({n.lower() for n in (
            *names.phone, *names.email, *names.message, *names.telegram_id, *names.vk_id, *names.recording)}
            if names else set())
        # A mapping that reads a contact from a field the lists above call a channel's keeps it hidden.
        self.channel = (CHANNEL_KEYS | own) - self.contact_keys
        self.urls = (URL_KEYS | urls) - self.contact_keys

    # -- learning what a delivery holds --------------------------------------------------------------------

    def learn(self, body: str) -> None:
        """The secrets a raw body carries under a secret's name (read as JSON, else as a form), and for a
        reader without contacts the contacts it holds."""
        try:
            parsed = json.loads(body)
        except (ValueError, RecursionError):     # not JSON, or nested too deep to have been stored but raw
            parsed = dict(parse_qsl(body, keep_blank_values=True))
        self.value(parsed)
        self.learn_fields(parsed)

    def learn_fields(self, payload: Any) -> None:
        """The contacts in a payload, as the source's mapping reads them (through its connector's fields)."""
        if self.redactor.sees_contacts or not isinstance(payload, dict):
            return
        views = [payload]
        if self.source is not None:
            # A payload its connector cannot read (stored rejected for that): its raw fields still count.
            with suppress(Exception):
                views.append(self.source.connector.fields(payload))
        for fields in views:
            for key, value in fields.items():
                lowered = str(key).lower()
                if lowered in self.contact_keys or _NAME_KEY.search(lowered):
                    for item in value if isinstance(value, list) else [value]:
                        if isinstance(item, str | int) and not isinstance(item, bool):
                            self._remember(str(item), name=lowered in self.name_keys or bool(_NAME_KEY.search(lowered)))

    def _remember(self, text: str, name: bool = False) -> None:
        """A contact an error text may quote: whole, and word by word for a name ("Иван" alone)."""
        stripped = text.strip()
        if len(stripped) >= 3:
            self.contacts.add(stripped)
        if name:
            self.contacts.update(word for word in stripped.split() if len(word) >= 3)

    # -- texts ---------------------------------------------------------------------------------------------

    def text(self, text: str | None) -> str | None:
        """Free text (an error, a reason, a path): anything shaped like a phone or an e-mail masked too."""
        text = self.mark(text)
        if not text or self.redactor.sees_contacts:
            return text
        text = _EMAIL.sub(lambda m: mask_email(m.group()), text)
        return _PHONE.sub(lambda m: mask_phone(m.group()), text)

    def mark(self, text: str | None) -> str | None:
        """A channel fact or an id ("tranid:4567890:1234567", a UTM mark): only the secrets and the contacts
        this delivery holds hidden, for its digits are not a phone's."""
        if not text:
            return text
        secrets = self.redactor.secrets | {s for s in self.secrets if len(s) >= MIN_SECRET_CHARS}
        text = _replace_all(text, (spelling for s in secrets for spelling in _spellings(s)), HIDDEN)
        return text if self.redactor.sees_contacts else _replace_all(text, self.contacts, HIDDEN)

    def url(self, text: str) -> str:
        """A page's URL with its host, path and marks: the values of any other query field hidden."""
        try:
            parts = urlsplit(text.strip())
            port = parts.port
        except ValueError:
            return self.text(text) or text
        if not (parts.scheme and parts.hostname):
            return self.text(text) or text
        query = "&".join(f"{quote(k)}={quote(self.mark(v) or '') if k.lower() in MARKS else HIDDEN}"
                         for k, v in parse_qsl(parts.query, keep_blank_values=True))
        host = parts.hostname + (f":{port}" if port else "")
        return urlunsplit((parts.scheme, host, self.text(parts.path) or "", query, ""))

    # -- values --------------------------------------------------------------------------------------------

    def value(self, value: Any, key: str | None = None, depth: int = 0) -> Any:
        """A payload (or a part of one) with its secrets hidden, and for a reader without contacts every
        value but the channel facts masked. A list's items are read under the list's key."""
        if key is not None and is_secret_key(key):
            if isinstance(value, str | int | float) and not isinstance(value, bool):
                self.secrets.add(str(value))
            return HIDDEN
        if depth > MAX_DEPTH:
            return HIDDEN
        if isinstance(value, dict):
            return {k: self.value(v, str(k), depth + 1) for k, v in value.items()}
        if isinstance(value, list):
            return [self.value(v, key, depth + 1) for v in value]
        if isinstance(value, str) and self.redactor.sees_contacts:
            return self.text(value)
        if self.redactor.sees_contacts or value is None or isinstance(value, bool):
            return value
        lowered = (key or "").lower()
        if isinstance(value, str) and lowered in self.urls:
            return self.url(value)
        if lowered in self.channel:
            return self.mark(value) if isinstance(value, str) else value
        if isinstance(value, int | float):
            if abs(value) < MASKED_NUMBER_FROM:
                return value
            self.contacts.add(str(value))
            return HIDDEN
        return mask_value(str(value))

    def headers(self, headers: dict[str, Any]) -> dict[str, Any]:
        """Request headers without those that carry a secret (signatures, tokens, authorization, cookies)."""
        for key, value in headers.items():
            if is_secret_key(key):
                self.secrets.add(str(value))
        return {k: self.value(v, k) for k, v in headers.items() if not is_secret_key(k)}

    # -- the mapping tester's drafts -----------------------------------------------------------------------

    def draft(self, draft: dict[str, Any]) -> dict[str, Any]:
        """A LeadDraft's fields (hub/mapping.py) with its contacts masked and its marks in clear."""
        out = dict(draft)
        if draft.get("name"):
            self._remember(draft["name"], name=True)
            out["name"] = mask_value(draft["name"])
        for many in ("phones", "emails"):
            for text in draft.get(many) or []:
                self._remember(text)
            out[many] = [mask_value(text) for text in draft.get(many) or []]
        for uid in (draft.get("messenger_ids") or {}).values():
            self._remember(uid)
        out["messenger_ids"] = {kind: HIDDEN for kind in draft.get("messenger_ids") or {}}
        for free_text in ("message", "recording"):
            if draft.get(free_text):
                self._remember(draft[free_text])
                out[free_text] = HIDDEN
        for url in ("page_url", "referrer"):
            if draft.get(url):
                out[url] = self.url(draft[url])
        return out

    def contact(self, record: dict[str, Any]) -> dict[str, Any]:
        """A normalised contact record (hub/pipeline/process.py, Contacts.as_records)."""
        out = dict(record)
        for key in ("raw", "value"):
            if record.get(key):
                out[key] = mask_value(str(record[key]))
        if record.get("extension"):
            out["extension"] = HIDDEN
        return out
