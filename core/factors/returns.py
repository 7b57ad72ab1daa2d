"""Daily returns from adjusted closes.

Prices are ``(T + 1, N)`` (or ``(T + 1,)``) float arrays of adjusted closes on
consecutive NYSE sessions, NaN = missing. A return is missing (NaN) when either of
its two prices is missing, non-finite or non-positive. Inputs are never modified.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def _price_pairs(
    prices: npt.ArrayLike,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
    p = np.asarray(prices, dtype=np.float64)
    if p.ndim not in (1, 2):
        raise ValueError(f"prices must be 1-D or 2-D, got shape {p.shape}")
    if p.shape[0] < 1:
        raise ValueError("prices must have at least one row")
    ok = np.isfinite(p) & (p > 0)  # shape: (T + 1, N)
    prev, cur = p[:-1], p[1:]  # shape: (T, N) each, views
    valid = ok[:-1] & ok[1:]
    return prev, cur, valid


def simple_returns(prices: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Daily simple returns ``p[t] / p[t - 1] - 1``.

    Parameters
    ----------
    prices : array_like, shape (T + 1, N) or (T + 1,)
        Adjusted closes on consecutive sessions, ascending; NaN = missing.

    Returns
    -------
    ndarray, shape (T, N) or (T,)
        Row ``t`` is the return from session ``t`` to session ``t + 1`` of ``prices``
        (so the last row is the return on the last session). NaN where either price
        is missing, non-finite or non-positive.

    Raises
    ------
    ValueError
        If ``prices`` is not 1-D or 2-D, or has no rows.
    """
    prev, cur, valid = _price_pairs(prices)
    out = np.full(cur.shape, np.nan)
    np.divide(cur, prev, out=out, where=valid)
    np.subtract(out, 1.0, out=out, where=valid)
    return out


def log_returns(prices: npt.ArrayLike) -> npt.NDArray[np.float64]:
    """Daily log returns ``log(p[t] / p[t - 1])``.

    Parameters
    ----------
    prices : array_like, shape (T + 1, N) or (T + 1,)
        Adjusted closes on consecutive sessions, ascending; NaN = missing.

    Returns
    -------
    ndarray, shape (T, N) or (T,)
        NaN where either price is missing, non-finite or non-positive.

    Raises
    ------
    ValueError
        If ``prices`` is not 1-D or 2-D, or has no rows.
    """
    prev, cur, valid = _price_pairs(prices)
    out = np.full(cur.shape, np.nan)
    np.divide(cur, prev, out=out, where=valid)
    np.log(out, out=out, where=valid)
    return out
