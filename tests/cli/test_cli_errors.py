"""A misconfigured ``factorflow``: every command says in one line what is wrong, names the
variable to fix, never prints the database password, and exits non-zero (no traceback).

The real command in a subprocess, as an operator runs it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url

from tests.conftest import WAIT_LIMIT_S

REPO = Path(__file__).resolve().parents[2]
SECRET = "s3cr3t-pw"


def run_cli(args: list[str], home: Path, **env_vars: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FACTORFLOW_", "PREFECT_"))}
    env["FACTORFLOW_HOME"] = str(home)
    env.update(env_vars)
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=WAIT_LIMIT_S)


def assert_one_line_error(proc: subprocess.CompletedProcess[str], variable: str,
                          *fragments: str) -> None:
    assert proc.returncode != 0, proc.stdout
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    line = lines[0]
    assert line.startswith("factorflow") and f": {variable}: " in line, line
    for fragment in fragments:
        assert fragment in line, line
    assert SECRET not in proc.stderr + proc.stdout


@pytest.mark.parametrize(("url", "fragments"), [
    ("not a url", ["not a database URL", "sqlite+aiosqlite:///"]),
    (f"postgresql+asyncpg://u:{SECRET}@h:notaport/db", ["not a database URL"]),
    (f"foo://u:{SECRET}@h/db", ["unsupported database 'foo'"]),
    (f"postgresql://u:{SECRET}@127.0.0.1/db", ["'postgresql' is not asynchronous"]),
    (f"postgresql+nodriver://u:{SECRET}@127.0.0.1/db", ["unknown driver"]),
    (f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:1/db",
     ["cannot connect to postgresql+asyncpg://u:***@127.0.0.1:1/db: connection refused"]),
    (f"postgresql+asyncpg://u:{SECRET}@no-such-host.invalid:5432/db",
     ["cannot connect to", "unknown host 'no-such-host.invalid'"]),
    (f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:70000/db", ["port 70000 out of range"]),
], ids=["unparsable", "bad-port", "unknown-dialect", "sync-driver", "unknown-driver",
        "refused", "unknown-host", "port-range"])
def test_bad_database_url_is_one_line(tmp_path: Path, url: str, fragments: list[str]) -> None:
    proc = run_cli(["db", "upgrade"], tmp_path / "home", FACTORFLOW_DATABASE_URL=url)
    assert_one_line_error(proc, "FACTORFLOW_DATABASE_URL", *fragments)


def test_sqlite_directory_that_cannot_be_created(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    url = f"sqlite+aiosqlite:///{blocker}/sub/factorflow.db"
    proc = run_cli(["db", "upgrade"], tmp_path / "home", FACTORFLOW_DATABASE_URL=url)
    assert_one_line_error(proc, "FACTORFLOW_DATABASE_URL", "cannot create directory",
                          str(blocker))
    # the default database under FACTORFLOW_HOME names that variable instead
    proc = run_cli(["db", "upgrade"], blocker / "home")
    assert_one_line_error(proc, "FACTORFLOW_HOME", "cannot create directory", str(blocker))


@pytest.mark.postgres
def test_wrong_password_and_missing_database(tmp_path: Path) -> None:
    from tests.conftest import postgres_admin_url

    admin = make_url(postgres_admin_url()).set(drivername="postgresql+asyncpg")
    wrong = admin.set(password=SECRET).render_as_string(hide_password=False)
    proc = run_cli(["db", "upgrade"], tmp_path / "home", FACTORFLOW_DATABASE_URL=wrong)
    assert_one_line_error(proc, "FACTORFLOW_DATABASE_URL", "cannot connect to",
                          "password authentication failed")
    missing_name = f"ff_missing_{uuid.uuid4().hex[:8]}"
    missing = admin.set(database=missing_name).render_as_string(hide_password=False)
    proc = run_cli(["db", "upgrade"], tmp_path / "home", FACTORFLOW_DATABASE_URL=missing)
    assert_one_line_error(proc, "FACTORFLOW_DATABASE_URL", "cannot connect to",
                          f'database "{missing_name}" does not exist')


@pytest.mark.parametrize("command", [
    ["db", "current"], ["symbol-batch"], ["portfolio-refresh"], ["demo"],
    ["api", "--port", "8765"], ["serve", "--start-server"], ["users", "list"],
], ids=lambda c: c[0] + ("-" + c[1] if c[0] in ("db", "users") else ""))
def test_every_command_reports_an_unreachable_database(tmp_path: Path,
                                                       command: list[str]) -> None:
    url = f"postgresql+asyncpg://u:{SECRET}@127.0.0.1:1/db"
    proc = run_cli(command, tmp_path / "home", FACTORFLOW_DATABASE_URL=url)
    assert_one_line_error(proc, "FACTORFLOW_DATABASE_URL", "connection refused")


@pytest.mark.parametrize(("variable", "value", "fragment"), [
    ("FACTORFLOW_LOOKBACK_DAYS", "abc", "valid integer"),
    ("FACTORFLOW_LOOKBACK_DAYS", "10", "greater than or equal to 200"),
    ("FACTORFLOW_REFERENCE_HISTORY_START", "yesterday", "valid date"),
    ("FACTORFLOW_RETRY_DELAYS", "2,soon", "comma-separated seconds"),
    ("FACTORFLOW_MAX_WORKERS", "0", "greater than or equal to 1"),
    ("FACTORFLOW_FACTOR_CONCURRENCY", "0", "greater than or equal to 1"),
    ("FACTORFLOW_FETCH_CONCURRENCY", "many", "valid integer"),
])
def test_invalid_setting_is_one_line(tmp_path: Path, variable: str, value: str,
                                     fragment: str) -> None:
    proc = run_cli(["db", "upgrade"], tmp_path / "home", **{variable: value})
    assert_one_line_error(proc, variable, fragment, repr(value))
