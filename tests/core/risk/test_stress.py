"""Tests of core.risk.stress.

Layers: independent references (an explicit loop for the EWMA covariance, the
conditional-expectation formula with ``np.linalg.inv``, the bivariate Gaussian
regression ``rho sigma2 / sigma1 s``, cumulative returns read straight from the real
prices CSV), planted asymmetric covariances, identities (P&L = sum of exposure ×
move, linearity in the shock) and the no-double-count rule of the stress exposures.
"""

from __future__ import annotations

import pickle
from datetime import date
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from core.calendar import trading_days_between
from core.factors.definitions import FACTOR_NAMES, REFERENCE_ETFS
from core.factors.returns import simple_returns
from core.risk.stress import (
    ETF_INDEX,
    FACTOR_ETFS,
    SCENARIOS,
    STRESS_FACTOR_ETF,
    ReplayDataError,
    Scenario,
    conditional_moves,
    ewma_covariance,
    replay_moves,
    run_all,
    run_scenario,
    scenario_by_name,
    stress_exposures,
)

K = len(FACTOR_ETFS)
SPY, TLT, VTV, VUG, MTUM, QUAL, IWM, USMV = range(K)


def _cov3() -> np.ndarray:
    """A planted asymmetric 3 x 3 covariance (daily units)."""
    vol = np.array([0.011, 0.019, 0.007])
    corr = np.array([[1.0, 0.62, -0.31], [0.62, 1.0, 0.18], [-0.31, 0.18, 1.0]])
    return corr * np.outer(vol, vol)


def _factor_cov(seed: int = 0) -> np.ndarray:
    """A plausible asymmetric 8 x 8 factor covariance from simulated returns."""
    rng = np.random.default_rng(seed)
    mkt = 0.011 * rng.standard_normal(600)
    beta = np.array([1.0, -0.15, 0.85, 1.15, 1.1, 1.0, 1.2, 0.65])
    idio = np.array([0.0005, 0.009, 0.004, 0.005, 0.007, 0.003, 0.008, 0.004])
    r = np.outer(mkt, beta) + rng.standard_normal((600, K)) * idio
    return np.cov(r, rowvar=False)


# --- constants and catalogue -------------------------------------------------------------


def test_factor_etfs_and_mapping() -> None:
    assert FACTOR_ETFS == REFERENCE_ETFS
    assert dict(STRESS_FACTOR_ETF) == {
        "value": "VTV",
        "growth": "VUG",
        "momentum": "MTUM",
        "quality": "QUAL",
        "size": "IWM",
        "low_volatility": "USMV",
        "ir_beta": "TLT",
    }
    assert set(STRESS_FACTOR_ETF) <= set(FACTOR_NAMES)


def test_catalogue() -> None:
    names = [s.name for s in SCENARIOS]
    assert len(set(names)) == len(names)
    expected = {
        "market_down_10": {"SPY": -0.10},
        "market_down_20": {"SPY": -0.20},
        "rates_up_100bp": {"TLT": -0.16},
        "growth_selloff": {"VUG": -0.15},
        "value_rotation": {"VTV": 0.05, "VUG": -0.05},
        "momentum_crash": {"MTUM": -0.20, "SPY": 0.0},
        "small_cap_selloff": {"IWM": -0.15},
    }
    for name, shocks in expected.items():
        s = scenario_by_name(name)
        assert s.kind == "shock" and dict(s.shocks) == shocks and s.description
    assert "duration" in scenario_by_name("rates_up_100bp").description
    replays = {
        "gfc_2008": (date(2008, 9, 19), date(2009, 3, 9)),
        "covid_crash_2020": (date(2020, 2, 19), date(2020, 3, 23)),
        "rate_rise_2022": (date(2022, 1, 3), date(2022, 10, 12)),
    }
    for name, (start, end) in replays.items():
        s = scenario_by_name(name)
        assert (s.kind, s.start, s.end) == ("replay", start, end)
    with pytest.raises(KeyError, match="market_down_10.*covid_crash_2020"):
        scenario_by_name("nope")
    with pytest.raises(TypeError):
        scenario_by_name("market_down_10").shocks["SPY"] = 0.0  # type: ignore[index]


def test_scenarios_pickle_and_hash() -> None:
    # Prefect / Dask pickle task arguments; the read-only shocks must survive that
    for s in SCENARIOS:
        back = pickle.loads(pickle.dumps(s))
        assert back == s and hash(back) == hash(s)
        assert isinstance(back.shocks, MappingProxyType)
    assert len(set(SCENARIOS)) == len(SCENARIOS)


