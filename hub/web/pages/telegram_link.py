"""A manager links their own Telegram from the profile page: one tap on a phone.

The CLI's ``hub managers link-telegram`` needs an admin at a terminal; a manager holding their phone needs a
button. "Link Telegram" makes the same one-time code (hub.desk.manager_bot.create_link_code: hashed, 15 minutes,
once) and shows a t.me deep link, ``https://t.me/<bot>?start=<code>``: Telegram opens the bot and the Start
button sends ``/start <code>``, which the bot takes as ``/link <code>``. Only the signed-in user's own manager is
linked — a user cannot link, or unlink, anyone else.
"""

from __future__ import annotations

from flask import flash, g, redirect, render_template, url_for
from flask_babel import gettext
from sqlalchemy import select

from hub.desk.access import timezone_of
from hub.desk.manager_bot import LINK_CODE_MINUTES, create_link_code, unlink
from hub.store.db import transaction
from hub.store.models import TelegramLink, utcnow
from hub.store.users import Role
from hub.telegram_api import bot_username
from hub.web.common import allow, current_hub
from hub.web.pages.blueprint import pages


def _linked_since(manager: str):
    with transaction(current_hub().engine, read_only=True) as s:
        return s.scalar(select(TelegramLink.linked_at).where(TelegramLink.manager == manager))


def telegram_card() -> dict | None:
    """What the profile page shows about Telegram: None when there is nothing to link (no manager, no bot)."""
    hub = current_hub()
    if not g.actor.manager or hub.config.notify.telegram is None or hub.config.manager(g.actor.manager) is None:
        return None
    return {"linked_at": _linked_since(g.actor.manager)}


@pages.post("/profile/telegram")
@allow(Role.ADMIN, Role.LEAD, Role.MANAGER)
def telegram_link():
    hub = current_hub()
    card = telegram_card()
    if card is None:
        flash(gettext("Telegram is not set up on this hub, or your user is not a manager."), "error")
        return redirect(url_for("pages.profile"))
    tg = hub.config.notify.telegram
    assert tg is not None                   # telegram_card() checked it
    with transaction(hub.engine) as s:
        code = create_link_code(s, hub.config, g.actor.manager, utcnow())
    username = bot_username(tg.bot_token, tg.api_url)
    return render_template("profile.html", timezone=timezone_of(g.actor, hub.config), telegram=card,
                           link_code=code, bot=username, minutes=LINK_CODE_MINUTES,
                           deep_link=f"https://t.me/{username}?start={code}" if username else None)


@pages.post("/profile/telegram/unlink")
@allow(Role.ADMIN, Role.LEAD, Role.MANAGER)
def telegram_unlink():
    if g.actor.manager:
        with transaction(current_hub().engine) as s:
            gone = unlink(s, g.actor.manager)
        if gone:
            flash(gettext("Telegram unlinked: its buttons no longer act for you."), "ok")
    return redirect(url_for("pages.profile"))
