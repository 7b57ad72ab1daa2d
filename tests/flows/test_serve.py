"""``factorflow serve`` as an operator runs it: a real subprocess, its own local Prefect server
(``--start-server`` on a free port), runs started through the Prefect client.

- the Prefect UI is served, its api URL points at that port, and the banner says where the UI
  and the server's state are;
- one line when a run starts and one when it ends (deployment, run, parameters, final state,
  duration), and one traceback per failed run;
- SIGTERM stops it cleanly (exit 0, no warning, no traceback) and stops its server;
- a configuration that cannot work is refused before anything starts.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import psutil
import pytest

from tests.conftest import WAIT_LIMIT_S, seeded_prefect_home, wait_until
from tests.flows.conftest import free_port

REPO = Path(__file__).resolve().parents[2]
TRACEBACK = "Traceback (most recent call last)"


def _env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORFLOW_", "PREFECT_"))}
    seeded_prefect_home(home / "prefect-server")  # where `serve --start-server` keeps it
    env.update({"FACTORFLOW_HOME": str(home), "FACTORFLOW_PRICE_PROVIDER": "synthetic",
                "FACTORFLOW_RETRY_DELAYS": "0", **extra})
    return env


@dataclass
class Served:
    proc: subprocess.Popen[bytes]
    port: int
    home: Path
    out: Path
    err: Path

    @property
    def api(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def stdout(self) -> str:
        return self.out.read_text(errors="replace")

    def stderr(self) -> str:
        return self.err.read_text(errors="replace")

    def client(self, fn: Callable[[Any], Any]) -> Any:
        async def call() -> Any:
            from prefect.client.orchestration import get_client
            from prefect.settings import PREFECT_API_URL, temporary_settings

            with temporary_settings({PREFECT_API_URL: self.api}):
                async with get_client() as client:
                    return await fn(client)

        return asyncio.run(call())


def _cmdline(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # exited meanwhile
        return ""


def _answers(url: str) -> httpx.Response | None:
    try:
        return httpx.get(url, timeout=5)
    except httpx.HTTPError:
        return None


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``factorflow serve --start-server --server-port <free port>``, up with its deployments."""
    home = tmp_path_factory.mktemp("serve") / "home"
    home.mkdir()
    port = free_port()
    out, err = home.parent / "serve.out", home.parent / "serve.err"
    with out.open("wb") as o, err.open("wb") as e:
        proc = subprocess.Popen(
            [sys.executable, "-m", "cli.main", "serve", "--start-server", "--server-port",
             str(port)], cwd=REPO, env=_env(home), stdout=o, stderr=e)
    s = Served(proc, port, home, out, err)

    async def deployments(client: Any) -> bool:
        for name in ("symbol-batch/symbol-batch", "portfolio-refresh/portfolio-refresh",
                     "onboarding/onboarding"):
            try:
                await client.read_deployment_by_name(name)
            except Exception:
                return False
        return True

    def up() -> bool:
        assert proc.poll() is None, f"serve exited {proc.returncode}:\n{s.stderr()[-3000:]}"
        if "one line per run start and end follows" not in s.stdout():  # the banner's end
            return False
        health = _answers(f"{s.api}/health")
        return health is not None and health.status_code == 200 and s.client(deployments)

    try:
        wait_until(up, "factorflow serve to register its deployments", every=1.0)
        yield s
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()


@pytest.mark.slow
def test_serve_shows_the_prefect_ui_and_says_where_it_and_its_state_are(served: Served) -> None:
    root = _answers(f"http://127.0.0.1:{served.port}/")
    assert root is not None and root.status_code == 200, root
    assert "<title>Prefect" in root.text
    settings = _answers(f"http://127.0.0.1:{served.port}/ui-settings")
    assert settings is not None and settings.status_code == 200
    assert settings.json()["api_url"] == served.api

    banner = served.stdout()
    assert f"http://127.0.0.1:{served.port}" in banner and "UI" in banner
    state = served.home.resolve() / "prefect-server"
    assert str(state) in banner
    assert (state / "prefect.db").exists() and "prefect.db" in banner
    assert (state / "server.log").exists() and "server.log" in banner
    assert "no work pool" in banner


def _run_lines(text: str, run_id: str) -> list[str]:
    return [line for line in text.splitlines() if run_id in line]


@pytest.mark.slow
def test_serve_logs_one_line_per_run_start_and_end_and_one_traceback_per_failure(
    served: Served,
) -> None:
    async def start(client: Any, name: str, parameters: dict[str, Any]) -> Any:
        dep = await client.read_deployment_by_name(name)
        return await client.create_flow_run_from_deployment(dep.id, parameters=parameters)

    before = served.stderr()
    # a symbol batch on the synthetic provider completes (its completion event then triggers
    # a portfolio refresh); a refresh for a session whose symbol batch never ran fails
    ok = served.client(lambda c: start(c, "symbol-batch/symbol-batch", {"as_of": "2026-11-19"}))
    bad = served.client(lambda c: start(c, "portfolio-refresh/portfolio-refresh",
                                        {"as_of": "2026-11-18", "wait_seconds": 0}))

    def ended(run_id: str) -> Callable[[], list[str] | None]:
        def check() -> list[str] | None:
            lines = _run_lines(served.stdout(), run_id)
            return lines if len(lines) >= 2 else None
        return check

    ok_lines = wait_until(ended(str(ok.id)), "the symbol-batch run's two lines", every=0.5)
    bad_lines = wait_until(ended(str(bad.id)), "the portfolio-refresh run's two lines",
                           every=0.5)
    ok_state = served.client(lambda c: c.read_flow_run(ok.id)).state
    bad_state = served.client(lambda c: c.read_flow_run(bad.id)).state
    assert ok_state.is_completed(), ok_state
    assert bad_state.is_failed(), bad_state

    started, finished = ok_lines
    assert "started" in started and "symbol-batch/symbol-batch" in started
    assert ok.name in started and json.dumps({"as_of": "2026-11-19"}) in started
    assert "Completed" in finished and re.search(r"after \d+\.\d s", finished)
    started, finished = bad_lines
    assert "started" in started and "portfolio-refresh/portfolio-refresh" in started
    assert bad.name in started
    assert json.dumps({"as_of": "2026-11-18", "wait_seconds": 0}) in started
    assert "Failed" in finished and re.search(r"after \d+\.\d s", finished)
    assert bad_state.message[:80] in finished  # the cause, on the run's own line

    def flow_run_processes_gone() -> bool:
        children = psutil.Process(served.proc.pid).children(recursive=True)
        return not any("prefect.engine" in _cmdline(c) for c in children)

    wait_until(flow_run_processes_gone, "the flow run processes to exit", every=0.5)
    errors = served.stderr()[len(before):]
    assert errors.count(TRACEBACK) == 1, errors  # the failed run's, once
    assert bad.name in errors
    assert "Finished in state Failed" not in errors  # Prefect's repeats of the same failure
    assert "Engine execution exited" not in errors
    assert len(_run_lines(served.stdout(), str(ok.id))) == 2
    assert len(_run_lines(served.stdout(), str(bad.id))) == 2


