"""The synthetic factor-model provider: determinism, schema, planted symbols, betas."""

from __future__ import annotations

from datetime import date, timedelta

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from core import calendar
from core.providers.base import (
    ACTION_COLUMNS,
    BAR_COLUMNS,
    PROFILE_COLUMNS,
    PriceProvider,
    empty_actions,
    empty_bars,
)
from core.providers.synthetic import (
    BAD_TICK_FACTOR,
    ETF_SYMBOLS,
    GICS_SECTORS,
    SPECIAL_SYMBOLS,
    SyntheticProvider,
    clear_path_cache,
    etf_correlation,
)
from core.symbols import InvalidSymbolError

END = date(2026, 11, 20)
YEAR_START = date(2025, 11, 20)
TWO_YEARS_START = date(2024, 11, 20)


@pytest.fixture(scope="module")
def provider() -> SyntheticProvider:
    return SyntheticProvider()


@pytest.fixture(scope="module")
def year(provider: SyntheticProvider):
    syms = provider.universe(40) + list(ETF_SYMBOLS)
    return provider.fetch(syms, YEAR_START, END)


def _series(bars: pd.DataFrame, symbol: str) -> pd.DataFrame:
    return bars[bars["symbol"] == symbol].set_index("date").sort_index()


def test_implements_the_protocol(provider: SyntheticProvider) -> None:
    assert isinstance(provider, PriceProvider)
    assert provider.name == "synthetic"


def test_schema_and_dtypes(year) -> None:
    assert tuple(year.bars.columns) == BAR_COLUMNS
    assert year.bars.dtypes.equals(empty_bars().dtypes)
    assert tuple(year.actions.columns) == ACTION_COLUMNS
    assert year.actions.dtypes.equals(empty_actions().dtypes)
    assert year.provider == "synthetic"
    assert year.errors == {}
    assert not year.bars.duplicated(["symbol", "date"]).any()
    assert set(year.actions["kind"]) <= {"split", "dividend"}


def test_only_sessions_in_range(year) -> None:
    days = {d.date() for d in year.bars["date"]}
    assert days <= set(calendar.trading_days_between(YEAR_START, END))
    spy = _series(year.bars, "SPY")
    assert [d.date() for d in spy.index] == calendar.trading_days_between(YEAR_START, END)


def test_weekend_range_has_no_rows(provider: SyntheticProvider) -> None:
    res = provider.fetch(["SPY", "AAPL"], date(2026, 11, 21), date(2026, 11, 22))
    assert res.bars.empty
    assert set(res.errors) == {"SPY", "AAPL"}
    assert all(e.startswith("no_data: ") for e in res.errors.values())


def test_deterministic_across_split_ranges(provider: SyntheticProvider) -> None:
    syms = [s for s in provider.universe(30) if s != "NEWL"] + list(ETF_SYMBOLS)
    a, b, c = date(2025, 3, 3), date(2025, 9, 15), date(2026, 2, 27)
    whole = provider.fetch(syms, a, c).bars
    left = provider.fetch(syms, a, b).bars
    right = provider.fetch(syms, b + timedelta(days=1), c).bars
    joined = pd.concat([left, right]).sort_values(["symbol", "date"], ignore_index=True)
    whole = whole.sort_values(["symbol", "date"], ignore_index=True)
    cols = [col for col in BAR_COLUMNS if col != "adj_close"]
    pd.testing.assert_frame_equal(whole[cols], joined[cols], check_exact=True)
    # adj_close agrees on the right part (same end), and left differs only by actions
    right_whole = whole[whole["date"] > pd.Timestamp(b)].reset_index(drop=True)
    np.testing.assert_array_equal(
        right_whole["adj_close"].to_numpy(), right.sort_values(["symbol", "date"])["adj_close"]
    )


