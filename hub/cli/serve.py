"""Running the hub: `hub run` (everything in one process), `hub serve`, `hub worker` and `hub scheduler`
(its parts), and `hub poll` (the polling sources, now)."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import click

from hub.cli.common import config_option, fail, json_option, open_hub, print_json
from hub.runtime import Hub

if TYPE_CHECKING:
    from hub.processes import WebServer


def _listening(hub: Hub, host: str | None, port: int | None, threads: int) -> WebServer:
    # Imported here, as every command imports what it runs: the web app stays unloaded for `hub leads list`.
    from hub.processes import ListenError, web_server

    try:
        return web_server(hub, host, port, threads)
    except ListenError as exc:
        if exc.port_in_use:
            fail(f"port {exc.port} on {exc.host} is in use: stop what holds it or pick another with --port "
                 "or [server] port")
        fail(str(exc))


def _serve(server: WebServer, running: str = "") -> None:
    for line in server.banner(running):
        click.echo(line, err=True)
    server.run()


@click.command()
@config_option
@click.option("--host", help="Listen address (default: [server] host).")
@click.option("--port", type=int, help="Listen port (default: [server] port, 8000).")
@click.option("--workers", type=int, help="Worker threads (default: [worker] threads).")
def run(config_path: str, host: str | None, port: int | None, workers: int | None) -> None:
    """Web, workers and scheduler in one process: the embedded default."""
    from hub.processes import WEB_THREADS, background_threads

    hub = open_hub(config_path)
    server = _listening(hub, host, port, threads=WEB_THREADS)
    count = workers or hub.config.worker.threads
    with background_threads(hub, count, scheduler=True, beside_web=True):
        _serve(server, running=f" with {count} worker(s), database {hub.engine.url!r}")


@click.command()
@config_option
@click.option("--host")
@click.option("--port", type=int)
@click.option("--threads", type=int, default=32, show_default=True,
              help="Threads for the pages and the API (the webhook door runs on granian's event loop); with "
                   "[server] engine = \"waitress\", its HTTP threads, which bound the group commit "
                   "(hub/processes.py, WEB_THREADS).")
def serve(config_path: str, host: str | None, port: int | None, threads: int) -> None:
    """Only the web part (run `hub worker` separately)."""
    hub = open_hub(config_path)
    _serve(_listening(hub, host, port, threads))


@click.command()
@config_option
@click.option("--threads", type=int, help="Worker threads (default: [worker] threads).")
@click.option("--once", is_flag=True, help="Process what is waiting now, then exit.")
def worker(config_path: str, threads: int | None, once: bool) -> None:
    """Process stored events into leads."""
    from hub.pipeline.worker import Worker
    from hub.processes import background_threads, wait_for_stop

    hub = open_hub(config_path)
    if once:
        click.echo(f"processed {Worker(hub).drain()} event(s)", err=True)
        return
    with background_threads(hub, threads or hub.config.worker.threads) as stop:
        wait_for_stop(stop)


@click.command()
@config_option
@click.option("--once", is_flag=True, help="One round (if this process is the leader), then exit.")
def scheduler(config_path: str, once: bool) -> None:
    """Scheduled jobs (SLA reassignment). Run any number: one leader works, the others stand by."""
    from hub.processes import background_threads, wait_for_stop
    from hub.scheduler import Scheduler

    hub = open_hub(config_path)
    if once:
        done = Scheduler(hub).tick()
        click.echo("not the leader: another scheduler holds the lease" if done is None
                   else f"{len(done)} lead(s) reassigned or escalated", err=True)
        return
    # No workers, but a notifier, so the scheduler's reassignments are announced.
    with background_threads(hub, 0, scheduler=True) as stop:
        wait_for_stop(stop)


@click.command()
@config_option
@json_option
@click.argument("source_names", nargs=-1)
def poll(config_path: str, as_json: bool, source_names: tuple[str, ...]) -> None:
    """Poll polling sources (IMAP inboxes, …) now: all of them, or those named."""
    from hub.intake.polling import poll_source, polling_sources

    hub = open_hub(config_path)
    sources = polling_sources(hub)
    if source_names:
        unknown = set(source_names) - {s.name for s in sources}
        if unknown:
            fail(f"not polling sources: {', '.join(sorted(unknown))} "
                 f"(polling sources: {', '.join(s.name for s in sources) or 'none'})")
        sources = [s for s in sources if s.name in source_names]
    reports = [poll_source(hub, s) for s in sources]
    if as_json:
        print_json([r.__dict__ for r in reports])
    else:
        for r in reports:
            click.echo(f"{r.source}: " + (f"failed: {r.error}" if r.error else f"{r.fetched} fetched, {r.stored} new"))
    if any(r.error for r in reports):
        sys.exit(1)
