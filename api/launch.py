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
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncEngine

from core import launch
from core.services import history_jobs, onboarding_queue
from flows import launcher as flows_launcher

log = logging.getLogger(__name__)


def flow_launcher() -> launch.FlowLauncher:
    """The launcher the API installs (tests replace this function to record launches)."""
    return flows_launcher.PrefectLauncher()


async def _resume(what: str, reset_stuck: Callable[[AsyncEngine | None], Awaitable[int]],
                  start: Callable[[], Awaitable[str]], engine: AsyncEngine | None,
                  idle: Callable[[], None] | None = None) -> int:
    """Put the jobs of runs that died back in their queue and, if any job waits, start the
    flow that works it (else ``idle``). Returns the jobs waiting (0 when the queue could not
    be read: the API serves without it, and the next request starts the queue again)."""
    try:
        waiting = await reset_stuck(engine)
        if waiting:
            log.info("%s resumed: %d waiting (%s)", what, waiting, await start())
        elif idle is not None:
            idle()
        return waiting
    except Exception:
        log.exception("could not resume the %s", what)
        return 0


async def resume_onboarding(engine: AsyncEngine | None = None) -> int:
    """Reset the onboarding jobs of runs that died and, if any job is pending, start the
    queue; else warm Prefect up. Returns the number of pending jobs."""
    return await _resume("onboarding queue", onboarding_queue.reset_stuck,
                         lambda: launch.launcher().start_onboarding(), engine,
                         lambda: launch.launcher().warm_up())


async def resume_history(engine: AsyncEngine | None = None) -> int:
    """Queue again the history jobs of runs that died and, if any job is queued, start the
    history flow. Returns the number of queued jobs."""
    return await _resume("history builds", history_jobs.reset_stuck,
                         lambda: launch.launcher().start_history(), engine)


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
