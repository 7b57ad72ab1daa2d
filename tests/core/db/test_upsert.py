"""``core.db.upsert.upsert_rows`` on SQLite and PostgreSQL: same rows stored either way.

PostgreSQL takes another path (one ``INSERT … SELECT FROM unnest(arrays)`` per chunk), so
the semantics an executemany gives for free are checked on both: a key repeated in a chunk
ends with its last row (its first with ``update=()``, which inserts only what is absent),
scalar column defaults apply, exact decimals stay exact and JSON/boolean columns round-trip.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import numpy as np
import pandas as pd
import pytest
import sqlalchemy as sa

from core.db.engine import create_engine
from core.db.models import PortfolioSnapshot, Price, SymbolFactorExposure
from core.db.upsert import execute_many, upsert_columns, upsert_rows
from core.repositories import portfolios as repo
from core.repositories import prices as price_repo
from core.repositories import users as user_repo

P = Price.__table__  # type: ignore[attr-defined]
SNAP = PortfolioSnapshot.__table__  # type: ignore[attr-defined]
FE = SymbolFactorExposure.__table__  # type: ignore[attr-defined]
D1, D2 = dt.date(2026, 11, 18), dt.date(2026, 11, 19)


def _run(url: str, fn: Any) -> Any:
    async def go() -> Any:
        engine = create_engine(url)
        try:
            async with engine.begin() as conn:
                return await fn(conn)
        finally:
            await engine.dispose()

    return asyncio.run(go())


def _bar(symbol: str, day: dt.date, close: float) -> dict[str, Any]:
    return {"symbol": symbol, "date": day, "open": None, "high": close, "low": close,
            "close": close, "adj_close": close, "volume": 1e6}


def _prices(url: str) -> dict[tuple[str, dt.date], Decimal]:
    async def read(conn: Any) -> Any:
        rows = (await conn.execute(sa.select(P.c.symbol, P.c.date, P.c.close))).all()
        return {(s, d): Decimal(str(c)).quantize(Decimal("0.000001")) for s, d, c in rows}

    return _run(url, read)


def test_repeated_key_in_a_chunk_ends_with_its_last_row(database_url: str) -> None:
    rows = [_bar("AAA", D1, 1.5), _bar("BBB", D1, 2.25), _bar("AAA", D1, 3.125),
            _bar("AAA", D2, 4.0)]
    sent = _run(database_url, lambda c: upsert_rows(c, P, rows, key=["symbol", "date"],
                                                     chunk_rows=3))
    assert sent == 4
    assert _prices(database_url) == {("AAA", D1): Decimal("3.125000"),
                                     ("BBB", D1): Decimal("2.250000"),
                                     ("AAA", D2): Decimal("4.000000")}
    again = [_bar("AAA", D1, 9.0), _bar("BBB", D1, 8.0)]
    _run(database_url, lambda c: upsert_rows(c, P, again, key=["symbol", "date"], update=()))
    assert _prices(database_url)[("AAA", D1)] == Decimal("3.125000")  # insert-if-absent only
    _run(database_url, lambda c: upsert_rows(c, P, again, key=["symbol", "date"]))
    assert _prices(database_url)[("AAA", D1)] == Decimal("9.000000")
    new = [_bar("CCC", D1, 5.0), _bar("CCC", D1, 6.0)]
    _run(database_url, lambda c: upsert_rows(c, P, new, key=["symbol", "date"], update=()))
    assert _prices(database_url)[("CCC", D1)] == Decimal("5.000000")  # the first one


def test_prices_keep_six_decimals_at_any_magnitude(database_url: str) -> None:
    closes = [0.000001, 12.345678, 999_999.999999, 123_456_789.123456, 987_654_321_012.5]
    rows = [_bar(f"S{i}", D1, v) for i, v in enumerate(closes)]
    # below 1e9 (15 digits with 6 decimals) PostgreSQL gets float8s, above exact decimals
    _run(database_url, lambda c: upsert_rows(c, P, rows[:-1], key=["symbol", "date"]))
    _run(database_url, lambda c: upsert_rows(c, P, rows[-1:], key=["symbol", "date"]))
    stored = _prices(database_url)
    for i, v in enumerate(closes):
        assert stored[(f"S{i}", D1)] == Decimal(repr(v)).quantize(Decimal("0.000001")), v


def test_money_json_booleans_and_defaults_round_trip(database_url: str) -> None:
    async def seed(conn: Any) -> str:
        uid = await user_repo.create_user(conn, "u", "h")
        return await repo.create_portfolio(conn, uid, "p", Decimal("10"))

    pid = _run(database_url, seed)
    money = Decimal("12345678901234.5678")
    snap = {"portfolio_id": pid, "date": D1, "equity": money, "market_value": Decimal("0.1"),
            "cash": Decimal(0), "cost_basis": Decimal("-1.2345"), "unrealized_pnl": Decimal(1),
            "daily_pnl": None, "daily_return": 0.1, "long_exposure": Decimal(1),
            "short_exposure": Decimal(0), "gross_exposure": Decimal(1),
            "net_exposure": Decimal(1), "position_count": 2, "partial": True,
            "missing_symbols": ["X", "Y"]}
    _run(database_url, lambda c: upsert_rows(c, SNAP, [snap], key=["portfolio_id", "date"]))
    exposure = {"symbol": "AAA", "factor": "market_beta", "date": D1, "family": "ols",
                "window": 90, "beta": None, "r_squared": None, "resid_vol": None,
                "reason": "insufficient_data", "flag": None}  # n_obs left to its default
    _run(database_url, lambda c: upsert_rows(c, FE, [exposure], key=["symbol", "factor", "date"]))

    async def read(conn: Any) -> Any:
        s = (await conn.execute(sa.select(SNAP))).one()
        e = (await conn.execute(sa.select(FE))).one()
        return s, e

    s, e = _run(database_url, read)
    assert s.equity == money and s.market_value == Decimal("0.1000")
    assert s.cost_basis == Decimal("-1.2345") and s.daily_pnl is None
    assert s.partial is True and s.missing_symbols == ["X", "Y"] and s.position_count == 2
    assert e.n_obs == 0 and e.beta is None and e.reason == "insufficient_data"


def test_columns_store_what_rows_store(database_url: str) -> None:
    """``upsert_columns`` (column by column) stores what ``upsert_rows`` (dicts) would: a
    repeated key ends with its last row, dates and None survive."""
    rows = [_bar("AAA", D1, 1.5), _bar("BBB", D1, 2.25), _bar("AAA", D1, 3.125),
            _bar("CCC", D2, 4.0), _bar("AAA", D2, 0.375)]
    columns = {c: [r[c] for r in rows] for c in rows[0]}
    sent = _run(database_url, lambda c: upsert_columns(c, P, columns, key=["symbol", "date"],
                                                        chunk_rows=2))
    assert sent == 5
    by_columns = _run(database_url, lambda c: _all_prices(c))
    assert by_columns == {("AAA", D1): (None, 3.125, 1e6), ("BBB", D1): (None, 2.25, 1e6),
                          ("CCC", D2): (None, 4.0, 1e6), ("AAA", D2): (None, 0.375, 1e6)}
    with pytest.raises(ValueError, match="different lengths"):
        _run(database_url, lambda c: upsert_columns(c, P, {"symbol": ["A"], "date": []},
                                                    key=["symbol", "date"]))


async def _all_prices(conn: Any) -> dict[tuple[str, dt.date], tuple[Any, ...]]:
    rows = (await conn.execute(sa.select(P.c.symbol, P.c.date, P.c.open, P.c.close,
                                         P.c.volume))).all()
    return {(s, d): (o, c, v) for s, d, o, c, v in rows}


def test_sqlite_driver_path_stores_what_sqlalchemy_stores(tmp_path: Any) -> None:
    """On SQLite the rows go through the driver's executemany with each type's bind
    processor: the stored bytes equal those of SQLAlchemy's own executemany, None in a JSON
    column included (stored as 'null'), bytes handed to the driver as they are (a BLOB), for
    an upsert and for an UPDATE by ``execute_many``."""
    meta = sa.MetaData()

    def table(name: str) -> sa.Table:
        return sa.Table(name, meta, sa.Column("k", sa.String, primary_key=True),
                        sa.Column("day", sa.Date), sa.Column("at", sa.DateTime),
                        sa.Column("amount", sa.Numeric(18, 6)), sa.Column("doc", sa.JSON),
                        sa.Column("flag", sa.Boolean), sa.Column("blob", sa.LargeBinary))

    ref, fast = table("ref"), table("fast")
    rows = [{"k": "a", "day": D1, "at": dt.datetime(2026, 11, 18, 21, 5, 7, 123),
             "amount": Decimal("12.345678"), "doc": {"x": [1, 2.5]}, "flag": True,
             "blob": b"\x00\xff"},
            {"k": "b", "day": None, "at": None, "amount": None, "doc": None, "flag": None,
             "blob": b""},
            {"k": "c", "day": D1, "at": None, "amount": 0.5, "doc": [], "flag": False,
             "blob": bytes(range(256))}]
    update = {"k": ["a", "c"], "day": [D2, None], "doc": [None, {"y": 1}]}

    async def go(conn: Any) -> tuple[list, list]:
        await conn.run_sync(meta.create_all)
        await conn.execute(sa.insert(ref), rows)
        await upsert_rows(conn, fast, rows, key=["k"])
        for t in (ref, fast):
            stmt = sa.update(t).where(t.c.k == sa.bindparam("key")).values(
                day=sa.bindparam("d", type_=sa.Date), doc=sa.bindparam("j", type_=sa.JSON))
            if t is ref:
                await conn.execute(stmt, [{"key": k, "d": d, "j": j} for k, d, j in zip(
                    update["k"], update["day"], update["doc"], strict=True)])
            else:
                await execute_many(conn, stmt, {"key": update["k"], "d": update["day"],
                                                "j": update["doc"]})
        raw = [(await conn.exec_driver_sql(f"SELECT * FROM {t} ORDER BY k")).all()
               for t in ("ref", "fast")]
        return raw[0], raw[1]

    stored_ref, stored_fast = _run(f"sqlite+aiosqlite:///{tmp_path / 'x.db'}", go)
    assert stored_fast == stored_ref
    assert stored_ref[1][4] == "null" and stored_ref[0][1] == "2026-11-19"
    assert [r[6] for r in stored_fast] == [b"\x00\xff", b"", bytes(range(256))]


def test_bars_store_nan_as_null_and_six_decimals(database_url: str) -> None:
    """``upsert_bars``: a NaN field (a delivery without an open, or without a volume) is
    stored as NULL, every other value rounded to the column's 6 decimals."""
    bars = pd.DataFrame({"symbol": ["AAA", "AAA", "BBB"], "date": [D1, D2, D1],
                         "open": [np.nan, 1.0000004, 2.5], "high": [3.0, 3.0, 3.0],
                         "low": [1.0, 1.0, 1.0], "close": [2.1234565, 2.0, 2.5],
                         "adj_close": [2.0, 2.0, 2.5], "volume": [1e6, np.nan, 0.0]})
    assert _run(database_url, lambda c: price_repo.upsert_bars(c, bars)) == 3
    stored = _run(database_url, _all_prices)
    assert stored[("AAA", D1)][0] is None and stored[("AAA", D2)][2] is None
    assert stored[("AAA", D2)][0] == Decimal("1.000000")
    assert stored[("AAA", D1)][1] == Decimal(str(np.round(2.1234565, 6)))
    assert stored[("BBB", D1)] == (Decimal("2.5"), Decimal("2.5"), 0.0)


