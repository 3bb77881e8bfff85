"""Tilda forms (Tilda → Site settings → Forms → Webhook).

Tilda posts the form urlencoded (JSON if so set), with fields named by the form, ``tranid`` as its
request id and, with "send cookies" on, the TILDAUTM cookie inside ``COOKIES``. On adding the webhook it
posts ``test=test`` and expects a 200: answered, nothing stored. It has no signature: the URL carries a
secret token (``?token=…``), or Tilda's "API key" field does. A retry (Tilda retries twice, a minute apart,
without an answer within 5 s) has the same ``tranid``: stored once.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from connectors.site_form import check_token, given_token, submitted_fields
from hub.connector import InboundRequest, RawEvent, WebhookConnector, WebhookReply, WebhookResult
from hub.errors import PayloadError


class TildaSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=16, description="secret in the webhook URL (?token=…) or Tilda's API key field")
    api_key_field: str = Field("api_key", description="form field Tilda puts the API key in")


OK = WebhookReply(200, "ok")


class TildaConnector(WebhookConnector[TildaSettings]):
    """Reads the form as a site form does (connectors/site_form.py), with Tilda's own id and API key."""

    name = "tilda"
    config_schema = TildaSettings
    default_mapping = "tilda"

    def verify(self, request: InboundRequest) -> None:
        given = given_token(request)
        if not given and self._body_fields(request).get(self.settings.api_key_field):
            given = str(self._body_fields(request)[self.settings.api_key_field])
        check_token(given, self.settings.token)

    @staticmethod
    def _body_fields(request: InboundRequest) -> dict[str, Any]:
        try:
            return submitted_fields(request)
        except PayloadError:
            return {}

    def receive(self, request: InboundRequest, received_at: datetime) -> WebhookResult:
        fields = submitted_fields(request)
        fields.pop(self.settings.api_key_field, None)
        if fields == {"test": "test"}:
            return WebhookResult(events=[], reply=OK)        # Tilda checking the URL when it is added
        tranid = str(fields.get("tranid") or "").strip()
        return WebhookResult(events=[RawEvent(external_id=f"tranid:{tranid}" if tranid else None, payload=fields)],
                             reply=OK)
