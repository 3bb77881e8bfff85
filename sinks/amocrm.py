"""amoCRM (API v4): a lead with its contact, tags and UTM fields in one ``POST /api/v4/leads/complex``;
``PATCH /api/v4/leads/{id}`` after (responsible user, tags). Authorisation by a long-lived token, or by
OAuth: on 401 the access token is refreshed with the refresh token (amoCRM rotates it: the new pair is
kept in the sink's state, shared by every process) and the request is made again.

amoCRM has no external id for leads, so the lead's name carries a marker ``[leadhub-<id>]``: a retried
create first searches for it (the first try's answer may have been lost) and updates what it finds.
Limits: 7 requests a second per account; 429 is retried.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from pydantic import Field, model_validator

from hub.sink import Delivered, Refused, SendAgain, Sink, SinkRequest, SinkResponse, SinkSettings, Step, retry_after


class AmoCrmSettings(SinkSettings):
    base_url: str = Field(pattern=r"^https://[^/]+$", description="https://<subdomain>.amocrm.ru")
    access_token: str | None = Field(None, description="a long-lived token, or the first OAuth access token")
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    redirect_uri: str | None = None
    users: dict[str, int] = Field({}, description="our manager's name → amoCRM user id")
    pipeline_id: int | None = None
    statuses: dict[str, int] = Field({}, description="our status → the pipeline's status_id (optional)")

    @model_validator(mode="after")
    def _auth(self) -> AmoCrmSettings:
        oauth = (self.client_id, self.client_secret, self.refresh_token, self.redirect_uri)
        if not self.access_token and not all(oauth):
            raise ValueError("give access_token (long-lived), or client_id, client_secret, refresh_token and "
                             "redirect_uri (OAuth)")
        if any(oauth) and not all(oauth):
            raise ValueError("OAuth needs all of client_id, client_secret, refresh_token and redirect_uri")
        return self


def marker(lead_id: int) -> str:
    return f"[leadhub-{lead_id}]"


def _values(*values: str, enum: str | None = None) -> list[dict[str, Any]]:
    return [{"value": v, **({"enum_code": enum} if enum else {})} for v in values]


def _lead_body(lead: dict[str, Any], settings: AmoCrmSettings) -> dict[str, Any]:
    first = lead.get("first_touch") or {}
    title = lead.get("name") or (lead.get("phones") or lead.get("emails") or ["Lead"])[0]
    contact_fields = []
    if lead.get("phones"):
        contact_fields.append({"field_code": "PHONE", "values": _values(*lead["phones"], enum="WORK")})
    if lead.get("emails"):
        contact_fields.append({"field_code": "EMAIL", "values": _values(*lead["emails"], enum="WORK")})
    utm = [{"field_code": key.upper(), "values": _values(first[key])}
           for key in ("utm_source", "utm_medium", "utm_campaign", "utm_content", "utm_term") if first.get(key)]
    body: dict[str, Any] = {
        "name": f"{title} {marker(lead['id'])}",
        "custom_fields_values": utm or None,
        "_embedded": {"tags": [{"name": t} for t in [lead["source"], lead.get("warmth")] if t],
                      "contacts": [{"first_name": lead.get("name") or title,
                                    "custom_fields_values": contact_fields or None}]},
    }
    if lead.get("owner") in settings.users:
        body["responsible_user_id"] = settings.users[lead["owner"]]
    if settings.pipeline_id:
        body["pipeline_id"] = settings.pipeline_id
    if lead["status"] in settings.statuses:
        body["status_id"] = settings.statuses[lead["status"]]
    return {k: v for k, v in body.items() if v is not None}


class AmoCrmSink(Sink[AmoCrmSettings]):
    config_schema = AmoCrmSettings
    rate_per_second = 7.0
    burst = 7

    def secrets(self) -> list[str]:
        s = self.settings
        return [x for x in (s.access_token, s.client_secret, s.refresh_token) if x]

    def _token(self, state: dict[str, Any]) -> str:
        return state.get("access_token") or self.settings.access_token or ""

    def _request(self, method: str, path: str, state: dict[str, Any], json: Any = None) -> SinkRequest:
        return SinkRequest(method, f"{self.settings.base_url}{path}", json=json,
                           headers={"Authorization": f"Bearer {self._token(state)}"})

    def _step(self, method: str, path: str, state: dict[str, Any], then, json: Any = None,
              refreshed: bool = False) -> Step:
        """A request whose 401 is answered by one token refresh and the same request again."""
        def read(resp: SinkResponse, st: dict[str, Any]) -> Step:
            if resp.status == 401:
                if refreshed or not self.settings.refresh_token:
                    raise Refused("amoCRM: 401, the token is not accepted: give a new access_token "
                                  "(or OAuth refresh settings)")
                return self._refresh(st, lambda st2: self._step(method, path, st2, then, json, refreshed=True))
            return then(resp, st)
        return Step(self._request(method, path, state, json), read)

    def _refresh(self, state: dict[str, Any], again) -> Step:
        """Exchange the refresh token (the newest one, from the shared state) for a new pair."""
        s = self.settings

        def refreshed(resp: SinkResponse, st: dict[str, Any]) -> Step:
            body = resp.json() if resp.status == 200 else None
            if not isinstance(body, dict) or not body.get("access_token"):
                if resp.status >= 500 or resp.status == 429:
                    raise SendAgain(f"amoCRM token refresh answered {resp.status}", retry_after(resp))
                raise Refused(f"amoCRM refused the refresh token ({resp.status}): authorise the integration again")
            st["access_token"] = body["access_token"]
            st["refresh_token"] = body.get("refresh_token") or st.get("refresh_token")
            return again(st)

        return Step(SinkRequest("POST", f"{s.base_url}/oauth2/access_token", json={
            "client_id": s.client_id, "client_secret": s.client_secret, "grant_type": "refresh_token",
            "refresh_token": state.get("refresh_token") or s.refresh_token, "redirect_uri": s.redirect_uri}),
            refreshed)

    def start(self, lead: dict[str, Any], remote_id: str | None, delivery_id: int, retrying: bool,
              state: dict[str, Any]) -> Step:
        body = _lead_body(lead, self.settings)
        if remote_id:
            return self._update(remote_id, body, state)
        if retrying:
            return self._step("GET", f"/api/v4/leads?query={quote(marker(lead['id']))}", state,
                              lambda resp, st: self._looked_up(resp, st, lead, body))
        return self._create(body, state)

    def _create(self, body: dict[str, Any], state: dict[str, Any]) -> Step:
        def created(resp: SinkResponse, st: dict[str, Any]) -> Step:
            _raise_for(resp)
            answer = resp.json()
            if isinstance(answer, list) and answer and answer[0].get("id"):
                raise Delivered(str(answer[0]["id"]))
            raise SendAgain(f"amoCRM answered {resp.status} without a lead id")
        return self._step("POST", "/api/v4/leads/complex", state, created, json=[body])

    def _update(self, remote_id: str, body: dict[str, Any], state: dict[str, Any]) -> Step:
        patch = {k: v for k, v in body.items() if k in ("responsible_user_id", "status_id", "pipeline_id")}
        patch["_embedded"] = {"tags": body["_embedded"]["tags"]}

        def updated(resp: SinkResponse, st: dict[str, Any]) -> Step:
            _raise_for(resp)
            raise Delivered(remote_id)
        return self._step("PATCH", f"/api/v4/leads/{remote_id}", state, updated, json=patch)

    def _looked_up(self, resp: SinkResponse, state: dict[str, Any], lead: dict[str, Any],
                   body: dict[str, Any]) -> Step:
        if resp.status == 204:                          # amoCRM's answer to a search with no result
            return self._create(body, state)
        _raise_for(resp)
        found = ((resp.json() or {}).get("_embedded") or {}).get("leads") or []
        mine = [f for f in found if marker(lead["id"]) in (f.get("name") or "")]   # the search is fuzzy
        if mine:
            return self._update(str(mine[0]["id"]), body, state)
        return self._create(body, state)


def _raise_for(resp: SinkResponse) -> None:
    if 200 <= resp.status < 300:
        return
    if resp.status == 429 or resp.status >= 500:
        raise SendAgain(f"amoCRM answered {resp.status}", retry_after(resp, 1.0 if resp.status == 429 else None))
    if resp.status == 402:
        raise SendAgain("amoCRM answered 402: the account is not paid", 3600.0)
    body = resp.json()
    detail = ""
    if isinstance(body, dict):
        detail = str(body.get("validation-errors") or body.get("detail") or body.get("title") or "")[:300]
    raise Refused(f"amoCRM answered {resp.status}: {detail}".strip())
