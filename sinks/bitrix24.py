"""Bitrix24 through an incoming webhook (``https://<portal>/rest/<user>/<secret>/``): ``crm.lead.add`` once,
``crm.lead.update`` after, with the source, UTM marks, phones, e-mails and the responsible user mapped from
our manager. The lead carries ORIGINATOR_ID "leadhub" and ORIGIN_ID = our lead id, so a retried create
first asks ``crm.lead.list`` whether the first try got through (its answer may have been lost).

Limits (cloud): a leaky bucket of about 50 requests, drained at 2 a second; past it the portal answers
503 ``QUERY_LIMIT_EXCEEDED``, which is retried. ``OVERLOAD_LIMIT`` (the portal blocked the app for heavy
load) is retried after ten minutes.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hub.sink import Delivered, Refused, SendAgain, Sink, SinkRequest, SinkResponse, SinkSettings, Step, retry_after

ORIGINATOR = "leadhub"
STATUS_IDS = {"new": "NEW", "in_work": "IN_PROCESS", "converted": "CONVERTED", "refused": "JUNK"}


class Bitrix24Settings(SinkSettings):
    webhook_url: str = Field(pattern=r"^https://[^/]+/rest/\d+/[^/]+/?$",
                             description="the incoming webhook: https://<portal>/rest/<user id>/<secret>/")
    users: dict[str, int] = Field({}, description="our manager's name → Bitrix24 user id (ASSIGNED_BY_ID)")
    source_id: str = Field("WEB", description="SOURCE_ID of the portal's source list")
    statuses: dict[str, str] = Field(STATUS_IDS, description="our status → the portal's STATUS_ID")


def _fields(lead: dict[str, Any], settings: Bitrix24Settings) -> dict[str, Any]:
    first = lead.get("first_touch") or {}
    title = lead.get("name") or (lead.get("phones") or lead.get("emails") or ["Lead"])[0]
    fields: dict[str, Any] = {
        "TITLE": f"{title} ({lead['source']})",
        "NAME": lead.get("name") or "",
        "SOURCE_ID": settings.source_id,
        "SOURCE_DESCRIPTION": lead["source"],
        "STATUS_ID": settings.statuses.get(lead["status"], "NEW"),
        "ORIGINATOR_ID": ORIGINATOR,
        "ORIGIN_ID": str(lead["id"]),
        "COMMENTS": first.get("message") or "",
        "PHONE": [{"VALUE": p, "VALUE_TYPE": "WORK"} for p in lead.get("phones", [])],
        "EMAIL": [{"VALUE": e, "VALUE_TYPE": "WORK"} for e in lead.get("emails", [])],
    }
    for key in ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term"):
        if first.get(key):
            fields[key.upper()] = first[key]
    if lead.get("owner") in settings.users:
        fields["ASSIGNED_BY_ID"] = settings.users[lead["owner"]]
    return fields


def _check(resp: SinkResponse) -> Any:
    """The ``result`` of a successful answer; else the right exception for the portal's error."""
    body = resp.json() if resp.body else None
    body = body if isinstance(body, dict) else {}
    error = str(body.get("error") or "")
    description = str(body.get("error_description") or "")[:300]
    if resp.status == 200 and not error and "result" in body:
        return body["result"]
    if error == "QUERY_LIMIT_EXCEEDED":
        raise SendAgain("Bitrix24: QUERY_LIMIT_EXCEEDED", retry_after(resp, 1.0))
    if error == "OVERLOAD_LIMIT":
        raise SendAgain("Bitrix24: OVERLOAD_LIMIT (the portal paused this webhook)", retry_after(resp, 600.0))
    if resp.status >= 500 or resp.status == 429:
        raise SendAgain(f"Bitrix24 answered {resp.status} {error}".strip(), retry_after(resp))
    if error in ("NO_AUTH_FOUND", "INVALID_CREDENTIALS", "expired_token", "invalid_token") or resp.status == 401:
        raise Refused(f"Bitrix24 refuses the webhook URL ({error or resp.status}): check webhook_url")
    raise Refused(f"Bitrix24 answered {resp.status} {error}: {description}".strip())


class Bitrix24Sink(Sink[Bitrix24Settings]):
    config_schema = Bitrix24Settings
    rate_per_second = 2.0
    burst = 50

    def secrets(self) -> list[str]:
        return [self.settings.webhook_url.rstrip("/").rsplit("/", 1)[-1]]

    def _call(self, method: str, params: dict[str, Any], then) -> Step:
        return Step(SinkRequest("POST", f"{self.settings.webhook_url.rstrip('/')}/{method}.json", json=params),
                    then)

    def start(self, lead: dict[str, Any], remote_id: str | None, delivery_id: int, retrying: bool,
              state: dict[str, Any]) -> Step:
        fields = _fields(lead, self.settings)
        if remote_id:
            return self._update(remote_id, fields)
        if retrying:
            return self._call("crm.lead.list", {"filter": {"ORIGINATOR_ID": ORIGINATOR, "ORIGIN_ID": str(lead["id"])},
                                                "select": ["ID"]},
                              lambda resp, st: self._looked_up(resp, fields))
        return self._add(fields)

    def _add(self, fields: dict[str, Any]) -> Step:
        def added(resp: SinkResponse, state: dict[str, Any]) -> Step:
            raise Delivered(str(_check(resp)))
        return self._call("crm.lead.add", {"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}}, added)

    def _update(self, remote_id: str, fields: dict[str, Any]) -> Step:
        def updated(resp: SinkResponse, state: dict[str, Any]) -> Step:
            _check(resp)
            raise Delivered(remote_id)
        return self._call("crm.lead.update", {"id": remote_id, "fields": fields}, updated)

    def _looked_up(self, resp: SinkResponse, fields: dict[str, Any]) -> Step:
        found = _check(resp)
        if isinstance(found, list) and found:
            return self._update(str(found[0]["ID"]), fields)     # the first try got through: update it
        return self._add(fields)
