"""The portfolio refresh as plain async steps (no Prefect): readiness, planning, and the
refresh of one chunk of portfolios.

The portfolio layer only *reads* the symbol layer, and only through :mod:`core.symbol_data`
(the data a chunk needs, the scenarios, the priced sessions, whether the symbol batch
completed). May import that door, the portfolio math and repositories, the run lock and
:mod:`core.cpu`; no service and no Prefect.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from core import calendar, run_lock
from core.cpu import collector_paused
from core.db.engine import flow_engine, reading, transaction
from core.db.models import RunStatus
from core.faults import fault_point
from core.portfolio.analytics import ScenarioSet, SymbolData, analyse_portfolios
from core.portfolio.risk import RiskBook, RiskData, risk_figures
from core.portfolio.valuation import InvestmentClass
from core.portfolio_rows import analytics_rows, positions_hash, risk_book, risk_row
from core.repositories import batch_runs
from core.repositories import portfolios as portfolio_repo
from core.symbol_data import (
    CALENDAR_SYMBOL,
    load_risk_data,
    load_symbol_data,
    priced_sessions,
    symbol_batch_completed,
)


class PortfolioRefreshError(Exception):
    """Base of the portfolio refresh's named errors."""


class SymbolBatchNotReady(PortfolioRefreshError):
    """The symbol batch for the requested date has not completed."""


class RefreshAlreadyRunning(PortfolioRefreshError):
    """Another live portfolio refresh held the lock longer than this run would wait."""


REFRESH_LOCK = "portfolio-refresh"
"""One portfolio refresh at a time per database, whatever its date: two runs planned at
once would each miss what the other writes (lost sessions, the present moved back)."""


async def lock_refresh(
    owner: run_lock.LockOwner,
    wait_seconds: float,
    holder_gone: Callable[[run_lock.LockState], bool] | None = None,
    engine: AsyncEngine | None = None,
) -> run_lock.LockState:
    """Take the portfolio-refresh lock, waiting up to ``wait_seconds`` for a live holder to
    finish (a dead holder's lock is taken over at once); else ``RefreshAlreadyRunning``."""
    wait = max(0.0, wait_seconds)
    try:
        return await run_lock.acquire_waiting(REFRESH_LOCK, owner, wait,
                                              holder_gone=holder_gone, engine=engine)
    except run_lock.LockHeld as exc:
        raise RefreshAlreadyRunning(
            f"another portfolio refresh is running ({exc}); waited {wait:.0f} s, this run "
            "stops without writing. Run it again once that one has finished (or give it a "
            "longer --lock-wait)") from None


async def unlock_refresh(holder: str, engine: AsyncEngine | None = None) -> None:
    """Release the portfolio-refresh lock if ``holder`` holds it."""
    await run_lock.release(REFRESH_LOCK, holder, engine)


async def record_refused_run(
    job_type: str, as_of: dt.date, flow_run_id: str | None, error: str,
    engine: AsyncEngine | None = None,
) -> str:
    """Log a run that stopped before it took the lock as ``failed``, in one transaction
    (never seen ``running``, so never taken for a crashed run)."""
    async with transaction(engine or flow_engine()) as conn:
        run_id = await batch_runs.start_run(conn, job_type, as_of, None, flow_run_id)
        await batch_runs.finish_run(conn, run_id, RunStatus.failed, {}, {}, {"error": error})
    return run_id


async def wait_for_symbol_batch(
    as_of: dt.date, wait_seconds: float = 0, poll_seconds: float = 10,
    engine: AsyncEngine | None = None,
) -> None:
    """Return once the symbol batch for ``as_of`` completed; raise after ``wait_seconds``."""
    deadline = time.monotonic() + wait_seconds
    while True:
        if await symbol_batch_completed(as_of, engine):
            return
        if time.monotonic() >= deadline:
            raise SymbolBatchNotReady(
                f"the symbol batch for {as_of} has not completed"
                + (f" (waited {wait_seconds:.0f} s)" if wait_seconds else "")
                + f"; run `factorflow symbol-batch --as-of {as_of}` first"
            )
        await asyncio.sleep(min(poll_seconds, max(0.0, deadline - time.monotonic())))


@dataclass(frozen=True)
class PortfolioWork:
    """One portfolio to refresh: the sessions to snapshot and the snapshot before them."""

    id: str
    cash: Decimal
    days: tuple[dt.date, ...]
    previous_day: dt.date | None
    previous_equity: Decimal | None


@dataclass
class RefreshPlan:
    """The portfolios to refresh, and how many need nothing.

    ``up_to_date``: no priced session is missing since the portfolio's first snapshot (in the
    backfill window) through ``as_of``. ``newer``: every snapshot of the portfolio lies after
    ``as_of`` (a refresh for an earlier date gives it no older one).
    """

    work: list[PortfolioWork]
    up_to_date: int
    newer: int = 0
    truncated: dict[str, str] = field(default_factory=dict)


