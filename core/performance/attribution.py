"""Factor P&L attribution of many portfolios: factor P&L plus a specific remainder = P&L.

Pure numpy, no I/O.

Conventions
-----------
Exposure
    A portfolio's **dollar** exposure to a risk factor (``core.risk.model``: ``Σ_i value_i
    B_ik`` over its positions, the signed market value times the symbol's factor beta), in
    the portfolio's currency, taken at the **previous** session's close: the exposure held
    over session t, which earns session t's factor return. Row t of ``exposure_prev`` is
    the exposure computed on the previous snapshot, aligned like the previous equity of
    ``core.performance.metrics.time_weighted_returns``.
Factor returns
    Daily simple returns of the K factors on session t (0.01 = +1 %), in the order of the
    exposures' last axis (``RISK_FACTORS`` for the risk model's).
P&L
    The snapshot's ``daily_pnl`` of session t, in money.
Identity
    ``factor_pnl[t, p, k] = exposure_prev[t, p, k] * factor_returns[t, k]`` and
    ``specific_pnl[t, p] = pnl[t, p] - Σ_k factor_pnl[t, p, k]``, so factor P&L plus
    specific P&L equals the P&L by construction (exactly in real arithmetic; in floating
    point to one rounding of the larger of ``|pnl|`` and ``|Σ_k factor_pnl|``). The
    specific part is everything the first-order factor exposures do not explain: stock-
    specific moves, intraday trading, entries and exits, income.
Missing values
    A session of a portfolio is *attributed* when its P&L, its K exposures and the K factor
    returns are all finite; otherwise its factor and specific P&L are NaN and its P&L (if
    finite) is counted in ``unattributed_pnl``. Window sums run over the attributed
    sessions, so ``Σ_k factor_total + specific_total = attributed_pnl`` (the identity again)
    and ``attributed_pnl + unattributed_pnl`` is the P&L of every session that has one.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
BoolArray = npt.NDArray[np.bool_]


@dataclass(frozen=True)
class Attribution:
    """Daily factor P&L of P portfolios over T sessions and K factors, and window sums.

    Attributes
    ----------
    factor_pnl : ndarray, shape (T, P, K)
        ``exposure_prev × factor_returns``, money; NaN on sessions not attributed.
    specific_pnl : ndarray, shape (T, P)
        ``pnl − Σ_k factor_pnl``, money; NaN on sessions not attributed.
    attributed : ndarray of bool, shape (T, P)
        Sessions with a finite P&L, finite exposures and finite factor returns.
    factor_total : ndarray, shape (P, K)
        Σ of ``factor_pnl`` over the attributed sessions.
    specific_total : ndarray, shape (P,)
        Σ of ``specific_pnl`` over the attributed sessions.
    attributed_pnl : ndarray, shape (P,)
        Σ of ``pnl`` over the attributed sessions (= ``factor_total.sum(-1) +
        specific_total`` up to rounding).
    unattributed_pnl : ndarray, shape (P,)
        Σ of the finite ``pnl`` of the sessions not attributed.
    n_attributed : ndarray of int64, shape (P,)
        Attributed sessions per portfolio.
    """

    factor_pnl: FloatArray
    specific_pnl: FloatArray
    attributed: BoolArray
    factor_total: FloatArray
    specific_total: FloatArray
    attributed_pnl: FloatArray
    unattributed_pnl: FloatArray
    n_attributed: IntArray


def factor_pnl_attribution(exposure_prev: npt.ArrayLike, factor_returns: npt.ArrayLike,
                           pnl: npt.ArrayLike) -> Attribution:
    """Split each session's P&L into factor P&L and a specific remainder, for many portfolios.

    Parameters
    ----------
    exposure_prev : array_like, shape (T, P, K)
        Dollar exposure of P portfolios to K factors at the close of the session before
        each of the T sessions (row t = the previous snapshot's exposure); NaN = unknown.
    factor_returns : array_like, shape (T, K)
        Daily simple returns of the K factors on the T sessions; NaN = missing.
    pnl : array_like, shape (T, P)
        Each session's P&L of each portfolio in money; NaN = none.

    Returns
    -------
    Attribution
        Daily factor and specific P&L (``factor + specific = pnl``, an identity) and their
        sums over the T sessions given (pass a window's rows for a window's sums).

    Raises
    ------
    ValueError
        Shapes that do not agree.

    Notes
    -----
    Memory: the (T, P, K) factor P&L is the only array of that size allocated (about
    141 MB for T = 252, P = 10,000, K = 7 in float64; an ``exposure_prev`` that is not
    already a float64 array is converted, a second one); everything else is (T, P) or
    smaller. The window sums reuse it in place. ``specific_pnl`` is computed from
    ``factor_pnl.sum(axis=2)``, the same sum a caller checking the identity takes.
    """
    e = np.asarray(exposure_prev, dtype=np.float64)
    f = np.asarray(factor_returns, dtype=np.float64)
    y = np.asarray(pnl, dtype=np.float64)
    if e.ndim != 3 or f.ndim != 2 or y.ndim != 2:
        raise ValueError(f"exposure_prev (T, P, K), factor_returns (T, K) and pnl (T, P) "
                         f"expected; got {e.shape}, {f.shape}, {y.shape}")
    t, p, k = e.shape
    if f.shape != (t, k) or y.shape != (t, p):
        raise ValueError(f"shapes disagree: exposure_prev {e.shape} needs factor_returns "
                         f"{(t, k)} and pnl {(t, p)}; got {f.shape} and {y.shape}")
    out = np.multiply(e, f[:, None, :])  # shape: (T, P, K), the one array of that size
    explained = out.sum(axis=2)  # shape: (T, P); NaN when any term is
    ok = np.isfinite(y) & np.isfinite(explained)
    specific = np.where(ok, y - explained, np.nan)
    del explained
    missing = ~ok
    out[missing] = 0.0  # in place: the sums skip the sessions not attributed
    factor_total = out.sum(axis=0)
    out[missing] = np.nan
    finite_pnl = np.isfinite(y)
    return Attribution(
        factor_pnl=out, specific_pnl=specific, attributed=ok, factor_total=factor_total,
        specific_total=np.where(ok, specific, 0.0).sum(axis=0),
        attributed_pnl=np.where(ok, y, 0.0).sum(axis=0),
        unattributed_pnl=np.where(missing & finite_pnl, y, 0.0).sum(axis=0),
        n_attributed=ok.sum(axis=0).astype(np.int64))
