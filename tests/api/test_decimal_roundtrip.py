"""Every value the request schema accepts round-trips exactly: stored, then read back by the
portfolio, the overview, the factor exposures and the snapshots (a quantity of 1e-8 once
answered 500 after it was stored, and the portfolio's analytics answered 500 for good).
A create that fails after its commit leaves nothing behind."""

from __future__ import annotations

import re
import uuid
from decimal import ROUND_HALF_EVEN, Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from litestar.testing import TestClient

from api.schemas import Cash, ExactDecimal, ManualValue, Price, Quantity
from core.services.validation import MAX_POSITION_AMOUNT
from tests.api.conftest import Seed, assert_error, auth, position, stored_close


def _text(kind: type[ExactDecimal]) -> st.SearchStrategy[str]:
    """Any string the kind's documented pattern accepts (leading zeros and trailing zeros
    included), drawn by the pattern itself."""
    return st.from_regex(kind.pattern(), fullmatch=True)


def _nonzero(kind: type[ExactDecimal]) -> st.SearchStrategy[str]:
    return _text(kind).filter(lambda s: Decimal(s) != 0)


# the smallest and largest magnitudes first: they are what broke
EDGES = {Quantity: ["0.00000001", "-0.00000001", "999999999999.99999999", "0.00000010"],
         Price: ["0.000001", "999999999999.999999", "1"],
         Cash: ["0.0001", "-99999999999999.9999", "0"],
         ManualValue: ["0.0001", "99999999999999.9999", "0"]}


def _kind(kind: type[ExactDecimal], *, nonzero: bool = False) -> st.SearchStrategy[str]:
    return st.one_of(st.sampled_from([e for e in EDGES[kind] if not nonzero or Decimal(e)]),
                     _nonzero(kind) if nonzero else _text(kind))


def _money(x: Decimal) -> Decimal:
    return x.quantize(Decimal("0.0001"), rounding=ROUND_HALF_EVEN)


def _same(text: str | None, expected: str | Decimal) -> None:
    assert text is not None and re.fullmatch(r"-?[0-9]+(\.[0-9]+)?", text), text
    assert Decimal(text) == Decimal(expected), (text, expected)


@settings(max_examples=30, deadline=None, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture,
                                 HealthCheck.too_slow])
@given(qty=_kind(Quantity, nonzero=True), price=_kind(Price, nonzero=True),
       exit_price=_kind(Price), cash=_kind(Cash), manual=_kind(ManualValue),
       private_qty=_kind(Quantity, nonzero=True).filter(lambda s: not s.startswith("-")),
       new_qty=_kind(Quantity, nonzero=True), as_number=st.booleans())
