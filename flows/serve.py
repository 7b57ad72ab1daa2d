"""Serve the deployments of ``prefect.yaml`` from one process (``factorflow serve``).

The deployments are built from ``prefect.yaml`` itself — entrypoints, schedules (with their
parameters), event triggers, concurrency limits — so ``prefect deploy --all`` (work pool +
workers) and ``factorflow serve`` (one process) run the same definitions.
"""

from __future__ import annotations

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


def start_local_server(home: Path, port: int = 4200, timeout: float = 120) -> tuple[
        subprocess.Popen[bytes], str]:
    """Start ``prefect server start`` on 127.0.0.1:``port`` (SQLite under ``home``); return
    the process and its API URL once it answers its health check."""
    env = {**os.environ, "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
           "PREFECT_UI_ENABLED": "false"}
    env.pop("PREFECT_API_URL", None)
    home.mkdir(parents=True, exist_ok=True)
    log = open(home / "server.log", "ab")  # noqa: SIM115 (kept open for the server's life)
    proc = subprocess.Popen(
        [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1",
         "--port", str(port)], env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/api"
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
    proc.terminate()
    raise RuntimeError(f"prefect server did not answer within {timeout:.0f} s")


def serve(start_server: bool = False, port: int = 4200, home: Path | None = None) -> int:
    """Run every deployment of ``prefect.yaml`` in this process (``prefect.serve``).

    Cron schedules need a Prefect server with its scheduler (ephemeral mode has none), so
    this refuses to start without ``PREFECT_API_URL`` unless ``start_server`` is given, in
    which case it starts ``prefect server start`` on 127.0.0.1 itself and says so.
    """
    server = None
    # a SIGTERM (systemd, docker stop, timeout) exits through `finally`, stopping our server
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    if not os.environ.get("PREFECT_API_URL"):
        if not start_server:
            print("factorflow serve: PREFECT_API_URL is not set. Cron schedules need a Prefect "
                  "server (Prefect's ephemeral mode has no scheduler). Point PREFECT_API_URL "
                  "at a server, or run `factorflow serve --start-server` to start a local one.",
                  file=sys.stderr)
            return 2
        home = home or Path(os.environ.get("FACTORFLOW_HOME", ".factorflow")).resolve() / (
            "prefect-server")
        server, url = start_local_server(home, port)
        os.environ["PREFECT_API_URL"] = url
        print(f"factorflow serve: started a local Prefect server at {url} "
              f"(state in {home}; UI disabled)", flush=True)
    else:
        print(f"factorflow serve: using the Prefect server at {os.environ['PREFECT_API_URL']}",
              flush=True)
    try:
        from prefect import serve as prefect_serve

        deployments = runner_deployments()
        print("serving: " + ", ".join(d.name for d in deployments), flush=True)
        prefect_serve(*deployments)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
    return 0
