"""Valuation of one portfolio on one day: market values, exposures, cost basis, P&L.

Money is exact :class:`decimal.Decimal`. Every monetary amount is quantized to 4
decimal places (``ROUND_HALF_EVEN``) *per position*, before it is summed, so the
identities below hold exactly with no rounding residue. Returns are float. No I/O.

Conventions
-----------
Open
    A holding is open on day ``d`` when ``entry_date <= d`` and (``exit_date`` is None
    or ``d < exit_date``). On its ``exit_date`` it is sold (or covered) at the close: it
    contributes that day's P&L but no end-of-day market value, and it is not counted in
    ``position_count``.
Quantity held
    ``quantity`` is signed (negative = short) and counts shares (contracts for
    OPTIONS) as of ``entry_date``. The quantity held on day ``d`` is
    ``quantity × Π ratio`` over the splits of the holding's symbol with
    ``entry_date < split date <= d``; ``ratio`` is new shares per old share (2 for a
    2-for-1, 0.1 for a 1-for-10 reverse split). A split dated on the entry date is
    already in ``quantity``. Float ratios are read as the nearest fraction with a
    denominator of at most 1000 (a 1-for-3 stored as 0.333333 is exactly 1/3).
Value (end of day, signed)
    PUBLIC: quantity held × raw close of the day. OPTIONS: quantity held × the
    contract's own raw close (the price of its ``symbol``) × ``OPTION_MULTIPLIER``.
    PRIVATE: ``manual_value``, the total signed value (no price needed). Raw closes
    times the quantity held that day: a split never inflates or deflates a past value.
Cost basis
    ``quantity × entry_price`` (× ``OPTION_MULTIPLIER`` for OPTIONS), for every class,
    PRIVATE included. Splits do not change it.
Prices
    ``closes`` map symbol → raw close as ``Decimal`` or float (a float ``x`` is read as
    ``Decimal(str(round(x, 6)))``). An absent symbol, None, NaN, ±inf or a negative
    close means "no price". A close of 0 is a price (a worthless option).
Missing
    A PUBLIC / OPTIONS holding with no price on a day it needs one, or a PRIVATE
    holding without ``manual_value``, is *missing*: it is left out of every sum
    (values, exposures, cost basis, unrealized and daily P&L), its ``position_values``
    entry is None, its symbol is listed in ``missing_symbols`` (sorted, unique) and the
    snapshot is ``partial``.
Daily P&L on ``day`` (``prev_day`` = the previous snapshot's session)
    The sum over holdings of

    * open at ``prev_day`` and at ``day``: ``value(day) − value(prev_day)``, the latter
      from the previous close and the quantity held at ``prev_day``;
    * entered in ``(prev_day, day]`` (normally: on ``day``): ``value(day) − cost basis``;
    * exited in ``(prev_day, day]``: ``proceeds − value(prev_day)``, or
      ``proceeds − cost basis`` when it was also entered in that interval. Proceeds =
      quantity held on ``exit_date`` × ``exit_price`` (× ``OPTION_MULTIPLIER`` for
      OPTIONS); without ``exit_price``: the raw close of ``day`` when
      ``exit_date == day`` (missing when it is an earlier, skipped session), and
      ``manual_value`` for PRIVATE.

    PRIVATE holdings open on both days contribute ``manual − manual = 0``. An entry
    or exit on a skipped session between ``prev_day`` and ``day`` is still counted,
    once. This is the *price* P&L (``price_pnl``); ``daily_pnl = price_pnl + income``
    (below). Both are None for the first snapshot (no ``prev_day``); the daily return
    is ``daily_pnl / previous_equity``, None without a previous equity or when it is 0.
Income (cash dividends) on ``day``
    ``dividends`` map symbol → (ex-date, cash per share). A PUBLIC holding earns each
    dividend of its symbol with ``prev_day < ex-date <= day`` for which it was held at
    the close *before* the ex-date: ``entry_date < ex-date`` and (no ``exit_date`` or
    ``exit_date >= ex-date``). So a buyer on the ex-date gets nothing, a seller on the
    ex-date keeps it, and a position exited before it gets nothing. The amount is
    ``held_quantity(ex-date) × cash per share`` (the quantity after every split up to and
    including the ex-date: the dividend is quoted per share of the raw close of the
    ex-date), negative for a short (the short pays it), quantized to 4 places per
    holding and dividend. The raw close drops by about the dividend on the ex-date, so
    the price P&L shows the drop and the income offsets it. OPTIONS and PRIVATE
    holdings earn none; a holding whose price term is missing earns none that day
    (left out of every sum, like its price P&L). Income is not booked to ``cash``.
    Float amounts are read as ``Decimal(str(round(x, 6)))``.
Aggregates
    ``market_value = Σ signed values``; ``equity = cash + market_value``;
    ``long_exposure = Σ positive values``; ``short_exposure = Σ negative values``
    (≤ 0); ``gross_exposure = long − short`` (≥ 0); ``net_exposure = long + short``
    (= ``market_value``); ``cost_basis`` and ``unrealized_pnl = Σ (value − cost)``
    run over the open holdings that have a value, so
    ``unrealized_pnl = market_value − cost_basis``; ``position_count`` counts every
    open holding, missing ones included.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import ROUND_HALF_EVEN, Decimal, localcontext
from enum import StrEnum
from fractions import Fraction
from types import MappingProxyType

OPTION_MULTIPLIER = Decimal(100)
"""Shares per listed option contract."""

MONEY_QUANTUM = Decimal("0.0001")
"""Monetary results are quantized to this (4 places, ``ROUND_HALF_EVEN``)."""

PRICE_DECIMALS = 6
"""Float closes are rounded to this many decimals before becoming ``Decimal``."""

SPLIT_MAX_DENOMINATOR = 1000
"""Float split ratios are read as the nearest fraction with at most this denominator."""

_PRECISION = 38
"""Decimal digits of intermediate arithmetic (exact for any realistic book)."""

PriceLike = Decimal | float | int | None
SplitRatio = Decimal | float | int
Splits = Mapping[str, Sequence[tuple[date, SplitRatio]]]
Dividends = Mapping[str, Sequence[tuple[date, Decimal | float | int]]]


class InvestmentClass(StrEnum):
    """How a holding is valued."""

    PUBLIC = "PUBLIC"
    """Listed security: quantity held × raw close."""
    OPTIONS = "OPTIONS"
    """Listed option: contracts held × the contract's raw close × 100."""
    PRIVATE = "PRIVATE"
    """Non-market asset: the manually entered total value."""


