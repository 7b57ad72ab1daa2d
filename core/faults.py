"""Named fault points: where the fault tests kill a process on purpose.

``fault_point("symbol-batch:after-first-price-chunk")`` does nothing unless the
environment variable ``FACTORFLOW_FAULT_POINT`` names that point; then the process
is killed with SIGKILL at once (no cleanup, no ``finally``: what a power cut or the OOM
killer does). The tests use it to prove that a plain rerun after a crash at that point
leaves exactly the rows of a clean run. Never set it in production.
"""

from __future__ import annotations

import os
import signal

FAULT_VARIABLE = "FACTORFLOW_FAULT_POINT"


def fault_point(name: str) -> None:
    """SIGKILL this process if ``FACTORFLOW_FAULT_POINT`` equals ``name``."""
    if os.environ.get(FAULT_VARIABLE) == name:
        os.kill(os.getpid(), signal.SIGKILL)