@pytest.mark.parametrize("chunk_rows", [10_000, 2])
def test_position_values_move_forward_only(database_url: str, chunk_rows: int,
                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """``update_position_values`` (one ``UPDATE … FROM unnest`` per chunk on PostgreSQL, an
    executemany elsewhere or when an id repeats): a value dated on or after the stored date
    replaces it, an older one changes nothing, a position never valued takes any; an id given
    twice ends as the rows applied in order would leave it."""
    monkeypatch.setattr(repo, "UPSERT_CHUNK_ROWS", chunk_rows)
    d0, d3 = dt.date(2026, 11, 17), dt.date(2026, 11, 20)

    async def go(conn: Any) -> dict[str, tuple[Any, Any]]:
        uid = await user_repo.create_user(conn, "u", "h")
        pid = await repo.create_portfolio(conn, uid, "p", Decimal("10"))
        ids = await repo.add_positions(conn, pid, [
            {"id": f"pos{i}", "symbol": "AAA", "quantity": Decimal(1), "entry_date": d0,
             "entry_price": Decimal(1)} for i in range(5)])
        await repo.update_position_values(conn, [
            {"id": "pos1", "market_value": Decimal("10"), "market_value_date": D2},
            {"id": "pos2", "market_value": Decimal("20"), "market_value_date": D1},
            {"id": "pos3", "market_value": Decimal("30"), "market_value_date": D2},
            {"id": "pos4", "market_value": Decimal("40"), "market_value_date": D2}])
        await repo.update_position_values(conn, [
            {"id": "pos0", "market_value": Decimal("1.23456"), "market_value_date": D1},
            {"id": "pos1", "market_value": Decimal("11"), "market_value_date": D1},  # older
            {"id": "pos2", "market_value": Decimal("21"), "market_value_date": D2},  # newer
            {"id": "pos3", "market_value": None, "market_value_date": D2}])  # same day
        await repo.update_position_values(conn, [  # an id twice: the executemany's order
            {"id": "pos4", "market_value": Decimal("41"), "market_value_date": d3},
            {"id": "pos4", "market_value": Decimal("42"), "market_value_date": D2}])
        rows = (await conn.execute(sa.text(
            "SELECT id, market_value, market_value_date FROM positions"))).all()
        assert sorted(r[0] for r in rows) == sorted(ids)
        return {r[0]: (r[1], r[2]) for r in rows}

    got = _run(database_url, go)
    day = (lambda d: d.isoformat()) if database_url.startswith("sqlite") else (lambda d: d)
    money = (lambda x: str(x)) if database_url.startswith("sqlite") else Decimal
    assert got == {"pos0": (money("1.2346"), day(D1)), "pos1": (money("10.0000"), day(D2)),
                   "pos2": (money("21.0000"), day(D2)), "pos3": (None, day(D2)),
                   "pos4": (money("41.0000"), day(d3))}
