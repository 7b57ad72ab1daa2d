"""The universe service (core/services/universe.py) on a real migrated database (SQLite,
PostgreSQL):
reading ticker files, listing, adding, removing (held symbols, history kept, every status
filter honouring ``inactive``) and refetching a corrected history under the batch lock."""

from __future__ import annotations

import asyncio
import datetime as dt
import socket
import subprocess
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from core import calendar
from core.factors.definitions import REFERENCE_ETFS
from core.providers.csv_file import CsvProvider
from core.providers.synthetic import SyntheticProvider
from core.services import ticker_file, universe
from core.services.ticker_file import TickerEntry
from tests.flows.helpers import clone_database, drop_clone, execute, query, scalar

AS_OF = dt.date(2026, 11, 19)
BAD_DAY = calendar.sessions_back(AS_OF, 20)
CSV_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "adj_close", "volume"]


def run(coro):
    return asyncio.run(coro)


def engine_of(url: str):
    from core.db.engine import flow_engine

    return flow_engine(url)


# --- ticker files -----------------------------------------------------------------------------

def test_one_ticker_per_line_ignores_blanks_and_comments() -> None:
    text = "# my universe\n\naapl\n  MSFT  # software\nbrk.b\n\n# the end\n"
    entries = ticker_file.parse_ticker_list(text)
    assert [(e.raw, e.where) for e in entries] == [
        ("aapl", "line 3"), ("MSFT", "line 4"), ("brk.b", "line 5")]


def test_a_price_csv_gives_its_distinct_symbols_in_order() -> None:
    text = ("symbol,date,open,high,low,close,adj_close,volume\n"
            "SPY,2024-04-18,1,1,1,1,1,1\nSPY,2024-04-19,1,1,1,1,1,1\n"
            "# a comment row\nAAPL,2024-04-19,1,1,1,1,1,1\n\nSPY,2024-04-22,1,1,1,1,1,1\n")
    entries = ticker_file.parse_ticker_list(text)
    assert [(e.raw, e.where) for e in entries] == [("SPY", "line 2"), ("AAPL", "line 5")]
    one_column = ticker_file.parse_ticker_list("Symbol\nKO\nPEP\n")
    assert [e.raw for e in one_column] == ["KO", "PEP"]


def test_a_csv_without_a_symbol_column_or_an_unreadable_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ticker_file.TickerFileError, match="needs a 'symbol' column .*ticker, date"):
        ticker_file.parse_ticker_list("ticker,date\nAAPL,2024-01-02\n", "t.csv")
    with pytest.raises(ticker_file.TickerFileError, match="no such file"):
        ticker_file.read_ticker_file(str(tmp_path / "missing.txt"))
    with pytest.raises(ticker_file.TickerFileError, match="is a directory"):
        ticker_file.read_ticker_file(str(tmp_path))
    binary = tmp_path / "x.bin"
    binary.write_bytes(b"\x89PNG\x00\x00\xff\xfe")
    with pytest.raises(ticker_file.TickerFileError, match="not a text file"):
        ticker_file.read_ticker_file(str(binary))


# --- add and list -----------------------------------------------------------------------------

def test_add_validates_normalises_and_reports_each_entry(database_url: str) -> None:
    engine = engine_of(database_url)
    report = run(universe.add_symbols(
        ["aapl", "brk.b", "AB$C", "AAPL", "PRIVATE_FUND_A", "", "spy"], engine))
    assert report.added == [{"symbol": "AAPL", "kind": "equity"},
                            {"symbol": "BRK-B", "kind": "equity"},
                            {"symbol": "PRIVATE_FUND_A", "kind": "private"},
                            {"symbol": "SPY", "kind": "etf"}]
    assert [(r["input"], r["where"]) for r in report.rejected] == [
        ("AB$C", "symbols[2]"), ("", "symbols[5]")]
    assert "not allowed" in report.rejected[0]["reason"]
    assert report.rejected[1]["reason"] == "empty"
    assert sorted(report.reference_added) == sorted(e for e in REFERENCE_ETFS if e != "SPY")
    rows = query(database_url, "SELECT symbol, kind, status FROM symbols ORDER BY symbol")
    got = dict(zip(rows.symbol, zip(rows.kind, rows.status, strict=True), strict=True))
    assert got["AAPL"] == ("equity", "pending") and got["BRK-B"] == ("equity", "pending")
    assert got["PRIVATE_FUND_A"] == ("private", "active")  # never fetched
    assert got["SPY"] == ("etf", "pending") and len(got) == 3 + len(REFERENCE_ETFS)

    again = run(universe.add_symbols(["AAPL", "msft"], engine))
    assert again.already_present == [{"symbol": "AAPL", "status": "pending"}]
    assert again.added == [{"symbol": "MSFT", "kind": "equity"}] and again.valid == 2
    assert again.reference_added == []


