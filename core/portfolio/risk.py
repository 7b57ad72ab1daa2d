"""One portfolio's risk answer from the risk model's symbol data (pure; no I/O).

:class:`RiskData` holds what the model needs for a set of symbols at one data date (built by
``core/symbol_data.py``); :func:`risk_report` turns a portfolio's positions into the answer
of ``GET /v1/portfolios/{id}/risk``: volatility (fractions of equity and dollars), its
factor / specific split, the predicted beta to SPY, Euler contributions per factor and per
position, VaR and ES (parametric, historical, Cornish-Fisher; 95 % and 99 %; 1 and 10
sessions), component VaR, liquidity and the model's description. The math is
``core/risk/model.py``.

Conventions: a position's exposure is its signed market value at the data date (shorts
negative); fractions are of the portfolio's equity; a loss is positive. 10-session figures
are made from overlapping 10-session sums of the daily P&L (historical, Cornish-Fisher) and
by √10 (parametric). Positions without a model (private holdings, symbols without a risk
regression) are listed as ``uncovered`` and left out of every figure — never silently.

May import: numpy, the standard library and the pure math (core.risk). No I/O.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

from core.risk import model
from core.risk.stress import EWMA_LAMBDA, EWMA_WINDOW

ANNUALIZATION = math.sqrt(252)
ADV_SESSIONS = 20
"""Sessions of stored volume averaged into the average daily volume."""
DEFAULT_PARTICIPATION = 0.2


@dataclass(frozen=True)
class RiskData:
    """The risk model's symbol data at one date, for a set of symbols.

    Attributes
    ----------
    day : date
        The data date.
    symbols : list of str
        Column order of every per-symbol array.
    beta : ndarray, shape (S, K)
        Risk-regression exposures to ``model.RISK_FACTORS`` (NaN row: no model).
    specific_var : ndarray, shape (S,)
        Daily residual variances (NaN: no model).
    factor_cov : ndarray, shape (K, K)
        EWMA covariance of the risk factors' daily returns.
    benchmark_beta : ndarray, shape (K,)
        SPY's own exposures; ``benchmark_specific_var`` its residual variance.
    history : ndarray, shape (H, S)
        The symbols' daily returns over the last H ≤ ``model.HISTORICAL_SESSIONS``
        sessions (NaN: no return that day).
    factor_history : ndarray, shape (H, K)
        The factors' returns on the same sessions (for the fills).
    adv : ndarray, shape (S,)
        Average daily volume in shares over ``ADV_SESSIONS`` (NaN: unknown).
    """

    day: dt.date
    symbols: list[str]
    beta: np.ndarray
    specific_var: np.ndarray
    factor_cov: np.ndarray
    benchmark_beta: np.ndarray
    benchmark_specific_var: float
    history: np.ndarray
    factor_history: np.ndarray
    adv: np.ndarray

    @cached_property
    def column(self) -> dict[str, int]:
        """Symbol → column (built once: every portfolio of a night asks)."""
        return {s: j for j, s in enumerate(self.symbols)}


@dataclass(frozen=True)
class RiskPosition:
    """A position as the risk answer sees it: signed market value and quantity at the data
    date; ``modelled`` False for private holdings and options (no risk regression)."""

    position_id: str
    symbol: str
    quantity: float
    market_value: float
    modelled: bool = True


def _fraction(x: float, equity: float) -> float | None:
    return x / equity if equity > 0 and math.isfinite(x) else None


def _share(x: float, total: float) -> float | None:
    return x / total if total > 0 and math.isfinite(x) and math.isfinite(total) else None


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


def _historical_pnl(data: RiskData, cols: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, int]:
    """Daily P&L of today's book over the stored history; a missing return is the
    symbol's factor-model return that day. Returns the P&L and the number of fills."""
    r = data.history[:, cols]
    missing = ~np.isfinite(r)
    fitted = np.nan_to_num(data.factor_history) @ data.beta[cols].T
    filled = np.where(missing, fitted, r)
    return filled @ w, int(missing.sum())