def test_scenario_validation() -> None:
    with pytest.raises(ValueError, match="unknown ETFs"):
        Scenario("x", "x", "shock", {"QQQ": -0.1})
    with pytest.raises(ValueError, match="at least one shock"):
        Scenario("x", "x", "shock")
    with pytest.raises(ValueError, match="start < end"):
        Scenario("x", "x", "replay", start=date(2020, 3, 1), end=date(2020, 2, 1))
    with pytest.raises(ValueError, match="no shocks"):
        Scenario("x", "x", "replay", {"SPY": -0.1}, date(2020, 1, 1), date(2020, 2, 1))


# --- EWMA covariance ---------------------------------------------------------------------


def _ewma_loop(r: np.ndarray, lam: float, window: int) -> np.ndarray:
    """Direct computation with explicit weights lam ** (sessions before the last row)."""
    r = r[-window:]
    last = r.shape[0] - 1
    weights, rows = [], []
    for t in range(r.shape[0]):
        if np.all(np.isfinite(r[t])):
            weights.append(lam ** (last - t))
            rows.append(r[t])
    w = np.array(weights) / sum(weights)
    mu = sum(wi * ri for wi, ri in zip(w, rows, strict=True))
    k = r.shape[1]
    cov = np.zeros((k, k))
    for wi, ri in zip(w, rows, strict=True):
        cov += wi * np.outer(ri - mu, ri - mu)
    return cov


def test_ewma_covariance_matches_loop() -> None:
    rng = np.random.default_rng(4)
    r = 0.0005 + rng.standard_normal((320, 4)) @ np.diag([0.01, 0.02, 0.008, 0.015])
    r[:, 1] += 0.6 * r[:, 0]
    r[[-1, -7, -100, -300], [0, 2, 3, 1]] = np.nan  # inside and outside the window
    before = r.copy()
    got = ewma_covariance(r, lam=0.94, window=252)
    assert_allclose(got, _ewma_loop(r, 0.94, 252), rtol=1e-12, atol=0)
    assert_array_equal(r, before)
    assert_array_equal(got, got.T)
    # rows before the window do not matter
    r2 = r.copy()
    r2[:60] = 99.0
    assert_allclose(ewma_covariance(r2), got, rtol=1e-12)
    assert_allclose(ewma_covariance(r, lam=0.97, window=100), _ewma_loop(r, 0.97, 100), rtol=1e-12)


def test_ewma_equal_weights_is_population_covariance() -> None:
    rng = np.random.default_rng(2)
    r = rng.standard_normal((60, 3)) * 0.01
    assert_allclose(ewma_covariance(r, lam=1.0), np.cov(r, rowvar=False, ddof=0), rtol=1e-12)


def test_ewma_too_few_rows_and_bad_arguments() -> None:
    r = np.random.default_rng(0).standard_normal((40, 3)) * 0.01
    r[:21, 1] = np.nan  # 19 complete rows
    with pytest.raises(ValueError, match="19 complete rows"):
        ewma_covariance(r)
    with pytest.raises(ValueError, match="lam"):
        ewma_covariance(r, lam=0.0)
    with pytest.raises(ValueError, match="2-D"):
        ewma_covariance(r[:, 0])


# --- conditional moves -------------------------------------------------------------------


def test_conditional_moves_match_formula() -> None:
    cov = _cov3()
    got = conditional_moves(cov, {0: -0.10})
    assert got[0] == -0.10
    assert_allclose(got[1:], cov[1:, 0] * np.linalg.inv(cov[[0]][:, [0]])[0, 0] * -0.10)
    two = conditional_moves(cov, {2: 0.03, 0: -0.10})
    s = np.array([-0.10, 0.03])
    sig_ss = cov[np.ix_([0, 2], [0, 2])]
    expected = cov[1, [0, 2]] @ np.linalg.inv(sig_ss) @ s
    assert_allclose(two[1], expected, rtol=1e-12)
    assert two[0] == -0.10 and two[2] == 0.03
    assert_array_equal(conditional_moves(cov, {}), np.zeros(3))


