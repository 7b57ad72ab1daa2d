"""One Alembic history: upgrade, downgrade to base, upgrade again; models equal migrations.

Each test runs on SQLite and on PostgreSQL (``empty_database_url``: a fresh, empty database).
"""

from __future__ import annotations

import asyncio
import datetime as dt
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import core.db.models  # noqa: F401
from core.db import migrate
from core.db.engine import create_engine


async def _inspect(url: str, fn: Any) -> Any:
    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(fn)
    finally:
        await engine.dispose()


def _tables(url: str) -> set[str]:
    return set(asyncio.run(_inspect(url, lambda c: sa.inspect(c).get_table_names())))


def test_upgrade_downgrade_upgrade(empty_database_url: str) -> None:
    url = empty_database_url
    migrate.upgrade(url)
    assert set(SQLModel.metadata.tables) | {"alembic_version"} == _tables(url)
    assert asyncio.run(migrate.current_revision(url)) == migrate.head_revision()
    migrate.downgrade(url, "base")
    assert _tables(url) <= {"alembic_version"}
    assert asyncio.run(migrate.current_revision(url)) is None
    migrate.upgrade(url)
    assert asyncio.run(migrate.current_revision(url)) == migrate.head_revision()
    assert set(SQLModel.metadata.tables) | {"alembic_version"} == _tables(url)


def test_models_and_migrations_agree(empty_database_url: str) -> None:
    migrate.upgrade(empty_database_url)

    def diff(conn: Connection) -> list:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(ctx, SQLModel.metadata))

    changes = asyncio.run(_inspect(empty_database_url, diff))
    assert changes == [], changes


def test_partial_unique_index_allows_reusing_a_deleted_name(empty_database_url: str) -> None:
    """``uq_portfolios_owner_name_live`` is partial on both databases: a soft-deleted
    portfolio's name may be reused, two live ones may not."""
    from core.db.models import Portfolio, User

    url = empty_database_url
    migrate.upgrade(url)
    now = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)

    def portfolio(pid: str, deleted: dt.datetime | None) -> dict[str, Any]:
        return {"id": pid, "owner_id": "u", "name": "book", "base_currency": "USD",
                "cash_balance": Decimal(0), "created_at": now, "updated_at": now,
                "deleted_at": deleted}

    async def run() -> bool:
        engine = create_engine(url)
        pf = Portfolio.__table__  # type: ignore[attr-defined]
        try:
            async with engine.begin() as conn:
                await conn.execute(sa.insert(User.__table__).values(  # type: ignore[attr-defined]
                    id="u", name="u", token_hash="h", is_admin=False, created_at=now))
                await conn.execute(sa.insert(pf), [portfolio("p1", now), portfolio("p2", None)])
            try:
                async with engine.begin() as conn:
                    await conn.execute(sa.insert(pf), [portfolio("p3", None)])
            except sa.exc.IntegrityError:
                return True
            return False
        finally:
            await engine.dispose()

    assert asyncio.run(run()), "two live portfolios with one name were accepted"
