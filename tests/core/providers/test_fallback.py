"""The fallback chain of providers and ``build_provider`` from settings."""

from __future__ import annotations

import sys
import types
from collections.abc import Sequence
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from core.providers.base import (
    BAR_COLUMNS,
    FetchResult,
    PriceProvider,
    ProviderError,
    empty_actions,
    empty_bars,
)
from core.providers.csv_file import CsvProvider
from core.providers.fallback import FallbackProvider, build_provider
from core.providers.synthetic import SyntheticProvider
from core.settings import Settings

START, END = date(2024, 1, 2), date(2024, 1, 3)


def _bars(symbols: Sequence[str], price: float) -> pd.DataFrame:
    rows = [
        {
            "symbol": s,
            "date": pd.Timestamp(d),
            "open": price,
            "high": price,
            "low": price,
            "close": price,
            "adj_close": price,
            "volume": 1.0,
        }
        for s in symbols
        for d in (START, END)
    ]
    frame = pd.DataFrame(rows, columns=list(BAR_COLUMNS)) if rows else empty_bars()
    return frame.astype(empty_bars().dtypes.to_dict())


class Fake:
    """Serves ``known`` at ``price``; others get ``no_data``; or raises for the chunk."""

    def __init__(self, name: str, known: set[str], price: float, fail: bool = False) -> None:
        self.name = name
        self.known = known
        self.price = price
        self.fail = fail
        self.calls: list[list[str]] = []

    def fetch(self, symbols: Sequence[str], start: date, end: date) -> FetchResult:
        self.calls.append(list(symbols))
        if self.fail:
            raise ProviderError(f"{self.name} is down")
        served = [s for s in symbols if s in self.known]
        actions = empty_actions()
        if served:
            actions = pd.DataFrame(
                {
                    "symbol": pd.Series([served[0]], dtype=object),
                    "date": pd.Series([pd.Timestamp(END)]).astype("datetime64[ns]"),
                    "kind": pd.Series(["dividend"], dtype=object),
                    "value": [0.1],
                }
            )
        return FetchResult(
            bars=_bars(served, self.price),
            actions=actions,
            errors={
                s: f"no_data: {s} unknown to {self.name}" for s in symbols if s not in self.known
            },
            provider=self.name,
        )

    def fetch_profiles(self, symbols: Sequence[str]) -> pd.DataFrame:
        if self.fail:
            raise ProviderError(f"{self.name} is down")
        return pd.DataFrame({"symbol": [s for s in symbols if s in self.known], "name": self.name})


def test_name_and_protocol() -> None:
    chain = FallbackProvider([Fake("a", set(), 1.0), Fake("b", set(), 2.0)])
    assert chain.name == "a→b"
    assert isinstance(chain, PriceProvider)
    with pytest.raises(ValueError):
        FallbackProvider([])


def test_chunk_failure_goes_to_next_provider() -> None:
    down = Fake("a", {"X", "Y"}, 1.0, fail=True)
    up = Fake("b", {"X", "Y"}, 2.0)
    res = FallbackProvider([down, up]).fetch(["X", "Y"], START, END)
    assert up.calls == [["X", "Y"]]
    assert res.errors == {}
    assert set(res.bars["close"]) == {2.0}
    assert len(res.bars) == 4
    assert res.provider == "b"


def test_per_symbol_errors_are_retried_on_next() -> None:
    first = Fake("a", {"X"}, 1.0)
    second = Fake("b", {"Y"}, 2.0)
    third = Fake("c", {"Q"}, 3.0)
    res = FallbackProvider([first, second, third]).fetch(["X", "Y", "Z"], START, END)
    assert second.calls == [["Y", "Z"]]
    assert third.calls == [["Z"]]
    by_symbol = res.bars.groupby("symbol")["close"].first().to_dict()
    assert by_symbol == {"X": 1.0, "Y": 2.0}
    assert res.errors == {
        "Z": "no_data: Z unknown to a [a]; no_data: Z unknown to b [b]; no_data: Z unknown to c [c]"
    }
    assert res.provider == "a+b"
    assert list(res.actions["symbol"]) == ["X", "Y"]
    assert res.bars.dtypes.equals(empty_bars().dtypes)


