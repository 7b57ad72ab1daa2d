"""Daily prices from Yahoo Finance through ``yfinance.download`` (yfinance 1.7).

One ``download`` call per chunk of symbols, with ``auto_adjust=False, actions=True``
so both the raw close and the adjusted close come back, plus dividends and splits.
The wide frame yfinance returns (columns ``MultiIndex`` (``Price``, ``Ticker``), even
for one ticker; daily index of tz-naive session dates) is turned into the long
``BAR_COLUMNS`` / ``ACTION_COLUMNS`` frames of :mod:`core.providers.base`.

How yfinance 1.7 fails, and what this provider does about it (PLATFORM.md):

* A failed or delisted ticker does not raise: its columns come back all-NaN (only
  the six price columns, no ``Dividends`` / ``Stock Splits``) and yfinance logs one
  error line per reason, ``"['SYM', ...]: <exception repr>"``. Such a symbol goes
  to ``FetchResult.errors`` as ``no_data``; if yfinance logged an exception other
  than "possibly delisted" for it, as ``provider_error`` with that message.
* Rate limiting (HTTP 429, ``yfinance.exceptions.YFRateLimitError``) is caught by
  ``download`` per ticker and only *logged*; an injected or future ``download`` may
  raise it instead. Both are handled: the provider listens to the ``yfinance``
  logger (records of its own thread only) while it calls ``download``, and retries
  the rate-limited symbols of the chunk after ``sleep(backoff_seconds[i])``, up to
  ``max_retries`` times. Then, if the chunk got no bars at all, ``RateLimitError``
  is raised; otherwise the still-limited symbols get a ``provider_error``.
  (Setting the ``yfinance`` logger above ERROR hides log-only rate limits.)
* Any other exception from ``download`` raises ``ProviderError`` carrying the
  original message.

One raising chunk makes the whole ``fetch`` raise: the bars of the chunks already
done are dropped. The flow maps one task per chunk of a few hundred symbols, so a
``fetch`` is one chunk in practice, and a ``FallbackProvider`` (or the task's own
retries) fetches that chunk again; returning half a chunk as success would hide
the failure of the other half.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager, suppress
from datetime import date, timedelta
from typing import Any

import numpy as np
import pandas as pd

from core.providers.base import (
    ACTION_COLUMNS,
    BAR_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    ProviderError,
    RateLimitError,
    empty_actions,
    empty_bars,
    served_by,
)

logger = logging.getLogger(__name__)

NO_DATA = "no_data: yfinance returned no rows (possibly delisted or unknown symbol)"
"""Error of a symbol whose columns are all NaN in the requested range."""

NO_COLUMN = "no_data: yfinance returned no column for this symbol"
"""Error of a requested symbol absent from the frame's ``Ticker`` level."""

PRICE_FIELDS: dict[str, str] = {
    "Open": "open",
    "High": "high",
    "Low": "low",
    "Close": "close",
    "Adj Close": "adj_close",
    "Volume": "volume",
}
"""yfinance ``Price`` level value → ``BAR_COLUMNS`` name."""

ACTION_FIELDS: dict[str, str] = {"Stock Splits": "split", "Dividends": "dividend"}
"""yfinance ``Price`` level value → ``ACTION_COLUMNS`` kind."""

PROFILE_FIELDS: dict[str, str] = {
    "sector": "sector",
    "industry": "industry",
    "market_cap": "marketCap",
    "pe_ratio": "trailingPE",
    "provider_beta": "beta",
    "week52_high": "fiftyTwoWeekHigh",
    "week52_low": "fiftyTwoWeekLow",
}
"""``PROFILE_COLUMNS`` name → key of ``yfinance.Ticker(symbol).info`` (``name`` is
``longName``, else ``shortName``)."""

_YF_LOGGER = "yfinance"
_LOG_LINE = re.compile(r"^\s*\[(?P<tickers>[^\]]*)\]:\s*(?P<reason>.*)$", re.DOTALL)
_RATE_LIMIT_MARKERS = ("YFRateLimitError", "Rate limited", "Too Many Requests")
_NO_DATA_MARKERS = (
    "possibly delisted",
    "no price data found",
    "no timezone found",
    "YFPricesMissingError",
    "YFTzMissingError",
    "YFTickerMissingError",
)


