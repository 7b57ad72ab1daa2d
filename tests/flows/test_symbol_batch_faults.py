"""The symbol flow under faults a provider or an operator causes: a bad reference-ETF tick, a
backfill that restates stored prices, a rejected row, an older date run again, a full disk.

Each test injects the fault on a real migrated database (SQLite, then PostgreSQL) through the
real flow on the session's Prefect test server, and compares the tables with a clean run's
(``table_signature``) or with values read back with plain SQL. Prices come from CSV files
written here from the synthetic model, so every planted value is known.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from core import calendar
from core.factors.definitions import REFERENCE_ETFS
from core.providers.synthetic import SyntheticProvider
from core.symbol_steps import ReferenceDataError, register_universe
from tests.conftest import SQLITE_ONLY
from tests.flows.helpers import (
    clone_database,
    drop_clone,
    is_sqlite,
    query,
    scalar,
    signature_diff,
    table_signature,
)

AS_OF = dt.date(2026, 11, 19)
SYMBOLS = ["MKTA", "MKTB", "ABCD"]
CSV_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "adj_close", "volume"]

pytestmark = pytest.mark.usefixtures("prefect_harness")

Edit = Callable[[pd.DataFrame], None]


def write_csv(path: Path, symbols: list[str] = SYMBOLS, end: dt.date = dt.date(2026, 11, 30),
              edit: Edit | None = None) -> Path:
    """Synthetic bars of ``symbols`` and the reference ETFs as a price CSV (``edit`` plants
    faults in the frame first)."""
    bars = SyntheticProvider(seed=7).fetch([*symbols, *REFERENCE_ETFS],
                                           dt.date(2025, 9, 1), end).bars
    bars = bars.assign(date=bars["date"].dt.strftime("%Y-%m-%d"))
    if edit is not None:
        edit(bars)
    bars.to_csv(path, index=False, columns=CSV_COLUMNS)
    return path


def at(bars: pd.DataFrame, symbol: str, day: dt.date) -> pd.Series:
    return (bars["symbol"] == symbol) & (bars["date"] == day.isoformat())


def use(env: pytest.MonkeyPatch, url: str, csv: Path | None = None, **more: str) -> None:
    """Point the flow at database ``url`` and price file ``csv`` (the csv provider)."""
    from core.settings import get_settings

    env.setenv("FACTORFLOW_DATABASE_URL", url)
    if csv is not None:
        env.setenv("FACTORFLOW_PRICE_PROVIDER", "csv")
        env.setenv("FACTORFLOW_CSV_PATH", str(csv))
    for k, v in more.items():
        env.setenv(f"FACTORFLOW_{k.upper()}", v)
    get_settings.cache_clear()


def run_flow(**params):
    from flows.symbol_batch import symbol_batch

    return symbol_batch(**params)


def register(symbols: list[str] = SYMBOLS) -> None:
    asyncio.run(register_universe(symbols))


@pytest.fixture
def clean_copy(database_url: str):
    """An empty migrated copy of the test database, for the clean run to compare with."""
    url = clone_database(database_url, "clean")
    yield url
    drop_clone(url)


@pytest.fixture
def events(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the Prefect events the symbol flow emits (they are still emitted)."""
    import flows.symbol_batch as module

    seen: list[str] = []
    real = module.emit_event

    def spy(event: str, **kwargs):
        seen.append(event)
        return real(event=event, **kwargs)

    monkeypatch.setattr(module, "emit_event", spy)
    return seen


def close_of(url: str, symbol: str, day: dt.date) -> float:
    return float(scalar(url, "SELECT close FROM prices WHERE symbol=? AND date=?",
                        (symbol, day.isoformat())))


# --- 1. a bad reference-ETF price -------------------------------------------------------------

