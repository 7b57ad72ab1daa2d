"""Tests of core.factors.ridge.ridge_betas.

Reference: scikit-learn ``StandardScaler`` + ``Ridge(alpha=1.0)`` fitted symbol by
symbol on the same valid rows; planted betas (exact shrinkage on orthogonal
regressors); invariances (scaling y or a regressor, translation, symbol order).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from core.factors.ridge import SHARED_GROUP_MIN, ridge_betas

T, K, MIN_OBS = 90, 6, 68


def _regressors(rng: np.random.Generator) -> np.ndarray:
    """Six correlated style-ETF-like return series with different scales and means."""
    market = 0.0005 + 0.01 * rng.standard_normal(T)
    load = np.array([0.9, 1.1, 1.0, 0.95, 1.2, 0.7])
    own = np.array([0.003, 0.004, 0.006, 0.002, 0.005, 0.003])
    return np.outer(market, load) + own * rng.standard_normal((T, K)) + 1e-4 * np.arange(K)


def _universe(seed: int, n: int = 60) -> tuple[np.ndarray, np.ndarray]:
    """Asymmetric returns: complete columns, scattered gaps, a group of recent listings
    sharing one mask (solved together), a column far from zero, a near-perfect fit,
    67 / 68 valid rows, and two rows where one regressor is missing."""
    rng = np.random.default_rng(seed)
    X = _regressors(rng)
    B = rng.normal(0.2, 0.5, (n, K))
    y = 0.0001 + X @ B.T + 0.015 * rng.standard_normal((T, n)) * rng.uniform(0.5, 2.0, n)
    holes = rng.random((T, n)) < 0.05
    holes[:, : n // 2] = False
    y[holes] = np.nan
    y[:12, 5 : 5 + SHARED_GROUP_MIN + 2] = np.nan  # recently listed together
    X[[7, 50], [2, 4]] = np.nan
    rows = np.flatnonzero(np.isfinite(X).all(axis=1))
    y[:, 2] = np.nan
    y[rows[-67:], 2] = X[rows[-67:]] @ B[2] + 0.01 * rng.standard_normal(67)  # 67 valid
    y[:, 3] = np.nan
    y[rows[-68:], 3] = X[rows[-68:]] @ B[3] + 0.01 * rng.standard_normal(68)  # 68 valid
    y[:, 0] += 2.75
    y[:, 1] = X @ B[1] - 0.0003 + 1e-7 * rng.standard_normal(T)
    return y, X


def _sklearn(y: np.ndarray, X: np.ndarray) -> dict[str, np.ndarray]:
    n = y.shape[1]
    out = {
        "beta": np.full((n, K), np.nan),
        "intercept": np.full(n, np.nan),
        "r_squared": np.full(n, np.nan),
        "resid_vol": np.full(n, np.nan),
        "n_obs": np.zeros(n, dtype=np.int64),
    }
    for j in range(n):
        valid = np.isfinite(y[:, j]) & np.isfinite(X).all(axis=1)
        out["n_obs"][j] = valid.sum()
        if valid.sum() < MIN_OBS:
            continue
        scaler = StandardScaler().fit(X[valid])
        z = scaler.transform(X[valid])
        model = Ridge(alpha=1.0).fit(z, y[valid, j])
        out["beta"][j] = model.coef_ / scaler.scale_
        out["intercept"][j] = model.intercept_ - np.sum(model.coef_ * scaler.mean_ / scaler.scale_)
        out["r_squared"][j] = model.score(z, y[valid, j])
        ssr = np.sum((y[valid, j] - model.predict(z)) ** 2)
        out["resid_vol"][j] = np.sqrt(ssr / (valid.sum() - K - 1))
    return out


@pytest.mark.parametrize("seed", [21, 22])
def test_matches_sklearn_symbol_by_symbol(seed: int) -> None:
    y, X = _universe(seed)
    got = ridge_betas(y, X, 1.0, MIN_OBS)
    ref = _sklearn(y, X)
    assert_array_equal(got.n_obs, ref["n_obs"])
    assert_array_equal(np.isnan(got.beta), np.isnan(ref["beta"]))
    assert_allclose(got.beta, ref["beta"], rtol=0, atol=1e-9)
    assert_allclose(got.beta, ref["beta"], rtol=1e-9, atol=1e-12)
    assert_allclose(got.intercept, ref["intercept"], rtol=1e-9, atol=1e-13)
    assert_allclose(got.r_squared, ref["r_squared"], rtol=1e-9, atol=1e-13)
    assert_allclose(got.resid_vol, ref["resid_vol"], rtol=1e-9)
    assert got.n_obs[2] == 67 and got.reason[2] == (
        "insufficient_data: 67 valid observations (need 68)"
    )
    assert got.n_obs[3] == 68 and got.reason[3] is None
    assert got.r_squared[1] > 0.99  # SSR from explicit residuals (r² > 0.9)


def test_shared_group_and_batched_solvers_agree() -> None:
    y, X = _universe(23)
    group = np.arange(5, 5 + SHARED_GROUP_MIN + 2)
    together = ridge_betas(y[:, group], X, 1.0, MIN_OBS)  # one K×K solve
    one_by_one = [ridge_betas(y[:, [j]], X, 1.0, MIN_OBS) for j in group]  # batched path
    for i, single in enumerate(one_by_one):
        assert_allclose(together.beta[i], single.beta[0], rtol=1e-11, atol=1e-14)
        assert_allclose(together.resid_vol[i], single.resid_vol[0], rtol=1e-11)
        assert_allclose(together.r_squared[i], single.r_squared[0], rtol=1e-11)


def test_every_column_gappy_matches_sklearn() -> None:
    y, X = _universe(24, n=25)
    rng = np.random.default_rng(3)
    y[rng.random(y.shape) < 0.04] = np.nan
    got = ridge_betas(y, X, 1.0, MIN_OBS)
    ref = _sklearn(y, X)
    assert_allclose(got.beta, ref["beta"], rtol=0, atol=1e-9)
    assert_allclose(got.resid_vol, ref["resid_vol"], rtol=1e-9)


def test_planted_betas_exact_shrinkage_on_orthogonal_regressors() -> None:
    # centered regressors with orthogonal columns: the standardized Gram matrix is
    # n·I, so ridge = OLS × n / (n + alpha) exactly
    rng = np.random.default_rng(8)
    n = 120
    q, _ = np.linalg.qr(rng.standard_normal((n, K)) - 0.5)
    q -= q.mean(axis=0)
    q, _ = np.linalg.qr(q)  # still centered: the span stays orthogonal to ones
    scales = np.array([0.01, 0.02, 0.005, 0.012, 0.03, 0.008])
    X = q * scales * np.sqrt(n) + np.array([1e-4, -2e-4, 3e-4, 0.0, 5e-4, -1e-4])
    planted = np.array([1.2, -0.3, 0.75, 0.0, 0.4, -1.1])
    y = (0.0004 + X @ planted)[:, None]
    got = ridge_betas(y, X, 1.0, 50)
    assert_allclose(got.beta[0], planted * n / (n + 1.0), rtol=1e-10, atol=1e-13)
    assert_allclose(ridge_betas(y, X, 1e-9, 50).beta[0], planted, rtol=1e-8, atol=1e-12)


def test_zero_variance_regressor_gives_nan_with_reason() -> None:
    y, X = _universe(25, n=8)
    X[:, 3] = 0.0021
    got = ridge_betas(y, X, 1.0, MIN_OBS, names=("VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV"))
    assert np.isnan(got.beta).all()
    enough = got.n_obs >= MIN_OBS
    assert enough.any()
    for j in np.flatnonzero(enough):
        assert got.reason[j] == f"zero_variance: QUAL constant over the {got.n_obs[j]} valid rows"


def test_constant_y_keeps_betas_and_has_no_r_squared() -> None:
    y, X = _universe(26, n=6)
    y[:, 2] = -0.004
    got = ridge_betas(y, X, 1.0, MIN_OBS)
    assert_allclose(got.beta[2], 0.0, atol=1e-14)
    assert np.isnan(got.r_squared[2]) and got.resid_vol[2] < 1e-15


@pytest.mark.parametrize(
    ("y", "X", "kwargs"),
    [
        (np.zeros(10), np.zeros((10, 2)), {}),
        (np.zeros((10, 3)), np.zeros((9, 2)), {}),
        (np.zeros((10, 3)), np.zeros(10), {}),
        (np.zeros((10, 3)), np.zeros((10, 2)), {"alpha": 0.0}),
        (np.zeros((10, 3)), np.zeros((10, 2)), {"min_obs": 0}),
        (np.zeros((10, 3)), np.zeros((10, 2)), {"names": ("a",)}),
    ],
)
def test_caller_mistakes_raise(y: np.ndarray, X: np.ndarray, kwargs: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        ridge_betas(y, X, **kwargs)  # type: ignore[arg-type]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 2**32 - 1),
    scale=st.floats(0.05, 40.0) | st.floats(-40.0, -0.05),
    shift=st.floats(-3.0, 3.0),
    x_scale=st.floats(0.1, 10.0),
    k=st.integers(0, K - 1),
)
def test_invariances(seed: int, scale: float, shift: float, x_scale: float, k: int) -> None:
    y, X = _universe(seed % 1000, n=40)
    base = ridge_betas(y, X, 1.0, MIN_OBS)
    scaled = ridge_betas(scale * y, X, 1.0, MIN_OBS)
    assert_allclose(scaled.beta, scale * base.beta, rtol=1e-9, atol=1e-12)
    assert_allclose(scaled.resid_vol, abs(scale) * base.resid_vol, rtol=1e-9)
    assert_allclose(scaled.r_squared, base.r_squared, rtol=1e-9, atol=1e-12)
    moved = ridge_betas(y + shift, X, 1.0, MIN_OBS)
    assert_allclose(moved.beta, base.beta, rtol=1e-9, atol=1e-11)
    assert_allclose(moved.intercept, base.intercept + shift, rtol=1e-9, atol=1e-11)
    # standardization makes the fit invariant to a regressor's units
    X2 = X.copy()
    X2[:, k] *= x_scale
    rescaled = ridge_betas(y, X2, 1.0, MIN_OBS)
    expected = base.beta.copy()
    expected[:, k] /= x_scale
    assert_allclose(rescaled.beta, expected, rtol=1e-9, atol=1e-12)
    assert_allclose(rescaled.r_squared, base.r_squared, rtol=1e-9, atol=1e-12)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), order_seed=st.integers(0, 2**32 - 1))
def test_symbol_order_and_no_mutation(seed: int, order_seed: int) -> None:
    y, X = _universe(seed % 1000, n=40)
    y_before, X_before = y.copy(), X.copy()
    base = ridge_betas(y, X, 1.0, MIN_OBS)
    assert_array_equal(y, y_before)
    assert_array_equal(X, X_before)
    perm = np.random.default_rng(order_seed).permutation(y.shape[1])
    shuffled = ridge_betas(y[:, perm], X, 1.0, MIN_OBS)
    assert_allclose(shuffled.beta, base.beta[perm], rtol=1e-11, atol=1e-14)
    assert_allclose(shuffled.resid_vol, base.resid_vol[perm], rtol=1e-11)
    assert_array_equal(shuffled.n_obs, base.n_obs[perm])
    assert_array_equal(shuffled.reason, base.reason[perm])
