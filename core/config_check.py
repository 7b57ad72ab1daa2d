"""Is the configuration workable? Checked before a long-running command starts.

``factorflow serve`` (and ``symbol-batch``, ``demo``, ``api``) call
:func:`ensure_configuration` first, so a setting that cannot work stops the command at once
with one line naming the variable, instead of a failed run hours later. What is checked:

- every ``FACTORFLOW_*`` value parses (types, bounds);
- the price provider chain names known providers, and ``csv`` has a readable file;
- the database URL is usable, the database answers, and it is not at a revision this code
  does not know (a database migrated by a newer version cannot be migrated by this one).

Nothing is created or written: a SQLite file that does not exist yet is fine if its
directory can be created.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from contextlib import closing
from pathlib import Path

from pydantic import ValidationError
from sqlalchemy.engine import make_url

from core.settings import Settings, settings_error_message

CONNECT_TIMEOUT_S = 10.0


class ConfigurationError(ValueError):
    """The configuration cannot work; the message names each variable at fault."""


def _provider_problems(settings: Settings) -> list[str]:
    from core.providers.fallback import PROVIDER_FACTORIES

    chain = settings.provider_chain
    valid = ", ".join(PROVIDER_FACTORIES)
    if not chain:
        return [f"FACTORFLOW_PRICE_PROVIDER: empty (valid names: {valid})"]
    problems = []
    unknown = [name for name in chain if name not in PROVIDER_FACTORIES]
    if unknown:
        problems.append(f"FACTORFLOW_PRICE_PROVIDER: unknown provider(s) "
                        f"{', '.join(map(repr, unknown))} (valid names: {valid})")
    if "csv" in chain:
        path = settings.csv_path
        if path is None:
            problems.append("FACTORFLOW_CSV_PATH: not set, but FACTORFLOW_PRICE_PROVIDER "
                            "includes csv")
        elif not path.exists():
            problems.append(f"FACTORFLOW_CSV_PATH: no such file: {path}")
        elif not path.is_file():
            problems.append(f"FACTORFLOW_CSV_PATH: not a file: {path}")
        elif not os.access(path, os.R_OK):
            problems.append(f"FACTORFLOW_CSV_PATH: not readable: {path}")
    return problems


def _unknown_revision(revision: str | None) -> str | None:
    """A message if ``revision`` is not in this code's migration history."""
    if revision is None:
        return None
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    from core.db.migrate import alembic_config

    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        if script.get_revision(revision) is not None:
            return None
    except CommandError:
        pass
    return (f"the database is at revision {revision!r}, which this code does not know "
            f"(head {script.get_current_head()!r}): it was migrated by a newer factorflow")


def _sqlite_problem(database: str) -> str | None:
    path = Path(database)
    if not path.exists():
        parent = path.parent
        while not parent.exists() and parent != parent.parent:
            parent = parent.parent
        if not os.access(parent, os.W_OK | os.X_OK):
            return f"cannot create the SQLite database {path}: {parent} is not writable"
        return None
    if not path.is_file():
        return f"{path} is not a file"
    try:
        # closing() closes it (a bare `with` only commits): no connection lingers in the process
        with closing(sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)) as con:
            has_version = con.execute("SELECT 1 FROM sqlite_master WHERE type='table' AND "
                                      "name='alembic_version'").fetchone()
            revision = (con.execute("SELECT version_num FROM alembic_version").fetchone()
                        if has_version else None)
    except sqlite3.Error as exc:
        return f"cannot read the SQLite database {path}: {exc}"
    return _unknown_revision(revision[0] if revision else None)


async def _server_revision(url: str) -> str | None:
    """The migration revision of the database server at ``url`` (connects once)."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine
    from sqlalchemy.pool import NullPool

    engine = create_async_engine(url, poolclass=NullPool,
                                 connect_args={"timeout": CONNECT_TIMEOUT_S})
    try:
        async with engine.connect() as conn:
            exists = (await conn.execute(text(
                "SELECT to_regclass('alembic_version') IS NOT NULL"))).scalar()
            if not exists:
                return None
            return (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
    finally:
        await engine.dispose()


def _database_problem(settings: Settings) -> str | None:
    from core.db.engine import database_error_message, database_url_problem, shown_url

    url = settings.resolved_database_url
    variable = "FACTORFLOW_DATABASE_URL" if settings.database_url else "FACTORFLOW_HOME"
    problem = database_url_problem(url)
    if problem is not None:
        return f"{variable}: {problem}"
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if not u.database or u.database == ":memory:":
            return None
        problem = _sqlite_problem(u.database)
        return f"{variable}: {problem}" if problem else None
    try:
        problem = _unknown_revision(asyncio.run(_server_revision(url)))
    except Exception as exc:  # unreachable, refused, wrong password, no such database...
        message = database_error_message(exc, url)
        if message is not None:
            return message
        reason = " ".join(str(exc).split()) or type(exc).__name__
        return f"{variable}: cannot use {shown_url(url)}: {type(exc).__name__}: {reason[:200]}"
    return f"{variable}: {problem}" if problem else None


def configuration_problems(settings: Settings | None = None, *,
                           database: bool = True) -> list[str]:
    """What prevents the configuration from working, one line per problem (empty if none).

    Parameters
    ----------
    settings
        The settings to check; default: read from the environment now (a value that does not
        parse is then reported as a problem instead of raised).
    database
        Also check that the database answers and its revision is known (connects once to a
        database server, with a timeout; only reads a SQLite file). Call outside an event loop.

    Returns
    -------
    list[str]
        Each line starts with the variable to fix, e.g. ``FACTORFLOW_CSV_PATH: no such file:
        /data/prices.csv``. Passwords are never included.
    """
    if settings is None:
        try:
            settings = Settings()
        except ValidationError as exc:
            return [settings_error_message(exc)]
    problems = _provider_problems(settings)
    if database:
        db_problem = _database_problem(settings)
        if db_problem is not None:
            problems.append(db_problem)
    return problems


def ensure_configuration(settings: Settings | None = None) -> None:
    """Raise ``ConfigurationError`` (one line, every problem) unless the configuration works.

    Parameters
    ----------
    settings
        As for :func:`configuration_problems`.
    """
    problems = configuration_problems(settings)
    if problems:
        raise ConfigurationError("; ".join(problems))
