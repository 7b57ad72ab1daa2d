"""Portfolio and position CRUD, PATCH semantics, soft delete, snapshots and analytics, on the
real app and database (prices of the seed: the latest stored date is ``seed.as_of``)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest
from litestar.testing import TestClient

from tests.api.conftest import Seed, assert_error, auth, position
from tests.conftest import wait_until
from tests.recording_launcher import RecordingLauncher

KINDS = ("overview", "factor-exposures", "sector-exposure", "correlations", "stress-tests")


def create(client: TestClient, seed: Seed, name: str = "Core", user: str = "alice",
           **body: Any) -> Any:
    payload = {"name": name, "cash": "1000", "positions": [
        position("MKTA"), position("MKTB", quantity="-5"), position("DIVY", quantity="3.5")]}
    payload.update(body)
    resp = client.post("/v1/portfolios", json=payload, headers=auth(seed, user))
    assert resp.status_code == 201, resp.text
    return resp


def test_create_answers_with_snapshot_exposures_and_symbols(
        client: TestClient, seed: Seed, dispatched: RecordingLauncher) -> None:
    resp = create(client, seed)
    body = resp.json()
    pf = body["portfolio"]
    assert resp.headers["location"] == f"/v1/portfolios/{pf['id']}"
    assert pf["name"] == "Core" and pf["cash"] == "1000.0000" and pf["base_currency"] == "USD"
    assert [p["symbol"] for p in pf["positions"]] == ["DIVY", "MKTA", "MKTB"]
    assert pf["positions"][0]["quantity"] == "3.5" and pf["positions"][2]["quantity"] == "-5"
    snap = body["snapshot"]
    assert snap["date"] == seed.as_of.isoformat()  # the latest stored price date
    assert snap["position_count"] == 3 and snap["partial"] is False
    assert Decimal(snap["equity"]) == Decimal(snap["cash"]) + Decimal(snap["market_value"])
    assert pf["latest_snapshot"] == snap
    assert all(p["market_value"] is not None for p in pf["positions"])
    fx = body["factor_exposures"]
    assert fx["data_as_of"] == seed.as_of.isoformat() and fx["stale"] is False
    market = next(f for f in fx["portfolio"] if f["factor"] == "market_beta")
    assert market["beta"] is not None and 0 < market["covered_share"] <= 1
    assert body["symbols"] == {"DIVY": "ready", "MKTA": "ready", "MKTB": "ready"}
    assert body["pending_symbols"] == [] and dispatched.calls == 0


def test_unknown_ticker_is_pending_and_onboarding_is_dispatched(
        client: TestClient, seed: Seed, dispatched: RecordingLauncher) -> None:
    body = create(client, seed, positions=[
        position("MKTA"), position("zzzq"),
        position("PRIVATE_FUND_A", investment_class="PRIVATE", entry_price="0",
                 quantity="1", manual_value="25000")]).json()
    assert body["pending_symbols"] == ["ZZZQ"]
    assert body["symbols"] == {"MKTA": "ready", "ZZZQ": "pending"}
    assert dispatched.calls == 1
    snap = body["snapshot"]
    assert snap["partial"] is True and snap["missing_symbols"] == ["ZZZQ"]
    assert snap["date"] == seed.as_of.isoformat()
    status = client.get("/v1/symbols/ZZZQ", headers=auth(seed)).json()
    assert status["status"] == "pending" and status["last_price_date"] is None
    queue = client.get("/v1/admin/onboarding-queue", headers=auth(seed, "root")).json()
    row = next(r for r in queue["items"] if r["symbol"] == "ZZZQ")
    assert row["status"] == "pending" and body["portfolio"]["id"] in row["portfolio_ids"]
    # adding a position in another unknown ticker dispatches again
    pid = body["portfolio"]["id"]
    added = client.post(f"/v1/portfolios/{pid}/positions", json=position("QQZY"),
                        headers=auth(seed)).json()
    assert added["pending_symbols"] == ["QQZY"] and dispatched.calls == 2


def test_list_get_and_pagination(client: TestClient, seed: Seed) -> None:
    for name in ("b", "a", "c"):
        create(client, seed, name=name)
    create(client, seed, name="bob's", user="bob")
    page = client.get("/v1/portfolios?limit=2", headers=auth(seed)).json()
    assert page["total"] == 3 and page["limit"] == 2 and page["offset"] == 0
    assert [p["name"] for p in page["items"]] == ["a", "b"]
    item = page["items"][0]
    assert item["position_count"] == 3 and item["latest_snapshot_date"] == seed.as_of.isoformat()
    assert item["latest_equity"] is not None
    rest = client.get("/v1/portfolios?limit=2&offset=2", headers=auth(seed)).json()
    assert [p["name"] for p in rest["items"]] == ["c"]
    one = client.get(f"/v1/portfolios/{item['id']}", headers=auth(seed)).json()
    assert one["name"] == "a" and len(one["positions"]) == 3
    assert one["latest_snapshot"]["date"] == seed.as_of.isoformat()


def test_json_numbers_are_read_exactly(client: TestClient, seed: Seed) -> None:
    body = create(client, seed, cash=1234567.1234, positions=[
        position("MKTA", quantity=1234567.12345678, entry_price=0.1)]).json()
    pf = body["portfolio"]
    assert pf["cash"] == "1234567.1234"
    assert pf["positions"][0]["quantity"] == "1234567.12345678"
    assert pf["positions"][0]["entry_price"] == "0.1"


def test_patch_portfolio_changes_only_what_is_sent(client: TestClient, seed: Seed) -> None:
    pf = create(client, seed).json()["portfolio"]
    url, h = f"/v1/portfolios/{pf['id']}", auth(seed)
    renamed = client.patch(url, json={"name": "  Renamed  "}, headers=h).json()
    assert renamed["name"] == "Renamed" and renamed["cash"] == "1000.0000"
    assert len(renamed["positions"]) == 3
    recashed = client.patch(url, json={"cash": "2500.5"}, headers=h).json()
    assert recashed["name"] == "Renamed" and recashed["cash"] == "2500.5000"
    assert recashed["latest_snapshot"]["cash"] == "2500.5000"  # re-valued at once
    overview = client.get(f"{url}/overview", headers=h).json()
    assert overview["snapshot"]["cash"] == "2500.5000"  # no stale cached analytics
    same = client.patch(url, json={}, headers=h)
    assert same.status_code == 200 and same.json()["name"] == "Renamed"
    assert_error(client.patch(url, json={"name": None}, headers=h), 400, "name",
                 field="name")
    assert_error(client.patch(url, json={"cash": None}, headers=h), 400, field="cash")
    assert_error(client.patch(url, json={"owner_id": "x"}, headers=h), 400, "unknown field",
                 field="owner_id")
    create(client, seed, name="Other")
    assert_error(client.patch(url, json={"name": "Other"}, headers=h), 409,
                 "already have a portfolio named 'Other'", field="name")


def test_soft_delete(client: TestClient, seed: Seed) -> None:
    pf = create(client, seed).json()["portfolio"]
    url, h = f"/v1/portfolios/{pf['id']}", auth(seed)
    assert client.delete(url, headers=h).status_code == 204
    assert_error(client.get(url, headers=h), 404, "not found", field="id")
    assert_error(client.get(f"{url}/overview", headers=h), 404)
    assert_error(client.delete(url, headers=h), 404)
    assert client.get("/v1/portfolios", headers=h).json()["total"] == 0
    again = create(client, seed).json()["portfolio"]  # the name is free again
    assert again["id"] != pf["id"]
    from core.settings import get_settings
    from tests.flows.helpers import query

    rows = query(get_settings().resolved_database_url,
                 "SELECT deleted_at FROM portfolios WHERE id = ?", (pf["id"],))
    assert rows.deleted_at.notna().all()  # kept, marked deleted


def test_position_round_trip(client: TestClient, seed: Seed) -> None:
    pf = create(client, seed, positions=[]).json()["portfolio"]
    assert pf["positions"] == []
    base, h = f"/v1/portfolios/{pf['id']}/positions", auth(seed)
    added = client.post(base, json=position("MKTC", quantity="7", entry_price="50.25",
                                            exit_date="2025-07-01", exit_price="55"),
                        headers=h)
    assert added.status_code == 201, added.text
    pos = added.json()["position"]
    assert (pos["symbol"], pos["quantity"], pos["entry_price"], pos["exit_price"]) == (
        "MKTC", "7", "50.25", "55")
    assert added.json()["snapshot"]["date"] == seed.as_of.isoformat()
    url = f"{base}/{pos['id']}"

    changed = client.patch(url, json={"quantity": "9"}, headers=h)
    assert changed.status_code == 200, changed.text
    p2 = changed.json()["position"]
    assert p2["quantity"] == "9" and p2["entry_price"] == "50.25"
    assert p2["exit_date"] == "2025-07-01" and p2["exit_price"] == "55"
    cleared = client.patch(url, json={"exit_date": None, "exit_price": None}, headers=h)
    p3 = cleared.json()["position"]
    assert p3["exit_date"] is None and p3["exit_price"] is None and p3["quantity"] == "9"
    assert cleared.json()["snapshot"]["position_count"] == 1  # open again

    assert_error(client.patch(url, json={"symbol": "MKTA"}, headers=h), 400,
                 "unknown field", field="symbol")
    assert_error(client.patch(url, json={"exit_date": "2025-01-02"}, headers=h), 400,
                 "exit_date", "before entry_date", field="exit_date")
    assert_error(client.patch(url, json={"quantity": None}, headers=h), 400, field="quantity")
    assert_error(client.patch(f"{base}/nope", json={"quantity": "1"}, headers=h), 404,
                 "position 'nope' not found", field="position_id")

    assert client.delete(url, headers=h).status_code == 204
    assert_error(client.delete(url, headers=h), 404, field="position_id")
    assert client.get(f"/v1/portfolios/{pf['id']}", headers=h).json()["positions"] == []


def test_snapshots_range(client: TestClient, seed: Seed) -> None:
    pf = create(client, seed).json()["portfolio"]
    url, h = f"/v1/portfolios/{pf['id']}/snapshots", auth(seed)
    snaps = client.get(url, headers=h).json()
    assert [s["date"] for s in snaps["items"]] == [seed.as_of.isoformat()]
    assert snaps["truncated"] is False
    day = seed.as_of.isoformat()
    assert len(client.get(f"{url}?start={day}&end={day}", headers=h).json()["items"]) == 1
    before = (seed.as_of - dt.timedelta(days=1)).isoformat()
    assert client.get(f"{url}?end={before}", headers=h).json()["items"] == []
    assert_error(client.get(f"{url}?start={day}&end={before}", headers=h), 400,
                 "before start", field="end")
    assert_error(client.get(f"{url}?start=yesterday", headers=h), 400, field="start")
    assert_error(client.get(f"{url}?limit=0", headers=h), 400, field="limit")


def test_analytics_carry_data_date_and_staleness(client: TestClient, seed: Seed) -> None:
    pf = create(client, seed).json()["portfolio"]
    base, h = f"/v1/portfolios/{pf['id']}", auth(seed)
    for kind in KINDS:
        resp = client.get(f"{base}/{kind}", headers=h)
        assert resp.status_code == 200, (kind, resp.text)
        body = resp.json()
        assert body["data_as_of"] == seed.as_of.isoformat(), kind
        assert body["stale"] is False and body["cached"] is True, kind  # cached at creation
    corr = client.get(f"{base}/correlations", headers=h).json()
    assert corr["symbols"] == ["DIVY", "MKTA", "MKTB"] and len(corr["matrix"]) == 3
    stress = client.get(f"{base}/stress-tests", headers=h).json()
    assert len(stress["scenarios"]) > 1
    one = client.get(f"{base}/stress-tests?scenario=market_down_10", headers=h).json()
    assert [s["name"] for s in one["scenarios"]] == ["market_down_10"]
    assert_error(client.get(f"{base}/stress-tests?scenario=martians", headers=h), 404,
                 "unknown scenario 'martians'", field="scenario")
    # a change of positions invalidates: the next answer reflects it
    client.post(f"{base}/positions", json=position("MKTC"), headers=h)
    corr = client.get(f"{base}/correlations", headers=h).json()
    assert corr["symbols"] == ["DIVY", "MKTA", "MKTB", "MKTC"]


def test_analytics_follow_every_change(client: TestClient, seed: Seed, db_url: str) -> None:
    import sqlite3

    from tests.flows.helpers import db_path

    pf = create(client, seed).json()["portfolio"]
    base, h = f"/v1/portfolios/{pf['id']}", auth(seed)
    first = client.get(f"{base}/overview", headers=h).json()
    again = client.get(f"{base}/overview", headers=h).json()
    assert again == first and again["cached"] is True
    assert_error(client.get(f"{base}/overview", headers=auth(seed, "bob")), 404)

    client.patch(base, json={"cash": "7"}, headers=h)
    assert client.get(f"{base}/overview", headers=h).json()["snapshot"]["cash"] == "7.0000"
    client.post(f"{base}/positions", json=position("MKTC"), headers=h)
    fx = client.get(f"{base}/factor-exposures", headers=h).json()
    assert sorted(p["symbol"] for p in fx["positions"]) == ["DIVY", "MKTA", "MKTB", "MKTC"]

    with sqlite3.connect(db_path(db_url)) as con:  # what the nightly refresh does
        con.execute("DELETE FROM portfolio_analytics_cache")
    assert client.get(f"{base}/overview", headers=h).json()["cached"] is False
    assert client.get(f"{base}/overview", headers=h).json()["cached"] is True

    client.delete(base, headers=h)
    assert_error(client.get(f"{base}/overview", headers=h), 404, field="id")


def test_a_change_made_elsewhere_reaches_the_answers_within_the_memo_interval(
        client: TestClient, seed: Seed, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    import sqlite3

    from core.services import portfolios as svc
    from tests.flows.helpers import db_path

    monkeypatch.setattr(svc, "ANALYTICS_MEMO_INTERVAL_S", 0.05)
    pf = create(client, seed).json()["portfolio"]
    url, h = f"/v1/portfolios/{pf['id']}/overview", auth(seed)
    client.get(url, headers=h)
    assert client.get(url, headers=h).json()["cached"] is True  # from memory now
    with sqlite3.connect(db_path(db_url)) as con:  # the nightly refresh, in another process
        con.execute("DELETE FROM portfolio_analytics_cache WHERE portfolio_id = ?", (pf["id"],))
    wait_until(lambda: not client.get(url, headers=h).json()["cached"],
               "the deleted cache row to be noticed", every=0.02)
    assert client.get(url, headers=h).json()["cached"] is True  # computed, stored, served


def test_answers_are_stale_when_the_data_lags(client: TestClient, seed: Seed,
                                              db_url: str) -> None:
    import sqlite3

    from core import calendar
    from tests.flows.helpers import db_path

    previous = calendar.previous_session(seed.as_of).isoformat()
    con = sqlite3.connect(db_path(db_url))
    with con:  # the latest session's batch never completed: the last one was the day before
        con.execute("UPDATE batch_runs SET target_date = ?", (previous,))
    con.close()
    body = create(client, seed).json()
    assert body["snapshot"]["date"] == previous  # the last completed batch's date
    assert body["factor_exposures"]["data_as_of"] == previous
    assert body["factor_exposures"]["stale"] is True
    pid = body["portfolio"]["id"]
    for kind in KINDS:
        answer = client.get(f"/v1/portfolios/{pid}/{kind}", headers=auth(seed)).json()
        assert (answer["data_as_of"], answer["stale"]) == (previous, True), kind


def test_an_answer_is_encoded_once_per_body_and_flags(client: TestClient, seed: Seed) -> None:
    import msgspec

    from api.portfolios.schemas import Overview, analytics_json
    from core.services.portfolios import AnalyticsAnswer

    pf = create(client, seed).json()["portfolio"]
    body = client.get(f"/v1/portfolios/{pf['id']}/overview", headers=auth(seed)).json()
    fresh = AnalyticsAnswer(body, stale=False, cached=True)
    first = analytics_json(fresh, Overview)
    assert analytics_json(AnalyticsAnswer(body, False, True), Overview) is first  # reused
    stale = analytics_json(AnalyticsAnswer(body, True, True), Overview)
    assert msgspec.json.decode(stale) == {**msgspec.json.decode(first), "stale": True}
    copy = dict(body)  # an equal body that is another object: encoded on its own
    assert analytics_json(AnalyticsAnswer(copy, False, True), Overview) == first
    assert analytics_json(AnalyticsAnswer(copy, False, True), Overview) is not first


def test_each_position_carries_its_symbols_stored_betas(
        client: TestClient, seed: Seed, db_url: str) -> None:
    import math
    import sqlite3

    from tests.flows.helpers import db_path

    pf = create(client, seed).json()["portfolio"]
    body = client.get(f"/v1/portfolios/{pf['id']}/factor-exposures", headers=auth(seed)).json()
    with sqlite3.connect(db_path(db_url)) as con:
        stored = con.execute("SELECT symbol, factor, beta FROM symbol_factor_exposures "
                             "WHERE date = ?", (seed.as_of.isoformat(),)).fetchall()
    by_symbol: dict[str, dict[str, Any]] = {}
    for sym, factor, beta in stored:
        by_symbol.setdefault(sym, {})[factor] = beta
    assert len(body["positions"]) == 3
    for p in body["positions"]:
        expected = {f: (b if b is not None and math.isfinite(b) else None)
                    for f, b in by_symbol[p["symbol"]].items()}
        assert p["betas"].keys() == expected.keys(), p["symbol"]
        for f, b in expected.items():
            assert (p["betas"][f] is None) == (b is None), (p["symbol"], f)
            if b is not None:
                assert p["betas"][f] == pytest.approx(b, rel=1e-12, abs=1e-15), (p["symbol"], f)
