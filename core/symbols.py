"""Symbol identifiers: normalization, validation and the market / private split.

A *symbol* in factorflow is an upper-case identifier as Yahoo spells it: ``AAPL``,
``BRK-B`` (class shares with a dash), ``^GSPC`` (an index), ``7203.T`` (an exchange
suffix), ``EURUSD=X``. Portfolios may also hold *private* identifiers (a fund, a
property, an internal instrument ID) that have no market price: those must never be
sent to a price provider, and ``is_market_symbol`` tells them apart.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

MAX_SYMBOL_LENGTH = 20
"""Longest accepted identifier, in characters (after normalization)."""

_ALLOWED = re.compile(r"[A-Z0-9.\-^=_]+")
_SEPARATORS = ".-=_"
_DOUBLE_SEPARATOR = re.compile(r"[.\-=_]{2}")
_CLASS_SHARE = re.compile(r"^([A-Z]{1,6})\.([ABC])$")
_INTERNAL_ID = re.compile(r"^[A-Z]{2,3}[0-9A-F]{6,}$")
_MIN_INTERNAL_ID_LENGTH = 8
_MIN_INTERNAL_ID_DIGITS = 3


class InvalidSymbolError(ValueError):
    """An identifier that cannot be a symbol; the message names it and the problem."""

    def __init__(self, symbol: str, problem: str) -> None:
        super().__init__(f"invalid symbol {symbol!r}: {problem}")
        self.symbol = symbol
        self.problem = problem


def normalize_symbol(raw: str) -> str:
    """Canonical spelling of ``raw``: stripped, upper-case, class shares with a dash.

    ``" brk.b "`` → ``"BRK-B"``, ``"bf.b"`` → ``"BF-B"`` (Yahoo's spelling). Only a dot
    followed by a single class letter A, B or C after a letters-only root is a class
    share; other dots are exchange suffixes and stay (``"7203.t"`` → ``"7203.T"``,
    ``"vod.l"`` → ``"VOD.L"``). No validation happens here (see ``validate_symbol``);
    the function is idempotent.
    """
    s = raw.strip().upper().strip()
    m = _CLASS_SHARE.match(s)
    if m:
        s = f"{m.group(1)}-{m.group(2)}"
    return s


def validate_symbol(raw: str) -> str:
    """``normalize_symbol(raw)`` if it is a well-formed identifier, else ``InvalidSymbolError``.

    Rules (on the normalized form): not empty; at most ``MAX_SYMBOL_LENGTH`` (20)
    characters; only ``A-Z 0-9 . - ^ = _``; ``^`` only as the first character (an
    index such as ``^GSPC``); must start (after an optional ``^``) and end with a letter
    or digit; no two separators (``. - = _``) in a row. Private identifiers such as
    ``PRIVATE_FUND_A`` are valid (see ``is_market_symbol`` for whether to price them).
    """
    if not isinstance(raw, str):
        raise InvalidSymbolError(repr(raw), f"expected a string, got {type(raw).__name__}")
    s = normalize_symbol(raw)
    if not s:
        raise InvalidSymbolError(raw, "empty")
    if len(s) > MAX_SYMBOL_LENGTH:
        raise InvalidSymbolError(raw, f"longer than {MAX_SYMBOL_LENGTH} characters ({len(s)})")
    if not _ALLOWED.fullmatch(s):
        bad = sorted({c for c in s if not _ALLOWED.fullmatch(c)})
        raise InvalidSymbolError(
            raw, f"characters {''.join(bad)!r} not allowed (only A-Z 0-9 . - ^ = _)"
        )
    if "^" in s[1:]:
        raise InvalidSymbolError(raw, "'^' is only allowed as the first character")
    body = s[1:] if s.startswith("^") else s
    if not body:
        raise InvalidSymbolError(raw, "no letters or digits")
    if body[0] in _SEPARATORS or body[-1] in _SEPARATORS:
        raise InvalidSymbolError(raw, "must start and end with a letter or digit")
    if _DOUBLE_SEPARATOR.search(body):
        raise InvalidSymbolError(raw, "two separators in a row")
    return s


def is_internal_id(symbol: str) -> bool:
    """True for an internal instrument ID such as ``EQ5D6A2D8F``.

    The rule, on the normalized form: 2–3 letters, then at least 6 characters from
    ``0-9 A-F`` (hex digits), total length at least 8, with at least 3 decimal digits
    overall. No exchange-listed ticker has this shape (US tickers have at most 5
    characters; tickers with digits carry an exchange suffix with a dot).
    """
    s = normalize_symbol(symbol)
    return (
        len(s) >= _MIN_INTERNAL_ID_LENGTH
        and _INTERNAL_ID.fullmatch(s) is not None
        and sum(c.isdigit() for c in s) >= _MIN_INTERNAL_ID_DIGITS
    )


def is_market_symbol(symbol: str) -> bool:
    """True when ``symbol`` may be sent to a price provider.

    False for private / non-market identifiers: anything containing ``_``
    (``PRIVATE_FUND_A``, ``RE_MAIN_ST``), internal IDs (``is_internal_id``, e.g.
    ``EQ5D6A2D8F``), and anything ``validate_symbol`` rejects (it cannot be priced
    either). The input is normalized first, so ``"brk.b"`` counts as ``BRK-B``.
    """
    try:
        s = validate_symbol(symbol)
    except InvalidSymbolError:
        return False
    return "_" not in s and not is_internal_id(s)


def split_market_symbols(symbols: Iterable[str]) -> tuple[list[str], list[str]]:
    """Split ``symbols`` into ``(market, private)`` by ``is_market_symbol``.

    Order is preserved and the symbols are returned as given (not normalized);
    invalid identifiers land in ``private``, since they must not be priced either.
    """
    market: list[str] = []
    private: list[str] = []
    for s in symbols:
        (market if is_market_symbol(s) else private).append(s)
    return market, private
