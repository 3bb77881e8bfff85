"""Phones to E.164 and e-mails to one normal form, with the libraries of the field.

Invalid values are never dropped: they come back with ``value=None`` and a reason, and the caller keeps
the raw text on the touch, flagged. The reason is an English sentence (ours from hub/i18n.py REASONS,
email-validator's as it words it) that pages read back and show in the reader's language.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import phonenumbers
from email_validator import EmailNotValidError, validate_email

from hub.i18n import Reason


@dataclass(frozen=True, slots=True)
class Normalised:
    raw: str
    value: str | None      # E.164 phone / normalised e-mail; None when invalid
    problem: str | None = None
    extension: str | None = None   # "доб. 123": kept beside the number, not part of the identity key


def normalise_phone(raw: str, region: str) -> Normalised:
    """'8 (912) 345-67-89', '+7 912 3456789' and '89123456789' (region RU) all give '+79123456789'.
    phonenumbers knows each country's trunk prefix ('8' in RU/KZ) and international prefix ('810')."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        return Normalised(raw, None, str(Reason("not_a_phone", detail=str(exc))))
    if not phonenumbers.is_valid_number(number):
        return Normalised(raw, None, str(Reason("invalid_phone_for_region", region=region)))
    return Normalised(raw, phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164),
                      extension=number.extension or None)


GMAIL_DOMAINS = ("gmail.com", "googlemail.com")


def normalise_email(raw: str, gmail_canonical: bool = False) -> Normalised:
    """' IVAN.PETROV@gmail.com ' gives 'ivan.petrov@gmail.com'. Gmail dots and +tags are kept unless
    ``gmail_canonical`` (then 'I.van+ads@googlemail.com' gives 'ivan@gmail.com')."""
    try:
        result = validate_email(raw.strip(), check_deliverability=False)
    except EmailNotValidError as exc:
        return Normalised(raw, None, str(exc))
    value = result.normalized.casefold()
    local, _, domain = value.rpartition("@")
    if gmail_canonical and domain in GMAIL_DOMAINS:
        value = local.split("+", 1)[0].replace(".", "") + "@gmail.com"
    return Normalised(raw, value)


def mask_phone(value: str) -> str:
    """For logs: '+79123456789' -> '+7912***89'."""
    return value[:5] + "***" + value[-2:] if len(value) > 7 else "***"


def mask_email(value: str) -> str:
    """For logs: 'ivan.petrov@gmail.com' -> 'i***@gmail.com'."""
    local, _, domain = value.partition("@")
    return (local[:1] + "***@" + domain) if domain else "***"


WHEN_FORMATS = ("%d.%m.%Y %H:%M:%S", "%d.%m.%Y %H:%M", "%d.%m.%Y", "%Y-%m-%d %H:%M:%S", "%Y-%m-%d %H:%M",
                "%d/%m/%Y %H:%M", "%d/%m/%Y")


# The first three of WHEN_FORMATS (an old CRM's export: a date a row) read without strptime, which costs
# ~7 µs a try (two tries for "31.12.2024 18:05": ~1.4 s of a 100k-row import). Only what strptime would read
# the same way; anything else (other spacing, an impossible date) goes on to strptime as before.
_DOTTED = re.compile(r"([0-9]{1,2})\.([0-9]{1,2})\.([0-9]{4})(?: ([0-9]{1,2}):([0-9]{1,2})(?::([0-9]{1,2}))?)?")


def _dotted(text: str) -> datetime | None:
    match = _DOTTED.fullmatch(text)
    if match is None:
        return None
    day, month, year, hour, minute, second = match.groups()
    try:
        return datetime(int(year), int(month), int(day), int(hour or 0), int(minute or 0), int(second or 0))
    except ValueError:
        return None


def parse_when(text: str, tz: str) -> datetime:
    """'31.12.2024 18:05', '2024-12-31', ISO 8601 with or without an offset; a time without an offset is
    in ``tz``. Raises ValueError with the formats we understand."""
    text = text.strip()
    when: datetime | None
    try:
        when = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        when = _dotted(text)
    if when is None:
        for fmt in WHEN_FORMATS:
            try:
                when = datetime.strptime(text, fmt)
                break
            except ValueError:
                continue
        else:
            raise ValueError(f"{text!r} is not a date (expected e.g. 31.12.2024 18:05, 2024-12-31 or "
                             "2024-12-31T18:05:00+03:00)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=ZoneInfo(tz))
    return when.astimezone(UTC)