def _default_download(**kwargs: Any) -> pd.DataFrame:
    import yfinance  # lazy: importing yfinance costs ~0.5 s

    return yfinance.download(**kwargs)


def _default_ticker_info(symbol: str) -> dict[str, Any]:
    import yfinance

    return dict(yfinance.Ticker(symbol).info or {})


def _rate_limit_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "rate limited": yfinance's and our own."""
    try:
        from yfinance.exceptions import YFRateLimitError
    except ImportError:  # pragma: no cover - yfinance is a dependency
        return (RateLimitError,)
    return (YFRateLimitError, RateLimitError)


def _is_rate_limit(reason: str) -> bool:
    return any(m in reason for m in _RATE_LIMIT_MARKERS)


class _ThreadErrorLog(logging.Handler):
    """Collects ERROR records of one thread from the ``yfinance`` logger."""

    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.thread_id = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread_id:
            # a malformed record must not break the fetch
            with suppress(Exception):
                self.messages.append(record.getMessage())

    def by_ticker(self) -> dict[str, str]:
        """Upper-case ticker → yfinance's logged reason (``"['A', 'B']: reason"`` lines)."""
        out: dict[str, str] = {}
        for message in self.messages:
            match = _LOG_LINE.match(message)
            if match is None:
                continue
            reason = match["reason"].strip()
            for ticker in re.findall(r"'([^']*)'", match["tickers"]):
                out[ticker.upper()] = reason
        return out


@contextmanager
def _yfinance_errors() -> Iterator[_ThreadErrorLog]:
    handler = _ThreadErrorLog()
    yf_logger = logging.getLogger(_YF_LOGGER)
    yf_logger.addHandler(handler)
    try:
        yield handler
    finally:
        yf_logger.removeHandler(handler)


def _unique(symbols: Sequence[str]) -> list[str]:
    return list(dict.fromkeys(symbols))


def _session_index(index: pd.Index) -> pd.DatetimeIndex:
    """Frame index → tz-naive midnight ``datetime64[ns]`` session labels."""
    idx = pd.DatetimeIndex(pd.to_datetime(index))
    if idx.tz is not None:
        idx = idx.tz_localize(None)  # keep the exchange-local wall date
    return idx.normalize().as_unit("ns")


def _levels(frame: pd.DataFrame) -> tuple[int, int]:
    """Positions of the (price, ticker) levels of the column MultiIndex."""
    columns = frame.columns
    if not isinstance(columns, pd.MultiIndex) or columns.nlevels != 2:
        raise ProviderError(
            "yfinance frame has no (Price, Ticker) column MultiIndex; "
            "download must be called with multi_level_index=True"
        )
    names = list(columns.names)
    if "Price" in names and "Ticker" in names:
        return names.index("Price"), names.index("Ticker")
    # unnamed levels: the price level is the one holding "Close"
    price = 0 if "Close" in columns.get_level_values(0) else 1
    return price, 1 - price