def test_independent_of_other_symbols_and_instances(provider: SyntheticProvider) -> None:
    alone = provider.fetch(["KZDB"], YEAR_START, END).bars
    crowd = SyntheticProvider(seed=7).fetch(provider.universe(60), YEAR_START, END).bars
    pd.testing.assert_frame_equal(
        alone.reset_index(drop=True),
        crowd[crowd["symbol"] == "KZDB"].reset_index(drop=True),
        check_exact=True,
    )
    other_seed = SyntheticProvider(seed=8).fetch(["KZDB"], YEAR_START, END).bars
    assert not np.allclose(alone["close"].to_numpy(), other_seed["close"].to_numpy())


def _cold_fetch(symbols: list[str], start: date, end: date) -> tuple[pd.DataFrame, pd.DataFrame]:
    clear_path_cache()
    got = SyntheticProvider().fetch(symbols, start, end)
    clear_path_cache()
    return got.bars, got.actions


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.integers(0, 700), st.integers(0, 40)), min_size=2, max_size=5),
       st.randoms(use_true_random=False))
def test_a_path_continued_in_process_has_the_bits_of_a_cold_one(
        windows: list[tuple[int, int]], rnd) -> None:
    """Any sequence of requests (later, earlier, overlapping, within the kept tail or not)
    served partly from the path ends kept in this process equals, bit for bit, the same
    request made by a cold process (no kept ends)."""
    pool = ["SPLT", "DIVY", "GAPY", "NEWL", "BADT", "MKTB", "KZDB", "SPY", "TLT"]
    clear_path_cache()
    warm = SyntheticProvider()
    for back, length in windows:
        syms = rnd.sample(pool, rnd.randint(1, len(pool)))
        end = END - timedelta(days=back)
        start = end - timedelta(days=length)
        got = warm.fetch(syms, start, end)
        bars, actions = _cold_fetch(syms, start, end)
        pd.testing.assert_frame_equal(got.bars, bars, check_exact=True)
        pd.testing.assert_frame_equal(got.actions, actions, check_exact=True)
        for c in ("open", "high", "low", "close", "adj_close"):
            assert (got.bars[c].to_numpy().view("i8") == bars[c].to_numpy().view("i8")).all()
        warm.fetch(syms, start, end)  # kept again after the cold request cleared them


def test_a_nightly_request_continues_the_kept_paths() -> None:
    """After a one-year request, the next day's request draws one session per equity, not
    the whole path from 2015 (what makes a nightly's provider cheap), with the same bits."""
    from core.providers import synthetic

    syms = ["KZDB", "DIVY", "SPLT"]
    clear_path_cache()
    warm = SyntheticProvider()
    warm.fetch(syms, YEAR_START, END - timedelta(days=1))
    drawn: list[int] = []
    real = synthetic._steps

    def counting(models, noise, *args):
        drawn.append(noise.shape[1])
        return real(models, noise, *args)

    synthetic._steps = counting
    try:
        got = warm.fetch(syms, END - timedelta(days=1), END)
    finally:
        synthetic._steps = real
    assert drawn == [1]
    bars, _ = _cold_fetch(syms, END - timedelta(days=1), END)
    pd.testing.assert_frame_equal(got.bars, bars, check_exact=True)


def test_ohlc_consistent_and_volume_positive(year) -> None:
    b = year.bars
    assert (b["low"] <= b[["open", "close"]].min(axis=1)).all()
    assert (b["high"] >= b[["open", "close"]].max(axis=1)).all()
    assert (b["low"] > 0).all()
    assert (b["volume"] > 0).all()
    assert b[list(BAR_COLUMNS[2:])].notna().all().all()


def test_equity_closes_in_a_realistic_range(provider: SyntheticProvider) -> None:
    syms = [s for s in provider.universe(300) if s != "BADT"]
    bars = provider.fetch(syms, date(2015, 1, 2), END).bars
    assert bars["close"].between(5.0, 500.0).mean() > 0.995
    assert bars["close"].between(1.0, 1000.0).all()


