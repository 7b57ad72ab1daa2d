"""Data checks on daily prices: what may be stored, and what may feed the factors.

Pure functions on numpy / pandas, no I/O.

* :func:`validate_bars` runs on freshly fetched long bars (``BAR_COLUMNS``) before
  the upsert. It drops rows that must never be stored and repairs what can be
  repaired in place; every finding is a *warning* (the bad data never reaches the
  store, so nothing stored is overwritten with worse data).
* :func:`check_series` runs on the stored raw closes of a window of sessions and
  flags series the factor engine must not use; its *errors* become
  :func:`blocking_reasons`, which the engine stores as ``"data_check: <reason>"``
  instead of a beta.

Findings are aggregated per (symbol, check): one ``Finding`` gives the first
offending date and, in ``detail``, how many rows or days were affected. Their number
is therefore bounded by symbols × checks, whatever the number of bad rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Literal

import numpy as np
import pandas as pd

from core.calendar import session_count_between, session_positions
from core.providers.base import BAR_COLUMNS, PriceDataError

Severity = Literal["warning", "error"]

OHLC_TOLERANCE = 0.01
"""Relative slack before an open or close outside ``[low, high]`` counts as inconsistent
(vendor data rounds and occasionally prints a close a cent outside the range)."""

CHECK_ORDER: tuple[str, ...] = (
    "missing_price",
    "non_positive_price",
    "duplicate_row",
    "inconsistent_ohlc",
    "gaps",
    "unexplained_jump",
    "stale",
)
"""Every check name, in the order findings of one symbol are listed."""


@dataclass(frozen=True)
class Finding:
    """One data-check result for one symbol.

    ``check`` is one of ``CHECK_ORDER``; ``severity`` ``"warning"`` (informational, or the
    row was already dropped/repaired) or ``"error"`` (the series must not feed the
    factors); ``day`` the first affected session (None when not tied to a date);
    ``detail`` a human sentence with the numbers.
    """

    symbol: str
    check: str
    severity: Severity
    day: date | None
    detail: str


def format_value(x: float) -> str:
    """A price for a message: up to 6 decimals, ``0.0`` style, ``NaN``/``inf`` as such."""
    if not np.isfinite(x):
        return str(float(x)).replace("nan", "NaN")
    return np.format_float_positional(float(x), precision=6, unique=True, trim="0")


def _day(value: np.datetime64) -> date:
    return pd.Timestamp(value).date()


def _rows(n: int) -> str:
    return "1 row" if n == 1 else f"{n} rows"


# --------------------------------------------------------------------------- bars


def validate_bars(bars: pd.DataFrame) -> tuple[pd.DataFrame, list[Finding]]:
    """Clean freshly fetched long bars before they are stored.

    ``bars``: ``BAR_COLUMNS`` frame (prices float64 in the listing currency, ``date``
    datetime64 session labels). It is not modified. Returns the clean frame (same
    columns and dtypes, fresh ``RangeIndex``, input order kept) and warnings:

    * ``missing_price``: ``close`` or ``adj_close`` NaN/inf → row dropped.
    * ``non_positive_price``: ``close`` or ``adj_close`` ≤ 0 → row dropped.
    * ``duplicate_row``: several valid rows for one (symbol, date) → the last one is
      kept. Invalid rows are dropped first, so a bad late duplicate never replaces a
      good earlier one.
    * ``inconsistent_ohlc``: the row is kept (its close is fine) and only the bad
      fields become NaN: an ``open``/``high``/``low`` ≤ 0 or inf; ``high < low`` or a
      close outside ``[low, high]`` (beyond ``OHLC_TOLERANCE``) → ``high`` and ``low``
      NaN; an open outside the (remaining) ``[low, high]`` → ``open`` NaN. NaN
      open/high/low are left as they are without a finding (missing, not wrong).

    Raises ``PriceDataError`` when a column of ``BAR_COLUMNS`` is missing or a
    ``date`` is missing.
    Vectorized: about 0.5 s for 2.5 million rows.
    """
    missing_cols = [c for c in BAR_COLUMNS if c not in bars.columns]
    if missing_cols:
        raise PriceDataError(f"bars lack columns {missing_cols}")
    if len(bars) == 0:
        return bars.reset_index(drop=True).copy(), []

    symbols = bars["symbol"].to_numpy()
    dates = pd.to_datetime(bars["date"]).to_numpy(dtype="datetime64[ns]")
    if np.isnat(dates).any():
        raise PriceDataError(f"bars have {int(np.isnat(dates).sum())} rows without a date")
    close = bars["close"].to_numpy(dtype="float64", na_value=np.nan)
    adj = bars["adj_close"].to_numpy(dtype="float64", na_value=np.nan)

    missing = ~(np.isfinite(close) & np.isfinite(adj))
    with np.errstate(invalid="ignore"):
        non_positive = ~missing & ((close <= 0) | (adj <= 0))
    valid = ~(missing | non_positive)
    dup = _duplicates(symbols, dates, valid)
    keep = valid & ~dup
    ohlc = _repair_ohlc(bars, keep, close[keep])

    # copy-on-write (pandas 3): without dropped rows this shares the input's data
    clean = (bars if keep.all() else bars.loc[keep]).reset_index(drop=True)
    if ohlc.inconsistent.any():
        clean["open"] = ohlc.open.astype(clean["open"].dtype, copy=False)
        clean["high"] = ohlc.high.astype(clean["high"].dtype, copy=False)
        clean["low"] = ohlc.low.astype(clean["low"].dtype, copy=False)

    findings = _dropped_row_findings(symbols, dates, close, adj, missing, non_positive, dup)
    findings += _ohlc_findings(symbols[keep], dates[keep], ohlc)
    findings.sort(key=lambda f: (f.symbol, CHECK_ORDER.index(f.check)))
    return clean, findings


def _duplicates(symbols: np.ndarray, dates: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Valid rows repeated by a later valid row of the same (symbol, date): all but the last."""
    codes, _ = pd.factorize(symbols)
    days = dates.astype("datetime64[D]").astype(np.int64)
    key = codes.astype(np.int64) * 1_000_000 + (days - days.min())
    dup = np.zeros(len(symbols), dtype=bool)
    dup[valid] = pd.Series(key[valid]).duplicated(keep="last").to_numpy()
    return dup


