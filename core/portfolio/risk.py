"""Portfolios' risk answers from the risk model's symbol data (pure; no I/O).

:class:`RiskData` holds what the model needs for a set of symbols at one data date (built by
``core/symbol_data.py``). :func:`risk_figures` computes the risk of many books at once
(one sparse pass: the nightly refresh's chunks) as compact, JSON-ready records (what the
``portfolio_risk`` table stores); :func:`expand_risk` turns a record into the answer of
``GET /v1/portfolios/{id}/risk``; :func:`risk_report` is both for one book. The answer:
volatility (fractions of equity and dollars), its factor / specific split, the predicted
beta to SPY, Euler contributions per factor and per position, VaR and ES (parametric,
historical, Cornish-Fisher; 95 % and 99 %; 1 and 10 sessions), component VaR, liquidity
and the model's description. The math is ``core/risk/model.py``.

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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy import sparse

from core.risk import model
from core.risk.stress import EWMA_LAMBDA, EWMA_WINDOW

FloatArray = npt.NDArray[np.float64]

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

    @cached_property
    def filled_history(self) -> tuple[FloatArray, npt.NDArray[np.int64]]:
        """``history`` with each missing return replaced by the symbol's factor-model return
        that day, **transposed** to shape (S, H) (a symbol's history contiguous, as the
        sparse revaluation reads it), and the number of such fills per symbol, shape (S,);
        built once (every chunk of a night revalues its books over it)."""
        missing = ~np.isfinite(self.history)
        fitted = np.nan_to_num(self.factor_history) @ np.nan_to_num(self.beta).T
        filled = np.where(missing, fitted, self.history)
        return np.ascontiguousarray(filled.T), missing.sum(axis=0)


@dataclass(frozen=True)
class RiskPosition:
    """A position as the risk answer sees it: signed market value and quantity at the data
    date; ``modelled`` False for private holdings and options (no risk regression)."""

    position_id: str
    symbol: str
    quantity: float
    market_value: float
    modelled: bool = True


def _fraction(x: float | None, equity: float) -> float | None:
    return x / equity if x is not None and equity > 0 and math.isfinite(x) else None


def _share(x: float | None, total: float | None) -> float | None:
    return (x / total if x is not None and total is not None and total > 0
            and math.isfinite(x) and math.isfinite(total) else None)


def _nums(values: Sequence[float]) -> list[float | None]:
    """Floats with every non-finite value as None (JSON has no NaN)."""
    return [v if v - v == 0 else None for v in values]  # inf - inf and nan - nan are nan


def _num(x: float) -> float | None:
    return float(x) if math.isfinite(x) else None


VAR_ROWS: tuple[tuple[int, float, str, str], ...] = tuple(
    (horizon, c, measure, method)
    for horizon in model.HORIZONS for c in model.CONFIDENCES
    for measure, method in (("var", "parametric"), ("es", "parametric"),
                            ("var", "historical"), ("es", "historical"),
                            ("var", "cornish_fisher")))
"""(horizon, confidence, measure, method) of each row of the ``var`` table, in its order."""

TEN_DAY = ("parametric: sqrt(10) x 1-day; historical and cornish_fisher: overlapping "
           "10-session sums of daily P&L")
FORMAT = 2
"""Version of the compact record of :func:`risk_figures` (1: the full answer itself)."""


@dataclass(frozen=True)
class RiskBook:
    """One portfolio as the risk model sees it: its open positions at the data date and
    its equity then (fractions are of it)."""

    positions: Sequence[RiskPosition]
    equity: float


def _var_table(sigma: FloatArray, pnl: FloatArray) -> FloatArray:
    """Dollar VaR / ES of every book in ``VAR_ROWS`` order, shape (P, len(VAR_ROWS));
    ``pnl`` is (H, P) daily P&L over the history."""
    out = np.empty((len(sigma), len(VAR_ROWS)))
    j = 0
    for horizon in model.HORIZONS:
        sample = (model.horizon_pnl(pnl, horizon) if pnl.shape[0] >= horizon
                  else pnl[:0])
        moments = model.pnl_moments(sample) if sample.shape[0] >= 4 else None
        for c in model.CONFIDENCES:
            var_p, es_p = model.normal_var_es(sigma, c, horizon)
            var_h, es_h = model.historical_var_es(sample, c)
            var_cf = model.cornish_fisher_var(sample, c, moments)
            for col in (var_p, es_p, var_h, es_h, var_cf):
                out[:, j] = col
                j += 1
    return out


def risk_figures(books: Sequence[RiskBook], data: RiskData,
                 participation: float = DEFAULT_PARTICIPATION) -> list[dict[str, Any]]:
    """The risk of many books at once, as compact JSON-ready records (no NaN: None).

    Parameters
    ----------
    books : sequence of RiskBook
        Open positions (signed market values, shorts negative) and equity of each book.
    data : RiskData
        The model's symbol data; must hold every modelled position's symbol.
    participation : float, optional
        Share of the average daily volume tradable per session (liquidity).

    Returns
    -------
    list of dict
        One record per book (``FORMAT``): the dollar figures of its answer and what they
        were computed from; :func:`expand_risk` makes the answer of it. A position is
        covered when it is ``modelled`` and its symbol has a risk regression; the others
        are listed as uncovered and left out of every figure.

    Notes
    -----
    One pass for all books: the positions form a sparse (books × positions) matrix over
    the positions' own model rows (two lots of one symbol are two positions), so the cost
    is O(positions K + H positions) whatever the universe.
    """
    col = data.column
    spec_all = data.specific_var
    book_of: list[int] = []
    cols: list[int] = []
    covered: list[list[RiskPosition]] = []
    for i, b in enumerate(books):
        mine = [p for p in b.positions if p.modelled and p.symbol in col
                and math.isfinite(spec_all[col[p.symbol]])]
        covered.append(mine)
        book_of.extend([i] * len(mine))
        cols.extend(col[p.symbol] for p in mine)
    n_books = len(books)
    g = np.array(book_of, dtype=np.intp)
    c = np.array(cols, dtype=np.intp)
    w = np.array([p.market_value for mine in covered for p in mine], dtype=np.float64)
    qty = np.array([p.quantity for mine in covered for p in mine], dtype=np.float64)
    indptr = np.concatenate([[0], np.cumsum([len(m) for m in covered])]).astype(np.intp)
    # one entry per covered position, in book order (two lots of a symbol: two entries)
    by_symbol = sparse.csr_array((w, c, indptr), shape=(n_books, len(data.symbols)))
    risk = model.portfolio_risk(by_symbol, data.beta, spec_all, data.factor_cov)
    equity = np.array([b.equity for b in books], dtype=np.float64)
    sigma = risk.volatility
    filled, fills_per_symbol = data.filled_history
    pnl = (np.ascontiguousarray(np.asarray(by_symbol @ filled).T) if len(w)
           else np.zeros((filled.shape[1], n_books)))  # (H, P)
    fills = np.bincount(g, weights=fills_per_symbol[c], minlength=n_books)
    var = _var_table(sigma, pnl)
    liq = model.liquidity(qty, w, data.adv[c], participation, g, n_books)
    with np.errstate(invalid="ignore"):
        beta_spy = model.predicted_beta(risk.factor_exposure, data.factor_cov,
                                        data.benchmark_beta, data.benchmark_specific_var,
                                        equity)
    gross = np.array([sum(abs(p.market_value) for p in b.positions) for b in books])
    gross_covered = np.bincount(g, weights=np.abs(w), minlength=n_books)
    pos_marginal = risk.position_marginal.data if len(w) else np.zeros(0)
    pos_contribution = risk.position_contribution.data if len(w) else np.zeros(0)
    model_block = {
        "factors": list(model.RISK_FACTORS), "regression": "ols",
        "regression_window": model.RISK_WINDOW, "covariance": "ewma",
        "lambda": EWMA_LAMBDA, "window": EWMA_WINDOW,
        "historical_sessions": int(data.history.shape[0]), "data_as_of": data.day.isoformat(),
    }
    out = []
    for i, b in enumerate(books):
        lo, hi = indptr[i], indptr[i + 1]
        mine = covered[i]
        ids = {id(p) for p in mine}
        out.append({
            "format": FORMAT, "equity": _num(float(equity[i])),
            "dollar_daily": _num(float(sigma[i])),
            "factor_var": _num(float(risk.factor_var[i])),
            "specific_var": _num(float(risk.specific_var[i])),
            "predicted_beta": _num(float(beta_spy[i])) if b.equity > 0 else None,
            "factor_exposure": _nums(risk.factor_exposure[i].tolist()),
            "factor_marginal": _nums(risk.factor_marginal[i].tolist()),
            "factor_contribution": _nums(risk.factor_contribution[i].tolist()),
            "specific_contribution": _num(float(risk.specific_contribution[i])),
            "positions": {
                "position_id": [p.position_id for p in mine],
                "symbol": [p.symbol for p in mine],
                "market_value": [p.market_value for p in mine],
                "marginal": _nums(pos_marginal[lo:hi].tolist()),
                "contribution": _nums(pos_contribution[lo:hi].tolist()),
                "days_to_liquidate": _nums(liq.days[lo:hi].tolist()),
            },
            "var": _nums(var[i].tolist()),
            "liquidity": {
                "participation": participation, "adv_sessions": ADV_SESSIONS,
                "sellable_1d": _num(float(liq.sellable_1d[i])),
                "sellable_5d": _num(float(liq.sellable_5d[i])),
                "unknown": sorted({p.symbol for p, u in zip(mine, liq.unknown[lo:hi],
                                                            strict=True) if u}),
            },
            "model": {**model_block, "historical_fills": int(fills[i]),
                      "covered_share": (float(gross_covered[i] / gross[i]) if gross[i] > 0
                                        else None),
                      "uncovered": sorted({p.symbol for p in b.positions
                                           if id(p) not in ids})},
        })
    return out


def expand_risk(record: Mapping[str, Any]) -> dict[str, Any]:
    """The answer of ``GET /v1/portfolios/{id}/risk`` (without ``data_as_of``, ``stale``
    and ``cached``) from a record of :func:`risk_figures`.

    Fractions are of the record's equity (None when it is ≤ 0, with ``reason``);
    ``contribution`` is in the units of ``volatility.daily`` and ``percent`` a share of
    the volatility. A record of format 1 (the answer itself, stored before the compact
    record) is returned as it is.
    """
    if record.get("format") != FORMAT:
        return dict(record)
    equity = record["equity"] if record["equity"] is not None else math.nan
    sigma = record["dollar_daily"]
    daily = _fraction(sigma, equity)
    fvar, svar = record["factor_var"], record["specific_var"]
    total = fvar + svar if fvar is not None and svar is not None else None
    z99 = float(model.normal_var_es(np.array(1.0), 0.99)[0])
    m = record["model"]
    pos = record["positions"]
    contributions = pos["contribution"]
    return {
        "volatility": {"daily": daily,
                       "annual": daily * ANNUALIZATION if daily is not None else None,
                       "dollar_daily": sigma},
        "variance_split": {"factor": fvar, "specific": svar,
                           "factor_share": _share(fvar, total),
                           "specific_share": _share(svar, total)},
        "predicted_beta": record["predicted_beta"],
        "factor_contributions": [
            *({"factor": f, "exposure": e, "marginal": mg,
               "contribution": _fraction(fc, equity), "dollar_contribution": fc,
               "percent": _share(fc, sigma)}
              for f, e, mg, fc in zip(m["factors"], record["factor_exposure"],
                                      record["factor_marginal"],
                                      record["factor_contribution"], strict=True)),
            {"factor": "specific", "exposure": None, "marginal": None,
             "contribution": _fraction(record["specific_contribution"], equity),
             "dollar_contribution": record["specific_contribution"],
             "percent": _share(record["specific_contribution"], sigma)},
        ],
        "position_contributions": [
            {"position_id": pid, "symbol": sym, "market_value": mv, "marginal": mg,
             "contribution": _fraction(pc, equity), "dollar_contribution": pc,
             "percent": _share(pc, sigma),
             "component_var_99": z99 * pc if pc is not None else None}
            for pid, sym, mv, mg, pc in zip(pos["position_id"], pos["symbol"],
                                            pos["market_value"], pos["marginal"],
                                            contributions, strict=True)],
        "var": [{"measure": measure, "method": method, "confidence": c,
                 "horizon_days": horizon, "value": v, "pct": _fraction(v, equity)}
                for (horizon, c, measure, method), v in zip(VAR_ROWS, record["var"],
                                                             strict=True)],
        "liquidity": {
            **{k: v for k, v in record["liquidity"].items() if k != "unknown"},
            "positions": [{"position_id": pid, "symbol": sym, "days_to_liquidate": d}
                          for pid, sym, d in zip(pos["position_id"], pos["symbol"],
                                                 pos["days_to_liquidate"], strict=True)],
            "unknown": record["liquidity"]["unknown"],
        },
        "model": {
            **{k: v for k, v in m.items()
               if k not in ("covered_share", "uncovered", "data_as_of")},
            "ten_day": TEN_DAY, "data_as_of": m["data_as_of"],
            "coverage": {"covered_share": m["covered_share"], "uncovered": m["uncovered"]},
        },
        "reason": None if equity > 0 else "equity is zero or negative: no fractions",
    }


def risk_report(positions: Sequence[RiskPosition], equity: float, data: RiskData,
                participation: float = DEFAULT_PARTICIPATION) -> dict[str, Any]:
    """The risk answer of one portfolio (JSON-ready; no NaN: unknowns are None):
    :func:`expand_risk` of its :func:`risk_figures`.

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
    return expand_risk(risk_figures([RiskBook(positions, equity)], data, participation)[0])