def test_a_bad_reference_tick_holds_back_its_factors_and_a_corrected_delivery_replaces_it(
    database_url: str, clean_copy: str, settings_env: pytest.MonkeyPatch, tmp_path: Path,
    events: list[str],
) -> None:
    from flows.symbol_batch import ALERT_EVENT, COMPLETED_EVENT, symbol_batch

    bad_day = calendar.sessions_back(AS_OF, 20)
    good = write_csv(tmp_path / "good.csv")

    def spy_tick(bars: pd.DataFrame) -> None:
        for c in ("open", "high", "low", "close", "adj_close"):
            bars.loc[at(bars, "SPY", bad_day), c] *= 0.3

    bad = write_csv(tmp_path / "bad.csv", edit=spy_tick)

    use(settings_env, clean_copy, good)
    register()
    assert run_flow(as_of=AS_OF)["status"] == "completed"

    use(settings_env, database_url, bad)
    register()
    events.clear()
    state = symbol_batch(as_of=AS_OF, return_state=True)
    assert state.is_failed()
    with pytest.raises(ReferenceDataError, match="SPY failed its data checks"):
        state.result()
    assert ALERT_EVENT in events and COMPLETED_EVENT not in events
    run = query(database_url, "SELECT status, error_summary FROM batch_runs")
    assert list(run.status) == ["failed"] and "reference_data" in run.error_summary[0]
    betas = query(database_url, "SELECT factor, beta, reason FROM symbol_factor_exposures "
                                "WHERE symbol='MKTA' AND date=?", (AS_OF.isoformat(),))
    by = dict(zip(betas.factor, zip(betas.beta, betas.reason, strict=True), strict=True))
    for factor in ("market_beta", "momentum_spread", "size_spread", "quality_spread"):
        beta, reason = by[factor]
        assert pd.isna(beta) and reason.startswith("reference_data: SPY failed"), factor
    for factor in ("ir_beta", "value", "growth_value_spread"):  # not defined on SPY
        assert not pd.isna(by[factor][0]), factor

    stored_bad = close_of(database_url, "SPY", bad_day)
    use(settings_env, database_url, good)  # the provider delivers the corrected price
    events.clear()
    assert run_flow(as_of=AS_OF)["status"] == "completed"
    assert COMPLETED_EVENT in events
    assert close_of(database_url, "SPY", bad_day) == pytest.approx(
        close_of(clean_copy, "SPY", bad_day), abs=1e-6)
    rev = query(database_url, "SELECT symbol, date, outcome, reason, stored_close, "
                              "offered_close FROM price_revisions")
    assert list(zip(rev.symbol, rev.outcome, strict=True)) == [("SPY", "replaced")]
    assert rev.reason[0].startswith("correction") and str(rev.date[0]) == bad_day.isoformat()
    assert float(rev.stored_close[0]) == pytest.approx(stored_bad, abs=1e-6)
    a, b = table_signature(database_url), table_signature(clean_copy)
    a.pop("price_revisions"), b.pop("price_revisions")
    assert a == b, signature_diff(a, b)


# --- 2. a backfill that restates stored prices ------------------------------------------------

