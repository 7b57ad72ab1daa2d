"""API users and their bearer tokens.

A user holds one bearer token; the database stores only its SHA-256 hash
(:func:`token_hash`). Creating a user or replacing a token shows the token once. A token
replaced or revoked in this process stops working here at once (registered token caches
drop it, see ``api.auth.TokenCache``); other processes validate their caches about once a
second.

May import: repositories, ``core.db`` (engines and transactions), ``core.errors``, the
validation of :mod:`core.services.validation`. Not: flows, api, cli.
"""

from __future__ import annotations

import hashlib
import secrets
import weakref
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncEngine

from core.db.engine import reading, transaction
from core.errors import Conflict, NotFound
from core.repositories import users as user_repo
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
            if await user_repo.name_taken(conn, name):
                raise Conflict(f"name: a user named {name!r} already exists", "name")
            uid = await user_repo.create_user(conn, name, token_hash(token), admin)
    except IntegrityError:
        raise Conflict(f"name: a user named {name!r} already exists", "name") from None
    return uid, token


async def list_users(engine: AsyncEngine) -> list[dict[str, Any]]:
    """Every user (name order): id, name, admin, created_at, live portfolios. No tokens:
    only their hashes are stored."""
    async with reading(engine) as conn:
        rows = await user_repo.users_with_portfolio_counts(conn)
    return [{"id": r.id, "name": r.name, "admin": r.is_admin,
             "created_at": r.created_at, "portfolios": r.portfolios} for r in rows]


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
        found = await user_repo.id_and_token_hash_by_name(conn, name)
        if found is None:
            raise NotFound(f"name: no user named {name!r}", "name")
        user_id, old_hash = found
        await user_repo.set_token_hash(conn, user_id, token_hash(token))
    for cache in list(_token_caches):
        cache.forget(old_hash)
    return user_id, None if revoke else token


async def known_token_hashes(engine: AsyncEngine, hashes: Sequence[str]) -> set[str]:
    """Which of ``hashes`` are the token hash of a user now (one query per 500)."""
    async with reading(engine) as conn:
        return await user_repo.existing_token_hashes(conn, hashes)


async def authenticate(engine: AsyncEngine, token: str) -> UserContext | None:
    """The user holding bearer ``token``, or None."""
    if not token or len(token) > 512:
        return None
    async with reading(engine) as conn:
        row = await user_repo.user_by_token_hash(conn, token_hash(token))
    return None if row is None else UserContext(row.id, row.name, row.is_admin)
