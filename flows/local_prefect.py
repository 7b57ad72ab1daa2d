"""Prefect's temporary (ephemeral) server never outlives the process that started it.

Without ``PREFECT_API_URL`` the first flow run of a process starts Prefect's temporary server
as a subprocess (``prefect.server.api.server.SubprocessASGIServer``); it stops it at exit,
but a SIGKILLed process leaves it running for good (reparented to init). Two defences:

- :func:`tie_local_servers_to_this_process` makes every such server receive SIGTERM when this
  process dies (Linux ``prctl(PR_SET_PDEATHSIG)``), and records this process's pid in the
  server's environment (``FACTORFLOW_PREFECT_SERVER_PARENT``). Prefect 3.8 has no option for
  either, so the ``subprocess`` module Prefect's server module uses is replaced, in that
  module only, by one whose ``Popen`` does both. The module is patched when it is imported
  (nothing is imported early: ``prefect.server`` costs seconds).
- :func:`stop_orphaned_servers` finds, through ``/proc``, temporary servers of one
  ``PREFECT_HOME`` whose recorded parent is no longer their parent (or, without a record,
  whose parent is init) and stops them: it covers platforms without the death signal and
  servers started by code that did not install the tie.

The CLI calls both at start-up, before any flow or the API starts a server.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.abc
import importlib.machinery
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

SERVER_MODULE = "prefect.server.api.server"
SERVER_APP = "prefect.server.api.server:create_app"  # in the temporary server's command line
PARENT_VARIABLE = "FACTORFLOW_PREFECT_SERVER_PARENT"
_PR_SET_PDEATHSIG = 1


# --- finding and stopping orphans -----------------------------------------------------------

@dataclass(frozen=True)
class ServerProcess:
    """A running Prefect temporary server, as ``/proc`` shows it."""

    pid: int
    ppid: int
    prefect_home: str | None
    recorded_parent: int | None

    @property
    def orphaned(self) -> bool:
        """Its starter is gone: the parent it recorded is not its parent any more (or, when
        it recorded none, it was reparented to init)."""
        if self.recorded_parent is not None:
            return self.ppid != self.recorded_parent
        return self.ppid == 1


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes()
    except OSError:  # gone meanwhile, or not ours to read
        return None


def _environ(raw: bytes) -> dict[str, str]:
    out = {}
    for item in raw.split(b"\0"):
        key, sep, value = item.partition(b"=")
        if sep:
            out[key.decode(errors="replace")] = value.decode(errors="replace")
    return out


def _ppid(stat: bytes) -> int:
    # /proc/<pid>/stat: "pid (comm) state ppid ..."; comm may contain spaces or parentheses
    return int(stat[stat.rindex(b")") + 2:].split()[1])


def temporary_servers(proc: Path = Path("/proc")) -> list[ServerProcess]:
    """Prefect temporary servers running as this user (empty where ``/proc`` is missing)."""
    servers = []
    uid = os.getuid()
    with contextlib.suppress(OSError):
        entries = [p for p in proc.iterdir() if p.name.isdigit()]
        for entry in entries:
            cmdline = _read(entry / "cmdline")
            if not cmdline or SERVER_APP.encode() not in cmdline.split(b"\0"):
                continue
            try:
                if entry.stat().st_uid != uid:
                    continue
            except OSError:
                continue
            raw_env, stat = _read(entry / "environ"), _read(entry / "stat")
            if raw_env is None or stat is None:
                continue
            env = _environ(raw_env)
            if env.get("PREFECT__SERVER_EPHEMERAL") != "1":  # a server someone runs on purpose
                continue
            recorded = env.get(PARENT_VARIABLE, "")
            servers.append(ServerProcess(
                pid=int(entry.name), ppid=_ppid(stat), prefect_home=env.get("PREFECT_HOME"),
                recorded_parent=int(recorded) if recorded.isdigit() else None))
    return servers


def _same_path(a: str | None, b: Path) -> bool:
    return a is not None and Path(a).resolve() == b.resolve()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = _read(Path(f"/proc/{pid}/stat"))  # a zombie waits for init to reap it: gone
    return not (stat and stat[stat.rindex(b")") + 2:].startswith(b"Z"))


def stop_orphaned_servers(prefect_home: Path, timeout: float = 10.0) -> list[int]:
    """Stop the orphaned Prefect temporary servers of ``prefect_home``.

    Parameters
    ----------
    prefect_home
        The ``PREFECT_HOME`` whose servers are ours; servers of other homes, servers with a
        live starter and servers not started as temporary servers are left alone.
    timeout
        Seconds to wait for a server to stop after SIGTERM before it is SIGKILLed.

    Returns
    -------
    list[int]
        The process ids stopped.
    """
    orphans = [s.pid for s in temporary_servers()
               if s.orphaned and _same_path(s.prefect_home, prefect_home)]
    for pid in orphans:
        log.warning("stopping an orphaned Prefect temporary server (pid %d, PREFECT_HOME %s) "
                    "left by a process that was killed", pid, prefect_home)
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while any(_alive(pid) for pid in orphans) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in orphans:
        if _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
    return orphans


# --- tying new servers to this process --------------------------------------------------------

def _load_prctl() -> Callable[..., int] | None:
    if not sys.platform.startswith("linux"):
        return None
    try:
        prctl = ctypes.CDLL(None, use_errno=True).prctl
    except (OSError, AttributeError):
        return None
    prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong,
                      ctypes.c_ulong]
    prctl.restype = ctypes.c_int
    return prctl


_prctl = _load_prctl()


def _die_with(parent: int) -> None:
    """In the forked child, before exec: SIGTERM when the spawning thread's process dies."""
    if _prctl is not None:
        _prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
    if os.getppid() != parent:  # the parent died before the signal was armed
        os.kill(os.getpid(), signal.SIGTERM)


