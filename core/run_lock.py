"""Run locks that belong to a live run: one symbol batch, one portfolio refresh at a time.

A lock row (``run_locks``) names its holder (the flow run), the holder's process (host,
pid, and the process' start time so a reused pid is not mistaken for it) and an expiry
that the holder's :class:`Heartbeat` pushes forward. Another run takes the lock over
**at once** when the holder is gone: its process on this host is dead, or Prefect says
its flow run ended (crashed, failed, cancelled — the caller passes that check in, as
core/ knows nothing of Prefect), or, for a holder on another host that stopped beating,
after at most one TTL.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import os
import socket
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.engine import flow_engine, reading, transaction
from core.db.models import RunLock
from core.db.types import as_utc
from core.db.upsert import upsert_statement

logger = logging.getLogger(__name__)

_locks = RunLock.__table__  # type: ignore[attr-defined]

LOCK_TTL = dt.timedelta(seconds=120)
"""How long a lock outlives its holder's last heartbeat (holders on other hosts)."""
HEARTBEAT_SECONDS = 30.0


class LockHeld(Exception):
    """Another live run holds the lock."""


@dataclass(frozen=True)
class LockOwner:
    """Who takes a lock: the run (``holder``) and its process."""

    holder: str
    host: str
    pid: int
    process_token: str | None
    flow_run_id: str | None = None


@dataclass(frozen=True)
class LockState:
    """A lock row, and whether its holder looks alive from here (None: cannot tell)."""

    name: str
    holder: str
    acquired_at: dt.datetime
    expires_at: dt.datetime
    host: str | None
    pid: int | None
    process_token: str | None
    flow_run_id: str | None
    alive: bool | None = None

    def describe(self) -> str:
        """``run <holder> (pid <pid> on <host>, since <time> UTC)``."""
        where = f"pid {self.pid} on {self.host}" if self.pid else "unknown process"
        return f"run {self.holder} ({where}, since {self.acquired_at:%Y-%m-%d %H:%M:%S} UTC)"


def process_token(pid: int) -> str | None:
    """The start time of process ``pid`` in clock ticks since boot (Linux), else None."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def this_process(holder: str, flow_run_id: str | None = None) -> LockOwner:
    """The owner record of the calling process for run ``holder``."""
    pid = os.getpid()
    return LockOwner(holder, socket.gethostname(), pid, process_token(pid), flow_run_id)


def process_alive(host: str | None, pid: int | None, token: str | None) -> bool | None:
    """Whether the process that took a lock still runs: None when it is on another host."""
    if host != socket.gethostname() or not pid:
        return None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    now = process_token(pid)
    return not (token and now and now != token)


def _state(row: sa.Row) -> LockState:
    return LockState(row.name, row.holder, as_utc(row.acquired_at), as_utc(row.expires_at),
                     row.host, row.pid, row.process_token, row.flow_run_id,
                     process_alive(row.host, row.pid, row.process_token))


async def _read(engine: AsyncEngine, name: str) -> LockState | None:
    async with reading(engine) as conn:
        row = (await conn.execute(sa.select(_locks).where(_locks.c.name == name))).first()
    return _state(row) if row is not None else None


def _values(owner: LockOwner, now: dt.datetime, ttl: dt.timedelta) -> dict:
    return {"holder": owner.holder, "acquired_at": now, "expires_at": now + ttl,
            "host": owner.host, "pid": owner.pid, "process_token": owner.process_token,
            "flow_run_id": owner.flow_run_id}


async def acquire(
    name: str,
    owner: LockOwner,
    ttl: dt.timedelta = LOCK_TTL,
    holder_gone: Callable[[LockState], bool] | None = None,
    engine: AsyncEngine | None = None,
) -> LockState:
    """Take lock ``name`` for ``owner``, or take it over from a holder that is gone.

    ``holder_gone`` (optional, blocking; run in a thread) tells whether the holder's run
    ended according to the orchestrator. Raises ``LockHeld`` naming the live holder.
    The same holder (a retried run) re-takes its own lock.
    """
    engine = engine or flow_engine()
    now = dt.datetime.now(dt.UTC)
    async with transaction(engine) as conn:
        await conn.execute(upsert_statement(conn, _locks, ["name"], update=()).values(
            name=name, **_values(owner, now, ttl)))
    state = await _read(engine, name)
    assert state is not None
    if state.holder != owner.holder:
        gone = state.expires_at < now or state.alive is False
        if not gone and holder_gone is not None:
            gone = await asyncio.to_thread(holder_gone, state)
        if not gone:
            raise LockHeld(f"{name} is held by {state.describe()}")
        logger.warning("taking over %s from %s: its holder is gone", name, state.describe())
    async with transaction(engine) as conn:  # compare-and-swap on the holder we saw
        await conn.execute(sa.update(_locks).where(_locks.c.name == name,
                                                   _locks.c.holder == state.holder)
                           .values(**_values(owner, now, ttl)))
    state = await _read(engine, name)
    if state is None or state.holder != owner.holder:
        raise LockHeld(f"{name} was taken by another run at the same moment")
    return state


async def acquire_waiting(
    name: str,
    owner: LockOwner,
    wait_seconds: float,
    holder_gone: Callable[[LockState], bool] | None = None,
    poll_seconds: float = 2.0,
    engine: AsyncEngine | None = None,
) -> LockState:
    """:func:`acquire`, retried every ``poll_seconds`` for up to ``wait_seconds``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + wait_seconds
    while True:
        try:
            return await acquire(name, owner, holder_gone=holder_gone, engine=engine)
        except LockHeld:
            if loop.time() >= deadline:
                raise
        await asyncio.sleep(min(poll_seconds, max(0.0, deadline - loop.time())))


