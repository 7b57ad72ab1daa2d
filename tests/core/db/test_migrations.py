"""One Alembic history: upgrade, downgrade to base, upgrade again; models equal migrations."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine
from sqlmodel import SQLModel

import core.db.models  # noqa: F401
from core.db import migrate


def _tables(path: Path) -> set[str]:
    with sqlite3.connect(path) as con:
        return {r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")}


def test_upgrade_downgrade_upgrade(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    url = f"sqlite+aiosqlite:///{path}"
    migrate.upgrade(url)
    assert {"prices", "symbols", "symbol_factor_exposures", "batch_runs"} <= _tables(path)
    assert asyncio.run(migrate.current_revision(url)) == migrate.head_revision()
    migrate.downgrade(url, "base")
    assert _tables(path) <= {"alembic_version"}
    migrate.upgrade(url)
    assert asyncio.run(migrate.current_revision(url)) == migrate.head_revision()


def test_models_and_migrations_agree(tmp_path: Path) -> None:
    path = tmp_path / "m.db"
    migrate.upgrade(f"sqlite+aiosqlite:///{path}")
    engine = create_engine(f"sqlite:///{path}")
    with engine.connect() as conn:
        ctx = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(ctx, SQLModel.metadata)
    assert diff == [], diff
