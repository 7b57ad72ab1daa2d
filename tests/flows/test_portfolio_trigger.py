"""The portfolio-refresh deployment, as declared in prefect.yaml, is triggered by the event a
real symbol flow run emits, and maps the event's as_of onto the flow's parameter.

The trigger is checked with Prefect's own server-side matching (``EventTrigger.covers``)
and parameter rendering (``RunDeployment`` templates); the full round trip on a running
Prefect server is exercised by the operations tests.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from pathlib import Path

import pytest
import yaml

from core.symbol_steps import register_universe
from tests.flows.test_symbol_batch import _wait_for_event

REPO = Path(__file__).resolve().parents[2]
AS_OF = dt.date(2026, 11, 19)

pytestmark = pytest.mark.usefixtures("prefect_harness")


def _deployment(name: str) -> dict:
    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    return next(d for d in spec["deployments"] if d["name"] == name)


def test_declared_trigger_matches_the_emitted_event(database_url: str) -> None:
    from prefect.events.schemas.deployment_triggers import DeploymentEventTrigger
    from prefect.server.events.actions import RunDeployment
    from prefect.server.events.schemas.automations import EventTrigger
    from prefect.server.events.schemas.events import ReceivedEvent
    from prefect.utilities.schema_tools.hydration import HydrationContext, hydrate

    from flows.portfolio_refresh import portfolio_refresh
    from flows.symbol_batch import symbol_batch

    asyncio.run(register_universe(["MKTA"]))
    summary = symbol_batch(as_of=AS_OF)
    emitted = _wait_for_event("factorflow.symbol-batch.completed", summary["run_id"])
    received = ReceivedEvent.model_validate(emitted.model_dump())

    declared = _deployment("portfolio-refresh")["triggers"]
    assert len(declared) == 1
    trigger = DeploymentEventTrigger.model_validate(declared[0])
    server_trigger = EventTrigger.model_validate(
        trigger.model_dump(exclude={"parameters", "job_variables", "schedule_after", "name",
                                    "description", "enabled"}))
    assert server_trigger.covers(received)

    # an event of another name or resource does not start the refresh
    other = received.model_copy(update={"event": "factorflow.symbol-batch.started"})
    assert not server_trigger.covers(other)

    # the parameters, rendered the way Prefect's RunDeployment action renders them
    params = dict(trigger.parameters or {})
    RunDeployment._upgrade_v1_templates(params)
    rendered = hydrate(params, HydrationContext(
        raise_on_error=True, render_jinja=True, jinja_context={"event": received}))
    assert rendered == {"as_of": AS_OF.isoformat()}
    validated = portfolio_refresh.validate_parameters(rendered)
    assert validated["as_of"] == AS_OF


def test_symbol_batch_deployment_schedule() -> None:
    dep = _deployment("symbol-batch")
    assert dep["entrypoint"] == "flows/symbol_batch.py:symbol_batch"
    assert dep["schedules"] == [
        {"cron": "0 21 * * 1-5", "timezone": "America/New_York", "active": True}]
