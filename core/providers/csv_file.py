"""Daily prices from a long-format CSV file.

Format: a header line, then one row per symbol and session::

    symbol,date,open,high,low,close,adj_close,volume
    SPY,2019-12-31,320.53,322.13,320.15,321.86,295.81,57077300

Dates are ``YYYY-MM-DD``; extra columns are ignored; header names are matched after
stripping blanks and lower-casing. Empty / ``NaN`` / ``NA`` / ``null`` values are read
as NaN, and NaN, zero or negative prices are returned as they are: the data checks
of the symbol flow flag them, this module only rejects a file it cannot read
faithfully (``PriceDataError``). The file has no corporate actions: ``actions`` is
always empty, whatever ``adj_close`` holds.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from core.providers.base import (
    BAR_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    PriceDataError,
    ProviderError,
    empty_bars,
)

NUMERIC_COLUMNS: tuple[str, ...] = BAR_COLUMNS[2:]
NA_TOKENS = frozenset({"", "nan", "-nan", "na", "n/a", "null", "none"})
"""Values (compared stripped and lower-cased) read as NaN rather than rejected."""
DATE_FORMAT = "%Y-%m-%d"
_FIRST_DATA_LINE = 2  # line 1 is the header


_TEXT_PROFILE_COLUMNS = ("symbol", "name", "sector", "industry")


def _empty_profiles() -> pd.DataFrame:
    """An empty frame with ``PROFILE_COLUMNS``: text columns object, the rest float64."""
    return pd.DataFrame(
        {
            c: pd.Series([], dtype=object if c in _TEXT_PROFILE_COLUMNS else "float64")
            for c in PROFILE_COLUMNS
        }
    )


def _line(row: int) -> int:
    """1-based line number in the file of data row ``row`` (0-based, blank lines kept)."""
    return row + _FIRST_DATA_LINE


def read_prices_csv(path: Path) -> pd.DataFrame:
    """Read and validate a long-format price CSV into a ``BAR_COLUMNS`` frame.

    Rows are sorted by symbol then date; dtypes as ``base.empty_bars()``. Raises
    ``ProviderError`` if the file cannot be opened (missing, unreadable) and
    ``PriceDataError`` naming the problem and the 1-based line number for: missing
    columns, an empty symbol, an unparsable date, a non-numeric price or volume, a
    duplicate (symbol, date). Line numbers count one record per physical line.
    """
    path = Path(path)
    try:
        raw = pd.read_csv(
            path,
            dtype=str,
            keep_default_na=False,
            na_filter=False,
            skip_blank_lines=False,
        )
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise ProviderError(f"cannot open price file {path}: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise PriceDataError(f"{path.name}: empty file (a header line is required)") from exc
    except pd.errors.ParserError as exc:
        raise PriceDataError(f"{path.name}: malformed CSV: {exc}") from exc
    except OSError as exc:
        raise ProviderError(f"cannot read price file {path}: {exc}") from exc

    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in BAR_COLUMNS if c not in raw.columns]
    if missing:
        raise PriceDataError(
            f"{path.name}: missing columns {', '.join(missing)} "
            f"(required: {', '.join(BAR_COLUMNS)}; found: {', '.join(raw.columns)})"
        )
    raw = raw[list(BAR_COLUMNS)]
    # Blank lines come back as all-empty rows: drop them but keep line numbers.
    blank = (raw == "").all(axis=1).to_numpy()
    lines = np.array([_line(i) for i in range(len(raw))], dtype=np.int64)[~blank]
    raw = raw.loc[~blank].reset_index(drop=True)

    symbol = raw["symbol"].str.strip()
    empty = (symbol == "").to_numpy()
    if empty.any():
        i = int(np.argmax(empty))
        raise PriceDataError(f"{path.name} line {lines[i]}: empty symbol")

    text_dates = raw["date"].str.strip()
    dates = pd.to_datetime(text_dates, format=DATE_FORMAT, errors="coerce")
    bad = dates.isna().to_numpy()
    if bad.any():
        i = int(np.argmax(bad))
        raise PriceDataError(
            f"{path.name} line {lines[i]}: unparsable date {raw['date'].iloc[i]!r} "
            f"(expected YYYY-MM-DD; {int(bad.sum())} bad date(s) in the file)"
        )

    out: dict[str, pd.Series] = {
        "symbol": symbol.astype(object),
        "date": dates.astype("datetime64[ns]"),
    }
    for col in NUMERIC_COLUMNS:
        text = raw[col].str.strip()
        values = pd.to_numeric(text, errors="coerce").astype("float64")
        bad = (values.isna() & ~text.str.lower().isin(NA_TOKENS)).to_numpy()
        if bad.any():
            i = int(np.argmax(bad))
            raise PriceDataError(
                f"{path.name} line {lines[i]}: non-numeric {col} {raw[col].iloc[i]!r} "
                f"({int(bad.sum())} bad value(s) in that column)"
            )
        out[col] = values
    frame = pd.DataFrame(out, columns=list(BAR_COLUMNS))

    dup = frame.duplicated(["symbol", "date"], keep="first").to_numpy()
    if dup.any():
        i = int(np.argmax(dup))
        sym, day = frame["symbol"].iloc[i], frame["date"].iloc[i].date()
        first = (frame["symbol"] == sym).to_numpy() & (frame["date"] == frame["date"].iloc[i])
        raise PriceDataError(
            f"{path.name} line {lines[i]}: duplicate row for {sym} on {day} "
            f"(first at line {lines[int(np.argmax(first))]})"
        )
    frame = frame.sort_values(["symbol", "date"], kind="stable", ignore_index=True)
    frame["symbol"] = frame["symbol"].astype(object)
    return frame


@dataclass(frozen=True)
class _Loaded:
    """A validated file: the sorted frame, its dates as int64 ns, rows per symbol."""

    frame: pd.DataFrame
    dates: np.ndarray
    spans: dict[str, tuple[int, int]]


class CsvProvider:
    """Prices from the long-format CSV at ``path`` (see the module docstring).

    The file is read and validated on first use, once per instance (thread-safe), and
    kept in memory. A missing file raises ``ProviderError`` from ``fetch`` (so a
    fallback chain moves on); a malformed one raises ``PriceDataError``. A failed load
    is not cached: the next call reads the file again.
    """

    name = "csv"

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._loaded: _Loaded | None = None

    def _data(self) -> _Loaded:
        loaded = self._loaded
        if loaded is None:
            with self._lock:
                loaded = self._loaded
                if loaded is None:
                    frame = read_prices_csv(self.path)
                    symbols = frame["symbol"].to_numpy()
                    starts = np.flatnonzero(np.r_[True, symbols[1:] != symbols[:-1]])
                    ends = np.r_[starts[1:], len(frame)]
                    spans = (
                        {
                            str(symbols[s]): (int(s), int(e))
                            for s, e in zip(starts, ends, strict=True)
                        }
                        if len(frame)
                        else {}
                    )
                    loaded = _Loaded(frame, frame["date"].to_numpy().astype(np.int64), spans)
                    self._loaded = loaded
        return loaded

    def symbols(self) -> list[str]:
        """Every symbol in the file, sorted."""
        return sorted(self._data().spans)

    def fetch(self, symbols: Sequence[str], start: date, end: date) -> FetchResult:
        """Rows with ``start ≤ date ≤ end`` for ``symbols`` (exact, case-sensitive match).

        A symbol not in the file gets ``"no_data: symbol not in <file name>"``; one with
        no rows in the range ``"no_data: no rows between <start> and <end>"``. Actions
        are always empty. ``ValueError`` if ``end < start``.
        """
        if isinstance(symbols, str):
            raise TypeError("symbols must be a sequence of strings, not one string")
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        data = self._data()
        lo_ns = pd.Timestamp(start).as_unit("ns").value
        hi_ns = pd.Timestamp(end).as_unit("ns").value
        errors: dict[str, str] = {}
        pieces: list[np.ndarray] = []
        for s in dict.fromkeys(symbols):
            span = data.spans.get(s)
            if span is None:
                errors[s] = f"no_data: symbol not in {self.path.name}"
                continue
            a, b = span
            i = a + int(np.searchsorted(data.dates[a:b], lo_ns, side="left"))
            j = a + int(np.searchsorted(data.dates[a:b], hi_ns, side="right"))
            if i >= j:
                errors[s] = f"no_data: no rows between {start} and {end}"
                continue
            pieces.append(np.arange(i, j))
        if pieces:
            bars = data.frame.iloc[np.concatenate(pieces)].reset_index(drop=True)
        else:
            bars = empty_bars()
        return FetchResult(bars=bars, errors=errors, provider=self.name)

    def fetch_profiles(self, symbols: Sequence[str]) -> pd.DataFrame:
        """No descriptive data in a price file: an empty frame with ``PROFILE_COLUMNS``."""
        return _empty_profiles()
