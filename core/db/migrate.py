"""Apply Alembic migrations programmatically (``factorflow db upgrade``, tests, readiness)."""

from __future__ import annotations

import asyncio
import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text
from sqlalchemy.engine import Connection, make_url

from core.db.engine import create_engine
from core.settings import REPO_ROOT, get_settings

# pg_advisory_xact_lock key of the migrations (any constant; advisory locks are per database)
POSTGRES_MIGRATION_LOCK_KEY = 0x66666D6967726174  # "ffmigrat"


@contextmanager
def sqlite_migration_lock(url: str) -> Iterator[None]:
    """Hold an exclusive file lock beside the SQLite database of ``url`` (blocks until free).

    SQLite runs Alembic's migrations one transaction each and has no advisory locks, so two
    processes migrating a fresh file both create the first table. The lock file
    (``<database>.migrate-lock``) stays in place: deleting it would let a third process lock
    a new file while a second still holds the old one. A no-op for an in-memory database.
    """
    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        yield
        return
    lock_path = Path(database).with_name(Path(database).name + ".migrate-lock")
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as handle:  # flock is per open file: threads exclude each other
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def lock_for_migrations(connection: Connection) -> None:
    """On PostgreSQL, wait for the transaction-scoped migration lock on ``connection``.

    Called before Alembic reads the current revision: a process that waited then reads the
    revision the holder committed and has nothing left to do. Released at commit/rollback.
    SQLite is locked by :func:`sqlite_migration_lock` around the whole run instead.
    """
    if connection.dialect.name == "postgresql":
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"),
                           {"key": POSTGRES_MIGRATION_LOCK_KEY})


def alembic_config(url: str | None = None) -> Config:
    """Alembic config pointing at ``migrations/`` and ``url`` (default: configured DB)."""
    cfg = Config(str(REPO_ROOT / "alembic.ini"))
    cfg.set_main_option("script_location", str(REPO_ROOT / "migrations"))
    cfg.set_main_option("sqlalchemy.url", url or get_settings().resolved_database_url)
    cfg.attributes["configure_logging"] = False
    return cfg


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Upgrade the database at ``url`` to ``revision`` (blocking; run outside an event loop)."""
    command.upgrade(alembic_config(url), revision)


def downgrade(url: str | None = None, revision: str = "base") -> None:
    """Downgrade the database at ``url`` to ``revision``."""
    command.downgrade(alembic_config(url), revision)


def head_revision() -> str | None:
    """The newest revision in ``migrations/versions``."""
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


async def current_revision(url: str | None = None) -> str | None:
    """The revision the database at ``url`` is at (None for an empty database)."""

    def _read(conn: Connection) -> str | None:
        return MigrationContext.configure(conn).get_current_revision()

    engine = create_engine(url)
    try:
        async with engine.connect() as conn:
            return await conn.run_sync(_read)
    finally:
        await engine.dispose()


def upgrade_in_thread(url: str | None = None) -> None:
    """Run :func:`upgrade` from code that may already be inside an event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        upgrade(url)
        return
    import threading

    errors: list[BaseException] = []

    def _target() -> None:
        try:
            upgrade(url)
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    t = threading.Thread(target=_target)
    t.start()
    t.join()
    if errors:
        raise errors[0]
