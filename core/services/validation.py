"""Input of the portfolio service: bounds, names, cash and positions, validated.

Every check raises :class:`core.errors.InvalidInput` naming the field at fault
(``"positions[2].quantity: must not be zero"``). The bounds follow the precision of the
database columns. No I/O.

May import: ``core.errors``, ``core.symbols``, the portfolio domain types. Not: repositories,
``core.db``, flows, api, cli.
"""

from __future__ import annotations

import datetime as dt
import unicodedata
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from core.errors import AppError, InvalidInput
from core.portfolio.valuation import OPTION_MULTIPLIER, InvestmentClass
from core.symbols import InvalidSymbolError, is_market_symbol, validate_symbol

# --- input bounds (the columns' precision, and sanity) ------------------------------------
MAX_QUANTITY = Decimal("1e12")
"""|quantity| must be below this."""
QUANTITY_DECIMALS = 8
MAX_PRICE = Decimal("1e12")
"""Entry / exit prices must be below this."""
PRICE_DECIMALS = 6
MAX_MONEY = Decimal("1e14")
"""|cash| and manual values must be below this."""
MONEY_DECIMALS = 4
MAX_POSITION_AMOUNT = Decimal("1e12")
"""|quantity × entry or exit price (× 100 for OPTIONS)| must be below this: a portfolio's
amounts (at most MAX_POSITIONS such positions plus cash) then fit the money columns
(NUMERIC(20, 4): below 1e16)."""
MIN_DATE = dt.date(1900, 1, 1)
MAX_NAME_LENGTH = 200
MAX_USER_NAME_LENGTH = 100
MAX_POSITIONS = 1000
"""Most positions one portfolio may hold (correlations grow with its square)."""
MARKET_TZ = ZoneInfo("America/New_York")


def today() -> dt.date:
    """The current date in New York: the market's calendar date (later dates are future)."""
    return dt.datetime.now(MARKET_TZ).date()


def bad(field_name: str, problem: str) -> InvalidInput:
    """An :class:`~core.errors.InvalidInput` naming ``field_name``: ``"<field>: <problem>"``."""
    return InvalidInput(f"{field_name}: {problem}", field_name)


def prefixed(exc: AppError, prefix: str) -> InvalidInput:
    """``exc`` with its field (and message) placed under ``prefix`` (``positions[2]``)."""
    if exc.field:
        return InvalidInput(f"{prefix}.{exc.message}", f"{prefix}.{exc.field}")
    return InvalidInput(f"{prefix}: {exc.message}", prefix)


def _decimal(
    field_name: str, value: Decimal | None, *, limit: Decimal, places: int,
    allow_none: bool = False,
) -> Decimal | None:
    """``value`` checked: finite, |value| < limit, at most ``places`` decimals."""
    if value is None:
        if allow_none:
            return None
        raise bad(field_name, "is required")
    if isinstance(value, bool) or not isinstance(value, Decimal | int):
        raise bad(field_name, f"must be a decimal number, got {type(value).__name__}")
    d = Decimal(value)
    if not d.is_finite():
        raise bad(field_name, f"must be a finite number, got {d}")
    if abs(d) >= limit:
        raise bad(field_name, f"must be less than {limit:,.0f} in absolute value")
    exponent = d.as_tuple().exponent
    if isinstance(exponent, int) and exponent < -places and d != d.quantize(
            Decimal(1).scaleb(-places)):
        raise bad(field_name, f"at most {places} decimal places")
    return d


def _date(field_name: str, value: dt.date | None, today_: dt.date) -> None:
    if value is None:
        return
    if value > today_:
        raise bad(field_name, f"{value.isoformat()} is in the future (today is "
                               f"{today_.isoformat()})")
    if value < MIN_DATE:
        raise bad(field_name, f"{value.isoformat()} is before {MIN_DATE.isoformat()}")


def validate_name(name: str, field_name: str = "name", limit: int = MAX_NAME_LENGTH) -> str:
    """``name`` stripped; 1–``limit`` characters, no control characters."""
    if not isinstance(name, str):
        raise bad(field_name, "must be a string")
    s = name.strip()
    if not s:
        raise bad(field_name, "must not be empty")
    if len(s) > limit:
        raise bad(field_name, f"longer than {limit} characters ({len(s)})")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in s):
        raise bad(field_name, "must not contain control characters")
    return s


def validate_cash(cash: Decimal | None, field_name: str = "cash") -> Decimal:
    """Cash balance: finite, |cash| < 1e14, at most 4 decimals (negative = margin loan)."""
    d = _decimal(field_name, cash, limit=MAX_MONEY, places=MONEY_DECIMALS)
    assert d is not None
    return d


