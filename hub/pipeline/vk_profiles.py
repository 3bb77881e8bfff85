"""A VK sender's name and city, from ``users.get``, for the events a worker has just claimed.

VK's events carry only the sender's user id, so a lead from VK would be named "—". Before a worker opens
its processing transaction it calls ``add_vk_profiles`` on the claimed events: for every event of a source
with an ``access_token`` whose fields name a VK user, the profile is read from the ``vk_profile`` cache or
asked of VK (one ``users.get`` for the whole batch), and put into the event's payload — in memory only —
under ``PROFILE_KEY``, where the connector's ``fields`` reads it (connectors/vk.py). The mapping then names
the lead, a name the client typed winning over the profile's.

Why here and not in the pipeline's transaction: on SQLite a write transaction holds the one writer lock,
and a network call inside it would stop every other writer — the door's deliveries included — for as long
as VK takes. Why not at the door: VK wants its answer fast and never waits for a third party.

Nothing here can lose or hold up a lead: VK down, a bad token, a store that refuses the cache — each is
logged and the events go on unnamed. After a failure the token's lookups pause (``PAUSE_AFTER_FAILURE``),
so a VK outage costs one timeout, not one per batch.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from datetime import timedelta
from typing import Any

from sqlalchemy import select

from hub.runtime import Hub
from hub.store.db import dialect_insert, execute, transaction
from hub.store.models import VkProfile, utcnow
from hub.vk_api_client import VkClient, VkError, VkProfile as Profile, community_api

log = logging.getLogger("hub.pipeline.vk_profiles")

# The payload key connectors/vk.py reads (the hub may not import a connector: the literal is in both).
PROFILE_KEY = "_hub_vk_profile"
# People rarely rename themselves or move; a month-old name is still right, and a returning client's next
# message costs no call. A stale row is still used when VK cannot be asked.
PROFILE_MAX_AGE = timedelta(days=30)
# users.get answers in ~50-150 ms; the worker waits at most this long before routing the batch unnamed.
LOOKUP_TIMEOUT_SECONDS = 2.0
# After VK failed (down, slow, token revoked), batches go unnamed for this long instead of each waiting out
# the timeout: a 10-event batch every 2 s would cut a worker's pace to 5 leads/s during an outage.
PAUSE_AFTER_FAILURE = 60.0

_clients: dict[tuple[str, str, str], VkClient] = {}
_paused_until: dict[tuple[str, str, str], float] = {}
_lock = threading.Lock()


def _user_id(value: Any) -> int | None:
    """A VK user id (communities, negative, and chats have none to look up)."""
    try:
        user_id = int(str(value))
    except ValueError:
        return None
    return user_id if 0 < user_id < 2_000_000_000 else None


def _client(api: tuple[str, str, str]) -> VkClient:
    with _lock:
        if api not in _clients:
            _clients[api] = VkClient(api[0], api[1], api[2], timeout=LOOKUP_TIMEOUT_SECONDS)
        return _clients[api]


def add_vk_profiles(hub: Hub, events: Iterable[tuple[str, Any]]) -> None:
    """Put the VK sender's profile into each ``(source name, payload)`` whose source can ask VK. Payloads
    are changed in place; no transaction may be open in this thread (this makes network calls)."""
    wanted: dict[tuple[str, str, str], dict[int, list[dict[str, Any]]]] = {}
    for source_name, payload in events:
        source = hub.sources.get(source_name)
        if source is None or not isinstance(payload, dict):
            continue
        payload.pop(PROFILE_KEY, None)            # only ever the hub's own, fresh
        api = community_api(source.connector.settings)
        if api is None:
            continue
        try:
            user_id = _user_id(source.connector.fields(payload).get("vk_user_id"))
        except Exception:  # noqa: BLE001 — a payload the mapping will reject anyway: nothing to look up
            continue
        if user_id is not None:
            wanted.setdefault(api, {}).setdefault(user_id, []).append(payload)
    if not wanted:
        return
    profiles = _profiles(hub, wanted)
    for by_user in wanted.values():
        for user_id, payloads in by_user.items():
            profile = profiles.get(user_id)
            if profile is not None and (profile.name or profile.city):
                for payload in payloads:
                    payload[PROFILE_KEY] = {"name": profile.name, "city": profile.city}


def _profiles(hub: Hub, wanted: dict[tuple[str, str, str], dict[int, list[dict[str, Any]]]]) -> dict[int, Profile]:
    """The cached profiles, the missing or stale ones asked of VK (and cached)."""
    user_ids = sorted({user_id for by_user in wanted.values() for user_id in by_user})
    now = utcnow()
    try:
        with transaction(hub.processing_engine, read_only=True) as session:
            rows = session.execute(select(VkProfile.user_id, VkProfile.name, VkProfile.city, VkProfile.fetched_at)
                                   .where(VkProfile.user_id.in_(user_ids))).all()
    except Exception as exc:  # noqa: BLE001 — the lead matters more than its name
        log.warning("VK profiles: the cache could not be read (%s); asking VK", type(exc).__name__)
        rows = []
    profiles = {row.user_id: Profile(row.name, row.city) for row in rows}
    fresh = {row.user_id for row in rows if row.fetched_at >= now - PROFILE_MAX_AGE}
    fetched: dict[int, Profile] = {}
    for api, by_user in wanted.items():
        missing = [user_id for user_id in by_user if user_id not in fresh]
        if missing:
            fetched.update(_ask_vk(api, missing))
    if fetched:
        _store(hub, fetched)
    return {**profiles, **fetched}


def _ask_vk(api: tuple[str, str, str], user_ids: list[int]) -> dict[int, Profile]:
    with _lock:
        if _paused_until.get(api, 0.0) > time.monotonic():
            return {}
    started = time.monotonic()
    try:
        found = _client(api).users_get(user_ids)
    except VkError as exc:
        with _lock:
            _paused_until[api] = time.monotonic() + PAUSE_AFTER_FAILURE
        # VkError never carries the token; user ids are not contacts.
        log.warning("VK users.get for %s sender(s) failed after %.1f s: %s; leads go on unnamed, lookups pause "
                    "for %.0f s%s", len(user_ids), time.monotonic() - started, exc.message, PAUSE_AFTER_FAILURE,
                    "" if exc.retriable else " (check the source's access_token)")
        return {}
    # An id VK did not return (a deleted page) is cached as nameless: it is not asked again for a month.
    return {user_id: found.get(user_id, Profile(None, None)) for user_id in user_ids}


def _store(hub: Hub, fetched: dict[int, Profile]) -> None:
    now = utcnow()
    rows = [{"user_id": user_id, "name": p.name[:255] if p.name else None, "city": p.city[:255] if p.city else None,
             "fetched_at": now} for user_id, p in sorted(fetched.items())]
    try:
        with transaction(hub.processing_engine) as session:
            stmt = dialect_insert(session)(VkProfile.__table__)
            execute(session, stmt.on_conflict_do_update(
                index_elements=["user_id"], set_={"name": stmt.excluded.name, "city": stmt.excluded.city,
                                                  "fetched_at": stmt.excluded.fetched_at}), rows)
    except Exception as exc:  # noqa: BLE001 — the next lead of the same sender asks VK again, that is all
        log.warning("VK profiles: caching %s profile(s) failed: %s", len(rows), type(exc).__name__)


def forget_vk_profiles(session: Any, user_ids: Iterable[Any]) -> None:
    """Drop cached profiles: a person forgotten (hub/pipeline/persons.py forget_person) takes their VK name
    and city with them; call it with their "vk" keys' values before the keys are deleted."""
    ids = [i for i in (_user_id(u) for u in user_ids) if i is not None]
    if ids:
        session.execute(VkProfile.__table__.delete().where(VkProfile.__table__.c.user_id.in_(ids)))


def reset() -> None:
    """Forget clients and pauses (tests start each from a clean slate)."""
    with _lock:
        _clients.clear()
        _paused_until.clear()
