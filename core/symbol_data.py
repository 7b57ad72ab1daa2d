"""The one door from the symbol layer into the portfolio layer.

The portfolio computations (the nightly refresh in :mod:`core.portfolio_steps`, the instant
analytics of :mod:`core.services.analytics`, which the onboarding flow also runs) read the
symbol layer's tables only through this module: the data date (the newest completed
symbol batch), whether the symbol batch of a date completed, the sessions that have
prices, the symbol data of a set of symbols (prices, factor betas, splits, sectors) and
the stress scenarios' factor-ETF moves. What it returns is read-only input to the pure
portfolio math (:class:`~core.portfolio.analytics.SymbolData`,
:class:`~core.portfolio.analytics.ScenarioSet`).

May import the repositories of the symbol layer (prices, factors, profiles, the batch-run
log), the database engine, the calendar and the pure math; never a service, a portfolio
repository or the nightly steps (nothing about portfolios is read here).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine

from core import calendar
from core.cpu import run_cpu
from core.db.engine import flow_engine, reading, transaction
from core.factors.definitions import FACTOR_NAMES
from core.factors.returns import simple_returns
from core.portfolio.analytics import CORRELATION_WINDOW, ScenarioSet, SymbolData
from core.portfolio.risk import ADV_SESSIONS, RiskData
from core.repositories import batch_runs as batch_repo
from core.repositories import factors as factor_repo
from core.repositories import price_blocks
from core.repositories import prices as price_repo
from core.repositories import profiles as profile_repo
from core.risk.model import HISTORICAL_SESSIONS, RISK_FACTORS, RISK_WINDOW, risk_regression
from core.risk.stress import FACTOR_ETFS, SCENARIOS, ewma_covariance, scenario_moves

COVARIANCE_SESSIONS = 252
"""Sessions of factor-ETF returns behind the scenarios' EWMA covariance."""
CALENDAR_SYMBOL = "SPY"
"""A session 'has prices' when the market reference has a stored price for it."""
DATA_DATE_TTL = 5.0
"""Seconds a database's data date and version are reused (they change once a night)."""
RISK_CACHE_SYMBOLS = 5_000
"""Symbols whose risk-model columns one process keeps for the instant path (per data
version, least recently used first out; ~4 KB each)."""
_data_dates: dict[str, tuple[float, dt.date | None, str]] = {}
_scenario_sets: dict[tuple[str, dt.date, str], ScenarioSet] = {}
_scenario_lock = asyncio.Lock()


def database_key(engine: AsyncEngine) -> str:
    """The key of one database in this module's caches."""
    return str(engine.url)


async def latest_data_date(engine: AsyncEngine | None = None) -> dt.date | None:
    """The data date of every answer: the newest target date of a *completed* symbol batch;
    None before any.

    Not the newest stored price: a batch stores the day's prices before its factors, and a
    crash (or the second between the two) would otherwise date answers on a half-written
    night (prices of the new day, no betas) and cache them. Reused for
    ``DATA_DATE_TTL`` seconds per database (it changes once a night).
    """
    return (await data_version(engine))[0]


async def data_version(engine: AsyncEngine | None = None) -> tuple[dt.date | None, str]:
    """The data date (:func:`latest_data_date`) and a version of the symbol data: a text
    that changes whenever a symbol batch completes, of whatever date (a rerun that corrected
    past prices, the nightly history extension). The in-process caches of data derived from
    stored prices (scenarios, the risk model's columns) key on it. Reused for
    ``DATA_DATE_TTL`` seconds per database."""
    engine = engine or flow_engine()
    hit = _data_dates.get(database_key(engine))
    if hit and time.monotonic() - hit[0] < DATA_DATE_TTL:
        return hit[1], hit[2]
    async with reading(engine) as conn:
        day, finished = await batch_repo.completed_state(conn, batch_repo.SYMBOL_BATCH_JOB)
    version = finished.isoformat() if finished is not None else ""
    _data_dates[database_key(engine)] = (time.monotonic(), day, version)
    return day, version


