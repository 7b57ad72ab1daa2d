"""Multivariate ridge with intercept on standardized regressors, vectorized across symbols.

For each column of ``y`` (a symbol's daily simple returns) over its valid rows (``y``
finite and every regressor finite) the regressors are standardized with their mean
and population standard deviation on exactly those rows (scikit-learn's
``StandardScaler``), a ridge with an unpenalized intercept is fitted (scikit-learn's
``Ridge(alpha, fit_intercept=True)``: ``X`` and ``y`` centered, then
``(ZᵀZ + αI) w = Zᵀy``), and the coefficients are divided by the standard deviations
so betas are in return units.

Columns sharing a validity mask (most often: all rows valid) are solved together with
one K×K system; the remaining columns with masks of their own are solved as a batch
of stacked K×K systems.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from core.factors.definitions import RIDGE_ALPHA, zero_variance_reason
from core.factors.ols import is_constant

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]
ObjectArray = npt.NDArray[np.object_]

SHARED_GROUP_MIN = 16
"""Columns with their own validity mask are grouped and solved with one K×K system
when at least this many share the mask; smaller groups go to the batched solver."""

_CLOSE_FIT_R2 = 0.9
"""Above this r² the SSR is computed from explicit residuals rather than from the
normal equations (whose relative error grows like eps / (1 - r²))."""

_BATCH = 1024
"""Columns per chunk of the batched solver (bounds the (G, T, K) temporaries)."""


@dataclass(frozen=True, eq=False)
class RidgeResult:
    """Per-column results of :func:`ridge_betas`.

    Attributes
    ----------
    beta : ndarray of float64, shape (N, K)
        Coefficients in return units (standardized coefficient / regressor std).
    intercept : ndarray of float64, shape (N,)
        Intercept in return units, ``mean(y) - beta · mean(X)`` over the valid rows
        (the intercept of the model written in the unstandardized regressors).
    n_obs : ndarray of int64, shape (N,)
        Number of valid rows, reported even when the column got no value.
    r_squared : ndarray of float64, shape (N,)
        ``1 - SSR / TSS`` on the valid rows (scikit-learn's ``Ridge.score``); NaN when
        ``y`` is constant over them.
    resid_vol : ndarray of float64, shape (N,)
        ``sqrt(SSR / (n_obs - K - 1))`` in daily return units.
    reason : ndarray of object, shape (N,)
        None where the column has values, otherwise why not.
    """

    beta: FloatArray
    intercept: FloatArray
    n_obs: IntArray
    r_squared: FloatArray
    resid_vol: FloatArray
    reason: ObjectArray


@dataclass(frozen=True, eq=False)
class _Fit:
    beta: FloatArray  # (G, K)
    intercept: FloatArray  # (G,)
    ssr: FloatArray  # (G,)
    tss: FloatArray  # (G,)
    ybar: FloatArray  # (G,)
    const: BoolArray  # (G, K): regressor constant over the column's valid rows


def ridge_betas(
    y: npt.ArrayLike,
    X: npt.ArrayLike,
    alpha: float = RIDGE_ALPHA,
    min_obs: int | None = None,
    *,
    names: Sequence[str] | None = None,
) -> RidgeResult:
    """Ridge of every column of ``y`` on the columns of ``X``, regressors standardized.

    Parameters
    ----------
    y : array_like, shape (T, N)
        Daily simple returns of N symbols over one window (last row = ``as_of``);
        NaN (or any non-finite value) = missing.
    X : array_like, shape (T, K)
        Daily simple returns of the K regressors on the same rows; NaN = missing. A
        row with any regressor missing is dropped for every column.
    alpha : float, optional
        L2 penalty on the standardized coefficients (scikit-learn's ``alpha``), > 0.
        The intercept is not penalized.
    min_obs : int, optional
        Minimum number of valid rows for a column to get a value; at least ``K + 2``
        (so the residual volatility has a degree of freedom), which is also the
        default.
    names : sequence of str, optional
        Regressor names for ``reason`` texts (default ``x0 … x{K-1}``).

    Returns
    -------
    RidgeResult
        ``beta`` (N, K), ``intercept``, ``n_obs``, ``r_squared``, ``resid_vol`` and
        ``reason`` (N,). ``beta`` equals ``Ridge(alpha).fit(StandardScaler()
        .fit_transform(X_valid), y_valid).coef_ / scaler.scale_`` column by column.

    Notes
    -----
    Degenerate columns get NaN: fewer than the required valid rows (``n_obs`` still
    reported), or a regressor constant over the column's valid rows (zero standard
    deviation, ``reason`` names it). A ``y`` constant over its valid rows keeps its
    betas (≈ 0) but gets NaN ``r_squared``.

    Raises
    ------
    ValueError
        On shape mismatches, ``alpha <= 0`` or ``min_obs < 1``.
    """
    ya = np.asarray(y, dtype=np.float64)
    Xa = np.asarray(X, dtype=np.float64)
    if ya.ndim != 2:
        raise ValueError(f"y must be 2-D (T, N), got shape {ya.shape}")
    if Xa.ndim != 2 or Xa.shape[0] != ya.shape[0] or Xa.shape[1] < 1:
        raise ValueError(f"X must have shape ({ya.shape[0]}, K) with K >= 1, got {Xa.shape}")
    if not (np.isfinite(alpha) and alpha > 0):
        raise ValueError(f"alpha must be positive and finite, got {alpha}")
    if min_obs is not None and int(min_obs) < 1:
        raise ValueError(f"min_obs must be at least 1, got {min_obs}")
    k = Xa.shape[1]
    reg_names = tuple(names) if names is not None else tuple(f"x{i}" for i in range(k))
    if len(reg_names) != k:
        raise ValueError(f"names has {len(reg_names)} entries for {k} regressors")
    need = max(int(min_obs or 0), k + 2)
    n_cols = ya.shape[1]

    rows = np.isfinite(Xa).all(axis=1)
    if not rows.all():
        ya, Xa = ya[rows], Xa[rows]  # shape: (T', N), (T', K)
    yf = np.isfinite(ya)  # shape: (T', N)
    n_obs = yf.sum(axis=0).astype(np.int64)
    t_rows = ya.shape[0]

    beta = np.full((n_cols, k), np.nan)
    intercept = np.full(n_cols, np.nan)
    r2 = np.full(n_cols, np.nan)
    resid_vol = np.full(n_cols, np.nan)
    const = np.zeros((n_cols, k), dtype=bool)
    reason = np.full(n_cols, None, dtype=object)

    def store(idx: npt.NDArray[np.intp], fit: _Fit) -> None:
        n = n_obs[idx].astype(np.float64)
        bad = np.asarray(fit.const.any(axis=1), dtype=bool)
        beta[idx] = np.where(bad[:, None], np.nan, fit.beta)
        intercept[idx] = np.where(bad, np.nan, fit.intercept)
        ssr = np.maximum(fit.ssr, 0.0)
        resid_vol[idx] = np.where(bad, np.nan, np.sqrt(ssr / (n - k - 1.0)))
        y_const = is_constant(fit.tss / n, fit.ybar, n)
        r2[idx] = np.where(bad | y_const, np.nan, 1.0 - ssr / fit.tss)
        const[idx] = fit.const

    enough = n_obs >= need
    if enough.any():
        complete = enough & (n_obs == t_rows)
        partial = np.flatnonzero(enough & ~complete)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            if complete.any():
                idx = np.flatnonzero(complete)
                if 2 * idx.size >= n_cols:
                    # cheaper to run over every column than to copy the complete ones out
                    store(idx, _subset(_fit_shared(ya, Xa, alpha), idx))
                else:
                    store(idx, _fit_shared(ya[:, idx], Xa, alpha))
            if partial.size:
                groups, batched = _group_by_mask(yf, partial)
                for idx in groups:
                    on = yf[:, idx[0]]  # the mask the group shares
                    store(idx, _fit_shared(ya[on][:, idx], Xa[on], alpha))
                for start in range(0, batched.size, _BATCH):
                    idx = batched[start : start + _BATCH]
                    store(idx, _fit_batched(ya[:, idx], Xa, yf[:, idx], alpha))

    short = np.flatnonzero(~enough)
    if short.size:
        texts = np.array(
            [f"insufficient_data: {c} valid observations (need {need})" for c in range(t_rows + 1)],
            dtype=object,
        )
        reason[short] = texts[n_obs[short]]
    for j in np.flatnonzero(const.any(axis=1)):
        bad_names = [reg_names[i] for i in np.flatnonzero(const[j])]
        reason[j] = zero_variance_reason(bad_names, int(n_obs[j]))
    return RidgeResult(beta, intercept, n_obs, r2, resid_vol, reason)


def _subset(fit: _Fit, idx: npt.NDArray[np.intp]) -> _Fit:
    """The fit of columns ``idx`` only."""
    return _Fit(
        beta=fit.beta[idx],
        intercept=fit.intercept[idx],
        ssr=fit.ssr[idx],
        tss=fit.tss[idx],
        ybar=fit.ybar[idx],
        const=fit.const[idx],
    )


def _group_by_mask(
    yf: BoolArray, partial: npt.NDArray[np.intp]
) -> tuple[list[npt.NDArray[np.intp]], npt.NDArray[np.intp]]:
    """Split ``partial`` columns into groups of >= SHARED_GROUP_MIN sharing a mask, and the rest."""
    if partial.size < SHARED_GROUP_MIN:
        return [], partial
    packed = np.packbits(yf[:, partial], axis=0).T  # shape: (P, ceil(T'/8)), one key per column
    _, inverse, counts = np.unique(packed, axis=0, return_inverse=True, return_counts=True)
    inverse = inverse.ravel()
    big = np.flatnonzero(counts >= SHARED_GROUP_MIN)
    groups = [partial[inverse == g] for g in big]
    return groups, partial[~np.isin(inverse, big)]


def _fit_shared(Y: FloatArray, X: FloatArray, alpha: float) -> _Fit:
    """Ridge for columns that are all valid on every row of ``Y`` (n, G) and ``X`` (n, K).

    One standardization and one K×K system serve every column. Columns of ``Y`` with
    gaps come out NaN (the caller does not use them). The SSR comes from the normal
    equations except where r² > 0.9, where the residuals are formed explicitly.
    """
    n, k = X.shape
    nf = float(n)
    mu = X.sum(axis=0) / nf  # shape: (K,)
    Xc = X - mu  # shape: (n, K)
    mu = mu + Xc.sum(axis=0) / nf
    Xc = X - mu
    cx = Xc.sum(axis=0) / nf
    sxx = Xc.T @ Xc - nf * np.outer(cx, cx)  # shape: (K, K)
    var = np.diag(sxx) / nf
    const = is_constant(var, mu, np.full(k, nf))
    sd = np.where(const, 1.0, np.sqrt(var))
    A = sxx / np.outer(sd, sd)  # shape: (K, K), Gram matrix of the standardized regressors
    A[np.diag_indices(k)] += alpha

    ybar = Y.sum(axis=0) / nf  # shape: (G,)
    Yc = Y - ybar  # shape: (n, G)
    cy = Yc.sum(axis=0) / nf
    ybar = ybar + cy
    sxy = Xc.T @ Yc - np.outer(cx, nf * cy)  # shape: (K, G)
    syy = np.einsum("tg,tg->g", Yc, Yc) - nf * cy * cy
    W = np.linalg.solve(A, sxy / sd[:, None])  # shape: (K, G), standardized coefficients
    B = W / sd[:, None]  # shape: (K, G), return units
    ssr = syy - 2.0 * np.einsum("kg,kg->g", B, sxy) + np.einsum("kg,kl,lg->g", B, sxx, B)
    close_fit = np.flatnonzero(ssr < (1.0 - _CLOSE_FIT_R2) * syy)
    if close_fit.size:
        b = B[:, close_fit]
        e = Yc[:, close_fit] - Xc @ b  # shape: (n, G_close)
        ce = cy[close_fit] - cx @ b
        ssr[close_fit] = np.einsum("tg,tg->g", e, e) - nf * ce * ce
    g = Y.shape[1]
    return _Fit(
        beta=B.T,
        intercept=ybar - mu @ B,
        ssr=ssr,
        tss=syy,
        ybar=ybar,
        const=np.broadcast_to(const, (g, k)),
    )


def _fit_batched(Y: FloatArray, X: FloatArray, M: BoolArray, alpha: float) -> _Fit:
    """Ridge for G columns of ``Y`` (T, G), each valid on its own rows ``M`` (T, G).

    ``X`` (T, K) is finite. Every column gets its own standardization and K×K system;
    the systems are stacked to (G, K, K) and solved in one call.
    """
    k = X.shape[1]
    Xt = np.ascontiguousarray(X.T)  # shape: (K, T)
    Mf = np.ascontiguousarray(M.T, dtype=np.float64)  # shape: (G, T)
    nf = Mf.sum(axis=1)  # shape: (G,)
    mu = (Mf @ X) / nf[:, None]  # shape: (G, K)
    Xc = (Xt[None, :, :] - mu[:, :, None]) * Mf[:, None, :]  # shape: (G, K, T), 0 off-mask
    mu = mu + Xc.sum(axis=2) / nf[:, None]
    Xc = (Xt[None, :, :] - mu[:, :, None]) * Mf[:, None, :]
    cx = Xc.sum(axis=2) / nf[:, None]  # shape: (G, K)
    sxx = Xc @ Xc.transpose(0, 2, 1) - nf[:, None, None] * (cx[:, :, None] * cx[:, None, :])
    var = np.einsum("gkk->gk", sxx) / nf[:, None]  # shape: (G, K)
    const = is_constant(var, mu, np.broadcast_to(nf[:, None], var.shape))
    sd = np.where(const, 1.0, np.sqrt(var))  # shape: (G, K)
    A = sxx / (sd[:, :, None] * sd[:, None, :])  # shape: (G, K, K), standardized Gram
    diag = np.arange(k)
    A[:, diag, diag] += alpha

    Y0 = np.where(M, Y, 0.0).T  # shape: (G, T)
    ybar = Y0.sum(axis=1) / nf
    Yc = (Y0 - ybar[:, None]) * Mf  # shape: (G, T), 0 off-mask
    cy = Yc.sum(axis=1) / nf
    ybar = ybar + cy
    sxy = (Xc @ Yc[:, :, None])[:, :, 0] - cx * (nf * cy)[:, None]  # shape: (G, K)
    W = np.linalg.solve(A, (sxy / sd)[:, :, None])[:, :, 0]  # shape: (G, K)
    B = W / sd  # shape: (G, K), return units
    E = Yc - (B[:, None, :] @ Xc)[:, 0, :]  # shape: (G, T), 0 off-mask
    ce = cy - np.einsum("gk,gk->g", cx, B)
    ssr = np.einsum("gt,gt->g", E, E) - nf * ce * ce
    tss = np.einsum("gt,gt->g", Yc, Yc) - nf * cy * cy
    return _Fit(
        beta=B,
        intercept=ybar - np.einsum("gk,gk->g", mu, B),
        ssr=ssr,
        tss=tss,
        ybar=ybar,
        const=const,
    )
