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

from core.db.types import Money
from core.portfolio.valuation import InvestmentClass

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
    inactive = "inactive"
    """Removed from the universe by an operator: never fetched, its stored history kept."""


class RunStatus(enum.StrEnum):
    running = "running"
    completed = "completed"
    completed_with_failures = "completed_with_failures"
    failed = "failed"
    crashed = "crashed"
    """Its process ended without closing the row (killed, power loss); set by the next run."""


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
    provider: str | None = Field(default=None, max_length=64)
    """The provider that delivered the stored values (NULL: stored before it was recorded)."""


class PriceBlock(SQLModel, table=True):
    """A columnar copy of one symbol's prices over one calendar month (a cache, never the truth).

    ``close`` and ``adj_close`` are float64 arrays (native byte order) over the month's NYSE
    sessions, NaN where no row is stored. ``n_rows`` and ``max_rowid`` are the month's
    ``count(*)`` and ``max(rowid)`` in ``prices`` when the block was built, ``edits`` its
    :class:`PriceMonthEdits` counter then. A read trusts a block only while the same three,
    taken again in the same read, are equal: an insert changes the count or brings a new
    rowid (``INSERT OR REPLACE`` too), an update or a delete moves the counter (SQLite
    triggers); the block is then rebuilt from the rows (``core.repositories.price_blocks``).
    """

    __tablename__ = "price_blocks"

    symbol: str = Field(primary_key=True, max_length=32)
    month: str = Field(primary_key=True, max_length=7)
    """``YYYY-MM``."""
    n_rows: int
    max_rowid: int
    edits: int
    close: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))
    adj_close: bytes = Field(sa_column=Column(sa.LargeBinary, nullable=False))


class PriceMonthEdits(SQLModel, table=True):
    """How many ``prices`` rows of a symbol and month were updated or deleted, by any path:
    kept by SQLite triggers on ``prices`` (migration 0011), read by the price blocks' check.
    A month never updated nor deleted from has no row (0)."""

    __tablename__ = "price_month_edits"

    symbol: str = Field(primary_key=True, max_length=32)
    month: str = Field(primary_key=True, max_length=7)
    """``YYYY-MM``."""
    edits: int


class PriceRevision(SQLModel, table=True):
    """The audit of re-deliveries of a stored price: what was replaced, or what was refused.

    ``outcome`` is ``replaced`` (the stored values, now overwritten, are kept here) or
    ``rejected`` (the offered values failed the checks; the stored row was kept).
    ``stored_*`` are the values stored before, ``offered_*`` what the provider delivered.
    """

    __tablename__ = "price_revisions"
    __table_args__ = (sa.Index("ix_price_revisions_symbol_date", "symbol", "date"),)

    id: int | None = Field(default=None, primary_key=True)
    symbol: str = Field(max_length=32)
    date: dt.date
    as_of: dt.date
    outcome: str = Field(max_length=16)
    reason: str = Field(sa_column=Column(sa.Text, nullable=False))
    provider: str | None = Field(default=None, max_length=64)
    stored_provider: str | None = Field(default=None, max_length=64)
    stored_open: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    stored_high: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    stored_low: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    stored_close: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    stored_adj_close: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    stored_volume: float | None = Field(default=None, sa_column=Column(sa.Float))
    offered_open: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    offered_high: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    offered_low: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    offered_close: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    offered_adj_close: Decimal | None = Field(default=None, sa_column=Column(PRICE))
    offered_volume: float | None = Field(default=None, sa_column=Column(sa.Float))
    recorded_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class KnownMissingPrice(SQLModel, table=True):
    """A session inside a symbol's stored range that providers were asked for again and did
    not deliver: no longer requested (a gap the data checks report, not a failure); or the
    session before a symbol's first price when a request reaching further back delivered
    nothing older: its history is not extended again (``core.symbol_steps``)."""

    __tablename__ = "known_missing_prices"

    symbol: str = Field(primary_key=True, max_length=32)
    date: dt.date = Field(primary_key=True)
    marked_as_of: dt.date
    detail: str = Field(sa_column=Column(sa.Text, nullable=False))


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
    host: str | None = Field(default=None, max_length=255)
    pid: int | None = None
    process_token: str | None = Field(default=None, max_length=64)
    """The run's process (see ``RunLock``): a ``running`` row whose process is dead crashed."""


