"""The factor risk model (core/risk/model.py) against references computed here: statsmodels
per symbol, the dense N × N covariance, scipy's normal distribution, sorted-sample quantiles,
scipy's moments in the textbook Cornish-Fisher expansion, and the stress tests' propagation."""

from __future__ import annotations

import math

import numpy as np
import pytest
import statsmodels.api as sm
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate, stats

from core.risk.model import (
    cornish_fisher_var,
    historical_var_es,
    horizon_pnl,
    liquidity,
    normal_var_es,
    portfolio_risk,
    predicted_beta,
    reverse_stress_move,
    risk_regression,
)
from core.risk.stress import conditional_moves


def _planted(t: int = 300, n: int = 12, k: int = 7, seed: int = 1
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mix = rng.normal(size=(k, k)) * 0.004
    f = rng.normal(size=(t, k)) @ mix
    b = rng.normal(size=(n, k))
    spec = rng.uniform(0.005, 0.02, size=n)
    r = f @ b.T + rng.normal(size=(t, n)) * spec
    return r, f, b, spec


def test_the_regression_equals_statsmodels_symbol_by_symbol_with_gaps() -> None:
    r, f, _, _ = _planted()
    r[:40, 2] = np.nan  # a late listing
    r[[5, 90, 91], 7] = np.nan  # holes
    f[17, 3] = np.nan  # a factor's missing day removes the row for everyone
    r[:200, 9] = np.nan  # too short: no model
    model = risk_regression(r, f, min_obs=126)
    for j in range(r.shape[1]):
        rows = np.isfinite(r[:, j]) & np.isfinite(f).all(axis=1)
        assert model.n_obs[j] == rows.sum()
        if rows.sum() < 126:
            assert np.isnan(model.beta[j]).all() and np.isnan(model.specific_var[j])
            continue
        fit = sm.OLS(r[rows, j], sm.add_constant(f[rows])).fit()
        np.testing.assert_allclose(model.beta[j], fit.params[1:], rtol=1e-9, atol=1e-12)
        assert model.specific_var[j] == pytest.approx(fit.mse_resid, rel=1e-9)
        assert model.r_squared[j] == pytest.approx(fit.rsquared, rel=1e-9)


def test_in_sample_a_symbols_variance_splits_into_factor_and_specific() -> None:
    r, f, _, _ = _planted(n=3)
    model = risk_regression(r, f)
    k = f.shape[1]
    for j in range(3):
        s = np.cov(f, rowvar=False)  # ddof 1, like the total variance below
        factor = model.beta[j] @ s @ model.beta[j]
        specific = model.specific_var[j] * (len(r) - k - 1) / (len(r) - 1)
        assert factor + specific == pytest.approx(np.var(r[:, j], ddof=1), rel=1e-10)


def _dense(w: np.ndarray, b: np.ndarray, s: np.ndarray, cov: np.ndarray) -> np.ndarray:
    return b @ cov @ b.T + np.diag(s)  # the N × N covariance the model never builds


def test_volatility_and_euler_contributions_equal_the_dense_computation() -> None:
    rng = np.random.default_rng(3)
    n, k = 9, 7
    b = rng.normal(size=(n, k))
    s = rng.uniform(1e-5, 4e-4, size=n)
    a = rng.normal(size=(k, k)) * 0.01
    cov = a @ a.T
    w = rng.normal(size=(4, n)) * 1e4  # four portfolios, long/short
    w[1, :4] = 0.0
    risk = portfolio_risk(w, b, s, cov)
    big = _dense(w, b, s, cov)
    for p in range(len(w)):
        sigma = math.sqrt(w[p] @ big @ w[p])
        assert risk.volatility[p] == pytest.approx(sigma, rel=1e-12)
        np.testing.assert_allclose(risk.position_marginal[p], big @ w[p] / sigma, rtol=1e-10)
        assert risk.position_contribution[p].sum() == pytest.approx(sigma, rel=1e-12)
        assert (risk.factor_contribution[p].sum() + risk.specific_contribution[p]
                == pytest.approx(sigma, rel=1e-12))
        assert risk.factor_var[p] == pytest.approx(w[p] @ b @ cov @ b.T @ w[p], rel=1e-12)
        # the marginal is the derivative: a finite difference agrees
        h = 1e-3
        bump = w[p].copy()
        bump[2] += h
        numeric = (math.sqrt(bump @ big @ bump) - sigma) / h
        assert risk.position_marginal[p, 2] == pytest.approx(numeric, rel=1e-5)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 12), st.integers(1, 7), st.integers(0, 2**31 - 1))
