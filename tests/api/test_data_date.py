"""The data date of every answer is the last *completed* symbol batch's, never a half night.

A symbol batch stores the day's prices before its factors. Between the two (a crash, or the
second between them in a normal run), answers must stay on the last completed night: its
prices, its betas, nothing cached from the new day until the batch completes.
"""

from __future__ import annotations

import datetime as dt
import sqlite3
from decimal import ROUND_HALF_EVEN, Decimal

import pytest
from litestar.testing import TestClient

from tests.api.conftest import Seed, auth, position, store_factors
from tests.conftest import wait_until
from tests.flows.helpers import db_path

HOLDINGS = {"MKTA": "10", "MKTB": "-5", "DIVY": "3.5"}
CASH = Decimal("1000")
CENT_HUNDREDTHS = Decimal("0.0001")


def _expected_market_beta(url: str, day: dt.date) -> float:
    """Σ w_i β_i with w_i = MV_i / (cash + Σ MV), MV_i = quantity × close rounded half-even
    to 4 places (the money convention), from the rows stored for ``day`` (computed here,
    independently of the API's code)."""
    con = sqlite3.connect(db_path(url))
    try:
        values, betas = {}, {}
        for sym, qty in HOLDINGS.items():
            (close,) = con.execute("SELECT close FROM prices WHERE symbol = ? AND date = ?",
                                   (sym, day.isoformat())).fetchone()
            values[sym] = (Decimal(qty) * Decimal(str(close))).quantize(
                CENT_HUNDREDTHS, rounding=ROUND_HALF_EVEN)
            (betas[sym],) = con.execute(
                "SELECT beta FROM symbol_factor_exposures WHERE symbol = ? AND date = ? "
                "AND factor = 'market_beta'", (sym, day.isoformat())).fetchone()
    finally:
        con.close()
    equity = CASH + sum(values.values())
    return sum(float(values[s] / equity) * betas[s] for s in HOLDINGS)


def _market(answer: dict) -> dict:
    return next(f for f in answer["portfolio"] if f["factor"] == "market_beta")


def test_answers_stay_on_the_last_completed_night_until_the_batch_completes(
        client: TestClient, seed: Seed, db_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from core import calendar, symbol_data
    from core.factors.definitions import REFERENCE_ETFS

    monkeypatch.setattr(symbol_data, "DATA_DATE_TTL", 0.0)
    day, previous = seed.as_of, calendar.previous_session(seed.as_of)
    symbols = [*REFERENCE_ETFS, *seed.tickers]
    store_factors(db_url, previous, symbols)  # the night before completed with its betas
    con = sqlite3.connect(db_path(db_url))
    with con:  # tonight's batch has stored its prices, not yet its factors
        con.execute("UPDATE batch_runs SET target_date = ?", (previous.isoformat(),))
        con.execute("INSERT INTO batch_runs (id, job_type, target_date, status, started_at, "
                    "counts, phase_seconds, error_summary) VALUES ('tonight', 'symbol-batch', "
                    "?, 'running', ?, '{}', '{}', '{}')",
                    (day.isoformat(), dt.datetime.now(dt.UTC).isoformat()))
        con.execute("DELETE FROM symbol_factor_exposures WHERE date = ?", (day.isoformat(),))
    con.close()

    body = client.post("/v1/portfolios", headers=auth(seed), json={
        "name": "Half night", "cash": str(CASH),
        "positions": [position(s, quantity=q) for s, q in HOLDINGS.items()]}).json()
    fx = body["factor_exposures"]
    assert body["snapshot"]["date"] == fx["data_as_of"] == previous.isoformat()
    market = _market(fx)
    assert market["beta"] == pytest.approx(_expected_market_beta(db_url, previous), rel=1e-12)
    assert market["covered_share"] == 1.0
    pid = body["portfolio"]["id"]
    stress = client.get(f"/v1/portfolios/{pid}/stress-tests", headers=auth(seed)).json()
    assert stress["data_as_of"] == previous.isoformat()
    assert all(s["available"] and s["pnl"] != 0 for s in stress["scenarios"]
               if s["name"].startswith("market"))
    health = client.get("/v1/admin/freshness", headers=auth(seed, "root"))
    assert health.json()["latest_data_date"] == previous.isoformat()

    store_factors(db_url, day, symbols)  # tonight's batch completes
    con = sqlite3.connect(db_path(db_url))
    with con:
        con.execute("UPDATE batch_runs SET status = 'completed', finished_at = ? "
                    "WHERE id = 'tonight'", (dt.datetime.now(dt.UTC).isoformat(),))
    con.close()

    def tonights() -> dict | None:  # the in-memory answers are re-validated about once a second
        fx = client.get(f"/v1/portfolios/{pid}/factor-exposures", headers=auth(seed)).json()
        return fx if fx["data_as_of"] == day.isoformat() else None

    fx = wait_until(tonights, "the factor exposures on tonight's data", every=0.1)
    assert fx["data_as_of"] == day.isoformat() and fx["cached"] is False
    assert _market(fx)["beta"] == pytest.approx(_expected_market_beta(db_url, day), rel=1e-12)
