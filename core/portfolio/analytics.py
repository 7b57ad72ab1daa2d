"""All analytics of one portfolio from pre-computed symbol data (pure; no I/O).

Used by the nightly portfolio flow and by instant onboarding alike: snapshots for
the requested days, position market values, factor and sector aggregation, the
90-day correlation matrix and the stress scenarios.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal

import numpy as np

from core.factors.returns import log_returns
from core.portfolio.aggregation import FactorAggregate, aggregate_factors, sector_exposure
from core.portfolio.valuation import (
    Holding,
    InvestmentClass,
    Snapshot,
    decimal_closes,
    value_portfolio,
)
from core.risk.correlation import (
    CorrelationSummary,
    correlation_summaries,
    correlation_summary,
)
from core.risk.stress import stress_exposures

CORRELATION_WINDOW = 90
MIN_PAIR_OVERLAP = 20


@dataclass(frozen=True)
class SymbolData:
    """Symbol-layer data for a set of symbols, aligned on consecutive NYSE sessions.

    ``close``/``adj_close`` are (T, S) with NaN where no price is stored; ``betas`` is
    (S, F) at the analytics date (NaN = no value); ``splits`` maps a symbol to its
    (date, ratio) splits; ``sectors`` maps a symbol to its sector; ``dividends`` maps a
    symbol to its cash dividends (ex-date, cash per share in the share basis of that
    day's raw close), oldest first (see :mod:`core.portfolio.valuation`, "Income").
    """

    sessions: list[dt.date]
    symbols: list[str]
    close: np.ndarray
    adj_close: np.ndarray
    factors: tuple[str, ...]
    betas: np.ndarray
    splits: Mapping[str, Sequence[tuple[dt.date, float]]] = field(default_factory=dict)
    sectors: Mapping[str, str | None] = field(default_factory=dict)
    dividends: Mapping[str, Sequence[tuple[dt.date, float]]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_col", {s: j for j, s in enumerate(self.symbols)})
        object.__setattr__(self, "_row", {d: i for i, d in enumerate(self.sessions)})
        object.__setattr__(self, "_closes", {})
        object.__setattr__(self, "_decimal_closes", {})
        object.__setattr__(self, "_dividends", {})

    def closes_on(self, day: dt.date) -> dict[str, float]:
        """Raw closes stored for ``day`` (symbols without a price are absent); built once
        per day and shared by every portfolio (treat the result as read-only)."""
        cache: dict[dt.date, dict[str, float]] = self._closes  # type: ignore[attr-defined]
        if day not in cache:
            i = self._row.get(day)  # type: ignore[attr-defined]
            if i is None:
                cache[day] = {}
            else:
                row = self.close[i].tolist()
                cache[day] = {s: v for s, v in zip(self.symbols, row, strict=True) if v == v}
        return cache[day]

    def decimal_closes_on(self, day: dt.date) -> dict[str, Decimal]:
        """:meth:`closes_on` as the valuation reads them (``valuation.decimal_closes``),
        converted once per day and shared by every portfolio (read-only)."""
        cache: dict[dt.date, dict[str, Decimal]] = self._decimal_closes  # type: ignore[attr-defined]
        if day not in cache:
            cache[day] = decimal_closes(self.closes_on(day))
        return cache[day]

    def dividends_between(self, after: dt.date, through: dt.date
                          ) -> dict[str, tuple[tuple[dt.date, float], ...]]:
        """Every symbol's dividends with ex-date in ``(after, through]`` (symbols without
        one left out), found once per window and shared by every portfolio (read-only)."""
        cache: dict[tuple[dt.date, dt.date], dict[str, tuple[tuple[dt.date, float], ...]]]
        cache = self._dividends  # type: ignore[attr-defined]
        if (after, through) not in cache:
            found = {}
            for sym, paid in self.dividends.items():
                hits = tuple((d, v) for d, v in paid if after < d <= through)
                if hits:
                    found[sym] = hits
            cache[(after, through)] = found
        return cache[(after, through)]

    def column(self, symbol: str) -> int | None:
        """``symbol``'s column in ``close``, ``adj_close`` and ``betas`` (None: not held)."""
        col: dict[str, int] = self._col  # type: ignore[attr-defined]
        return col.get(symbol)

    def row(self, day: dt.date) -> int | None:
        """``day``'s row in ``close`` and ``adj_close`` (None: not one of ``sessions``)."""
        row: dict[dt.date, int] = self._row  # type: ignore[attr-defined]
        return row.get(day)


