"""The one place that starts flows outside a schedule: a deployment run when a Prefect API
is configured, the flow in a background thread of this process otherwise.

It also owns what in-process runs need: Prefect's local server started once (safely from any
thread), its warm-up, and stopping the servers this process started. The onboarding queue
itself (claim, release, close) is ``core/services/onboarding_queue.py``, with no Prefect in it;
core reaches this module only through the port ``core/launch.py`` that the API
(``api/launch.py``) and the CLI install.

May import: core, Prefect, the flows it starts. Not api, not cli.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import gc
import inspect
import logging
import os
import threading
import time
from collections.abc import Collection
from typing import Any

from core.errors import Conflict, NotReady

log = logging.getLogger(__name__)

ONBOARDING_DEPLOYMENT = "onboarding/onboarding"
HISTORY_DEPLOYMENT = "portfolio-history/portfolio-history"
SYMBOL_BATCH_DEPLOYMENT = "symbol-batch/symbol-batch"
RUN_ATTEMPTS = 3
RETRY_DELAYS_S = (5.0, 30.0)

_local_prefect_lock = threading.Lock()
_runner_lock = threading.Lock()
_runner: threading.Thread | None = None
_again = threading.Event()
_history_lock = threading.Lock()
_history_runner: threading.Thread | None = None
_history_again = threading.Event()
_batch_lock = threading.Lock()
_batch_thread: threading.Thread | None = None


def prefect_api_configured() -> bool:
    """True when flows go to a Prefect server (``PREFECT_API_URL`` in the environment), not
    in-process. The only place that reads it to choose."""
    return bool(os.environ.get("PREFECT_API_URL"))


def start_local_prefect() -> None:
    """Without a Prefect API, start Prefect's local server now, once, safely from any thread.

    Prefect starts it on the first client of the process, but two threads doing so at the
    same time race (Prefect 3.8: the second sees it "running" before its process exists and
    fails with "Server process did not start"). The warm-up, the onboarding runner and the
    API's symbol batch all come through here first, one at a time.
    """
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return
    from prefect.server.api.server import SubprocessASGIServer

    with _local_prefect_lock:
        SubprocessASGIServer().start()


# --- onboarding ------------------------------------------------------------------------------

def _run_onboarding_in_process() -> None:
    """The runner thread: the onboarding flow until no request arrived meanwhile. A run that
    fails (Prefect not reachable, a database error) is tried again after a pause, up to
    ``RUN_ATTEMPTS`` times; its jobs stay queued either way and start-up resumes them."""
    from flows.onboarding import onboarding

    failures = 0
    while True:
        _again.clear()
        try:
            start_local_prefect()
            onboarding()
            failures = 0
        except NotReady as exc:  # no market data yet: the first symbol batch closes the jobs
            log.warning("onboarding waits: %s", exc)
            return
        except Exception:  # the flow records its own failure; keep the API alive
            failures += 1
            log.exception("onboarding flow failed (attempt %d of %d)", failures, RUN_ATTEMPTS)
            if failures >= RUN_ATTEMPTS:
                return
            time.sleep(RETRY_DELAYS_S[min(failures, len(RETRY_DELAYS_S)) - 1])
            continue
        if not _again.is_set():
            return


def dispatch_onboarding() -> str:
    """Start processing the onboarding queue without waiting for it.

    With a Prefect API, a run of the ``onboarding`` deployment is created
    (``run_deployment(..., timeout=0)``; a worker or ``factorflow serve`` executes it).
    Otherwise the flow runs in this process in a background thread (one at a time; a
    request arriving meanwhile makes it run once more). Returns what was done.
    """
    global _runner
    if prefect_api_configured():
        from prefect.deployments import run_deployment

        run_deployment(ONBOARDING_DEPLOYMENT, timeout=0)
        return "deployment"
    with _runner_lock:
        if _runner is not None and _runner.is_alive():
            _again.set()
            return "in-process (queued behind the running flow)"
        _runner = threading.Thread(target=_run_onboarding_in_process, name="onboarding",
                                   daemon=True)
        _runner.start()
    return "in-process"


def wait_for_onboarding(timeout: float | None = None) -> bool:
    """Wait for the in-process onboarding runner (tests, shutdown); True when it is idle."""
    thread = _runner
    if thread is not None:
        thread.join(timeout)
        return not thread.is_alive()
    return True


# --- history builds -------------------------------------------------------------------------

def _run_history_in_process() -> None:
    """The history runner thread: the ``portfolio-history`` flow until no request arrived
    meanwhile (a failed run is not retried here: its jobs stay queued or go back to the
    queue, and the next request or start-up runs them)."""
    from flows.portfolio_history import portfolio_history

    while True:
        _history_again.clear()
        try:
            start_local_prefect()
            portfolio_history()
        except Exception:  # the jobs record their own outcome; keep the API alive
            log.exception("portfolio-history flow failed")
            return
        if not _history_again.is_set():
            return


def dispatch_history() -> str:
    """Start processing the queued history builds without waiting: a run of the
    ``portfolio-history`` deployment with a Prefect API, else the flow in a background
    thread of this process (one at a time; a request arriving meanwhile makes it run once
    more). Returns what was done."""
    global _history_runner
    if prefect_api_configured():
        from prefect.deployments import run_deployment

        run_deployment(HISTORY_DEPLOYMENT, timeout=0)
        return "deployment"
    with _history_lock:
        if _history_runner is not None and _history_runner.is_alive():
            _history_again.set()
            return "in-process (queued behind the running flow)"
        _history_runner = threading.Thread(target=_run_history_in_process,
                                           name="portfolio-history", daemon=True)
        _history_runner.start()
    return "in-process"


def wait_for_history(timeout: float | None = None) -> bool:
    """Wait for the in-process history runner (tests, shutdown); True when it is idle."""
    thread = _history_runner
    if thread is not None:
        thread.join(timeout)
        return not thread.is_alive()
    return True


# --- the symbol batch ------------------------------------------------------------------------

def _run_symbol_batch_in_process(as_of: dt.date) -> None:
    """The symbol flow in this process (the background thread's target)."""
    try:
        from flows.symbol_batch import symbol_batch

        start_local_prefect()
        symbol_batch(as_of=as_of)
    except BaseException:  # a thread has nobody to raise to: the batch_runs row tells
        log.exception("symbol batch started from the API failed")


async def start_symbol_batch(target: dt.date) -> dict[str, Any]:
    """Start the symbol flow for session ``target`` and return at once: a run of the
    ``symbol-batch`` deployment with a Prefect API, else the flow in a background thread of
    this process (``Conflict`` while the previous one still runs)."""
    global _batch_thread
    if prefect_api_configured():
        from prefect.deployments import run_deployment

        run = run_deployment(SYMBOL_BATCH_DEPLOYMENT, parameters={"as_of": target.isoformat()},
                             timeout=0)
        if inspect.isawaitable(run):  # Prefect's dispatch: a coroutine on an event loop
            run = await run
        return {"mode": "deployment", "flow_run_id": str(run.id),
                "deployment": SYMBOL_BATCH_DEPLOYMENT}
    with _batch_lock:
        if _batch_thread is not None and _batch_thread.is_alive():
            raise Conflict("a symbol batch started from this server is still running")
        _batch_thread = threading.Thread(target=_run_symbol_batch_in_process, args=(target,),
                                         name="symbol-batch", daemon=True)
        _batch_thread.start()
    return {"mode": "in-process", "flow_run_id": None, "deployment": None}


class PrefectLauncher:
    """The launcher core uses (``core.launch.FlowLauncher``) in the API and the CLI."""

    async def start_onboarding(self) -> str:
        return await asyncio.to_thread(dispatch_onboarding)

    async def start_history(self) -> str:
        return await asyncio.to_thread(dispatch_history)

    async def start_symbol_batch(self, target: dt.date) -> dict[str, Any]:
        return await start_symbol_batch(target)

    def warm_up(self) -> None:
        warm_up()


# --- the local server's life -----------------------------------------------------------------

def warm_up() -> None:
    """Without a Prefect API, start Prefect's local server in the background now, so the first
    onboarding run does not pay its ~10 s start-up while a user waits for a symbol."""
    if prefect_api_configured():
        return

    def _warm() -> None:
        try:
            from flows.onboarding import warm_up as prefect_warm_up

            start_local_prefect()
            prefect_warm_up()
        except Exception:  # only an optimisation
            log.exception("Prefect warm-up failed")
        freeze_long_lived_objects()

    threading.Thread(target=_warm, name="prefect-warm-up", daemon=True).start()


def freeze_long_lived_objects() -> None:
    """Move every object alive now out of the garbage collector's reach (``gc.freeze``).

    A long-running process that imported Prefect holds ~400,000 tracked objects; each full
    collection walked them all and stopped the event loop for ~250 ms, a few times a minute
    under load (the API's whole latency tail). Frozen, a full collection walks only what
    was created since: ~3 ms. Called once start-up (and the warm-up) has loaded its heap.
    """
    gc.collect()
    gc.freeze()


def local_prefect_servers() -> set[int]:
    """Identities of the local Prefect servers running in this process now (to leave them
    alone in :func:`stop_local_prefect`)."""
    try:
        from prefect.server.api.server import SubprocessASGIServer
    except ImportError:
        return set()
    return {id(server) for server in SubprocessASGIServer._instances.values()}


def stop_local_prefect(keep: Collection[int] = ()) -> None:
    """Stop the local Prefect servers this process started (warm-up or in-process flows), so
    stopping the API leaves no orphaned server behind; those in ``keep`` (see
    :func:`local_prefect_servers`: running before the API started, e.g. a test harness's)
    are left running."""
    if prefect_api_configured():
        return
    try:
        from prefect.server.api.server import SubprocessASGIServer
    except ImportError:
        return
    for server in list(SubprocessASGIServer._instances.values()):
        if id(server) in keep:
            continue
        try:
            server.stop()
        except Exception:  # shutting down anyway
            log.exception("could not stop the local Prefect server")