def test_etf_statistics_match_the_spec(provider: SyntheticProvider) -> None:
    bars = provider.fetch(list(ETF_SYMBOLS), date(2015, 1, 2), date(2025, 12, 31)).bars
    ret = bars.pivot(index="date", columns="symbol", values="adj_close").pct_change().dropna()
    vol = ret.std() * np.sqrt(252)
    assert 0.14 < vol["SPY"] < 0.18
    assert 0.12 < vol["TLT"] < 0.16
    assert 0.19 < vol["IWM"] < 0.25
    assert 0.10 < vol["USMV"] < 0.14
    corr = ret.corr()
    assert corr.loc["SPY", "TLT"] < -0.15
    for etf in ("VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV"):
        assert 0.8 < corr.loc["SPY", etf] < 0.97
    model = pd.DataFrame(etf_correlation(), index=ETF_SYMBOLS, columns=ETF_SYMBOLS)
    np.testing.assert_allclose(corr.loc[list(ETF_SYMBOLS), list(ETF_SYMBOLS)], model, atol=0.06)


def test_split_reported_raw_jump_adj_continuous(provider: SyntheticProvider) -> None:
    for start in (date(2019, 3, 1), date(2022, 7, 15), YEAR_START):
        end = start + timedelta(days=365)
        res = provider.fetch(["SPLT"], start, end)
        splits = res.actions[res.actions["kind"] == "split"]
        assert len(splits) >= 1, f"no split in the year from {start}"
        s = _series(res.bars, "SPLT")
        raw = s["close"].pct_change()
        adj = s["adj_close"].pct_change()
        for _, act in splits.iterrows():
            i = s.index.get_loc(act["date"])
            jump = s["close"].iloc[i - 1] / s["close"].iloc[i]
            assert jump == pytest.approx(act["value"], rel=0.15)
            assert abs(adj.iloc[i]) < 0.15
        assert raw.abs().max() > 0.4  # the raw series does jump
        assert adj.abs().max() < 0.2


def _action_factors(s: pd.DataFrame, actions: pd.DataFrame) -> list[tuple[pd.Timestamp, float]]:
    """(date, Yahoo adjustment factor) of each action, from the reported values."""
    out = []
    for _, a in actions.iterrows():
        if a["kind"] == "split":
            out.append((a["date"], 1.0 / a["value"]))
        else:
            prev = s["close"].iloc[s.index.get_loc(a["date"]) - 1]
            out.append((a["date"], 1.0 - a["value"] / prev))
    return out


def test_adj_close_is_back_adjusted_as_of_end(provider: SyntheticProvider) -> None:
    res = provider.fetch(["DIVY", "SPLT"], TWO_YEARS_START, END)
    for sym in ("DIVY", "SPLT"):
        s = _series(res.bars, sym)
        acts = res.actions[res.actions["symbol"] == sym]
        assert len(acts) > 0
        assert s["adj_close"].iloc[-1] == s["close"].iloc[-1]
        factors = _action_factors(s, acts)
        expected = np.array([np.prod([f for day, f in factors if day > d]) for d in s.index])
        np.testing.assert_allclose(s["adj_close"] / s["close"], expected, rtol=1e-12)


def test_new_action_changes_earlier_adj_close(provider: SyntheticProvider) -> None:
    long = provider.fetch(["DIVY"], TWO_YEARS_START, END)
    first_div = long.actions["date"].min().date()
    short = provider.fetch(["DIVY"], TWO_YEARS_START, first_div - timedelta(days=1))
    assert short.actions.empty
    b, s = _series(short.bars, "DIVY"), _series(long.bars, "DIVY")
    assert b["close"].iloc[-1] == b["adj_close"].iloc[-1]
    pd.testing.assert_series_equal(b["adj_close"], b["close"], check_names=False)
    # every later dividend scales all earlier adjusted closes by its factor
    total = np.prod([f for _, f in _action_factors(s, long.actions)])
    np.testing.assert_allclose(s.loc[b.index, "adj_close"], b["adj_close"] * total, rtol=1e-12)
    assert total < 1.0


