"""What a manager's Telegram message about a lead shows: its buttons, and the line saying where the lead stands.

The notifier puts the first keyboard under a new notification; the manager bot (hub/desk/manager_bot.py) draws
the message again after every press from the lead's state as stored, so a press sent twice, or one that lost a
race, draws the same message. A change made anywhere else (the web, the API, the CLI, the SLA sweep) queues a
``redraw`` outbox row in its own transaction (``queue_redraw``, called by hub.pipeline.history), which the
notifier turns into edits of the lead's messages: whoever takes a lead, the other chats see it taken.
``callback_data`` is Telegram's 64 bytes at most: ``take:123``, ``try:123``,
``cb1h:123``, ``cbtm:123``, ``ref?:123`` (the refusal reasons), ``ref:123:<code>`` (``ref:123:#2``, the reason's
place in the list, when the code would not fit), ``back:123``.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import BigInteger, bindparam, exists, insert, literal, select
from sqlalchemy.orm import Session

from hub.config import Config
from hub.i18n import N_, format_moment, gettext_for, reason_label
from hub.outbox.messages import language_of
from hub.store.db import execute, mark_queued
from hub.store.models import Lead, LeadStatus, LeadTask, Notification, NotificationMessage, TelegramLink
from hub.telegram_api import MAX_CALLBACK_DATA, URL_BUTTON_PREFIX, Buttons

# The notification templates about one lead that a manager can act on from the chat; the others (digest,
# escalated, calling, follow_up_escalated) inform and carry no buttons.
LEAD_ACTION_KINDS = frozenset({"new_lead", "handed_over", "lead_back", "follow_up", "task_due", "queued"})
ACTIONS = ("take", "try", "cb1h", "cbtm", "ref?", "ref", "back")
TAKE, TRY, CALL_BACK_HOUR, CALL_BACK_TOMORROW = N_("Take into work"), N_("Contact attempt"), \
    N_("Call back in 1 h"), N_("Tomorrow 10:00")
REFUSE, OPEN, BACK = N_("Refuse"), N_("Open the lead"), N_("« Back")
# A lead's messages redrawn after a change: the latest few (its new-lead message, a reminder, a team lead's
# "in the queue"); older ones keep what they showed, and a press on one redraws it.
REDRAWN_MESSAGES = 10
STATE_SEPARATOR = "\n\n"
# The notification kind of "draw this lead's messages again".
REDRAW = "redraw"
# Set on a session by the manager bot, which redraws the messages itself right after its press: no second round.
BY_THE_BOT = "leadhub.redrawn_by_the_bot"


@dataclass
class Edit:
    chat_id: str
    message_id: int
    text: str
    buttons: Buttons | None


def lead_url(config: Config, lead_id: int) -> str | None:
    """The lead's page for an "Open" button: Telegram refuses http:// URLs in buttons (the text keeps the link)."""
    base = config.notify.base_url.rstrip("/")
    return f"{base}/leads/{lead_id}" if base.startswith("https://") else None


def manager_for_chat(session: Session, config: Config, chat_id: str) -> str | None:
    """Whose chat this is: the manager who linked it, else the one whose [[managers]] telegram_chat_id it is."""
    linked = session.scalar(select(TelegramLink.manager).where(TelegramLink.chat_id == str(chat_id)).limit(1))
    if linked:
        return linked
    return next((m.name for m in config.managers if m.telegram_chat_id == str(chat_id)), None)


def refuse_data(config: Config, lead_id: int, code: str) -> str:
    data = f"ref:{lead_id}:{code}"
    if len(data.encode()) <= MAX_CALLBACK_DATA:
        return data
    place = next(i for i, r in enumerate(config.refuse_reasons) if r.code == code)
    return f"ref:{lead_id}:#{place}"


def reason_from_data(config: Config, value: str) -> str | None:
    """The refusal reason's code a ``ref:`` button carries (its code, or ``#place``); None if unknown."""
    if value.startswith("#") and value[1:].isdigit():
        place = int(value[1:])
        return config.refuse_reasons[place].code if place < len(config.refuse_reasons) else None
    return value if config.refuse_reason(value) else None


def lead_buttons(config: Config, lead_id: int, status: str | None, lang: str) -> Buttons:
    """The main keyboard for a lead in this status (None: unknown, as if new)."""
    gettext = gettext_for(lang)
    rows: Buttons = []
    if status in (None, LeadStatus.NEW):
        rows.append([(gettext(TAKE), f"take:{lead_id}")])
    if status in (None, *LeadStatus.OPEN):
        rows += [[(gettext(TRY), f"try:{lead_id}")],
                 [(gettext(CALL_BACK_HOUR), f"cb1h:{lead_id}"), (gettext(CALL_BACK_TOMORROW), f"cbtm:{lead_id}")],
                 [(gettext(REFUSE), f"ref?:{lead_id}")]]
    url = lead_url(config, lead_id)
    if url:
        rows.append([(gettext(OPEN), URL_BUTTON_PREFIX + url)])
    return rows


