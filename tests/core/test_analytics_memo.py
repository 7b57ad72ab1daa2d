"""AnalyticsMemo against a real migrated database (SQLite and PostgreSQL): an entry lives
exactly as long as the stored cache row it came from is unchanged."""

from __future__ import annotations

import asyncio
import datetime as dt
import time
from decimal import Decimal

import sqlalchemy as sa

from core.db.engine import create_engine, transaction
from core.db.models import Portfolio, PortfolioAnalyticsCache
from core.repositories import portfolios as repo
from core.repositories import users as user_repo
from core.services.analytics_cache import (
    AnalyticsMemo,
    MemoEntry,
    row_token,
    stored_token,
)

DAY = dt.date(2026, 11, 20)
KINDS = ("overview", "correlations")

PORTFOLIOS = Portfolio.__table__  # type: ignore[attr-defined]
ANALYTICS_CACHE = PortfolioAnalyticsCache.__table__  # type: ignore[attr-defined]


async def _seed(engine) -> tuple[str, list[str]]:  # type: ignore[no-untyped-def]
    async with transaction(engine) as conn:
        owner = await user_repo.create_user(conn, "ann", "h" * 64)
        ids = [await repo.create_portfolio(conn, owner, f"p{i}", Decimal(0)) for i in range(2)]
        now = dt.datetime.now(dt.UTC)
        await conn.execute(sa.insert(ANALYTICS_CACHE), [
            {"portfolio_id": pid, "kind": kind, "positions_hash": "x", "data_date": DAY,
             "payload": {"kind": kind}, "created_at": now}
            for pid in ids for kind in KINDS])
    return owner, ids


async def _fill(engine, memo: AnalyticsMemo, owner: str,  # type: ignore[no-untyped-def]
                ids: list[str]) -> None:
    """Entries as the service makes them: the token read from the stored rows."""
    async with engine.connect() as conn:
        rows = (await conn.execute(repo.analytics_tokens_query(), {"ids": ids})).all()
    for row in rows:
        memo.put((row.id, row.kind, None), MemoEntry(row_token(row), {"kind": row.kind}, owner))


async def _latest(_engine) -> dt.date:  # type: ignore[no-untyped-def]
    return DAY


def _with_engine(url: str, scenario) -> None:  # type: ignore[no-untyped-def]
    """Run ``scenario(engine)`` on a fresh engine for ``url``, disposed afterwards."""
    async def run() -> None:
        engine = create_engine(url)
        try:
            await scenario(engine)
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_validation_drops_exactly_the_changed_entries(database_url: str) -> None:
    async def scenario(engine) -> None:  # type: ignore[no-untyped-def]
        owner, ids = await _seed(engine)
        memo = AnalyticsMemo()
        await _fill(engine, memo, owner, ids)
        assert len(memo.entries) == 4
        assert await memo.validate(engine, _latest) == 0  # nothing changed

        later = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=5)
        async with transaction(engine) as conn:  # another process changes p0 ...
            await conn.execute(sa.update(PORTFOLIOS).where(PORTFOLIOS.c.id == ids[0]).values(
                updated_at=later))
            await conn.execute(sa.delete(ANALYTICS_CACHE).where(  # ... and drops one row of p1
                ANALYTICS_CACHE.c.portfolio_id == ids[1], ANALYTICS_CACHE.c.kind == "correlations"))
        assert await memo.validate(engine, _latest) == 3
        assert list(memo.entries) == [(ids[1], "overview", None)]

        async def next_day(_engine):  # type: ignore[no-untyped-def]
            return DAY + dt.timedelta(days=1)

        assert await memo.validate(engine, next_day) == 1  # new data: all answers old
        assert memo.entries == {}

        await _fill(engine, memo, owner, ids)
        async with transaction(engine) as conn:  # soft-deleted
            await conn.execute(sa.update(PORTFOLIOS).where(PORTFOLIOS.c.id == ids[1]).values(
                deleted_at=later))
        await memo.validate(engine, _latest)
        assert {k[0] for k in memo.entries} == {ids[0]}

    _with_engine(database_url, scenario)


def test_an_entry_is_served_to_its_owner_only_and_forgotten_on_change() -> None:
    memo = AnalyticsMemo(size=3)
    entry = MemoEntry(("u", "c", DAY, "h"), {"a": 1}, "owner")
    memo.put(("p1", "overview", None), entry)
    assert memo.get(("p1", "overview", None), "owner") is entry
    assert memo.get(("p1", "overview", None), "someone else") is None
    assert entry.data_date == DAY
    memo.put(("p1", "correlations", None), entry)
    memo.put(("p2", "overview", None), entry)
    memo.forget("p1")
    assert list(memo.entries) == [("p2", "overview", None)]
    for i in range(3):  # bounded: cleared whole when full
        memo.put((f"q{i}", "overview", None), entry)
    assert len(memo.entries) == 1


def test_validation_runs_in_the_background_and_a_failure_empties_the_memo(
        database_url: str) -> None:
    async def scenario(engine) -> None:  # type: ignore[no-untyped-def]
        owner, ids = await _seed(engine)
        memo = AnalyticsMemo(interval=0.0, max_age=60.0)
        await _fill(engine, memo, owner, ids)
        memo.validated_at = time.monotonic()  # validated just now
        async with transaction(engine) as conn:
            await conn.execute(sa.delete(ANALYTICS_CACHE).where(
                ANALYTICS_CACHE.c.portfolio_id == ids[0]))
        await memo.ensure_valid(engine, _latest)  # due: started, not waited for
        assert len(memo.entries) == 4 and memo._task is not None
        await memo._task
        assert {k[0] for k in memo.entries} == {ids[1]}

        async def broken(_engine):  # type: ignore[no-untyped-def]
            raise ConnectionError("database unreachable")

        memo.validated_at = float("-inf")  # older than max_age: the read waits
        await memo.ensure_valid(engine, broken)
        await asyncio.sleep(0)  # the done callback
        assert memo.entries == {} and memo._task is None

    _with_engine(database_url, scenario)


def test_the_tokens_query_reads_one_row_per_kind_and_none_for_an_uncached_portfolio(
        database_url: str) -> None:
    async def scenario(engine) -> None:  # type: ignore[no-untyped-def]
        owner, ids = await _seed(engine)
        async with transaction(engine) as conn:
            bare = await repo.create_portfolio(conn, owner, "bare", Decimal(0))
        async with engine.connect() as conn:
            rows = (await conn.execute(repo.analytics_tokens_query(), {"ids": [*ids, bare]})).all()
        assert sorted((r.id, r.kind or "") for r in rows) == sorted(
            [(pid, k) for pid in ids for k in KINDS] + [(bare, "")])
        assert {row_token(r)[2] for r in rows if r.kind} == {DAY}
        async with engine.connect() as conn:
            assert await stored_token(conn, bare, "overview") == (owner, None)
            assert await stored_token(conn, "no-such-id", "overview") is None
            found = await stored_token(conn, ids[0], "correlations")
        assert found is not None and found[0] == owner and found[1] is not None
        assert found[1][2] == DAY and found[1][3] == "x"

    _with_engine(database_url, scenario)
