"""Data checks: planted cases with known answers, an independent loop reference,
invariants (hypothesis) and loose speed bounds."""

from __future__ import annotations

from datetime import date

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.calendar import (
    next_session,
    session_count_between,
    trading_days_between,
)
from core.providers.base import BAR_COLUMNS, PriceDataError, empty_bars
from core.quality import Finding, blocking_reasons, check_series, validate_bars

# ------------------------------------------------------------------ validate_bars


def bars(rows: list[tuple]) -> pd.DataFrame:
    """Rows ``(symbol, 'YYYY-MM-DD', open, high, low, close, adj_close, volume)``."""
    frame = pd.DataFrame(rows, columns=list(BAR_COLUMNS))
    frame["symbol"] = frame["symbol"].astype(object)
    frame["date"] = pd.to_datetime(frame["date"]).astype("datetime64[ns]")
    for c in BAR_COLUMNS[2:]:
        frame[c] = frame[c].astype("float64")
    return frame


NAN = float("nan")


def by_check(findings: list[Finding]) -> dict[tuple[str, str], Finding]:
    return {(f.symbol, f.check): f for f in findings}


def test_validate_drops_missing_and_non_positive_rows() -> None:
    raw = bars([
        ("AAA", "2024-03-04", 10, 11, 9, 10.5, 10.4, 1e6),
        ("AAA", "2024-03-05", 10, 11, 9, 0.0, 10.4, 1e6),     # zero close
        ("AAA", "2024-03-06", 10, 11, 9, 10.2, -1.0, 1e6),    # negative adj_close
        ("AAA", "2024-03-07", 10, 11, 9, 10.1, 10.0, 1e6),
        ("BBB", "2024-03-04", 20, 21, 19, NAN, 20.0, 1e6),    # missing close
        ("BBB", "2024-03-05", 20, 21, 19, 20.5, NAN, 1e6),    # missing adj_close
        ("BBB", "2024-03-06", 20, 21, 19, 20.5, 20.4, NAN),   # unknown volume is fine
    ])
    before = raw.copy(deep=True)
    clean, findings = validate_bars(raw)

    pd.testing.assert_frame_equal(raw, before)  # input untouched
    assert list(clean.columns) == list(BAR_COLUMNS)
    assert clean.dtypes.equals(raw.dtypes)
    assert clean.index.equals(pd.RangeIndex(3))
    assert list(zip(clean["symbol"], clean["date"].dt.strftime("%m-%d"), strict=True)) == [
        ("AAA", "03-04"), ("AAA", "03-07"), ("BBB", "03-06"),
    ]
    found = by_check(findings)
    assert set(found) == {("AAA", "non_positive_price"), ("BBB", "missing_price")}
    assert all(f.severity == "warning" for f in findings)
    nonpos = found["AAA", "non_positive_price"]
    assert nonpos.day == date(2024, 3, 5)
    assert nonpos.detail == (
        "2 rows with a non-positive close or adj_close, first: close 0.0 on 2024-03-05 "
        "is not positive; rows not stored"
    )
    missing = found["BBB", "missing_price"]
    assert missing.day == date(2024, 3, 4)
    assert "2 rows" in missing.detail and "close NaN on 2024-03-04" in missing.detail


def test_validate_single_bad_row_detail() -> None:
    _, findings = validate_bars(bars([("AAA", "2024-03-05", 10, 11, 9, 0.0, 10.4, 1e6)]))
    assert findings == [
        Finding("AAA", "non_positive_price", "warning", date(2024, 3, 5),
                "close 0.0 on 2024-03-05 is not positive; row not stored")
    ]


