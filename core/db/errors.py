"""Storage failures: recognised, named, and described in one short line.

A database that cannot be written (disk full, connection lost, read-only) is not a
provider's fault and must not be recorded as one per symbol: the flows fail the run
with ``StorageError``. Its message never carries the SQL statement or its parameters
(a bulk upsert's parameters can be megabytes).
"""

from __future__ import annotations

import errno
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import exc as sa_exc

MAX_MESSAGE = 300


class StorageError(Exception):
    """The database could not store or read what a run needs; the run fails."""


STORAGE_SQLSTATE_CLASSES = ("08", "53", "57", "58")
"""PostgreSQL error classes of a failing server or disk: connection exception, insufficient
resources (disk full, out of memory), operator intervention, system error."""


def _sqlstate(exc: BaseException) -> str | None:
    for attr in ("sqlstate", "pgcode"):
        code = getattr(exc, attr, None)
        if isinstance(code, str):
            return code
    return None


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo:
        e = todo.pop()
        if e is None or any(e is s for s in seen) or len(seen) > 10:
            continue
        seen.append(e)
        todo += [getattr(e, "orig", None), e.__cause__, e.__context__]
    return seen


def is_storage_error(exc: BaseException) -> bool:
    """True for a failure of the database or its disk (not of the data or the code).

    SQLite: ``OperationalError`` (disk full, I/O error, database locked past the busy
    timeout, read-only). PostgreSQL: SQLSTATE classes ``STORAGE_SQLSTATE_CLASSES`` or a
    lost connection. Either: ``OSError`` ENOSPC/EDQUOT/EROFS.
    """
    for e in _chain(exc):
        if isinstance(e, StorageError):
            return True
        if isinstance(e, sa_exc.DBAPIError) and e.connection_invalidated:
            return True
        if isinstance(e, OSError) and e.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
            return True
        code = _sqlstate(e)
        if code is not None:
            return code[:2] in STORAGE_SQLSTATE_CLASSES
        if isinstance(e, sa_exc.OperationalError) and not _is_postgres(e):
            return True
        if type(e).__name__ in ("ConnectionDoesNotExistError", "CannotConnectNowError",
                                "ConnectionRefusedError"):
            return True
    return False


def _is_postgres(exc: sa_exc.DBAPIError) -> bool:
    return "asyncpg" in type(exc.orig).__module__ if exc.orig is not None else False


def short_error(exc: BaseException, limit: int = MAX_MESSAGE) -> str:
    """``"<ExceptionType>: <first line of the message>"``, at most ``limit`` characters.

    For SQLAlchemy errors, the driver's own exception and message (without the SQL
    statement and its parameters).
    """
    inner: BaseException = exc
    if isinstance(exc, sa_exc.StatementError) and exc.orig is not None:
        inner = exc.orig
    text = str(inner).strip().splitlines()[0] if str(inner).strip() else ""
    text = text.split("\n[SQL:")[0]
    out = f"{type(inner).__name__}: {text}" if text else type(inner).__name__
    return out if len(out) <= limit else out[: limit - 1] + "…"


def as_storage_error(exc: BaseException, what: str) -> StorageError:
    """A ``StorageError`` saying what could not be done and the driver's short reason."""
    return StorageError(f"{what}: {short_error(exc)}")


def named(exc: BaseException, what: str) -> BaseException:
    """A database failure as ``StorageError`` (what failed, the driver's short reason);
    any other exception (a ``StorageError`` included) unchanged."""
    if isinstance(exc, StorageError) or not is_storage_error(exc):
        return exc
    return as_storage_error(exc, what)


@contextmanager
def storage_failures_named(what: str) -> Iterator[None]:
    """Re-raise a database failure inside the block as ``StorageError`` (no SQL, no
    parameters, no chained driver traceback); other exceptions pass unchanged."""
    try:
        yield
    except Exception as exc:
        err = named(exc, what)
        if err is exc:
            raise
        raise err from None
