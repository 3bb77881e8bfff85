"""Bitrix24 through an incoming webhook (``https://<portal>/rest/<user>/<secret>/``): ``crm.lead.add`` once,
``crm.lead.update`` after, with the source, UTM marks, phones, e-mails and the responsible user mapped from
our manager, the deal's amount (OPPORTUNITY, CURRENCY_ID) and the tags. The lead carries ORIGINATOR_ID
"leadhub" and ORIGIN_ID = our lead id, so a retried create first asks ``crm.lead.list`` whether the first
try got through (its answer may have been lost).

After the lead, what managers wrote in the hub follows as timeline comments (``crm.timeline.comment.add``):
each note once, and a refusal's reason once per refusal (the status alone, JUNK, does not say why). What went
is remembered per lead (sinks/once.py) as each comment is answered, so a failed comment is retried and the
ones before it are not posted again. A comment whose answer was lost (a timeout: did the portal take it?)
is looked for among the lead's latest comments (``crm.timeline.comment.list``) before the next delivery
posts anything: found, it counts as posted. Only a crash between the portal's answer and the hub's
database write (milliseconds) can still post one twice.

Tags: Bitrix24 leads have no tags of their own, so they go into a user field named by ``tags_field`` (a
string field, "UF_CRM_..."), else as a last line of COMMENTS — the hub writes COMMENTS on every update
anyway (the client's first message), so no manager's text there is overwritten that was not already, and
the line is seen on the lead's card without setting up the portal.

Limits (cloud): a leaky bucket of about 50 requests, drained at 2 a second; past it the portal answers
503 ``QUERY_LIMIT_EXCEEDED``, which is retried. ``OVERLOAD_LIMIT`` (the portal blocked the app for heavy
load) is retried after ten minutes.
"""

from __future__ import annotations

from typing import Any

from pydantic import Field

from hub.sink import Delivered, Refused, SendAgain, Sink, SinkRequest, SinkResponse, SinkSettings, Step, retry_after
from sinks.once import plain, posted_already, refusal_due, refusal_text, signed, unsent_notes

ORIGINATOR = "leadhub"
# Comments posted in one delivery; more ask for another delivery (Delivered.again). At the cloud's 2
# requests a second this is 10 s of the bucket: a normal lead has a few notes, a long backlog does not
# hold the sink for long.
COMMENTS_PER_DELIVERY = 20
STATUS_IDS = {"new": "NEW", "in_work": "IN_PROCESS", "converted": "CONVERTED", "refused": "JUNK"}


class Bitrix24Settings(SinkSettings):
    webhook_url: str = Field(pattern=r"^https://[^/]+/rest/\d+/[^/]+/?$",
                             description="the incoming webhook: https://<portal>/rest/<user id>/<secret>/")
    users: dict[str, int] = Field({}, description="our manager's name → Bitrix24 user id (ASSIGNED_BY_ID)")
    source_id: str = Field("WEB", description="SOURCE_ID of the portal's source list")
    statuses: dict[str, str] = Field(STATUS_IDS, description="our status → the portal's STATUS_ID")
    tags_field: str | None = Field(None, pattern=r"^UF_CRM_\w+$",
                                   description="a string user field of leads for the tags (comma-separated); "
                                               "none: a last line of COMMENTS")


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
    tags = ", ".join(lead.get("tags") or [])
    if settings.tags_field:
        fields[settings.tags_field] = tags
    elif tags:
        caption = (lead.get("captions") or {}).get("tags", "Tags")
        fields["COMMENTS"] = f"{fields['COMMENTS']}\n\n{caption}: {tags}".lstrip()
    if lead.get("amount") is not None:                  # decimal text, exact; the portal's money is decimal too
        fields["OPPORTUNITY"] = lead["amount"]
        fields["CURRENCY_ID"] = lead.get("currency") or "RUB"
    return fields


# A comment to post, and what to remember once the portal took it.
Comment = tuple[str, dict[str, Any]]