def test_validate_duplicates_keep_last_valid_row() -> None:
    raw = bars([
        ("AAA", "2024-03-04", 10, 11, 9, 10.0, 10.0, 1e6),
        ("AAA", "2024-03-05", 10, 11, 9, 10.0, 10.0, 1e6),
        ("AAA", "2024-03-04", 10, 11, 9, 10.3, 10.3, 2e6),   # later copy wins
        ("AAA", "2024-03-05", 10, 11, 9, 0.0, 0.0, 2e6),     # bad later copy never wins
        ("BBB", "2024-03-04", 20, 21, 19, 20.0, 20.0, 1e6),  # same date, other symbol
    ])
    clean, findings = validate_bars(raw)
    got = {(s, d.strftime("%m-%d")): c for s, d, c in
           zip(clean["symbol"], clean["date"], clean["close"], strict=True)}
    assert got == {("AAA", "03-05"): 10.0, ("AAA", "03-04"): 10.3, ("BBB", "03-04"): 20.0}
    found = by_check(findings)
    assert set(found) == {("AAA", "duplicate_row"), ("AAA", "non_positive_price")}
    assert found["AAA", "duplicate_row"].day == date(2024, 3, 4)
    assert found["AAA", "duplicate_row"].detail.startswith("1 row repeated")


def test_validate_inconsistent_ohlc_keeps_row_and_blanks_bad_fields() -> None:
    raw = bars([
        ("AAA", "2024-03-04", 10.0, 9.0, 11.0, 10.0, 10.0, 1e6),   # high < low
        ("AAA", "2024-03-05", -1.0, 11.0, 9.0, 10.0, 10.0, 1e6),   # negative open
        ("AAA", "2024-03-06", 10.0, 11.0, 9.0, 15.0, 15.0, 1e6),   # close above high
        ("AAA", "2024-03-07", 30.0, 11.0, 9.0, 10.0, 10.0, 1e6),   # open above high
        ("AAA", "2024-03-08", 10.0, 10.0, 9.0, 10.05, 10.0, 1e6),  # within tolerance
        ("AAA", "2024-03-11", NAN, NAN, NAN, 10.0, 10.0, 1e6),     # missing o/h/l: fine
    ])
    clean, findings = validate_bars(raw)
    assert len(clean) == 6
    ohlc = clean[["open", "high", "low"]].to_numpy()
    np.testing.assert_array_equal(ohlc, [
        [10.0, NAN, NAN],
        [NAN, 11.0, 9.0],
        [10.0, NAN, NAN],
        [NAN, 11.0, 9.0],
        [10.0, 10.0, 9.0],
        [NAN, NAN, NAN],
    ])
    assert clean["close"].tolist() == raw["close"].tolist()
    (f,) = findings
    assert (f.check, f.severity, f.day) == ("inconsistent_ohlc", "warning", date(2024, 3, 4))
    assert f.detail == (
        "high 9.0 < low 11.0 on 2024-03-04 (4 rows affected); bad fields set to NaN, close kept"
    )


def test_validate_empty_and_malformed() -> None:
    clean, findings = validate_bars(empty_bars())
    assert clean.empty and list(clean.columns) == list(BAR_COLUMNS) and findings == []
    with pytest.raises(PriceDataError, match="adj_close"):
        validate_bars(empty_bars().drop(columns="adj_close"))


price = st.one_of(
    st.floats(min_value=-5, max_value=500, allow_nan=False),
    st.sampled_from([0.0, -0.0, NAN, float("inf"), -float("inf"), 1e-9]),
)
row = st.tuples(
    st.sampled_from(["AAA", "BBB", "C_1"]),
    st.sampled_from(["2024-11-26", "2024-11-27", "2024-11-29"]),
    price, price, price, price, price,
    st.one_of(st.just(NAN), st.floats(min_value=0, max_value=1e9)),
)


