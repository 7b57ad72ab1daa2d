"""NYSE calendar helpers against known sessions (holidays, weekends, the close)."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from core import calendar

UTC = dt.UTC


def test_latest_completed_session_respects_the_close_and_holidays() -> None:
    # Monday 2026-11-23: before the 16:00 New York close → Friday; after it → Monday
    assert calendar.latest_completed_session(dt.datetime(2026, 11, 23, 15, tzinfo=UTC)) == (
        dt.date(2026, 11, 20))
    assert calendar.latest_completed_session(dt.datetime(2026, 11, 23, 21, 5, tzinfo=UTC)) == (
        dt.date(2026, 11, 23))
    # Thanksgiving 2026-11-26 is a holiday; the day after is a session
    assert calendar.latest_completed_session(dt.datetime(2026, 11, 26, 23, tzinfo=UTC)) == (
        dt.date(2026, 11, 25))
    # a Sunday resolves to Friday
    assert calendar.latest_completed_session(dt.datetime(2026, 11, 29, 12, tzinfo=UTC)) == (
        dt.date(2026, 11, 27))
    with pytest.raises(ValueError):
        calendar.latest_completed_session(dt.datetime(2026, 11, 23, 12))


def test_windows_count_sessions_not_calendar_days() -> None:
    days = calendar.trading_days_between(dt.date(2026, 11, 20), dt.date(2026, 11, 30))
    assert days == [dt.date(2026, 11, d) for d in (20, 23, 24, 25, 27, 30)]
    assert calendar.sessions_ending_at(dt.date(2026, 11, 28), 3) == [
        dt.date(2026, 11, 24), dt.date(2026, 11, 25), dt.date(2026, 11, 27)]
    assert calendar.sessions_back(dt.date(2026, 11, 30), 2) == dt.date(2026, 11, 25)
    assert calendar.session_count_between(dt.date(2026, 11, 20), dt.date(2026, 11, 30)) == 5
    assert calendar.previous_session(dt.date(2026, 11, 27)) == dt.date(2026, 11, 25)
    assert calendar.next_session(dt.date(2026, 11, 25)) == dt.date(2026, 11, 27)
    assert not calendar.is_session(dt.date(2026, 11, 26))
    assert calendar.trading_days_between(dt.date(2026, 11, 30), dt.date(2026, 11, 20)) == []


def test_calendar_covers_the_2008_replay_and_refuses_outside_its_range() -> None:
    assert calendar.is_session(dt.date(2008, 9, 15))
    with pytest.raises(calendar.CalendarRangeError):
        calendar.session_on_or_before(dt.date(1990, 1, 1))


def test_the_market_clock_can_be_pinned_and_must_carry_an_offset(
        monkeypatch: pytest.MonkeyPatch) -> None:
    from datetime import UTC, datetime

    from core.calendar import MARKET_CLOCK_VARIABLE, latest_completed_session, market_now

    monkeypatch.setenv(MARKET_CLOCK_VARIABLE, "2024-04-19T19:59:00+00:00")  # before the close
    assert market_now() == datetime(2024, 4, 19, 19, 59, tzinfo=UTC)
    assert latest_completed_session().isoformat() == "2024-04-18"
    monkeypatch.setenv(MARKET_CLOCK_VARIABLE, "2024-04-19T20:01:00+00:00")  # after it
    assert latest_completed_session().isoformat() == "2024-04-19"
    monkeypatch.setenv(MARKET_CLOCK_VARIABLE, "2024-04-19T20:01:00")
    with pytest.raises(ValueError, match="UTC offset"):
        market_now()
    monkeypatch.delenv(MARKET_CLOCK_VARIABLE)
    assert abs((market_now() - datetime.now(UTC)).total_seconds()) < 60


def test_as_dates_converts_each_value_like_pandas() -> None:
    stamps = pd.Series(pd.to_datetime(["2026-11-20", "2026-11-19", "2026-11-20", "2025-01-02"]))
    assert calendar.as_dates(stamps) == stamps.dt.date.tolist()
    assert calendar.as_dates(stamps.to_numpy()) == [dt.date(2026, 11, 20), dt.date(2026, 11, 19),
                                                    dt.date(2026, 11, 20), dt.date(2025, 1, 2)]
    assert calendar.as_dates(pd.Series([], dtype="datetime64[ns]")) == []
    with pytest.raises(ValueError, match="NaT"):
        calendar.as_dates(pd.Series([pd.Timestamp("2026-11-20"), pd.NaT]))
