"""Benchmark of the symbol flow on a synthetic universe (not a test; prints figures).

    python bench/symbol_batch.py [--symbols N] [--sample K] [--json]

Runs the real Prefect flow on a fresh SQLite database in a temporary directory:
the initial 1-year load (first run, previous session; the bench sets
FACTORFLOW_LOOKBACK_DAYS=380 for all its runs, the history new symbols got before issue 14,
so the figures stay comparable: with the default 760 a first load fetches ~2 years, and
nights extend stored 1-year histories), then one nightly day, then the
same night again (a retry: nothing new, only the re-requests of the data-trust rules),
then a backfill of the two sessions before the nightly one, which re-delivers about a
year of stored history for every symbol, each row reviewed against the stored one (the
worst case of the re-delivery rules: compare it with the initial load, which wrote the
same rows without review), then times the factor engine alone against a per-symbol
statsmodels/scikit-learn loop on the same windows. With ``--json`` the last stdout line
is one JSON object.

The nightly's floor (``nightly_floor_s``, and ``nightly_vs_floor`` = nightly / floor) is
measured on the same database right after the nightly run: the time to read exactly the
rows the night needs and to write exactly the rows it wrote, with nothing else
(:func:`nightly_floor`). Prefect's start-up is reported apart (``prefect_startup_s``).
``peak_rss_mb_after`` is the process's peak RSS after each flow run (first load, nightly,
backfill): the flows' own, before this bench's comparisons.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import sys
import time

from common import bench_parser, isolated_environment, peak_rss_mb, report

ONE_YEAR_DAYS = 380
"""Calendar days of history for a new symbol in this bench (1 year, as before issue 14)."""


def nightly_floor(day: dt.date, first_day: dt.date) -> dict[str, float | int]:
    """The night's floor on its own database: reading the rows the factor phase needs (every
    symbol's prices over ``HISTORY_SESSIONS`` sessions, the splits, the universe) and writing
    the rows the night wrote (the prices of its two sessions, the factor exposures, metrics
    and findings of the day, the symbols' states), nothing else (``common.database_floor``)."""
    from common import database_floor

    from core import calendar
    from core.db.engine import flow_engine
    from core.symbol_steps import HISTORY_SESSIONS

    lo = calendar.sessions_back(day, HISTORY_SESSIONS)
    d = day
    reads = [("SELECT symbol, date, close, adj_close FROM prices WHERE date >= ? AND date <= ?",
              (lo, d)),
             ("SELECT symbol, date, value FROM corporate_actions WHERE kind = 'split' AND "
              "date >= ? AND date <= ?", (lo, d)),
             ("SELECT * FROM symbols", ())]
    writes = [("prices", "date >= ?", (first_day,)),
              ("symbol_factor_exposures", "date = ?", (d,)),
              ("symbol_daily_metrics", "date = ?", (d,)),
              ("data_check_findings", "as_of = ?", (d,)),
              ("symbols", "TRUE", ())]
    return database_floor(flow_engine().url.render_as_string(hide_password=False), reads,
                          writes)


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--symbols", type=int, default=1000)
    ap.add_argument("--sample", type=int, default=1000, help="symbols in the reference loop")
    ap.add_argument("--workers", type=int, default=None, help="task-runner threads")
    args = ap.parse_args()

    workdir = isolated_environment("factorflow-bench-", args.workers, args.keep,
                                   args.database_url)
    os.environ["FACTORFLOW_LOOKBACK_DAYS"] = str(ONE_YEAR_DAYS)
    import numpy as np
    from prefect import flow

    from core import calendar
    from core.db import migrate
    from core.db.engine import reading
    from core.factors.definitions import MAX_WINDOW, REFERENCE_ETFS
    from core.factors.engine import compute_factor_exposures
    from core.factors.reference import reference_factor_exposures
    from core.factors.returns import simple_returns
    from core.providers.synthetic import SyntheticProvider
    from core.repositories import prices as price_repo
    from core.symbol_steps import register_universe
    from flows.symbol_batch import symbol_batch

    @flow(name="bench-noop")
    def noop() -> int:
        return 1

    out: dict[str, float | int | str] = {"symbols": args.symbols,
                                         "history_days (set: 1-year load)": ONE_YEAR_DAYS}
    t = time.perf_counter()
    noop()
    out["prefect_startup_s"] = round(time.perf_counter() - t, 3)

    migrate.upgrade()
    symbols = SyntheticProvider().universe(args.symbols)
    asyncio.run(register_universe(symbols))
    nightly_day = calendar.latest_completed_session()
    first_day = calendar.previous_session(nightly_day)

    t = time.perf_counter()
    first = symbol_batch(as_of=first_day)
    out["initial_load_s"] = round(time.perf_counter() - t, 3)
    out["initial_price_rows"] = first["counts"]["price_rows"]
    out["initial_phases_s"] = json.dumps({k: round(v, 2) for k, v in first["seconds"].items()})
    rss_after = {"initial_load": round(peak_rss_mb(), 1)}
    t = time.perf_counter()
    nightly = symbol_batch(as_of=nightly_day)
    out["nightly_s"] = round(time.perf_counter() - t, 3)
    out["nightly_price_rows"] = nightly["counts"]["price_rows"]
    out["nightly_factor_rows"] = nightly["counts"]["factor_rows"]
    out["nightly_phases_s"] = json.dumps({k: round(v, 2) for k, v in nightly["seconds"].items()})
    out["status"] = nightly["status"]
    rss_after["nightly"] = round(peak_rss_mb(), 1)

    t = time.perf_counter()
    again = symbol_batch(as_of=nightly_day)
    out["rerun_s"] = round(time.perf_counter() - t, 3)
    out["rerun_price_rows"] = again["counts"]["price_rows"]
    out["rerun_repairs_requested"] = again["counts"]["repairs_requested"]

    t = time.perf_counter()
    back = symbol_batch(start=calendar.previous_session(first_day), end=first_day)
    out["backfill_redelivery_s"] = round(time.perf_counter() - t, 3)
    out["backfill_phases_s"] = json.dumps({k: round(v, 2) for k, v in back["seconds"].items()})
    out["backfill_rows_written"] = back["counts"]["price_rows"]
    out["backfill_prices_replaced"] = back["counts"]["prices_replaced"]
    out["backfill_restatements_rejected"] = back["counts"]["restatements_rejected"]
    out["backfill_vs_initial_load"] = round(
        out["backfill_redelivery_s"] / out["initial_load_s"], 2)
    rss_after["backfill"] = round(peak_rss_mb(), 1)
    out["peak_rss_mb_after"] = json.dumps(rss_after)  # the flows' own peak, phase by phase

    # The engine alone, on the nightly window read back from the database.
    async def load() -> price_repo.PriceMatrix:
        async with reading() as conn:
            start = calendar.sessions_back(nightly_day, MAX_WINDOW)
            etfs = [e for e in REFERENCE_ETFS if e not in symbols]
            return await price_repo.load_price_matrix(conn, symbols + etfs, start, nightly_day)

    pm = asyncio.run(load())

    async def load_rows() -> tuple[np.ndarray, np.ndarray]:
        """The same window read row by row (the path before ``price_blocks``)."""
        close, adj = np.full_like(pm.close, np.nan), np.full_like(pm.close, np.nan)
        row = {d.isoformat(): i for i, d in enumerate(pm.sessions)}
        col = {s: j for j, s in enumerate(pm.symbols)}
        async with reading() as conn:
            for i in range(0, len(pm.symbols), 900):
                rows, _ = await price_repo._price_rows(conn, pm.symbols[i : i + 900],
                                                        pm.sessions[0], pm.sessions[-1])
                for s, d, c, a in rows:
                    day = d if isinstance(d, str) else d.isoformat()  # SQLite: ISO text
                    if day in row:
                        close[row[day], col[s]], adj[row[day], col[s]] = c, a
        return close, adj

    rows_close, rows_adj = asyncio.run(load_rows())
    same_nan = (np.array_equal(np.isnan(rows_close), np.isnan(pm.close))
                and np.array_equal(np.isnan(rows_adj), np.isnan(pm.adj_close)))
    gap = max(np.nanmax(np.abs(rows_close - pm.close), initial=0.0),
              np.nanmax(np.abs(rows_adj - pm.adj_close), initial=0.0))
    out["window_blocks_vs_rows_max_abs_diff"] = float(gap) if same_nan else "NaN differs"
    n = len(symbols)
    rets = simple_returns(pm.adj_close)
    col = {s: j for j, s in enumerate(pm.symbols)}
    etf = {e: rets[:, col[e]] for e in REFERENCE_ETFS}
    y = rets[:, :n]
    compute_factor_exposures(y[:, :10], etf)  # warm-up
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        fx = compute_factor_exposures(y, etf)
        best = min(best, time.perf_counter() - t)
    out["engine_s"] = round(best, 4)
    out["engine_per_symbol_us"] = round(best / n * 1e6, 2)

    k = min(args.sample, n)
    idx = np.linspace(0, n - 1, k).astype(int)
    t = time.perf_counter()
    ref = reference_factor_exposures(y[:, idx], etf)
    ref_s = time.perf_counter() - t
    out["reference_sample"] = k
    out["reference_per_symbol_us"] = round(ref_s / k * 1e6, 1)
    out["speedup"] = round(out["reference_per_symbol_us"] / out["engine_per_symbol_us"], 1)
    a, b = fx.beta[:, idx], ref.beta
    both = np.isfinite(a) & np.isfinite(b)
    out["nan_pattern_equal"] = bool((np.isfinite(a) == np.isfinite(b)).all())
    out["max_abs_diff"] = float(np.max(np.abs(a[both] - b[both]))) if both.any() else 0.0
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)  # the flows' (and this bench's), before the floor
    # the floor last: its own reads hold a year of rows in memory. The rows it reads and
    # writes are those of the nightly's date, which the rerun and backfill left as they were.
    try:
        floor = nightly_floor(nightly_day, first_day)
    except Exception as exc:  # the figures above are still worth printing
        out["nightly_floor_error"] = f"{type(exc).__name__}: {exc}"
    else:
        out["nightly_floor_s"] = floor["floor_s"]
        out["nightly_floor_parts"] = json.dumps(floor)
        out["nightly_vs_floor"] = round(out["nightly_s"] / floor["floor_s"], 2)
    out["workdir"] = str(workdir) if args.keep else None
    report(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