async def plan_refresh(
    as_of: dt.date, max_backfill_sessions: int, engine: AsyncEngine | None = None,
    portfolio_ids: Sequence[str] | None = None,
) -> RefreshPlan:
    """Each active portfolio's sessions to (re)compute through ``as_of``.

    The window is the last ``max_backfill_sessions`` sessions ending at ``as_of``; only
    sessions with prices count. In it, a *hole* is a priced session since the portfolio's
    first snapshot without a snapshot, or whose snapshot has no daily P&L although an
    earlier one exists (the P&L chain was cut). A portfolio is recomputed from its first
    hole through ``as_of``, after the snapshot before that hole, so every daily P&L is taken
    against the previous session again. A portfolio without snapshots starts at ``as_of``;
    one whose snapshots all lie after ``as_of`` is left alone (``newer``). Sessions before
    the window are not backfilled (reported in ``truncated``).
    """
    engine = engine or flow_engine()
    window_start = calendar.sessions_back(as_of, max_backfill_sessions - 1)
    priced = await priced_sessions(window_start, as_of, engine)
    if as_of not in priced:
        raise PortfolioRefreshError(f"no {CALENDAR_SYMBOL} price stored for {as_of}")
    async with reading(engine) as conn:
        states = await portfolio_repo.active_portfolios(
            conn, window_start, as_of, portfolio_ids)
        plan = RefreshPlan(work=[], up_to_date=0)
        pending: list[tuple[portfolio_repo.PortfolioState, list[dt.date], dt.date | None]] = []
        for st in states:
            first = st.first_snapshot_date
            if first is None:
                pending.append((st, [as_of], None))
                continue
            if first > as_of:
                plan.newer += 1
                continue
            holes = [d for d in priced if d >= first and (
                d not in st.window_snapshots or d in st.broken_chain)]
            if not holes:
                plan.up_to_date += 1
                continue
            days = [d for d in priced if d >= holes[0]]
            earlier = [d for d in st.window_snapshots if d < days[0]]
            previous = max(earlier) if earlier else st.last_before_window
            if previous is not None and not earlier and days[0] == priced[0]:
                skipped = calendar.session_count_between(previous, days[0]) - 1
                if skipped > 0:
                    plan.truncated[st.id] = (
                        f"{skipped} session(s) after {previous} not backfilled "
                        f"(more than {max_backfill_sessions} before {as_of})")
            pending.append((st, days, previous))
        equities = await portfolio_repo.snapshot_equities(
            conn, [(st.id, prev) for st, _, prev in pending if prev is not None])
    for st, days, prev in pending:
        plan.work.append(PortfolioWork(
            st.id, st.cash, tuple(days), prev,
            equities.get((st.id, prev)) if prev is not None else None))
    return plan


@dataclass(frozen=True)
class RiskFigures:
    """What the run's summary shows of one portfolio's stored risk: the parametric 99 %
    1-session VaR as a fraction of equity (None without one) and the model's coverage (the
    share of gross exposure with a risk model, None without positions)."""

    var_99_1d_pct: float | None
    covered_share: float | None


_risk_data: dict[tuple[int, str, dt.date],
                 tuple[weakref.ref[SymbolData], Future[RiskData]]] = {}
_risk_data_lock = threading.Lock()


async def _risk_data_for(data: SymbolData, day: dt.date, engine: AsyncEngine) -> RiskData:
    """The risk model's data of ``data``'s symbols at ``day``, loaded once per ``data``
    object (a run shares one ``data`` across its chunks, as it shares the symbol data):
    chunks running at once in other threads await the first one's load; only the latest
    object's is kept."""
    key = (id(data), str(engine.url), day)
    with _risk_data_lock:
        hit = _risk_data.get(key)
        loads = hit is None or hit[0]() is not data
        if loads:
            _risk_data.clear()
            _risk_data[key] = (weakref.ref(data), Future())
        future = _risk_data[key][1]
    if loads:
        try:
            future.set_result(await load_risk_data(data.symbols, day, engine,
                                                   store_blocks=True))
        except BaseException as exc:
            with _risk_data_lock:
                _risk_data.pop(key, None)
            future.set_exception(exc)
            raise
    return await asyncio.wrap_future(future)


