"""Closed positions: realized P&L per position and in total on GET /v1/portfolios/{id}."""

from __future__ import annotations

from decimal import ROUND_HALF_EVEN, Decimal

from litestar.testing import TestClient

from tests.api.conftest import Seed, auth, position, stored_close


def test_realized_pnl_of_closed_positions(client: TestClient, seed: Seed, db_url: str) -> None:
    from core import calendar

    exit_day = calendar.previous_session(seed.as_of).isoformat()
    created = client.post("/v1/portfolios", headers=auth(seed), json={
        "name": "Closed", "cash": "100", "positions": [
            position("MKTA", quantity="10", entry_price="100.5", exit_date=exit_day,
                     exit_price="111.25"),
            position("MKTB", quantity="-7", entry_price="50", exit_date=exit_day),
            position("DIVY", quantity="3"),
        ]})
    assert created.status_code == 201, created.text
    pid = created.json()["portfolio"]["id"]
    body = client.get(f"/v1/portfolios/{pid}", headers=auth(seed)).json()
    by_symbol = {p["symbol"]: p for p in body["positions"]}
    long_pnl = Decimal(10) * Decimal("111.25") - Decimal(10) * Decimal("100.5")  # 107.50
    covered = (Decimal(-7) * stored_close(db_url, "MKTB", exit_day)).quantize(
        Decimal("0.0001"), rounding=ROUND_HALF_EVEN) - Decimal(-7) * Decimal(50)
    assert Decimal(by_symbol["MKTA"]["realized_pnl"]) == long_pnl
    assert Decimal(by_symbol["MKTB"]["realized_pnl"]) == covered
    assert by_symbol["DIVY"]["realized_pnl"] is None  # still open
    assert Decimal(body["realized_pnl"]) == long_pnl + covered
    # not booked to cash: cash stays what the user set
    assert Decimal(body["cash"]) == Decimal(100)
