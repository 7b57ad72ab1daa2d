"""A flow run's bookkeeping, written once for every flow.

:class:`RunRecord` keeps one run's ``batch_runs`` row (``running`` → finished or failed, with
phase seconds, counts and errors), its progress artifact, its summary artifacts and its Prefect
events; :class:`RunKind` says what differs between the flows (job name, event resource,
artifact keys, how a database failure is named). :func:`map_chunks` maps a task over chunks
and collects the reports and the failed chunks.

May import core, Prefect and :mod:`flows.common`; not api, cli or another flow module.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Generic, NoReturn, TypeVar

from prefect import unmapped
from prefect.artifacts import create_markdown_artifact, create_table_artifact

from core.db.errors import StorageError, is_storage_error, short_error
from core.db.errors import named as as_named
from core.db.models import RunStatus
from flows.common import record_failure, record_finish, record_start, shared

ChunkT = TypeVar("ChunkT")
ReportT = TypeVar("ReportT")


class Progress:
    """A Prefect progress artifact over a run's phases (visible in the UI while a long run
    goes on): each phase gets a share of 0–100 %, advanced one step per finished chunk;
    :meth:`finish` reaches 100 %, :meth:`fail` says what failed where it stopped. A step is
    sent at most every ``EVERY_S`` seconds (a phase's last step and a failed chunk always):
    each update is a call to the Prefect API the flow's thread waits for."""

    EVERY_S = 1.0

    def __init__(self, description: str) -> None:
        from prefect.artifacts import create_progress_artifact

        self.description = description
        self.base, self.share, self.steps, self.done = 0.0, 100.0, 1, 0
        self.sent_at = time.monotonic()
        self.id: Any = create_progress_artifact(progress=0.0, description=description)

    @property
    def percent(self) -> float:
        return min(100.0, self.base + self.share * self.done / self.steps)

    def _update(self, progress: float, note: str) -> None:
        from prefect.artifacts import update_progress_artifact

        try:
            update_progress_artifact(self.id, progress=progress,
                                     description=f"{self.description}: {note}")
        except Exception as exc:  # the UI's progress bar never fails a run
            logging.getLogger(__name__).warning("progress artifact: %s", exc)

    def phase(self, steps: int, start: float, end: float) -> None:
        """Start a phase of ``steps`` chunks that goes from ``start`` to ``end`` percent."""
        self.base, self.share, self.steps, self.done = start, end - start, max(steps, 1), 0

    def step(self, note: str, failed: bool = False) -> None:
        self.done += 1
        if failed or self.done >= self.steps or time.monotonic() - self.sent_at >= self.EVERY_S:
            self._update(self.percent, note)
            self.sent_at = time.monotonic()

    def finish(self, note: str) -> None:
        self._update(100.0, note)

    def fail(self, note: str) -> None:
        self._update(self.percent, f"FAILED: {note}")


@dataclass(frozen=True)
class RunKind:
    """What one flow's runs have in common.

    ``job``: the ``batch_runs.job_type`` (also the name a database failure of the run is given
    when ``named_storage_errors``); ``resource``: the Prefect event resource;
    ``summary_key``: the key of the summary table artifact; ``failed_items``: the ``errors``
    entry that lists the failed items (symbols, portfolios) and ``failed_label`` what such an
    item is in the failure summary (e.g. "fetch failed"), ``None``: no failure summary;
    ``progress``: whether runs show a progress artifact.
    """

    job: str
    resource: dict[str, str]
    summary_key: str
    failed_items: str = ""
    failed_label: str | None = None
    progress: bool = True
    named_storage_errors: bool = False

    def title(self, target: dt.date) -> str:
        """``"<job> for <date>"``: the start of the run's artifact descriptions."""
        return f"{self.job} for {target}"

    def publish_failure(self, title: str, cause: str, failures: dict[str, str]) -> None:
        """The summary table artifact of a failed run: its cause, then up to 50 of the items
        that failed before it. Never raises (the run's own error matters more)."""
        if self.failed_label is None:
            return
        try:
            rows = [{"item": "status", "value": "failed"}, {"item": "cause", "value": cause}]
            rows += [{"item": f"{self.failed_label}: {k}", "value": v}
                     for k, v in sorted(failures.items())[:50]]
            create_table_artifact(key=self.summary_key, table=rows,
                                  description=f"{title}: FAILED: {cause}")
        except Exception as exc:
            logging.getLogger(__name__).warning("could not publish the failure artifact: %s",
                                                exc)

    def fail_unrecorded(self, title: str, exc: BaseException, what: str) -> NoReturn:
        """Fail a run that has no batch-run row (yet, or its end could not be written): a
        database failure becomes ``StorageError`` (``what`` failed), the failure summary names
        the cause."""
        err = as_named(exc, what)
        self.publish_failure(title, short_error(err), {})
        if err is exc:
            raise exc
        raise err from exc


@dataclass(frozen=True)
class ProblemTable:
    """A markdown table artifact of what went wrong in a run (published only with rows)."""

    key: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]
    description: str

    def publish(self) -> None:
        if not self.rows:
            return
        lines = ["| " + " | ".join(self.columns) + " |", "|---" * len(self.columns) + "|"]
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in self.rows]
        create_markdown_artifact(key=self.key, markdown="\n".join(lines),
                                 description=self.description)


