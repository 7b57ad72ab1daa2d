"""Onboarding claims have an owner and a heartbeat: a restart resets only the jobs whose
claimer is gone, never those a live run on this or another host is working on."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import subprocess
import sys

import sqlalchemy as sa


async def _scenario(url: str, dead_pid: int) -> dict[str, str]:
    from core.db.engine import create_engine, transaction
    from core.db.models import OnboardingJob
    from core.run_lock import process_token
    from core.services import onboarding_queue as onboarding

    engine = create_engine(url)
    j = OnboardingJob.__table__  # type: ignore[attr-defined]
    now = dt.datetime.now(dt.UTC)
    me, here = os.getpid(), socket.gethostname()
    claims = {
        "LIVE": (here, me, process_token(me), now),  # this process: alive
        "DEAD": (here, dead_pid, "1", now),  # its process has exited
        "REUSED": (here, me, "1", now),  # the pid lives on, but is another process now
        "AWAY": ("elsewhere", 42, "7", now),  # another host, beating
        "SILENT": ("elsewhere", 42, "7", now - dt.timedelta(minutes=10)),  # no beat for 10 min
        "OLD": (None, None, None, None),  # claimed before claims had owners
    }
    try:
        async with transaction(engine) as conn:
            for sym, (host, pid, token, beat) in claims.items():
                await conn.execute(sa.insert(j).values(
                    symbol=sym, status="processing", attempts=1, portfolio_ids=[],
                    requested_at=now, host=host, pid=pid, process_token=token,
                    heartbeat_at=beat))
        pending = await onboarding.reset_stuck(engine)
        async with transaction(engine) as conn:
            rows = dict((await conn.execute(sa.select(j.c.symbol, j.c.status))).all())
        assert pending == sum(1 for v in rows.values() if v == "pending")

        # a claim made here records this process; the heartbeat renews it
        async with transaction(engine) as conn:
            await conn.execute(sa.insert(j).values(
                symbol="NEW", status="pending", attempts=0, portfolio_ids=[], requested_at=now))
        claim = await onboarding.claim(10, engine)
        assert "NEW" in claim.symbols
        async with transaction(engine) as conn:
            row = (await conn.execute(sa.select(j).where(j.c.symbol == "NEW"))).one()
        assert (row.host, row.pid, row.process_token) == (here, me, process_token(me))
        # the jobs just claimed (NEW and the 4 reset ones) and LIVE are this process's
        assert sorted(claim.symbols) == ["DEAD", "NEW", "OLD", "REUSED", "SILENT"]
        assert await onboarding.renew_claims(engine) == 6
        await onboarding.finish({"NEW": None}, engine)
        async with transaction(engine) as conn:
            row = (await conn.execute(sa.select(j).where(j.c.symbol == "NEW"))).one()
        assert (row.status, row.host, row.heartbeat_at) == ("done", None, None)
        return rows
    finally:
        await engine.dispose()


def test_only_jobs_of_gone_claimers_are_reset(database_url: str) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    rows = asyncio.run(_scenario(database_url, dead.pid))
    assert rows == {"LIVE": "processing", "AWAY": "processing", "DEAD": "pending",
                    "REUSED": "pending", "SILENT": "pending", "OLD": "pending"}