# --- the portfolio layer (reads the symbol layer, never the other way round) -------------


class User(SQLModel, table=True):
    """An API user; the bearer token is stored only as its SHA-256 hash."""

    __tablename__ = "users"

    id: str = Field(primary_key=True, max_length=36)
    name: str = Field(max_length=100, sa_column_kwargs={"unique": True})
    token_hash: str = Field(max_length=64, sa_column_kwargs={"unique": True})
    is_admin: bool = False
    created_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class Portfolio(SQLModel, table=True):
    """A user's portfolio; ``deleted_at`` set = soft-deleted (kept for history)."""

    __tablename__ = "portfolios"
    __table_args__ = (
        sa.Index(
            "uq_portfolios_owner_name_live", "owner_id", "name", unique=True,
            sqlite_where=sa.text("deleted_at IS NULL"),
            postgresql_where=sa.text("deleted_at IS NULL"),
        ),
    )

    id: str = Field(primary_key=True, max_length=36)
    owner_id: str = Field(foreign_key="users.id", max_length=36, index=True)
    name: str = Field(max_length=200)
    base_currency: str = Field(default="USD", max_length=3)
    cash_balance: Decimal = Field(
        default=Decimal(0), sa_column=Column(Money(20, 4), nullable=False)
    )
    created_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    updated_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    deleted_at: dt.datetime | None = Field(
        default=None, sa_column=Column(sa.DateTime(timezone=True))
    )


class Position(SQLModel, table=True):
    """A holding: signed quantity (negative = short) and entry price as of the entry date."""

    __tablename__ = "positions"

    id: str = Field(primary_key=True, max_length=36)
    portfolio_id: str = Field(foreign_key="portfolios.id", max_length=36, index=True)
    symbol: str = Field(max_length=32, index=True)
    quantity: Decimal = Field(sa_column=Column(Money(24, 8), nullable=False))
    entry_date: dt.date
    entry_price: Decimal = Field(sa_column=Column(Money(20, 6), nullable=False))
    exit_date: dt.date | None = None
    exit_price: Decimal | None = Field(default=None, sa_column=Column(Money(20, 6)))
    investment_class: InvestmentClass = Field(
        default=InvestmentClass.PUBLIC, sa_column=Column(sa.String(16), nullable=False)
    )
    manual_value: Decimal | None = Field(default=None, sa_column=Column(Money(20, 4)))
    market_value: Decimal | None = Field(default=None, sa_column=Column(Money(20, 4)))
    market_value_date: dt.date | None = None
    created_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class PortfolioSnapshot(SQLModel, table=True):
    """End-of-day valuation of a portfolio (money exact; return float).

    ``daily_pnl = price_pnl + income`` (cash dividends on their ex-dates, see
    ``core.portfolio.valuation``). Rows written before migration 0008 have ``price_pnl``
    and ``income`` NULL and a ``daily_pnl`` without dividends until ``factorflow snapshots
    recompute`` rewrites them.
    """

    __tablename__ = "portfolio_snapshots"

    portfolio_id: str = Field(primary_key=True, foreign_key="portfolios.id", max_length=36)
    date: dt.date = Field(primary_key=True)
    equity: Decimal = Field(sa_column=Column(Money(20, 4), nullable=False))
    market_value: Decimal = Field(sa_column=Column(Money(20, 4), nullable=False))
    cash: Decimal = Field(sa_column=Column(Money(20, 4), nullable=False))
    cost_basis: Decimal = Field(sa_column=Column(Money(20, 4), nullable=False))
    unrealized_pnl: Decimal = Field(sa_column=Column(Money(20, 4), nullable=False))
    daily_pnl: Decimal | None = Field(default=None, sa_column=Column(Money(20, 4)))
    daily_return: float | None = None
    long_exposure: Decimal = Field(sa_column=Column(Money(20, 4), nullable=False))
    short_exposure: Decimal = Field(sa_column=Column(Money(20, 4), nullable=False))
    gross_exposure: Decimal = Field(sa_column=Column(Money(20, 4), nullable=False))
    net_exposure: Decimal = Field(sa_column=Column(Money(20, 4), nullable=False))
    position_count: int = 0
    partial: bool = False
    missing_symbols: list[str] = Field(
        default_factory=list, sa_column=Column(sa.JSON, nullable=False)
    )
    price_pnl: Decimal | None = Field(default=None, sa_column=Column(Money(20, 4)))
    income: Decimal | None = Field(default=None, sa_column=Column(Money(20, 4)))


