"""How core asks for a flow to start without knowing Prefect (the port; flows plug in).

Services that need a flow started — onboarding new symbols after a portfolio change, a
portfolio's history build, the symbol batch an operator asks the API for — call
:func:`launcher`. The process's entry point installs the real one
(:class:`flows.launcher.PrefectLauncher`: a deployment run when a Prefect API is configured,
the flow in a background thread otherwise): the API at start-up (``api/launch.py``), the CLI
(``cli/main.py``). Without one installed nothing starts: queued onboarding and history jobs
stay in the database and the next process that resumes the queues runs them.

May import: nothing of factorflow but ``core.errors``.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any, Protocol

from core.errors import NotReady

log = logging.getLogger(__name__)


class FlowLauncher(Protocol):
    """What core needs from a launcher; both methods return without waiting for the flow."""

    async def start_onboarding(self) -> str:
        """Start processing the onboarding queue; returns how (``deployment``,
        ``in-process``...)."""
        ...

    async def start_history(self) -> str:
        """Start processing the queued history builds (``portfolio-history``); returns how."""
        ...

    async def start_symbol_batch(self, target: dt.date) -> dict[str, Any]:
        """Start the symbol flow for session ``target``; returns ``mode``, ``flow_run_id``
        (None in-process) and ``deployment`` (None in-process)."""
        ...

    def warm_up(self) -> None:
        """Get ready to start flows quickly (in the background); may do nothing."""
        ...


class NoLauncher:
    """The launcher of a process that installed none: onboarding waits in its queue, a
    symbol batch cannot be started (``NotReady``)."""

    async def start_onboarding(self) -> str:
        log.warning("no flow launcher in this process: pending symbols wait in the queue")
        return "not started"

    async def start_history(self) -> str:
        log.warning("no flow launcher in this process: history builds wait in their queue")
        return "not started"

    async def start_symbol_batch(self, target: dt.date) -> dict[str, Any]:
        raise NotReady("this process cannot start flows (no flow launcher installed)")

    def warm_up(self) -> None:
        return None


_installed: FlowLauncher = NoLauncher()


def install(new: FlowLauncher) -> FlowLauncher:
    """Make ``new`` the process's launcher; returns the one it replaces."""
    global _installed
    previous, _installed = _installed, new
    return previous


def launcher() -> FlowLauncher:
    """The process's launcher (a :class:`NoLauncher` until one is installed)."""
    return _installed