def test_add_with_nothing_valid_raises_with_every_reason_and_writes_nothing(
        database_url: str) -> None:
    engine = engine_of(database_url)
    with pytest.raises(universe.NoValidSymbols, match=r"line 2: invalid symbol 'A B'") as err:
        run(universe.add_symbols([TickerEntry("A B", "line 2"),
                                  TickerEntry("^", "line 3")], engine))
    assert err.value.field == "line 2" and len(err.value.report.rejected) == 2
    with pytest.raises(universe.NoValidSymbols, match="no symbol given"):
        run(universe.add_symbols([], engine))
    assert scalar(database_url, "SELECT COUNT(*) FROM symbols") == 0


def test_list_pages_filters_and_counts(database_url: str) -> None:
    engine = engine_of(database_url)
    run(universe.add_symbols(["AAPL", "MSFT", "KO"], engine))
    execute(database_url, "UPDATE symbols SET status='error', error_reason='no_data: unknown' "
                          "WHERE symbol='KO'")
    page = run(universe.list_symbols(engine))
    assert page.total == 3 + len(REFERENCE_ETFS) and len(page.items) == page.total
    assert page.counts == {"error": 1, "pending": 2 + len(REFERENCE_ETFS)}
    err = run(universe.list_symbols(engine, status="ERROR"))
    assert [(r.symbol, r.error_reason) for r in err.items] == [("KO", "no_data: unknown")]
    assert err.total == 1 and err.counts == page.counts
    second = run(universe.list_symbols(engine, limit=2, offset=2))
    assert [r.symbol for r in second.items] == [r.symbol for r in page.items[2:4]]
    with pytest.raises(universe.InvalidInput, match="unknown status 'gone'.*inactive") as bad:
        run(universe.list_symbols(engine, status="gone"))
    assert bad.value.field == "status"


# --- remove -----------------------------------------------------------------------------------

def _portfolio(url: str, owner: str, name: str, symbol: str, exit_date: dt.date | None = None,
               deleted: bool = False) -> str:
    from core.db.engine import transaction
    from core.repositories import portfolios as portfolio_repo
    from core.services import users as users_service

    users = query(url, "SELECT id FROM users WHERE name=?", (owner,))

    async def make() -> str:
        engine = engine_of(url)
        uid = users.id[0] if len(users) else (await users_service.create_user(engine,
                                                                                   owner))[0]
        async with transaction(engine) as conn:
            return await portfolio_repo.create_portfolio(conn, uid, name, Decimal("100"), [{
                "symbol": symbol, "quantity": Decimal("10"), "entry_date": dt.date(2026, 1, 5),
                "entry_price": Decimal("10"), "exit_date": exit_date,
                "exit_price": Decimal("11") if exit_date else None}])

    pid = run(make())
    if deleted:
        execute(url, "UPDATE portfolios SET deleted_at='2026-02-01 00:00:00' WHERE id=?", (pid,))
    return pid


