"""Schema building blocks shared by the domains: decimal and money fields, the error body.

Money and other exact amounts travel as decimal strings (``"1234.5000"``), never as binary
floats; requests may send them as strings or JSON numbers (read exactly, digit for digit).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any

import msgspec
from msgspec import Meta

DECIMAL_IN_PATTERN = r"^-?[0-9]{1,15}(\.[0-9]{1,8})?$"
DECIMAL_OUT_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"

DecimalIn = Annotated[Decimal, Meta(extra_json_schema={
    "description": "An exact decimal, as a string (\"12.5\") or a JSON number (read digit "
                   "for digit, never through a binary float).",
    "examples": ["12.5"],
    "extra": {"pattern": DECIMAL_IN_PATTERN},
})]
"""An exact decimal in a request."""

DecimalOut = Annotated[str, Meta(
    pattern=DECIMAL_OUT_PATTERN, description="An exact decimal as a string.",
    examples=["1234.5000"])]
"""An exact decimal (money, quantity, price) in a response."""

InvestmentClassName = Annotated[str, Meta(extra_json_schema={
    "description": "How the holding is valued: PUBLIC (shares × close), OPTIONS (contracts × "
                   "the contract's close × 100) or PRIVATE (its manual_value).",
    "examples": ["PUBLIC"],
    "extra": {"enum": ["PUBLIC", "OPTIONS", "PRIVATE"]},
})]


def dec(value: Decimal | None) -> str | None:
    """A Decimal as a plain (never scientific) decimal string."""
    return None if value is None else f"{value:f}"


def iso(value: dt.date | None) -> dt.date | None:
    """Dates pass through (msgspec writes them as ISO 8601)."""
    return value


class ErrorBody(msgspec.Struct):
    """Every error: the HTTP status, a stable code, what is wrong, and the field at fault."""

    status: int
    error: Annotated[str, Meta(description="Stable error code, e.g. invalid_input, not_found, "
                                           "conflict, unauthorized, forbidden, "
                                           "payload_too_large, not_ready, internal_error.")]
    message: Annotated[str, Meta(description="What is wrong, for people.")]
    field: Annotated[str | None, Meta(description="The input at fault (a JSON path such as "
                                                  "positions[2].quantity, a query parameter, "
                                                  "or 'line 3, quantity' in a CSV).")] = None


def convert(value: Any, type_: type) -> Any:
    """``value`` (dicts from the services) as the response schema ``type_``."""
    return msgspec.convert(value, type_, from_attributes=True, strict=False)