_ONE = Decimal(1)

_CLASSES = {c.value: c for c in InvestmentClass}


def _as_date(d: date) -> date:
    return d.date() if isinstance(d, datetime) else d


def _decimal(name: str, x: object) -> Decimal:
    """``x`` as a finite Decimal; ints are accepted, floats are a caller's mistake."""
    if isinstance(x, bool) or not isinstance(x, Decimal | int):
        raise ValueError(f"{name} must be a Decimal (or int), got {type(x).__name__} {x!r}")
    d = x if type(x) is Decimal else Decimal(x)  # Decimals are immutable: no copy needed
    if not d.is_finite():
        raise ValueError(f"{name} must be finite, got {d}")
    return d


def _money(x: Decimal) -> Decimal:
    return x.quantize(MONEY_QUANTUM, rounding=ROUND_HALF_EVEN)


@dataclass(frozen=True)
class Holding:
    """One position as stored.

    Attributes
    ----------
    position_id : str
        Unique identifier of the position within the portfolio.
    symbol : str
        Ticker (the contract's own symbol for OPTIONS; any identifier for PRIVATE).
    quantity : Decimal
        Signed number of shares (contracts for OPTIONS) as of ``entry_date``;
        negative = short. Splits after ``entry_date`` scale it (see
        :func:`held_quantity`).
    entry_date : date
        Session the position was opened, at ``entry_price``.
    entry_price : Decimal
        Price paid per share (per contract for OPTIONS, before the × 100 multiplier),
        in the portfolio currency; ≥ 0.
    exit_date : date or None
        Session at whose close the position is sold / covered; None = still held.
    exit_price : Decimal or None
        Exit price per share as of ``exit_date`` (after any split up to that day);
        None = the raw close of ``exit_date``.
    investment_class : InvestmentClass
        PUBLIC (default), OPTIONS or PRIVATE (strings are converted).
    manual_value : Decimal or None
        PRIVATE only: total signed market value of the position. A PRIVATE holding
        without it is missing.

    Raises
    ------
    ValueError
        On a caller's mistake: empty ``position_id`` / ``symbol``, a float or
        non-finite amount, a negative price, ``exit_date`` before ``entry_date``,
        ``exit_price`` without ``exit_date``, or ``manual_value`` on a PUBLIC /
        OPTIONS holding.
    """

    position_id: str
    symbol: str
    quantity: Decimal
    entry_date: date
    entry_price: Decimal
    exit_date: date | None = None
    exit_price: Decimal | None = None
    investment_class: InvestmentClass = InvestmentClass.PUBLIC
    manual_value: Decimal | None = None

    def __post_init__(self) -> None:
        pid = self.position_id
        if not isinstance(pid, str) or not pid:
            raise ValueError(f"position_id must be a non-empty string, got {pid!r}")
        if not isinstance(self.symbol, str) or not self.symbol:
            raise ValueError(f"position {pid}: symbol must be a non-empty string")
        try:
            cls = _CLASSES.get(self.investment_class)
        except TypeError:  # unhashable
            cls = None
        if cls is None:
            raise ValueError(
                f"position {pid}: unknown investment_class {self.investment_class!r}")
        set_ = object.__setattr__
        set_(self, "investment_class", cls)
        set_(self, "quantity", _decimal(f"position {pid}: quantity", self.quantity))
        entry_price = _decimal(f"position {pid}: entry_price", self.entry_price)
        if entry_price < 0:
            raise ValueError(f"position {pid}: entry_price must be >= 0, got {entry_price}")
        set_(self, "entry_price", entry_price)
        if not isinstance(self.entry_date, date):
            raise ValueError(f"position {pid}: entry_date must be a date")
        set_(self, "entry_date", _as_date(self.entry_date))
        if self.exit_date is not None:
            if not isinstance(self.exit_date, date):
                raise ValueError(f"position {pid}: exit_date must be a date or None")
            set_(self, "exit_date", _as_date(self.exit_date))
            if self.exit_date < self.entry_date:
                raise ValueError(
                    f"position {pid}: exit_date {self.exit_date} is before "
                    f"entry_date {self.entry_date}"
                )
        if self.exit_price is not None:
            if self.exit_date is None:
                raise ValueError(f"position {pid}: exit_price given without exit_date")
            exit_price = _decimal(f"position {pid}: exit_price", self.exit_price)
            if exit_price < 0:
                raise ValueError(f"position {pid}: exit_price must be >= 0, got {exit_price}")
            set_(self, "exit_price", exit_price)
        if self.manual_value is not None:
            if cls is not InvestmentClass.PRIVATE:
                raise ValueError(
                    f"position {pid}: manual_value is only for PRIVATE holdings, not {cls}"
                )
            set_(self, "manual_value", _decimal(f"position {pid}: manual_value", self.manual_value))

    def is_open(self, day: date) -> bool:
        """Whether the holding is held at the end of ``day``.

        Parameters
        ----------
        day : date
            Session.

        Returns
        -------
        bool
            ``entry_date <= day`` and (no ``exit_date`` or ``day < exit_date``).
        """
        d = _as_date(day)
        return self.entry_date <= d and (self.exit_date is None or d < self.exit_date)

    @property
    def multiplier(self) -> Decimal:
        """Value per unit of price and quantity: 100 for OPTIONS, else 1."""
        return OPTION_MULTIPLIER if self.investment_class is InvestmentClass.OPTIONS else _ONE