@dataclass(frozen=True)
class ScenarioSet:
    """Factor-ETF moves of every stress scenario, computed once per run (not per portfolio).

    ``moves`` is (S, K) in ``etfs`` order; rows of unavailable scenarios are NaN;
    ``cov`` is the (K, K) factor covariance the shocks were propagated with.
    """

    names: tuple[str, ...]
    etfs: tuple[str, ...]
    moves: np.ndarray
    cov: np.ndarray
    available: tuple[bool, ...]
    reasons: tuple[str | None, ...]
    filled: tuple[tuple[str, ...], ...]


@dataclass(frozen=True)
class ScenarioImpact:
    """One scenario's P&L for a portfolio (dollars, fraction of equity, per-factor)."""

    name: str
    available: bool
    pnl: float | None
    pnl_pct: float | None
    contributions: dict[str, float]
    reason: str | None


@dataclass(frozen=True)
class PortfolioAnalytics:
    """Everything computed for one portfolio."""

    snapshots: list[Snapshot]
    position_values: dict[str, Decimal | None]
    factors: FactorAggregate | None
    sectors: dict[str, tuple[float, float]]
    correlation: CorrelationSummary | None
    correlation_symbols: list[str]
    stress: list[ScenarioImpact]
    correlation_window: CorrelationWindow | None = None
    """The correlation's inputs, while :func:`analyse_portfolios` computes it (else None)."""
    position_beta_rows: tuple[Sequence[str], Sequence[str], np.ndarray] = ((), (), np.empty((0, 0)))
    """(open position ids, factors, their (P, F) betas, NaN = none): see ``position_betas``."""

    @property
    def position_betas(self) -> dict[str, dict[str, float | None]]:
        """Each open position's betas (factor → beta, None = no value), built on demand: the
        API's answer shows them, the nightly refresh does not."""
        ids, factors, betas = self.position_beta_rows
        return {  # rows as Python floats at once: per-element numpy scalars cost ~10×
            pid: {f: (b if math.isfinite(b) else None) for f, b in zip(factors, row, strict=True)}
            for pid, row in zip(ids, betas.tolist(), strict=True)}


def apply_scenarios(exposures_by_etf: np.ndarray, equity: float, scenarios: ScenarioSet
                    ) -> list[ScenarioImpact]:
    """Portfolio impact = Σ_f dollar exposure_f × move_f for each scenario, per factor too."""
    out = []
    contribs = scenarios.moves * exposures_by_etf  # shape: (S, K); row s = exposures × moves[s]
    rows = contribs.tolist()  # Python floats at once: per-element numpy scalars cost ~10×
    for s, name in enumerate(scenarios.names):
        if not scenarios.available[s]:
            out.append(ScenarioImpact(name, False, None, None, {}, scenarios.reasons[s]))
            continue
        pnl = float(contribs[s].sum())
        pct = pnl / equity if equity > 0 else None
        out.append(ScenarioImpact(
            name, True, pnl, pct, dict(zip(scenarios.etfs, rows[s], strict=True)), None))
    return out


def _split_map(data: SymbolData, holdings: Sequence[Holding]) -> dict[str, list]:
    """The holdings' splits by symbol (symbols without one left out)."""
    if not data.splits:
        return {}
    out: dict[str, list] = {}
    for h in holdings:
        hits = data.splits.get(h.symbol)
        if hits:
            out[h.symbol] = list(hits)
    return out


def _dividend_map(data: SymbolData, holdings: Sequence[Holding], after: dt.date | None,
                  through: dt.date) -> dict[str, list]:
    """The holdings' dividends with ex-date in ``(after, through]`` (the only ones the
    snapshots can earn), symbols without one left out."""
    if after is None or not data.dividends:
        return {}
    paid = data.dividends_between(after, through)
    return {sym: list(paid[sym]) for sym in {h.symbol for h in holdings} if sym in paid}


