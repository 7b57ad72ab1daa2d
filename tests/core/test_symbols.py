"""Symbol identifier rules: normalization, validation, market vs private."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.providers.synthetic import ETF_SYMBOLS, SyntheticProvider
from core.symbols import (
    MAX_SYMBOL_LENGTH,
    InvalidSymbolError,
    is_internal_id,
    is_market_symbol,
    normalize_symbol,
    split_market_symbols,
    validate_symbol,
)

REAL_TICKERS = [
    "AAPL",
    "BRK-B",
    "BF-B",
    "GOOGL",
    "SPY",
    "TLT",
    "MTUM",
    "USMV",
    "QUAL",
    "XLK",
    "^GSPC",
    "7203.T",
    "RDS-A",
    "VOD.L",
    "EURUSD=X",
    "CL=F",
    "BTC-USD",
    "A",
    "BRK-A",
    "005930.KS",
    "ABCDE",
]


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("brk.b", "BRK-B"),
        ("  bf.b ", "BF-B"),
        ("BRK-B", "BRK-B"),
        ("aapl", "AAPL"),
        ("7203.t", "7203.T"),  # exchange suffix, not a class share
        ("vod.l", "VOD.L"),
        ("^gspc", "^GSPC"),
        ("\tspy\n", "SPY"),
    ],
)
def test_normalize(raw: str, expected: str) -> None:
    assert normalize_symbol(raw) == expected


@pytest.mark.parametrize("ticker", REAL_TICKERS)
def test_real_tickers_are_valid_market_symbols(ticker: str) -> None:
    assert validate_symbol(ticker) == ticker
    assert is_market_symbol(ticker)
    assert not is_internal_id(ticker)


def test_validate_normalizes() -> None:
    assert validate_symbol(" brk.b ") == "BRK-B"
    assert validate_symbol("private_fund_a") == "PRIVATE_FUND_A"


@pytest.mark.parametrize(
    ("raw", "problem"),
    [
        ("", "empty"),
        ("   ", "empty"),
        ("A" * (MAX_SYMBOL_LENGTH + 1), "longer than 20"),
        ("AA PL", "not allowed"),
        ("!!!", "not allowed"),
        ("AAPL$", "not allowed"),
        ("ÄBC", "not allowed"),
        ("AB^C", "'^'"),
        ("^", "no letters"),
        ("-ABC", "start and end"),
        ("ABC.", "start and end"),
        ("A--B", "two separators"),
        ("A._B", "two separators"),
    ],
)
def test_validate_rejects_garbage(raw: str, problem: str) -> None:
    with pytest.raises(InvalidSymbolError) as info:
        validate_symbol(raw)
    assert problem in str(info.value)
    assert repr(raw) in str(info.value)  # the message names the symbol
    assert isinstance(info.value, ValueError)


def test_validate_rejects_non_string() -> None:
    with pytest.raises(InvalidSymbolError, match="expected a string"):
        validate_symbol(123)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "private", ["PRIVATE_FUND_A", "RE_MAIN_ST", "EQ5D6A2D8F", "eq5d6a2d8f", "ABC123456", "FI0012AB"]
)
def test_private_identifiers_are_not_market_symbols(private: str) -> None:
    assert not is_market_symbol(private)


def test_internal_id_rule() -> None:
    assert is_internal_id("EQ5D6A2D8F")
    assert is_internal_id("ABC123456")
    assert not is_internal_id("EQ5D6A2")  # shorter than 8
    assert not is_internal_id("EQABCDEF12")  # only 2 digits
    assert not is_internal_id("E5D6A2D8F")  # one-letter prefix
    assert not is_internal_id("EQ5D6A2D8G")  # G is not a hex digit


def test_synthetic_universe_names_are_market_symbols() -> None:
    names = SyntheticProvider().universe(5000) + list(ETF_SYMBOLS)
    assert all(is_market_symbol(s) for s in names)


def test_split_market_symbols_keeps_order_and_input() -> None:
    market, private = split_market_symbols(
        ["AAPL", "PRIVATE_FUND_A", "brk.b", "EQ5D6A2D8F", "!!!", "SPY"]
    )
    assert market == ["AAPL", "brk.b", "SPY"]
    assert private == ["PRIVATE_FUND_A", "EQ5D6A2D8F", "!!!"]


@settings(max_examples=300, database=None)
@given(st.text(max_size=30))
def test_normalize_is_idempotent(raw: str) -> None:
    once = normalize_symbol(raw)
    assert normalize_symbol(once) == once


@settings(max_examples=300, database=None)
@given(st.text(alphabet="ABCXYZ019.-^=_ ab", max_size=25))
def test_validate_output_is_canonical(raw: str) -> None:
    try:
        s = validate_symbol(raw)
    except InvalidSymbolError:
        return
    assert validate_symbol(s) == s
    assert normalize_symbol(s) == s


@settings(max_examples=300, database=None)
@given(st.text(max_size=10), st.text(max_size=10))
def test_anything_with_underscore_is_not_a_market_symbol(left: str, right: str) -> None:
    assert not is_market_symbol(f"{left}_{right}")
