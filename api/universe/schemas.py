"""Request and response schemas of the universe routes (``/v1/admin/symbols``)."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from msgspec import Meta

MAX_SYMBOLS_PER_REQUEST = 10_000

Ticker = Annotated[str, Meta(max_length=64, description="A ticker as given, e.g. AAPL, brk.b "
                                                        "(normalised to BRK-B) or ^GSPC.",
                             examples=["AAPL"])]


class UniverseSymbol(msgspec.Struct):
    symbol: str
    kind: Annotated[str, Meta(description="equity, etf or private (never priced).")]
    status: Annotated[str, Meta(description="pending (the next symbol batch fetches it), "
                                            "active, delisted, error, or inactive (removed by "
                                            "an operator: not fetched, history kept).")]
    first_price_date: dt.date | None
    last_price_date: dt.date | None
    last_factor_date: dt.date | None
    error_reason: Annotated[str | None, Meta(description="Why it is in error, delisted or "
                                                         "inactive.")]


class UniversePage(msgspec.Struct):
    items: list[UniverseSymbol]
    total: Annotated[int, Meta(description="Symbols matching the status filter (every page).")]
    limit: int
    offset: int
    counts: Annotated[dict[str, int], Meta(description="Symbols per status, whole universe.")]


class AddSymbolsRequest(msgspec.Struct, forbid_unknown_fields=True):
    symbols: Annotated[list[Ticker], Meta(min_length=1, max_length=MAX_SYMBOLS_PER_REQUEST,
                                          description="Tickers to add (validated and "
                                                      "normalised; duplicates count once).")]


class AddedSymbol(msgspec.Struct):
    symbol: str
    kind: str


class ReactivatedSymbol(msgspec.Struct):
    symbol: str
    previous_status: Annotated[str, Meta(description="inactive, error or delisted.")]
    previous_reason: str | None
    status: Annotated[str, Meta(description="active when it has stored prices (the next "
                                            "symbol batch fetches the sessions it missed), "
                                            "else pending.")]


class PresentSymbol(msgspec.Struct):
    symbol: str
    status: str


class RejectedSymbol(msgspec.Struct):
    input: Annotated[str, Meta(description="The entry as sent.")]
    where: Annotated[str, Meta(description="Its place in the request, e.g. symbols[2].")]
    reason: str


class AddSymbolsResult(msgspec.Struct):
    added: Annotated[list[AddedSymbol], Meta(description="New: market symbols pending until "
                                                         "the next symbol batch fetches them; "
                                                         "private identifiers never fetched.")]
    reactivated: Annotated[list[ReactivatedSymbol], Meta(
        description="Inactive, error or delisted symbols the next symbol batch fetches "
                    "again.")]
    already_present: Annotated[list[PresentSymbol], Meta(
        description="Already active or pending (left alone).")]
    rejected: Annotated[list[RejectedSymbol], Meta(description="Not valid identifiers (not "
                                                               "stored).")]
    reference_added: Annotated[list[str], Meta(description="Reference ETFs the factors need, "
                                                           "added because they were missing.")]
    valid: int


class HoldingPortfolio(msgspec.Struct):
    id: str
    name: str
    owner: str


class RemovedSymbol(msgspec.Struct):
    symbol: str
    previous_status: str
    held_by: Annotated[list[HoldingPortfolio], Meta(
        description="Live portfolios still holding it (only when forced).")]


class RemoveSymbolResult(msgspec.Struct):
    removed: Annotated[list[RemovedSymbol], Meta(description="Now inactive: no longer fetched, "
                                                             "stored history kept.")]
    already_inactive: list[str]


class PriceRevisionRead(msgspec.Struct):
    date: dt.date
    outcome: Annotated[str, Meta(description="replaced (a corrected price replaced the stored "
                                             "one) or rejected (the offered price was worse; "
                                             "the stored one was kept).")]
    reason: str
    stored_close: float | None
    offered_close: float | None


class SymbolRefetchRead(msgspec.Struct):
    symbol: str
    start: Annotated[dt.date, Meta(description="First stored price date (requested from).")]
    end: Annotated[dt.date, Meta(description="Last stored price date (requested through).")]
    provider: Annotated[str, Meta(description="The provider (chain) that delivered.")]
    error: Annotated[str | None, Meta(description="Why nothing was delivered, if so.")]
    rows_written: int
    inserted: Annotated[int, Meta(description="Missing sessions now stored.")]
    replaced: Annotated[int, Meta(description="Stored prices replaced by corrected ones.")]
    refused: Annotated[int, Meta(description="Offered prices refused as worse than stored.")]
    rebased: Annotated[int, Meta(description="Adjusted closes moved to a new corporate-action "
                                             "basis.")]
    revisions: Annotated[list[PriceRevisionRead], Meta(
        description="The audit rows this refetch wrote (at most 50; all are kept).")]
    factor_date: Annotated[dt.date | None, Meta(
        description="The session its factors were recomputed at (its last factor date).")]
    factors_before: dict[str, float | None]
    factors_after: dict[str, float | None]
    no_value_reason: Annotated[str | None, Meta(
        description="Why a factor still has no value after the recompute.")]
    status: str


class RefetchResult(msgspec.Struct):
    symbols: list[SymbolRefetchRead]
    recomputed: Annotated[dict[str, int], Meta(
        description="Session → symbols whose factors were recomputed (all of the session's "
                    "symbols when a reference ETF changed).")]
    portfolios_invalidated: Annotated[int, Meta(
        description="Live portfolios whose cached analytics were dropped.")]