@settings(max_examples=150, deadline=None)
@given(st.lists(row, max_size=30))
def test_validate_never_returns_bad_prices(rows: list[tuple]) -> None:
    raw = bars(rows) if rows else empty_bars()
    before = raw.copy(deep=True)
    clean, findings = validate_bars(raw)
    assert len(clean) <= len(raw)
    assert list(clean.columns) == list(BAR_COLUMNS)
    assert (clean["close"] > 0).all() and (clean["adj_close"] > 0).all()
    assert np.isfinite(clean[["close", "adj_close"]].to_numpy()).all()
    for c in ("open", "high", "low"):  # NaN or a positive finite number
        v = clean[c].to_numpy()
        assert (np.isnan(v) | (np.isfinite(v) & (v > 0))).all()
    both = clean["high"].notna() & clean["low"].notna()
    assert (clean.loc[both, "high"] >= clean.loc[both, "low"]).all()
    assert not clean.duplicated(["symbol", "date"]).any()
    dropped = len(raw) - len(clean)
    assert (dropped > 0) == any(
        f.check in ("missing_price", "non_positive_price", "duplicate_row") for f in findings
    )
    pd.testing.assert_frame_equal(raw, before)


def test_validate_speed_on_an_initial_load() -> None:
    # 1,000 symbols x 252 sessions here; the full 2.5M-row load is measured in the report
    rng = np.random.default_rng(3)
    n_sym, t_len = 1_000, 252
    close = 50 * np.exp(np.cumsum(rng.normal(0, 0.02, (n_sym, t_len)), axis=1)).ravel()
    close[rng.random(close.size) < 1e-3] = 0.0
    days = pd.bdate_range("2024-01-02", periods=t_len).to_numpy()
    raw = pd.DataFrame({
        "symbol": pd.Series(np.repeat([f"S{i}" for i in range(n_sym)], t_len), dtype=object),
        "date": np.tile(days, n_sym), "open": close, "high": close * 1.01,
        "low": close * 0.99, "close": close, "adj_close": close, "volume": 1e6,
    })
    clean, findings = validate_bars(raw)  # timings live in bench/, not in tests
    assert len(clean) == int((close > 0).sum())
    assert {f.check for f in findings} == {"non_positive_price"}


# ------------------------------------------------------------------- check_series

# Thanksgiving 2024-11-28 and the weekend are not sessions.
SESSIONS = trading_days_between(date(2024, 11, 18), date(2024, 12, 6))
T = len(SESSIONS)
AS_OF = SESSIONS[-1]


def at(day: str) -> int:
    return SESSIONS.index(date.fromisoformat(day))


def flat(n: int, level: float = 100.0) -> tuple[np.ndarray, np.ndarray]:
    """(close, split_ratio) of ``n`` symbols with a gentle, asymmetric drift."""
    steps = np.arange(T)[:, None] * np.linspace(0.001, 0.004, n)[None, :]
    return level * np.exp(steps), np.ones((T, n))


def test_holiday_is_not_a_gap_but_a_missing_session_is() -> None:
    assert date(2024, 11, 28) not in SESSIONS and T == 14
    close, split = flat(2)
    close[at("2024-11-26"), 1] = np.nan
    findings = check_series(["FULL", "HOLE"], SESSIONS, close, split, AS_OF)
    assert findings == [
        Finding("HOLE", "gaps", "warning", date(2024, 11, 26),
                "1 of 14 sessions between 2024-11-18 and 2024-12-06 have no close, "
                "first missing 2024-11-26"),
    ]
    assert blocking_reasons(findings) == {}  # a gap alone does not block


def test_late_listing_and_leading_missing_are_not_gaps() -> None:
    close, split = flat(1)
    close[: at("2024-11-25"), 0] = np.nan
    assert check_series(["NEW"], SESSIONS, close, split, AS_OF) == []


def test_split_day_is_not_a_jump() -> None:
    close, split = flat(2)
    t = at("2024-11-27")
    close[t:, :] /= 4.0                 # both drop 75 % in raw close on 11-27
    split[t, 0] = 4.0                   # ... only SPLT has the 4-for-1 recorded
    findings = check_series(["SPLT", "NOSPLIT"], SESSIONS, close, split, AS_OF)
    assert [(f.symbol, f.check, f.severity, f.day) for f in findings] == [
        ("NOSPLIT", "unexplained_jump", "error", date(2024, 11, 27)),
    ]
    assert "close moved -74.9% on 2024-11-27" in findings[0].detail


