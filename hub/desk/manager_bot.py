"""The manager bot: a manager works a lead from the Telegram message that told them of it.

A button press (``take``, ``try``, ``cb1h``, ``cbtm``, ``ref?``, ``ref``, ``back``: hub/outbox/manager_keyboard.py)
runs the very functions the web's buttons run (hub.pipeline.routing.lifecycle.take / count_attempt /
set_status, hub.pipeline.worklog.add_task), as the manager, in one transaction with their locks, so the lead's
history, forwarding and notifications are the web's. Only the Telegram user a manager linked with ``/link CODE``
acts as that manager (a configured ``telegram_chat_id`` receives messages, it authorises nothing), and only on
their own leads or, for a team lead, their team's and the queue.

``handle_update`` decides and writes; it returns a ``Reply`` — the callback's answer, the messages to redraw,
the texts to send — which the caller (the poller or the webhook, hub/desk/manager_bot_updates.py) performs
after the commit. Each update is handled once: its id is remembered in the same transaction as its action
(a re-sent update changes nothing and redraws the same message).
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import Engine, delete, or_, select
from sqlalchemy.orm import Session

from hub.config import Config
from hub.desk.access import count_sign_in_attempt, sign_in_succeeded
from hub.i18n import N_, Msg, gettext_for
from hub.outbox.manager_keyboard import (
    ACTIONS,
    BY_THE_BOT,
    Edit,
    drawn_message,
    manager_for_chat,
    manager_timezone,
    reason_from_data,
    redraws,
)
from hub.outbox.messages import language_of
from hub.pipeline.routing.lifecycle import RoutingError, count_attempt, set_status, take
from hub.pipeline.worklog import add_task
from hub.store.db import execute, insert_ignoring_conflicts, transaction
from hub.store.models import (
    Lead,
    LeadStatus,
    PollState,
    TelegramLink,
    TelegramLinkCode,
    utcnow,
)

LINK_CODE_MINUTES = 15
# Unambiguous on a phone's keyboard (no 0/O, 1/I/L): 10 of 31 symbols is 8e14 codes, against 10 wrong tries per
# 15 minutes per Telegram user ([web] max_failed_logins, the sign-in throttle's counter).
CODE_ALPHABET, CODE_LENGTH = "ABCDEFGHJKMNPQRSTUVWXYZ23456789", 10
# The poll_state row of the bot's updates: getUpdates' offset and the ids of the updates handled lately. Not a
# source's name (those are slugs), so it never meets one.
STATE_ROW = "~manager-bot"
RECENT_UPDATES = 500
# The Bot API: "If there are no new updates for at least a week, then identifier of the next update will be
# chosen randomly instead of sequentially." A day's margin under that.
QUIET_BEFORE_IDS_RESTART = timedelta(days=6)
CALL_BACK_TOMORROW_AT = time(10, 0)

NOT_LINKED = N_("This Telegram is not linked to a manager of the hub: ask an admin for a code "
                "(hub managers link-telegram NAME) and send /link CODE here.")
NOT_YOURS = N_("Not your lead: only its owner or their team lead can act on it.")
UNKNOWN_BUTTON = N_("This button is no longer valid.")
NO_LEAD = N_("There is no such lead any more.")
LEAD_CLOSED = N_("This lead is closed: reopen it in the hub first.")
FAILED = N_("Something went wrong; nothing was changed. Try again, or open the lead in the hub.")
TAKEN, TRIED, CALL_BACK_SET, REFUSED = N_("Taken into work."), N_("Contact attempt counted."), \
    N_("Call-back set."), N_("Refused.")
CALL_BACK_TASK = N_("Call back (set from Telegram)")
HELP = N_("This is the hub's bot for managers. To get your leads here with buttons, ask an admin for a code "
          "(hub managers link-telegram NAME) and send /link CODE here.")
LINKED = N_("Linked: you are %(name)s. Your leads will come here, with buttons to work them.")
CODE_WRONG = N_("This code is wrong. Check it, or ask for a new one (hub managers link-telegram NAME).")
CODE_EXPIRED = N_("This code has expired (codes last %(minutes)s minutes): ask for a new one.")
CODE_USED = N_("This code was used already: ask for a new one.")
CODE_THROTTLED = N_("Too many wrong codes: wait 15 minutes, then try again.")


@dataclass
class Reply:
    """What to tell Telegram once the update's transaction has committed."""

    callback_id: str | None = None
    toast: str | None = None
    alert: bool = False
    edits: list[Edit] = field(default_factory=list)
    messages: list[tuple[str, str]] = field(default_factory=list)   # (chat_id, text)
    changed: bool = False       # the store changed: notifications or forwarding may be queued


