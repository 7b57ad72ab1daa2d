"""An answer computed just before another process stores a newer one is never kept in the
API's memory under the newer row's token (it would be served until the row changed again)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import sqlalchemy as sa
from litestar.testing import TestClient

from tests.api.conftest import Seed, auth, position


def test_a_newer_row_stored_meanwhile_is_not_shadowed_by_the_older_answer(
        client: TestClient, seed: Seed, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from core.db.models import Portfolio, Position
    from core.services import analytics as analytics_service

    created = client.post("/v1/portfolios", headers=auth(seed), json={
        "name": "Race", "cash": "0", "positions": [position("MKTA", quantity="10")]}).json()
    pid = created["portfolio"]["id"]
    original = analytics_service.analytics_with_hash
    raced = []

    async def racing(portfolio_id: str, kind: str, engine: Any = None,
                     scenario: str | None = None) -> Any:
        answer = await original(portfolio_id, kind, engine, scenario)
        if not raced:  # meanwhile, another process doubles the position and re-analyses
            raced.append(True)
            async with engine.begin() as conn:
                positions = Position.__table__  # type: ignore[attr-defined]
                portfolios = Portfolio.__table__  # type: ignore[attr-defined]
                await conn.execute(sa.update(positions).where(
                    positions.c.portfolio_id == pid).values(quantity=Decimal(20)))
                await conn.execute(sa.update(portfolios).where(portfolios.c.id == pid).values(
                    updated_at=sa.func.current_timestamp()))
            await analytics_service.compute(pid, engine)
        return answer

    monkeypatch.setattr(analytics_service, "analytics_with_hash", racing)
    # the create stored every kind; drop the cache so the next GET computes
    from core.db.models import PortfolioAnalyticsCache
    from tests.flows.helpers import db_path, sqlite_connection

    with sqlite_connection(db_path(db_url)) as con:
        con.execute(f"DELETE FROM {PortfolioAnalyticsCache.__tablename__} WHERE portfolio_id = ?",
                    (pid,))
    first = client.get(f"/v1/portfolios/{pid}/overview", headers=auth(seed)).json()
    assert Decimal(first["positions"][0]["quantity"]) == 10  # computed before the change
    second = client.get(f"/v1/portfolios/{pid}/overview", headers=auth(seed)).json()
    assert Decimal(second["positions"][0]["quantity"]) == 20, "the older answer was kept"