@dataclass(frozen=True)
class Snapshot:
    """One portfolio's valuation at the end of one day; money in exact Decimal (4 places).

    Attributes
    ----------
    day : date
        Session valued.
    equity : Decimal
        ``cash + market_value``.
    market_value : Decimal
        Σ signed end-of-day values of the open holdings that have one (shorts negative).
    cash : Decimal
        Cash balance as given (quantized).
    cost_basis : Decimal
        Σ cost basis of the open holdings that have a value.
    unrealized_pnl : Decimal
        ``market_value − cost_basis``.
    daily_pnl : Decimal or None
        Total P&L since ``prev_day``: ``price_pnl + income`` (see the module
        conventions); None for a first snapshot.
    daily_return : float or None
        ``daily_pnl / previous_equity``; None without a previous equity or when it is 0.
    long_exposure : Decimal
        Σ positive values (≥ 0).
    short_exposure : Decimal
        Σ negative values (≤ 0).
    gross_exposure : Decimal
        ``long_exposure − short_exposure`` (≥ 0).
    net_exposure : Decimal
        ``long_exposure + short_exposure`` (= ``market_value``).
    position_count : int
        Open holdings, missing ones included.
    partial : bool
        Whether any holding was missing (a value or a P&L term left out).
    missing_symbols : tuple of str
        Symbols of the missing holdings, sorted and unique.
    position_values : Mapping of str to Decimal or None
        ``position_id`` → signed end-of-day value of each open holding (None =
        missing), in the order of the holdings given; read-only.
    price_pnl : Decimal or None
        The price part of ``daily_pnl`` (value changes, entries at cost, exits at their
        proceeds); None for a first snapshot.
    income : Decimal or None
        The cash dividends of ``daily_pnl`` (ex-dates in ``(prev_day, day]``, negative
        for shorts); None for a first snapshot.
    """

    day: date
    equity: Decimal
    market_value: Decimal
    cash: Decimal
    cost_basis: Decimal
    unrealized_pnl: Decimal
    daily_pnl: Decimal | None
    daily_return: float | None
    long_exposure: Decimal
    short_exposure: Decimal
    gross_exposure: Decimal
    net_exposure: Decimal
    position_count: int
    partial: bool
    missing_symbols: tuple[str, ...]
    position_values: Mapping[str, Decimal | None]
    price_pnl: Decimal | None = None
    income: Decimal | None = None


