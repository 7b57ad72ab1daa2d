"""Daily prices from a long-format CSV file.

Format: a header line, then one row per symbol and session::

    symbol,date,open,high,low,close,adj_close,volume
    SPY,2019-12-31,320.53,322.13,320.15,321.86,295.81,57077300

Dates are ``YYYY-MM-DD``; extra columns are ignored; header names are matched after
stripping blanks and lower-casing. Empty / ``NaN`` / ``NA`` / ``null`` values are read
as NaN, and NaN, zero or negative prices are returned as they are: the data checks
of the symbol flow flag them. The file has no corporate actions: ``actions`` is
always empty, whatever ``adj_close`` holds.

What a malformed file does
--------------------------
*A broken structure fails the whole call* with ``PriceFileError`` (a
``ProviderError``, so a fallback chain such as ``csv,synthetic`` moves on to the next
provider): a missing or unreadable file, an empty one, one that is not CSV (a line
with more fields than the header, undecodable bytes), a required column missing.

*A bad row fails its symbol, not the file.* A row whose date is not ``YYYY-MM-DD``,
whose price or volume is not a number, or that repeats a (symbol, date) with
different values makes its symbol unservable: ``fetch`` puts the symbol in
``FetchResult.errors`` as ``"bad_data: <file> line <n>: <what>"`` (plus how many
other bad rows it has and their lines) and returns **none of its rows**. A series
with a row silently missing would be stored with a hole that looks like a missed
session (and whose session is unknown when the date itself is unreadable), so the
symbol is not served partially; in a chain the next provider serves the whole
symbol instead, on one price basis. A bad row whose (readable) date lies outside
the requested range does not affect that request. Other symbols of the file are
served as usual.

*Repeated rows*: identical repeats of a (symbol, date) (same numbers after parsing)
are harmless and kept once; repeats that differ are the ``bad_data`` above, named
with the line of the first occurrence and the differing fields.

*A row without a symbol* cannot be given to anyone: it is ignored, with one warning
naming its line when the file is read.

Line numbers are 1-based physical lines of the file (the header is line 1), one
record per line.
"""

from __future__ import annotations

import logging
import threading
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path

import numpy as np
import pandas as pd

from core.providers.base import (
    BAR_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    PriceFileError,
    empty_bars,
    served_by,
)

logger = logging.getLogger(__name__)

NUMERIC_COLUMNS: tuple[str, ...] = BAR_COLUMNS[2:]
NA_TOKENS = frozenset({"", "nan", "-nan", "na", "n/a", "null", "none"})
"""Values (compared stripped and lower-cased) read as NaN rather than rejected."""
DATE_FORMAT = "%Y-%m-%d"
_FIRST_DATA_LINE = 2  # line 1 is the header
_LISTED_LINES = 5  # other bad lines named in a symbol's error


_TEXT_PROFILE_COLUMNS = ("symbol", "name", "sector", "industry")


def _empty_profiles() -> pd.DataFrame:
    """An empty frame with ``PROFILE_COLUMNS``: text columns object, the rest float64."""
    return pd.DataFrame(
        {
            c: pd.Series([], dtype=object if c in _TEXT_PROFILE_COLUMNS else "float64")
            for c in PROFILE_COLUMNS
        }
    )


@dataclass(frozen=True)
class RowProblem:
    """One unusable data row.

    ``line`` is its 1-based line in the file, ``day`` the session it is for (None when
    its date is unreadable), ``message`` what is wrong with it.
    """

    line: int
    day: date | None
    message: str


@dataclass(frozen=True)
class PriceFile:
    """A read price file.

    ``frame``: the usable rows, ``BAR_COLUMNS`` with ``base.empty_bars()`` dtypes,
    sorted by symbol then date, one row per (symbol, date). ``problems``: symbol →
    its unusable rows, by line. ``unattributed``: rows without a symbol.
    """

    frame: pd.DataFrame
    problems: dict[str, tuple[RowProblem, ...]] = field(default_factory=dict)
    unattributed: tuple[RowProblem, ...] = ()


def _format_number(text: str) -> str:
    return repr(text.strip())


