"""The data-trust rules on re-delivered prices (core/quality.py): planted cases with known
answers, and invariants with hypothesis."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core import calendar
from core.price_store import new_actions
from core.quality import jump_endpoints
from core.redelivery_review import (
    INSERT,
    PRICE_FIELDS,
    REJECT,
    REPLACE,
    SAME,
    adjusted_basis_ratio,
    review_redelivery,
)
from core.symbol_steps import reference_blocked_factors


def rows(closes: list[list[float]]) -> dict[str, np.ndarray]:
    """A stored/offered field dict whose every price field equals ``closes`` (T, N)."""
    c = np.array(closes, dtype=float)
    out = {f: c.copy() for f in PRICE_FIELDS}
    out["volume"] = np.where(np.isfinite(c), 1000.0, np.nan)
    return out


def empty(t: int, n: int) -> dict[str, np.ndarray]:
    return {f: np.full((t, n), np.nan) for f in PRICE_FIELDS}


NAN = float("nan")


def test_a_bad_tick_flags_itself_and_its_neighbours_and_a_split_explains_a_drop() -> None:
    close = np.array([[10, 40], [10.1, 40], [3.0, 10], [10.2, 10.1], [10.3, 10.2]], dtype=float)
    split = np.ones_like(close)
    split[2, 1] = 4.0  # a 4-for-1 split explains 40 → 10
    flagged = jump_endpoints(close, split, 0.5)
    assert flagged[:, 0].tolist() == [False, True, True, True, False]
    assert not flagged[:, 1].any()


def test_a_corrected_delivery_replaces_a_stored_row_that_failed_its_checks() -> None:
    stored = rows([[10.0], [10.1], [3.03], [10.2], [10.3]])
    offered = empty(5, 1)
    for f in PRICE_FIELDS:
        offered[f][1:4, 0] = stored[f][1:4, 0]
    for f in ("open", "high", "low", "close", "adj_close"):
        offered[f][2, 0] = 10.15
    review = review_redelivery(stored, offered, np.ones((5, 1)))
    assert review.decision[:, 0].tolist() == [0, SAME, REPLACE, SAME, 0]
    assert review.reason[2, 0].startswith("correction: stored close 3.03")


def test_a_restatement_is_accepted_only_if_it_passes_and_loses_nothing() -> None:
    stored = rows([[10.0, 20.0, 30.0, 40.0], [10.1, 20.1, 30.1, 40.1], [10.2, 20.2, 30.2, 40.2]])
    offered = empty(3, 4)
    for f in PRICE_FIELDS:
        offered[f][1] = stored[f][1]
    for f in ("open", "high", "low", "close", "adj_close"):
        offered[f][1, 0] = 10.11  # a cent: accepted
        offered[f][1, 1] = 201.0  # ×10: fails the jump check and moves +900 %
        offered[f][1, 3] = 40.12
    offered["open"][1, 2] = np.nan  # thinner but equal: nothing lost by keeping the stored row
    offered["high"][1, 3] = np.nan  # a restatement that would lose the high: refused
    review = review_redelivery(stored, offered, np.ones((3, 4)))
    assert review.decision[1].tolist() == [REPLACE, REJECT, SAME, REJECT]
    assert "fails the jump check" in review.reason[1, 1] and "+900.0%" in review.reason[1, 1]
    assert "loses high" in review.reason[1, 3]


def test_an_adjusted_close_on_another_basis_is_a_rebase_only_when_asked() -> None:
    stored = rows([[10.0], [10.1]])
    offered = rows([[10.0], [10.1]])
    offered["adj_close"] = offered["adj_close"] * 0.98
    plain = review_redelivery(stored, offered, np.ones((2, 1)))
    assert plain.decision[:, 0].tolist() == [SAME, SAME]
    rebased = review_redelivery(stored, offered, np.ones((2, 1)), rebase=np.array([True]))
    assert rebased.decision[:, 0].tolist() == [REPLACE, REPLACE]
    assert rebased.rebased is not None and rebased.rebased.all()


def test_a_provider_that_split_adjusts_history_may_restate_old_closes_by_the_split() -> None:
    stored = rows([[100.0], [101.0], [25.5]])  # raw closes; a 4-for-1 split on the last day
    offered = rows([[25.0], [25.25], [25.5]])  # Yahoo's split-adjusted "close"
    split = np.ones((3, 1))
    split[2, 0] = 4.0
    review = review_redelivery(stored, offered, split)
    assert review.decision[:, 0].tolist() == [REPLACE, REPLACE, SAME]


def test_new_rows_are_inserted_as_delivered() -> None:
    stored = rows([[10.0], [NAN], [NAN]])
    offered = rows([[NAN], [10.1], [30.0]])
    review = review_redelivery(stored, offered, np.ones((3, 1)))
    assert review.decision[:, 0].tolist() == [0, INSERT, INSERT]


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1, 1000), min_size=2, max_size=30),
       st.floats(0.2, 5.0), st.integers(0, 29))
def test_the_basis_ratio_recovers_a_planted_factor(closes, factor, hole) -> None:
    c = np.array(closes)[:, None]
    stored_adj = c * 0.9
    offered_adj = stored_adj / factor
    offered_close = c.copy()
    offered_close[min(hole, len(c) - 1)] = np.nan  # a session not offered
    k = adjusted_basis_ratio(c, stored_adj, offered_close, offered_adj)
    assert k[0] == pytest.approx(factor, rel=1e-12)


@settings(max_examples=50, deadline=None)
@given(st.lists(st.floats(1, 1000), min_size=3, max_size=40))
def test_an_identical_redelivery_changes_nothing(closes) -> None:
    stored = rows([[c] for c in closes])
    review = review_redelivery(stored, rows([[c] for c in closes]), np.ones((len(closes), 1)))
    assert (review.decision == SAME).all()


def test_only_actions_not_stored_with_that_value_are_new() -> None:
    stored = pd.DataFrame({"symbol": ["A", "A"],
                           "date": pd.to_datetime(["2026-01-05", "2026-04-06"]),
                           "kind": ["dividend", "dividend"], "value": [0.2, 0.2]})
    delivered = pd.DataFrame({"symbol": ["A", "A", "B"],
                              "date": pd.to_datetime(["2026-01-05", "2026-04-06", "2026-04-06"]),
                              "kind": ["dividend", "dividend", "split"], "value": [0.2, 0.25, 2.0]})
    fresh = new_actions(delivered, stored)
    assert list(zip(fresh.symbol, fresh.value, strict=True)) == [("A", 0.25), ("B", 2.0)]


def test_a_reference_etf_failing_a_check_holds_back_exactly_the_factors_defined_on_it() -> None:
    from core.factors.definitions import REFERENCE_ETFS

    as_of = dt.date(2026, 11, 19)
    sessions = calendar.sessions_ending_at(as_of, 181)
    rng = np.random.default_rng(1)
    close = 100 * np.cumprod(1 + 0.01 * rng.standard_normal((181, 8)), axis=0)
    split = np.ones_like(close)
    assert reference_blocked_factors(sessions, close, split, as_of) == {}
    spy, vtv = REFERENCE_ETFS.index("SPY"), REFERENCE_ETFS.index("VTV")
    bad = close.copy()
    bad[170, spy] *= 0.3  # inside both windows
    held = reference_blocked_factors(sessions, bad, split, as_of)
    assert set(held) == {"market_beta", "momentum_spread", "size_spread", "quality_spread"}
    assert all(r.startswith("reference_data: SPY failed") for r in held.values())
    old = close.copy()
    old[20, vtv] *= 3  # only inside the 180-return window: only the VTV spread
    assert set(reference_blocked_factors(sessions, old, split, as_of)) == {"growth_value_spread"}
    ridge = close.copy()
    ridge[170, vtv] *= 3  # a ridge ETF: the whole style ridge
    assert set(reference_blocked_factors(sessions, ridge, split, as_of)) == {
        "value", "growth", "momentum", "quality", "size", "low_volatility", "growth_value_spread"}
