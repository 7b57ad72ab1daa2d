"""``POST /v1/portfolios/import``: a CSV body (text/csv), name and cash as query parameters.
Errors name the 1-based line (the header is line 1) and the column."""

from __future__ import annotations

import datetime as dt

import pytest
from litestar.testing import TestClient

from tests.api.conftest import Seed, assert_error, auth
from tests.recording_launcher import RecordingLauncher

HEADER = "symbol,quantity,entry_date,entry_price"
FUTURE = (dt.date.today() + dt.timedelta(days=2)).isoformat()


def upload(client: TestClient, seed: Seed, text: str | bytes, query: str = "name=Imported"
           ) -> object:
    content = text.encode() if isinstance(text, str) else text
    return client.post(f"/v1/portfolios/import?{query}", content=content,
                       headers={**auth(seed), "Content-Type": "text/csv"})


def test_import_creates_the_portfolio(client: TestClient, seed: Seed,
                                      dispatched: RecordingLauncher) -> None:
    text = (
        "\ufeffSymbol, Quantity ,entry_date,entry_price,investment_class,manual_value,"
        "exit_date,exit_price\r\n"
        "mkta,10,2025-06-02,100.5,,,,\r\n"
        "\r\n"
        "MKTB,-4,2025-06-02,20,public,,2025-08-01,22.5\r\n"
        '"PRIVATE_FUND_A",1,2025-06-02,0,private,"25000.00",,\r\n'
        "ZZZQ,3,2025-06-02,12,,,,\r\n"
    )
    resp = upload(client, seed, text, "name=Imported&cash=500.25")
    assert resp.status_code == 201, resp.text
    body = resp.json()
    pf = body["portfolio"]
    assert pf["name"] == "Imported" and pf["cash"] == "500.2500"
    by = {p["symbol"]: p for p in pf["positions"]}
    assert set(by) == {"MKTA", "MKTB", "PRIVATE_FUND_A", "ZZZQ"}
    assert by["MKTB"]["exit_price"] == "22.5" and by["MKTB"]["quantity"] == "-4"
    assert by["PRIVATE_FUND_A"]["investment_class"] == "PRIVATE"
    assert by["PRIVATE_FUND_A"]["manual_value"] == "25000.0000"
    assert body["pending_symbols"] == ["ZZZQ"] and dispatched.calls == 1
    assert body["snapshot"]["date"] == seed.as_of.isoformat()
    assert resp.headers["location"] == f"/v1/portfolios/{pf['id']}"


@pytest.mark.parametrize("text, fragment, field", [
    (f"{HEADER}\nMKTA,10,2025-06-02,100\nMKTB,ten,2025-06-02,5\n",
     "line 3, quantity: not a number: 'ten'", "line 3, quantity"),
    (f"{HEADER}\nMKTA,10,06/02/2025,100\n",
     "line 2, entry_date: not a date (YYYY-MM-DD): '06/02/2025'", "line 2, entry_date"),
    (f"{HEADER}\nMKTA,0,2025-06-02,100\n", "line 2, quantity: must not be zero",
     "line 2, quantity"),
    (f"{HEADER}\nMKTA,1,{FUTURE},100\n", "line 2, entry_date:", "line 2, entry_date"),
    (f"{HEADER}\nA$B,1,2025-06-02,100\n", "line 2, symbol: invalid symbol", "line 2, symbol"),
    (f"{HEADER}\nMKTA,1,2025-06-02,\n", "line 2, entry_price: missing",
     "line 2, entry_price"),
    (f"{HEADER},investment_class\nMKTA,1,2025-06-02,1,BOND\n",
     "line 2, investment_class: unknown investment class 'BOND'",
     "line 2, investment_class"),
    (f"{HEADER},exit_date\nMKTA,1,2025-06-02,1,2025-01-02\n",
     "line 2, exit_date: 2025-01-02 is before entry_date", "line 2, exit_date"),
    (f"{HEADER}\nMKTA,1,2025-06-02,1,extra\n", "line 2: expected 4 fields, got 5", "line 2"),
    ("symbol,quantity,entry_date\nMKTA,1,2025-06-02\n",
     "line 1: missing column(s) entry_price", "line 1"),
    (f"{HEADER},colour\nMKTA,1,2025-06-02,1,red\n", "line 1: unknown column 'colour'",
     "line 1"),
    (f"{HEADER},quantity\n", "line 1: column 'quantity' appears twice", "line 1"),
    (f"{HEADER}\n", "csv: no positions", "csv"),
    ("", "csv: empty; expected a header line", "csv"),
    ("\n\n", "csv: empty", "csv"),
    (f'{HEADER}\nMKTA,"1,2025-06-02,1\n', "malformed CSV", None),
])
def test_malformed_csv_names_line_and_column(client: TestClient, seed: Seed, text: str,
                                             fragment: str, field: str | None) -> None:
    err = assert_error(upload(client, seed, text), 400, fragment)
    if field is not None:
        assert err["field"] == field
    assert client.get("/v1/portfolios", headers=auth(seed)).json()["total"] == 0


def test_bad_import_parameters(client: TestClient, seed: Seed) -> None:
    good = f"{HEADER}\nMKTA,1,2025-06-02,1\n"
    assert_error(upload(client, seed, good, ""), 400, "name: missing required", field="name")
    assert_error(upload(client, seed, good, "name=X&cash=lots"), 400, field="cash")
    assert_error(upload(client, seed, good, "name=%20"), 400, "must not be empty",
                 field="name")
    assert_error(upload(client, seed, b"symbol\xff\xfe,quantity\n"), 400, "not UTF-8",
                 field="body")
    assert_error(upload(client, seed, b"symbol,\x00\n"), 400, "NUL", field="csv")
    assert upload(client, seed, good, "name=Dup").status_code == 201
    assert_error(upload(client, seed, good, "name=Dup"), 409, "already have", field="name")
