"""``[sources.answer]``: what the client hears back, and the check that their source can send it.

Apart from hub/config.py (which imports it) for the same reason as hub/sales_config.py: the config module
stays readable and under the size limit. hub/outbox/client_answer.py queues and sends the answers.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

# The channel a source's answer goes by: the messenger the client wrote in, else an e-mail when the client
# gave an address (site forms, Tilda, a mailbox, a PBX whose mapping finds one).
ANSWER_CHANNELS = {"telegram": "client_telegram", "telegram_polling": "client_telegram",
                   "vk": "client_vk", "vk_longpoll": "client_vk"}


class AnswerConfig(BaseModel):
    """The client who wrote through this source hears back once their lead is routed: taken, by whom (the
    owner's first name), and when they will be called."""

    model_config = ConfigDict(extra="forbid")

    language: Literal["en", "ru"] | None = None     # the source's language; None: [ui] default_language
    # "… will call you within 15 minutes": the promise the team keeps (the routing rule's SLA is the usual value).
    within_minutes: int = Field(15, ge=1, le=7 * 24 * 60)
    # A Jinja template replacing the built-in text (the same helpers and values: owner, minutes, by_phone,
    # client_name); None: hub/outbox/templates/notify/client_answer.txt in the language above.
    text: str | None = Field(None, min_length=1)
    subject: str | None = Field(None, min_length=1, max_length=255)     # of the e-mail answer only


def answer_channel(connector: str) -> str:
    return ANSWER_CHANNELS.get(connector, "client_email")


class AnsweringSource(Protocol):
    """What the check reads of a ``[[sources]]`` table (hub.config.SourceConfig)."""

    name: str
    connector: str
    answer: AnswerConfig | None

    def connector_settings(self) -> dict[str, Any]: ...


def check_answers(sources: Sequence[AnsweringSource], has_email: bool, problems: list[str]) -> None:
    """An answer only on a source that can send it: the bot's or the community's token, or the SMTP server;
    each problem says what to add."""
    for i, src in enumerate(sources):
        if src.answer is None:
            continue
        loc = f"sources[{i}].answer"
        channel, settings = answer_channel(src.connector), src.connector_settings()
        if channel == "client_telegram" and not settings.get("bot_token"):
            problems.append(f"{loc}: the bot answers the client in the chat, and needs its token: add bot_token "
                            f"(from @BotFather) to the [[sources]] table of {src.name!r}")
        elif channel == "client_vk" and not settings.get("access_token"):
            problems.append(f"{loc}: the community answers the client in VK messages, and needs its token: add "
                            f"access_token (a community token with the messages right) to the [[sources]] table "
                            f"of {src.name!r}")
        elif channel == "client_email" and not has_email:
            problems.append(f"{loc}: a {src.connector} client is answered by e-mail: add [notify.email] "
                            f"(host, port, from) or remove [sources.answer] from {src.name!r}")
        if src.answer.text:
            problem = template_problem(src.answer.text)
            if problem:
                problems.append(f"{loc}.text: {problem}")


# What an answer's own text may use (hub/outbox/client_answer.py's values and hub/outbox/messages.py's helpers).
ANSWER_VALUES = ("owner", "minutes", "by_phone", "client_name")
TEMPLATE_HELPERS = ("moment", "day", "time", "duration", "explain", "status_label", "warmth_label", "reason_label")


def template_problem(text: str) -> str | None:
    """Why ``text`` would fail as an answer, found by rendering it as the hub will (undefined names are errors)
    with sample values: an owner and none, a phone and none. None when it renders."""
    from jinja2 import Environment, StrictUndefined, TemplateError, TemplateSyntaxError, select_autoescape

    # As hub/outbox/messages.py renders it: plain text (a chat message, an e-mail body), so not HTML-escaped.
    env = Environment(extensions=["jinja2.ext.i18n"], undefined=StrictUndefined,
                      autoescape=select_autoescape(enabled_extensions=("html", "htm"), default=False))
    env.install_null_translations(newstyle=True)  # type: ignore[attr-defined]  # added by ext.i18n
    try:
        template = env.from_string(text)
    except TemplateSyntaxError as exc:
        return f"not a valid template (line {exc.lineno}): {exc.message}"
    helpers = {name: (lambda *args, **kwargs: "") for name in TEMPLATE_HELPERS}
    for owner in ("Ольга", None):
        for by_phone in (True, False):
            try:
                template.render(owner=owner, minutes=15, by_phone=by_phone, client_name="Иван", **helpers)
            except TemplateError as exc:
                return (f"fails when rendered ({exc.message}); it may use {', '.join(ANSWER_VALUES)} "
                        f"(owner may be none: a lead waiting in the queue)")
    return None
