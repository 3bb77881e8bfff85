"""The texts people receive outside the web app: notifications, rendered in the recipient's language and
time zone from Jinja templates (``hub/outbox/templates/notify/*.txt``; a deployment can replace any of them with a
file of the same name in ``[ui] notification_templates``). A template's first line is the subject.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.dates import format_time, format_timedelta
from jinja2 import ChoiceLoader, Environment, FileSystemLoader, PackageLoader, StrictUndefined, select_autoescape
from sqlalchemy import select
from sqlalchemy.orm import Session

from hub.config import Config
from hub.i18n import Msg, format_day, format_moment, label, reason_label, translations
from hub.store.users import User

TEMPLATES = ("new_lead", "handed_over", "lead_back", "escalated", "digest", "calling", "queued", "follow_up",
             "follow_up_escalated", "task_due", "client_answer")


def language_of(session: Session, config: Config, manager_name: str) -> str:
    """The manager's configured language, else the one their user chose, else [ui] default_language."""
    manager = config.manager(manager_name)
    if manager and manager.language:
        return manager.language
    chosen = session.scalar(select(User.language).where(User.manager == manager_name, User.language.is_not(None),
                                                        User.disabled.is_(False)).limit(1))
    return chosen or config.ui.default_language


@cache
def _environment(lang: str, override_dir: str | None) -> Environment:
    loaders = [FileSystemLoader(override_dir)] if override_dir else []
    # Plain text for Telegram and e-mail: HTML-escaping would turn "O'Brien" into "O&#39;Brien". A deployment's
    # own template named *.html is escaped.
    env = Environment(loader=ChoiceLoader([*loaders, PackageLoader("hub.outbox", "templates/notify")]),
                      extensions=["jinja2.ext.i18n"], undefined=StrictUndefined,
                      autoescape=select_autoescape(enabled_extensions=("html", "htm"), default=False),
                      keep_trailing_newline=False)
    env.install_gettext_translations(translations(lang), newstyle=True)  # type: ignore[attr-defined]  # by ext.i18n
    return env


def render(config: Config, template: str, lang: str, tz: str, *, own_text: str | None = None,
           **context: Any) -> tuple[str, str]:
    """(subject, text) of a notification template in this language and time zone. ``own_text``: a template
    written in the config (a source's own answer) rendered instead of the file, with the same helpers."""
    override = str(Path(config.base_dir) / config.ui.notification_templates) \
        if config.ui.notification_templates else None
    env = _environment(lang, override)
    gettext = translations(lang).gettext
    helpers: dict[str, Callable[..., str]] = {
        "moment": lambda value, fmt="short": format_moment(value, lang, tz, fmt),
        "day": lambda value, fmt="medium": format_day(value, lang, fmt),
        "time": lambda value: format_time(value, "short", tzinfo=ZoneInfo(tz), locale=lang),
        # Units from 2 up: "36 hours" rather than a rounded "2 days", "90 minutes" rather than "2 hours".
        "duration": lambda value: format_timedelta(value, threshold=2, locale=lang),
        "explain": lambda why: why.translate(gettext) if isinstance(why, Msg) else str(why),
        "status_label": lambda code: label("status", code, gettext),
        "warmth_label": lambda code: label("warmth", code, gettext),
        "reason_label": lambda code: (reason_label(r, lang, gettext) if (r := config.refuse_reason(code)) else code),
    }
    compiled = env.from_string(own_text) if own_text is not None else env.get_template(f"{template}.txt")
    text = compiled.render(**helpers, **context).strip()
    subject, _, body = text.partition("\n")
    return subject.strip(), body.strip()
