"""The hub on granian (RSGI): the webhook door on the event loop, the pages on a thread pool.

Why granian and this shape, measured side by side on the 2-core machine (wrk, 64 senders, site forms, the
same run): waitress, with the door's WSGI fast lane and group commit, acknowledged ~1,060 deliveries a second
at ~1.07 ms of CPU each — waitress's own Python (its poll loop, request parsing, task queue) was about a
third of that. granian's WSGI mode made 1,600 at 0.67 ms, but it hands a request to a Python thread before
the body has arrived: 40 connections trickling a body held its 32 threads and a normal sender timed out
(waitress reads a body whole on its event loop before a thread sees it; hub/processes.py). RSGI gives both:
granian reads the body in Rust, so a slow sender holds a pending coroutine and nothing else, and the
delivery runs on the event loop itself — verify, parse, check, then the group writer's future awaited
(hub/intake/group.py), no thread hand-off per request: ~2,250 a second at ~0.48 ms. Handing each delivery
to a thread pool instead (run_in_executor) fell back to ~1,240 at 0.9 ms: the hop costs what it saves.

What runs on the loop must not block: a webhook connector's verify and receive are pure by contract (no I/O),
and the store is awaited. A source that takes live calls (a PBX reading who should answer from the store
before the reply) and everything that is not the fast lane (the web app, the API, a 413, a chunked body)
go to Flask on the thread pool, the body read first, whole and capped, on the loop — as waitress did.
"""

from __future__ import annotations

import asyncio
import io
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from flask import Flask

from hub.errors import FailureLog
from hub.intake.webhook import IntakeSteps, after_store, intake_steps, store_later, takes_live_calls
from hub.runtime import Source
from hub.web.door import Answer, HookDoor, answer_headers, answer_of, hook_request, json_error_answer, unfinished_body
from hub.web.metrics import AckLatency

log = logging.getLogger("hub.web.rsgi")

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]


class RsgiHub:
    """An RSGI application (granian's protocol) around the hub's Flask app."""

    def __init__(self, app: Flask, threads: int, body_timeout_seconds: float):
        door = app.wsgi_app
        if not isinstance(door, HookDoor):
            raise TypeError("the Flask app of hub.web.create_app, with its HookDoor, is needed")
        self.door: HookDoor = door
        self.hub = door.hub
        self.latency: AckLatency = app.extensions["ack_latency"]
        self.failures: FailureLog = app.extensions["store_failures"]
        self.max_content_length: int | None = app.config.get("MAX_CONTENT_LENGTH")
        self.body_timeout = body_timeout_seconds
        self.pool = ThreadPoolExecutor(threads, thread_name_prefix="web")

    def __rsgi_init__(self, loop: asyncio.AbstractEventLoop) -> None:
        """Called by granian once its worker's loop runs."""
        self._woken = LoopWaker(loop)

    def __rsgi_del__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.pool.shutdown(wait=False, cancel_futures=True)

    async def __call__(self, scope: Any, proto: Any) -> None:
        if scope.proto != "http":            # websockets are off in the server; nothing else is spoken
            return
        environ = wsgi_environ(scope)
        found = self.door.fast_lane(environ)
        if found is not None and not takes_live_calls(found[0]):
            await self._deliver(scope, proto, environ, *found)
        else:
            await self._wsgi(proto, environ)

    # -- the webhook fast lane, on the loop -------------------------------------------------------------
    async def _deliver(self, scope: Any, proto: Any, environ: dict[str, Any], source: Source, subpath: str,
                       length: int) -> None:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(self.body_timeout):    # a timer, not wait_for's task per request
                body = await proto() if length else b""
        except TimeoutError:
            return self._send(proto, unfinished_body(408))
        except Exception:  # noqa: BLE001 — the sender went away mid-body: nobody to answer
            return None
        if len(body) < length:
            return self._send(proto, unfinished_body(400))
        request = hook_request(environ, subpath, body)
        try:
            outcome = await run_steps_async(self.hub, intake_steps(source, request), self._woken)
        except Exception as exc:  # noqa: BLE001 — sorted out by answer_of: 401/403, or 503 (not stored)
            outcome = exc
        self._send(proto, answer_of(self.hub, source, outcome, environ.get("REMOTE_ADDR"), self.latency,
                                    self.failures, started))

    @staticmethod
    def _send(proto: Any, answer: Answer) -> None:
        proto.response_bytes(answer.status, answer_headers(answer), answer.body)

    # -- everything else: Flask on the thread pool -------------------------------------------------------
    async def _wsgi(self, proto: Any, environ: dict[str, Any]) -> None:
        declared = environ.get("CONTENT_LENGTH", "")
        cap = self.max_content_length
        if cap is not None and declared.isdigit() and int(declared) > cap:
            body = b""          # Flask answers 413 from the declared length, before reading a byte
        else:
            try:
                async with asyncio.timeout(self.body_timeout):
                    body = await read_capped(proto, cap)
            except TimeoutError:
                return self._send(proto, unfinished_body(408))
            except Exception:  # noqa: BLE001 — the sender went away mid-body
                return None
        if not declared:
            if cap is not None and len(body) > cap:       # a chunked body past the cap: refused unread beyond it
                return self._send(proto, json_error_answer(
                    413, "request_entity_too_large", f"body larger than this server accepts ({cap} bytes)"))
            # As waitress gave a chunked body: whole, counted, and no longer chunked (werkzeug would read
            # nothing of a "chunked" body without wsgi.input_terminated).
            environ["CONTENT_LENGTH"] = str(len(body))
            environ.pop("HTTP_TRANSFER_ENCODING", None)
        environ["wsgi.input"] = io.BytesIO(body)
        status, headers, content = await asyncio.get_running_loop().run_in_executor(
            self.pool, call_wsgi, self.door, environ)
        proto.response_bytes(status, headers, content)


