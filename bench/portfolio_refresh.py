"""Benchmark of the portfolio flow (not a test; prints figures).

    python bench/portfolio_refresh.py [--portfolios N] [--positions K] [--symbols S] [--json]

On a fresh SQLite database: a synthetic universe of S symbols and one symbol batch
(the initial load), then N portfolios of about K positions each, then the real Prefect
portfolio flow for one day with everything persisted (snapshots, position values,
factor and sector exposures, correlation matrices, stress results, risk rows), and its
floor on the same database right after (``refresh_floor_s``, ``refresh_vs_floor``): the time
to read exactly the rows the refresh needs and to write exactly the rows it wrote
(:func:`refresh_floor`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import sys
import time

from common import bench_parser, isolated_environment, peak_rss_mb, report


def refresh_floor(as_of: dt.date) -> dict[str, float | int]:
    """The refresh's floor on its own database: reading the rows it needs (the held
    symbols' prices and volumes over the risk model's ``HISTORICAL_SESSIONS`` sessions,
    their factor exposures of the day, the portfolios, positions and last snapshots) and
    writing the rows it wrote (the day's snapshots, factor and sector exposures,
    correlations, stress results and risk rows, the positions' values), nothing else
    (``common.database_floor``)."""
    from common import database_floor

    from core import calendar
    from core.db.engine import flow_engine
    from core.risk.model import HISTORICAL_SESSIONS

    lo = calendar.sessions_back(as_of, HISTORICAL_SESSIONS + 1)
    d = as_of
    held = "symbol IN (SELECT DISTINCT symbol FROM positions)"
    reads = [(f"SELECT symbol, date, close, adj_close, volume FROM prices WHERE {held} AND "
              f"date >= ? AND date <= ?", (lo, d)),
             (f"SELECT * FROM symbol_factor_exposures WHERE {held} AND date = ?", (d,)),
             ("SELECT * FROM portfolios", ()), ("SELECT * FROM positions", ()),
             ("SELECT * FROM portfolio_snapshots WHERE date < ? AND date >= ?",
              (d, calendar.previous_session(as_of)))]
    writes = [(t, "date = ?", (d,)) for t in (
        "portfolio_snapshots", "portfolio_factor_exposures", "portfolio_sector_exposures",
        "portfolio_correlations", "stress_test_results", "portfolio_risk")]
    writes.append(("positions", "TRUE", ()))
    return database_floor(flow_engine().url.render_as_string(hide_password=False), reads,
                          writes)


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--portfolios", type=int, default=1000)
    ap.add_argument("--positions", type=int, default=25)
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    workdir = isolated_environment("factorflow-bench-portfolio-", args.workers, args.keep,
                                   args.database_url)

    from core import calendar
    from core.db import migrate
    from core.demo import seed_portfolios
    from core.providers.synthetic import SyntheticProvider
    from core.symbol_steps import register_universe
    from flows.portfolio_refresh import portfolio_refresh
    from flows.symbol_batch import symbol_batch

    migrate.upgrade()
    asyncio.run(register_universe(SyntheticProvider().universe(args.symbols)))
    as_of = calendar.latest_completed_session()
    t = time.perf_counter()
    batch = symbol_batch(as_of=as_of)
    symbol_s = time.perf_counter() - t
    t = time.perf_counter()
    seeded = asyncio.run(seed_portfolios(args.portfolios, as_of, positions=args.positions))
    seed_s = time.perf_counter() - t

    t = time.perf_counter()
    result = portfolio_refresh(as_of=as_of)
    refresh_s = time.perf_counter() - t
    counts = result["counts"]
    rss = round(peak_rss_mb(), 1)  # before the floor: its own reads hold their rows
    floor = refresh_floor(as_of)
    out = {
        "portfolios": args.portfolios,
        "positions": seeded["positions_created"],
        "symbols": args.symbols,
        "symbol_batch_s": round(symbol_s, 2),
        "symbol_batch_status": batch["status"],
        "seed_s": round(seed_s, 2),
        "refresh_s": round(refresh_s, 2),
        "portfolios_per_s": round(args.portfolios / refresh_s, 1),
        "refreshed": counts["refreshed"],
        "failed": counts["failed"],
        "partial_snapshots": counts["partial_snapshots"],
        "phases_s": {k: round(v, 2) for k, v in result["seconds"].items()},
        "refresh_floor_s": floor["floor_s"],
        "refresh_floor_parts": floor,
        "refresh_vs_floor": round(refresh_s / floor["floor_s"], 2),
        "peak_rss_mb": rss,
        "workdir": str(workdir) if args.keep else None,
    }
    report(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
