"""``GET /v1/portfolios/{id}/report`` and ``factorflow report``: one self-contained HTML page
over a portfolio with a month of nightly history (written by the real refresh step), opened
in a real headless browser (chromium): it renders with its charts and logs nothing; its
figures are the API's own answers; bad input is a 4xx naming the field."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from litestar.testing import TestClient

from tests.api.conftest import Seed, assert_error, auth
from tests.api.test_performance import BOOK, _create, _history
from tests.browser import render


def _pct(x: float) -> str:
    return f"{100 * x:.2f} %"


def test_the_report_page_renders_in_a_browser_with_the_apis_figures(
        client: TestClient, seed: Seed, db_url: str, tmp_path: Path) -> None:
    pid = _create(client, seed, BOOK, name="Report <book>")
    _history(db_url, seed, pid)
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    resp = client.get(f"{base}/report", headers=h)
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/html")
    page = resp.text
    assert "<script" not in page.lower() and not re.search(r"url\((?!#)", page)
    assert "Report &lt;book&gt;" in page

    perf = client.get(f"{base}/performance", headers=h, params={"window": "1Y"}).json()
    risk = client.get(f"{base}/risk", headers=h).json()
    assert _pct(perf["cumulative_return"]) in page
    assert _pct(perf["annualized_volatility"]) in page
    var = next(v for v in risk["var"] if (v["measure"], v["method"], v["confidence"],
                                          v["horizon_days"]) == ("var", "historical", 0.99, 1))
    assert f"{var['value']:,.2f}" in page
    assert page.count("<svg") >= 7

    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    shown = render(path, tmp_path)
    assert shown.console == []
    assert shown.ink() > 0.05 and shown.colours() > 100


def test_bad_report_requests_are_4xx_naming_the_field(client: TestClient, seed: Seed) -> None:
    pid = _create(client, seed, BOOK[:1])
    base, h = f"/v1/portfolios/{pid}", auth(seed)
    assert_error(client.get(f"{base}/report", headers=h, params={"window": "2W"}), 400,
                 field="window")
    assert_error(client.get(f"{base}/report", headers=h, params={"benchmark": "NOSUCH"}),
                 400, field="benchmark")
    assert client.get(f"{base}/report", headers=auth(seed, "bob")).status_code == 404


def test_the_cli_writes_the_page_the_api_answers(
        client: TestClient, seed: Seed, db_url: str, tmp_path: Path,
        capsys: pytest.CaptureFixture[str]) -> None:
    from cli.main import main

    pid = _create(client, seed, BOOK[:2], name="cli")
    _history(db_url, seed, pid)
    out = tmp_path / "page.html"
    assert main(["report", pid, "--out", str(out)]) == 0
    assert "wrote" in capsys.readouterr().out
    api = client.get(f"/v1/portfolios/{pid}/report", headers=auth(seed))
    assert out.read_text(encoding="utf-8") == api.text  # the same page, byte for byte
    assert main(["report", "0" * 32, "--out", str(out)]) == 1
    err = capsys.readouterr().err
    assert "not found" in err and "Traceback" not in err
    assert main(["report", pid, "--out", str(out), "--window", "2W"]) == 1
    assert "window" in capsys.readouterr().err
