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
    return ap


def isolated_environment(prefix: str, max_workers: int | None = None,
                         keep: bool = False) -> Path:
    """A fresh temporary FACTORFLOW_HOME (and PREFECT_HOME unless a Prefect API is set),
    removed when the process exits unless ``keep``."""
    workdir = Path(tempfile.mkdtemp(prefix=prefix))
    if not keep:  # registered first, so it runs after Prefect has stopped its local server
        atexit.register(shutil.rmtree, workdir, True)
    os.environ["FACTORFLOW_HOME"] = str(workdir / "home")
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


def sqlite_floor(database: str, reads: list[tuple[str, tuple]],
                 writes: list[tuple[str, str, tuple]]) -> dict[str, float | int]:
    """The floor of a run on SQLite: the time to read exactly the rows it needs and to write
    exactly the rows it wrote, with nothing else, through the stdlib driver (the one the
    flows' bulk reads use; writes are one ``INSERT OR REPLACE`` per table, ``executemany``,
    one transaction, committed like the flows' writes).

    Parameters
    ----------
    database : str
        Path of the SQLite file (the run's own database, after the run).
    reads : list of (sql, params)
        The run's reads, each fetched whole (``fetchall``).
    writes : list of (table, where, params)
        The run's written rows: ``SELECT * FROM table WHERE where`` (not timed) is written
        back over itself (timed), leaving the database as it was.

    Returns
    -------
    dict
        ``read_s``, ``write_s``, ``floor_s`` (their sum), ``rows_read``, ``rows_written``.
    """
    import sqlite3
    import time

    con = sqlite3.connect(database, timeout=60)
    try:
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")
        t = time.perf_counter()
        rows_read = sum(len(con.execute(sql, params).fetchall()) for sql, params in reads)
        read_s = time.perf_counter() - t
        batches = []
        for table, where, params in writes:
            cur = con.execute(f"SELECT * FROM {table} WHERE {where}", params)
            cols = [d[0] for d in cur.description]
            batches.append((table, cols, cur.fetchall()))
        t = time.perf_counter()
        with con:
            for table, cols, rows in batches:
                names = ", ".join(f'"{c}"' for c in cols)
                con.executemany(f"INSERT OR REPLACE INTO {table} ({names}) VALUES "
                                f"({', '.join('?' * len(cols))})", rows)
        write_s = time.perf_counter() - t
    finally:
        con.close()
    return {"read_s": round(read_s, 3), "write_s": round(write_s, 3),
            "floor_s": round(read_s + write_s, 3), "rows_read": rows_read,
            "rows_written": sum(len(b[2]) for b in batches)}
