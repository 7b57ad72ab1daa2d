"""The instant answers of a portfolio (created through the real app) equal the nightly
portfolio refresh's stored rows for the same portfolio and date (the real Prefect flow),
and both equal an independent computation (equity as a Decimal sum of quantity × stored
close, betas as value-weighted sums of the stored symbol betas, the repaired correlation
matrix stored by the flow and answered by the API with ``?matrix=full``).

In tests/flows (not tests/api): the flow needs the session's Prefect test harness, and the
API tests' app shutdown stops local Prefect servers; these run after them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import numpy as np
import pytest
from litestar.testing import TestClient

from tests.api import test_large_portfolios as data
from tests.api.test_large_portfolios import Independent, Large, _body, _h
from tests.flows.helpers import db_path, query, sqlite_connection

pytestmark = pytest.mark.usefixtures("prefect_harness")
large = data.large  # the module's 1,010-symbol database (fixtures)
large_url = data.large_url


@pytest.fixture
def client(large_url: str, monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    """The real app over the test's database; it starts no flow and stops no Prefect server
    (the session's harness serves the flow run here)."""
    from api.app import create_app
    from tests.recording_launcher import record_launches
    record_launches(monkeypatch)
    with TestClient(create_app(large_url), timeout=300) as c:
        yield c


def test_instant_answers_equal_the_nightly_refresh_rows(
    client: TestClient, large: Large, large_url: str
) -> None:
    """A portfolio created through the API (with a gappy symbol: its correlation matrix is
    repaired) is then refreshed by the real nightly flow for the same date: the stored rows
    equal the instant answers, and both equal the independent computation."""
    from flows.portfolio_refresh import portfolio_refresh

    symbols = sorted([*large.symbols[:149], large.gappy[0]])
    body = _body(large, symbols, "nightly", seed=9)
    created = client.post("/v1/portfolios", json=body, headers=_h(large))
    assert created.status_code == 201, created.text[:300]
    pid = created.json()["portfolio"]["id"]
    base, h = f"/v1/portfolios/{pid}", _h(large)
    instant = {k: client.get(f"{base}/{k}", headers=h).json() for k in (
        "overview", "factor-exposures", "sector-exposure", "stress-tests")}
    instant["correlations"] = client.get(f"{base}/correlations?matrix=full",
                                               headers=h).json()
    assert instant["correlations"]["repaired"] is True
    want = Independent(large, body)
    snap = instant["overview"]["snapshot"]
    assert Decimal(snap["equity"]) == want.equity
    assert instant["overview"]["market_beta"] == pytest.approx(want.betas["market_beta"],
                                                               rel=1e-9)

    # the nightly refresh computes this portfolio and date on its own (its first snapshot)
    with sqlite_connection(db_path(large_url)) as con:
        con.execute("DELETE FROM portfolio_snapshots WHERE portfolio_id = ?", (pid,))
        con.commit()
    run = portfolio_refresh(as_of=large.as_of)
    assert run["counts"]["refreshed"] == 1 and run["counts"]["failed"] == 0, run
    day = large.as_of.isoformat()
    row = query(large_url, "SELECT * FROM portfolio_snapshots WHERE portfolio_id=? AND date=?",
                (pid, day)).iloc[0]
    for key in ("equity", "market_value", "cash", "cost_basis", "unrealized_pnl",
                "long_exposure", "short_exposure", "gross_exposure", "net_exposure"):
        assert Decimal(str(row[key])) == Decimal(snap[key]), key
    assert int(row.position_count) == snap["position_count"] and not row.partial

    factors = query(large_url, "SELECT * FROM portfolio_factor_exposures WHERE portfolio_id=? "
                    "AND date=?", (pid, day)).set_index("factor")
    for r in instant["factor-exposures"]["portfolio"]:
        stored = factors.loc[r["factor"]]
        assert stored.beta == pytest.approx(r["beta"], rel=1e-12, abs=1e-15), r["factor"]
        assert stored.dollar_exposure == pytest.approx(r["dollar_exposure"], rel=1e-12)
        assert stored.covered_share == pytest.approx(r["covered_share"], rel=1e-12)
        assert r["beta"] == pytest.approx(want.betas[r["factor"]], rel=1e-9, abs=1e-12)

    sectors = query(large_url, "SELECT * FROM portfolio_sector_exposures WHERE portfolio_id=? "
                    "AND date=?", (pid, day)).set_index("sector")
    assert sorted(sectors.index) == sorted(s["sector"] for s in
                                           instant["sector-exposure"]["sectors"])
    for s in instant["sector-exposure"]["sectors"]:
        assert sectors.loc[s["sector"], "value"] == pytest.approx(s["value"], rel=1e-12)

    corr = query(large_url, "SELECT * FROM portfolio_correlations WHERE portfolio_id=? "
                 "AND date=?", (pid, day)).iloc[0]
    c = instant["correlations"]
    assert json.loads(corr.symbols) == c["symbols"] == want.symbols
    # stored at 10 decimals: the API's worker thread runs BLAS on one thread, the nightly on
    # several, so the repaired matrix may differ by ~1e-16 and round one unit apart
    stored, answered = np.array(json.loads(corr.matrix)), np.array(c["matrix"])
    np.testing.assert_allclose(stored, answered, rtol=0, atol=1.000001e-10)
    assert np.mean(stored != answered) < 0.01
    assert corr.average_correlation == pytest.approx(c["average_correlation"], rel=1e-12)
    assert json.loads(corr.clusters) == c["clusters"]

    stress = query(large_url, "SELECT * FROM stress_test_results WHERE portfolio_id=? "
                   "AND date=?", (pid, day)).set_index("scenario")
    for s in instant["stress-tests"]["scenarios"]:
        assert bool(stress.loc[s["name"], "available"]) == s["available"], s["name"]
        if s["available"]:
            assert stress.loc[s["name"], "pnl"] == pytest.approx(s["pnl"], rel=1e-12)

    values = query(large_url, "SELECT symbol, market_value FROM positions WHERE portfolio_id=?",
                   (pid,))
    assert {s: Decimal(str(v)) for s, v in zip(values.symbol, values.market_value,
                                               strict=True)} == want.mv
