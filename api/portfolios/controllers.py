"""Portfolio, position, snapshot and analytics routes: one service call and a conversion each."""

from __future__ import annotations

import asyncio
import datetime as dt
from dataclasses import dataclass
from decimal import Decimal
from typing import Annotated, Any, Literal

import msgspec
import numpy as np
from litestar import Controller, MediaType, Response, delete, get, patch, post
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIMediaType, Operation, RequestBody, Schema
from litestar.openapi.spec.enums import OpenAPIType
from litestar.params import JSONBody, PathParameter, QueryParameter, RawBody
from msgspec import UNSET
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import responses
from api.portfolios.schemas import (
    ANALYTICS_SCHEMAS,
    Attribution,
    Correlations,
    FactorExposures,
    HistoryJobRead,
    Overview,
    Performance,
    PortfolioCreate,
    PortfolioCreated,
    PortfolioList,
    PortfolioRead,
    PortfolioUpdate,
    PositionChanged,
    PositionCreate,
    PositionUpdate,
    ReverseStress,
    Risk,
    RiskHistory,
    SectorExposure,
    SnapshotList,
    StressTests,
    analytics_json,
)
from api.schemas import convert
from core.errors import InvalidInput
from core.risk.stress import FACTOR_ETFS
from core.services import analytics as analytics_service
from core.services import history_jobs
from core.services import performance as performance_service
from core.services import portfolios as svc
from core.services import report as report_service
from core.services.users import UserContext

Engine = NamedDependency[AsyncEngine]
User = NamedDependency[UserContext]
PortfolioId = Annotated[str, PathParameter(description="The portfolio's id.")]
PositionId = Annotated[str, PathParameter(description="The position's id.")]
CORRELATIONS_HELP = (
    "Pearson correlations of the priced positions' daily log returns over the last 90 "
    "sessions (pairwise-complete, repaired to the nearest valid correlation matrix when "
    "gaps make it indefinite): the average correlation, the effective number of positions, "
    "clusters of positions with |rho| >= 0.7, and the matrix (rows and columns in `symbols` "
    "order). The matrix grows with the square of the positions (~14 MB of JSON for 1,000 "
    "symbols), so by default (`matrix=auto`) it is included only up to "
    f"{analytics_service.CORRELATION_MATRIX_LIMIT} symbols and is `null` above; "
    "`matrix=full` returns it for any size (computed on request for larger portfolios), "
    "`matrix=none` never."
)
RISK_HELP = (
    "The portfolio's ex-ante risk at `data_as_of` from the factor risk model (one OLS "
    "regression per symbol on the factor ETFs of `model.factors`, their EWMA covariance): "
    "volatility (fractions of equity and currency), its factor/specific split, the predicted "
    "beta to SPY, Euler contributions per factor (with a `specific` row) and per position "
    "(each row's `contribution` in the units of `volatility.daily`, summing to it), VaR and "
    "ES (parametric, historical, Cornish-Fisher; 95 % and 99 %; 1 and 10 sessions; currency, "
    "a loss positive), liquidity and the model. Private holdings, options and symbols without "
    "a model are listed in `model.coverage.uncovered` and left out of every figure."
)
ETF = Literal[FACTOR_ETFS]  # type: ignore[valid-type]
"""One of the factor ETFs (an enum in the OpenAPI document)."""
LossFraction = Annotated[float, msgspec.Meta(gt=0, le=1)]
LOSS_SCHEMA = {"type": "number", "exclusiveMinimum": 0, "maximum": 1}
"""A loss as the OpenAPI document states it (the item constraints of ``LossFraction``)."""
CSV_HELP = (
    "A CSV file (UTF-8) as the raw request body, `Content-Type: text/csv`. First line: the "
    "header `symbol,quantity,entry_date,entry_price` plus any of `exit_date,exit_price,"
    "investment_class,manual_value` (any order, case-insensitive); one position per line; "
    "dates YYYY-MM-DD; an empty optional cell means absent. Errors name the line (1-based, "
    "the header is line 1) and the column: `line 3, quantity: not a number`."
)

