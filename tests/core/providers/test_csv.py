"""The long-format CSV price provider."""

from __future__ import annotations

import math
import threading
import time
from datetime import date
from pathlib import Path

import pandas as pd
import pytest

from core.providers import csv_file
from core.providers.base import (
    BAR_COLUMNS,
    PROFILE_COLUMNS,
    PriceDataError,
    PriceProvider,
    ProviderError,
    empty_bars,
)
from core.providers.csv_file import CsvProvider

REAL_PRICES = (
    Path(__file__).resolve().parents[3].parent / "shared" / "data" / "market" / "prices.csv"
)

HEADER = "symbol,date,open,high,low,close,adj_close,volume"
GOOD = f"""{HEADER},source
SPY,2024-01-02,472.16,473.67,470.49,472.65,466.10,123623700,x
SPY,2024-01-03,470.43,471.19,468.17,468.79,462.29,103585900,x
SPY,2024-01-04,468.30,470.96,467.05,467.28,460.80,84232200,x
AAPL,2024-01-03,184.22,185.88,183.43,184.25,183.50,58414500,y
AAPL,2024-01-02,187.15,188.44,183.89,185.64,184.88,82488700,y
BAD,2024-01-02,NaN,0,-1,0,,,z
"""


def _write(tmp_path: Path, text: str, name: str = "prices.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def test_good_file(tmp_path: Path) -> None:
    provider = CsvProvider(_write(tmp_path, GOOD))
    assert isinstance(provider, PriceProvider)
    assert provider.name == "csv"
    res = provider.fetch(["AAPL", "SPY"], date(2024, 1, 2), date(2024, 1, 3))
    assert res.errors == {}
    assert res.provider == "csv"
    assert tuple(res.bars.columns) == BAR_COLUMNS
    assert res.bars.dtypes.equals(empty_bars().dtypes)
    assert res.actions.empty
    assert list(zip(res.bars["symbol"], res.bars["date"].dt.date, strict=True)) == [
        ("AAPL", date(2024, 1, 2)),
        ("AAPL", date(2024, 1, 3)),
        ("SPY", date(2024, 1, 2)),
        ("SPY", date(2024, 1, 3)),
    ]
    spy = res.bars[res.bars["symbol"] == "SPY"].iloc[1]
    assert spy["close"] == 468.79 and spy["adj_close"] == 462.29
    assert spy["volume"] == 103585900.0
    assert provider.symbols() == ["AAPL", "BAD", "SPY"]


def test_bad_prices_are_returned_as_they_are(tmp_path: Path) -> None:
    res = CsvProvider(_write(tmp_path, GOOD)).fetch(["BAD"], date(2024, 1, 1), date(2024, 1, 5))
    row = res.bars.iloc[0]
    assert math.isnan(row["open"]) and row["high"] == 0.0 and row["low"] == -1.0
    assert math.isnan(row["adj_close"]) and math.isnan(row["volume"])


def test_header_names_are_trimmed_and_case_insensitive(tmp_path: Path) -> None:
    text = " Symbol , DATE,Open,High,Low,Close,Adj_Close,Volume\nX,2024-01-02,1,2,0.5,1.5,1.5,10\n"
    res = CsvProvider(_write(tmp_path, text)).fetch(["X"], date(2024, 1, 2), date(2024, 1, 2))
    assert res.bars["close"].tolist() == [1.5]


def test_unknown_symbol_and_empty_range(tmp_path: Path) -> None:
    provider = CsvProvider(_write(tmp_path, GOOD))
    res = provider.fetch(["SPY", "MSFT", "AAPL"], date(2024, 1, 4), date(2024, 1, 10))
    assert res.errors == {
        "MSFT": "no_data: symbol not in prices.csv",
        "AAPL": "no_data: no rows between 2024-01-04 and 2024-01-10",
    }
    assert set(res.bars["symbol"]) == {"SPY"}
    none = provider.fetch(["MSFT"], date(2024, 1, 4), date(2024, 1, 10))
    assert none.bars.dtypes.equals(empty_bars().dtypes) and none.bars.empty


def test_missing_columns_are_named(tmp_path: Path) -> None:
    text = "symbol,date,open,high,low,close\nSPY,2024-01-02,1,2,0.5,1.5\n"
    with pytest.raises(PriceDataError, match="missing columns adj_close, volume"):
        CsvProvider(_write(tmp_path, text)).fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))