@dataclass(frozen=True)
class _OhlcRepair:
    """Open/high/low of the kept rows after repair, what was wrong, and the values before.

    Every array has one entry per kept row; ``open``/``high``/``low`` are the repaired
    values (bad fields NaN), the ``bad_*`` masks say which check failed, ``*_before`` hold
    the values the messages quote, ``close`` the kept closes.
    """

    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    bad_open_value: np.ndarray
    bad_high_value: np.ndarray
    bad_low_value: np.ndarray
    bad_range: np.ndarray
    bad_open: np.ndarray
    open_before: np.ndarray
    high_before: np.ndarray
    low_before: np.ndarray

    @property
    def inconsistent(self) -> np.ndarray:
        """Kept rows with at least one field set to NaN."""
        return (self.bad_open_value | self.bad_high_value | self.bad_low_value
                | self.bad_range | self.bad_open)


def _repair_ohlc(bars: pd.DataFrame, keep: np.ndarray, c: np.ndarray) -> _OhlcRepair:
    """Set the bad open/high/low of the kept rows to NaN (see :func:`validate_bars`)."""
    o = bars["open"].to_numpy(dtype="float64", na_value=np.nan)[keep].copy()
    h = bars["high"].to_numpy(dtype="float64", na_value=np.nan)[keep].copy()
    lo = bars["low"].to_numpy(dtype="float64", na_value=np.nan)[keep].copy()
    with np.errstate(invalid="ignore"):
        bad_o = np.isinf(o) | (o <= 0)
        bad_h = np.isinf(h) | (h <= 0)
        bad_l = np.isinf(lo) | (lo <= 0)
        o[bad_o], h[bad_h], lo[bad_l] = np.nan, np.nan, np.nan
        up, down = 1 + OHLC_TOLERANCE, 1 - OHLC_TOLERANCE
        bad_range = (h < lo) | (c > h * up) | (c < lo * down)
        h_old, l_old = h.copy(), lo.copy()
        h[bad_range], lo[bad_range] = np.nan, np.nan
        bad_open = (o > h * up) | (o < lo * down)
        o_old = o.copy()
        o[bad_open] = np.nan
    return _OhlcRepair(o, h, lo, c, bad_o, bad_h, bad_l, bad_range, bad_open,
                       o_old, h_old, l_old)


