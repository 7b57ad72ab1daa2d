"""Schema building blocks shared by the domains: decimal and money fields, the error body.

Money and other exact amounts travel as decimal strings (``"1234.5000"``), never as binary
floats; requests may send them as strings or JSON numbers (read exactly, digit for digit).
"""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal
from typing import Annotated, Any, ClassVar

import msgspec
import msgspec.inspect as mi
from msgspec import Meta

DECIMAL_OUT_PATTERN = r"^-?[0-9]+(\.[0-9]+)?$"
_PLAIN = re.compile(r"-?[0-9]+(\.[0-9]+)?", re.ASCII)


class ExactDecimal(Decimal):
    """Base of the request's exact decimal kinds (``Quantity``, ``Price``, ``Cash``,
    ``ManualValue``): each says how many digits it takes before and after the point and
    whether it may be negative. A string must match the kind's pattern exactly (ASCII digits,
    an optional leading ``-`` where negatives are allowed, no ``+``, spaces, exponent or
    trailing ``.``); a JSON number is read digit for digit (never through a binary float)
    and must fit the same bounds and decimal places. The OpenAPI document states both."""

    INT_DIGITS: ClassVar[int]
    PLACES: ClassVar[int]
    SIGNED: ClassVar[bool]
    NONZERO: ClassVar[bool] = False
    DESCRIPTION: ClassVar[str]

    @classmethod
    def pattern(cls) -> str:
        sign = "-?" if cls.SIGNED else ""
        return rf"^{sign}[0-9]{{1,{cls.INT_DIGITS}}}(\.[0-9]{{1,{cls.PLACES}}})?$"

    @classmethod
    def limit(cls) -> Decimal:
        return Decimal(10) ** cls.INT_DIGITS

    @classmethod
    def decode(cls, value: Any) -> Decimal:
        """``value`` (a JSON string, integer, or exact number) as a ``Decimal``, or a
        ``ValueError`` / ``TypeError`` saying what is wrong (msgspec names the field)."""
        if isinstance(value, str):
            if not _PLAIN.fullmatch(value):
                raise ValueError(f"not a decimal number: expected plain ASCII digits such as "
                                 f"\"12.5\" (pattern {cls.pattern()})")
            d = Decimal(value)
            whole, _, frac = value.lstrip("-").partition(".")
            if len(frac) > cls.PLACES:
                raise ValueError(f"at most {cls.PLACES} decimal places")
            if len(whole) > cls.INT_DIGITS:
                raise ValueError(f"at most {cls.INT_DIGITS} digits before the decimal point "
                                 f"(must be less than {cls.limit():,.0f} in absolute value)")
        elif isinstance(value, bool) or not isinstance(value, int | Decimal):
            raise TypeError(f"Expected `decimal` (a string such as \"12.5\" or a number), "
                            f"got `{type(value).__name__}`")
        else:
            d = Decimal(value)
            if not d.is_finite():
                raise ValueError("must be a finite number")
            if abs(d) >= cls.limit():
                raise ValueError(f"must be less than {cls.limit():,.0f} in absolute value")
            if d != d.quantize(Decimal(1).scaleb(-cls.PLACES)):
                raise ValueError(f"at most {cls.PLACES} decimal places")
        if d < 0 and not cls.SIGNED:
            raise ValueError("must not be negative")
        return cls(d)

    @classmethod
    def json_schema(cls) -> dict[str, Any]:
        """The OpenAPI schema of the kind: a string matching its pattern, or a number."""
        limit = int(cls.limit())
        text: dict[str, Any] = {"type": "string", "pattern": cls.pattern()}
        number: dict[str, Any] = {
            "type": "number", "multipleOf": float(Decimal(1).scaleb(-cls.PLACES)),
            "exclusiveMaximum": limit,
            **({"exclusiveMinimum": -limit} if cls.SIGNED else {"minimum": 0})}
        if cls.NONZERO:
            text["not"] = {"pattern": r"^-?0+(\.0+)?$"}
            number["not"] = {"const": 0}
        return {"anyOf": [text, number], "description": cls.DESCRIPTION,
                "examples": ["12.5"]}


class Quantity(ExactDecimal):
    INT_DIGITS, PLACES, SIGNED, NONZERO = 12, 8, True, True
    DESCRIPTION = ("Exact decimal: a string of plain digits (at most 12 before and 8 after the "
                   "point, optional leading '-') or a JSON number with the same bounds; "
                   "never zero.")


class Price(ExactDecimal):
    INT_DIGITS, PLACES, SIGNED = 12, 6, False
    DESCRIPTION = ("Exact decimal >= 0: a string of plain digits (at most 12 before and 6 after "
                   "the point) or a JSON number with the same bounds.")


class Cash(ExactDecimal):
    INT_DIGITS, PLACES, SIGNED = 14, 4, True
    DESCRIPTION = ("Exact decimal: a string of plain digits (at most 14 before and 4 after the "
                   "point, optional leading '-') or a JSON number with the same bounds.")


