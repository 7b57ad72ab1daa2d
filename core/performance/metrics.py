"""Performance of many portfolios at once: time-weighted daily returns and the usual metrics.

Pure numpy, no I/O. Every array has the sessions on axis 0 (oldest first) and the portfolios
on axis 1: shape (T, P). Results are (P,) arrays, one value per portfolio (column).

Conventions (every function)
----------------------------
Returns
    Daily **simple**, noncumulative returns (0.01 = +1 %). NaN (or any non-finite value)
    means "no return that session": before the portfolio existed, a missing snapshot, a
    previous equity of zero or less.
Time-weighted return
    ``r_t = pnl_t / equity_{t-1}`` (:func:`time_weighted_returns`), chain-linked:
    cumulative return ``= prod(1 + r_t) - 1`` over the valid sessions. ``pnl_t`` is the
    snapshot's ``daily_pnl`` (price moves of the positions held, entries at cost, exits at
    proceeds; see ``core.portfolio.valuation``) and excludes cash moves, so a deposit, a
    withdrawal, or a position added or removed changes the equity but is not a return.
Periods
    ``periods_per_year`` sessions make a year (252, NYSE). A return spanning a skipped
    session (a missing snapshot) counts as one period.
Risk-free rate
    Given per year as a fraction (0.04 = 4 %) and converted per session geometrically:
    ``rf = (1 + risk_free_annual) ** (1 / periods_per_year) - 1``, so that ``ppy``
    sessions at ``rf`` compound to the annual rate. ``|risk_free_annual| > 0.5`` is taken
    for a percent given as a number (2 for 2 %) and raises ``ValueError``.
Missing values
    Each column uses only its own valid returns: a portfolio younger than the window has
    leading NaN and is measured over the sessions it has. The relative metrics (alpha,
    beta, tracking error, information ratio, capture) use, per column, the sessions where
    both the portfolio and the benchmark have a return; a session the benchmark lacks is
    dropped for them only.
Degenerate data
    Gives NaN, never ±inf (fewer than ``MIN_RETURNS`` valid returns: every metric; a zero
    denominator: that ratio); :meth:`Performance.null_reasons` says why, per metric. A
    caller's mistake (shapes, a risk-free rate in percent) raises ``ValueError``.

Definitions are empyrical's (empyrical-reloaded 0.7: ``cum_returns_final``,
``annual_return``, ``annual_volatility``, ``sharpe_ratio``, ``sortino_ratio``,
``max_drawdown``, ``calmar_ratio``, ``alpha_beta``, ``up_capture``, ``down_capture``)
applied to each column's valid returns, ``risk_free`` / ``required_return`` = the per-session
rate above, ``annualization = periods_per_year``. The tests compare them at 1e-9. Where
this module differs:

* fewer than 2 valid returns gives NaN for every metric (empyrical still returns a
  cumulative return, annual return and drawdown from a single return);
* a ratio whose denominator is zero (Sharpe at zero volatility, Sortino without a return
  below the risk-free rate, information ratio at zero tracking error, Calmar without a
  drawdown, a capture whose benchmark annualized return is 0) is NaN, where empyrical
  gives ±inf for some of them;
* ``tracking_error`` (not in empyrical) is ``annual_volatility(returns - benchmark)``:
  the sample standard deviation (ddof 1) of the daily active return times ``sqrt(ppy)``;
* ``information_ratio`` is annualized: ``mean(active) * ppy / tracking_error``, which is
  empyrical's ``excess_sharpe`` (per session, not annualized) times ``sqrt(ppy)``. The
  active return is arithmetic (``r - b``), not geometric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

PERIODS_PER_YEAR = 252
"""Sessions per year (NYSE): the default annualization factor."""

MIN_RETURNS = 2
"""Valid returns a column needs for any metric (and benchmark pairs for the relative ones)."""

MAX_ABS_RISK_FREE_ANNUAL = 0.5
"""Largest accepted ``|risk_free_annual|``: above it, the rate was given in percent."""

MIN_BENCHMARK_VARIANCE = 1.0e-30
"""Below this daily benchmark variance beta (and alpha) is NaN (empyrical's threshold)."""

DDOF = 1
"""Delta degrees of freedom of every standard deviation (volatility, tracking error)."""

BLOCK_COLUMNS = 1024
"""Portfolios computed together: a block's (T, BLOCK_COLUMNS) arrays stay in the CPU cache."""

METRICS: tuple[str, ...] = (
    "cumulative_return", "annualized_return", "annualized_volatility", "sharpe_ratio",
    "sortino_ratio", "max_drawdown", "calmar_ratio", "best_day", "worst_day", "hit_rate",
)
"""The absolute metrics of :class:`Performance` (float arrays that may hold NaN)."""

RELATIVE_METRICS: tuple[str, ...] = (
    "alpha", "beta", "tracking_error", "information_ratio", "up_capture", "down_capture",
)
"""The metrics relative to the benchmark (NaN without a benchmark)."""


@dataclass(frozen=True)
class Performance:
    """Performance metrics of P portfolios; every array has shape (P,).

    Attributes
    ----------
    cumulative_return : ndarray
        ``prod(1 + r) - 1`` over the valid returns.
    annualized_return : ndarray
        ``(1 + cumulative_return) ** (periods_per_year / n_returns) - 1`` (CAGR).
    annualized_volatility : ndarray
        Sample standard deviation (ddof 1) of the daily returns times ``sqrt(ppy)``.
    sharpe_ratio : ndarray
        ``mean(r - rf) / std(r - rf) * sqrt(ppy)`` (std ddof 1, rf per session).
    sortino_ratio : ndarray
        ``mean(r - rf) * ppy / downside_risk`` with
        ``downside_risk = sqrt(mean(min(r - rf, 0) ** 2)) * sqrt(ppy)``, the mean over all
        valid sessions (empyrical's target downside deviation).
    max_drawdown : ndarray
        Largest fall of the wealth ``W_t = prod_{s<=t}(1 + r_s)`` from its running peak,
        ``min_t(W_t / max(1, max_{s<=t} W_s) - 1)``: negative, 0 without a drawdown. The
        starting wealth 1 counts as a peak (a loss on the first day is a drawdown).
    peak_index, trough_index, recovery_index : ndarray of int64
        Rows (sessions) of the maximum drawdown: the trough is the first row where it is
        reached; the peak is the last row at or before the trough where the wealth stood at
        its running peak; the recovery is the first row after the trough where the wealth
        regains the peak, -1 if it never does. When the peak is the starting wealth its row
        is the one before the column's first valid return (the close the first return is
        measured from), which is -1 if that return is on row 0. All three are -1 when
        ``max_drawdown`` is 0 or NaN.
    calmar_ratio : ndarray
        ``annualized_return / |max_drawdown|``; NaN without a drawdown.
    best_day, worst_day : ndarray
        Largest and smallest daily return.
    best_index, worst_index : ndarray of int64
        Their rows (the first one on ties); -1 without enough returns.
    hit_rate : ndarray
        Share of the valid returns that are > 0 (0 is not a hit).
    n_returns : ndarray of int64
        Valid returns of each column.
    alpha : ndarray
        Annualized Jensen's alpha, empyrical's: ``(1 + mean(r - rf - beta (b - rf)))
        ** ppy - 1`` over the paired sessions.
    beta : ndarray
        ``cov(r, b) / var(b)`` over the paired sessions; NaN when ``var(b) < 1e-30``.
    tracking_error : ndarray
        ``std(r - b, ddof=1) * sqrt(ppy)`` over the paired sessions.
    information_ratio : ndarray
        ``mean(r - b) * ppy / tracking_error`` (= empyrical's ``excess_sharpe`` ×
        ``sqrt(ppy)``).
    up_capture, down_capture : ndarray
        Over the paired sessions where the benchmark rose (fell): the portfolio's
        annualized return divided by the benchmark's, each ``prod(1 + x) ** (ppy / n) - 1``
        with ``n`` the number of those sessions (empyrical's ``up_capture`` /
        ``down_capture``).
    n_relative, n_up, n_down : ndarray of int64
        Paired sessions (portfolio and benchmark both valid), and those with a benchmark
        return > 0 and < 0.
    has_benchmark : bool
        Whether a benchmark was given (the relative metrics are NaN otherwise).
    periods_per_year : float
        Annualization factor used.
    risk_free_annual : float
        Annual risk-free rate given (fraction).
    risk_free_per_period : float
        The per-session rate used, ``(1 + risk_free_annual) ** (1 / ppy) - 1``.
    ddof : int
        Delta degrees of freedom of the standard deviations (1).
    """

    cumulative_return: FloatArray
    annualized_return: FloatArray
    annualized_volatility: FloatArray
    sharpe_ratio: FloatArray
    sortino_ratio: FloatArray
    max_drawdown: FloatArray
    peak_index: IntArray
    trough_index: IntArray
    recovery_index: IntArray
    calmar_ratio: FloatArray
    best_day: FloatArray
    worst_day: FloatArray
    best_index: IntArray
    worst_index: IntArray
    hit_rate: FloatArray
    n_returns: IntArray
    alpha: FloatArray
    beta: FloatArray
    tracking_error: FloatArray
    information_ratio: FloatArray
    up_capture: FloatArray
    down_capture: FloatArray
    n_relative: IntArray
    n_up: IntArray
    n_down: IntArray
    has_benchmark: bool
    periods_per_year: float
    risk_free_annual: float
    risk_free_per_period: float
    ddof: int = DDOF

    def null_reasons(self, column: int) -> dict[str, str]:
        """Why each NaN metric of one portfolio is NaN.

        Parameters
        ----------
        column : int
            Portfolio (column) index.

        Returns
        -------
        dict of str to str
            Metric name (from ``METRICS`` and ``RELATIVE_METRICS``) → a one-line reason,
            for every metric of that column that is NaN; empty when none is.
        """
        j = int(column)
        n = int(self.n_returns[j])
        reasons: dict[str, str] = {}
        if n < MIN_RETURNS:
            why = f"fewer than {MIN_RETURNS} valid returns ({n})"
            return {name: why for name in METRICS + RELATIVE_METRICS}
        specific = {
            "annualized_return": "compounded wealth is not positive (a loss of 100 % or more)",
            "sharpe_ratio": "zero volatility (every return equal)",
            "sortino_ratio": "no return below the risk-free rate (zero downside deviation)",
            "calmar_ratio": ("no drawdown" if self.max_drawdown[j] == 0
                             else "annualized return undefined"),
        }
        for name in METRICS:
            if math.isnan(float(getattr(self, name)[j])):
                reasons[name] = specific.get(name, "undefined")
        m = int(self.n_relative[j])
        if not self.has_benchmark:
            base = "no benchmark given"
        elif m < MIN_RETURNS:
            base = (f"fewer than {MIN_RETURNS} sessions with both a portfolio and a benchmark "
                    f"return ({m})")
        else:
            base = ""
        relative = {
            "alpha": "zero benchmark variance",
            "beta": "zero benchmark variance",
            "information_ratio": "zero tracking error (constant active return)",
            "up_capture": ("no session with a positive benchmark return" if self.n_up[j] == 0
                           else "annualized return undefined over the up sessions"),
            "down_capture": ("no session with a negative benchmark return"
                             if self.n_down[j] == 0
                             else "annualized return undefined over the down sessions"),
        }
        for name in RELATIVE_METRICS:
            if math.isnan(float(getattr(self, name)[j])):
                reasons[name] = base or relative.get(name, "undefined")
        return reasons

    def conventions(self) -> dict[str, float | int]:
        """The conventions behind the figures, for an answer to state them.

        Returns
        -------
        dict
            ``periods_per_year``, ``risk_free_annual``, ``risk_free_per_period`` and
            ``ddof``.
        """
        return {"periods_per_year": self.periods_per_year,
                "risk_free_annual": self.risk_free_annual,
                "risk_free_per_period": self.risk_free_per_period, "ddof": self.ddof}


def previous_equity(equity: npt.ArrayLike) -> FloatArray:
    """Each session's previous equity: the last finite equity on an earlier row.

    Parameters
    ----------
    equity : array_like, shape (T, P)
        End-of-day equity (market value + cash) of P portfolios on T sessions, oldest
        first; NaN = no snapshot that session.

    Returns
    -------
    ndarray, shape (T, P)
        Row t holds the equity of the latest earlier row with a snapshot (NaN on row 0 and
        before a portfolio's first snapshot). This is the denominator of the valuation's
        ``daily_return``: after a missing snapshot the next ``daily_pnl`` runs from the
        last snapshot, so its return does too.
    """
    eq = _as_2d(equity, "equity")
    t = eq.shape[0]
    rows = np.where(np.isfinite(eq), np.arange(t)[:, None], -1)  # shape: (T, P)
    np.maximum.accumulate(rows, axis=0, out=rows)
    filled = np.take_along_axis(eq, np.maximum(rows, 0), axis=0)
    filled[rows < 0] = np.nan
    out = np.full_like(eq, np.nan)
    out[1:] = filled[:-1]
    return out


def time_weighted_returns(pnl: npt.ArrayLike, prev_equity: npt.ArrayLike) -> FloatArray:
    """Daily time-weighted returns ``r_t = pnl_t / equity_{t-1}``.

    Parameters
    ----------
    pnl : array_like, shape (T, P)
        Each session's P&L of P portfolios in money (the snapshots' ``daily_pnl``: price
        P&L of the positions, entries measured from cost, exits to proceeds), excluding
        cash deposits and withdrawals; NaN = none (a portfolio's first snapshot).
    prev_equity : array_like, shape (T, P)
        Equity (market value + cash) at the previous session's close, in the same
        currency (see :func:`previous_equity`).

    Returns
    -------
    ndarray, shape (T, P)
        ``pnl / prev_equity``; NaN where undefined: no P&L, no previous equity, or a
        previous equity of zero or less.

    Notes
    -----
    Chain-link the result, ``prod(1 + r) - 1``, for the time-weighted return of a period.
    Cash deposits and withdrawals are not returns: they change the equity (so the next
    day's denominator) but not the P&L. Adding or removing a position is not a return
    either: a position bought with cash leaves the equity unchanged and earns P&L only
    from its entry price on; one sold contributes its P&L up to the proceeds.
    """
    p = _as_2d(pnl, "pnl")
    eq = _as_2d(prev_equity, "prev_equity")
    if p.shape != eq.shape:
        raise ValueError(f"pnl and prev_equity must have the same shape: {p.shape} vs "
                         f"{eq.shape}")
    ok = np.isfinite(p) & np.isfinite(eq) & (eq > 0)
    out = np.full(p.shape, np.nan)
    np.divide(p, eq, out=out, where=ok)
    return out


def cumulative_returns(returns: npt.ArrayLike) -> FloatArray:
    """The chain-linked cumulative return after each session, ``prod_{s<=t}(1 + r_s) - 1``.

    Parameters
    ----------
    returns : array_like, shape (T, P)
        Daily simple returns; NaN = none that session.

    Returns
    -------
    ndarray, shape (T, P)
        Cumulative return from the start; a session without a return keeps the previous
        value; NaN before a column's first valid return.
    """
    r = _as_2d(returns, "returns")
    valid = np.isfinite(r)
    gross: FloatArray = np.where(valid, 1.0 + r, 1.0)
    out = np.cumprod(gross, axis=0, dtype=np.float64)
    out -= 1.0
    out[np.cumsum(valid, axis=0) == 0] = np.nan
    return out


def risk_free_per_period(risk_free_annual: float,
                         periods_per_year: float = PERIODS_PER_YEAR) -> float:
    """The per-session risk-free rate of an annual one, ``(1 + rf) ** (1 / ppy) - 1``.

    Parameters
    ----------
    risk_free_annual : float
        Annual rate as a fraction (0.04 = 4 %); ``|rate| <= MAX_ABS_RISK_FREE_ANNUAL``.
    periods_per_year : float, optional
        Sessions per year (252).

    Returns
    -------
    float
        The rate that compounds to ``risk_free_annual`` over ``periods_per_year`` sessions.

    Raises
    ------
    ValueError
        A rate that is not finite or above ``MAX_ABS_RISK_FREE_ANNUAL`` in size (2 for 2 %
        is a percent given as a number), or ``periods_per_year <= 0``.
    """
    rf = float(risk_free_annual)
    ppy = _periods(periods_per_year)
    if not math.isfinite(rf) or abs(rf) > MAX_ABS_RISK_FREE_ANNUAL:
        raise ValueError(f"risk_free_annual is a fraction per year (0.04 = 4 %), at most "
                         f"{MAX_ABS_RISK_FREE_ANNUAL} in size; got {risk_free_annual!r}")
    return (1.0 + rf) ** (1.0 / ppy) - 1.0


def performance(returns: npt.ArrayLike, benchmark: npt.ArrayLike | None = None,
                risk_free_annual: float = 0.0,
                periods_per_year: float = PERIODS_PER_YEAR) -> Performance:
    """Performance metrics of many portfolios in one vectorized pass.

    Parameters
    ----------
    returns : array_like, shape (T, P) or (T,)
        Daily simple time-weighted returns of P portfolios on T sessions, oldest first;
        NaN = no return that session. A 1-D array is one portfolio.
    benchmark : array_like, shape (T,) or (T, P), optional
        Daily simple returns of the benchmark on the same sessions (one for every
        portfolio, or one per portfolio); NaN = missing. None: relative metrics are NaN.
    risk_free_annual : float, optional
        Annual risk-free rate as a fraction (0.04 = 4 %), converted per session by
        :func:`risk_free_per_period`. Used by Sharpe, Sortino (as the required return) and
        alpha.
    periods_per_year : float, optional
        Sessions per year (252).

    Returns
    -------
    Performance
        One value per portfolio of every metric (see the module's conventions and
        :class:`Performance`). Columns with fewer than 2 valid returns are NaN throughout;
        ``null_reasons`` explains every NaN.

    Raises
    ------
    ValueError
        Wrong shapes, a risk-free rate in percent, ``periods_per_year <= 0``.

    Notes
    -----
    The portfolios are computed in blocks of ``BLOCK_COLUMNS`` columns so that a block's
    (T, block) arrays stay in the CPU cache; every formula is per column, so the blocks
    change nothing but the speed. Sums of squares are taken around the mean (two passes),
    never as ``Σx² − n·mean²``.
    """
    r = _as_2d(returns, "returns")
    t, p = r.shape
    ppy = _periods(periods_per_year)
    rf = risk_free_per_period(risk_free_annual, ppy)
    b = None if benchmark is None else _benchmark(benchmark, t, p)
    out: dict[str, npt.NDArray[np.float64] | npt.NDArray[np.int64]] = {
        name: np.full(p, np.nan) for name in METRICS + RELATIVE_METRICS}
    out.update({name: np.full(p, -1, dtype=np.int64) for name in _INDEX_FIELDS})
    out.update({name: np.zeros(p, dtype=np.int64) for name in _COUNT_FIELDS})
    if t:
        work = _Work(t, min(p, BLOCK_COLUMNS))
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            for start in range(0, p, BLOCK_COLUMNS):
                cols = slice(start, min(start + BLOCK_COLUMNS, p))
                work.resize(cols.stop - cols.start)
                for name, values in _absolute(r[:, cols], rf, ppy, work).items():
                    out[name][cols] = values
                if b is not None:
                    block_b = b if b.shape[1] == 1 else b[:, cols]
                    for name, values in _relative(block_b, rf, ppy, work).items():
                        out[name][cols] = values
    enough = out["n_returns"] >= MIN_RETURNS
    has_dd = enough & (out["max_drawdown"] < 0)
    for name in METRICS + RELATIVE_METRICS:
        values = out[name]
        values[~(enough & np.isfinite(values))] = np.nan
    for name in ("peak_index", "trough_index", "recovery_index"):
        out[name][~has_dd] = -1
    for name in ("best_index", "worst_index"):
        out[name][~enough] = -1
    out["calmar_ratio"][~has_dd] = np.nan
    return Performance(**out, has_benchmark=b is not None,  # type: ignore[arg-type]
                       periods_per_year=ppy, risk_free_annual=float(risk_free_annual),
                       risk_free_per_period=rf)


_INDEX_FIELDS = ("peak_index", "trough_index", "recovery_index", "best_index", "worst_index")
_COUNT_FIELDS = ("n_returns", "n_relative", "n_up", "n_down")


class _Work:
    """Scratch arrays of one block of columns, allocated once per call and reused by every
    block (fresh arrays of that size would cost page faults each time), and the row
    weights that find a first or last True row per column, in the smallest integer type
    that holds T (a quarter of the memory traffic of int64)."""

    def __init__(self, t: int, width: int) -> None:
        self.t = t
        self.c = width
        small = np.uint16 if t < np.iinfo(np.uint16).max else np.int64
        self._floats = np.empty((4, t * width))
        self._masks = np.empty((5, t * width), dtype=np.bool_)
        self._weights = np.empty(t * width, dtype=small)
        self.count_type = small
        self.index = np.arange(t, dtype=np.int32 if t < 2**31 else np.int64)[:, None]
        self.from_end = (t - np.arange(t)).astype(small)[:, None]  # T, T-1, ..., 1
        self.from_start = np.arange(1, t + 1).astype(small)[:, None]  # 1, 2, ..., T

    def resize(self, c: int) -> None:
        """Work on a block of ``c`` columns (at most the width allocated)."""
        self.c = c

    def f(self, i: int) -> FloatArray:
        """Float scratch array ``i`` (0 holds the block's returns), shape (T, c)."""
        return self._floats[i, : self.t * self.c].reshape(self.t, self.c)

    def m(self, i: int) -> npt.NDArray[np.bool_]:
        """Boolean scratch array ``i`` (0 holds the valid-return mask), shape (T, c)."""
        return self._masks[i, : self.t * self.c].reshape(self.t, self.c)

    def count(self, mask: npt.NDArray[np.bool_]) -> IntArray:
        """Per column, the rows where ``mask`` holds."""
        return mask.view(np.uint8).sum(axis=0, dtype=self.count_type).astype(np.int64)

    def first(self, mask: npt.NDArray[np.bool_]) -> IntArray:
        """Per column, the first row where ``mask`` (shape (T, c)) holds; -1 if none."""
        weights = self._weights[: self.t * self.c].reshape(self.t, self.c)
        top = np.multiply(mask, self.from_end, out=weights).max(axis=0).astype(np.int64)
        return np.where(top > 0, self.t - top, -1)

    def last(self, mask: npt.NDArray[np.bool_]) -> IntArray:
        """Per column, the last row where ``mask`` (shape (T, c)) holds; -1 if none."""
        weights = self._weights[: self.t * self.c].reshape(self.t, self.c)
        return np.multiply(mask, self.from_start, out=weights).max(axis=0).astype(np.int64) - 1


def _absolute(r: FloatArray, rf: float, ppy: float, work: _Work) -> dict[str, npt.NDArray]:
    """The metrics of one block of columns that need no benchmark. Leaves the block's
    returns (0 when missing) in ``work.f(0)`` and their valid mask in ``work.m(0)``."""
    r0 = work.f(0)
    np.copyto(r0, r)
    valid = np.isfinite(r0, out=work.m(0))
    invalid = np.logical_not(valid, out=work.m(1))
    mask = work.m(2)
    np.copyto(r0, 0.0, where=invalid)
    n = work.count(valid)
    nf = n.astype(np.float64)
    mean = r0.sum(axis=0) / nf
    buf = np.subtract(r0, mean, out=work.f(1))
    np.copyto(buf, 0.0, where=invalid)
    std = np.sqrt(np.einsum("tp,tp->p", buf, buf) / (nf - DDOF))
    np.copyto(buf, r0)
    np.copyto(buf, -np.inf, where=invalid)
    hi = buf.max(axis=0)
    best = work.first(np.equal(buf, hi, out=mask))
    np.copyto(buf, np.inf, where=invalid)
    lo = buf.min(axis=0)
    worst = work.first(np.equal(buf, lo, out=mask))
    std[hi == lo] = 0.0  # every return equal: exactly 0, no rounding residue (as empyrical)
    excess = mean - rf
    sharpe = np.where(std > 0, excess / std * math.sqrt(ppy), np.nan)
    np.subtract(r0, rf, out=buf)  # below the risk-free rate: min(r - rf, 0), valid rows
    np.minimum(buf, 0.0, out=buf)  # (a mask of r >= rf would be a coin flip per element:
    np.copyto(buf, 0.0, where=invalid)  # a mispredicted branch each; invalid is rare)
    downside = np.sqrt(np.einsum("tp,tp->p", buf, buf) / nf) * math.sqrt(ppy)
    sortino = np.where(downside > 0, excess * ppy / downside, np.nan)
    hits = work.count(np.greater(r0, 0.0, out=mask)) / nf

    gross = np.add(r0, 1.0, out=buf)  # 1 on missing sessions
    wealth = work.f(2)
    ratio = work.f(3)  # the running peak first, then wealth / peak
    np.copyto(wealth[0], gross[0])
    np.maximum(wealth[0], 1.0, out=ratio[0])  # the starting wealth 1 is a peak
    # row by row (numpy's accumulate along axis 0 is several times slower), as empyrical's
    # cumprod: the same products in the same order
    for w_prev, w_now, g_now, top_prev, top_now in zip(
            wealth[:-1], wealth[1:], gross[1:], ratio[:-1], ratio[1:], strict=True):
        np.multiply(w_prev, g_now, out=w_now)
        np.maximum(top_prev, w_now, out=top_now)
    growth = wealth[-1].copy()
    np.divide(wealth, ratio, out=ratio)  # exactly 1 at a peak, < 1 below it
    low = ratio.min(axis=0)
    trough = work.first(np.equal(ratio, low, out=mask))
    at_peak = np.equal(ratio, 1.0, out=work.m(3))
    after = np.greater(work.index, trough.astype(work.index.dtype), out=mask)
    recovery = work.first(np.logical_and(at_peak, after, out=work.m(4)))
    at_peak &= valid  # a missing day is never the peak ...
    np.logical_not(after, out=after)
    at_peak &= after
    # ... and the start (the row before the first valid return) always is one
    peak = np.maximum(work.last(at_peak), work.first(valid) - 1)
    annualized = growth ** (ppy / nf) - 1.0
    max_dd = low - 1.0
    return {
        "cumulative_return": growth - 1.0, "annualized_return": annualized,
        "annualized_volatility": std * math.sqrt(ppy), "sharpe_ratio": sharpe,
        "sortino_ratio": sortino, "max_drawdown": max_dd, "peak_index": peak,
        "trough_index": trough, "recovery_index": recovery,
        "calmar_ratio": annualized / np.abs(max_dd), "best_day": hi, "worst_day": lo,
        "best_index": best, "worst_index": worst, "hit_rate": hits, "n_returns": n}


def _relative(b: FloatArray, rf: float, ppy: float, work: _Work) -> dict[str, npt.NDArray]:
    """Alpha, beta, tracking error, information ratio and capture of the block left in
    ``work`` by :func:`_absolute`, over each column's paired sessions; ``b`` is (T, 1) or
    (T, c)."""
    valid = work.m(0)
    bvalid = np.isfinite(b)
    pair = np.logical_and(valid, bvalid, out=work.m(1))
    off = np.logical_not(pair, out=work.m(2))
    m = work.count(pair)
    mf = m.astype(np.float64)
    y = work.f(0)  # the portfolio's returns, 0 off the pairs
    np.copyto(y, 0.0, where=~bvalid)
    b0 = np.where(bvalid, b, 0.0)
    x = work.f(2)  # the benchmark's returns, 0 off the pairs
    np.copyto(x, b0)
    np.copyto(x, 0.0, where=off)
    mean_x = x.sum(axis=0) / mf
    buf = np.subtract(x, mean_x, out=work.f(1))
    np.copyto(buf, 0.0, where=off)
    var_x = np.einsum("tp,tp->p", buf, buf) / mf
    cov = np.einsum("tp,tp->p", buf, y) / mf  # mean((x - mean x) y), as empyrical
    beta = np.where(var_x >= MIN_BENCHMARK_VARIANCE, cov / var_x, np.nan)
    mean_y = y.sum(axis=0) / mf
    alpha = (1.0 + (mean_y - rf) - beta * (mean_x - rf)) ** ppy - 1.0

    np.subtract(y, x, out=buf)  # active returns, 0 off the pairs
    mean_a = buf.sum(axis=0) / mf
    spread = work.f(3)
    np.copyto(spread, buf)
    np.copyto(spread, -np.inf, where=off)
    a_hi = spread.max(axis=0)
    np.copyto(spread, np.inf, where=off)
    constant = a_hi == spread.min(axis=0)
    np.subtract(buf, mean_a, out=buf)
    np.copyto(buf, 0.0, where=off)
    te = np.sqrt(np.einsum("tp,tp->p", buf, buf) / (mf - DDOF))
    te[constant] = 0.0  # every active return equal (as empyrical's excess_sharpe)
    te *= math.sqrt(ppy)
    info = np.where(te > 0, mean_a * ppy / te, np.nan)

    out: dict[str, npt.NDArray] = {
        "alpha": alpha, "beta": beta, "tracking_error": te, "information_ratio": info,
        "n_relative": m}
    for name, side in (("up", b0 > 0), ("down", b0 < 0)):
        # x and y are 0 off the pairs, a factor 1 in the products: the side's rows suffice
        if side.shape[1] == 1:  # one benchmark for the block: take its rows
            on = side[:, 0]
            k = work.count(pair[on])
            growth_r = np.prod(y[on] + 1.0, axis=0)
            growth_b = np.prod(x[on] + 1.0, axis=0)
        else:
            k = work.count(pair & side)
            growth_r = np.prod(y * side + 1.0, axis=0)
            growth_b = np.prod(x * side + 1.0, axis=0)
        ann_r = growth_r ** (ppy / k) - 1.0
        ann_b = growth_b ** (ppy / k) - 1.0
        out[f"{name}_capture"] = np.where((k > 0) & (ann_b != 0), ann_r / ann_b, np.nan)
        out[f"n_{name}"] = k
    for name in ("alpha", "beta", "tracking_error", "information_ratio", "up_capture",
                 "down_capture"):
        out[name][m < MIN_RETURNS] = np.nan
    return out


def _benchmark(benchmark: npt.ArrayLike, t: int, p: int) -> FloatArray:
    """The benchmark as a (T, 1) or (T, P) float array."""
    b = np.asarray(benchmark, dtype=np.float64)
    if b.ndim == 1:
        b = b[:, None]  # shape: (T, 1), one benchmark for every column
    if b.ndim != 2 or b.shape[0] != t or b.shape[1] not in (1, p):
        raise ValueError(f"benchmark must have shape ({t},) or ({t}, {p}); got "
                         f"{np.shape(benchmark)}")
    return b


def _as_2d(a: npt.ArrayLike, name: str) -> FloatArray:
    """A float64 (T, P) array; a 1-D input is one column."""
    x = np.asarray(a, dtype=np.float64)
    if x.ndim == 1:
        return x[:, None]
    if x.ndim != 2:
        raise ValueError(f"{name} must have shape (T, P) or (T,); got {x.shape}")
    return x


def _periods(periods_per_year: float) -> float:
    ppy = float(periods_per_year)
    if not math.isfinite(ppy) or ppy <= 0:
        raise ValueError(f"periods_per_year must be positive; got {periods_per_year!r}")
    return ppy

