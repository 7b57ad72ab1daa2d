"""Benchmark of the portfolio flow (not a test; prints figures).

    python bench/portfolio_refresh.py [--portfolios N] [--positions K] [--symbols S] [--json]

On a fresh SQLite database: a synthetic universe of S symbols and one symbol batch
(the initial load), then N portfolios of about K positions each, then the real Prefect
portfolio flow for one day with everything persisted (snapshots, position values,
factor and sector exposures, correlation matrices, stress results).
"""

from __future__ import annotations

import asyncio
import sys
import time

from common import bench_parser, isolated_environment, peak_rss_mb, report


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--portfolios", type=int, default=1000)
    ap.add_argument("--positions", type=int, default=25)
    ap.add_argument("--symbols", type=int, default=2000)
    ap.add_argument("--workers", type=int, default=None)
    args = ap.parse_args()
    workdir = isolated_environment("factorflow-bench-portfolio-", args.workers, args.keep)

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
        "peak_rss_mb": round(peak_rss_mb(), 1),
        "workdir": str(workdir) if args.keep else None,
    }
    report(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
