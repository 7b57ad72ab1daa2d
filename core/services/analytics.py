"""Instant snapshots and cached analytics of one portfolio, from pre-computed symbol data.

The answer never waits for a price provider: it uses the latest stored prices (snapshot
date = that price date, never the wall-clock date) and the symbol factors stored for it.
Analytics are cached per (portfolio, kind) together with the hash of the positions (and
cash) and the data date they were computed for; another hash or date is a miss, computed
from the symbol layer and stored again. The risk answer's miss first looks for the nightly
refresh's risk row of that date and hash (so answers after the night are hits); its history
is those rows; the reverse stress test is computed from the cached factor exposures.

Reads the symbol layer only through :mod:`core.symbol_data` and turns results into rows
with :mod:`core.portfolio_rows`, as the nightly refresh does; never imports the nightly
steps (:mod:`core.portfolio_steps`).
"""

from __future__ import annotations

import datetime as dt
import logging
import math
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core import calendar
from core.cpu import run_cpu
from core.db.engine import flow_engine, reading, run_transaction
from core.errors import InvalidInput, NotFound, NotReady
from core.portfolio.analytics import (
    PortfolioAnalytics,
    ScenarioSet,
    SymbolData,
    analyse_portfolio,
)
from core.portfolio.risk import RiskData, expand_risk
from core.portfolio.valuation import Holding, InvestmentClass
from core.portfolio_rows import analytics_rows, positions_hash, risk_answer
from core.repositories import portfolios as portfolio_repo
from core.risk.model import reverse_stress_move
from core.risk.stress import (
    ETF_INDEX,
    FACTOR_ETFS,
    SCENARIOS,
    conditional_moves,
    stress_exposures,
)
from core.services.snapshot_json import money_text
from core.symbol_data import (
    database_key,
    latest_data_date,
    load_risk_data,
    load_symbol_data,
    scenarios_at,
)

ANALYTICS_KINDS = ("overview", "factor-exposures", "sector-exposure", "correlations",
                   "stress-tests", "risk")
CORRELATION_MATRIX_LIMIT = 100
"""The cached correlations answer holds the matrix up to this many symbols (~140 kB of
JSON); above, only the summary and clusters (the matrix on request: full_correlations).
An instant snapshot of a portfolio above it also leaves the risk answer out."""
REVERSE_STRESS_LOSSES = (0.1, 0.2)
"""Losses (fractions of equity) of the reverse stress test when none are asked for."""
MAX_REVERSE_STRESS_LOSSES = 20
"""Most losses one reverse stress test answers."""
NO_SUCH_MOVE = "no such move"
_FULL_MATRICES = 4
_full_matrices: dict[tuple[str, str, str, dt.date], tuple[dict[str, Any], np.ndarray]] = {}
log = logging.getLogger(__name__)
STORE_ATTEMPTS = 3
"""Analyses of one ``compute`` call whose result may be found outdated before it is stored."""


async def _required_data_date(engine: AsyncEngine) -> dt.date:
    day = await latest_data_date(engine)
    if day is None:
        raise NotReady("no market data stored yet: the symbol batch has not run")
    return day


def is_stale(data_date: dt.date, now: dt.datetime | None = None) -> bool:
    """True when ``data_date`` is older than the last expected trading day."""
    return data_date < calendar.latest_completed_session(now)


async def _portfolio(conn: AsyncConnection, portfolio_id: str) -> tuple[Decimal, list[Holding]]:
    cash = await portfolio_repo.live_cash(conn, portfolio_id)
    if cash is None:
        raise NotFound(f"portfolio {portfolio_id} not found", field="portfolio_id")
    holdings, invalid = await portfolio_repo.load_holdings(conn, [portfolio_id])
    if portfolio_id in invalid:
        raise NotReady(invalid[portfolio_id])
    return cash, holdings[portfolio_id]


async def _previous(conn: AsyncConnection, pid: str, day: dt.date
                    ) -> tuple[dt.date | None, Decimal | None]:
    """The snapshot of the session before ``day``, if there is one (for the daily P&L)."""
    prev = calendar.previous_session(day)
    equity = await portfolio_repo.snapshot_equity(conn, pid, prev)
    return (prev, equity) if equity is not None else (None, None)


