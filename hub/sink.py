"""The sink interface: a plugin that forwards a routed lead to another system (a CRM, a webhook).

Like a connector, a sink is pure: it turns the lead (its public JSON and a few labels from the config,
hub.store.serialize.lead_for_sinks) into an HTTP request and reads the answer; the hub makes the request,
limits its rate across processes, retries and keeps dead letters (hub/outbox/forwarding.py). It never
imports Flask, SQLAlchemy or an HTTP client.

A sink registers in the ``leadhub.sinks`` entry-point group, built-in ones included (see pyproject.toml);
the entry point's key is its name, the ``type`` of a ``[[sinks]]`` table, and the class does not repeat it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from functools import cache
from importlib.metadata import entry_points
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

ENTRY_POINT_GROUP = "leadhub.sinks"


class SinkSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")


@dataclass
class SinkRequest:
    method: str
    url: str
    json: Any = None
    data: bytes | None = None
    headers: dict[str, str] = field(default_factory=dict)


@dataclass
class SinkResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        import json
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None


class Delivered(Exception):
    """Not an error: the lead is in the sink; ``remote_id`` is its id there (kept for later updates).
    ``remember``: as on a Step. ``again``: there is more to send than one delivery takes (a long backlog of
    notes): the hub queues the lead to this sink once more."""

    def __init__(self, remote_id: str | None, remember: dict[str, Any] | None = None, again: bool = False):
        super().__init__(remote_id)
        self.remote_id, self.remember, self.again = remote_id, remember, again


def retry_after(response: SinkResponse, default: float | None = None) -> float | None:
    """Seconds from a Retry-After header (the number form), else ``default``."""
    value = {k.lower(): v for k, v in response.headers.items()}.get("retry-after", "")
    try:
        return max(0.0, float(value))
    except ValueError:
        return default


class SendAgain(Exception):
    """A transient refusal (rate limit, 5xx, an expired token now refreshed): try again, after
    ``retry_after`` seconds if the sink said so."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


class Refused(Exception):
    """The sink will never take this request as it is (bad field, no permission): a dead letter."""


@dataclass
class Step:
    """What to do next: send ``request``; ``then(response, state)`` reads the answer and raises Delivered,
    SendAgain or Refused, or returns the next Step. ``state`` is the sink's shared, persisted state.

    A step may carry what the hub must store for this lead in this sink before the step's request goes
    out, so that a failure later in the conversation, or a crash, loses none of it: ``remote_id``, the lead
    now exists in the sink under this id (a create answered, notes follow); ``remember``, keys to keep (each
    replaces the stored key of its name) — what the answers so far established (the ids of the notes
    posted, so each goes once) and what this request is about to post (so that if its answer is lost, the
    next delivery asks the sink first). They are handed back to ``start_with_memory`` on every later
    delivery."""

    request: SinkRequest
    then: Callable[[SinkResponse, dict[str, Any]], Step]
    remote_id: str | None = None
    remember: dict[str, Any] | None = None


SinkSettingsT = TypeVar("SinkSettingsT", bound=SinkSettings)


class Sink(Generic[SinkSettingsT]):
    """Base of every sink, generic in its settings model, which it also names in ``config_schema``
    (``class WebhookSink(Sink[WebhookSettings])``). ``rate_per_second`` and ``burst`` are the provider's
    documented limits (a deployment may lower them). A delivery is a small conversation: ``start`` gives the
    first Step; each answer goes to the step's ``then`` (a lookup before a retried create, a token refresh
    before a retry). ``retrying`` is true when an earlier attempt may have reached the sink without us
    hearing back."""

    config_schema: ClassVar[type[SinkSettings]] = SinkSettings
    rate_per_second: ClassVar[float] = 5.0
    burst: ClassVar[int] = 5

    def __init__(self, sink_name: str, settings: SinkSettingsT):
        self.sink_name = sink_name
        self.settings = settings

    def start(self, lead: dict[str, Any], remote_id: str | None, delivery_id: int, retrying: bool,
              state: dict[str, Any]) -> Step:
        raise NotImplementedError

    def start_with_memory(self, lead: dict[str, Any], remote_id: str | None, remembered: dict[str, Any],
                          delivery_id: int, retrying: bool, state: dict[str, Any]) -> Step:
        """What the hub calls. ``remembered`` is what earlier deliveries of this lead to this sink kept
        (``Step.remember``); a sink that posts things once each (a CRM's notes) overrides this, the others
        implement ``start`` and keep nothing."""
        return self.start(lead, remote_id, delivery_id, retrying, state)

    def secrets(self) -> list[str]:
        """Values to scrub from stored errors and logs."""
        return []


@cache
def available_sinks() -> dict[str, type[Sink]]:
    found: dict[str, type[Sink]] = {}
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        cls = ep.load()
        if not (isinstance(cls, type) and issubclass(cls, Sink)):
            raise TypeError(f"entry point {ep.name!r} = {ep.value!r} is not a hub Sink subclass")
        found[ep.name] = cls
    return found