@dataclass
class RefreshReport:
    """What one chunk did."""

    portfolios: int
    refreshed: int = 0
    snapshots: int = 0
    partial: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    load_seconds: float = 0.0
    compute_seconds: float = 0.0
    write_seconds: float = 0.0
    risk: dict[str, RiskFigures] = field(default_factory=dict)
    """The risk figures of every portfolio whose risk row was written, by portfolio id."""

    def merge(self, other: RefreshReport) -> None:
        """Add the counts of a second pass over some of the same portfolios."""
        self.refreshed += other.refreshed
        self.snapshots += other.snapshots
        self.partial += other.partial
        self.failed.update(other.failed)
        self.risk.update(other.risk)
        self.load_seconds += other.load_seconds
        self.compute_seconds += other.compute_seconds
        self.write_seconds += other.write_seconds


async def portfolio_symbols(engine: AsyncEngine | None = None) -> list[str]:
    """Symbols held (PUBLIC/OPTIONS) by portfolios that are not deleted."""
    async with reading(engine or flow_engine()) as conn:
        return await portfolio_repo.held_symbols(conn)


async def refresh_chunk(
    work: Sequence[PortfolioWork], as_of: dt.date, scenarios: ScenarioSet,
    data: SymbolData | None = None, engine: AsyncEngine | None = None, *, _attempt: int = 1,
) -> RefreshReport:
    """Snapshots, position values, factor/sector aggregation, correlations, stress tests and
    the risk answer at ``as_of`` for a chunk of portfolios, written in one transaction. A
    failing portfolio is reported and skipped; the others are stored. ``data`` (symbol data
    shared by every chunk of a run) is loaded for the chunk's symbols when not given; the
    risk model's data is loaded once per ``data`` (:func:`_risk_data_for`).

    The write locks the chunk's portfolio rows first (the lock order of every portfolio
    write, see ``portfolio_repo.portfolio_versions``); a portfolio changed through the API
    after it was read is not written from its outdated analysis but analysed again.

    The cyclic garbage collector is paused meanwhile (``cpu.collector_paused``): the chunk's
    ~100,000 rows form no cycles and are freed by reference counting once written, while
    each collection they would trigger walks them all (~18 % of the analysis' time)."""
    with collector_paused():
        return await _refresh_chunk(work, as_of, scenarios, data, engine, _attempt=_attempt)


async def _refresh_chunk(
    work: Sequence[PortfolioWork], as_of: dt.date, scenarios: ScenarioSet,
    data: SymbolData | None, engine: AsyncEngine | None, *, _attempt: int,
) -> RefreshReport:
    engine = engine or flow_engine()
    report = RefreshReport(portfolios=len(work))
    t0 = time.perf_counter()
    ids = [w.id for w in work]
    async with reading(engine) as conn:
        # versions before positions: a change committed in between shows as a new version
        seen = await portfolio_repo.portfolio_versions(conn, ids)
        holdings, invalid = await portfolio_repo.load_holdings(conn, ids)
    report.failed.update(invalid)
    symbols = {h.symbol for hs in holdings.values() for h in hs
               if h.investment_class != InvestmentClass.PRIVATE}
    first_day = min(d for w in work for d in w.days)
    if data is None or not symbols <= set(data.symbols) or first_day not in data.sessions:
        data = await load_symbol_data(sorted(symbols), first_day, as_of, engine)
    risk_data = await _risk_data_for(data, as_of, engine)
    report.load_seconds = time.perf_counter() - t0

    t1 = time.perf_counter()
    tables, done = _analyse_chunk(work, invalid, holdings, as_of, scenarios, data, risk_data,
                                  report)
    report.compute_seconds = time.perf_counter() - t1

    t2 = time.perf_counter()
    async with transaction(engine) as conn:
        now = await portfolio_repo.lock_portfolios(conn, [pid for pid, _ in done])
        moved = {w.id for w in work if (w.id, w.days[-1]) in done and (
            w.id not in now or now[w.id] != seen.get(w.id) or now[w.id].cash != w.cash)}
        if moved:
            _leave_out(moved, holdings, tables, done, report)
        await portfolio_repo.upsert_snapshots(conn, tables["snapshots"])
        await portfolio_repo.upsert_factor_exposures(conn, tables["factors"])
        await portfolio_repo.replace_for_dates(
            conn, "portfolio_sector_exposures", done, tables["sectors"],
            key=["portfolio_id", "date", "sector"])
        await portfolio_repo.upsert_correlations(conn, tables["correlations"])
        await portfolio_repo.replace_for_dates(
            conn, "stress_test_results", done, tables["stress"],
            key=["portfolio_id", "date", "scenario"])
        await portfolio_repo.update_position_values(conn, tables["positions"])
        await portfolio_repo.upsert_risk(conn, tables["risk"])
        await portfolio_repo.invalidate_cache(conn, [pid for pid, _ in done])
    report.write_seconds = time.perf_counter() - t2
    report.risk = {r["portfolio_id"]: _figures(r) for r in tables["risk"]}
    fault_point("portfolio-refresh:after-first-chunk")  # a chunk is committed, no later one
    again = [replace(w, cash=now[w.id].cash) for w in work
             if w.id in moved and w.id in now and not now[w.id].deleted]
    if again and _attempt < REFRESH_ATTEMPTS:
        report.merge(await _refresh_chunk(again, as_of, scenarios, data, engine,
                                          _attempt=_attempt + 1))
    elif again:
        report.failed.update({w.id: f"changed during {_attempt} analyses" for w in again})
    return report