async def symbol_batch_completed(as_of: dt.date, engine: AsyncEngine | None = None) -> bool:
    """True when a symbol batch covering ``as_of`` completed (with or without failures)."""
    async with reading(engine or flow_engine()) as conn:
        return await batch_repo.latest_successful(
            conn, batch_repo.SYMBOL_BATCH_JOB, as_of) is not None


async def priced_sessions(start: dt.date, end: dt.date, engine: AsyncEngine | None = None
                          ) -> list[dt.date]:
    """The sessions from ``start`` through ``end`` that have prices (a stored price of
    ``CALENDAR_SYMBOL``), oldest first."""
    async with reading(engine or flow_engine()) as conn:
        return await price_repo.sessions_with_price(conn, CALENDAR_SYMBOL, start, end)


async def load_symbol_data(
    symbols: Sequence[str], first_day: dt.date, as_of: dt.date,
    engine: AsyncEngine | None = None,
) -> SymbolData:
    """Prices from the session before ``first_day`` (and the 90-session correlation window)
    through ``as_of``, factor betas at ``as_of``, splits and sectors of ``symbols``, and
    their cash dividends with ex-dates in the same range (the daily P&L's income)."""
    engine = engine or flow_engine()
    start = min(calendar.previous_session(first_day),
                calendar.sessions_back(as_of, CORRELATION_WINDOW))
    syms = sorted(set(symbols))
    async with reading(engine) as conn:
        pm = await price_repo.load_price_matrix(conn, syms, start, as_of)
        betas = await factor_repo.load_beta_matrix(conn, syms, as_of, FACTOR_NAMES)
        splits = await price_repo.load_splits(conn, syms)
        sectors = await profile_repo.load_sectors(conn, syms)
        dividends = await price_repo.load_dividends(conn, syms, start, as_of)
    return SymbolData(pm.sessions, syms, pm.close, pm.adj_close, tuple(FACTOR_NAMES), betas,
                      splits, sectors, dividends)


@dataclass(frozen=True)
class _RiskFactors:
    """The part of the risk data every symbol shares at one date: the factors' returns over
    the historical window, their EWMA covariance and SPY's own regression."""

    factor_history: np.ndarray  # (H, K)
    factor_cov: np.ndarray
    benchmark_beta: np.ndarray
    benchmark_specific_var: float


@dataclass(frozen=True)
class _RiskColumn:
    """One symbol's part: its returns over the historical window, its regression, its ADV."""

    history: np.ndarray  # (H,)
    beta: np.ndarray  # (K,)
    specific_var: float
    adv: float


@dataclass
class _RiskCache:
    factors: _RiskFactors
    columns: OrderedDict[str, _RiskColumn] = field(default_factory=OrderedDict)


_risk_caches: dict[tuple[str, dt.date, str], _RiskCache] = {}
_risk_cache_lock = threading.Lock()


async def _risk_parts(
    syms: Sequence[str], as_of: dt.date, engine: AsyncEngine,
    factors: _RiskFactors | None = None, store_blocks: bool = False,
) -> tuple[_RiskFactors, dict[str, _RiskColumn]]:
    """Read and fit the risk model's data of ``syms`` at ``as_of``; the factors' part too
    unless given (then only the symbols' own prices are read). ``store_blocks``: store the
    price blocks the read rebuilt (the nightly refresh: its 500 sessions reach months the
    symbol flow's window does not)."""
    names = list(RISK_FACTORS)
    first = calendar.sessions_back(as_of, HISTORICAL_SESSIONS + 1)
    extra = [] if factors is not None else [*names, CALENDAR_SYMBOL]
    columns = list(dict.fromkeys([*syms, *extra]))  # a book may hold the ETFs
    async with reading(engine) as conn:
        pm = await price_repo.load_price_matrix(conn, columns, first, as_of)
        volumes = await price_repo.average_volumes(
            conn, syms, calendar.sessions_back(as_of, ADV_SESSIONS - 1), as_of)
    if store_blocks and pm.rebuilt_blocks:
        async with transaction(engine) as conn:
            await price_blocks.store_blocks(conn, pm.rebuilt_blocks)
    return await run_cpu(_fit_risk_parts, syms, columns, pm.adj_close, volumes, factors)


