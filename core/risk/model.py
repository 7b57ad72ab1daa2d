"""The factor risk model: per-symbol exposures and specific risk, portfolio volatility and
its Euler contributions, VaR and ES (parametric, historical, Cornish-Fisher), liquidity and
the reverse stress test. Pure numpy, no I/O.

Conventions (every function): returns are daily **simple** returns; money is in the
portfolio's currency; a position's dollar exposure is its signed market value (shorts
negative); variances are daily; a loss is a **positive** number in VaR and ES.

The model. Each symbol is regressed once, by OLS with intercept, on the risk factors
``RISK_FACTORS`` (the six style ETFs and TLT; SPY is not a regressor) over its last
``RISK_WINDOW`` sessions: ``r_i = a_i + sum_k B_ik f_k + e_i``. Its specific variance is
that regression's residual variance ``SSR / (n - K - 1)``, so in-sample a symbol's variance
splits exactly into ``B_i' S B_i`` (S the sample factor covariance) and its specific part.
Market and rates enter once, as in the stress tests (``core.risk.stress``): every style ETF
carries the market, so SPY is not added on top, and TLT's coefficient is estimated jointly
with the styles (the partial rate sensitivity the stress tests reach by netting ``ir_beta``).
The factor covariance is the stress tests' EWMA (λ 0.94, 252 sessions).

May import: numpy, scipy, the standard library. No database, provider, Prefect or web code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt
from scipy import sparse

FloatArray = npt.NDArray[np.float64]

RISK_FACTORS: tuple[str, ...] = ("VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV", "TLT")
"""The regressors of the risk model (factor ETFs), in the order of every K axis."""

RISK_WINDOW = 252
"""Sessions of returns in each symbol's risk regression."""

MIN_RISK_OBS = 126
"""A symbol needs this many sessions with its return and every factor's to get a model."""

CONFIDENCES: tuple[float, ...] = (0.95, 0.99)
HORIZONS: tuple[int, ...] = (1, 10)
HISTORICAL_SESSIONS = 500
"""Sessions of stored symbol returns the historical VaR revalues today's holdings over."""

_NORMAL = NormalDist()


@dataclass(frozen=True)
class SymbolRiskModel:
    """One risk regression per symbol; every array's first axis is the symbol.

    Attributes
    ----------
    beta : ndarray, shape (N, K)
        Exposure to each of ``RISK_FACTORS`` (NaN rows: no model).
    specific_var : ndarray, shape (N,)
        Residual variance ``SSR / (n_obs - K - 1)``, daily (NaN: no model).
    n_obs : ndarray of int64, shape (N,)
        Sessions used.
    r_squared : ndarray, shape (N,)
        Centered r² of the regression.
    """

    beta: FloatArray
    specific_var: FloatArray
    n_obs: npt.NDArray[np.int64]
    r_squared: FloatArray


def risk_regression(returns: npt.ArrayLike, factor_returns: npt.ArrayLike,
                    min_obs: int = MIN_RISK_OBS) -> SymbolRiskModel:
    """OLS with intercept of every symbol's returns on all factors at once.

    Parameters
    ----------
    returns : array_like, shape (T, N)
        Daily simple returns of N symbols on T consecutive sessions; NaN = missing.
    factor_returns : array_like, shape (T, K)
        Daily simple returns of the K factors on the same sessions; NaN = missing.
    min_obs : int, optional
        Rows (symbol and every factor finite) a symbol needs; fewer gives NaN. At least
        ``K + 2`` (a residual degree of freedom) is always required.

    Returns
    -------
    SymbolRiskModel
        Per symbol: betas, residual variance (ddof ``K + 1``), rows used, r². Equal to
        statsmodels ``OLS(y, add_constant(X)).fit()`` on each symbol's valid rows
        (``params[1:]``, ``mse_resid``, ``rsquared``).
    """
    y = np.asarray(returns, dtype=np.float64)
    x = np.asarray(factor_returns, dtype=np.float64)
    if y.ndim != 2 or x.ndim != 2 or y.shape[0] != x.shape[0]:
        raise ValueError(f"returns (T, N) and factor_returns (T, K) must share T: "
                         f"{y.shape} vs {x.shape}")
    n = y.shape[1]
    k = x.shape[1]
    need = max(int(min_obs), k + 2)
    beta = np.full((n, k), np.nan)
    spec = np.full(n, np.nan)
    r2 = np.full(n, np.nan)
    rows_complete = np.asarray(np.isfinite(x).all(axis=1))
    valid = np.isfinite(y) & rows_complete[:, None]
    n_obs = valid.sum(axis=0).astype(np.int64)
    # symbols sharing one set of valid rows share one design matrix: solve them together
    patterns: dict[bytes, list[int]] = {}
    for j in np.flatnonzero(n_obs >= need):
        patterns.setdefault(np.packbits(valid[:, j]).tobytes(), []).append(int(j))
    for cols in patterns.values():
        rows = valid[:, cols[0]]
        design = np.column_stack([np.ones(int(rows.sum())), x[rows]])
        yy = y[rows][:, cols]
        coef, *_ = np.linalg.lstsq(design, yy, rcond=None)
        resid = yy - design @ coef
        ssr = (resid ** 2).sum(axis=0)
        sst = ((yy - yy.mean(axis=0)) ** 2).sum(axis=0)
        dof = rows.sum() - k - 1
        beta[cols] = coef[1:].T
        spec[cols] = ssr / dof
        with np.errstate(divide="ignore", invalid="ignore"):
            r2[cols] = np.where(sst > 0, 1.0 - ssr / sst, np.nan)
    return SymbolRiskModel(beta, spec, n_obs, r2)