def refuse_buttons(config: Config, lead_id: int, lang: str) -> Buttons:
    """The second keyboard: one button per configured refusal reason, and back."""
    gettext = gettext_for(lang)
    rows: Buttons = [[(reason_label(r, lang, gettext), refuse_data(config, lead_id, r.code))]
                     for r in config.refuse_reasons]
    rows.append([(gettext(BACK), f"back:{lead_id}")])
    return rows


def state_line(session: Session, config: Config, lead: Lead, lang: str, tz: str) -> str:
    """Where the lead stands now, in a line or two under the notification's own text."""
    gettext = gettext_for(lang)

    def moment(value: datetime | None) -> str:
        return format_moment(value, lang, tz) if value else ""

    if lead.status == LeadStatus.IN_WORK:
        lines = [gettext("✅ In work with %(owner)s since %(at)s") % {"owner": lead.owner, "at": moment(lead.taken_at)}]
    elif lead.status == LeadStatus.REFUSED:
        reason = config.refuse_reason(lead.refuse_reason or "")
        lines = [gettext("❌ Refused: %(reason)s") % {
            "reason": reason_label(reason, lang, gettext) if reason else lead.refuse_reason}]
    elif lead.status == LeadStatus.CONVERTED:
        lines = [gettext("🏁 Converted")]
    elif lead.owner:
        lines = [gettext("🆕 Waits for %(owner)s to take it") % {"owner": lead.owner}]
    else:
        lines = [gettext("⏳ In the queue")]
    if lead.contact_attempts and lead.status in LeadStatus.OPEN:
        lines.append(gettext("📞 Contact attempts: %(count)s") % {"count": lead.contact_attempts})
    task = session.scalar(select(LeadTask).where(LeadTask.lead_id == lead.id, LeadTask.done_at.is_(None))
                          .order_by(LeadTask.due_at).limit(1))
    if task is not None and lead.status in LeadStatus.OPEN:
        lines.append(gettext("⏰ Call back: %(when)s") % {"when": moment(task.due_at)})
    return "\n".join(lines)


def manager_timezone(config: Config, manager: str | None) -> str:
    manager_config = config.manager(manager) if manager else None
    return manager_config.timezone if manager_config else config.ui.timezone


def _base_text(session: Session, chat_id: str, message_id: int, shown: str) -> str:
    """The notification's own text (what the message said before any state line)."""
    row = session.execute(select(Notification.subject, Notification.text).join(
        NotificationMessage, NotificationMessage.notification_id == Notification.id).where(
        NotificationMessage.chat_id == chat_id, NotificationMessage.message_id == message_id)).first()
    if row is not None:
        return f"{row.subject}\n{row.text}"
    return shown.split(STATE_SEPARATOR)[0]


def drawn_message(session: Session, config: Config, lead: Lead, chat_id: str, message_id: int, shown: str = "",
                  refusing: bool = False) -> Edit:
    """The message as the lead stands now, in the language of the chat's manager."""
    manager = manager_for_chat(session, config, chat_id)
    lang = language_of(session, config, manager) if manager else config.ui.default_language
    text = _base_text(session, chat_id, message_id, shown) + STATE_SEPARATOR + \
        state_line(session, config, lead, lang, manager_timezone(config, manager))
    buttons = refuse_buttons(config, lead.id, lang) if refusing and lead.status in LeadStatus.OPEN else \
        lead_buttons(config, lead.id, lead.status, lang)
    return Edit(chat_id, message_id, text, buttons)


def redraws(session: Session, config: Config, lead: Lead) -> list[Edit]:
    """Every recent message about the lead, as it should look now."""
    rows = session.execute(select(NotificationMessage.chat_id, NotificationMessage.message_id)
                           .where(NotificationMessage.lead_id == lead.id)
                           .order_by(NotificationMessage.notification_id.desc()).limit(REDRAWN_MESSAGES)).all()
    return [drawn_message(session, config, lead, chat, mid) for chat, mid in rows]


_NOTIFICATIONS = Notification.__table__
_AT = bindparam("at", type_=_NOTIFICATIONS.c.created_at.type)
# One statement, no read first: a redraw row only for a lead that has messages in a chat (most leads have none
# while nobody uses Telegram, and then this inserts nothing).
_QUEUE_REDRAW = insert(_NOTIFICATIONS).from_select(
    ["lead_id", "channel", "kind", "recipient", "subject", "text", "status", "attempts", "next_attempt_at",
     "created_at"],
    select(bindparam("lead_id", type_=BigInteger), literal("telegram"), literal(REDRAW), literal(""), literal(""),
           literal(""), literal("pending"), literal(0), _AT, _AT)
    .where(exists().where(NotificationMessage.lead_id == bindparam("lead_id", type_=BigInteger))))


def queue_redraw(session: Session, lead_id: int, at: datetime) -> None:
    """In the transaction that changed the lead: have the notifier redraw its Telegram messages after commit."""
    if session.info.get(BY_THE_BOT):
        return
    if execute(session, _QUEUE_REDRAW, {"lead_id": lead_id, "at": at}).rowcount:
        mark_queued(session, "notification")
