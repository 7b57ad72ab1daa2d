"""Tests of core.factors.ols.ols_betas.

Three layers: an independent reference (statsmodels ``OLS`` + ``add_constant``, and
exact rational arithmetic where statsmodels itself runs out of digits), planted
betas, and invariances (scaling, translation, symbol order, no mutation).
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from statsmodels.regression.linear_model import OLS
from statsmodels.tools.tools import add_constant

from core.factors.ols import ols_betas

T = 90
MIN_OBS = 68


def _universe(seed: int, n: int = 36) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric returns with every awkward case of the engine's inputs.

    Column 0: complete. 1-9: scattered gaps. 10: recently listed (last 75 rows).
    11: 67 valid rows (just below 68). 12: 68 valid rows (just above). 13: mean far
    from zero. 14: beta near zero. 15: r² close to 1. Rest: varied, some gaps.
    The regressor has two gaps.
    """
    rng = np.random.default_rng(seed)
    x = 0.0004 + 0.011 * rng.standard_normal(T) + 0.004 * rng.standard_t(3, T)
    b = rng.normal(0.9, 0.6, n)
    y = 0.0002 + np.outer(x, b) + 0.02 * rng.standard_normal((T, n)) * rng.uniform(0.3, 2.0, n)
    holes = rng.random((T, n)) < 0.04
    holes[:, [0, 10, 11, 12, 13, 14, 15]] = False
    y[holes] = np.nan
    y[:15, 10] = np.nan
    x[[4, 61]] = np.nan
    both = np.flatnonzero(np.isfinite(x))
    y[both[: both.size - 67], 11] = np.nan  # 67 valid rows left
    y[both[: both.size - 68], 12] = np.nan  # 68 valid rows left
    y[:, 13] += 4.25
    y[:, 14] = 3e-4 * x + 1e-3 * rng.standard_normal(T) - 0.002
    y[:, 15] = -0.0001 + 1.7 * x + 1e-6 * rng.standard_normal(T)
    return y, x


def _statsmodels(y: np.ndarray, x: np.ndarray) -> dict[str, np.ndarray]:
    n = y.shape[1]
    out = {k: np.full(n, np.nan) for k in ("alpha", "beta", "r_squared", "resid_vol")}
    out["n_obs"] = np.zeros(n, dtype=np.int64)
    for j in range(n):
        valid = np.isfinite(y[:, j]) & np.isfinite(x)
        out["n_obs"][j] = valid.sum()
        if valid.sum() < MIN_OBS:
            continue
        fit = OLS(y[valid, j], add_constant(x[valid], has_constant="add")).fit()
        out["alpha"][j], out["beta"][j] = fit.params
        out["r_squared"][j] = fit.rsquared
        out["resid_vol"][j] = np.sqrt(fit.mse_resid)
    return out


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_matches_statsmodels_symbol_by_symbol(seed: int) -> None:
    y, x = _universe(seed)
    got = ols_betas(y, x, MIN_OBS)
    ref = _statsmodels(y, x)
    assert_array_equal(got.n_obs, ref["n_obs"])
    for field in ("alpha", "beta", "r_squared", "resid_vol"):
        assert_allclose(getattr(got, field), ref[field], rtol=1e-9, atol=0, err_msg=field)
    assert got.n_obs[11] == 67 and np.isnan(got.beta[11])
    assert got.reason[11] == "insufficient_data: 67 valid observations (need 68)"
    assert got.n_obs[12] == 68 and np.isfinite(got.beta[12]) and got.reason[12] is None
    assert got.n_obs[10] == 74  # listed 75 rows ago, minus the regressor gap at row 61
    assert abs(got.beta[14]) < 0.1


def test_mostly_gappy_universe_matches_statsmodels() -> None:
    # most columns have gaps: the complete minority is solved on its own
    y, x = _universe(4)
    rng = np.random.default_rng(40)
    y[rng.random(y.shape) < 0.03] = np.nan
    got = ols_betas(y, x, MIN_OBS)
    ref = _statsmodels(y, x)
    assert_array_equal(got.n_obs, ref["n_obs"])
    for field in ("alpha", "beta", "r_squared", "resid_vol"):
        assert_allclose(getattr(got, field), ref[field], rtol=1e-9, atol=0, err_msg=field)


def _exact_ols(y: np.ndarray, x: np.ndarray) -> tuple[float, float, float]:
    """Slope, intercept and residual std of the float data, in exact arithmetic."""
    xs = [Fraction(float(v)) for v in x]
    ys = [Fraction(float(v)) for v in y]
    n = len(xs)
    mx, my = sum(xs) / n, sum(ys) / n
    sxy = sum((a - mx) * (b - my) for a, b in zip(xs, ys, strict=True))
    sxx = sum((a - mx) ** 2 for a in xs)
    slope = sxy / sxx
    icpt = my - slope * mx
    ssr = sum((b - icpt - slope * a) ** 2 for a, b in zip(xs, ys, strict=True))
    return float(slope), float(icpt), float(ssr / (n - 2)) ** 0.5


def test_exact_for_tiny_beta_on_series_far_from_zero() -> None:
    # variation of y is 1e-8 of its level: statsmodels' pinv loses ~1e-9 here, the
    # centered sums keep full precision
    rng = np.random.default_rng(11)
    x = 2.5 + 0.01 * rng.standard_normal(T)
    y = 0.03 + 1e-7 * x + 1e-10 * rng.standard_normal(T)
    got = ols_betas(y[:, None], x, MIN_OBS)
    slope, icpt, rv = _exact_ols(y, x)
    assert_allclose(got.beta[0], slope, rtol=1e-12)
    assert_allclose(got.alpha[0], icpt, rtol=1e-12)
    assert_allclose(got.resid_vol[0], rv, rtol=1e-11)


