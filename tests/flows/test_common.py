"""Process-wide wiring of the flows (``flows.common``): malloc arenas, quoted bulk values."""

from __future__ import annotations

import ctypes

import pytest
from prefect.utilities.annotations import quote

from flows.common import bulk, limit_malloc_arenas


def test_malloc_arenas_are_capped_unless_the_operator_chose(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the operator's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    try:
        glibc = hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        glibc = False
    assert limit_malloc_arenas() is glibc  # capped on glibc; elsewhere nothing to do


def test_bulk_values_are_quoted_and_unwrap_unchanged() -> None:
    universe = [f"S{i}" for i in range(10_000)]
    quoted = bulk(universe)
    assert isinstance(quoted, quote) and quoted.unquote() is universe


def test_shared_parameters_are_quoted_on_the_thread_runner_only(prefect_harness: None) -> None:
    from prefect import flow
    from prefect.task_runners import ThreadPoolTaskRunner

    from flows.common import shared

    class OtherRunner(ThreadPoolTaskRunner):  # stands for Dask: not the plain thread pool
        pass

    data = {"sectors": {f"S{i}": "Tech" for i in range(1000)}}

    @flow(task_runner=ThreadPoolTaskRunner(max_workers=1))
    def on_threads() -> object:
        return shared(data)

    quoted = on_threads()
    assert isinstance(quoted, quote) and quoted.unquote() is data
    assert shared(data) is data  # outside a flow run

    @flow(task_runner=OtherRunner(max_workers=1))
    def elsewhere() -> object:
        return shared(data)

    assert elsewhere() is data