def test_a_backfill_never_replaces_a_good_price_with_a_worse_one(
    database_url: str, settings_env: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    d1, d2, d3 = (calendar.sessions_back(AS_OF, k) for k in (30, 31, 32))
    use(settings_env, database_url, write_csv(tmp_path / "good.csv"))
    register()
    assert run_flow(as_of=AS_OF)["status"] == "completed"
    before = table_signature(database_url)
    stored = {s: close_of(database_url, s, d) for s, d in (("MKTA", d1), ("ABCD", d3))}

    def restate(bars: pd.DataFrame) -> None:
        for c in ("open", "high", "low", "close", "adj_close"):
            bars.loc[at(bars, "MKTA", d1), c] *= 10  # a provider's unit error
        for c in ("open", "high", "low"):
            bars.loc[at(bars, "MKTB", d2), c] = np.nan  # a thinner delivery
        bars.loc[at(bars, "ABCD", d3), ["close", "adj_close"]] += 0.01  # a genuine restatement
        bars.loc[at(bars, "ABCD", d3), "high"] += 0.01

    use(settings_env, database_url, write_csv(tmp_path / "restated.csv", edit=restate))
    summary = run_flow(start=calendar.sessions_back(AS_OF, 3), end=calendar.sessions_back(AS_OF, 1))
    assert summary["counts"]["restatements_rejected"] == 1
    assert summary["counts"]["prices_replaced"] == 1
    assert close_of(database_url, "MKTA", d1) == pytest.approx(stored["MKTA"], abs=1e-6)
    assert close_of(database_url, "ABCD", d3) == pytest.approx(stored["ABCD"] + 0.01, abs=1e-6)
    ohlc = query(database_url, "SELECT open, high, low FROM prices WHERE symbol='MKTB' AND date=?",
                 (d2.isoformat(),))
    assert ohlc.notna().all(axis=None)
    rev = query(database_url, "SELECT symbol, outcome, reason, stored_close, offered_close "
                              "FROM price_revisions ORDER BY symbol")
    assert list(zip(rev.symbol, rev.outcome, strict=True)) == [
        ("ABCD", "replaced"), ("MKTA", "rejected")]
    assert "fails the jump check" in rev.reason[1] and "+900.0%" in rev.reason[1]
    assert float(rev.offered_close[1]) == pytest.approx(stored["MKTA"] * 10, abs=1e-4)
    finding = query(database_url, "SELECT symbol, detail FROM data_check_findings "
                                  "WHERE \"check\"='restatement_rejected'")
    assert list(finding.symbol) == ["MKTA"] and d1.isoformat() in finding.detail[0]
    # nothing else that was stored moved (the backfill only added older history)
    after = table_signature(database_url)
    first_stored = {s: min(str(r[1]) for r in before["prices"] if r[0] == s)
                    for s in {r[0] for r in before["prices"]}}
    changed = {(r[0], str(r[1])) for r in set(after["prices"]) - set(before["prices"])}
    assert {(s, d) for s, d in changed if d >= first_stored[s]} == {("ABCD", d3.isoformat())}
    assert set(before["prices"]) - set(after["prices"]) == {
        r for r in before["prices"] if (r[0], str(r[1])) == ("ABCD", d3.isoformat())}
    # a rerun of the same backfill adds no revision and changes no row
    again = run_flow(start=calendar.sessions_back(AS_OF, 3), end=calendar.sessions_back(AS_OF, 1))
    assert again["counts"]["prices_replaced"] == 0
    assert table_signature(database_url) == after


# --- 3. holes inside the stored range --------------------------------------------------------

@SQLITE_ONLY
def test_a_rejected_row_is_asked_for_again_and_stored_when_delivered(
    database_url: str, settings_env: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    hole = calendar.sessions_back(AS_OF, 2)

    def nan_close(bars: pd.DataFrame) -> None:
        bars.loc[at(bars, "MKTA", hole), "close"] = np.nan

    use(settings_env, database_url, write_csv(tmp_path / "nan.csv", edit=nan_close))
    register()
    first = run_flow(as_of=AS_OF)
    assert first["counts"]["rejected_rows"] == 1
    assert query(database_url, "SELECT COUNT(*) AS n FROM prices WHERE symbol='MKTA' AND date=?",
                 (hole.isoformat(),)).n[0] == 0
    use(settings_env, database_url, write_csv(tmp_path / "good.csv"))
    nxt = calendar.next_session(AS_OF)
    summary = run_flow(as_of=nxt)
    assert summary["counts"]["repair_holes"] == 1
    good = SyntheticProvider(seed=7).fetch(["MKTA"], hole, hole).bars
    assert close_of(database_url, "MKTA", hole) == pytest.approx(
        round(float(good.close.iloc[0]), 6), abs=1e-6)


@SQLITE_ONLY
def test_a_session_never_delivered_becomes_known_missing(
    database_url: str, settings_env: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    hole = calendar.sessions_back(AS_OF, 1)

    def drop_row(bars: pd.DataFrame) -> None:
        bars.loc[at(bars, "MKTA", hole), "symbol"] = "ZZZZ"  # MKTA's row is not delivered

    use(settings_env, database_url, write_csv(tmp_path / "holey.csv", edit=drop_row),
        refetch_sessions="3")
    register()
    run_flow(as_of=AS_OF)
    days = [calendar.next_session(AS_OF)]
    for _ in range(3):
        days.append(calendar.next_session(days[-1]))
    requested = [run_flow(as_of=d)["counts"]["repair_holes"] for d in days]
    # asked again while among the last 3 sessions (by the first load, then the run of the next
    # session), then recorded and no longer asked for
    assert requested == [1, 0, 0, 0]
    # (the file starts later than FACTORFLOW_LOOKBACK_DAYS asks: each symbol also has the
    # session before its first price recorded, "no price before …", so it is not asked again)
    known = query(database_url, "SELECT symbol, date, marked_as_of FROM known_missing_prices "
                  "WHERE detail NOT LIKE 'no price before%'")
    assert list(zip(known.symbol, known.date.astype(str), strict=True)) == [
        ("MKTA", hole.isoformat())]
    assert str(known.marked_as_of[0]) == days[1].isoformat()


# --- 6. an older date run again moves nothing of the present ------------------------------------

def test_an_older_date_or_a_backfill_never_moves_the_present_backwards(
    database_url: str, settings_env: pytest.MonkeyPatch,
) -> None:
    latest = dt.date(2026, 11, 30)
    divs = SyntheticProvider(seed=7).fetch(["DIVY"], dt.date(2026, 1, 1), latest).actions
    paid = sorted(d.date() for d in divs.loc[divs.kind == "dividend", "date"])
    dividend = [d for d in paid if calendar.sessions_back(latest, 120) <= d <= latest][-1]
    use(settings_env, database_url)  # synthetic provider: adjusted as of the request's end
    register(["DIVY", "MKTA"])
    assert run_flow(as_of=latest)["status"] == "completed"
    adj_before = query(database_url, "SELECT date, adj_close FROM prices WHERE symbol='DIVY'")
    states_before = query(database_url, "SELECT symbol, last_price_date, last_factor_date, "
                                        "first_price_date, status FROM symbols ORDER BY symbol")
    # the present's rows for the latest date, before the older runs
    factors_latest = query(database_url, "SELECT * FROM symbol_factor_exposures WHERE date=? "
                                         "ORDER BY symbol, factor", (latest.isoformat(),))

    end = calendar.previous_session(dividend)
    run_flow(start=calendar.sessions_back(end, 4), end=end)  # history before the dividend
    run_flow(as_of=calendar.sessions_back(latest, 3))  # an older date again

    adj_after = query(database_url, "SELECT date, adj_close FROM prices WHERE symbol='DIVY'")
    merged = adj_before.merge(adj_after, on="date", suffixes=("_before", "_after"))
    assert len(merged) == len(adj_before)
    assert np.allclose(merged.adj_close_before.astype(float), merged.adj_close_after.astype(float),
                       rtol=0, atol=1e-6)
    states_after = query(database_url, "SELECT symbol, last_price_date, last_factor_date, "
                                       "first_price_date, status FROM symbols ORDER BY symbol")
    names = ["DIVY", "MKTA", *REFERENCE_ETFS]
    present = ["last_price_date", "last_factor_date", "status"]
    pd.testing.assert_frame_equal(states_before.set_index("symbol").loc[names, present],
                                  states_after.set_index("symbol").loc[names, present])
    assert (states_after.set_index("symbol").loc[names, "first_price_date"]
            <= states_before.set_index("symbol").loc[names, "first_price_date"]).all()
    pd.testing.assert_frame_equal(
        factors_latest,
        query(database_url, "SELECT * FROM symbol_factor_exposures WHERE date=? "
                            "ORDER BY symbol, factor", (latest.isoformat(),)))


# --- 7. a database that cannot be written -----------------------------------------------------

def _fill_the_disk(url: str) -> Callable[[], None]:
    """Make the database refuse growth the way a full disk does; returns the undo."""
    from sqlalchemy import event

    from core.db.engine import flow_engine
    from tests.flows.helpers import db_path, execute

    if is_sqlite(url):
        import sqlite3

        with sqlite3.connect(db_path(url)) as con:
            pages = con.execute("PRAGMA page_count").fetchone()[0]

        def full(dbapi_connection, _record) -> None:
            cur = dbapi_connection.cursor()
            cur.execute(f"PRAGMA max_page_count = {pages + 2}")
            cur.close()

        engine = flow_engine(url)
        event.listen(engine.sync_engine, "connect", full)
        return lambda: event.remove(engine.sync_engine, "connect", full)
    execute(url, "CREATE FUNCTION ff_disk_full() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                 "RAISE EXCEPTION 'could not extend file: No space left on device' "
                 "USING ERRCODE = 'disk_full'; END $$")
    execute(url, "CREATE TRIGGER ff_disk_full BEFORE INSERT OR UPDATE ON prices "
                 "FOR EACH STATEMENT EXECUTE FUNCTION ff_disk_full()")

    def undo() -> None:
        execute(url, "DROP TRIGGER ff_disk_full ON prices")
        execute(url, "DROP FUNCTION ff_disk_full()")

    return undo


def test_a_full_disk_fails_the_run_without_an_event_and_a_rerun_completes_it(
    database_url: str, clean_copy: str, settings_env: pytest.MonkeyPatch, tmp_path: Path,
    events: list[str],
) -> None:
    from core.db.errors import StorageError
    from flows.symbol_batch import COMPLETED_EVENT, symbol_batch

    csv = write_csv(tmp_path / "good.csv")
    use(settings_env, clean_copy, csv)
    register()
    assert run_flow(as_of=AS_OF)["status"] == "completed"

    use(settings_env, database_url, csv)
    register()
    undo = _fill_the_disk(database_url)
    events.clear()
    try:
        state = symbol_batch(as_of=AS_OF, return_state=True)
    finally:
        undo()
    assert state.is_failed()
    with pytest.raises(StorageError, match="storing prices failed") as err:
        state.result()
    assert len(str(err.value)) < 400 and "INSERT" not in str(err.value)
    assert COMPLETED_EVENT not in events
    assert query(database_url, "SELECT COUNT(*) AS n FROM prices").n[0] == 0
    run = query(database_url, "SELECT status, error_summary FROM batch_runs")
    assert list(run.status) in (["failed"], ["running"])  # recording may fail on a full disk
    assert len(run.error_summary[0]) < 2000 and "INSERT INTO" not in run.error_summary[0]

    events.clear()
    assert run_flow(as_of=AS_OF)["status"] == "completed"  # space is back: a plain rerun
    assert COMPLETED_EVENT in events
    a, b = table_signature(database_url), table_signature(clean_copy)
    assert a == b, signature_diff(a, b)


@SQLITE_ONLY
def test_a_reference_etf_is_never_retired_by_a_run_for_a_date_its_provider_lacks(
    database_url: str, settings_env: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    latest = dt.date(2026, 11, 30)
    old = write_csv(tmp_path / "old.csv", end=dt.date(2026, 11, 5))  # a file that stopped
    use(settings_env, database_url, old)
    register()
    with pytest.raises(ReferenceDataError, match="SPY: no price on 2026-11-30"):
        run_flow(as_of=latest)
    statuses = query(database_url, "SELECT symbol, status FROM symbols")
    by = dict(zip(statuses.symbol, statuses.status, strict=True))
    assert by["MKTA"] == "delisted"  # an equity that stopped trading is retired
    assert all(by[e] == "active" for e in REFERENCE_ETFS)  # the ETFs are not
    use(settings_env, database_url, write_csv(tmp_path / "fresh.csv"))  # the file is fixed
    assert run_flow(as_of=latest)["status"] in ("completed", "completed_with_failures")