def _f(x: float | None) -> float | None:
    return x if x is not None and math.isfinite(x) else None


def payloads(pid: str, result: PortfolioAnalytics, holdings: list[Holding],
             day: dt.date, matrix_limit: int | None = CORRELATION_MATRIX_LIMIT,
             ) -> dict[str, dict[str, Any]]:
    """JSON-ready payload of every analytics kind (without data_as_of/stale/cached).

    The correlations payload holds the matrix only for at most ``matrix_limit`` symbols
    (None: always); above, ``matrix`` is None (see :func:`full_correlations`).
    """
    rows = analytics_rows(pid, result)
    snap = rows["snapshots"][-1]
    snapshot = {k: (money_text(v) if isinstance(v, Decimal) else v) for k, v in snap.items()
                if k != "portfolio_id"}
    snapshot["date"] = day.isoformat()
    equity = float(result.snapshots[-1].equity)
    by_id = {h.position_id: h for h in holdings}
    pos_rows = []
    for i, (pos_id, value) in enumerate(result.position_values.items()):
        h = by_id[pos_id]
        weight = float(value) / equity if value is not None and equity else None
        pos_rows.append({"position_id": pos_id, "symbol": h.symbol, "quantity": str(h.quantity),
                         "market_value": money_text(value), "weight": _f(weight),
                         "investment_class": str(h.investment_class), "_i": i})
    factor_rows = [{k: v for k, v in r.items() if k not in ("portfolio_id", "date")}
                   for r in rows["factors"]]
    market = next((r for r in factor_rows if r["factor"] == "market_beta"), None)
    overview = {
        "snapshot": snapshot,
        "exposures": {k: snapshot[k] for k in (
            "long_exposure", "short_exposure", "gross_exposure", "net_exposure")},
        "market_beta": market["beta"] if market else None,
        "covered_share": market["covered_share"] if market else 0.0,
        "positions": [{k: v for k, v in p.items() if k != "_i"} for p in pos_rows],
    }
    factor_payload = {"portfolio": factor_rows, "positions": _position_betas(pos_rows, result)}
    sectors = {"sectors": [{k: v for k, v in r.items() if k not in ("portfolio_id", "date")}
                           for r in rows["sectors"]]}
    corr: dict[str, Any] = {"symbols": [], "matrix": [], "average_correlation": None,
                            "effective_positions": None, "clusters": [], "repaired": False,
                            "insufficient_pairs": []}
    if rows["correlations"]:
        corr = {k: v for k, v in rows["correlations"][0].items()
                if k not in ("portfolio_id", "date", "n_overlap")}
        if matrix_limit is not None and len(corr["symbols"]) > matrix_limit:
            corr["matrix"] = None
    titles = {s.name: s.title for s in SCENARIOS}
    stress = {"scenarios": [{
        "name": r["scenario"], "title": titles.get(r["scenario"], r["scenario"]),
        "available": r["available"], "pnl": _f(r["pnl"]), "pnl_pct": _f(r["pnl_pct"]),
        "contributions": r["contributions"], "reason": r["reason"]} for r in rows["stress"]]}
    return {"overview": overview, "factor-exposures": factor_payload, "sector-exposure": sectors,
            "correlations": corr, "stress-tests": stress, "_snapshot_row": snap,
            "_position_rows": {"rows": rows["positions"]}}


def _position_betas(pos_rows: list[dict[str, Any]], result: PortfolioAnalytics
                    ) -> list[dict[str, Any]]:
    """Each position's weight and its symbol's betas (None where there is no value)."""
    return [{**{k: v for k, v in p.items() if k != "_i"},
             "betas": result.position_betas.get(p["position_id"], {})} for p in pos_rows]