@dataclass(frozen=True)
class PositionInput:
    """A position as a client states it (before it is stored).

    ``quantity`` is signed (negative = short, PUBLIC / OPTIONS only); ``entry_price`` is per
    share (per contract for OPTIONS); PRIVATE holdings are valued at ``manual_value`` (their
    total value) and may use private identifiers such as ``PRIVATE_FUND_A``.
    """

    symbol: str
    quantity: Decimal
    entry_date: dt.date
    entry_price: Decimal
    exit_date: dt.date | None = None
    exit_price: Decimal | None = None
    investment_class: str = InvestmentClass.PUBLIC.value
    manual_value: Decimal | None = None

    def validate(self, today_: dt.date | None = None) -> PositionInput:
        """The position normalised (symbol spelling, class), or ``InvalidInput`` naming the
        field at fault. ``today_`` (default: :func:`today`) bounds every date."""
        today_ = today_ or today()
        try:
            cls = InvestmentClass(self.investment_class)
        except ValueError:
            raise bad("investment_class", f"unknown investment class "
                       f"{str(self.investment_class)!r} (expected PUBLIC, OPTIONS or "
                       "PRIVATE)") from None
        try:
            symbol = validate_symbol(self.symbol)
        except InvalidSymbolError as exc:
            raise bad("symbol", f"invalid symbol {exc.symbol!r}: {exc.problem}") from None
        if cls != InvestmentClass.PRIVATE and not is_market_symbol(symbol):
            raise bad("symbol", f"{symbol!r} is a private identifier (no market price): "
                                 "only PRIVATE holdings may use it")
        qty = _decimal("quantity", self.quantity, limit=MAX_QUANTITY, places=QUANTITY_DECIMALS)
        assert qty is not None
        if qty == 0:
            raise bad("quantity", "must not be zero")
        if qty < 0 and cls == InvestmentClass.PRIVATE:
            raise bad("quantity", "must be positive for a PRIVATE holding (shorts are "
                                   "PUBLIC or OPTIONS only)")
        entry_price = _decimal("entry_price", self.entry_price, limit=MAX_PRICE,
                               places=PRICE_DECIMALS)
        assert entry_price is not None
        if entry_price < 0:
            raise bad("entry_price", "must not be negative")
        if entry_price == 0 and cls == InvestmentClass.PUBLIC:
            raise bad("entry_price", "must be greater than zero for a PUBLIC holding")
        if not isinstance(self.entry_date, dt.date):
            raise bad("entry_date", "is required (YYYY-MM-DD)")
        _date("entry_date", self.entry_date, today_)
        _date("exit_date", self.exit_date, today_)
        if self.exit_date is not None and self.exit_date < self.entry_date:
            raise bad("exit_date", f"{self.exit_date.isoformat()} is before entry_date "
                                    f"{self.entry_date.isoformat()}")
        exit_price = _decimal("exit_price", self.exit_price, limit=MAX_PRICE,
                              places=PRICE_DECIMALS, allow_none=True)
        if exit_price is not None:
            if self.exit_date is None:
                raise bad("exit_price", "given without exit_date")
            if exit_price < 0:
                raise bad("exit_price", "must not be negative")
        manual = _decimal("manual_value", self.manual_value, limit=MAX_MONEY,
                          places=MONEY_DECIMALS, allow_none=True)
        if cls == InvestmentClass.PRIVATE:
            if manual is None:
                raise bad("manual_value", "is required for a PRIVATE holding (its total "
                                           "value)")
            if manual < 0:
                raise bad("manual_value", "must not be negative")
        elif manual is not None:
            raise bad("manual_value", f"only PRIVATE holdings have a manual value (this one "
                                       f"is {cls.value})")
        multiplier = OPTION_MULTIPLIER if cls == InvestmentClass.OPTIONS else Decimal(1)
        for name, price in (("entry_price", entry_price), ("exit_price", exit_price)):
            if price is not None and abs(qty * price * multiplier) >= MAX_POSITION_AMOUNT:
                raise bad("quantity", f"quantity × {name} is {qty * price * multiplier:f}, "
                                       f"beyond the largest position amount "
                                       f"({MAX_POSITION_AMOUNT:f})")
        return replace(self, symbol=symbol, quantity=qty, entry_price=entry_price,
                       exit_price=exit_price, investment_class=cls.value, manual_value=manual)

    @property
    def is_market(self) -> bool:
        """True when the holding needs market prices (PUBLIC / OPTIONS)."""
        return self.investment_class != InvestmentClass.PRIVATE.value

    def row(self) -> dict[str, Any]:
        """Columns for ``portfolio_repo.add_positions``."""
        return {
            "symbol": self.symbol, "quantity": self.quantity, "entry_date": self.entry_date,
            "entry_price": self.entry_price, "exit_date": self.exit_date,
            "exit_price": self.exit_price, "investment_class": self.investment_class,
            "manual_value": self.manual_value,
        }