def test_bivariate_gaussian_regression() -> None:
    s1, s2, rho = 0.012, 0.021, 0.55
    cov = np.array([[s1 * s1, rho * s1 * s2], [rho * s1 * s2, s2 * s2]])
    got = conditional_moves(cov, {0: -0.10})
    assert got[1] == pytest.approx(rho * s2 / s1 * -0.10, rel=1e-12)  # -9.625 %
    # the seed system's rho * s ignored the volatility ratio: -5.5 %
    assert abs(got[1] - rho * -0.10) > 0.04
    back = conditional_moves(cov, {1: 0.05})
    assert back[0] == pytest.approx(rho * s1 / s2 * 0.05, rel=1e-12)


@pytest.mark.parametrize("shocked", [[SPY], [VTV, VUG], [MTUM, SPY]])
def test_propagation_is_linear_in_the_shock(shocked: list[int]) -> None:
    cov = _factor_cov()
    rng = np.random.default_rng(len(shocked))
    a = rng.normal(0.0, 0.1, len(shocked))
    b = rng.normal(0.0, 0.1, len(shocked))
    ma = conditional_moves(cov, dict(zip(shocked, a, strict=True)))
    mb = conditional_moves(cov, dict(zip(shocked, b, strict=True)))
    mab = conditional_moves(cov, dict(zip(shocked, 2.5 * a - b, strict=True)))
    assert_allclose(mab, 2.5 * ma - mb, atol=1e-15)
    assert_allclose(ma[shocked], a, rtol=0, atol=0)


def test_singular_shocked_block_uses_pseudo_inverse() -> None:
    cov = _cov3()
    # factor 3 = 2 x factor 0 exactly: shocking both consistently equals shocking one
    t = np.eye(4, 3)
    t[3, 0] = 2.0
    cov4 = t @ cov @ t.T
    one = conditional_moves(cov4, {0: -0.10})
    both = conditional_moves(cov4, {0: -0.10, 3: -0.20})
    assert_allclose(both, one, atol=1e-14)
    assert one[3] == pytest.approx(-0.20)


def test_conditional_moves_caller_mistakes() -> None:
    with pytest.raises(ValueError, match="indices"):
        conditional_moves(_cov3(), {3: 0.1})
    with pytest.raises(ValueError, match="finite"):
        conditional_moves(_cov3(), {0: float("nan")})
    with pytest.raises(ValueError, match="square"):
        conditional_moves(np.zeros((2, 3)), {0: 0.1})


# --- exposures: no double counting of the market ------------------------------------------


def test_market_beta_alone_gets_no_stress_exposure() -> None:
    # The market enters only through the style ETFs (each carries a market beta of about
    # 1); adding market_beta x SPY on top would count it twice. A portfolio known only by
    # its market beta therefore has no stress exposure: 0 from SPY, even in a market crash.
    cov = _factor_cov()
    only_market = stress_exposures({"market_beta": 1_000_000.0, "size_spread": 5e5})
    assert_array_equal(only_market, np.zeros(K))
    res = run_scenario(scenario_by_name("market_down_10"), only_market, cov, 1e6)
    assert res.pnl == 0.0 and res.contributions["SPY"] == 0.0 and res.moves["SPY"] == -0.10
    # the same dollars on style factors are propagated through their ETFs
    styles = stress_exposures({"value": 500_000.0, "growth": 300_000.0, "size": 200_000.0})
    assert styles[SPY] == 0.0
    assert (styles[VTV], styles[VUG], styles[IWM]) == (500_000.0, 300_000.0, 200_000.0)
    res = run_scenario(scenario_by_name("market_down_10"), styles, cov, 1e6)
    moves = conditional_moves(cov, {SPY: -0.10})
    expected = 5e5 * moves[VTV] + 3e5 * moves[VUG] + 2e5 * moves[IWM]
    assert res.pnl == pytest.approx(expected, rel=1e-12)
    assert -120_000 < res.pnl < -80_000  # about beta 1 to the market, counted once


def test_stress_exposures_mapping() -> None:
    x = stress_exposures(
        {
            "ir_beta": -2.5e5,
            "momentum": 1e5,
            "quality": 3e4,
            "low_volatility": 7e4,
            "growth_value_spread": 9e9,
        }
    )
    expected = np.zeros(K)
    expected[[TLT, MTUM, QUAL, USMV]] = [-2.5e5, 1e5, 3e4, 7e4]
    assert_array_equal(x, expected)
    with pytest.raises(ValueError, match="unknown factor"):
        stress_exposures({"beta": 1.0})


