"""E-mail inboxes over IMAP: "new request from the site" mails become leads.

Polls a mailbox with imap-tools. A message's key is (account, mailbox, UIDVALIDITY, UID), its Message-ID
is kept too; the cursor is the last UID seen, reset when the server changes UIDVALIDITY. The body (text
part, and the HTML part as text) is read as "Label: value" lines ("Имя: …", "Телефон: …", "E-mail: …",
"utm_source: …"), which the mapping names. Attachments are not leads. Only once the hub has stored the
messages are they marked as seen or moved (``after``), so a crash never loses one.
"""

from __future__ import annotations

import re
from html.parser import HTMLParser
from typing import Any, Literal

from imap_tools import AND, MailBox, MailBoxUnencrypted, MailMessageFlags
from pydantic import BaseModel, ConfigDict, Field

from hub.connector import PollingConnector, PollResult, RawEvent

LABEL_LINE = re.compile(r"^\s*([^:\n]{1,60}?)\s*:\s*(.+?)\s*$")


class EmailImapSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")
    host: str
    port: int = 993
    ssl: bool = True
    username: str
    password: str
    mailbox: str = "INBOX"
    after: Literal["seen", "move", "keep"] = Field("seen", description="what to do with a stored message")
    move_to: str = "Processed"
    poll_seconds: float = Field(60, ge=5)
    batch: int = Field(200, ge=1, le=5000)


class _Text(HTMLParser):
    """HTML mail to lines of text: block elements and <br> end a line."""

    BREAKS = {"br", "p", "div", "tr", "li", "h1", "h2", "h3", "table"}

    def __init__(self) -> None:
        super().__init__()
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: Any) -> None:
        if tag in self.BREAKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in ("td", "th"):
            self.parts.append(" ")
        elif tag in self.BREAKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    parser = _Text()
    parser.feed(html)
    return re.sub(r"[ \t]+", " ", "".join(parser.parts))


def labelled_fields(text: str) -> dict[str, str]:
    """'Телефон: +7 903 …' lines → {'Телефон': '+7 903 …'}; the first of each label wins."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        match = LABEL_LINE.match(line)
        if match and not match.group(1).lower().startswith(("http", "https")):
            fields.setdefault(match.group(1), match.group(2))
    return fields


class EmailImapConnector(PollingConnector[EmailImapSettings]):
    name = "email_imap"
    config_schema = EmailImapSettings
    default_mapping = "email"

    def _mailbox(self):
        cls = MailBox if self.settings.ssl else MailBoxUnencrypted
        return cls(self.settings.host, self.settings.port, timeout=30).login(
            self.settings.username, self.settings.password, initial_folder=self.settings.mailbox)

    def _key(self, uidvalidity: int, uid: str) -> str:
        return f"{self.settings.username}/{self.settings.mailbox}/{uidvalidity}/{uid}"

    def poll(self, state: dict[str, Any]) -> PollResult:
        with self._mailbox() as mailbox:
            uidvalidity = int(mailbox.folder.status(self.settings.mailbox)["UIDVALIDITY"])
            last_uid = int(state.get("last_uid", 0)) if state.get("uidvalidity") == uidvalidity else 0
            events = []
            # "N:*" also returns the newest message when none is above N: filter by UID ourselves.
            for msg in mailbox.fetch(AND(uid=f"{last_uid + 1}:*"), mark_seen=False, bulk=50):
                if not msg.uid or int(msg.uid) <= last_uid:
                    continue
                payload = {"uid": int(msg.uid), "message_id": (msg.headers.get("message-id") or [""])[0].strip(),
                           "from": msg.from_, "subject": msg.subject, "date": msg.date_str,
                           "text": (msg.text or "")[:100_000], "html_text": html_to_text(msg.html or "")[:100_000]}
                events.append(RawEvent(external_id=self._key(uidvalidity, msg.uid), payload=payload))
                if len(events) >= self.settings.batch:
                    break
        new_last = max([last_uid] + [e.payload["uid"] for e in events])
        return PollResult(events=events, state={"uidvalidity": uidvalidity, "last_uid": new_last})

    def acknowledge(self, events: list[RawEvent]) -> None:
        if not events or self.settings.after == "keep":
            return
        uids = [str(e.payload["uid"]) for e in events]
        with self._mailbox() as mailbox:
            if self.settings.after == "seen":
                mailbox.flag(uids, MailMessageFlags.SEEN, True)
            else:
                if not mailbox.folder.exists(self.settings.move_to):
                    mailbox.folder.create(self.settings.move_to)
                mailbox.move(uids, self.settings.move_to)

    def fields(self, payload: dict[str, Any]) -> dict[str, Any]:
        # Labels from the text part first, then from the HTML part (some sites put the form only there).
        fields = labelled_fields(str(payload.get("html_text") or ""))
        fields.update(labelled_fields(str(payload.get("text") or "")))
        return {**fields, "_subject": payload.get("subject"), "_from": payload.get("from"),
                "_message_id": payload.get("message_id")}
