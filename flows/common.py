"""Shared wiring for the flows: task runner, batch-run recording, JSON-friendly summaries."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from prefect.task_runners import ThreadPoolTaskRunner

from core.db.engine import transaction
from core.db.models import RunStatus
from core.repositories import batch_runs
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


async def record_start(
    job_type: str, target: dt.date, start: dt.date | None, flow_run_id: str | None
) -> str:
    """Insert the ``running`` batch-run row."""
    async with transaction() as conn:
        return await batch_runs.start_run(conn, job_type, target, start, flow_run_id)


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


class Progress:
    """A Prefect progress artifact, advanced one step per finished chunk (visible in the UI
    while a long run goes on)."""

    def __init__(self, steps: int, description: str) -> None:
        from prefect.artifacts import create_progress_artifact

        self.steps, self.done = max(steps, 1), 0
        self.id: Any = create_progress_artifact(progress=0.0, description=description)

    def step(self, description: str | None = None) -> None:
        from prefect.artifacts import update_progress_artifact

        self.done += 1
        update_progress_artifact(self.id, progress=min(100.0, 100.0 * self.done / self.steps),
                                 description=description)

    def restart(self, steps: int, description: str) -> None:
        """Start a new artifact for the next phase."""
        self.__init__(steps, description)  # type: ignore[misc]