@pytest.mark.slow
def test_sigterm_stops_serve_and_its_local_server(served: Served) -> None:
    """Last in this module: it stops the shared ``served`` process."""
    server = [p for p in psutil.Process(served.proc.pid).children(recursive=True)
              if "server" in _cmdline(p)]
    assert server, "serve --start-server has no Prefect server child process"
    before = len(served.stderr())
    served.proc.send_signal(signal.SIGTERM)
    assert served.proc.wait(timeout=WAIT_LIMIT_S) == 0
    errors = served.stderr()[before:]
    assert "never awaited" not in errors, errors
    assert TRACEBACK not in errors, errors
    gone, alive = psutil.wait_procs(server, timeout=WAIT_LIMIT_S)
    assert not alive, f"Prefect server still running: {alive}"
    assert _answers(f"{served.api}/health") is None


# --- a configuration that cannot work: refused before anything starts ---------------------


def _serve_once(tmp_path: Path, **extra: str) -> subprocess.CompletedProcess[str]:
    port = free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "cli.main", "serve", "--start-server", "--server-port",
         str(port)], cwd=REPO, env=_env(tmp_path / "home", **extra), capture_output=True,
        text=True, timeout=WAIT_LIMIT_S)
    assert _answers(f"http://127.0.0.1:{port}/api/health") is None  # no server was started
    return proc


@pytest.mark.parametrize(("extra", "variable"), [
    ({"FACTORFLOW_PRICE_PROVIDER": "csv", "FACTORFLOW_CSV_PATH": "/nonexistent/prices.csv"},
     "FACTORFLOW_CSV_PATH"),
    ({"FACTORFLOW_PRICE_PROVIDER": "csv"}, "FACTORFLOW_CSV_PATH"),
    ({"FACTORFLOW_PRICE_PROVIDER": "synthetic,bloomberg"}, "FACTORFLOW_PRICE_PROVIDER"),
    ({"FACTORFLOW_DATABASE_URL": "postgresql+asyncpg://ff:ff@127.0.0.1:9/ff"},
     "FACTORFLOW_DATABASE_URL"),
    ({"FACTORFLOW_LOOKBACK_DAYS": "many"}, "FACTORFLOW_LOOKBACK_DAYS"),
], ids=["csv-missing-file", "csv-no-path", "unknown-provider", "database-unreachable",
        "not-a-number"])
def test_serve_refuses_a_configuration_that_cannot_work(
    tmp_path: Path, extra: dict[str, str], variable: str
) -> None:
    proc = _serve_once(tmp_path, **extra)
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert variable in lines[0] and TRACEBACK not in proc.stderr
    assert "ff:ff@" not in proc.stderr  # a password is never printed


# --- the console handler alone ----------------------------------------------------------


def _record(name: str, message: str, exc: BaseException | None = None,
            level: int = 40, **extra: Any) -> Any:
    import logging

    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    record = logging.LogRecord(name, level, __file__, 1, message, None, exc_info)
    record.__dict__.update(extra)
    return record


def test_console_prints_a_failure_once_and_keeps_the_original_records() -> None:
    from flows.serve_logging import ServeConsoleHandler

    handler = ServeConsoleHandler()
    try:
        raise ValueError("the task's error")
    except ValueError as caught:
        error = caught
    task = {"task_run_id": "t1"}
    failed = _record("prefect.task_runs", "Task run failed with exception: ValueError(...)",
                     error, **task)
    one_line = handler.shown(failed)
    assert one_line is not None and one_line.exc_info is None
    assert failed.exc_info is not None  # the API handler still gets the traceback
    assert handler.shown(_record("prefect.task_runs", "Finished in state Failed('x')",
                                 **task)) is None
    flow = _record("prefect.flow_runs", "Encountered exception during execution", error)
    assert handler.shown(flow) is flow  # the flow's exception, with its traceback
    assert handler.shown(_record("prefect.flow_runs", "Engine execution exited with "
                                 "unexpected exception", error)) is None
    try:
        raise RuntimeError("wrapping") from error
    except RuntimeError as wrapped:
        shown = handler.shown(_record("prefect.engine", "exited", wrapped))
    assert shown is not None and shown.exc_info is None  # its traceback is printed already
    other = _record("prefect.flow_runs", "Encountered exception", KeyError("another run"))
    assert handler.shown(other) is other
    assert handler.shown(_record("prefect.flow_runs", "a warning", level=30)) is not None
