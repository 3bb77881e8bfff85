"""A signed outbound webhook per Standard Webhooks (https://www.standardwebhooks.com/): POST JSON with
``webhook-id`` (stable across retries, so the receiver can drop a repeat), ``webhook-timestamp`` and
``webhook-signature`` = ``v1,`` + base64(HMAC-SHA256(key, "<id>.<timestamp>.<body>")), where the key is the
base64 after ``whsec_`` in the secret."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from pydantic import Field, field_validator

from hub.sink import Delivered, Refused, SendAgain, Sink, SinkRequest, SinkResponse, SinkSettings, Step, retry_after


class WebhookSettings(SinkSettings):
    url: str = Field(pattern=r"^https?://", description="where to POST")
    secret: str = Field(min_length=24, description='"whsec_" + base64 of 24+ random bytes')

    @field_validator("secret")
    @classmethod
    def _whsec(cls, v: str) -> str:
        if not v.startswith("whsec_"):
            raise ValueError('write it as "whsec_" followed by base64 (e.g. whsec_ + `openssl rand -base64 32`)')
        try:
            if len(base64.b64decode(v[6:], validate=True)) < 24:
                raise ValueError
        except ValueError:
            raise ValueError("the part after whsec_ must be base64 of at least 24 bytes") from None
        return v


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    key = base64.b64decode(secret.removeprefix("whsec_"))
    digest = hmac.new(key, f"{msg_id}.{timestamp}.".encode() + body, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


class WebhookSink(Sink[WebhookSettings]):
    config_schema = WebhookSettings
    rate_per_second = 10.0
    burst = 10

    def secrets(self) -> list[str]:
        return [self.settings.secret]

    def start(self, lead: dict[str, Any], remote_id: str | None, delivery_id: int, retrying: bool,
              state: dict[str, Any]) -> Step:
        msg_id = f"msg_leadhub_{self.sink_name}_{delivery_id}"
        timestamp = int(time.time())
        body = json.dumps({"type": "lead.updated" if remote_id else "lead.created",
                           "timestamp": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(timestamp)),
                           "data": lead}, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
                   "webhook-signature": sign(self.settings.secret, msg_id, timestamp, body)}
        return Step(SinkRequest("POST", self.settings.url, data=body, headers=headers),
                    lambda resp, st: self._answered(resp, lead))

    def _answered(self, resp: SinkResponse, lead: dict[str, Any]) -> Step:
        if 200 <= resp.status < 300:
            raise Delivered(str(lead["id"]))
        if resp.status in (408, 425, 429) or resp.status >= 500:
            raise SendAgain(f"webhook answered {resp.status}", retry_after(resp))
        raise Refused(f"webhook answered {resp.status}: {resp.body[:300].decode('utf-8', 'replace')}")