class LoopWaker:
    """The group writer's futures, awaited on the loop with one wake-up per batch. asyncio.wrap_future wakes
    the loop once per future (a write to its self-pipe from the writer thread, under the GIL): with ~14
    deliveries a commit that was 8% of the process's samples under 64 senders (py-spy). Here the first
    future of a batch to finish schedules one call on the loop, and that call settles every one finished."""

    def __init__(self, loop: asyncio.AbstractEventLoop):
        self.loop = loop
        self._lock = threading.Lock()
        self._finished: list[tuple[asyncio.Future[Any], Future[Any]]] = []

    def wait(self, future: Future[Any]) -> asyncio.Future[Any]:
        waiting = self.loop.create_future()
        future.add_done_callback(lambda done: self._finish(waiting, done))
        return waiting

    def _finish(self, waiting: asyncio.Future[Any], done: Future[Any]) -> None:
        with self._lock:
            first = not self._finished
            self._finished.append((waiting, done))
        if first:
            self.loop.call_soon_threadsafe(self._settle)

    def _settle(self) -> None:
        with self._lock:
            finished, self._finished = self._finished, []
        for waiting, done in finished:
            if waiting.cancelled():
                continue
            error = done.exception()
            if error is not None:
                waiting.set_exception(error)
            else:
                waiting.set_result(done.result())


async def run_steps_async(hub: Any, steps: IntakeSteps, waker: LoopWaker) -> Any:
    """hub.intake.webhook.run_steps on the event loop: each store is the group writer's future, awaited."""
    try:
        values = next(steps)
        while True:
            stored = await waker.wait(store_later(hub, values))
            after_store(hub, stored)
            values = steps.send(stored)
    except StopIteration as finished:
        return finished.value


async def read_capped(proto: Any, cap: int | None) -> bytes:
    """The whole body, or its first cap + 1 bytes when it is longer (enough for the app to answer 413)."""
    chunks, size = [], 0
    async for chunk in proto:
        chunks.append(chunk)
        size += len(chunk)
        if cap is not None and size > cap:
            break
    return b"".join(chunks)


def wsgi_environ(scope: Any) -> dict[str, Any]:
    """A WSGI environ from an RSGI scope, as waitress made it: the path percent-decoded and carried as
    latin-1 (PEP 3333), repeated headers joined, header names with an underscore dropped (so that
    ``X_Forwarded_For`` cannot pass for ``X-Forwarded-For``)."""
    host, _, port = scope.server.rpartition(":")
    environ: dict[str, Any] = {
        "REQUEST_METHOD": scope.method, "SCRIPT_NAME": "",
        "PATH_INFO": scope.path.encode("utf-8", "surrogateescape").decode("latin-1"),
        "QUERY_STRING": scope.query_string, "SERVER_NAME": host, "SERVER_PORT": port,
        "SERVER_PROTOCOL": f"HTTP/{scope.http_version}", "REMOTE_ADDR": scope.client.rpartition(":")[0].strip("[]"),
        "wsgi.version": (1, 0), "wsgi.url_scheme": scope.scheme, "wsgi.errors": sys.stderr,
        "wsgi.multithread": True, "wsgi.multiprocess": False, "wsgi.run_once": False}
    for name, value in scope.headers.items():
        if "_" in name:
            continue
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        if key in environ:
            environ[key] += ("; " if key == "HTTP_COOKIE" else ",") + value
        else:
            environ[key] = value
    return environ


def call_wsgi(app: WSGIApp, environ: dict[str, Any]) -> tuple[int, list[tuple[str, str]], bytes]:
    """Run a WSGI app to its whole answer. The pages' answers are small, and the exports and report CSVs are
    built whole in memory by their views (hub/web/pages/leads.py, reports.py): nothing to stream here."""
    started: list[Any] = []
    written: list[bytes] = []

    def start_response(status: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Callable[[bytes], None]:
        if exc_info and started:
            raise exc_info[1].with_traceback(exc_info[2])
        started[:] = [status, headers]
        return written.append

    result = app(environ, start_response)
    try:
        written.extend(result)
    finally:
        close = getattr(result, "close", None)
        if close is not None:
            close()
    status, headers = started
    return int(status[:3]), [(k, v) for k, v in headers], b"".join(written)

