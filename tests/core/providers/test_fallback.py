"""The fallback chain of providers and ``build_provider`` from settings."""

from __future__ import annotations

import logging
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
    """Serves ``known`` at ``price``; others get ``no_data``; or raises for the chunk
    (``fail=True``: ``ProviderError``; ``fail=<exception>``: that exception)."""

    def __init__(
        self, name: str, known: set[str], price: float, fail: bool | Exception = False
    ) -> None:
        self.name = name
        self.known = known
        self.price = price
        self.fail = fail
        self.calls: list[list[str]] = []

    def fetch(self, symbols: Sequence[str], start: date, end: date) -> FetchResult:
        self.calls.append(list(symbols))
        if isinstance(self.fail, Exception):
            raise self.fail
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
    assert res.provider_by_symbol == {"X": "b", "Y": "b"}


@pytest.mark.parametrize(
    "failure",
    [
        KeyError("close"),
        ValueError("could not convert string to float: 'abc'"),
        ConnectionResetError("connection reset by peer"),
        TypeError("'NoneType' object is not subscriptable"),
    ],
    ids=["bug", "parse", "network", "type"],
)
def test_any_exception_goes_to_next_provider(
    failure: Exception, caplog: pytest.LogCaptureFixture
) -> None:
    broken = Fake("a", {"X", "Y"}, 1.0, fail=failure)
    up = Fake("b", {"X"}, 2.0)
    with caplog.at_level(logging.WARNING, logger="core.providers.fallback"):
        res = FallbackProvider([broken, up]).fetch(["X", "Y"], START, END)
    assert up.calls == [["X", "Y"]]
    assert set(res.bars["symbol"]) == {"X"} and set(res.bars["close"]) == {2.0}
    assert res.provider_by_symbol == {"X": "b"}
    kind = type(failure).__name__
    assert res.errors["Y"].startswith(f"provider_error: {kind}: ")
    assert res.errors["Y"].endswith("[a]; no_data: Y unknown to b [b]")
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "provider a failed for 2 symbols" in warnings[0].getMessage()
    assert warnings[0].exc_info is not None  # a bug keeps its traceback in the log


def test_unreadable_result_goes_to_next_provider() -> None:
    class NoFrame(Fake):
        def fetch(self, symbols: Sequence[str], start: date, end: date) -> FetchResult:
            self.calls.append(list(symbols))
            return FetchResult(bars=pd.DataFrame({"ticker": ["X"]}))

    up = Fake("b", {"X"}, 2.0)
    res = FallbackProvider([NoFrame("a", set(), 1.0), up]).fetch(["X"], START, END)
    assert res.provider_by_symbol == {"X": "b"} and res.errors == {}


def test_every_provider_raising_anything_is_a_provider_error() -> None:
    chain = FallbackProvider(
        [Fake("a", {"X"}, 1.0, fail=KeyError("k")), Fake("b", {"X"}, 2.0, fail=True)]
    )
    with pytest.raises(ProviderError, match="a: KeyError: 'k'; b: b is down"):
        chain.fetch(["X"], START, END)


def test_end_before_start_is_rejected_before_any_provider() -> None:
    first = Fake("a", {"X"}, 1.0)
    with pytest.raises(ValueError, match="before start"):
        FallbackProvider([first]).fetch(["X"], END, START)
    assert first.calls == []


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
    assert res.provider_by_symbol == {"X": "a", "Y": "b"}
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
    assert res.provider_by_symbol == {"SPY": "csv", "AAPL": "synthetic"}
    reason = res.errors["PRIVATE_FUND_A"]
    assert reason.startswith("provider_error: ")
    assert reason.count("; ") == 2 and reason.endswith("[synthetic]")


def test_csv_chain_falls_back_on_a_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text("symbol,date,close\nSPY,2024-01-02,472.65\n")
    chain = build_provider(Settings(price_provider="csv,synthetic", csv_path=path))
    res = chain.fetch(["SPY", "AAPL"], START, END)
    assert set(res.bars["symbol"]) == {"SPY", "AAPL"} and res.errors == {}
    assert res.provider_by_symbol == {"SPY": "synthetic", "AAPL": "synthetic"}
    assert res.provider == "synthetic"


def test_csv_chain_serves_a_symbol_with_bad_rows_from_the_next_provider(tmp_path: Path) -> None:
    path = tmp_path / "prices.csv"
    path.write_text(
        "symbol,date,open,high,low,close,adj_close,volume\n"
        "SPY,2024-01-02,472.16,473.67,470.49,472.65,466.10,123623700\n"
        "SPY,2024-01-03,470.43,471.19,468.17,468.79,462.29,103585900\n"
        "AAPL,2024-01-02,187.15,188.44,183.89,185.64,184.88,82488700\n"
        "AAPL,2024-01-03,184.22,185.88,183.43,n/a?,183.50,58414500\n"
    )
    chain = build_provider(Settings(price_provider="csv,synthetic", csv_path=path))
    res = chain.fetch(["SPY", "AAPL"], START, END)
    assert res.errors == {}
    assert res.provider_by_symbol == {"SPY": "csv", "AAPL": "synthetic"}
    aapl = res.bars[res.bars["symbol"] == "AAPL"]
    synthetic = SyntheticProvider().fetch(["AAPL"], START, END).bars
    assert aapl["close"].tolist() == synthetic["close"].tolist()  # the whole symbol, one source


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
