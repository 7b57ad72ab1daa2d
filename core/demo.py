"""Synthetic users and portfolios for the demo and the benchmarks.

Each portfolio holds ``positions`` symbols drawn from the priced universe: mostly longs,
some shorts, entry dates spread over recent sessions (some inside the backfill range),
entry prices at the stored raw close of the entry date. The first portfolio of each
user also holds a private position at a manual value and a symbol without prices
(its snapshots are partial and name it).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from core import calendar
from core.db.engine import flow_engine, reading, transaction
from core.db.models import Portfolio, Position, SymbolStatus, User
from core.portfolio.valuation import InvestmentClass
from core.repositories import prices as price_repo
from core.repositories import symbols as symbol_repo
from core.services.users import token_hash
from core.symbols import is_market_symbol

UNPRICED_SYMBOL = "NOPX.X"
"""A ticker no provider prices: positions in it make snapshots partial."""
PRIVATE_SYMBOL = "PRIVATE_FUND_A"


def demo_token(user: str) -> str:
    """A deterministic demo token (never use these outside the demo)."""
    return "demo-" + hashlib.sha256(user.encode()).hexdigest()[:24]


async def seed_portfolios(
    n_portfolios: int,
    as_of: dt.date,
    positions: int = 25,
    seed: int = 11,
    entry_sessions: int = 60,
    engine: AsyncEngine | None = None,
) -> dict[str, Any]:
    """Create ``n_portfolios`` synthetic portfolios (one user each) if they do not exist.

    Idempotent: portfolios are named ``demo-NNNNN`` and users ``demo-user-NNNNN``; existing
    ones are kept as they are. Returns counts.
    """
    engine = engine or flow_engine()
    rng = np.random.default_rng(seed)
    async with reading(engine) as conn:
        states = await symbol_repo.get_states(conn, statuses=[SymbolStatus.active])
        universe = [s.symbol for s in states if is_market_symbol(s.symbol) and s.last_price_date]
        existing = {r[0] for r in (await conn.execute(
            sa.select(User.__table__.c.name).where(  # type: ignore[attr-defined]
                User.__table__.c.name.like("demo-user-%")))).all()}  # type: ignore[attr-defined]
        sessions = calendar.sessions_ending_at(as_of, entry_sessions)
        pm = await price_repo.load_price_matrix(conn, universe, sessions[0], as_of)
    if not universe:
        raise ValueError("no priced symbols: run the symbol batch before seeding portfolios")
    now = dt.datetime.now(dt.UTC)
    users, portfolios, rows = [], [], []
    for k in range(n_portfolios):
        name = f"demo-user-{k:05d}"
        if name in existing:
            continue
        uid = hashlib.sha256(name.encode()).hexdigest()[:32]
        pid = hashlib.sha256(f"portfolio-{k}".encode()).hexdigest()[:32]
        users.append({"id": uid, "name": name, "token_hash": token_hash(demo_token(name)),
                      "is_admin": False, "created_at": now})
        cash = Decimal(int(rng.integers(1_000, 50_000)))
        portfolios.append({"id": pid, "owner_id": uid, "name": f"demo-{k:05d}",
                           "base_currency": "USD", "cash_balance": cash, "created_at": now,
                           "updated_at": now, "deleted_at": None})
        picks = rng.choice(len(universe), size=min(positions, len(universe)), replace=False)
        for n, j in enumerate(picks):
            sym = universe[int(j)]
            col = pm.close[:, int(j)]
            valid = np.flatnonzero(np.isfinite(col))
            if valid.size == 0:
                continue
            i = int(valid[rng.integers(0, valid.size)])
            short = rng.random() < 0.2
            qty = Decimal(int(rng.integers(1, 200))) * (-1 if short else 1)
            rows.append(_position(pid, n, sym, qty, pm.sessions[i],
                                  Decimal(str(round(float(col[i]), 6))), now))
        if k % 5 == 0:  # a private holding and one without prices
            rows.append(_position(pid, 900, PRIVATE_SYMBOL, Decimal(1), sessions[0],
                                  Decimal("25000"), now, InvestmentClass.PRIVATE,
                                  manual_value=Decimal("27500")))
            rows.append(_position(pid, 901, UNPRICED_SYMBOL, Decimal(10), sessions[0],
                                  Decimal("12.5"), now))
    async with transaction(engine) as conn:
        if users:
            await conn.execute(sa.insert(User.__table__), users)  # type: ignore[attr-defined]
            await conn.execute(sa.insert(Portfolio.__table__), portfolios)  # type: ignore[attr-defined]
            for i in range(0, len(rows), 10_000):
                await conn.execute(sa.insert(Position.__table__), rows[i : i + 10_000])  # type: ignore[attr-defined]
    return {"portfolios_created": len(portfolios), "positions_created": len(rows),
            "portfolios_existing": len(existing & {f"demo-user-{k:05d}"
                                                   for k in range(n_portfolios)})}


def _position(
    pid: str, n: int, symbol: str, qty: Decimal, entry: dt.date, price: Decimal,
    now: dt.datetime, cls: InvestmentClass = InvestmentClass.PUBLIC,
    manual_value: Decimal | None = None,
) -> dict[str, Any]:
    return {
        "id": hashlib.sha256(f"{pid}-{n}".encode()).hexdigest()[:32], "portfolio_id": pid,
        "symbol": symbol, "quantity": qty, "entry_date": entry, "entry_price": price,
        "exit_date": None, "exit_price": None, "investment_class": cls.value,
        "manual_value": manual_value, "market_value": None, "market_value_date": None,
        "created_at": now,
    }


def demo_symbols(symbols: Sequence[str]) -> list[str]:
    """The universe the demo registers: ``symbols`` plus the unpriced demo ticker."""
    return [*symbols, UNPRICED_SYMBOL]
