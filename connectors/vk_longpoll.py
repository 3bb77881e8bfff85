"""VK communities without a public URL: the Bots Long Poll API, through ``vk_api``'s ``VkBotLongPoll``.

``groups.getLongPollServer`` gives a server, key and ``ts``; each poll asks the server for events after
``ts``. The hub owns the cursor (hub/intake/polling.py stores the events, then the new ts, in one
transaction): each poll sets the library's ``server``/``key``/``ts`` from the stored state, calls its
``check()`` once and hands back the events with the library's new cursor. ``check()`` follows VK's
``failed`` answers as documented: 1 — take the new ts; 2 — get a new key, keep the ts; 3 — get a new key
and ts. Events have the Callback API's shape and ``event_id``, so the fields and the dedup are the same as
connectors/vk.py.
"""

from __future__ import annotations

from typing import Any

import requests
import vk_api
from pydantic import BaseModel, ConfigDict, Field
from vk_api.bot_longpoll import VkBotLongPoll
from vk_api.exceptions import ApiError, VkApiError

from connectors.vk import LEAD_EVENTS, PROFILE_KEY, event_fields
from hub.connector import PollingConnector, PollResult, RawEvent
from hub.errors import RetriableError
from hub.vk_api_client import make_vk_api

# Errors that a person must fix: 5 the token is wrong or revoked, 15/27 it lacks the community's rights,
# 100 the long poll is off for the community (Manage community → API usage → Long Poll API).
NEEDS_SETTINGS = {5: "check access_token", 15: "the token needs the community's manage rights",
                  27: "use a community token", 100: "turn the Long Poll API on and check group_id"}


class VkLongPollSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access_token: str = Field(min_length=10, description="a community token with the manage rights")
    group_id: int
    api_url: str = "https://api.vk.com/method"
    api_version: str = "5.199"
    wait_seconds: int = Field(1, ge=0, le=90, description="how long each poll may wait for events")
    poll_seconds: float = Field(5, ge=1)
    region: str = "RU"


class _HubCursorLongPoll(VkBotLongPoll):
    """The library's long poll without its own idea of where it is: no server asked for on construction
    (the hub restores server, key and ts from its stored cursor before each check), and events kept as the
    raw dicts VK sent (the hub stores them as they came)."""

    def __init__(self, vk: vk_api.VkApi, group_id: int, wait: int, session: requests.Session):
        self.vk, self.group_id, self.wait, self.session = vk, group_id, wait, session
        self.url = self.key = self.server = self.ts = None

    def _parse_event(self, raw_event: Any) -> Any:
        return raw_event


class VkLongPollConnector(PollingConnector[VkLongPollSettings]):
    name = "vk_longpoll"
    config_schema = VkLongPollSettings
    default_mapping = "vk"

    def __init__(self, source: str, settings: VkLongPollSettings):
        super().__init__(source, settings)
        # The hub's VK client setup (hub/vk_api_client.py): its API address, timeouts (here the long poll's wait
        # and a margin), a community token's rate, no sleeping retries inside the library.
        vk = make_vk_api(settings.access_token, settings.api_url, settings.api_version,
                         timeout=settings.wait_seconds + 10)
        self.longpoll = _HubCursorLongPoll(vk, settings.group_id, settings.wait_seconds, vk.http)

    def poll(self, state: dict[str, Any]) -> PollResult:
        longpoll = self.longpoll
        try:
            if "key" in state:
                longpoll.server = longpoll.url = state["server"]
                longpoll.key, longpoll.ts = state["key"], state["ts"]
            else:
                longpoll.update_longpoll_server()
            updates = longpoll.check()
        except ApiError as exc:
            message = str(exc.error.get("error_msg") or "").replace(self.settings.access_token, "***")
            hint = NEEDS_SETTINGS.get(exc.code)
            raise RetriableError(f"VK groups.getLongPollServer: error {exc.code}: {message}"
                                 + (f" ({hint})" if hint else "")) from None
        except (VkApiError, requests.RequestException, ValueError, KeyError, TypeError) as exc:
            raise RetriableError(f"VK unreachable: {type(exc).__name__}") from None
        events = [RawEvent(external_id=f"event:{u['event_id']}",
                           payload={k: v for k, v in u.items() if k != PROFILE_KEY})
                  for u in updates if isinstance(u, dict) and u.get("type") in LEAD_EVENTS and u.get("event_id")]
        return PollResult(events=events, state={"server": longpoll.server, "key": longpoll.key, "ts": longpoll.ts})

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        return event_fields(payload, self.settings.region)