def _dropped_row_findings(
    symbols: np.ndarray, dates: np.ndarray, close: np.ndarray, adj: np.ndarray,
    missing: np.ndarray, non_positive: np.ndarray, dup: np.ndarray,
) -> list[Finding]:
    """One warning per symbol and check for the rows not stored (missing, ≤ 0, duplicate)."""
    findings: list[Finding] = []
    for check, mask, describe in (
        ("missing_price", missing, _missing_detail),
        ("non_positive_price", non_positive, _non_positive_detail),
        ("duplicate_row", dup, _duplicate_detail),
    ):
        rows = np.flatnonzero(mask)
        for sym, first, count in _first_per_symbol(symbols[rows], dates[rows]):
            i = rows[first]
            findings.append(
                Finding(str(sym), check, "warning", _day(dates[i]),
                        describe(close[i], adj[i], _day(dates[i]), count))
            )
    return findings


def _ohlc_findings(
    kept_symbols: np.ndarray, kept_dates: np.ndarray, ohlc: _OhlcRepair
) -> list[Finding]:
    """One ``inconsistent_ohlc`` warning per symbol whose kept rows were repaired."""
    findings: list[Finding] = []
    inconsistent = ohlc.inconsistent
    if not inconsistent.any():
        return findings
    rows = np.flatnonzero(inconsistent)
    for sym, first, count in _first_per_symbol(kept_symbols[rows], kept_dates[rows]):
        i = rows[first]
        what = _ohlc_problem(
            bool(ohlc.bad_open_value[i]), bool(ohlc.bad_high_value[i]),
            bool(ohlc.bad_low_value[i]), bool(ohlc.bad_range[i]), bool(ohlc.bad_open[i]),
            ohlc.open_before[i], ohlc.high_before[i], ohlc.low_before[i], ohlc.close[i],
        )
        day = _day(kept_dates[i])
        more = "" if count == 1 else f" ({count} rows affected)"
        findings.append(
            Finding(str(sym), "inconsistent_ohlc", "warning", day,
                    f"{what} on {day}{more}; bad fields set to NaN, close kept")
        )
    return findings


def _first_per_symbol(
    symbols: np.ndarray, dates: np.ndarray
) -> Iterable[tuple[object, int, int]]:
    """(symbol, position of its earliest date, count) over flagged rows, by symbol."""
    if len(symbols) == 0:
        return []
    codes, uniques = pd.factorize(symbols)
    order = np.lexsort((dates, codes))
    sorted_codes = codes[order]
    starts = np.flatnonzero(np.r_[True, sorted_codes[1:] != sorted_codes[:-1]])
    counts = np.diff(np.r_[starts, len(order)])
    return [
        (uniques[sorted_codes[s]], int(order[s]), int(k))
        for s, k in zip(starts, counts, strict=True)
    ]


def _missing_detail(close: float, adj: float, day: date, count: int) -> str:
    field = "close" if not np.isfinite(close) else "adj_close"
    first = f"{field} {format_value(close if field == 'close' else adj)} on {day} is missing"
    if count == 1:
        return f"{first}; row not stored"
    return f"{count} rows lack a close or adj_close, first: {first}; rows not stored"


def _non_positive_detail(close: float, adj: float, day: date, count: int) -> str:
    field, value = ("close", close) if close <= 0 else ("adj_close", adj)
    first = f"{field} {format_value(value)} on {day} is not positive"
    if count == 1:
        return f"{first}; row not stored"
    return f"{count} rows with a non-positive close or adj_close, first: {first}; rows not stored"


def _duplicate_detail(close: float, adj: float, day: date, count: int) -> str:
    return (
        f"{_rows(count)} repeated an earlier (symbol, date), first on {day}; "
        "kept the last row of each"
    )


def _ohlc_problem(
    bad_o: bool, bad_h: bool, bad_l: bool, bad_range: bool, bad_open: bool,
    o: float, h: float, lo: float, c: float,
) -> str:
    parts = []
    if bad_o or bad_h or bad_l:
        names = [n for n, b in (("open", bad_o), ("high", bad_h), ("low", bad_l)) if b]
        parts.append(f"{'/'.join(names)} not a positive number")
    if bad_range:
        if h < lo:
            parts.append(f"high {format_value(h)} < low {format_value(lo)}")
        else:
            parts.append(f"close {format_value(c)} outside "
                         f"[low {format_value(lo)}, high {format_value(h)}]")
    if bad_open:
        parts.append(f"open {format_value(o)} outside "
                     f"[low {format_value(lo)}, high {format_value(h)}]")
    return "; ".join(parts)


