"""Factor stress tests: EWMA factor covariance, conditional propagation, scenarios, replays.

A scenario moves the eight factor ETFs (``FACTOR_ETFS``); a portfolio's P&L is
``sum_f dollar_exposure_f * move_f`` over those ETFs, reported per ETF. All moves are
**simple returns** (-0.10 = -10 %) and all exposures are dollars, so the P&L is in
the portfolio's currency (first order: betas times moves).

* Shock scenarios fix the moves of one or more ETFs; every other ETF moves by its
  conditional expectation given the shocked ones under a zero-mean Gaussian with the
  factor covariance, ``E[f_o | f_s = s] = Sigma_os Sigma_ss^-1 s`` (the regression of
  each unshocked ETF on the shocked ones, so volatility ratios count, not only
  correlations).
* Replay scenarios use the ETFs' actual cumulative returns over a historical window;
  an ETF that did not trade then is filled with its conditional expectation given
  the ETFs that did.

The covariance is estimated on daily simple returns (``ewma_covariance``). The
regression coefficients ``Sigma_os Sigma_ss^-1`` do not depend on the horizon when
returns are serially independent (every covariance scales with the horizon), so
daily estimates apply to a one-off shock or to a multi-week replay alike.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from types import MappingProxyType
from typing import Literal

import numpy as np
import numpy.typing as npt

from core.calendar import CalendarRangeError, session_on_or_before
from core.factors.definitions import FACTOR_NAMES, RIDGE_FACTORS

FloatArray = npt.NDArray[np.float64]

FACTOR_ETFS: tuple[str, ...] = ("SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV")
"""The factor ETFs a scenario moves; the order of every (K,) and (K, K) array here."""

ETF_INDEX: Mapping[str, int] = MappingProxyType({e: i for i, e in enumerate(FACTOR_ETFS)})
"""Position of each ETF in ``FACTOR_ETFS``."""

EWMA_LAMBDA = 0.94
"""Decay of the exponentially weighted covariance (RiskMetrics daily)."""

EWMA_WINDOW = 252
"""Rows (sessions) of daily returns the covariance looks at."""

MIN_EWMA_ROWS = 20
"""Minimum number of complete rows (every ETF has a return) in the covariance window."""

STRESS_FACTOR_ETF: Mapping[str, str] = MappingProxyType(
    {**{f.name: f.etfs[0] for f in RIDGE_FACTORS}, "ir_beta": "TLT"}
)
"""Factor whose portfolio dollar exposure is stressed through each ETF.

