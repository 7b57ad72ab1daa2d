"""The symbol universe for operators (admin role): list, add, remove, refetch."""

from __future__ import annotations

import asyncio
from typing import Annotated

from litestar import Controller, delete, get, post
from litestar.di import NamedDependency
from litestar.params import JSONBody, PathParameter, QueryParameter
from sqlalchemy.ext.asyncio import AsyncEngine

from api.auth import admin_only
from api.errors import responses
from api.schemas import convert
from api.universe.schemas import (
    AddSymbolsRequest,
    AddSymbolsResult,
    RefetchResult,
    RemoveSymbolResult,
    UniversePage,
)
from core.services import universe

Engine = NamedDependency[AsyncEngine]
SymbolPath = Annotated[str, PathParameter(description="Ticker, e.g. AAPL or BRK-B.",
                                          max_length=64)]


class UniverseController(Controller):
    path = "/admin/symbols"
    tags = ["admin"]
    guards = [admin_only]

    @get("", operation_id="listUniverse", responses=responses(400, 401, 403),
         summary="The symbol universe",
         description="Every symbol (ordered by symbol) with its kind, status, price and factor "
                     "dates and error reason, one page at a time, and the count per status.")
    async def list_symbols(
        self, engine: Engine,
        status: Annotated[str | None, QueryParameter(
            description="Only this status: pending, active, delisted, error or inactive.",
            max_length=16)] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=1000)] = 200,
        offset: Annotated[int, QueryParameter(ge=0, le=universe.MAX_OFFSET)] = 0,
    ) -> UniversePage:
        page = await universe.list_symbols(engine, status=status, limit=limit, offset=offset)
        return convert(page, UniversePage)

    @post("", operation_id="addUniverseSymbols", status_code=200,
          responses=responses(400, 401, 403, 413), summary="Add symbols to the universe",
          description="Validated and normalised by the identifier rules; new market symbols "
                      "are pending until the next symbol batch fetches them; inactive, error "
                      "and delisted ones are fetched again (active when they have stored "
                      "prices, else pending). Invalid entries are listed under `rejected`; "
                      "400 (naming the first) when nothing valid was sent.")
    async def add_symbols(self, engine: Engine,
                          data: JSONBody[AddSymbolsRequest]) -> AddSymbolsResult:
        report = await universe.add_symbols(data.symbols, engine)
        return convert(report.to_dict(), AddSymbolsResult)

    @delete("/{symbol:str}", operation_id="removeUniverseSymbol", status_code=200,
            responses=responses(400, 401, 403, 404, 409), summary="Remove a symbol",
            description="Stops fetching it (status inactive); its prices, factors and other "
                        "stored rows are kept, and adding it again re-activates it. 409 (naming "
                        "them) when live portfolios hold it, unless `force=true`; 400 for a "
                        "reference ETF.")
    async def remove_symbol(
        self, engine: Engine, symbol: SymbolPath,
        force: Annotated[bool, QueryParameter(
            description="Remove it even though live portfolios hold it.")] = False,
    ) -> RemoveSymbolResult:
        report = await universe.remove_symbol(symbol, force, engine)
        return convert(report.to_dict(), RemoveSymbolResult)

    @post("/{symbol:str}/refetch", operation_id="refetchUniverseSymbol", status_code=200,
          responses=responses(400, 401, 403, 404, 409), summary="Refetch a symbol's history",
          description="Re-requests the symbol's whole stored history now through the "
                      "configured provider chain (a corrected price replaces one that failed "
                      "its checks; a worse one is refused; both audited), then recomputes its "
                      "factors at its last factor date. Runs in a worker thread; 409 while a "
                      "symbol batch holds the batch lock.")
    async def refetch_symbol(self, engine: Engine, symbol: SymbolPath) -> RefetchResult:
        url = engine.url.render_as_string(hide_password=False)
        report = await asyncio.to_thread(universe.refetch_blocking, [symbol], url, strict=True)
        return convert(report.to_dict(), RefetchResult)
