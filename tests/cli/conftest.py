"""Fixtures of the CLI tests: the API tests' seeded database and recording launcher (the
``users`` commands act on the same data the API serves)."""

from tests.api.conftest import client, db_url, dispatched, seed

__all__ = ["client", "db_url", "dispatched", "seed"]
