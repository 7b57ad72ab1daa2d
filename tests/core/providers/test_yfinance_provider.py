"""YFinanceProvider against recorded yfinance-1.7-shaped frames (no network).

The fixtures in ``tests/fixtures/yfinance`` were produced by the real
``yfinance.download`` on stubbed ``Ticker.history`` results (see their README);
a few tests below drive the real ``yfinance.download`` the same way to check what
only the real function does (log-only rate limits and errors).
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from core.providers.base import (
    ACTION_COLUMNS,
    BAR_COLUMNS,
    PROFILE_COLUMNS,
    PriceProvider,
    ProviderError,
    RateLimitError,
)
from core.providers.yfinance_provider import (
    NO_COLUMN,
    NO_DATA,
    YFinanceProvider,
    parse_download,
)

FIXTURES = Path(__file__).resolve().parents[2] / "fixtures" / "yfinance"

AUG_START, AUG_END = date(2020, 8, 14), date(2020, 9, 1)
NOV_START, NOV_END = date(2024, 11, 20), date(2024, 12, 4)


def load(name: str) -> pd.DataFrame:
    """A recorded ``yfinance.download`` frame (columns ``Price`` × ``Ticker``)."""
    return pd.read_csv(FIXTURES / f"{name}.csv", header=[0, 1], index_col=0, parse_dates=True)


def tickers_of(frame: pd.DataFrame, tickers: list[str]) -> pd.DataFrame:
    """The columns of ``frame`` that yfinance would return for ``tickers``."""
    mask = frame.columns.get_level_values("Ticker").isin([t.upper() for t in tickers])
    return frame.loc[:, mask]


class FakeDownload:
    """Stands in for ``yfinance.download``: records the calls, answers from a script.

    ``script`` items are consumed one per call: a frame is returned, an exception
    instance raised; when the script is exhausted, ``default(tickers)`` answers.
    """

    def __init__(
        self,
        *script: pd.DataFrame | BaseException,
        default: Callable[[list[str]], pd.DataFrame] | None = None,
    ) -> None:
        self.script = list(script)
        self.default = default
        self.calls: list[dict[str, Any]] = []

    def __call__(self, **kwargs: Any) -> pd.DataFrame:
        self.calls.append(kwargs)
        if self.script:
            item = self.script.pop(0)
            if isinstance(item, BaseException):
                raise item
            return item
        assert self.default is not None, "unexpected download call"
        return self.default(kwargs["tickers"])


class Sleeps:
    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


def provider(
    download: Callable[..., pd.DataFrame], **kwargs: Any
) -> tuple[YFinanceProvider, Sleeps]:
    sleeps = Sleeps()
    return YFinanceProvider(download=download, sleep=sleeps, **kwargs), sleeps


# ------------------------------------------------------------------------ parsing


def test_is_a_price_provider() -> None:
    p = YFinanceProvider(download=FakeDownload())
    assert isinstance(p, PriceProvider)
    assert p.name == "yfinance"


def test_bars_equal_fixture_cells() -> None:
    raw = load("split_dividend")
    p = YFinanceProvider(download=FakeDownload(raw))
    result = p.fetch(["AAPL", "MSFT"], AUG_START, AUG_END)

    bars = result.bars
    assert list(bars.columns) == list(BAR_COLUMNS)
    assert bars["symbol"].dtype == object
    assert bars["date"].dtype == "datetime64[ns]"
    assert all(bars[c].dtype == "float64" for c in BAR_COLUMNS[2:])
    assert len(bars) == 2 * 13
    assert result.errors == {}
    assert result.provider == "yfinance"
    # symbol-major, dates ascending within a symbol
    assert bars["symbol"].tolist() == ["AAPL"] * 13 + ["MSFT"] * 13
    assert bars.groupby("symbol")["date"].apply(lambda d: d.is_monotonic_increasing).all()

    fields = {"Open": "open", "High": "high", "Low": "low", "Close": "close",
              "Adj Close": "adj_close", "Volume": "volume"}
    for row in bars.itertuples(index=False):
        for src, dst in fields.items():
            assert getattr(row, dst) == float(raw.loc[row.date, (src, row.symbol)]), (
                row.symbol, row.date, src)

    aapl = bars[bars["symbol"] == "AAPL"].set_index("date")
    # raw close before the 4-for-1 split, adjusted close already divided by 4
    assert aapl.loc["2020-08-28", "close"] == 499.23
    assert aapl.loc["2020-08-31", "close"] == 129.04
    ratio = aapl["adj_close"] / aapl["close"]
    assert ratio.loc[:"2020-08-28"].round(6).eq(round(0.973 / 4, 6)).all()
    assert ratio.loc["2020-08-31":].round(6).eq(0.973).all()


def test_actions_split_and_dividend() -> None:
    result = YFinanceProvider(download=FakeDownload(load("split_dividend"))).fetch(
        ["AAPL", "MSFT"], AUG_START, AUG_END
    )
    actions = result.actions
    assert list(actions.columns) == list(ACTION_COLUMNS)
    assert actions["date"].dtype == "datetime64[ns]"
    assert actions.to_dict("records") == [
        {"symbol": "AAPL", "date": pd.Timestamp("2020-08-31"), "kind": "split", "value": 4.0},
        {"symbol": "MSFT", "date": pd.Timestamp("2020-08-19"), "kind": "dividend", "value": 0.51},
    ]


def test_only_rows_in_inclusive_range() -> None:
    start, end = date(2020, 8, 18), date(2020, 8, 28)
    result = YFinanceProvider(download=FakeDownload(load("split_dividend"))).fetch(
        ["AAPL", "MSFT"], start, end
    )
    assert result.bars["date"].min() == pd.Timestamp(start)
    assert result.bars["date"].max() == pd.Timestamp(end)
    assert len(result.bars) == 2 * 9
    # the split (08-31) is outside, the dividend (08-19) inside
    assert result.actions[["symbol", "kind"]].values.tolist() == [["MSFT", "dividend"]]


def test_delisted_ticker_and_late_listing() -> None:
    result = YFinanceProvider(download=FakeDownload(load("delisted_chunk"))).fetch(
        ["IBM", "SIVBQ", "IPOX"], NOV_START, NOV_END
    )
    assert result.errors == {"SIVBQ": NO_DATA}
    assert NO_DATA == "no_data: yfinance returned no rows (possibly delisted or unknown symbol)"
    assert result.provider_by_symbol == {"IBM": "yfinance", "IPOX": "yfinance"}
    counts = result.bars.groupby("symbol").size().to_dict()
    assert counts == {"IBM": 10, "IPOX": 6}  # IPOX's all-NaN rows before listing dropped
    ipox = result.bars[result.bars["symbol"] == "IPOX"]
    assert ipox["date"].min() == pd.Timestamp("2024-11-26")
    assert not ipox[list(BAR_COLUMNS[2:])].isna().any().any()
    assert pd.Timestamp("2024-11-28") not in set(result.bars["date"])  # Thanksgiving
    assert result.actions.empty


def test_single_ticker_frame() -> None:
    raw = load("single_ticker")
    assert isinstance(raw.columns, pd.MultiIndex)  # yfinance keeps the MultiIndex for one
    result = YFinanceProvider(download=FakeDownload(raw)).fetch(
        ["SPY"], date(2024, 11, 25), date(2024, 12, 3)
    )
    assert result.errors == {}
    assert len(result.bars) == 6
    assert result.bars["close"].tolist() == raw[("Close", "SPY")].tolist()


def test_empty_frame_every_symbol_in_errors() -> None:
    result = YFinanceProvider(download=FakeDownload(load("empty"))).fetch(
        ["SIVBQ", "FRCB"], NOV_START, NOV_END
    )
    assert result.errors == {"SIVBQ": NO_DATA, "FRCB": NO_DATA}
    assert result.bars.empty and list(result.bars.columns) == list(BAR_COLUMNS)
    assert result.bars["date"].dtype == "datetime64[ns]"
    assert result.actions.empty and list(result.actions.columns) == list(ACTION_COLUMNS)


def test_ticker_missing_from_columns() -> None:
    result = YFinanceProvider(download=FakeDownload(load("single_ticker"))).fetch(
        ["SPY", "QQQ"], date(2024, 11, 25), date(2024, 12, 3)
    )
    assert result.errors == {"QQQ": NO_COLUMN}
    assert set(result.bars["symbol"]) == {"SPY"}


def test_tz_aware_index_gives_exchange_dates() -> None:
    raw = load("delisted_chunk")
    aware = raw.copy()
    aware.index = aware.index.tz_localize("America/New_York")
    expected = parse_download(raw, ["IBM", "IPOX"], NOV_START, NOV_END)
    got = parse_download(aware, ["IBM", "IPOX"], NOV_START, NOV_END)
    pd.testing.assert_frame_equal(got.bars, expected.bars)
    assert got.bars["date"].dt.tz is None


def test_lower_case_symbol_keeps_requested_spelling() -> None:
    # yfinance upper-cases tickers in its columns
    result = YFinanceProvider(download=FakeDownload(load("single_ticker"))).fetch(
        ["spy"], date(2024, 11, 25), date(2024, 12, 3)
    )
    assert result.errors == {}
    assert set(result.bars["symbol"]) == {"spy"}


def test_extra_price_columns_are_ignored() -> None:
    # ETFs and funds also get a "Capital Gains" column from yfinance
    raw = load("single_ticker")
    raw[("Capital Gains", "SPY")] = 0.0
    raw = raw.sort_index(axis=1)
    result = parse_download(raw, ["SPY"], date(2024, 11, 25), date(2024, 12, 3))
    assert len(result.bars) == 6 and result.actions.empty


def test_missing_adj_close_is_an_error() -> None:
    raw = load("split_dividend")
    adjusted = raw.drop(columns="Adj Close", level="Price")  # what auto_adjust=True returns
    p = YFinanceProvider(download=FakeDownload(adjusted))
    with pytest.raises(ProviderError, match="Adj Close"):
        p.fetch(["AAPL", "MSFT"], AUG_START, AUG_END)


def test_single_level_columns_are_an_error() -> None:
    raw = load("single_ticker").droplevel("Ticker", axis=1)  # multi_level_index=False
    with pytest.raises(ProviderError, match="MultiIndex"):
        YFinanceProvider(download=FakeDownload(raw)).fetch(
            ["SPY"], date(2024, 11, 25), date(2024, 12, 3)
        )


# ----------------------------------------------------------------------- chunking


def test_chunks_and_download_arguments() -> None:
    raw = pd.concat([load("split_dividend"), load("delisted_chunk")], axis=1).sort_index(axis=1)
    fake = FakeDownload(default=lambda tickers: tickers_of(raw, tickers))
    symbols = ["AAPL", "MSFT", "IBM", "SIVBQ", "IPOX"]
    start, end = date(2020, 8, 14), date(2024, 12, 4)
    result = YFinanceProvider(download=fake, chunk_size=2).fetch(symbols + ["AAPL"], start, end)

    assert [c["tickers"] for c in fake.calls] == [["AAPL", "MSFT"], ["IBM", "SIVBQ"], ["IPOX"]]
    for call in fake.calls:
        assert call["start"] == start
        assert call["end"] == end + timedelta(days=1)  # yfinance's end is exclusive
        assert call["auto_adjust"] is False
        assert call["actions"] is True
        assert call["group_by"] == "column"
        assert call["multi_level_index"] is True
        assert call["progress"] is False
        assert call["interval"] == "1d"
    assert result.errors == {"SIVBQ": NO_DATA}
    assert result.bars.groupby("symbol").size().to_dict() == {
        "AAPL": 13, "MSFT": 13, "IBM": 10, "IPOX": 6,
    }
    assert len(result.actions) == 2
    assert result.bars.index.equals(pd.RangeIndex(len(result.bars)))
    assert result.provider_by_symbol == dict.fromkeys(["AAPL", "MSFT", "IBM", "IPOX"], "yfinance")


# -------------------------------------------------------------------- rate limits


def test_rate_limit_exception_backs_off_then_succeeds() -> None:
    from yfinance.exceptions import YFRateLimitError

    fake = FakeDownload(YFRateLimitError(), YFRateLimitError(), load("split_dividend"))
    p, sleeps = provider(fake)
    result = p.fetch(["AAPL", "MSFT"], AUG_START, AUG_END)
    assert sleeps.calls == [2, 5]
    assert len(fake.calls) == 3
    assert len(result.bars) == 26 and result.errors == {}


def test_rate_limit_that_persists_raises_rate_limit_error() -> None:
    from yfinance.exceptions import YFRateLimitError

    fake = FakeDownload(*[YFRateLimitError() for _ in range(4)])
    p, sleeps = provider(fake)
    with pytest.raises(RateLimitError):
        p.fetch(["AAPL", "MSFT"], AUG_START, AUG_END)
    assert sleeps.calls == [2, 5, 15]
    assert len(fake.calls) == 4  # first try + max_retries


def test_other_exception_is_provider_error_with_message() -> None:
    fake = FakeDownload(ConnectionError("curl: (6) Could not resolve host: query2.finance.yahoo"))
    p, sleeps = provider(fake)
    with pytest.raises(ProviderError, match="Could not resolve host") as info:
        p.fetch(["AAPL"], AUG_START, AUG_END)
    assert not isinstance(info.value, RateLimitError)
    assert sleeps.calls == []


def test_a_failing_later_chunk_fails_the_call() -> None:
    fake = FakeDownload(tickers_of(load("split_dividend"), ["AAPL"]), RuntimeError("boom"))
    p, _ = provider(fake, chunk_size=1)
    with pytest.raises(ProviderError, match="boom"):
        p.fetch(["AAPL", "MSFT"], AUG_START, AUG_END)


# ---------------------------------------------- the real yfinance.download, stubbed


HISTORY_START = pd.Timestamp("2020-08-14", tz="America/New_York")


def _history(ticker: str) -> pd.DataFrame:
    """What ``Ticker(ticker).history(auto_adjust=False, actions=True)`` returns."""
    raw = load("split_dividend")
    part = raw.xs(ticker, axis=1, level="Ticker")[
        ["Open", "High", "Low", "Close", "Adj Close", "Volume", "Dividends", "Stock Splits"]
    ].copy()
    part["Volume"] = part["Volume"].astype(np.int64)
    part.index = part.index.tz_localize("America/New_York")
    part.index.name = "Date"
    part.columns.name = None
    return part


class StubYahoo:
    """Replaces ``yfinance.multi.Ticker``: per-ticker outcomes, one per call.

    ``plan[ticker]`` lists what successive ``history()`` calls do: ``"ok"`` returns
    the recorded history, an exception instance is raised (yfinance catches and
    logs it); when the list runs out, ``"ok"``.
    """

    def __init__(self, plan: dict[str, list[Any]]) -> None:
        self.plan = plan
        self.requested: list[str] = []

    def ticker(self, symbol: str) -> Any:
        stub = self

        class _PH:
            _last_error = None

        class _Ticker:
            def __init__(self) -> None:
                self._price_history = _PH()

            def history(self, **_: Any) -> pd.DataFrame:
                stub.requested.append(symbol)
                steps = stub.plan.get(symbol, [])
                step = steps.pop(0) if steps else "ok"
                if isinstance(step, BaseException):
                    raise step
                return _history(symbol)

        return _Ticker()


@pytest.fixture
def real_download(monkeypatch: pytest.MonkeyPatch) -> Callable[[dict[str, list[Any]]], Any]:
    import yfinance
    import yfinance.multi

    def install(plan: dict[str, list[Any]]) -> Any:
        stub = StubYahoo(plan)
        monkeypatch.setattr(yfinance.multi, "Ticker", stub.ticker)
        return stub

    def quiet_download(**kwargs: Any) -> pd.DataFrame:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # yfinance 1.7 uses pandas' deprecated inplace=
            return yfinance.download(**kwargs)

    install.download = quiet_download  # type: ignore[attr-defined]
    return install


def test_recorded_fixture_matches_real_download_output(real_download: Any) -> None:
    real_download({})
    frame = real_download.download(
        tickers=["AAPL", "MSFT"], start=AUG_START, end=AUG_END + timedelta(days=1),
        auto_adjust=False, actions=True, progress=False,
    )
    assert list(frame.columns.names) == ["Price", "Ticker"]
    recorded = load("split_dividend")
    assert frame.columns.equals(recorded.columns)
    expected = parse_download(recorded, ["AAPL", "MSFT"], AUG_START, AUG_END)
    got = parse_download(frame, ["AAPL", "MSFT"], AUG_START, AUG_END)
    pd.testing.assert_frame_equal(got.bars, expected.bars)
    pd.testing.assert_frame_equal(got.actions, expected.actions)


def test_log_only_rate_limit_is_retried(real_download: Any) -> None:
    from yfinance.exceptions import YFRateLimitError

    stub = real_download({"MSFT": [YFRateLimitError()]})  # yfinance only logs this
    p, sleeps = provider(real_download.download)
    result = p.fetch(["AAPL", "MSFT"], AUG_START, AUG_END)
    assert sleeps.calls == [2]
    assert sorted(stub.requested) == ["AAPL", "MSFT", "MSFT"]  # only MSFT is retried
    assert result.errors == {}
    assert result.bars.groupby("symbol").size().to_dict() == {"AAPL": 13, "MSFT": 13}
    assert len(result.actions) == 2


def test_log_only_rate_limit_that_persists(real_download: Any) -> None:
    from yfinance.exceptions import YFRateLimitError

    real_download({"MSFT": [YFRateLimitError() for _ in range(4)]})
    p, sleeps = provider(real_download.download)
    result = p.fetch(["AAPL", "MSFT"], AUG_START, AUG_END)
    assert sleeps.calls == [2, 5, 15]
    assert set(result.bars["symbol"]) == {"AAPL"}  # what was fetched is kept
    assert result.errors["MSFT"].startswith("provider_error: rate limited")

    real_download({s: [YFRateLimitError() for _ in range(4)] for s in ("AAPL", "MSFT")})
    p, _ = provider(real_download.download)
    with pytest.raises(RateLimitError):
        p.fetch(["AAPL", "MSFT"], AUG_START, AUG_END)


def test_logged_errors_classify_no_data(real_download: Any) -> None:
    from yfinance.exceptions import YFPricesMissingError

    real_download({
        "AAPL": [YFPricesMissingError("$AAPL", "(1d 2020-08-14 -> 2020-09-02)")],
        "MSFT": [ConnectionError("curl: (28) Operation timed out")],
    })
    p, sleeps = provider(real_download.download)
    result = p.fetch(["AAPL", "MSFT"], AUG_START, AUG_END)
    assert result.bars.empty
    assert result.errors["AAPL"] == NO_DATA
    assert result.errors["MSFT"].startswith("provider_error: yfinance: ConnectionError(")
    assert "timed out" in result.errors["MSFT"]
    assert sleeps.calls == []


# ----------------------------------------------------------------------- profiles


def test_profiles_mapping_and_failing_symbol() -> None:
    infos: dict[str, dict[str, Any]] = {
        "AAPL": {
            "longName": "Apple Inc.", "shortName": "Apple", "sector": "Technology",
            "industry": "Consumer Electronics", "marketCap": 3_500_000_000_000,
            "trailingPE": 37.5, "beta": 1.24, "fiftyTwoWeekHigh": 260.1,
            "fiftyTwoWeekLow": 164.08,
        },
        "SPY": {"shortName": "SPDR S&P 500", "beta": None, "trailingPE": "Infinity"},
    }

    def info(symbol: str) -> dict[str, Any]:
        if symbol == "BAD":
            raise KeyError("quoteSummary")
        return infos[symbol]

    p = YFinanceProvider(download=FakeDownload(), ticker_info=info)
    frame = p.fetch_profiles(["AAPL", "BAD", "SPY"])
    assert list(frame.columns) == list(PROFILE_COLUMNS)
    rows = {r["symbol"]: r for r in frame.to_dict("records")}
    assert rows["AAPL"] == {
        "symbol": "AAPL", "name": "Apple Inc.", "sector": "Technology",
        "industry": "Consumer Electronics", "market_cap": 3.5e12, "pe_ratio": 37.5,
        "provider_beta": 1.24, "week52_high": 260.1, "week52_low": 164.08,
    }
    assert rows["SPY"]["name"] == "SPDR S&P 500"  # shortName when no longName
    assert rows["SPY"]["pe_ratio"] is None and rows["SPY"]["provider_beta"] is None
    assert all(rows["BAD"][c] is None for c in PROFILE_COLUMNS[1:])


def test_profiles_rate_limit_backs_off_then_gives_up() -> None:
    from yfinance.exceptions import YFRateLimitError

    calls: list[str] = []

    def info(symbol: str) -> dict[str, Any]:
        calls.append(symbol)
        if symbol == "AAPL" and calls.count("AAPL") == 1:
            raise YFRateLimitError()
        if symbol == "MSFT":
            raise YFRateLimitError()
        return {"longName": symbol}

    sleeps = Sleeps()
    p = YFinanceProvider(download=FakeDownload(), ticker_info=info, sleep=sleeps, max_retries=2)
    frame = p.fetch_profiles(["AAPL", "MSFT", "IBM"])
    assert frame["name"].tolist() == ["AAPL", None, None]
    assert calls == ["AAPL", "AAPL", "MSFT", "MSFT", "MSFT"]  # IBM skipped once limited
    assert sleeps.calls == [2, 2, 5]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        YFinanceProvider(chunk_size=0)
    with pytest.raises(ValueError):
        YFinanceProvider(download=FakeDownload()).fetch(["AAPL"], AUG_END, AUG_START)