def test_dividends_quarterly(year) -> None:
    divs = year.actions[(year.actions["symbol"] == "DIVY") & (year.actions["kind"] == "dividend")]
    assert len(divs) == 4
    assert (divs["value"] > 0).all()
    payers = set(year.actions.loc[year.actions["kind"] == "dividend", "symbol"])
    assert len(payers) >= 3
    assert payers.isdisjoint(set(SPECIAL_SYMBOLS) - {"DIVY"})


def test_delisted_symbol(provider: SyntheticProvider) -> None:
    res = provider.fetch(["DLST"], YEAR_START, END)
    assert res.bars["date"].max() == pd.Timestamp("2026-06-30")
    after = provider.fetch(["DLST"], date(2026, 7, 1), END)
    assert after.bars.empty
    assert after.errors["DLST"].startswith("no_data: ")
    assert "delisted" in after.errors["DLST"]
    early = SyntheticProvider(delist_date=date(2025, 12, 31)).fetch(["DLST"], YEAR_START, END)
    assert early.bars["date"].max() == pd.Timestamp("2025-12-31")


def test_sparse_and_recent_symbols(provider: SyntheticProvider) -> None:
    res = provider.fetch(["GAPY", "SPRS", "NEWL", "SPY"], TWO_YEARS_START, END)
    sessions = len(_series(res.bars, "SPY"))
    gapy = 1 - len(_series(res.bars, "GAPY")) / sessions
    sprs = 1 - len(_series(res.bars, "SPRS")) / sessions
    assert 0.005 < gapy < 0.07
    assert 0.30 < sprs < 0.50
    newl = _series(res.bars, "NEWL")
    assert len(newl) == 60
    assert [d.date() for d in newl.index] == calendar.sessions_ending_at(END, 60)


def test_bad_tick_in_every_year(provider: SyntheticProvider) -> None:
    for start in (date(2020, 1, 1), YEAR_START):
        res = provider.fetch(["BADT"], start, start + timedelta(days=365))
        s = _series(res.bars, "BADT")
        jump = s["close"] / s["close"].shift()
        assert ((jump > 0.5 * BAD_TICK_FACTOR) & (jump < 2 * BAD_TICK_FACTOR)).sum() >= 2
        assert res.actions.empty  # no split explains it


def test_symbol_errors(provider: SyntheticProvider) -> None:
    res = provider.fetch(
        ["ZZZZ_X", "!!!", "brk.b", "EQ5D6A2D8F", "^GSPC", "7203.T", "BRK-B"], YEAR_START, END
    )
    for s in ("ZZZZ_X", "!!!", "brk.b", "EQ5D6A2D8F"):
        assert res.errors[s].startswith("invalid_symbol: "), s
    assert "BRK-B" in res.errors["brk.b"]
    for s in ("^GSPC", "7203.T"):
        assert res.errors[s].startswith("no_data: "), s
    assert set(res.bars["symbol"]) == {"BRK-B"}
    assert res.provider_by_symbol == {"BRK-B": "synthetic"}


def test_market_beta_recovered_by_ols(provider: SyntheticProvider) -> None:
    syms = ["MKTA", "MKTB", "MKTC", "SPY"]
    bars = provider.fetch(syms, TWO_YEARS_START, END).bars
    ret = bars.pivot(index="date", columns="symbol", values="adj_close").pct_change().dropna()
    assert len(ret) > 490
    for sym in ("MKTA", "MKTB", "MKTC"):
        true = provider.true_loadings(sym)
        assert true["SPY"] > 0 and all(v == 0.0 for k, v in true.items() if k != "SPY")
        fit = sm.OLS(ret[sym], sm.add_constant(ret["SPY"])).fit()
        beta, se = fit.params["SPY"], fit.bse["SPY"]
        assert abs(beta - true["SPY"]) < max(4 * se, 0.05), (sym, beta, true["SPY"], se)
        assert abs(beta - true["SPY"]) < 0.35