def _analysed(
    pid: str, holdings: list[Holding], cash: Decimal, day: dt.date, data: SymbolData,
    scenarios: ScenarioSet, prev_day: dt.date | None, prev_equity: Decimal | None,
    risk_data: RiskData | None, correlations: bool = True,
) -> tuple[str, dict[str, dict[str, Any]]]:
    """The positions hash and every payload (CPU only: run in a worker thread); without
    ``correlations``, no correlations payload; without ``risk_data``, no risk payload."""
    result = analyse_portfolio(holdings, cash, [day], data, scenarios, prev_day, prev_equity,
                               correlations=correlations)
    kinds = payloads(pid, result, holdings, day)
    if risk_data is not None:
        kinds["risk"] = risk_answer(holdings, result, data.splits, risk_data)
    if not correlations:
        del kinds["correlations"]
    elif kinds["correlations"]["matrix"] is None:  # left out: kept for ?matrix=full
        kinds["_full_matrix"] = {"matrix": _stored_matrix(result)}
    return positions_hash(holdings, cash), kinds


async def compute(
    portfolio_id: str, engine: AsyncEngine | None = None, store_snapshot: bool = False,
    *, _attempt: int = 1,
) -> tuple[dt.date, str, dict[str, dict[str, Any]]]:
    """Compute every analytics kind at the latest data date and store them in the cache.

    ``store_snapshot`` also writes the snapshot row and the position market values (the
    instant snapshot of onboarding); for a portfolio of more than
    ``CORRELATION_MATRIX_LIMIT`` symbols it leaves the correlations and the risk answer
    out (computed, with the other kinds again, on their first request). Returns (data
    date, positions hash, payloads).

    The results are stored only if, under the portfolio's lock, the portfolio is still
    what was analysed (cash, positions, the previous snapshot): a change committed
    meanwhile makes it analyse again (up to ``STORE_ATTEMPTS`` times; then the answer is
    returned unstored: the change's own re-snapshot stores the newer state).
    """
    engine = engine or flow_engine()
    day = await _required_data_date(engine)
    async with reading(engine) as conn:
        cash, holdings = await _portfolio(conn, portfolio_id)
        prev_day, prev_equity = await _previous(conn, portfolio_id, day)
    symbols = sorted({h.symbol for h in holdings if h.investment_class != InvestmentClass.PRIVATE})
    data = await load_symbol_data(symbols, day, day, engine)
    scenarios = await scenarios_at(day, engine)
    # the instant snapshot of a large portfolio does not wait for its correlations and risk
    # (most of the work, and not part of the answer): they are computed on their first request
    eager = not store_snapshot or len(symbols) <= CORRELATION_MATRIX_LIMIT
    risk_data = await load_risk_data(symbols, day, engine, cached=True) if eager else None
    digest, kinds = await run_cpu(_analysed, portfolio_id, holdings, cash, day, data, scenarios,
                                  prev_day, prev_equity, risk_data, eager)
    snap_row = kinds.pop("_snapshot_row")
    pos_rows = kinds.pop("_position_rows")["rows"]
    if "_full_matrix" in kinds:
        _remember_full((database_key(engine), portfolio_id, digest, day), kinds["correlations"],
                       kinds.pop("_full_matrix")["matrix"])
    now = dt.datetime.now(dt.UTC)

    async def store(conn: AsyncConnection) -> bool:
        # the portfolio lock first (the order of every portfolio write), then the check
        await portfolio_repo.lock_portfolios(conn, [portfolio_id])
        cash_now, holdings_now = await _portfolio(conn, portfolio_id)
        if (positions_hash(holdings_now, cash_now) != digest
                or await _previous(conn, portfolio_id, day) != (prev_day, prev_equity)):
            return False
        await portfolio_repo.store_analytics(conn, [
            {"portfolio_id": portfolio_id, "kind": k, "positions_hash": digest, "data_date": day,
             "payload": v, "created_at": now} for k, v in kinds.items()])
        if store_snapshot:
            await portfolio_repo.upsert_snapshots(conn, [snap_row])
            await portfolio_repo.update_position_values(conn, pos_rows)
        return True

    if not await run_transaction(store, engine):
        if _attempt < STORE_ATTEMPTS:
            return await compute(portfolio_id, engine, store_snapshot, _attempt=_attempt + 1)
        log.info("analytics of %s not stored: changed during %d analyses", portfolio_id,
                 _attempt)
    return day, digest, kinds