def analyse_portfolio(
    holdings: Sequence[Holding],
    cash: Decimal,
    days: Sequence[dt.date],
    data: SymbolData,
    scenarios: ScenarioSet | None,
    previous_day: dt.date | None = None,
    previous_equity: Decimal | None = None,
    *,
    correlations: bool = True,
) -> PortfolioAnalytics:
    """Snapshots for each of ``days`` (ascending), then analytics at the last day.

    ``previous_day``/``previous_equity`` describe the snapshot before the first day
    (None for a portfolio's first snapshot: its daily P&L is then None). Each snapshot's
    daily P&L includes the cash dividends of ``data.dividends`` (``income``) besides the
    price P&L (``price_pnl``).
    ``correlations=False`` skips the correlation matrix (``correlation`` is None): for a
    large portfolio it is most of the work, and an answer that does not show it need not
    wait for it.
    """
    return _analyse(holdings, cash, days, data, scenarios, previous_day, previous_equity,
                    correlations=correlations, defer=False)


def _analyse(
    holdings: Sequence[Holding], cash: Decimal, days: Sequence[dt.date], data: SymbolData,
    scenarios: ScenarioSet | None, previous_day: dt.date | None,
    previous_equity: Decimal | None, *, correlations: bool, defer: bool,
) -> PortfolioAnalytics:
    """:func:`analyse_portfolio`; with ``defer``, the correlation summary is left to the
    caller (its inputs in ``correlation_window``)."""
    if not days:
        raise ValueError("analyse_portfolio needs at least one day")
    splits = _split_map(data, holdings)
    dividends = _dividend_map(data, holdings, previous_day or days[0], days[-1])
    snapshots: list[Snapshot] = []
    prev_day, prev_equity = previous_day, previous_equity
    prev_closes = data.decimal_closes_on(prev_day) if prev_day else None
    for day in days:
        closes = data.decimal_closes_on(day)
        snap = value_portfolio(
            holdings, day, cash, closes, prev_day=prev_day, prev_closes=prev_closes,
            previous_equity=prev_equity, splits=splits, dividends=dividends,
        )
        snapshots.append(snap)
        prev_day, prev_equity, prev_closes = day, snap.equity, closes
    last = snapshots[-1]
    equity = float(last.equity)

    open_ids = [pid for pid in last.position_values]
    by_id = {h.position_id: h for h in holdings}
    mv = np.array([
        float(v) if v is not None else np.nan for v in last.position_values.values()
    ])
    betas = np.full((len(open_ids), len(data.factors)), np.nan)
    sectors: list[str | None] = []
    for i, pid in enumerate(open_ids):
        h = by_id[pid]
        j = data.column(h.symbol)
        if h.investment_class == InvestmentClass.PUBLIC and j is not None:
            betas[i] = data.betas[j]
        sectors.append(
            data.sectors.get(h.symbol) if h.investment_class != InvestmentClass.PRIVATE
            else "Private")
    factor_agg = aggregate_factors(mv, betas, equity, data.factors) if open_ids else None
    sector = sector_exposure(mv, sectors, equity) if open_ids else {}

    corr: CorrelationSummary | None = None
    corr_symbols: list[str] = []
    window: CorrelationWindow | None = None
    if correlations:
        window = correlation_window(holdings, last, data, mv, open_ids, equity)
        corr_symbols = window.symbols
        if window.returns is not None and window.weights is not None and not defer:
            corr = correlation_summary(window.returns, window.weights,
                                       min_overlap=MIN_PAIR_OVERLAP)
    stress: list[ScenarioImpact] = []
    if scenarios is not None and factor_agg is not None:
        dollars = {f: float(x) for f, x in zip(factor_agg.factors, factor_agg.dollar_exposure,
                                               strict=True) if np.isfinite(x)}
        stress = apply_scenarios(stress_exposures(dollars, scenarios.cov), equity, scenarios)
    return PortfolioAnalytics(
        snapshots=snapshots, position_values=dict(last.position_values), factors=factor_agg,
        sectors=sector, correlation=corr, correlation_symbols=corr_symbols, stress=stress,
        position_beta_rows=(open_ids, data.factors, betas),
        correlation_window=window if defer else None,
    )


