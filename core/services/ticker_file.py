"""Ticker files: the tickers an operator lists, one per line or as a CSV ``symbol`` column.

Reading only: the tickers come back as given (not validated), each with where it came
from; :func:`core.services.universe.add_symbols` validates and adds them.

May import: the standard library only. Not: repositories, ``core.db``, flows, api, cli.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass


@dataclass(frozen=True)
class TickerEntry:
    """One ticker as given: the raw text and where it came from (``line 3``, ``symbols[2]``)."""

    raw: str
    where: str


class TickerFileError(ValueError):
    """A ticker file that cannot be read as one (the message names the file and why)."""


def _data_lines(text: str) -> list[tuple[int, str]]:
    """``(line number, text)`` of the lines that are neither blank nor ``#`` comments."""
    out = []
    for n, line in enumerate(text.splitlines(), start=1):
        stripped = line.strip()
        if stripped and not stripped.startswith("#"):
            out.append((n, line))
    return out


def parse_ticker_list(text: str, source: str = "input") -> list[TickerEntry]:
    """The tickers of a ticker file: one per line, or a CSV with a ``symbol`` column.

    Blank lines and lines starting with ``#`` are ignored, as is anything after a ``#`` on
    a one-per-line line. A CSV (the first data line has a comma, or is the header
    ``symbol``) contributes the distinct values of its ``symbol`` column in order of first
    appearance — e.g. the long price format ``symbol,date,open,…``. Raises
    ``TickerFileError`` for a CSV without a ``symbol`` column.

    Parameters
    ----------
    text
        The file's content.
    source
        The file's name, for messages.

    Returns
    -------
    list[TickerEntry]
        One entry per ticker (not yet validated), with its line number.
    """
    lines = _data_lines(text)
    if not lines:
        return []
    first = lines[0][1]
    if "," not in first and first.strip().lower() != "symbol":
        out = []
        for n, line in lines:
            raw = line.split("#", 1)[0].strip()
            if raw:
                out.append(TickerEntry(raw, f"line {n}"))
        return out
    reader = csv.reader(io.StringIO("\n".join(line for _, line in lines)))
    header = [h.strip().lower() for h in next(reader)]
    if "symbol" not in header:
        raise TickerFileError(
            f"{source} line {lines[0][0]}: a CSV needs a 'symbol' column "
            f"(found: {', '.join(header) or 'nothing'})")
    col = header.index("symbol")
    seen: set[str] = set()
    out = []
    for (n, _), record in zip(lines[1:], reader, strict=False):
        raw = record[col].strip() if col < len(record) else ""
        if raw in seen:
            continue
        seen.add(raw)
        out.append(TickerEntry(raw, f"line {n}"))
    return out


def read_ticker_file(path: str) -> list[TickerEntry]:
    """:func:`parse_ticker_list` of the file at ``path``; ``TickerFileError`` when it cannot
    be read (missing, a directory, not text)."""
    try:
        with open(path, encoding="utf-8-sig") as fh:
            text = fh.read()
    except FileNotFoundError:
        raise TickerFileError(f"{path}: no such file") from None
    except IsADirectoryError:
        raise TickerFileError(f"{path}: is a directory, not a ticker file") from None
    except UnicodeDecodeError:
        raise TickerFileError(f"{path}: not a text file (UTF-8 expected)") from None
    except OSError as exc:
        raise TickerFileError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    if "\x00" in text:
        raise TickerFileError(f"{path}: not a text file (it contains NUL bytes)")
    return parse_ticker_list(text, path)
