"""What a CRM sink (bitrix24, amocrm) posts once per lead — each note, a refusal's reason — and how it
remembers that, in the keys it hands the hub (hub.sink.Step.remember, kept per sink and lead):

``notes``      the ids of the hub's notes the CRM took;
``refusal``    which refusal was told (refusal_key), so a lead refused again after a reopening is told again;
``in_flight``  the texts of the request under way, stored before it goes out: if its answer never comes
               (a timeout after the CRM took it), the next delivery lists the lead's comments first and
               counts those found as posted (posted_already) instead of posting them a second time.
"""

from __future__ import annotations

from typing import Any


def refusal_key(lead: dict[str, Any]) -> str | None:
    """Which refusal this is: its reason and when it was set, so that a lead refused, reopened and refused
    again gets its comment again, and the same refusal never twice. None: the lead is not refused."""
    if lead.get("status") != "refused" or not lead.get("refuse_reason"):
        return None
    at = next((h.get("at") for h in reversed(lead.get("history") or [])
               if h.get("kind") == "status" and h.get("to") == "refused"), None)
    return f"{lead['refuse_reason']}@{at}"


def refusal_text(lead: dict[str, Any]) -> str:
    """"Refusal reason: chose a competitor", in the hub's [ui] default_language (hub.store.serialize)."""
    caption = (lead.get("captions") or {}).get("refuse_reason", "Refusal reason")
    return f"{caption}: {lead.get('refuse_reason_label') or lead['refuse_reason']}"


def signed(note: dict[str, Any]) -> str:
    """A note as a CRM shows it: posted by the webhook's (or the token's) user, so it names who wrote it."""
    return f"{note['text']}\n— {note['actor']}" if note.get("actor") else note["text"]


def unsent_notes(lead: dict[str, Any], remembered: dict[str, Any]) -> list[dict[str, Any]]:
    sent = set(remembered.get("notes") or [])
    return [n for n in lead.get("notes") or [] if n["id"] not in sent and n.get("text")]


def refusal_due(lead: dict[str, Any], remembered: dict[str, Any]) -> str | None:
    """The refusal's key when it is still to be told, else None."""
    key = refusal_key(lead)
    return key if key and remembered.get("refusal") != key else None


def plain(text: Any) -> str:
    """Text compared whitespace-blind: a CRM may store line breaks its own way."""
    return " ".join(str(text or "").split())


def posted_already(lead: dict[str, Any], remembered: dict[str, Any], found_texts: list[str]) -> dict[str, Any]:
    """The memory after a lookup: of the texts in flight, those the CRM has now count as posted."""
    confirmed = {plain(t) for t in remembered.get("in_flight") or []} & {plain(t) for t in found_texts}
    memory = {**remembered, "in_flight": []}
    sent = set(remembered.get("notes") or [])
    sent |= {n["id"] for n in unsent_notes(lead, remembered) if plain(signed(n)) in confirmed}
    memory["notes"] = sorted(sent)
    key = refusal_due(lead, remembered)
    if key and plain(refusal_text(lead)) in confirmed:
        memory["refusal"] = key
    return memory