def open_holdings(holdings: Iterable[Holding], day: date) -> tuple[Holding, ...]:
    """The holdings held at the end of ``day``.

    Parameters
    ----------
    holdings : iterable of Holding
        Positions of one portfolio.
    day : date
        Session.

    Returns
    -------
    tuple of Holding
        Those with ``entry_date <= day`` and (no ``exit_date`` or ``day < exit_date``),
        in the order given. A holding is not open on its exit date.
    """
    return tuple(h for h in holdings if h.is_open(day))


def _split_ratio(symbol: str, when: date, ratio: SplitRatio) -> Fraction:
    if isinstance(ratio, bool):
        raise ValueError(f"split of {symbol} on {when}: ratio must be a number, got {ratio!r}")
    if isinstance(ratio, Decimal | int):
        if isinstance(ratio, Decimal) and not ratio.is_finite():
            raise ValueError(f"split of {symbol} on {when}: ratio must be finite, got {ratio}")
        frac = Fraction(ratio)
    else:
        f = float(ratio)
        if not math.isfinite(f):
            raise ValueError(f"split of {symbol} on {when}: ratio must be finite, got {f}")
        frac = Fraction(f).limit_denominator(SPLIT_MAX_DENOMINATOR)
    if frac <= 0:
        raise ValueError(f"split of {symbol} on {when}: ratio must be > 0, got {ratio}")
    return frac


def _split_factor(holding: Holding, day: date, splits: Splits | None) -> Fraction:
    """Π ratio over the holding's splits with ``entry_date < split date <= day``."""
    factor = Fraction(1)
    if not splits:
        return factor
    for when, ratio in splits.get(holding.symbol, ()):
        w = _as_date(when)
        if holding.entry_date < w <= day:
            factor *= _split_ratio(holding.symbol, w, ratio)
    return factor


