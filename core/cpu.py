"""CPU-heavy work of a request, off the event loop and on one BLAS thread.

An answer computed on the event loop stops every other request for as long as it takes
(a 1,000-position portfolio once froze ``/health/live`` for minutes): :func:`run_cpu`
runs it in a worker thread instead. While such work runs, the BLAS library (OpenBLAS,
under numpy) is limited to one thread: its default of one thread per core made an
eigendecomposition of a 1,000 × 1,000 matrix 10-50 × slower on a busy 2-core machine
(the threads spin waiting for each other and for the cores the server needs), and it
took the core the event loop answers on.

Allocation-heavy pure work (a refresh chunk's analysis builds ~100,000 rows) can also run with
the cyclic garbage collector paused (:func:`collector_paused`).
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
R = TypeVar("R")

class _ProcessWide:
    """A process-wide setting held while any block holds it: the first block to enter
    applies it (``apply`` returns how to undo it), the last one to leave undoes it."""

    def __init__(self, apply: Callable[[], Callable[[], None]]) -> None:
        self._apply = apply
        self._lock = threading.Lock()
        self._users = 0
        self._undo: Callable[[], None] | None = None

    @contextmanager
    def held(self) -> Iterator[None]:
        with self._lock:
            if self._users == 0:
                self._undo = self._apply()
            self._users += 1
        try:
            yield
        finally:
            with self._lock:
                self._users -= 1
                if self._users == 0 and self._undo is not None:
                    self._undo()
                    self._undo = None


_controller: Any = None


def _limit_blas() -> Callable[[], None]:
    global _controller
    if _controller is None:
        from threadpoolctl import ThreadpoolController

        _controller = ThreadpoolController()
    return _controller.limit(limits=1, user_api="blas").restore_original_limits


def _pause_collector() -> Callable[[], None]:
    was_enabled = gc.isenabled()
    gc.disable()
    return gc.enable if was_enabled else lambda: None


_blas_limit = _ProcessWide(_limit_blas)
_collector_pause = _ProcessWide(_pause_collector)


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Limit BLAS to one thread while the block runs (process-wide, reference-counted:
    the limit holds until the last concurrent block ends, then the previous one is back)."""
    with _blas_limit.held():
        yield


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector while the block runs (process-wide,
    reference-counted like :func:`single_threaded_blas`: it is enabled again when the last
    concurrent block ends, and only if it was enabled when the first one began).

    For allocation-heavy work whose many objects form no reference cycles (rows, dataclasses,
    numpy arrays: freed by reference counting as usual) and are gone when the block ends.
    Each collection their allocation would trigger walks every young object, and the full
    ones every object not frozen: a refresh chunk's analysis spent ~18 % of its time there.
    Paused around the analysis alone, the collections come due at the write instead. Cyclic
    garbage made inside the block is collected once the collector runs again.
    """
    with _collector_pause.held():
        yield


async def run_cpu(fn: Callable[P, R], *args: P.args, **kwargs: P.kwargs) -> R:
    """``fn(*args, **kwargs)`` in a worker thread with one BLAS thread; the event loop keeps
    answering meanwhile.

    Parameters
    ----------
    fn : callable
        Pure CPU work (no database access: connections belong to the event loop).
    *args, **kwargs
        Passed to ``fn``.

    Returns
    -------
    object
        What ``fn`` returns (its exception is raised here).
    """
    def limited() -> R:
        with single_threaded_blas():
            return fn(*args, **kwargs)

    return await asyncio.to_thread(limited)
