"""`factorflow snapshots recompute`: snapshots stored before dividends counted (price_pnl and
income NULL, daily_pnl price-only) are brought onto the new definition, equal to what a
clean refresh stores; a second run changes nothing; bad arguments and a running refresh
give one named line and exit 1 (SQLite and PostgreSQL)."""

from __future__ import annotations

import asyncio
import json
import socket
import subprocess
from decimal import Decimal

import pytest

from cli.main import main
from core.repositories import prices as price_repo
from core.run_lock import LockOwner, acquire, process_token
from core.symbol_steps import register_universe
from tests.flows.helpers import execute, query, table_rows
from tests.flows.test_dividend_income import AFTER, BEFORE, EX, _seed

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _rows(url: str) -> list[tuple]:
    return table_rows(url, ["portfolio_snapshots"])["portfolio_snapshots"]


def _last_json(out: str) -> dict:
    return json.loads(out.strip().splitlines()[-1])


def _refresh() -> None:
    from flows.portfolio_refresh import portfolio_refresh

    portfolio_refresh(as_of=BEFORE)
    portfolio_refresh(as_of=AFTER)


def test_recompute_brings_old_snapshots_onto_the_new_definition(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    from flows.symbol_batch import symbol_batch

    url = database_url
    asyncio.run(register_universe(["DIVY", "MKTA"]))
    symbol_batch(start=BEFORE, end=AFTER)
    pid = asyncio.run(_seed())

    async def no_dividends(*_: object, **__: object) -> dict:
        return {}

    with monkeypatch.context() as old_code:  # the valuation before dividends counted
        old_code.setattr(price_repo, "load_dividends", no_dividends)
        _refresh()
    execute(url, "UPDATE portfolio_snapshots SET price_pnl = NULL, income = NULL")
    old = query(url, "SELECT date, daily_pnl, price_pnl, income FROM portfolio_snapshots "
                "ORDER BY date").set_index("date")
    assert old[["price_pnl", "income"]].isna().all().all()
    old_ex = Decimal(old.loc[EX.isoformat(), "daily_pnl"])

    # a bad argument: one named line, exit 1, nothing written
    assert main(["snapshots", "recompute", "--start", "2026-09-09", "--end", "2026-09-04"]) == 1
    err = capsys.readouterr().err
    assert "SnapshotRecomputeError" in err and "before --start" in err
    assert "Traceback" not in err
    assert main(["snapshots", "recompute", "--portfolio", "nope"]) == 1
    err = capsys.readouterr().err
    assert "SnapshotRecomputeError" in err and "'nope'" in err and "Traceback" not in err

    # a running refresh holds the lock: the recompute waits, then refuses
    live = subprocess.Popen(["sleep", "60"])
    try:
        asyncio.run(acquire("portfolio-refresh", LockOwner(
            "refresh-elsewhere", socket.gethostname(), live.pid, process_token(live.pid))))
        assert main(["snapshots", "recompute", "--lock-wait", "0"]) == 1
        assert "RefreshAlreadyRunning" in capsys.readouterr().err
    finally:
        live.kill()
        live.wait()
    assert query(url, "SELECT COUNT(*) AS n FROM portfolio_snapshots WHERE income IS NOT NULL"
                 ).n[0] == 0

    # one portfolio, one day: only the ex-date's row changes
    assert main(["snapshots", "recompute", "--portfolio", pid, "--start", EX.isoformat(),
                 "--end", EX.isoformat(), "--json"]) == 0
    one = _last_json(capsys.readouterr().out)
    assert (one["changed"], one["snapshots"]) == (1, 1)
    assert one["changed_by_portfolio"] == {pid: 1}
    new = query(url, "SELECT date, daily_pnl, price_pnl, income FROM portfolio_snapshots "
                "ORDER BY date").set_index("date")
    ex = new.loc[EX.isoformat()]
    assert Decimal(ex.price_pnl) == old_ex  # the old daily P&L was the price P&L
    assert Decimal(ex.income) > 0
    assert Decimal(ex.daily_pnl) == old_ex + Decimal(ex.income)
    assert new.loc[AFTER.isoformat()][["price_pnl", "income"]].isna().all()  # not in range

    # everything: the rest changes (the first snapshot has no P&L: unchanged)
    assert main(["snapshots", "recompute", "--json"]) == 0
    out = capsys.readouterr().out
    summary = _last_json(out)
    assert (summary["changed"], summary["snapshots"], summary["portfolios"]) == (1, 3, 1)
    assert "1 of 3 snapshot(s) of 1 portfolio(s) changed" in out
    recomputed = _rows(url)
    assert query(url, "SELECT COUNT(*) AS n FROM portfolio_snapshots WHERE daily_pnl IS NOT "
                 "NULL AND (price_pnl IS NULL OR income IS NULL)").n[0] == 0

    # idempotent: a second run changes nothing
    assert main(["snapshots", "recompute", "--json"]) == 0
    again = _last_json(capsys.readouterr().out)
    assert again["changed"] == 0 and again["snapshots"] == 3
    assert _rows(url) == recomputed

    # equal to the rows of a clean refresh with the new valuation
    execute(url, "DELETE FROM portfolio_snapshots")
    _refresh()
    assert _rows(url) == recomputed