def test_reverse_split_and_split_on_a_missing_day() -> None:
    close, split = flat(2)
    t = at("2024-11-27")
    close[t:, 0] *= 10.0                # 1-for-10 reverse split
    split[t, 0] = 0.1
    close[t:, 1] /= 2.0                 # 2-for-1 whose split day has no stored close
    split[t, 1] = 2.0
    close[t, 1] = np.nan
    findings = check_series(["REV", "GAPSPLIT"], SESSIONS, close, split, AS_OF)
    assert [(f.symbol, f.check) for f in findings] == [("GAPSPLIT", "gaps")]


def test_bad_tick_is_flagged_and_crash_is_not() -> None:
    close, split = flat(3)
    close[at("2024-11-22"), 0] *= 10.0              # x10 bad tick, back the next day
    close[at("2024-11-22"):, 1] *= 0.75             # -25 % crash day
    close[at("2024-11-22"):, 2] *= 0.55             # -45 %: large but under 50 %
    findings = check_series(["TICK", "CRASH", "BIGDROP"], SESSIONS, close, split, AS_OF)
    assert [(f.symbol, f.check, f.day) for f in findings] == [
        ("TICK", "unexplained_jump", date(2024, 11, 22)),
    ]
    detail = findings[0].detail
    assert "+9" in detail and "on 2024-11-22" in detail and "2 such moves" in detail
    # a tighter threshold catches the crash days
    tight = check_series(["TICK", "CRASH", "BIGDROP"], SESSIONS, close, split, AS_OF,
                         jump_threshold=0.2)
    assert {f.symbol for f in tight} == {"TICK", "CRASH", "BIGDROP"}


def test_jump_across_a_gap_compares_with_previous_close() -> None:
    close, split = flat(1)
    close[at("2024-11-25"), 0] = np.nan
    close[at("2024-11-26"):, 0] *= 3.0  # +200 % against 11-22, the previous stored close
    findings = check_series(["X"], SESSIONS, close, split, AS_OF)
    jump = by_check(findings)["X", "unexplained_jump"]
    assert jump.day == date(2024, 11, 26)
    assert "on 2024-11-22 →" in jump.detail


def test_stale_series() -> None:
    close, split = flat(3)
    close[-4:, 0] = np.nan        # last close 4 sessions before as_of: stale
    close[-3:, 1] = np.nan        # 3 sessions: allowed
    close[:, 2] = np.nan          # nothing at all
    findings = check_series(["OLD", "OK", "NONE"], SESSIONS, close, split, AS_OF)
    found = by_check(findings)
    assert set(found) == {("OLD", "stale"), ("NONE", "stale")}
    assert found["OLD", "stale"].day == date(2024, 12, 2)
    assert found["OLD", "stale"].detail == (
        "last close 2024-12-02 is 4 sessions before as_of 2024-12-06 (allowed 3)"
    )
    assert found["NONE", "stale"].day is None
    assert set(blocking_reasons(findings)) == {"OLD", "NONE"}


def test_as_of_after_the_last_session_counts_the_tail() -> None:
    close, split = flat(1)
    as_of = next_session(next_session(AS_OF))
    assert session_count_between(AS_OF, as_of) == 2
    assert check_series(["X"], SESSIONS, close, split, as_of, stale_sessions=2) == []
    (f,) = check_series(["X"], SESSIONS, close, split, as_of, stale_sessions=1)
    assert (f.check, f.day) == ("stale", AS_OF)


def test_non_positive_stored_close_and_blocking_reason() -> None:
    close, split = flat(2)
    close[at("2024-11-21"), 0] = 0.0
    close[-6:, 0] = np.nan
    findings = check_series(["ZERO", "FINE"], SESSIONS, close, split, AS_OF)
    assert [(f.check, f.severity) for f in findings] == [
        ("non_positive_price", "error"), ("stale", "error"),
    ]
    assert findings[0].detail == "stored close 0.0 on 2024-11-21 is not positive"
    reasons = blocking_reasons(findings)
    assert list(reasons) == ["ZERO"]
    assert reasons["ZERO"].startswith("non_positive_price: stored close 0.0 on 2024-11-21")
    assert "; stale: last close 2024-11-27 is 6 sessions" in reasons["ZERO"]
    assert "\n" not in reasons["ZERO"]