class _Refused(Exception):
    """A press the bot will not carry out; ``message`` (untranslated) says why."""

    def __init__(self, message: str):
        super().__init__(message)
        self.message = message


# -- link codes ---------------------------------------------------------------------------------------------

def _code_hash(code: str) -> str:
    return hashlib.sha256(code.encode()).hexdigest()


def _normalise_code(text: str) -> str:
    return "".join(ch for ch in text.upper() if ch.isalnum())


def create_link_code(session: Session, config: Config, manager: str, now: datetime) -> str:
    """A one-time code for ``/link``: only its hash is stored, valid for LINK_CODE_MINUTES."""
    if config.manager(manager) is None:
        raise RoutingError(Msg("no manager named %(name)r (known: %(known)s)", name=manager,
                               known=", ".join(m.name for m in config.managers)))
    session.execute(delete(TelegramLinkCode).where(or_(TelegramLinkCode.expires_at < now - timedelta(days=1),
                                                       TelegramLinkCode.used_at.is_not(None))))
    code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
    session.add(TelegramLinkCode(code_hash=_code_hash(code), manager=manager, created_at=now,
                                 expires_at=now + timedelta(minutes=LINK_CODE_MINUTES)))
    return code


def _link(session: Session, config: Config, message: dict[str, Any], code: str, now: datetime) -> str:
    """``/link CODE``: this Telegram user (and chat) becomes the code's manager's. Returns the answer's text."""
    user_id, chat_id = int(message["from"]["id"]), str(message["chat"]["id"])
    gettext = gettext_for(_language(message.get("from"), config))
    throttle_key = f"telegram:{user_id}"
    if not count_sign_in_attempt(session, config.web, throttle_key, "/link"):
        return gettext(CODE_THROTTLED)
    row = session.execute(select(TelegramLinkCode).where(TelegramLinkCode.code_hash == _code_hash(
        _normalise_code(code))).with_for_update()).scalar_one_or_none()
    if row is None:
        return gettext(CODE_WRONG)
    if row.used_at is not None:
        return gettext(CODE_USED)
    if row.expires_at < now:
        return gettext(CODE_EXPIRED) % {"minutes": LINK_CODE_MINUTES}
    row.used_at = now
    session.execute(delete(TelegramLink).where(or_(TelegramLink.manager == row.manager,
                                                   TelegramLink.telegram_user_id == user_id)))
    session.add(TelegramLink(manager=row.manager, telegram_user_id=user_id, chat_id=chat_id, linked_at=now))
    sign_in_succeeded(session, throttle_key, "/link")
    return gettext_for(language_of(session, config, row.manager))(LINKED) % {"name": row.manager}


def unlink(session: Session, manager: str) -> bool:
    """Forget the manager's Telegram (a lost phone, someone who left): it neither receives nor acts any more."""
    return bool(execute(session, delete(TelegramLink).where(TelegramLink.manager == manager)).rowcount)


# -- the update's bookkeeping -------------------------------------------------------------------------------

def _first_time(session: Session, update_id: int) -> bool:
    """Remember this update (and move getUpdates' offset past it); False if it was handled before."""
    insert_ignoring_conflicts(session, PollState.__table__, ["source"], {"source": STATE_ROW, "state": {}})
    row = session.execute(select(PollState).where(PollState.source == STATE_ROW).with_for_update()).scalar_one()
    state = dict(row.state or {})
    recent = list(state.get("recent", []))
    if update_id in recent:
        return False
    recent.append(update_id)
    state["recent"] = recent[-RECENT_UPDATES:]
    # Past the update just handled, not past the highest ever seen: after a week without updates Telegram
    # starts its ids again at a random number, and an offset above the new ids would confirm (drop) them.
    state["offset"] = update_id + 1
    state["last_at"] = utcnow().isoformat()
    row.state = state       # a new dict: the JSON column is written
    return True