# --- scenarios -------------------------------------------------------------------------


def test_run_scenario_pnl_is_sum_of_contributions() -> None:
    cov = _factor_cov(1)
    x = np.array([0.0, -4e4, 2.2e5, 1.3e5, -6e4, 9e4, 5e4, 1.1e5])
    for name in ("market_down_20", "value_rotation", "momentum_crash", "rates_up_100bp"):
        sc = scenario_by_name(name)
        res = run_scenario(sc, x, cov, equity=8e5)
        moves = conditional_moves(cov, {ETF_INDEX[e]: v for e, v in sc.shocks.items()})
        assert res.available and res.reason is None and res.filled == ()
        assert_allclose([res.moves[e] for e in FACTOR_ETFS], moves, rtol=1e-15)
        assert res.pnl == pytest.approx(float(np.sum(x * moves)), rel=1e-12)
        assert res.pnl == pytest.approx(sum(res.contributions.values()), rel=1e-12)
        assert res.contributions["VTV"] == pytest.approx(2.2e5 * moves[VTV])
        assert res.pnl_pct == pytest.approx(res.pnl / 8e5)
    assert np.isnan(run_scenario(SCENARIOS[0], x, cov, equity=0.0).pnl_pct)
    assert np.isnan(run_scenario(SCENARIOS[0], x, cov, equity=-1e5).pnl_pct)
    with pytest.raises(ValueError, match="exposures_by_etf"):
        run_scenario(SCENARIOS[0], x[:3], cov, 1e6)


def _synthetic_prices(start: date, end: date, seed: int = 0) -> tuple[np.ndarray, list[date]]:
    sessions = trading_days_between(start, end)
    rng = np.random.default_rng(seed)
    r = 0.0003 + 0.01 * rng.standard_normal((len(sessions), K))
    return 100.0 * np.exp(np.cumsum(r, axis=0)), sessions


def test_replay_on_synthetic_prices_uses_last_session_on_or_before() -> None:
    px, sessions = _synthetic_prices(date(2020, 1, 2), date(2020, 6, 30))
    px[: sessions.index(date(2020, 3, 2)), QUAL] = np.nan  # listed during the window
    start, end = date(2020, 2, 22), date(2020, 4, 10)  # a Saturday and Good Friday
    i0, i1 = sessions.index(date(2020, 2, 21)), sessions.index(date(2020, 4, 9))
    moves, filled = replay_moves(px, sessions, start, end)
    ok = np.arange(K) != QUAL
    assert_allclose(moves[ok], px[i1, ok] / px[i0, ok] - 1.0, rtol=1e-15)
    assert np.isnan(moves[QUAL]) and filled == ()
    cov = _factor_cov(2)
    moves2, filled2 = replay_moves(px, sessions, start, end, cov)
    assert filled2 == (QUAL,)
    given = {int(i): float(moves[i]) for i in np.flatnonzero(ok)}
    assert moves2[QUAL] == pytest.approx(conditional_moves(cov, given)[QUAL], rel=1e-12)
    assert_array_equal(moves2[ok], moves[ok])


def test_replay_without_data_is_unavailable() -> None:
    px, sessions = _synthetic_prices(date(2023, 1, 3), date(2024, 4, 19))
    cov = _factor_cov()
    x = np.full(K, 1e5)
    res = run_scenario(scenario_by_name("gfc_2008"), x, cov, 1e6, px, sessions)
    assert not res.available and np.isnan(res.pnl) and res.moves == {}
    assert res.reason is not None and "2008-09-19" in res.reason
    # prices ending inside the window are not silently truncated
    px2, s2 = _synthetic_prices(date(2019, 6, 3), date(2020, 3, 10))
    res2 = run_scenario(scenario_by_name("covid_crash_2020"), x, cov, 1e6, px2, s2)
    assert not res2.available and "2020-03-23" in (res2.reason or "")
    # rows present but no ETF priced on both dates
    px3 = px.copy()
    px3[:, :] = np.nan
    with pytest.raises(ReplayDataError, match="no ETF"):
        replay_moves(px3, sessions, date(2023, 6, 1), date(2023, 9, 1))
    results = run_all(x, cov, 1e6, px, sessions)
    assert [r.name for r in results] == [s.name for s in SCENARIOS]
    assert {r.name for r in results if not r.available} == {
        "gfc_2008",
        "covid_crash_2020",
        "rate_rise_2022",
    }
    with pytest.raises(ValueError, match="needs adj_close"):
        run_scenario(scenario_by_name("gfc_2008"), x, cov, 1e6)


