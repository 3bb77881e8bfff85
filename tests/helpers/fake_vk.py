"""A local fake of the VK API and of a Bots Long Poll server: a real HTTP server on 127.0.0.1 in a thread.

It answers as VK does — ``{"response": …}`` or ``{"error": {"error_code", "error_msg", "request_params"}}``
with HTTP 200, and the long poll's ``{"ts", "updates"}`` / ``{"failed": 1|2|3}`` — so the hub's real code
(``vk_api`` included) runs against it unchanged. Point a VkClient or a source's ``api_url`` at
``fake.api_url``. Every call is recorded (``calls``, ``calls_to(method)``); failures are programmed per
method (``fail(method, code=…)`` for a VK error, ``status=`` for an HTTP error, ``delay=`` for a slow VK).

Methods: users.get (``fields=city``; users from ``users``), messages.send (recorded in ``sent``; a repeated
random_id to the same peer sends nothing again, as VK does), groups.getLongPollServer (``server`` is this
server's ``/lp``). The long poll keeps a list of events; ``push(event)`` appends one. ``ts`` counts events:
``a_check`` with ``ts=N`` returns the events after the N-th and the new ts. A wrong key answers
``{"failed": 2}``, a ts older than ``oldest_ts`` answers ``{"failed": 1, "ts": …}``; ``lp_fail(3)`` makes the
next check answer ``{"failed": 3}`` (the key and ts to be fetched again).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest

TOKEN = "vk1.a.community-token-for-tests-0123456789"
GROUP_ID = 218000111
FIRST_TS = 100        # VK's ts is a position in the community's event stream; it does not start at 0


@dataclass
class Failure:
    code: int | None = None          # a VK error code
    status: int | None = None        # an HTTP status instead
    delay: float = 0.0               # answer only after this long
    times: int = 1                   # how many calls it applies to (-1: every call)


@dataclass
class Call:
    method: str
    params: dict[str, str]
    at: float = field(default_factory=time.monotonic)


class FakeVk:
    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.calls: list[Call] = []
        self.users: dict[int, dict[str, Any]] = {}
        self.sent: list[dict[str, str]] = []
        self.token = TOKEN
        self.failures: dict[str, list[Failure]] = {}
        self.events: list[dict[str, Any]] = []
        self.key = "lp-key-1"
        self.keys_given = 0
        self.oldest_ts = FIRST_TS
        self.lp_failures: list[int] = []
        self.new_event = threading.Condition(self.lock)
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.api_url = f"{self.url}/method"
        self.thread = threading.Thread(target=self.server.serve_forever, name="fake-vk", daemon=True)

    # -- programming it ---------------------------------------------------------------------------
    def add_user(self, user_id: int, first_name: str, last_name: str, city: str | None = None,
                 deactivated: str | None = None) -> None:
        user: dict[str, Any] = {"id": user_id, "first_name": first_name, "last_name": last_name,
                                "can_access_closed": True, "is_closed": False}
        if city:
            user["city"] = {"id": 1, "title": city}
        if deactivated:
            user["deactivated"] = deactivated
        self.users[user_id] = user

    def fail(self, method: str, code: int | None = None, status: int | None = None, delay: float = 0.0,
             times: int = 1) -> None:
        self.failures.setdefault(method, []).append(Failure(code, status, delay, times))

    def push(self, *events: dict[str, Any]) -> None:
        with self.new_event:
            self.events.extend(events)
            self.new_event.notify_all()

    def lp_fail(self, failed: int) -> None:
        self.lp_failures.append(failed)

    @property
    def ts(self) -> int:
        return FIRST_TS + len(self.events)

    def calls_to(self, method: str) -> list[Call]:
        with self.lock:
            return [c for c in self.calls if c.method == method]

    # -- answering --------------------------------------------------------------------------------
    def _failure(self, method: str) -> Failure | None:
        with self.lock:
            queue = self.failures.get(method) or []
            if not queue:
                return None
            failure = queue[0]
            if failure.times > 0:
                failure.times -= 1
                if failure.times == 0:
                    queue.pop(0)
            return failure

    def api(self, method: str, params: dict[str, str]) -> tuple[int, Any]:
        with self.lock:
            self.calls.append(Call(method, params))
        failure = self._failure(method)
        if failure is not None:
            time.sleep(failure.delay)
            if failure.status:
                return failure.status, {"error": "fake failure"}
            if failure.code:
                return 200, error(failure.code, method, params)
        if params.get("access_token") != self.token:
            return 200, error(5, method, params)
        if method == "users.get":
            ids = [int(i) for i in params.get("user_ids", "").split(",") if i.strip()]
            fields = params.get("fields", "").split(",")
            users = []
            for user_id in ids:
                user = dict(self.users.get(user_id) or {"id": user_id, "first_name": "DELETED", "last_name": "",
                                                        "deactivated": "deleted"})
                if "city" not in fields:
                    user.pop("city", None)
                users.append(user)
            return 200, {"response": users}
        if method == "messages.send":
            with self.lock:
                repeat = any(m["peer_id"] == params.get("peer_id") and m["random_id"] == params.get("random_id")
                             for m in self.sent)
                if not repeat:
                    self.sent.append(params)
                return 200, {"response": 1000 + len(self.sent)}
        if method == "groups.getLongPollServer":
            with self.lock:
                self.keys_given += 1
                self.key = f"lp-key-{self.keys_given}"
                return 200, {"response": {"key": self.key, "server": f"{self.url}/lp", "ts": str(self.ts)}}
        return 200, error(3, method, params)

    def long_poll(self, params: dict[str, str]) -> dict[str, Any]:
        with self.lock:
            self.calls.append(Call("a_check", params))
            if self.lp_failures:
                failed = self.lp_failures.pop(0)
                return {"failed": failed, "ts": str(self.ts)} if failed == 1 else {"failed": failed}
            if params.get("act") != "a_check" or params.get("key") != self.key:
                return {"failed": 2}
            try:
                since = int(params.get("ts", ""))
            except ValueError:
                return {"failed": 1, "ts": str(self.ts)}
            if since < self.oldest_ts or since > self.ts:
                return {"failed": 1, "ts": str(self.ts)}
            deadline = time.monotonic() + min(float(params.get("wait") or 0), 2.0)
            while self.ts == since and (left := deadline - time.monotonic()) > 0:
                self.new_event.wait(left)
            return {"ts": str(self.ts), "updates": self.events[since - FIRST_TS:]}

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _answer(self) -> None:
                parts = urlsplit(self.path)
                params = dict(parse_qsl(parts.query))
                length = int(self.headers.get("Content-Length") or 0)
                if length:
                    params.update(parse_qsl(self.rfile.read(length).decode()))
                if parts.path.startswith("/method/"):
                    status, body = fake.api(parts.path[len("/method/"):], params)
                elif parts.path == "/lp":
                    status, body = 200, fake.long_poll(params)
                else:
                    status, body = 404, {"error": "no such path"}
                data = json.dumps(body, ensure_ascii=False).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json; charset=utf-8")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            do_GET = do_POST = _answer

            def log_message(self, *args: Any) -> None:
                pass

        return Handler

    def start(self) -> FakeVk:
        self.thread.start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def error(code: int, method: str, params: dict[str, str]) -> dict[str, Any]:
    """VK's error answer; like VK, request_params echo the call without the token."""
    messages = {3: "Unknown method passed", 5: "User authorization failed: invalid access_token (4).",
                6: "Too many requests per second", 9: "Flood control", 10: "Internal server error",
                15: "Access denied", 901: "Can't send messages for users without permission",
                902: "Can't send messages to this user due to their privacy settings"}
    echoed = [{"key": "method", "value": method}] + [{"key": k, "value": v} for k, v in params.items()
                                                     if k != "access_token"]
    return {"error": {"error_code": code, "error_msg": messages.get(code, "Unknown error occurred"),
                      "request_params": echoed}}


@pytest.fixture
def fake_vk():
    fake = FakeVk().start()
    yield fake
    fake.stop()