StartDate = Annotated[dt.date | None, QueryParameter(description="First date (inclusive).")]
EndDate = Annotated[dt.date | None, QueryParameter(description="Last date (inclusive).")]
HistoryLimit = Annotated[int, QueryParameter(ge=1, le=5000)]
"""Query parameters of the dated histories (snapshots, risk)."""
PERFORMANCE_HELP = (
    "Time-weighted performance from the stored daily snapshots: r_t = daily_pnl_t / equity "
    "of the previous snapshot (deposits, withdrawals and positions added or removed are not "
    "returns), over a `window` (1M, 3M, YTD, 1Y, ITD = since inception, the default) or "
    "`start`/`end`, with the figures under empyrical's names, annualized with 252 sessions; "
    "relative figures against `benchmark` over the same intervals. A null figure has its "
    "reason in `reasons`; `conventions` states how every figure is made."
)
ATTRIBUTION_HELP = (
    "Each day's P&L split into factor P&L (the previous session's dollar exposure to each "
    "risk-model factor, from the nightly risk row, times the factor ETF's simple return that "
    "day) plus the specific rest, per day and summed over `start`..`end` (default: since the "
    "first snapshot). Days whose previous session has no risk row are unattributed "
    "(`unattributed_pnl`)."
)
HISTORY_HELP = (
    "Builds the portfolio's daily snapshots back to its positions' entry dates, in the "
    "background (the nightly refresh's own valuation, every priced session from the first "
    "entry date, or the first session at which every open position has a stored price, "
    "through the data date; at most FACTORFLOW_LOOKBACK_DAYS back). Answers 202 at once with "
    "the job; asking again while it is queued or running returns the same job, asking after "
    "it finished builds again (the same rows). `GET` the same path for its status."
)
HISTORY_OPTION_HELP = ("Also queue the build of its daily snapshots back to the positions' "
                       "entry dates (as `POST /v1/portfolios/{id}/history`).")
Window = Literal[performance_service.WINDOWS]  # type: ignore[valid-type]
"""A performance window (an enum in the OpenAPI document)."""


@dataclass
class _CsvImportOperation(Operation):
    """The import route reads its body raw: document it as text/csv."""

    def __post_init__(self) -> None:
        self.request_body = RequestBody(
            content={"text/csv": OpenAPIMediaType(schema=Schema(
                type=OpenAPIType.STRING,
                examples=["symbol,quantity,entry_date,entry_price\nAAPL,10,2025-03-03,180.5\n"],
            ))},
            required=True, description=CSV_HELP)


def _created(c: svc.PortfolioCreated) -> Response[PortfolioCreated]:
    return Response(PortfolioCreated.of(c), status_code=201,
                    headers={"Location": f"/v1/portfolios/{c.portfolio.id}"})