def held_quantity(holding: Holding, day: date, splits: Splits | None = None) -> Decimal:
    """Signed quantity held on ``day``, after the splits since entry.

    Parameters
    ----------
    holding : Holding
        The position; ``quantity`` counts shares (contracts) as of ``entry_date``.
    day : date
        Session. Before ``entry_date`` no split applies and ``quantity`` is returned.
    splits : mapping of str to sequence of (date, ratio), optional
        Splits per symbol; ``ratio`` = new shares per old share (2 for a 2-for-1,
        0.1 for a 1-for-10 reverse split), effective from the split date's session.

    Returns
    -------
    Decimal
        ``quantity × Π ratio`` over the splits with ``entry_date < split date <= day``
        (sign kept: a short stays short). Exact unless a ratio's denominator does
        not divide the quantity (then to 38 significant digits).

    Raises
    ------
    ValueError
        If a split ratio is not a finite number > 0.
    """
    if not splits or not splits.get(holding.symbol):
        return holding.quantity  # = quantity × 1, without a context (the common case)
    factor = _split_factor(holding, _as_date(day), splits)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        if factor.denominator == 1:
            return holding.quantity * factor.numerator
        return holding.quantity * factor.numerator / factor.denominator


def cost_basis(holding: Holding) -> Decimal:
    """Signed cost basis of a holding, quantized to 4 places.

    Parameters
    ----------
    holding : Holding
        The position.

    Returns
    -------
    Decimal
        ``quantity × entry_price`` (× 100 for OPTIONS); negative for a short (the
        proceeds of the short sale). Independent of later splits.
    """
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        return _cost_basis_in_context(holding)


def _cost_basis_in_context(holding: Holding) -> Decimal:
    """:func:`cost_basis` computed in the caller's Decimal context (``_PRECISION``)."""
    return _money(holding.quantity * holding.entry_price * holding.multiplier)


def decimal_closes(closes: Mapping[str, PriceLike]) -> dict[str, Decimal]:
    """``closes`` as the valuation reads them (see :func:`value_portfolio`), converted once:
    symbol → Decimal close, symbols without a usable price left out. Valuing many
    portfolios on one day from this mapping gives the same results as from ``closes``
    without converting each close again for every holding."""
    out = {}
    for symbol, x in closes.items():
        p = _price(x)
        if p is not None:
            out[symbol] = p
    return out


def _price(x: object) -> Decimal | None:
    """A close as Decimal, or None when there is no usable price."""
    if x is None or isinstance(x, bool):
        return None
    if isinstance(x, Decimal):
        p = x
    elif isinstance(x, int):
        p = Decimal(x)
    else:
        try:
            f = float(x)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return None
        if not math.isfinite(f):
            return None
        p = Decimal(str(round(f, PRICE_DECIMALS)))
    if not p.is_finite() or p < 0:
        return None
    return p


def _value(
    holding: Holding, day: date, closes: Mapping[str, PriceLike], splits: Splits | None
) -> Decimal | None:
    """Signed end-of-day value of a holding on ``day`` (None = missing)."""
    if holding.investment_class is InvestmentClass.PRIVATE:
        return None if holding.manual_value is None else _money(holding.manual_value)
    close = _price(closes.get(holding.symbol))
    if close is None:
        return None
    return _money(held_quantity(holding, day, splits) * close * holding.multiplier)


def _proceeds(
    holding: Holding, day: date, closes: Mapping[str, PriceLike], splits: Splits | None
) -> Decimal | None:
    """Signed exit proceeds of a holding exiting in ``(prev_day, day]`` (None = missing)."""
    exit_date = holding.exit_date
    assert exit_date is not None
    if holding.exit_price is not None:
        price: Decimal | None = holding.exit_price
    elif holding.investment_class is InvestmentClass.PRIVATE:
        return None if holding.manual_value is None else _money(holding.manual_value)
    elif exit_date == day:
        price = _price(closes.get(holding.symbol))
    else:
        price = None  # exit at the close of a skipped session: that close is not given
    if price is None:
        return None
    return _money(held_quantity(holding, exit_date, splits) * price * holding.multiplier)