def test_remove_keeps_history_refuses_held_symbols_without_force(database_url: str) -> None:
    engine = engine_of(database_url)
    run(universe.add_symbols(["AAPL", "MSFT", "KO", "PEP"], engine))
    execute(database_url, "INSERT INTO prices (symbol, date, close, adj_close) "
                          "VALUES ('KO', '2026-11-19', 60, 60)")
    execute(database_url, "INSERT INTO onboarding_jobs (symbol, status, attempts, portfolio_ids,"
                          " requested_at) VALUES ('KO', 'pending', 0, '[]', '2026-11-20 "
                          "00:00:00')")
    held = _portfolio(database_url, "alice", "main", "AAPL")
    _portfolio(database_url, "alice", "old", "MSFT", exit_date=dt.date(2026, 3, 2))  # closed
    _portfolio(database_url, "bob", "gone", "PEP", deleted=True)

    report = run(universe.remove_symbols(["ko", "AAPL", "MSFT", "PEP", "SPY", "NOPE", "A$"],
                                         engine=engine))
    assert [r["symbol"] for r in report.removed] == ["KO", "MSFT", "PEP"]
    assert report.held == [{"symbol": "AAPL", "portfolios": [
        {"id": held, "name": "main", "owner": "alice"}]}]
    assert {r["input"]: r["code"] for r in report.refused} == {
        "A$": "invalid", "SPY": "reference_etf", "NOPE": "not_found"}
    assert not report.ok
    rows = query(database_url, "SELECT symbol, status, error_reason FROM symbols "
                               "WHERE symbol IN ('KO', 'AAPL')")
    status = dict(zip(rows.symbol, rows.status, strict=True))
    assert status == {"KO": "inactive", "AAPL": "pending"}
    assert "removed from the universe on" in rows.error_reason[rows.symbol == "KO"].iloc[0]
    assert scalar(database_url, "SELECT COUNT(*) FROM prices WHERE symbol='KO'") == 1  # kept
    assert scalar(database_url, "SELECT status FROM onboarding_jobs WHERE symbol='KO'") == "error"

    forced = run(universe.remove_symbols(["AAPL", "KO"], force=True, engine=engine))
    assert forced.removed == [{"symbol": "AAPL", "previous_status": "pending", "held_by": [
        {"id": held, "name": "main", "owner": "alice"}]}]
    assert forced.already_inactive == ["KO"] and forced.ok

    run(universe.add_symbols(["AAPL"], engine))  # re-activated, and still held
    with pytest.raises(universe.Conflict, match="held by 1 live portfolio.*'main' of alice") as c:
        run(universe.remove_symbol("AAPL", engine=engine))
    assert c.value.field == "force"
    with pytest.raises(universe.NotFound, match="'NOPE' is not in the universe"):
        run(universe.remove_symbol("NOPE", engine=engine))
    with pytest.raises(universe.InvalidInput, match="reference ETF"):
        run(universe.remove_symbol("TLT", engine=engine))

    # KO has stored prices: active again (the next batch fetches the sessions it missed);
    # MSFT never had any: pending, like a new symbol
    execute(database_url, "UPDATE symbols SET last_price_date='2026-11-19', "
                          "first_price_date='2026-11-19' WHERE symbol='KO'")
    readded = run(universe.add_symbols(["KO", "MSFT"], engine))
    assert [(r["symbol"], r["previous_status"], r["status"]) for r in readded.reactivated] == [
        ("KO", "inactive", "active"), ("MSFT", "inactive", "pending")]
    assert readded.reactivated[0]["previous_reason"].startswith("inactive: removed")
    rows = query(database_url, "SELECT symbol, status, error_reason FROM symbols WHERE symbol "
                               "IN ('KO', 'MSFT') ORDER BY symbol")
    assert list(rows.status) == ["active", "pending"]
    assert rows.error_reason.isna().all()


# --- the status filters honour `inactive` -------------------------------------------------------

def _write_csv(path: Path, symbols: list[str], edit=None) -> Path:
    bars = SyntheticProvider(seed=7).fetch([*symbols, *REFERENCE_ETFS], dt.date(2025, 9, 1),
                                           AS_OF).bars
    bars = bars.assign(date=bars["date"].dt.strftime("%Y-%m-%d"))
    if edit is not None:
        edit(bars)
    bars.to_csv(path, index=False, columns=CSV_COLUMNS)
    return path