class PortfolioFactorExposure(SQLModel, table=True):
    """A portfolio's market-value-weighted factor beta at a date."""

    __tablename__ = "portfolio_factor_exposures"

    portfolio_id: str = Field(primary_key=True, foreign_key="portfolios.id", max_length=36)
    date: dt.date = Field(primary_key=True)
    factor: str = Field(primary_key=True, max_length=32)
    beta: float | None = None
    dollar_exposure: float | None = None
    covered_share: float = 0.0
    covered_weight: float = 0.0


class PortfolioSectorExposure(SQLModel, table=True):
    """A portfolio's signed market value per sector at a date."""

    __tablename__ = "portfolio_sector_exposures"

    portfolio_id: str = Field(primary_key=True, foreign_key="portfolios.id", max_length=36)
    date: dt.date = Field(primary_key=True)
    sector: str = Field(primary_key=True, max_length=64)
    value: float
    weight: float | None = None


class PortfolioCorrelation(SQLModel, table=True):
    """The 90-day pairwise correlation matrix of a portfolio's positions at a date.

    The matrix (symbols × symbols) is one JSON document per portfolio and date: the
    pairs are read together, and 10,000 portfolios × 300 pairs as rows would cost a
    nightly 3 million-row write for nothing.
    """

    __tablename__ = "portfolio_correlations"

    portfolio_id: str = Field(primary_key=True, foreign_key="portfolios.id", max_length=36)
    date: dt.date = Field(primary_key=True)
    symbols: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))
    matrix: list[list[float]] = Field(
        default_factory=list, sa_column=Column(sa.JSON, nullable=False)
    )
    n_overlap: list[list[int]] = Field(
        default_factory=list, sa_column=Column(sa.JSON, nullable=False)
    )
    average_correlation: float | None = None
    effective_positions: float | None = None
    repaired: bool = False
    clusters: list[list[str]] = Field(
        default_factory=list, sa_column=Column(sa.JSON, nullable=False)
    )
    insufficient_pairs: list[list[str]] = Field(
        default_factory=list, sa_column=Column(sa.JSON, nullable=False)
    )


class StressTestResult(SQLModel, table=True):
    """One scenario's P&L for a portfolio at a date, with per-factor contributions."""

    __tablename__ = "stress_test_results"

    portfolio_id: str = Field(primary_key=True, foreign_key="portfolios.id", max_length=36)
    date: dt.date = Field(primary_key=True)
    scenario: str = Field(primary_key=True, max_length=48)
    available: bool = True
    pnl: float | None = None
    pnl_pct: float | None = None
    contributions: dict[str, float] = Field(
        default_factory=dict, sa_column=Column(sa.JSON, nullable=False)
    )
    reason: str | None = Field(default=None, sa_column=Column(sa.Text))


class PortfolioRisk(SQLModel, table=True):
    """A portfolio's risk answer at a date, stored by the nightly refresh (its history).

    ``payload`` is the compact risk record (``core.portfolio.risk.risk_figures``: the dollar
    figures, a third of the answer's size; ``expand_risk`` makes the answer of
    ``GET /v1/portfolios/{id}/risk`` of it, and passes a record of format 1, the answer
    itself as stored before, through unchanged); ``positions_hash`` the
    hash of the positions and cash it was computed for. The columns repeat three of its
    figures for queries over many portfolios: ``volatility_daily`` (fraction of equity),
    ``var_99_1d`` and ``es_99_1d`` (parametric 99 % 1-session VaR and ES, currency, a loss
    positive); None where the answer has none.
    """

    __tablename__ = "portfolio_risk"

    portfolio_id: str = Field(primary_key=True, foreign_key="portfolios.id", max_length=36)
    date: dt.date = Field(primary_key=True)
    positions_hash: str = Field(max_length=64)
    volatility_daily: float | None = None
    var_99_1d: float | None = None
    es_99_1d: float | None = None
    payload: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(sa.JSON, nullable=False)
    )


