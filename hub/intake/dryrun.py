"""What a provider's payload would become — the LeadDraft, its contacts and warmth — storing nothing and
checking no signature. Behind `hub mapping test`, the mapping tester page and the API."""

from __future__ import annotations

import json
from typing import Any

from hub.connector import InboundRequest, WebhookConnector
from hub.errors import PayloadError
from hub.intake.webhook import read_delivery
from hub.pipeline.process import map_event, normalise, occurred_at
from hub.pipeline.routing.rules import TouchFacts, judge_warmth
from hub.runtime import Hub, Source
from hub.store.models import utcnow


def guess_content_type(body: bytes) -> str:
    try:
        json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError):
        return "application/x-www-form-urlencoded"
    except (ValueError, RecursionError):    # JSON past what can be read (too long a number, too deep): the
        return "application/json"           # connector says which
    return "application/json"


def try_payload(hub: Hub, source: Source, body: bytes, content_type: str | None = None,
                subpath: str = "") -> dict[str, Any]:
    """``{"events": [...], "reply": ...}``; each event has its ``draft`` or why it is ``rejected``. Raises
    PayloadError when the connector refuses the whole payload, ValueError for a non-webhook source."""
    if not isinstance(source.connector, WebhookConnector):
        raise ValueError(f"source {source.name!r} is not a webhook source")
    content_type = content_type or guess_content_type(body)
    mimetype, _, params = content_type.partition(";")
    charset = params.partition("charset=")[2].strip() or None
    request = InboundRequest(method="POST", subpath=subpath, query={}, headers={"content-type": content_type},
                             body=body, mimetype=mimetype.strip().lower(), charset=charset)
    results: list[dict[str, Any]] = []
    received = read_delivery(source, request, utcnow())
    for event in received.events:
        try:
            draft = map_event(source, event.payload)
            contacts = normalise(draft, source.region, hub.config.identity)
            when = occurred_at(draft, source)
        except PayloadError as exc:
            results.append({"external_id": event.external_id, "rejected": str(exc)})
            continue
        facts = TouchFacts(source=source.name, tags=list(source.config.tags), message=draft.message or "",
                           fields=source.connector.fields(event.payload), repeat=False, region=None)
        warmth, score, rule = judge_warmth(hub.config, facts)
        results.append({"external_id": event.external_id, "draft": draft.as_dict(),
                        "contacts": contacts.as_records(), "occurred_at": when.isoformat() if when else None,
                        "warmth": warmth, "score": score, "warmth_rule": rule})
    return {"events": results, "reply": received.reply.body if received.reply else None}