def _tick(symbol: str, day: dt.date, factor: float):
    def edit(bars: pd.DataFrame) -> None:
        at = (bars["symbol"] == symbol) & (bars["date"] == day.isoformat())
        assert at.sum() == 1
        for c in ("open", "high", "low", "close", "adj_close"):
            bars.loc[at, c] *= factor
    return edit


def _load(url: str, csv: Path, symbols: list[str], end: dt.date = AS_OF) -> None:
    """What a symbol batch does for ``end``: fetch ~1 year through the CSV, then checks and
    factors for every active market symbol."""
    from core.settings import get_settings
    from core.symbol_steps import (
        FetchRequest,
        compute_and_store_factors,
        fetch_and_store,
        register_universe,
    )

    async def go() -> None:
        engine, settings = engine_of(url), get_settings()
        await register_universe(symbols, engine)
        every = tuple([*REFERENCE_ETFS, *symbols])
        await fetch_and_store(FetchRequest(every, dt.date(2025, 9, 1), end), CsvProvider(csv),
                              settings, end, engine)
        await compute_and_store_factors(list(every), [end], settings, engine)

    run(go())


def test_a_removed_symbol_is_not_reactivated_by_a_delivery_nor_onboarded(
        database_url: str, tmp_path: Path) -> None:
    from core.services import onboarding_queue as onboarding
    from core.settings import get_settings
    from core.symbol_steps import FetchRequest, fetch_and_store

    csv = _write_csv(tmp_path / "p.csv", ["MKTA"])
    day_before = calendar.sessions_back(AS_OF, 1)
    _load(database_url, csv, ["MKTA"], end=day_before)
    run(universe.remove_symbols(["MKTA"], engine=engine_of(database_url)))
    # a run that loaded its universe before the removal still delivers the next session
    run(fetch_and_store(FetchRequest(("MKTA",), AS_OF, AS_OF), CsvProvider(csv), get_settings(),
                        AS_OF, engine_of(database_url)))
    row = query(database_url, "SELECT status, last_price_date FROM symbols WHERE symbol='MKTA'")
    assert row.status[0] == "inactive" and str(row.last_price_date[0]) == AS_OF.isoformat()

    out = run(onboarding.request_onboarding(["MKTA"], engine=engine_of(database_url)))
    assert out["MKTA"].startswith("error: inactive: removed from the universe")
    assert scalar(database_url, "SELECT COUNT(*) FROM onboarding_jobs") == 0


# --- refetch ----------------------------------------------------------------------------------

