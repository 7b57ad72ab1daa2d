"""A flow launcher for tests (``core.launch``): records what would start, starts nothing."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest


class RecordingLauncher:
    """Counts onboarding starts (``calls``) and history starts (``history_calls``), and
    records symbol-batch targets."""

    def __init__(self) -> None:
        self.calls = 0
        self.history_calls = 0
        self.symbol_batches: list[dt.date] = []

    async def start_onboarding(self) -> str:
        self.calls += 1
        return "recorded"

    async def start_history(self) -> str:
        self.history_calls += 1
        return "recorded"

    async def start_symbol_batch(self, target: dt.date) -> dict[str, Any]:
        self.symbol_batches.append(target)
        return {"mode": "in-process", "flow_run_id": None, "deployment": None}

    def warm_up(self) -> None:
        return None


def record_launches(mp: pytest.MonkeyPatch) -> RecordingLauncher:
    """Make every API app started under ``mp`` install a :class:`RecordingLauncher` (the
    one returned) instead of the Prefect one."""
    import api.launch

    rec = RecordingLauncher()
    mp.setattr(api.launch, "flow_launcher", lambda: rec)
    return rec
