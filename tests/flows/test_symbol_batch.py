"""The symbol flow end to end: real Prefect (test harness), a real migrated database (SQLite,
and PostgreSQL when configured), synthetic and CSV providers. Betas are checked against
statsmodels / scikit-learn computed here from rows read back with plain SQL (helpers)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler

from core import calendar
from core.factors.definitions import REFERENCE_ETFS
from core.symbol_steps import ReferenceDataError, register_universe
from tests.conftest import WAIT_LIMIT_S, wait_until
from tests.flows.helpers import adj_close_matrix, execute, query, snapshot

AS_OF = dt.date(2026, 11, 19)
NEXT = dt.date(2026, 11, 20)
RIDGE_ETFS = ["VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV"]
RIDGE_NAMES = ["value", "growth", "momentum", "quality", "size", "low_volatility"]
SPREADS = {
    "growth_value_spread": ("VUG", "VTV"), "momentum_spread": ("MTUM", "SPY"),
    "size_spread": ("IWM", "SPY"), "quality_spread": ("QUAL", "SPY"),
}

pytestmark = pytest.mark.usefixtures("prefect_harness")


def run_flow(**params):
    from flows.symbol_batch import symbol_batch

    return symbol_batch(**params)


def register(symbols: list[str]) -> None:
    asyncio.run(register_universe(symbols))


def expected_betas(url: str, symbol: str, as_of: dt.date) -> dict[str, float]:
    """Every factor of ``symbol`` by statsmodels / scikit-learn on the stored prices."""
    sessions = calendar.sessions_ending_at(as_of, 181)
    wide = adj_close_matrix(url, list(dict.fromkeys([symbol, *REFERENCE_ETFS])), sessions)
    rets = wide / wide.shift(1) - 1  # NaN when either day is missing
    rets = rets.iloc[1:]
    out: dict[str, float] = {}

    def ols(y: pd.Series, x: pd.Series, need: int) -> float:
        ok = y.notna() & x.notna()
        if ok.sum() < need:
            return float("nan")
        return float(sm.OLS(y[ok].to_numpy(), sm.add_constant(x[ok].to_numpy())).fit().params[1])

    last90 = rets.iloc[-90:]
    out["market_beta"] = ols(last90[symbol], last90["SPY"], 68)
    out["ir_beta"] = ols(last90[symbol], last90["TLT"], 68)
    x = last90[RIDGE_ETFS]
    ok = last90[symbol].notna() & x.notna().all(axis=1)
    if ok.sum() >= 68:
        scaler = StandardScaler().fit(x[ok].to_numpy())
        model = Ridge(alpha=1.0).fit(scaler.transform(x[ok].to_numpy()), last90[symbol][ok])
        for name, coef, sd in zip(RIDGE_NAMES, model.coef_, scaler.scale_, strict=True):
            out[name] = float(coef / sd)
    else:
        out.update({n: float("nan") for n in RIDGE_NAMES})
    for name, (long, short) in SPREADS.items():
        out[name] = ols(rets[symbol], rets[long] - rets[short], 135)
    return out


def stored_betas(url: str, symbol: str, as_of: dt.date) -> dict[str, float]:
    df = query(url, "SELECT factor, beta FROM symbol_factor_exposures WHERE symbol=? AND date=?",
               (symbol, as_of.isoformat()))
    return {f: (np.nan if b is None else float(b)) for f, b in zip(df.factor, df.beta, strict=True)}


def assert_betas_match(url: str, symbol: str, as_of: dt.date) -> None:
    want, got = expected_betas(url, symbol, as_of), stored_betas(url, symbol, as_of)
    assert set(got) == set(want)
    for factor, w in want.items():
        g = got[factor]
        if np.isnan(w):
            assert np.isnan(g), (symbol, factor, g)
        else:
            assert g == pytest.approx(w, abs=1e-9, rel=0), (symbol, factor)


UNIVERSE = ["MKTA", "MKTB", "GAPY", "SPRS", "NEWL", "SPLT", "DLST", "BADT", "DIVY",
            "ABCD", "EFGH", "QRST", "7203.T", "PRIVATE_FUND_A", "EQ5D6A2D8F"]


def test_nightly_run_stores_checked_factors_and_emits_event(database_url: str) -> None:
    register(UNIVERSE)
    # garbage that bypassed validation (e.g. inserted by hand) gets a named error, no fetch
    execute(database_url, "INSERT INTO symbols (symbol, kind, status, created_at) "
            "VALUES ('B@D!', 'equity', 'active', '2026-01-01 00:00:00')")
    summary = run_flow(as_of=AS_OF)
    assert summary["errors"]["symbols"]["B@D!"].startswith("invalid_symbol")

    assert summary["as_of"] == AS_OF.isoformat()
    # 7203.T is a real ticker the synthetic provider does not know: a named per-symbol error
    assert summary["status"] == "completed_with_failures"
    assert summary["errors"]["symbols"]["7203.T"].startswith("no_data")
    states = query(database_url, "SELECT symbol, kind, status, error_reason FROM symbols")
    st = states.set_index("symbol")
    assert st.loc["7203.T", "status"] == "error" and "no_data" in st.loc["7203.T", "error_reason"]
    for private in ("PRIVATE_FUND_A", "EQ5D6A2D8F"):
        assert st.loc[private, "kind"] == "private"
    assert all(st.loc[e, "status"] == "active" for e in REFERENCE_ETFS)

    assert st.loc["B@D!", "status"] == "error"
    priced = set(query(database_url, "SELECT DISTINCT symbol FROM prices").symbol)
    assert not priced & {"PRIVATE_FUND_A", "EQ5D6A2D8F", "7203.T", "B@D!"}
    profiles = query(database_url, "SELECT symbol, sector FROM symbol_profiles").set_index("symbol")
    assert profiles.loc["SPY", "sector"] == "ETF" and profiles.loc["MKTA", "sector"]
    assert set(profiles.index) == priced

    # every factor of these symbols equals statsmodels / scikit-learn on the same windows
    for symbol in ("MKTA", "GAPY", "SPLT", "DIVY", "ABCD", "SPY", "TLT"):
        assert_betas_match(database_url, symbol, AS_OF)
    spy = stored_betas(database_url, "SPY", AS_OF)
    assert spy["market_beta"] == pytest.approx(1.0, abs=1e-9)

    fx = query(database_url, "SELECT symbol, factor, beta, reason, n_obs FROM "
               "symbol_factor_exposures WHERE date=?", (AS_OF.isoformat(),))
    by = fx.set_index(["symbol", "factor"])
    assert by.loc[("SPRS", "market_beta"), "reason"].startswith("insufficient_data")
    assert np.isnan(by.loc[("SPRS", "market_beta"), "beta"])
    assert by.loc[("NEWL", "growth_value_spread"), "reason"].startswith("insufficient_data")
    assert by.loc[("BADT", "market_beta"), "reason"].startswith("data_check: unexplained_jump")
    # DLST stopped trading in June: marked delisted with the reason, no factors computed
    assert st.loc["DLST", "status"] == "delisted"
    assert "no prices since 2026-06-30" in st.loc["DLST", "error_reason"]
    assert "DLST" not in set(fx.symbol)
    assert by.loc[("GAPY", "market_beta"), "n_obs"] < 90  # its gaps shorten only its own window
    assert by.loc[("MKTA", "market_beta"), "n_obs"] == 90
    assert not np.isnan(by.loc[("SPLT", "market_beta"), "beta"])  # the split is explained
    assert len(fx) == 12 * len(priced - {"DLST"})

    splits = query(database_url, "SELECT * FROM corporate_actions WHERE symbol='SPLT'")
    assert (splits.kind == "split").any()

    # daily metrics against a hand computation from the stored rows
    sessions = calendar.sessions_ending_at(AS_OF, 6)
    wide = adj_close_matrix(database_url, ["MKTA"], sessions)["MKTA"]
    m = query(database_url, "SELECT * FROM symbol_daily_metrics WHERE symbol='MKTA' AND date=?",
              (AS_OF.isoformat(),)).iloc[0]
    assert m.return_1d == pytest.approx(wide.iloc[-1] / wide.iloc[-2] - 1, abs=1e-12)
    assert m.return_5d == pytest.approx(wide.iloc[-1] / wide.iloc[0] - 1, abs=1e-12)

    run = query(database_url, "SELECT status, target_date FROM batch_runs").iloc[0]
    assert run.status == "completed_with_failures" and run.target_date == AS_OF.isoformat()

    event = _wait_for_event("factorflow.symbol-batch.completed", summary["run_id"])
    assert event.payload["as_of"] == AS_OF.isoformat()
    assert event.resource.id == "factorflow.symbol-batch"


def _wait_for_event(name: str, run_id: str, timeout: float = WAIT_LIMIT_S):
    """The event ``name`` of ``run_id``, once Prefect has stored it."""
    from prefect.client.orchestration import get_client
    from prefect.events.filters import EventFilter, EventNameFilter

    async def read():
        async with get_client() as client:
            page = await client.read_events(
                filter=EventFilter(event=EventNameFilter(name=[name])), limit=50
            )
            return [e for e in page.events if e.payload.get("run_id") == run_id]

    return wait_until(lambda: asyncio.run(read()), f"event {name} of run {run_id}",
                      timeout=timeout, every=0.5)[0]


def test_rerun_is_idempotent_and_next_day_is_incremental(database_url: str) -> None:
    register(["MKTA", "GAPY", "SPLT", "DLST", "ABCD"])
    run_flow(as_of=AS_OF)
    before = snapshot(database_url)
    again = run_flow(as_of=AS_OF)
    assert again["counts"]["price_rows"] == 0  # nothing new to fetch
    assert snapshot(database_url) == before

    nxt = run_flow(as_of=NEXT)
    # one new row per symbol still trading (DLST, delisted, is no longer fetched)
    trading = 4 + len(REFERENCE_ETFS)
    new_rows = query(database_url, "SELECT COUNT(*) AS n FROM prices WHERE date=?",
                     (NEXT.isoformat(),)).n[0]
    assert new_rows == trading
    if nxt["counts"]["refetched_for_actions"] == 0:
        assert nxt["counts"]["price_rows"] == trading
    else:  # a new split/dividend re-fetches that symbol's history (one adjustment basis)
        assert nxt["counts"]["price_rows"] > trading
    assert_betas_match(database_url, "MKTA", NEXT)
    dates = set(query(database_url, "SELECT DISTINCT date FROM symbol_factor_exposures").date)
    assert dates == {AS_OF.isoformat(), NEXT.isoformat()}


def test_backfill_range_computes_every_session(database_url: str) -> None:
    register(["MKTB", "EFGH"])
    start, end = dt.date(2026, 11, 13), dt.date(2026, 11, 19)
    summary = run_flow(start=start, end=end)
    assert summary["counts"]["dates"] == 5
    dates = sorted(set(query(database_url,
                             "SELECT DISTINCT date FROM symbol_factor_exposures").date))
    assert dates == [d.isoformat() for d in calendar.trading_days_between(start, end)]
    assert_betas_match(database_url, "EFGH", dt.date(2026, 11, 17))


def _write_csv(path: Path, rows: list[dict]) -> Path:
    pd.DataFrame(rows).to_csv(path, index=False)
    return path


def test_real_prices_through_csv_provider(database_url: str, market_csv: Path,
                                          settings_env: pytest.MonkeyPatch) -> None:
    settings_env.setenv("FACTORFLOW_PRICE_PROVIDER", "csv")
    settings_env.setenv("FACTORFLOW_CSV_PATH", str(market_csv))
    stocks = ["AAPL", "MSFT", "JPM", "XOM", "UBER", "BRK-B", "XLK"]
    register(stocks)
    as_of = dt.date(2024, 4, 19)
    summary = run_flow(as_of=as_of)
    assert summary["status"] == "completed", summary["errors"]
    for s in stocks:
        assert_betas_match(database_url, s, as_of)
    # stored closes are the file's (6 decimals)
    raw = pd.read_csv(market_csv)
    row = raw[(raw.symbol == "SPY") & (raw.date == "2024-04-19")].iloc[0]
    got = query(database_url, "SELECT close, adj_close FROM prices WHERE symbol='SPY' AND "
                "date='2024-04-19'").iloc[0]
    assert got.close == pytest.approx(row.close, abs=1e-6)
    assert got.adj_close == pytest.approx(row.adj_close, abs=1e-6)


def test_malformed_csv_is_a_named_error_per_symbol(database_url: str, tmp_path: Path,
                                                   settings_env: pytest.MonkeyPatch) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("symbol,date,open,high,low,close,volume\nSPY,2026-11-20,1,1,1,1,5\n")
    settings_env.setenv("FACTORFLOW_PRICE_PROVIDER", "csv")
    settings_env.setenv("FACTORFLOW_CSV_PATH", str(bad))
    register(["ABCD"])
    with pytest.raises(ReferenceDataError, match="SPY"):
        run_flow(as_of=AS_OF)
    run = query(database_url, "SELECT status, error_summary FROM batch_runs").iloc[0]
    assert run.status == "failed" and "ReferenceDataError" in run.error_summary
    assert query(database_url, "SELECT COUNT(*) AS n FROM prices").n[0] == 0
    f = query(database_url,
              "SELECT symbol, detail FROM data_check_findings WHERE \"check\"='fetch_error'")
    assert set(f.symbol) == {"ABCD", *REFERENCE_ETFS}
    assert all("adj_close" in d for d in f.detail)  # the missing column is named


def _holder(pid: int, name: str = "another-run"):
    import socket

    from core.run_lock import LockOwner, process_token

    return LockOwner(name, socket.gethostname(), pid, process_token(pid))


def test_a_run_while_another_live_run_holds_the_lock_fails_and_writes_nothing(
    database_url: str,
) -> None:
    import subprocess

    from core.symbol_steps import BatchAlreadyRunning, lock_batch, unlock_batch
    from flows.symbol_batch import symbol_batch

    register(["MKTA"])
    live = subprocess.Popen(["sleep", "120"])
    try:
        asyncio.run(lock_batch(_holder(live.pid)))
        state = symbol_batch(as_of=AS_OF, return_state=True)
        assert state.is_failed()  # an operator sees it as not done
        with pytest.raises(BatchAlreadyRunning, match=f"pid {live.pid}"):
            state.result()
        assert query(database_url, "SELECT COUNT(*) AS n FROM prices").n[0] == 0
        assert query(database_url, "SELECT COUNT(*) AS n FROM batch_runs").n[0] == 0
    finally:
        live.kill()
        live.wait()
    asyncio.run(unlock_batch("another-run"))
    assert run_flow(as_of=AS_OF)["status"] == "completed"


def test_a_lock_left_by_a_dead_run_is_taken_over_at_once(database_url: str) -> None:
    import subprocess

    from core.symbol_steps import lock_batch

    register(["MKTA"])
    dead = subprocess.Popen(["true"])
    dead.wait()
    asyncio.run(lock_batch(_holder(dead.pid, "killed-run")))
    execute(database_url,  # the row a killed run leaves behind
            "INSERT INTO batch_runs (id, job_type, target_date, status, started_at, counts, "
            "phase_seconds, error_summary) VALUES ('killed', 'symbol-batch', ?, 'running', "
            "'2026-11-19 22:00:00.000000', '{}', '{}', '{}')", (AS_OF.isoformat(),))
    assert run_flow(as_of=AS_OF)["status"] == "completed"
    runs = query(database_url, "SELECT id, status, error_summary FROM batch_runs ORDER BY id")
    assert dict(zip(runs.id, runs.status, strict=True))["killed"] == "crashed"
    assert "ended without closing" in runs.error_summary[runs.id == "killed"].iloc[0]
    assert query(database_url, "SELECT COUNT(*) AS n FROM run_locks").n[0] == 0


def _first_prices(url: str) -> dict[str, dt.date]:
    rows = query(url, "SELECT symbol, MIN(date) AS first FROM prices GROUP BY symbol")
    return {s: dt.date.fromisoformat(str(d)[:10]) for s, d in zip(rows.symbol, rows["first"],
                                                                   strict=True)}


def test_short_histories_are_extended_over_nights_within_the_cap(
        database_url: str, settings_env: pytest.MonkeyPatch) -> None:
    """New symbols get ~2 years; symbols stored with 1 year are extended back, at most
    ``history_extension_per_night`` a night; a rerun of a night changes nothing; a recently
    listed symbol is asked once, then never again."""
    from core.history_extension import plan_history_extension
    from core.settings import get_settings

    stocks = ["ABCD", "DIVY", "EFGH", "GAPY", "MKTA", "MKTB", "NEWL", "SPLT"]
    register(stocks)
    nights = calendar.sessions_ending_at(NEXT, 5)
    settings_env.setenv("FACTORFLOW_LOOKBACK_DAYS", "380")  # stored as before: one year
    get_settings.cache_clear()
    run_flow(as_of=nights[0])
    one_year = _first_prices(database_url)
    # NEWL (listed 60 sessions before each request's end) was marked at its first fetch;
    # forget that so it looks like any symbol stored before the extension existed
    execute(database_url, "DELETE FROM known_missing_prices")

    settings_env.delenv("FACTORFLOW_LOOKBACK_DAYS")
    settings_env.setenv("FACTORFLOW_HISTORY_EXTENSION_PER_NIGHT", "4")
    get_settings.cache_clear()
    two_years = calendar.session_on_or_after(nights[-1] - dt.timedelta(days=760))
    extended: dict[dt.date, set[str]] = {}
    before = one_year
    for night in nights[1:]:
        run_flow(as_of=night)
        after = _first_prices(database_url)
        extended[night] = {s for s in after if after[s] < before[s]}
        assert len(extended[night]) <= 4  # 16 symbols in 4 slices of 4
        if night == nights[1]:
            tables = snapshot(database_url)
            assert run_flow(as_of=night)["counts"]["price_rows"] == 0
            assert snapshot(database_url) == tables  # a rerun of the night changes nothing
        before = after
    wanted = calendar.session_on_or_after(nights[-1] - dt.timedelta(days=760))
    # every stock but NEWL now starts about two years back (the ETFs did from the start)
    assert all(after[s] <= wanted for s in stocks if s != "NEWL")
    assert all(one_year[s] > two_years for s in stocks)
    assert after["NEWL"] == one_year["NEWL"]  # the provider has nothing older
    # (GAPY, ~3 % of sessions missing at random, may be marked too: its first asked session
    # was one of its holes)
    marked = query(database_url, "SELECT symbol, date, detail FROM known_missing_prices "
                   "WHERE symbol = 'NEWL'")
    assert len(marked) == 1 and "no price before" in marked.detail[0]
    assert str(marked.date[0])[:10] == calendar.previous_session(one_year["NEWL"]).isoformat()

    async def asked_next(per_night: int) -> list[str]:
        from core.db.engine import reading
        from core.repositories import symbols as symbol_repo

        async with reading() as conn:
            states = await symbol_repo.get_states(conn)
        return await plan_history_extension(states, calendar.next_session(nights[-1]),
                                            760, per_night)

    assert asyncio.run(asked_next(1000)) == []  # NEWL included: nobody is asked again
    assert asyncio.run(asked_next(0)) == []
    # a new symbol gets ~2 years at once
    register(["ZZZZ"])
    run_flow(as_of=nights[-1])
    assert _first_prices(database_url)["ZZZZ"] == wanted
