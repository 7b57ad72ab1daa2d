"""Several processes migrating one fresh database at the same moment (first start of a
``factorflow api`` beside a ``factorflow serve``, or N workers): all succeed, the schema is
created once and ends at head.

Real processes, released together: each imports everything first, says it is ready, then
waits for one "go" file, so their migrations overlap as closely as a test can make them.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import sqlalchemy as sa
from sqlmodel import SQLModel

import core.db.models  # noqa: F401  (registers the tables)
from core.db import migrate
from core.db.engine import create_engine
from tests.conftest import WAIT_LIMIT_S, wait_until

REPO = Path(__file__).resolve().parents[3]
PROCESSES = 4

_CHILD = """
import os, sys, time
from pathlib import Path
from core.db import migrate
import alembic.command, core.db.models  # noqa: F401  (import costs kept out of the race)
ready, go = Path(sys.argv[1]), Path(sys.argv[2])
ready.touch()
deadline = time.monotonic() + 2 * int(sys.argv[3])  # outlasts the parent's wait
while not go.exists():
    if time.monotonic() > deadline:
        sys.exit("never released")
    time.sleep(0.005)
migrate.upgrade(os.environ["FACTORFLOW_DATABASE_URL"])
"""


def _child_env(url: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FACTORFLOW_")}
    env["FACTORFLOW_DATABASE_URL"] = url
    env["PYTHONPATH"] = str(REPO)
    return env


def _tables_and_versions(url: str) -> tuple[list[str], list[str]]:
    async def read() -> tuple[list[str], list[str]]:
        engine = create_engine(url)
        try:
            async with engine.connect() as conn:
                tables = await conn.run_sync(lambda c: sa.inspect(c).get_table_names())
                versions = (await conn.execute(
                    sa.text("SELECT version_num FROM alembic_version"))).scalars().all()
                return sorted(tables), list(versions)
        finally:
            await engine.dispose()

    return asyncio.run(read())


def test_concurrent_first_upgrades_all_succeed(empty_database_url: str, tmp_path: Path) -> None:
    url = empty_database_url
    go = tmp_path / "go"
    procs = []
    for i in range(PROCESSES):
        ready = tmp_path / f"ready-{i}"
        procs.append((ready, subprocess.Popen(
            [sys.executable, "-c", _CHILD, str(ready), str(go), str(WAIT_LIMIT_S)], cwd=REPO,
            env=_child_env(url), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)))

    def all_ready() -> bool:
        assert all(p.poll() is None for _, p in procs), [p.communicate() for _, p in procs]
        return all(ready.exists() for ready, _ in procs)

    wait_until(all_ready, "the children to be ready", every=0.02)
    go.touch()
    results = [(p.wait(timeout=WAIT_LIMIT_S), p.communicate()[1]) for _, p in procs]
    failed = [err[-2000:] for code, err in results if code != 0]
    assert not failed, f"{len(failed)} of {PROCESSES} failed:\n" + "\n---\n".join(failed)

    tables, versions = _tables_and_versions(url)
    assert tables == sorted(set(SQLModel.metadata.tables) | {"alembic_version"})
    assert versions == [migrate.head_revision()]
