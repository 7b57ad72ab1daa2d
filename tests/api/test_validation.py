"""Every bad input gets a 4xx whose message names the field and the problem (never a 500),
and nothing is stored."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.api.conftest import Seed, assert_error, auth, position

TOMORROW = (dt.date.today() + dt.timedelta(days=2)).isoformat()

BAD_POSITIONS: list[tuple[dict[str, Any], str, list[str]]] = [
    ({"symbol": ""}, "symbol", ["empty"]),
    ({"symbol": "AA$PL"}, "symbol", ["invalid symbol", "not allowed"]),
    ({"symbol": "A" * 25}, "symbol", ["longer than 20"]),
    ({"symbol": "^"}, "symbol", ["invalid symbol"]),
    ({"symbol": "PRIVATE_FUND_A"}, "symbol", ["private identifier", "PRIVATE"]),
    ({"symbol": 42}, "symbol", ["Expected `str`"]),
    ({"quantity": "0"}, "quantity", ["must not be zero"]),
    ({"quantity": 0}, "quantity", ["must not be zero"]),
    ({"quantity": "-3", "investment_class": "PRIVATE", "manual_value": "10"}, "quantity",
     ["must be positive", "PRIVATE"]),
    ({"quantity": "ten"}, "quantity", ["not a decimal number"]),
    ({"quantity": "NaN"}, "quantity", ["not a decimal number"]),
    ({"quantity": "1e13"}, "quantity", ["not a decimal number", "pattern"]),
    ({"quantity": 1e13}, "quantity", ["less than 1,000,000,000,000"]),
    ({"quantity": "1000000000000"}, "quantity", ["at most 12 digits before"]),
    ({"quantity": 0.123456789}, "quantity", ["at most 8 decimal places"]),
    ({"quantity": "0.123456789"}, "quantity", ["at most 8 decimal places"]),
    ({"quantity": True}, "quantity", ["Expected `decimal`"]),
    ({"exit_date": "2025-06-03", "exit_price": "-1"}, "exit_price", ["must not be negative"]),
    ({"entry_price": "0"}, "entry_price", ["greater than zero", "PUBLIC"]),
    ({"entry_price": "-1"}, "entry_price", ["must not be negative"]),
    ({"entry_price": "1.1234567"}, "entry_price", ["at most 6 decimal places"]),
    ({"investment_class": "BOND"}, "investment_class",
     ["unknown investment class 'BOND'", "PUBLIC, OPTIONS or PRIVATE"]),
    ({"investment_class": "PRIVATE"}, "manual_value", ["required for a PRIVATE holding"]),
    ({"manual_value": "100"}, "manual_value", ["only PRIVATE holdings"]),
    ({"investment_class": "PRIVATE", "manual_value": "-5"}, "manual_value",
     ["must not be negative"]),
    ({"exit_date": "2025-05-30"}, "exit_date", ["2025-05-30 is before entry_date 2025-06-02"]),
    ({"exit_price": "10"}, "exit_price", ["given without exit_date"]),
    ({"entry_date": TOMORROW}, "entry_date", ["in the future"]),
    ({"exit_date": TOMORROW}, "exit_date", ["in the future"]),
    ({"entry_date": "1850-01-01"}, "entry_date", ["before 1900-01-01"]),
    ({"entry_date": "2025-02-30"}, "entry_date", ["not a date (expected YYYY-MM-DD)"]),
    ({"entry_date": None}, "entry_date", ["Expected `date`"]),
    ({"colour": "blue"}, "colour", ["unknown field"]),
]


@pytest.mark.parametrize("change, field, fragments", BAD_POSITIONS,
                         ids=[f"{f}-{i}" for i, (_, f, _) in enumerate(BAD_POSITIONS)])
def test_bad_position_is_400_naming_the_field(
        client: TestClient, seed: Seed, change: dict, field: str, fragments: list[str]) -> None:
    h = auth(seed)
    good = position("MKTA")
    body = {"name": "P", "positions": [good, position(**{**good, **change})]}
    resp = client.post("/v1/portfolios", json=body, headers=h)
    err = assert_error(resp, 400, *fragments, field=f"positions[1].{field}")
    assert err["error"] == "invalid_input"
    assert err["message"].startswith(f"positions[1].{field}: ")
    assert client.get("/v1/portfolios", headers=h).json()["total"] == 0  # nothing stored

    # the same rules on a position added to an existing portfolio
    pid = client.post("/v1/portfolios", json={"name": "Q"}, headers=h).json()["portfolio"]["id"]
    resp = client.post(f"/v1/portfolios/{pid}/positions", json={**good, **change}, headers=h)
    assert_error(resp, 400, *fragments, field=field)


def test_required_fields_are_named(client: TestClient, seed: Seed) -> None:
    h = auth(seed)
    body = {"name": "P", "positions": [{"symbol": "MKTA", "quantity": "1",
                                        "entry_price": "1"}]}
    assert_error(client.post("/v1/portfolios", json=body, headers=h), 400, "is required",
                 field="positions[0].entry_date")
    assert_error(client.post("/v1/portfolios", json={"cash": "1"}, headers=h), 400,
                 "is required", field="name")


@pytest.mark.parametrize("body, field, fragment", [
    ({"name": ""}, "name", "length >= 1"),
    ({"name": "   "}, "name", "matching regex"),  # the documented pattern
    ({"name": "x" * 201}, "name", "length <= 200"),
    ({"name": "a\u0000b"}, "name", "matching regex"),
    ({"name": "P", "cash": "1e15"}, "cash", "not a decimal number"),
    ({"name": "P", "cash": 1e15}, "cash", "less than"),
    ({"name": "P", "cash": "1.00001"}, "cash", "at most 4 decimal places"),
    ({"name": "P", "cash": "Infinity"}, "cash", "not a decimal number"),
    ({"name": "P", "cash": [1]}, "cash", "Expected `decimal`"),
    ({"name": "P", "positions": {}}, "positions", "Expected `array`"),
    ({"name": "P", "positions": [position()] * 1001}, "positions", "length <= 1000"),
])
def test_bad_portfolio_fields(client: TestClient, seed: Seed, body: dict, field: str,
                              fragment: str) -> None:
    assert_error(client.post("/v1/portfolios", json=body, headers=auth(seed)), 400, fragment,
                 field=field)


@pytest.mark.parametrize("content, fragment", [
    (b'{"name": "P"', "malformed JSON"),
    (b"not json", "malformed JSON"),
    (b"[]", "Expected `object`"),
    (b"", "a request body is required"),
])
def test_malformed_bodies(client: TestClient, seed: Seed, content: bytes, fragment: str
                          ) -> None:
    resp = client.post("/v1/portfolios", content=content,
                       headers={**auth(seed), "Content-Type": "application/json"})
    assert_error(resp, 400, fragment, field="body")


def test_duplicate_name_is_409(client: TestClient, seed: Seed) -> None:
    h = auth(seed)
    assert client.post("/v1/portfolios", json={"name": "Core"}, headers=h).status_code == 201
    err = assert_error(client.post("/v1/portfolios", json={"name": " Core "}, headers=h), 409,
                       "already have a portfolio named 'Core'", field="name")
    assert err["error"] == "conflict"
    # names are per owner
    assert client.post("/v1/portfolios", json={"name": "Core"},
                       headers=auth(seed, "bob")).status_code == 201


def test_oversized_body_is_413(client: TestClient, seed: Seed) -> None:
    big = {"name": "P", "note": "x" * (1024 * 1024)}
    err = assert_error(client.post("/v1/portfolios", json=big, headers=auth(seed)), 413,
                       "larger than 1 MiB", field="body")
    assert err["error"] == "payload_too_large"
    csv = "symbol,quantity,entry_date,entry_price\n" + "MKTA,1,2025-06-02,1\n" * 60_000
    resp = client.post("/v1/portfolios/import?name=big", content=csv.encode(),
                       headers={**auth(seed), "Content-Type": "text/csv"})
    assert_error(resp, 413, "larger than 1 MiB", field="body")


@pytest.mark.parametrize("query, field", [
    ("limit=0", "limit"), ("limit=501", "limit"), ("limit=many", "limit"),
    ("offset=-1", "offset"),
])
def test_bad_query_parameters(client: TestClient, seed: Seed, query: str, field: str) -> None:
    assert_error(client.get(f"/v1/portfolios?{query}", headers=auth(seed)), 400, field,
                 field=field)


def test_unknown_routes_and_methods(client: TestClient, seed: Seed) -> None:
    err = assert_error(client.get("/v1/nothing-here", headers=auth(seed)), 404,
                       "no such endpoint")
    assert err["error"] == "not_found"
    err = assert_error(client.put("/v1/portfolios", headers=auth(seed)), 405, "PUT")
    assert err["error"] == "method_not_allowed"


@pytest.mark.parametrize("pid", ["%00", "x" * 100, "a%20b", "%E2%82%AC", "1;drop"])
def test_malformed_ids_are_404(client: TestClient, seed: Seed, pid: str) -> None:
    h = auth(seed)
    for path in (f"/v1/portfolios/{pid}", f"/v1/portfolios/{pid}/overview",
                 f"/v1/portfolios/{pid}/snapshots"):
        assert_error(client.get(path, headers=h), 404)
    real = client.post("/v1/portfolios", json={"name": "P", "positions": [position()]},
                       headers=h).json()["portfolio"]["id"]
    assert_error(client.patch(f"/v1/portfolios/{real}/positions/{pid}", json={"quantity": "1"},
                              headers=h), 404)


def test_unknown_job_type_is_400(client: TestClient, seed: Seed) -> None:
    assert_error(client.get("/v1/admin/batch-runs?job_type=nightly%00", headers=auth(seed, "root")),
                 400, "unknown job type", "symbol-batch", field="job_type")


# Numeric strings match the documented pattern exactly: what Python's Decimal() would also
# read (signs, spaces, exponents, Unicode digits) is refused, never stored as a number.
NOT_PLAIN = ["+1", " 1", "1 ", "1.", ".5", "1e2", "1E-8", "\u0661\u0662", "\uff11", "1_000",
             "--1", "0x10", "1,5", "", "-"]


@pytest.mark.parametrize("text", NOT_PLAIN)
@pytest.mark.parametrize("field", ["quantity", "entry_price", "cash", "manual_value"])
def test_numeric_strings_match_the_pattern_exactly(
        client: TestClient, seed: Seed, text: str, field: str) -> None:
    from api.app import create_app

    h = auth(seed)
    if field == "cash":
        body: dict[str, Any] = {"name": "P", "cash": text}
        name = "cash"
    else:
        extra = {"investment_class": "PRIVATE", "symbol": "PRIVATE_FUND_A",
                 "manual_value": "5"} if field == "manual_value" else {}
        body = {"name": "P", "positions": [position(**{**extra, field: text})]}
        name = f"positions[0].{field}"
    assert_error(client.post("/v1/portfolios", json=body, headers=h), 400,
                 "not a decimal number", "pattern", field=name)
    assert client.get("/v1/portfolios", headers=h).json()["total"] == 0
    # the document states the same pattern, and the text does not match it
    import re

    doc = create_app().openapi_schema.to_schema()["components"]["schemas"]
    prop = (doc["PortfolioCreate"] if field == "cash" else doc["PositionCreate"])[
        "properties"][field]
    branches = prop.get("anyOf") or prop["oneOf"][0]["anyOf"]
    pattern = next(b["pattern"] for b in branches if b["type"] == "string")
    assert re.search(pattern, text) is None


def test_json_routes_need_a_json_content_type(client: TestClient, seed: Seed) -> None:
    import json

    h = auth(seed)
    body = json.dumps({"name": "P"}).encode()
    for content_type in (None, "text/plain", "application/x-www-form-urlencoded"):
        headers = {**h, **({"Content-Type": content_type} if content_type else {})}
        err = assert_error(client.post("/v1/portfolios", content=body, headers=headers), 415,
                           "application/json", field="content-type")
        assert err["error"] == "unsupported_media_type"
    assert client.get("/v1/portfolios", headers=h).json()["total"] == 0
    ok = {**h, "Content-Type": "application/json; charset=utf-8"}
    assert client.post("/v1/portfolios", content=body, headers=ok).status_code == 201
    pid = client.get("/v1/portfolios", headers=h).json()["items"][0]["id"]
    assert_error(client.patch(f"/v1/portfolios/{pid}", content=b'{"cash": "1"}',
                              headers={**h, "Content-Type": "text/plain"}), 415)


@pytest.mark.parametrize("depth", [33, 1000, 100_000])
def test_deeply_nested_json_is_400(client: TestClient, seed: Seed, depth: int) -> None:
    h = {**auth(seed), "Content-Type": "application/json"}
    for content in (b"[" * depth + b"]" * depth,
                    b'{"name": "P", "positions": ' + b"[" * depth + b"]" * depth + b"}",
                    b'{"a":' * depth + b"1" + b"}" * depth):
        assert_error(client.post("/v1/portfolios", content=content, headers=h), 400,
                     "nested deeper than 32", field="body")
    # brackets inside strings do not count
    name = "[" * 200
    assert client.post("/v1/portfolios", json={"name": name}, headers=h).status_code == 201


def test_errors_are_problem_details(client: TestClient, seed: Seed) -> None:
    err = assert_error(client.get("/v1/portfolios/nope", headers=auth(seed)), 404)
    assert err["type"] == "about:blank" and err["title"] == "Not Found"
    assert err["instance"] == "/v1/portfolios/nope"
    err = assert_error(client.post("/v1/portfolios", json={"name": ""}, headers=auth(seed)),
                       400, field="name")
    assert err["title"] == "Bad Request" and err["error"] == "invalid_input"


def test_a_position_amount_beyond_the_money_columns_is_400(client: TestClient,
                                                            seed: Seed) -> None:
    h = auth(seed)
    # 999,999,999,999 × 2 ≥ 1e12: each factor is within its own bounds, the product is not
    big = {"name": "Big", "positions": [position(quantity="999999999999", entry_price="2")]}
    assert_error(client.post("/v1/portfolios", json=big, headers=h), 400,
                 "beyond the largest position amount", field="positions[0].quantity")
    options = {"name": "Opt", "positions": [position(
        quantity="10000000000", entry_price="1", investment_class="OPTIONS")]}  # × 100
    assert_error(client.post("/v1/portfolios", json=options, headers=h), 400,
                 "beyond the largest position amount", field="positions[0].quantity")
    assert client.get("/v1/portfolios", headers=h).json()["items"] == []
    fits = {"name": "Fits", "positions": [position(quantity="499999999999", entry_price="2")]}
    assert client.post("/v1/portfolios", json=fits, headers=h).status_code == 201