class _Spawner:
    """One thread that lives as long as the process and starts the servers.

    The death signal fires when the *thread* that forked the child ends, not the process:
    a server started from a short-lived thread (the API's warm-up) would die with it.
    """

    def __init__(self) -> None:
        self._requests: queue.Queue[tuple[Callable[[], Any], list[Any], threading.Event]] = (
            queue.Queue())
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def _serve(self) -> None:
        while True:
            fn, box, done = self._requests.get()
            try:
                box.append((True, fn()))
            except BaseException as exc:  # handed back to the caller's thread
                box.append((False, exc))
            done.set()

    def call(self, fn: Callable[[], Any]) -> Any:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._serve, name="prefect-server-spawner", daemon=True)
                self._thread.start()
        box: list[Any] = []
        done = threading.Event()
        self._requests.put((fn, box, done))
        done.wait()
        ok, value = box[0]
        if not ok:
            raise value
        return value


_spawner = _Spawner()


def tied_popen(args: Sequence[str], *popen_args: Any, **kwargs: Any) -> subprocess.Popen[Any]:
    """``subprocess.Popen`` for Prefect's server: parent recorded, death signal armed."""
    parent = os.getpid()
    env = dict(kwargs.get("env") or os.environ)
    env[PARENT_VARIABLE] = str(parent)
    kwargs["env"] = env
    kwargs["preexec_fn"] = partial(_die_with, parent)
    return _spawner.call(lambda: subprocess.Popen(args, *popen_args, **kwargs))


def _patch(module: types.ModuleType) -> None:
    if getattr(module, "_factorflow_tied", False):
        return
    tied = types.ModuleType("subprocess")
    tied.__dict__.update(subprocess.__dict__)
    tied.Popen = tied_popen  # type: ignore[attr-defined]
    module.subprocess = tied  # type: ignore[attr-defined]
    module._factorflow_tied = True  # type: ignore[attr-defined]


class _PatchOnImport(importlib.abc.MetaPathFinder):
    """Patches Prefect's server module right after it is imported, whenever that is."""

    def find_spec(self, name: str, path: Sequence[str] | None,
                  target: types.ModuleType | None = None) -> importlib.machinery.ModuleSpec | None:
        if name != SERVER_MODULE:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        loader = spec.loader if spec is not None else None
        if loader is None or not hasattr(loader, "exec_module"):
            return spec
        original = loader.exec_module

        def exec_module(module: types.ModuleType) -> None:
            original(module)
            _patch(module)

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


def tie_local_servers_to_this_process() -> None:
    """Make every Prefect temporary server this process starts from now on die with it and
    record it as its parent (see the module docstring). Idempotent."""
    module = sys.modules.get(SERVER_MODULE)
    if module is not None:
        _patch(module)
    elif not any(isinstance(f, _PatchOnImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _PatchOnImport())