# --------------------------------------------------------------------------- series


def check_series(
    symbols: Sequence[str],
    sessions: Sequence[date],
    close: np.ndarray,
    split_ratio: np.ndarray,
    as_of: date,
    jump_threshold: float = 0.5,
    stale_sessions: int = 3,
) -> list[Finding]:
    """Flag stored close series that must not feed the factor engine.

    ``close``: shape (T, N), raw closes (listing currency) on ``sessions``, which are
    T consecutive NYSE sessions, ascending, the last one ≤ ``as_of`` (normally equal);
    NaN where no row is stored. ``split_ratio``: shape (T, N), 1.0 except on split
    dates (new shares per old, 4.0 for a 4-for-1; NaN or ≤ 0 is read as 1.0).
    Checks, each at most one ``Finding`` per symbol (first date + count in detail):

    * ``gaps`` (warning): sessions without a stored close between the symbol's
      first and last stored close in the window (NYSE holidays are not sessions,
      so they are never gaps).
    * ``unexplained_jump`` (error): ``|close_t · s / close_p − 1| > jump_threshold``
      where ``close_p`` is the previous positive close (across a gap) and ``s`` the
      product of the split ratios of the sessions in ``(p, t]``. A split explains
      the raw move; a −25 % crash day stays under the default 0.5.
    * ``stale`` (error): the last stored close is more than ``stale_sessions``
      sessions before ``as_of`` (or there is none in the window).
    * ``non_positive_price`` (error): a stored close ≤ 0 (such rows are also left
      out of the jump check).

    Raises ``ValueError`` on inconsistent shapes or sessions that are not
    consecutive NYSE sessions. Vectorized over symbols and sessions.
    """
    n_sym = len(symbols)
    t_len = len(sessions)
    close = np.asarray(close, dtype="float64")
    split_ratio = np.asarray(split_ratio, dtype="float64")
    _check_series_arguments(close, split_ratio, t_len, n_sym, jump_threshold, stale_sessions)
    if n_sym == 0:
        return []
    if t_len == 0:
        return [
            Finding(str(s), "stale", "error", None, f"no stored close in the window ending {as_of}")
            for s in symbols
        ]
    _check_window_sessions(sessions, as_of)
    scan = _scan_series(close, split_ratio, sessions, as_of, jump_threshold, stale_sessions)
    findings: list[Finding] = []
    for j in np.flatnonzero(scan.flagged).tolist():
        findings += _symbol_series_findings(
            str(symbols[j]), j, scan, close, sessions, as_of, jump_threshold, stale_sessions
        )
    return findings


def _check_series_arguments(
    close: np.ndarray, split_ratio: np.ndarray, t_len: int, n_sym: int,
    jump_threshold: float, stale_sessions: int,
) -> None:
    """Raise ``ValueError`` on misshaped arrays or a threshold out of range."""
    if close.shape != (t_len, n_sym) or split_ratio.shape != (t_len, n_sym):
        raise ValueError(
            f"close {close.shape} and split_ratio {split_ratio.shape} must both be "
            f"(len(sessions), len(symbols)) = ({t_len}, {n_sym})"
        )
    if jump_threshold <= 0:
        raise ValueError(f"jump_threshold must be > 0, got {jump_threshold}")
    if stale_sessions < 0:
        raise ValueError(f"stale_sessions must be >= 0, got {stale_sessions}")


def _check_window_sessions(sessions: Sequence[date], as_of: date) -> None:
    """Raise ``ValueError`` unless ``sessions`` are consecutive NYSE sessions ending ≤ as_of."""
    pos = session_positions(list(sessions))
    if (pos < 0).any() or (np.diff(pos) != 1).any():
        raise ValueError("sessions must be consecutive NYSE sessions in ascending order")
    if sessions[-1] > as_of:
        raise ValueError(f"last session {sessions[-1]} is after as_of {as_of}")


