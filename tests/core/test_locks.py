"""Run locks: one holder at a time, the same holder re-acquires, an expired lock is taken over."""

from __future__ import annotations

import asyncio
import datetime as dt

from core.db.engine import transaction
from core.repositories import locks

T0 = dt.datetime(2026, 11, 20, 21, 0, tzinfo=dt.UTC)
TTL = dt.timedelta(hours=2)


async def _acquire(holder: str, now: dt.datetime) -> str:
    async with transaction() as conn:
        return (await locks.acquire(conn, "symbol-batch:2026-11-20", holder, TTL, now)).holder


def test_lock_lifecycle(database_url: str) -> None:
    assert asyncio.run(_acquire("run-a", T0)) == "run-a"
    assert asyncio.run(_acquire("run-b", T0 + dt.timedelta(minutes=5))) == "run-a"
    assert asyncio.run(_acquire("run-a", T0 + dt.timedelta(minutes=6))) == "run-a"  # a retry
    # run-a crashed: after its expiry run-b takes over
    assert asyncio.run(_acquire("run-b", T0 + dt.timedelta(hours=3))) == "run-b"

    async def release(holder: str) -> None:
        async with transaction() as conn:
            await locks.release(conn, "symbol-batch:2026-11-20", holder)

    asyncio.run(release("run-a"))  # not the holder: nothing happens
    assert asyncio.run(_acquire("run-c", T0 + dt.timedelta(hours=3))) == "run-b"
    asyncio.run(release("run-b"))
    assert asyncio.run(_acquire("run-c", T0 + dt.timedelta(hours=3))) == "run-c"
