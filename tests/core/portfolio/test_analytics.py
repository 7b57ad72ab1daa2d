"""analyse_portfolio on planted symbol data: hand-checkable numbers, no database."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import numpy as np
import pytest

from core.portfolio.analytics import (
    ScenarioSet,
    SymbolData,
    analyse_portfolio,
    analyse_portfolios,
    apply_scenarios,
)
from core.portfolio.valuation import Holding, InvestmentClass
from core.risk.stress import FACTOR_ETFS

D1, D2 = dt.date(2026, 11, 18), dt.date(2026, 11, 19)
FACTORS = ("market_beta", "value")


def _data() -> SymbolData:
    rng = np.random.default_rng(5)
    sessions = [D1 - dt.timedelta(days=120 - i) for i in range(119)] + [D1, D2]
    adj = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, (len(sessions), 2)), axis=0))
    close = adj.copy()
    close[-1] = [110.0, 40.0]
    close[-2] = [100.0, 50.0]
    betas = np.array([[1.2, 0.3], [0.8, np.nan]])
    return SymbolData(sessions, ["AAA", "BBB"], close, adj, FACTORS, betas,
                      sectors={"AAA": "Tech", "BBB": None})


def _scenarios() -> ScenarioSet:
    k = len(FACTOR_ETFS)
    moves = np.vstack([np.full(k, -0.1), np.full(k, np.nan)])
    return ScenarioSet(("down", "gone"), FACTOR_ETFS, moves, np.eye(k) * 1e-4, (True, False),
                       (None, "no data"), ((), ()))


def test_two_days_of_a_long_short_book() -> None:
    holdings = [
        Holding("h1", "AAA", Decimal(10), D1, Decimal(90)),
        Holding("h2", "BBB", Decimal(-20), D1, Decimal(55)),
        Holding("h3", "FUND_X", Decimal(1), D1, Decimal(500), investment_class=InvestmentClass.
                PRIVATE, manual_value=Decimal(600)),
    ]
    res = analyse_portfolio(holdings, Decimal(1000), [D1, D2], _data(), _scenarios())
    s1, s2 = res.snapshots
    assert s1.equity == Decimal(1000 + 1000 - 1000 + 600)
    assert s1.daily_pnl is None
    assert s2.daily_pnl == Decimal(10 * 10 + (-20) * (-10))  # AAA +10, short BBB −10
    assert s2.equity == Decimal(1000 + 1100 - 800 + 600)
    # aggregation at D2: weights = MV / equity; the private holding is uncovered
    equity = 1900.0
    fa = res.factors
    assert fa is not None
    assert fa.beta[0] == pytest.approx(1100 / equity * 1.2 + (-800) / equity * 0.8)
    assert fa.beta[1] == pytest.approx(1100 / equity * 0.3)  # BBB has no value beta
    assert fa.covered_share[0] == pytest.approx(1900 / 2500)
    assert res.sectors["Tech"][0] == pytest.approx(1100)
    assert res.sectors["Unclassified"][0] == pytest.approx(-800)
    assert res.sectors["Private"][0] == pytest.approx(600)
    assert res.correlation is not None and res.correlation_symbols == ["AAA", "BBB"]
    down, gone = res.stress
    assert not gone.available and gone.reason == "no data"
    assert down.pnl == pytest.approx(sum(down.contributions.values()))


def test_apply_scenarios_is_exposure_times_move() -> None:
    x = np.arange(1.0, 9.0)
    impacts = apply_scenarios(x, 200.0, _scenarios())
    assert impacts[0].pnl == pytest.approx(-0.1 * x.sum())
    assert impacts[0].pnl_pct == pytest.approx(-0.1 * x.sum() / 200.0)
    assert impacts[0].contributions["SPY"] == pytest.approx(-0.1)
    assert apply_scenarios(x, 0.0, _scenarios())[0].pnl_pct is None


def test_many_portfolios_at_once_equal_each_alone() -> None:
    """The nightly batch (``analyse_portfolios``) gives each portfolio exactly its own
    analysis (correlations included), in order; a portfolio that fails gets its error and
    costs the others nothing."""
    data, scenarios = _data(), _scenarios()
    long_short = [Holding("h1", "AAA", Decimal(10), D1, Decimal(90)),
                  Holding("h2", "BBB", Decimal(-20), D1, Decimal(55))]
    one_symbol = [Holding("h3", "AAA", Decimal(5), D1, Decimal(95))]
    books = [(long_short, Decimal(1000), [D1, D2], None, None),
             (one_symbol, Decimal(0), [D2], D1, Decimal(500)),
             (long_short, Decimal(7), [], None, None),  # no day: fails
             (long_short[::-1], Decimal(-50), [D2], D1, Decimal(900))]
    together = analyse_portfolios(books, data, scenarios)
    assert isinstance(together[2], ValueError)
    for k in (0, 1, 3):
        holdings, cash, days, prev_day, prev_equity = books[k]
        alone = analyse_portfolio(holdings, cash, days, data, scenarios, prev_day, prev_equity)
        got = together[k]
        assert not isinstance(got, Exception)
        assert got.snapshots == alone.snapshots and got.stress == alone.stress
        assert got.position_betas == alone.position_betas
        assert got.correlation_symbols == alone.correlation_symbols
        assert got.correlation_window is None
        if alone.correlation is None:
            assert got.correlation is None
        else:
            assert got.correlation is not None
            np.testing.assert_array_equal(got.correlation.matrix, alone.correlation.matrix)
            assert got.correlation.average_correlation == alone.correlation.average_correlation
    assert together[1].correlation is None  # type: ignore[union-attr]  # one symbol
    assert together[0].correlation is not None  # type: ignore[union-attr]