def test_contributions_always_sum_to_the_volatility(n: int, k: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    b = rng.normal(size=(n, k)) * rng.uniform(0, 3)
    s = rng.uniform(0, 1e-3, size=n)
    a = rng.normal(size=(k, k)) * 0.01
    w = rng.normal(size=(2, n)) * 10 ** rng.uniform(0, 8)
    risk = portfolio_risk(w, b, s, a @ a.T)
    assert np.all(np.isfinite(risk.volatility))
    np.testing.assert_allclose(risk.position_contribution.sum(axis=1), risk.volatility,
                               rtol=1e-9, atol=1e-9 * (1 + risk.volatility.max()))
    np.testing.assert_allclose(risk.factor_contribution.sum(axis=1)
                               + risk.specific_contribution, risk.volatility,
                               rtol=1e-9, atol=1e-9 * (1 + risk.volatility.max()))


def test_an_empty_book_has_no_risk_and_no_nan() -> None:
    risk = portfolio_risk(np.zeros((1, 3)), np.ones((3, 2)), np.ones(3) * 1e-4, np.eye(2))
    assert risk.volatility[0] == 0.0
    assert np.all(risk.position_contribution == 0) and np.all(risk.factor_marginal == 0)


def test_predicted_beta_is_the_covariance_with_the_benchmark_over_its_variance() -> None:
    rng = np.random.default_rng(5)
    n, k = 6, 7
    b = rng.normal(size=(n, k))
    s = rng.uniform(1e-5, 1e-4, size=n)
    a = rng.normal(size=(k, k)) * 0.01
    cov = a @ a.T
    w = rng.normal(size=n) * 1000
    spy_b, spy_s = rng.normal(size=k), 2e-6
    # the benchmark as a symbol among the others, in the dense covariance
    b_all = np.vstack([b, spy_b])
    big = _dense(None, b_all, np.append(s, spy_s), cov)  # type: ignore[arg-type]
    w_all = np.append(w, 0.0)
    e = np.zeros(n + 1)
    e[-1] = 1.0
    equity = 12_345.0
    expected = (w_all @ big @ e) / (e @ big @ e) / equity
    f = portfolio_risk(w, b, s, cov).factor_exposure
    assert predicted_beta(f, cov, spy_b, spy_s, [equity])[0] == pytest.approx(expected, rel=1e-12)
    assert np.isnan(predicted_beta(f, cov, spy_b, spy_s, [0.0])[0])


@pytest.mark.parametrize("confidence", [0.95, 0.99])
@pytest.mark.parametrize("horizon", [1, 10])
def test_parametric_var_and_es_equal_scipys_normal(confidence: float, horizon: int) -> None:
    sigma = 1234.5
    var, es = normal_var_es(np.array([sigma]), confidence, horizon)
    dist = stats.norm(scale=sigma * math.sqrt(horizon))
    assert var[0] == pytest.approx(-dist.ppf(1 - confidence), rel=1e-12)
    tail, _ = integrate.quad(lambda u: dist.ppf(u), 0, 1 - confidence)  # ES = mean tail loss
    assert es[0] == pytest.approx(-tail / (1 - confidence), rel=1e-7)


def test_historical_var_and_es_on_a_sorted_sample_by_hand() -> None:
    pnl = np.array([5.0, -10.0, 3.0, -2.0, 7.0, -30.0, 1.0, 0.0, -4.0, 2.0, -1.0])
    var, es = historical_var_es(pnl, 0.9)
    ordered = np.sort(pnl)  # linear interpolation at h = (n - 1) p
    h = (len(pnl) - 1) * 0.1
    q = ordered[int(h)] + (h - int(h)) * (ordered[int(h) + 1] - ordered[int(h)])
    assert var == pytest.approx(-q)
    assert es == pytest.approx(-np.mean([x for x in pnl if x <= q + 1e-9]))
    assert var == pytest.approx(10.0) and es == pytest.approx(20.0)  # the worst two: -30, -10


def test_ten_session_pnl_is_the_overlapping_sum() -> None:
    rng = np.random.default_rng(2)
    daily = rng.normal(size=(30, 2))
    out = horizon_pnl(daily, 10)
    assert out.shape == (21, 2)
    for t in range(21):
        np.testing.assert_allclose(out[t], daily[t:t + 10].sum(axis=0), rtol=1e-12)


def test_historical_and_parametric_agree_on_planted_normal_pnl() -> None:
    rng = np.random.default_rng(11)
    sigma = 1000.0
    pnl = rng.normal(scale=sigma, size=200_000)
    for c in (0.95, 0.99):
        var_h, es_h = historical_var_es(pnl, c)
        var_p, es_p = normal_var_es(np.array([sigma]), c)
        assert var_h == pytest.approx(var_p[0], rel=0.02)
        assert es_h == pytest.approx(es_p[0], rel=0.02)
        assert cornish_fisher_var(pnl, c) == pytest.approx(var_p[0], rel=0.02)


def test_cornish_fisher_follows_the_textbook_expansion() -> None:
    rng = np.random.default_rng(4)
    pnl = rng.standard_t(df=4, size=3000) * 100 - 3.0  # fat tails, a drift
    c = 0.99
    s = stats.skew(pnl)  # population moments (bias=True)
    k = stats.kurtosis(pnl)  # excess
    z = stats.norm.ppf(1 - c)
    zcf = z + (z**2 - 1) * s / 6 + (z**3 - 3 * z) * k / 24 - (2 * z**3 - 5 * z) * s**2 / 36
    expected = -(pnl.mean() + pnl.std(ddof=1) * zcf)
    assert cornish_fisher_var(pnl, c) == pytest.approx(expected, rel=1e-12)
    assert cornish_fisher_var(pnl, c) > normal_var_es(np.array([pnl.std(ddof=1)]), c)[0][0]


def test_liquidity_by_hand() -> None:
    liq = liquidity(quantity=[1000, -500, 10, 7], market_value=[10_000, -5_000, 1_000, 70],
                    adv=[2500, 100, np.nan, 0], participation=0.2)
    np.testing.assert_allclose(liq.days[:2], [2.0, 25.0])
    assert np.isnan(liq.days[2:]).all() and list(liq.unknown) == [False, False, True, True]
    gross = 15_000
    assert liq.sellable_1d == pytest.approx((10_000 * 0.5 + 5_000 / 25) / gross)
    assert liq.sellable_5d == pytest.approx((10_000 + 5_000 * 5 / 25) / gross)


def test_reverse_stress_move_costs_exactly_the_loss_through_the_stress_propagation() -> None:
    rng = np.random.default_rng(8)
    a = rng.normal(size=(8, 8)) * 0.01
    cov = a @ a.T + np.eye(8) * 1e-5
    d = np.abs(rng.normal(size=8)) * 1e5  # a long book
    loss = 0.1 * 1e6
    move = reverse_stress_move(d, cov, 0, loss)
    assert move is not None and move < 0
    moves = conditional_moves(cov, {0: move})
    assert d @ moves == pytest.approx(-loss, rel=1e-12)
    short = reverse_stress_move(-d, cov, 0, loss)
    assert short is not None and short == pytest.approx(-move)  # a short book loses on a rise
    assert reverse_stress_move(np.zeros(8), cov, 0, loss) is None
    assert reverse_stress_move(d, cov, 0, 1e12) is None  # would need SPY below -100 %


def test_many_portfolios_at_once_equal_one_by_one() -> None:
    rng = np.random.default_rng(6)
    pnl = rng.standard_t(df=5, size=(400, 3)) * [1.0, 50.0, 0.01]
    for c in (0.95, 0.99):
        var, es = historical_var_es(pnl, c)
        cf = cornish_fisher_var(pnl, c)
        for p in range(3):
            v1, e1 = historical_var_es(pnl[:, p], c)
            assert (var[p], es[p]) == (pytest.approx(float(v1)), pytest.approx(float(e1)))
            assert cf[p] == pytest.approx(float(cornish_fisher_var(pnl[:, p], c)))
    flat = cornish_fisher_var(np.full((10, 1), -2.0), 0.99)
    assert flat[0] == pytest.approx(2.0)  # no spread: the mean loss, no NaN


def test_sparse_holdings_give_the_dense_answer() -> None:
    from scipy import sparse

    rng = np.random.default_rng(12)
    n, k, p = 40, 7, 30
    b = rng.normal(size=(n, k))
    s = rng.uniform(1e-5, 4e-4, size=n)
    a = rng.normal(size=(k, k)) * 0.01
    w = np.zeros((p, n))
    for i in range(p):
        w[i, rng.choice(n, size=5, replace=False)] = rng.normal(size=5) * 1e4
    w[3] = 0.0  # an empty book
    dense = portfolio_risk(w, b, s, a @ a.T)
    thin = portfolio_risk(sparse.csr_array(w), b, s, a @ a.T)
    for name in ("volatility", "factor_var", "specific_var", "factor_contribution",
                 "specific_contribution", "factor_exposure", "factor_marginal"):
        np.testing.assert_allclose(getattr(thin, name), getattr(dense, name), rtol=1e-12,
                                   atol=1e-12, err_msg=name)
    held = w != 0
    for name in ("position_contribution", "position_marginal"):
        np.testing.assert_allclose(getattr(thin, name).toarray()[held],
                                   getattr(dense, name)[held], rtol=1e-12, atol=1e-9,
                                   err_msg=name)


def test_liquidity_of_many_books_equals_each_book_alone() -> None:
    q, v = [1000, -500, 10, 7, 300], [10_000, -5_000, 1_000, 70, 3_000]
    adv = [2500, 100, np.nan, 0, 10]
    together = liquidity(q, v, adv, 0.2, book=[0, 0, 1, 1, 2], books=4)
    for b, sl in ((0, slice(0, 2)), (1, slice(2, 4)), (2, slice(4, 5))):
        alone = liquidity(q[sl], v[sl], adv[sl], 0.2)
        np.testing.assert_array_equal(together.days[sl], alone.days)
        np.testing.assert_array_equal(together.sellable_1d[b], alone.sellable_1d[0])
        np.testing.assert_array_equal(together.sellable_5d[b], alone.sellable_5d[0])
    assert np.isnan(together.sellable_1d[1]) and np.isnan(together.sellable_1d[3])
    assert together.sellable_5d[2] == pytest.approx(5 / (300 / 2))