def realized_pnl(
    holding: Holding, as_of: date, exit_close: PriceLike = None, splits: Splits | None = None
) -> Decimal | None:
    """Realized P&L of a holding closed on or before ``as_of``: proceeds − cost basis.

    Parameters
    ----------
    holding : Holding
        The position; open ones (no ``exit_date``, or ``exit_date > as_of``) realize nothing.
    as_of : date
        The valuation date.
    exit_close : Decimal or float, optional
        The raw close of the symbol on ``exit_date``; used when ``exit_price`` is None.
    splits : mapping, optional
        Splits per symbol, as for :func:`held_quantity` (proceeds use the quantity held on
        ``exit_date``).

    Returns
    -------
    Decimal or None
        Signed, in the portfolio currency, quantized to 4 places (a short closed lower is a
        gain); None while the holding is open on ``as_of`` or when its exit price is unknown.
        The proceeds are the same as on the exit day's daily P&L, so the realized P&L of a
        position equals the sum of its daily *price* P&L from entry to exit (its dividend
        income is apart: see the module's "Income").
    """
    if holding.exit_date is None or holding.exit_date > as_of:
        return None
    proceeds = _proceeds(holding, holding.exit_date, {holding.symbol: exit_close}, splits)
    return None if proceeds is None else proceeds - cost_basis(holding)


def _pnl_term(
    holding: Holding,
    day: date,
    prev_day: date,
    value_today: Decimal | None,
    closes: Mapping[str, PriceLike],
    prev_closes: Mapping[str, PriceLike],
    splits: Splits | None,
) -> tuple[bool, Decimal]:
    """``(missing, P&L over (prev_day, day])`` of one holding."""
    entered = prev_day < holding.entry_date <= day
    if not (entered or holding.is_open(prev_day)):
        return False, Decimal(0)  # not yet entered, or closed before prev_day
    exited = holding.exit_date is not None and prev_day < holding.exit_date <= day
    start = cost_basis(holding) if entered else _value(holding, prev_day, prev_closes, splits)
    end = _proceeds(holding, day, closes, splits) if exited else value_today
    if start is None or end is None:
        return True, Decimal(0)
    return False, end - start


def _dividend(symbol: str, when: date, amount: object) -> Decimal:
    """A cash dividend per share as Decimal; ``ValueError`` unless finite and >= 0."""
    if isinstance(amount, bool) or not isinstance(amount, Decimal | int | float):
        raise ValueError(f"dividend of {symbol} on {when}: not a number: {amount!r}")
    if isinstance(amount, float):
        if not math.isfinite(amount):
            raise ValueError(f"dividend of {symbol} on {when}: must be finite, got {amount}")
        amount = Decimal(str(round(amount, PRICE_DECIMALS)))
    d = Decimal(amount)
    if not d.is_finite() or d < 0:
        raise ValueError(f"dividend of {symbol} on {when}: must be finite and >= 0, got {d}")
    return d


def dividend_income(
    holding: Holding, day: date, prev_day: date, dividends: Dividends | None,
    splits: Splits | None = None,
) -> Decimal:
    """Cash dividends a holding earns over ``(prev_day, day]``, quantized to 4 places.

    Parameters
    ----------
    holding : Holding
        The position; only PUBLIC holdings earn dividends.
    day, prev_day : date
        The session valued and the previous snapshot's session (``prev_day < day``).
    dividends : mapping of str to sequence of (date, amount), optional
        Symbol → (ex-date, cash per share in the portfolio currency, in the share basis
        of the ex-date's raw close); floats read as ``Decimal(str(round(x, 6)))``.
    splits : mapping, optional
        Splits per symbol, as for :func:`held_quantity`.

    Returns
    -------
    Decimal
        Σ over the ex-dates in ``(prev_day, day]`` at whose previous close the holding
        was held (``entry_date < ex-date``, not exited before it) of
        ``held_quantity(ex-date) × cash per share``, each quantized; signed (a short
        pays). 0 when none applies.

    Raises
    ------
    ValueError
        If an applicable dividend is not a finite number >= 0.
    """
    total = Decimal(0)
    if not dividends or holding.investment_class is not InvestmentClass.PUBLIC:
        return total
    for when, amount in dividends.get(holding.symbol, ()):
        w = _as_date(when)
        if not (prev_day < w <= day and holding.entry_date < w):
            continue
        if holding.exit_date is not None and holding.exit_date < w:
            continue
        with localcontext() as ctx:
            ctx.prec = _PRECISION
            per_share = _dividend(holding.symbol, w, amount)
            total += _money(held_quantity(holding, w, splits) * per_share)
    return total


