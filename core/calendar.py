"""NYSE trading calendar (exchange-calendars ``XNYS``).

Dates are ``datetime.date`` session labels (the exchange's local date). All windows
in factorflow are counted in sessions returned here, never in calendar days.
"""

from __future__ import annotations

import bisect
import os
from datetime import UTC, date, datetime
from functools import lru_cache

import exchange_calendars as xcals
import numpy as np
import pandas as pd

CALENDAR_START = "2000-01-03"


class CalendarRangeError(ValueError):
    """A date lies outside the range the trading calendar covers."""


@lru_cache(maxsize=1)
def _calendar() -> xcals.ExchangeCalendar:
    return xcals.get_calendar("XNYS", start=CALENDAR_START)


@lru_cache(maxsize=1)
def _sessions() -> tuple[date, ...]:
    return tuple(ts.date() for ts in _calendar().sessions)


@lru_cache(maxsize=1)
def _session_index() -> dict[date, int]:
    return {d: i for i, d in enumerate(_sessions())}


def all_sessions() -> tuple[date, ...]:
    """Every NYSE session the calendar covers, ascending."""
    return _sessions()


def is_session(day: date) -> bool:
    """True when ``day`` is an NYSE trading day."""
    return day in _session_index()


def _check_range(day: date) -> None:
    s = _sessions()
    if day < s[0] or day > s[-1]:
        raise CalendarRangeError(f"{day} is outside the NYSE calendar range {s[0]} → {s[-1]}")


def session_on_or_before(day: date) -> date:
    """The latest session ≤ ``day``."""
    _check_range(day)
    s = _sessions()
    i = bisect.bisect_right(s, day) - 1
    return s[i]


def session_on_or_after(day: date) -> date:
    """The earliest session ≥ ``day``."""
    _check_range(day)
    s = _sessions()
    i = bisect.bisect_left(s, day)
    return s[i]


def previous_session(day: date) -> date:
    """The session strictly before ``day``."""
    _check_range(day)
    s = _sessions()
    return s[bisect.bisect_left(s, day) - 1]


def next_session(day: date) -> date:
    """The session strictly after ``day``."""
    _check_range(day)
    s = _sessions()
    return s[bisect.bisect_right(s, day)]


def trading_days_between(start: date, end: date) -> list[date]:
    """Sessions ``d`` with ``start ≤ d ≤ end`` (both inclusive), ascending."""
    if end < start:
        return []
    s = _sessions()
    lo = bisect.bisect_left(s, start)
    hi = bisect.bisect_right(s, end)
    return list(s[lo:hi])


def sessions_ending_at(end: date, count: int) -> list[date]:
    """The ``count`` sessions ending at (and including) the last session ≤ ``end``."""
    if count <= 0:
        return []
    s = _sessions()
    hi = bisect.bisect_right(s, end)
    if hi - count < 0:
        raise CalendarRangeError(f"fewer than {count} sessions before {end}")
    return list(s[hi - count : hi])


def sessions_back(day: date, count: int) -> date:
    """The session ``count`` sessions before ``day`` (``day`` itself if count is 0)."""
    return sessions_ending_at(day, count + 1)[0]


def session_count_between(start: date, end: date) -> int:
    """Number of sessions in ``(start, end]``: how many sessions ``end`` lies after ``start``."""
    s = _sessions()
    return bisect.bisect_right(s, end) - bisect.bisect_right(s, start)


MARKET_CLOCK_VARIABLE = "FACTORFLOW_MARKET_CLOCK"
"""When set (an ISO 8601 instant with its offset), the instant at which "the latest completed
session" is resolved instead of now. For tests: the suite pins it at its start, so a run that
crosses the NYSE close sees one latest session throughout. Never set it in production."""


def market_now() -> datetime:
    """Now (UTC), or the instant ``FACTORFLOW_MARKET_CLOCK`` pins."""
    pinned = os.environ.get(MARKET_CLOCK_VARIABLE)
    if pinned:
        at = datetime.fromisoformat(pinned)
        if at.tzinfo is None:
            raise ValueError(f"{MARKET_CLOCK_VARIABLE} must carry a UTC offset: {pinned!r}")
        return at
    return datetime.now(UTC)


def latest_completed_session(now: datetime | None = None) -> date:
    """The latest NYSE session whose close has passed at ``now`` (UTC-aware; default
    :func:`market_now`).

    On a session day before the close this is the previous session; weekends and
    holidays resolve to the last session before them.
    """
    now = now or market_now()
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    ts = pd.Timestamp(now).tz_convert("UTC")
    cal = _calendar()
    today = ts.tz_convert("America/New_York").date()
    last = session_on_or_before(today)
    if last == today and ts < cal.session_close(pd.Timestamp(today)):
        return previous_session(today)
    return last


def session_positions(days: list[date] | tuple[date, ...]) -> np.ndarray:
    """Integer positions of sessions in the calendar (for fast alignment); -1 if not a session."""
    idx = _session_index()
    return np.array([idx.get(d, -1) for d in days], dtype=np.int64)


def as_dates(values: pd.Series | np.ndarray) -> list[date]:
    """Datetime-like ``values`` (datetime64, Timestamps or dates) as a list of ``date``,
    each distinct value converted once (a year of bars repeats ~250 dates over 100,000s of
    rows). NaT is not allowed."""
    codes, uniques = pd.factorize(pd.to_datetime(pd.Series(values)), sort=False)
    if (codes < 0).any():
        raise ValueError("as_dates: missing dates (NaT)")
    days = np.array([d.date() for d in uniques], dtype=object)
    return days[codes].tolist()
