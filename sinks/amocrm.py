"""amoCRM (API v4): a lead with its contact, tags and UTM fields in one ``POST /api/v4/leads/complex``;
``PATCH /api/v4/leads/{id}`` after (responsible user, tags). Authorisation by a long-lived token, or by
OAuth: on 401 the access token is refreshed with the refresh token (amoCRM rotates it: the new pair is
kept in the sink's state, shared by every process) and the request is made again.

amoCRM has no external id for leads, so the lead's name carries a marker ``[leadhub-<id>]``: a retried
create first searches for it (the first try's answer may have been lost) and updates what it finds.
Limits: 7 requests a second per account; 429 is retried.

What managers record in the hub goes too: the tags (``_embedded.tags``, beside the source and the warmth),
the deal's amount (``price``), the status and a refusal's reason (``loss_reason_id`` where ``loss_reasons``
maps our code to the account's reason; else a note saying it), and the notes, as "common" notes on the lead
(``POST /api/v4/leads/{id}/notes``, all new ones in one request). Each note goes once: the ids posted are
remembered per lead (sinks/once.py) when amoCRM answers, so a failed post is retried and a posted note never
posted again. A post whose answer was lost (a timeout: did amoCRM take it?) is looked for among the lead's
latest notes before the next delivery posts anything; found, it counts as posted.

Status: amoCRM's won (142) and lost (143) are the same in every pipeline, so converted and refused reach
amoCRM without any settings — a manager who closes a lead in the hub expects it closed in the CRM; the
other statuses are the pipeline's own numbers and go only where ``statuses`` names them.
"""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal
from typing import Any
from urllib.parse import quote

from pydantic import Field, model_validator

from hub.sink import Delivered, Refused, SendAgain, Sink, SinkRequest, SinkResponse, SinkSettings, Step, retry_after
from sinks.once import plain, posted_already, refusal_due, refusal_text, signed, unsent_notes


class AmoCrmSettings(SinkSettings):
    base_url: str = Field(pattern=r"^https://[^/]+$", description="https://<subdomain>.amocrm.ru")
    access_token: str | None = Field(None, description="a long-lived token, or the first OAuth access token")
    client_id: str | None = None
    client_secret: str | None = None
    refresh_token: str | None = None
    redirect_uri: str | None = None
    users: dict[str, int] = Field({}, description="our manager's name → amoCRM user id")
    pipeline_id: int | None = None
    statuses: dict[str, int] = Field({}, description="our status → the pipeline's status_id; converted and "
                                                     "refused are amoCRM's won (142) and lost (143) unless named")
    loss_reasons: dict[str, int] = Field({}, description="our refusal reason code → the account's loss_reason_id; "
                                                         "a reason not here goes as a note")

    @model_validator(mode="after")
    def _auth(self) -> AmoCrmSettings:
        oauth = (self.client_id, self.client_secret, self.refresh_token, self.redirect_uri)
        if not self.access_token and not all(oauth):
            raise ValueError("give access_token (long-lived), or client_id, client_secret, refresh_token and "
                             "redirect_uri (OAuth)")
        if any(oauth) and not all(oauth):
            raise ValueError("OAuth needs all of client_id, client_secret, refresh_token and redirect_uri")
        return self


# amoCRM's closed statuses, the same ids in every pipeline.
WON, LOST = 142, 143
SYSTEM_STATUSES = {"converted": WON, "refused": LOST}
# Notes posted in one request; more ask for another delivery (Delivered.again). amoCRM takes up to 250
# entities a request; 50 keeps the request small and is far more than a lead gathers between two changes.
NOTES_PER_DELIVERY = 50


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
        "_embedded": {"tags": _tags(lead),
                      "contacts": [{"first_name": lead.get("name") or title,
                                    "custom_fields_values": contact_fields or None}]},
    }
    if lead.get("owner") in settings.users:
        body["responsible_user_id"] = settings.users[lead["owner"]]
    if settings.pipeline_id:
        body["pipeline_id"] = settings.pipeline_id
    status_id = {**SYSTEM_STATUSES, **settings.statuses}.get(lead["status"])
    if status_id:
        body["status_id"] = status_id
    if lead["status"] == "refused" and lead.get("refuse_reason") in settings.loss_reasons:
        body["loss_reason_id"] = settings.loss_reasons[lead["refuse_reason"]]
    if lead.get("amount") is not None:
        # amoCRM's price is a whole number in the account's currency: the amount rounded to it.
        body["price"] = int(Decimal(lead["amount"]).quantize(Decimal(1), rounding=ROUND_HALF_UP))
    return {k: v for k, v in body.items() if v is not None}


def _tags(lead: dict[str, Any]) -> list[dict[str, str]]:
    """The source and the warmth (as before), then the managers' tags, once each (amoCRM's tags ignore case)."""
    seen: dict[str, str] = {}
    for tag in [lead["source"], lead.get("warmth"), *(lead.get("tags") or [])]:
        if tag:
            seen.setdefault(tag.casefold(), tag)
    return [{"name": t} for t in seen.values()]


