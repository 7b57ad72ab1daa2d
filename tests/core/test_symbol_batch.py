"""The batch service without Prefect: date resolution, fetch planning, and stored data never
overwritten with worse data. Uses a real migrated database (SQLite, and PostgreSQL when
configured); the only stand-in is the price provider (the outside world)."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections.abc import Sequence

import numpy as np
import pandas as pd
import pytest

from core import calendar
from core.db.models import SymbolKind, SymbolStatus
from core.providers.base import FetchResult, empty_actions
from core.providers.synthetic import SyntheticProvider
from core.repositories.symbols import SymbolState
from core.settings import get_settings
from core.symbol_steps import (
    FetchRequest,
    TargetDateError,
    fetch_and_store,
    history_start_marks,
    plan_fetch,
    register_universe,
    resolve_target_dates,
)
from tests.flows.helpers import query

NOW = dt.datetime(2026, 11, 23, 22, tzinfo=dt.UTC)  # after Monday's close


def test_resolve_target_dates() -> None:
    assert resolve_target_dates(now=NOW) == [dt.date(2026, 11, 23)]
    assert resolve_target_dates(as_of=dt.date(2026, 11, 22), now=NOW) == [dt.date(2026, 11, 20)]
    assert resolve_target_dates(start=dt.date(2026, 11, 19), end=dt.date(2026, 11, 23),
                                now=NOW) == [dt.date(2026, 11, d) for d in (19, 20, 23)]
    with pytest.raises(TargetDateError, match="after the latest completed session"):
        resolve_target_dates(as_of=dt.date(2026, 11, 24), now=NOW)
    with pytest.raises(TargetDateError, match="both start and end"):
        resolve_target_dates(start=dt.date(2026, 11, 19), now=NOW)
    with pytest.raises(TargetDateError, match="before start"):
        resolve_target_dates(start=dt.date(2026, 11, 20), end=dt.date(2026, 11, 19), now=NOW)
    with pytest.raises(TargetDateError, match="no NYSE session"):
        resolve_target_dates(start=dt.date(2026, 11, 21), end=dt.date(2026, 11, 22), now=NOW)


def _state(sym: str, first: dt.date | None, last: dt.date | None,
           kind: SymbolKind = SymbolKind.equity) -> SymbolState:
    return SymbolState(sym, kind, SymbolStatus.active, first, last, None)


def test_plan_fetch_asks_only_for_what_each_symbol_lacks() -> None:
    end = dt.date(2026, 11, 20)
    states = [
        _state("NEWA", None, None), _state("NEWB", None, None),
        _state("OLDA", dt.date(2025, 11, 3), dt.date(2026, 11, 18)),
        _state("CURR", dt.date(2025, 11, 3), end),
        _state("PRIVATE_X", None, None, SymbolKind.private),
        _state("EQ5D6A2D8F", None, None),
    ]
    plan = plan_fetch(states, end, history_days=380, chunk_size=1)
    assert plan == [
        FetchRequest(("NEWA",), end - dt.timedelta(days=380), end),
        FetchRequest(("NEWB",), end - dt.timedelta(days=380), end),
        FetchRequest(("OLDA",), dt.date(2026, 11, 19), end),
    ]
    backfill = plan_fetch(states, end, 380, 10, history_start=dt.date(2025, 1, 2))
    assert {r.start for r in backfill} == {dt.date(2025, 1, 2)}
    assert set(backfill[0].symbols) == {"NEWA", "NEWB", "OLDA", "CURR"}


def test_a_new_symbol_gets_two_years_and_an_extended_one_is_asked_through_its_history() -> None:
    end = dt.date(2026, 11, 20)
    days = get_settings().history_days
    assert days == 760  # 500 sessions of returns for the historical VaR, plus a margin
    assert len(calendar.trading_days_between(end - dt.timedelta(days=days), end)) > 501
    states = [_state("NEWA", None, None),
              _state("OLDA", dt.date(2025, 11, 3), dt.date(2026, 11, 18)),
              _state("OLDB", dt.date(2025, 11, 3), dt.date(2026, 11, 18))]
    plan = plan_fetch(states, end, days, chunk_size=10, extend=["OLDA"])
    two_years = end - dt.timedelta(days=days)
    # the extension overlaps the stored history (its adjusted basis is aligned on it) and
    # brings the new sessions too: one request per symbol
    assert plan == [FetchRequest(("NEWA", "OLDA"), two_years, end),
                    FetchRequest(("OLDB",), dt.date(2026, 11, 19), end)]


def test_short_windows_are_asked_in_larger_chunks() -> None:
    end = dt.date(2026, 11, 20)  # a Friday
    nightly = [_state(f"N{i:03d}", dt.date(2025, 11, 3), dt.date(2026, 11, 19))
               for i in range(100)]
    new = [_state(f"W{i:03d}", None, None) for i in range(30)]
    half = [_state(f"H{i:03d}", dt.date(2025, 11, 3), dt.date(2026, 6, 30)) for i in range(30)]
    plan = plan_fetch(nightly + new + half, end, 380, chunk_size=10, short_window_scale=4)
    sizes = {}
    for r in plan:
        sizes.setdefault(r.symbols[0][0], []).append(len(r.symbols))
    assert sizes["N"] == [40, 40, 20]  # one session: 4 × 10 symbols a chunk
    assert sizes["W"] == [10, 10, 10]  # a year: 10
    assert sizes["H"] == [20, 10]  # 101 sessions: 252 // 101 = 2 × 10
    assert [r.symbols for r in plan_fetch(nightly, end, 380, 10)] == [
        tuple(f"N{i:03d}" for i in range(k, k + 10)) for k in range(0, 100, 10)]


def test_history_start_marks_name_symbols_without_older_prices() -> None:
    end = dt.date(2026, 11, 20)
    asked = FetchRequest(("LONG", "NEWL", "SHRT"), dt.date(2024, 10, 21), end)
    stored = {"SHRT": _state("SHRT", dt.date(2025, 11, 3), dt.date(2026, 11, 19)),
              "LONG": _state("LONG", dt.date(2025, 11, 3), dt.date(2026, 11, 19))}
    got = pd.DataFrame({"min": pd.to_datetime(["2024-10-21", "2026-08-26", "2025-11-03"]),
                        "max": pd.to_datetime([end] * 3)}, index=["LONG", "NEWL", "SHRT"])
    marks = history_start_marks(asked, stored, got, end)
    # LONG delivered from the first session asked; NEWL (new) and SHRT (stored) have nothing
    # older than their first price: the session before it is recorded
    assert [(m["symbol"], m["date"]) for m in marks] == [
        ("NEWL", dt.date(2026, 8, 25)), ("SHRT", dt.date(2025, 10, 31))]
    assert all("no price before" in m["detail"] for m in marks)
    # a request that starts inside the stored history (new sessions, a repair) marks nothing
    recent = FetchRequest(("SHRT",), dt.date(2026, 11, 20), end)
    assert history_start_marks(recent, stored, got.loc[["SHRT"]].assign(
        min=pd.Timestamp("2026-11-20")), end) == []


class BrokenQuotes:
    """A provider that answers NaN / zero / negative closes for days already stored."""

    name = "broken"

    def fetch(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
        days = pd.to_datetime([d for d in pd.bdate_range(start, end)])
        rows = []
        for s in symbols:
            for i, d in enumerate(days):
                bad = [np.nan, 0.0, -1.0][i % 3]
                rows.append({"symbol": s, "date": d, "open": 1.0, "high": 1.0, "low": 1.0,
                             "close": bad, "adj_close": bad, "volume": 1.0})
        return FetchResult(pd.DataFrame(rows), empty_actions(), {}, self.name)

    def fetch_profiles(self, symbols: Sequence[str]) -> pd.DataFrame:
        return pd.DataFrame()


def test_bad_quotes_never_overwrite_stored_prices(database_url: str) -> None:
    settings = get_settings()
    asyncio.run(register_universe(["MKTA"]))
    req = FetchRequest(("MKTA",), dt.date(2026, 11, 2), dt.date(2026, 11, 13))
    good = asyncio.run(fetch_and_store(req, SyntheticProvider(), settings, req.end))
    assert good.rows == 10
    before = query(database_url, "SELECT * FROM prices ORDER BY date")

    report = asyncio.run(fetch_and_store(req, BrokenQuotes(), settings, req.end))
    assert report.rows == 0 and report.rejected_rows == 10
    assert query(database_url, "SELECT * FROM prices ORDER BY date").equals(before)
    state = query(database_url, "SELECT * FROM symbols WHERE symbol='MKTA'").iloc[0]
    assert state.status == "active" and state.last_price_date == "2026-11-13"
    rejected = query(database_url, "SELECT detail FROM data_check_findings "
                     "WHERE symbol='MKTA' AND \"check\"='rejected_rows'")
    assert len(rejected) >= 1 and "not stored" in " ".join(rejected.detail)


def test_unknown_symbol_is_marked_error_with_reason(database_url: str) -> None:
    asyncio.run(register_universe(["7203.T"]))
    req = FetchRequest(("7203.T",), dt.date(2026, 11, 2), dt.date(2026, 11, 13))
    report = asyncio.run(fetch_and_store(req, SyntheticProvider(), get_settings(), req.end))
    assert report.errors["7203.T"].startswith("no_data")
    row = query(database_url, "SELECT status, error_reason FROM symbols "
                "WHERE symbol='7203.T'").iloc[0]
    assert row.status == "error" and row.error_reason.startswith("no_data")


def test_new_split_refetches_history_on_one_adjustment_basis(database_url: str) -> None:
    """SPLT splits every 200 sessions: the night a split arrives, its stored history is
    re-fetched so adjusted closes stay continuous across the split."""
    provider = SyntheticProvider()
    settings = get_settings()
    asyncio.run(register_universe(["SPLT"]))
    full = provider.fetch(["SPLT"], dt.date(2024, 1, 2), dt.date(2026, 11, 20))
    split_day = pd.Timestamp(full.actions[full.actions.kind == "split"].date.iloc[-1]).date()
    before = split_day - dt.timedelta(days=1)
    first = FetchRequest(("SPLT",), split_day - dt.timedelta(days=60), before)
    asyncio.run(fetch_and_store(first, provider, settings, before))
    nightly = FetchRequest(("SPLT",), split_day, split_day)
    report = asyncio.run(fetch_and_store(nightly, provider, settings, split_day))
    assert report.refetched == ["SPLT"]
    stored = query(database_url, "SELECT date, close, adj_close FROM prices ORDER BY date")
    ratio = stored.adj_close / stored.adj_close.shift(1)
    assert ratio.iloc[1:].between(0.7, 1.4).all()  # no split-sized jump in adjusted closes
    expected = provider.fetch(["SPLT"], first.start, split_day).bars
    assert np.allclose(stored.adj_close.to_numpy(), expected.adj_close.round(6).to_numpy(),
                       atol=1e-6)


def test_register_universe_validates_and_normalises(database_url: str) -> None:
    result = asyncio.run(register_universe(["brk.b", "  aapl ", "!!!", "", "PRIVATE_X"]))
    assert set(result["rejected"]) == {"!!!", ""}
    assert "invalid symbol" in result["rejected"]["!!!"]
    rows = query(database_url, "SELECT symbol, kind, status FROM symbols").set_index("symbol")
    assert {"BRK-B", "AAPL", "PRIVATE_X", "SPY"} <= set(rows.index)
    assert rows.loc["PRIVATE_X", "kind"] == "private"
    assert rows.loc["AAPL", "status"] == "pending"


class _Gate:
    """A context manager that records, with the provider's calls, when it is held."""

    def __init__(self, name: str, log: list[str]) -> None:
        self.name, self.log, self.held = name, log, False

    def __enter__(self) -> None:
        self.held = True
        self.log.append(f"{self.name} in")

    def __exit__(self, *exc: object) -> None:
        self.held = False
        self.log.append(f"{self.name} out")


def test_the_provider_answers_outside_the_store_gate(database_url: str) -> None:
    """The provider works inside ``provider_gate`` and outside ``store_gate``; the rows are
    stored inside ``store_gate`` only, so one chunk can be stored while the next is fetched."""
    log: list[str] = []
    provider_gate, store_gate = _Gate("provider", log), _Gate("store", log)

    class Watched(SyntheticProvider):
        def fetch(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> FetchResult:
            assert provider_gate.held and not store_gate.held
            log.append("fetch")
            return super().fetch(symbols, start, end)

    asyncio.run(register_universe(["MKTA", "MKTB"]))
    req = FetchRequest(("MKTA", "MKTB"), dt.date(2026, 11, 2), dt.date(2026, 11, 13))
    report = asyncio.run(fetch_and_store(req, Watched(), get_settings(), req.end,
                                         provider_gate=provider_gate, store_gate=store_gate))
    assert log == ["provider in", "fetch", "provider out", "store in", "store out"]
    assert report.rows == 20 and report.provider_seconds > 0
    assert len(query(database_url, "SELECT * FROM prices")) == 20