@dataclass
class RunRecord:
    """One flow run's bookkeeping (see the module docstring); start it with :meth:`start`.

    ``phases`` (seconds per phase), ``errors`` and ``counts`` are what a failure records
    (the flow fills them as it goes); ``emit`` sends a Prefect event
    (``prefect.events.emit_event`` as the flow module names it).
    """

    kind: RunKind
    title: str
    run_id: str
    emit: Callable[..., Any]
    progress: Progress | None
    phases: dict[str, float] = field(default_factory=dict)
    errors: dict[str, Any] = field(default_factory=dict)
    counts: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def start(
        cls, kind: RunKind, target: dt.date, *, flow_run_id: str | None,
        emit: Callable[..., Any], start: dt.date | None = None, close_crashed: bool = False,
        title: str | None = None,
    ) -> RunRecord:
        """Insert the run's ``running`` row (:func:`flows.common.record_start`, same
        arguments) and start its progress artifact (``"<job> <target>"``). ``title``
        defaults to :meth:`RunKind.title`."""
        title = title or kind.title(target)
        progress = Progress(f"{kind.job} {target}") if kind.progress else None
        try:
            run_id = asyncio.run(
                record_start(kind.job, target, start, flow_run_id, close_crashed))
        except BaseException as exc:
            if progress is not None:
                progress.fail(short_error(exc))
            if not kind.named_storage_errors:
                raise
            kind.fail_unrecorded(title, exc, "recording the run failed")
        return cls(kind, title, run_id, emit, progress)

    @contextmanager
    def timed(self, phase: str) -> Iterator[None]:
        """Store the block's wall-clock seconds as ``phases[phase]`` (when it does not raise)."""
        begin = time.perf_counter()
        yield
        self.phases[phase] = time.perf_counter() - begin

    @contextmanager
    def failing(self) -> Iterator[None]:
        """When the block raises: close the row as ``failed`` (the cause, ``errors``,
        ``counts``, ``phases``), fail the progress artifact, publish the failure summary and
        re-raise (a database failure as ``StorageError`` with ``named_storage_errors``)."""
        try:
            yield
        except BaseException as exc:
            err = as_named(exc, self.kind.job) if self.kind.named_storage_errors else exc
            cause = short_error(err)
            record_failure(self.run_id, self.phases, {"error": cause, **self.errors},
                           self.counts)
            if self.progress is not None:
                self.progress.fail(cause)
            self.kind.publish_failure(self.title, cause,
                                      self.errors.get(self.kind.failed_items, {}))
            if err is exc:
                raise
            raise err from exc

    def record_failed(self, message: str, counts: dict[str, Any],
                      errors: dict[str, Any]) -> None:
        """Close the row as ``failed`` after the work ran (``message`` as the error) and
        fail the progress artifact."""
        record_failure(self.run_id, self.phases, {**errors, "error": message}, counts)
        if self.progress is not None:
            self.progress.fail(message)

    def publish(self, status: RunStatus, counts: dict[str, Any],
                problems: ProblemTable | None = None,
                extra_rows: Sequence[dict[str, Any]] = ()) -> None:
        """The summary table artifact (counts that are not dicts, ``seconds.<phase>``, then
        ``extra_rows``) and the problem table, if any."""
        rows = [{"item": k, "value": v} for k, v in counts.items() if not isinstance(v, dict)]
        rows += [{"item": f"seconds.{k}", "value": round(v, 3)} for k, v in self.phases.items()]
        rows += extra_rows
        create_table_artifact(key=self.kind.summary_key, table=rows,
                              description=f"{self.title}: {status.value}")
        if problems is not None:
            problems.publish()

    def send(self, event: str, payload: dict[str, Any]) -> None:
        """Emit a Prefect event about the run."""
        self.emit(event=event, resource=self.kind.resource, payload=payload)

    def complete(
        self, status: RunStatus, counts: dict[str, Any], errors: dict[str, Any], *,
        event: str, payload: dict[str, Any], problems: ProblemTable | None = None,
        extra_rows: Sequence[dict[str, Any]] = (),
    ) -> None:
        """Close the row with ``status``, publish the artifacts, finish the progress artifact
        and emit ``event``. If the row cannot be written, the progress artifact says so and
        the run fails (as ``StorageError`` with ``named_storage_errors``)."""
        try:
            asyncio.run(record_finish(self.run_id, status, counts, self.phases, errors))
        except Exception as exc:  # the next run closes the row as crashed
            if self.progress is not None:
                self.progress.fail(short_error(exc))
            if not self.kind.named_storage_errors:
                raise
            self.kind.fail_unrecorded(self.title, exc, "recording the run failed")
        self.publish(status, counts, problems, extra_rows)
        if self.progress is not None:
            self.progress.finish(status.value)
        self.send(event, payload)