def value_portfolio(
    holdings: Iterable[Holding],
    day: date,
    cash: Decimal,
    closes: Mapping[str, PriceLike],
    *,
    prev_day: date | None = None,
    prev_closes: Mapping[str, PriceLike] | None = None,
    previous_equity: Decimal | None = None,
    splits: Splits | None = None,
    dividends: Dividends | None = None,
) -> Snapshot:
    """Value one portfolio at the close of ``day``; P&L against the previous snapshot.

    Parameters
    ----------
    holdings : iterable of Holding
        Every position of the portfolio, including ones not yet entered or already
        exited (they are ignored where they do not apply). ``position_id`` unique.
    day : date
        Session valued.
    cash : Decimal
        Cash balance at the end of ``day`` (signed; negative = borrowed), in the
        portfolio currency.
    closes : mapping of str to Decimal or float
        Symbol → raw (split-unadjusted) close of ``day``; floats are read as
        ``Decimal(str(round(x, 6)))``. Absent / None / NaN / negative = no price.
    prev_day : date, optional
        Session of the previous snapshot (before ``day``). None = first snapshot:
        no daily P&L.
    prev_closes : mapping of str to Decimal or float, optional
        Raw closes of ``prev_day``; required with ``prev_day`` (pass ``{}`` when no
        holding was open then).
    previous_equity : Decimal, optional
        Equity of the previous snapshot, the denominator of ``daily_return``.
    splits : mapping of str to sequence of (date, ratio), optional
        Splits per symbol (new shares per old share), see :func:`held_quantity`.
    dividends : mapping of str to sequence of (date, amount), optional
        Cash dividends per symbol: (ex-date, cash per share), see
        :func:`dividend_income`. Only ex-dates in ``(prev_day, day]`` matter.

    Returns
    -------
    Snapshot
        Values, exposures, cost basis, unrealized and daily P&L (price P&L, income and
        their sum), per the conventions of this module. Monetary fields are quantized
        to 4 places; each position's amount is quantized before summing, so
        ``equity == cash + long + short``, ``gross == long − short``,
        ``unrealized == market_value − cost_basis`` and
        ``daily_pnl == price_pnl + income`` hold exactly.

    Raises
    ------
    ValueError
        If ``cash`` / ``previous_equity`` is not a finite Decimal (or int),
        ``position_id`` values repeat, ``prev_day`` is not before ``day``,
        ``prev_closes`` is missing while ``prev_day`` is given (or given without
        ``prev_day``), a split ratio is not > 0 or a dividend is not >= 0.
    """
    items = tuple(holdings)
    day = _as_date(day)
    cash_d = _money(_decimal("cash", cash))
    prev_eq = None if previous_equity is None else _decimal("previous_equity", previous_equity)
    prev_day = _checked_prev_day(day, prev_day, prev_closes)
    _check_unique_position_ids(items)
    with localcontext() as ctx:
        ctx.prec = _PRECISION
        book = _end_of_day_book(items, day, closes, splits)
        pnl: tuple[Decimal, Decimal] | None = None
        daily_return: float | None = None
        if prev_day is not None:
            assert prev_closes is not None
            pnl = _daily_pnl(items, day, prev_day, book, closes, prev_closes, splits,
                             dividends)
            if prev_eq is not None and prev_eq != 0:
                daily_return = float((pnl[0] + pnl[1]) / prev_eq)
        return _snapshot(day, cash_d, book, pnl, daily_return)


