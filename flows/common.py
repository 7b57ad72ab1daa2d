"""Shared wiring for the flows: task runner, batch-run rows, JSON-friendly summaries, the
Prefect state of a lock holder.

May import core and Prefect; not api, cli or a flow module.
"""

from __future__ import annotations

import asyncio
import ctypes
import dataclasses
import datetime as dt
import logging
import os
import threading
import uuid
from typing import Any, TypeVar

from prefect.task_runners import ThreadPoolTaskRunner
from prefect.utilities.annotations import quote

from core.db.engine import transaction
from core.db.errors import short_error
from core.db.models import RunStatus
from core.repositories import batch_runs
from core.run_lock import LockState, process_alive, this_process
from core.settings import get_settings


def task_runner() -> Any:
    """The chunk tasks' runner: a thread pool of ``FACTORFLOW_MAX_WORKERS`` threads, or, with
    ``FACTORFLOW_DASK_ADDRESS`` set, the Dask cluster at that address (``prefect-dask``).

    With Dask, ``PREFECT_API_URL`` must point at a real Prefect server: in ephemeral mode
    every Dask worker would start its own server and runs can hang.
    """
    settings = get_settings()
    if settings.dask_address:
        from prefect_dask import DaskTaskRunner

        return DaskTaskRunner(address=settings.dask_address)
    return ThreadPoolTaskRunner(max_workers=settings.max_workers)


def jsonable(value: Any) -> Any:
    """Dates as ISO strings, dataclasses as dicts, recursively."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return jsonable(dataclasses.asdict(value))
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple | set):
        return [jsonable(v) for v in value]
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, float):
        return round(value, 6)
    return value


def _process_dead(row: Any) -> bool:
    return process_alive(row.host, row.pid, row.process_token) is False


async def record_start(
    job_type: str, target: dt.date, start: dt.date | None, flow_run_id: str | None,
    close_crashed: bool = False,
) -> str:
    """Insert the ``running`` batch-run row (with this process' host, pid and start time).

    First mark the job's runs left ``running`` by a dead process as ``crashed``: with
    ``close_crashed`` (the caller holds the job's run lock) every such row, else those
    whose process on this host is gone.
    """
    owner = this_process(flow_run_id or "")
    async with transaction() as conn:
        closed = await batch_runs.close_crashed(
            conn, job_type, None if close_crashed else _process_dead)
        if closed:
            logging.getLogger(__name__).warning(
                "%s: %d earlier run(s) left running by a dead process marked crashed",
                job_type, closed)
        return await batch_runs.start_run(conn, job_type, target, start, flow_run_id,
                                          (owner.host, owner.pid, owner.process_token))


async def record_finish(
    run_id: str,
    status: RunStatus,
    counts: dict[str, Any],
    phases: dict[str, float],
    errors: dict[str, Any],
) -> None:
    """Close the batch-run row."""
    async with transaction() as conn:
        await batch_runs.finish_run(
            conn, run_id, status, jsonable(counts), jsonable(phases), jsonable(errors)
        )


def record_failure(run_id: str, phases: dict[str, float], errors: dict[str, Any],
                   counts: dict[str, Any] | None = None) -> None:
    """Close the batch-run row as ``failed``. If even that cannot be written (the database
    is what failed), log it: the next run closes the row as ``crashed``."""
    try:
        asyncio.run(record_finish(run_id, RunStatus.failed, counts or {}, phases, errors))
    except Exception as exc:
        logging.getLogger(__name__).error("could not record the failure of run %s: %s",
                                          run_id, short_error(exc))


def prefect_run_ended(lock: LockState) -> bool:
    """True when Prefect knows the lock holder's flow run ended (crashed, failed,
    cancelled, completed): its lock may be taken over at once."""
    if not lock.flow_run_id:
        return False
    try:
        from prefect.client.orchestration import get_client

        with get_client(sync_client=True) as client:
            run = client.read_flow_run(uuid.UUID(lock.flow_run_id))
    except Exception:  # unknown run, other server, no server: cannot tell
        return False
    return bool(run.state is not None and run.state.is_final())


MALLOC_ARENAS = 2
"""glibc malloc arenas per flow process (``M_ARENA_MAX``)."""
_M_ARENA_MAX = -8  # the mallopt parameter, glibc malloc.h


def limit_malloc_arenas(arenas: int = MALLOC_ARENAS) -> bool:
    """Cap glibc's malloc arenas for this process (as ``MALLOC_ARENA_MAX`` would): by
    default each thread that allocates gets its own arena, up to 8 per core, and memory
    freed in one stays mapped there. A 10,000-symbol backfill peaked at 664 MB with the
    default, 485 MB with 2 arenas, and ran no slower. Returns False where there is no
    glibc (macOS, musl) or ``MALLOC_ARENA_MAX`` is set (the operator's choice wins)."""
    if "MALLOC_ARENA_MAX" in os.environ:
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
        return bool(libc.mallopt(_M_ARENA_MAX, arenas))
    except (OSError, AttributeError):
        return False


limit_malloc_arenas()

T = TypeVar("T")


def bulk(value: T) -> quote[T]:
    """``value`` (a large task parameter or result: a universe, a chunk of symbols) in a
    Prefect ``quote``: Prefect then does not visit its items to look for futures and states
    (10,000 symbols: ~0.4 s of the flow's thread per parameter or result). A task called
    in the flow's thread receives a quoted parameter unwrapped (a task mapped onto a Dask
    runner would get the quote itself: chunks are not quoted); a quoted result is unwrapped
    with ``.unquote()``."""
    return quote(value)


def shared(value: T) -> T | quote[T]:
    """``value`` (a large parameter every mapped chunk task shares) quoted as by :func:`bulk`
    on the thread runner, so Prefect does not walk it once per chunk; left as it is on a
    Dask runner, whose workers would receive the quote as a plain tuple."""
    from prefect.context import FlowRunContext

    context = FlowRunContext.get()
    threads = context is not None and type(context.task_runner) is ThreadPoolTaskRunner
    return quote(value) if threads else value


_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}
_slots_lock = threading.Lock()


def concurrency_slots(kind: str, n: int) -> threading.BoundedSemaphore:
    """The process's semaphore of ``n`` slots for the chunk tasks of ``kind``: a chunk task
    holds one while it works, the others wait idle (the thread runner starts them all)."""
    with _slots_lock:
        return _slots.setdefault((kind, n), threading.BoundedSemaphore(n))
