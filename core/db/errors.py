"""Storage failures: recognised, named, and described in one short line.

A database that cannot be written (disk full, connection lost, read-only) is not a
provider's fault and must not be recorded as one per symbol: the flows fail the run
with ``StorageError``. Its message never carries the SQL statement or its parameters
(a bulk upsert's parameters can be megabytes).
"""

from __future__ import annotations

import errno

from sqlalchemy import exc as sa_exc

MAX_MESSAGE = 300


class StorageError(Exception):
    """The database could not store or read what a run needs; the run fails."""


def is_storage_error(exc: BaseException) -> bool:
    """True for a failure of the database or its disk (not of the data or the code)."""
    if isinstance(exc, StorageError):
        return True
    if isinstance(exc, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.InternalError):
        return True
    if isinstance(exc, sa_exc.DBAPIError) and exc.connection_invalidated:
        return True
    if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    name = type(exc).__name__
    return name in ("DiskFullError", "ConnectionDoesNotExistError", "CannotConnectNowError")


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