@dataclass(frozen=True)
class PortfolioRisk:
    """Ex-ante risk of P portfolios; the first axis of every array is the portfolio.

    Attributes
    ----------
    factor_exposure : ndarray, shape (P, K)
        Dollar exposure to each factor, ``W B``.
    factor_var, specific_var, total_var : ndarray, shape (P,)
        Daily dollar variances; ``total = factor + specific``.
    volatility : ndarray, shape (P,)
        Daily dollar volatility ``sqrt(total_var)``.
    factor_contribution : ndarray, shape (P, K)
        Euler contribution of each factor to ``volatility`` (dollars per day).
    specific_contribution : ndarray, shape (P,)
        ``specific_var / volatility``; with the factor contributions it sums to
        ``volatility``.
    position_contribution : ndarray, shape (P, N)
        Euler contribution of each position; a row sums to ``volatility``.
    position_marginal : ndarray, shape (P, N)
        ∂σ/∂w: dollars of volatility per dollar of the position.
    factor_marginal : ndarray, shape (P, K)
        ∂σ/∂f: dollars of volatility per dollar of factor exposure.
    """

    factor_exposure: FloatArray
    factor_var: FloatArray
    specific_var: FloatArray
    total_var: FloatArray
    volatility: FloatArray
    factor_contribution: FloatArray
    specific_contribution: FloatArray
    position_contribution: FloatArray
    position_marginal: FloatArray
    factor_marginal: FloatArray


def portfolio_risk(positions: npt.ArrayLike, beta: npt.ArrayLike, specific_var: npt.ArrayLike,
                   factor_cov: npt.ArrayLike) -> PortfolioRisk:
    """Volatility of many portfolios at once from the factor model, with its Euler split.

    Parameters
    ----------
    positions : array_like or scipy sparse matrix, shape (P, N)
        Signed dollar exposure of each portfolio to each symbol (0 = not held). Symbols
        without a model must be given 0 here (report them as uncovered). Sparse holdings
        (many portfolios over a large universe) cost O(nnz K) and give sparse position
        arrays of the same entries in the same order; a sparse row may hold several entries
        in one column (lots of one symbol: their specific risk is one, each lot's
        contribution is its dollars times the symbol's marginal).
    beta : array_like, shape (N, K)
        Factor exposures of the symbols (finite).
    specific_var : array_like, shape (N,)
        Daily specific variances of the symbols (finite, ≥ 0).
    factor_cov : array_like, shape (K, K)
        Daily factor covariance.

    Returns
    -------
    PortfolioRisk
        ``σ² = f'Σf + Σ_i w_i² s_i`` with ``f = Bᵀw``; contributions
        ``w_i (∂σ/∂w_i)`` and ``f_k (Σf)_k / σ``: each set sums to σ exactly (up to
        rounding). A portfolio with σ = 0 gets zero contributions and marginals.

    Notes
    -----
    Never forms the N × N covariance: ``Σw = B Σ_f f + s ∘ w`` costs O(N K).
    """
    b = np.asarray(beta, dtype=np.float64)
    s = np.asarray(specific_var, dtype=np.float64)
    cov = np.asarray(factor_cov, dtype=np.float64)
    if sparse.issparse(positions):
        return _portfolio_risk_sparse(sparse.csr_array(positions, dtype=np.float64), b, s, cov)
    w = np.atleast_2d(np.asarray(positions, dtype=np.float64))
    f = w @ b  # (P, K)
    cov_f = f @ cov  # (P, K): Σ_f f per portfolio
    factor_var = np.einsum("pk,pk->p", cov_f, f)
    spec_w = w * s  # (P, N): the specific part of Σw
    specific = np.einsum("pn,pn->p", spec_w, w)
    vol, inv = _volatility(factor_var + specific)
    marginal_w = (cov_f @ b.T + spec_w) * inv[:, None]  # (P, N)
    marginal_f = cov_f * inv[:, None]
    return PortfolioRisk(
        factor_exposure=f, factor_var=factor_var, specific_var=specific,
        total_var=factor_var + specific, volatility=vol, factor_contribution=f * marginal_f,
        specific_contribution=specific * inv, position_contribution=w * marginal_w,
        position_marginal=marginal_w, factor_marginal=marginal_f)