def mark_handled(engine: Engine, update: dict[str, Any], config: Config) -> Reply:
    """An update whose handling failed: remembered all the same (the offset moves on, so one bad update never
    blocks the ones after it), and a press is answered so the button stops spinning."""
    with transaction(engine) as s:
        _first_time(s, int(update.get("update_id", 0)))
    query = update.get("callback_query") or {}
    if query.get("id"):
        return Reply(callback_id=query["id"], alert=True,
                     toast=gettext_for(_language(query.get("from"), config))(FAILED))
    return Reply()


def stored_offset(engine: Engine, now: datetime | None = None) -> int | None:
    """getUpdates' offset: past the last update handled — or none after a quiet week, when Telegram may have
    started its ids again lower (everything handled before was confirmed by the polls since, so none returns
    only what is new)."""
    with transaction(engine, read_only=True) as s:
        state = s.scalar(select(PollState.state).where(PollState.source == STATE_ROW))
    if not state or "offset" not in state:
        return None
    last_at = datetime.fromisoformat(state["last_at"]) if state.get("last_at") else None
    if last_at is not None and (now or utcnow()) - last_at > QUIET_BEFORE_IDS_RESTART:
        return None
    return int(state["offset"])


def _language(user: dict[str, Any] | None, config: Config) -> str:
    """A stranger's language: their Telegram app's, if the hub speaks it."""
    code = ((user or {}).get("language_code") or "")[:2]
    return code if code in ("en", "ru") else config.ui.default_language


# -- presses ------------------------------------------------------------------------------------------------

def _parse(data: str) -> tuple[str, int, str] | None:
    action, _, rest = data.partition(":")
    lead, _, arg = rest.partition(":")
    if action not in ACTIONS or not lead.isdigit() \
            or len(lead) > 18 or (action == "ref") != bool(arg):
        return None
    return action, int(lead), arg


def _may_act(config: Config, manager: str, owner: str | None) -> bool:
    """The owner; a team lead for their team's leads; any team lead for the queue's."""
    if owner == manager:
        return True
    led = {t.name for t in config.teams if t.lead == manager}
    if owner is None:
        return bool(led)
    owner_config = config.manager(owner)
    return owner_config is not None and owner_config.team in led


def _tomorrow_at(now: datetime, tz: str, at: time) -> datetime:
    local = now.astimezone(ZoneInfo(tz))
    return datetime.combine(local.date() + timedelta(days=1), at, tzinfo=ZoneInfo(tz))


def _act(session: Session, config: Config, action: str, lead_id: int, arg: str, manager: str,
         now: datetime) -> str | None:
    """The web's own function for the button; returns the toast (untranslated), None for a keyboard change."""
    gettext = gettext_for(language_of(session, config, manager))
    if action == "take":
        take(session, config, lead_id, manager, now)
        return TAKEN
    if action == "try":
        count_attempt(session, config, lead_id, manager, now)
        return TRIED
    if action in ("cb1h", "cbtm"):
        due = now + timedelta(hours=1) if action == "cb1h" else _tomorrow_at(now, manager_timezone(config, manager),
                                                                                          CALL_BACK_TOMORROW_AT)
        add_task(session, config, lead_id, due, gettext(CALL_BACK_TASK), manager, now)
        return CALL_BACK_SET
    if action == "ref":
        reason = reason_from_data(config, arg)
        if reason is None:
            raise _Refused(UNKNOWN_BUTTON)
        set_status(session, config, lead_id, LeadStatus.REFUSED, reason, manager, now)
        return REFUSED
    return None     # ref? and back: only the keyboard changes


def _others(session: Session, config: Config, lead: Lead, chat_id: str, message_id: int) -> list[Edit]:
    """The lead's other messages, redrawn: whoever answered first, the others see it is taken."""
    return [edit for edit in redraws(session, config, lead) if (edit.chat_id, edit.message_id) != (chat_id, message_id)]


