"""Benchmark of SQLite writes beside a busy Python thread (not a test; prints figures).

    python bench/sqlite_convoy.py [--rows N] [--per-statement K] [--json]

Why the portfolio refresh's chunks run one at a time on SQLite (README, "Issue 16, sixth
step"): the stdlib driver releases the GIL around every ``sqlite3_step``, once per row of an
``executemany``, and while another thread runs Python each hand-back waits up to the
interpreter's switch interval before the GIL returns. The bench upserts the same ``N`` rows
into a fresh WAL database four ways, side by side in one run: an ``executemany`` and
multi-row statements of ``K`` rows (``INSERT … VALUES (…), (…), …``), each alone and beside
one thread running a pure-Python loop; then prints the times and the ratios.
"""

from __future__ import annotations

import itertools
import random
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from pathlib import Path

from common import bench_parser, report

COLUMNS = 7
UPSERT = ("INSERT INTO t VALUES {values} ON CONFLICT (pid, d, f) DO UPDATE SET "
          "beta = excluded.beta, dollars = excluded.dollars")


def _table(path: Path) -> sqlite3.Connection:
    path.unlink(missing_ok=True)
    con = sqlite3.connect(path, isolation_level=None)
    con.execute("PRAGMA journal_mode=WAL")
    con.execute("CREATE TABLE t (pid TEXT, d TEXT, f TEXT, beta REAL, dollars REAL, "
                "share REAL, weight REAL, PRIMARY KEY (pid, d, f))")
    return con


def _executemany(con: sqlite3.Connection, rows: list[tuple], per: int) -> None:
    con.executemany(UPSERT.format(values="(" + ", ".join("?" * COLUMNS) + ")"), rows)


def _multi_row(con: sqlite3.Connection, rows: list[tuple], per: int) -> None:
    group = "(" + ", ".join("?" * COLUMNS) + ")"
    for i in range(0, len(rows), per):
        part = rows[i : i + per]
        con.execute(UPSERT.format(values=", ".join([group] * len(part))),
                    tuple(itertools.chain.from_iterable(part)))


def _timed(write: Callable[[sqlite3.Connection, list[tuple], int], None], rows: list[tuple],
           per: int, busy: bool, path: Path) -> float:
    """Seconds to write ``rows`` in one transaction, with or without a busy Python thread."""
    con = _table(path)
    stop = threading.Event()

    def spin() -> None:
        x = 0
        while not stop.is_set():
            for i in range(1000):
                x += i * i

    thread = threading.Thread(target=spin, daemon=True) if busy else None
    if thread:
        thread.start()
    try:
        t = time.perf_counter()
        con.execute("BEGIN")
        write(con, rows, per)
        con.execute("COMMIT")
        return time.perf_counter() - t
    finally:
        stop.set()
        if thread:
            thread.join()
        con.close()


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--per-statement", type=int, default=4_000)
    args = ap.parse_args()
    rng = random.Random(7)
    rows = [(f"p{i // 12:06d}", "2026-12-01", f"F{i % 12}", rng.random(), rng.random() * 1e6,
             0.5, 0.25) for i in range(args.rows)]
    out: dict[str, object] = {"rows": args.rows, "per_statement": args.per_statement,
                              "sqlite": sqlite3.sqlite_version,
                              "switch_interval_ms": sys.getswitchinterval() * 1000}
    with tempfile.TemporaryDirectory(prefix="factorflow-bench-convoy-") as tmp:
        path = Path(tmp) / "convoy.db"
        for name, write in (("executemany", _executemany), ("multi_row", _multi_row)):
            for busy in (False, True):
                key = f"{name}_{'beside_busy_thread' if busy else 'alone'}_s"
                out[key] = round(_timed(write, rows, args.per_statement, busy, path), 3)
    out["executemany_busy_vs_alone"] = round(
        out["executemany_beside_busy_thread_s"] / out["executemany_alone_s"], 1)  # type: ignore[operator]
    out["multi_row_busy_vs_alone"] = round(
        out["multi_row_beside_busy_thread_s"] / out["multi_row_alone_s"], 1)  # type: ignore[operator]
    report(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
