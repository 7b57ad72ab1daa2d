"""Extending stored price histories backwards, a bounded slice of the universe a night, so
every symbol reaches ``history_days`` of prices (the risk model's 500 sessions of returns).

Plain async steps of the symbol batch (``flows/symbol_batch.py``), beside
``core/symbol_steps.py`` whose fetch requests they produce.

May import: repositories, the calendar, ``core.symbol_steps``. No Prefect, no portfolio code.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence

from sqlalchemy.ext.asyncio import AsyncEngine

from core import calendar
from core.db.engine import flow_engine, reading
from core.db.models import SymbolKind
from core.repositories import prices as price_repo
from core.repositories import symbols as symbol_repo
from core.symbols import is_market_symbol


async def plan_history_extension(
    states: Sequence[symbol_repo.SymbolState], target: dt.date, history_days: int,
    per_night: int, engine: AsyncEngine | None = None,
) -> list[str]:
    """Stored symbols of ``states`` whose history the run for ``target`` extends backwards.

    Parameters
    ----------
    states
        The run's universe.
    target
        The run's session.
    history_days
        Calendar days of history a symbol should have: it is short when its first stored
        session is later than the first session on or after ``target - history_days``.
    per_night
        Most symbols one night asks (0: none).

    The market symbols of the whole symbols table (any status), by name, are dealt into
    K = ceil(count / per_night) slices (rank mod K); the night at calendar session position
    p asks only the short symbols of slice p mod K. So a night asks at most ``per_night``,
    every symbol's turn comes once in K sessions, and a rerun of the same night looks at the
    same slice, which the first run already extended: it asks nothing more (taking "the
    first ``per_night`` still short" would extend more symbols on every rerun).

    A symbol the provider has nothing older for (listed recently) is not asked again:
    when a fetch reaching before a symbol's first stored session delivers nothing before it,
    the session before it is recorded in ``known_missing_prices``
    (:func:`history_start_marks`), and a short symbol with that record is skipped here. A
    later delivery of that session drops the record (as for any known-missing session).
    """
    if per_night <= 0:
        return []
    wanted = calendar.session_on_or_after(target - dt.timedelta(days=history_days))
    async with reading(engine or flow_engine()) as conn:
        table = [s.symbol for s in await symbol_repo.get_states(conn)
                 if s.kind != SymbolKind.private and is_market_symbol(s.symbol)]
        slices = -(-len(table) // per_night)
        if slices == 0:
            return []
        slot = int(calendar.session_positions([target])[0]) % slices
        tonight = {sym for rank, sym in enumerate(table) if rank % slices == slot}
        short = {s.symbol: calendar.previous_session(s.first_price_date) for s in states
                 if s.symbol in tonight and s.first_price_date is not None
                 and s.first_price_date > wanted}
        if not short:
            return []
        done = await price_repo.known_missing(conn, sorted(short), min(short.values()))
    return sorted(sym for sym, before in short.items() if (sym, before) not in done)