@dataclass(frozen=True)
class _SeriesScan:
    """Results of the series checks over all symbols (see :func:`check_series`).

    (N,) arrays: ``any_stored``, ``first``/``last`` step of a stored close, ``gap_count``
    and ``first_gap``, ``jump_count`` and ``first_jump``, ``lag`` (sessions from the last
    stored close to as_of) and ``stale``, ``np_count`` and ``first_np`` (non-positive
    closes). (T, N) arrays from :func:`_jumps`: ``prev``, ``move``, ``split_since``.
    """

    any_stored: np.ndarray
    first: np.ndarray
    last: np.ndarray
    gap_count: np.ndarray
    first_gap: np.ndarray
    jump_count: np.ndarray
    first_jump: np.ndarray
    prev: np.ndarray
    move: np.ndarray
    split_since: np.ndarray
    lag: np.ndarray
    stale: np.ndarray
    np_count: np.ndarray
    first_np: np.ndarray

    @property
    def flagged(self) -> np.ndarray:
        """(N,) bool: symbols with at least one finding."""
        return ((self.gap_count > 0) | (self.jump_count > 0) | self.stale
                | (self.np_count > 0))


def _scan_series(
    close: np.ndarray, split_ratio: np.ndarray, sessions: Sequence[date], as_of: date,
    jump_threshold: float, stale_sessions: int,
) -> _SeriesScan:
    """Run every series check on (T, N) closes at once."""
    t_len = len(sessions)
    steps = np.arange(t_len)[:, None]  # shape: (T, 1)
    stored = np.isfinite(close)  # shape: (T, N)
    with np.errstate(invalid="ignore"):
        positive = stored & (close > 0)
    non_positive = stored & ~positive
    any_stored = stored.any(axis=0)  # shape: (N,)
    first = np.argmax(stored, axis=0)
    last = t_len - 1 - np.argmax(stored[::-1], axis=0)

    # gaps: unstored sessions strictly inside [first, last]
    inside = (steps >= first) & (steps <= last) & ~stored & any_stored

    # jumps: compare to the previous positive close, compounding splits in between
    jump, prev, move, split_since = _jumps(close, split_ratio, jump_threshold)

    # stale: sessions from the last stored close to as_of
    tail = session_count_between(sessions[-1], as_of)
    lag = (t_len - 1 - last) + tail
    return _SeriesScan(
        any_stored=any_stored, first=first, last=last,
        gap_count=inside.sum(axis=0), first_gap=np.argmax(inside, axis=0),
        jump_count=jump.sum(axis=0), first_jump=np.argmax(jump, axis=0),
        prev=prev, move=move, split_since=split_since,
        lag=lag, stale=~any_stored | (lag > stale_sessions),
        np_count=non_positive.sum(axis=0), first_np=np.argmax(non_positive, axis=0),
    )


def _symbol_series_findings(
    sym: str, j: int, scan: _SeriesScan, close: np.ndarray, sessions: Sequence[date],
    as_of: date, jump_threshold: float, stale_sessions: int,
) -> list[Finding]:
    """The findings of symbol column ``j``, in ``CHECK_ORDER``."""
    findings: list[Finding] = []
    if scan.np_count[j]:
        t = int(scan.first_np[j])
        more = "" if scan.np_count[j] == 1 else f" ({scan.np_count[j]} sessions)"
        findings.append(Finding(
            sym, "non_positive_price", "error", sessions[t],
            f"stored close {format_value(close[t, j])} on {sessions[t]} is not positive{more}",
        ))
    if scan.gap_count[j]:
        t = int(scan.first_gap[j])
        first, last = scan.first[j], scan.last[j]
        findings.append(Finding(
            sym, "gaps", "warning", sessions[t],
            f"{scan.gap_count[j]} of {last - first + 1} sessions between "
            f"{sessions[int(first)]} and {sessions[int(last)]} have no close, "
            f"first missing {sessions[t]}",
        ))
    if scan.jump_count[j]:
        findings.append(_jump_finding(sym, j, scan, close, sessions, jump_threshold))
    if scan.stale[j]:
        findings.append(_stale_finding(sym, j, scan, sessions, as_of, stale_sessions))
    return findings


def _jump_finding(
    sym: str, j: int, scan: _SeriesScan, close: np.ndarray, sessions: Sequence[date],
    jump_threshold: float,
) -> Finding:
    """The ``unexplained_jump`` error of symbol column ``j`` (its first jump, and the count)."""
    t = int(scan.first_jump[j])
    p = int(scan.prev[t, j])
    jump_count = scan.jump_count[j]
    more = "" if jump_count == 1 else f"; {jump_count} such moves in the window"
    split_note = (
        "" if scan.split_since[t, j] == 1.0
        else f" after adjusting for splits ×{scan.split_since[t, j]:g}"
    )
    return Finding(
        sym, "unexplained_jump", "error", sessions[t],
        f"close moved {scan.move[t, j]:+.1%} on {sessions[t]} "
        f"({format_value(close[p, j])} on {sessions[p]} → "
        f"{format_value(close[t, j])}){split_note}, "
        f"beyond ±{jump_threshold:.0%} and not explained by a split{more}",
    )


