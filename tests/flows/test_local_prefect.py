"""A killed ``factorflow`` leaves no Prefect temporary server behind.

Real processes: the real command and real Prefect servers, SIGKILLed as an OOM killer or an
operator would. Servers are found here through ``/proc`` independently of the code under
test (any uvicorn process whose ``PREFECT_HOME`` is the test's).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from flows.local_prefect import PARENT_VARIABLE, ServerProcess
from tests.conftest import WAIT_LIMIT_S, seeded_factorflow_home, wait_until

REPO = Path(__file__).resolve().parents[2]


def _env(home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORFLOW_", "PREFECT_"))}
    env.update(FACTORFLOW_HOME=str(seeded_factorflow_home(home)),
               PREFECT_SERVER_ANALYTICS_ENABLED="false",
               PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS=str(WAIT_LIMIT_S),
               PYTHONPATH=str(REPO))
    return env


def servers_of(prefect_home: Path) -> dict[int, int]:
    """pid → port of the uvicorn processes running with ``PREFECT_HOME=prefect_home``."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"uvicorn" in cmdline and b"--port" in cmdline and (
                f"PREFECT_HOME={prefect_home}".encode() in environ):
            found[int(entry.name)] = int(cmdline[cmdline.index(b"--port") + 1])
    return found


def alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat[stat.rindex(")") + 2] != "Z"


def healthy(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/health", timeout=2) as r:
            return bool(r.status == 200)
    except OSError:
        return False


@contextlib.contextmanager
def no_leftover_servers(prefect_home: Path) -> Iterator[None]:
    """Whatever the test's outcome, stop the servers of ``prefect_home`` at the end."""
    try:
        yield
    finally:
        for pid in servers_of(prefect_home):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


@pytest.mark.slow
def test_a_killed_flow_process_takes_its_prefect_server_along(tmp_path: Path) -> None:
    home = tmp_path / "home"
    prefect_home = home / "prefect"
    log = (tmp_path / "cli.log").open("w")
    cli = subprocess.Popen([sys.executable, "-m", "cli.main", "symbol-batch"], cwd=REPO,
                           env=_env(home), stdout=log, stderr=subprocess.STDOUT)
    with no_leftover_servers(prefect_home):
        try:
            wait_until(lambda: servers_of(prefect_home) or cli.poll() is not None,
                       "the flow process to start Prefect's temporary server", every=0.05)
            assert cli.poll() is None, (tmp_path / "cli.log").read_text()[-3000:]
            os.kill(cli.pid, signal.SIGSTOP)  # frozen: it cannot finish and stop the server
            [(server, port)] = servers_of(prefect_home).items()
            wait_until(lambda: healthy(port), "the server to answer", every=0.05)
            os.kill(cli.pid, signal.SIGKILL)
            cli.wait(timeout=30)
        finally:
            if cli.poll() is None:
                cli.kill()
            log.close()
        # it dies with the process that started it…
        wait_until(lambda: not alive(server), f"server {server} to stop after its parent",
                   every=0.05)
        # …and the next command starts clean
        after = subprocess.run([sys.executable, "-m", "cli.main", "db", "current"], cwd=REPO,
                               env=_env(home), capture_output=True, text=True,
                               timeout=WAIT_LIMIT_S)
        assert after.returncode == 0, after.stderr[-3000:]
        assert servers_of(prefect_home) == {}


_STARTER = """
import os, sys, time
if sys.argv[1] == "record":  # as a server started by factorflow records its parent
    os.environ[sys.argv[2]] = str(os.getpid())
from prefect.server.api.server import SubprocessASGIServer
SubprocessASGIServer().start()
print("up", flush=True)
time.sleep(600)
"""


def _start_server(home: Path, record: bool) -> subprocess.Popen[str]:
    """A process that starts a Prefect temporary server in ``home/prefect`` the way Prefect
    does (no death signal), then sleeps."""
    env = _env(home)
    env["PREFECT_HOME"] = str(home / "prefect")
    (home / "prefect").mkdir(parents=True, exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-c", _STARTER, "record" if record else "plain", PARENT_VARIABLE],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_the_next_start_stops_orphaned_servers_and_only_those(tmp_path: Path) -> None:
    """A server whose starter was killed without taking it along (no death signal: another
    platform, or code that started Prefect without the CLI) is stopped by the next command;
    a server whose starter is alive, and a server of another PREFECT_HOME, are left alone.
    (A server that recorded no starter: ``test_orphaned_means_the_starter_is_gone``.)"""
    home, other_home = tmp_path / "home", tmp_path / "other"
    starters = {
        "orphan": _start_server(home, record=True),
        "live": _start_server(home, record=True),
        "other-home": _start_server(other_home, record=True),
    }
    with no_leftover_servers(home / "prefect"), no_leftover_servers(other_home / "prefect"):
        try:
            for name, starter in starters.items():
                assert starter.stdout is not None and starter.stderr is not None
                line = starter.stdout.readline()
                assert line.strip() == "up", f"{name}: {line} {starter.stderr.read()[-3000:]}"
            servers = set(servers_of(home / "prefect"))
            assert len(servers) == 2
            [live] = [pid for pid in servers if _ppid(pid) == starters["live"].pid]
            for name in ("orphan", "other-home"):
                starters[name].kill()
                starters[name].wait(timeout=30)
            time.sleep(1)
            assert all(alive(pid) for pid in servers), "killing a starter stopped its server"

            after = subprocess.run([sys.executable, "-m", "cli.main", "db", "current"],
                                   cwd=REPO, env=_env(home), capture_output=True, text=True,
                                   timeout=WAIT_LIMIT_S)
            assert after.returncode == 0, after.stderr[-3000:]
            assert set(servers_of(home / "prefect")) == {live}
            assert len(servers_of(other_home / "prefect")) == 1  # not ours to stop
            assert "orphaned Prefect temporary server" in after.stderr
        finally:
            for starter in starters.values():
                if starter.poll() is None:
                    starter.kill()
                    starter.wait(timeout=30)


def _ppid(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[1])


def test_orphaned_means_the_starter_is_gone() -> None:
    assert ServerProcess(pid=10, ppid=1, prefect_home="/h", recorded_parent=5).orphaned
    assert ServerProcess(pid=10, ppid=77, prefect_home="/h", recorded_parent=5).orphaned
    assert not ServerProcess(pid=10, ppid=5, prefect_home="/h", recorded_parent=5).orphaned
    # recorded nothing: only a server reparented to init counts (a daemonised server started
    # on purpose is not a temporary server, see ``temporary_servers``)
    assert ServerProcess(pid=10, ppid=1, prefect_home="/h", recorded_parent=None).orphaned
    assert not ServerProcess(pid=10, ppid=77, prefect_home="/h", recorded_parent=None).orphaned
