"""Column types shared by the tables."""

from __future__ import annotations

import datetime as dt
import json
from decimal import Decimal
from typing import Any

import orjson
import sqlalchemy as sa
from sqlalchemy.engine import Dialect
from sqlalchemy.types import TypeDecorator


class Money(TypeDecorator[Decimal]):
    """An exact decimal: ``NUMERIC(precision, scale)`` on PostgreSQL, text on SQLite.

    SQLite has no decimal type (its NUMERIC stores binary floats), so amounts are kept
    there as canonical decimal strings and read back as ``Decimal`` unchanged.
    """

    impl = sa.Numeric
    cache_ok = True

    def __init__(self, precision: int = 20, scale: int = 4) -> None:
        super().__init__(precision=precision, scale=scale, asdecimal=True)
        self.precision = precision
        self.scale = scale
        self._quantum = Decimal(1).scaleb(-scale)

    def load_dialect_impl(self, dialect: Dialect) -> Any:
        if dialect.name == "sqlite":
            return dialect.type_descriptor(sa.String(40))
        return dialect.type_descriptor(sa.Numeric(self.precision, self.scale))

    def process_bind_param(self, value: Any, dialect: Dialect) -> Any:
        if value is None:
            return None
        d = value if isinstance(value, Decimal) else Decimal(str(value))
        d = d.quantize(self._quantum)
        return str(d) if dialect.name == "sqlite" else d

    def process_result_value(self, value: Any, dialect: Dialect) -> Decimal | None:
        if value is None:
            return None
        return Decimal(value) if not isinstance(value, Decimal) else value


_ORJSON_OPTIONS = orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY


def json_text(value: Any) -> str:
    """The JSON text a JSON column stores for ``value``: orjson's, which parses back to
    the same values as ``json.dumps``'s (floats in their shortest round-trip form) at a
    fraction of the cost (a night's correlation matrices are millions of floats).

    Differences that cannot reach a stored value: non-ASCII text is written as UTF-8
    rather than escaped; NaN and infinities become ``null`` (``json.dumps``'s ``NaN`` is no
    JSON, and PostgreSQL refuses it). Whatever orjson cannot write (e.g. an integer
    beyond 64 bits) goes to ``json.dumps``, with its errors.
    """
    try:
        return orjson.dumps(value, option=_ORJSON_OPTIONS).decode()
    except TypeError:
        return json.dumps(value)


def as_utc(ts: dt.datetime) -> dt.datetime:
    """A stored timestamp as an aware UTC datetime (SQLite gives naive ones back: they were
    stored as UTC)."""
    return ts if ts.tzinfo is not None else ts.replace(tzinfo=dt.UTC)
