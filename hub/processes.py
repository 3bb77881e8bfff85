"""The hub's long-running processes (web server, workers, notifier, forwarder, scheduler), started together.

`hub run` is all of them in one process, the embedded default; `hub serve`, `hub worker` and `hub scheduler`
are its parts, for several processes on one PostgreSQL database. The command line parses options and
prints; which threads run, how the web server listens and how it all stops on SIGTERM is here.
"""

from __future__ import annotations

import asyncio
import errno
import gc
import logging
import resource
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from flask import Flask
from granian.constants import Interfaces
from granian.http import HTTP1Settings
from granian.server.embed import Server as EmbeddedGranian
from waitress.channel import HTTPChannel
from waitress.server import create_server

from hub.config import ServerConfig, config_flag
from hub.connector import WebhookConnector
from hub.desk.listings import has_users
from hub.desk.manager_bot_updates import UpdatesPoller
from hub.intake.polling import poll_seconds
from hub.outbox.forwarding import Forwarder
from hub.outbox.notify import Notifier
from hub.pipeline.worker import Worker
from hub.runtime import Hub
from hub.scheduler import Scheduler
from hub.store.db import transaction
from hub.web.app import create_app
from hub.web.rsgi import RsgiHub

# The thread that holds the store's write lock waits on the disk, then needs the GIL back to commit
# and let the next writer in; by default Python hands the GIL over every 5 ms, so busy request
# threads kept it waiting. Every 0.5 ms: +11% acks under 16 senders, p99 lower (A/B, same run).
GIL_SWITCH_INTERVAL_SECONDS = 0.0005
# Web threads for `hub run` and `hub serve`. On granian they run the pages and the API (the webhook door runs
# on the event loop and needs none); on waitress every request. There a delivery's thread mostly waits for
# the group writer's commit (hub/intake/group.py), and the deliveries waiting together make one batch, so the
# threads bound the batch:
# under 64 senders, 8 threads gave batches of ~4 and 470-580 acks/s, 32 gave ~10-14 and 920-970, 64 no
# more than 32 (and a worse p99); measured on the shared 2-core machine in one run.
WEB_THREADS = 32
# How long a stopping process waits for each thread to finish what it holds (an event, a send).
JOIN_TIMEOUT_SECONDS = 30
# A request body is kept in memory up to this, then in a temporary file: what a thousand connections
# trickling bodies can hold in memory is 64 MB, not waitress's 512 KB each. Provider events are a few KB.
BODY_IN_MEMORY_BYTES = 65_536
# A connection holds up to three open files: its socket, a request body past BODY_IN_MEMORY_BYTES and a
# reply past 1 MB (waitress's outbuf_overflow).
FILES_PER_CONNECTION = 3
# Open files the rest of a web process needs: database connections, logs, the listening socket, waitress's
# wake-up pipe, the SQLite file and its journal.
FILES_RESERVED = 200
# Request line and headers; a provider's are a few KB, a browser's with cookies under 16 KB (waitress: 256 KB).
MAX_HEADER_BYTES = 65_536
# Connections the kernel holds for granian before it accepts them (a burst of senders connecting at once).
GRANIAN_BACKLOG = 2048
# How often idle connections are looked for: [server] idle_timeout_seconds is kept to within this.
IDLE_CHECK_SECONDS = 5

log = logging.getLogger("hub.processes")


