"""Run real `hub` processes in tests: a free port, start, wait until healthy, stop."""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import requests

HUB = str(Path(sys.executable).with_name("hub"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*args: str) -> subprocess.Popen:
    # Output goes to a file, not a pipe: nobody reads a pipe until stop(), and a process whose log filled
    # the pipe's 64 KB would block in its next log line (with every thread that logs after it).
    log = tempfile.TemporaryFile(mode="w+", encoding="utf-8")  # noqa: SIM115 — it lives as long as the process
    proc = subprocess.Popen([HUB, *args], stdout=log, stderr=subprocess.STDOUT, text=True)
    proc.log = log
    return proc


def output(proc: subprocess.Popen) -> str:
    proc.log.seek(0)
    return proc.log.read()


def wait_healthy(proc: subprocess.Popen, port: int, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            if requests.get(f"http://127.0.0.1:{port}/healthz", timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        if proc.poll() is not None:
            raise AssertionError(f"hub exited with {proc.returncode}: {output(proc)}")
        if time.monotonic() > deadline:
            raise AssertionError(f"hub did not answer on port {port} within {timeout}s")
        time.sleep(0.1)


def stop(proc: subprocess.Popen) -> str:
    if proc.poll() is None:
        proc.terminate()
    proc.wait(timeout=30)
    text = output(proc)
    proc.log.close()
    return text