def _full_correlation_payload(pid: str, holdings: list[Holding], cash: Decimal, day: dt.date,
                              data: SymbolData) -> tuple[dict[str, Any], np.ndarray]:
    result = analyse_portfolio(holdings, cash, [day], data, None)
    summary = payloads(pid, result, holdings, day, matrix_limit=0)["correlations"]
    return summary, _stored_matrix(result)


def _stored_matrix(result: PortfolioAnalytics) -> np.ndarray:
    """The correlation matrix as stored and answered (10 decimals; empty without one)."""
    c = result.correlation
    return np.round(c.matrix, 10) if c is not None else np.zeros((0, 0))


def _remember_full(key: tuple[str, str, str, dt.date], summary: dict[str, Any],
                   matrix: np.ndarray) -> None:
    while len(_full_matrices) >= _FULL_MATRICES:
        _full_matrices.pop(next(iter(_full_matrices)))
    _full_matrices[key] = (summary, matrix)


async def full_correlations(portfolio_id: str, engine: AsyncEngine | None = None
                            ) -> dict[str, Any]:
    """The correlations answer of a portfolio with its full matrix, whatever its size.

    ``matrix`` is a numpy array (convert it off the event loop: 1,000 symbols make
    ~13 MB of JSON). Not stored in the database: the last few matrices are kept in
    memory per positions hash and data date (also those :func:`compute` found), else
    computed from the symbol layer in a worker thread.
    """
    engine = engine or flow_engine()
    day = await _required_data_date(engine)
    async with reading(engine) as conn:
        cash, holdings = await _portfolio(conn, portfolio_id)
    key = (database_key(engine), portfolio_id, positions_hash(holdings, cash), day)
    hit = _full_matrices.get(key)
    if hit is None:
        symbols = sorted({h.symbol for h in holdings
                          if h.investment_class != InvestmentClass.PRIVATE})
        data = await load_symbol_data(symbols, day, day, engine)
        hit = await run_cpu(_full_correlation_payload, portfolio_id, holdings, cash, day, data)
        _remember_full(key, *hit)
    summary, matrix = hit
    return _answer({**summary, "matrix": matrix}, day, False)


def _answer(payload: dict[str, Any], day: dt.date, cached: bool) -> dict[str, Any]:
    return {**payload, "data_as_of": day.isoformat(), "stale": is_stale(day), "cached": cached}


def _one_scenario(payload: dict[str, Any], scenario: str) -> dict[str, Any]:
    chosen = [s for s in payload["scenarios"] if s["name"] == scenario]
    if not chosen:
        names = ", ".join(s["name"] for s in payload["scenarios"])
        raise NotFound(f"unknown scenario {scenario!r}; scenarios: {names}", field="scenario")
    return {**payload, "scenarios": chosen}


async def portfolio_analytics(
    portfolio_id: str, kind: str, engine: AsyncEngine | None = None,
    scenario: str | None = None,
) -> dict[str, Any]:
    """Analytics ``kind`` of a portfolio, from the cache or computed (and cached) on a miss.

    Every answer carries ``data_as_of`` (ISO date), ``stale`` (data older than the last
    expected trading day) and ``cached``. ``scenario`` narrows ``stress-tests`` to one.
    """
    answer, _ = await analytics_with_hash(portfolio_id, kind, engine, scenario)
    return answer


