"""Speed and accuracy of the performance and attribution math (core/performance/).

Synthetic daily returns of many portfolios over one year of sessions plus a benchmark (some
portfolios younger than the year, one session the benchmark lacks, an annual risk-free rate
of 4 %): every metric of ``performance`` in one vectorized pass against a per-portfolio loop
of empyrical-reloaded (the reference library of the tests, test-only) on a sample of the
same portfolios, each given its valid returns and, for the relative metrics, the sessions
both series have. Prints microseconds per portfolio for both, the speed ratio (target
≥ 100×) and the largest absolute difference of each metric (target < 1e-9). Then the factor
P&L attribution of as many synthetic portfolios over K risk factors, timed (best of three calls, and
the first, which also pays for its new memory), with the largest gap of its identity
factor + specific = P&L, against a per-portfolio loop of empyrical's ``perf_attrib`` (each
factor given to it as a holding of the exposure's dollar value with a unit loading on that
factor, so its exposures are ours) on a sample: microseconds per portfolio, the ratio and the
largest difference of the factor and specific P&L. Last, both together: the issue's target,
performance and attribution per portfolio vs the reference library's loop of both (≥ 100×).

Usage: python bench/performance.py [--portfolios 10000] [--sessions 252] [--sample 200]
       [--attribution-sample 40] [--factors 7] [--json]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, peak_rss_mb, report  # noqa: E402
from core.performance.attribution import factor_pnl_attribution  # noqa: E402
from core.performance.metrics import (  # noqa: E402
    METRICS,
    RELATIVE_METRICS,
    performance,
    risk_free_per_period,
)

RISK_FREE_ANNUAL = 0.04


def synthetic(n_portfolios: int, sessions: int, seed: int = 2) -> tuple[np.ndarray, np.ndarray]:
    """Returns (T, P) with betas, drift and skewed noise, a fifth of the portfolios starting
    during the year (leading NaN), and a benchmark (T,) with one missing session."""
    rng = np.random.default_rng(seed)
    bench = 0.0004 + 0.011 * rng.standard_t(5, size=sessions) / math.sqrt(5 / 3)
    beta = rng.uniform(-0.2, 1.6, n_portfolios)
    noise = rng.normal(0, 0.007, (sessions, n_portfolios))
    noise += 0.003 * (rng.exponential(1, (sessions, n_portfolios)) - 1)
    r = rng.normal(0.0002, 0.0002, n_portfolios) + bench[:, None] * beta + noise
    young = rng.random(n_portfolios) < 0.2
    starts = rng.integers(1, sessions // 2, n_portfolios)
    r[np.arange(sessions)[:, None] < np.where(young, starts, 0)] = np.nan
    bench[sessions // 3] = np.nan
    return r, bench


def reference(x: np.ndarray, b: np.ndarray, rf: float, ppy: int) -> dict[str, float]:
    """empyrical's figures for one portfolio (the definitions the tests pin)."""
    import empyrical as ep

    xv = x[np.isfinite(x)]
    both = np.isfinite(x) & np.isfinite(b)
    xr, br = x[both], b[both]
    alpha, beta = ep.alpha_beta(xr, br, risk_free=rf, annualization=ppy)
    return {
        "cumulative_return": ep.cum_returns_final(xv),
        "annualized_return": ep.annual_return(xv, annualization=ppy),
        "annualized_volatility": ep.annual_volatility(xv, annualization=ppy),
        "sharpe_ratio": ep.sharpe_ratio(xv, risk_free=rf, annualization=ppy),
        "sortino_ratio": ep.sortino_ratio(xv, required_return=rf, annualization=ppy),
        "max_drawdown": ep.max_drawdown(xv),
        "calmar_ratio": ep.calmar_ratio(xv, annualization=ppy),
        "best_day": float(np.max(xv)),
        "worst_day": float(np.min(xv)),
        "hit_rate": float(np.mean(xv > 0)),
        "alpha": alpha,
        "beta": beta,
        "tracking_error": ep.annual_volatility(xr - br, annualization=ppy),
        "information_ratio": ep.excess_sharpe(xr, br) * math.sqrt(ppy),
        "up_capture": ep.up_capture(xr, br),
        "down_capture": ep.down_capture(xr, br),
    }


def speed_performance(n_portfolios: int, sessions: int, sample: int,
                      repeats: int = 3) -> dict[str, object]:
    """The vectorized metrics vs empyrical's per-portfolio loop on the same returns."""
    ppy = 252
    r, bench = synthetic(n_portfolios, sessions)
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        perf = performance(r, bench, risk_free_annual=RISK_FREE_ANNUAL, periods_per_year=ppy)
        times.append(time.perf_counter() - t)
    ours_s = min(times)
    rf = risk_free_per_period(RISK_FREE_ANNUAL, ppy)
    picks = np.random.default_rng(9).choice(n_portfolios, size=min(sample, n_portfolios),
                                            replace=False)
    diffs = {name: 0.0 for name in METRICS + RELATIVE_METRICS}
    reference(r[:, picks[0]], bench, rf, ppy)  # warm: the import of empyrical (pandas, scipy)
    t = time.perf_counter()
    refs = [reference(r[:, j], bench, rf, ppy) for j in picks]
    peer_s = (time.perf_counter() - t) / len(picks)
    for j, ref in zip(picks, refs, strict=True):
        for name, value in ref.items():
            ours = float(getattr(perf, name)[j])
            gap = abs(ours - float(value))
            if math.isnan(gap):  # both NaN is agreement; one NaN is a difference
                gap = 0.0 if math.isnan(ours) and math.isnan(float(value)) else math.inf
            diffs[name] = max(diffs[name], gap)
    per_portfolio = ours_s / n_portfolios
    return {
        "portfolios": n_portfolios, "sessions": sessions, "reference_sample": len(picks),
        "young_portfolios": int((perf.n_returns < sessions).sum()),
        "performance_pass_s": round(ours_s, 3),
        "performance_first_call_s": round(times[0], 3),
        "performance_us_per_portfolio": round(per_portfolio * 1e6, 2),
        "empyrical_us_per_portfolio": round(peer_s * 1e6, 1),
        "performance_speedup": round(peer_s / per_portfolio, 1),
        "max_abs_diff_overall": float(f"{max(diffs.values()):.3g}"),
        "max_abs_diff": {k: float(f"{v:.3g}") for k, v in diffs.items()},
    }


