"""A real local Prefect server on loopback, shared by the tests that need one (deployments
served by another process, Dask workers)."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from flows.serve import start_local_server
from tests.conftest import WAIT_LIMIT_S, seeded_prefect_home


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="session")
def prefect_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The API URL of a `prefect server start` subprocess (SQLite), stopped at session end."""
    home = seeded_prefect_home(tmp_path_factory.mktemp("prefect-server"))
    proc, url = start_local_server(home, free_port(), timeout=WAIT_LIMIT_S)
    try:
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=WAIT_LIMIT_S)
