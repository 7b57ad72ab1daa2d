"""Is the risk model right? A backtest of core/risk/model.py on real prices.

Reads ../shared/data/market/prices.csv through the CSV provider's reader (skipped with a message
when absent). Random portfolios of the real stocks — long-only and long/short — are predicted
each session from 2019 to the end of the data with information up to that session only (one
risk regression per stock over 252 sessions, the EWMA factor covariance, λ 0.94), then compared
with the next session's realized return:

- the bias statistic of the volatility forecast: the standard deviation of return / predicted σ
  over the sessions (1 is perfect; with T sessions its 95 % band is about 1 ± 1.96/√(2T));
- VaR exceedance rates at 95 % and 99 % (parametric, historical over up to 500 sessions,
  Cornish-Fisher) and Kupiec's proportion-of-failures test per portfolio (χ², 1 dof, 5 %).

Then the speed of the risk math alone: ``portfolio_risk`` over many portfolios at once against a
per-portfolio loop of skfolio (the peer library of the tests) on the same inputs (returns whose
sample covariance is the model's), with the largest difference of volatility and contributions.

Usage: python bench/risk_model.py [--portfolios 200] [--speed-portfolios 10000] [--json]
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

import numpy as np
from scipy import sparse

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import bench_parser, peak_rss_mb, report  # noqa: E402
from core.providers.csv_file import read_price_file  # noqa: E402
from core.risk.model import (  # noqa: E402
    HISTORICAL_SESSIONS,
    RISK_FACTORS,
    RISK_WINDOW,
    cornish_fisher_var,
    historical_var_es,
    normal_var_es,
    portfolio_risk,
    risk_regression,
)
from core.risk.stress import ewma_covariance  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "market" / "prices.csv"
ETFS = {"SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV", "XLK", "XLF", "XLE"}
START = np.datetime64("2019-01-02")
CHI2_1_95 = 3.841458820694124
MIN_HISTORY = 250


def kupiec_lr(exceedances: int, n: int, p: float) -> float:
    """Kupiec's proportion-of-failures likelihood ratio (χ², 1 dof under H0: rate = p)."""
    x = exceedances
    if n == 0:
        return math.nan
    phat = x / n

    def loglik(q: float) -> float:
        a = (n - x) * math.log(1 - q) if x < n else 0.0
        b = x * math.log(q) if x > 0 else 0.0
        return a + b

    return -2.0 * (loglik(p) - loglik(phat))


def load(path: Path) -> tuple[np.ndarray, list[str], np.ndarray, np.ndarray]:
    """Sessions, stock names, stock returns (T, N) and factor returns (T, K) from the file."""
    frame = read_price_file(path).frame
    wide = frame.pivot(index="date", columns="symbol", values="adj_close").sort_index()
    wide = wide[wide.index >= np.datetime64("2018-01-02")]
    rets = wide.pct_change(fill_method=None).iloc[1:]
    stocks = [s for s in rets.columns if s not in ETFS]
    return (rets.index.to_numpy(dtype="datetime64[D]"), stocks,
            rets[stocks].to_numpy(dtype=float), rets[list(RISK_FACTORS)].to_numpy(dtype=float))