def _press(engine: Engine, config: Config, update_id: int, query: dict[str, Any], now: datetime) -> Reply:
    message = query.get("message") or {}
    chat_id, message_id = str((message.get("chat") or {}).get("id", "")), int(message.get("message_id") or 0)
    shown = message.get("text") or ""
    user_id = int((query.get("from") or {}).get("id", 0))
    parsed = _parse(str(query.get("data") or ""))
    reply = Reply(callback_id=query.get("id"))
    lang = _language(query.get("from"), config)
    try:
        with transaction(engine) as s:
            if not _first_time(s, update_id):
                return reply
            manager = s.scalar(select(TelegramLink.manager).where(TelegramLink.telegram_user_id == user_id))
            if manager is None or config.manager(manager) is None:     # a manager gone from the config: no one
                raise _Refused(NOT_LINKED)
            lang = language_of(s, config, manager)
            if parsed is None:
                raise _Refused(UNKNOWN_BUTTON)
            action, lead_id, arg = parsed
            # Locked and read fresh before deciding: on PostgreSQL a copy loaded first would stay as it was while
            # this waited for the row (another's take, a reassignment), and the decision would be made on it.
            lead = s.execute(select(Lead).where(Lead.id == lead_id).with_for_update()
                             .execution_options(populate_existing=True)).scalar_one_or_none()
            if lead is None:
                raise _Refused(NO_LEAD)
            if not _may_act(config, manager, lead.owner):
                raise _Refused(NOT_YOURS)
            if action in ("try", "cb1h", "cbtm") and lead.status not in LeadStatus.OPEN:
                raise _Refused(LEAD_CLOSED)     # an old message whose redraw failed: nothing to call back
            s.info[BY_THE_BOT] = True       # this press redraws the lead's messages itself, below
            toast = _act(s, config, action, lead_id, arg, manager, now)
            s.flush()
            s.refresh(lead)
            reply.toast = gettext_for(lang)(toast) if toast else None
            reply.changed = toast is not None
            if message_id:
                reply.edits.append(drawn_message(s, config, lead, chat_id, message_id, shown,
                                                 refusing=action == "ref?"))
            if toast is not None:
                reply.edits += _others(s, config, lead, chat_id, message_id)
            return reply
    except (_Refused, RoutingError) as exc:
        gettext = gettext_for(lang)
        reply.toast = exc.msg.translate(gettext) if isinstance(exc, RoutingError) else gettext(exc.message)
        reply.alert = True
    # Refused: the update is remembered all the same, and the message redrawn as the lead stands — unless the
    # presser may not see the lead (a stranger learns nothing of it).
    with transaction(engine) as s:
        _first_time(s, update_id)
        manager = s.scalar(select(TelegramLink.manager).where(TelegramLink.telegram_user_id == user_id))
        lead = s.get(Lead, parsed[1]) if parsed else None
        if lead is not None and manager is not None and message_id and (
                _may_act(config, manager, lead.owner) or manager_for_chat(s, config, chat_id) == manager):
            reply.edits.append(drawn_message(s, config, lead, chat_id, message_id, shown))
    return reply


def handle_update(engine: Engine, config: Config, update: dict[str, Any], now: datetime) -> Reply:
    """Decide and write what one Bot API update asks; the Reply says what to tell Telegram after the commit."""
    update_id = int(update.get("update_id", 0))
    if update.get("callback_query"):
        return _press(engine, config, update_id, update["callback_query"], now)
    message = update.get("message") or {}
    text = (message.get("text") or "").strip()
    if not message.get("from") or not message.get("chat"):
        with transaction(engine) as s:
            _first_time(s, update_id)
        return Reply()
    command, _, argument = text.partition(" ")
    command = command.split("@")[0].lower()      # "/link@leadhub_bot CODE" in a group
    chat_id = str(message["chat"]["id"])
    with transaction(engine) as s:
        if not _first_time(s, update_id):
            return Reply()
        if command in ("/link", "/start") and argument.strip():
            return Reply(messages=[(chat_id, _link(s, config, message, argument, now))])
        if command in ("/start", "/help", "/link"):
            return Reply(messages=[(chat_id, gettext_for(_language(message.get("from"), config))(HELP))])
    return Reply()