def _read_raw(path: Path) -> pd.DataFrame:
    try:
        with warnings.catch_warnings():
            # index_col=False: a trailing delimiter on every line must not shift the
            # columns (pandas would otherwise take the symbol column as the index)
            warnings.simplefilter("ignore", pd.errors.ParserWarning)
            return pd.read_csv(
                path,
                dtype=str,
                keep_default_na=False,
                na_filter=False,
                skip_blank_lines=False,
                index_col=False,
            )
    except (FileNotFoundError, IsADirectoryError, PermissionError) as exc:
        raise PriceFileError(f"cannot open price file {path}: {exc}") from exc
    except pd.errors.EmptyDataError as exc:
        raise PriceFileError(f"{path.name}: empty file (a header line is required)") from exc
    except pd.errors.ParserError as exc:
        raise PriceFileError(f"{path.name}: not a readable CSV file: {exc}") from exc
    except UnicodeDecodeError as exc:
        raise PriceFileError(f"{path.name}: not a text CSV file: {exc}") from exc
    except OSError as exc:
        raise PriceFileError(f"cannot read price file {path}: {exc}") from exc


def read_price_file(path: Path | str) -> PriceFile:
    """Read and validate a long-format price CSV (see the module docstring).

    Parameters
    ----------
    path
        The CSV file.

    Returns
    -------
    PriceFile
        The usable rows, and the unusable ones per symbol with their line numbers.

    Raises
    ------
    PriceFileError
        When the file cannot be opened or read as CSV, is empty, or lacks a
        required column.
    """
    path = Path(path)
    raw = _read_raw(path)
    raw.columns = [str(c).strip().lower() for c in raw.columns]
    missing = [c for c in BAR_COLUMNS if c not in raw.columns]
    if missing:
        raise PriceFileError(
            f"{path.name}: missing columns {', '.join(missing)} "
            f"(required: {', '.join(BAR_COLUMNS)}; found: {', '.join(raw.columns)})"
        )
    raw = raw[list(BAR_COLUMNS)]
    # Blank lines come back as all-empty rows: drop them but keep line numbers.
    blank = (raw == "").all(axis=1).to_numpy()
    lines = (np.arange(len(raw), dtype=np.int64) + _FIRST_DATA_LINE)[~blank]
    raw = raw.loc[~blank].reset_index(drop=True)

    symbol = raw["symbol"].str.strip()
    dates = pd.to_datetime(raw["date"].str.strip(), format=DATE_FORMAT, errors="coerce")
    bad_date = dates.isna().to_numpy()
    values: dict[str, pd.Series] = {}
    bad_value: dict[str, np.ndarray] = {}
    for col in NUMERIC_COLUMNS:
        text = raw[col].str.strip()
        values[col] = pd.to_numeric(text, errors="coerce").astype("float64")
        bad_value[col] = (values[col].isna() & ~text.str.lower().isin(NA_TOKENS)).to_numpy()
    bad_row = bad_date | np.logical_or.reduce(list(bad_value.values()))
    no_symbol = (symbol == "").to_numpy()

    problems: dict[str, list[RowProblem]] = {}
    unattributed: list[RowProblem] = []
    for i in np.flatnonzero(bad_row | no_symbol):
        parts = []
        if bad_date[i]:
            parts.append(f"unparsable date {raw['date'].iloc[i]!r} (expected YYYY-MM-DD)")
        parts += [
            f"non-numeric {col} {_format_number(raw[col].iloc[i])}"
            for col in NUMERIC_COLUMNS
            if bad_value[col][i]
        ]
        day = None if bad_date[i] else dates.iloc[i].date()
        if no_symbol[i]:
            unattributed.append(RowProblem(int(lines[i]), day, "; ".join(parts or ["no symbol"])))
        else:
            problems.setdefault(str(symbol.iloc[i]), []).append(
                RowProblem(int(lines[i]), day, "; ".join(parts))
            )

    good = ~bad_row & ~no_symbol
    frame = pd.DataFrame(
        {
            "symbol": symbol.astype(object),
            "date": dates.astype("datetime64[ns]"),
            **values,
        },
        columns=list(BAR_COLUMNS),
    ).loc[good]
    frame["line"] = lines[good]
    frame = _resolve_repeats(frame, problems)
    frame = frame.sort_values(["symbol", "date"], kind="stable", ignore_index=True)
    frame["symbol"] = frame["symbol"].astype(object)

    if unattributed:
        listed = ", ".join(str(p.line) for p in unattributed[:_LISTED_LINES])
        more = "…" if len(unattributed) > _LISTED_LINES else ""
        logger.warning(
            "%s: %d row(s) without a symbol ignored (line %s%s)",
            path.name, len(unattributed), listed, more,
        )
    return PriceFile(
        frame=frame[list(BAR_COLUMNS)].reset_index(drop=True),
        problems={s: tuple(sorted(p, key=lambda r: r.line)) for s, p in problems.items()},
        unattributed=tuple(unattributed),
    )


