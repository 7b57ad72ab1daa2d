"""The portfolio flow with its chunks analysed in worker processes (``core.analysis_pool``):
the rows are exactly those of a run analysed in the flow's own process, also when the
workers are killed mid-run (the flow's process takes their chunks over)."""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from typing import Any

import pytest

from core.analysis_pool import AnalysisPool
from tests.conftest import SQLITE_ONLY
from tests.flows.test_portfolio_refresh_faults import (
    D1,
    D3,
    assert_same_rows,
    clean_copy,
    market,  # noqa: F401 - the fixture
    refresh,
    seed,
    using,
)

pytestmark = [pytest.mark.usefixtures("prefect_harness"), SQLITE_ONLY]


@pytest.fixture
def pooled(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[dict[str, Any]]]:
    """Chunks of 3 portfolios, analysed by 2 worker processes from the first chunk on; yields
    what each pool's ``analyse`` calls saw (worker pids, broken or not)."""
    import flows.portfolio_refresh as flow_module
    from core.settings import get_settings

    monkeypatch.setenv("FACTORFLOW_PORTFOLIO_CHUNK_SIZE", "3")
    monkeypatch.setenv("FACTORFLOW_REFRESH_PROCESSES", "2")
    monkeypatch.setattr(flow_module, "REFRESH_PROCESSES_FROM_CHUNKS", 1)
    get_settings.cache_clear()
    calls: list[dict[str, Any]] = []
    analyse = AnalysisPool.analyse

    async def spy(self: AnalysisPool, work: Any) -> Any:
        result = await analyse(self, work)
        calls.append({"workers": set(self._executor._processes or ()),  # type: ignore[attr-defined]
                      "broken": self.broken})
        return result

    monkeypatch.setattr(AnalysisPool, "analyse", spy)
    yield calls
    get_settings.cache_clear()


def _in_one_process(url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """The clean run: the same refreshes with every chunk analysed in the flow's process."""
    from core.settings import get_settings

    with using(url):
        monkeypatch.setenv("FACTORFLOW_REFRESH_PROCESSES", "0")
        get_settings.cache_clear()
        refresh(D1)
        refresh(D3)
        monkeypatch.setenv("FACTORFLOW_REFRESH_PROCESSES", "2")
        get_settings.cache_clear()


def test_worker_processes_store_the_rows_of_one_process(
    market: str, pooled: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    seed(10)
    with clean_copy(market, "one-process") as clean:
        _in_one_process(clean, monkeypatch)
        first, backfill = refresh(D1), refresh(D3)  # D3 backfills D2
        assert first["counts"]["refreshed"] == 10 and backfill["counts"]["snapshots"] == 20
        assert first["status"] == backfill["status"] == "completed"
        assert len(pooled) == 8  # 4 chunks a run, each analysed by a worker
        assert all(c["broken"] is None for c in pooled)
        workers = set().union(*(c["workers"] for c in pooled))
        assert workers and os.getpid() not in workers
        assert_same_rows(market, clean)


def test_killed_workers_leave_their_chunks_to_the_flow_process(
    market: str, pooled: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch,  # noqa: F811
) -> None:
    seed(10)
    analyse = AnalysisPool.analyse
    killed: list[int] = []

    async def kill_then_analyse(self: AnalysisPool, work: Any) -> Any:
        if not killed:  # the first chunk: its workers die before it is sent
            self._executor.submit(int).result()  # type: ignore[attr-defined]  # started
            killed.extend(self._executor._processes)  # type: ignore[attr-defined]
            for pid in killed:
                os.kill(pid, signal.SIGKILL)
        return await analyse(self, work)

    monkeypatch.setattr(AnalysisPool, "analyse", kill_then_analyse)
    with clean_copy(market, "one-process") as clean:
        _in_one_process(clean, monkeypatch)
        first = refresh(D1)
        assert first["status"] == "completed" and first["counts"]["failed"] == 0
        assert killed and pooled and all(c["broken"] for c in pooled)
        refresh(D3)
        assert_same_rows(market, clean)