# --- replays on the real prices ------------------------------------------------------------


@lru_cache(maxsize=1)
def _load_market(path: Path) -> tuple[pd.DataFrame, np.ndarray, list[date]]:
    df = pd.read_csv(path, usecols=["symbol", "date", "adj_close"])
    df = df[df["symbol"].isin(FACTOR_ETFS)]
    wide = df.pivot(index="date", columns="symbol", values="adj_close")[list(FACTOR_ETFS)]
    sessions = [date.fromisoformat(d) for d in wide.index]
    return df, wide.to_numpy(), sessions


def _csv_close(df: pd.DataFrame, symbol: str, day: str) -> float:
    row = df[(df["symbol"] == symbol) & (df["date"] == day)]
    assert len(row) == 1
    return float(row["adj_close"].iloc[0])


def test_covid_replay_on_real_prices(market_csv: Path) -> None:
    df, px, sessions = _load_market(market_csv)
    cov = ewma_covariance(simple_returns(px))
    moves, filled = replay_moves(px, sessions, date(2020, 2, 19), date(2020, 3, 23), cov)
    assert filled == ()
    for etf in FACTOR_ETFS:
        expected = _csv_close(df, etf, "2020-03-23") / _csv_close(df, etf, "2020-02-19") - 1
        assert moves[ETF_INDEX[etf]] == pytest.approx(expected, rel=1e-12)
    assert moves[SPY] == pytest.approx(-0.337, abs=0.002)
    assert moves[TLT] > 0  # bonds rallied


def test_gfc_replay_fills_recent_etfs(market_csv: Path) -> None:
    df, px, sessions = _load_market(market_csv)
    cov = ewma_covariance(simple_returns(px))
    sc = scenario_by_name("gfc_2008")
    x = np.array([0.0, -1e5, 3e5, 2e5, 1e5, 1.5e5, 5e4, 2e5])
    res = run_scenario(sc, x, cov, 1e6, px, sessions)
    assert res.available and res.filled == ("MTUM", "QUAL", "USMV")
    spy = _csv_close(df, "SPY", "2009-03-09") / _csv_close(df, "SPY", "2008-09-19") - 1
    assert res.moves["SPY"] == pytest.approx(spy, rel=1e-12)
    traded = {ETF_INDEX[e]: res.moves[e] for e in ("SPY", "TLT", "VTV", "VUG", "IWM")}
    cond = conditional_moves(cov, traded)
    for etf in res.filled:
        assert res.moves[etf] == pytest.approx(cond[ETF_INDEX[etf]], rel=1e-12)
        assert -1.0 < res.moves[etf] < -0.2  # equity ETFs fell with the market
    assert res.pnl == pytest.approx(sum(x[i] * res.moves[e] for i, e in enumerate(FACTOR_ETFS)))
    unfilled, none = replay_moves(px, sessions, sc.start, sc.end)  # type: ignore[arg-type]
    assert none == () and np.isnan(unfilled[[MTUM, QUAL, USMV]]).all()


def test_rates_shock_counts_the_rate_sensitivity_once() -> None:
    """With the covariance, a pure TLT shock costs exactly ir_beta dollars × the shock, however
    much the style ETFs co-move with TLT (the style route is netted out of the TLT term)."""
    rng = np.random.default_rng(21)
    a = rng.normal(size=(8, 8))
    cov = (a @ a.T + 8 * np.eye(8)) * 1e-5  # planted, positive definite, TLT correlated
    dollars = {"value": 400_000.0, "growth": -150_000.0, "size": 90_000.0,
               "ir_beta": -120_000.0}
    exposures = stress_exposures(dollars, cov)
    shock = -0.16
    moves = conditional_moves(cov, {ETF_INDEX["TLT"]: shock})
    assert float(exposures @ moves) == pytest.approx(-120_000.0 * shock, rel=1e-12)
    # without the covariance the style route comes on top (the double count)
    naive = stress_exposures(dollars)
    assert float(naive @ moves) != pytest.approx(-120_000.0 * shock, rel=1e-3)
    # only the TLT term changes
    mask = np.arange(8) != ETF_INDEX["TLT"]
    assert np.array_equal(exposures[mask], naive[mask])
