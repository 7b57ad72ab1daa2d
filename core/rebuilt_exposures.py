"""A portfolio's dollar factor exposures at past closes that have no nightly risk row.

The factor P&L attribution (``/attribution``) multiplies each day's factor returns by the
portfolio's dollar exposures at the previous close, which the nightly risk row of that close
holds. A close without one — the days a history build (``POST /v1/portfolios/{id}/history``)
wrote, which get snapshots only, or a night whose risk step skipped the portfolio — would
leave the next day unattributed. This module rebuilds such exposures: the portfolio's
positions as stored now are valued at each of those closes by the nightly's own valuation
(``analyse_portfolio``), each close's book (:func:`core.portfolio_rows.snapshot_risk_book`)
goes through the risk model's own exposure code (``risk_figures``), and the model is the one
of ``model_day`` (the data date) for every close: one fit, not one per day. So a rebuilt
exposure is what the nightly row would hold had it been written with today's betas; the
answer says which days' exposures were rebuilt.

May import the symbol-data door, the portfolio math and repositories; no Prefect, no HTTP.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncEngine

from core.cpu import run_cpu
from core.db.engine import reading
from core.portfolio.analytics import analyse_portfolio
from core.portfolio.risk import RiskData, risk_figures
from core.portfolio.valuation import Holding, InvestmentClass
from core.portfolio_rows import snapshot_risk_book
from core.repositories import portfolios as portfolio_repo
from core.symbol_data import SymbolData, load_risk_data, load_symbol_data


def exposure_records(holdings: Sequence[Holding], closes: Sequence[dt.date],
                     data: SymbolData, model: RiskData) -> dict[dt.date, dict[str, Any]]:
    """The compact risk records (``core.portfolio.risk.FORMAT``) of one portfolio's books
    at ``closes`` under one risk model.

    Parameters
    ----------
    holdings : sequence of Holding
        The portfolio's positions (those not open at a close are ignored there).
    closes : sequence of date
        Sessions, ascending, all within ``data``'s prices.
    data : SymbolData
        Prices, splits and dividends of the holdings' symbols over ``closes``.
    model : RiskData
        The risk model's symbol data (betas in ``model.RISK_FACTORS`` order).

    Returns
    -------
    dict of date to dict
        Per close, the record ``risk_figures`` makes of that close's book; its
        ``factor_exposure`` is the dollar exposure per factor (money, signed), over the
        positions the model covers.
    """
    if not closes:
        return {}
    result = analyse_portfolio(holdings, Decimal(0), list(closes), data, None,
                               correlations=False)  # cash is no factor exposure
    books = [snapshot_risk_book(holdings, snap, data.splits) for snap in result.snapshots]
    return {snap.day: record for snap, record in zip(
        result.snapshots, risk_figures(books, model), strict=True)}


async def rebuilt_exposures(portfolio_id: str, closes: Sequence[dt.date], model_day: dt.date,
                            engine: AsyncEngine) -> dict[dt.date, dict[str, Any]]:
    """The risk records of a portfolio's books at ``closes`` (ascending sessions), with the
    risk model of ``model_day``: see :func:`exposure_records`. Empty when there is nothing
    to rebuild or a position is invalid (those days then stay unattributed)."""
    if not closes:
        return {}
    async with reading(engine) as conn:
        holdings, invalid = await portfolio_repo.load_holdings(conn, [portfolio_id])
    mine = holdings.get(portfolio_id, [])
    if invalid or not mine:
        return {}
    symbols = sorted({h.symbol for h in mine if h.investment_class != InvestmentClass.PRIVATE})
    data = await load_symbol_data(symbols, closes[0], closes[-1], engine)
    model = await load_risk_data(symbols, model_day, engine, cached=True)
    return await run_cpu(exposure_records, mine, closes, data, model)
