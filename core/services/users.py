"""API users and their bearer tokens.

A user holds one bearer token; the database stores only its SHA-256 hash
(:func:`token_hash`). Creating a user or replacing a token shows the token once. A token
replaced or revoked in this process stops working here at once (registered token caches
drop it, see ``api.auth.TokenCache``); other processes validate their caches about once a
second.
"""

from __future__ import annotations

import hashlib
import secrets
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.engine import reading, transaction
from core.errors import Conflict, NotFound
from core.repositories import portfolios as portfolio_repo
from core.repositories.portfolios import PF, U
from core.services.validation import MAX_USER_NAME_LENGTH, validate_name


def token_hash(token: str) -> str:
    """SHA-256 hex digest of a bearer token (what the users table stores)."""
    return hashlib.sha256(token.encode()).hexdigest()


@dataclass(frozen=True)
class UserContext:
    """The authenticated caller."""

    id: str
    name: str
    is_admin: bool



# --- users --------------------------------------------------------------------------------


async def create_user(engine: AsyncEngine, name: str, admin: bool = False) -> tuple[str, str]:
    """Create a user; returns ``(user id, bearer token)``. The token is shown only now:
    the database stores its SHA-256 hash. Conflict if the name is taken."""
    name = validate_name(name, limit=MAX_USER_NAME_LENGTH)
    token = secrets.token_urlsafe(32)
    try:
        async with transaction(engine) as conn:
            taken = (await conn.execute(sa.select(U.c.id).where(U.c.name == name))).first()
            if taken is not None:
                raise Conflict(f"name: a user named {name!r} already exists", "name")
            uid = await portfolio_repo.create_user(conn, name, token_hash(token), admin)
    except IntegrityError:
        raise Conflict(f"name: a user named {name!r} already exists", "name") from None
    return uid, token


async def list_users(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every user (name order): id, name, admin, created_at, live portfolios. No tokens:
    only their hashes are stored."""
    live = (sa.select(sa.func.count()).select_from(PF)
            .where(PF.c.owner_id == U.c.id, PF.c.deleted_at.is_(None)).scalar_subquery())
    async with reading(engine) as conn:
        rows = (await conn.execute(sa.select(
            U.c.id, U.c.name, U.c.is_admin, U.c.created_at, live.label("portfolios"))
            .order_by(U.c.name))).all()
    return [{"id": r.id, "name": r.name, "admin": bool(r.is_admin),
             "created_at": r.created_at, "portfolios": int(r.portfolios)} for r in rows]


class TokenForgetter(Protocol):
    """A cache of authenticated tokens (``api.auth.TokenCache``) that must drop a token."""

    def forget(self, token_hash: str) -> None: ...


_token_caches: weakref.WeakSet[TokenForgetter] = weakref.WeakSet()


def register_token_cache(cache: TokenForgetter) -> None:
    """Have ``cache`` drop a token as soon as :func:`replace_token` replaces it in this
    process (other processes notice within about a second: ``api.auth.TokenCache``)."""
    _token_caches.add(cache)


async def replace_token(engine: AsyncEngine, name: str, *, revoke: bool = False
                        ) -> tuple[str, str | None]:
    """Give user ``name`` a new bearer token, invalidating the old one; returns ``(user id,
    new token)``. With ``revoke`` no token is given out (the stored hash is of a secret
    nobody keeps): the user keeps their portfolios and can be given a token again later.
    The old token stops working at once in this process, and in other running API
    processes at once for writes and within about a second for reads
    (``api.auth.TokenCache``). NotFound for an unknown name."""
    token = secrets.token_urlsafe(32)
    name = name.strip()
    async with transaction(engine) as conn:
        row = (await conn.execute(sa.select(U.c.id, U.c.token_hash).where(
            U.c.name == name))).first()
        if row is None:
            raise NotFound(f"name: no user named {name!r}", "name")
        await conn.execute(sa.update(U).where(U.c.id == row.id).values(
            token_hash=token_hash(token)))
    for cache in list(_token_caches):
        cache.forget(row.token_hash)
    return row.id, None if revoke else token


async def known_token_hashes(engine: AsyncEngine, hashes: Sequence[str]) -> set[str]:
    """Which of ``hashes`` are the token hash of a user now (one query per 500)."""
    out: set[str] = set()
    async with reading(engine) as conn:
        for i in range(0, len(hashes), 500):
            out.update((await conn.execute(sa.select(U.c.token_hash).where(
                U.c.token_hash.in_(list(hashes[i:i + 500]))))).scalars())
    return out


async def authenticate(engine: AsyncEngine, token: str) -> UserContext | None:
    """The user holding bearer ``token``, or None."""
    if not token or len(token) > 512:
        return None
    async with reading(engine) as conn:
        row = (await conn.execute(sa.select(U.c.id, U.c.name, U.c.is_admin).where(
            U.c.token_hash == token_hash(token)))).first()
    return None if row is None else UserContext(row.id, row.name, bool(row.is_admin))