@contextmanager
def background_threads(hub: Hub, workers: int, scheduler: bool = False,
                       beside_web: bool = False) -> Iterator[threading.Event]:
    """Worker threads, a notifier, a forwarder when sinks are configured (and, for `hub run` and
    `hub scheduler`, the scheduler) for the duration of the block; set the yielded event to stop them early.
    ``beside_web``: the web server shares the process (`hub run`), and the workers yield to its intake."""
    stop = threading.Event()
    threads = [threading.Thread(target=lambda: Worker(hub, yield_to_intake=beside_web).run_forever(stop),
                                name=f"worker-{i + 1}", daemon=True)
               for i in range(workers)]
    threads.append(threading.Thread(target=Notifier(hub).run_forever, args=(stop,), name="notifier", daemon=True))
    if hub.config.sinks:
        threads.append(threading.Thread(target=Forwarder(hub).run_forever, args=(stop,), name="forwarder",
                                        daemon=True))
    if scheduler:
        threads.append(threading.Thread(target=Scheduler(hub).run_forever, args=(stop,), name="scheduler",
                                        daemon=True))
    if hub.config.notify.telegram and hub.config.notify.telegram.updates == "polling":   # one process polls: a lease
        threads.append(threading.Thread(target=UpdatesPoller(hub).run_forever, args=(stop,), name="manager-bot",
                                        daemon=True))
    for t in threads:
        t.start()
    try:
        yield stop
    finally:
        stop.set()
        hub.event_stored.set()      # wake idle workers so they see the stop at once
        hub.notification_queued.set()
        hub.forward_queued.set()
        for t in threads:
            t.join(timeout=JOIN_TIMEOUT_SECONDS)


def wait_for_stop(stop: threading.Event) -> None:
    """Hold the main thread until SIGTERM, Ctrl-C, or something else sets ``stop``."""
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        while not stop.wait(1):
            pass
    except KeyboardInterrupt:
        stop.set()


class ListenError(Exception):
    """The web server cannot listen where it was told to: the port is taken, the address is not this
    machine's, or the port is privileged."""

    def __init__(self, host: str, port: int, error: OSError):
        super().__init__(f"cannot listen on {host}:{port}: {error.strerror or error}")
        self.host, self.port = host, port
        self.port_in_use = error.errno == errno.EADDRINUSE


