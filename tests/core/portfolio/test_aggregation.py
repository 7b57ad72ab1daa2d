"""Tests of core.portfolio.aggregation.

A hand-computed book (two longs of different sizes, a short, a missing beta), then
invariances: scaling, position order, dollar exposure = beta × equity, no mutation.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from numpy.testing import assert_allclose, assert_array_equal

from core.factors.definitions import FACTOR_NAMES
from core.portfolio.aggregation import (
    UNCLASSIFIED,
    aggregate_factors,
    position_factor_contributions,
    sector_exposure,
)

# A long 6000, B short -2000 (no ir beta), C long 4000; cash 2000 → equity 10000.
MV = np.array([6000.0, -2000.0, 4000.0])
BETAS = np.array(
    [
        [1.2, -0.3],
        [0.8, np.nan],
        [1.5, 0.5],
    ]
)
EQUITY = 10000.0
NAMES = ("market_beta", "ir_beta")


def test_hand_computed_book_with_short_and_missing_beta() -> None:
    agg = aggregate_factors(MV, BETAS, EQUITY, NAMES)
    assert agg.factors == NAMES
    # weights 0.6, -0.2, 0.4
    # market: 0.6 × 1.2 - 0.2 × 0.8 + 0.4 × 1.5 = 0.72 - 0.16 + 0.60
    # ir:     0.6 × -0.3 + 0.4 × 0.5 (B uncovered) = -0.18 + 0.20
    assert_allclose(agg.beta, [1.16, 0.02], rtol=1e-12)
    assert_allclose(agg.dollar_exposure, [11600.0, 200.0], rtol=1e-12)
    # gross 12000; ir covers A and C: 10000 / 12000
    assert_allclose(agg.covered_share, [1.0, 10000.0 / 12000.0], rtol=1e-15)
    # signed: market 0.6 - 0.2 + 0.4; ir 0.6 + 0.4
    assert_allclose(agg.covered_weight, [0.8, 1.0], rtol=1e-15)


def test_position_contributions() -> None:
    c = position_factor_contributions(MV, BETAS, EQUITY)
    expected = np.array([[0.72, -0.18], [-0.16, np.nan], [0.60, 0.20]])
    assert c.shape == (3, 2)
    assert_allclose(c, expected, rtol=1e-12)
    agg = aggregate_factors(MV, BETAS, EQUITY, NAMES)
    assert_allclose(np.nansum(c, axis=0), agg.beta, rtol=1e-12)


def test_missing_market_value_is_excluded() -> None:
    mv = np.append(MV, np.nan)
    betas = np.vstack([BETAS, [9.0, 9.0]])
    agg = aggregate_factors(mv, betas, EQUITY, NAMES)
    base = aggregate_factors(MV, BETAS, EQUITY, NAMES)
    assert_array_equal(agg.beta, base.beta)
    assert_array_equal(agg.covered_share, base.covered_share)
    c = position_factor_contributions(mv, betas, EQUITY)
    assert np.isnan(c[3]).all()


def test_non_positive_equity_gives_nan_weights_but_dollars() -> None:
    for equity in (0.0, -500.0, np.nan):
        agg = aggregate_factors(MV, BETAS, equity, NAMES)
        assert np.isnan(agg.beta).all()
        assert np.isnan(agg.covered_weight).all()
        assert_allclose(agg.dollar_exposure, [11600.0, 200.0], rtol=1e-12)
        assert_allclose(agg.covered_share, [1.0, 10000.0 / 12000.0], rtol=1e-15)
        assert np.isnan(position_factor_contributions(MV, BETAS, equity)).all()


def test_no_coverage_and_empty_book() -> None:
    agg = aggregate_factors(MV, np.full((3, 2), np.nan), EQUITY, NAMES)
    assert_array_equal(agg.beta, [0.0, 0.0])
    assert_array_equal(agg.covered_share, [0.0, 0.0])
    empty = aggregate_factors(np.empty(0), np.empty((0, 2)), EQUITY, NAMES)
    assert_array_equal(empty.dollar_exposure, [0.0, 0.0])
    assert np.isnan(empty.covered_share).all()  # 0 / 0: no gross exposure


def test_accepts_lists_and_full_factor_list() -> None:
    f = len(FACTOR_NAMES)
    betas = np.linspace(-1.0, 2.0, 3 * f).reshape(3, f)
    agg = aggregate_factors(MV.tolist(), betas.tolist(), EQUITY, FACTOR_NAMES)
    assert agg.beta.shape == (f,)
    assert_allclose(agg.beta, (MV / EQUITY) @ betas, rtol=1e-12)


def test_shape_mistakes_raise() -> None:
    with pytest.raises(ValueError, match="market_values must be 1-D"):
        aggregate_factors(MV[:, None], BETAS, EQUITY, NAMES)
    with pytest.raises(ValueError, match="betas must have shape"):
        aggregate_factors(MV, BETAS[:2], EQUITY, NAMES)
    with pytest.raises(ValueError, match="factors has 1 names for 2 columns"):
        aggregate_factors(MV, BETAS, EQUITY, NAMES[:1])
    with pytest.raises(ValueError, match="sectors has 2 entries for 3"):
        sector_exposure(MV, ["Tech", None], EQUITY)


def test_inputs_not_mutated() -> None:
    mv, betas = MV.copy(), BETAS.copy()
    aggregate_factors(mv, betas, EQUITY, NAMES)
    position_factor_contributions(mv, betas, EQUITY)
    sector_exposure(mv, ["Tech", None, "Tech"], EQUITY)
    assert_array_equal(mv, MV)
    assert_array_equal(betas, BETAS)


def test_sector_exposure_with_none_sector() -> None:
    mv = np.array([6000.0, -2000.0, 4000.0, 1500.0, np.nan])
    sectors = ["Technology", None, " Technology ", "", "Energy"]
    out = sector_exposure(mv, sectors, EQUITY)
    # Technology: 6000 + 4000; Unclassified: -2000 + 1500; Energy unvalued → absent
    assert list(out) == ["Technology", UNCLASSIFIED]
    assert out["Technology"] == pytest.approx((10000.0, 1.0))
    assert out[UNCLASSIFIED] == pytest.approx((-500.0, -0.05))
    nan_w = sector_exposure(mv, sectors, 0.0)
    assert nan_w["Technology"][0] == 10000.0 and np.isnan(nan_w["Technology"][1])
    assert sector_exposure(np.array([np.nan]), ["X"], EQUITY) == {}


# ---------------------------------------------------------------- properties


@st.composite
def books(draw: st.DrawFn) -> tuple[np.ndarray, np.ndarray, float]:
    p = draw(st.integers(min_value=1, max_value=8))
    f = draw(st.integers(min_value=1, max_value=4))
    mv = draw(
        hnp.arrays(
            np.float64,
            p,
            # money: zero or at least a cent (a subnormal "value" loses its digits when scaled)
            elements=st.just(0.0) | st.floats(0.01, 1e6) | st.floats(-1e6, -0.01)
            | st.just(np.nan),
        )
    )
    betas = draw(
        hnp.arrays(
            np.float64,
            (p, f),
            elements=st.floats(-5.0, 5.0, allow_nan=False) | st.just(np.nan),
        )
    )
    equity = draw(st.floats(1.0, 1e7))
    return mv, betas, equity


@settings(max_examples=150, deadline=None)
@given(book=books(), c=st.floats(1e-3, 1e3))
def test_property_scaling_book_and_equity(book: tuple, c: float) -> None:
    mv, betas, equity = book
    names = [f"f{k}" for k in range(betas.shape[1])]
    a = aggregate_factors(mv, betas, equity, names)
    b = aggregate_factors(c * mv, betas, c * equity, names)
    scale = np.abs(mv[np.isfinite(mv)]).sum() * 5.0 / equity + 1e-300
    assert_allclose(b.beta, a.beta, rtol=1e-9, atol=1e-12 * scale)
    assert_allclose(b.dollar_exposure, c * a.dollar_exposure, rtol=1e-9, atol=1e-9 * c * scale)
    assert_allclose(b.covered_share, a.covered_share, rtol=1e-9, atol=1e-12)  # shares in [0, 1]
    assert_allclose(b.covered_weight, a.covered_weight, rtol=1e-9, atol=1e-12 * scale)


@settings(max_examples=150, deadline=None)
@given(book=books())
def test_property_dollar_exposure_is_beta_times_equity(book: tuple) -> None:
    mv, betas, equity = book
    names = [f"f{k}" for k in range(betas.shape[1])]
    agg = aggregate_factors(mv, betas, equity, names)
    assert_allclose(agg.dollar_exposure, agg.beta * equity, rtol=1e-12, atol=1e-6)
    assert (
        (agg.covered_share >= 0) & (agg.covered_share <= 1 + 1e-12) | np.isnan(agg.covered_share)
    ).all()


@settings(max_examples=100, deadline=None)
@given(book=books(), data=st.data())
def test_property_position_order_does_not_matter(book: tuple, data: st.DataObject) -> None:
    mv, betas, equity = book
    perm = np.array(data.draw(st.permutations(range(mv.size))), dtype=np.intp)
    names = [f"f{k}" for k in range(betas.shape[1])]
    a = aggregate_factors(mv, betas, equity, names)
    b = aggregate_factors(mv[perm], betas[perm], equity, names)
    assert_allclose(b.dollar_exposure, a.dollar_exposure, rtol=1e-9, atol=1e-6)
    assert_allclose(b.covered_share, a.covered_share, rtol=1e-9, atol=1e-12)
