"""Response schemas of the symbol routes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

import msgspec
from msgspec import Meta

from api.schemas import DecimalOut


class SymbolProfileRead(msgspec.Struct):
    name: str | None
    sector: str | None
    industry: str | None
    market_cap: DecimalOut | None
    pe_ratio: float | None
    provider_beta: float | None


class SymbolMetricsRead(msgspec.Struct):
    """Dashboard metrics at ``date`` (returns are simple, from adjusted closes)."""

    date: dt.date
    last_close: float | None
    return_1d: float | None
    return_5d: float | None
    return_1m: float | None
    return_3m: float | None
    return_ytd: float | None
    return_1y: float | None
    volatility_90d: float | None
    high_52w: float | None
    low_52w: float | None


class SymbolFactorRead(msgspec.Struct):
    factor: str
    family: str
    window: int
    beta: Annotated[float | None, Meta(description="null when the symbol has no value for "
                                                   "the factor (see reason).")]
    n_obs: int
    r_squared: float | None
    resid_vol: float | None
    reason: str | None
    flag: str | None


class SymbolRead(msgspec.Struct):
    symbol: str
    kind: Annotated[str, Meta(description="equity, etf or private.")]
    status: Annotated[str, Meta(description="ready (prices and factors stored), held "
                                            "(prices stored, but the latest computation gave "
                                            "no factor value: see reason), pending (being "
                                            "onboarded), error, delisted, inactive (removed "
                                            "from the universe by an operator: no longer "
                                            "fetched, history kept), or private (never "
                                            "priced).")]
    reason: Annotated[str | None, Meta(description="Why the symbol is held, in error, "
                                                   "delisted or inactive.")]
    first_price_date: dt.date | None
    last_price_date: dt.date | None
    last_factor_date: Annotated[dt.date | None, Meta(
        description="The last date with at least one factor value.")]
    factors_as_of: Annotated[dt.date | None, Meta(
        description="The date of the latest factor computation (factor_exposures).")]
    profile: SymbolProfileRead | None
    metrics: SymbolMetricsRead | None
    factor_exposures: Annotated[list[SymbolFactorRead], Meta(
        description="Exposures of the latest computation (factors_as_of); a factor "
                    "without a value has beta null and a reason.")]