@dataclass
class ChunkFailure(Generic[ChunkT]):
    """A chunk whose task failed: the error and how it reads (``why``)."""

    chunk: ChunkT
    error: BaseException
    why: str


@dataclass
class ChunkResults(Generic[ChunkT, ReportT]):
    """Each chunk's report or failure, in the order of the chunks."""

    outcomes: list[ReportT | ChunkFailure[ChunkT]] = field(default_factory=list)

    @property
    def reports(self) -> list[ReportT]:
        """Reports of the chunks that succeeded."""
        return [o for o in self.outcomes if not isinstance(o, ChunkFailure)]

    @property
    def failures(self) -> list[ChunkFailure[ChunkT]]:
        """The chunks that failed."""
        return [o for o in self.outcomes if isinstance(o, ChunkFailure)]

    @property
    def storage_failures(self) -> list[ChunkFailure[ChunkT]]:
        """Chunks that failed because the database did."""
        return [f for f in self.failures if is_storage_error(f.error)]

    def raise_storage_error(self, what: str) -> None:
        """Raise ``StorageError("<what>: <first database failure>")`` if there is one."""
        storage = self.storage_failures
        if storage:
            raise StorageError(f"{what}: {short_error(storage[0].error)}")


def chunk_failure_reason(exc: BaseException) -> str:
    """``"storage_error: …"`` for a database failure, else ``"provider_error: …"``."""
    kind = "storage_error" if is_storage_error(exc) else "provider_error"
    return f"{kind}: {short_error(exc)}"


def map_chunks(
    task: Any, chunks: Sequence[ChunkT], *common: Any, progress: Progress | None = None,
    span: tuple[float, float] = (0.0, 100.0), name: Callable[[ChunkT], str] = str,
    why: Callable[[BaseException], str] = short_error,
) -> ChunkResults[ChunkT, Any]:
    """Map the Prefect ``task`` over ``chunks`` (``common``: further arguments, the same for
    every chunk), wait for each and collect reports and failures (a failed chunk never stops
    the others). With ``progress``, each chunk advances it within ``span`` percent, noted
    ``"<name(chunk)> stored"`` or ``"<name(chunk)> FAILED: <why(error)>"``. Each chunk is
    quoted on the thread runner (:func:`flows.common.shared`): Prefect would otherwise walk
    its every item twice per task looking for futures (10,000 portfolios: ~1 s of the
    GIL)."""
    futures = task.map([shared(c) for c in chunks], *(unmapped(a) for a in common))
    results: ChunkResults[ChunkT, Any] = ChunkResults()
    if progress is not None:
        progress.phase(len(chunks), *span)
    for chunk, future in zip(chunks, futures, strict=True):
        outcome = future.result(raise_on_failure=False)
        if isinstance(outcome, BaseException):
            failure = ChunkFailure(chunk, outcome, why(outcome))
            results.outcomes.append(failure)
            note = f"{name(chunk)} FAILED: {failure.why}"
        else:
            results.outcomes.append(outcome)
            note = f"{name(chunk)} stored"
        if progress is not None:
            progress.step(note, failed=isinstance(outcome, BaseException))
    return results
