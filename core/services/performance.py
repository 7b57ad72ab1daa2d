"""Performance and factor P&L attribution of one portfolio, from its stored snapshots.

The answers are made of what the nightly refresh (and the instant snapshot) stored: the
snapshots' ``daily_pnl`` (the total P&L of the day) and ``equity``, the nightly
``portfolio_risk`` rows (the dollar factor exposures of each close), and the stored
adjusted closes of the benchmark and of the risk model's factor ETFs, read through
:mod:`core.symbol_data`. The math is :mod:`core.performance` (run off the event loop).

Conventions (stated in every answer's ``conventions``)
-------------------------------------------------------
Window
    Returns dated ``start <= date <= end``; the first one is measured from the close of the
    snapshot before it (which may lie before ``start``). ``1M`` / ``3M`` / ``1Y``: from the
    day after the same calendar day one, three or twelve months before ``end`` (clamped to
    the month's end); ``YTD``: from January 1st; ``ITD`` (the default): from the first
    snapshot. ``end`` is the data date (or the ``end`` asked, if earlier). A portfolio
    younger than the window is measured over its own life; ``start`` stays the window's.
Returns
    Time-weighted: ``r_t = daily_pnl_t / equity`` of the previous snapshot, chain-linked.
    ``daily_pnl`` excludes cash moves, so deposits, withdrawals and positions added or
    removed change the equity but are not returns. A snapshot without a P&L (the first
    one) or after a previous equity <= 0 has no return.
Benchmark
    ``adj_close`` at the return's date over ``adj_close`` at the previous snapshot's date,
    minus 1: the benchmark's simple return over exactly the interval of each portfolio
    return (a session without its price leaves the relative metrics without that pair).
Attribution
    On a session t whose previous session p has a snapshot: the dollar exposure at p's
    close to each risk factor times that factor's simple return
    ``adj_close_t / adj_close_p - 1``; the specific P&L is the rest of the day's
    ``daily_pnl``. The exposure is the nightly risk row's of p; a close without one (the
    days a history build wrote) has it rebuilt from the positions valued at that close and
    the data date's risk model (:mod:`core.rebuilt_exposures`; ``exposure_source`` says
    which). Other sessions are unattributed (their P&L in ``unattributed_pnl``).

Caching: the answers are stored in ``portfolio_analytics_cache`` like the other analytics,
one row per portfolio and query (``kind`` = ``performance:`` or ``attribution:`` and a
digest of the query; the query itself is kept in the row and compared on a hit), dated
by the data date and keyed by :func:`core.repositories.portfolios.history_fingerprint` of
the stored history (any snapshot or risk row written since, by whatever path, is a miss).
Every write through the API and the nightly refresh delete a portfolio's rows with its
other entries; at most ``MAX_CACHED_QUERIES`` queries of each family are kept per portfolio.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core import calendar
from core.cpu import run_cpu
from core.db.engine import flow_engine, reading, run_transaction
from core.errors import InvalidInput, NotReady
from core.performance.attribution import factor_pnl_attribution
from core.performance.metrics import (
    METRICS,
    PERIODS_PER_YEAR,
    RELATIVE_METRICS,
    performance,
    previous_equity,
    time_weighted_returns,
)
from core.portfolio.risk import FORMAT as RISK_FORMAT
from core.portfolio.risk import expand_risk
from core.rebuilt_exposures import rebuilt_exposures
from core.repositories import portfolios as portfolio_repo
from core.risk.model import RISK_FACTORS
from core.services.analytics import is_stale
from core.symbol_data import adjusted_closes, last_price_date, latest_data_date
from core.symbols import InvalidSymbolError, validate_symbol

WINDOWS: tuple[str, ...] = ("1M", "3M", "YTD", "1Y", "ITD")
"""The named windows (``ITD``: since inception, the default)."""
DEFAULT_BENCHMARK = "SPY"
RISK_FREE_RANGE = (-0.05, 0.25)
"""Accepted annual risk-free rates (fractions): 2 for 2 % is refused, with a hint."""
MAX_CACHED_QUERIES = 16
"""Cached answers kept per portfolio and family (performance, attribution)."""
_MONTHS = {"1M": 1, "3M": 3, "1Y": 12}


@dataclass(frozen=True)
class PerformanceQuery:
    """A validated ``/performance`` query (``window`` None when ``start`` / ``end`` or
    nothing was given)."""

    window: str | None
    start: dt.date | None
    end: dt.date | None
    benchmark: str
    risk_free: float


def performance_query(window: str | None = None, start: dt.date | None = None,
                      end: dt.date | None = None, benchmark: str = DEFAULT_BENCHMARK,
                      risk_free: float = 0.0) -> PerformanceQuery:
    """Validate a ``/performance`` query; InvalidInput naming the field at fault.

    Raises InvalidInput naming ``window`` (unknown, or given with ``start`` / ``end``),
    ``end`` (before ``start``), ``benchmark`` (not a well-formed symbol) or ``risk_free``
    (not finite or outside ``RISK_FREE_RANGE``: a percent given as a number).
    """
    if window is not None and window not in WINDOWS:
        raise InvalidInput(f"window: {window!r} is not one of {', '.join(WINDOWS)}", "window")
    if window is not None and (start is not None or end is not None):
        raise InvalidInput("window: give either window or start/end, not both", "window")
    _check_range(start, end)
    try:
        symbol = validate_symbol(benchmark)
    except InvalidSymbolError as exc:
        raise InvalidInput(f"benchmark: {exc}", "benchmark") from None
    lo, hi = RISK_FREE_RANGE
    rf = float(risk_free)
    if not (math.isfinite(rf) and lo <= rf <= hi):
        hint = (f"; for {rf:g} % give {rf / 100:g}" if math.isfinite(rf) and 1 <= abs(rf) <= 100
                else "")
        raise InvalidInput(f"risk_free: {risk_free!r} is not an annual rate as a fraction in "
                           f"[{lo}, {hi}] (0.02 = 2 %){hint}", "risk_free")
    return PerformanceQuery(window, start, end, symbol, rf)


def _check_range(start: dt.date | None, end: dt.date | None) -> None:
    if start is not None and end is not None and end < start:
        raise InvalidInput(f"end: {end.isoformat()} is before start {start.isoformat()}", "end")


def _months_before(day: dt.date, months: int) -> dt.date:
    """The same calendar day ``months`` months before ``day`` (the month's last day when it
    has no such day)."""
    y, m = divmod(day.year * 12 + day.month - 1 - months, 12)
    m += 1
    nxt = dt.date(y + (m == 12), m % 12 + 1, 1)
    return dt.date(y, m, min(day.day, (nxt - dt.timedelta(days=1)).day))


def window_bounds(query: PerformanceQuery, day: dt.date, inception: dt.date | None
                  ) -> tuple[dt.date, dt.date]:
    """The (start, end) a query covers at data date ``day`` for a portfolio whose first
    snapshot is ``inception`` (None: none): see the module's conventions.

    Raises InvalidInput naming ``start`` when it is after the data date (no data yet: the
    range would end before it starts)."""
    if query.start is not None and query.start > day:
        raise InvalidInput(f"start: {query.start.isoformat()} is after the data date "
                           f"{day.isoformat()} (no data yet)", "start")
    end = day if query.end is None else min(query.end, day)
    if query.window in _MONTHS:
        start = _months_before(end, _MONTHS[query.window]) + dt.timedelta(days=1)
    elif query.window == "YTD":
        start = dt.date(end.year, 1, 1)
    elif query.start is not None:
        start = query.start
    else:  # ITD
        start = inception if inception is not None else end
    return start, end


# --- the answers (CPU only: run in a worker thread) -----------------------------------------


def _f(x: Any) -> float | None:
    v = float(x)
    return v if math.isfinite(v) else None


def _money(x: Any) -> float:
    return math.nan if x is None else float(x)


def _interval_returns(closes: dict[dt.date, np.ndarray], dates: Sequence[dt.date],
                      before: Sequence[dt.date | None], width: int) -> np.ndarray:
    """``closes[date] / closes[before] - 1`` per row, shape (len(dates), width); NaN where a
    price (or the earlier date) is missing."""
    out = np.full((len(dates), width), np.nan)
    missing = np.full(width, np.nan)
    for i, (day, prev) in enumerate(zip(dates, before, strict=True)):
        if prev is not None:
            out[i] = closes.get(day, missing) / closes.get(prev, missing) - 1.0
    return out


def _conventions(perf_conventions: dict[str, Any], benchmark: str) -> dict[str, Any]:
    ppy = perf_conventions["periods_per_year"]
    return {
        **perf_conventions,
        "risk_free_conversion": f"geometric: (1 + risk_free_annual) ** (1 / {ppy:g}) - 1",
        "returns": "time-weighted daily simple returns r_t = daily_pnl_t / equity of the "
                   "previous snapshot, chain-linked: cumulative_return = prod(1 + r_t) - 1",
        "cash_flows": "daily_pnl excludes cash: deposits, withdrawals and positions added or "
                      "removed change the equity but are not returns",
        "annualization": f"annualized_return = (1 + cumulative_return) ** ({ppy:g} / "
                         f"n_returns) - 1; volatilities and tracking error × sqrt({ppy:g}) "
                         "(standard deviation with ddof 1)",
        "window": "returns dated start <= date <= end; the first measured from the close of "
                  "the snapshot before it",
        "benchmark": benchmark,
        "benchmark_source": f"stored adjusted closes of {benchmark} (splits and dividends "
                            "reinvested): adj_close at each return's date over adj_close at "
                            "the previous snapshot's date, minus 1",
        "relative_metrics": "over the sessions where the portfolio and the benchmark both "
                            "have a return",
    }


def performance_payload(
    query: PerformanceQuery, start: dt.date, end: dt.date, rows: Sequence[Any],
    sessions: Sequence[dt.date], bench_closes: np.ndarray,
) -> dict[str, Any]:
    """The ``/performance`` answer (without ``data_as_of``, ``stale`` and ``cached``).

    ``rows``: the snapshots of :func:`~core.repositories.portfolios.snapshot_series`
    (``date``, ``equity``, ``daily_pnl``; the one before ``start`` first, if any);
    ``bench_closes``: the benchmark's adjusted closes on ``sessions`` (shape (T,)).
    """
    dates = [r[0] for r in rows]
    t = len(dates)
    equity = np.array([_money(r[1]) for r in rows], dtype=np.float64)
    pnl = np.array([_money(r[2]) for r in rows], dtype=np.float64)
    returns = time_weighted_returns(pnl, previous_equity(equity))[:, 0]  # shape: (T,)
    inside = np.array([start <= d <= end for d in dates], dtype=bool)
    returns[~inside] = np.nan  # the snapshot before the window: only its equity counts
    closes = {d: np.array([c]) for d, c in zip(sessions, bench_closes, strict=True)}
    before: list[dt.date | None] = [None, *dates[:-1]] if dates else []
    bench = _interval_returns(closes, dates, before, 1)[:, 0]
    perf = performance(returns, bench, risk_free_annual=query.risk_free,
                       periods_per_year=PERIODS_PER_YEAR)
    figures: dict[str, Any] = {name: _f(getattr(perf, name)[0])
                               for name in METRICS + RELATIVE_METRICS}
    reasons = perf.null_reasons(0)

    def date_at(index: Any) -> str | None:
        i = int(index)
        return dates[i].isoformat() if 0 <= i < t else None

    dated = {
        "max_drawdown_peak_date": perf.peak_index[0], "max_drawdown_trough_date":
        perf.trough_index[0], "max_drawdown_recovery_date": perf.recovery_index[0],
        "best_day_date": perf.best_index[0], "worst_day_date": perf.worst_index[0]}
    for name, index in dated.items():
        figures[name] = date_at(index)
        if figures[name] is None:
            source = name.removesuffix("_date").replace("_peak", "").replace(
                "_trough", "").replace("_recovery", "")
            if source in reasons:
                reasons[name] = reasons[source]
            elif figures.get(source) == 0.0:
                reasons[name] = "no drawdown"
            elif name == "max_drawdown_recovery_date":
                reasons[name] = f"not recovered by {end.isoformat()}"
            else:
                reasons[name] = "undefined"
    valid = [d for d, r in zip(dates, returns, strict=True) if math.isfinite(r)]
    return {
        "window": query.window or ("ITD" if query.start is None and query.end is None
                                   else None),
        "start": start.isoformat(), "end": end.isoformat(),
        "first_return_date": valid[0].isoformat() if valid else None,
        "last_return_date": valid[-1].isoformat() if valid else None,
        "benchmark": query.benchmark, "n_returns": int(perf.n_returns[0]),
        "n_benchmark_pairs": int(perf.n_relative[0]),
        **figures, "reasons": reasons,
        "conventions": _conventions(perf.conventions(), query.benchmark),
    }


def _exposure(record: dict[str, Any]) -> np.ndarray:
    """The dollar exposure per ``RISK_FACTORS`` factor of a risk record (NaN: unknown)."""
    if record.get("format") == RISK_FORMAT:
        names, values = record["model"]["factors"], record["factor_exposure"]
    else:
        rows = [r for r in expand_risk(record).get("factor_contributions", [])
                if r.get("factor") != "specific"]
        names, values = [r["factor"] for r in rows], [r.get("exposure") for r in rows]
    by_name = {n: (math.nan if v is None else float(v)) for n, v in zip(names, values,
                                                                          strict=True)}
    return np.array([by_name.get(f, math.nan) for f in RISK_FACTORS], dtype=np.float64)


def _attributed_days(start: dt.date, end: dt.date, rows: Sequence[Any]
                     ) -> list[tuple[dt.date, dt.date, bool, float]]:
    """(day, previous session, whether that session has a snapshot, daily P&L) of each
    snapshot in ``start`` .. ``end`` with a daily P&L."""
    out = []
    for i, r in enumerate(rows):
        day = r[0]
        if start <= day <= end and r[2] is not None:
            prev = calendar.previous_session(day)
            out.append((day, prev, i > 0 and rows[i - 1][0] == prev, float(r[2])))
    return out


def closes_to_rebuild(start: dt.date, end: dt.date, rows: Sequence[Any],
                      exposures: Sequence[tuple[dt.date, dict[str, Any]]]) -> list[dt.date]:
    """The previous closes of ``/attribution``'s days that have a snapshot but no nightly
    risk row: their exposures are rebuilt (:mod:`core.rebuilt_exposures`). Ascending."""
    records = dict(exposures)
    return sorted({prev for _, prev, has, _ in _attributed_days(start, end, rows)
                   if has and prev not in records})


def attribution_payload(
    start: dt.date, end: dt.date, rows: Sequence[Any],
    exposures: Sequence[tuple[dt.date, dict[str, Any]]],
    sessions: Sequence[dt.date], factor_closes: np.ndarray,
    rebuilt: Mapping[dt.date, dict[str, Any]] | None = None, model_day: dt.date | None = None,
) -> dict[str, Any]:
    """The ``/attribution`` answer (without ``data_as_of``, ``stale`` and ``cached``).

    ``rows``: snapshots as for :func:`performance_payload`; ``exposures``: the nightly risk
    records by date; ``factor_closes``: adjusted closes of ``RISK_FACTORS`` on
    ``sessions``, shape (T, K); ``rebuilt``: risk records of closes without a nightly one,
    made with the risk model of ``model_day`` (:mod:`core.rebuilt_exposures`).
    """
    k = len(RISK_FACTORS)
    records = dict(exposures)
    rebuilt = rebuilt or {}
    closes = dict(zip(sessions, factor_closes, strict=True))
    days, pnl, exposure, prev_sessions, reasons, sources = [], [], [], [], [], []
    for day, prev, has_prev, day_pnl in _attributed_days(start, end, rows):
        e = np.full(k, np.nan)
        reason = source = None
        record = records.get(prev, rebuilt.get(prev))
        if not has_prev:
            reason = f"no snapshot on the previous session {prev.isoformat()}"
        elif record is None:
            reason = f"no risk row for the previous session {prev.isoformat()}"
        else:
            source = "nightly" if prev in records else "rebuilt"
            e = _exposure(record)
            if not np.isfinite(e).all():
                reason = f"factor exposures unknown on {prev.isoformat()}"
        sources.append(source)
        days.append(day)
        pnl.append(day_pnl)
        exposure.append(e)
        prev_sessions.append(prev)
        reasons.append(reason)
    n = len(days)
    f = _interval_returns(closes, days, prev_sessions, k)
    for j, reason in enumerate(reasons):
        if reason is None and not np.isfinite(f[j]).all():
            reasons[j] = f"factor returns incomplete on {days[j].isoformat()}"
    e3 = np.array(exposure, dtype=np.float64).reshape(n, 1, k)  # shape: (T, 1, K)
    y = np.array(pnl, dtype=np.float64).reshape(n, 1)
    a = factor_pnl_attribution(e3, f, y)
    out_days = []
    for j, day in enumerate(days):
        ok = bool(a.attributed[j, 0])
        out_days.append({
            "date": day.isoformat(), "pnl": pnl[j], "attributed": ok,
            "factors": ({name: float(a.factor_pnl[j, 0, i]) for i, name in enumerate(RISK_FACTORS)}
                        if ok else None),
            "specific": float(a.specific_pnl[j, 0]) if ok else None,
            "exposure_source": sources[j] if ok else None,
            "reason": None if ok else reasons[j] or "unattributed"})
    total = float(np.sum(y))
    attributed = float(a.attributed_pnl[0])
    return {
        "start": start.isoformat(), "end": end.isoformat(),
        "factors": [{"factor": name, "pnl": float(a.factor_total[0, i])}
                    for i, name in enumerate(RISK_FACTORS)],
        "specific_pnl": float(a.specific_total[0]), "total_pnl": total,
        "attributed_pnl": attributed, "unattributed_pnl": float(a.unattributed_pnl[0]),
        "n_days": n, "n_attributed": int(a.n_attributed[0]),
        "n_unattributed": n - int(a.n_attributed[0]),
        "n_rebuilt": sum(1 for d in out_days if d["exposure_source"] == "rebuilt"),
        "days": out_days,
        "conventions": {
            "exposure": "dollar exposure to each risk factor (sum of market value × the "
                        "symbol's risk-model beta) at the previous session's close, from "
                        "the nightly risk row of that session (exposure_source 'nightly'); "
                        "a close without one (history built after the fact) has its "
                        "positions valued at that close and the risk model of "
                        f"{model_day.isoformat() if model_day else 'the data date'} "
                        "applied (exposure_source 'rebuilt')",
            "factor_returns": "simple return of each factor ETF that session from stored "
                              "adjusted closes: adj_close_t / adj_close_previous_session - 1",
            "identity": "sum of the factors' pnl + specific = pnl, per day and over the "
                        "attributed days (attributed_pnl); total_pnl = attributed_pnl + "
                        "unattributed_pnl",
            "pnl": "the snapshots' daily_pnl (the day's total P&L, in the portfolio's "
                   "currency)",
        },
    }


# --- the service ----------------------------------------------------------------------------

ATTRIBUTION_ANSWER = 2
"""Version of the ``/attribution`` answer, part of its cache key: an answer cached before
(version 1 left the days without a nightly risk row unattributed) is a miss."""


async def _data_date(engine: AsyncEngine) -> dt.date:
    day = await latest_data_date(engine)
    if day is None:
        raise NotReady("no market data stored yet: the symbol batch has not run")
    return day


def _answer(payload: dict[str, Any], day: dt.date, cached: bool) -> dict[str, Any]:
    return {**payload, "data_as_of": day.isoformat(), "stale": is_stale(day),
            "cached": cached}


def _kind(family: str, query: dict[str, Any]) -> str:
    digest = hashlib.sha256(json.dumps(query, sort_keys=True).encode()).hexdigest()[:32]
    return f"{family}:{digest}"


def _token(fingerprint: tuple[Any, ...]) -> str:
    text = json.dumps([str(x) for x in fingerprint])
    return hashlib.sha256(text.encode()).hexdigest()


async def _cached(engine: AsyncEngine, portfolio_id: str, kind: str, query: dict[str, Any],
                  day: dt.date, risk: bool) -> tuple[dict[str, Any] | None, str, dt.date | None]:
    """(the stored answer if it is for this query, data date and history, the history's
    token, the portfolio's first snapshot date)."""
    async with reading(engine) as conn:
        fingerprint = await portfolio_repo.history_fingerprint(conn, portfolio_id, day,
                                                               risk=risk)
        row = await portfolio_repo.cached_analytics(conn, portfolio_id, kind)
    token = _token(fingerprint)
    if (row is not None and row.data_date == day and row.positions_hash == token
            and isinstance(row.payload, dict) and row.payload.get("query") == query):
        return row.payload["answer"], token, fingerprint[1]
    return None, token, fingerprint[1]


async def _store(engine: AsyncEngine, portfolio_id: str, family: str, kind: str,
                 query: dict[str, Any], day: dt.date, token: str, risk: bool,
                 answer: dict[str, Any]) -> None:
    """Store the answer unless the portfolio's history changed since it was read (checked
    under the portfolio's lock, the first step of every portfolio write)."""
    async def store(conn: AsyncConnection) -> None:
        versions = await portfolio_repo.lock_portfolios(conn, [portfolio_id])
        version = versions.get(portfolio_id)
        if version is None or version.deleted:
            return
        now = await portfolio_repo.history_fingerprint(conn, portfolio_id, day, risk=risk)
        if _token(now) != token:
            return
        await portfolio_repo.prune_cached_answers(conn, portfolio_id, f"{family}:", day,
                                                  MAX_CACHED_QUERIES)
        await portfolio_repo.store_analytics(conn, [{
            "portfolio_id": portfolio_id, "kind": kind, "positions_hash": token,
            "data_date": day, "payload": {"query": query, "answer": answer},
            "created_at": dt.datetime.now(dt.UTC)}])

    await run_transaction(store, engine)


def _close_range(rows: Sequence[Any]) -> tuple[dt.date, dt.date] | None:
    return (rows[0][0], rows[-1][0]) if rows else None


async def portfolio_performance(portfolio_id: str, query: PerformanceQuery,
                                engine: AsyncEngine | None = None) -> dict[str, Any]:
    """The performance of a portfolio over a window from its stored snapshots.

    Parameters
    ----------
    portfolio_id : str
        A live portfolio (the caller checked its owner).
    query : PerformanceQuery
        From :func:`performance_query`.
    engine : AsyncEngine, optional

    Returns
    -------
    dict
        ``window``, ``start`` / ``end`` (the window used), ``first_return_date`` /
        ``last_return_date``, ``benchmark``, ``n_returns``, ``n_benchmark_pairs``, the
        figures under empyrical's names (fractions; annualized with 252 sessions; None when
        undefined) with the dates of the maximum drawdown and the best and worst day,
        ``reasons`` (each None figure → why), ``conventions``, ``data_as_of``, ``stale``,
        ``cached``. Never NaN or infinity.

    Raises
    ------
    InvalidInput
        Naming ``benchmark`` when it has no stored price.
    NotReady
        Before any symbol batch completed.
    """
    engine = engine or flow_engine()
    day = await _data_date(engine)
    key = {"kind": "performance", **asdict(query),
           "start": query.start and query.start.isoformat(),
           "end": query.end and query.end.isoformat(), "risk_free": repr(query.risk_free)}
    kind = _kind("performance", key)
    hit, token, inception = await _cached(engine, portfolio_id, kind, key, day, False)
    if hit is not None:
        return _answer(hit, day, True)
    if await last_price_date(query.benchmark, engine) is None:
        raise InvalidInput(f"benchmark: no stored prices for {query.benchmark!r} (any "
                           "symbol of the universe with prices, e.g. SPY)", "benchmark")
    start, end = window_bounds(query, day, inception)
    async with reading(engine) as conn:
        rows = await portfolio_repo.snapshot_series(conn, portfolio_id, start, end)
    span = _close_range(rows)
    sessions: list[dt.date] = []
    closes = np.zeros(0)
    if span is not None:
        sessions, matrix = await adjusted_closes([query.benchmark], span[0], span[1], engine)
        closes = matrix[:, 0]
    answer = await run_cpu(performance_payload, query, start, end, rows, sessions, closes)
    await _store(engine, portfolio_id, "performance", kind, key, day, token, False, answer)
    return _answer(answer, day, False)


async def portfolio_attribution(portfolio_id: str, start: dt.date | None = None,
                                end: dt.date | None = None, engine: AsyncEngine | None = None
                                ) -> dict[str, Any]:
    """The factor P&L attribution of a portfolio over ``start`` .. ``end`` (default: its
    first snapshot .. the data date; ``end`` after the data date is the data date).

    Returns
    -------
    dict
        ``start`` / ``end`` used; ``factors`` (``factor``, ``pnl``: summed over the
        attributed days), ``specific_pnl``, ``total_pnl`` (every day's P&L),
        ``attributed_pnl`` (= Σ factors + specific), ``unattributed_pnl``, the day counts,
        ``days`` (``date``, ``pnl``, ``attributed``, ``factors``, ``specific``,
        ``reason``), ``conventions``, ``data_as_of``, ``stale``, ``cached``. Money in the
        portfolio's currency (floats).

    Raises
    ------
    InvalidInput
        Naming ``end`` when it is before ``start``.
    """
    _check_range(start, end)
    engine = engine or flow_engine()
    day = await _data_date(engine)
    key = {"kind": "attribution", "answer": ATTRIBUTION_ANSWER,
           "start": start and start.isoformat(), "end": end and end.isoformat()}
    kind = _kind("attribution", key)
    hit, token, inception = await _cached(engine, portfolio_id, kind, key, day, True)
    if hit is not None:
        return _answer(hit, day, True)
    first, last = window_bounds(PerformanceQuery(None, start, end, DEFAULT_BENCHMARK, 0.0),
                                day, inception)
    async with reading(engine) as conn:
        rows = await portfolio_repo.snapshot_series(conn, portfolio_id, first, last)
        span = _close_range(rows)
        exposures = ([] if span is None else await portfolio_repo.risk_factor_exposures(
            conn, portfolio_id, calendar.previous_session(span[0]), span[1]))
    sessions: list[dt.date] = []
    closes = np.zeros((0, len(RISK_FACTORS)))
    if span is not None:
        sessions, closes = await adjusted_closes(
            RISK_FACTORS, calendar.previous_session(span[0]), span[1], engine)
    rebuilt = await rebuilt_exposures(
        portfolio_id, closes_to_rebuild(first, last, rows, exposures), day, engine)
    answer = await run_cpu(attribution_payload, first, last, rows, exposures, sessions, closes,
                           rebuilt, day)
    await _store(engine, portfolio_id, "attribution", kind, key, day, token, True, answer)
    return _answer(answer, day, False)
