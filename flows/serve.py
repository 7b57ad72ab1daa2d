"""Serve the deployments of ``prefect.yaml`` from one process (``factorflow serve``).

The deployments are built from ``prefect.yaml`` itself — entrypoints, schedules (with their
parameters), event triggers, concurrency limits — so ``prefect deploy --all`` (work pool +
workers) and ``factorflow serve`` (one process) run the same definitions. With ``serve`` there
is no work pool and no worker: a Prefect runner in this process polls for the deployments'
runs and executes each in a subprocess.

What an operator sees on the console: where the Prefect UI and the server's state are, one
line when a run starts and one when it ends (deployment, run, parameters, final state,
duration), and one traceback per failed run (``flows.serve_logging``). SIGTERM or Ctrl-C
stops the runner (in-flight runs are cancelled, schedules paused, as Prefect's ``serve``
does), then the local server if this process started it, and exits 0.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from core.settings import REPO_ROOT
from flows.local_prefect import tied_popen

FINAL_STATES = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")
_CONSOLE_HANDLER = "flows.serve_logging.ServeConsoleHandler"


def deployment_specs(path: Path | None = None) -> list[dict[str, Any]]:
    """The ``deployments`` entries of ``prefect.yaml``."""
    spec = yaml.safe_load((path or REPO_ROOT / "prefect.yaml").read_text())
    return list(spec["deployments"])


def runner_deployments(path: Path | None = None) -> list[Any]:
    """``RunnerDeployment`` objects for ``prefect.serve`` from ``prefect.yaml``."""
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.flows import load_flow_from_entrypoint
    from prefect.schedules import Cron

    out = []
    for d in deployment_specs(path):
        flow = load_flow_from_entrypoint(str(REPO_ROOT / d["entrypoint"]))
        schedules = [
            Cron(s["cron"], timezone=s.get("timezone"), active=s.get("active", True),
                 parameters=s.get("parameters") or {})
            for s in d.get("schedules") or []
        ]
        triggers = [DeploymentEventTrigger.model_validate(t) for t in d.get("triggers") or []]
        out.append(flow.to_deployment(
            name=d["name"], description=d.get("description"), tags=d.get("tags"),
            parameters=d.get("parameters") or {}, schedules=schedules or None,
            triggers=triggers or None, concurrency_limit=d.get("concurrency_limit"),
        ))
    return out


def start_local_server(home: Path, port: int = 4200, timeout: float = 120, *,
                       ui: bool = False) -> tuple[subprocess.Popen[bytes], str]:
    """Start ``prefect server start`` on 127.0.0.1:``port``; return the process and its API
    URL once it answers its health check.

    Parameters
    ----------
    home
        The server's ``PREFECT_HOME``: its SQLite database ``prefect.db``, ``server.log`` (its
        output) and, with ``ui``, the UI's files.
    port
        TCP port on 127.0.0.1 (API under ``/api``, UI at ``/``).
    timeout
        Seconds to wait for the health check; the process is stopped if it does not answer.
    ui
        Serve the Prefect UI, its API URL set to this port.
    """
    url = f"http://127.0.0.1:{port}/api"
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "true" if ui else "false", "PREFECT_UI_API_URL": url}
    env.pop("PREFECT_API_URL", None)
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "ab")  # noqa: SIM115 (kept open for the server's life)
    # tied to this process: a SIGKILLed `serve` takes its server with it (no orphan)
    proc = tied_popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"prefect server exited (see {home / 'server.log'})")
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    return proc, url
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        raise RuntimeError(f"prefect server did not answer within {timeout:.0f} s")
    except BaseException:  # a timeout, or SIGTERM / Ctrl-C while waiting: no orphan server
        _stop_process(proc)
        raise


def _stop_process(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def use_serve_console(directory: Path) -> None:
    """Make this process, and the flow-run processes it starts, print each failure's traceback
    once (``flows.serve_logging``); call before Prefect is imported. A logging configuration of
    the operator's own (``PREFECT_LOGGING_SETTINGS_PATH``) is left as it is.

    Parameters
    ----------
    directory
        Where ``serve-logging.yml`` (Prefect's logging configuration, console handler
        replaced) is written.
    """
    if os.environ.get("PREFECT_LOGGING_SETTINGS_PATH"):
        return
    spec = importlib.util.find_spec("prefect")  # its logging.yml, without importing Prefect
    assert spec is not None and spec.submodule_search_locations
    default = Path(list(spec.submodule_search_locations)[0]) / "logging" / "logging.yml"
    config = yaml.safe_load(default.read_text())
    config["handlers"]["console"]["class"] = _CONSOLE_HANDLER
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "serve-logging.yml"
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    os.environ["PREFECT_LOGGING_SETTINGS_PATH"] = str(path)


def _say(text: str) -> None:
    print(f"{dt.datetime.now():%Y-%m-%d %H:%M:%S} | {text}", flush=True)


def _run_line(verb: str, deployment: str, run: Any, extra: str = "") -> str:
    parameters = json.dumps(run.parameters, default=str)
    return (f"{verb} | {deployment} | run {run.name!r} ({run.id}) | parameters {parameters}"
            + (f" | {extra}" if extra else ""))


async def report_runs(deployments: dict[str, str]) -> None:
    """Print one line when a run of ``deployments`` starts and one when it ends, until
    cancelled; follows the Prefect server's event stream.

    Parameters
    ----------
    deployments
        Deployment id → ``flow/deployment`` name.
    """
    from prefect.client.orchestration import get_client
    from prefect.events.clients import get_events_subscriber
    from prefect.events.filters import EventFilter, EventNameFilter, EventOccurredFilter

    now = dt.datetime.now(dt.UTC)
    live = EventFilter(  # from now on; `until` defaults to now, which would end the stream
        occurred=EventOccurredFilter(since=now, until=now + dt.timedelta(days=365 * 100)),
        event=EventNameFilter(prefix=["prefect.flow-run."]))
    started: dict[str, dt.datetime] = {}
    async with get_client() as client, get_events_subscriber(
            filter=live, reconnect_on_clean_close=True) as events:
        async for event in events:
            related = event.resource_in_role.get("deployment")
            deployment = deployments.get(related.id.removeprefix("prefect.deployment.")
                                         if related else "")
            state = event.resource.get("prefect.state-type")
            if deployment is None or state not in ("RUNNING", *FINAL_STATES):
                continue
            run_id = event.resource.id.removeprefix("prefect.flow-run.")
            run = await client.read_flow_run(run_id)  # type: ignore[arg-type]
            if state == "RUNNING":
                started[run_id] = event.occurred
                attempt = f"attempt {run.run_count}" if run.run_count > 1 else ""
                _say(_run_line("run started", deployment, run, attempt))
                continue
            begun = started.pop(run_id, None)
            seconds = ((event.occurred - begun).total_seconds() if begun is not None
                       else run.total_run_time.total_seconds())
            name = event.resource.get("prefect.state-name") or state.title()
            message = " ".join((event.resource.get("prefect.state-message") or "").split())
            extra = f"after {seconds:.1f} s" + (
                f" | {message[:300]}" if message and state != "COMPLETED" else "")
            _say(_run_line(f"run {name}", deployment, run, extra))


async def _serve_until_stopped(deployments: list[Any], banner: list[str]) -> None:
    """Register ``deployments``, run them until SIGTERM / SIGINT, then stop the runner."""
    from prefect.runner import Runner

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    class _Runner(Runner):
        def handle_sigterm(self, *args: Any, **kwargs: Any) -> None:
            # Prefect's handler calls the sync `stop()` from inside the event loop, which
            # only creates the `astop()` coroutine ("never awaited"), then `sys.exit(0)`.
            loop.call_soon_threadsafe(stop.set)

    runner = _Runner(pause_on_shutdown=True)
    ids = {str(await runner.aadd_deployment(d)): f"{d.flow_name}/{d.name}"
           for d in deployments}
    for line in banner:
        print(line, flush=True)
    running = asyncio.create_task(runner.start())
    reporting = asyncio.create_task(report_runs(ids))
    stopping = asyncio.create_task(stop.wait())
    try:
        await asyncio.wait({running, stopping}, return_when=asyncio.FIRST_COMPLETED)
        if not running.done():
            _say("stopping: runs in progress are cancelled, schedules paused")
            if runner.started:
                await runner.astop()
            else:
                running.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await running
    finally:
        for task in (reporting, stopping):
            task.cancel()
        for task in (reporting, stopping):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
    if not running.cancelled():
        running.result()


def serve(start_server: bool = False, port: int = 4200, home: Path | None = None) -> int:
    """Run every deployment of ``prefect.yaml`` in this process until SIGTERM / Ctrl-C.

    Cron schedules need a Prefect server with its scheduler (ephemeral mode has none), so this
    refuses to start without ``PREFECT_API_URL`` unless ``start_server`` is given, in which
    case it starts ``prefect server start`` on 127.0.0.1:``port`` with its UI, and stops it on
    the way out.

    Parameters
    ----------
    start_server
        Without ``PREFECT_API_URL``, start a local Prefect server.
    port
        Port of that server (API and UI).
    home
        That server's state directory (default ``$FACTORFLOW_HOME/prefect-server``).

    Returns
    -------
    int
        The exit code: 0 after a clean stop, 2 if neither a server nor ``start_server``.
    """
    server = None
    factorflow_home = Path(os.environ.get("FACTORFLOW_HOME", ".factorflow")).resolve()
    # until the runner takes over the signals: exit through `finally`, stopping our server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        if not os.environ.get("PREFECT_API_URL"):
            if not start_server:
                print("factorflow serve: PREFECT_API_URL is not set. Cron schedules need a "
                      "Prefect server (Prefect's ephemeral mode has no scheduler). Point "
                      "PREFECT_API_URL at a server, or run `factorflow serve --start-server` "
                      "to start a local one.", file=sys.stderr)
                return 2
            home = (home or factorflow_home / "prefect-server").resolve()
            print(f"factorflow serve: starting a local Prefect server on 127.0.0.1:{port} …",
                  flush=True)
            server, url = start_local_server(home, port, ui=True)
            os.environ["PREFECT_API_URL"] = url
            ui_url = url.removesuffix("/api") + "/"
            banner = [
                "factorflow serve: started a local Prefect server (stopped with this process)",
                f"  Prefect UI:    {ui_url}  (runs, logs, Retry)",
                f"  Prefect API:   {url}",
                f"  server state:  {home} (PREFECT_HOME of the server: database prefect.db, "
                f"log server.log)",
            ]
        else:
            url = os.environ["PREFECT_API_URL"]
            banner = [f"factorflow serve: using the Prefect server at {url}"]
        use_serve_console(factorflow_home)

        from prefect.settings import PREFECT_UI_URL

        if server is None and PREFECT_UI_URL.value():
            banner.append(f"  Prefect UI:    {PREFECT_UI_URL.value()}  (runs, logs, Retry)")
        deployments = runner_deployments()
        banner += [
            f"serving {', '.join(d.name for d in deployments)} (prefect.yaml): runs execute in "
            "subprocesses of this process — no work pool, no worker",
            "one line per run start and end follows; stop with Ctrl-C or SIGTERM",
        ]
        asyncio.run(_serve_until_stopped(deployments, banner))
    finally:
        if server is not None:
            signal.signal(signal.SIGTERM, signal.SIG_IGN)  # let the server stop
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            _stop_process(server)
            _say(f"stopped the local Prefect server (state kept in {home})")
    return 0