The six ridge style factors map to their ETFs (value→VTV, growth→VUG, momentum→MTUM,
quality→QUAL, size→IWM, low_volatility→USMV) and ``ir_beta`` to TLT. ``market_beta``
and the spread factors are not used (see :func:`stress_exposures`)."""


class ReplayDataError(ValueError):
    """The prices given do not cover a replay window (degenerate data, not a caller bug)."""


@dataclass(frozen=True)
class Scenario:
    """One stress scenario.

    Attributes
    ----------
    name : str
        Stable identifier (``market_down_10``).
    title : str
        Short human-readable title.
    kind : {"shock", "replay"}
        ``shock``: ``shocks`` fixes the simple-return moves of some ETFs, the others
        move by their conditional expectation. ``replay``: the ETFs' actual
        cumulative returns from the close of ``start`` to the close of ``end``.
    shocks : Mapping[str, float]
        ETF (one of ``FACTOR_ETFS``) → simple-return move; non-empty for ``shock``,
        empty for ``replay``. Stored read-only.
    start, end : date or None
        Replay window (``start < end``); None for ``shock``.
    description : str
        What the scenario represents and the assumptions behind its numbers.

    Raises
    ------
    ValueError
        If the fields do not describe a valid scenario of their ``kind``.
    """

    name: str
    title: str
    kind: Literal["shock", "replay"]
    shocks: Mapping[str, float] = field(default_factory=dict)
    start: date | None = None
    end: date | None = None
    description: str = ""

    def __post_init__(self) -> None:
        if self.kind == "shock":
            if not self.shocks:
                raise ValueError(f"shock scenario {self.name!r} needs at least one shock")
            unknown = sorted(set(self.shocks) - set(FACTOR_ETFS))
            if unknown:
                raise ValueError(
                    f"scenario {self.name!r} shocks unknown ETFs {unknown}; "
                    f"valid: {', '.join(FACTOR_ETFS)}"
                )
            if not all(math.isfinite(v) for v in self.shocks.values()):
                raise ValueError(f"scenario {self.name!r} has a non-finite shock")
            if self.start is not None or self.end is not None:
                raise ValueError(f"shock scenario {self.name!r} takes no start / end")
        elif self.kind == "replay":
            if self.shocks:
                raise ValueError(f"replay scenario {self.name!r} takes no shocks")
            if self.start is None or self.end is None or not self.start < self.end:
                raise ValueError(f"replay scenario {self.name!r} needs start < end")
        else:
            raise ValueError(f"scenario kind must be 'shock' or 'replay', got {self.kind!r}")
        object.__setattr__(self, "shocks", MappingProxyType(dict(self.shocks)))

    def __hash__(self) -> int:
        return hash(
            (self.name, self.title, self.kind, tuple(sorted(self.shocks.items())))
            + (self.start, self.end, self.description)
        )

    def __reduce__(self) -> tuple[type[Scenario], tuple[object, ...]]:
        # a read-only mapping proxy cannot be pickled: rebuild from a plain dict (Prefect
        # and Dask pickle task arguments)
        args = (self.name, self.title, self.kind, dict(self.shocks), self.start, self.end)
        return (Scenario, (*args, self.description))


SCENARIOS: tuple[Scenario, ...] = (
    Scenario(
        "market_down_10",
        "Equity market −10 %",
        "shock",
        {"SPY": -0.10},
        description="SPY falls 10 %; every other factor ETF moves by its conditional "
        "expectation given SPY.",
    ),
    Scenario(
        "market_down_20",
        "Equity market −20 %",
        "shock",
        {"SPY": -0.20},
        description="SPY falls 20 % (a bear-market move); every other factor ETF moves by "
        "its conditional expectation given SPY.",
    ),
    Scenario(
        "rates_up_100bp",
        "Rates +100 bp",
        "shock",
        {"TLT": -0.16},
        description="A +100 bp parallel rise in long Treasury yields. Assumption: TLT "
        "(20+ year Treasuries) has a modified duration of about 16 years, so its price "
        "falls by about 16 × 1 % = 16 % (first order; convexity, which would soften the "
        "loss slightly, is ignored). Equity ETFs move by their conditional expectation "
        "given TLT.",
    ),
    Scenario(
        "growth_selloff",
        "Growth sell-off",
        "shock",
        {"VUG": -0.15},
        description="Growth stocks (VUG) fall 15 %; the market and the other styles move "
        "by their conditional expectation given VUG.",
    ),
    Scenario(
        "value_rotation",
        "Rotation from growth to value",
        "shock",
        {"VTV": 0.05, "VUG": -0.05},
        description="Value (VTV) gains 5 % while growth (VUG) loses 5 %: a style rotation "
        "with little net market move; the other ETFs move by their conditional "
        "expectation given both.",
    ),
    Scenario(
        "momentum_crash",
        "Momentum crash",
        "shock",
        {"MTUM": -0.20, "SPY": 0.0},
        description="A momentum crash is a sharp reversal in which recent winners fall "
        "relative to the market, typically while the market itself is flat or "
        "rebounding (Daniel & Moskowitz 2016). MTUM falls 20 % with SPY held at 0 %: "
        "conditioning on a flat market isolates the relative move, so the other ETFs "
        "move only with MTUM's market-neutral component (shocking MTUM alone would "
        "mostly replay a market sell-off, its beta to SPY being about 1 or more). "
        "Size: about MTUM's worst 12-month return relative to SPY since its 2013 launch (-19 % to "
        "2022-02; worst month -12 %, 2021-03), taken here as one move.",
    ),
    Scenario(
        "small_cap_selloff",
        "Small-cap sell-off",
        "shock",
        {"IWM": -0.15},
        description="Small caps (IWM) fall 15 %; the other ETFs move by their conditional "
        "expectation given IWM.",
    ),
    Scenario(
        "gfc_2008",
        "2008 financial crisis",
        "replay",
        start=date(2008, 9, 19),
        end=date(2009, 3, 9),
        description="Actual factor ETF returns from the close of 2008-09-19 (the week of "
        "the Lehman bankruptcy) to the market bottom on 2009-03-09. MTUM, QUAL and USMV "
        "did not trade yet; their moves are their conditional expectation given the "
        "ETFs that did.",
    ),
    Scenario(
        "covid_crash_2020",
        "2020 Covid crash",
        "replay",
        start=date(2020, 2, 19),
        end=date(2020, 3, 23),
        description="Actual factor ETF returns from the S&P 500 peak on 2020-02-19 to the "
        "bottom on 2020-03-23.",
    ),
    Scenario(
        "rate_rise_2022",
        "2022 rate rise",
        "replay",
        start=date(2022, 1, 3),
        end=date(2022, 10, 12),
        description="Actual factor ETF returns from 2022-01-03 to the equity low of "
        "2022-10-12, as the Federal Reserve raised rates and long bonds and growth "
        "stocks fell together.",
    ),
)
"""The scenario catalogue every portfolio is stressed with, in report order."""


def scenario_by_name(name: str) -> Scenario:
    """The scenario of ``SCENARIOS`` called ``name``.

    Raises
    ------
    KeyError
        If there is none; the message lists the valid names.
    """
    for s in SCENARIOS:
        if s.name == name:
            return s
    raise KeyError(f"unknown scenario {name!r}; valid: {', '.join(s.name for s in SCENARIOS)}")


def ewma_covariance(
    returns: npt.ArrayLike, lam: float = EWMA_LAMBDA, window: int = EWMA_WINDOW
) -> FloatArray:
    """Exponentially weighted covariance of daily factor ETF returns.

    Parameters
    ----------
    returns : array_like, shape (T, K)
        Daily **simple** returns of the K factor ETFs on consecutive sessions,
        ascending (last row = ``as_of``); NaN = missing.
    lam : float, optional
        Decay per session, in (0, 1] (default 0.94; 1 gives equal weights).
    window : int, optional
        Number of most recent rows (sessions) considered (default 252).

    Returns
    -------
    ndarray of float64, shape (K, K)
        Symmetric covariance, in daily (squared simple return) units.

    Raises
    ------
    ValueError
        If ``returns`` is not 2-D, ``lam`` is not in (0, 1], ``window < 1``, or fewer
        than ``MIN_EWMA_ROWS`` (20) rows of the window have a return for every ETF.

    Notes
    -----
    The window is the last ``window`` rows; rows where any ETF is missing are then
    dropped. A kept row's age is its distance in rows (sessions) from the last row of
    the window (age 0 = newest), so a dropped day does not make older observations
    look newer; the weights ``lam ** age`` of the kept rows are normalised to sum 1.

    The returns are demeaned with the same weights,
    ``cov = sum_t w_t (r_t - mu)(r_t - mu)'`` with ``mu = sum_t w_t r_t``, rather than
    assuming a zero mean as RiskMetrics does: over a trending window the drift would
    otherwise be counted as co-movement. No small-sample correction is applied (the
    factor ``1 / (1 - sum_t w_t**2)``, about 1.03 for lambda = 0.94, is omitted), so
    this is the weighted analogue of a population covariance.
    """
    r = np.asarray(returns, dtype=np.float64)
    if r.ndim != 2:
        raise ValueError(f"returns must be 2-D (T, K), got shape {r.shape}")
    if not 0.0 < lam <= 1.0:
        raise ValueError(f"lam must be in (0, 1], got {lam}")
    if int(window) < 1:
        raise ValueError(f"window must be at least 1, got {window}")
    r = r[-int(window) :]
    age = np.arange(r.shape[0] - 1, -1, -1, dtype=np.float64)  # shape: (T_w,), 0 = newest
    keep = np.isfinite(r).all(axis=1)
    n_keep = int(keep.sum())
    if n_keep < MIN_EWMA_ROWS:
        raise ValueError(
            f"only {n_keep} complete rows of returns in the last {r.shape[0]} "
            f"(need {MIN_EWMA_ROWS})"
        )
    rk = r[keep]  # shape: (n_keep, K)
    w = lam ** (age[keep] - age[keep].min())  # shifted for range; cancels in normalising
    w = w / w.sum()
    mu = w @ rk  # shape: (K,)
    d = rk - mu
    cov = (d * w[:, None]).T @ d
    return 0.5 * (cov + cov.T)


def conditional_moves(cov: npt.ArrayLike, shocks: Mapping[int, float]) -> FloatArray:
    """Moves of every factor given the shocks of some: ``E[f_o | f_s = s]``.

    Parameters
    ----------
    cov : array_like, shape (K, K)
        Factor covariance (e.g. :func:`ewma_covariance`), finite and symmetric.
    shocks : Mapping[int, float]
        Factor index (0 ≤ i < K) → its simple-return move.

    Returns
    -------
    ndarray of float64, shape (K,)
        Shocked factors take their shocks; every other factor ``o`` moves by
        ``Sigma_os Sigma_ss^-1 s`` (zero-mean Gaussian conditional expectation, i.e.
        the multivariate regression of the unshocked factors on the shocked ones).
        All zeros when ``shocks`` is empty.

    Raises
    ------
    ValueError
        If ``cov`` is not square or not finite, an index is out of range, or a shock
        is not finite.

    Notes
    -----
    ``Sigma_ss^-1 s`` is computed with ``np.linalg.solve``. When ``Sigma_ss`` is
    singular (rank-deficient, e.g. a constant ETF or two shocked ETFs perfectly
    correlated), the pseudo-inverse solution (``np.linalg.lstsq``, minimum norm) is
    used instead: it equals the conditional expectation when the shocks are
    consistent with the covariance, and otherwise conditions on the least-squares
    projection of ``s`` onto what the covariance allows (a zero-variance factor's
    shock then moves nothing else).
    """
    c = np.asarray(cov, dtype=np.float64)
    if c.ndim != 2 or c.shape[0] != c.shape[1]:
        raise ValueError(f"cov must be a square matrix, got shape {c.shape}")
    if not np.isfinite(c).all():
        raise ValueError("cov must be finite")
    k = c.shape[0]
    idx = np.array(sorted(int(i) for i in shocks), dtype=np.intp)
    if idx.size and (idx[0] < 0 or idx[-1] >= k):
        raise ValueError(f"shock indices must be in [0, {k}), got {idx.tolist()}")
    s = np.array([float(shocks[int(i)]) for i in idx], dtype=np.float64)
    if not np.isfinite(s).all():
        raise ValueError("shocks must be finite")
    moves = np.zeros(k)
    moves[idx] = s
    others = np.setdiff1d(np.arange(k), idx)
    if idx.size and others.size:
        css = c[np.ix_(idx, idx)]  # shape: (S, S)
        cos = c[np.ix_(others, idx)]  # shape: (O, S)
        if np.linalg.matrix_rank(css) == idx.size:
            z = np.linalg.solve(css, s)
        else:
            z = np.linalg.lstsq(css, s, rcond=None)[0]
        moves[others] = cos @ z
    return moves


def replay_moves(
    adj_close: npt.ArrayLike,
    sessions: Sequence[date],
    start: date,
    end: date,
    cov: npt.ArrayLike | None = None,
) -> tuple[FloatArray, tuple[int, ...]]:
    """Cumulative simple returns of the factor ETFs over a historical window.

    Parameters
    ----------
    adj_close : array_like, shape (T, K)
        Adjusted closes of the K factor ETFs (``FACTOR_ETFS`` order when used with
        :func:`run_scenario`), one row per session of ``sessions``; NaN = missing
        (e.g. before an ETF was listed).
    sessions : Sequence[date]
        The T NYSE sessions of the rows, strictly ascending.
    start, end : date
        Window; the move runs from the close of the last NYSE session ≤ ``start`` to
        the close of the last NYSE session ≤ ``end``.
    cov : array_like, shape (K, K), optional
        Factor covariance of daily simple returns used to fill the ETFs without both
        prices. If None they stay NaN.

    Returns
    -------
    moves : ndarray of float64, shape (K,)
        ``adj_close[end] / adj_close[start] - 1`` for each ETF with a positive price
        on both sessions; the others are filled with their conditional expectation
        given those (:func:`conditional_moves`), floored at -1 (an ETF cannot lose
        more than its value), or NaN when ``cov`` is None.
    filled : tuple of int
        Indices of the ETFs whose move was filled (empty when ``cov`` is None).

    Raises
    ------
    ReplayDataError
        (a ``ValueError``) If the rows do not include the NYSE sessions on or before
        ``start`` and ``end`` (the prices begin after the window or end inside it),
        or no ETF has a price on both.
    ValueError
        If the shapes disagree, ``sessions`` is not strictly ascending or
        ``end < start``.
    """
    p = np.asarray(adj_close, dtype=np.float64)
    if p.ndim != 2:
        raise ValueError(f"adj_close must be 2-D (T, K), got shape {p.shape}")
    days = list(sessions)
    if len(days) != p.shape[0]:
        raise ValueError(f"sessions has {len(days)} dates but adj_close {p.shape[0]} rows")
    if any(b <= a for a, b in zip(days, days[1:], strict=False)):
        raise ValueError("sessions must be strictly ascending")
    if end < start:
        raise ValueError(f"end {end} is before start {start}")
    k = p.shape[1]
    c = None if cov is None else np.asarray(cov, dtype=np.float64)
    if c is not None and c.shape != (k, k):
        raise ValueError(f"cov must have shape ({k}, {k}), got {c.shape}")

    rows = []
    for label, day in (("start", start), ("end", end)):
        try:
            want = session_on_or_before(day)
        except CalendarRangeError as exc:
            raise ReplayDataError(str(exc)) from exc
        i = bisect.bisect_right(days, day) - 1
        if i < 0 or days[i] != want:
            raise ReplayDataError(
                f"no prices on {want}, the last NYSE session on or before the window "
                f"{label} {day}"
                + (f" (prices cover {days[0]} → {days[-1]})" if days else " (no prices)")
            )
        rows.append(i)
    p0, p1 = p[rows[0]], p[rows[1]]
    ok = np.isfinite(p0) & np.isfinite(p1) & (p0 > 0) & (p1 > 0)
    if not ok.any():
        raise ReplayDataError(f"no ETF has prices on both {days[rows[0]]} and {days[rows[1]]}")
    moves = np.full(k, np.nan)
    moves[ok] = p1[ok] / p0[ok] - 1.0
    missing = np.flatnonzero(~ok)
    if c is None or missing.size == 0:
        return moves, ()
    cond = conditional_moves(c, {int(i): float(moves[i]) for i in np.flatnonzero(ok)})
    moves[missing] = np.maximum(cond[missing], -1.0)
    return moves, tuple(int(i) for i in missing)


def stress_exposures(
    dollar_exposure: Mapping[str, float], cov: FloatArray | None = None
) -> FloatArray:
    """Dollar exposure per factor ETF from a portfolio's factor dollar exposures.

    Parameters
    ----------
    dollar_exposure : Mapping[str, float]
        Factor name (``core.factors.definitions.FACTOR_NAMES``) → the portfolio's
        dollar exposure to it (``sum_i signed market value_i * beta_i,f``, i.e. equity
        × portfolio beta). Factors absent from the mapping count as 0; a NaN value
        propagates to its ETF.
    cov : ndarray, shape (K, K), optional
        Factor-ETF covariance (``FACTOR_ETFS`` order). When given, the TLT exposure is
        netted of the rate sensitivity the style ETFs already carry (see Notes).

    Returns
    -------
    ndarray of float64, shape (K,)
        Dollars per ETF of ``FACTOR_ETFS``: value→VTV, growth→VUG, momentum→MTUM,
        quality→QUAL, size→IWM, low_volatility→USMV, ir_beta→TLT, and 0 for SPY.

    Raises
    ------
    ValueError
        If a key is not a factor name.

    Notes
    -----
    SPY gets no exposure, so the market is not counted twice. The six style betas
    come from one multivariate ridge of each stock on all six style ETFs, and every
    style ETF carries the market (its beta to SPY is about 1): a stock's predicted
    return ``sum_k beta_k r_k`` already contains its market exposure, and
    ``market_beta`` (a separate univariate regression on SPY) is approximately
    ``sum_k beta_k * beta(ETF_k on SPY)``, the same exposure measured again. The
    earlier system added ``market_beta × SPY move`` on top of the style terms; in a
    market scenario the style ETFs already move with SPY (conditionally), so the
    market P&L appeared twice. SPY's move is still computed and reported, and it
    conditions the other ETFs' moves. ``market_beta`` and the spread factors are
    therefore not used for stress (the spreads are long-short combinations of the
    same ETFs, hence the same exposures again).

    ``ir_beta`` is also a univariate regression (on TLT). For a stock whose bond
    sensitivity runs only through its equity styles, the same argument applies to a
    TLT shock: the style ETFs move with TLT conditionally and ``ir_beta × TLT``
    adds that channel again (even TLT itself gets nonzero ridge style betas: on the
    shared prices to 2024-04, $1 of TLT loses about 20 % in ``rates_up_100bp``
    instead of 16 %). With ``cov`` the TLT exposure is therefore netted:
    ``D_TLT = D_ir − Σ_k D_k Σ[k, TLT] / Σ[TLT, TLT]`` over the style ETFs k, so a
    pure TLT shock ``s`` (styles moving by their conditional expectation
    ``Σ[k, TLT] / Σ[TLT, TLT] · s``) costs exactly ``D_ir · s``: the univariate
    rate sensitivity, counted once.
    """
    unknown = sorted(set(dollar_exposure) - set(FACTOR_NAMES))
    if unknown:
        raise ValueError(f"unknown factor names {unknown}; valid: {', '.join(FACTOR_NAMES)}")
    out = np.zeros(len(FACTOR_ETFS))
    for name, etf in STRESS_FACTOR_ETF.items():
        if name in dollar_exposure:
            out[ETF_INDEX[etf]] += float(dollar_exposure[name])
    if cov is not None:
        t = ETF_INDEX["TLT"]
        styles = [ETF_INDEX[STRESS_FACTOR_ETF[f.name]] for f in RIDGE_FACTORS]
        var_t = float(cov[t, t])
        if var_t > 0:
            out[t] -= float(sum(out[k] * cov[k, t] for k in styles)) / var_t
    return out


@dataclass(frozen=True, eq=False)
class StressResult:
    """Outcome of one scenario for one portfolio.

    Attributes
    ----------
    name : str
        Scenario name.
    pnl : float
        ``sum_f exposure_f * move_f`` in the portfolio's currency (NaN if unavailable).
    pnl_pct : float
        ``pnl / equity`` as a fraction (-0.05 = -5 % of equity); NaN if equity ≤ 0 or
        the scenario is unavailable.
    moves : dict[str, float]
        ETF → simple-return move in the scenario (every ETF of ``FACTOR_ETFS``; empty
        if unavailable).
    contributions : dict[str, float]
        ETF → ``exposure × move``; sums to ``pnl`` (empty if unavailable).
    filled : tuple of str
        ETFs of a replay whose moves are conditional expectations (no prices then).
    available : bool
        False when a replay window has no data in the prices given.
    reason : str or None
        Why the scenario is unavailable, else None.
    """

    name: str
    pnl: float
    pnl_pct: float
    moves: dict[str, float]
    contributions: dict[str, float]
    filled: tuple[str, ...]
    available: bool
    reason: str | None


def scenario_moves(
    scenario: Scenario,
    cov: npt.ArrayLike,
    adj_close: npt.ArrayLike | None = None,
    sessions: Sequence[date] | None = None,
) -> tuple[FloatArray, tuple[int, ...]]:
    """Every factor ETF's move in ``scenario`` and the ETFs filled by conditional expectation.

    Shock scenarios: the shocked ETFs take their shocks, the others
    ``Σ_os Σ_ss⁻¹ s`` (:func:`conditional_moves`). Replays: the ETFs' cumulative
    returns over the window from ``adj_close`` (T, K) on ``sessions``
    (:func:`replay_moves`), which raises ``ReplayDataError`` when the prices do not
    cover it. Returns ``(moves (K,), filled indices)``.
    """
    c = np.asarray(cov, dtype=np.float64)
    if scenario.kind == "shock":
        shocks = {ETF_INDEX[e]: v for e, v in scenario.shocks.items()}
        return conditional_moves(c, shocks), ()
    if adj_close is None or sessions is None:
        raise ValueError(f"replay scenario {scenario.name!r} needs adj_close and sessions")
    assert scenario.start is not None and scenario.end is not None
    return replay_moves(adj_close, sessions, scenario.start, scenario.end, c)


def run_scenario(
    scenario: Scenario,
    exposures_by_etf: npt.ArrayLike,
    cov: npt.ArrayLike,
    equity: float,
    adj_close: npt.ArrayLike | None = None,
    sessions: Sequence[date] | None = None,
) -> StressResult:
    """P&L of a portfolio in one scenario.

    Parameters
    ----------
    scenario : Scenario
        A shock or replay scenario.
    exposures_by_etf : array_like, shape (K,)
        Dollar exposure per ETF of ``FACTOR_ETFS`` (:func:`stress_exposures`).
    cov : array_like, shape (K, K)
        Factor covariance of daily simple returns (:func:`ewma_covariance`), used to
        propagate shocks and to fill ETFs missing from a replay window.
    equity : float
        Portfolio equity (cash + signed market values) for ``pnl_pct``.
    adj_close : array_like, shape (T, K), optional
        Adjusted closes of the ETFs; required for a replay.
    sessions : Sequence[date], optional
        The T sessions of ``adj_close``; required for a replay.

    Returns
    -------
    StressResult
        ``available=False`` with a ``reason`` (not an exception) when a replay window
        is not covered by the prices.

    Raises
    ------
    ValueError
        If the shapes disagree, ``cov`` is not finite, or a replay gets no
        ``adj_close`` / ``sessions``.
    """
    k = len(FACTOR_ETFS)
    x = np.asarray(exposures_by_etf, dtype=np.float64)
    if x.shape != (k,):
        raise ValueError(f"exposures_by_etf must have shape ({k},), got {x.shape}")
    c = np.asarray(cov, dtype=np.float64)
    if c.shape != (k, k):
        raise ValueError(f"cov must have shape ({k}, {k}), got {c.shape}")
    try:
        moves, filled = scenario_moves(scenario, c, adj_close, sessions)
    except ReplayDataError as exc:
        nan = float("nan")
        return StressResult(scenario.name, nan, nan, {}, {}, (), False, str(exc))
    contrib = x * moves  # shape: (K,)
    pnl = float(contrib.sum())
    pnl_pct = pnl / equity if equity > 0 else float("nan")
    return StressResult(
        name=scenario.name,
        pnl=pnl,
        pnl_pct=float(pnl_pct),
        moves={e: float(moves[i]) for i, e in enumerate(FACTOR_ETFS)},
        contributions={e: float(contrib[i]) for i, e in enumerate(FACTOR_ETFS)},
        filled=tuple(FACTOR_ETFS[i] for i in filled),
        available=True,
        reason=None,
    )


def run_all(
    exposures_by_etf: npt.ArrayLike,
    cov: npt.ArrayLike,
    equity: float,
    adj_close: npt.ArrayLike | None,
    sessions: Sequence[date] | None,
    scenarios: Sequence[Scenario] = SCENARIOS,
) -> list[StressResult]:
    """:func:`run_scenario` for every scenario, in order.

    Parameters
    ----------
    exposures_by_etf, cov, equity, adj_close, sessions
        As in :func:`run_scenario` (``adj_close`` and ``sessions`` are required when
        ``scenarios`` contains a replay).
    scenarios : Sequence[Scenario], optional
        Default: the whole catalogue ``SCENARIOS``.

    Returns
    -------
    list of StressResult
        One per scenario, same order.
    """
    return [run_scenario(s, exposures_by_etf, cov, equity, adj_close, sessions) for s in scenarios]
