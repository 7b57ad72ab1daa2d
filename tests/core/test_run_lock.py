"""Run locks owned by live processes (core/run_lock.py), on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import datetime as dt
import os
import socket
import subprocess

import pytest

from core import run_lock
from core.run_lock import LockHeld, LockOwner, process_token
from tests.conftest import wait_until


def owner(name: str, pid: int, host: str | None = None, flow_run_id: str | None = None
          ) -> LockOwner:
    return LockOwner(name, host or socket.gethostname(), pid, process_token(pid), flow_run_id)


@pytest.fixture
def live_pid():
    proc = subprocess.Popen(["sleep", "60"])
    yield proc.pid
    proc.kill()
    proc.wait()


@pytest.fixture
def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


def test_a_live_holder_keeps_the_lock_and_a_dead_one_loses_it_at_once(
    database_url: str, live_pid: int, dead_pid: int,
) -> None:
    me = owner("me", os.getpid())
    asyncio.run(run_lock.acquire("job", owner("live", live_pid)))
    with pytest.raises(LockHeld, match=f"pid {live_pid}"):
        asyncio.run(run_lock.acquire("job", me))
    asyncio.run(run_lock.release("job", "live"))
    asyncio.run(run_lock.acquire("job", owner("dead", dead_pid)))
    state = asyncio.run(run_lock.acquire("job", me))
    assert state.holder == "me" and state.pid == os.getpid() and state.alive is True
    again = asyncio.run(run_lock.acquire("job", me))  # a retried run re-takes its own lock
    assert again.holder == "me"


def test_a_reused_pid_is_not_mistaken_for_the_holder(database_url: str, live_pid: int) -> None:
    impostor = LockOwner("old", socket.gethostname(), live_pid, "1")  # another start time
    asyncio.run(run_lock.acquire("job", impostor))
    assert asyncio.run(run_lock.acquire("job", owner("me", os.getpid()))).holder == "me"


def test_another_hosts_holder_is_trusted_until_its_heartbeat_stops(database_url: str) -> None:
    remote = LockOwner("remote", "another-host", 12345, "1")
    asyncio.run(run_lock.acquire("job", remote, ttl=dt.timedelta(seconds=60)))
    me = owner("me", os.getpid())
    with pytest.raises(LockHeld, match="another-host"):
        asyncio.run(run_lock.acquire("job", me))
    # the orchestrator says the remote run ended: taken over at once
    asked: list[str | None] = []

    def ended(state: run_lock.LockState) -> bool:
        asked.append(state.holder)
        return True

    assert asyncio.run(run_lock.acquire("job", me, holder_gone=ended)).holder == "me"
    assert asked == ["remote"]
    asyncio.run(run_lock.release("job", "me"))
    asyncio.run(run_lock.acquire("job", remote, ttl=dt.timedelta(seconds=-1)))  # stopped beating
    assert asyncio.run(run_lock.acquire("job", me)).holder == "me"


def test_the_heartbeat_pushes_the_expiry_and_stops_when_the_lock_is_lost(
    database_url: str,
) -> None:
    me = owner("me", os.getpid())
    first = asyncio.run(run_lock.acquire("job", me, ttl=dt.timedelta(seconds=30)))
    with run_lock.Heartbeat("job", "me", ttl=dt.timedelta(seconds=300), every=0.05):
        def pushed() -> bool:
            lock = asyncio.run(run_lock.list_locks())[0]
            return lock.expires_at > first.expires_at + dt.timedelta(seconds=200)

        wait_until(pushed, "the heartbeat to push the lock's expiry", every=0.05)
    assert not asyncio.run(run_lock.extend("job", "someone-else"))


def test_waiting_for_a_lock_gives_up_after_the_bound(database_url: str, live_pid: int) -> None:
    asyncio.run(run_lock.acquire("job", owner("live", live_pid)))
    with pytest.raises(LockHeld):
        asyncio.run(run_lock.acquire_waiting("job", owner("me", os.getpid()), 0.3,
                                             poll_seconds=0.1))
