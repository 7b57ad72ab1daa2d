"""Request and response schemas of portfolios, positions, snapshots and analytics.

Create / Update / Read are separate: an Update's fields default to ``UNSET`` so PATCH
changes only what the body names (``null`` clears an optional field).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
from msgspec import UNSET, Meta, UnsetType

from api.schemas import (
    Cash,
    DecimalOut,
    InvestmentClassName,
    ManualValue,
    Price,
    Quantity,
    convert,
    dec,
)
from core.errors import InvalidInput
from core.services import analytics as analytics_service
from core.services import history_jobs
from core.services import portfolios as svc
from core.services.validation import MAX_NAME_LENGTH, MAX_POSITIONS, PositionInput

SymbolIn = Annotated[str, Meta(extra_json_schema={
    "description": "Ticker as Yahoo spells it (AAPL, BRK-B, 7203.T); PRIVATE holdings may use "
                   "private identifiers such as PRIVATE_FUND_A.",
    "examples": ["AAPL"],
    "extra": {"pattern": r"^\^?[A-Za-z0-9]{1,10}([.\-=_][A-Za-z0-9]{1,8}){0,2}$"},
})]
NAME_PATTERN = r"^[^\x00-\x1f\x7f-\x9f]*[^\s\x00-\x1f\x7f-\x9f][^\x00-\x1f\x7f-\x9f]*$"
"""A name: not only spaces, no control characters."""
NameIn = Annotated[str, Meta(
    min_length=1, max_length=MAX_NAME_LENGTH, pattern=NAME_PATTERN,
    description="Unique among your portfolios; 1-200 characters, not only spaces, no control "
                "characters (leading and trailing spaces are dropped).",
    examples=["Core holdings"])]


class _In(msgspec.Struct, forbid_unknown_fields=True):
    """Request bodies reject fields they do not know."""


class PositionCreate(_In):
    """A position. ``quantity`` is signed (negative = short; PUBLIC / OPTIONS only)."""

    symbol: SymbolIn
    quantity: Annotated[Quantity, Meta(description="Shares (contracts for OPTIONS) as of "
                                                    "entry_date, non-zero, at most 8 decimals; "
                                                    "negative = short (PUBLIC / OPTIONS).")]
    entry_date: Annotated[dt.date, Meta(description="Session the position was opened "
                                                    "(not in the future).")]
    entry_price: Annotated[Price, Meta(description="Price per share (per contract for "
                                                       "OPTIONS); > 0 for PUBLIC.")]
    exit_date: dt.date | None = None
    exit_price: Price | None = None
    investment_class: InvestmentClassName = "PUBLIC"
    manual_value: Annotated[ManualValue | None, Meta(description="PRIVATE only (required "
                                                               "there): its total value.")] = None

    def to_input(self) -> PositionInput:
        return PositionInput(
            symbol=self.symbol, quantity=self.quantity, entry_date=self.entry_date,
            entry_price=self.entry_price, exit_date=self.exit_date, exit_price=self.exit_price,
            investment_class=self.investment_class, manual_value=self.manual_value)


class PortfolioCreate(_In):
    name: NameIn
    cash: Annotated[Cash, Meta(description="Cash balance, at most 4 decimals (negative = "
                                                "a margin loan).")] = Decimal(0)
    positions: Annotated[list[PositionCreate], Meta(max_length=MAX_POSITIONS)] = (
        msgspec.field(default_factory=list))
    build_history: Annotated[Any, Meta(extra_json_schema={
        "description": "`true`: also queue the build of its daily snapshots back to the "
                       "positions' entry dates (as `POST /v1/portfolios/{id}/history`; the job "
                       "is in `history`).",
        "extra": {"type": "boolean", "default": False}})] = False

    def history_option(self) -> bool:
        """``build_history``, a JSON boolean only (the request decoder would take 0, 1 or
        "true" for a ``bool``, which the document does not allow)."""
        if not isinstance(self.build_history, bool):
            raise InvalidInput("build_history: must be true or false", "build_history")
        return self.build_history


class PortfolioUpdate(_In):
    """PATCH: only the fields present change."""

    name: NameIn | UnsetType = UNSET
    cash: Cash | UnsetType = UNSET


class PositionUpdate(_In):
    """PATCH: only the fields present change; ``null`` clears an optional one. The symbol
    cannot change (add a new position instead)."""

    quantity: Quantity | UnsetType = UNSET
    entry_date: dt.date | UnsetType = UNSET
    entry_price: Price | UnsetType = UNSET
    exit_date: dt.date | None | UnsetType = UNSET
    exit_price: Price | None | UnsetType = UNSET
    investment_class: InvestmentClassName | UnsetType = UNSET
    manual_value: ManualValue | None | UnsetType = UNSET

    def changes(self) -> dict[str, Any]:
        return {f: v for f in self.__struct_fields__
                if (v := getattr(self, f)) is not UNSET}


# --- responses -----------------------------------------------------------------------------


class PositionRead(msgspec.Struct):
    id: str
    symbol: str
    quantity: DecimalOut
    entry_date: dt.date
    entry_price: DecimalOut
    exit_date: dt.date | None
    exit_price: DecimalOut | None
    investment_class: str
    manual_value: DecimalOut | None
    market_value: Annotated[DecimalOut | None, Meta(
        description="Value at market_value_date (the latest snapshot).")]
    market_value_date: dt.date | None
    created_at: dt.datetime
    realized_pnl: Annotated[DecimalOut | None, Meta(
        description="Once closed: proceeds (quantity held at exit × exit_price, or the exit "
                    "day's close) − cost basis; null while open or until that close is "
                    "stored. Not booked to cash.")] = None

    @classmethod
    def of(cls, p: svc.PositionView) -> PositionRead:
        return cls(
            id=p.id, symbol=p.symbol, quantity=_num(p.quantity), entry_date=p.entry_date,
            entry_price=_num(p.entry_price), exit_date=p.exit_date,
            exit_price=_opt_num(p.exit_price), investment_class=p.investment_class,
            manual_value=dec(p.manual_value), market_value=dec(p.market_value),
            market_value_date=p.market_value_date, created_at=p.created_at,
            realized_pnl=dec(p.realized_pnl))


def _num(d: Decimal) -> str:
    """Quantities and prices without trailing zeros ("10", "150.25")."""
    s = f"{d:f}"
    return s.rstrip("0").rstrip(".") if "." in s else s


def _opt_num(d: Decimal | None) -> str | None:
    return None if d is None else _num(d)


class SnapshotRead(msgspec.Struct):
    """A valuation at the close of ``date`` (a session with stored prices)."""

    date: dt.date
    equity: DecimalOut
    market_value: DecimalOut
    cash: DecimalOut
    cost_basis: DecimalOut
    unrealized_pnl: DecimalOut
    daily_pnl: DecimalOut | None
    daily_return: float | None
    long_exposure: DecimalOut
    short_exposure: DecimalOut
    gross_exposure: DecimalOut
    net_exposure: DecimalOut
    position_count: int
    partial: Annotated[bool, Meta(description="Some holdings had no price: see "
                                              "missing_symbols.")]
    missing_symbols: list[str]
    price_pnl: Annotated[DecimalOut | None, Meta(
        description="The day's P&L from price moves; daily_pnl = price_pnl + income. Null on "
                    "a snapshot stored before dividends counted (`factorflow snapshots "
                    "recompute` fills it).")] = None
    income: Annotated[DecimalOut | None, Meta(
        description="Cash dividends with that day's ex-date on the quantity held at the "
                    "previous close (a short pays them).")] = None


class PortfolioRead(msgspec.Struct):
    id: str
    name: str
    base_currency: str
    cash: DecimalOut
    created_at: dt.datetime
    updated_at: dt.datetime
    positions: list[PositionRead]
    latest_snapshot: SnapshotRead | None
    realized_pnl: Annotated[DecimalOut, Meta(
        description="Σ realized_pnl of the closed positions (not booked to cash).")] = "0"

    @classmethod
    def of(cls, p: svc.PortfolioView) -> PortfolioRead:
        return cls(
            id=p.id, name=p.name, base_currency=p.base_currency, cash=f"{p.cash:f}",
            created_at=p.created_at, updated_at=p.updated_at,
            positions=[PositionRead.of(x) for x in p.positions],
            latest_snapshot=snapshot(p.latest_snapshot), realized_pnl=dec(p.realized_pnl))


def snapshot(value: dict[str, Any] | None) -> SnapshotRead | None:
    return None if value is None else convert(value, SnapshotRead)


class PortfolioSummaryRead(msgspec.Struct):
    id: str
    name: str
    base_currency: str
    cash: DecimalOut
    position_count: int
    latest_snapshot_date: dt.date | None
    latest_equity: DecimalOut | None
    created_at: dt.datetime
    updated_at: dt.datetime


class PortfolioList(msgspec.Struct):
    items: list[PortfolioSummaryRead]
    total: int
    limit: int
    offset: int

    @classmethod
    def of(cls, page: svc.PortfolioPage) -> PortfolioList:
        return cls(items=[PortfolioSummaryRead(
            id=p.id, name=p.name, base_currency=p.base_currency, cash=f"{p.cash:f}",
            position_count=p.position_count, latest_snapshot_date=p.latest_snapshot_date,
            latest_equity=dec(p.latest_equity), created_at=p.created_at,
            updated_at=p.updated_at) for p in page.items],
            total=page.total, limit=page.limit, offset=page.offset)


class SnapshotList(msgspec.Struct):
    items: list[SnapshotRead]
    start: dt.date | None
    end: dt.date | None
    truncated: Annotated[bool, Meta(description="Older snapshots in the range were left out "
                                                "(raise limit or narrow the range).")]

    @classmethod
    def of(cls, s: svc.SnapshotList) -> SnapshotList:
        return cls(items=[convert(x, SnapshotRead) for x in s.items], start=s.start,
                   end=s.end, truncated=s.truncated)


# --- analytics -----------------------------------------------------------------------------


class _Analytics(msgspec.Struct, kw_only=True):
    data_as_of: Annotated[dt.date, Meta(description="The price date the answer is computed "
                                                    "for (the latest stored).")]
    stale: Annotated[bool, Meta(description="data_as_of is older than the latest completed "
                                            "NYSE session.")]
    cached: bool


class PortfolioFactor(msgspec.Struct):
    factor: str
    beta: float | None
    dollar_exposure: float | None
    covered_share: Annotated[float | None, Meta(
        description="Share of equity held in positions that have this factor's beta.")]
    covered_weight: float | None


class PositionWeight(msgspec.Struct):
    position_id: str
    symbol: str
    quantity: DecimalOut
    market_value: DecimalOut | None
    weight: float | None
    investment_class: str


class PositionBetas(PositionWeight):
    betas: dict[str, float | None]


class FactorExposures(_Analytics):
    portfolio: list[PortfolioFactor]
    positions: list[PositionBetas]


class Exposures(msgspec.Struct):
    long_exposure: DecimalOut
    short_exposure: DecimalOut
    gross_exposure: DecimalOut
    net_exposure: DecimalOut


class Overview(_Analytics):
    snapshot: SnapshotRead
    exposures: Exposures
    market_beta: float | None
    covered_share: float | None
    positions: list[PositionWeight]


class SectorRow(msgspec.Struct):
    sector: str
    value: float | None
    weight: float | None


class SectorExposure(_Analytics):
    sectors: list[SectorRow]


class Correlations(_Analytics):
    symbols: list[str]
    matrix: Annotated[list[list[float | None]] | None, Meta(
        description="Correlation of each pair of `symbols` (rows and columns in that order). "
                    "`null` when omitted: by default above "
                    f"{analytics_service.CORRELATION_MATRIX_LIMIT} symbols (ask with "
                    "`?matrix=full`), or with `?matrix=none`.")]
    average_correlation: float | None
    effective_positions: float | None
    clusters: list[list[str]]
    repaired: bool
    insufficient_pairs: list[list[str]]


class ScenarioResult(msgspec.Struct):
    name: str
    title: str
    available: bool
    pnl: float | None
    pnl_pct: float | None
    contributions: dict[str, float | None]
    reason: str | None


class StressTests(_Analytics):
    scenarios: list[ScenarioResult]


def _doc(text: str) -> Meta:
    return Meta(description=text)


class Volatility(msgspec.Struct):
    daily: Annotated[float | None, _doc(
        "Ex-ante 1-session volatility as a fraction of equity (0.012 = 1.2 %); null when the "
        "equity is not positive.")]
    annual: Annotated[float | None, _doc("`daily` × √252, a fraction of equity.")]
    dollar_daily: Annotated[float | None, _doc(
        "Ex-ante 1-session volatility in the portfolio's currency.")]


class VarianceSplit(msgspec.Struct):
    factor: Annotated[float | None, _doc(
        "Factor part of the daily variance, currency² (wᵀBΣBᵀw).")]
    specific: Annotated[float | None, _doc(
        "Specific part of the daily variance, currency² (Σ wᵢ² dᵢ).")]
    factor_share: Annotated[float | None, _doc("factor / (factor + specific); null at zero "
                                                "variance.")]
    specific_share: Annotated[float | None, _doc("specific / (factor + specific).")]


class FactorContribution(msgspec.Struct):
    factor: Annotated[str, _doc("A risk factor ETF (`model.factors`) or `specific`.")]
    exposure: Annotated[float | None, _doc(
        "Dollar exposure to the factor (Σ market value × beta); null for `specific`.")]
    marginal: Annotated[float | None, _doc(
        "∂σ/∂exposure: currency of daily volatility per currency of exposure; null for "
        "`specific`.")]
    contribution: Annotated[float | None, _doc(
        "Euler contribution to `volatility.daily` (fraction of equity); the rows sum to it.")]
    dollar_contribution: Annotated[float | None, _doc(
        "The contribution in currency; the rows sum to `volatility.dollar_daily`.")]
    percent: Annotated[float | None, _doc(
        "Share of the volatility (a fraction; the rows sum to 1).")]


class PositionContribution(msgspec.Struct):
    position_id: str
    symbol: str
    market_value: Annotated[float | None, _doc("Signed market value at `data_as_of` (currency; "
                                                "shorts negative).")]
    marginal: Annotated[float | None, _doc(
        "∂σ/∂w: currency of daily volatility per currency of the position.")]
    contribution: Annotated[float | None, _doc(
        "Euler contribution to `volatility.daily` (fraction of equity); the rows sum to it.")]
    dollar_contribution: Annotated[float | None, _doc("The contribution in currency.")]
    percent: Annotated[float | None, _doc("Share of the volatility (a fraction).")]
    component_var_99: Annotated[float | None, _doc(
        "Component parametric 99 % 1-session VaR (currency; the rows sum to the VaR).")]


class VarRow(msgspec.Struct):
    measure: Annotated[str, _doc("`var` (value at risk) or `es` (expected shortfall).")]
    method: Annotated[str, _doc(
        "`parametric` (normal, from the model's volatility), `historical` (today's holdings "
        "revalued over the stored history), `cornish_fisher` (historical skew and kurtosis).")]
    confidence: Annotated[float, _doc("0.95 or 0.99.")]
    horizon_days: Annotated[int, _doc(
        "1 or 10 sessions (10: √10 × 1-session for parametric, overlapping 10-session sums of "
        "the daily P&L otherwise).")]
    value: Annotated[float | None, _doc("Loss in currency (a loss is positive); null when the "
                                        "history is too short.")]
    pct: Annotated[float | None, _doc("`value` as a fraction of equity.")]


class PositionLiquidity(msgspec.Struct):
    position_id: str
    symbol: str
    days_to_liquidate: Annotated[float | None, _doc(
        "|quantity| / (participation × average daily volume), sessions; null without volume.")]


class Liquidity(msgspec.Struct):
    participation: Annotated[float, _doc("Share of the average daily volume sold per session.")]
    adv_sessions: Annotated[int, _doc("Sessions of stored volume in the average daily volume.")]
    sellable_1d: Annotated[float | None, _doc(
        "Share of the gross value (positions with a known volume) sellable within 1 session.")]
    sellable_5d: Annotated[float | None, _doc("The same within 5 sessions.")]
    positions: list[PositionLiquidity]
    unknown: Annotated[list[str], _doc("Symbols without stored volume.")]


class RiskCoverage(msgspec.Struct):
    covered_share: Annotated[float | None, _doc(
        "Share of the gross exposure in positions with a risk model (a fraction).")]
    uncovered: Annotated[list[str], _doc(
        "Symbols left out of every figure: private holdings, options, symbols without a risk "
        "regression or a price.")]


class RiskModel(msgspec.Struct, rename={"lambda_": "lambda"}):
    factors: Annotated[list[str], _doc("The regressors (factor ETFs).")]
    regression: Annotated[str, _doc("How exposures are estimated (`ols`, with intercept).")]
    regression_window: Annotated[int, _doc("Sessions in each symbol's regression.")]
    covariance: Annotated[str, _doc("Factor covariance estimator (`ewma`).")]
    lambda_: Annotated[float, _doc("EWMA decay.")]
    window: Annotated[int, _doc("Sessions of factor returns in the covariance.")]
    historical_sessions: Annotated[int, _doc("Sessions revalued by the historical VaR.")]
    historical_fills: Annotated[int, _doc(
        "Missing symbol returns filled with the symbol's factor-model return that day.")]
    ten_day: Annotated[str, _doc("How the 10-session figures are made.")]
    data_as_of: dt.date
    coverage: RiskCoverage


class Risk(_Analytics):
    volatility: Volatility
    variance_split: VarianceSplit
    predicted_beta: Annotated[float | None, _doc(
        "Predicted beta to SPY from the factor model; null when the equity is not positive.")]
    factor_contributions: list[FactorContribution]
    position_contributions: list[PositionContribution]
    var: list[VarRow]
    liquidity: Liquidity
    model: RiskModel
    reason: Annotated[str | None, _doc("Why some figures are null (e.g. zero equity).")]


class RiskHistoryItem(msgspec.Struct):
    date: Annotated[dt.date, _doc("The data date the nightly refresh computed it for.")]
    volatility: Volatility
    predicted_beta: float | None
    var_99_1d: Annotated[float | None, _doc(
        "Parametric 99 % 1-session VaR, currency (a loss is positive).")]
    es_99_1d: Annotated[float | None, _doc("Parametric 99 % 1-session ES, currency.")]
    var_99_1d_pct: Annotated[float | None, _doc("`var_99_1d` as a fraction of equity.")]
    factor_share: Annotated[float | None, _doc("Factor share of the variance.")]
    covered_share: Annotated[float | None, _doc("The model's coverage of the gross exposure.")]


class RiskHistory(msgspec.Struct):
    items: Annotated[list[RiskHistoryItem], _doc("Oldest first.")]
    start: dt.date | None
    end: dt.date | None
    truncated: Annotated[bool, _doc("Older rows were left out (see `limit`).")]


class ReverseStressRow(msgspec.Struct):
    loss: Annotated[float, _doc("The loss asked for, a fraction of equity.")]
    loss_amount: Annotated[float | None, _doc(
        "The loss in currency (null when the equity is not positive).")]
    etf_move: Annotated[float | None, _doc(
        "The chosen ETF's simple-return move that loses `loss_amount` (-0.1 = -10 %); null "
        "with `reason` when there is no such move.")]
    moves: Annotated[dict[str, float], _doc(
        "Every factor ETF's move in that scenario: the chosen one's, and the others' "
        "conditional expectations given it; empty without a move.")]
    reason: Annotated[str | None, _doc(
        "`no such move` when the exposure to the move is zero or has the other sign (or the "
        "move would exceed -100 %).")]


class ReverseStress(msgspec.Struct):
    etf: Annotated[str, _doc("The shocked factor ETF.")]
    equity: Annotated[float, _doc("Equity at `data_as_of`, currency.")]
    exposures: Annotated[dict[str, float | None], _doc(
        "Dollar exposure per factor ETF, as the stress tests use them (style factors on "
        "their ETFs, TLT netted of the styles' rate sensitivity, SPY 0).")]
    losses: list[ReverseStressRow]
    data_as_of: dt.date
    stale: bool



class PerformanceConventions(msgspec.Struct):
    periods_per_year: Annotated[float, _doc("Sessions per year used to annualize (252).")]
    risk_free_annual: Annotated[float, _doc("The annual risk-free rate asked (a fraction).")]
    risk_free_per_period: Annotated[float, _doc("The per-session rate used (a fraction).")]
    risk_free_conversion: Annotated[str, _doc("How the per-session rate is made.")]
    ddof: Annotated[int, _doc("Delta degrees of freedom of every standard deviation.")]
    returns: Annotated[str, _doc("How the daily returns are made.")]
    cash_flows: Annotated[str, _doc("How deposits, withdrawals and position changes count.")]
    annualization: Annotated[str, _doc("How returns and volatilities are annualized.")]
    window: Annotated[str, _doc("Which returns the window holds.")]
    benchmark: Annotated[str, _doc("The benchmark symbol.")]
    benchmark_source: Annotated[str, _doc("Where the benchmark's returns come from.")]
    relative_metrics: Annotated[str, _doc("Which sessions the relative metrics use.")]


_RATIO = "null when undefined (see `reasons`)."


class Performance(_Analytics):
    window: Annotated[str | None, _doc(
        "The window asked (`ITD` when none was), null for `start`/`end`.")]
    start: Annotated[dt.date, _doc(
        "First date of the window (returns dated start..end); a portfolio younger than the "
        "window is measured from its first return (`first_return_date`).")]
    end: Annotated[dt.date, _doc("Last date of the window (at most `data_as_of`).")]
    first_return_date: dt.date | None
    last_return_date: dt.date | None
    benchmark: str
    n_returns: Annotated[int, _doc("Daily returns in the window.")]
    n_benchmark_pairs: Annotated[int, _doc(
        "Sessions with both a portfolio and a benchmark return (the relative metrics').")]
    cumulative_return: Annotated[float | None, _doc("prod(1 + r) - 1, a fraction; " + _RATIO)]
    annualized_return: Annotated[float | None, _doc(
        "(1 + cumulative_return) ** (252 / n_returns) - 1; " + _RATIO)]
    annualized_volatility: Annotated[float | None, _doc("std(r, ddof=1) × √252; " + _RATIO)]
    sharpe_ratio: Annotated[float | None, _doc(
        "mean(r - rf) / std(r - rf) × √252, rf per session; " + _RATIO)]
    sortino_ratio: Annotated[float | None, _doc(
        "mean(r - rf) × 252 / downside deviation (annualized, below rf); " + _RATIO)]
    max_drawdown: Annotated[float | None, _doc(
        "Largest fall from a running peak of the wealth, negative (0: none); " + _RATIO)]
    max_drawdown_peak_date: Annotated[dt.date | None, _doc(
        "Close of the peak (the close before the first return when the start is the peak).")]
    max_drawdown_trough_date: dt.date | None
    max_drawdown_recovery_date: Annotated[dt.date | None, _doc(
        "First close back at the peak; null if not recovered.")]
    calmar_ratio: Annotated[float | None, _doc("annualized_return / |max_drawdown|; " + _RATIO)]
    best_day: Annotated[float | None, _doc("Largest daily return; " + _RATIO)]
    best_day_date: dt.date | None
    worst_day: Annotated[float | None, _doc("Smallest daily return; " + _RATIO)]
    worst_day_date: dt.date | None
    hit_rate: Annotated[float | None, _doc("Share of the returns > 0; " + _RATIO)]
    alpha: Annotated[float | None, _doc(
        "Annualized Jensen's alpha to the benchmark (empyrical's); " + _RATIO)]
    beta: Annotated[float | None, _doc("cov(r, b) / var(b); " + _RATIO)]
    tracking_error: Annotated[float | None, _doc("std(r - b, ddof=1) × √252; " + _RATIO)]
    information_ratio: Annotated[float | None, _doc(
        "mean(r - b) × 252 / tracking_error; " + _RATIO)]
    up_capture: Annotated[float | None, _doc(
        "Annualized return over the benchmark's up sessions / the benchmark's; " + _RATIO)]
    down_capture: Annotated[float | None, _doc(
        "The same over the benchmark's down sessions; " + _RATIO)]
    reasons: Annotated[dict[str, str], _doc("Each null figure → why it is null.")]
    conventions: PerformanceConventions


class FactorPnl(msgspec.Struct):
    factor: Annotated[str, _doc("A risk factor (ETF) of the risk model.")]
    pnl: Annotated[float, _doc("Σ over the attributed days of exposure × factor return.")]


class AttributionDay(msgspec.Struct):
    date: dt.date
    pnl: Annotated[float, _doc("The day's P&L (the snapshot's daily_pnl).")]
    attributed: bool
    factors: Annotated[dict[str, float] | None, _doc(
        "Each factor's P&L: the previous session's dollar exposure × the factor's return; "
        "null when unattributed.")]
    specific: Annotated[float | None, _doc("pnl - Σ factors; null when unattributed.")]
    reason: Annotated[str | None, _doc("Why the day is unattributed.")]
    exposure_source: Annotated[Literal["nightly", "rebuilt"] | None, _doc(
        "Where the previous close's exposures come from: its nightly risk row, or rebuilt "
        "from the positions valued at that close with the data date's risk model (a close "
        "without a nightly row, e.g. history built after the fact); null when "
        "unattributed.")] = None


class AttributionConventions(msgspec.Struct):
    exposure: str
    factor_returns: str
    identity: str
    pnl: str


class Attribution(_Analytics):
    start: Annotated[dt.date, _doc("First date of the window.")]
    end: Annotated[dt.date, _doc("Last date of the window (at most `data_as_of`).")]
    factors: list[FactorPnl]
    specific_pnl: Annotated[float, _doc("Σ over the attributed days of the specific P&L.")]
    total_pnl: Annotated[float, _doc("Σ of every day's P&L in the window.")]
    attributed_pnl: Annotated[float, _doc("Σ factors' pnl + specific_pnl.")]
    unattributed_pnl: Annotated[float, _doc(
        "P&L of the days whose previous session has no snapshot (or whose factor prices or "
        "exposures are unknown).")]
    n_days: int
    n_attributed: int
    n_unattributed: int
    days: Annotated[list[AttributionDay], _doc("Oldest first.")]
    conventions: AttributionConventions
    n_rebuilt: Annotated[int, _doc(
        "Attributed days whose exposures were rebuilt (exposure_source 'rebuilt').")] = 0

ANALYTICS_SCHEMAS: dict[str, type[_Analytics]] = {
    "overview": Overview, "factor-exposures": FactorExposures,
    "sector-exposure": SectorExposure, "correlations": Correlations,
    "stress-tests": StressTests, "risk": Risk,
}


# --- composite answers ---------------------------------------------------------------------


class _Onboarding(msgspec.Struct, kw_only=True):
    symbols: Annotated[dict[str, str], Meta(description="Each market symbol's data status: "
                                                        "ready, pending (being onboarded), "
                                                        "private, or 'error: <reason>'.")]
    pending_symbols: Annotated[list[str], Meta(description="Symbols still being onboarded: "
                                                           "their positions have no price "
                                                           "in the snapshot yet.")]
    snapshot: Annotated[SnapshotRead | None, Meta(description="Valuation at the latest "
                                                              "stored price date (null before "
                                                              "any prices are stored).")]


class HistoryJobRead(msgspec.Struct):
    """A portfolio's history build (one per portfolio; a new request after it finished
    builds again). ``first_date``/``last_date``: the sessions the last build valued, from
    the positions' first entry date (or the first session every open position has a stored
    price) through the data date; ``snapshots``: the rows it wrote."""

    id: str
    portfolio_id: str
    status: Annotated[str, Meta(extra_json_schema={
        "enum": [history_jobs.QUEUED, history_jobs.RUNNING, history_jobs.DONE,
                 history_jobs.FAILED]})]
    attempts: int
    requested_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    first_date: dt.date | None
    last_date: dt.date | None
    snapshots: int | None
    error: str | None
    links: dict[str, str]

    @classmethod
    def of(cls, j: history_jobs.HistoryJobView) -> HistoryJobRead:
        base = f"/v1/portfolios/{j.portfolio_id}"
        return cls(id=j.id, portfolio_id=j.portfolio_id, status=j.status, attempts=j.attempts,
                   requested_at=j.requested_at, started_at=j.started_at,
                   finished_at=j.finished_at, first_date=j.first_date, last_date=j.last_date,
                   snapshots=j.snapshots, error=j.error,
                   links={"self": f"{base}/history", "snapshots": f"{base}/snapshots",
                          "performance": f"{base}/performance"})


class PortfolioCreated(_Onboarding):
    portfolio: PortfolioRead
    factor_exposures: FactorExposures | None
    history: HistoryJobRead | None = None

    @classmethod
    def of(cls, c: svc.PortfolioCreated) -> PortfolioCreated:
        return cls(
            portfolio=PortfolioRead.of(c.portfolio), symbols=c.outcome.symbols,
            pending_symbols=c.outcome.pending_symbols, snapshot=snapshot(c.outcome.snapshot),
            factor_exposures=None if c.factor_exposures is None else convert(
                c.factor_exposures, FactorExposures),
            history=None if c.history is None else HistoryJobRead.of(c.history))


class PositionChanged(_Onboarding):
    position: PositionRead

    @classmethod
    def of(cls, c: svc.PositionChanged) -> PositionChanged:
        return cls(position=PositionRead.of(c.position), symbols=c.outcome.symbols,
                   pending_symbols=c.outcome.pending_symbols,
                   snapshot=snapshot(c.outcome.snapshot))


_ENCODED_BYTES = 64 * 1024 * 1024
"""Most bytes of encoded answers kept (cleared whole past it); a larger answer is not kept."""
_encoded: dict[tuple[int, bool, bool], tuple[dict[str, Any], bytes]] = {}
_encoded_bytes = 0


def analytics_json(answer: svc.AnalyticsAnswer, schema: type[_Analytics]) -> bytes:
    """``answer`` as the JSON of ``schema``; encoded once per (body, stale, cached).

    A cache hit serves the same body many times a second: converting and encoding it again
    each time was ~25 % of a hit's CPU. Keyed by the identity of the body (bodies are never
    changed; each entry holds its body, so the identity cannot be reused while cached).
    """
    global _encoded_bytes
    key = (id(answer.body), answer.stale, answer.cached)
    hit = _encoded.get(key)
    if hit is not None and hit[0] is answer.body:
        return hit[1]
    body = msgspec.json.encode(convert(answer.as_dict(), schema))
    if len(body) > _ENCODED_BYTES // 64:
        return body
    if _encoded_bytes + len(body) > _ENCODED_BYTES:
        _encoded.clear()
        _encoded_bytes = 0
    _encoded[key] = (answer.body, body)
    _encoded_bytes += len(body)
    return body