async def release(name: str, holder: str, engine: AsyncEngine | None = None) -> None:
    """Drop lock ``name`` if ``holder`` holds it."""
    async with transaction(engine or flow_engine()) as conn:
        await conn.execute(sa.delete(_locks).where(_locks.c.name == name,
                                                   _locks.c.holder == holder))


async def extend(name: str, holder: str, ttl: dt.timedelta = LOCK_TTL,
                 engine: AsyncEngine | None = None) -> bool:
    """Push the expiry of ``holder``'s lock forward; False when it no longer holds it."""
    async with transaction(engine or flow_engine()) as conn:
        result = await conn.execute(
            sa.update(_locks).where(_locks.c.name == name, _locks.c.holder == holder)
            .values(expires_at=dt.datetime.now(dt.UTC) + ttl))
    return bool(result.rowcount)


async def list_locks(engine: AsyncEngine | None = None) -> list[LockState]:
    """Every lock, with whether its holder looks alive from this host."""
    async with reading(engine or flow_engine()) as conn:
        rows = (await conn.execute(sa.select(_locks).order_by(_locks.c.name))).all()
    return [_state(r) for r in rows]


async def clear(name: str, force: bool = False, engine: AsyncEngine | None = None) -> LockState:
    """Remove lock ``name`` (an operator's command). Refuses a holder alive on this host
    unless ``force``. Raises ``KeyError`` when there is no such lock."""
    engine = engine or flow_engine()
    state = await _read(engine, name)
    if state is None:
        raise KeyError(name)
    if state.alive and not force:
        raise LockHeld(f"{name} is held by {state.describe()}, which is alive; "
                       "use --force to remove it anyway")
    await release(name, state.holder, engine)
    return state


class Beat:
    """Calls ``beat()`` every ``every`` seconds in a daemon thread while the ``with`` block
    runs; ``beat`` returns False to stop beating. A beat that raises is logged and retried at
    the next one (whatever it renews must outlive a few missed beats)."""

    def __init__(self, beat: Callable[[], bool], every: float, name: str) -> None:
        self.beat, self.every, self.name = beat, every, name
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Beat:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            try:
                if not self.beat():
                    return
            except Exception as exc:
                logger.warning("%s failed: %s", self.name, exc)


class Heartbeat(Beat):
    """Keeps a held lock from expiring while its run goes on (a daemon thread)."""

    def __init__(self, name: str, holder: str, ttl: dt.timedelta = LOCK_TTL,
                 every: float = HEARTBEAT_SECONDS, engine: AsyncEngine | None = None) -> None:
        self.lock, self.holder, self.ttl, self.engine = name, holder, ttl, engine
        super().__init__(self._extend, every, f"heartbeat of {name}")

    def _extend(self) -> bool:
        if asyncio.run(extend(self.lock, self.holder, self.ttl, self.engine)):
            return True
        logger.warning("lost lock %s (taken over by another run)", self.lock)
        return False