def reference_attribution(exposure: np.ndarray, factors: np.ndarray,
                          pnl: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """empyrical's ``perf_attrib`` of one portfolio: exposure (T, K), factors (T, K), pnl (T,)
    → its factor P&L (T, K) and specific P&L (T,). Each factor is a holding worth the
    exposure with a unit loading on that factor (identity loadings), so the exposures it
    computes, ``Σ position × loading`` per day, are the ones given."""
    import empyrical as ep
    import pandas as pd

    t, k = exposure.shape
    dates = pd.bdate_range("2024-01-02", periods=t)
    names = [f"factor_{i}" for i in range(k)]
    rows = pd.MultiIndex.from_product([dates, names], names=["dt", "ticker"])
    loadings = pd.DataFrame(np.tile(np.eye(k), (t, 1)), index=rows, columns=names)
    _, table = ep.perf_attrib(pd.Series(pnl, index=dates),
                              pd.Series(exposure.ravel(), index=rows),
                              pd.DataFrame(factors, index=dates, columns=names), loadings)
    return table[names].to_numpy(), table["specific_returns"].to_numpy()


def speed_attribution(n_portfolios: int, sessions: int, k: int, sample: int,
                      seed: int = 4) -> dict[str, object]:
    """The factor P&L attribution of P portfolios × T sessions × K factors, timed, and
    empyrical's ``perf_attrib`` looped over a sample of them."""
    rng = np.random.default_rng(seed)
    exposure = rng.normal(0, 2e4, (sessions, n_portfolios, k))
    factors = rng.normal(0, 0.01, (sessions, k))
    pnl = np.einsum("tpk,tk->tp", exposure, factors) + rng.normal(0, 300, (sessions,
                                                                             n_portfolios))
    times, a = [], None
    for _ in range(3):  # the first call also pays the page faults of its new 141 MB output
        a = None  # the previous output is freed first
        t = time.perf_counter()
        a = factor_pnl_attribution(exposure, factors, pnl)
        times.append(time.perf_counter() - t)
    seconds = min(times)
    gap = np.abs(a.factor_pnl.sum(axis=-1) + a.specific_pnl - pnl).max()
    totals = np.abs(a.factor_total.sum(axis=-1) + a.specific_total - a.attributed_pnl).max()
    picks = np.random.default_rng(11).choice(n_portfolios, size=min(sample, n_portfolios),
                                             replace=False)
    reference_attribution(exposure[:, picks[0]], factors, pnl[:, picks[0]])  # warm: imports
    t = time.perf_counter()
    refs = [reference_attribution(exposure[:, j], factors, pnl[:, j]) for j in picks]
    peer_s = (time.perf_counter() - t) / len(picks)
    diff = max(max(float(np.abs(a.factor_pnl[:, j] - ref_factor).max()),
                   float(np.abs(a.specific_pnl[:, j] - ref_specific).max()))
               for j, (ref_factor, ref_specific) in zip(picks, refs, strict=True))
    per_portfolio = seconds / n_portfolios
    return {"attribution_shape": f"{sessions} x {n_portfolios} x {k}",
            "attribution_reference_sample": len(picks),
            "attribution_s": round(seconds, 3),
            "attribution_first_call_s": round(times[0], 3),
            "attribution_us_per_portfolio": round(per_portfolio * 1e6, 2),
            "perf_attrib_us_per_portfolio": round(peer_s * 1e6, 1),
            "attribution_speedup": round(peer_s / per_portfolio, 1),
            "attribution_max_abs_diff": float(f"{diff:.3g}"),
            "attribution_identity_max_gap": float(f"{gap:.3g}"),
            "attribution_totals_max_gap": float(f"{totals:.3g}"),
            "attribution_max_abs_pnl": round(float(np.abs(pnl).max()), 1)}


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--portfolios", type=int, default=10000)
    ap.add_argument("--sessions", type=int, default=252)
    ap.add_argument("--sample", type=int, default=200,
                    help="portfolios the reference library loops over")
    ap.add_argument("--attribution-sample", type=int, default=40,
                    help="portfolios empyrical's perf_attrib loops over (about 5 ms each)")
    ap.add_argument("--factors", type=int, default=7)
    args = ap.parse_args()
    t0 = time.perf_counter()
    out = speed_performance(args.portfolios, args.sessions, args.sample)
    out.update(speed_attribution(args.portfolios, args.sessions, args.factors,
                                 args.attribution_sample))
    ours = out["performance_us_per_portfolio"] + out["attribution_us_per_portfolio"]
    peer = out["empyrical_us_per_portfolio"] + out["perf_attrib_us_per_portfolio"]
    out["both_us_per_portfolio"] = round(ours, 2)
    out["reference_both_us_per_portfolio"] = round(peer, 1)
    out["both_speedup"] = round(peer / ours, 1)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    report(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
