"""Shared fixtures: an isolated FACTORFLOW_HOME / PREFECT_HOME per session, migrated databases,
one Prefect test harness per session (it takes ~18 s to start)."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

_SESSION_HOME = Path(tempfile.mkdtemp(prefix="factorflow-tests-"))
# Before anything imports Prefect or reads settings.
os.environ["FACTORFLOW_HOME"] = str(_SESSION_HOME / "home")
os.environ["PREFECT_HOME"] = str(_SESSION_HOME / "prefect")
os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["FACTORFLOW_RETRY_DELAYS"] = "0,0,0"
os.environ.pop("PREFECT_API_URL", None)
for _k in [k for k in os.environ if k.startswith("FACTORFLOW_") and k not in (
        "FACTORFLOW_HOME", "FACTORFLOW_RETRY_DELAYS", "FACTORFLOW_TEST_POSTGRES_URL")]:
    os.environ.pop(_k)

REPO_ROOT = Path(__file__).resolve().parent.parent
MARKET_CSV = REPO_ROOT.parent / "shared" / "data" / "market" / "prices.csv"


def sqlite_url(path: Path) -> str:
    return f"sqlite+aiosqlite:///{path}"


@pytest.fixture
def settings_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """Set FACTORFLOW_* variables in a test; settings are re-read around it."""
    from core.settings import get_settings

    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


@pytest.fixture
def database_url(tmp_path: Path, settings_env: pytest.MonkeyPatch) -> str:
    """A fresh SQLite database migrated to head, configured as FACTORFLOW_DATABASE_URL."""
    from core.db import migrate

    url = sqlite_url(tmp_path / "factorflow.db")
    settings_env.setenv("FACTORFLOW_DATABASE_URL", url)
    migrate.upgrade(url)
    return url


@pytest.fixture(scope="session")
def prefect_harness() -> Iterator[None]:
    """A Prefect test server for the whole session (started on first use)."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture
def market_csv() -> Path:
    """The real prices of ../shared/data/market (skips when the folder is absent)."""
    if not MARKET_CSV.exists():
        pytest.skip(f"real market data not found at {MARKET_CSV} (it lives beside the repo)")
    return MARKET_CSV
