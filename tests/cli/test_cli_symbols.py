"""``factorflow symbols list|add|import|remove|refetch``: an operator manages the universe
without the API or SQL. In-process ``main([...])`` against a migrated SQLite and PostgreSQL
database (the symbol flow on the session's Prefect test server), plus the command as a user
runs it (a subprocess)."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import os
import socket
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pandas as pd
import pytest

from cli.main import main
from core import calendar
from core.factors.definitions import REFERENCE_ETFS
from core.providers.synthetic import SyntheticProvider
from tests.conftest import WAIT_LIMIT_S, seeded_factorflow_home
from tests.flows.helpers import query, scalar

REPO = Path(__file__).resolve().parents[2]
AS_OF = dt.date(2026, 11, 19)
NEXT = dt.date(2026, 11, 20)
LATER = dt.date(2026, 11, 23)
BAD_DAY = calendar.sessions_back(AS_OF, 20)
CSV_COLUMNS = ["symbol", "date", "open", "high", "low", "close", "adj_close", "volume"]


def last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def write_prices(path: Path, symbols: list[str], end: dt.date = LATER, edit=None) -> Path:
    """Synthetic bars of ``symbols`` and the reference ETFs in the long price format."""
    bars = SyntheticProvider(seed=7).fetch([*symbols, *REFERENCE_ETFS], dt.date(2025, 9, 1),
                                           end).bars
    bars = bars.assign(date=bars["date"].dt.strftime("%Y-%m-%d"))
    if edit is not None:
        edit(bars)
    bars.to_csv(path, index=False, columns=CSV_COLUMNS)
    return path


def use_csv(env: pytest.MonkeyPatch, csv: Path) -> None:
    from core.settings import get_settings

    env.setenv("FACTORFLOW_PRICE_PROVIDER", "csv")
    env.setenv("FACTORFLOW_CSV_PATH", str(csv))
    get_settings.cache_clear()


def hold(url: str, symbol: str, owner: str = "alice", name: str = "main") -> str:
    """A live portfolio of ``owner`` with an open position in ``symbol``; its id."""
    from core.db.engine import flow_engine, transaction
    from core.repositories import portfolios as portfolio_repo
    from core.services import users

    async def make() -> str:
        engine = flow_engine(url)
        uid, _ = await users.create_user(engine, owner)
        async with transaction(engine) as conn:
            return await portfolio_repo.create_portfolio(conn, uid, name, Decimal("0"), [{
                "symbol": symbol, "quantity": Decimal("5"), "entry_date": dt.date(2026, 1, 5),
                "entry_price": Decimal("10")}])

    return asyncio.run(make())


# --- without Prefect: list, add, import, remove ----------------------------------------------

def test_import_add_list_and_remove(database_url: str, tmp_path: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    tickers = tmp_path / "tickers.txt"
    tickers.write_text("# my universe\nAAPL\n\nmsft   # software\nbrk.b\nAB$C\nAAPL\n")
    assert main(["symbols", "import", str(tickers), "--json"]) == 0
    out = capsys.readouterr().out
    report = last_json(out)
    assert [a["symbol"] for a in report["added"]] == ["AAPL", "MSFT", "BRK-B"]
    assert report["rejected"] == [{"input": "AB$C", "where": "line 6",
                                   "reason": "characters '$' not allowed (only A-Z 0-9 . - ^ = _)"}]
    assert sorted(report["reference_added"]) == sorted(REFERENCE_ETFS)
    assert "added 3 (pending): AAPL, MSFT, BRK-B" in out
    assert "line 6: 'AB$C': characters '$' not allowed" in out
    assert "`factorflow symbol-batch` fetches them now" in out

    prices = tmp_path / "prices.csv"  # a price file: its distinct symbols
    prices.write_text("symbol,date,open,high,low,close,adj_close,volume\n"
                      "KO,2024-04-18,1,1,1,1,1,1\nKO,2024-04-19,1,1,1,1,1,1\n"
                      "PEP,2024-04-19,1,1,1,1,1,1\nAAPL,2024-04-19,1,1,1,1,1,1\n")
    assert main(["symbols", "import", str(prices), "--json"]) == 0
    report = last_json(capsys.readouterr().out)
    assert [a["symbol"] for a in report["added"]] == ["KO", "PEP"]
    assert report["already_present"] == [{"symbol": "AAPL", "status": "pending"}]

    assert main(["symbols", "add", "xom", "PRIVATE_FUND_A", "a b"]) == 0
    out = capsys.readouterr().out
    assert "added 1 (pending): XOM" in out and "never sent to a price provider: PRIVATE_FUND_A" \
        in out and "argument 3: 'a b'" in out

    assert main(["symbols", "list", "--json"]) == 0
    out = capsys.readouterr().out
    listing = last_json(out)
    assert listing["counts"] == {"active": 1, "pending": 6 + len(REFERENCE_ETFS)}
    assert listing["total"] == 7 + len(REFERENCE_ETFS)
    row = next(r for r in listing["symbols"] if r["symbol"] == "BRK-B")
    assert row == {"symbol": "BRK-B", "kind": "equity", "status": "pending",
                   "first_price_date": None, "last_price_date": None, "last_factor_date": None,
                   "error_reason": None}
    assert f"{7 + len(REFERENCE_ETFS)} symbols: active 1, pending" in out

    pid = hold(database_url, "AAPL")
    assert main(["symbols", "remove", "AAPL", "KO", "SPY"]) == 1
    captured = capsys.readouterr()
    assert f"not removed: AAPL is held by 1 live portfolio(s): 'main' of alice ({pid})" \
        in captured.out
    assert "removed 1 (inactive" in captured.out and "KO (was pending)" in captured.out
    err = captured.err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("factorflow symbols remove: 2 symbol(s) not "
                                               "removed (AAPL: held by 1 live portfolio(s)")
    assert "SPY: a reference ETF" in err[0]
    assert main(["symbols", "remove", "AAPL", "--force", "--json"]) == 0
    removed = last_json(capsys.readouterr().out)
    assert removed["removed"][0]["held_by"] == [{"id": pid, "name": "main", "owner": "alice"}]
    status = query(database_url, "SELECT symbol, status FROM symbols WHERE symbol IN "
                                 "('AAPL', 'KO')")
    assert set(status.status) == {"inactive"}

    assert main(["symbols", "list", "--status", "inactive"]) == 0
    out = capsys.readouterr().out
    assert "2 of 15 symbols with status inactive" in out
    assert "removed from the universe on" in out
    assert main(["symbols", "add", "KO"]) == 0
    assert "re-activated 1: KO (was inactive, now pending)" in capsys.readouterr().out
    assert scalar(database_url, "SELECT status FROM symbols WHERE symbol='KO'") == "pending"


def test_bad_input_is_one_line_and_a_non_zero_exit(database_url: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    def fails(args: list[str], code: int, *fragments: str) -> None:
        assert main(args) == code
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1, err
        for f in fragments:
            assert f in err[0], (f, err[0])

    fails(["symbols", "import", str(tmp_path / "none.txt")], 1, "none.txt: no such file")
    junk = tmp_path / "junk.txt"
    junk.write_text("# nothing valid here\nA B\n^\n")
    fails(["symbols", "import", str(junk)], 1, "nothing valid to add: line 2: invalid symbol "
                                               "'A B'", "(and 1 more rejected)")
    empty = tmp_path / "empty.txt"
    empty.write_text("# only comments\n\n")
    fails(["symbols", "import", str(empty)], 1, "no symbol given")
    nocol = tmp_path / "nocol.csv"
    nocol.write_text("ticker,weight\nAAPL,1\n")
    fails(["symbols", "import", str(nocol)], 1, "needs a 'symbol' column (found: ticker, weight)")
    fails(["symbols", "add", "A$"], 1, "argument 1: invalid symbol 'A$'")
    fails(["symbols", "list", "--status", "gone"], 2, "unknown status 'gone'")
    fails(["symbols", "remove", "NOPE"], 1, "NOPE: not in the universe")
    fails(["symbols", "refetch", "NOPE"], 1, "nothing refetched; NOPE: not in the universe")
    assert scalar(database_url, "SELECT COUNT(*) FROM symbols") == 0


def test_the_command_as_a_user_runs_it(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORFLOW_", "PREFECT_"))}
    env["FACTORFLOW_HOME"] = str(seeded_factorflow_home(tmp_path / "home"))
    tickers = tmp_path / "tickers.txt"
    tickers.write_text("AAPL\nmsft\n")

    def cli(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "cli.main", "symbols", *args], cwd=REPO,
                              env=env, capture_output=True, text=True,
                              timeout=WAIT_LIMIT_S)

    done = cli("import", str(tickers))
    assert done.returncode == 0, done.stderr
    assert "added 2 (pending): AAPL, MSFT" in done.stdout and not done.stderr
    listing = cli("list")
    assert listing.returncode == 0 and "10 symbols: pending 10" in listing.stdout
    bad = cli("import", str(tmp_path / "missing.txt"))
    assert bad.returncode == 1 and "Traceback" not in bad.stderr
    assert bad.stderr.strip() == f"factorflow symbols import: {tmp_path / 'missing.txt'}: no " \
                                 "such file"


# --- with the symbol flow --------------------------------------------------------------------

@pytest.mark.usefixtures("prefect_harness")
def test_removed_symbols_leave_the_nightly_universe_and_keep_their_history(
        database_url: str, tmp_path: Path, settings_env: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    use_csv(settings_env, write_prices(tmp_path / "prices.csv", ["MKTA", "MKTB"]))
    tickers = tmp_path / "tickers.txt"
    tickers.write_text("MKTA\nMKTB\n")
    assert main(["symbols", "import", str(tickers)]) == 0
    assert main(["symbol-batch", "--as-of", AS_OF.isoformat(), "--json"]) == 0
    assert last_json(capsys.readouterr().out)["status"] == "completed"
    assert main(["symbols", "list", "--json"]) == 0
    rows = {r["symbol"]: r for r in last_json(capsys.readouterr().out)["symbols"]}
    assert rows["MKTB"]["status"] == "active"
    assert rows["MKTB"]["last_price_date"] == rows["MKTB"]["last_factor_date"] == \
        AS_OF.isoformat()
    stored = scalar(database_url, "SELECT COUNT(*) FROM prices WHERE symbol='MKTB'")

    assert main(["symbols", "remove", "MKTB"]) == 0
    assert main(["symbol-batch", "--as-of", NEXT.isoformat(), "--json"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["status"] == "completed"
    assert summary["counts"]["universe"] == 1 + len(REFERENCE_ETFS)  # MKTB is not fetched
    states = query(database_url, "SELECT symbol, status, last_price_date, last_factor_date "
                                 "FROM symbols WHERE symbol IN ('MKTA', 'MKTB') ORDER BY 1")
    assert list(states.status) == ["active", "inactive"]
    assert [str(d) for d in states.last_price_date] == [NEXT.isoformat(), AS_OF.isoformat()]
    assert [str(d) for d in states.last_factor_date] == [NEXT.isoformat(), AS_OF.isoformat()]
    assert scalar(database_url, "SELECT COUNT(*) FROM prices WHERE symbol='MKTB'") == stored
    assert scalar(database_url, "SELECT COUNT(*) FROM symbol_factor_exposures WHERE "
                                "symbol='MKTB' AND date=?", (NEXT.isoformat(),)) == 0

    # added again: active at once (it has history); the next batch fetches what it missed
    assert main(["symbols", "add", "MKTB"]) == 0
    assert "re-activated 1: MKTB (was inactive, now active)" in capsys.readouterr().out
    assert main(["symbol-batch", "--as-of", LATER.isoformat(), "--json"]) == 0
    summary = last_json(capsys.readouterr().out)
    assert summary["status"] == "completed"
    assert summary["counts"]["universe"] == 2 + len(REFERENCE_ETFS)
    states = query(database_url, "SELECT status, last_price_date, last_factor_date FROM "
                                 "symbols WHERE symbol='MKTB'")
    assert states.status[0] == "active"
    assert str(states.last_price_date[0]) == str(states.last_factor_date[0]) == \
        LATER.isoformat()
    assert scalar(database_url, "SELECT COUNT(*) FROM prices WHERE symbol='MKTB'") == \
        stored + 2  # NEXT and LATER, the sessions it missed


def _tick(bars: pd.DataFrame) -> None:
    at = (bars["symbol"] == "MKTA") & (bars["date"] == BAD_DAY.isoformat())
    for c in ("open", "high", "low", "close", "adj_close"):
        bars.loc[at, c] *= 0.3


@pytest.mark.usefixtures("prefect_harness")
def test_refetch_replaces_a_bad_price_recomputes_the_factors_and_waits_for_no_batch(
        database_url: str, tmp_path: Path, settings_env: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from core.db.engine import flow_engine
    from core.run_lock import LockOwner, acquire, process_token
    from core.services import operations as svc

    use_csv(settings_env, write_prices(tmp_path / "bad.csv", ["MKTA"], AS_OF, edit=_tick))
    assert main(["symbols", "add", "MKTA"]) == 0
    assert main(["symbol-batch", "--as-of", AS_OF.isoformat()]) == 0
    capsys.readouterr()
    before = asyncio.run(svc.symbol_status(flow_engine(database_url), "MKTA"))
    assert before["last_factor_date"] is None and before["status"] == "held"
    reason = scalar(database_url, "SELECT reason FROM symbol_factor_exposures WHERE "
                                  "symbol='MKTA' AND factor='market_beta' AND date=?",
                    (AS_OF.isoformat(),))
    assert reason.startswith("data_check: unexplained_jump")  # held back by the data checks
    assert before["reason"] == reason and before["factors_as_of"] == AS_OF
    assert all(f["beta"] is None for f in before["factor_exposures"])

    use_csv(settings_env, write_prices(tmp_path / "good.csv", ["MKTA"], AS_OF))  # corrected
    live = subprocess.Popen(["sleep", "120"])
    try:
        asyncio.run(acquire("symbol-batch", LockOwner("nightly", socket.gethostname(), live.pid,
                                                      process_token(live.pid)),
                            engine=flow_engine(database_url)))
        assert main(["symbols", "refetch", "MKTA"]) == 1
        captured = capsys.readouterr()
        err = captured.err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("factorflow symbols refetch: a symbol batch "
                                                   "is running (symbol-batch is held by run "
                                                   f"nightly (pid {live.pid}")
        assert captured.out == ""
        assert scalar(database_url, "SELECT COUNT(*) FROM price_revisions") == 0
    finally:
        live.kill()
        live.wait()

    assert main(["symbols", "refetch", "mkta", "--json"]) == 0  # the dead holder's lock: taken
    out = capsys.readouterr().out
    report = last_json(out)
    (item,) = report["symbols"]
    assert (item["replaced"], item["refused"], item["rebased"]) == (1, 0, 0)
    assert item["revisions"][0]["date"] == BAD_DAY.isoformat()
    assert item["factors_before"]["market_beta"] is None
    assert item["factors_after"]["market_beta"] is not None
    first = scalar(database_url, "SELECT first_price_date FROM symbols WHERE symbol='MKTA'")
    assert item["start"] == str(first) and item["end"] == AS_OF.isoformat()
    assert f"MKTA: history {first} → {AS_OF} re-requested from csv: 1 replaced" in out
    assert f"replaced {BAD_DAY}: close" in out and ": correction" in out
    assert f"factors recomputed at {AS_OF}: market_beta none → " in out
    assert "12 of 12 factors have a value" in out

    after = asyncio.run(svc.symbol_status(flow_engine(database_url), "MKTA"))  # what the API serves
    beta = {f["factor"]: f for f in after["factor_exposures"]}["market_beta"]
    assert beta["beta"] == pytest.approx(item["factors_after"]["market_beta"])
    assert beta["reason"] is None and after["status"] == "ready"
    assert after["last_factor_date"] == AS_OF
    assert scalar(database_url, "SELECT COUNT(*) FROM run_locks") == 0