def parse_download(
    frame: pd.DataFrame | None,
    symbols: Sequence[str],
    start: date,
    end: date,
    logged: dict[str, str] | None = None,
) -> FetchResult:
    """Convert one ``yfinance.download`` frame to long bars, actions and errors.

    ``frame``: yfinance 1.7 output of ``auto_adjust=False, actions=True`` with
    ``MultiIndex`` columns (``Price``, ``Ticker``), either order; index of session
    dates (tz-aware is converted to the exchange-local date). ``symbols``: the
    requested symbols; a frame column matches a symbol exactly or upper-cased
    (yfinance upper-cases tickers), and results use the requested spelling.
    Only rows with ``start <= date <= end`` are kept; rows where a symbol's six
    price fields are all NaN are dropped for that symbol. A symbol left with no row
    gets an error: ``no_data`` (``NO_DATA``), or ``provider_error`` when ``logged``
    (upper-case ticker → yfinance's logged reason) names an exception other than a
    missing-data one. Actions: non-zero ``Stock Splits`` (ratio, new shares per old)
    and ``Dividends`` (cash per share) in the range. Raises ``ProviderError`` when
    the frame has rows but no ``Adj Close`` (``auto_adjust=True`` data, whose
    ``Close`` is already adjusted) or no ``(Price, Ticker)`` columns.
    """
    symbols = _unique(symbols)
    logged = logged or {}
    result = FetchResult(provider=YFinanceProvider.name)
    if frame is None or frame.shape[0] == 0 or frame.shape[1] == 0:
        result.errors = {s: _no_rows_error(s, logged) for s in symbols}
        return result

    price_level, ticker_level = _levels(frame)
    prices = set(frame.columns.get_level_values(price_level))
    if "Adj Close" not in prices:
        raise ProviderError(
            "yfinance frame has no 'Adj Close' column: it was downloaded with "
            "auto_adjust=True, whose Close is adjusted; raw and adjusted closes are both "
            "required (download with auto_adjust=False, actions=True)"
        )
    if "Close" not in prices:
        raise ProviderError("yfinance frame has no 'Close' column")

    dates = _session_index(frame.index)
    in_range = np.asarray(
        (dates >= pd.Timestamp(start)) & (dates <= pd.Timestamp(end)), dtype=bool
    )
    tickers = set(frame.columns.get_level_values(ticker_level))
    columns = [s if s in tickers else s.upper() for s in symbols]

    def wide(field: str) -> np.ndarray:  # shape: (T, K), NaN where the column is absent
        if field not in prices:
            return np.full((len(dates), len(columns)), np.nan)
        part = frame.xs(field, axis=1, level=price_level)
        part = part.reindex(columns=columns)
        return part.to_numpy(dtype="float64", na_value=np.nan)

    values = {name: wide(field) for field, name in PRICE_FIELDS.items()}
    has_row = ~np.all(np.stack([np.isnan(v) for v in values.values()]), axis=0)
    keep = has_row & in_range[:, None]  # shape: (T, K)

    # symbol-major long layout: transpose so ravel walks one symbol's dates in order
    keep_flat = keep.T.ravel()
    sym_arr = np.asarray(symbols, dtype=object)
    date_arr = dates.to_numpy()
    t_count = len(dates)
    bars = pd.DataFrame(
        {
            "symbol": pd.Series(np.repeat(sym_arr, t_count)[keep_flat], dtype=object),
            "date": pd.Series(np.tile(date_arr, len(symbols))[keep_flat]).astype(
                "datetime64[ns]"
            ),
            **{name: values[name].T.ravel()[keep_flat] for name in BAR_COLUMNS[2:]},
        },
        columns=list(BAR_COLUMNS),
    )
    result.bars = bars.reset_index(drop=True) if len(bars) else empty_bars()

    action_parts = []
    for field, kind in ACTION_FIELDS.items():
        vals = wide(field)
        mask = (np.nan_to_num(vals, nan=0.0) != 0) & in_range[:, None]
        if not mask.any():
            continue
        flat = mask.T.ravel()
        action_parts.append(
            pd.DataFrame(
                {
                    "symbol": pd.Series(np.repeat(sym_arr, t_count)[flat], dtype=object),
                    "date": pd.Series(np.tile(date_arr, len(symbols))[flat]).astype(
                        "datetime64[ns]"
                    ),
                    "kind": pd.Series([kind] * int(flat.sum()), dtype=object),
                    "value": vals.T.ravel()[flat],
                },
                columns=list(ACTION_COLUMNS),
            )
        )
    if action_parts:
        actions = pd.concat(action_parts, ignore_index=True)
        result.actions = actions.sort_values(["symbol", "date", "kind"], ignore_index=True)

    result.provider_by_symbol = served_by(result.bars, YFinanceProvider.name)
    got_rows = keep.any(axis=0)
    result.errors = {
        s: _no_rows_error(s, logged, in_frame=c in tickers)
        for s, c, ok in zip(symbols, columns, got_rows, strict=True)
        if not ok
    }
    return result