def _volatility(total: FloatArray) -> tuple[FloatArray, FloatArray]:
    """σ and 1/σ (0 where σ is 0)."""
    vol = np.sqrt(np.maximum(total, 0.0))
    return vol, np.divide(1.0, vol, out=np.zeros_like(vol), where=vol > 0)


def _portfolio_risk_sparse(w: sparse.csr_array, b: FloatArray, s: FloatArray,
                           cov: FloatArray) -> PortfolioRisk:
    """:func:`portfolio_risk` for holdings as a sparse (P, N) matrix: O(nnz K) instead of
    O(P N K); the position arrays come back as sparse matrices of the same pattern."""
    f = np.asarray(w @ b)  # (P, K)
    cov_f = f @ cov
    factor_var = np.einsum("pk,pk->p", cov_f, f)
    rows = np.repeat(np.arange(w.shape[0]), np.diff(w.indptr))
    cols, vals = w.indices, w.data
    # entries of one row in one column are lots of one symbol: one specific risk
    held_at, lot = np.unique(rows.astype(np.int64) * w.shape[1] + cols, return_inverse=True)
    held = np.bincount(lot, weights=vals, minlength=len(held_at))  # dollars per (row, col)
    held_col = held_at % w.shape[1]
    specific = np.asarray(np.bincount(held_at // w.shape[1], weights=held * held * s[held_col],
                                      minlength=w.shape[0]), dtype=np.float64)
    vol, inv = _volatility(factor_var + specific)
    marginal = (np.einsum("ik,ik->i", cov_f[rows], b[cols]) + s[cols] * held[lot]) * inv[rows]
    marginal_f = cov_f * inv[:, None]

    def like_w(data: FloatArray) -> sparse.csr_array:
        return sparse.csr_array((data, cols, w.indptr), shape=w.shape)

    return PortfolioRisk(
        factor_exposure=f, factor_var=factor_var, specific_var=specific,
        total_var=factor_var + specific, volatility=vol, factor_contribution=f * marginal_f,
        specific_contribution=specific * inv, position_contribution=like_w(vals * marginal),
        position_marginal=like_w(marginal), factor_marginal=marginal_f)