class ManualValue(ExactDecimal):
    INT_DIGITS, PLACES, SIGNED = 14, 4, False
    DESCRIPTION = ("Exact decimal >= 0: a string of plain digits (at most 14 before and 4 after "
                   "the point) or a JSON number with the same bounds.")


def is_exact_decimal(t: Any) -> bool:
    """Whether ``t`` is one of the request's exact decimal kinds."""
    return isinstance(t, type) and issubclass(t, ExactDecimal) and t is not ExactDecimal


def decode_exact_decimal(t: type[ExactDecimal], value: Any) -> Decimal:
    """Litestar type decoder of the exact decimal kinds."""
    return t.decode(value)


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
    return None if value is None else plain(value)


def iso(value: dt.date | None) -> dt.date | None:
    """Dates pass through (msgspec writes them as ISO 8601)."""
    return value


PROBLEM_JSON = "application/problem+json"
"""The media type of every error answer (RFC 9457 problem details)."""


class ErrorBody(msgspec.Struct):
    """Every error, as RFC 9457 problem details (``application/problem+json``): the standard
    members ``type``, ``title``, ``status``, ``detail``, ``instance``, and the extension
    members clients already read: a stable code (``error``), the message and the field at
    fault."""

    type: Annotated[str, Meta(description="A URI naming the problem type: `about:blank` "
                                          "(the HTTP status says it all; `error` refines it).")]
    title: Annotated[str, Meta(description="The HTTP status phrase, e.g. Bad Request.")]
    status: int
    detail: Annotated[str, Meta(description="What is wrong, for people (same as message).")]
    instance: Annotated[str, Meta(description="The request path the problem occurred on.")]
    error: Annotated[str, Meta(description="Stable error code, e.g. invalid_input, not_found, "
                                           "conflict, unauthorized, forbidden, "
                                           "payload_too_large, unsupported_media_type, "
                                           "not_ready, internal_error.")]
    message: Annotated[str, Meta(description="What is wrong, for people (kept for clients "
                                             "written before problem details; = detail).")]
    field: Annotated[str | None, Meta(description="The input at fault (a JSON path such as "
                                                  "positions[2].quantity, a query parameter, "
                                                  "or 'line 3, quantity' in a CSV).")] = None


def plain(value: Decimal | str) -> str:
    """An exact decimal as the response pattern writes it: digits, never an exponent
    (``str(Decimal("0.00000001"))`` is ``"1E-8"``, which the pattern rejects)."""
    return f"{Decimal(value):f}"


_Plan = Any
"""Where a response type holds decimal strings: ``True`` (this value), a dict of field name
to plan (a struct), or ``("items", plan)`` (list items / dict values)."""


def _plan(t: mi.Type) -> _Plan:
    if isinstance(t, mi.Metadata):
        return _plan(t.type)
    if isinstance(t, mi.StrType):
        return True if t.pattern == DECIMAL_OUT_PATTERN else None
    if isinstance(t, mi.UnionType):
        return next((p for x in t.types if (p := _plan(x)) is not None), None)
    if isinstance(t, mi.StructType):
        fields = {f.encode_name: p for f in t.fields if (p := _plan(f.type)) is not None}
        return fields or None
    if isinstance(t, mi.ListType | mi.DictType):
        inner = _plan(t.item_type if isinstance(t, mi.ListType) else t.value_type)
        return None if inner is None else ("items", inner)
    return None


_PLANS: dict[type, _Plan] = {}


def _plain_decimals(value: Any, plan: _Plan) -> Any:
    """``value`` with every decimal that ``plan`` points at written without an exponent
    (stored and cached payloads may hold ``Decimal`` objects or ``str(Decimal)`` text)."""
    if plan is True:
        if isinstance(value, Decimal) or (isinstance(value, str) and "E" in value.upper()):
            try:
                return plain(value)
            except ArithmeticError:  # not a number at all: the schema names it
                return value
        return value
    if isinstance(plan, tuple):
        if isinstance(value, list):
            return [_plain_decimals(v, plan[1]) for v in value]
        if isinstance(value, dict):
            return {k: _plain_decimals(v, plan[1]) for k, v in value.items()}
        return value
    if isinstance(value, dict):
        return {k: (_plain_decimals(v, plan[k]) if k in plan else v) for k, v in value.items()}
    return value


def convert(value: Any, type_: type) -> Any:
    """``value`` (dicts from the services) as the response schema ``type_``; every decimal
    in it written as plain digits (the response pattern), whatever form it was stored in."""
    if type_ not in _PLANS:
        _PLANS[type_] = _plan(mi.type_info(type_))
    plan = _PLANS[type_]
    if plan is not None:
        value = _plain_decimals(value, plan)
    return msgspec.convert(value, type_, from_attributes=True, strict=False)
