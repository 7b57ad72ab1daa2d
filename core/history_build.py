"""A portfolio's daily snapshots built back to its positions' entry dates (the history
build of ``POST /v1/portfolios/{id}/history``), with the nightly refresh's own code.

A portfolio imported today with positions entered months ago has, without this, snapshots
from today on only. The build values every priced session from the *history start* through
the data date (the newest completed symbol batch) with the nightly refresh's own code, in
slices of :data:`HISTORY_SLICE` sessions (one transaction each, so memory and transaction
size stay bounded), each slice chained to the last snapshot of the one before: the slices
before the last value and write their snapshots as the refresh does (``load_symbol_data``,
``analyse_portfolio``, ``analytics_rows``, under the portfolio's lock); the last one, ending
at the data date, *is* the nightly refresh of that date
(:func:`core.portfolio_steps.refresh_chunk`: snapshots, position values, factor and sector
exposures, correlations, stress tests, the risk record). So the rows equal those of one
refresh whose backfill had reached back to the history start.

**History start** (:func:`history_start`): the earliest entry date of the portfolio's
positions, moved later to the first session at which every position open that day has a
stored price (a position entered before its symbol's first stored price bounds the build:
the build never values an open position without a price), and never before
``history_days`` calendar days before the data date (``FACTORFLOW_LOOKBACK_DAYS``, the
symbol history the system keeps). The first built session has no daily P&L, as a
portfolio's first snapshot.

**Stored rows**: rows since the history start are upserted, those the nightly already wrote
included: with the positions as stored now, as the nightly's own backfill of a hole values
them, so while the positions have not changed since, every such row is written again
unchanged; snapshots after the data date are left alone. A rerun (after ``done``, or after a
crash half way) upserts the same rows, so it leaves exactly the rows of a clean run.
Analytics (exposures, risk) are written for the data date only, as by the nightly: the
days before it get snapshots, the inputs of performance.

It holds the ``portfolio-refresh`` lock while it writes (one writer of snapshots at a time,
as ``factorflow snapshots recompute`` does), and waits (bounded) for the portfolio's symbols
still queued for onboarding, so their prices are there. A portfolio changed through the API
during a build is built again from the start (up to :data:`HISTORY_ATTEMPTS` times).

May import the portfolio steps, the symbol-data door, repositories, the run lock and the
history queue; no Prefect (``flows/portfolio_history.py`` is a thin flow over it).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal

from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.engine import flow_engine, reading, transaction
from core.db.errors import short_error
from core.errors import NotReady
from core.faults import fault_point
from core.portfolio.analytics import analyse_portfolio
from core.portfolio.valuation import Holding, InvestmentClass
from core.portfolio_rows import analytics_rows
from core.portfolio_steps import (
    REFRESH_LOCK,
    PortfolioWork,
    lock_refresh,
    refresh_chunk,
    unlock_refresh,
)
from core.repositories import portfolios as portfolio_repo
from core.repositories import symbols as symbol_repo
from core.run_lock import Heartbeat, this_process
from core.services import history_jobs, onboarding_queue
from core.settings import get_settings
from core.symbol_data import (
    build_scenarios,
    latest_data_date,
    load_symbol_data,
    priced_sessions,
)

log = logging.getLogger(__name__)

HISTORY_SLICE = 250
"""Sessions one slice values and writes (one ``refresh_chunk``, one transaction)."""
HISTORY_ATTEMPTS = 3
"""Builds of a portfolio that keeps changing through the API before the job fails."""
LOCK_WAIT_SECONDS = 900.0
"""How long a build waits for a running portfolio refresh (or recompute) to finish."""
ONBOARDING_WAIT_SECONDS = 600.0
"""How long a build waits for its portfolio's symbols still queued for onboarding; after
that it builds with the prices stored (those positions' sessions partial, as the nightly's)."""
ONBOARDING_POLL_SECONDS = 2.0


class HistoryBuildError(Exception):
    """A history build that could not complete (the job fails with this message)."""


@dataclass(frozen=True)
class HistoryOutcome:
    """What one build did: the first and last session valued (None: nothing to build) and
    the snapshot rows written (one per session)."""

    first_date: dt.date | None
    last_date: dt.date | None
    snapshots: int


def history_start(holdings: Iterable[Holding], first_prices: dict[str, dt.date | None],
                  earliest: dt.date) -> dt.date | None:
    """The first day a history build values.

    Parameters
    ----------
    holdings : iterable of Holding
        The portfolio's positions (entry dates are session dates; closed ones included).
    first_prices : dict
        Symbol → its first stored price date (None: none stored). PUBLIC and OPTIONS
        positions are looked up by their symbol; PRIVATE ones need no price.
    earliest : date
        The bound of the stored history (the data date minus ``history_days``).

    Returns
    -------
    date or None
        The earliest entry date (not before ``earliest``), moved to the first day from
        which on no position is ever open without a stored price of its symbol (open on
        ``d``: ``entry <= d < exit``; without a price: ``d <`` its first price); None
        without positions. A symbol with no stored price at all does not move it (the
        nightly values it as missing: a partial snapshot).

    Examples
    --------
    A entered 2025-01-02 (prices from 2020), B entered 2025-06-02 with prices from
    2026-01-05 only: the build starts on 2026-01-05, not on 2025-01-02.
    """
    items = list(holdings)
    if not items:
        return None
    lower = max(min(h.entry_date for h in items), earliest)
    start = lower
    for h in items:
        first = first_prices.get(h.symbol)
        if h.investment_class == InvestmentClass.PRIVATE or first is None:
            continue
        # open without a price on [entry, end): the build starts after that, if it reaches
        end = first if h.exit_date is None else min(first, h.exit_date)
        if h.entry_date < end and end > lower:
            start = max(start, end)
    return start


@dataclass(frozen=True)
class HistoryPlan:
    """One build: the portfolio, its cash now, the priced sessions to value."""

    portfolio_id: str
    cash: Decimal
    sessions: tuple[dt.date, ...]


async def plan_history(portfolio_id: str, engine: AsyncEngine | None = None) -> HistoryPlan:
    """The priced sessions from the portfolio's :func:`history_start` through the data date.

    Raises ``NotReady`` before any symbol batch completed, :class:`HistoryBuildError` for a
    deleted portfolio or one with an invalid position."""
    engine = engine or flow_engine()
    data_date = await latest_data_date(engine)
    if data_date is None:
        raise NotReady("no symbol batch has completed yet: the build waits in its queue")
    async with reading(engine) as conn:
        cash = await portfolio_repo.live_cash(conn, portfolio_id)
        if cash is None:
            raise HistoryBuildError(f"portfolio {portfolio_id!r} was deleted")
        holdings, invalid = await portfolio_repo.load_holdings(conn, [portfolio_id])
        if invalid:
            raise HistoryBuildError(invalid[portfolio_id])
        symbols = sorted({h.symbol for h in holdings[portfolio_id]
                          if h.investment_class != InvestmentClass.PRIVATE})
        first_prices = {s.symbol: s.first_price_date
                        for s in await symbol_repo.get_states(conn, symbols)}
    earliest = data_date - dt.timedelta(days=get_settings().history_days)
    start = history_start(holdings[portfolio_id], first_prices, earliest)
    sessions = [] if start is None or start > data_date else await priced_sessions(
        start, data_date, engine)
    return HistoryPlan(portfolio_id, cash, tuple(sessions))


class _Changed(Exception):
    """The portfolio changed through the API while a slice was valued."""


async def _snapshot_slice(plan: HistoryPlan, days: tuple[dt.date, ...],
                          prev_day: dt.date | None, prev_equity: Decimal | None,
                          engine: AsyncEngine) -> tuple[int, Decimal]:
    """Value and write the snapshots of one slice before the last (the snapshot part of
    :func:`refresh_chunk`: ``load_symbol_data``, ``analyse_portfolio``, ``analytics_rows``,
    written under the portfolio's lock); returns the rows written and the last equity."""
    pid = plan.portfolio_id
    async with reading(engine) as conn:
        seen = await portfolio_repo.portfolio_versions(conn, [pid])
        holdings, invalid = await portfolio_repo.load_holdings(conn, [pid])
    if invalid:
        raise HistoryBuildError(invalid[pid])
    symbols = sorted({h.symbol for h in holdings[pid]
                      if h.investment_class != InvestmentClass.PRIVATE})
    data = await load_symbol_data(symbols, days[0], days[-1], engine)
    try:
        result = analyse_portfolio(holdings[pid], plan.cash, days, data, None, prev_day,
                                   prev_equity, correlations=False)
    except Exception as exc:
        raise HistoryBuildError(f"sessions {days[0]} → {days[-1]}: "
                                f"{type(exc).__name__}: {exc}") from exc
    rows = analytics_rows(pid, result)["snapshots"]
    async with transaction(engine) as conn:
        now = await portfolio_repo.lock_portfolios(conn, [pid])
        if now.get(pid) != seen.get(pid) or now[pid].cash != plan.cash:
            raise _Changed
        await portfolio_repo.upsert_snapshots(conn, rows)
        await portfolio_repo.invalidate_cache(conn, [pid])
    return len(rows), result.snapshots[-1].equity


async def _build_once(plan: HistoryPlan, engine: AsyncEngine, slice_sessions: int) -> int:
    """Value and write ``plan``'s sessions slice by slice, each chained to the last
    snapshot of the one before: the slices before the last write their snapshots, the last
    one (ending at the data date) is the nightly refresh of that date (``refresh_chunk``:
    snapshots, position values, analytics, risk). Returns the snapshots written."""
    pid, written = plan.portfolio_id, 0
    prev_day: dt.date | None = None
    prev_equity: Decimal | None = None
    slices = [plan.sessions[i : i + slice_sessions]
              for i in range(0, len(plan.sessions), slice_sessions)]
    for n, days in enumerate(slices):
        if n < len(slices) - 1:
            count, prev_equity = await _snapshot_slice(plan, days, prev_day, prev_equity,
                                                       engine)
            written, prev_day = written + count, days[-1]
        else:
            report = await refresh_chunk(
                [PortfolioWork(pid, plan.cash, days, prev_day, prev_equity)], days[-1],
                await build_scenarios(days[-1], engine), None, engine)
            if pid in report.failed:
                raise HistoryBuildError(
                    f"sessions {days[0]} → {days[-1]}: {report.failed[pid]}")
            written += report.snapshots
        fault_point("portfolio-history:after-first-slice")  # a slice is committed, no later one
    return written


async def _wait_for_onboarding(portfolio_id: str, engine: AsyncEngine,
                               wait_seconds: float) -> None:
    """Return once none of the portfolio's symbols is queued for onboarding (or after
    ``wait_seconds``)."""
    deadline = time.monotonic() + wait_seconds
    while True:
        async with reading(engine) as conn:
            holdings, _ = await portfolio_repo.load_holdings(conn, [portfolio_id])
            symbols = sorted({h.symbol for h in holdings[portfolio_id]
                              if h.investment_class != InvestmentClass.PRIVATE})
            waiting = [s for s in symbols if await onboarding_queue.job_status(conn, s)
                       in onboarding_queue.WAITING]
        if not waiting or time.monotonic() >= deadline:
            if waiting:
                log.warning("history of %s: built while %s still wait for onboarding",
                            portfolio_id, ", ".join(waiting))
            return
        await asyncio.sleep(ONBOARDING_POLL_SECONDS)


async def build_history(
    portfolio_id: str, engine: AsyncEngine | None = None, *,
    slice_sessions: int = HISTORY_SLICE, lock_wait: float = LOCK_WAIT_SECONDS,
    onboarding_wait: float = ONBOARDING_WAIT_SECONDS,
) -> HistoryOutcome:
    """Build ``portfolio_id``'s snapshots from its history start through the data date (see
    the module's description), holding the ``portfolio-refresh`` lock.

    Raises ``NotReady`` (no data yet: the job stays queued), :class:`HistoryBuildError`,
    ``RefreshAlreadyRunning`` (a refresh held the lock past ``lock_wait``) or a storage
    error."""
    engine = engine or flow_engine()
    await _wait_for_onboarding(portfolio_id, engine, onboarding_wait)
    holder = f"portfolio-history-{uuid.uuid4()}"
    await lock_refresh(this_process(holder), lock_wait, engine=engine)
    try:
        with Heartbeat(REFRESH_LOCK, holder, engine=engine):
            for _ in range(HISTORY_ATTEMPTS):
                async with reading(engine) as conn:
                    seen = await portfolio_repo.portfolio_versions(conn, [portfolio_id])
                plan = await plan_history(portfolio_id, engine)
                try:
                    written = await _build_once(plan, engine, slice_sessions)
                except _Changed:
                    written = -1
                async with reading(engine) as conn:
                    now = await portfolio_repo.portfolio_versions(conn, [portfolio_id])
                if now == seen and written >= 0:
                    return HistoryOutcome(plan.sessions[0] if plan.sessions else None,
                                          plan.sessions[-1] if plan.sessions else None,
                                          written)
                log.info("history of %s: the portfolio changed during the build; again",
                         portfolio_id)
    finally:
        await unlock_refresh(holder, engine)
    raise HistoryBuildError(f"the portfolio changed during {HISTORY_ATTEMPTS} builds; "
                            "request the history again")


async def run_job(claimed: history_jobs.HistoryClaim, engine: AsyncEngine | None = None, *,
                  slice_sessions: int = HISTORY_SLICE, lock_wait: float = LOCK_WAIT_SECONDS,
                  onboarding_wait: float = ONBOARDING_WAIT_SECONDS) -> HistoryOutcome | None:
    """Build a claimed job's history and close the job: ``done`` with what was built, or
    ``failed`` with the reason (then None is returned). ``NotReady`` gives the job back to
    the queue and is raised (the run stops: nothing can be built yet). When even closing the
    job fails (the database is gone) that error is raised and the job stays ``running``
    until :func:`history_jobs.reset_stuck` queues it again."""
    try:
        outcome = await build_history(claimed.portfolio_id, engine,
                                      slice_sessions=slice_sessions, lock_wait=lock_wait,
                                      onboarding_wait=onboarding_wait)
    except NotReady:
        await history_jobs.release(claimed.job_id, engine)
        raise
    except Exception as exc:  # the job fails with its reason; the next job goes on
        error = (str(exc) if isinstance(exc, HistoryBuildError)
                 else f"{type(exc).__name__}: {short_error(exc)}")
        log.warning("history of %s failed: %s", claimed.portfolio_id, error)
        await history_jobs.finish(claimed.job_id, error=error, engine=engine)
        return None
    await history_jobs.finish(claimed.job_id, first_date=outcome.first_date,
                              last_date=outcome.last_date, snapshots=outcome.snapshots,
                              engine=engine)
    return outcome