class PortfolioController(Controller):
    path = "/portfolios"
    tags = ["portfolios"]

    @post("/", operation_id="createPortfolio",
          status_code=201, responses=responses(400, 401, 409, 413),
          summary="Create a portfolio (positions inline)",
          description="Creates the portfolio and its positions, then answers at once from "
                      "stored prices: the snapshot at the latest price date, the factor "
                      "exposures (with the covered share of equity) and the symbols still "
                      "being onboarded (`pending_symbols`), which never delay the answer.")
    async def create_portfolio(
        self, data: JSONBody[PortfolioCreate], engine: Engine, user: User
    ) -> Response[PortfolioCreated]:
        return _created(await svc.create_portfolio(
            engine, user.id, name=data.name, cash=data.cash,
            positions=[p.to_input() for p in data.positions],
            build_history=data.history_option()))

    @post("/import", operation_id="importPortfolio",
          status_code=201, responses=responses(400, 401, 409, 413),
          operation_class=_CsvImportOperation, summary="Create a portfolio from a CSV file",
          description=CSV_HELP + " Answers like `POST /v1/portfolios`.")
    async def import_portfolio(
        self, body: RawBody, engine: Engine, user: User,
        name: Annotated[str, QueryParameter(description="The new portfolio's name.")],
        cash: Annotated[Decimal, QueryParameter(description="Cash balance (exact decimal).")]
        = Decimal(0),
        build_history: Annotated[bool, QueryParameter(description=HISTORY_OPTION_HELP)]
        = False,
    ) -> Response[PortfolioCreated]:
        try:
            text = body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidInput(f"body: not UTF-8 text (byte {exc.start})", "body") from None
        return _created(await svc.import_portfolio_csv(
            engine, user.id, name=name, cash=cash, csv_text=text, build_history=build_history))

    @get("/", operation_id="listPortfolios",
         responses=responses(400, 401), summary="Your portfolios")
    async def list_portfolios(
        self, engine: Engine, user: User,
        limit: Annotated[int, QueryParameter(ge=1, le=500)] = 50,
        offset: Annotated[int, QueryParameter(ge=0, le=1_000_000)] = 0,
    ) -> PortfolioList:
        return PortfolioList.of(await svc.list_portfolios(
            engine, user.id, limit=limit, offset=offset))

    @get("/{portfolio_id:str}", operation_id="getPortfolio", responses=responses(400, 401, 404),
         summary="A portfolio with its positions and latest snapshot")
    async def get_portfolio(
        self, portfolio_id: PortfolioId, engine: Engine, user: User
    ) -> PortfolioRead:
        return PortfolioRead.of(await svc.get_portfolio(engine, user.id, portfolio_id))

    @patch("/{portfolio_id:str}", operation_id="updatePortfolio",
           responses=responses(400, 401, 404, 409, 413),
           summary="Rename a portfolio or set its cash",
           description="Only the fields present change. A cash change re-values the "
                       "portfolio and invalidates its cached analytics.")
    async def update_portfolio(
        self, portfolio_id: PortfolioId, data: JSONBody[PortfolioUpdate], engine: Engine,
        user: User,
    ) -> PortfolioRead:
        return PortfolioRead.of(await svc.update_portfolio(
            engine, user.id, portfolio_id,
            name=None if data.name is UNSET else data.name,
            cash=None if data.cash is UNSET else data.cash))

    @delete("/{portfolio_id:str}", operation_id="deletePortfolio",
            status_code=204, responses=responses(400, 401, 404),
            summary="Delete a portfolio",
            description="Soft delete: it disappears from the API (404 afterwards), its "
                        "history stays stored, and its name can be used again.")
    async def delete_portfolio(
        self, portfolio_id: PortfolioId, engine: Engine, user: User
    ) -> None:
        await svc.delete_portfolio(engine, user.id, portfolio_id)

    @get("/{portfolio_id:str}/snapshots", operation_id="listSnapshots",
         responses=responses(400, 401, 404),
         summary="Stored daily snapshots",
         description="Snapshots with start <= date <= end, oldest first; at most the newest "
                     "`limit` of them.")
    async def list_snapshots(
        self, portfolio_id: PortfolioId, engine: Engine, user: User,
        start: StartDate = None, end: EndDate = None, limit: HistoryLimit = 1000,
    ) -> SnapshotList:
        return SnapshotList.of(await svc.list_snapshots(
            engine, user.id, portfolio_id, start=start, end=end, limit=limit))

    @get("/{portfolio_id:str}/overview", operation_id="getOverview",
         responses=responses(400, 401, 404, 503),
         summary="Valuation, exposures, market beta and position weights")
    async def overview(self, portfolio_id: PortfolioId, engine: Engine, user: User
                       ) -> Response[Overview]:
        return await _analytics(engine, user, portfolio_id, "overview")

    @get("/{portfolio_id:str}/factor-exposures", operation_id="getFactorExposures",
         responses=responses(400, 401, 404, 503),
         summary="Portfolio factor betas and dollar exposures, with covered share")
    async def factor_exposures(self, portfolio_id: PortfolioId, engine: Engine, user: User
                               ) -> Response[FactorExposures]:
        return await _analytics(engine, user, portfolio_id, "factor-exposures")

    @get("/{portfolio_id:str}/sector-exposure", operation_id="getSectorExposure",
         responses=responses(400, 401, 404, 503),
         summary="Signed market value and weight per sector")
    async def sector_exposure(self, portfolio_id: PortfolioId, engine: Engine, user: User
                              ) -> Response[SectorExposure]:
        return await _analytics(engine, user, portfolio_id, "sector-exposure")

    @get("/{portfolio_id:str}/correlations", operation_id="getCorrelations",
         responses=responses(400, 401, 404, 503),
         summary="90-day correlations of the positions: summary, clusters, matrix",
         description=CORRELATIONS_HELP)
    async def correlations(
        self, portfolio_id: PortfolioId, engine: Engine, user: User,
        matrix: Annotated[Literal["auto", "full", "none"], QueryParameter(
            description="`auto`: the matrix up to "
                        f"{analytics_service.CORRELATION_MATRIX_LIMIT} symbols, `null` above; "
                        "`full`: always the matrix; `none`: never.")] = "auto",
    ) -> Response[Correlations]:
        answer = await svc.analytics(engine, user.id, portfolio_id, "correlations")
        has_matrix = answer.body.get("matrix") is not None
        if matrix == "full" and not has_matrix:
            full = await analytics_service.full_correlations(portfolio_id, engine)
            full["stale"] = answer.stale
            body = await asyncio.to_thread(_encode, full, Correlations)
        elif matrix == "none" and has_matrix:
            body = _encode({**answer.as_dict(), "matrix": None}, Correlations)
        else:
            body = analytics_json(answer, Correlations)
        return Response(body, media_type=MediaType.JSON)

    @get("/{portfolio_id:str}/stress-tests", operation_id="getStressTests",
         responses=responses(400, 401, 404, 503),
         summary="Stress scenarios' P&L with per-factor contributions")
    async def stress_tests(
        self, portfolio_id: PortfolioId, engine: Engine, user: User,
        scenario: Annotated[str | None, QueryParameter(
            description="Only this scenario (404 for an unknown name).", max_length=64)] = None,
    ) -> Response[StressTests]:
        return await _analytics(engine, user, portfolio_id, "stress-tests", scenario)


    @get("/{portfolio_id:str}/risk", operation_id="getRisk",
         responses=responses(400, 401, 404, 503),
         summary="Volatility, risk contributions, VaR and ES, liquidity", description=RISK_HELP)
    async def risk(self, portfolio_id: PortfolioId, engine: Engine, user: User
                   ) -> Response[Risk]:
        return await _analytics(engine, user, portfolio_id, "risk")

    @get("/{portfolio_id:str}/risk/history", operation_id="getRiskHistory",
         responses=responses(400, 401, 404),
         summary="The nightly risk figures",
         description="The risk the nightly refresh stored for each date with start <= date "
                     "<= end, oldest first; at most the newest `limit`.")
    async def risk_history(
        self, portfolio_id: PortfolioId, engine: Engine, user: User,
        start: StartDate = None, end: EndDate = None, limit: HistoryLimit = 1000,
    ) -> RiskHistory:
        await svc.ensure_owned(engine, user.id, portfolio_id)
        return convert(await analytics_service.risk_history(
            portfolio_id, start=start, end=end, limit=limit, engine=engine), RiskHistory)

    @get("/{portfolio_id:str}/performance", operation_id="getPerformance",
         responses=responses(400, 401, 404, 503),
         summary="Returns, risk-adjusted ratios, drawdown and benchmark-relative figures",
         description=PERFORMANCE_HELP)
    async def performance(
        self, portfolio_id: PortfolioId, engine: Engine, user: User,
        window: Annotated[Window | None, QueryParameter(
            description="1M, 3M, YTD, 1Y or ITD (since inception; the default); not with "
                        "`start`/`end`.")] = None,
        start: StartDate = None, end: EndDate = None,
        benchmark: Annotated[str, QueryParameter(
            description="Any stored symbol (400 for one without prices).", min_length=1,
            max_length=20)] = performance_service.DEFAULT_BENCHMARK,
        risk_free: Annotated[float, QueryParameter(
            description="Annual risk-free rate as a fraction (0.02 = 2 %), converted per "
                        "session geometrically.",
            schema_extra={"minimum": performance_service.RISK_FREE_RANGE[0],
                          "maximum": performance_service.RISK_FREE_RANGE[1]})] = 0.0,
    ) -> Performance:
        await svc.ensure_owned(engine, user.id, portfolio_id)
        query = performance_service.performance_query(window, start, end, benchmark, risk_free)
        return convert(await performance_service.portfolio_performance(
            portfolio_id, query, engine), Performance)

    @get("/{portfolio_id:str}/attribution", operation_id="getAttribution",
         responses=responses(400, 401, 404, 503),
         summary="The P&L explained by the risk factors, per day and over a window",
         description=ATTRIBUTION_HELP)
    async def attribution(
        self, portfolio_id: PortfolioId, engine: Engine, user: User,
        start: StartDate = None, end: EndDate = None,
    ) -> Attribution:
        await svc.ensure_owned(engine, user.id, portfolio_id)
        return convert(await performance_service.portfolio_attribution(
            portfolio_id, start, end, engine), Attribution)

    @get("/{portfolio_id:str}/report", operation_id="getReport",
         responses=responses(400, 401, 404, 503), media_type=MediaType.HTML,
         summary="The portfolio's report: one self-contained HTML page",
         description="Equity curve against the benchmark, drawdown, rolling volatility with "
                     "the model's ex-ante volatility, factor exposures, top risk contributors, "
                     "VaR, stress results and attribution: server-rendered SVG charts with "
                     "their numbers beside them, no script and no external asset.")
    async def report(
        self, portfolio_id: PortfolioId, engine: Engine, user: User,
        window: Annotated[Window, QueryParameter(
            description="The performance window: 1M, 3M, YTD, 1Y (the default) or ITD.")
        ] = report_service.DEFAULT_WINDOW,
        benchmark: Annotated[str, QueryParameter(
            description="Any stored symbol (400 for one without prices).", min_length=1,
            max_length=20)] = performance_service.DEFAULT_BENCHMARK,
    ) -> Response[str]:
        await svc.ensure_owned(engine, user.id, portfolio_id)
        page = await report_service.portfolio_report(portfolio_id, window=window,
                                                     benchmark=benchmark, engine=engine)
        return Response(page, media_type=MediaType.HTML)

    @post("/{portfolio_id:str}/history", operation_id="requestHistory", status_code=202,
          responses=responses(400, 401, 404), summary="Build the portfolio's past snapshots",
          description=HISTORY_HELP)
    async def request_history(self, portfolio_id: PortfolioId, engine: Engine, user: User
                              ) -> HistoryJobRead:
        return HistoryJobRead.of(
            await history_jobs.request_history(engine, user.id, portfolio_id))

    @get("/{portfolio_id:str}/history", operation_id="getHistory",
         responses=responses(400, 401, 404), summary="The history build's status",
         description="The portfolio's history build (404 when none was requested).")
    async def history(self, portfolio_id: PortfolioId, engine: Engine, user: User
                      ) -> HistoryJobRead:
        return HistoryJobRead.of(await history_jobs.history_job(engine, user.id, portfolio_id))

    @get("/{portfolio_id:str}/stress-tests/reverse", operation_id="getReverseStress",
         responses=responses(400, 401, 404, 503),
         summary="The move of one factor ETF that loses a given share of equity",
         description="For each `loss` (a fraction of equity): the move of `etf` that, with "
                     "the other factor ETFs moving by their conditional expectation given it "
                     "(as in the stress tests), loses that much, or `no such move`.")
    async def reverse_stress(
        self, portfolio_id: PortfolioId, engine: Engine, user: User,
        etf: Annotated[ETF, QueryParameter(description="The ETF to move.")] = "SPY",
        loss: Annotated[list[LossFraction] | None, QueryParameter(
            description="Losses as fractions of equity in (0, 1], repeatable (`loss=0.1&"
                        "loss=0.2`); default 0.1 and 0.2.",
            schema_extra={"oneOf": [{"type": "array", "items": LOSS_SCHEMA, "minItems": 1,
                                     "maxItems": analytics_service.MAX_REVERSE_STRESS_LOSSES},
                                    {"type": "null"}]})] = None,
    ) -> ReverseStress:
        exposures = await svc.analytics(engine, user.id, portfolio_id, "factor-exposures")
        overview = await svc.analytics(engine, user.id, portfolio_id, "overview")
        return convert(await analytics_service.reverse_stress(
            exposures.body, overview.body, etf, loss, engine), ReverseStress)