def _parse_or_raise(
    frame: pd.DataFrame, symbols: list[str], start: date, end: date, logged: dict[str, str]
) -> FetchResult:
    try:
        return parse_download(frame, symbols, start, end, logged)
    except ProviderError:
        raise
    except (ValueError, TypeError, KeyError, AttributeError) as exc:
        raise ProviderError(f"unreadable yfinance frame: {type(exc).__name__}: {exc}") from exc


def _no_rows_error(symbol: str, logged: dict[str, str], in_frame: bool = True) -> str:
    reason = logged.get(symbol.upper())
    if reason is not None and not any(m in reason for m in _NO_DATA_MARKERS):
        return f"provider_error: yfinance: {reason}"
    return NO_DATA if in_frame else NO_COLUMN


def _concat(frames: list[pd.DataFrame], empty: Callable[[], pd.DataFrame]) -> pd.DataFrame:
    frames = [f for f in frames if len(f)]
    if not frames:
        return empty()
    return pd.concat(frames, ignore_index=True)


class YFinanceProvider:
    """``PriceProvider`` over ``yfinance.download`` (see the module docstring).

    ``download``: a callable with ``yfinance.download``'s keyword signature
    (default: ``yfinance.download``, imported on first use); tests inject one that
    returns recorded frames. ``chunk_size``: symbols per ``download`` call.
    ``max_retries``: retries of a rate-limited chunk, after sleeping
    ``backoff_seconds[i]`` seconds (the last value repeats when there are more
    retries than values). ``sleep``: injected for tests. ``ticker_info``:
    ``symbol -> info dict`` (default ``yfinance.Ticker(symbol).info``).
    """

    name = "yfinance"

    def __init__(
        self,
        download: Callable[..., pd.DataFrame] | None = None,
        chunk_size: int = 200,
        max_retries: int = 3,
        backoff_seconds: Sequence[float] = (2, 5, 15),
        sleep: Callable[[float], None] = time.sleep,
        ticker_info: Callable[[str], dict[str, Any]] | None = None,
    ) -> None:
        if chunk_size < 1:
            raise ValueError(f"chunk_size must be >= 1, got {chunk_size}")
        if max_retries < 0:
            raise ValueError(f"max_retries must be >= 0, got {max_retries}")
        if max_retries > 0 and not backoff_seconds:
            raise ValueError("backoff_seconds must not be empty when max_retries > 0")
        self._download = download or _default_download
        self.chunk_size = chunk_size
        self.max_retries = max_retries
        self.backoff_seconds = tuple(float(s) for s in backoff_seconds)
        self._sleep = sleep
        self._ticker_info = ticker_info or _default_ticker_info

    def _backoff(self, retry: int) -> float:
        return self.backoff_seconds[min(retry, len(self.backoff_seconds) - 1)]

    def fetch(self, symbols: Sequence[str], start: date, end: date) -> FetchResult:
        """Daily bars with ``start <= date <= end`` (inclusive session dates) for ``symbols``.

        Bars are ``BAR_COLUMNS`` (raw ``close`` and split/dividend ``adj_close`` as
        Yahoo adjusts them today), actions ``ACTION_COLUMNS``; a symbol without rows
        is in ``errors``. Raises ``RateLimitError`` when a chunk stays rate-limited
        after the retries and ``ProviderError`` for any other failed ``download``.
        """
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        symbols = _unique(symbols)
        bars: list[pd.DataFrame] = []
        actions: list[pd.DataFrame] = []
        errors: dict[str, str] = {}
        for i in range(0, len(symbols), self.chunk_size):
            part = self._fetch_chunk(symbols[i : i + self.chunk_size], start, end)
            bars.append(part.bars)
            actions.append(part.actions)
            errors.update(part.errors)
        all_bars = _concat(bars, empty_bars)
        return FetchResult(
            bars=all_bars,
            actions=_concat(actions, empty_actions),
            errors=errors,
            provider=self.name,
            provider_by_symbol=served_by(all_bars, self.name),
        )

    def _call_download(
        self, symbols: list[str], start: date, end: date
    ) -> tuple[pd.DataFrame, dict[str, str]]:
        with _yfinance_errors() as log:
            frame = self._download(
                tickers=list(symbols),
                start=start,
                end=end + timedelta(days=1),  # yfinance's end is exclusive
                auto_adjust=False,
                actions=True,
                group_by="column",
                threads=True,
                multi_level_index=True,
                progress=False,
                interval="1d",
            )
        return frame, log.by_ticker()

    def _fetch_chunk(self, chunk: list[str], start: date, end: date) -> FetchResult:
        rate_limited = _rate_limit_errors()
        pending = list(chunk)
        parts: list[FetchResult] = []
        retry = 0
        while True:
            try:
                frame, logged = self._call_download(pending, start, end)
            except rate_limited:
                limited = set(pending)
            except Exception as exc:
                raise ProviderError(
                    f"yfinance download of {len(pending)} symbols ({pending[0]}…) failed: "
                    f"{type(exc).__name__}: {exc}"
                ) from exc
            else:
                part = _parse_or_raise(frame, pending, start, end, logged)
                limited = {
                    s for s in part.errors if _is_rate_limit(logged.get(s.upper(), ""))
                }
                part.errors = {s: e for s, e in part.errors.items() if s not in limited}
                parts.append(part)
            if not limited:
                break
            if retry >= self.max_retries:
                if not any(len(p.bars) for p in parts):
                    raise RateLimitError(
                        f"yfinance kept rate-limiting {len(limited)} of {len(chunk)} symbols "
                        f"after {self.max_retries} retries"
                    )
                parts.append(
                    FetchResult(
                        errors={
                            s: "provider_error: rate limited by Yahoo "
                            f"(YFRateLimitError) after {self.max_retries} retries"
                            for s in pending
                            if s in limited
                        }
                    )
                )
                break
            wait = self._backoff(retry)
            logger.warning(
                "yfinance rate-limited %d symbols; retry %d/%d in %.0f s",
                len(limited), retry + 1, self.max_retries, wait,
            )
            self._sleep(wait)
            retry += 1
            pending = [s for s in pending if s in limited]
        errors: dict[str, str] = {}
        for p in parts:
            errors.update(p.errors)
        bars = _concat([p.bars for p in parts], empty_bars)
        return FetchResult(
            bars=bars,
            actions=_concat([p.actions for p in parts], empty_actions),
            errors=errors,
            provider=self.name,
            provider_by_symbol=served_by(bars, self.name),
        )

    def fetch_profiles(self, symbols: Sequence[str]) -> pd.DataFrame:
        """One ``PROFILE_COLUMNS`` row per symbol from ``ticker_info`` (Yahoo's ``info``).

        ``market_cap`` in the listing currency, ``pe_ratio`` trailing P/E,
        ``provider_beta`` Yahoo's beta, 52-week high/low as prices; missing or
        non-finite values are None (object dtype, so None is not turned into NaN).
        A symbol whose call raises gets a row of None (never raises); a rate limit is
        retried with the same backoff, and when it persists the remaining symbols get
        None rows without further calls.
        """
        rate_limited = _rate_limit_errors()
        rows: list[dict[str, Any]] = []
        give_up = False
        for symbol in _unique(symbols):
            info: dict[str, Any] = {}
            retry = 0
            while not give_up:
                try:
                    info = dict(self._ticker_info(symbol) or {})
                    break
                except rate_limited:
                    if retry >= self.max_retries:
                        logger.warning("yfinance info rate-limited; skipping remaining profiles")
                        give_up = True
                        break
                    self._sleep(self._backoff(retry))
                    retry += 1
                except Exception as exc:
                    logger.warning("yfinance info for %s failed: %s", symbol, exc)
                    break
            rows.append(_profile_row(symbol, info))
        # object dtype keeps None (→ SQL NULL) instead of pandas' NaN
        return pd.DataFrame(rows, columns=list(PROFILE_COLUMNS), dtype=object)


def _profile_row(symbol: str, info: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"symbol": symbol, "name": info.get("longName") or info.get("shortName")}
    for column, key in PROFILE_FIELDS.items():
        value = info.get(key)
        if column in ("sector", "industry"):
            row[column] = value if isinstance(value, str) and value else None
        else:
            row[column] = _number(value)
    return row


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or value is None:
        return None
    try:
        out = float(value)
    except (TypeError, ValueError):
        return None
    return out if np.isfinite(out) else None
