"""Alembic environment: one async history for SQLite (aiosqlite) and PostgreSQL (asyncpg)."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig

from alembic import context
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import core.db.models  # noqa: F401  (registers the tables on SQLModel.metadata)
from core.db.engine import create_engine, is_sqlite
from core.db.migrate import lock_for_migrations, sqlite_migration_lock
from core.settings import get_settings

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logging", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def _url() -> str:
    return config.get_main_option("sqlalchemy.url") or get_settings().resolved_database_url


def _configure(connection: Connection | None = None, url: str | None = None) -> None:
    context.configure(
        connection=connection,
        url=url,
        target_metadata=target_metadata,
        compare_type=True,
        render_as_batch=True,  # SQLite alters tables by copy-and-move
        literal_binds=connection is None,
    )


def run_migrations_offline() -> None:
    _configure(url=_url())
    with context.begin_transaction():
        context.run_migrations()


def _run_sync(connection: Connection) -> None:
    # Concurrent first starts migrate one at a time; the lock is taken before Alembic reads
    # the current revision, so whoever waited finds the schema current.
    lock_for_migrations(connection)
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_async(url: str) -> None:
    engine = create_engine(url)
    async with engine.connect() as connection:
        await connection.run_sync(_run_sync)
        await connection.commit()
    await engine.dispose()


def run_migrations_online() -> None:
    url = _url()
    if is_sqlite(url):  # SQLite has no advisory lock: a file lock around the whole run
        with sqlite_migration_lock(url):
            asyncio.run(_run_async(url))
    else:
        asyncio.run(_run_async(url))


if context.is_offline_mode():
    run_migrations_offline()
else:
    existing = config.attributes.get("connection")
    if existing is not None:
        if existing.dialect.name == "sqlite":
            with sqlite_migration_lock(existing.engine.url.render_as_string()):
                _run_sync(existing)
        else:
            _run_sync(existing)
    else:
        run_migrations_online()
