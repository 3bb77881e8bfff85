"""A local fake of the Telegram Bot API: a real HTTP server on 127.0.0.1 that python-telegram-bot talks to.

PTB (httpx) cannot be seen by ``responses``, so the Telegram tests point ``api_url`` here. It serves
``/bot<token>/<method>`` with JSON or form bodies (PTB sends forms, nested values JSON-encoded), records every
call, answers with the real Bot API shapes, keeps each chat's messages as edited, serves a queue of updates to
``getUpdates`` (honouring ``offset`` and long-polling for ``timeout``), and fails on request: ``fail("sendMessage",
429, retry_after=7)``, ``fail(..., 400)`` (chat not found), ``fail(..., 403)`` (blocked), ``fail(..., 502)``.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

BOT_ID = 777000111
BOT_USERNAME = "leadhub_test_bot"
# A getUpdates long poll is cut to this so that a test's teardown never waits out a 30 s poll.
MAX_POLL_SECONDS = 2.0
_FAILURES = {
    400: "Bad Request: chat not found",
    401: "Unauthorized",
    403: "Forbidden: bot was blocked by the user",
    429: "Too Many Requests: retry after {retry_after}",
    502: "Bad Gateway",
}
_JSON_FIELDS = {"reply_markup", "link_preview_options", "allowed_updates", "reply_parameters", "entities"}
_INT_FIELDS = {"message_id", "offset", "timeout", "limit"}


@dataclass
class Call:
    token: str
    method: str
    params: dict[str, Any]


@dataclass
class Failure:
    status: int
    description: str
    retry_after: int | None
    times: int


@dataclass
class FakeTelegram:
    url: str = ""
    calls: list[Call] = field(default_factory=list)
    # (chat_id as str, message_id) -> {"text": ..., "reply_markup": ...}: what the chat shows now.
    messages: dict[tuple[str, int], dict[str, Any]] = field(default_factory=dict)
    updates: list[dict[str, Any]] = field(default_factory=list)
    failures: dict[str, list[Failure]] = field(default_factory=dict)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))
    _update_ids: itertools.count = field(default_factory=lambda: itertools.count(1000))
    _cond: threading.Condition = field(default_factory=threading.Condition)

    # ----- what a test programs -----

    def fail(self, method: str, status: int, description: str | None = None, retry_after: int | None = None,
             times: int = 1) -> None:
        text = description or _FAILURES.get(status, f"HTTP {status}").format(retry_after=retry_after)
        self.failures.setdefault(method, []).append(Failure(status, text, retry_after, times))

    def push_update(self, update: dict[str, Any]) -> dict[str, Any]:
        with self._cond:
            update = {"update_id": next(self._update_ids), **update}
            self.updates.append(update)
            self._cond.notify_all()
        return update

    @staticmethod
    def user(user_id: int, first_name: str = "Max") -> dict[str, Any]:
        return {"id": user_id, "is_bot": False, "first_name": first_name}

    def text_update(self, user_id: int, text: str, chat_id: int | None = None) -> dict[str, Any]:
        """An update of the user writing ``text`` to the bot in their private chat (not queued)."""
        chat = chat_id or user_id
        return {"update_id": next(self._update_ids), "message": {
            "message_id": next(self._ids), "date": int(time.time()), "from": self.user(user_id),
            "chat": {"id": chat, "type": "private"}, "text": text}}

    def press_update(self, user_id: int, chat_id: int | str, message_id: int, data: str) -> dict[str, Any]:
        """An update of the user pressing a button ``data`` under the bot's message (not queued)."""
        shown = self.messages.get((str(chat_id), message_id), {})
        message = {"message_id": message_id, "date": int(time.time()),
                   "chat": {"id": int(chat_id), "type": "private"}, "text": shown.get("text", ""),
                   "from": {"id": BOT_ID, "is_bot": True, "first_name": "Hub", "username": BOT_USERNAME}}
        return {"update_id": next(self._update_ids), "callback_query": {
            "id": f"cq{next(self._ids)}", "from": self.user(user_id), "chat_instance": "ci", "data": data,
            "message": message}}

    # ----- what a test reads -----

    def of(self, method: str) -> list[dict[str, Any]]:
        return [c.params for c in self.calls if c.method == method]

    def last_message(self, chat_id: int | str) -> dict[str, Any]:
        mine = [(mid, m) for (chat, mid), m in self.messages.items() if chat == str(chat_id)]
        assert mine, f"nothing was sent to chat {chat_id}"
        return max(mine, key=lambda item: item[0])[1] | {"message_id": max(mine, key=lambda item: item[0])[0]}

    @staticmethod
    def buttons(message: dict[str, Any]) -> list[str]:
        """The callback_data (or url) of every button of a message, in order."""
        rows = (message.get("reply_markup") or {}).get("inline_keyboard", [])
        return [b.get("callback_data") or b.get("url") for row in rows for b in row]

    # ----- the server side -----

    def _failure(self, method: str) -> Failure | None:
        queue = self.failures.get(method)
        if not queue:
            return None
        failure = queue[0]
        failure.times -= 1
        if failure.times <= 0:
            queue.pop(0)
        return failure

    def _message(self, chat_id: Any, message_id: int, params: dict[str, Any], edited: bool) -> dict[str, Any]:
        chat = int(chat_id) if str(chat_id).lstrip("-").isdigit() else 0
        self.messages[(str(chat_id), message_id)] = {"text": params.get("text", ""),
                                                     "reply_markup": params.get("reply_markup")}
        message = {"message_id": message_id, "date": int(time.time()), "chat": {"id": chat, "type": "private"},
                   "from": {"id": BOT_ID, "is_bot": True, "first_name": "Hub", "username": BOT_USERNAME},
                   "text": params.get("text", "")}
        if (params.get("reply_markup") or {}).get("inline_keyboard"):   # as Telegram: a Message shows inline ones only
            message["reply_markup"] = params["reply_markup"]
        if edited:
            message["edit_date"] = int(time.time())
        return message

    def handle(self, token: str, method: str, params: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        self.calls.append(Call(token, method, params))
        failure = self._failure(method)
        if failure is not None:
            body: dict[str, Any] = {"ok": False, "error_code": failure.status, "description": failure.description}
            if failure.retry_after is not None:
                body["parameters"] = {"retry_after": failure.retry_after}
            return failure.status, body
        if method == "getMe":
            return 200, {"ok": True, "result": {"id": BOT_ID, "is_bot": True, "first_name": "Hub",
                                                "username": BOT_USERNAME}}
        if method == "sendMessage":
            return 200, {"ok": True, "result": self._message(params["chat_id"], next(self._ids), params, False)}
        if method == "editMessageText":
            key = (str(params.get("chat_id")), int(params.get("message_id", 0)))
            if key not in self.messages:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message to edit not found"}
            if self.messages[key] == {"text": params.get("text", ""), "reply_markup": params.get("reply_markup")}:
                return 400, {"ok": False, "error_code": 400, "description": "Bad Request: message is not "
                             "modified: specified new message content and reply markup are exactly the same"}
            return 200, {"ok": True, "result": self._message(key[0], key[1], params, True)}
        if method in ("answerCallbackQuery", "setWebhook", "deleteWebhook"):
            return 200, {"ok": True, "result": True}
        if method == "getUpdates":
            return 200, {"ok": True, "result": self._get_updates(params)}
        return 404, {"ok": False, "error_code": 404, "description": "Not Found"}

    def _get_updates(self, params: dict[str, Any]) -> list[dict[str, Any]]:
        offset = params.get("offset")
        deadline = time.monotonic() + min(float(params.get("timeout") or 0), MAX_POLL_SECONDS)
        with self._cond:
            if offset is not None:      # confirmed: Telegram forgets them
                self.updates = [u for u in self.updates if u["update_id"] >= int(offset)]
            while not self.updates and time.monotonic() < deadline:
                self._cond.wait(deadline - time.monotonic())
            return list(self.updates[: int(params.get("limit") or 100)])


def _parse(content_type: str, raw: bytes) -> dict[str, Any]:
    if not raw:
        return {}
    if content_type.startswith("application/json"):
        return json.loads(raw)
    params: dict[str, Any] = {}
    for key, value in urllib.parse.parse_qsl(raw.decode(), keep_blank_values=True):
        if key in _JSON_FIELDS:
            params[key] = json.loads(value)
        elif key in _INT_FIELDS:
            params[key] = int(value)
        elif value in ("true", "false", "True", "False"):
            params[key] = value.lower() == "true"
        else:
            params[key] = value
    return params


def start_fake_telegram() -> tuple[FakeTelegram, ThreadingHTTPServer]:
    fake = FakeTelegram()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self._serve()

        def do_GET(self) -> None:
            self._serve()

        def _serve(self) -> None:
            path = urllib.parse.urlsplit(self.path)
            parts = path.path.strip("/").split("/")
            raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            if len(parts) != 2 or not parts[0].startswith("bot"):
                status, body = 404, {"ok": False, "error_code": 404, "description": "Not Found"}
            else:
                params = _parse(self.headers.get("Content-Type", ""), raw)
                params.update(dict(urllib.parse.parse_qsl(path.query)))
                status, body = fake.handle(parts[0][3:], parts[1], params)
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    fake.url = f"http://127.0.0.1:{server.server_address[1]}"
    threading.Thread(target=server.serve_forever, name="fake-telegram", daemon=True).start()
    return fake, server


@pytest.fixture
def fake_telegram():
    fake, server = start_fake_telegram()
    yield fake
    with fake._cond:
        fake._cond.notify_all()
    server.shutdown()
    server.server_close()
