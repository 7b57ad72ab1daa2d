"""Set-based upserts for SQLite and PostgreSQL (``INSERT … ON CONFLICT DO UPDATE``).

SQLite: one driver-level executemany of the compiled upsert per chunk of rows, each value
passed through its column type's own bind processor (the conversion SQLAlchemy's
executemany makes, without its per-row machinery: 2.6 million price rows spent ~6 s of
the GIL in it). PostgreSQL: one statement per chunk that unnests one array per column
(``INSERT … SELECT * FROM unnest($1::…[], …)``): a single round trip with as many bind
parameters as columns, whatever the number of rows (asyncpg allows 32,767 per statement),
about 2-3x faster than an executemany there.

:func:`upsert_columns` takes the values column by column (no dict per row);
:func:`upsert_rows` takes dicts; :func:`execute_many` runs any statement (an UPDATE) once
per row the same way.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection

UPSERT_CHUNK_ROWS = 10_000
FLOAT8_DIGITS = 15
"""PostgreSQL turns a float8 into numeric with 15 significant digits (DBL_DIG)."""


def _insert(conn: AsyncConnection, table: sa.Table) -> Any:
    name = conn.dialect.name
    if name == "postgresql":
        return postgresql.insert(table)
    if name == "sqlite":
        return sqlite.insert(table)
    raise NotImplementedError(f"upsert is not implemented for {name}")


def _on_conflict(
    stmt: Any, table: sa.Table, key: Sequence[str], update: Sequence[str] | None
) -> Any:
    columns = [c.name for c in table.columns if c.name not in key] if update is None else update
    if not columns:
        return stmt.on_conflict_do_nothing(index_elements=list(key))
    return stmt.on_conflict_do_update(
        index_elements=list(key), set_={c: stmt.excluded[c] for c in columns}
    )


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
    return _on_conflict(_insert(conn, table), table, key, update)


async def upsert_rows(
    conn: AsyncConnection,
    table: sa.Table,
    rows: Iterable[dict[str, Any]],
    key: Sequence[str],
    update: Sequence[str] | None = None,
    chunk_rows: int = UPSERT_CHUNK_ROWS,
) -> int:
    """Upsert ``rows`` (dicts keyed by column name) in chunks; returns the number of rows sent.

    Each chunk is one statement (PostgreSQL) or one executemany of one statement (SQLite),
    never a round trip per row. Within a chunk, a key given twice ends with its last row
    (with ``update=()``: its first).
    """
    batch: list[dict[str, Any]] = []
    sent = 0

    async def flush() -> None:
        if any(set(r) != set(batch[0]) for r in batch):  # SQLAlchemy names what is missing
            await conn.execute(upsert_statement(conn, table, key, update), batch)
        else:
            await _upsert_chunk(conn, table, {n: [r[n] for r in batch] for n in batch[0]},
                                key, update)

    for row in rows:
        batch.append(row)
        if len(batch) >= chunk_rows:
            await flush()
            sent += len(batch)
            batch = []
    if batch:
        await flush()
        sent += len(batch)
    return sent


async def upsert_columns(
    conn: AsyncConnection,
    table: sa.Table,
    columns: Mapping[str, Sequence[Any]],
    key: Sequence[str],
    update: Sequence[str] | None = None,
    chunk_rows: int = UPSERT_CHUNK_ROWS,
) -> int:
    """Upsert rows given column by column (``columns``: name → values, all the same length;
    Python values as for :func:`upsert_rows`); returns the number of rows sent.

    The same statement and rules as :func:`upsert_rows` (a key given twice within a chunk
    ends with its last row; with ``update=()`` its first), without a dict per row.
    """
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of different lengths: {sorted(lengths)}")
    n = lengths.pop() if lengths else 0
    for i in range(0, n, chunk_rows):
        await _upsert_chunk(conn, table, {c: v[i : i + chunk_rows] for c, v in columns.items()},
                            key, update)
    return n


async def _upsert_chunk(
    conn: AsyncConnection,
    table: sa.Table,
    columns: dict[str, Sequence[Any]],
    key: Sequence[str],
    update: Sequence[str] | None,
) -> None:
    """One chunk of rows, column by column, in one statement or one executemany."""
    if conn.dialect.name == "postgresql":
        await _pg_upsert_chunk(conn, table, {c: list(v) for c, v in columns.items()}, key,
                               update)
        return
    stmt = upsert_statement(conn, table, key, update)
    if any(c.name not in columns and c.default is not None for c in table.columns):
        await conn.execute(stmt, _rows_of(columns))  # SQLAlchemy applies the Core defaults
        return
    await _driver_executemany(conn, stmt.compile(dialect=conn.dialect,
                                                 column_keys=list(columns)), columns)


async def execute_many(conn: AsyncConnection, stmt: Any,
                       columns: Mapping[str, Sequence[Any]]) -> None:
    """Run ``stmt`` once per row of ``columns`` (bind name → values, all the same length).

    SQLite: the driver's executemany of the compiled statement (see the module's notes);
    elsewhere SQLAlchemy's executemany.
    """
    n = len(next(iter(columns.values()), ()))
    if not n:
        return
    if conn.dialect.name != "sqlite":
        await conn.execute(stmt, _rows_of(columns))
        return
    compiled = stmt.compile(dialect=conn.dialect, column_keys=list(columns))
    await _driver_executemany(conn, compiled, columns)


def _rows_of(columns: Mapping[str, Sequence[Any]]) -> list[dict[str, Any]]:
    """The rows of ``columns`` (name → values) as dicts."""
    n = len(next(iter(columns.values()), ()))
    return [{c: v[i] for c, v in columns.items()} for i in range(n)]


async def _driver_executemany(conn: AsyncConnection, compiled: Any,
                              columns: Mapping[str, Sequence[Any]]) -> None:
    """``compiled`` (a statement with positional parameters) run by the driver's
    executemany, each value converted by its parameter type's bind processor (as
    SQLAlchemy would, e.g. a date to ISO text)."""
    dialect = conn.dialect
    n = len(next(iter(columns.values())))
    values = []
    for name in compiled.positiontup or ():
        bind = compiled.binds[name]
        col = columns[name] if name in columns else [bind.effective_value] * n
        process = bind.type.dialect_impl(dialect).bind_processor(dialect)
        if process is None or (dialect.name == "sqlite" and isinstance(bind.type, sa.LargeBinary)
                               and all(type(v) is bytes for v in col)):
            values.append(col)  # sqlite3 binds bytes as a BLOB itself (its Binary is memoryview)
        elif isinstance(bind.type, sa.Date):  # few distinct dates (no time zone): once each
            memo: dict[Any, Any] = {}
            values.append([memo[v] if v in memo else memo.setdefault(v, process(v))
                           for v in col])
        else:  # None too: a JSON column stores it as 'null', as SQLAlchemy does
            values.append([process(v) for v in col])
    await conn.exec_driver_sql(str(compiled), list(zip(*values, strict=True)))


# --- PostgreSQL: INSERT … SELECT FROM unnest(arrays) ----------------------------------------

def _fits_float8(column_type: sa.types.TypeEngine, values: list[Any]) -> bool:
    """True when ``values`` (all float or None) survive float8 → ``column_type`` exactly:
    the column's scale plus the integer digits stay within float8's 15 digits."""
    if type(column_type) is not sa.Numeric:  # plain NUMERIC(p, s) only (not Money, not Float)
        return False
    if not set(map(type, values)) <= {float, type(None)}:  # C-speed scans, no Python loop
        return False
    limit = 10.0 ** (FLOAT8_DIGITS - (column_type.scale or 0))
    return max(map(abs, filter(None, values)), default=0.0) < limit


async def _pg_upsert_chunk(
    conn: AsyncConnection,
    table: sa.Table,
    columns: dict[str, list[Any]],
    key: Sequence[str],
    update: Sequence[str] | None,
) -> None:
    names = list(columns)
    missing = [c for c in table.columns if c.name not in names]
    for c in missing:  # Core scalar defaults, as an executemany would apply them
        if c.default is not None and not getattr(c.default, "is_scalar", False):
            await conn.execute(upsert_statement(conn, table, key, update), _rows_of(columns))
            return
    keys = list(zip(*(columns[k] for k in key), strict=True))
    # One row per key, as an executemany would leave it (a statement may not update a row
    # twice): the last row when updating, the first when only inserting. Rows go in key
    # order, so concurrent writers lock rows in one order (no deadlock between them).
    if update is None or len(update) > 0:
        chosen = {k: i for i, k in enumerate(keys)}
    else:
        chosen = {}
        for i, k in enumerate(keys):
            chosen.setdefault(k, i)
    order = sorted(chosen.values(), key=keys.__getitem__)
    if order != list(range(len(keys))):
        columns = {n: [v[i] for i in order] for n, v in columns.items()}
    n_rows = len(order)
    for c in missing:
        if c.default is not None:
            columns[c.name] = [c.default.arg] * n_rows  # type: ignore[attr-defined]
    arrays: list[sa.ColumnElement[Any]] = []
    params: dict[str, list[Any]] = {}
    for i, (name, values) in enumerate(columns.items()):
        col_type = table.c[name].type
        bind_name = f"_u{i}"
        params[bind_name] = values
        if _fits_float8(col_type, values):  # 8 bytes a value, no Decimal per value
            arrays.append(sa.cast(
                sa.bindparam(bind_name, type_=postgresql.ARRAY(sa.Float, dimensions=1)),
                postgresql.ARRAY(col_type, dimensions=1)))
        else:
            if type(col_type) is sa.Numeric:
                params[bind_name] = [
                    v if v is None or isinstance(v, Decimal) else Decimal(repr(v))
                    for v in values]
            arrays.append(sa.bindparam(
                bind_name, type_=postgresql.ARRAY(col_type, dimensions=1)))
    source = sa.func.unnest(*arrays).table_valued(*columns).render_derived()
    stmt = postgresql.insert(table).from_select(
        list(columns), sa.select(*[source.c[n] for n in columns]))
    await conn.execute(_on_conflict(stmt, table, key, update), params)
