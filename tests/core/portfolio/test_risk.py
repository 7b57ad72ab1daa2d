"""One portfolio's risk answer (core/portfolio/risk.py) on planted model data: the figures
against dense formulas computed here, and the awkward books (private only, no betas, one
position, zero equity, net short) giving clear answers without NaN."""

from __future__ import annotations

import datetime as dt
import json
import math

import numpy as np
import pytest
from scipy import stats

from core.portfolio.risk import (
    RiskBook,
    RiskData,
    RiskPosition,
    expand_risk,
    risk_figures,
    risk_report,
)
from core.risk.model import RISK_FACTORS

K = len(RISK_FACTORS)


def _data(seed: int = 3, holes: bool = False) -> RiskData:
    rng = np.random.default_rng(seed)
    syms = ["AAA", "BBB", "CCC", "NOB"]
    beta = rng.normal(size=(4, K))
    beta[3] = np.nan  # no model
    spec = np.array([1e-4, 4e-4, 2e-4, np.nan])
    a = rng.normal(size=(K, K)) * 0.01
    fh = rng.normal(size=(500, K)) * 0.01
    hist = fh @ np.nan_to_num(beta).T + rng.normal(size=(500, 4)) * 0.01
    if holes:
        hist[[3, 50, 51], 1] = np.nan
    return RiskData(dt.date(2024, 4, 19), syms, beta, spec, a @ a.T, rng.normal(size=K), 1e-6,
                    hist, fh, np.array([1e6, 5e4, np.nan, 1e5]))


def _finite_json(payload: object) -> None:
    json.dumps(payload, allow_nan=False)  # raises on NaN / inf


def test_figures_equal_the_dense_model_and_contributions_sum() -> None:
    data = _data()
    pos = [RiskPosition("p1", "AAA", 100, 20_000.0), RiskPosition("p2", "BBB", -50, -5_000.0),
           RiskPosition("p3", "CCC", 10, 8_000.0)]
    equity = 30_000.0
    out = risk_report(pos, equity, data)
    _finite_json(out)
    w = np.array([20_000.0, -5_000.0, 8_000.0])
    b = data.beta[:3]
    big = b @ data.factor_cov @ b.T + np.diag(data.specific_var[:3])
    sigma = math.sqrt(w @ big @ w)
    assert out["volatility"]["dollar_daily"] == pytest.approx(sigma, rel=1e-12)
    assert out["volatility"]["daily"] == pytest.approx(sigma / equity, rel=1e-12)
    assert out["volatility"]["annual"] == pytest.approx(sigma / equity * math.sqrt(252))
    rows = out["factor_contributions"]
    assert [r["factor"] for r in rows] == [*RISK_FACTORS, "specific"]
    assert sum(r["contribution"] for r in rows) == pytest.approx(sigma / equity, rel=1e-10)
    assert sum(r["contribution"] for r in out["position_contributions"]) == pytest.approx(
        sigma / equity, rel=1e-10)
    assert sum(r["percent"] for r in rows) == pytest.approx(1.0)
    var = {(r["measure"], r["method"], r["confidence"], r["horizon_days"]): r
           for r in out["var"]}
    z = stats.norm.ppf(0.99)
    assert var["var", "parametric", 0.99, 1]["value"] == pytest.approx(z * sigma, rel=1e-12)
    assert var["var", "parametric", 0.99, 10]["value"] == pytest.approx(
        z * sigma * math.sqrt(10), rel=1e-12)
    pnl = data.history[:, :3] @ w  # no holes: no fills
    assert out["model"]["historical_fills"] == 0
    assert var["var", "historical", 0.95, 1]["value"] == pytest.approx(
        -np.quantile(pnl, 0.05), rel=1e-12)
    ten = np.array([pnl[t:t + 10].sum() for t in range(len(pnl) - 9)])
    assert var["var", "historical", 0.99, 10]["value"] == pytest.approx(
        -np.quantile(ten, 0.01), rel=1e-12)
    assert var["var", "historical", 0.99, 10]["pct"] == pytest.approx(
        -np.quantile(ten, 0.01) / equity, rel=1e-12)
    comp = sum(r["component_var_99"] for r in out["position_contributions"])
    assert comp == pytest.approx(var["var", "parametric", 0.99, 1]["value"], rel=1e-10)
    liq = {r["symbol"]: r["days_to_liquidate"] for r in out["liquidity"]["positions"]}
    assert liq["AAA"] == pytest.approx(100 / (0.2 * 1e6)) and liq["CCC"] is None
    assert out["liquidity"]["unknown"] == ["CCC"]


