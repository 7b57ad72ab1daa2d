"""Data-check findings per symbol and run date.

May import: ``core.db``. Not: services, flows, api, cli.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import TYPE_CHECKING

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.models import DataCheckFinding, SymbolFactorExposure
from core.db.upsert import upsert_rows

if TYPE_CHECKING:
    from core.quality import Finding

_findings = DataCheckFinding.__table__  # type: ignore[attr-defined]
_exposures = SymbolFactorExposure.__table__  # type: ignore[attr-defined]


async def replace_findings(
    conn: AsyncConnection,
    as_of: dt.date,
    symbols: Sequence[str],
    findings: Sequence[Finding],
    checks: Sequence[str],
) -> int:
    """Make the stored findings of ``checks`` for ``symbols`` at ``as_of`` exactly ``findings``.

    Findings of one check for one symbol are merged into one row (first day kept,
    details joined), so a rerun leaves the same rows and a fixed problem disappears.
    """
    for i in range(0, len(symbols), 900):
        await conn.execute(
            sa.delete(_findings).where(
                _findings.c.as_of == as_of,
                _findings.c.check.in_(list(checks)),
                _findings.c.symbol.in_(list(symbols[i : i + 900])),
            )
        )
    merged: dict[tuple[str, str], dict] = {}
    for f in findings:
        key = (f.symbol, f.check)
        row = merged.get(key)
        if row is None:
            merged[key] = {
                "symbol": f.symbol, "as_of": as_of, "check": f.check,
                "severity": f.severity, "day": f.day, "detail": f.detail,
            }
        else:
            if f.severity == "error":
                row["severity"] = "error"
            if len(row["detail"]) < 500:
                row["detail"] = f"{row['detail']}; {f.detail}"
    return await upsert_rows(conn, _findings, merged.values(), key=["symbol", "as_of", "check"])


async def load_findings(conn: AsyncConnection, as_of: dt.date) -> list[sa.Row]:
    """All findings at ``as_of``, ordered by severity (errors first) and symbol."""
    stmt = sa.select(_findings).where(_findings.c.as_of == as_of).order_by(
        _findings.c.severity, _findings.c.symbol, _findings.c.check)
    return list((await conn.execute(stmt)).all())


async def first_days(
    conn: AsyncConnection, as_of: dt.date, checks: Sequence[str]
) -> dict[str, dt.date | None]:
    """Symbol → first offending session of its error findings of ``checks`` at the latest
    date on or before ``as_of`` for which factors were computed (the series checks run
    with them, so a check that found nothing then has no row)."""
    latest = (await conn.execute(
        sa.select(sa.func.max(_exposures.c.date)).where(_exposures.c.date <= as_of)
    )).scalar_one_or_none()
    if latest is None:
        return {}
    stmt = sa.select(_findings.c.symbol, sa.func.min(_findings.c.day)).where(
        _findings.c.as_of == latest, _findings.c.check.in_(list(checks)),
        _findings.c.severity == "error",
    ).group_by(_findings.c.symbol)
    return {s: d for s, d in (await conn.execute(stmt)).all()}
