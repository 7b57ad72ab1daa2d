"""Symbol status route."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.di import NamedDependency
from litestar.params import PathParameter
from sqlalchemy.ext.asyncio import AsyncEngine

from api.errors import responses
from api.schemas import convert
from api.symbols.schemas import SymbolRead
from core import portfolio_service as svc


class SymbolController(Controller):
    path = "/symbols"
    tags = ["symbols"]

    @get("/{symbol:str}", operation_id="getSymbol", responses=responses(400, 401, 404),
         summary="A symbol's data status",
         description="ready / pending / error (with the reason), data dates, profile, latest "
                     "metrics and factor exposures. Poll it to see a new symbol become ready.")
    async def get_symbol(
        self, engine: NamedDependency[AsyncEngine],
        symbol: Annotated[str, PathParameter(description="Ticker, e.g. AAPL or BRK-B.",
                                         max_length=64)],
    ) -> SymbolRead:
        return convert(await svc.symbol_status(engine, symbol), SymbolRead)
