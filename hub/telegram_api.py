"""The one place the hub talks to the Telegram Bot API: python-telegram-bot's ``telegram.Bot``, used synchronously.

PTB is asyncio; the hub's notifier, workers and the manager bot's poller are plain threads. Each TelegramApi
owns an event loop of its own and runs every call on it in the *calling* thread (``loop.run_until_complete``).
Why not a dedicated loop thread: no extra thread per bot to start, stop and leak; an exception surfaces in the
caller's stack; and a call's time is the caller's time. The price: one object must not be used by two threads
at once (a lock makes a second caller wait rather than break the loop), so each thread that talks to Telegram
makes its own TelegramApi — the long poll (``get_updates``, up to 50 s) never holds up the notifier's sends.

Errors come out as one ``TelegramError`` saying whether to retry; the bot token never appears in its text
nor in a log line (httpx logs request URLs, which carry the token, at INFO: those loggers are quietened and
scrubbed here).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import threading
import time
from collections.abc import Coroutine
from typing import Any, TypeVar

import telegram
from telegram import error as tg_error
from telegram.request import HTTPXRequest

log = logging.getLogger("hub.telegram_api")
# PTB 22 warns whenever it hands out a time period as an int (RetryAfter.retry_after, …): opting in to the coming
# timedelta values silences that for good (PTB reads it at each use). The hub's only PTB user is this module.
os.environ.setdefault("PTB_TIMEDELTA", "true")
T = TypeVar("T")
# Telegram's own limits: a message is at most 4096 characters, callback_data at most 64 bytes.
MAX_TEXT = 4096
MAX_CALLBACK_DATA = 64
URL_BUTTON_PREFIX = "url:"
Buttons = list[list[tuple[str, str]]]


class TelegramError(Exception):
    """A Bot API call failed. ``retriable``: trying again later may succeed; ``retry_after``: Telegram said when."""

    def __init__(self, message: str, retriable: bool = True, retry_after: float | None = None):
        super().__init__(message)
        self.message, self.retriable, self.retry_after = message, retriable, retry_after


class _ScrubTokens(logging.Filter):
    """Replaces every bot token the process knows in a record of the libraries that log URLs."""

    tokens: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.tokens:
            text = record.getMessage()
            if any(token in text for token in self.tokens):
                for token in self.tokens:
                    text = text.replace(token, "***")
                record.msg, record.args = text, None
        return True


_SCRUB = _ScrubTokens()
# httpx logs "HTTP Request: POST https://api.telegram.org/bot<token>/sendMessage" at INFO; PTB logs the API URL
# at DEBUG. A logger's filter sees only its own records, hence each by name.
_URL_LOGGERS = ("httpx", "httpcore", "telegram", "telegram.Bot", "telegram.request.BaseRequest",
                "telegram.request.HTTPXRequest")
for _name in _URL_LOGGERS:
    logging.getLogger(_name).addFilter(_SCRUB)
for _name in ("httpx", "httpcore"):
    if logging.getLogger(_name).level == logging.NOTSET:
        logging.getLogger(_name).setLevel(logging.WARNING)


def _markup(buttons: Buttons | None) -> telegram.InlineKeyboardMarkup | None:
    if not buttons:
        return None
    rows = []
    for row in buttons:
        keys = []
        for text, action in row:
            if action.startswith(URL_BUTTON_PREFIX):
                keys.append(telegram.InlineKeyboardButton(text, url=action[len(URL_BUTTON_PREFIX):]))
            else:
                if len(action.encode()) > MAX_CALLBACK_DATA:
                    raise ValueError(f"callback_data over {MAX_CALLBACK_DATA} bytes: {action!r}")
                keys.append(telegram.InlineKeyboardButton(text, callback_data=action))
        rows.append(keys)
    return telegram.InlineKeyboardMarkup(rows)


def _seconds(value: int | float | dt.timedelta | None) -> float | None:
    if value is None:
        return None
    return value.total_seconds() if isinstance(value, dt.timedelta) else float(value)


class TelegramApi:
    def __init__(self, token: str, api_url: str = "https://api.telegram.org", timeout: float = 5.0):
        self._token = token
        _SCRUB.tokens.add(token)
        self._loop = asyncio.new_event_loop()
        self._lock = threading.Lock()
        self._timeout = timeout

        def request() -> HTTPXRequest:
            return HTTPXRequest(connection_pool_size=4, connect_timeout=timeout, read_timeout=timeout,
                                write_timeout=timeout, pool_timeout=timeout)

        # The long poll's own read timeout is added by PTB on top of ``timeout`` (get_updates).
        self._bot = telegram.Bot(token, base_url=f"{api_url.rstrip('/')}/bot", request=request(),
                                 get_updates_request=request())
        self._closed = False

    def _scrub(self, text: str) -> str:
        return text.replace(self._token, "***") if self._token else text

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        with self._lock:
            if self._closed:
                call.close()
                raise TelegramError("the Telegram client is closed", retriable=False)
            try:
                return self._complete(call)
            except tg_error.RetryAfter as exc:
                retry_after = _seconds(exc.retry_after)
                raise TelegramError(f"Telegram: flood control, retry after {retry_after:.0f} s",
                                    retry_after=retry_after) from None
            except (tg_error.Forbidden, tg_error.BadRequest, tg_error.InvalidToken, tg_error.ChatMigrated,
                    tg_error.EndPointNotFound) as exc:
                # 400 chat not found, 401/404 bad token, 403 bot blocked: retrying will not change the answer.
                raise TelegramError(f"Telegram: {self._scrub(exc.message)}", retriable=False) from None
            except tg_error.TelegramError as exc:   # NetworkError, TimedOut, Conflict, 5xx
                raise TelegramError(f"Telegram unreachable: {self._scrub(exc.message)}") from None

    def _complete(self, call: Coroutine[Any, Any, T]) -> T:
        """Runs ``call`` on this object's loop, in this thread — unless this thread already runs an event loop
        (a caller inside asyncio code; Playwright's sync API does so in the browser tests), where a second loop
        cannot run: then in a short-lived thread of its own, waited for. The lock keeps the loop single-user."""
        if asyncio._get_running_loop() is None:
            return self._loop.run_until_complete(call)
        outcome: list[Any] = []

        def run() -> None:
            try:
                outcome.append((True, self._loop.run_until_complete(call)))
            except BaseException as exc:  # noqa: BLE001 - handed to the caller below, as if raised here
                outcome.append((False, exc))

        thread = threading.Thread(target=run, name="telegram-call", daemon=True)
        thread.start()
        thread.join()
        ok, value = outcome[0]
        if not ok:
            raise value
        return value

    def send_message(self, chat_id: str | int, text: str, buttons: Buttons | None = None,
                     reply_keyboard: dict[str, Any] | None = None) -> int:
        """Sends ``text`` (cut to Telegram's 4096) with inline ``buttons``; returns the message_id.

        A button is ``(text, callback_data)`` or ``(text, "url:" + https-url)``. ``reply_keyboard``: instead, a
        keyboard under the input field as the Bot API writes it (``{"keyboard": [[{"text", "request_contact"}]],
        …}`` or ``{"remove_keyboard": true}``) — the client bot's "share my number" button."""
        markup: telegram.InlineKeyboardMarkup | telegram.ReplyKeyboardMarkup | telegram.ReplyKeyboardRemove | None
        if reply_keyboard is None:
            markup = _markup(buttons)
        elif reply_keyboard.get("remove_keyboard"):
            markup = telegram.ReplyKeyboardRemove()
        else:
            markup = telegram.ReplyKeyboardMarkup.de_json(reply_keyboard, self._bot)
        message = self._run(self._bot.send_message(
            chat_id, text[:MAX_TEXT], reply_markup=markup,
            link_preview_options=telegram.LinkPreviewOptions(is_disabled=True)))
        return message.message_id

    def edit_message(self, chat_id: str | int, message_id: int, text: str, buttons: Buttons | None = None) -> None:
        """Replaces a sent message's text and buttons (no buttons: the keyboard goes away)."""
        try:
            self._run(self._bot.edit_message_text(
                text[:MAX_TEXT], chat_id=chat_id, message_id=message_id, reply_markup=_markup(buttons),
                link_preview_options=telegram.LinkPreviewOptions(is_disabled=True)))
        except TelegramError as exc:
            # The same edit twice (a re-sent update) is done already, not a failure.
            if "message is not modified" not in exc.message.lower():
                raise

    def answer_callback(self, callback_query_id: str, text: str | None = None, alert: bool = False) -> None:
        """Stops the button's spinner; ``text`` shows as a toast (``alert``: a box the user must close)."""
        self._run(self._bot.answer_callback_query(callback_query_id, text=text, show_alert=alert))

    def get_updates(self, offset: int | None, timeout: int,
                    allowed_updates: tuple[str, ...] = ("message", "callback_query")) -> list[dict[str, Any]]:
        """Long-polls for up to ``timeout`` seconds; the updates as the Bot API's JSON (``Update.to_dict()``)."""
        updates = self._run(self._bot.get_updates(offset=offset, timeout=timeout,
                                                  allowed_updates=list(allowed_updates)))
        return [update.to_dict() for update in updates]

    def bot_username(self) -> str:
        """The bot's @username (getMe), for instructions that name it."""
        me = self._run(self._bot.get_me())
        return me.username or ""

    def close(self) -> None:
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._complete(self._bot.shutdown())
            except Exception as exc:  # noqa: BLE001 - closing must not fail the caller's shutdown
                log.debug("closing the Telegram client: %s", type(exc).__name__)
            finally:
                self._loop.close()

    def __enter__(self) -> TelegramApi:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# The bot's @username (getMe), for the instructions that name it (the profile page's t.me link, the CLI's
# link-telegram), asked once per process and bot: a web request must not wait on Telegram each time. A failed
# getMe is asked again after a minute; meanwhile the page shows the /link instruction without a link, which
# works just as well.
_USERNAMES: dict[tuple[str, str], tuple[str | None, float]] = {}
_USERNAMES_LOCK = threading.Lock()
RETRY_GET_ME_SECONDS = 60.0
GET_ME_TIMEOUT_SECONDS = 3.0


def bot_username(token: str, api_url: str) -> str | None:
    """The bot's @username without the @, or None when Telegram cannot say (the caller words its instruction
    without it: /link CODE works all the same)."""
    with _USERNAMES_LOCK:
        known = _USERNAMES.get((token, api_url))
    if known and (known[0] or time.monotonic() - known[1] < RETRY_GET_ME_SECONDS):
        return known[0]
    try:
        with TelegramApi(token, api_url, timeout=GET_ME_TIMEOUT_SECONDS) as api:
            name: str | None = api.bot_username() or None
    except TelegramError:
        name = None
    with _USERNAMES_LOCK:
        _USERNAMES[(token, api_url)] = (name, time.monotonic())
    return name