def _analyse_chunk(
    work: Sequence[PortfolioWork], invalid: dict[str, str], holdings: dict[str, list[Any]],
    as_of: dt.date, scenarios: ScenarioSet, data: SymbolData, risk_data: RiskData,
    report: RefreshReport,
) -> tuple[dict[str, list[dict[str, Any]]], list[tuple[str, dt.date]]]:
    """The table rows of a chunk's valid portfolios (keyed by table, risk rows included) and
    the (portfolio, last day) pairs they cover; pure (no I/O). A portfolio whose analysis or
    risk fails goes to ``report.failed``; the others are counted in ``report``."""
    tables: dict[str, list[dict[str, Any]]] = {
        "snapshots": [], "factors": [], "sectors": [], "correlations": [], "stress": [],
        "positions": [], "risk": []}
    done: list[tuple[str, dt.date]] = []
    books: dict[str, RiskBook] = {}
    todo = [w for w in work if w.id not in invalid]
    results = analyse_portfolios(
        [(holdings[w.id], w.cash, w.days, w.previous_day, w.previous_equity) for w in todo],
        data, scenarios)
    for w, result in zip(todo, results, strict=True):
        try:
            if isinstance(result, Exception):
                raise result
            rows = analytics_rows(w.id, result)
            if w.days[-1] == as_of:
                books[w.id] = risk_book(holdings[w.id], result, data.splits)
        except Exception as exc:  # one portfolio never stops the others
            report.failed[w.id] = f"{type(exc).__name__}: {exc}"
            continue
        for k, v in rows.items():
            tables[k].extend(v)
        done.append((w.id, w.days[-1]))
        report.refreshed += 1
        report.snapshots += len(result.snapshots)
        report.partial += sum(1 for s in result.snapshots if s.partial)
    records, risk_failed = _risk_records(books, risk_data)
    if risk_failed:
        _leave_out(set(risk_failed), holdings, tables, done, report)
        report.failed.update(risk_failed)
    cash = {w.id: w.cash for w in work}
    tables["risk"] = [risk_row(pid, as_of, positions_hash(holdings[pid], cash[pid]), record)
                      for pid, record in records.items()]
    return tables, done


def _risk_records(books: dict[str, RiskBook], data: RiskData
                  ) -> tuple[dict[str, dict[str, Any]], dict[str, str]]:
    """The risk records of a chunk's books in one pass (``risk_figures``), and the books
    that failed: if the pass fails, each book is computed alone so that one bad book never
    costs the others their risk."""
    try:
        return dict(zip(books, risk_figures(list(books.values()), data), strict=True)), {}
    except Exception:  # find the culprit(s) below
        pass
    records: dict[str, dict[str, Any]] = {}
    failed: dict[str, str] = {}
    for pid, book in books.items():
        try:
            records[pid] = risk_figures([book], data)[0]
        except Exception as exc:
            failed[pid] = f"risk: {type(exc).__name__}: {exc}"
    return records, failed


def _figures(row: dict[str, Any]) -> RiskFigures:
    equity, var = row["payload"]["equity"], row["var_99_1d"]
    pct = var / equity if var is not None and equity is not None and equity > 0 else None
    return RiskFigures(pct, row["payload"]["model"]["covered_share"])


REFRESH_ATTEMPTS = 3
"""Analyses of a portfolio that keeps changing through the API during one refresh chunk."""


def _leave_out(moved: set[str], holdings: dict[str, list[Any]],
               tables: dict[str, list[dict[str, Any]]], done: list[tuple[str, dt.date]],
               report: RefreshReport) -> None:
    """Drop the rows of the ``moved`` portfolios from a chunk's write and its counts."""
    positions = {h.position_id for pid in moved for h in holdings.get(pid, ())}
    snaps = [r for r in tables["snapshots"] if r["portfolio_id"] in moved]
    report.refreshed -= len(moved)
    report.snapshots -= len(snaps)
    report.partial -= sum(1 for r in snaps if r["partial"])
    for k, rows in tables.items():
        tables[k] = [r for r in rows if (r["id"] not in positions if k == "positions"
                                          else r["portfolio_id"] not in moved)]
    done[:] = [d for d in done if d[0] not in moved]
