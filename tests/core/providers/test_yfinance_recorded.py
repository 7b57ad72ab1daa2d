"""Real recorded Yahoo chart responses replayed through yfinance's own HTTP and parsing code.

yfinance 1.7 talks to Yahoo through a ``curl_cffi`` session. Here ``Session.request`` of
curl_cffi (every ``get``/``post`` of every session goes through it) is replaced by
``RecordedYahoo``, which answers from the recordings in ``tests/fixtures/yfinance/recorded``
(real responses of ``query2.finance.yahoo.com/v8/finance/chart``; source and licence in
``NOTICE.md`` there). Everything above that line is the real code: yfinance's cookie and
crumb handshake, its timezone lookup, its chart JSON parser, its multi-ticker assembly, and
our ``YFinanceProvider``. Every expected value is read from the recorded JSON itself, so a
yfinance upgrade that reads Yahoo's shape differently fails here.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit
from zoneinfo import ZoneInfo

import pandas as pd
import pytest

from core.providers.base import ACTION_COLUMNS, BAR_COLUMNS, empty_actions, empty_bars
from core.providers.yfinance_provider import YFinanceProvider

RECORDED = Path(__file__).resolve().parents[2] / "fixtures" / "yfinance" / "recorded"
CHART_PATH = "/v8/finance/chart/"

# Hand-written, not recorded: the answers to yfinance's cookie and crumb handshake
# (``fc.yahoo.com`` answers 404, its cookie is not needed here; ``getcrumb`` a token).
COOKIE_ANSWER = (404, "text/html", b"")
CRUMB_ANSWER = (200, "text/plain;charset=utf-8", b"offline-crumb")


@dataclass(frozen=True)
class Recording:
    """One recorded chart response: the dates its request covered and the body."""

    symbol: str
    first: dt.date  # first calendar date of the recorded request window
    last: dt.date  # last calendar date of the recorded request window (inclusive)
    body: dict[str, Any]
    name: str

    @property
    def result(self) -> dict[str, Any]:
        return self.body["chart"]["result"][0]

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.result["meta"]["exchangeTimezoneName"])

    @property
    def timestamps(self) -> list[int]:
        return list(self.result["timestamp"])


def load_recording(name: str) -> Recording:
    """A recording of ``RECORDED`` by file name."""
    raw = json.loads((RECORDED / name).read_text())
    url = urlsplit(raw["request"]["url"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}
    p1, p2 = int(query["period1"]), int(query["period2"])
    utc = dt.UTC
    return Recording(
        symbol=url.path.rsplit("/", 1)[-1],
        first=dt.datetime.fromtimestamp(p1, utc).date(),
        last=dt.datetime.fromtimestamp(p2, utc).date() - dt.timedelta(days=1),
        body=raw["response"]["bodyJson"],
        name=name,
    )


SPLIT_DIVIDEND = load_recording("chart-AAPL-2020-08-31-to-2020-11-07.json")
JAN_2020 = [
    load_recording(f"chart-{s}-2020-01-01-to-2020-01-03.json") for s in ("AAPL", "AMZN", "QQQ")
]


class RecordedYahoo:
    """Yahoo's endpoints as yfinance calls them, answered from recordings.

    A chart request with ``period1``/``period2`` gets the recording of that symbol whose
    recorded window contains the requested dates and whose sessions all lie in the
    request (exactly what Yahoo answered for those dates); ``range=1d`` (yfinance's
    timezone lookup, which reads only ``meta``) gets the symbol's latest recording.
    Anything else is recorded in ``unexpected`` and answered with a 599, so a test sees
    it. (An unknown symbol is not replayed: for Yahoo's 404 yfinance also queries the
    quote, quoteSummary and timeseries APIs, for which no recording was found; the
    all-NaN frame yfinance then returns is covered in ``test_yfinance_provider.py``.)
    """

    def __init__(self, recordings: list[Recording]) -> None:
        self.recordings = recordings
        self.charts: list[tuple[str, dict[str, Any]]] = []
        self.handshakes: list[str] = []
        self.unexpected: list[str] = []
        self._lock = threading.Lock()

    def _chart(self, symbol: str, params: dict[str, Any]) -> tuple[int, str, bytes]:
        with self._lock:
            self.charts.append((symbol, dict(params)))
        mine = [r for r in self.recordings if r.symbol == symbol]
        if params.get("range") == "1d" and mine:
            found: Recording | None = max(mine, key=lambda r: r.last)
        else:
            found = None
            if "period1" in params and "period2" in params:
                p1, p2 = int(params["period1"]), int(params["period2"])
                for r in mine:
                    first = dt.datetime.fromtimestamp(p1, r.tz).date()
                    last = dt.datetime.fromtimestamp(p2, r.tz).date() - dt.timedelta(days=1)
                    inside = all(p1 <= t < p2 for t in r.timestamps)
                    if r.first <= first and last <= r.last and inside:
                        found = r
        if found is None:
            return self._unexpected(f"chart {symbol} {params}")
        return 200, "application/json;charset=utf-8", json.dumps(found.body).encode()

    def _unexpected(self, what: str) -> tuple[int, str, bytes]:
        with self._lock:
            self.unexpected.append(what)
        return 599, "text/plain", b"no recording for this request"

    def answer(
        self, method: str, url: str, params: dict[str, Any] | None
    ) -> tuple[int, str, bytes]:
        """(status, content type, body) for one request."""
        parts = urlsplit(url)
        host = parts.hostname or ""
        if method == "GET" and host == "fc.yahoo.com":
            with self._lock:
                self.handshakes.append("cookie")
            return COOKIE_ANSWER
        if method == "GET" and host.endswith("finance.yahoo.com") and parts.path.endswith(
            "/v1/test/getcrumb"
        ):
            with self._lock:
                self.handshakes.append("crumb")
            return CRUMB_ANSWER
        if (
            method == "GET"
            and host in ("query1.finance.yahoo.com", "query2.finance.yahoo.com")
            and parts.path.startswith(CHART_PATH)
        ):
            return self._chart(parts.path[len(CHART_PATH):], params or {})
        return self._unexpected(f"{method} {url} {params}")

    def install(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Replace ``curl_cffi.requests.Session.request`` with answers from ``answer``."""
        from curl_cffi.requests import Session
        from curl_cffi.requests.headers import Headers
        from curl_cffi.requests.models import Response

        fake = self

        def request(
            self: Session, method: str, url: str, params: dict | None = None, **_: Any
        ) -> Response:
            status, content_type, body = fake.answer(method.upper(), url, params)
            response = Response()
            response.url = url
            response.status_code = status
            response.ok = status < 400
            response.reason = "OK" if status < 400 else "Error"
            response.headers = Headers({"content-type": content_type})
            response.content = body
            return response

        monkeypatch.setattr(Session, "request", request)


