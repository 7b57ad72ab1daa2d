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
from core.services import operations
from core.symbols import MAX_SYMBOL_LENGTH

SYMBOL_PATTERN = r"^\^?[A-Za-z0-9]+([.=_-][A-Za-z0-9]+)*$"
"""A ticker as the server accepts it (letters, digits, single separators . - = _,
an optional leading ^), case-insensitive."""


class SymbolController(Controller):
    path = "/symbols"
    tags = ["symbols"]

    @get("/{symbol:str}", operation_id="getSymbol", responses=responses(400, 401, 404),
         summary="A symbol's data status",
         description="ready / pending / error (with the reason), data dates, profile, latest "
                     "metrics and factor exposures. Poll it to see a new symbol become ready.")
    async def get_symbol(
        self, engine: NamedDependency[AsyncEngine],
        symbol: Annotated[str, PathParameter(
            description="Ticker, e.g. AAPL or BRK-B (at most 20 characters).",
            max_length=MAX_SYMBOL_LENGTH, pattern=SYMBOL_PATTERN)],
    ) -> SymbolRead:
        return convert(await operations.symbol_status(engine, symbol), SymbolRead)
