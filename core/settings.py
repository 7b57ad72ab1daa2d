"""Settings from the environment, prefix ``FACTORFLOW_``; loaded once per process.

Every field is documented in README.md ("Configuration").
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from pathlib import Path

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT = Path(__file__).resolve().parent.parent
ENV_PREFIX = "FACTORFLOW_"


class Settings(BaseSettings):
    """Runtime configuration. Read from ``FACTORFLOW_*`` environment variables."""

    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="ignore")

    home: Path = Field(
        default=Path(".factorflow"),
        description="Directory for the embedded SQLite database and local state.",
    )
    database_url: str | None = Field(
        default=None,
        description="SQLAlchemy async URL; default sqlite+aiosqlite under `home`.",
    )
    price_provider: str = Field(
        default="synthetic",
        description="Comma-separated provider chain, tried in order: synthetic, csv, yfinance.",
    )
    csv_path: Path | None = Field(
        default=None, description="Long-format price CSV for the csv provider."
    )
    synthetic_seed: int = Field(default=7, description="Seed of the synthetic price model.")
    history_days: int = Field(
        default=760, ge=200, validation_alias=ENV_PREFIX + "LOOKBACK_DAYS",
        description="Calendar days of history a symbol is given: fetched for a new one, "
        "extended back to for a stored one (760: 500 sessions of returns for the historical "
        "VaR plus a margin). Read from FACTORFLOW_LOOKBACK_DAYS, the variable's documented "
        "name since the first release, so an operator's setting keeps working.",
    )
    history_extension_per_night: int = Field(
        default=500, ge=0,
        description="Most stored symbols whose shorter history one nightly symbol batch "
        "extends back to `history_days` (0: none); the universe catches up over nights.",
    )
    reference_history_start: dt.date = Field(
        default=dt.date(2007, 1, 3),
        description="First date fetched for a new reference ETF (history for stress replays).",
    )
    fetch_chunk_size: int = Field(
        default=500, ge=1, description="Symbols per provider call (one mapped task each) "
        "for a year of history; a shorter window (a nightly's sessions) takes up to 4× as "
        "many with a local provider chain."
    )
    factor_chunk_size: int = Field(
        default=1000, ge=1, description="Symbols per factor task (one mapped task each)."
    )
    portfolio_chunk_size: int = Field(
        default=500, ge=1, description="Portfolios per refresh task (one mapped task each)."
    )
    max_backfill_sessions: int = Field(
        default=30, ge=1, description="Most missed sessions a portfolio refresh backfills."
    )
    degraded_failure_share: float = Field(
        default=0.10, ge=0, le=1,
        description="Share of failed portfolios above which the refresh alerts (event + error).",
    )
    max_workers: int = Field(default=4, ge=1, description="Threads of the task runner.")
    refresh_concurrency: int = Field(
        default=1, ge=1,
        description="Portfolio-refresh chunks analysed at once in one process. Their work is "
        "Python under the GIL, so on the thread runner more only contend (2,000 portfolios: "
        "14.1 s at 1, 15.6 s at 2, 19.0 s at 4); raise it with Dask (one per worker process).",
    )
    factor_concurrency: int = Field(
        default=1, ge=1,
        description="Symbol-batch factor chunks computed at once in one process. Reading "
        "price windows, fitting and writing are GIL- and writer-bound: on 2 cores, 10,000 "
        "symbols took 7.0 s at 1, 6.6 s at 2 and 8.3 s at 4; raise it with Dask.",
    )
    fetch_concurrency: int | None = Field(
        default=None, ge=1,
        description="Symbol-batch fetch chunks in the provider at once in one process (one "
        "chunk is stored at a time, while the next is fetched; at most this + 1 deliveries "
        "are held in memory). Default: max_workers when the provider chain reaches the "
        "network (yfinance: the threads wait on it), else 1 (a local provider computes: "
        "threads only contend; 10,000 synthetic symbols spent 4.6 s in the provider at 1, "
        "18.2 s at 4).",
    )
    dask_address: str | None = Field(
        default=None,
        description="Scheduler address of an existing Dask cluster (tcp://host:8786): the "
        "chunk tasks then run there through prefect-dask instead of in a thread pool.",
    )
    jump_threshold: float = Field(
        default=0.5, gt=0, description="One-day raw-close move no split explains that is flagged."
    )
    stale_sessions: int = Field(
        default=3, ge=0, description="Sessions a last price may lag as_of before it is stale."
    )
    retry_delays: str = Field(
        default="2,5,15",
        description="Seconds between retries of a provider task (comma-separated; one per retry).",
    )
    refetch_sessions: int = Field(
        default=10, ge=0,
        description="Recent sessions in which a hole inside a symbol's stored range is asked "
        "for again on every run (older holes are recorded as known-missing; 0: never).",
    )
    max_pending_symbols_per_user: int = Field(
        default=50, ge=0,
        description="Most new symbols one user may have waiting for onboarding at once (the "
        "shared nightly universe grows by them); a request over it gets 429.",
    )
    delist_after_sessions: int = Field(
        default=10, ge=1, description="Sessions without data before a symbol is marked delisted."
    )

    @field_validator("retry_delays")
    @classmethod
    def _retry_delays_are_seconds(cls, value: str) -> str:
        try:
            delays = [float(x) for x in value.split(",") if x.strip()]
        except ValueError:
            delays = [-1.0]
        if any(d < 0 for d in delays):
            raise ValueError("expected comma-separated seconds >= 0, e.g. 2,5,15")
        return value

    @property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{(self.home / 'factorflow.db').resolve()}"

    @property
    def retry_delay_list(self) -> list[float]:
        return [float(x) for x in self.retry_delays.split(",") if x.strip()]

    @property
    def provider_chain(self) -> list[str]:
        return [p.strip().lower() for p in self.price_provider.split(",") if p.strip()]

    @property
    def fetch_slots(self) -> int:
        """Fetch chunks at once in one process (see ``fetch_concurrency``)."""
        if self.fetch_concurrency is not None:
            return self.fetch_concurrency
        return 1 if self.local_provider else self.max_workers

    @property
    def local_provider(self) -> bool:
        """Whether every provider of the chain computes or reads locally (no network)."""
        return set(self.provider_chain) <= {"synthetic", "csv"}

    @property
    def short_window_scale(self) -> int:
        """How many times ``fetch_chunk_size`` symbols a chunk of a short window (a nightly's
        sessions) may hold: 4 with a local provider (fewer chunks: less fixed cost per
        chunk; 10,000 synthetic symbols' nightly prices phase 5.0-5.6 s in chunks of 500,
        3.5-4.1 s in chunks of 2,000), 1 when the chain reaches the network (as many chunks
        as before, so ``max_workers`` of them wait on it at once)."""
        return 4 if self.local_provider else 1


# Inputs never echoed in an error: they may hold a password.
_SECRET_FIELDS = frozenset({"database_url"})


def settings_error_message(exc: ValidationError) -> str:
    """One line naming every ``FACTORFLOW_*`` variable that failed validation and why,
    e.g. ``FACTORFLOW_LOOKBACK_DAYS: Input should be greater than or equal to 200 (got
    '10')``."""
    parts = []
    for error in exc.errors():
        field = str(error["loc"][0]) if error.get("loc") else ""
        if not field:
            variable = "FACTORFLOW_*"
        elif field.startswith(ENV_PREFIX):  # a field read from a variable of another name
            variable = field
        else:
            variable = ENV_PREFIX + field.upper()
        message = str(error["msg"]).removeprefix("Value error, ")
        if field not in _SECRET_FIELDS and "input" in error:
            message += f" (got {error['input']!r})"
        parts.append(f"{variable}: {' '.join(message.split())}")
    return "; ".join(parts)


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; call ``get_settings.cache_clear()`` in tests)."""
    return Settings()
