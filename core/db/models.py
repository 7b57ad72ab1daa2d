"""SQLModel tables of the symbol layer.

Conventions: dates are NYSE session dates; timestamps are timezone-aware UTC;
prices are stored as exact decimals (6 places, as providers deliver them) and read
as float64 for analytics; analytics (betas, r², volatilities) are float64.
The schema changes only through Alembic revisions in ``migrations/``.
"""

from __future__ import annotations

import datetime as dt
import enum
from decimal import Decimal
from typing import Any

import sqlalchemy as sa
from sqlmodel import Column, Field, SQLModel

PRICE = sa.Numeric(18, 6)
MONEY = sa.Numeric(20, 4)


def utcnow() -> dt.datetime:
    """Now, timezone-aware UTC."""
    return dt.datetime.now(dt.UTC)


class SymbolKind(enum.StrEnum):
    equity = "equity"
    etf = "etf"
    private = "private"


class SymbolStatus(enum.StrEnum):
    pending = "pending"
    active = "active"
    delisted = "delisted"
    error = "error"


class RunStatus(enum.StrEnum):
    running = "running"
    completed = "completed"
    completed_with_failures = "completed_with_failures"
    failed = "failed"


class Symbol(SQLModel, table=True):
    """One symbol of the universe and its data state."""

    __tablename__ = "symbols"

    symbol: str = Field(primary_key=True, max_length=32)
    kind: SymbolKind = Field(
        default=SymbolKind.equity, sa_column=Column(sa.String(16), nullable=False)
    )
    status: SymbolStatus = Field(
        default=SymbolStatus.pending, sa_column=Column(sa.String(16), nullable=False, index=True)
    )
    error_reason: str | None = Field(default=None, sa_column=Column(sa.Text))
    first_price_date: dt.date | None = None
    last_price_date: dt.date | None = None
    last_factor_date: dt.date | None = None
    created_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class Price(SQLModel, table=True):
    """Daily bar: raw OHLC close, adjusted close (split+dividend, as of its fetch)."""

    __tablename__ = "prices"

    symbol: str = Field(primary_key=True, max_length=32)
    date: dt.date = Field(primary_key=True)
    open: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    high: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    low: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    close: Decimal = Field(sa_column=Column(PRICE, nullable=False))
    adj_close: Decimal = Field(sa_column=Column(PRICE, nullable=False))
    volume: float | None = Field(default=None, sa_column=Column(sa.Float))


class CorporateAction(SQLModel, table=True):
    """A split (value = new shares per old) or a dividend (value = cash per share)."""

    __tablename__ = "corporate_actions"

    symbol: str = Field(primary_key=True, max_length=32)
    date: dt.date = Field(primary_key=True)
    kind: str = Field(primary_key=True, max_length=16)
    value: float = Field(sa_column=Column(sa.Float, nullable=False))


class SymbolProfile(SQLModel, table=True):
    """Descriptive data for dashboards and sector exposure."""

    __tablename__ = "symbol_profiles"

    symbol: str = Field(primary_key=True, max_length=32)
    name: str | None = Field(default=None, sa_column=Column(sa.Text))
    sector: str | None = Field(default=None, max_length=64)
    industry: str | None = Field(default=None, max_length=128)
    market_cap: Decimal | None = Field(default=None, sa_column=Column(sa.Numeric(24, 2)))
    pe_ratio: float | None = None
    provider_beta: float | None = None
    week52_high: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    week52_low: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    updated_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class SymbolFactorExposure(SQLModel, table=True):
    """One factor exposure of one symbol at one as_of date.

    ``beta`` is NULL when the symbol had no value for that factor; ``reason`` says
    why. ``flag`` marks a kept value worth a look (|beta| > 5, r² ≈ 0).
    """

    __tablename__ = "symbol_factor_exposures"

    symbol: str = Field(primary_key=True, max_length=32)
    factor: str = Field(primary_key=True, max_length=32)
    date: dt.date = Field(primary_key=True, index=True)
    family: str = Field(max_length=16)
    window: int
    beta: float | None = None
    n_obs: int = 0
    r_squared: float | None = None
    resid_vol: float | None = None
    reason: str | None = Field(default=None, sa_column=Column(sa.Text))
    flag: str | None = Field(default=None, max_length=32)


class SymbolDailyMetrics(SQLModel, table=True):
    """Dashboard metrics of one symbol at one date (returns are simple, adjusted)."""

    __tablename__ = "symbol_daily_metrics"

    symbol: str = Field(primary_key=True, max_length=32)
    date: dt.date = Field(primary_key=True, index=True)
    last_close: float | None = None
    return_1d: float | None = None
    return_5d: float | None = None
    return_1m: float | None = None
    return_3m: float | None = None
    return_ytd: float | None = None
    return_1y: float | None = None
    volatility_90d: float | None = None
    high_52w: float | None = None
    low_52w: float | None = None


class DataCheckFinding(SQLModel, table=True):
    """A data-check finding for a symbol as of a run date."""

    __tablename__ = "data_check_findings"

    symbol: str = Field(primary_key=True, max_length=32)
    as_of: dt.date = Field(primary_key=True, index=True)
    check: str = Field(primary_key=True, max_length=32)
    severity: str = Field(max_length=16)
    day: dt.date | None = None
    detail: str = Field(sa_column=Column(sa.Text, nullable=False))


class BatchRun(SQLModel, table=True):
    """One run of a batch job (symbol-batch, portfolio-refresh, onboarding)."""

    __tablename__ = "batch_runs"
    __table_args__ = (sa.Index("ix_batch_runs_job_target", "job_type", "target_date"),)

    id: str = Field(primary_key=True, max_length=36)
    job_type: str = Field(max_length=32)
    target_date: dt.date
    start_date: dt.date | None = None
    status: RunStatus = Field(
        default=RunStatus.running, sa_column=Column(sa.String(32), nullable=False)
    )
    flow_run_id: str | None = Field(default=None, max_length=36)
    started_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    finished_at: dt.datetime | None = Field(
        default=None, sa_column=Column(sa.DateTime(timezone=True))
    )
    counts: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    phase_seconds: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(sa.JSON, nullable=False)
    )
    error_summary: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(sa.JSON, nullable=False)
    )