def test_accepted_values_round_trip_everywhere(
        client: TestClient, seed: Seed, db_url: str, qty: str, price: str, exit_price: str,
        cash: str, manual: str, private_qty: str, new_qty: str, as_number: bool) -> None:
    h = auth(seed)
    public = position("MKTA", quantity=qty, entry_price=price)
    if as_number:  # the same digits as a JSON number (read exactly, never as a float)
        public["quantity"] = Decimal(qty)
    closed = position("MKTB", quantity="1", exit_date="2025-06-03", exit_price=exit_price)
    private = position("PRIVATE_FUND_A", quantity=private_qty, entry_price="0",
                       investment_class="PRIVATE", manual_value=manual)
    body = {"name": f"p-{uuid.uuid4()}", "cash": cash, "positions": [public, closed, private]}
    content = _dumps(body)
    resp = client.post("/v1/portfolios", content=content,
                       headers={**h, "Content-Type": "application/json"})
    if abs(Decimal(qty) * Decimal(price)) >= MAX_POSITION_AMOUNT:  # beyond what money stores
        assert_error(resp, 400, "beyond the largest position amount",
                     field="positions[0].quantity")
        return
    assert resp.status_code == 201, resp.text
    created = resp.json()
    pid = created["portfolio"]["id"]

    def check_portfolio(pf: dict[str, Any], quantity: str) -> None:
        _same(pf["cash"], cash)
        by_symbol = {p["symbol"]: p for p in pf["positions"]}
        _same(by_symbol["MKTA"]["quantity"], quantity)
        _same(by_symbol["MKTA"]["entry_price"], price)
        _same(by_symbol["MKTB"]["exit_price"], exit_price)
        _same(by_symbol["PRIVATE_FUND_A"]["quantity"], private_qty)
        _same(by_symbol["PRIVATE_FUND_A"]["manual_value"], manual)

    check_portfolio(created["portfolio"], qty)
    check_portfolio(client.get(f"/v1/portfolios/{pid}", headers=h).json(), qty)
    close = stored_close(db_url, "MKTA", seed.as_of.isoformat())

    def check_analytics(quantity: str) -> None:
        overview = client.get(f"/v1/portfolios/{pid}/overview", headers=h)
        assert overview.status_code == 200, overview.text
        rows = {p["symbol"]: p for p in overview.json()["positions"]}
        _same(rows["MKTA"]["quantity"], quantity)
        _same(rows["MKTA"]["market_value"], _money(Decimal(quantity) * close))
        _same(rows["PRIVATE_FUND_A"]["market_value"], manual)
        snap = overview.json()["snapshot"]
        _same(snap["cash"], cash)
        for key in ("equity", "market_value", "long_exposure", "short_exposure"):
            _same(snap[key], snap[key])  # plain digits
        fx = client.get(f"/v1/portfolios/{pid}/factor-exposures", headers=h)
        assert fx.status_code == 200, fx.text
        _same({p["symbol"]: p for p in fx.json()["positions"]}["MKTA"]["quantity"], quantity)
        snaps = client.get(f"/v1/portfolios/{pid}/snapshots", headers=h)
        assert snaps.status_code == 200, snaps.text
        _same(snaps.json()["items"][-1]["cash"], cash)
        listed = client.get("/v1/portfolios?limit=500", headers=h)
        assert listed.status_code == 200, listed.text

    check_analytics(qty)
    # PATCH the position to another accepted quantity, and add one with it
    pos_id = next(p["id"] for p in created["portfolio"]["positions"] if p["symbol"] == "MKTA")
    patched = client.patch(f"/v1/portfolios/{pid}/positions/{pos_id}",
                           json={"quantity": new_qty}, headers=h)
    if abs(Decimal(new_qty) * Decimal(price)) >= MAX_POSITION_AMOUNT:
        assert_error(patched, 400, "beyond the largest position amount", field="quantity")
        return
    assert patched.status_code == 200, patched.text
    _same(patched.json()["position"]["quantity"], new_qty)
    check_analytics(new_qty)
    added = client.post(f"/v1/portfolios/{pid}/positions",
                        json=position("MKTC", quantity=new_qty, entry_price=price), headers=h)
    assert added.status_code == 201, added.text
    _same(added.json()["position"]["quantity"], new_qty)
    assert client.get(f"/v1/portfolios/{pid}/overview", headers=h).status_code == 200


def _dumps(body: Any) -> bytes:
    """JSON with Decimals written as JSON numbers, digit for digit."""
    import json

    def default(o: Any) -> Any:
        raise TypeError(o)

    text = json.dumps(body, default=lambda o: f"@@{o}@@" if isinstance(o, Decimal)
                      else default(o))
    return re.sub(r'"@@(-?[0-9.E+-]+)@@"', r"\1", text).encode()


def test_a_create_that_fails_after_its_commit_stores_nothing(
        client: TestClient, seed: Seed, monkeypatch: pytest.MonkeyPatch) -> None:
    """A failure in the steps after the commit (snapshot, analytics, reading back) removes
    the portfolio and every row it got, so the caller's retry succeeds (not 409)."""
    from core.services import analytics as analytics_service
    h = auth(seed)
    real = analytics_service.portfolio_analytics

    async def broken(*args: Any, **kwargs: Any) -> Any:
        raise RuntimeError("analytics failed")

    monkeypatch.setattr(analytics_service, "portfolio_analytics", broken)
    body = {"name": "Retry me", "positions": [position("MKTA"), position("MKTB")]}
    with TestClient(client.app, raise_server_exceptions=False) as c:
        assert_error(c.post("/v1/portfolios", json=body, headers=h), 500, "internal error")
    assert client.get("/v1/portfolios", headers=h).json()["total"] == 0
    import sqlite3 as _s

    db = client.app.state.engine.url.database
    con = _s.connect(db)
    try:
        for table in ("portfolios", "positions", "portfolio_snapshots",
                      "portfolio_analytics_cache"):
            assert con.execute(f"SELECT count(*) FROM {table}").fetchone() == (0,), table
    finally:
        con.close()
    monkeypatch.setattr(analytics_service, "portfolio_analytics", real)
    assert client.post("/v1/portfolios", json=body, headers=h).status_code == 201
