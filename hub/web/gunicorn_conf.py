"""gunicorn settings for the hub's web app with several workers, so that `/metrics` adds all of them up:

    export PROMETHEUS_MULTIPROC_DIR=/run/leadhub-metrics      # an empty directory the workers may write
    gunicorn -c python:hub.web.gunicorn_conf -w 4 -b 0.0.0.0:8000 'hub.web:create_app()'

The variable must be in the environment before gunicorn starts: prometheus_client chooses between memory
and the shared files when it is first imported, and importing this module already imports it (through
``hub.web``). Without the variable each scrape sees the one worker that answered it.
"""

from __future__ import annotations

import glob
import logging
import os
from typing import Any

from prometheus_client import multiprocess

from hub.web.metrics import MULTIPROCESS_DIR_ENV

log = logging.getLogger("hub.web.gunicorn")


def on_starting(server: Any) -> None:
    """Start from an empty directory: files of the previous run's workers would count as live ones."""
    directory = os.environ.get(MULTIPROCESS_DIR_ENV)
    if not directory:
        log.warning("%s is not set: with several workers each /metrics scrape shows one worker's latency "
                    "(set it to an empty writable directory before starting gunicorn)", MULTIPROCESS_DIR_ENV)
        return
    os.makedirs(directory, exist_ok=True)
    for stale in glob.glob(os.path.join(directory, "*.db")):
        os.remove(stale)


def child_exit(server: Any, worker: Any) -> None:
    """A worker is gone: drop its live-gauge files (its counters and histograms stay, as counters must)."""
    if os.environ.get(MULTIPROCESS_DIR_ENV):
        multiprocess.mark_process_dead(worker.pid)
