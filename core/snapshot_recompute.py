"""``factorflow snapshots recompute``: stored snapshots valued again with the current valuation
(since issue 15, daily P&L = price P&L + dividend income), through the nightly refresh's own
steps, under the portfolio-refresh lock. Migration 0008 only adds the ``price_pnl`` and
``income`` columns (a migration cannot run the valuation); this brings the stored history onto
the new definition, and any later change of the valuation's definitions the same way.

May import the portfolio steps, the symbol-data door, the portfolio repositories and the run
lock; no service, Prefect or CLI code (the CLI is a thin wrapper over it).
"""

from __future__ import annotations

import datetime as dt
import uuid
from typing import Any

from core.db.engine import reading, transaction
from core.portfolio.analytics import analyse_portfolio
from core.portfolio.valuation import InvestmentClass
from core.portfolio_rows import analytics_rows
from core.portfolio_steps import REFRESH_LOCK, lock_refresh, unlock_refresh
from core.repositories import portfolios as portfolio_repo
from core.run_lock import Heartbeat, this_process
from core.symbol_data import load_symbol_data


class SnapshotRecomputeError(ValueError):
    """A ``snapshots recompute`` argument that names nothing to recompute."""


RECOMPUTE_CHUNK = 500
"""Portfolios one recompute step reads, values and writes (in one transaction)."""
_COMPARED = ("equity", "market_value", "cash", "cost_basis", "unrealized_pnl", "daily_pnl",
             "daily_return", "long_exposure", "short_exposure", "gross_exposure",
             "net_exposure", "position_count", "partial", "missing_symbols", "price_pnl",
             "income")


async def recompute_chunk(ids: list[str], start: dt.date | None, end: dt.date | None
                           ) -> tuple[dict[str, tuple[int, int]], dict[str, str]]:
    """Recompute the stored snapshots of the portfolios ``ids`` dated in ``[start, end]``;
    write the rows that differ. Returns portfolio → (rows changed, rows recomputed) and the
    portfolios left alone with the reason.

    Each stored row is valued again as the nightly refresh values it (``load_symbol_data``,
    ``analyse_portfolio``, ``analytics_rows``) with the cash *stored in that row* (the
    refresh writes today's cash; history keeps its own), against the stored snapshot before
    it (the first row before ``start`` keeps its stored equity). Nothing else is written:
    missing sessions stay missing (the refresh fills them)."""
    async with reading() as conn:
        seen = await portfolio_repo.portfolio_versions(conn, ids)
        holdings, skipped = await portfolio_repo.load_holdings(conn, ids)
        stored: dict[str, list[Any]] = {}
        for r in await portfolio_repo.stored_snapshots(conn, ids, end):
            stored.setdefault(r.portfolio_id, []).append(r)
    plans: dict[str, tuple[Any, list[Any]]] = {}  # pid → (row before, rows to recompute)
    for pid, rows in stored.items():
        todo = [r for r in rows if start is None or r.date >= start]
        before = [r for r in rows if start is not None and r.date < start]
        if todo and pid not in skipped:
            plans[pid] = (before[-1] if before else None, todo)
    if not plans:
        return {}, skipped
    symbols = sorted({h.symbol for pid in plans for h in holdings[pid]
                      if h.investment_class != InvestmentClass.PRIVATE})
    first = min(before.date if before else todo[0].date for before, todo in plans.values())
    last = max(todo[-1].date for _, todo in plans.values())
    data = await load_symbol_data(symbols, first, last)
    new_rows: dict[str, list[dict[str, Any]]] = {}
    counts: dict[str, tuple[int, int]] = {}
    for pid, (before, todo) in plans.items():
        prev_day, prev_equity = (before.date, before.equity) if before else (None, None)
        runs: list[list[Any]] = []  # consecutive rows of one stored cash balance
        for r in todo:
            if runs and runs[-1][-1].cash == r.cash:
                runs[-1].append(r)
            else:
                runs.append([r])
        try:
            fresh: list[dict[str, Any]] = []
            for run in runs:
                result = analyse_portfolio(holdings[pid], run[0].cash, [r.date for r in run],
                                           data, None, prev_day, prev_equity,
                                           correlations=False)
                fresh.extend(analytics_rows(pid, result)["snapshots"])
                prev_day, prev_equity = run[-1].date, result.snapshots[-1].equity
        except Exception as exc:  # one portfolio never stops the others
            skipped[pid] = f"{type(exc).__name__}: {exc}"
            continue
        changed = [row for row, old in zip(fresh, todo, strict=True)
                   if any(row[k] != getattr(old, k) for k in _COMPARED)]
        counts[pid] = (len(changed), len(todo))
        if changed:
            new_rows[pid] = changed
    async with transaction() as conn:
        now = await portfolio_repo.lock_portfolios(conn, list(new_rows))
        for pid in [p for p in new_rows if now.get(p) != seen.get(p)]:
            skipped[pid] = "changed while it was recomputed; run the command again"
            del new_rows[pid]
            counts.pop(pid)
        await portfolio_repo.upsert_snapshots(conn, [r for rs in new_rows.values() for r in rs])
        await portfolio_repo.invalidate_cache(conn, list(new_rows))
    return counts, skipped


async def recompute_snapshots(portfolio_id: str | None, start: dt.date | None,
                              end: dt.date | None, lock_wait: float) -> dict[str, Any]:
    """``factorflow snapshots recompute``: every stored snapshot of the live portfolios (or
    of ``portfolio_id``) dated in ``[start, end]`` recomputed with the current valuation
    (daily P&L = price P&L + dividend income), holding the ``portfolio-refresh`` lock so
    that it never runs with a refresh. Idempotent: a second run changes nothing. Raises
    :class:`SnapshotRecomputeError` for an unknown or deleted portfolio or ``end <
    start``, ``RefreshAlreadyRunning`` when a refresh holds the lock past ``lock_wait``."""
    if start is not None and end is not None and end < start:
        raise SnapshotRecomputeError(f"--end {end} is before --start {start}")
    async with reading() as conn:
        ids = sorted(await portfolio_repo.live_portfolio_ids(conn))
    if portfolio_id is not None:
        if portfolio_id not in ids:
            raise SnapshotRecomputeError(
                f"--portfolio {portfolio_id!r}: no such portfolio (or it was deleted)")
        ids = [portfolio_id]
    holder = f"snapshots-recompute-{uuid.uuid4()}"
    await lock_refresh(this_process(holder), lock_wait)
    counts: dict[str, tuple[int, int]] = {}
    skipped: dict[str, str] = {}
    try:
        with Heartbeat(REFRESH_LOCK, holder):
            for i in range(0, len(ids), RECOMPUTE_CHUNK):
                c, s = await recompute_chunk(ids[i : i + RECOMPUTE_CHUNK], start, end)
                counts.update(c)
                skipped.update(s)
    finally:
        await unlock_refresh(holder)
    return {"start": start, "end": end, "portfolios": len(counts),
            "snapshots": sum(n for _, n in counts.values()),
            "changed": sum(c for c, _ in counts.values()),
            "changed_by_portfolio": {p: c for p, (c, _) in sorted(counts.items()) if c},
            "skipped": dict(sorted(skipped.items()))}
