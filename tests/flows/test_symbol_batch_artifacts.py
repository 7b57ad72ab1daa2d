"""What an operator sees in the Prefect UI for a symbol batch: the progress artifact reaches
100 % on a completed run; a failed run still ends with a summary naming its cause (the
provider's error, not only its consequence)."""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest

from core.symbol_steps import register_universe
from tests.conftest import SQLITE_ONLY

AS_OF = dt.date(2026, 11, 19)

pytestmark = [pytest.mark.usefixtures("prefect_harness"), SQLITE_ONLY]


def _artifacts(flow_run_id) -> list:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    async def read() -> list:
        async with get_client() as client:
            return await client.read_artifacts(artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))

    return asyncio.run(read())


def test_a_completed_run_shows_100_percent_progress(database_url: str) -> None:
    from flows.symbol_batch import symbol_batch

    asyncio.run(register_universe(["MKTA", "MKTB"]))
    state = symbol_batch(as_of=AS_OF, return_state=True)
    assert state.is_completed()
    arts = _artifacts(state.state_details.flow_run_id)
    progress = [a for a in arts if a.type == "progress"]
    assert len(progress) == 1 and float(progress[0].data) == 100.0
    assert "completed" in progress[0].description
    assert any(a.key == "symbol-batch-summary" for a in arts)


def test_a_failed_run_has_a_summary_naming_the_providers_error(
    database_url: str, settings_env: pytest.MonkeyPatch, tmp_path: Path,
) -> None:
    from core.settings import get_settings
    from core.symbol_steps import ReferenceDataError
    from flows.symbol_batch import symbol_batch

    settings_env.setenv("FACTORFLOW_PRICE_PROVIDER", "csv")
    settings_env.setenv("FACTORFLOW_CSV_PATH", str(tmp_path / "absent.csv"))
    get_settings.cache_clear()
    asyncio.run(register_universe(["MKTA"]))
    state = symbol_batch(as_of=AS_OF, return_state=True)
    assert state.is_failed()
    with pytest.raises(ReferenceDataError) as err:
        state.result()
    assert "absent.csv" in str(err.value)  # the cause, not only "prices missing"
    arts = _artifacts(state.state_details.flow_run_id)
    summary = [a for a in arts if a.key == "symbol-batch-summary"]
    assert len(summary) == 1 and "FAILED" in summary[0].description
    assert "absent.csv" in str(summary[0].data)
    progress = [a for a in arts if a.type == "progress"]
    assert len(progress) == 1 and "FAILED" in progress[0].description
    assert "absent.csv" in progress[0].description
