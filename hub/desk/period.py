"""A report's period and who it covers: calendar days in the team's time zone ([ui] timezone), turned into
UTC bounds for the store, and the managers a reader may see rows for.

Days are the team's, not UTC's: a lead that came at 01:30 in Moscow belongs to that Moscow day, as the head
of sales counts it. Per-day numbers are grouped in SQL by UTC hour (one row per hour, whatever the number of
leads) and the hours are then given to local days here, which keeps the database out of time-zone rules
(SQLite has none) and stays exact across a DST change. It assumes zones whose offset is whole hours — every
zone of our users (Russia, Armenia, Kazakhstan, Mongolia) is; a half-hour zone (India) would put up to half an
hour of entries on the neighbouring day."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import func
from sqlalchemy.orm import Session
from sqlalchemy.sql.elements import ColumnElement

from hub.config import Config
from hub.desk.access import Actor
from hub.store.users import Role

# At most this many days per report: a year and a day, so that "the same day last year" fits.
MAX_DAYS = 367


class PeriodError(ValueError):
    """The period asked for cannot be reported (its message says what to change)."""


@dataclass(frozen=True)
class Period:
    date_from: date
    date_to: date                 # included
    timezone: str = "UTC"

    def __post_init__(self) -> None:
        if self.date_from > self.date_to:
            raise PeriodError("date_from is after date_to")
        if self.days_count > MAX_DAYS:
            raise PeriodError(f"at most {MAX_DAYS} days at a time")

    @classmethod
    def ending(cls, date_to: date, days: int, timezone: str) -> Period:
        return cls(date_to - timedelta(days=days - 1), date_to, timezone)

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def days_count(self) -> int:
        return (self.date_to - self.date_from).days + 1

    @property
    def days(self) -> list[date]:
        return [self.date_from + timedelta(days=i) for i in range(self.days_count)]

    def day_start(self, day: date) -> datetime:
        """The UTC instant the team's ``day`` begins."""
        return datetime.combine(day, time.min, tzinfo=self.zone).astimezone(UTC)

    @property
    def start(self) -> datetime:
        """The first UTC instant of the period (included)."""
        return self.day_start(self.date_from)

    @property
    def end(self) -> datetime:
        """The first UTC instant after the period (excluded)."""
        return self.day_start(self.date_to + timedelta(days=1))

    def local_day(self, moment: datetime) -> date:
        return moment.astimezone(self.zone).date()

    def as_dict(self) -> dict[str, str]:
        return {"date_from": self.date_from.isoformat(), "date_to": self.date_to.isoformat(),
                "timezone": self.timezone}


def team_period(config: Config, date_from: date | None, date_to: date | None, default_days: int = 30,
                today: date | None = None) -> Period:
    """The period a reader asked for, in the team's time zone: missing ends default to the last
    ``default_days`` days up to today (the team's today). Raises PeriodError for a reversed or too long one."""
    tz = config.ui.timezone
    today = today or datetime.now(ZoneInfo(tz)).date()
    date_to = date_to or today
    date_from = date_from or date_to - timedelta(days=default_days - 1)
    return Period(date_from, date_to, tz)


def lenient_period(config: Config, date_from: date | None, date_to: date | None,
                   default_days: int = 30) -> tuple[Period, str | None]:
    """team_period for a reader who typed the dates: reversed ones are turned round, a too long range is
    shortened to its last MAX_DAYS days. Returns the period and, when it differs from the request, why
    (the answer's ``period`` always says what was reported)."""
    note = None
    if date_from and date_to and date_from > date_to:
        date_from, date_to = date_to, date_from
        note = "date_from was after date_to: the two were swapped"
    try:
        return team_period(config, date_from, date_to, default_days), note
    except PeriodError:
        return team_period(config, None, date_to, MAX_DAYS), f"at most {MAX_DAYS} days at a time: shortened"


def hour_bucket(session: Session, column) -> ColumnElement:
    """The UTC hour of a stored moment, as text 'YYYY-MM-DD HH', in the database's own dialect."""
    if session.get_bind().dialect.name == "sqlite":
        return func.strftime("%Y-%m-%d %H", column)          # stored as naive UTC text
    return func.to_char(func.timezone("UTC", column), "YYYY-MM-DD HH24")


def hour_to_moment(bucket: str) -> datetime:
    """hour_bucket's text back to the UTC instant it starts at."""
    return datetime.strptime(bucket, "%Y-%m-%d %H").replace(tzinfo=UTC)


def managers_in_scope(actor: Actor, config: Config) -> list[str] | None:
    """The managers whose rows this reader's report shows: an admin all of them (None), a team lead their
    teams' members and themselves; nobody else sees a person in a report (a marketer reads channel-level
    numbers only, a manager their own inbox)."""
    if actor.role == Role.ADMIN:
        return None
    if actor.role == Role.LEAD:
        return actor.managers_visible(config) or []
    return []


def percentile(values: list[float], share: float) -> float | None:
    """The ``share`` (0..1) percentile of ``values`` by linear interpolation between the closest ranks
    (what PostgreSQL's percentile_cont gives; done here so that SQLite gives the same)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * share
    low = int(position)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)