def test_reasons_include_a_failed_provider() -> None:
    res = FallbackProvider([Fake("a", set(), 1.0, fail=True), Fake("b", {"X"}, 2.0)]).fetch(
        ["X", "Z"], START, END
    )
    assert res.errors == {"Z": "provider_error: a is down [a]; no_data: Z unknown to b [b]"}
    assert set(res.bars["symbol"]) == {"X"}


def test_all_providers_fail() -> None:
    chain = FallbackProvider([Fake("a", {"X"}, 1.0, fail=True), Fake("b", {"X"}, 2.0, fail=True)])
    with pytest.raises(ProviderError, match="a: a is down; b: b is down"):
        chain.fetch(["X"], START, END)


def test_real_providers_in_a_chain(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(
        "symbol,date,open,high,low,close,adj_close,volume\n"
        "SPY,2024-01-02,472.16,473.67,470.49,472.65,466.10,123623700\n"
    )
    chain = FallbackProvider(
        [CsvProvider(tmp_path / "missing.csv"), CsvProvider(path), SyntheticProvider()]
    )
    res = chain.fetch(["SPY", "AAPL", "PRIVATE_FUND_A"], START, START)
    assert res.bars.set_index("symbol").loc["SPY", "close"] == 472.65
    assert "AAPL" in set(res.bars["symbol"])
    assert res.provider == "csv+synthetic"
    reason = res.errors["PRIVATE_FUND_A"]
    assert reason.startswith("provider_error: ")
    assert reason.count("; ") == 2 and reason.endswith("[synthetic]")


def test_profiles_from_first_provider_with_a_row() -> None:
    chain = FallbackProvider(
        [Fake("a", set(), 1.0, fail=True), Fake("b", {"X"}, 2.0), Fake("c", {"X", "Y"}, 3.0)]
    )
    prof = chain.fetch_profiles(["X", "Y", "Z"])
    assert prof.set_index("symbol")["name"].to_dict() == {"X": "b", "Y": "c"}


def test_build_single_provider_unwrapped(tmp_path: Path) -> None:
    synthetic = build_provider(Settings(price_provider="synthetic", synthetic_seed=11))
    assert isinstance(synthetic, SyntheticProvider) and synthetic.seed == 11
    csv = build_provider(Settings(price_provider="csv", csv_path=tmp_path / "p.csv"))
    assert isinstance(csv, CsvProvider) and csv.path == tmp_path / "p.csv"


def test_build_chain(tmp_path: Path) -> None:
    chain = build_provider(Settings(price_provider=" CSV , synthetic", csv_path=tmp_path / "p.csv"))
    assert isinstance(chain, FallbackProvider)
    assert chain.name == "csv→synthetic"


def test_build_yfinance_lazily(monkeypatch) -> None:
    fake = types.ModuleType("core.providers.yfinance_provider")

    class YFinanceProvider:
        name = "yfinance"

    fake.YFinanceProvider = YFinanceProvider  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "core.providers.yfinance_provider", fake)
    chain = build_provider(Settings(price_provider="yfinance,synthetic"))
    assert isinstance(chain, FallbackProvider)
    assert isinstance(chain.providers[0], YFinanceProvider)
    assert chain.name == "yfinance→synthetic"


@pytest.mark.parametrize(
    ("chain", "message"),
    [
        ("bloomberg", "unknown price provider.*'bloomberg'.*synthetic, csv, yfinance"),
        ("", "no price provider configured"),
        ("synthetic,synthetic", "listed twice"),
        ("csv", "needs a CSV file"),
    ],
)
def test_build_rejects_bad_settings(chain: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        build_provider(Settings(price_provider=chain, csv_path=None))
