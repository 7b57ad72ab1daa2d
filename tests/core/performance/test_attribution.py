"""Factor P&L attribution (core/performance/attribution.py): a hand case, a planted factor model
whose specific P&L is known, a per-portfolio loop as the reference, the identity
factor + specific = P&L by hypothesis, and the treatment of missing values."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from core.performance.attribution import factor_pnl_attribution


def _identity_gap(factor_pnl: np.ndarray, specific: np.ndarray, pnl: np.ndarray) -> np.ndarray:
    """|Σ_k factor + specific − pnl| in units of the rounding allowed (4 ulp of the larger
    of |pnl| and |Σ_k factor|)."""
    explained = factor_pnl.sum(axis=-1)
    scale = np.maximum(np.abs(pnl), np.abs(explained))
    return np.abs(explained + specific - pnl) / (4 * np.finfo(float).eps * scale + 1e-300)


def test_hand_case() -> None:
    exposure = np.array([[[100.0, -50.0]], [[120.0, 0.0]]])  # (T=2, P=1, K=2)
    factors = np.array([[0.01, 0.02], [-0.05, 0.3]])
    pnl = np.array([[3.0], [-10.0]])
    a = factor_pnl_attribution(exposure, factors, pnl)
    np.testing.assert_allclose(a.factor_pnl[:, 0], [[1.0, -1.0], [-6.0, 0.0]])
    np.testing.assert_allclose(a.specific_pnl[:, 0], [3.0, -4.0])
    np.testing.assert_allclose(a.factor_total[0], [-5.0, -1.0])
    assert a.specific_total[0] == pytest.approx(-1.0)
    assert a.attributed_pnl[0] == pytest.approx(-7.0)
    assert a.unattributed_pnl[0] == 0.0
    assert a.n_attributed[0] == 2


def test_planted_factor_model_leaves_the_specific_moves() -> None:
    """P&L of positions whose returns follow r = B f + e: the factor P&L of the dollar
    exposures Σ_i value_i B_ik leaves exactly Σ_i value_i e_i."""
    rng = np.random.default_rng(8)
    t, p, n, k = 30, 5, 12, 7
    f = rng.normal(0, 0.01, (t, k))
    beta = rng.normal(0.3, 0.5, (n, k))
    e = rng.normal(0, 0.004, (t, n)) + 0.002 * (rng.exponential(1, (t, n)) - 1)
    stock_r = f @ beta.T + e
    value_prev = rng.normal(0, 1e4, (t, p, n))  # dollars held at the previous close
    pnl = np.einsum("tpn,tn->tp", value_prev, stock_r)
    exposure = np.einsum("tpn,nk->tpk", value_prev, beta)
    a = factor_pnl_attribution(exposure, f, pnl)
    np.testing.assert_allclose(a.specific_pnl, np.einsum("tpn,tn->tp", value_prev, e),
                               rtol=1e-9, atol=1e-8)


def test_equals_empyricals_perf_attrib() -> None:
    """empyrical's ``perf_attrib`` (the reference library, test-only) given each portfolio's
    dollar holdings at the previous close and the symbols' loadings computes its own
    exposures (Σ holding × loading per day) and splits the P&L into the same factor and
    specific parts."""
    import empyrical as ep
    import pandas as pd

    rng = np.random.default_rng(12)
    t, p, n, k = 20, 3, 5, 4
    f = rng.normal(0, 0.01, (t, k))
    beta = rng.normal(0.3, 0.6, (n, k))
    value_prev = rng.normal(0, 1e4, (t, p, n))
    pnl = np.einsum("tpn,tn->tp", value_prev, f @ beta.T + rng.normal(0, 0.004, (t, n)))
    a = factor_pnl_attribution(np.einsum("tpn,nk->tpk", value_prev, beta), f, pnl)
    dates = pd.bdate_range("2024-01-02", periods=t)
    symbols = [f"S{i}" for i in range(n)]
    factors = [f"F{i}" for i in range(k)]
    rows = pd.MultiIndex.from_product([dates, symbols], names=["dt", "ticker"])
    loadings = pd.DataFrame(np.tile(beta, (t, 1)), index=rows, columns=factors)
    for j in range(p):
        _, table = ep.perf_attrib(pd.Series(pnl[:, j], index=dates),
                                  pd.Series(value_prev[:, j].ravel(), index=rows),
                                  pd.DataFrame(f, index=dates, columns=factors), loadings)
        np.testing.assert_allclose(a.factor_pnl[:, j], table[factors].to_numpy(),
                                   rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(a.specific_pnl[:, j], table["specific_returns"].to_numpy(),
                                   rtol=1e-12, atol=1e-9)


def test_equals_a_per_portfolio_loop() -> None:
    rng = np.random.default_rng(3)
    t, p, k = 15, 6, 4
    exposure = rng.normal(0, 5e3, (t, p, k))
    f = rng.normal(0, 0.01, (t, k))
    pnl = rng.normal(0, 100, (t, p))
    a = factor_pnl_attribution(exposure, f, pnl)
    for j in range(p):
        daily = [[exposure[s, j, q] * f[s, q] for q in range(k)] for s in range(t)]
        np.testing.assert_allclose(a.factor_pnl[:, j], daily, rtol=1e-15)
        specific = [pnl[s, j] - sum(daily[s]) for s in range(t)]
        np.testing.assert_allclose(a.specific_pnl[:, j], specific, rtol=1e-12, atol=1e-9)
        np.testing.assert_allclose(a.factor_total[j], np.sum(daily, axis=0), rtol=1e-12)
        assert a.specific_total[j] == pytest.approx(sum(specific), rel=1e-12)


def test_missing_values_leave_a_session_unattributed() -> None:
    rng = np.random.default_rng(4)
    exposure = rng.normal(0, 1e3, (4, 3, 2))
    f = rng.normal(0, 0.01, (4, 2))
    pnl = rng.normal(0, 10, (4, 3))
    exposure[1, 0, 1] = np.nan  # portfolio 0, session 1: no exposure (no model)
    pnl[2, 1] = np.nan  # portfolio 1, session 2: no P&L
    f[3, 0] = np.nan  # session 3: a factor did not trade
    e0, f0, p0 = exposure.copy(), f.copy(), pnl.copy()
    a = factor_pnl_attribution(exposure, f, pnl)
    expected = np.ones((4, 3), bool)
    expected[1, 0] = expected[2, 1] = False
    expected[3, :] = False
    np.testing.assert_array_equal(a.attributed, expected)
    assert np.isnan(a.factor_pnl[~expected]).all() and np.isnan(a.specific_pnl[~expected]).all()
    assert np.isfinite(a.factor_pnl[expected]).all()
    np.testing.assert_array_equal(a.n_attributed, [2, 2, 3])
    np.testing.assert_allclose(a.attributed_pnl, np.where(expected, pnl, 0).sum(axis=0))
    np.testing.assert_allclose(a.attributed_pnl + a.unattributed_pnl, np.nansum(pnl, axis=0))
    np.testing.assert_allclose(a.factor_total.sum(axis=1) + a.specific_total, a.attributed_pnl,
                               rtol=1e-12)
    np.testing.assert_array_equal(exposure, e0)  # inputs untouched
    np.testing.assert_array_equal(f, f0)
    np.testing.assert_array_equal(pnl, p0)


def test_shapes_are_checked() -> None:
    with pytest.raises(ValueError, match="shapes disagree"):
        factor_pnl_attribution(np.zeros((3, 2, 4)), np.zeros((3, 5)), np.zeros((3, 2)))
    with pytest.raises(ValueError, match="expected"):
        factor_pnl_attribution(np.zeros((3, 4)), np.zeros((3, 4)), np.zeros((3, 2)))


money = st.floats(-1e7, 1e7, allow_subnormal=False)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 8), st.integers(1, 5), st.integers(1, 7), st.data())
def test_factor_plus_specific_is_the_pnl(t: int, p: int, k: int, data: st.DataObject) -> None:
    exposure = data.draw(arrays(np.float64, (t, p, k), elements=money))
    f = data.draw(arrays(np.float64, (t, k), elements=st.floats(-0.5, 0.5,
                                                                allow_subnormal=False)))
    pnl = data.draw(arrays(np.float64, (t, p), elements=money))
    a = factor_pnl_attribution(exposure, f, pnl)
    assert a.attributed.all()
    assert (_identity_gap(a.factor_pnl, a.specific_pnl, pnl) <= 1).all()
    totals = a.factor_total.sum(axis=-1) + a.specific_total
    np.testing.assert_allclose(totals, a.attributed_pnl, rtol=1e-9,
                               atol=1e-9 * (np.abs(pnl).sum() + np.abs(a.factor_pnl).sum()))
