"""In-memory analytics answers of one API process, validated in bulk against the database.

The stored analytics cache (``portfolio_analytics_cache``) is the source of truth; this
memo keeps the answers this process last read from it, so a cache hit costs no query.
An entry is valid while the row it came from is unchanged: its *token* is the portfolio's
``updated_at`` plus the cache row's ``created_at``, ``data_date`` and positions hash, and
the row's ``data_date`` must still be the latest stored data date.

Validation is one bulk query per engine at most every ``interval`` seconds, run in the
background (not one query per entry on the request: under load each per-entry recheck
cost ~2 ms of CPU in thread hand-offs and hundreds of hot entries made the whole latency
tail; a validation awaited by a request took up to a second under load). Changes made
through this process drop the portfolio's entries at once (:meth:`AnalyticsMemo.forget`);
changes made elsewhere (the nightly refresh, another API worker, a deleted cache row) are
seen within ``interval`` plus one query, and never later than ``max_age``. A new data date
(a symbol batch completed) is seen once :func:`core.symbol_data.latest_data_date` sees it,
at most ``DATA_DATE_TTL`` seconds later.

May import the database layer, the bulk-validation schedule and the portfolio tables; no
service (the data date comes in as ``latest_day``).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core.bulk_validation import BulkValidated
from core.db.engine import reading
from core.repositories import portfolios as portfolio_repo

MemoKey = tuple[str, str, str | None]
"""(portfolio id, analytics kind, scenario or None)."""
Token = tuple[Any, ...]
"""(portfolio updated_at, cache created_at, cache data_date, positions hash)."""

log = logging.getLogger(__name__)
_IDS_PER_QUERY = 500


@dataclass(frozen=True, slots=True)
class MemoEntry:
    """One answer: the token of the cache row it came from, the answer, its owner."""

    token: Token
    answer: dict[str, Any]
    owner_id: str

    @property
    def data_date(self) -> dt.date:
        """The data date of the answer (the cache row's)."""
        return self.token[2]


_TOKENS = portfolio_repo.analytics_tokens_query()


def row_token(row: Any) -> Token:
    """The token of one row of ``portfolio_repo.analytics_tokens_query``."""
    return (row.updated_at, row.created_at, row.data_date, row.positions_hash)


async def stored_token(conn: AsyncConnection, portfolio_id: str, kind: str
                       ) -> tuple[str, Token | None] | None:
    """(owner id, token of its ``kind`` cache row or None when there is none) of a live
    portfolio; None when the portfolio does not exist or is deleted."""
    rows = (await conn.execute(_TOKENS, {"ids": [portfolio_id]})).all()
    if not rows:
        return None
    row = next((r for r in rows if r.kind == kind), None)
    return rows[0].owner_id, None if row is None else row_token(row)


LatestDay = Callable[[AsyncEngine], Awaitable["dt.date | None"]]


@dataclass
class AnalyticsMemo(BulkValidated):
    """The memo of one engine: bounded to ``size`` entries (cleared whole when full).

    ``interval``: seconds between bulk validations, started in the background by the
    first read that finds one due (no request waits for it). ``max_age``: entries are
    served only while the last validation started less than this ago; past it, reads wait
    for the validation in flight (the bound holds even when the database is slow).
    """

    interval: float = 1.0
    max_age: float = 5.0
    size: int = 2000
    entries: dict[MemoKey, MemoEntry] = field(default_factory=dict)
    validated_at: float = float("-inf")
    _task: asyncio.Task[int] | None = None
    what = "analytics memo"

    def get(self, key: MemoKey, owner_id: str) -> MemoEntry | None:
        """The entry of ``key`` if ``owner_id`` owns it (another owner sees nothing)."""
        hit = self.entries.get(key)
        return hit if hit is not None and hit.owner_id == owner_id else None

    def put(self, key: MemoKey, entry: MemoEntry) -> None:
        if len(self.entries) >= self.size and key not in self.entries:
            self.entries.clear()
        self.entries[key] = entry

    def forget(self, portfolio_id: str) -> None:
        """Drop every entry of ``portfolio_id`` (it is being changed here)."""
        for key in [k for k in self.entries if k[0] == portfolio_id]:
            self.entries.pop(key, None)

    async def ensure_valid(self, engine: AsyncEngine, latest_day: LatestDay) -> None:
        """Before a read: start a bulk validation in the background when one is due; wait
        for it only when the entries are older than ``max_age``. A failed validation
        (database unreachable) drops every entry: reads then go to the database."""
        await self._ensure_valid(lambda: self.validate(engine, latest_day))

    def _entries(self) -> dict[MemoKey, MemoEntry]:
        return self.entries

    async def validate(self, engine: AsyncEngine, latest_day: LatestDay) -> int:
        """Drop every entry whose cache row changed or vanished, or whose data date is not
        ``latest_day(engine)`` (the latest stored data date); returns how many were dropped.
        Entries added while it runs are checked against the rows as they were read, which
        can only drop them (a needless recompute, never a stale answer)."""
        started = time.monotonic()
        day = await latest_day(engine)
        ids = sorted({k[0] for k in self.entries})
        tokens: dict[tuple[str, str], tuple[Token, str]] = {}
        async with reading(engine) as conn:
            for i in range(0, len(ids), _IDS_PER_QUERY):
                rows = await conn.execute(_TOKENS, {"ids": ids[i:i + _IDS_PER_QUERY]})
                for row in rows:
                    if row.kind is not None:
                        tokens[(row.id, row.kind)] = (row_token(row), row.owner_id)
        dropped = 0
        for key, entry in list(self.entries.items()):
            valid = (tokens.get((key[0], key[1])) == (entry.token, entry.owner_id)
                     and day is not None and entry.data_date == day)
            if not valid and self.entries.get(key) is entry:
                del self.entries[key]
                dropped += 1
        self.validated_at = started
        return dropped