def _var_rows(sigma: float, pnl: np.ndarray, equity: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    for horizon in model.HORIZONS:
        sample = model.horizon_pnl(pnl, horizon) if len(pnl) >= horizon else pnl[:0]
        for c in model.CONFIDENCES:
            var_p, es_p = model.normal_var_es(np.array(sigma), c, horizon)
            var_h, es_h = model.historical_var_es(sample, c)
            var_cf = model.cornish_fisher_var(sample, c)
            for measure, method, value in (
                ("var", "parametric", var_p), ("es", "parametric", es_p),
                ("var", "historical", var_h), ("es", "historical", es_h),
                ("var", "cornish_fisher", var_cf),
            ):
                v = float(value)
                rows.append({"measure": measure, "method": method, "confidence": c,
                             "horizon_days": horizon, "value": _num(v),
                             "pct": _fraction(v, equity)})
    return rows


def risk_report(positions: Sequence[RiskPosition], equity: float, data: RiskData,
                participation: float = DEFAULT_PARTICIPATION) -> dict[str, Any]:
    """The risk answer of one portfolio (JSON-ready; no NaN: unknowns are None).

    Parameters
    ----------
    positions : sequence of RiskPosition
        Open positions at the data date.
    equity : float
        The portfolio's equity at the data date (fractions are of it; ≤ 0 gives None
        fractions with ``reason``).
    data : RiskData
        The model's symbol data; must hold every modelled position's symbol.
    participation : float, optional
        Share of the average daily volume tradable per session (liquidity).
    """
    col = data.column
    covered = [p for p in positions if p.modelled and p.symbol in col
               and math.isfinite(data.specific_var[col[p.symbol]])]
    uncovered = sorted({p.symbol for p in positions if p not in covered})
    cols = np.array([col[p.symbol] for p in covered], dtype=np.intp)
    w = np.array([p.market_value for p in covered], dtype=np.float64)
    beta = data.beta[cols] if len(cols) else np.zeros((0, len(model.RISK_FACTORS)))
    spec = data.specific_var[cols] if len(cols) else np.zeros(0)
    risk = model.portfolio_risk(w[None, :], beta, spec, data.factor_cov)
    sigma = float(risk.volatility[0])
    total = float(risk.total_var[0])
    pnl, fills = (_historical_pnl(data, cols, w) if len(cols)
                  else (np.zeros(data.history.shape[0]), 0))
    gross = float(np.abs([p.market_value for p in positions]).sum())
    gross_covered = float(np.abs(w).sum())
    daily = _fraction(sigma, equity)
    z99 = float(model.normal_var_es(np.array(1.0), 0.99)[0])
    liq = model.liquidity([p.quantity for p in covered], w,
                          data.adv[cols] if len(cols) else np.zeros(0), participation)
    beta_spy = model.predicted_beta(risk.factor_exposure, data.factor_cov, data.benchmark_beta,
                                    data.benchmark_specific_var, [equity])[0]
    return {
        "volatility": {"daily": daily,
                       "annual": daily * ANNUALIZATION if daily is not None else None,
                       "dollar_daily": _num(sigma)},
        "variance_split": {
            "factor": _num(float(risk.factor_var[0])),
            "specific": _num(float(risk.specific_var[0])),
            "factor_share": _share(float(risk.factor_var[0]), total),
            "specific_share": _share(float(risk.specific_var[0]), total),
        },
        "predicted_beta": _num(float(beta_spy)) if equity > 0 else None,
        "factor_contributions": [
            *({"factor": f, "exposure": _num(float(risk.factor_exposure[0, k])),
               "marginal": _num(float(risk.factor_marginal[0, k])),
               "contribution": _fraction(float(risk.factor_contribution[0, k]), equity),
               "dollar_contribution": _num(float(risk.factor_contribution[0, k])),
               "percent": _share(float(risk.factor_contribution[0, k]), sigma)}
              for k, f in enumerate(model.RISK_FACTORS)),
            {"factor": "specific", "exposure": None, "marginal": None,
             "contribution": _fraction(float(risk.specific_contribution[0]), equity),
             "dollar_contribution": _num(float(risk.specific_contribution[0])),
             "percent": _share(float(risk.specific_contribution[0]), sigma)},
        ],
        "position_contributions": [
            {"position_id": p.position_id, "symbol": p.symbol, "market_value": p.market_value,
             "marginal": _num(float(risk.position_marginal[0, i])),
             "contribution": _fraction(float(risk.position_contribution[0, i]), equity),
             "dollar_contribution": _num(float(risk.position_contribution[0, i])),
             "percent": _share(float(risk.position_contribution[0, i]), sigma),
             "component_var_99": _num(z99 * float(risk.position_contribution[0, i]))}
            for i, p in enumerate(covered)],
        "var": _var_rows(sigma, pnl, equity),
        "liquidity": {
            "participation": participation, "adv_sessions": ADV_SESSIONS,
            "sellable_1d": _num(liq.sellable_1d), "sellable_5d": _num(liq.sellable_5d),
            "positions": [{"position_id": p.position_id, "symbol": p.symbol,
                           "days_to_liquidate": _num(float(liq.days[i]))}
                          for i, p in enumerate(covered)],
            "unknown": sorted({p.symbol for i, p in enumerate(covered) if liq.unknown[i]}),
        },
        "model": {
            "factors": list(model.RISK_FACTORS), "regression": "ols",
            "regression_window": model.RISK_WINDOW, "covariance": "ewma",
            "lambda": EWMA_LAMBDA, "window": EWMA_WINDOW,
            "historical_sessions": int(data.history.shape[0]), "historical_fills": fills,
            "ten_day": "parametric: sqrt(10) x 1-day; historical and cornish_fisher: "
                       "overlapping 10-session sums of daily P&L",
            "data_as_of": data.day.isoformat(),
            "coverage": {"covered_share": gross_covered / gross if gross > 0 else None,
                         "uncovered": uncovered},
        },
        "reason": None if equity > 0 else "equity is zero or negative: no fractions",
    }