def notes_to_post(lead: dict[str, Any], remembered: dict[str, Any],
                  settings: AmoCrmSettings) -> tuple[list[dict[str, Any]], dict[str, Any], bool]:
    """The notes not posted yet (amoCRM's shape), what to remember once they are, and whether more are
    left than one request posts. A refusal whose reason has no loss_reason_id is told by a note too, once."""
    pending = unsent_notes(lead, remembered)
    more = len(pending) > NOTES_PER_DELIVERY
    pending = pending[:NOTES_PER_DELIVERY]
    notes = [{"note_type": "common", "params": {"text": signed(n)}} for n in pending]
    remember: dict[str, Any] = {}
    if pending:
        remember["notes"] = sorted({*(remembered.get("notes") or []), *(n["id"] for n in pending)})
    key = refusal_due(lead, remembered)
    if key and lead["refuse_reason"] not in settings.loss_reasons:
        notes.append({"note_type": "common", "params": {"text": refusal_text(lead)}})
        remember["refusal"] = key
    return notes, remember, more


# The notes to post (amoCRM's shape), what to remember once they are, whether more are left.
Notes = tuple[list[dict[str, Any]], dict[str, Any], bool]


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
        return self.start_with_memory(lead, remote_id, {}, delivery_id, retrying, state)

    def start_with_memory(self, lead: dict[str, Any], remote_id: str | None, remembered: dict[str, Any],
                          delivery_id: int, retrying: bool, state: dict[str, Any]) -> Step:
        body = _lead_body(lead, self.settings)
        if remote_id and remembered.get("in_flight"):
            return self._look_for_notes(remote_id, lead, body, remembered, state)
        notes = notes_to_post(lead, remembered, self.settings)
        if remote_id:
            return self._update(remote_id, body, state, notes)
        if retrying:
            return self._step("GET", f"/api/v4/leads?query={quote(marker(lead['id']))}", state,
                              lambda resp, st: self._looked_up(resp, st, lead, body, notes))
        return self._create(body, state, notes)

    def _create(self, body: dict[str, Any], state: dict[str, Any], notes: Notes) -> Step:
        def created(resp: SinkResponse, st: dict[str, Any]) -> Step:
            _raise_for(resp)
            answer = resp.json()
            if isinstance(answer, list) and answer and answer[0].get("id"):
                return self._notes(str(answer[0]["id"]), st, notes, created=True)
            raise SendAgain(f"amoCRM answered {resp.status} without a lead id")
        return self._step("POST", "/api/v4/leads/complex", state, created, json=[body])

    def _update(self, remote_id: str, body: dict[str, Any], state: dict[str, Any], notes: Notes) -> Step:
        patch = {k: v for k, v in body.items()
                 if k in ("responsible_user_id", "status_id", "pipeline_id", "price", "loss_reason_id")}
        patch["_embedded"] = {"tags": body["_embedded"]["tags"]}

        def updated(resp: SinkResponse, st: dict[str, Any]) -> Step:
            _raise_for(resp)
            return self._notes(remote_id, st, notes)
        return self._step("PATCH", f"/api/v4/leads/{remote_id}", state, updated, json=patch)

    def _notes(self, remote_id: str, state: dict[str, Any], notes: Notes, created: bool = False) -> Step:
        """The new notes in one request, then Delivered with what to remember; Delivered at once if none."""
        posts, remember, more = notes
        if not posts:
            raise Delivered(remote_id, again=more)

        def posted(resp: SinkResponse, st: dict[str, Any]) -> Step:
            _raise_for(resp)
            raise Delivered(remote_id, remember={**remember, "in_flight": []}, again=more)
        step = self._step("POST", f"/api/v4/leads/{remote_id}/notes", state, posted, json=posts)
        # Kept before the notes go: the lead's id (no second create), and the texts in flight.
        step.remote_id = remote_id if created else None
        step.remember = {"in_flight": [p["params"]["text"] for p in posts]}
        return step

    def _look_for_notes(self, remote_id: str, lead: dict[str, Any], body: dict[str, Any],
                        remembered: dict[str, Any], state: dict[str, Any]) -> Step:
        """The last delivery posted notes and heard nothing back: whether amoCRM took them is in the lead's
        latest common notes (a page of 50, newest first)."""
        def listed(resp: SinkResponse, st: dict[str, Any]) -> Step:
            found: list[Any] = []
            if resp.status != 204:                      # 204: the lead has no notes
                _raise_for(resp)
                found = ((resp.json() or {}).get("_embedded") or {}).get("notes") or []
            texts = [plain((n.get("params") or {}).get("text")) for n in found if isinstance(n, dict)]
            memory = posted_already(lead, remembered, texts)
            step = self._update(remote_id, body, st, notes_to_post(lead, memory, self.settings))
            step.remember = memory
            return step
        return self._step("GET", f"/api/v4/leads/{remote_id}/notes?filter[note_type]=common&order[id]=desc&limit=50",
                          state, listed)

    def _looked_up(self, resp: SinkResponse, state: dict[str, Any], lead: dict[str, Any],
                   body: dict[str, Any], notes: Notes) -> Step:
        if resp.status == 204:                          # amoCRM's answer to a search with no result
            return self._create(body, state, notes)
        _raise_for(resp)
        found = ((resp.json() or {}).get("_embedded") or {}).get("leads") or []
        mine = [f for f in found if marker(lead["id"]) in (f.get("name") or "")]   # the search is fuzzy
        if mine:
            return self._update(str(mine[0]["id"]), body, state, notes)
        return self._create(body, state, notes)


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
