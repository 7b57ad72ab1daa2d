"""The portfolio flow stores each refreshed portfolio's risk answer (``portfolio_risk``) and
summarises it: one row per portfolio at the refreshed date, its figures those of its
payload, the run's counts the rows written and the model's coverage."""

from __future__ import annotations

import json

import pytest

from core.portfolio.risk import expand_risk
from tests.flows.helpers import query
from tests.flows.test_portfolio_refresh import D3, seeded  # noqa: F401 (the fixture)

pytestmark = pytest.mark.usefixtures("prefect_harness")


def test_the_nightly_refresh_stores_one_risk_row_per_portfolio(
        database_url: str, seeded: dict) -> None:  # noqa: F811
    from flows.portfolio_refresh import portfolio_refresh

    result = portfolio_refresh(as_of=D3)
    rows = query(database_url, "SELECT * FROM portfolio_risk ORDER BY portfolio_id")
    assert sorted(rows.portfolio_id) == sorted([seeded["p1"], seeded["p2"]])  # p3 fails
    assert set(rows.date) == {D3.isoformat()}
    assert result["counts"]["risk_rows"] == 2
    for r in rows.itertuples():
        payload = expand_risk(json.loads(r.payload))
        var = next(v for v in payload["var"] if (v["measure"], v["method"], v["confidence"],
                                                 v["horizon_days"]) == ("var", "parametric",
                                                                        0.99, 1))
        assert r.var_99_1d == pytest.approx(var["value"], rel=1e-12)
        assert r.volatility_daily == pytest.approx(payload["volatility"]["daily"], rel=1e-12)
    p1 = expand_risk(json.loads(rows.set_index("portfolio_id").loc[seeded["p1"], "payload"]))
    assert "PRIVATE_FUND_A" in p1["model"]["coverage"]["uncovered"]
    # a rerun of the same date leaves the same rows
    portfolio_refresh(as_of=D3)
    assert query(database_url, "SELECT * FROM portfolio_risk ORDER BY portfolio_id").equals(rows)
