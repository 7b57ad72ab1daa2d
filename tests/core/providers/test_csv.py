"""The long-format CSV price provider."""

from __future__ import annotations

import logging
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
    PriceFileError,
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
    assert res.provider_by_symbol == {"AAPL": "csv", "SPY": "csv"}
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


def test_missing_columns_fail_the_call_as_a_provider_error(tmp_path: Path) -> None:
    text = "symbol,date,open,high,low,close\nSPY,2024-01-02,1,2,0.5,1.5\n"
    with pytest.raises(PriceFileError, match="missing columns adj_close, volume") as err:
        CsvProvider(_write(tmp_path, text)).fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))
    assert isinstance(err.value, ProviderError)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty file"),
        (f"{HEADER}\nSPY,2024-01-02,1,2,0.5,1.5,1.5,10\nSPY,2024-01-03,1,2,0.5,1.5,1.5,10,x,y\n"
         .encode(), "not a readable CSV file"),
        (b"\xff\xfe\x00\x01binary\x00\x9c", "not a"),
    ],
    ids=["empty", "ragged", "binary"],
)
def test_broken_structure_fails_the_call_as_a_provider_error(
    tmp_path: Path, content: bytes, message: str
) -> None:
    path = tmp_path / "prices.csv"
    path.write_bytes(content)
    with pytest.raises(PriceFileError, match=message):
        CsvProvider(path).fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))


SPY_AND_AAPL = f"""{HEADER}
SPY,2024-01-02,1,2,0.5,1.5,1.5,10
AAPL,2024-01-02,10,12,9,11,11,100
AAPL,2024-01-03,11,13,10,12,12,100
"""


def test_bad_date_fails_only_its_symbol_with_the_line(tmp_path: Path) -> None:
    text = SPY_AND_AAPL + "\nSPY,01/03/2024,1,2,0.5,1.5,1.5,10\n"
    res = CsvProvider(_write(tmp_path, text)).fetch(
        ["SPY", "AAPL"], date(2024, 1, 1), date(2024, 1, 5)
    )
    assert res.errors == {
        "SPY": "bad_data: prices.csv line 6: unparsable date '01/03/2024' (expected YYYY-MM-DD)"
    }
    assert set(res.bars["symbol"]) == {"AAPL"} and len(res.bars) == 2
    assert res.provider_by_symbol == {"AAPL": "csv"}


def test_non_numeric_value_fails_only_its_symbol(tmp_path: Path) -> None:
    text = SPY_AND_AAPL + "SPY,2024-01-03,1,2,0.5,abc,1.5,ten\n"
    res = CsvProvider(_write(tmp_path, text)).fetch(
        ["SPY", "AAPL"], date(2024, 1, 1), date(2024, 1, 5)
    )
    assert res.errors == {
        "SPY": "bad_data: prices.csv line 5: non-numeric close 'abc'; non-numeric volume 'ten'"
    }
    assert set(res.bars["symbol"]) == {"AAPL"}


def test_every_bad_row_of_a_symbol_is_counted(tmp_path: Path) -> None:
    rows = "".join(f"SPY,2024-01-{d:02d},1,2,0.5,x,1.5,10\n" for d in range(3, 12))
    res = CsvProvider(_write(tmp_path, SPY_AND_AAPL + rows)).fetch(
        ["SPY"], date(2024, 1, 1), date(2024, 1, 31)
    )
    assert res.errors["SPY"] == (
        "bad_data: prices.csv line 5: non-numeric close 'x' "
        "(and 8 more bad row(s): line 6, 7, 8, 9, 10…)"
    )
    assert res.bars.empty


