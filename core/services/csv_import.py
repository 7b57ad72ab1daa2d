"""Positions from a CSV file: the format ``POST /v1/portfolios/import`` reads.

Parsing only (no I/O, no validation of the values: :class:`PositionInput.validate` does
that); every error names the 1-based line and the column.

May import: ``core.errors`` and the validation types (``core.services.validation``).
Not: repositories, ``core.db``, flows, api, cli.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import re
from decimal import Decimal, InvalidOperation

from core.errors import InvalidInput
from core.portfolio.valuation import InvestmentClass
from core.services.validation import MAX_POSITIONS, PositionInput

CSV_REQUIRED = ("symbol", "quantity", "entry_date", "entry_price")
CSV_OPTIONAL = ("exit_date", "exit_price", "investment_class", "manual_value")
_CSV_NUMBER = re.compile(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d{1,4})?")


def parse_positions_csv(csv_text: str) -> list[tuple[int, PositionInput]]:
    """``(line number, PositionInput)`` per data row of a positions CSV (not yet validated).

    Header: ``symbol,quantity,entry_date,entry_price`` and optionally ``exit_date``,
    ``exit_price``, ``investment_class``, ``manual_value``, in any order, case-insensitive.
    Dates are ``YYYY-MM-DD``; blank lines are skipped; an empty optional cell is absent.
    Errors name the 1-based line and the column: ``"line 3, quantity: not a number"``.
    """
    if "\x00" in csv_text:
        raise InvalidInput("csv: contains NUL characters (not a text file)", "csv")
    reader = csv.reader(io.StringIO(csv_text.lstrip("\ufeff"), newline=""), strict=True)
    header: list[str] | None = None
    rows: list[tuple[int, PositionInput]] = []
    try:
        for record in reader:
            line = reader.line_num
            if not any(cell.strip() for cell in record):
                continue
            if header is None:
                header = _csv_header(record, line)
                continue
            if len(rows) >= MAX_POSITIONS:
                raise InvalidInput(f"line {line}: more than {MAX_POSITIONS} positions",
                                   f"line {line}")
            rows.append((line, _csv_row(record, header, line)))
    except csv.Error as exc:
        raise InvalidInput(f"line {reader.line_num}: malformed CSV ({exc})",
                           f"line {reader.line_num}") from None
    if header is None:
        raise InvalidInput("csv: empty; expected a header line "
                           f"({','.join(CSV_REQUIRED)}[,{','.join(CSV_OPTIONAL)}])", "csv")
    if not rows:
        raise InvalidInput("csv: no positions after the header line", "csv")
    return rows


def _csv_header(record: list[str], line: int) -> list[str]:
    cols = [c.strip().lower() for c in record]
    known = set(CSV_REQUIRED) | set(CSV_OPTIONAL)
    for c in cols:
        if c not in known:
            raise InvalidInput(
                f"line {line}: unknown column {c!r} (expected {', '.join(CSV_REQUIRED)} "
                f"and optionally {', '.join(CSV_OPTIONAL)})", f"line {line}")
        if cols.count(c) > 1:
            raise InvalidInput(f"line {line}: column {c!r} appears twice", f"line {line}")
    missing = [c for c in CSV_REQUIRED if c not in cols]
    if missing:
        raise InvalidInput(f"line {line}: missing column(s) {', '.join(missing)} (the first "
                           "line must be the header)", f"line {line}")
    return cols


def _csv_row(record: list[str], header: list[str], line: int) -> PositionInput:
    if len(record) != len(header):
        raise InvalidInput(f"line {line}: expected {len(header)} fields, got {len(record)}",
                           f"line {line}")
    cells = {c: v.strip() for c, v in zip(header, record, strict=True)}

    def fail(col: str, problem: str) -> InvalidInput:
        return InvalidInput(f"line {line}, {col}: {problem}", f"line {line}, {col}")

    def number(col: str) -> Decimal | None:
        text = cells.get(col, "")
        if not text:
            if col in CSV_REQUIRED:
                raise fail(col, "missing")
            return None
        if not _CSV_NUMBER.fullmatch(text):
            raise fail(col, f"not a number: {text[:40]!r}")
        try:
            return Decimal(text)
        except InvalidOperation:  # e.g. an exponent beyond Decimal's range
            raise fail(col, f"not a number: {text[:40]!r}") from None

    def date(col: str) -> dt.date | None:
        text = cells.get(col, "")
        if not text:
            if col in CSV_REQUIRED:
                raise fail(col, "missing")
            return None
        try:
            return dt.date.fromisoformat(text)
        except ValueError:
            raise fail(col, f"not a date (YYYY-MM-DD): {text[:40]!r}") from None

    if not cells["symbol"]:
        raise fail("symbol", "missing")
    quantity, entry_price = number("quantity"), number("entry_price")
    entry_date = date("entry_date")
    assert quantity is not None and entry_price is not None and entry_date is not None
    return PositionInput(
        symbol=cells["symbol"], quantity=quantity, entry_date=entry_date,
        entry_price=entry_price, exit_date=date("exit_date"), exit_price=number("exit_price"),
        investment_class=(cells.get("investment_class") or InvestmentClass.PUBLIC.value).upper(),
        manual_value=number("manual_value"),
    )
