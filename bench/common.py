"""Shared set-up of the benchmarks: an isolated FACTORFLOW_HOME / PREFECT_HOME, peak RSS, output."""

from __future__ import annotations

import argparse
import atexit
import json
import os
import resource
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def bench_parser(doc: str | None) -> argparse.ArgumentParser:
    """The benchmarks' common options: ``--json`` (last line one JSON object) and ``--keep``
    (keep the temporary databases and logs for a look afterwards)."""
    ap = argparse.ArgumentParser(description=(doc or "").splitlines()[0])
    ap.add_argument("--json", action="store_true", help="print one JSON object last")
    ap.add_argument("--keep", action="store_true",
                    help="keep the working directory (databases, logs); removed otherwise")
    ap.add_argument("--database-url", default=None,
                    help="an empty database to run on (e.g. postgresql+asyncpg://…); "
                         "default: a fresh SQLite file in the working directory")
    return ap


def isolated_environment(prefix: str, max_workers: int | None = None,
                         keep: bool = False, database_url: str | None = None) -> Path:
    """A fresh temporary FACTORFLOW_HOME (and PREFECT_HOME unless a Prefect API is set),
    removed when the process exits unless ``keep``; the database is ``database_url`` (an
    empty one) or a fresh SQLite file there."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    if not keep:  # registered first, so it runs after Prefect has stopped its local server
        atexit.register(shutil.rmtree, workdir, True)
    os.environ["FACTORFLOW_HOME"] = str(workdir / "home")
    if database_url:
        os.environ["FACTORFLOW_DATABASE_URL"] = database_url
    else:
        os.environ.pop("FACTORFLOW_DATABASE_URL", None)
    os.environ["FACTORFLOW_PRICE_PROVIDER"] = "synthetic"
    if max_workers:
        os.environ["FACTORFLOW_MAX_WORKERS"] = str(max_workers)
    if "PREFECT_API_URL" not in os.environ:
        os.environ["PREFECT_HOME"] = str(workdir / "prefect")
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    from cli.main import _quiet_shutdown

    _quiet_shutdown()
    return workdir


def peak_rss_mb() -> float:
    """Peak resident memory of this process in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def report(out: dict[str, Any], as_json: bool) -> None:
    """Print the figures aligned, then (``--json``) one JSON object as the last line."""
    width = max(len(k) for k in out)
    for key, val in out.items():
        print(f"{key:<{width}}  {val}")
    if as_json:
        print(json.dumps(out))


def database_floor(url: str, reads: list[tuple[str, tuple]],
                   writes: list[tuple[str, str, tuple]]) -> dict[str, float | int]:
    """The floor of a run: the time to read exactly the rows it needs and to write exactly
    the rows it wrote, with nothing else, on the run's own database after the run.

    SQLite through the stdlib driver (the one the flows' bulk reads use): each read fetched
    whole, the writes one ``INSERT OR REPLACE`` ``executemany`` per table in one
    transaction. PostgreSQL through asyncpg (the flows' driver): each read fetched whole, the
    writes one ``COPY`` into a scratch table and one ``INSERT … ON CONFLICT DO UPDATE`` from it
    per table, in one transaction. Either leaves the database as it was.

    Parameters
    ----------
    url : str
        The run's database URL (``sqlite+aiosqlite:///…`` or ``postgresql+asyncpg://…``).
    reads : list of (sql, params)
        The run's reads, with ``?`` placeholders and Python values (dates as ``date``).
    writes : list of (table, where, params)
        The run's written rows: ``SELECT * FROM table WHERE where`` (not timed) is written
        back over itself (timed).

    Returns
    -------
    dict
        ``read_s``, ``write_s``, ``floor_s`` (their sum), ``rows_read``, ``rows_written``.
    """
    if url.startswith("sqlite"):
        return _sqlite_floor(url.split(":///", 1)[1], reads, writes)
    import asyncio

    return asyncio.run(_postgres_floor(url, reads, writes))


def _figures(read_s: float, write_s: float, rows_read: int,
             rows_written: int) -> dict[str, float | int]:
    return {"read_s": round(read_s, 3), "write_s": round(write_s, 3),
            "floor_s": round(read_s + write_s, 3), "rows_read": rows_read,
            "rows_written": rows_written}


def _iso(params: tuple) -> tuple:
    import datetime as dt

    return tuple(p.isoformat() if isinstance(p, dt.date) else p for p in params)


def _sqlite_floor(database: str, reads: list[tuple[str, tuple]],
                  writes: list[tuple[str, str, tuple]]) -> dict[str, float | int]:
    import sqlite3
    import time

    con = sqlite3.connect(database, timeout=60)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        t = time.perf_counter()
        rows_read = sum(len(con.execute(sql, _iso(params)).fetchall())
                        for sql, params in reads)
        read_s = time.perf_counter() - t
        batches = []
        for table, where, params in writes:
            cur = con.execute(f"SELECT * FROM {table} WHERE {where}", _iso(params))
            batches.append((table, [d[0] for d in cur.description], cur.fetchall()))
        t = time.perf_counter()
        with con:
            for table, cols, rows in batches:
                names = ", ".join(f'"{c}"' for c in cols)
                con.executemany(f"INSERT OR REPLACE INTO {table} ({names}) VALUES "
                                f"({', '.join('?' * len(cols))})", rows)
        write_s = time.perf_counter() - t
    finally:
        con.close()
    return _figures(read_s, write_s, rows_read, sum(len(b[2]) for b in batches))


def _numbered(sql: str) -> str:
    """``?`` placeholders as asyncpg's ``$1, $2, …``."""
    parts = sql.split("?")
    return "".join(p + (f"${i + 1}" if i < len(parts) - 1 else "")
                   for i, p in enumerate(parts))


async def _postgres_floor(url: str, reads: list[tuple[str, tuple]],
                          writes: list[tuple[str, str, tuple]]) -> dict[str, float | int]:
    import time

    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    try:
        t = time.perf_counter()
        rows_read = 0
        for sql, params in reads:
            rows_read += len(await conn.fetch(_numbered(sql), *params))
        read_s = time.perf_counter() - t
        batches = []
        for table, where, params in writes:
            rows = await conn.fetch(f"SELECT * FROM {table} WHERE {_numbered(where)}", *params)
            cols = list(rows[0].keys()) if rows else []
            batches.append((table, where, params, cols, [tuple(r) for r in rows]))
        keys = {table: [r[0] for r in await conn.fetch(
            "SELECT a.attname FROM pg_index i JOIN pg_attribute a ON a.attrelid = i.indrelid "
            "AND a.attnum = ANY(i.indkey) WHERE i.indrelid = $1::regclass AND i.indisprimary",
            table)] for table, *_ in batches}
        t = time.perf_counter()
        async with conn.transaction():
            for table, _, _, cols, rows in batches:
                if not rows:
                    continue
                scratch = f"floor_{table}"
                await conn.execute(f"CREATE TEMP TABLE {scratch} (LIKE {table}) ON COMMIT DROP")
                await conn.copy_records_to_table(scratch, records=rows, columns=cols)
                others = [c for c in cols if c not in keys[table]]
                conflict = ", ".join(f'"{k}"' for k in keys[table])  # "check" is reserved
                await conn.execute(
                    f"INSERT INTO {table} SELECT * FROM {scratch} ON CONFLICT ({conflict}) "
                    f"DO UPDATE SET "
                    + ", ".join(f'"{c}" = EXCLUDED."{c}"' for c in others))
        write_s = time.perf_counter() - t
    finally:
        await conn.close()
    return _figures(read_s, write_s, rows_read, sum(len(b[4]) for b in batches))