def _resolve_repeats(frame: pd.DataFrame, problems: dict[str, list[RowProblem]]) -> pd.DataFrame:
    """Keep one row of identical repeats; drop conflicting repeats into ``problems``.

    ``frame`` has ``BAR_COLUMNS`` plus ``line``; the result keeps ``line``.
    """
    repeated = frame.duplicated(["symbol", "date"], keep=False).to_numpy()
    if not repeated.any():
        return frame
    drop: list[int] = []
    for (sym, day), group in frame.loc[repeated].groupby(["symbol", "date"], sort=False):
        first = group.iloc[0]
        conflicting = False
        for idx, row in group.iloc[1:].iterrows():
            differ = [
                f"{c} {_show(first[c])} vs {_show(row[c])}"
                for c in NUMERIC_COLUMNS
                if not _same(first[c], row[c])
            ]
            drop.append(int(idx))
            if differ:
                conflicting = True
                problems.setdefault(str(sym), []).append(
                    RowProblem(
                        int(row["line"]),
                        pd.Timestamp(day).date(),
                        f"conflicting duplicate row for {pd.Timestamp(day).date()} "
                        f"(first at line {int(first['line'])}: {', '.join(differ)})",
                    )
                )
        if conflicting:
            drop.append(int(group.index[0]))
    return frame.drop(index=drop)


def _same(a: float, b: float) -> bool:
    return bool(a == b or (np.isnan(a) and np.isnan(b)))


def _show(value: float) -> str:
    return "NaN" if np.isnan(value) else f"{value:g}"


@dataclass(frozen=True)
class _Loaded:
    """A read file: the sorted frame, its dates as int64 ns, rows per symbol, problems."""

    frame: pd.DataFrame
    dates: np.ndarray
    spans: dict[str, tuple[int, int]]
    problems: dict[str, tuple[RowProblem, ...]]


def _bad_data(name: str, bad: Sequence[RowProblem]) -> str:
    first = bad[0]
    reason = f"bad_data: {name} line {first.line}: {first.message}"
    if len(bad) > 1:
        others = ", ".join(str(p.line) for p in bad[1 : 1 + _LISTED_LINES])
        more = "…" if len(bad) > 1 + _LISTED_LINES else ""
        reason += f" (and {len(bad) - 1} more bad row(s): line {others}{more})"
    return reason


class CsvProvider:
    """Prices from the long-format CSV at ``path`` (see the module docstring).

    The file is read and validated on first use, once per instance (thread-safe), and
    kept in memory. A file that cannot be read as a price file raises
    ``PriceFileError`` (a ``ProviderError``) from ``fetch``, so a fallback chain moves
    on; bad rows only fail their symbol. A failed load is not cached: the next call
    reads the file again.
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
                    read = read_price_file(self.path)
                    frame = read.frame
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
                    loaded = _Loaded(
                        frame, frame["date"].to_numpy().astype(np.int64), spans, read.problems
                    )
                    self._loaded = loaded
        return loaded

    def symbols(self) -> list[str]:
        """Every symbol in the file (with usable rows or not), sorted."""
        data = self._data()
        return sorted(set(data.spans) | set(data.problems))

    def fetch(self, symbols: Sequence[str], start: date, end: date) -> FetchResult:
        """Rows with ``start ≤ date ≤ end`` for ``symbols`` (exact, case-sensitive match).

        A symbol with a bad row that may fall in the range (its date in the range, or
        unreadable) gets ``bad_data`` and no rows; one not in the file
        ``"no_data: symbol not in <file name>"``; one with no rows in the range
        ``"no_data: no rows between <start> and <end>"``. Actions are always empty.
        ``ValueError`` if ``end < start``; ``PriceFileError`` if the file cannot be
        read as a price file.
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
            bad = [
                p for p in data.problems.get(s, ()) if p.day is None or start <= p.day <= end
            ]
            if bad:
                errors[s] = _bad_data(self.path.name, bad)
                continue
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
        return FetchResult(
            bars=bars,
            errors=errors,
            provider=self.name,
            provider_by_symbol=served_by(bars, self.name),
        )

    def fetch_profiles(self, symbols: Sequence[str]) -> pd.DataFrame:
        """No descriptive data in a price file: an empty frame with ``PROFILE_COLUMNS``."""
        return _empty_profiles()