async def analytics_with_hash(
    portfolio_id: str, kind: str, engine: AsyncEngine | None = None,
    scenario: str | None = None,
) -> tuple[dict[str, Any], str]:
    """:func:`portfolio_analytics` and the positions hash the answer was computed for (a
    caller keeping the answer checks it against the stored row's)."""
    if kind not in ANALYTICS_KINDS:
        raise NotFound(f"unknown analytics {kind!r}; kinds: {', '.join(ANALYTICS_KINDS)}",
                       field="kind")
    engine = engine or flow_engine()
    day = await _required_data_date(engine)
    async with reading(engine) as conn:
        cash, holdings = await _portfolio(conn, portfolio_id)
        row = await portfolio_repo.cached_analytics(conn, portfolio_id, kind)
        nightly = (await portfolio_repo.stored_risk(conn, portfolio_id, day)
                   if kind == "risk" else None)
    digest = positions_hash(holdings, cash)
    if row is not None and row[0] == digest and row[1] == day:
        payload, cached = row[2], True
    elif nightly is not None and nightly[0] == digest:
        payload, cached = expand_risk(nightly[1]), True
        await _cache_nightly_risk(portfolio_id, digest, day, payload, engine)
    else:
        day, digest, kinds = await compute(portfolio_id, engine)
        payload, cached = kinds[kind], False
    if scenario is not None:
        if kind != "stress-tests":
            raise NotFound("scenario applies to stress-tests only", field="scenario")
        payload = _one_scenario(payload, scenario)
    return _answer(payload, day, cached), digest


async def _cache_nightly_risk(portfolio_id: str, digest: str, day: dt.date,
                              payload: dict[str, Any], engine: AsyncEngine) -> None:
    """Store the nightly risk answer as the portfolio's cached risk answer (so the next
    requests, and the in-process memo, find it) unless the portfolio changed meanwhile."""
    async def store(conn: AsyncConnection) -> None:
        await portfolio_repo.lock_portfolios(conn, [portfolio_id])
        try:
            cash_now, holdings_now = await _portfolio(conn, portfolio_id)
        except (NotFound, NotReady):
            return
        if positions_hash(holdings_now, cash_now) == digest:
            await portfolio_repo.store_analytics(conn, [
                {"portfolio_id": portfolio_id, "kind": "risk", "positions_hash": digest,
                 "data_date": day, "payload": payload, "created_at": dt.datetime.now(dt.UTC)}])

    await run_transaction(store, engine)


async def risk_history(
    portfolio_id: str, *, start: dt.date | None = None, end: dt.date | None = None,
    limit: int = 1000, engine: AsyncEngine | None = None,
) -> dict[str, Any]:
    """The nightly risk figures of a portfolio with ``start <= date <= end`` (None:
    unbounded), oldest first; at most the newest ``limit`` (``truncated`` says when older
    ones were left out). Each item: ``date``, ``volatility`` (daily and annual fractions
    of equity, daily dollars), ``predicted_beta``, ``var_99_1d`` / ``es_99_1d`` (parametric,
    currency, a loss positive) and ``var_99_1d_pct`` (fraction of equity), ``factor_share``
    of the variance and ``covered_share`` of the gross exposure (the model's coverage).

    Raises InvalidInput naming ``end`` when it is before ``start``.
    """
    if start is not None and end is not None and end < start:
        raise InvalidInput(f"end: {end.isoformat()} is before start {start.isoformat()}", "end")
    async with reading(engine or flow_engine()) as conn:
        rows = await portfolio_repo.risk_history(conn, portfolio_id, start=start, end=end,
                                                 limit=limit + 1)
    items = []
    for r in reversed(rows[:limit]):
        p = expand_risk(r.payload)
        var_pct = next((v["pct"] for v in p["var"] if v["measure"] == "var"
                        and v["method"] == "parametric" and v["confidence"] == 0.99
                        and v["horizon_days"] == 1), None)
        items.append({"date": r.date.isoformat(), "volatility": p["volatility"],
                      "predicted_beta": p["predicted_beta"], "var_99_1d": r.var_99_1d,
                      "es_99_1d": r.es_99_1d, "var_99_1d_pct": var_pct,
                      "factor_share": p["variance_split"]["factor_share"],
                      "covered_share": p["model"]["coverage"]["covered_share"]})
    return {"items": items, "start": start, "end": end, "truncated": len(rows) > limit}


def _losses(losses: Sequence[float] | None) -> list[float]:
    chosen = list(losses or REVERSE_STRESS_LOSSES)
    if len(chosen) > MAX_REVERSE_STRESS_LOSSES:
        raise InvalidInput(f"loss: at most {MAX_REVERSE_STRESS_LOSSES} losses "
                           f"(got {len(chosen)})", "loss")
    for x in chosen:
        if not (math.isfinite(x) and 0 < x <= 1):
            raise InvalidInput(f"loss: {x} is not a fraction of equity in (0, 1]", "loss")
    return chosen