def test_refetch_replaces_a_bad_stored_price_and_recomputes_the_factors(
        database_url: str, tmp_path: Path) -> None:
    from core.settings import get_settings

    symbols = ["MKTA", "MKTB"]
    good = _write_csv(tmp_path / "good.csv", symbols)
    bad = _write_csv(tmp_path / "bad.csv", symbols, edit=_tick("MKTA", BAD_DAY, 0.3))
    clean = clone_database(database_url, "clean")
    try:
        _load(clean, good, symbols)
        _load(database_url, bad, symbols)
        before = query(database_url, "SELECT beta, reason FROM symbol_factor_exposures WHERE "
                                     "symbol='MKTA' AND factor='market_beta'")
        assert pd.isna(before.beta[0]) and before.reason[0].startswith(
            "data_check: unexplained_jump")
        stored_bad = float(scalar(database_url, "SELECT close FROM prices WHERE symbol='MKTA' "
                                                "AND date=?", (BAD_DAY.isoformat(),)))

        report = run(universe.refetch_symbols(["mkta"], engine_of(database_url), get_settings(),
                                              provider=CsvProvider(good)))
        (item,) = report.symbols
        assert (item.symbol, item.start, item.end) == ("MKTA", dt.date(2025, 9, 2), AS_OF)
        assert item.replaced == 1 and item.refused == 0 and item.rebased == 0
        assert item.inserted == 0 and item.error is None and item.provider == "csv"
        (rev,) = item.revisions
        assert rev["outcome"] == "replaced" and rev["reason"].startswith("correction")
        assert rev["date"] == BAD_DAY and rev["stored_close"] == pytest.approx(stored_bad)
        assert item.factor_date == AS_OF and item.factors_before["market_beta"] is None
        assert item.factors_after["market_beta"] is not None and item.no_value_reason is None
        assert report.recomputed == {AS_OF.isoformat(): 1} and item.status == "active"

        fx = "SELECT symbol, factor, beta, reason FROM symbol_factor_exposures ORDER BY 1, 2"
        got, want = query(database_url, fx), query(clean, fx)
        pd.testing.assert_frame_equal(got, want, check_exact=False, rtol=0, atol=1e-12)
        px = "SELECT symbol, date, close, adj_close FROM prices ORDER BY 1, 2"
        pd.testing.assert_frame_equal(query(database_url, px), query(clean, px))
        findings = "SELECT symbol, \"check\" FROM data_check_findings WHERE symbol='MKTA'"
        assert query(database_url, findings).empty  # the jump finding is gone

        # a provider that now delivers the bad tick again: refused, audited, nothing moves
        again = run(universe.refetch_symbols(["MKTA"], engine_of(database_url), get_settings(),
                                             provider=CsvProvider(bad)))
        (item,) = again.symbols
        assert item.refused == 1 and item.replaced == 0
        assert [r["outcome"] for r in item.revisions] == ["rejected"]
        assert item.factors_after == item.factors_before
        pd.testing.assert_frame_equal(query(database_url, px), query(clean, px))
        assert scalar(database_url, "SELECT COUNT(*) FROM run_locks") == 0
    finally:
        drop_clone(clean)


def test_refetch_skips_what_it_cannot_fetch(database_url: str) -> None:
    engine = engine_of(database_url)
    run(universe.add_symbols(["AAPL", "PRIVATE_FUND_A"], engine))
    report = run(universe.refetch_symbols(["AAPL", "PRIVATE_FUND_A", "NOPE", "A$"], engine))
    assert report.symbols == []
    assert {s["input"]: s["code"] for s in report.skipped} == {
        "A$": "invalid", "AAPL": "no_history", "PRIVATE_FUND_A": "private", "NOPE": "not_found"}
    with pytest.raises(universe.NotFound):
        universe.raise_skipped(run(universe.refetch_symbols(["NOPE"], engine)))


def _owner(pid: int, name: str):
    from core.run_lock import LockOwner, process_token

    return LockOwner(name, socket.gethostname(), pid, process_token(pid))


def test_refetch_fails_while_a_live_run_holds_the_batch_lock(database_url: str,
                                                              tmp_path: Path) -> None:
    from core import run_lock
    from core.settings import get_settings

    csv = _write_csv(tmp_path / "p.csv", ["MKTA"])
    _load(database_url, csv, ["MKTA"])
    engine = engine_of(database_url)
    live = subprocess.Popen(["sleep", "120"])
    try:
        run(run_lock.acquire("symbol-batch", _owner(live.pid, "nightly-run"), engine=engine))
        with pytest.raises(universe.RefetchBlocked,
                           match=f"symbol-batch is held by run nightly-run \\(pid {live.pid}"):
            run(universe.refetch_symbols(["MKTA"], engine, get_settings(),
                                         provider=CsvProvider(csv)))
        assert scalar(database_url, "SELECT holder FROM run_locks") == "nightly-run"
    finally:
        live.kill()
        live.wait()
    # its holder is gone now: the lock is taken over at once, and released afterwards
    report = run(universe.refetch_symbols(["MKTA"], engine, get_settings(),
                                          provider=CsvProvider(csv)))
    assert report.symbols[0].error is None and report.symbols[0].replaced == 0
    assert scalar(database_url, "SELECT COUNT(*) FROM run_locks") == 0
