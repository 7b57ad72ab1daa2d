"""In-process caches validated against the database in bulk, in the background.

The analytics memo (:mod:`core.services.analytics_cache`) and the API's token cache
(``api.auth.TokenCache``) serve entries without a query, and check them all with one query
about once a second. :class:`BulkValidated` holds that schedule once: a read that finds a
validation due starts it in the background (no request waits for it); entries are served
only while the last validation started less than ``max_age`` ago, past which reads wait for
the validation in flight; a failed validation drops every entry (reads then go to the
database).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable, Coroutine
from typing import Any

log = logging.getLogger(__name__)


class BulkValidated:
    """Mixin: the validation schedule of a cache whose entries live in :meth:`_entries`.

    A subclass sets ``interval``, ``max_age``, ``validated_at`` (``-inf`` at first) and
    ``_task`` (None), and its validation coroutine sets ``validated_at`` to the monotonic
    time it *started* when it succeeds.
    """

    interval: float
    max_age: float
    validated_at: float
    _task: asyncio.Task[int] | None
    what = "cache"

    def _entries(self) -> dict[Any, Any]:
        raise NotImplementedError

    async def _ensure_valid(self, validation: Callable[[], Coroutine[Any, Any, int]],
                            drop_when_stale: bool = False) -> None:
        """Before a read: start ``validation()`` when one is due; wait for it only when the
        entries are older than ``max_age``. ``drop_when_stale``: entries still older than
        that after the wait (the validation failed or is stuck) are dropped."""
        now = time.monotonic()
        if now - self.validated_at < self.interval:
            return
        if not self._entries():
            self.validated_at = now
            return
        task = self._task
        if task is None:
            task = self._task = asyncio.get_running_loop().create_task(validation())
            task.add_done_callback(self._finished)
        if now - self.validated_at >= self.max_age:
            with contextlib.suppress(Exception):
                await asyncio.shield(task)
            if drop_when_stale and time.monotonic() - self.validated_at >= self.max_age:
                self._entries().clear()

    def _finished(self, task: asyncio.Task[int]) -> None:
        self._task = None
        if not task.cancelled() and task.exception() is not None:
            log.warning("%s validation failed, entries dropped: %s", self.what,
                        task.exception())
            self._entries().clear()
