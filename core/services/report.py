"""A portfolio's report page: the answers of the API gathered and rendered as one HTML page.

:func:`portfolio_report` reads what ``GET /v1/portfolios/{id}/report`` and ``factorflow
report`` show — performance and attribution over the window (:mod:`core.services.performance`),
the overview, factor exposures, risk and stress answers (:mod:`core.services.analytics`,
cached like every answer), the daily series behind the charts (the stored snapshots, the
benchmark's adjusted closes, the nightly risk rows) — and renders it off the event loop
(:func:`core.report.html.render_report`, matplotlib: about a second).

The caller checks the portfolio's owner (the API) or is the operator (the CLI).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncEngine

from core.cpu import run_cpu
from core.db.engine import flow_engine, reading
from core.errors import NotFound
from core.performance.metrics import time_weighted_returns
from core.report.html import ReportInput, ReportSeries, render_report
from core.repositories import portfolios as portfolio_repo
from core.services import analytics, performance
from core.symbol_data import adjusted_closes

DEFAULT_WINDOW = "1Y"


def report_series(rows: Sequence[Any], sessions: Sequence[dt.date], closes: np.ndarray,
                  exante: dict[dt.date, float]) -> ReportSeries:
    """The charts' daily series from a portfolio's snapshot rows.

    Parameters
    ----------
    rows : sequence of (date, equity, daily_pnl)
        Snapshots oldest first; the first may be the one before the window (the equity its
        first return is measured from).
    sessions, closes : the benchmark's adjusted closes on consecutive sessions (NaN: none).
    exante : date → the model's annualised ex-ante volatility stored that night.

    Returns
    -------
    ReportSeries
        One point per snapshot: the time-weighted return ``daily_pnl / previous equity``
        (NaN on the first, the base every curve starts from), the benchmark's simple return
        between the same two snapshots' dates (NaN without both closes), the stored ex-ante
        volatility.
    """
    if len(rows) < 2:
        dates = [r[0] for r in rows]
        nan = np.full(len(dates), np.nan)
        return ReportSeries(dates, nan, nan.copy(),
                            np.array([exante.get(d, np.nan) for d in dates]))
    dates = [r[0] for r in rows[1:]]
    pnl = np.array([np.nan if r[2] is None else float(r[2]) for r in rows[1:]])
    prev = np.array([np.nan if r[1] is None else float(r[1]) for r in rows[:-1]])
    returns = time_weighted_returns(pnl[:, None], prev[:, None])[:, 0]
    close = {d: float(c) for d, c in zip(sessions, closes, strict=True)}
    before = [r[0] for r in rows[:-1]]
    with np.errstate(invalid="ignore", divide="ignore"):
        bench = np.array([close.get(d, np.nan) / close.get(b, np.nan) - 1.0
                          for d, b in zip(dates, before, strict=True)])
    everyday = [rows[0][0], *dates]
    return ReportSeries(everyday, np.concatenate([[np.nan], returns]),
                        np.concatenate([[np.nan], bench]),
                        np.array([exante.get(d, np.nan) for d in everyday], dtype=np.float64))


async def portfolio_report(portfolio_id: str, *, window: str = DEFAULT_WINDOW,
                           benchmark: str = performance.DEFAULT_BENCHMARK,
                           engine: AsyncEngine | None = None) -> str:
    """The report page of a portfolio (HTML text).

    Parameters
    ----------
    portfolio_id : str
        A live portfolio (the caller checked its owner).
    window : str
        The performance window (``1M``, ``3M``, ``YTD``, ``1Y``, ``ITD``).
    benchmark : str
        The benchmark symbol of the performance figures and the equity chart.

    Raises
    ------
    InvalidInput
        Naming ``window`` or ``benchmark`` (:func:`core.services.performance.performance_query`).
    NotFound
        When the portfolio does not exist.
    """
    engine = engine or flow_engine()
    query = performance.performance_query(window=window, benchmark=benchmark)
    async with reading(engine) as conn:
        name = await portfolio_repo.live_portfolio_name(conn, portfolio_id)
    if name is None:
        raise NotFound(f"portfolio {portfolio_id} not found", field="portfolio_id")
    perf = await performance.portfolio_performance(portfolio_id, query, engine)
    start, end = dt.date.fromisoformat(perf["start"]), dt.date.fromisoformat(perf["end"])
    answers = {kind: await analytics.portfolio_analytics(portfolio_id, kind, engine)
               for kind in ("overview", "factor-exposures", "risk", "stress-tests")}
    attribution = await performance.portfolio_attribution(portfolio_id, start, end, engine)
    history = await analytics.risk_history(portfolio_id, start=start, end=end, limit=100_000,
                                           engine=engine)
    async with reading(engine) as conn:
        rows = await portfolio_repo.snapshot_series(conn, portfolio_id, start, end)
    sessions: list[dt.date] = []
    closes = np.zeros(0)
    if rows:
        sessions, matrix = await adjusted_closes([query.benchmark], rows[0][0], rows[-1][0],
                                                 engine)
        closes = matrix[:, 0]
    exante = {dt.date.fromisoformat(i["date"]): i["volatility"]["annual"]
              for i in history["items"] if i["volatility"]["annual"] is not None}
    series = report_series(rows, sessions, closes, exante)
    page = ReportInput(
        portfolio_id, name, query.benchmark, answers["overview"]["data_as_of"], series,
        answers["overview"], perf, attribution, answers["risk"], answers["factor-exposures"],
        answers["stress-tests"])
    return await run_cpu(render_report, page)
