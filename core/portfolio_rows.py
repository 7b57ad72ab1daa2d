"""The table rows of one portfolio's analytics: snapshots, factor and sector exposures,
correlations, stress results and position values, keyed by table; its risk answer and
risk row; the hash of the positions every stored analysis is computed for.

Both writers of portfolio analytics use it: the nightly refresh (:mod:`core.portfolio_steps`)
stores the rows, the instant path (:mod:`core.services.analytics`) stores the snapshot and
answers from the same rows, so an instant answer equals the nightly one. A module of its
own so that the instant path need not import the nightly steps; pure (no I/O, unlike
:mod:`core.repositories`). May import the portfolio math only.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import math
from collections.abc import Mapping, Sequence
from decimal import Decimal
from typing import Any

import numpy as np

from core.portfolio.analytics import PortfolioAnalytics
from core.portfolio.risk import (
    VAR_ROWS,
    RiskBook,
    RiskData,
    RiskPosition,
    expand_risk,
    risk_figures,
)
from core.portfolio.valuation import Holding, InvestmentClass, Snapshot, held_quantity


def positions_hash(holdings: Sequence[Holding], cash: Decimal) -> str:
    """SHA-256 of everything the analytics depend on in the portfolio itself (positions and
    cash): the key under which analyses (the answer cache, the nightly risk rows) are kept."""
    parts = [f"cash={cash}"] + sorted(
        f"{h.position_id}|{h.symbol}|{h.quantity}|{h.entry_date}|{h.entry_price}|{h.exit_date}|"
        f"{h.exit_price}|{h.investment_class}|{h.manual_value}" for h in holdings)
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def risk_book(holdings: Sequence[Holding], result: PortfolioAnalytics,
              splits: Mapping[str, Sequence[tuple[dt.date, float]]]) -> RiskBook:
    """A portfolio's book as the risk model sees it at its analysis's last day
    (:func:`snapshot_risk_book` of the last snapshot)."""
    return snapshot_risk_book(holdings, result.snapshots[-1], splits)


def snapshot_risk_book(holdings: Sequence[Holding], snapshot: Snapshot,
                       splits: Mapping[str, Sequence[tuple[dt.date, float]]]) -> RiskBook:
    """A portfolio's book as the risk model sees it at one snapshot's close.

    Each open position enters with its market value that day (a position without a price
    with 0 and unmodelled, so listed as uncovered), its quantity held then (after
    ``splits``, as in the valuation) and ``modelled`` for PUBLIC positions only (private
    holdings and options have no risk regression); the equity is the snapshot's.
    """
    by_id = {h.position_id: h for h in holdings}
    positions = []
    for pos_id, value in snapshot.position_values.items():
        h = by_id[pos_id]
        positions.append(RiskPosition(
            pos_id, h.symbol, float(held_quantity(h, snapshot.day, splits)),
            float(value) if value is not None else 0.0,
            modelled=value is not None and h.investment_class == InvestmentClass.PUBLIC))
    return RiskBook(positions, float(snapshot.equity))


def risk_answer(holdings: Sequence[Holding], result: PortfolioAnalytics,
                splits: Mapping[str, Sequence[tuple[dt.date, float]]], data: RiskData
                ) -> dict[str, Any]:
    """The risk answer of one portfolio at its analysis's last day (:func:`risk_book`)."""
    return expand_risk(risk_figures([risk_book(holdings, result, splits)], data)[0])


PARAMETRIC_99_1D = VAR_ROWS.index((1, 0.99, "var", "parametric"))
PARAMETRIC_ES_99_1D = VAR_ROWS.index((1, 0.99, "es", "parametric"))