def connection_limit(wanted: int, threads: int) -> int:
    """Raise this process's open-file limit as far as ``wanted`` connections need (a systemd service starts
    with 1024) and return how many fit under it: past the limit accept() fails, and so does every file
    the rest of the process opens."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return wanted
    needed = wanted * FILES_PER_CONNECTION + FILES_RESERVED
    if soft < needed:
        soft = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    fits = max(threads, (soft - FILES_RESERVED) // FILES_PER_CONNECTION)
    if fits < wanted:
        log.warning("the open-file limit (%d) leaves room for %d connections, not [server] max_connections = %d: "
                    "raise it (ulimit -n, systemd LimitNOFILE=)", soft, fits, wanted)
    return min(wanted, fits)


def waitress_settings(server: ServerConfig, threads: int) -> dict[str, Any]:
    """How waitress holds against slow and oversized senders.

    Waitress reads each request whole on its event loop before a thread sees it, so a sender trickling a
    body holds a socket, not a thread, and connections can far outnumber threads. Beside 200 connections
    trickling a byte a second, a normal sender's every request timed out with waitress's 100 connections;
    with 1000, p99 5-17 ms (bench/slow_senders.py). With poll(), as select() fails past 1024 descriptors.

    Waitress has no deadline for reading a whole request: channel_timeout counts from the last byte
    received, so a connection trickling a byte a second never expires. What bounds such senders instead is
    the connection limit, the open-file limit under it, and the memory each connection holds
    (BODY_IN_MEMORY_BYTES). Past the connection limit new connections wait in the listen queue, so a flood
    beyond it starves the rest again: that is for a proxy in front to stop (nginx: client_body_timeout,
    limit_conn)."""
    return {
        "threads": threads,
        "connection_limit": connection_limit(server.max_connections, threads),
        "asyncore_use_poll": True,
        "channel_timeout": server.idle_timeout_seconds,
        "cleanup_interval": min(IDLE_CHECK_SECONDS, server.idle_timeout_seconds),
        "inbuf_overflow": BODY_IN_MEMORY_BYTES,
        "max_request_header_size": MAX_HEADER_BYTES,
        # Waitress answers 413 to a declared length at or above this before reading any of the body, and
        # stops reading a chunked one when this much has come (framing included). Without it, it read a
        # 300 MB body to the end, into temporary files, before the app said 413.
        "max_request_body_size": server.max_body_bytes + 1,
    }


class QuietChannel(HTTPChannel):
    """Waitress's channel, without the busy loop it falls into under load.

    While a request's task runs, waitress's own channel says it is writable as soon as the task has put a
    byte in its output buffer; the main loop's poll() then returns at once, over and over, trying to flush
    what the task thread is flushing itself (``send_bytes`` is 1: a task sends as it writes, under the
    buffer's lock). Counted under 16 senders: 5-10 empty wake-ups per request, 40,000 polls a second, each
    taking the GIL from the threads doing the work. The spin fed itself, and the process collapsed into
    it now and then: a plain INSERT-the-body WSGI app on waitress, 8 threads, ran at 280-1,400 req/s and
    1.3-4.3 ms of CPU per request; with this channel at 2,100-3,200 req/s and 0.25-0.42 ms (same run).

    Nothing is left unsent by it: a task that cannot send everything pulls the trigger, and so does every
    task when it ends, and the loop looks again; past the high watermark the task waits for the loop to
    flush, so then the channel says writable as before."""

    def writable(self) -> bool:
        if self.will_close or self.close_when_flushed:
            return True
        pending = self.total_outbufs_len
        return bool(pending) and (not self.requests or pending > self.adj.outbuf_high_watermark)


class QueueDepthLog:
    """Waitress logs "Task queue depth is N" at WARNING for every request that waits for a thread: under a
    burst, thousands of lines a second, each made and written by the thread that accepts connections (a
    record costs ~5 µs before any filter sees it). This stands in for its queue logger: one line a minute,
    saying how many were left out."""

    def __init__(self, logger: logging.Logger, every_seconds: float = 60.0):
        self._log = logger
        self.every = every_seconds
        self._next = 0.0
        self._dropped = 0

    def warning(self, msg: str, *args: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self._dropped += 1
            return
        more = f" ({self._dropped} such lines left out since the last)" if self._dropped else ""
        self._next, self._dropped = now + self.every, 0
        self._log.warning(msg + more, *args)


def _quiet_waitress(server: Any) -> None:
    # create_server gives one server, or a MultiSocketServer holding one per listening address.
    servers = [server] + [s for s in getattr(server, "map", {}).values() if hasattr(s, "channel_class")]
    for s in servers:
        if hasattr(s, "channel_class"):
            s.channel_class = QuietChannel
    dispatcher = getattr(server, "task_dispatcher", None)
    if dispatcher is not None and hasattr(dispatcher, "queue_logger"):
        dispatcher.queue_logger = QueueDepthLog(dispatcher.queue_logger)


class WebServer:
    """The web app, listening. Its port is bound (or tried) when it is made, so a taken port is reported
    before any worker starts, not as a traceback after. ``web_server`` picks the engine."""

    def __init__(self, hub: Hub, host: str | None = None, port: int | None = None):
        self.hub = hub
        self.host, self.port = host or hub.config.server.host, port or hub.config.server.port

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def banner(self, running: str = "") -> list[str]:
        """What a newcomer needs at start-up: where the hub listens, where each source delivers, and how
        to create the first user if there is none."""
        lines = [f"lead hub listening on {self.url}{running}"]
        for name, source in self.hub.sources.items():
            if not source.config.enabled:
                where = "disabled"
            elif isinstance(source.connector, WebhookConnector):
                where = f"{self.url}/hooks/{name}"
            else:
                where = f"polled every {poll_seconds(source):g} s by the scheduler"
            lines.append(f"  source {name} ({source.connector.name}): {where}")
        with transaction(self.hub.engine, read_only=True) as session:
            first_user = not has_users(session)
        if first_user:
            command = " ".join(filter(None, ["hub users add you@example.com --role admin",
                                             config_flag(self.hub.config)]))
            lines.append(f"  web app: {self.url}/ — no users yet: create one with `{command}`")
        return lines

    def run(self) -> None:
        """Serve until SIGTERM or Ctrl-C."""
        raise NotImplementedError


def web_server(hub: Hub, host: str | None = None, port: int | None = None, threads: int = WEB_THREADS) -> WebServer:
    """The web server [server] engine names: granian (the default) or waitress."""
    if hub.config.server.engine == "waitress":
        return WaitressServer(hub, host, port, threads)
    return GranianServer(hub, host, port, threads)


def freeze_startup_objects() -> None:
    """Move what start-up made (the app, the config, SQLAlchemy's tables and compiled statements, the
    connectors) out of the garbage collector's sight: a full collection then walks only what requests made.
    Measured under 64 senders on granian, A/B twice on the shared machine: p99 77-103 ms without, 43-75 ms
    with, the same acks a second."""
    gc.collect()
    gc.freeze()


class GranianServer(WebServer):
    """The web app on granian, embedded in this process (hub/web/rsgi.py says why): the webhook door on its
    event loop, the pages on ``threads`` threads."""

    def __init__(self, hub: Hub, host: str | None = None, port: int | None = None, threads: int = WEB_THREADS,
                 app: Flask | None = None):
        super().__init__(hub, host, port)
        self._loop: asyncio.AbstractEventLoop | None = None
        # granian binds when it starts serving: try the address now, to say what is wrong before anything runs.
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((self.host, self.port))
            except OSError as exc:
                raise ListenError(self.host, self.port, exc) from None
        server = hub.config.server
        connections = connection_limit(server.max_connections, threads)
        # granian logs that its embedded server is "experimental" at every start: it is what this runs on,
        # tested here (tests/test_server_hardening.py and every test that starts `hub serve` or `hub run`).
        logging.getLogger("_granian").setLevel(logging.ERROR)
        self._server = EmbeddedGranian(
            RsgiHub(app or create_app(hub=hub), threads, body_timeout_seconds=server.idle_timeout_seconds),
            address=self.host, port=self.port, interface=Interfaces.RSGI, websockets=False, log_enabled=False,
            backlog=GRANIAN_BACKLOG, backpressure=connections,
            http1_settings=HTTP1Settings(header_read_timeout=server.idle_timeout_seconds * 1000,
                                         max_buffer_size=MAX_HEADER_BYTES))

    def run(self) -> None:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
        freeze_startup_objects()

        async def serve() -> None:
            self._loop = asyncio.get_running_loop()
            if threading.current_thread() is threading.main_thread():   # a test may serve from a thread
                for signum in (signal.SIGTERM, signal.SIGINT):
                    self._loop.add_signal_handler(signum, self._server.stop)
            await self._server.serve()

        asyncio.run(serve())

    def stop(self) -> None:
        """Stop serving, from any thread (what SIGTERM does)."""
        if self._loop is not None:
            self._loop.call_soon_threadsafe(self._server.stop)


class WaitressServer(WebServer):
    """The web app on waitress ([server] engine = "waitress")."""

    def __init__(self, hub: Hub, host: str | None = None, port: int | None = None, threads: int = WEB_THREADS):
        super().__init__(hub, host, port)
        try:
            self._server = create_server(create_app(hub=hub), host=self.host, port=self.port, ident="leadhub",
                                         **waitress_settings(hub.config.server, threads))
        except OSError as exc:
            raise ListenError(self.host, self.port, exc) from None
        _quiet_waitress(self._server)

    def run(self) -> None:
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_SECONDS)
        freeze_startup_objects()

        def _stop(signum: int, _frame: Any) -> None:
            raise SystemExit(0)    # waitress's loop catches it and shuts its threads down

        signal.signal(signal.SIGTERM, _stop)
        self._server.run()