def test_missing_returns_are_filled_from_the_factor_model_and_counted() -> None:
    data = _data(holes=True)
    out = risk_report([RiskPosition("p", "BBB", 1, 1_000.0)], 1_000.0, data)
    assert out["model"]["historical_fills"] == 3
    assert out["model"]["historical_sessions"] == 500
    _finite_json(out)


def test_private_and_unmodelled_positions_are_uncovered_not_dropped_silently() -> None:
    data = _data()
    pos = [RiskPosition("p1", "AAA", 10, 5_000.0), RiskPosition("p2", "FUND", 1, 5_000.0,
                                                               modelled=False),
           RiskPosition("p3", "NOB", 10, 10_000.0)]
    out = risk_report(pos, 20_000.0, data)
    assert out["model"]["coverage"] == {"covered_share": 0.25, "uncovered": ["FUND", "NOB"]}
    assert [r["symbol"] for r in out["position_contributions"]] == ["AAA"]
    _finite_json(out)


@pytest.mark.parametrize("case", ["private only", "no betas", "one position", "zero equity",
                                  "net short"])
def test_awkward_books_give_clear_answers(case: str) -> None:
    data = _data()
    books = {
        "private only": ([RiskPosition("p", "FUND", 1, 1e4, modelled=False)], 1e4),
        "no betas": ([RiskPosition("p", "NOB", 1, 1e4)], 1e4),
        "one position": ([RiskPosition("p", "AAA", 1, 1e4)], 1e4),
        "zero equity": ([RiskPosition("p", "AAA", 1, 1e4), RiskPosition("q", "BBB", -1, -1e4)],
                        0.0),
        "net short": ([RiskPosition("p", "AAA", -100, -3e4)], 1e4),
    }
    pos, equity = books[case]
    out = risk_report(pos, equity, data)
    _finite_json(out)
    if case in ("private only", "no betas"):
        assert out["volatility"] == {"daily": 0.0, "annual": 0.0, "dollar_daily": 0.0}
        assert out["position_contributions"] == [] and out["model"]["coverage"][
            "covered_share"] == 0.0
    if case == "one position":
        (row,) = out["position_contributions"]
        assert row["percent"] == pytest.approx(1.0)
    if case == "zero equity":
        assert out["volatility"]["daily"] is None and out["volatility"]["dollar_daily"] > 0
        assert out["reason"] and out["predicted_beta"] is None
        assert all(r["pct"] is None for r in out["var"])
    if case == "net short":
        assert out["predicted_beta"] is not None
        long = risk_report([RiskPosition("p", "AAA", 100, 3e4)], 1e4, data)
        assert out["predicted_beta"] == pytest.approx(-long["predicted_beta"])
        assert out["volatility"]["daily"] == pytest.approx(long["volatility"]["daily"])


def test_an_unestimable_factor_covariance_gives_nulls_not_nan() -> None:
    data = _data()
    broken = RiskData(data.day, data.symbols, data.beta, data.specific_var,
                      np.full_like(data.factor_cov, np.nan), data.benchmark_beta,
                      data.benchmark_specific_var, data.history, data.factor_history, data.adv)
    out = risk_report([RiskPosition("p", "AAA", 10, 1e4)], 1e4, broken)
    _finite_json(out)
    assert out["volatility"]["dollar_daily"] is None and out["volatility"]["daily"] is None