def test_all_loadings_recovered_by_multivariate_ols(provider: SyntheticProvider) -> None:
    sym = "KZDB"
    bars = provider.fetch([sym, *ETF_SYMBOLS], date(2017, 1, 3), END).bars
    ret = bars.pivot(index="date", columns="symbol", values="adj_close").pct_change().dropna()
    fit = sm.OLS(ret[sym], sm.add_constant(ret[list(ETF_SYMBOLS)])).fit()
    true = provider.true_loadings(sym)
    for etf in ETF_SYMBOLS:
        assert abs(fit.params[etf] - true[etf]) < 4 * fit.bse[etf], etf
    # a univariate fit on SPY finds the implied market beta, not the SPY loading
    uni = sm.OLS(ret[sym], sm.add_constant(ret["SPY"])).fit()
    assert abs(uni.params["SPY"] - provider.implied_market_beta(sym)) < 4 * uni.bse["SPY"]


def test_true_loadings(provider: SyntheticProvider) -> None:
    for sym in provider.universe(200):
        loads = provider.true_loadings(sym)
        assert list(loads) == list(ETF_SYMBOLS)
        assert 0.5 <= loads["SPY"] <= 1.8
        assert all(abs(v) <= 0.15 for k, v in loads.items() if k != "SPY")
    assert provider.true_loadings("TLT") == {e: float(e == "TLT") for e in ETF_SYMBOLS}
    with pytest.raises(InvalidSymbolError):
        provider.true_loadings("PRIVATE_FUND_A")


def test_universe(provider: SyntheticProvider) -> None:
    u = provider.universe(1000)
    assert len(u) == 1000 and len(set(u)) == 1000
    assert u[: len(SPECIAL_SYMBOLS)] == list(SPECIAL_SYMBOLS)
    assert not set(u) & set(ETF_SYMBOLS)
    assert all(len(s) == 4 and s.isalpha() and s.isupper() for s in u)
    assert provider.universe(1000) == SyntheticProvider(seed=99).universe(1000)
    assert provider.universe(2000)[:1000] == u
    small = provider.universe(5)
    assert len(small) == 5 and not set(small) & set(SPECIAL_SYMBOLS)


def test_profiles(provider: SyntheticProvider) -> None:
    syms = ["AAPL", "SPY", "TLT", "MKTB", "PRIVATE_FUND_A"]
    prof = provider.fetch_profiles(syms)
    assert tuple(prof.columns) == PROFILE_COLUMNS
    assert list(prof["symbol"]) == ["AAPL", "SPY", "TLT", "MKTB"]
    p = prof.set_index("symbol")
    assert p.loc["SPY", "sector"] == "ETF" and p.loc["TLT", "sector"] == "ETF"
    assert p.loc["AAPL", "sector"] in GICS_SECTORS
    assert p.loc["AAPL", "industry"] in GICS_SECTORS[p.loc["AAPL", "sector"]]
    assert p.loc["SPY", "provider_beta"] == 1.0
    assert p.loc["TLT", "provider_beta"] < 0
    assert p.loc["MKTB", "provider_beta"] == 1.0
    assert (p["week52_high"] >= p["week52_low"]).all()
    assert (p["market_cap"] > 0).all()
    pd.testing.assert_frame_equal(prof, provider.fetch_profiles(syms))
    assert tuple(provider.fetch_profiles(["!!!"]).columns) == PROFILE_COLUMNS


def test_bad_arguments(provider: SyntheticProvider) -> None:
    with pytest.raises(ValueError, match="before start"):
        provider.fetch(["SPY"], END, YEAR_START)
    with pytest.raises(TypeError):
        provider.fetch("SPY", YEAR_START, END)
