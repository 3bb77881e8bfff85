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
