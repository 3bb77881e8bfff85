"""What a manager records on a lead while working it: notes, tags and call-back tasks. Each is in the
lead's history, and each restarts the follow-up clock of a lead in work (hub/pipeline/routing/sla.py).

Notes are history entries of kind ``note`` (append-only, like the rest of the timeline); tasks are rows
of their own (``lead_task``) because the scheduler sweeps them by due time.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.config import Config
from hub.i18n import Msg
from hub.outbox.forwarding import queue_forwarding
from hub.pipeline.history import from_to, history
from hub.pipeline.routing.lifecycle import RoutingError, lock_lead
from hub.pipeline.routing.sla import restart_follow_up
from hub.store.models import Lead, LeadTask

MAX_NOTE_CHARS = 4000
MAX_TASK_CHARS = 500
MAX_TAGS = 20
MAX_TAG_CHARS = 64


def _text(text: str, limit: int, what: Msg) -> str:
    cleaned = "".join(ch for ch in text if ch in "\n\t" or ch.isprintable()).strip()
    if not cleaned:
        raise RoutingError(Msg("%(what)s is empty", what=what))
    if len(cleaned) > limit:
        raise RoutingError(Msg("%(what)s is longer than %(limit)s characters", what=what, limit=limit))
    return cleaned


def add_note(session: Session, config: Config, lead_id: int, text: str, actor: str, now: datetime) -> Lead:
    lead = lock_lead(session, lead_id)
    history(session, lead_id, "note", actor=actor, at=now, text=_text(text, MAX_NOTE_CHARS, Msg("the note")))
    lead.updated_at = now
    restart_follow_up(session, config, lead, now)
    queue_forwarding(session, config, lead_id, lead.source)
    return lead


def normalise_tags(tags: list[str]) -> list[str]:
    """Tags as people type them, kept in their spelling, once each (case-insensitively), in order."""
    seen: dict[str, str] = {}
    for tag in tags:
        cleaned = " ".join(tag.split())
        if not cleaned:
            continue
        if len(cleaned) > MAX_TAG_CHARS:
            raise RoutingError(Msg("a tag is longer than %(limit)s characters", limit=MAX_TAG_CHARS))
        seen.setdefault(cleaned.casefold(), cleaned)
    if len(seen) > MAX_TAGS:
        raise RoutingError(Msg("at most %(limit)s tags on a lead", limit=MAX_TAGS))
    return list(seen.values())


def set_tags(session: Session, config: Config, lead_id: int, tags: list[str], actor: str, now: datetime) -> Lead:
    """The lead's tags become ``tags`` (the whole list: a tag left out is taken off)."""
    lead = lock_lead(session, lead_id)
    new = normalise_tags(tags)
    old = list(lead.tags or [])
    if new != old:
        lead.tags, lead.updated_at = new, now
        history(session, lead_id, "tags", actor=actor, at=now, **from_to(old, new))
        queue_forwarding(session, config, lead_id, lead.source)
    return lead


def add_task(session: Session, config: Config, lead_id: int, due_at: datetime, text: str, actor: str,
             now: datetime) -> LeadTask:
    """A call-back for the lead's owner at ``due_at`` (aware; a past time is refused)."""
    if due_at.tzinfo is None:
        raise RoutingError(Msg("the task's time needs its time zone"))
    if due_at < now:
        raise RoutingError(Msg("the task's time is in the past"))
    lead = lock_lead(session, lead_id)
    task = LeadTask(lead_id=lead_id, text=_text(text, MAX_TASK_CHARS, Msg("the task")), due_at=due_at,
                    created_at=now, created_by=actor)
    session.add(task)
    session.flush()
    history(session, lead_id, "task", actor=actor, at=now, task_id=task.id, due_at=due_at.isoformat(),
            text=task.text)
    lead.updated_at = now
    restart_follow_up(session, config, lead, now)
    return task


def complete_task(session: Session, config: Config, lead_id: int, task_id: int, actor: str,
                  now: datetime) -> LeadTask:
    lead = lock_lead(session, lead_id)
    task = session.execute(select(LeadTask).where(LeadTask.id == task_id, LeadTask.lead_id == lead_id)
                           .with_for_update()).scalar_one_or_none()
    if task is None:
        raise RoutingError(Msg("lead %(id)s has no task %(task)s", id=lead_id, task=task_id))
    if task.done_at is None:
        task.done_at, task.done_by = now, actor
        history(session, lead_id, "task_done", actor=actor, at=now, task_id=task.id)
        lead.updated_at = now
        restart_follow_up(session, config, lead, now)
    return task