def risk_row(pid: str, day: dt.date, digest: str, record: Mapping[str, Any]
             ) -> dict[str, Any]:
    """The ``portfolio_risk`` row of a risk record (:func:`risk_figures`) computed at
    ``day`` for the positions hashed ``digest``."""
    equity, sigma = record["equity"], record["dollar_daily"]
    return {"portfolio_id": pid, "date": day, "positions_hash": digest,
            "volatility_daily": (sigma / equity if sigma is not None and equity is not None
                                 and equity > 0 else None),
            "var_99_1d": record["var"][PARAMETRIC_99_1D],
            "es_99_1d": record["var"][PARAMETRIC_ES_99_1D], "payload": dict(record)}


def analytics_rows(pid: str, result: PortfolioAnalytics) -> dict[str, list[dict[str, Any]]]:
    """Table rows of one portfolio's analytics, keyed by table.

    ``pid``: the portfolio id; ``result``: its analysis (one snapshot per session, the
    other results at the last one). Keys: ``snapshots``, ``factors``, ``sectors``,
    ``correlations``, ``stress`` (rows of the portfolio tables, money as exact decimals,
    analytics as floats, no value as None) and ``positions`` (id, market value and its
    date, for the positions table).
    """
    out: dict[str, list[dict[str, Any]]] = {
        "snapshots": [], "factors": [], "sectors": [], "correlations": [], "stress": [],
        "positions": [],
    }
    for s in result.snapshots:
        out["snapshots"].append({
            "portfolio_id": pid, "date": s.day, "equity": s.equity,
            "market_value": s.market_value, "cash": s.cash, "cost_basis": s.cost_basis,
            "unrealized_pnl": s.unrealized_pnl, "daily_pnl": s.daily_pnl,
            "daily_return": s.daily_return, "long_exposure": s.long_exposure,
            "short_exposure": s.short_exposure, "gross_exposure": s.gross_exposure,
            "net_exposure": s.net_exposure, "position_count": s.position_count,
            "partial": s.partial, "missing_symbols": list(s.missing_symbols),
            "price_pnl": s.price_pnl, "income": s.income,
        })
    day = result.snapshots[-1].day
    fa = result.factors
    if fa is not None:
        share, weight = fa.covered_share.tolist(), fa.covered_weight.tolist()
        betas, dollars = fa.beta.tolist(), fa.dollar_exposure.tolist()
        for j, f in enumerate(fa.factors):
            covered = math.isfinite(share[j]) and share[j] > 0
            out["factors"].append({
                "portfolio_id": pid, "date": day, "factor": f,
                "beta": betas[j] if covered and math.isfinite(betas[j]) else None,
                "dollar_exposure": dollars[j] if covered and math.isfinite(dollars[j]) else None,
                "covered_share": share[j] if math.isfinite(share[j]) else 0.0,
                "covered_weight": weight[j] if math.isfinite(weight[j]) else 0.0,
            })
    for sector, (value, weight) in result.sectors.items():
        out["sectors"].append({
            "portfolio_id": pid, "date": day, "sector": sector[:64], "value": float(value),
            "weight": float(weight) if np.isfinite(weight) else None})
    c = result.correlation
    if c is not None:
        syms = result.correlation_symbols
        avg = float(c.average_correlation)
        out["correlations"].append({
            "portfolio_id": pid, "date": day, "symbols": syms,
            "matrix": np.round(c.matrix, 10).tolist(),
            "n_overlap": np.asarray(c.n_overlap).astype(int).tolist(),
            "average_correlation": avg if np.isfinite(avg) else None,
            "effective_positions": float(c.effective_positions),
            "repaired": bool(c.repaired),
            "clusters": [[syms[i] for i in cl] for cl in c.clusters],
            "insufficient_pairs": [[syms[i], syms[j]] for i, j in c.insufficient_pairs],
        })
    for st in result.stress:
        out["stress"].append({
            "portfolio_id": pid, "date": day, "scenario": st.name, "available": st.available,
            "pnl": st.pnl, "pnl_pct": st.pnl_pct, "contributions": st.contributions,
            "reason": st.reason})
    for pos_id, mv in result.position_values.items():
        out["positions"].append({"id": pos_id, "market_value": mv, "market_value_date": day})
    return out