def test_many_books_in_one_pass_equal_each_book_alone() -> None:
    """The nightly refresh's one sparse pass per chunk gives every book the answer it gets
    alone: two lots of one symbol, uncovered-only, empty, zero-equity and short books."""
    data = _data(holes=True)
    books = [
        RiskBook([RiskPosition("a1", "AAA", 100, 20_000.0), RiskPosition("a2", "AAA", 50,
                                                                         10_000.0),
                  RiskPosition("b", "BBB", -50, -5_000.0)], 30_000.0),
        RiskBook([RiskPosition("f", "FUND", 1, 5e3, modelled=False)], 5e3),
        RiskBook([], 1_000.0),
        RiskBook([RiskPosition("c", "CCC", 10, 8e3), RiskPosition("n", "NOB", 1, 1e3)], 0.0),
        RiskBook([RiskPosition("s", "BBB", -200, -2e4)], 1e4),
        RiskBook([RiskPosition("x", "CCC", 5, 4e3), RiskPosition("y", "AAA", 1, 1e3),
                  RiskPosition("z", "CCC", -1, -1e3)], 1e4),  # lots out of column order
    ]
    together = [expand_risk(r) for r in risk_figures(books, data)]
    for book, answer in zip(books, together, strict=True):
        _finite_json(answer)
        _close(answer, risk_report(book.positions, book.equity, data))
    for i, held in ((0, {"AAA": 30_000.0, "BBB": -5_000.0}), (5, {"CCC": 3e3, "AAA": 1e3})):
        # lots of one symbol share its specific risk: σ from the symbols' dense covariance
        cols = [data.column[s] for s in held]
        w = np.array(list(held.values()))
        b = data.beta[cols]
        big = b @ data.factor_cov @ b.T + np.diag(data.specific_var[cols])
        assert together[i]["volatility"]["dollar_daily"] == pytest.approx(
            math.sqrt(w @ big @ w), rel=1e-12)
        assert sum(r["dollar_contribution"] for r in together[i]["position_contributions"]
                   ) == pytest.approx(math.sqrt(w @ big @ w), rel=1e-12)
    lots = together[0]["position_contributions"]
    assert [r["position_id"] for r in lots] == ["a1", "a2", "b"]
    assert lots[0]["marginal"] == pytest.approx(lots[1]["marginal"], rel=1e-12)
    assert [r["position_id"] for r in together[5]["position_contributions"]] == ["x", "y", "z"]
    x, _, z = together[5]["position_contributions"]
    assert x["marginal"] == z["marginal"] and x["dollar_contribution"] == pytest.approx(
        -4 * z["dollar_contribution"], rel=1e-12)
    assert together[0]["model"]["historical_fills"] == 3  # BBB's three holes
    assert together[4]["model"]["historical_fills"] == 3
    assert together[2]["position_contributions"] == [] and together[2]["volatility"][
        "dollar_daily"] == 0.0


def _close(a: object, b: object, path: str = "") -> None:
    """Equal JSON values, floats to 1e-12 relative (summation order may differ)."""
    if isinstance(a, dict):
        assert isinstance(b, dict) and list(a) == list(b), path
        for k in a:
            _close(a[k], b[k], f"{path}.{k}")
    elif isinstance(a, list):
        assert isinstance(b, list) and len(a) == len(b), path
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _close(x, y, f"{path}[{i}]")
    elif isinstance(a, float):
        assert b == pytest.approx(a, rel=1e-12, abs=1e-15), path
    else:
        assert a == b, path


def test_the_stored_record_is_a_third_of_the_answer_and_expands_to_it() -> None:
    data = _data()
    pos = [RiskPosition(f"{i:036d}", s, 10, 1e4) for i, s in enumerate(["AAA", "BBB", "CCC"]
                                                                       * 8)]
    (record,) = risk_figures([RiskBook(pos, 3e5)], data)
    answer = expand_risk(record)
    assert len(json.dumps(record)) < 0.45 * len(json.dumps(answer))
    assert expand_risk(answer) == answer  # an answer stored before the record passes through