def predicted_beta(factor_exposure: npt.ArrayLike, factor_cov: npt.ArrayLike,
                   benchmark_beta: npt.ArrayLike, benchmark_specific_var: float,
                   equity: npt.ArrayLike) -> FloatArray:
    """Beta of portfolios to a benchmark symbol under the model.

    Parameters
    ----------
    factor_exposure : array_like, shape (P, K)
        Dollar factor exposures (``PortfolioRisk.factor_exposure``).
    factor_cov : array_like, shape (K, K)
    benchmark_beta : array_like, shape (K,)
        The benchmark's own exposures (e.g. SPY's risk regression).
    benchmark_specific_var : float
        Its specific variance (counted in its variance, not in the covariance: the
        portfolio's specific risk is independent of it unless it holds the benchmark).
    equity : array_like, shape (P,)
        Equity of each portfolio; the beta is per unit of equity (NaN when 0).

    Returns
    -------
    ndarray, shape (P,)
        ``cov(portfolio, benchmark) / var(benchmark) / equity``.
    """
    f = np.atleast_2d(np.asarray(factor_exposure, dtype=np.float64))
    cov = np.asarray(factor_cov, dtype=np.float64)
    bb = np.asarray(benchmark_beta, dtype=np.float64)
    var_b = float(bb @ cov @ bb) + float(benchmark_specific_var)
    e = np.asarray(equity, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(e != 0, (f @ cov @ bb) / var_b / e, np.nan)


def normal_var_es(volatility: npt.ArrayLike, confidence: float, horizon: int = 1
                  ) -> tuple[FloatArray, FloatArray]:
    """Parametric (normal, zero mean) VaR and ES of a daily dollar volatility.

    Parameters
    ----------
    volatility : array_like
        Daily dollar volatility σ.
    confidence : float
        E.g. 0.99.
    horizon : int, optional
        Sessions; scaled by √horizon (i.i.d. daily returns).

    Returns
    -------
    (var, es) : ndarrays like ``volatility``
        ``z σ √h`` and ``σ √h φ(z) / (1 − c)`` with ``z = Φ⁻¹(c)``; losses positive.
    """
    sigma = np.asarray(volatility, dtype=np.float64) * math.sqrt(horizon)
    z = _NORMAL.inv_cdf(confidence)
    return z * sigma, sigma * _NORMAL.pdf(z) / (1.0 - confidence)


def horizon_pnl(daily_pnl: npt.ArrayLike, horizon: int) -> FloatArray:
    """Overlapping ``horizon``-session P&L of constant dollar positions (sums of daily P&L).

    Parameters
    ----------
    daily_pnl : array_like, shape (T,) or (T, P)
        Daily dollar P&L, oldest first (finite).
    horizon : int
        Sessions per window (1 returns the input).

    Returns
    -------
    ndarray, shape (T - horizon + 1,) or (T - horizon + 1, P)
    """
    x = np.asarray(daily_pnl, dtype=np.float64)
    if horizon == 1:
        return x
    c = np.cumsum(np.concatenate([np.zeros((1, *x.shape[1:])), x]), axis=0)
    return c[horizon:] - c[:-horizon]


def historical_var_es(pnl: npt.ArrayLike, confidence: float
                      ) -> tuple[FloatArray, FloatArray]:
    """Historical VaR and ES of P&L samples.

    Parameters
    ----------
    pnl : array_like, shape (T,) or (T, P)
        Dollar P&L outcomes (finite) along axis 0, e.g. :func:`horizon_pnl` of revalued
        holdings; one column per portfolio.
    confidence : float

    Returns
    -------
    (var, es) : ndarrays, shape () or (P,)
        ``var = −q`` with ``q`` numpy's linear-interpolated ``1 − c`` quantile;
        ``es = −mean(pnl[pnl ≤ q])`` (an outcome equal to ``q`` up to rounding counts:
        ``1 − 0.9`` is not exactly 0.1). Losses positive; NaN without outcomes.
    """
    x = np.asarray(pnl, dtype=np.float64)
    if x.shape[0] == 0:
        nan = np.full(x.shape[1:], np.nan)
        return nan, nan.copy()
    q = np.quantile(x, 1.0 - confidence, axis=0)
    tail = x <= q + 1e-12 * np.maximum(1.0, np.abs(q))
    es = (x * tail).sum(axis=0) / tail.sum(axis=0)
    return -q, -es


def cornish_fisher_z(confidence: float, skew: npt.ArrayLike, excess_kurtosis: npt.ArrayLike
                     ) -> FloatArray:
    """The Cornish-Fisher lower-tail quantile of a standardised variable.

    ``z + (z²−1)S/6 + (z³−3z)K/24 − (2z³−5z)S²/36`` with ``z = Φ⁻¹(1 − c)`` (negative).
    """
    z = _NORMAL.inv_cdf(1.0 - confidence)
    s = np.asarray(skew, dtype=np.float64)
    k = np.asarray(excess_kurtosis, dtype=np.float64)
    return z + (z * z - 1) * s / 6 + (z ** 3 - 3 * z) * k / 24 - (2 * z ** 3 - 5 * z) * s * s / 36


def pnl_moments(pnl: npt.ArrayLike) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """Mean, standard deviation (ddof 1), skewness and excess kurtosis (population moments)
    of P&L samples along axis 0, shape () or (P,) each; a flat sample has skewness and
    kurtosis 0."""
    x = np.asarray(pnl, dtype=np.float64)
    mu = x.mean(axis=0)
    d = x - mu
    d2 = d * d
    m2 = d2.mean(axis=0)
    sd = np.sqrt(m2 * (x.shape[0] / (x.shape[0] - 1))) if x.shape[0] > 1 else np.full_like(
        m2, np.nan)
    flat = m2 == 0
    m2 = np.where(flat, 1.0, m2)
    skew = np.where(flat, 0.0, (d2 * d).mean(axis=0) / m2 ** 1.5)
    kurt = np.where(flat, 0.0, (d2 * d2).mean(axis=0) / (m2 * m2) - 3.0)
    return mu, sd, skew, kurt


def cornish_fisher_var(pnl: npt.ArrayLike, confidence: float,
                       moments: tuple[FloatArray, FloatArray, FloatArray, FloatArray]
                       | None = None) -> FloatArray:
    """VaR from the mean, standard deviation (ddof 1), skewness and excess kurtosis
    (population moments) of P&L samples along axis 0: ``−(μ + σ z_cf)``; a loss is
    positive. Shape () or (P,); NaN with fewer than 4 outcomes; ``−μ`` when σ = 0.
    ``moments``: :func:`pnl_moments` of ``pnl`` when already computed."""
    x = np.asarray(pnl, dtype=np.float64)
    if x.shape[0] < 4:
        return np.full(x.shape[1:], np.nan)
    mu, sd, skew, kurt = moments if moments is not None else pnl_moments(x)
    return -(mu + sd * cornish_fisher_z(confidence, skew, kurt))


@dataclass(frozen=True)
class Liquidity:
    """Days to liquidate each position and the share of each book sellable in time.

    Attributes
    ----------
    days : ndarray, shape (N,)
        ``|quantity| / (participation × ADV)``; NaN where the volume is unknown.
    sellable_1d, sellable_5d : ndarray, shape (P,)
        Per book, the share of the gross value of its positions with a known volume that
        can be sold within 1 and 5 sessions (a position sells linearly over its days);
        NaN for a book without such positions.
    unknown : ndarray of bool, shape (N,)
        Positions without volume.
    """

    days: FloatArray
    sellable_1d: FloatArray
    sellable_5d: FloatArray
    unknown: npt.NDArray[np.bool_]


def liquidity(quantity: npt.ArrayLike, market_value: npt.ArrayLike, adv: npt.ArrayLike,
              participation: float = 0.2, book: npt.ArrayLike | None = None,
              books: int = 1) -> Liquidity:
    """Liquidation horizon of positions at a share of their average daily volume.

    Parameters
    ----------
    quantity : array_like, shape (N,)
        Shares held (signed; shorts are bought back at the same rate).
    market_value : array_like, shape (N,)
        Signed market value of each position (its gross value weighs the shares sold).
    adv : array_like, shape (N,)
        Average daily volume in shares (NaN or ≤ 0 = unknown).
    participation : float, optional
        Share of the daily volume one may trade (default 20 %).
    book : array_like of int, shape (N,), optional
        The book (0 ≤ book < ``books``) each position belongs to; all in book 0 if omitted.
    books : int, optional
        Number of books P.
    """
    q = np.abs(np.asarray(quantity, dtype=np.float64))
    v = np.abs(np.asarray(market_value, dtype=np.float64))
    a = np.asarray(adv, dtype=np.float64)
    g = np.zeros(len(q), dtype=np.intp) if book is None else np.asarray(book, dtype=np.intp)
    unknown = ~(np.isfinite(a) & (a > 0))
    with np.errstate(divide="ignore", invalid="ignore"):
        days = np.where(unknown, np.nan, q / (participation * np.where(unknown, 1.0, a)))
    known_v = np.where(unknown, 0.0, v)
    gross = np.bincount(g, weights=known_v, minlength=books)
    safe = np.where(days > 0, days, 1.0)

    def sellable(horizon: float) -> FloatArray:
        share = np.where(days > 0, np.minimum(1.0, horizon / safe), 1.0)
        sold = np.bincount(g, weights=known_v * np.where(unknown, 0.0, share), minlength=books)
        with np.errstate(divide="ignore", invalid="ignore"):
            return np.where(gross > 0, sold / np.where(gross > 0, gross, 1.0), np.nan)

    return Liquidity(days, sellable(1.0), sellable(5.0), unknown)


def reverse_stress_move(etf_exposure: npt.ArrayLike, etf_cov: npt.ArrayLike, etf: int,
                        loss: float) -> float | None:
    """The move of one ETF that, with the others at their conditional expectation, loses
    ``loss`` dollars (the stress tests' propagation, ``core.risk.stress``).

    Parameters
    ----------
    etf_exposure : array_like, shape (K,)
        Dollar exposure per factor ETF (``core.risk.stress.stress_exposures``).
    etf_cov : array_like, shape (K, K)
        Factor-ETF covariance.
    etf : int
        Index of the shocked ETF.
    loss : float
        Dollars to lose (> 0).

    Returns
    -------
    float or None
        The simple-return move ``m = −loss / g`` with ``g = D · Σ[:, e] / Σ[e, e]`` the
        portfolio's P&L per unit move; None when there is no such move: ``g = 0`` or the
        move would take the ETF below −100 %.
    """
    d = np.asarray(etf_exposure, dtype=np.float64)
    cov = np.asarray(etf_cov, dtype=np.float64)
    var = float(cov[etf, etf])
    if not var > 0 or not np.isfinite(d).all():
        return None
    g = float(d @ cov[:, etf]) / var
    if g == 0 or not math.isfinite(g):
        return None
    move = -float(loss) / g
    return move if move > -1.0 else None
