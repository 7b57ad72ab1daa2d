"""Request and response schemas of the admin routes."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

import msgspec
from msgspec import Meta


class SymbolBatchRequest(msgspec.Struct, forbid_unknown_fields=True):
    as_of: Annotated[dt.date | None, Meta(description="Session to process (default: the "
                                                      "latest completed NYSE session).")] = None


class SymbolBatchStarted(msgspec.Struct):
    as_of: dt.date
    mode: Annotated[str, Meta(description="deployment (a Prefect run was created) or "
                                          "in-process (a background thread of the API).")]
    flow_run_id: str | None
    deployment: str | None


class BatchRunRead(msgspec.Struct):
    id: str
    job_type: str
    target_date: dt.date
    start_date: dt.date | None
    status: str
    flow_run_id: str | None
    started_at: dt.datetime
    finished_at: dt.datetime | None
    counts: dict[str, Any]
    phase_seconds: dict[str, Any]
    error_summary: dict[str, Any]


class BatchRunList(msgspec.Struct):
    items: list[BatchRunRead]


class JobFreshness(msgspec.Struct):
    last_success_at: dt.datetime | None
    target_date: dt.date | None
    status: str | None
    sessions_behind: Annotated[int | None, Meta(description="NYSE sessions between the last "
                                                            "success's target date and the "
                                                            "latest completed session.")]
    stale: bool


class Freshness(msgspec.Struct):
    latest_completed_session: dt.date
    latest_data_date: dt.date | None
    jobs: dict[str, JobFreshness]


class QueueRow(msgspec.Struct):
    symbol: str
    status: str
    attempts: int
    error: str | None
    portfolio_ids: list[str]
    requested_at: dt.datetime | None
    started_at: dt.datetime | None
    finished_at: dt.datetime | None


class OnboardingQueue(msgspec.Struct):
    items: list[QueueRow]