def test_bad_row_outside_the_range_does_not_matter(tmp_path: Path) -> None:
    text = SPY_AND_AAPL + "SPY,2023-06-30,1,2,0.5,abc,1.5,10\n"
    provider = CsvProvider(_write(tmp_path, text))
    res = provider.fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))
    assert res.errors == {} and res.bars["close"].tolist() == [1.5]
    old = provider.fetch(["SPY"], date(2023, 6, 1), date(2024, 1, 5))
    assert old.errors["SPY"].startswith("bad_data: prices.csv line 5: non-numeric close 'abc'")
    assert old.bars.empty


def test_symbol_with_only_bad_rows_is_bad_data_not_missing(tmp_path: Path) -> None:
    text = SPY_AND_AAPL + "MSFT,2024-01-02,1,2,0.5,--,1.5,10\n"
    provider = CsvProvider(_write(tmp_path, text))
    res = provider.fetch(["MSFT"], date(2024, 1, 1), date(2024, 1, 5))
    assert res.errors["MSFT"].startswith("bad_data: prices.csv line 5: non-numeric close '--'")
    assert provider.symbols() == ["AAPL", "MSFT", "SPY"]


def test_identical_duplicates_are_kept_once(tmp_path: Path) -> None:
    text = SPY_AND_AAPL + "SPY,2024-01-02,1.0,2.00,0.5,1.50,1.5,1e1\n"
    res = CsvProvider(_write(tmp_path, text)).fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))
    assert res.errors == {}
    assert res.bars["close"].tolist() == [1.5]


def test_conflicting_duplicates_fail_the_symbol_with_both_lines(tmp_path: Path) -> None:
    text = SPY_AND_AAPL + "SPY,2024-01-02,1,2,0.5,1.6,1.6,10\n"
    res = CsvProvider(_write(tmp_path, text)).fetch(
        ["SPY", "AAPL"], date(2024, 1, 1), date(2024, 1, 5)
    )
    assert res.errors == {
        "SPY": "bad_data: prices.csv line 5: conflicting duplicate row for 2024-01-02 "
        "(first at line 2: close 1.5 vs 1.6, adj_close 1.5 vs 1.6)"
    }
    assert set(res.bars["symbol"]) == {"AAPL"}


def test_row_without_symbol_is_ignored_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    text = SPY_AND_AAPL + ",2024-01-03,1,2,0.5,1.5,1.5,10\n"
    with caplog.at_level(logging.WARNING, logger="core.providers.csv_file"):
        res = CsvProvider(_write(tmp_path, text)).fetch(
            ["SPY", "AAPL"], date(2024, 1, 1), date(2024, 1, 5)
        )
    assert res.errors == {} and len(res.bars) == 3
    assert "prices.csv: 1 row(s) without a symbol ignored (line 5)" in caplog.text
    read = csv_file.read_price_file(tmp_path / "prices.csv")
    assert [p.line for p in read.unattributed] == [5]


def test_trailing_delimiter_does_not_shift_columns(tmp_path: Path) -> None:
    text = f"{HEADER}\nSPY,2024-01-02,1,2,0.5,1.5,1.4,10,\nSPY,2024-01-03,1,2,0.5,1.6,1.5,10,\n"
    res = CsvProvider(_write(tmp_path, text)).fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))
    assert res.errors == {}
    assert res.bars["close"].tolist() == [1.5, 1.6]
    assert res.bars["adj_close"].tolist() == [1.4, 1.5]


def test_missing_file_is_a_provider_error(tmp_path: Path) -> None:
    provider = CsvProvider(tmp_path / "nope.csv")
    with pytest.raises(ProviderError, match="nope.csv"):
        provider.fetch(["SPY"], date(2024, 1, 1), date(2024, 1, 5))


def test_loaded_once_lazily_and_thread_safe(tmp_path: Path, monkeypatch) -> None:
    path = _write(tmp_path, GOOD)
    calls = []
    real = csv_file.read_price_file

    def counting(p: Path) -> csv_file.PriceFile:
        calls.append(p)
        time.sleep(0.05)  # widen the window for a racing second load
        return real(p)

    monkeypatch.setattr(csv_file, "read_price_file", counting)
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
