"""The price-provider interface and its shared types.

A provider turns ``(symbols, start, end)`` into long-format daily bars, corporate
actions and per-symbol errors. Providers never raise for one bad symbol: they put
it in ``FetchResult.errors``. They raise ``ProviderError`` when the whole call
failed (network, rate limit after retries, unreadable or structurally broken
source). A ``FallbackProvider`` then tries the next provider for that chunk, as it
does for any other exception a provider raises.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date
from typing import Protocol, runtime_checkable

import pandas as pd

BAR_COLUMNS: tuple[str, ...] = (
    "symbol", "date", "open", "high", "low", "close", "adj_close", "volume",
)
"""Columns of ``FetchResult.bars``. ``date`` is datetime64[ns] (tz-naive midnight, the
session label); prices are float64 in the listing currency; ``close`` is the raw
close, ``adj_close`` the split- and dividend-adjusted close as of the fetch;
``volume`` is float64 (NaN when unknown)."""

ACTION_COLUMNS: tuple[str, ...] = ("symbol", "date", "kind", "value")
"""Columns of ``FetchResult.actions``. ``kind`` is ``"split"`` (``value`` = new shares per
old share, 4.0 for a 4-for-1) or ``"dividend"`` (``value`` = cash per share)."""

PROFILE_COLUMNS: tuple[str, ...] = (
    "symbol", "name", "sector", "industry", "market_cap", "pe_ratio",
    "provider_beta", "week52_high", "week52_low",
)


class ProviderError(Exception):
    """The whole provider call failed (not one symbol): try the next provider."""


class RateLimitError(ProviderError):
    """The provider kept rate-limiting the call after its retries with backoff."""


class PriceDataError(ValueError):
    """Price data is malformed (missing columns, unparsable dates or numbers)."""


class PriceFileError(ProviderError):
    """A price file's structure is broken (not CSV, missing columns, empty): the whole
    call fails and a fallback chain moves on to the next provider."""


def empty_bars() -> pd.DataFrame:
    """An empty frame with the ``BAR_COLUMNS`` schema and dtypes."""
    return pd.DataFrame(
        {
            "symbol": pd.Series([], dtype=object),
            "date": pd.Series([], dtype="datetime64[ns]"),
            **{c: pd.Series([], dtype="float64") for c in BAR_COLUMNS[2:]},
        }
    )


def empty_actions() -> pd.DataFrame:
    """An empty frame with the ``ACTION_COLUMNS`` schema and dtypes."""
    return pd.DataFrame(
        {
            "symbol": pd.Series([], dtype=object),
            "date": pd.Series([], dtype="datetime64[ns]"),
            "kind": pd.Series([], dtype=object),
            "value": pd.Series([], dtype="float64"),
        }
    )


ERROR_CODES: tuple[str, ...] = ("no_data", "invalid_symbol", "provider_error", "bad_data")
"""Codes of ``FetchResult.errors`` reasons: ``no_data`` (the source has no rows for the
symbol in the range), ``invalid_symbol`` (not a symbol the source can serve),
``provider_error`` (the call for the symbol failed), ``bad_data`` (the source has rows
for the symbol but some are unreadable or contradict each other, so none is served)."""


@dataclass
class FetchResult:
    """What one provider call returned.

    ``errors`` maps a symbol to a reason of the form ``"<code>: <message>"`` with code
    one of ``ERROR_CODES``; a symbol in ``errors`` has no bars. ``provider_by_symbol``
    maps every symbol that has bars to the name of the provider that delivered them
    (a single provider: its own ``name``; a chain: the member that served it).
    ``provider`` names the provider(s) that answered, for logs and run summaries.
    """

    bars: pd.DataFrame = field(default_factory=empty_bars)
    actions: pd.DataFrame = field(default_factory=empty_actions)
    errors: dict[str, str] = field(default_factory=dict)
    provider: str = ""
    provider_by_symbol: dict[str, str] = field(default_factory=dict)


def served_by(bars: pd.DataFrame, provider: str) -> dict[str, str]:
    """``{symbol: provider}`` for every symbol with at least one row in ``bars``.

    Parameters
    ----------
    bars
        A ``BAR_COLUMNS`` frame.
    provider
        The name to record for each symbol.

    Returns
    -------
    dict[str, str]
        Symbols in order of first appearance.
    """
    if bars.empty:
        return {}
    return dict.fromkeys(map(str, bars["symbol"].unique()), provider)


@runtime_checkable
class PriceProvider(Protocol):
    """Daily prices for a set of symbols over an inclusive date range."""

    name: str

    def fetch(self, symbols: Sequence[str], start: date, end: date) -> FetchResult:
        """Bars with ``start <= date <= end`` (session dates) for ``symbols``."""
        ...

    def fetch_profiles(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Descriptive data, columns ``PROFILE_COLUMNS`` (missing values NaN/None)."""
        ...