async def reverse_stress(
    factor_exposures: dict[str, Any], overview: dict[str, Any], etf: str = "SPY",
    losses: Sequence[float] | None = None, engine: AsyncEngine | None = None,
) -> dict[str, Any]:
    """The reverse stress test: the move of ``etf`` that, with the other factor ETFs moving by
    their conditional expectation (as in the stress tests), loses each of ``losses``.

    Parameters
    ----------
    factor_exposures, overview : dict
        The portfolio's ``factor-exposures`` and ``overview`` answers (same data date):
        the factor dollar exposures and the equity.
    etf : str
        One of ``FACTOR_ETFS`` (InvalidInput naming ``etf`` otherwise).
    losses : sequence of float, optional
        Losses as fractions of equity in (0, 1] (InvalidInput naming ``loss`` otherwise);
        default ``REVERSE_STRESS_LOSSES``.

    Returns
    -------
    dict
        ``etf``, ``equity`` (currency), ``exposures`` (dollars per factor ETF, the stress
        tests' netted exposures), ``losses``: per loss ``loss``, ``loss_amount``
        (currency; None when the equity is not positive), ``etf_move`` (simple return) and
        ``moves`` (every ETF's move, ``etf_move`` included) or None / {} with ``reason``
        ``"no such move"`` (the portfolio's exposure to the move is zero or has the other
        sign, or the move would exceed -100 %); ``data_as_of`` and ``stale``.
    """
    if etf not in ETF_INDEX:
        raise InvalidInput(f"etf: {etf!r} is not a factor ETF; one of {', '.join(FACTOR_ETFS)}",
                           "etf")
    chosen = _losses(losses)
    day = dt.date.fromisoformat(factor_exposures["data_as_of"])
    cov = (await scenarios_at(day, engine or flow_engine())).cov
    equity = float(overview["snapshot"]["equity"])
    dollars = {r["factor"]: r["dollar_exposure"] for r in factor_exposures["portfolio"]
               if r["dollar_exposure"] is not None}
    usable = bool(np.isfinite(cov).all())
    exposures = stress_exposures(dollars, cov if usable else None)
    rows = []
    for loss in chosen:
        amount = loss * equity if equity > 0 else None
        move = (reverse_stress_move(exposures, cov, ETF_INDEX[etf], amount)
                if amount is not None and usable else None)
        reason = None
        if equity <= 0:
            reason = "equity is zero or negative: no loss as a fraction of it"
        elif move is None:
            reason = NO_SUCH_MOVE
        moves = ({} if move is None else
                 dict(zip(FACTOR_ETFS, conditional_moves(cov, {ETF_INDEX[etf]: move}).tolist(),
                          strict=True)))
        rows.append({"loss": loss, "loss_amount": amount, "etf_move": move, "moves": moves,
                     "reason": reason})
    return {"etf": etf, "equity": equity,
            "exposures": dict(zip(FACTOR_ETFS, (_f(float(x)) for x in exposures), strict=True)),
            "losses": rows, "data_as_of": day.isoformat(), "stale": is_stale(day)}


async def snapshot_now(portfolio_id: str, engine: AsyncEngine | None = None) -> dict[str, Any]:
    """Value ``portfolio_id`` at the latest stored price date, store that snapshot (and the
    analytics cache), and return the snapshot (money as exact decimal strings)."""
    day, _, kinds = await compute(portfolio_id, engine, store_snapshot=True)
    return {**kinds["overview"]["snapshot"], "data_as_of": day.isoformat(),
            "stale": is_stale(day)}


async def refresh_portfolio_analytics(portfolio_id: str, engine: AsyncEngine | None = None
                                      ) -> dict[str, Any]:
    """Recompute a portfolio's snapshot and every cached analytics kind (after onboarding)."""
    return await snapshot_now(portfolio_id, engine)
