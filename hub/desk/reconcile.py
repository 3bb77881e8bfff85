"""`hub reconcile`: proof that no lead was lost or doubled on a given day.

Per source, every event received that day is counted in exactly one state — created a lead, merged into
one as a touch, rejected (by reason), dead, or still pending — and the books must balance: each
processed or merged event has exactly one touch on the lead it names, and nothing else claims it. Any
event that breaks that is listed by id.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from datetime import date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.store.models import EventStatus, InboundEvent, Lead, Touch


def _annotates(session: Session, event_id: int) -> bool:
    event = session.get_one(InboundEvent, event_id)
    return isinstance(event.payload, dict) and bool(event.payload.get("_annotates")) and event.lead_id is not None


def reconcile(session: Session, day: date, tz: str = "UTC", source: str | None = None) -> dict:
    start = datetime.combine(day, time(0), ZoneInfo(tz))
    end = start + timedelta(days=1)
    query = (select(InboundEvent.id, InboundEvent.source, InboundEvent.status, InboundEvent.reject_reason,
                    InboundEvent.lead_id, Touch.id.label("touch_id"), Touch.lead_id.label("touch_lead_id"),
                    Lead.id.label("lead_exists"))
             .outerjoin(Touch, Touch.event_id == InboundEvent.id)
             .outerjoin(Lead, Lead.id == Touch.lead_id)
             .where(InboundEvent.received_at >= start, InboundEvent.received_at < end)
             .order_by(InboundEvent.id))
    if source:
        query = query.where(InboundEvent.source == source)
    sources: dict[str, dict] = defaultdict(lambda: {"received": 0, "created": 0, "merged": 0, "rejected": 0,
                                                    "dead": 0, "pending": 0, "rejected_by_reason": Counter(),
                                                    "errors": []})
    for row in session.execute(query):
        s = sources[row.source]
        s["received"] += 1
        if row.status == EventStatus.PROCESSED:
            s["created"] += 1
        elif row.status == EventStatus.MERGED:
            s["merged"] += 1
        elif row.status == EventStatus.REJECTED:
            s["rejected"] += 1
            s["rejected_by_reason"][(row.reject_reason or "").split(" (")[0][:80]] += 1
        elif row.status == EventStatus.DEAD:
            s["dead"] += 1
        else:
            s["pending"] += 1
        if row.status in (EventStatus.PROCESSED, EventStatus.MERGED):
            if row.touch_id is None and row.status == EventStatus.MERGED and _annotates(session, row.id):
                continue                  # a call's recording: it went onto the call's touch, not a touch of its own
            if row.touch_id is None:
                s["errors"].append({"event_id": row.id, "error": f"{row.status} but no touch: the lead is missing"})
            elif row.lead_exists is None:
                s["errors"].append({"event_id": row.id, "error": "its touch points to no lead"})
            elif row.lead_id is not None and row.lead_id != row.touch_lead_id:
                # A merge may have folded the lead into another since; that one must be reachable.
                folded = session.get(Lead, row.lead_id)
                if folded is None or folded.merged_into_id is None:
                    s["errors"].append({"event_id": row.id, "error": f"names lead {row.lead_id}, touch is on "
                                                                     f"lead {row.touch_lead_id}"})
        elif row.touch_id is not None:
            s["errors"].append({"event_id": row.id, "error": f"{row.status} but it has a touch on lead "
                                                             f"{row.touch_lead_id}"})
    out = {}
    for name, s in sorted(sources.items()):
        accounted = s["created"] + s["merged"] + s["rejected"] + s["dead"] + s["pending"]
        if accounted != s["received"]:
            s["errors"].append({"event_id": None, "error": f"{s['received']} received, {accounted} accounted for"})
        s["rejected_by_reason"] = dict(s["rejected_by_reason"].most_common())
        s["ok"] = not s["errors"]
        out[name] = s
    return {"date": day.isoformat(), "timezone": tz, "sources": out, "ok": all(s["ok"] for s in out.values())}
