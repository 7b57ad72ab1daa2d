"""Portfolio-refresh chunks analysed in worker processes, the flow's own process keeping the
database work (reading holdings, writing rows).

A chunk's analysis (:func:`core.portfolio_steps.analyse_chunk`) is Python under the GIL: in
one process, it and the chunks' reads and writes take turns on one core. Here each worker
process receives the run's shared inputs once (symbol data, scenarios, risk data) when it
starts, then a chunk's work per call: it reads the chunk's holdings (after the flow's
process read their versions), analyses them and sends the chunk's rows back; the flow's
process writes other chunks meanwhile. The rows are the ones the flow's process would have
made (the same functions on the same inputs).

A worker that dies (killed, out of memory) breaks the pool: its chunk and every later one
are analysed in the flow's process instead, with a warning, and the run goes on. Workers are
started with ``spawn`` (a fork of a process with Prefect's threads could inherit a held lock)
and exit when the pool closes or, on their own, when the flow's process is gone.

May import the portfolio steps and the math; no database, no Prefect.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import gc
import logging
import multiprocessing
import os
import pickle
import tempfile
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from multiprocessing import spawn
from typing import Any

from core.portfolio.analytics import ScenarioSet, SymbolData
from core.portfolio.risk import RiskData
from core.portfolio_steps import ChunkAnalysis, PortfolioWork, read_and_analyse

log = logging.getLogger(__name__)

_inputs: tuple[dt.date, ScenarioSet, SymbolData, RiskData] | None = None
"""A worker's shared inputs, set once when it starts."""


def _start_worker(inputs_file: str, parent: int) -> None:
    global _inputs
    threading.Thread(target=_exit_with_parent, args=(parent,), daemon=True).start()
    with open(inputs_file, "rb") as f:
        _inputs = pickle.load(f)
    gc.freeze()  # the inputs and the modules live as long as the worker: out of every scan


_spawning = threading.Lock()


@contextlib.contextmanager
def _main_module_left_alone() -> Iterator[None]:
    """Workers started meanwhile do not run this process's main module again (``spawn``
    does by default, and a caller's script without an ``if __name__ == "__main__"`` guard
    would run again in each worker): they need only this module's functions."""
    original = spawn.get_preparation_data

    def preparation_data(name: str) -> dict[str, Any]:
        data = original(name)
        data.pop("init_main_from_name", None)
        data.pop("init_main_from_path", None)
        return data

    with _spawning:
        spawn.get_preparation_data = preparation_data
        try:
            yield
        finally:
            spawn.get_preparation_data = original


def _ready() -> int:
    """A no-op call that has a worker started (its inputs loaded)."""
    return os.getpid()


def _exit_with_parent(parent: int) -> None:
    """End this worker once the flow's process is gone (killed: it never closes the pool)."""
    import time

    while os.getppid() == parent:
        time.sleep(1.0)
    os._exit(0)


def _analyse_in_worker(work: Sequence[PortfolioWork]) -> ChunkAnalysis | None:
    assert _inputs is not None, "worker started without its inputs"
    as_of, scenarios, data, risk_data = _inputs
    return asyncio.run(read_and_analyse(work, as_of, scenarios, data, risk_data))


def _peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory of process ``pid`` in MB (Linux's VmHWM; None elsewhere)."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


class AnalysisPool:
    """``processes`` worker processes analysing the chunks of one refresh run at ``as_of``
    from ``data``, ``scenarios`` and ``risk_data`` (a ``ChunkAnalyser``). Use as a context
    manager; close it when the run's chunks are done."""

    def __init__(self, processes: int, as_of: dt.date, scenarios: ScenarioSet,
                 data: SymbolData, risk_data: RiskData) -> None:
        if processes < 1:
            raise ValueError(f"an analysis pool needs at least 1 process, got {processes}")
        self.processes = processes
        self._inputs = (as_of, scenarios, data, risk_data)
        self._broken: str | None = None
        self.worker_peak_rss_mb: float | None = None
        self._lock = threading.Lock()
        self._write_lock = threading.Lock()
        # the inputs go through a file, not the start-up pipe: a worker unpickling them there
        # imports the math first, and the pipe would hold this process until it has
        fd, self._inputs_file = tempfile.mkstemp(prefix="factorflow-analysis-", suffix=".pkl")
        with os.fdopen(fd, "wb") as f:
            pickle.dump(self._inputs, f, protocol=pickle.HIGHEST_PROTOCOL)
        self._executor = ProcessPoolExecutor(
            processes, mp_context=multiprocessing.get_context("spawn"),
            initializer=_start_worker, initargs=(self._inputs_file, os.getpid()))
        with _main_module_left_alone():
            for _ in range(processes):  # start them all now, while the first chunks are read
                self._executor.submit(_ready)

    def serves(self, data: SymbolData, scenarios: ScenarioSet, as_of: dt.date) -> bool:
        """Whether this pool's workers hold exactly these inputs (the same objects)."""
        own_as_of, own_scenarios, own_data, _ = self._inputs
        return data is own_data and scenarios is own_scenarios and as_of == own_as_of

    def write_turn(self) -> threading.Lock:
        """The lock a chunk of this run holds while it writes (one writer at a time)."""
        return self._write_lock

    @property
    def broken(self) -> str | None:
        """Why the workers stopped being used (None while they are)."""
        return self._broken

    async def analyse(self, work: Sequence[PortfolioWork]) -> ChunkAnalysis | None:
        """The chunk's :func:`read_and_analyse` by a worker (it reads the holdings); in this
        process once the pool is broken. None when the pool's data does not cover the
        chunk (a portfolio changed since it was read)."""
        if self._broken is None:
            try:
                future = self._executor.submit(_analyse_in_worker, list(work))
                return await asyncio.wrap_future(future)
            except BrokenProcessPool as exc:
                with self._lock:
                    if self._broken is None:
                        self._broken = f"a worker process died ({exc})"
                        log.warning("portfolio analysis workers lost (%s): the remaining "
                                    "chunks are analysed in the flow's process", exc)
        as_of, scenarios, data, risk_data = self._inputs
        return await read_and_analyse(work, as_of, scenarios, data, risk_data)

    def close(self) -> None:
        """Stop the workers (every chunk has its answer by now), noting first the largest
        peak resident memory among them (``worker_peak_rss_mb``)."""
        pids = list(getattr(self._executor, "_processes", None) or ())  # no public list
        peaks = [p for p in map(_peak_rss_mb, pids) if p is not None]
        self.worker_peak_rss_mb = max(peaks) if peaks else None
        with contextlib.suppress(OSError):
            os.unlink(self._inputs_file)
        if self._broken is None and not getattr(self._executor, "_broken", False):
            self._executor.shutdown(wait=True, cancel_futures=True)
            return
        # a broken pool's shutdown can wait forever on its manager thread (CPython 3.11):
        # stop waiting for it and end what is left of the workers here
        self._executor.shutdown(wait=False, cancel_futures=True)
        for process in list((getattr(self._executor, "_processes", None) or {}).values()):
            process.kill()

    def __enter__(self) -> AnalysisPool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
