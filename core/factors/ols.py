"""Univariate OLS with intercept, vectorized across symbols.

``y`` holds the daily simple returns of N symbols (columns) and ``x`` one regressor
series (an ETF's daily simple returns, or a long-minus-short spread of two). Each
column is regressed on ``x`` over the rows where both are finite; gaps are handled
per column, never by dropping a date for every symbol (a missing ``x`` removes that
row for every column, necessarily).

The sums are formed from data centered by their masked means, with the two-pass
correction term (Chan, Golub & LeVeque), so betas stay accurate for series whose
means are far from zero and for betas near zero.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.factors.definitions import zero_variance_reason

_EPS = float(np.finfo(np.float64).eps)

_CLOSE_FIT_R2 = 0.9
"""Above this r² the SSR is computed from explicit residuals rather than from
``Syy - beta * Sxy`` (whose relative error grows like eps / (1 - r²))."""

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ObjectArray = npt.NDArray[np.object_]


@dataclass(frozen=True, eq=False)
class OLSResult:
    """Per-column results of :func:`ols_betas`; every array has shape (N,).

    Attributes
    ----------
    alpha : ndarray of float64
        Intercept, in daily return units.
    beta : ndarray of float64
        Slope on the regressor.
    n_obs : ndarray of int64
        Number of rows used (``y`` and ``x`` both finite), reported even when the
        column got no value.
    r_squared : ndarray of float64
        Centered r² (statsmodels ``rsquared``); NaN when ``y`` is constant over its
        valid rows (0 / 0).
    resid_vol : ndarray of float64
        ``sqrt(SSR / (n_obs - 2))``: residual standard deviation in daily return
        units (statsmodels ``sqrt(mse_resid)``), not annualized.
    reason : ndarray of object
        None where the column has values, otherwise why not (``insufficient_data``
        or ``zero_variance``).
    """

    alpha: FloatArray
    beta: FloatArray
    n_obs: IntArray
    r_squared: FloatArray
    resid_vol: FloatArray
    reason: ObjectArray


def is_constant(var: FloatArray, mean: FloatArray, n: FloatArray) -> npt.NDArray[np.bool_]:
    """Whether a variance is indistinguishable from zero (as scikit-learn decides).

    Parameters
    ----------
    var, mean : ndarray of float64
        Population variance and mean of each series, computed by the two-pass
        algorithm.
    n : ndarray of float64
        Number of values behind each variance.

    Returns
    -------
    ndarray of bool
        ``var <= n * eps * var + (n * mean * eps) ** 2``, the rounding-error bound of
        the two-pass variance (scikit-learn's ``_is_constant_feature``). An exactly
        constant series always satisfies it (its corrected two-pass variance is zero
        up to rounding); a series whose values differ by more than a few ulps never
        does.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        bound = n * _EPS * var + (n * mean * _EPS) ** 2
        return np.asarray((var <= bound) | (var == 0.0))


@dataclass(frozen=True, eq=False)
class _Moments:
    """Centered sums of one block of columns (shapes (G,) or broadcastable)."""

    n: FloatArray
    xbar: FloatArray
    ybar: FloatArray
    sxx: FloatArray
    syy: FloatArray
    sxy: FloatArray
    ssr: FloatArray
    x_const: npt.NDArray[np.bool_]


def _moments_complete(y: FloatArray, x: FloatArray) -> _Moments:
    """Moments for columns of ``y`` that are finite on every row (``x`` finite too).

    Columns with gaps come out NaN here; the caller recomputes them with
    :func:`_moments_masked`. One (T, G) temporary: the SSR comes from the normal
    equations, ``Syy - beta * Sxy``, except where r² > 0.9, where that difference would
    lose digits and the residuals are formed explicitly.
    """
    t, g = y.shape
    nt = float(t)
    xbar = x.sum() / nt
    dx = x - xbar  # shape: (T,)
    xbar = xbar + dx.sum() / nt
    dx = x - xbar
    cx = dx.sum() / nt
    sxx = float(dx @ dx) - nt * cx * cx

    ybar = y.sum(axis=0) / nt  # shape: (G,)
    dy = y - ybar  # shape: (T, G)
    cy = dy.sum(axis=0) / nt
    ybar = ybar + cy
    syy = np.einsum("tg,tg->g", dy, dy) - nt * cy * cy
    sxy = np.einsum("t,tg->g", dx, dy) - nt * cx * cy
    beta = sxy / sxx if sxx > 0 else np.full(g, np.nan)
    ssr = syy - beta * sxy
    close_fit = np.flatnonzero(beta * sxy > _CLOSE_FIT_R2 * syy)
    if close_fit.size:
        b = beta[close_fit]
        e = dy[:, close_fit] - np.outer(dx, b)  # shape: (T, G_close)
        ce = cy[close_fit] - b * cx
        ssr[close_fit] = np.einsum("tg,tg->g", e, e) - nt * ce * ce
    x_const = is_constant(np.asarray(sxx / nt), np.asarray(xbar), np.asarray(nt))
    return _Moments(
        n=np.full(g, nt),
        xbar=np.full(g, xbar),
        ybar=ybar,
        sxx=np.full(g, sxx),
        syy=syy,
        sxy=sxy,
        ssr=ssr,
        x_const=np.broadcast_to(x_const, (g,)),
    )


def _moments_masked(y: FloatArray, x: FloatArray, m: npt.NDArray[np.bool_]) -> _Moments:
    """Moments for columns of ``y`` with their own row masks ``m`` (``x`` finite)."""
    mf = m.astype(np.float64)  # shape: (T, G)
    nf = mf.sum(axis=0)
    y0 = np.where(m, y, 0.0)
    xbar = np.einsum("t,tg->g", x, mf) / nf  # shape: (G,)
    dx = (x[:, None] - xbar) * mf  # shape: (T, G)
    cx = dx.sum(axis=0) / nf
    xbar = xbar + cx
    ybar = y0.sum(axis=0) / nf
    dy = (y0 - ybar) * mf  # shape: (T, G)
    cy = dy.sum(axis=0) / nf
    ybar = ybar + cy
    sxx = np.einsum("tg,tg->g", dx, dx) - nf * cx * cx
    syy = np.einsum("tg,tg->g", dy, dy) - nf * cy * cy
    sxy = np.einsum("tg,tg->g", dx, dy) - nf * cx * cy
    beta = sxy / sxx
    e = dy - beta * dx  # shape: (T, G); zero on masked-out rows
    ce = cy - beta * cx
    ssr = np.einsum("tg,tg->g", e, e) - nf * ce * ce
    return _Moments(nf, xbar, ybar, sxx, syy, sxy, ssr, is_constant(sxx / nf, xbar, nf))


def ols_betas(
    y: npt.ArrayLike,
    x: npt.ArrayLike,
    min_obs: int,
    *,
    x_name: str = "x",
) -> OLSResult:
    """OLS with intercept of every column of ``y`` on ``x``, using each column's valid rows.

    Parameters
    ----------
    y : array_like, shape (T, N)
        Daily simple returns of N symbols over one window (last row = ``as_of``);
        NaN (or any non-finite value) = missing.
    x : array_like, shape (T,)
        Daily simple returns of the regressor on the same rows; NaN = missing.
    min_obs : int
        Minimum number of valid rows (``y`` and ``x`` both finite) for a column to get
        a value. At least 3 rows are always required (two parameters plus one degree of
        freedom for the residual volatility).
    x_name : str, optional
        Name of the regressor, used in ``reason`` texts.

    Returns
    -------
    OLSResult
        ``alpha``, ``beta``, ``r_squared``, ``resid_vol`` (daily units), ``n_obs`` and
        ``reason``, each shape (N,). Equal to statsmodels
        ``OLS(y_valid, add_constant(x_valid)).fit()`` column by column (``params``,
        ``rsquared``, ``sqrt(mse_resid)``).

    Notes
    -----
    Degenerate columns get NaN, never an exception:

    * fewer than ``max(min_obs, 3)`` valid rows: every value NaN (``n_obs`` reported);
    * ``x`` constant over the column's valid rows: the slope is undefined, every value
      NaN;
    * ``y`` constant over its valid rows: ``beta`` (≈ 0), ``alpha`` and ``resid_vol``
      are reported, ``r_squared`` is NaN (0 / 0; statsmodels gives NaN too).

    Raises
    ------
    ValueError
        If ``y`` is not 2-D, ``x`` is not shape (T,), or ``min_obs < 1``.
    """
    ya = np.asarray(y, dtype=np.float64)
    xa = np.asarray(x, dtype=np.float64)
    if ya.ndim != 2:
        raise ValueError(f"y must be 2-D (T, N), got shape {ya.shape}")
    if xa.shape != (ya.shape[0],):
        raise ValueError(f"x must have shape ({ya.shape[0]},), got {xa.shape}")
    if int(min_obs) < 1:
        raise ValueError(f"min_obs must be at least 1, got {min_obs}")
    need = max(int(min_obs), 3)
    n_cols = ya.shape[1]

    xf = np.isfinite(xa)
    if not xf.all():
        ya, xa = ya[xf], xa[xf]  # shape: (T', N), rows where the regressor exists
    yf = np.isfinite(ya)  # shape: (T', N)
    n_obs = yf.sum(axis=0).astype(np.int64)
    t_rows = ya.shape[0]

    alpha = np.full(n_cols, np.nan)
    beta = np.full(n_cols, np.nan)
    r2 = np.full(n_cols, np.nan)
    resid_vol = np.full(n_cols, np.nan)
    reason = np.full(n_cols, None, dtype=object)

    enough = n_obs >= need
    if enough.any():
        complete = n_obs == t_rows
        partial = np.flatnonzero(enough & ~complete)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if complete.any():
                idx = np.flatnonzero(complete)
                if 2 * idx.size >= n_cols:
                    # cheaper to run over every column than to copy the complete ones out
                    mom = _subset(_moments_complete(ya, xa), idx)
                else:
                    mom = _moments_complete(ya[:, idx], xa)
                _finish(mom, idx, alpha, beta, r2, resid_vol)
            if partial.size:
                block = ya[:, partial]
                mom = _moments_masked(block, xa, yf[:, partial])
                _finish(mom, partial, alpha, beta, r2, resid_vol)

    short = np.flatnonzero(~enough)
    if short.size:
        texts = np.array(
            [f"insufficient_data: {k} valid observations (need {need})" for k in range(t_rows + 1)],
            dtype=object,
        )
        reason[short] = texts[n_obs[short]]
    const = np.flatnonzero(enough & np.isnan(beta))
    for j in const:
        reason[j] = zero_variance_reason([x_name], int(n_obs[j]))
    return OLSResult(alpha, beta, n_obs, r2, resid_vol, reason)


def _subset(mom: _Moments, idx: npt.NDArray[np.intp]) -> _Moments:
    """The moments of columns ``idx`` only."""
    return _Moments(
        n=mom.n[idx],
        xbar=mom.xbar[idx],
        ybar=mom.ybar[idx],
        sxx=mom.sxx[idx],
        syy=mom.syy[idx],
        sxy=mom.sxy[idx],
        ssr=mom.ssr[idx],
        x_const=mom.x_const[idx],
    )


def _finish(
    mom: _Moments,
    idx: npt.NDArray[np.intp],
    alpha: FloatArray,
    beta: FloatArray,
    r2: FloatArray,
    resid_vol: FloatArray,
) -> None:
    """Turn moments into estimates and scatter them into the output arrays at ``idx``."""
    ok = ~mom.x_const & (mom.sxx > 0)
    b = np.where(ok, mom.sxy / mom.sxx, np.nan)
    beta[idx] = b
    alpha[idx] = mom.ybar - b * mom.xbar
    ssr = np.maximum(mom.ssr, 0.0)
    resid_vol[idx] = np.where(ok, np.sqrt(ssr / (mom.n - 2.0)), np.nan)
    y_const = is_constant(mom.syy / mom.n, mom.ybar, mom.n)
    # sxy² / (sxx syy) equals statsmodels' 1 - SSR / TSS and keeps full relative
    # accuracy when r² is close to zero.
    rsq = np.minimum(mom.sxy * mom.sxy / (mom.sxx * mom.syy), 1.0)
    r2[idx] = np.where(ok & ~y_const, rsq, np.nan)