class PortfolioAnalyticsCache(SQLModel, table=True):
    """Cached analytics of one kind for a portfolio, valid for one positions hash and data date."""

    __tablename__ = "portfolio_analytics_cache"

    portfolio_id: str = Field(primary_key=True, foreign_key="portfolios.id", max_length=36)
    kind: str = Field(primary_key=True, max_length=48)
    positions_hash: str = Field(max_length=64)
    data_date: dt.date
    payload: dict[str, Any] = Field(
        default_factory=dict, sa_column=Column(sa.JSON, nullable=False)
    )
    created_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class OnboardingJob(SQLModel, table=True):
    """One symbol waiting to be onboarded; requests for the same symbol share the row.

    ``status``: pending → processing → done | error. A ``processing`` row records the
    process that claimed it (``host``, ``pid``, ``process_token``: its start time) and a
    ``heartbeat_at`` the claimer renews; once the claimer is gone (dead on this host, or no
    heartbeat for a while) the row goes back to ``pending``, so no request is lost and no
    live run's jobs are taken from it.
    """

    __tablename__ = "onboarding_jobs"

    symbol: str = Field(primary_key=True, max_length=32)
    status: str = Field(default="pending", max_length=16, index=True)
    attempts: int = 0
    error: str | None = Field(default=None, sa_column=Column(sa.Text))
    portfolio_ids: list[str] = Field(
        default_factory=list, sa_column=Column(sa.JSON, nullable=False)
    )
    requested_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    started_at: dt.datetime | None = Field(
        default=None, sa_column=Column(sa.DateTime(timezone=True))
    )
    finished_at: dt.datetime | None = Field(
        default=None, sa_column=Column(sa.DateTime(timezone=True))
    )
    host: str | None = Field(default=None, max_length=255)
    pid: int | None = None
    process_token: str | None = Field(default=None, max_length=64)
    heartbeat_at: dt.datetime | None = Field(
        default=None, sa_column=Column(sa.DateTime(timezone=True))
    )


class PortfolioHistoryJob(SQLModel, table=True):
    """A request to build a portfolio's daily snapshots back to its positions' entry dates
    (``POST /v1/portfolios/{id}/history``); one row per portfolio, requests share it.

    ``status``: queued → running → done | failed; asked again after an outcome it is queued
    again (the build upserts the same rows). A ``running`` row records its claimer (``host``,
    ``pid``, ``process_token``) and a ``heartbeat_at`` it renews, as ``OnboardingJob`` does:
    once the claimer is gone the row goes back to ``queued``. ``first_date``/``last_date``
    and ``snapshots`` describe the last build (the sessions valued, the rows written);
    ``error`` why it failed.
    """

    __tablename__ = "portfolio_history_jobs"

    id: str = Field(primary_key=True, max_length=36)
    portfolio_id: str = Field(foreign_key="portfolios.id", max_length=36, unique=True)
    status: str = Field(default="queued", max_length=16, index=True)
    attempts: int = 0
    requested_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    started_at: dt.datetime | None = Field(
        default=None, sa_column=Column(sa.DateTime(timezone=True))
    )
    finished_at: dt.datetime | None = Field(
        default=None, sa_column=Column(sa.DateTime(timezone=True))
    )
    first_date: dt.date | None = None
    last_date: dt.date | None = None
    snapshots: int | None = None
    error: str | None = Field(default=None, sa_column=Column(sa.Text))
    host: str | None = Field(default=None, max_length=255)
    pid: int | None = None
    process_token: str | None = Field(default=None, max_length=64)
    heartbeat_at: dt.datetime | None = Field(
        default=None, sa_column=Column(sa.DateTime(timezone=True))
    )


class RunLock(SQLModel, table=True):
    """A named lock held by one live run (e.g. ``symbol-batch``).

    The holder's process (``host``, ``pid``, ``process_token``: its start time, so a reused
    pid is not mistaken for it) lets another process on the same host see at once that
    the holder died; ``expires_at`` is pushed forward by the holder's heartbeat, so a
    holder on another host that died loses the lock after at most one TTL.
    """

    __tablename__ = "run_locks"

    name: str = Field(primary_key=True, max_length=100)
    holder: str = Field(max_length=64)
    acquired_at: dt.datetime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    expires_at: dt.datetime = Field(sa_column=Column(sa.DateTime(timezone=True), nullable=False))
    host: str | None = Field(default=None, max_length=255)
    pid: int | None = None
    process_token: str | None = Field(default=None, max_length=64)
    flow_run_id: str | None = Field(default=None, max_length=36)