def _encode(answer: dict[str, Any], schema: type[Any]) -> bytes:
    if isinstance(answer.get("matrix"), np.ndarray):
        answer = {**answer, "matrix": answer["matrix"].tolist()}
    return msgspec.json.encode(convert(answer, schema))


async def _analytics(engine: AsyncEngine, user: UserContext, portfolio_id: str, kind: str,
                     scenario: str | None = None) -> Response[Any]:
    answer = await svc.analytics(engine, user.id, portfolio_id, kind, scenario)
    return Response(analytics_json(answer, ANALYTICS_SCHEMAS[kind]),
                    media_type=MediaType.JSON)


class PositionController(Controller):
    path = "/portfolios/{portfolio_id:str}/positions"
    tags = ["positions"]

    @post("/", operation_id="addPosition",
          status_code=201, responses=responses(400, 401, 404, 409, 413),
          summary="Add a position",
          description="Adds the position, onboards its symbol if it is new (listed in "
                      "`pending_symbols`, never waited for) and re-values the portfolio.")
    async def add_position(
        self, portfolio_id: PortfolioId, data: JSONBody[PositionCreate], engine: Engine,
        user: User,
    ) -> PositionChanged:
        return PositionChanged.of(await svc.add_position(
            engine, user.id, portfolio_id, data.to_input()))

    @patch("/{position_id:str}", operation_id="updatePosition",
           responses=responses(400, 401, 404, 413),
           summary="Change a position",
           description="Only the fields present change; `null` clears exit_date, exit_price "
                       "or manual_value. The whole position is validated again. To close a "
                       "position, set its exit_date (and exit_price).")
    async def update_position(
        self, portfolio_id: PortfolioId, position_id: PositionId,
        data: JSONBody[PositionUpdate], engine: Engine, user: User,
    ) -> PositionChanged:
        return PositionChanged.of(await svc.update_position(
            engine, user.id, portfolio_id, position_id, data.changes()))

    @delete("/{position_id:str}", operation_id="deletePosition",
            status_code=204, responses=responses(400, 401, 404),
            summary="Remove a position entered by mistake",
            description="To close a position that was really held, set its exit_date "
                        "instead: a removed position disappears from the valuation history.")
    async def delete_position(
        self, portfolio_id: PortfolioId, position_id: PositionId, engine: Engine, user: User
    ) -> None:
        await svc.delete_position(engine, user.id, portfolio_id, position_id)