def _checked_prev_day(
    day: date, prev_day: date | None, prev_closes: Mapping[str, PriceLike] | None
) -> date | None:
    """``prev_day`` as a date; raise ``ValueError`` unless it precedes ``day`` and comes
    with ``prev_closes`` (and ``prev_closes`` never comes without it)."""
    if prev_day is not None:
        prev_day = _as_date(prev_day)
        if prev_day >= day:
            raise ValueError(f"prev_day {prev_day} must be before day {day}")
        if prev_closes is None:
            raise ValueError("prev_closes is required when prev_day is given (pass {} if none)")
    elif prev_closes is not None:
        raise ValueError("prev_closes given without prev_day")
    return prev_day


def _check_unique_position_ids(items: Sequence[Holding]) -> None:
    """Raise ``ValueError`` naming the ``position_id`` values that repeat."""
    ids = [h.position_id for h in items]
    if len(set(ids)) != len(ids):
        dupes = sorted({i for i in ids if ids.count(i) > 1})
        raise ValueError(f"duplicate position_id values: {dupes}")


@dataclass
class _Book:
    """End-of-day sums of the open holdings (Decimal, each position quantized first)."""

    values: dict[str, Decimal | None]
    """position_id → signed value (None = missing) of every holding open on the day."""
    missing: set[str]
    """Symbols of the holdings left out for want of a price or value."""
    long: Decimal
    short: Decimal
    cost: Decimal


def _end_of_day_book(
    items: Sequence[Holding], day: date, closes: Mapping[str, PriceLike], splits: Splits | None
) -> _Book:
    """Values, long/short exposure and cost basis of the holdings open on ``day``.

    Runs in the caller's Decimal context.
    """
    zero = Decimal(0)
    missing: set[str] = set()
    values: dict[str, Decimal | None] = {}
    long_ = short = cost = zero
    for h in items:
        if not h.is_open(day):
            continue
        v = _value(h, day, closes, splits)
        values[h.position_id] = v
        if v is None:
            missing.add(h.symbol)
            continue
        cost += _cost_basis_in_context(h)
        if v > 0:
            long_ += v
        else:
            short += v
    return _Book(values, missing, long_, short, cost)


def _daily_pnl(
    items: Sequence[Holding],
    day: date,
    prev_day: date,
    book: _Book,
    closes: Mapping[str, PriceLike],
    prev_closes: Mapping[str, PriceLike],
    splits: Splits | None,
    dividends: Dividends | None,
) -> tuple[Decimal, Decimal]:
    """``(price P&L, income)`` over ``(prev_day, day]``, quantized; adds the symbols it
    lacks to ``book``. A holding whose price term is missing earns no income.

    Runs in the caller's Decimal context.
    """
    price_pnl = income = Decimal(0)
    for h in items:
        lost, term = _pnl_term(
            h, day, prev_day, book.values.get(h.position_id), closes, prev_closes, splits
        )
        if lost:
            book.missing.add(h.symbol)
            continue
        price_pnl += term
        if dividends:
            income += dividend_income(h, day, prev_day, dividends, splits)
    return _money(price_pnl), _money(income)


def _snapshot(
    day: date, cash: Decimal, book: _Book, pnl: tuple[Decimal, Decimal] | None,
    daily_return: float | None,
) -> Snapshot:
    """The snapshot of ``book`` and ``cash``; ``pnl`` = (price P&L, income) or None.
    Runs in the caller's Decimal context."""
    market_value = book.long + book.short
    price_pnl, income = pnl if pnl is not None else (None, None)
    daily_pnl = None if pnl is None else pnl[0] + pnl[1]
    return Snapshot(
        day=day,
        equity=_money(cash + market_value),
        market_value=_money(market_value),
        cash=cash,
        cost_basis=_money(book.cost),
        unrealized_pnl=_money(market_value - book.cost),
        daily_pnl=daily_pnl,
        daily_return=daily_return,
        long_exposure=_money(book.long),
        short_exposure=_money(book.short),
        gross_exposure=_money(book.long - book.short),
        net_exposure=_money(market_value),
        position_count=len(book.values),
        partial=bool(book.missing),
        missing_symbols=tuple(sorted(book.missing)),
        position_values=MappingProxyType(book.values),
        price_pnl=price_pnl,
        income=income,
    )
