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
import time
from collections.abc import Sequence

import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine

from core import calendar
from core.db.engine import flow_engine, reading
from core.factors.definitions import FACTOR_NAMES
from core.factors.returns import simple_returns
from core.portfolio.analytics import CORRELATION_WINDOW, ScenarioSet, SymbolData
from core.portfolio.risk import ADV_SESSIONS, RiskData
from core.repositories import batch_runs as batch_repo
from core.repositories import factors as factor_repo
from core.repositories import prices as price_repo
from core.repositories import profiles as profile_repo
from core.risk.model import HISTORICAL_SESSIONS, RISK_FACTORS, RISK_WINDOW, risk_regression
from core.risk.stress import FACTOR_ETFS, SCENARIOS, ewma_covariance, scenario_moves

COVARIANCE_SESSIONS = 252
"""Sessions of factor-ETF returns behind the scenarios' EWMA covariance."""
CALENDAR_SYMBOL = "SPY"
"""A session 'has prices' when the market reference has a stored price for it."""
DATA_DATE_TTL = 5.0
"""Seconds a database's data date is reused (it changes once a night)."""
_data_dates: dict[str, tuple[float, dt.date | None]] = {}
_scenario_sets: dict[tuple[str, dt.date], ScenarioSet] = {}
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
    engine = engine or flow_engine()
    hit = _data_dates.get(database_key(engine))
    if hit and time.monotonic() - hit[0] < DATA_DATE_TTL:
        return hit[1]
    async with reading(engine) as conn:
        day = await batch_repo.latest_completed_target(conn, batch_repo.SYMBOL_BATCH_JOB)
    _data_dates[database_key(engine)] = (time.monotonic(), day)
    return day


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
    through ``as_of``, factor betas at ``as_of``, splits and sectors of ``symbols``."""
    engine = engine or flow_engine()
    start = min(calendar.previous_session(first_day),
                calendar.sessions_back(as_of, CORRELATION_WINDOW))
    syms = sorted(set(symbols))
    async with reading(engine) as conn:
        pm = await price_repo.load_price_matrix(conn, syms, start, as_of)
        betas = await factor_repo.load_beta_matrix(conn, syms, as_of, FACTOR_NAMES)
        splits = await price_repo.load_splits(conn, syms)
        sectors = await profile_repo.load_sectors(conn, syms)
    return SymbolData(pm.sessions, syms, pm.close, pm.adj_close, tuple(FACTOR_NAMES), betas,
                      splits, sectors)


async def load_risk_data(
    symbols: Sequence[str], as_of: dt.date, engine: AsyncEngine | None = None,
) -> RiskData:
    """The risk model's data for ``symbols`` at ``as_of``: one risk regression per symbol
    (``RISK_WINDOW`` sessions on ``RISK_FACTORS``), the factors' EWMA covariance, SPY's own
    regression, ``HISTORICAL_SESSIONS`` sessions of returns and the 20-session average
    volume. A symbol with too little history gets no model (NaN)."""
    engine = engine or flow_engine()
    syms = sorted(set(symbols))
    factors = list(RISK_FACTORS)
    sessions = HISTORICAL_SESSIONS + 1
    first = calendar.sessions_back(as_of, sessions)
    columns = list(dict.fromkeys([*syms, *factors, CALENDAR_SYMBOL]))  # a book may hold ETFs
    async with reading(engine) as conn:
        pm = await price_repo.load_price_matrix(conn, columns, first, as_of)
        volumes = await price_repo.average_volumes(
            conn, syms, calendar.sessions_back(as_of, ADV_SESSIONS - 1), as_of)
    returns = simple_returns(pm.adj_close)  # (T - 1, columns), NaN where a price is missing
    index = {s: j for j, s in enumerate(columns)}
    n = len(syms)
    r = returns[:, [index[s] for s in syms]]
    f = returns[:, [index[s] for s in factors]]
    spy = returns[:, [index[CALENDAR_SYMBOL]]]
    fitted = risk_regression(np.hstack([r, spy])[-RISK_WINDOW:], f[-RISK_WINDOW:])
    try:
        cov = ewma_covariance(f)
    except ValueError:  # too few complete rows of factor returns
        cov = np.full((len(factors), len(factors)), np.nan)
    return RiskData(as_of, syms, fitted.beta[:n], fitted.specific_var[:n], cov,
                    fitted.beta[n], float(fitted.specific_var[n]), r[-HISTORICAL_SESSIONS:],
                    f[-HISTORICAL_SESSIONS:],
                    np.array([volumes.get(s, np.nan) for s in syms], dtype=np.float64))


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
    key = (database_key(engine), day)
    if key not in _scenario_sets:
        async with _scenario_lock:
            if key not in _scenario_sets:
                _scenario_sets[key] = await build_scenarios(day, engine)
    return _scenario_sets[key]
