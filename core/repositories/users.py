"""Users: their rows and the SHA-256 hashes of their bearer tokens.

May import: ``core.db``. Not: services, flows, api, cli (tokens themselves and their
hashing live in :mod:`core.services.users`).
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from core.db.models import Portfolio, User

_users = User.__table__  # type: ignore[attr-defined]
_portfolios = Portfolio.__table__  # type: ignore[attr-defined]
_IN = 500
"""Token hashes per ``IN (...)`` query."""


@dataclass(frozen=True)
class UserRow:
    """A user as the API sees it: id, name, admin flag."""

    id: str
    name: str
    is_admin: bool


@dataclass(frozen=True)
class UserListing:
    """A user with the number of their live (not soft-deleted) portfolios."""

    id: str
    name: str
    is_admin: bool
    created_at: dt.datetime
    portfolios: int


async def create_user(
    conn: AsyncConnection, name: str, token_hash: str, is_admin: bool = False
) -> str:
    """Insert a user holding the token whose SHA-256 hex digest is ``token_hash``;
    returns its id (a UUID4 text)."""
    uid = str(uuid.uuid4())
    await conn.execute(sa.insert(_users).values(
        id=uid, name=name, token_hash=token_hash, is_admin=is_admin,
        created_at=dt.datetime.now(dt.UTC)))
    return uid


async def name_taken(conn: AsyncConnection, name: str) -> bool:
    """Whether a user named ``name`` exists."""
    stmt = sa.select(_users.c.id).where(_users.c.name == name)
    return (await conn.execute(stmt)).first() is not None


async def users_with_portfolio_counts(conn: AsyncConnection) -> list[UserListing]:
    """Every user in name order, with their count of live portfolios."""
    live = (sa.select(sa.func.count()).select_from(_portfolios)
            .where(_portfolios.c.owner_id == _users.c.id, _portfolios.c.deleted_at.is_(None))
            .scalar_subquery())
    rows = (await conn.execute(sa.select(
        _users.c.id, _users.c.name, _users.c.is_admin, _users.c.created_at,
        live.label("portfolios")).order_by(_users.c.name))).all()
    return [UserListing(r.id, r.name, bool(r.is_admin), r.created_at, int(r.portfolios))
            for r in rows]


async def id_and_token_hash_by_name(conn: AsyncConnection, name: str
                                    ) -> tuple[str, str] | None:
    """``(id, token hash)`` of the user named ``name``, or None."""
    row = (await conn.execute(sa.select(_users.c.id, _users.c.token_hash).where(
        _users.c.name == name))).first()
    return None if row is None else (row.id, row.token_hash)


async def set_token_hash(conn: AsyncConnection, user_id: str, token_hash: str) -> None:
    """Replace the stored token hash of user ``user_id``."""
    await conn.execute(sa.update(_users).where(_users.c.id == user_id).values(
        token_hash=token_hash))


async def existing_token_hashes(conn: AsyncConnection, hashes: Sequence[str]) -> set[str]:
    """Which of ``hashes`` are the token hash of a user now (one query per 500)."""
    out: set[str] = set()
    for i in range(0, len(hashes), _IN):
        out.update((await conn.execute(sa.select(_users.c.token_hash).where(
            _users.c.token_hash.in_(list(hashes[i:i + _IN]))))).scalars())
    return out


async def user_by_token_hash(conn: AsyncConnection, token_hash: str) -> UserRow | None:
    """The user whose token hash is ``token_hash``, or None."""
    row = (await conn.execute(sa.select(_users.c.id, _users.c.name, _users.c.is_admin).where(
        _users.c.token_hash == token_hash))).first()
    return None if row is None else UserRow(row.id, row.name, bool(row.is_admin))