def test_planted_betas_recovered() -> None:
    rng = np.random.default_rng(5)
    x = 0.0003 + 0.012 * rng.standard_normal(250)
    planted = np.array([-0.4, 0.0, 0.35, 1.0, 1.85, 3.2])
    a = np.array([0.001, -0.0005, 0.0, 0.0002, 0.0007, -0.0011])
    y = a + np.outer(x, planted) + 1e-5 * rng.standard_normal((250, planted.size))
    got = ols_betas(y, x, 100)
    assert_allclose(got.beta, planted, atol=5e-3)
    assert_allclose(got.alpha, a, atol=5e-5)
    assert np.all(got.r_squared[planted != 0] > 0.99)
    assert_allclose(got.resid_vol, 1e-5, rtol=0.2)


def test_noise_free_line_is_exact() -> None:
    x = np.array([0.01, -0.02, 0.005, 0.03, -0.011, 0.0, 0.017])
    y = (0.002 + 1.75 * x)[:, None]
    got = ols_betas(y, x, 3)
    assert_allclose(got.beta, [1.75], rtol=1e-13)
    assert_allclose(got.alpha, [0.002], rtol=1e-11)
    assert_allclose(got.r_squared, [1.0], rtol=1e-13)
    assert got.resid_vol[0] < 1e-15


def test_degenerate_columns() -> None:
    rng = np.random.default_rng(9)
    x = 0.01 * rng.standard_normal(30)
    y = np.column_stack([0.5 * x + 0.001 * rng.standard_normal(30), np.full(30, 0.0013)])
    got = ols_betas(y, x, 10)
    # y constant: beta 0, residual 0, r² undefined
    assert abs(got.beta[1]) < 1e-14 and np.isnan(got.r_squared[1])
    assert got.resid_vol[1] < 1e-15 and got.reason[1] is None
    # regressor constant over the valid rows: no slope at all
    flat = ols_betas(y, np.full(30, 0.004), 10, x_name="SPY")
    assert np.isnan(flat.beta).all() and np.isnan(flat.alpha).all()
    assert_array_equal(flat.n_obs, [30, 30])
    assert flat.reason[0] == "zero_variance: SPY constant over the 30 valid rows"
    # constant on the column's own valid rows only
    x2 = x.copy()
    x2[:20] = 0.002
    y2 = y[:, :1].copy()
    y2[20:] = np.nan
    part = ols_betas(y2, x2, 10)
    assert np.isnan(part.beta[0]) and part.reason[0].startswith("zero_variance")


def test_too_few_rows_even_if_min_obs_small() -> None:
    got = ols_betas(np.array([[0.01], [0.02]]), np.array([0.0, 0.01]), 1)
    assert np.isnan(got.beta[0]) and got.n_obs[0] == 2


@pytest.mark.parametrize(
    ("y", "x", "m"),
    [
        (np.zeros(10), np.zeros(10), 3),
        (np.zeros((10, 2)), np.zeros(9), 3),
        (np.zeros((10, 2)), np.zeros(10), 0),
    ],
)
def test_caller_mistakes_raise(y: np.ndarray, x: np.ndarray, m: int) -> None:
    with pytest.raises(ValueError):
        ols_betas(y, x, m)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(0.05, 40.0) | st.floats(-40.0, -0.05),
    shift=st.floats(-3.0, 3.0),
)
def test_scaling_and_translation(seed: int, scale: float, shift: float) -> None:
    y, x = _universe(seed % 1000, n=18)
    base = ols_betas(y, x, MIN_OBS)
    scaled = ols_betas(scale * y, x, MIN_OBS)
    assert_allclose(scaled.beta, scale * base.beta, rtol=1e-9, atol=1e-13)
    assert_allclose(scaled.alpha, scale * base.alpha, rtol=1e-9, atol=1e-13)
    assert_allclose(scaled.resid_vol, abs(scale) * base.resid_vol, rtol=1e-9)
    assert_allclose(scaled.r_squared, base.r_squared, rtol=1e-9, atol=1e-14)
    moved = ols_betas(y + shift, x, MIN_OBS)
    assert_allclose(moved.beta, base.beta, rtol=1e-9, atol=1e-12)
    assert_allclose(moved.alpha, base.alpha + shift, rtol=1e-9, atol=1e-12)
    assert_allclose(moved.resid_vol, base.resid_vol, rtol=1e-9)
    assert_array_equal(moved.n_obs, base.n_obs)


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), order_seed=st.integers(0, 2**32 - 1))
def test_symbol_order_and_no_mutation(seed: int, order_seed: int) -> None:
    y, x = _universe(seed % 1000, n=20)
    y_before, x_before = y.copy(), x.copy()
    base = ols_betas(y, x, MIN_OBS)
    assert_array_equal(y, y_before)
    assert_array_equal(x, x_before)
    perm = np.random.default_rng(order_seed).permutation(y.shape[1])
    shuffled = ols_betas(y[:, perm], x, MIN_OBS)
    for field in ("alpha", "beta", "r_squared", "resid_vol"):
        assert_allclose(getattr(shuffled, field), getattr(base, field)[perm], rtol=1e-12)
    assert_array_equal(shuffled.n_obs, base.n_obs[perm])
    assert_array_equal(shuffled.reason, base.reason[perm])