def _stale_finding(
    sym: str, j: int, scan: _SeriesScan, sessions: Sequence[date], as_of: date,
    stale_sessions: int,
) -> Finding:
    """The ``stale`` error of symbol column ``j``."""
    if scan.any_stored[j]:
        last = sessions[int(scan.last[j])]
        return Finding(
            sym, "stale", "error", last,
            f"last close {last} is {int(scan.lag[j])} sessions before "
            f"as_of {as_of} (allowed {stale_sessions})",
        )
    return Finding(
        sym, "stale", "error", None,
        f"no stored close in the {len(sessions)} sessions {sessions[0]} → {sessions[-1]} "
        f"(as_of {as_of})",
    )


def _jumps(
    close: np.ndarray, split_ratio: np.ndarray, jump_threshold: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Unexplained one-day moves of (T, N) raw closes (see :func:`check_series`).

    Returns ``jump`` (T, N) bool, ``prev`` (T, N) the step of the previous positive close
    (-1: none), ``move`` (T, N) the split-adjusted relative move, ``split_since`` (T, N)
    the product of split ratios in ``(prev, t]``.
    """
    t_len, n_sym = close.shape
    steps = np.arange(t_len)[:, None]
    stored = np.isfinite(close)
    with np.errstate(invalid="ignore"):
        positive = stored & (close > 0)
    ratio = np.where(np.isfinite(split_ratio) & (split_ratio > 0), split_ratio, 1.0)
    log_split = np.cumsum(np.log(ratio), axis=0)  # shape: (T, N)
    filled = np.maximum.accumulate(np.where(positive, steps, -1), axis=0)
    prev = np.vstack([np.full((1, n_sym), -1), filled[:-1]])  # previous positive step
    has_prev = positive & (prev >= 0)
    cols = np.arange(n_sym)[None, :]
    prev_safe = np.maximum(prev, 0)
    prev_close = close[prev_safe, cols]
    split_since = np.exp(log_split - log_split[prev_safe, cols])
    with np.errstate(invalid="ignore", divide="ignore"):
        move = close * split_since / prev_close - 1.0
    jump = has_prev & (np.abs(move) > jump_threshold)
    return jump, prev, move, split_since


def jump_endpoints(
    close: np.ndarray, split_ratio: np.ndarray, jump_threshold: float = 0.5
) -> np.ndarray:
    """Rows at either end of an unexplained jump: the rows that failed the jump check.

    ``close`` and ``split_ratio`` as in :func:`check_series` (T, N; NaN where no row).
    A one-day bad tick shows as a jump into it and a jump out of it, so it is flagged
    with its neighbours; which one is wrong is decided by a re-delivery
    (:func:`review_redelivery`). Returns a (T, N) bool array; non-positive closes are
    flagged too.
    """
    close = np.asarray(close, dtype="float64")
    split_ratio = np.asarray(split_ratio, dtype="float64")
    if close.size == 0:
        return np.zeros(close.shape, dtype=bool)
    jump, prev, _, _ = _jumps(close, split_ratio, jump_threshold)
    out = jump.copy()
    t_idx, j_idx = np.nonzero(jump)
    out[prev[t_idx, j_idx], j_idx] = True
    with np.errstate(invalid="ignore"):
        out |= np.isfinite(close) & (close <= 0)
    return out


def blocking_reasons(findings: Iterable[Finding]) -> dict[str, str]:
    """Symbol → one-line reason from its error-severity findings (warnings ignored).

    The factor engine stores ``"data_check: <reason>"`` instead of a beta for these
    symbols. Reasons of one symbol are ``"<check>: <detail>"`` joined by ``"; "``, in
    ``CHECK_ORDER``.
    """
    by_symbol: dict[str, list[Finding]] = {}
    for f in findings:
        if f.severity == "error":
            by_symbol.setdefault(f.symbol, []).append(f)
    out: dict[str, str] = {}
    for sym, items in by_symbol.items():
        items.sort(key=lambda f: CHECK_ORDER.index(f.check) if f.check in CHECK_ORDER else 99)
        text = "; ".join(f"{f.check}: {f.detail}" for f in items)
        out[sym] = " ".join(text.split())
    return out
