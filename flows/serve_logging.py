"""The console of ``factorflow serve``: each failure's traceback once, not five times.

A flow run that fails on a task's exception reaches the console of ``serve`` (which streams
the output of the flow-run subprocesses it starts) as up to five tracebacks of one error:

1. the task engine: "Task run failed with exception: … - Retries are exhausted" + traceback;
2. the task engine: "Finished in state Failed(…)" (ERROR);
3. the flow engine: "Encountered exception during execution" + traceback (the flow's own);
4. the flow engine: "Engine execution exited with unexpected exception" + the same traceback;
5. ``prefect.engine``: "Execution of flow run … exited with unexpected exception" + the same
   traceback, when the engine's outcome was not reported to the runner.

:class:`ServeConsoleHandler` keeps (3), the flow's exception with its traceback, shows (1) as
one line (it names the cause when the flow carries on after a failed task), and drops (2) and
every later record carrying an exception whose traceback was already printed (4, 5). Only the
console is thinned: the records reach the Prefect API, hence the UI's run logs, unchanged.

``serve`` points ``PREFECT_LOGGING_SETTINGS_PATH`` at a copy of Prefect's logging
configuration with this console handler (``flows.serve.use_serve_console``) before Prefect is
imported; the flow-run subprocesses inherit the variable, so they use it too.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Iterator

from prefect.logging.handlers import PrefectConsoleHandler

_REMEMBERED = 200  # exceptions whose traceback was printed, newest kept


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and the exceptions it was raised from or during (causes, contexts)."""
    seen: set[int] = set()
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or id(e) in seen:
            continue
        seen.add(id(e))
        yield e
        todo += [e.__cause__, e.__context__]


def _is_task_run(record: logging.LogRecord) -> bool:
    return record.name.startswith("prefect.task_runs") or hasattr(record, "task_run_id")


def _without_traceback(record: logging.LogRecord) -> logging.LogRecord:
    """A copy of ``record`` printed as its message only (other handlers keep the original)."""
    copy = logging.makeLogRecord(record.__dict__)
    copy.exc_info, copy.exc_text, copy.stack_info = None, None, None
    return copy


class ServeConsoleHandler(PrefectConsoleHandler):
    """Prefect's console handler, printing each exception's traceback at most once."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self._printed: deque[BaseException] = deque(maxlen=_REMEMBERED)

    def shown(self, record: logging.LogRecord) -> logging.LogRecord | None:
        """What the console prints for ``record``: itself, a copy without traceback, or None."""
        exc = record.exc_info[1] if record.exc_info else None
        message = record.getMessage()
        if _is_task_run(record):
            if message.startswith("Finished in state") and record.levelno >= logging.ERROR:
                return None  # repeats the task's failure line
            if exc is not None and message.startswith("Task run failed with"):
                return _without_traceback(record)
        if exc is None:
            return record
        if any(exc is printed for printed in self._printed):
            return None  # Prefect re-reporting an exception already printed in full
        printed_chains = {id(e) for printed in self._printed for e in _chain(printed)}
        if any(id(e) in printed_chains for e in _chain(exc)):
            return _without_traceback(record)  # wraps or is part of a printed traceback
        self._printed.append(exc)
        return record

    def emit(self, record: logging.LogRecord) -> None:
        """Print ``record`` as :meth:`shown` decides."""
        shown = self.shown(record)
        if shown is not None:
            super().emit(shown)
