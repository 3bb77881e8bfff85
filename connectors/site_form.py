"""Site forms: a hand-made landing page or any form builder that can POST (or GET) its fields.

Accepts JSON objects, urlencoded forms and multipart forms (files are ignored: they are not leads).
Charset: UTF-8 unless the Content-Type says otherwise (old sites post windows-1251). There is no
signature to check; an optional secret ``token`` (``?token=`` or ``X-Hub-Token``) keeps strangers out.
The event id is left to the hub: the form's own id field if the mapping names one, else a content hash.
"""

from __future__ import annotations

import hmac
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from email.utils import collapse_rfc2231_value
from typing import Any
from urllib.parse import parse_qs

from pydantic import BaseModel, ConfigDict, Field

from hub.connector import InboundRequest, RawEvent, WebhookConnector, WebhookResult, parse_json
from hub.errors import PayloadError, SignatureError

TOKEN_PARAM = "token"
TOKEN_HEADER = "x-hub-token"


class SiteFormSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str | None = Field(None, min_length=16, description="shared secret the form must send")


def _not_in_charset(what: str, charset: str | None) -> PayloadError:
    hint = "" if charset else ("; if the site sends windows-1251, make it say so: "
                               "'Content-Type: application/x-www-form-urlencoded; charset=windows-1251'")
    return PayloadError(f"{what} not valid {charset or 'utf-8'}{hint}", status=400)


def _decode(body: bytes, charset: str | None) -> str:
    try:
        return body.decode(charset or "utf-8")
    except LookupError:
        raise PayloadError(f"unknown charset {charset!r} in Content-Type", status=415) from None
    except UnicodeDecodeError:
        raise _not_in_charset("body is", charset) from None


def _flatten_form(pairs: dict[str, list[str]]) -> dict[str, Any]:
    return {k: (v[0] if len(v) == 1 else v) for k, v in pairs.items() if k != TOKEN_PARAM}


def _parse_urlencoded(body: bytes, charset: str | None) -> dict[str, Any]:
    text = _decode(body, charset)
    try:
        pairs = parse_qs(text, keep_blank_values=True, strict_parsing=False,
                         encoding=charset or "utf-8", errors="strict", max_num_fields=1000)
    except UnicodeDecodeError:
        # Percent-escapes that are not valid in the charset: "%C8%E2%E0%ED" is windows-1251, not UTF-8.
        raise _not_in_charset("form fields are", charset) from None
    except ValueError as exc:
        raise PayloadError(f"malformed form: {exc}", status=400) from None
    return _flatten_form(pairs)


def _parse_json(body: bytes, charset: str | None) -> dict[str, Any]:
    data = parse_json(_decode(body, charset))
    if not isinstance(data, dict):
        raise PayloadError(f"JSON body must be an object of fields, not {type(data).__name__}", status=400)
    data.pop(TOKEN_PARAM, None)
    return data


def _parse_multipart(body: bytes, content_type: str) -> dict[str, Any]:
    head = b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n"
    message = BytesParser(policy=HTTP).parsebytes(head + body)
    if not message.is_multipart():
        raise PayloadError("multipart body without a valid boundary", status=400)
    pairs: dict[str, list[str]] = {}
    for part in message.iter_parts():
        param = part.get_param("name", header="content-disposition")
        name = collapse_rfc2231_value(param) if param else None
        if not name or part.get_filename():
            continue        # unnamed parts and uploaded files are not lead fields
        try:
            value = part.get_content()
        except (LookupError, UnicodeDecodeError):
            raise PayloadError(f"form field {name!r} is not valid text in its charset", status=400) from None
        if not isinstance(value, str | bytes):          # a whole message as a field: no form sends one
            raise PayloadError(f"form field {name!r} is a {part.get_content_type()} part, not a value", status=400)
        pairs.setdefault(name, []).append(value if isinstance(value, str) else value.decode("utf-8", "replace"))
    return _flatten_form(pairs)


def given_token(request: InboundRequest) -> str:
    return request.headers.get(TOKEN_HEADER) or (request.query.get(TOKEN_PARAM) or [""])[0]


def check_token(given: str, token: str) -> None:
    """SignatureError unless ``given`` is the source's ``token``."""
    if not given:
        raise SignatureError("this source needs its token: add ?token=... to the URL or an X-Hub-Token header",
                             status=401)
    if not hmac.compare_digest(given.encode(), token.encode()):
        raise SignatureError("wrong token for this source", status=403)


def submitted_fields(request: InboundRequest) -> dict[str, Any]:
    """The form's fields, from the query of a GET or from a JSON, urlencoded or multipart body, the token
    left out; PayloadError when there are none or they cannot be read."""
    if request.method == "GET":
        fields = _flatten_form(request.query)
        if not fields:
            raise PayloadError("GET without form fields: send the form as query parameters or POST it", status=400)
        return fields
    if not request.body.strip():
        raise PayloadError("empty body: the form sent no fields", status=400)
    if request.mimetype == "application/json" or request.mimetype.endswith("+json"):
        return _parse_json(request.body, request.charset)
    if request.mimetype == "application/x-www-form-urlencoded":
        return _parse_urlencoded(request.body, request.charset)
    if request.mimetype == "multipart/form-data":
        return _parse_multipart(request.body, request.headers.get("content-type", ""))
    raise PayloadError(f"unsupported Content-Type {request.mimetype or '(none)'!r}: send application/json, "
                       "application/x-www-form-urlencoded or multipart/form-data", status=415)


class SiteFormConnector(WebhookConnector[SiteFormSettings]):
    name = "site_form"
    config_schema = SiteFormSettings
    default_mapping = "site_form"
    methods = ("POST", "GET")

    def verify(self, request: InboundRequest) -> None:
        if self.settings.token is not None:
            check_token(given_token(request), self.settings.token)

    def receive(self, request: InboundRequest, received_at: datetime) -> WebhookResult:
        return WebhookResult(events=[RawEvent(external_id=None, payload=submitted_fields(request))])
