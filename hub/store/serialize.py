"""The public JSON shapes of leads and events: the CLI's --json, /api/v1, the lead card, and what the sinks
forward. Keys are only ever added: a sink or a script may read any of them."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from hub.config import Config
from hub.i18n import N_, gettext_for, reason_label
from hub.mapping import UTM_KEYS
from hub.store.models import InboundEvent, KeyKind, Lead, LeadHistory, LeadTask, Touch, utcnow


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value else None


def touch_to_dict(touch: Touch) -> dict[str, Any]:
    return {"id": touch.id, "event_id": touch.event_id, "source": touch.source, "channel": touch.channel,
            **{key: getattr(touch, key) for key in UTM_KEYS}, "click_ids": touch.click_ids,
            "referrer": touch.referrer, "landing_page": touch.landing_page, "message": touch.message,
            "recording": touch.recording, "contacts": touch.contacts, "flags": touch.flags, "at": _iso(touch.at)}


def history_to_dict(entry: LeadHistory) -> dict[str, Any]:
    return {"at": _iso(entry.at), "kind": entry.kind, "actor": entry.actor, "event_id": entry.event_id,
            **entry.data}


def note_to_dict(entry: LeadHistory) -> dict[str, Any]:
    """A note is the lead's history entry of kind "note"; its id is the entry's."""
    return {"id": entry.id, "at": _iso(entry.at), "actor": entry.actor, "text": entry.data.get("text")}


def task_to_dict(task: LeadTask, now: datetime) -> dict[str, Any]:
    return {"id": task.id, "text": task.text, "due_at": _iso(task.due_at), "created_at": _iso(task.created_at),
            "created_by": task.created_by, "done_at": _iso(task.done_at), "done_by": task.done_by,
            "overdue": task.done_at is None and task.due_at < now}


def lead_to_dict(lead: Lead, with_touches: bool = True) -> dict[str, Any]:
    """The lead; ``with_touches`` adds its touches, history, notes and tasks (the short form, for listings,
    reads nothing but the person's keys and the touches)."""
    keys = lead.person.keys
    touches = [touch_to_dict(t) for t in lead.touches]
    out = {
        "id": lead.id, "status": lead.status, "refuse_reason": lead.refuse_reason, "name": lead.person.name,
        "person_id": lead.person_id,
        "phones": [k.value for k in keys if k.kind == KeyKind.PHONE],
        "emails": [k.value for k in keys if k.kind == KeyKind.EMAIL],
        "messengers": {k.kind: k.value for k in keys if k.kind not in (KeyKind.PHONE, KeyKind.EMAIL)},
        "invalid_contacts": [{"kind": c["kind"], "raw": c["raw"], "problem": c.get("problem")}
                             for t in lead.touches for c in t.contacts if c.get("value") is None],
        "source": lead.source,
        "first_touch": touches[0] if touches else None, "last_touch": touches[-1] if touches else None,
        "touch_count": len(touches), "reopened_count": lead.reopened_count,
        "warmth": lead.warmth, "score": lead.score, "warmth_rule": lead.warmth_rule, "owner": lead.owner,
        "routing_rule": lead.routing_rule, "assigned_at": _iso(lead.assigned_at), "taken_at": _iso(lead.taken_at),
        "sla_due_at": _iso(lead.sla_due_at), "reassign_count": lead.reassign_count,
        "contact_attempts": lead.contact_attempts, "tags": lead.tags,
        "created_at": _iso(lead.created_at), "updated_at": _iso(lead.updated_at),
        # Money as decimal text ("12500.00"): exact, where a JSON number is a binary float to most readers.
        "amount": f"{lead.amount:.2f}" if lead.amount is not None else None,
        "follow_up_due_at": _iso(lead.follow_up_due_at),
    }
    if with_touches:
        now = utcnow()
        out["touches"] = touches
        out["history"] = [history_to_dict(h) for h in lead.history]
        out["notes"] = [note_to_dict(h) for h in lead.history if h.kind == "note"]
        out["tasks"] = [task_to_dict(t, now) for t in lead.tasks]
    return out


# The words a sink writes next to the lead's own data in a CRM, in [ui] default_language (already translated
# for the pages, so they read the same in the CRM as in the hub).
SINK_CAPTIONS = {"refuse_reason": N_("Refusal reason"), "tags": N_("Tags")}


def lead_for_sinks(lead: Lead, config: Config) -> dict[str, Any]:
    """What a sink gets: the public lead (with notes) and what only the config knows, in the language of
    people who have none of their own ([ui] default_language, as the CRM's users see it): the refusal
    reason's label, the currency of ``amount`` ([web] currency), and ``captions``, the few words a sink
    writes beside them. The public API's shape stays as it is."""
    lang = config.ui.default_language
    gettext = gettext_for(lang)
    reason = config.refuse_reason(lead.refuse_reason) if lead.refuse_reason else None
    return {**lead_to_dict(lead),
            "refuse_reason_label": reason_label(reason, lang, gettext) if reason else lead.refuse_reason,
            "currency": config.web.currency,
            "captions": {key: gettext(text) for key, text in SINK_CAPTIONS.items()}}


def event_to_dict(event: InboundEvent, with_body: bool = False) -> dict[str, Any]:
    out = {"id": event.id, "source": event.source, "external_id": event.external_id,
           "received_at": _iso(event.received_at), "status": event.status, "attempts": event.attempts,
           "next_attempt_at": _iso(event.next_attempt_at), "claimed_by": event.claimed_by,
           "reject_reason": event.reject_reason, "last_error": event.last_error,
           "processed_at": _iso(event.processed_at), "lead_id": event.lead_id,
           "content_type": event.content_type, "size": len(event.body or b"")}
    if with_body:
        out["headers"] = event.headers
        out["payload"] = event.payload
        out["body"] = (event.body or b"").decode("utf-8", "replace")
    return out