def _fit_risk_parts(
    syms: Sequence[str], columns: Sequence[str], adj_close: np.ndarray,
    volumes: dict[str, float], factors: _RiskFactors | None,
) -> tuple[_RiskFactors, dict[str, _RiskColumn]]:
    """The CPU part of :func:`_risk_parts` (run off the event loop): returns, regressions."""
    names = list(RISK_FACTORS)
    returns = simple_returns(adj_close)  # (T - 1, columns), NaN where a price is missing
    index = {s: j for j, s in enumerate(columns)}
    r = returns[:, [index[s] for s in syms]]
    if factors is None:
        f = returns[:, [index[s] for s in names]]
        spy = returns[:, [index[CALENDAR_SYMBOL]]]
        bench = risk_regression(spy[-RISK_WINDOW:], f[-RISK_WINDOW:])
        try:
            cov = ewma_covariance(f)
        except ValueError:  # too few complete rows of factor returns
            cov = np.full((len(names), len(names)), np.nan)
        factors = _RiskFactors(f[-HISTORICAL_SESSIONS:], cov, bench.beta[0],
                               float(bench.specific_var[0]))
    fitted = risk_regression(r[-RISK_WINDOW:], factors.factor_history[-RISK_WINDOW:])
    hist = r[-HISTORICAL_SESSIONS:]
    return factors, {s: _RiskColumn(hist[:, j], fitted.beta[j], float(fitted.specific_var[j]),
                                    float(volumes.get(s, np.nan)))
                     for j, s in enumerate(syms)}


async def load_risk_data(
    symbols: Sequence[str], as_of: dt.date, engine: AsyncEngine | None = None,
    cached: bool = False, store_blocks: bool = False,
) -> RiskData:
    """The risk model's data for ``symbols`` at ``as_of``: one risk regression per symbol
    (``RISK_WINDOW`` sessions on ``RISK_FACTORS``), the factors' EWMA covariance, SPY's own
    regression, ``HISTORICAL_SESSIONS`` sessions of returns and the 20-session average
    volume. A symbol with too little history gets no model (NaN).

    ``cached`` (the instant path): the factors' part and each symbol's columns are kept in
    this process per database, date and data version (:func:`data_version`: a completed
    symbol batch of any date starts afresh), for up to ``RISK_CACHE_SYMBOLS`` symbols, so
    a new portfolio of known symbols reads only what no earlier request read. A symbol
    without a model is never kept (its prices may be arriving). The answer is the same as
    uncached (each symbol's regression is its own). ``store_blocks`` (the nightly refresh,
    uncached): store the price blocks the read had to rebuild from rows.
    """
    engine = engine or flow_engine()
    syms = sorted(set(symbols))
    if not cached:
        factors, cols = await _risk_parts(syms, as_of, engine, store_blocks=store_blocks)
    else:
        key = (database_key(engine), as_of, (await data_version(engine))[1])
        with _risk_cache_lock:
            cache = _risk_caches.get(key)
            cols = {} if cache is None else {s: cache.columns[s] for s in syms
                                             if s in cache.columns}
        missing = [s for s in syms if s not in cols]
        if cache is None or missing:
            factors, read = await _risk_parts(missing, as_of, engine,
                                              cache.factors if cache else None)
            cols.update(read)
            with _risk_cache_lock:
                if cache is None:
                    _risk_caches.clear()  # one date and version at a time
                    cache = _risk_caches.setdefault(key, _RiskCache(factors))
                for s, c in read.items():
                    if math.isfinite(c.specific_var):
                        cache.columns[s] = c
                while len(cache.columns) > RISK_CACHE_SYMBOLS:
                    cache.columns.popitem(last=False)
        factors = cache.factors
        with _risk_cache_lock:
            for s in syms:
                if s in cache.columns:
                    cache.columns.move_to_end(s)
    k = len(RISK_FACTORS)
    h = factors.factor_history.shape[0]
    return RiskData(
        as_of, syms,
        np.array([cols[s].beta for s in syms]).reshape(len(syms), k),
        np.array([cols[s].specific_var for s in syms], dtype=np.float64),
        factors.factor_cov, factors.benchmark_beta, factors.benchmark_specific_var,
        np.column_stack([cols[s].history for s in syms]) if syms else np.zeros((h, 0)),
        factors.factor_history, np.array([cols[s].adv for s in syms], dtype=np.float64))