def portfolios(n_stocks: int, count: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    """Random long-only and long/short weight matrices (each row's gross weight is 1)."""
    rng = np.random.default_rng(seed)
    long_only = np.zeros((count, n_stocks))
    long_short = np.zeros((count, n_stocks))
    for p in range(count):
        picks = rng.choice(n_stocks, size=rng.integers(10, 31), replace=False)
        long_only[p, picks] = rng.dirichlet(np.ones(len(picks)))
        w = rng.normal(size=len(picks))
        long_short[p, picks] = w / np.abs(w).sum()
    return long_only, long_short


def backtest(days: np.ndarray, r: np.ndarray, f: np.ndarray, books: np.ndarray
             ) -> dict[str, np.ndarray]:
    """Per session from START: predicted σ, VaR per method and the next session's return."""
    first = max(int(np.searchsorted(days, START)), RISK_WINDOW)
    out: dict[str, list[np.ndarray]] = {k: [] for k in (
        "sigma", "realized", "hist95", "hist99", "cf95", "cf99")}
    for t in range(first, len(days) - 1):
        window = slice(t - RISK_WINDOW + 1, t + 1)
        model = risk_regression(r[window], f[window])
        ok = np.isfinite(model.specific_var)
        w = np.where(ok, books, 0.0)
        w = w / np.abs(w).sum(axis=1, keepdims=True)  # uncovered names left out, re-scaled
        cov = ewma_covariance(f[:t + 1])
        risk = portfolio_risk(w, np.nan_to_num(model.beta), np.nan_to_num(model.specific_var),
                              cov)
        nxt = np.nan_to_num(r[t + 1])
        out["sigma"].append(risk.volatility)
        out["realized"].append(w @ nxt)
        h0 = max(0, t + 1 - HISTORICAL_SESSIONS)
        hist = np.nan_to_num(r[h0:t + 1]) @ w.T  # (H, P): today's book over past sessions
        enough = t + 1 - h0 >= MIN_HISTORY
        for c, tag in ((0.95, "95"), (0.99, "99")):
            if enough:
                out["hist" + tag].append(historical_var_es(hist, c)[0])
                out["cf" + tag].append(cornish_fisher_var(hist, c))
            else:
                out["hist" + tag].append(np.full(len(w), np.nan))
                out["cf" + tag].append(np.full(len(w), np.nan))
    return {k: np.array(v) for k, v in out.items()}


def summarise(res: dict[str, np.ndarray], tag: str) -> dict[str, object]:
    """Bias statistics and exceedance figures of one family of portfolios."""
    z = res["realized"] / res["sigma"]
    bias = z.std(axis=0, ddof=1)  # per portfolio, over sessions
    t = z.shape[0]
    band = 1.96 / math.sqrt(2 * t)
    out: dict[str, object] = {
        f"{tag}_sessions": t,
        f"{tag}_bias_median": round(float(np.median(bias)), 3),
        f"{tag}_bias_p10_p90": [round(float(np.percentile(bias, q)), 3) for q in (10, 90)],
        f"{tag}_bias_within_0.9_1.1": round(float(np.mean((bias > 0.9) & (bias < 1.1))), 3),
        f"{tag}_bias_95pct_band": [round(1 - band, 3), round(1 + band, 3)],
    }
    for c in (0.95, 0.99):
        p = 1 - c
        key = f"{int(c * 100)}"
        methods = {"parametric": normal_var_es(res["sigma"], c)[0],
                   "historical": res["hist" + key], "cornish_fisher": res["cf" + key]}
        for name, var in methods.items():
            have = np.isfinite(var)
            hit = (res["realized"] < -var) & have
            n = have.sum(axis=0)
            x = hit.sum(axis=0)
            lr = np.array([kupiec_lr(int(a), int(b), p) for a, b in zip(x, n, strict=True)])
            out[f"{tag}_var{key}_{name}_rate"] = round(float(x.sum() / n.sum()), 4)
            out[f"{tag}_var{key}_{name}_kupiec_reject_share"] = round(
                float(np.mean(lr > CHI2_1_95)), 3)
    return out


def speed(n_portfolios: int, n_symbols: int = 2000, positions: int = 25,
          peer_sample: int = 100, seed: int = 3) -> dict[str, object]:
    """The vectorized risk math vs skfolio's per-portfolio contributions (seconds per
    portfolio, ratio, max abs difference), on one synthetic model of ``n_symbols``."""
    from skfolio import Portfolio, RiskMeasure

    rng = np.random.default_rng(seed)
    k = len(RISK_FACTORS)
    beta = rng.normal(size=(n_symbols, k))
    spec = rng.uniform(1e-5, 4e-4, size=n_symbols)
    a = rng.normal(size=(k, k)) * 0.01
    cov = a @ a.T
    books = np.zeros((n_portfolios, n_symbols))
    for p in range(n_portfolios):
        picks = rng.choice(n_symbols, size=positions, replace=False)
        books[p, picks] = rng.normal(size=positions) * 1e4
    held_books = sparse.csr_array(books)  # holdings as a sparse matrix over the universe
    t = time.perf_counter()
    risk = portfolio_risk(held_books, beta, spec, cov)
    ours_s = (time.perf_counter() - t) / n_portfolios
    contributions = risk.position_contribution.toarray()
    diff, diff_unit, t = 0.0, 0.0, time.perf_counter()
    for p in range(peer_sample):
        held = np.flatnonzero(books[p])
        big = beta[held] @ cov @ beta[held].T + np.diag(spec[held])
        z = rng.normal(size=(400, len(held)))
        z -= z.mean(axis=0)
        z = z @ np.linalg.inv(np.linalg.cholesky(np.cov(z, rowvar=False))).T
        x = z @ np.linalg.cholesky(big).T  # returns with exactly the model's covariance
        w = books[p, held]
        peer = Portfolio(X=x, weights=w / np.abs(w).sum())
        scale = np.abs(w).sum()
        contribution = peer.contribution(measure=RiskMeasure.STANDARD_DEVIATION) * scale
        diff = max(diff, abs(peer.standard_deviation * scale - risk.volatility[p]),
                   float(np.abs(contribution - contributions[p, held]).max()))
        # in skfolio's own units (returns per unit of gross exposure, its weights)
        diff_unit = max(diff_unit, abs(peer.standard_deviation - risk.volatility[p] / scale),
                        float(np.abs(contribution - contributions[p, held]).max()) / scale)
    peer_s = (time.perf_counter() - t) / peer_sample
    return {"speed_portfolios": n_portfolios, "speed_symbols": n_symbols,
            "risk_math_us_per_portfolio": round(ours_s * 1e6, 2),
            "skfolio_us_per_portfolio": round(peer_s * 1e6, 1),
            "risk_math_speedup": round(peer_s / ours_s, 1),
            "max_abs_diff_dollars": float(f"{diff:.3g}"),
            "max_abs_diff_per_unit_gross": float(f"{diff_unit:.3g}"),
            "max_rel_diff": float(f"{diff / float(risk.volatility[:peer_sample].min()):.3g}")}


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--portfolios", type=int, default=200,
                    help="portfolios of each kind (long-only, long/short)")
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--speed-portfolios", type=int, default=10000)
    args = ap.parse_args()
    speed_figures = speed(args.speed_portfolios)
    if not args.data.exists():
        print(f"risk_model: {args.data} not found; the backtest needs the real prices "
              "(../shared/data/market/prices.csv). Skipped; the speed figures follow.")
        report(speed_figures, args.json)
        return 0
    t0 = time.perf_counter()
    days, stocks, r, f = load(args.data)
    long_only, long_short = portfolios(len(stocks), args.portfolios)
    out: dict[str, object] = {"stocks": len(stocks), "portfolios_per_kind": args.portfolios,
                              "first_day": str(START), "last_day": str(days[-1])}
    for tag, books in (("long_only", long_only), ("long_short", long_short)):
        out.update(summarise(backtest(days, r, f, books), tag))
    out.update(speed_figures)
    out["seconds"] = round(time.perf_counter() - t0, 1)
    out["peak_rss_mb"] = round(peak_rss_mb(), 1)
    report(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