def test_bad_date_gives_line_number(tmp_path: Path) -> None:
    text = f"{HEADER}\nSPY,2024-01-02,1,2,0.5,1.5,1.5,10\n\nSPY,01/03/2024,1,2,0.5,1.5,1.5,10\n"
    with pytest.raises(PriceDataError, match=r"line 4: unparsable date '01/03/2024'"):
        CsvProvider(_write(tmp_path, text)).fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))


def test_non_numeric_gives_line_number(tmp_path: Path) -> None:
    text = f"{HEADER}\nSPY,2024-01-02,1,2,0.5,1.5,1.5,10\nSPY,2024-01-03,1,2,0.5,abc,1.5,10\n"
    with pytest.raises(PriceDataError, match=r"line 3: non-numeric close 'abc'"):
        CsvProvider(_write(tmp_path, text)).fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))


def test_duplicate_gives_line_number(tmp_path: Path) -> None:
    text = (
        f"{HEADER}\nSPY,2024-01-02,1,2,0.5,1.5,1.5,10\nAAPL,2024-01-02,1,2,0.5,1.5,1.5,10\n"
        "SPY,2024-01-02,1,2,0.5,1.6,1.6,10\n"
    )
    with pytest.raises(
        PriceDataError,
        match=r"line 4: duplicate row for SPY on 2024-01-02 "
        r"\(first at line 2\)",
    ):
        CsvProvider(_write(tmp_path, text)).fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))


def test_empty_symbol_and_empty_file(tmp_path: Path) -> None:
    text = f"{HEADER}\n,2024-01-02,1,2,0.5,1.5,1.5,10\n"
    with pytest.raises(PriceDataError, match="line 2: empty symbol"):
        csv_file.read_prices_csv(_write(tmp_path, text))
    with pytest.raises(PriceDataError, match="empty file"):
        csv_file.read_prices_csv(_write(tmp_path, "", "empty.csv"))


def test_missing_file_is_a_provider_error(tmp_path: Path) -> None:
    provider = CsvProvider(tmp_path / "nope.csv")
    with pytest.raises(ProviderError, match="nope.csv"):
        provider.fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))


def test_loaded_once_lazily_and_thread_safe(tmp_path: Path, monkeypatch) -> None:
    path = _write(tmp_path, GOOD)
    calls = []
    real = csv_file.read_prices_csv

    def counting(p: Path) -> pd.DataFrame:
        calls.append(p)
        time.sleep(0.05)  # widen the window for a racing second load
        return real(p)

    monkeypatch.setattr(csv_file, "read_prices_csv", counting)
    provider = CsvProvider(path)
    assert calls == []  # nothing read at construction
    results = []
    threads = [
        threading.Thread(
            target=lambda: results.append(
                provider.fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))
            )
        )
        for _ in range(8)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 1
    assert all(len(r.bars) == 3 for r in results)
    path.unlink()  # cached: the file is not read again
    assert len(provider.fetch(["AAPL"], date(2024, 1, 1), date(2024, 1, 5)).bars) == 2


def test_profiles_are_empty(tmp_path: Path) -> None:
    prof = CsvProvider(_write(tmp_path, GOOD)).fetch_profiles(["SPY"])
    assert tuple(prof.columns) == PROFILE_COLUMNS
    assert prof.empty


def test_end_before_start(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="before start"):
        CsvProvider(_write(tmp_path, GOOD)).fetch(["SPY"], date(2024, 1, 5), date(2024, 1, 1))


@pytest.mark.skipif(
    not REAL_PRICES.exists(),
    reason=f"real price fixture not found at {REAL_PRICES} (the shared data folder next to "
    "the repository)",
)
def test_real_prices_file() -> None:
    provider = CsvProvider(REAL_PRICES)
    res = provider.fetch(["SPY", "TLT", "NOPE"], date(2019, 12, 31), date(2021, 12, 31))
    assert res.errors == {"NOPE": "no_data: symbol not in prices.csv"}
    bars = res.bars.set_index(["symbol", "date"])
    assert bars.loc[("SPY", pd.Timestamp("2019-12-31")), "close"] == pytest.approx(321.86, abs=5e-3)
    assert bars.loc[("TLT", pd.Timestamp("2021-12-31")), "close"] == pytest.approx(148.19, abs=5e-3)
    assert len(provider.symbols()) == 57
    assert res.bars.dtypes.equals(empty_bars().dtypes)