@pytest.fixture
def yahoo(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Iterator[RecordedYahoo]:
    """yfinance with its HTTP answered by ``RecordedYahoo`` and fresh cookie/crumb/tz state."""
    import yfinance
    from yfinance import _http, cache
    from yfinance.data import YfData

    assert _http.HAS_CURL_CFFI, "yfinance is expected to use curl_cffi (the patched session)"
    fake = RecordedYahoo([SPLIT_DIVIDEND, *JAN_2020])
    fake.install(monkeypatch)
    old_cache = cache._TzDBManager.get_location()
    yfinance.set_tz_cache_location(str(tmp_path / "yf-cache"))

    def fresh_state() -> None:
        data = YfData()
        data._cookie, data._crumb, data._cookie_strategy = None, None, "basic"
        YfData.cache_get.cache_clear()

    fresh_state()
    yield fake
    fresh_state()
    yfinance.set_tz_cache_location(old_cache)


def _bars_from_json(recording: Recording, symbol: str | None = None) -> pd.DataFrame:
    """The long bars a correct parser makes of a recording, read straight from its JSON."""
    result = recording.result
    quote = result["indicators"]["quote"][0]
    days = [dt.datetime.fromtimestamp(t, recording.tz).date() for t in recording.timestamps]
    frame = pd.DataFrame(
        {
            "symbol": pd.Series([symbol or recording.symbol] * len(days), dtype=object),
            "date": pd.to_datetime(days).astype("datetime64[ns]"),
            "open": quote["open"],
            "high": quote["high"],
            "low": quote["low"],
            "close": quote["close"],
            "adj_close": result["indicators"]["adjclose"][0]["adjclose"],
            "volume": [float(v) for v in quote["volume"]],
        },
        columns=list(BAR_COLUMNS),
    )
    return frame.astype(empty_bars().dtypes.to_dict())


def _actions_from_json(recording: Recording) -> pd.DataFrame:
    """Splits (numerator / denominator) and dividends (amount) of a recording's ``events``."""
    events = recording.result.get("events", {})
    rows = [
        (e["date"], "split", e["numerator"] / e["denominator"])
        for e in events.get("splits", {}).values()
    ] + [(e["date"], "dividend", e["amount"]) for e in events.get("dividends", {}).values()]
    if not rows:
        return empty_actions()
    frame = pd.DataFrame(
        {
            "symbol": pd.Series([recording.symbol] * len(rows), dtype=object),
            "date": pd.to_datetime(
                [dt.datetime.fromtimestamp(t, recording.tz).date() for t, _, _ in rows]
            ).astype("datetime64[ns]"),
            "kind": pd.Series([k for _, k, _ in rows], dtype=object),
            "value": [v for _, _, v in rows],
        },
        columns=list(ACTION_COLUMNS),
    )
    return frame.sort_values(["symbol", "date", "kind"], ignore_index=True)


def _midnight(day: dt.date, tz: ZoneInfo) -> int:
    return int(dt.datetime.combine(day, dt.time(), tz).timestamp())


def test_the_recording_is_what_the_tests_say() -> None:
    """Guards the fixture itself: a split and a dividend, sessions at the NYSE open."""
    r = SPLIT_DIVIDEND
    assert r.symbol == "AAPL" and len(r.timestamps) == 49
    assert r.result["meta"]["exchangeTimezoneName"] == "America/New_York"
    opens = {dt.datetime.fromtimestamp(t, r.tz).time() for t in r.timestamps}
    assert opens == {dt.time(9, 30)}
    actions = _actions_from_json(r)
    assert actions[["kind", "value"]].values.tolist() == [["split", 4.0], ["dividend", 0.205]]


def test_yfinance_download_parses_the_recorded_response(yahoo: RecordedYahoo) -> None:
    """yfinance's own output (before our provider) holds the recorded values."""
    import yfinance

    frame = yfinance.download(
        ["AAPL"], start=dt.date(2020, 8, 31), end=dt.date(2020, 11, 7), auto_adjust=False,
        actions=True, group_by="column", threads=True, multi_level_index=True,
        progress=False, interval="1d",
    )
    assert yahoo.unexpected == []
    expected = _bars_from_json(SPLIT_DIVIDEND).set_index("date")
    assert list(frame.index) == list(expected.index)  # tz-naive session dates, New York
    for field, column in [("Open", "open"), ("High", "high"), ("Low", "low"),
                          ("Close", "close"), ("Adj Close", "adj_close"), ("Volume", "volume")]:
        got = frame[(field, "AAPL")].astype("float64").tolist()
        assert got == expected[column].tolist(), field
    splits = frame[("Stock Splits", "AAPL")]
    dividends = frame[("Dividends", "AAPL")]
    assert splits[splits != 0].to_dict() == {pd.Timestamp("2020-08-31"): 4.0}
    assert dividends[dividends != 0].to_dict() == {pd.Timestamp("2020-11-06"): 0.205}


def test_provider_reads_bars_and_actions_equal_to_the_json(yahoo: RecordedYahoo) -> None:
    start, end = dt.date(2020, 8, 31), dt.date(2020, 11, 6)
    result = YFinanceProvider(max_retries=0).fetch(["AAPL"], start, end)

    assert yahoo.unexpected == []
    assert result.errors == {}
    assert result.provider == "yfinance"
    assert result.provider_by_symbol == {"AAPL": "yfinance"}
    pd.testing.assert_frame_equal(result.bars, _bars_from_json(SPLIT_DIVIDEND), check_exact=True)
    pd.testing.assert_frame_equal(
        result.actions, _actions_from_json(SPLIT_DIVIDEND), check_exact=True
    )
    # recorded in 2025: adj_close is below the traded close by every dividend since each day
    assert (result.bars["adj_close"] < result.bars["close"]).all()

    # what yfinance asked Yahoo: the exchange-midnight window, daily, with the events
    ny = SPLIT_DIVIDEND.tz
    history = [p for s, p in yahoo.charts if s == "AAPL" and "period1" in p]
    assert len(history) == 1
    params = history[0]
    assert int(params["period1"]) == _midnight(start, ny)
    assert int(params["period2"]) == _midnight(end + dt.timedelta(days=1), ny)
    assert params["interval"] == "1d"
    assert {"div", "splits"} <= set(str(params["events"]).split(","))
    assert params.get("crumb") == CRUMB_ANSWER[2].decode()  # the handshake's crumb is used
    assert "crumb" in yahoo.handshakes


def test_several_tickers_and_an_etf_in_one_download(yahoo: RecordedYahoo) -> None:
    day = dt.date(2020, 1, 2)
    result = YFinanceProvider(max_retries=0).fetch(["AAPL", "AMZN", "QQQ"], day, day)

    assert yahoo.unexpected == []
    assert result.errors == {}
    assert result.provider_by_symbol == dict.fromkeys(["AAPL", "AMZN", "QQQ"], "yfinance")
    expected = pd.concat([_bars_from_json(r) for r in JAN_2020], ignore_index=True)
    pd.testing.assert_frame_equal(result.bars, expected, check_exact=True)
    assert result.actions.empty
    asked = {s for s, p in yahoo.charts if "period1" in p}
    assert asked == {"AAPL", "AMZN", "QQQ"}  # one chart request per ticker


def test_a_request_without_recording_is_refused_not_invented(yahoo: RecordedYahoo) -> None:
    """The fake answers only what Yahoo answered: a wider window finds no recording."""
    result = YFinanceProvider(max_retries=0).fetch(
        ["AMZN"], dt.date(2020, 1, 2), dt.date(2020, 1, 3)
    )
    assert result.bars.empty and result.errors["AMZN"].startswith("no_data: ")
    assert any(u.startswith("chart AMZN {'period1'") for u in yahoo.unexpected)