def comments_to_post(lead: dict[str, Any], remembered: dict[str, Any]) -> tuple[list[Comment], bool]:
    """The comments not posted yet, oldest first, each with what to remember once it is posted (the notes
    sent so far, cumulative); and whether more are left than one delivery posts."""
    sent = set(remembered.get("notes") or [])
    todo: list[Comment] = []
    for note in unsent_notes(lead, remembered):
        sent.add(note["id"])
        todo.append((signed(note), {"notes": sorted(sent)}))
    key = refusal_due(lead, remembered)
    if key:
        todo.append((refusal_text(lead), {"refusal": key}))
    return todo[:COMMENTS_PER_DELIVERY], len(todo) > COMMENTS_PER_DELIVERY


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
        return self.start_with_memory(lead, remote_id, {}, delivery_id, retrying, state)

    def start_with_memory(self, lead: dict[str, Any], remote_id: str | None, remembered: dict[str, Any],
                          delivery_id: int, retrying: bool, state: dict[str, Any]) -> Step:
        fields = _fields(lead, self.settings)
        if remote_id and remembered.get("in_flight"):
            return self._look_for_comments(remote_id, lead, fields, remembered)
        comments, more = comments_to_post(lead, remembered)
        if remote_id:
            return self._update(remote_id, fields, comments, more)
        if retrying:
            return self._call("crm.lead.list", {"filter": {"ORIGINATOR_ID": ORIGINATOR, "ORIGIN_ID": str(lead["id"])},
                                                "select": ["ID"]},
                              lambda resp, st: self._looked_up(resp, fields, comments, more))
        return self._add(fields, comments, more)

    def _add(self, fields: dict[str, Any], comments: list[Comment], more: bool) -> Step:
        def added(resp: SinkResponse, state: dict[str, Any]) -> Step:
            return self._comment(str(_check(resp)), comments, more, created=True)
        return self._call("crm.lead.add", {"fields": fields, "params": {"REGISTER_SONET_EVENT": "Y"}}, added)

    def _update(self, remote_id: str, fields: dict[str, Any], comments: list[Comment],
                more: bool) -> Step:
        def updated(resp: SinkResponse, state: dict[str, Any]) -> Step:
            _check(resp)
            return self._comment(remote_id, comments, more)
        return self._call("crm.lead.update", {"id": remote_id, "fields": fields}, updated)

    def _comment(self, remote_id: str, comments: list[Comment], more: bool, created: bool = False,
                 remember: dict[str, Any] | None = None) -> Step:
        """The next comment on the lead's timeline; Delivered after the last. ``remember`` is what the
        comment before it established; the hub keeps it, and this comment's text as in flight, before
        this one goes."""
        if not comments:
            raise Delivered(remote_id, remember=remember, again=more)
        (text, posted_remember), rest = comments[0], comments[1:]

        def posted(resp: SinkResponse, state: dict[str, Any]) -> Step:
            _check(resp)
            return self._comment(remote_id, rest, more, remember={**posted_remember, "in_flight": []})
        step = self._call("crm.timeline.comment.add",
                          {"fields": {"ENTITY_ID": int(remote_id), "ENTITY_TYPE": "lead", "COMMENT": text}}, posted)
        step.remote_id, step.remember = (remote_id if created else None), {**(remember or {}), "in_flight": [text]}
        return step

    def _look_for_comments(self, remote_id: str, lead: dict[str, Any], fields: dict[str, Any],
                           remembered: dict[str, Any]) -> Step:
        """The last delivery posted a comment and heard nothing back: whether the portal took it is in the
        lead's latest comments (a page of 50, newest first: it was among the last posted)."""
        def listed(resp: SinkResponse, state: dict[str, Any]) -> Step:
            found = _check(resp)
            texts = [plain(c.get("COMMENT")) for c in found if isinstance(c, dict)] if isinstance(found, list) else []
            memory = posted_already(lead, remembered, texts)
            comments, more = comments_to_post(lead, memory)
            step = self._update(remote_id, fields, comments, more)
            step.remember = memory
            return step
        return self._call("crm.timeline.comment.list",
                          {"filter": {"ENTITY_ID": int(remote_id), "ENTITY_TYPE": "lead"},
                           "select": ["ID", "COMMENT"], "order": {"ID": "DESC"}}, listed)

    def _looked_up(self, resp: SinkResponse, fields: dict[str, Any], comments: list[Comment],
                   more: bool) -> Step:
        found = _check(resp)
        if isinstance(found, list) and found:
            # the first try got through: update it
            return self._update(str(found[0]["ID"]), fields, comments, more)
        return self._add(fields, comments, more)