def test_check_series_rejects_bad_input() -> None:
    close, split = flat(2)
    with pytest.raises(ValueError, match="must both be"):
        check_series(["A"], SESSIONS, close, split, AS_OF)
    skipping = [d for d in SESSIONS if d != date(2024, 11, 26)]
    with pytest.raises(ValueError, match="consecutive NYSE sessions"):
        check_series(["A", "B"], skipping, close[1:], split[1:], AS_OF)
    with pytest.raises(ValueError, match="after as_of"):
        check_series(["A", "B"], SESSIONS, close, split, SESSIONS[-2])
    assert check_series([], SESSIONS, close[:, :0], split[:, :0], AS_OF) == []


def reference(
    symbols: list[str], sessions: list[date], close: np.ndarray, split: np.ndarray,
    as_of: date, threshold: float, stale_sessions: int,
) -> set[tuple[str, str, date | None]]:
    """Plain loops over symbols and days: (symbol, check, first day) of each finding."""
    out: set[tuple[str, str, date | None]] = set()
    for j, sym in enumerate(symbols):
        c = close[:, j]
        stored = [t for t in range(len(sessions)) if np.isfinite(c[t])]
        bad = [t for t in stored if c[t] <= 0]
        if bad:
            out.add((sym, "non_positive_price", sessions[bad[0]]))
        if stored:
            missing = [t for t in range(stored[0], stored[-1] + 1) if not np.isfinite(c[t])]
            if missing:
                out.add((sym, "gaps", sessions[missing[0]]))
            last = sessions[stored[-1]]
            if session_count_between(last, as_of) > stale_sessions:
                out.add((sym, "stale", last))
        else:
            out.add((sym, "stale", None))
        prev = None
        for t in range(len(sessions)):
            if not (np.isfinite(c[t]) and c[t] > 0):
                continue
            if prev is not None:
                ratio = 1.0
                for u in range(prev + 1, t + 1):
                    r = split[u, j]
                    ratio *= r if np.isfinite(r) and r > 0 else 1.0
                if abs(c[t] * ratio / c[prev] - 1) > threshold:
                    out.add((sym, "unexplained_jump", sessions[t]))
                    break
            prev = t
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_check_series_matches_loop_reference(seed: int) -> None:
    rng = np.random.default_rng(seed)
    sessions = trading_days_between(date(2024, 6, 3), date(2024, 12, 31))
    t_len, n = len(sessions), 60
    close = 30 * np.exp(np.cumsum(rng.normal(0.0003, 0.03, (t_len, n)), axis=0))
    split = np.ones((t_len, n))
    for j in rng.choice(n, 10, replace=False):  # recorded splits
        t, r = rng.integers(1, t_len), rng.choice([2.0, 3.0, 0.2])
        close[t:, j] /= r
        split[t, j] = r
    for j in rng.choice(n, 6, replace=False):  # unrecorded splits
        close[rng.integers(1, t_len):, j] /= 3.0
    for j in rng.choice(n, 6, replace=False):  # bad ticks
        close[rng.integers(0, t_len), j] *= rng.choice([10.0, 0.1])
    close[rng.random((t_len, n)) < 0.01] = np.nan
    close[: rng.integers(0, 50), 0] = np.nan
    close[-rng.integers(1, 8):, 1] = np.nan
    close[:, 2] = np.nan
    close[rng.integers(0, t_len), 3] = -1.0
    split[rng.integers(0, t_len), 4] = np.nan
    symbols = [f"S{j}" for j in range(n)]

    got = check_series(symbols, sessions, close, split, sessions[-1])
    expected = reference(symbols, sessions, close, split, sessions[-1], 0.5, 3)
    assert {(f.symbol, f.check, f.day) for f in got} == expected
    assert len(expected) > 20  # the planted data exercises every check


