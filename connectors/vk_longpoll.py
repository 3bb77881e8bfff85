"""VK communities without a public URL: the Bots Long Poll API.

``groups.getLongPollServer`` gives a server, key and ``ts``; each poll asks the server for events after
``ts`` (kept by the hub as this source's cursor). Events have the Callback API's shape and ``event_id``, so
the fields and the dedup are the same as connectors/vk.py. VK's ``failed`` answers are followed as
documented: 1 — take the new ts; 2 — get a new key; 3 — get a new key and ts.
"""

from __future__ import annotations

from typing import Any

import requests
from pydantic import BaseModel, ConfigDict, Field

from connectors.vk import LEAD_EVENTS, event_fields
from hub.connector import PollingConnector, PollResult, RawEvent
from hub.errors import RetriableError


class VkLongPollSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    access_token: str = Field(min_length=10, description="a community token with the manage rights")
    group_id: int
    api_url: str = "https://api.vk.com/method"
    api_version: str = "5.199"
    wait_seconds: int = Field(1, ge=0, le=90, description="how long each poll may wait for events")
    poll_seconds: float = Field(5, ge=1)
    region: str = "RU"


class VkLongPollConnector(PollingConnector[VkLongPollSettings]):
    name = "vk_longpoll"
    config_schema = VkLongPollSettings
    default_mapping = "vk"

    def __init__(self, source: str, settings: VkLongPollSettings):
        super().__init__(source, settings)
        self.http = requests.Session()

    def _get(self, url: str, params: dict[str, Any]) -> dict[str, Any]:
        try:
            resp = self.http.get(url, params=params, timeout=self.settings.wait_seconds + 10)
            return resp.json()
        except (requests.RequestException, ValueError) as exc:
            raise RetriableError(f"VK unreachable: {type(exc).__name__}") from None

    def _server(self) -> dict[str, Any]:
        body = self._get(f"{self.settings.api_url.rstrip('/')}/groups.getLongPollServer", {
            "group_id": self.settings.group_id, "access_token": self.settings.access_token,
            "v": self.settings.api_version})
        if "error" in body:
            raise RetriableError(f"VK groups.getLongPollServer: {body['error'].get('error_msg', body['error'])}")
        return body["response"]

    def poll(self, state: dict[str, Any]) -> PollResult:
        server: dict[str, Any] = ({k: state[k] for k in ("server", "key", "ts") if k in state} if "key" in state
                                  else self._server())
        body = self._get(server["server"], {"act": "a_check", "key": server["key"], "ts": server["ts"],
                                            "wait": self.settings.wait_seconds})
        failed = body.get("failed")
        if failed == 1:
            return PollResult(events=[], state={**server, "ts": body["ts"]})
        if failed in (2, 3):
            fresh = self._server()
            return PollResult(events=[], state={**fresh, "ts": server["ts"] if failed == 2 else fresh["ts"]})
        events = [RawEvent(external_id=f"event:{u['event_id']}", payload=u) for u in body.get("updates", [])
                  if u.get("type") in LEAD_EVENTS and u.get("event_id")]
        return PollResult(events=events, state={**server, "ts": body.get("ts", server["ts"])})

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        return event_fields(payload, self.settings.region)
