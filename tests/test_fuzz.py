"""Fuzzing (hypothesis) every mapping, normaliser and connector: hostile input may only ever raise
PayloadError (or SignatureError at the door) — never crash a worker or answer a provider with a 500."""

from __future__ import annotations

import contextlib
import json
from datetime import UTC, datetime
from importlib.resources import files

from hypothesis import HealthCheck, given, settings, strategies as st

from hub.connector import InboundRequest, WebhookConnector, available_connectors
from hub.errors import PayloadError, SignatureError
from hub.mapping import apply_mapping, load_mapping
from hub.pipeline.normalise import normalise_email, normalise_phone, parse_when

MAPPINGS = sorted(p.name[:-5] for p in files("mappings").iterdir() if p.name.endswith(".toml"))
TEXT = st.text(alphabet=st.characters(codec="utf-8"), max_size=60)
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), TEXT,
                    st.sampled_from([1e300, -1e20, 2**70, "", "+", "0" * 300]))
JSONISH = st.recursive(SCALARS, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                       st.dictionaries(TEXT, inner, max_size=4)), max_leaves=12)
FIELD_NAMES = st.sampled_from(["phone", "Phone", "Телефон", "email", "E-mail", "name", "Имя", "message", "page_url",
                               "utm_source", "COOKIES", "tranid", "start_payload", "telegram_user_id",
                               "vk_user_id", "caller_id", "occurred_at", "created_at", "recording_url"])
FORMS = st.dictionaries(st.one_of(FIELD_NAMES, TEXT), JSONISH, max_size=8)
FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@given(name=st.sampled_from(MAPPINGS), fields=st.one_of(FORMS, JSONISH))
@FUZZ
def test_every_mapping_raises_only_payload_errors(name, fields):
    try:
        draft = apply_mapping(load_mapping(name), fields)
    except PayloadError:
        return
    assert draft.phones or draft.emails or draft.messenger_ids


@given(text=st.one_of(TEXT, st.text(alphabet="0123456789+()- ", max_size=40)),
       region=st.sampled_from(["RU", "KZ", "AM", "MN", "US"]))
@FUZZ
def test_normalisers_never_raise(text, region):
    phone = normalise_phone(text, region)
    assert phone.value is None or phone.value.startswith("+")
    email = normalise_email(text, gmail_canonical=True)
    assert email.value is None or "@" in email.value
    with contextlib.suppress(ValueError):
        parse_when(text, "Europe/Moscow")


SETTINGS = {"tilda": {"token": "t" * 16}, "vk": {"secret": "s" * 8, "confirmation": "c"},
            "telegram": {"secret_token": "tok"}, "zadarma": {"secret": "s" * 8},
            "mango": {"api_key": "k" * 8, "api_salt": "salt"}, "telephony_generic": {}, "site_form": {},
            "email_imap": {"host": "127.0.0.1", "username": "u", "password": "p"}, "csv_import": {"path": "x.csv"},
            "telegram_polling": {"bot_token": "1" * 12}, "vk_longpoll": {"access_token": "a" * 12, "group_id": 1}}


def _connector(name: str):
    cls = available_connectors()[name]
    return cls("fuzz", cls.config_schema.model_validate(SETTINGS[name]))


WEBHOOKS = sorted(n for n, c in available_connectors().items() if issubclass(c, WebhookConnector))
MIMETYPES = st.sampled_from(["application/json", "application/x-www-form-urlencoded", "multipart/form-data",
                             "text/plain", ""])


@given(name=st.sampled_from(WEBHOOKS), body=st.one_of(st.binary(max_size=300),
                                                     JSONISH.map(lambda v: json.dumps(v).encode())),
       mimetype=MIMETYPES, method=st.sampled_from(["POST", "GET"]), subpath=st.sampled_from(["", "events/summary"]))
@FUZZ
def test_every_webhook_connector_refuses_garbage_cleanly(name, body, mimetype, method, subpath):
    connector = _connector(name)
    request = InboundRequest(method=method, subpath=subpath, query={"zd_echo": ["x"]} if method == "GET" else {},
                             headers={"content-type": mimetype}, body=body, mimetype=mimetype, charset=None)
    try:
        connector.verify(request)
        result = connector.receive(request, datetime.now(UTC))
    except (PayloadError, SignatureError):
        return
    for event in result.events:
        connector.fields(event.payload)           # what a worker will call on the stored payload


def _map_or_reject(connector_name: str, payload) -> None:
    """What a worker does with a stored payload of a source of this connector: map it, or PayloadError."""
    from hub.config import SourceConfig
    from hub.pipeline.process import map_event
    from hub.runtime import Source

    connector = _connector(connector_name)
    source = Source(config=SourceConfig(name="fuzz", connector=connector_name), connector=connector,
                    mapping=load_mapping(connector.default_mapping), region="RU")
    with contextlib.suppress(PayloadError):
        map_event(source, payload)


@given(name=st.sampled_from(sorted(available_connectors())), payload=st.one_of(FORMS, JSONISH))
@FUZZ
def test_any_stored_payload_maps_or_is_rejected(name, payload):
    """What a worker does with whatever sits in the store for a source of each connector."""
    _map_or_reject(name, payload)


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, prefix + (i,))


def _replace(value, path, new):
    if not path:
        return new
    head, rest = path[0], path[1:]
    if isinstance(value, dict):
        return {**value, head: _replace(value[head], rest, new)}
    copy = list(value)
    copy[head] = _replace(copy[head], rest, new)
    return copy


def _stored_payload(connector: str, fixture: str) -> dict:
    from urllib.parse import parse_qs

    from tests.conftest import FIXTURES

    raw = (FIXTURES / connector / fixture).read_text().strip()
    if connector == "mango":
        return json.loads(parse_qs(raw)["json"][0])
    if connector == "zadarma":
        return {k: v[0] for k, v in parse_qs(raw).items()}
    return {k: v for k, v in json.loads(raw).items() if k != "secret"}


SHAPED = [("vk", "lead_forms_new.json"), ("vk", "message_new.json"), ("telegram", "contact_shared.json"),
          ("telegram", "start_deeplink.json"), ("mango", "summary_missed_call.txt"), ("zadarma", "notify_start.txt"),
          ("telephony_generic", "call_answered.json")]


@given(case=st.sampled_from(SHAPED), data=st.data())
@settings(max_examples=600, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_provider_shaped_payloads_with_any_value_anywhere(case, data):
    """A real payload with one value (or subtree) replaced by anything: maps, or is rejected cleanly."""
    connector_name, fixture = case
    payload = _stored_payload(connector_name, fixture)
    path = data.draw(st.sampled_from(list(_paths(payload))[1:]))
    _map_or_reject(connector_name, _replace(payload, path, data.draw(JSONISH)))
