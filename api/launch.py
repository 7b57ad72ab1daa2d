"""The API's start-up and shutdown around flows: the only api module that imports ``flows``.

At start-up it installs the flow launcher core uses (``core.launch``; the real one is
``flows/launcher.py``), puts back to ``pending`` the onboarding jobs of runs that died and
starts the queue when some wait, or else warms Prefect's local server up, and does the same
for the queued history builds; at shutdown it stops the local Prefect servers the API
started.

May import: core, ``flows.launcher``. Nothing else of flows.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from core import launch
from core.services import history_jobs, onboarding_queue
from flows import launcher as flows_launcher

log = logging.getLogger(__name__)


def flow_launcher() -> launch.FlowLauncher:
    """The launcher the API installs (tests replace this function to record launches)."""
    return flows_launcher.PrefectLauncher()


async def resume_onboarding(engine: AsyncEngine | None = None) -> int:
    """Reset the jobs of runs that died and, if any job is pending, start the queue; else warm
    Prefect up. Returns the number of pending jobs (0 when the queue could not be read)."""
    try:
        pending = await onboarding_queue.reset_stuck(engine)
        if pending:
            log.info("onboarding queue resumed: %d pending (%s)", pending,
                     await launch.launcher().start_onboarding())
        else:
            launch.launcher().warm_up()
        return pending
    except Exception:  # the API serves without it; the next request starts the queue again
        log.exception("could not resume the onboarding queue")
        return 0


async def resume_history(engine: AsyncEngine | None = None) -> int:
    """Queue again the history jobs of runs that died and, if any job is queued, start the
    history flow. Returns the number of queued jobs (0 when the queue could not be read)."""
    try:
        queued = await history_jobs.reset_stuck(engine)
        if queued:
            log.info("history builds resumed: %d queued (%s)", queued,
                     await launch.launcher().start_history())
        return queued
    except Exception:  # the API serves without it; the next request starts the queue again
        log.exception("could not resume the history builds")
        return 0


@asynccontextmanager
async def flows_around_api(engine: AsyncEngine) -> AsyncIterator[None]:
    """Install the launcher and resume the queue for the API's life; then stop the local
    Prefect servers it started (not those running before, e.g. a test harness's)."""
    running_before = flows_launcher.local_prefect_servers()
    previous = launch.install(flow_launcher())
    try:
        await resume_onboarding(engine)
        await resume_history(engine)
        flows_launcher.freeze_long_lived_objects()
        yield
    finally:
        launch.install(previous)
        flows_launcher.stop_local_prefect(keep=running_before)
