"""Symbol factor exposures and daily metrics: bulk upserts and reads.

May import: ``core.db``, numpy. Not: services, flows, api, cli.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.models import SymbolDailyMetrics, SymbolFactorExposure
from core.db.upsert import upsert_rows

if TYPE_CHECKING:
    from core.factors.engine import FactorExposures
    from core.metrics import DailyMetrics

_exposures = SymbolFactorExposure.__table__  # type: ignore[attr-defined]
_metrics = SymbolDailyMetrics.__table__  # type: ignore[attr-defined]
METRIC_FIELDS = (
    "last_close", "return_1d", "return_5d", "return_1m", "return_3m", "return_ytd",
    "return_1y", "volatility_90d", "high_52w", "low_52w",
)


def _floats(values: np.ndarray) -> list[float | None]:
    """Python floats with NaN/inf as None, without per-element numpy calls."""
    return [v if v == v and v not in (np.inf, -np.inf) else None for v in values.tolist()]


def exposure_rows(
    as_of: dt.date, symbols: Sequence[str], fx: FactorExposures
) -> list[dict[str, Any]]:
    """Rows of ``symbol_factor_exposures`` for one date from an engine result.

    r² and residual volatility are stored only where there is a beta.
    """
    from core.factors.definitions import FACTORS

    family = {f.name: f.family for f in FACTORS}
    rows: list[dict[str, Any]] = []
    for fi, name in enumerate(fx.factors):
        betas = _floats(fx.beta[fi])
        r2 = _floats(fx.r_squared[fi])
        rv = _floats(fx.resid_vol[fi])
        nobs = fx.n_obs[fi].tolist()
        reason, flag = fx.reason[fi].tolist(), fx.flag[fi].tolist()
        fam, window = family[name], int(fx.window[fi])
        for j, sym in enumerate(symbols):
            b = betas[j]
            rows.append({
                "symbol": sym, "factor": name, "date": as_of, "family": fam, "window": window,
                "beta": b, "n_obs": nobs[j],
                "r_squared": r2[j] if b is not None else None,
                "resid_vol": rv[j] if b is not None else None,
                "reason": reason[j], "flag": flag[j],
            })
    return rows


async def upsert_exposures(
    conn: AsyncConnection, as_of: dt.date, symbols: Sequence[str], fx: FactorExposures
) -> int:
    """Store every factor of every symbol at ``as_of`` (NULL beta + reason where no value)."""
    return await upsert_rows(
        conn, _exposures, exposure_rows(as_of, symbols, fx), key=["symbol", "factor", "date"]
    )


async def upsert_metrics(
    conn: AsyncConnection, symbols: Sequence[str], metrics: DailyMetrics
) -> int:
    """Store the daily metrics of ``symbols`` at ``metrics.as_of``."""
    arrays = {f: _floats(np.asarray(getattr(metrics, f), dtype=float)) for f in METRIC_FIELDS}
    rows = [
        {"symbol": s, "date": metrics.as_of, **{f: arrays[f][j] for f in METRIC_FIELDS}}
        for j, s in enumerate(symbols)
    ]
    return await upsert_rows(conn, _metrics, rows, key=["symbol", "date"])


async def load_exposures(
    conn: AsyncConnection, symbols: Sequence[str], as_of: dt.date
) -> list[sa.Row]:
    """Stored exposure rows of ``symbols`` at ``as_of``, ordered by symbol and factor."""
    out: list[sa.Row] = []
    for i in range(0, len(symbols), 900):
        stmt = (
            sa.select(_exposures)
            .where(_exposures.c.symbol.in_(list(symbols[i : i + 900])), _exposures.c.date == as_of)
            .order_by(_exposures.c.symbol, _exposures.c.factor)
        )
        out.extend((await conn.execute(stmt)).all())
    return out


async def latest_exposure_date(conn: AsyncConnection, symbol: str) -> dt.date | None:
    """The newest date with stored exposure rows of ``symbol`` (with or without values)."""
    return (await conn.execute(sa.select(sa.func.max(_exposures.c.date)).where(
        _exposures.c.symbol == symbol))).scalar_one_or_none()


async def count_exposures(conn: AsyncConnection, as_of: dt.date) -> dict[str, int]:
    """Rows at ``as_of``: total and with a value."""
    stmt = sa.select(sa.func.count(),
                     sa.func.count(_exposures.c.beta)).where(_exposures.c.date == as_of)
    total, valued = (await conn.execute(stmt)).one()
    return {"rows": int(total), "with_value": int(valued)}


async def load_beta_matrix(
    conn: AsyncConnection, symbols: Sequence[str], as_of: dt.date, factors: Sequence[str]
) -> np.ndarray:
    """Betas of ``symbols`` × ``factors`` stored at ``as_of``; NaN where there is none."""
    out = np.full((len(symbols), len(factors)), np.nan)
    row = {s: i for i, s in enumerate(symbols)}
    col = {f: j for j, f in enumerate(factors)}
    for i in range(0, len(symbols), 900):
        part = list(symbols[i : i + 900])
        stmt = sa.select(_exposures.c.symbol, _exposures.c.factor, _exposures.c.beta).where(
            _exposures.c.symbol.in_(part), _exposures.c.date == as_of,
            _exposures.c.beta.is_not(None))
        for s, f, b in (await conn.execute(stmt)).all():
            if f in col:
                out[row[s], col[f]] = b
    return out


async def latest_metrics(conn: AsyncConnection, symbol: str) -> sa.Row | None:
    """The newest daily-metrics row of ``symbol`` (None without one)."""
    return (await conn.execute(sa.select(_metrics).where(_metrics.c.symbol == symbol)
                               .order_by(_metrics.c.date.desc()).limit(1))).first()
