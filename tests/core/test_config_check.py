"""``configuration_problems``: a configuration that cannot work is named before anything runs."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core.config_check import ConfigurationError, configuration_problems, ensure_configuration
from core.db import migrate
from tests.conftest import sqlite_url


def _problems(settings_env: pytest.MonkeyPatch, **env: str) -> list[str]:
    for key, value in env.items():
        settings_env.setenv(key, value)
    return configuration_problems()


def test_a_working_configuration_has_no_problem(
    tmp_path: Path, settings_env: pytest.MonkeyPatch
) -> None:
    csv = tmp_path / "prices.csv"
    csv.write_text("symbol,date,open,high,low,close,adj_close,volume\n")
    assert _problems(settings_env, FACTORFLOW_DATABASE_URL=sqlite_url(tmp_path / "new" / "f.db"),
                     FACTORFLOW_PRICE_PROVIDER="csv,synthetic",
                     FACTORFLOW_CSV_PATH=str(csv)) == []
    assert not (tmp_path / "new").exists()  # checking creates nothing


def test_a_migrated_database_has_no_problem(database_url: str) -> None:
    assert configuration_problems() == []


@pytest.mark.parametrize(("env", "expected"), [
    ({"FACTORFLOW_PRICE_PROVIDER": "csv"},
     "FACTORFLOW_CSV_PATH: not set, but FACTORFLOW_PRICE_PROVIDER includes csv"),
    ({"FACTORFLOW_PRICE_PROVIDER": "csv", "FACTORFLOW_CSV_PATH": "/nonexistent/p.csv"},
     "FACTORFLOW_CSV_PATH: no such file: /nonexistent/p.csv"),
    ({"FACTORFLOW_PRICE_PROVIDER": "csv", "FACTORFLOW_CSV_PATH": "/"},
     "FACTORFLOW_CSV_PATH: not a file: /"),
    ({"FACTORFLOW_PRICE_PROVIDER": "synthetic,bloomberg"},
     "FACTORFLOW_PRICE_PROVIDER: unknown provider(s) 'bloomberg'"),
    ({"FACTORFLOW_PRICE_PROVIDER": " , "}, "FACTORFLOW_PRICE_PROVIDER: empty"),
    ({"FACTORFLOW_LOOKBACK_DAYS": "many"}, "FACTORFLOW_LOOKBACK_DAYS: "),
    ({"FACTORFLOW_DATABASE_URL": "mysql+aiomysql://u:secret@h/db"},
     "FACTORFLOW_DATABASE_URL: unsupported database 'mysql'"),
    ({"FACTORFLOW_DATABASE_URL": "postgresql+asyncpg://u:secret@127.0.0.1:9/db"},
     "FACTORFLOW_DATABASE_URL: cannot connect to postgresql+asyncpg://u:***@127.0.0.1:9/db"),
])
def test_each_problem_names_its_variable(
    tmp_path: Path, settings_env: pytest.MonkeyPatch, env: dict[str, str], expected: str
) -> None:
    env.setdefault("FACTORFLOW_DATABASE_URL", sqlite_url(tmp_path / "f.db"))
    problems = _problems(settings_env, **env)
    assert len(problems) == 1 and problems[0].startswith(expected), problems
    assert "secret" not in problems[0] and "\n" not in problems[0]
    with pytest.raises(ConfigurationError, match=expected.split(":")[0]):
        ensure_configuration()


def test_every_problem_is_reported_at_once(
    tmp_path: Path, settings_env: pytest.MonkeyPatch
) -> None:
    problems = _problems(settings_env, FACTORFLOW_PRICE_PROVIDER="csv,nope",
                         FACTORFLOW_DATABASE_URL="mysql+aiomysql://h/db")
    assert [p.split(":")[0] for p in problems] == [
        "FACTORFLOW_PRICE_PROVIDER", "FACTORFLOW_CSV_PATH", "FACTORFLOW_DATABASE_URL"]


def test_a_database_from_a_newer_version_cannot_be_migrated(
    tmp_path: Path, settings_env: pytest.MonkeyPatch
) -> None:
    url = sqlite_url(tmp_path / "f.db")
    migrate.upgrade(url)
    with sqlite3.connect(tmp_path / "f.db") as con:
        con.execute("UPDATE alembic_version SET version_num = '9999_from_the_future'")
    problems = _problems(settings_env, FACTORFLOW_DATABASE_URL=url)
    assert len(problems) == 1
    assert problems[0].startswith("FACTORFLOW_DATABASE_URL: the database is at revision "
                                  "'9999_from_the_future'"), problems


def test_an_unwritable_sqlite_directory_is_a_problem(
    tmp_path: Path, settings_env: pytest.MonkeyPatch
) -> None:
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o500)
    try:
        import os

        if os.access(locked, os.W_OK):
            pytest.skip("running as a user who can write anywhere (root)")
        problems = _problems(settings_env,
                             FACTORFLOW_DATABASE_URL=sqlite_url(locked / "sub" / "f.db"))
        assert len(problems) == 1 and "not writable" in problems[0]
    finally:
        locked.chmod(0o700)