@dataclass(frozen=True)
class CorrelationWindow:
    """What a portfolio's correlation summary is computed from: its priced symbols (sorted),
    and, when there are at least two and the day has prices, their (T, P) log returns over
    the window and their weights (value / equity)."""

    symbols: list[str]
    returns: np.ndarray | None = None
    weights: np.ndarray | None = None


def analyse_portfolios(
    portfolios: Sequence[tuple[Sequence[Holding], Decimal, Sequence[dt.date], dt.date | None,
                               Decimal | None]],
    data: SymbolData,
    scenarios: ScenarioSet | None,
) -> list[PortfolioAnalytics | Exception]:
    """:func:`analyse_portfolio` of each ``(holdings, cash, days, previous_day,
    previous_equity)``, in order, with the correlation summaries of all computed together
    (``correlation_summaries``: equal results, a fraction of numpy's per-call cost); a
    portfolio whose analysis fails gets its exception instead of a result."""
    results: list[PortfolioAnalytics | Exception] = []
    for holdings, cash, days, previous_day, previous_equity in portfolios:
        try:
            results.append(_analyse(holdings, cash, days, data, scenarios, previous_day,
                                    previous_equity, correlations=True, defer=True))
        except Exception as exc:  # one portfolio never stops the others
            results.append(exc)
    pending: list[int] = []
    windows: list[tuple[np.ndarray, np.ndarray]] = []
    for k, r in enumerate(results):
        w = r.correlation_window if isinstance(r, PortfolioAnalytics) else None
        if w is not None and w.returns is not None and w.weights is not None:
            pending.append(k)
            windows.append((w.returns, w.weights))
    try:
        summaries: list[CorrelationSummary | Exception] = list(
            correlation_summaries(windows, min_overlap=MIN_PAIR_OVERLAP))
    except Exception:  # find the culprit(s): each alone
        summaries = []
        for returns, weights in windows:
            try:
                summaries.append(correlation_summary(returns, weights,
                                                     min_overlap=MIN_PAIR_OVERLAP))
            except Exception as exc:
                summaries.append(exc)
    for k, summary in zip(pending, summaries, strict=True):
        results[k] = summary if isinstance(summary, Exception) else replace(
            results[k], correlation=summary)  # type: ignore[type-var]
    return [replace(r, correlation_window=None) if isinstance(r, PortfolioAnalytics) else r
            for r in results]


def correlation_window(
    holdings: Sequence[Holding], last: Snapshot, data: SymbolData, mv: np.ndarray,
    open_ids: list[str], equity: float,
) -> CorrelationWindow:
    """The inputs of the correlation of the priced positions over the last 90 sessions of
    log returns (:class:`CorrelationWindow`).

    Positions in the same symbol are merged (their values add up).
    """
    by_id = {h.position_id: h for h in holdings}
    value_by_symbol: dict[str, float] = {}
    for i, pid in enumerate(open_ids):
        h = by_id[pid]
        if h.investment_class != InvestmentClass.PUBLIC or data.column(h.symbol) is None:
            continue
        if np.isfinite(mv[i]):
            value_by_symbol[h.symbol] = value_by_symbol.get(h.symbol, 0.0) + mv[i]
    symbols = sorted(value_by_symbol)
    e = data.row(last.day)
    if len(symbols) < 2 or e is None:
        return CorrelationWindow(symbols)
    lo = max(0, e - CORRELATION_WINDOW)
    cols = [c for c in (data.column(s) for s in symbols) if c is not None]
    prices = data.adj_close[lo : e + 1][:, cols]  # shape: (≤91, P)
    rets = log_returns(prices)
    weights = np.array([value_by_symbol[s] for s in symbols]) / (equity if equity else 1.0)
    return CorrelationWindow(symbols, rets, weights)
