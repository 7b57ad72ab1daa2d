"""Named run locks in the database: one holder at a time, with an expiry for crashed holders."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.models import RunLock
from core.db.upsert import upsert_statement

L = RunLock.__table__  # type: ignore[attr-defined]


@dataclass(frozen=True)
class LockState:
    """Who holds a lock and until when."""

    name: str
    holder: str
    expires_at: dt.datetime


def _aware(t: dt.datetime) -> dt.datetime:
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)  # SQLite returns naive UTC


async def acquire(
    conn: AsyncConnection, name: str, holder: str, ttl: dt.timedelta,
    now: dt.datetime | None = None,
) -> LockState:
    """Try to take lock ``name`` for ``holder``; returns the lock's state afterwards.

    The caller holds the lock when the returned ``holder`` is its own. A lock whose
    expiry passed (its holder crashed) is taken over; the same holder re-acquires it
    (a retried run) and extends it.
    """
    now = now or dt.datetime.now(dt.UTC)
    await conn.execute(upsert_statement(conn, L, ["name"], update=()).values(
        name=name, holder=holder, acquired_at=now, expires_at=now + ttl))
    row = (await conn.execute(sa.select(L).where(L.c.name == name))).one()
    if row.holder != holder and _aware(row.expires_at) < now:
        await conn.execute(sa.update(L).where(L.c.name == name, L.c.holder == row.holder)
                           .values(holder=holder, acquired_at=now, expires_at=now + ttl))
    elif row.holder == holder:
        await conn.execute(sa.update(L).where(L.c.name == name, L.c.holder == holder)
                           .values(expires_at=now + ttl))
    row = (await conn.execute(sa.select(L).where(L.c.name == name))).one()
    return LockState(row.name, row.holder, _aware(row.expires_at))


async def release(conn: AsyncConnection, name: str, holder: str) -> None:
    """Drop lock ``name`` if ``holder`` holds it."""
    await conn.execute(sa.delete(L).where(L.c.name == name, L.c.holder == holder))