async def build_scenarios(as_of: dt.date, engine: AsyncEngine | None = None) -> ScenarioSet:
    """Factor-ETF moves of every catalogue scenario, from stored ETF prices up to ``as_of``.

    Shock scenarios propagate to unshocked ETFs through the EWMA covariance (λ 0.94,
    ``COVARIANCE_SESSIONS`` sessions); replays use the ETFs' actual returns over their
    windows.
    """
    engine = engine or flow_engine()
    etfs = list(FACTOR_ETFS)
    async with reading(engine) as conn:
        recent = await price_repo.load_price_matrix(
            conn, etfs, calendar.sessions_back(as_of, COVARIANCE_SESSIONS), as_of)
        cov = ewma_covariance(simple_returns(recent.adj_close))
        names, moves, available, reasons, filled = [], [], [], [], []
        for sc in SCENARIOS:
            names.append(sc.name)
            move = np.full(len(etfs), np.nan)
            reason: str | None = None
            fill: tuple[str, ...] = ()
            if sc.kind == "shock":
                move, _ = scenario_moves(sc, cov)
            elif sc.start is None or sc.end is None or sc.end > as_of:
                reason = f"window ends after {as_of}"
            else:
                window = await price_repo.load_price_matrix(
                    conn, etfs, sc.start - dt.timedelta(days=10), sc.end)
                try:
                    move, idx = scenario_moves(sc, cov, window.adj_close, window.sessions)
                    fill = tuple(etfs[i] for i in idx)
                except ValueError as exc:
                    reason = f"no reference ETF prices for {sc.start} → {sc.end}: {exc}"
            ok = reason is None and bool(np.isfinite(move).all())
            if not ok and reason is None:
                reason = "some factor moves could not be estimated"
            moves.append(move)
            available.append(ok)
            reasons.append(reason)
            filled.append(fill)
    return ScenarioSet(tuple(names), tuple(etfs), np.vstack(moves), cov, tuple(available),
                       tuple(reasons), tuple(filled))


async def scenarios_at(day: dt.date, engine: AsyncEngine | None = None) -> ScenarioSet:
    """:func:`build_scenarios` of ``day``, built once per database and data date in this
    process (the instant path; the nightly refresh builds its own once per run)."""
    engine = engine or flow_engine()
    key = (database_key(engine), day, (await data_version(engine))[1])
    if key not in _scenario_sets:
        async with _scenario_lock:
            if key not in _scenario_sets:
                while len(_scenario_sets) >= 8:  # older dates and versions go first
                    _scenario_sets.pop(next(iter(_scenario_sets)))
                _scenario_sets[key] = await build_scenarios(day, engine)
    return _scenario_sets[key]


async def adjusted_closes(symbols: Sequence[str], start: dt.date, end: dt.date,
                          engine: AsyncEngine | None = None
                          ) -> tuple[list[dt.date], np.ndarray]:
    """Stored adjusted closes (splits and dividends reinvested, as the provider adjusts
    them) of ``symbols`` on the sessions from ``start`` through ``end``.

    Returns
    -------
    sessions : list of date
        The NYSE sessions of the range, oldest first.
    closes : ndarray, shape (T, N)
        Adjusted close of each symbol (columns in ``symbols`` order) on each session; NaN
        where none is stored.
    """
    async with reading(engine or flow_engine()) as conn:
        pm = await price_repo.load_price_matrix(conn, list(symbols), start, end)
    return pm.sessions, pm.adj_close


async def risk_factor_closes(start: dt.date, end: dt.date, engine: AsyncEngine | None = None
                             ) -> tuple[list[dt.date], np.ndarray]:
    """:func:`adjusted_closes` of the risk model's factors (``RISK_FACTORS`` order): the
    prices their daily returns are made of."""
    return await adjusted_closes(RISK_FACTORS, start, end, engine)


async def last_price_date(symbol: str, engine: AsyncEngine | None = None) -> dt.date | None:
    """The newest date with a stored price of ``symbol``; None when it has none."""
    async with reading(engine or flow_engine()) as conn:
        return (await price_repo.last_price_dates(conn, [symbol])).get(symbol)
