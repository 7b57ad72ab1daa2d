"""Set-based upserts for SQLite and PostgreSQL (``INSERT … ON CONFLICT DO UPDATE``)."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

UPSERT_CHUNK_ROWS = 10_000


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upsert is not implemented for {name}")


def upsert_statement(
    conn: AsyncConnection,
    table: sa.Table,
    key: Sequence[str],
    update: Sequence[str] | None = None,
) -> Any:
    """``INSERT … ON CONFLICT (key) DO UPDATE SET c = excluded.c`` for ``update`` columns.

    ``update=None`` updates every non-key column; ``update=()`` makes it
    ``DO NOTHING`` (insert-if-absent).
    """
    stmt = _insert(conn, table)
    columns = [c.name for c in table.columns if c.name not in key] if update is None else update
    if not columns:
        return stmt.on_conflict_do_nothing(index_elements=list(key))
    return stmt.on_conflict_do_update(
        index_elements=list(key), set_={c: stmt.excluded[c] for c in columns}
    )


async def upsert_rows(
    conn: AsyncConnection,
    table: sa.Table,
    rows: Iterable[dict[str, Any]],
    key: Sequence[str],
    update: Sequence[str] | None = None,
    chunk_rows: int = UPSERT_CHUNK_ROWS,
) -> int:
    """Upsert ``rows`` (dicts keyed by column name) in chunks; returns the number of rows sent.

    Each chunk is one executemany of one statement, never a round trip per row.
    """
    stmt = upsert_statement(conn, table, key, update)
    batch: list[dict[str, Any]] = []
    sent = 0
    for row in rows:
        batch.append(row)
        if len(batch) >= chunk_rows:
            await conn.execute(stmt, batch)
            sent += len(batch)
            batch = []
    if batch:
        await conn.execute(stmt, batch)
        sent += len(batch)
    return sent
