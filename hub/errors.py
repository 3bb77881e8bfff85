"""Every error the hub raises on purpose, in one tree.

    HubError                 base of everything below
    ├── ConfigError          the configuration is wrong; carries every problem found, not just the first
    ├── SignatureError       a delivery failed its signature/token check: answered 401/403, never stored
    ├── PayloadError         fatal for one delivery: the body can't become a lead (bad JSON, no contact, ...).
    │                        The raw event is kept with status ``rejected`` and this message as the reason;
    │                        never retried, because retrying the same bytes gives the same answer.
    └── RetriableError       transient (a lock timeout, a provider hiccup): the worker retries with backoff
                             and marks the event ``dead`` after the configured number of attempts.

Connectors and mappings must raise only ``PayloadError`` for bad input; anything else that escapes
processing is treated as retriable, so a bug never silently drops a lead: it ends ``dead``, visible and
replayable.
"""

from __future__ import annotations

import logging
import threading
import time


class HubError(Exception):
    """Base class of every error the hub raises on purpose."""


class ConfigError(HubError):
    """The configuration is invalid. ``problems`` holds every ``path: message`` found."""

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


class SignatureError(HubError):
    """The delivery's signature or secret token did not verify."""

    def __init__(self, message: str, status: int = 403):
        self.status = status
        super().__init__(message)


class PayloadError(HubError):
    """This delivery can never become a lead; ``status`` is the HTTP status to answer it with."""

    def __init__(self, message: str, status: int = 422):
        self.status = status
        super().__init__(message)


class RetriableError(HubError):
    """A transient failure: try the same event again later."""


class FailureLog:
    """Logs a recurring failure once per kind and interval, with a count, instead of once per request.

    While the store is down every delivery fails the same way; a traceback a request wrote ~94,000 lines a
    process in 50 s (measured), burying the one line that says what is wrong. Now: the first failure of a
    kind logs its traceback, the others in the next ``interval_seconds`` are counted, and the first one
    after says how many there were; ``recovered()`` says when it ended.
    """

    def __init__(self, logger: logging.Logger, what: str, interval_seconds: float = 60.0):
        self._log, self._what, self._interval = logger, what, interval_seconds
        self._lock = threading.Lock()
        self._kinds: dict[str, tuple[float, int]] = {}      # kind -> (when last logged, failures since)

    def failed(self, exc: BaseException, context: str = "") -> None:
        kind = type(exc).__name__
        now = time.monotonic()
        with self._lock:
            last, since = self._kinds.get(kind, (0.0, 0))
            if last and now - last < self._interval:
                self._kinds[kind] = (last, since + 1)
                return
            self._kinds[kind] = (now, 0)
        more = f"; {since} more like it in the last {now - last:.0f} s" if since else ""
        self._log.error("%s%s: %s: %s%s", self._what, context, kind, exc, more, exc_info=not last)

    def recovered(self) -> None:
        """Say once that failures stopped (cheap when there were none: called on every success)."""
        if not self._kinds:
            return
        with self._lock:
            kinds, self._kinds = self._kinds, {}
        if kinds:
            counted = ", ".join(f"{kind} × {since + 1}" for kind, (_, since) in kinds.items())
            self._log.warning("%s works again (failures since the last report: %s)", self._what, counted)
