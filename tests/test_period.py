"""A report's period: the team's calendar days turned into UTC bounds, hours given to local days, and the
percentile both stores report alike."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from sqlalchemy import select

from hub.desk.period import MAX_DAYS, Period, PeriodError, hour_bucket, hour_to_moment, percentile
from hub.pipeline.history import history
from hub.store.db import make_engine, transaction
from hub.store.models import Lead, LeadHistory, Person


def test_a_moscow_day_starts_at_21_utc_the_evening_before():
    period = Period(date(2026, 3, 1), date(2026, 3, 31), "Europe/Moscow")
    assert period.start == datetime(2026, 2, 28, 21, 0, tzinfo=UTC)
    assert period.end == datetime(2026, 3, 31, 21, 0, tzinfo=UTC)
    assert period.days_count == 31 and period.days[0] == date(2026, 3, 1) and period.days[-1] == date(2026, 3, 31)
    assert period.local_day(datetime(2026, 3, 31, 20, 59, tzinfo=UTC)) == date(2026, 3, 31)
    assert period.local_day(datetime(2026, 3, 31, 21, 0, tzinfo=UTC)) == date(2026, 4, 1)


def test_a_dst_change_inside_the_period_moves_the_bounds_with_it():
    period = Period(date(2026, 3, 28), date(2026, 3, 30), "Europe/Berlin")      # DST began on 29 March
    assert period.start == datetime(2026, 3, 27, 23, 0, tzinfo=UTC)
    assert period.end == datetime(2026, 3, 30, 22, 0, tzinfo=UTC)


def test_a_reversed_or_too_long_period_says_what_is_wrong():
    with pytest.raises(PeriodError, match="after"):
        Period(date(2026, 3, 2), date(2026, 3, 1))
    with pytest.raises(PeriodError, match=f"at most {MAX_DAYS} days"):
        Period(date(2025, 1, 1), date(2026, 3, 1))
    assert Period.ending(date(2026, 3, 31), 7, "UTC").date_from == date(2026, 3, 25)


@pytest.mark.parametrize(("share", "expected"), [(0.5, 35), (0.9, 75), (0, 10), (1, 100)])
def test_percentile_interpolates_between_ranks_as_postgresql_does(share, expected):
    assert percentile([100, 10, 20, 30, 40, 50], share) == pytest.approx(expected)
    assert percentile([], 0.5) is None


def test_hour_buckets_are_utc_hours_on_both_stores(database_url, tmp_path):
    engine = make_engine(database_url)
    moments = [datetime(2026, 3, 31, 20, 59, tzinfo=UTC), datetime(2026, 3, 31, 21, 10, tzinfo=UTC)]
    with transaction(engine) as s:
        person = Person()
        s.add(person)
        s.flush()
        lead = Lead(person_id=person.id, source="site")     # the history's foreign key
        s.add(lead)
        s.flush()
        lead_id = lead.id
        for at in moments:
            history(s, lead_id, "note", actor="Max", at=at, text="x")
    with transaction(engine, read_only=True) as s:
        buckets = sorted(s.scalars(select(hour_bucket(s, LeadHistory.at))))
    engine.dispose()
    assert buckets == ["2026-03-31 20", "2026-03-31 21"]
    days = [Period(date(2026, 3, 31), date(2026, 4, 1), "Europe/Moscow").local_day(hour_to_moment(b)) for b in buckets]
    assert days == [date(2026, 3, 31), date(2026, 4, 1)]
