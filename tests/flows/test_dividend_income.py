"""The nightly portfolio flow stores each snapshot's daily P&L as price P&L + dividend
income (the synthetic DIVY goes ex-dividend on 2026-09-08), checked by hand from the
stored raw closes and corporate_actions rows (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal

import pytest

from core.db.engine import transaction
from core.repositories import portfolios as repo
from core.repositories import users as user_repo
from core.symbol_steps import register_universe
from tests.flows.helpers import query

BEFORE, EX, AFTER = dt.date(2026, 9, 4), dt.date(2026, 9, 8), dt.date(2026, 9, 9)
"""Sessions around DIVY's ex-date (2026-09-07 is Labor Day)."""
Q = Decimal("0.0001")

pytestmark = pytest.mark.usefixtures("prefect_harness")


def m(x: Decimal) -> Decimal:
    return x.quantize(Q)


def dec(v: object) -> Decimal:
    return Decimal(str(round(float(v), 6)))  # type: ignore[arg-type]


async def _seed() -> str:
    async with transaction() as conn:
        user = await user_repo.create_user(conn, "dana", "h-dana")
        return await repo.create_portfolio(conn, user, "income", Decimal("5000"), [
            {"id": "L", "symbol": "DIVY", "quantity": Decimal(100),
             "entry_date": dt.date(2026, 9, 1), "entry_price": Decimal("40")},
            {"id": "S", "symbol": "DIVY", "quantity": Decimal(-30),
             "entry_date": dt.date(2026, 9, 2), "entry_price": Decimal("41")},
            {"id": "N", "symbol": "DIVY", "quantity": Decimal(7), "entry_date": EX,
             "entry_price": Decimal("39")},  # bought on the ex-date: no dividend
            {"id": "M", "symbol": "MKTA", "quantity": Decimal(20),
             "entry_date": dt.date(2026, 9, 1), "entry_price": Decimal("60")},
        ])


def test_refresh_stores_price_pnl_plus_income(database_url: str) -> None:
    from flows.portfolio_refresh import portfolio_refresh
    from flows.symbol_batch import symbol_batch

    url = database_url
    asyncio.run(register_universe(["DIVY", "MKTA"]))
    symbol_batch(start=BEFORE, end=AFTER)
    pid = asyncio.run(_seed())
    portfolio_refresh(as_of=BEFORE)
    portfolio_refresh(as_of=AFTER)  # backfills the ex-date

    rows = query(url, "SELECT * FROM portfolio_snapshots WHERE portfolio_id=? ORDER BY date",
                 (pid,))
    assert list(rows.date) == [BEFORE.isoformat(), EX.isoformat(), AFTER.isoformat()]
    first, ex, after = (rows.iloc[i] for i in range(3))
    assert first[["daily_pnl", "price_pnl", "income"]].isna().all()  # a first snapshot
    for r in (ex, after):  # the identity on every row with a P&L
        assert Decimal(r.price_pnl) + Decimal(r.income) == Decimal(r.daily_pnl)
    all_rows = query(url, "SELECT price_pnl, income, daily_pnl FROM portfolio_snapshots "
                     "WHERE daily_pnl IS NOT NULL")
    assert len(all_rows) == 2
    assert all(Decimal(p) + Decimal(i) == Decimal(t) for p, i, t in all_rows.itertuples(
        index=False))

    # by hand: the dividend stored for the ex-date, the raw closes of the three sessions
    div = query(url, "SELECT value FROM corporate_actions WHERE symbol='DIVY' AND "
                "kind='dividend' AND date=?", (EX.isoformat(),)).value
    assert len(div) == 1
    d = dec(div[0])
    c = {(s, day): dec(query(url, "SELECT close FROM prices WHERE symbol=? AND date=?",
                             (s, day.isoformat())).close[0])
         for s in ("DIVY", "MKTA") for day in (BEFORE, EX, AFTER)}
    assert c["DIVY", EX] < c["DIVY", BEFORE]  # the raw close drops on the ex-date
    income = m(100 * d) + m(-30 * d)  # L and S held at the close before; N bought on EX
    assert Decimal(ex.income) == income and income > 0
    price = (m(100 * c["DIVY", EX]) - m(100 * c["DIVY", BEFORE])) \
        + (m(-30 * c["DIVY", EX]) - m(-30 * c["DIVY", BEFORE])) \
        + (m(7 * c["DIVY", EX]) - m(Decimal(7) * Decimal(39))) \
        + (m(20 * c["MKTA", EX]) - m(20 * c["MKTA", BEFORE]))
    assert Decimal(ex.price_pnl) == price
    assert Decimal(ex.daily_pnl) == price + income
    assert ex.daily_return == pytest.approx(float((price + income) / Decimal(first.equity)),
                                            rel=1e-12)
    assert Decimal(after.income) == 0  # no ex-date on 2026-09-09
    # the dividend is not booked to cash: equity = cash + Σ values
    assert Decimal(ex.equity) == Decimal(5000) + m(77 * c["DIVY", EX]) + m(20 * c["MKTA", EX])
