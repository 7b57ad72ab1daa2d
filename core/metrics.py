"""Per-symbol daily metrics for dashboards: trailing returns, volatility, 52-week range.

Inputs are adjusted closes on consecutive NYSE sessions (rows) for N symbols
(columns), NaN = missing. A price that is not finite or not positive counts as
missing. Lookbacks are counted in sessions, never calendar days.
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime

import numpy as np
import numpy.typing as npt

from core.factors.definitions import min_obs
from core.factors.returns import simple_returns

FloatArray = npt.NDArray[np.float64]

TRADING_DAYS_PER_YEAR = 252
"""Annualization factor of daily volatility (``sqrt(252)``) and the 1-year lookback."""

RETURN_LOOKBACKS: dict[str, int] = {
    "return_1d": 1,
    "return_5d": 5,
    "return_1m": 21,
    "return_3m": 63,
    "return_1y": 252,
}
"""Lookback in sessions of each trailing return."""

VOLATILITY_WINDOW = 90
"""Daily returns in the volatility window (ending at ``as_of``)."""

HIGH_LOW_WINDOW = 252
"""Sessions in the 52-week high / low window (ending at ``as_of``)."""


@dataclass(frozen=True, eq=False)
class DailyMetrics:
    """Metrics of N symbols at ``as_of``; every array has shape (N,), float64.

    Attributes
    ----------
    as_of : date
        Session the metrics are computed at.
    last_close : ndarray
        Adjusted close at ``as_of`` (NaN if missing).
    return_1d, return_5d, return_1m, return_3m, return_1y : ndarray
        Simple returns ``adj[t] / adj[t - k] - 1`` over k = 1, 5, 21, 63, 252
        sessions; NaN if either price is missing or ``t - k`` precedes the data.
    return_ytd : ndarray
        Simple return since the close of the previous calendar year's last session in
        ``sessions``; NaN if that session is not covered or its price is missing.
    volatility_90d : ndarray
        Annualized (× sqrt(252)) sample standard deviation (ddof=1) of the last 90
        daily simple returns; NaN unless at least 68 (75 %) of them are valid.
    high_52w, low_52w : ndarray
        Max / min adjusted close over the last 252 sessions (missing prices ignored);
        NaN if there is none.
    """

    as_of: date
    last_close: FloatArray
    return_1d: FloatArray
    return_5d: FloatArray
    return_1m: FloatArray
    return_3m: FloatArray
    return_ytd: FloatArray
    return_1y: FloatArray
    volatility_90d: FloatArray
    high_52w: FloatArray
    low_52w: FloatArray


def _as_date(d: date) -> date:
    return d.date() if isinstance(d, datetime) else d


def symbol_daily_metrics(
    adj_close: npt.ArrayLike,
    sessions: Sequence[date],
    as_of_index: int = -1,
) -> DailyMetrics:
    """Trailing returns, 90-day volatility and 52-week high / low of N symbols.

    Parameters
    ----------
    adj_close : array_like, shape (T, N)
        Adjusted closes on consecutive NYSE sessions, ascending; NaN = missing. Values
        that are not finite or not positive count as missing.
    sessions : sequence of date, length T
        The session of each row, strictly ascending.
    as_of_index : int, optional
        Row of ``as_of`` (negative counts from the end; default the last row). Rows
        after it are ignored.

    Returns
    -------
    DailyMetrics
        (N,) float64 arrays; see the attributes of :class:`DailyMetrics`.

    Raises
    ------
    ValueError
        If ``adj_close`` is not 2-D, ``sessions`` does not match its rows or is not
        strictly ascending, or ``as_of_index`` is out of range.
    """
    p = np.asarray(adj_close, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"adj_close must be 2-D (T, N), got shape {p.shape}")
    days = [_as_date(d) for d in sessions]
    t_rows, n_cols = p.shape
    if len(days) != t_rows:
        raise ValueError(f"sessions has {len(days)} dates for {t_rows} rows of adj_close")
    if any(a >= b for a, b in zip(days, days[1:], strict=False)):
        raise ValueError("sessions must be strictly ascending")
    if not -t_rows <= as_of_index < t_rows:
        raise ValueError(f"as_of_index {as_of_index} is out of range for {t_rows} rows")
    t = as_of_index % t_rows
    as_of = days[t]

    ok = np.isfinite(p[: t + 1]) & (p[: t + 1] > 0)  # shape: (t + 1, N)
    px = np.where(ok, p[: t + 1], np.nan)  # shape: (t + 1, N), missing = NaN

    def ret_vs(row: int | None) -> FloatArray:
        if row is None or row < 0:
            return np.full(n_cols, np.nan)
        return px[t] / px[row] - 1.0

    returns = {name: ret_vs(t - k) for name, k in RETURN_LOOKBACKS.items()}

    first_of_year = bisect.bisect_left(days, date(as_of.year, 1, 1))
    prev = first_of_year - 1
    ytd = ret_vs(prev if prev >= 0 and days[prev].year == as_of.year - 1 else None)

    r = simple_returns(px[max(t - VOLATILITY_WINDOW, 0) :])  # shape: (<= 90, N)
    valid = np.isfinite(r)
    n = valid.sum(axis=0)
    r0 = np.where(valid, r, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        mean = r0.sum(axis=0) / n
        dev = np.where(valid, r - mean, 0.0)  # shape: (<= 90, N)
        ss = np.einsum("tn,tn->n", dev, dev) - dev.sum(axis=0) ** 2 / n
        vol = np.sqrt(np.maximum(ss, 0.0) / (n - 1) * TRADING_DAYS_PER_YEAR)
    vol = np.where(n >= min_obs(VOLATILITY_WINDOW), vol, np.nan)

    w = px[max(t - HIGH_LOW_WINDOW + 1, 0) :]  # shape: (<= 252, N)
    wok = ok[max(t - HIGH_LOW_WINDOW + 1, 0) :]
    any_ok = wok.any(axis=0)
    high = np.where(any_ok, np.where(wok, w, -np.inf).max(axis=0), np.nan)
    low = np.where(any_ok, np.where(wok, w, np.inf).min(axis=0), np.nan)

    return DailyMetrics(
        as_of=as_of,
        last_close=px[t].copy(),
        return_1d=returns["return_1d"],
        return_5d=returns["return_5d"],
        return_1m=returns["return_1m"],
        return_3m=returns["return_3m"],
        return_ytd=ytd,
        return_1y=returns["return_1y"],
        volatility_90d=vol,
        high_52w=high,
        low_52w=low,
    )
