"""A seeded synthetic price provider: a factor model with known betas.

Serves demos, tests and benchmarks where no market data can be downloaded.

The model
---------
*Reference ETFs.* ``SPY TLT VTV VUG MTUM QUAL IWM USMV`` have daily simple returns
``μ/252 + σ/√252 · x`` with ``x`` from correlated latent factors: a market factor
(SPY itself), a rates factor (TLT = −0.30 · market + rates) and six correlated
style residuals (each style ETF = ρ · market + √(1−ρ²) · residual). Annual vols:
SPY 16 %, TLT 14 %, VTV 15.5 %, VUG 18 %, MTUM 17 %, QUAL 15.5 %, IWM 22 %, USMV 12 %;
correlation to SPY: TLT −0.30, style ETFs 0.85–0.95 (see ``ETF_SPECS``).

*Equities.* For any symbol shaped like a US ticker (1–5 letters, optionally a
class suffix such as ``BRK-B``) the daily simple return is::

    r_t = alpha + Σ_k loading_k · etf_return_k,t + idio_t

with per-symbol loadings (SPY in [0.5, 1.8], TLT in ±0.15, each style ETF in ±0.12),
alpha in ±2 %/year and an idiosyncratic volatility of 15–40 %/year. ``true_loadings``
returns the loadings: the "known betas". ``idio_t`` also holds a slow pull of the log
price toward a symbol-specific level (κ = 0.004/session, half-life ≈ 170 sessions) so
raw closes stay in a realistic $5–$500 band; the pull depends only on past prices,
hence is uncorrelated with same-day ETF returns and leaves regression betas
unbiased (it scales the day's gross return by ``exp(−κ·deviation)``, a factor within
about ±0.5 % of 1).

A univariate OLS of a symbol's returns on SPY recovers
``Σ_k loading_k · cov(etf_k, SPY) / var(SPY)`` (the style ETFs are ~0.9 correlated
with SPY), which equals the SPY loading only when the other loadings are zero. Symbols
whose name starts with ``MKT`` have only a SPY loading (``MKTA`` 0.6, ``MKTB`` 1.0,
``MKTC`` 1.5, others drawn) so tests can check a recovered market beta directly.

Determinism
-----------
Every series is a pure function of ``(seed, symbol, session)``: each symbol has its
own ``numpy.random.Generator(PCG64)`` streams seeded from ``seed`` and a blake2b hash
of the symbol (not Python's salted ``hash``), drawn over the NYSE sessions from
``BASE_DATE`` (2015-01-02) up to the request's end (a Generator fills an array in
order, so the draw for a session does not depend on how far the draw goes); prices
come from elementwise operations and sequential cumulative sums, never from
reductions whose order could depend on the shapes. Intraday fields (open, high, low,
volume, missing days) come from a stream advanced to the session's position. So
fetching ``[a, c]`` gives the same rows as ``[a, b]`` plus ``[b+1, c]``, whatever
other symbols share the call — except ``adj_close`` (below) and the recently listed
``NEWL``. The ETF series are cached once per process and seed; each equity's path end (its
noise generator and last cumulative sums) is kept per process, so the next request that
starts near where the last one ended — a nightly after a load — draws only its new
sessions, with the same bits (``_PathEnd``).

Corporate actions and ``adj_close``
-----------------------------------
Like Yahoo, ``adj_close`` is back-adjusted *as of the request's end*::

    adj_close[d] = close[d] · Π_{actions a with d < date_a ≤ end} factor_a

with ``factor = 1/ratio`` for a split and ``1 − dividend / close[previous session]``
for a dividend. The last row's ``adj_close`` equals its ``close``. Consequence: after
a new action every earlier ``adj_close`` changes, so the flow re-fetches the history
of a symbol that reports a new action. The model's returns are total returns:
``adj_close`` follows them exactly; the raw ``close`` drops by the dividend on the
ex-date and by the split ratio on the split date.

Planted symbols (``SPECIAL_SYMBOLS``, always in ``universe(n)`` when n ≥ 10)
--------------------------------------------------------------------------
``MKTA/MKTB/MKTC`` market loading only (0.6 / 1.0 / 1.5); ``GAPY`` ~3 % of sessions
missing at random; ``SPRS`` ~40 % missing (too sparse for factors); ``NEWL`` listed
60 sessions before the end of each request (a first ~1-year fetch sees only 60
sessions, too few for 90-session factors; nightly one-day fetches then extend it);
``SPLT`` a split every 200 sessions cycling 2-for-1, 1-for-2, 4-for-1, 1-for-4 (every
1-year window holds one or two); ``DLST`` no rows after ``delist_date``; ``BADT`` a bad
tick every 120 sessions (that day's open/high/low/close × 10, no split explains it);
``DIVY`` a quarterly dividend (3 %/year). About 30 % of other equities also pay a
quarterly dividend (1–5 %/year); special symbols other than ``DIVY`` pay none.

The model has values for every session the calendar covers, future ones included:
callers ask only for completed sessions.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date
from functools import lru_cache

import numpy as np
import pandas as pd

from core import calendar
from core.providers.base import (
    BAR_COLUMNS,
    PROFILE_COLUMNS,
    FetchResult,
    empty_actions,
    empty_bars,
    served_by,
)
from core.symbols import InvalidSymbolError, is_market_symbol, validate_symbol

BASE_DATE = date(2015, 1, 2)
"""First session of every synthetic series."""

HORIZON = 4000
"""Sessions from ``BASE_DATE`` the model covers (through late 2030)."""

TRADING_DAYS = 252
MEAN_REVERSION = 0.004
"""κ: per-session pull of an equity's log price toward its level (half-life ≈ 170)."""

BATCH = 512
"""Symbols processed together inside one ``fetch`` (bounds memory: ~12 MB/array)."""

ETF_SYMBOLS: tuple[str, ...] = ("SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV")
"""The reference ETFs, in loading order."""


@dataclass(frozen=True)
class EtfSpec:
    """One reference ETF: annual arithmetic drift, annual vol, correlation to SPY
    through the market factor, price on ``BASE_DATE``, display name."""

    drift: float
    vol: float
    market_corr: float
    price0: float
    name: str


ETF_SPECS: dict[str, EtfSpec] = {
    "SPY": EtfSpec(0.10, 0.16, 1.00, 205.4, "SPDR S&P 500 ETF Trust"),
    "TLT": EtfSpec(0.02, 0.14, -0.30, 127.0, "iShares 20+ Year Treasury Bond ETF"),
    "VTV": EtfSpec(0.09, 0.155, 0.92, 84.0, "Vanguard Value ETF"),
    "VUG": EtfSpec(0.11, 0.18, 0.93, 104.0, "Vanguard Growth ETF"),
    "MTUM": EtfSpec(0.10, 0.17, 0.87, 68.0, "iShares MSCI USA Momentum Factor ETF"),
    "QUAL": EtfSpec(0.10, 0.155, 0.95, 58.0, "iShares MSCI USA Quality Factor ETF"),
    "IWM": EtfSpec(0.08, 0.22, 0.85, 119.0, "iShares Russell 2000 ETF"),
    "USMV": EtfSpec(0.08, 0.12, 0.86, 40.0, "iShares MSCI USA Min Vol Factor ETF"),
}

# Correlation of the style residuals (VTV, VUG, MTUM, QUAL, IWM, USMV): value vs growth
# negative, growth with momentum positive, quality with low volatility positive.
_STYLE_RESIDUAL_CORR = np.array(
    [
        [1.0, -0.6, -0.3, 0.0, 0.3, 0.2],
        [-0.6, 1.0, 0.4, 0.2, -0.1, -0.2],
        [-0.3, 0.4, 1.0, 0.2, 0.0, 0.1],
        [0.0, 0.2, 0.2, 1.0, -0.2, 0.3],
        [0.3, -0.1, 0.0, -0.2, 1.0, -0.2],
        [0.2, -0.2, 0.1, 0.3, -0.2, 1.0],
    ]
)

MARKET_ONLY_PREFIX = "MKT"
PLANTED_MARKET_BETAS: dict[str, float] = {"MKTA": 0.6, "MKTB": 1.0, "MKTC": 1.5}
GAPPY, SPARSE, RECENT, SPLITTER, DELISTED, BAD_TICK, DIVIDEND = (
    "GAPY",
    "SPRS",
    "NEWL",
    "SPLT",
    "DLST",
    "BADT",
    "DIVY",
)
SPECIAL_SYMBOLS: tuple[str, ...] = (
    *PLANTED_MARKET_BETAS,
    GAPPY,
    SPARSE,
    RECENT,
    SPLITTER,
    DELISTED,
    BAD_TICK,
    DIVIDEND,
)
"""Planted symbols, see the module docstring."""

MISSING_SHARE: dict[str, float] = {GAPPY: 0.03, SPARSE: 0.40}
RECENT_SESSIONS = 60
"""``NEWL`` has rows only in the last 60 sessions ending at the request's end."""
SPLIT_EVERY = 200
SPLIT_RATIOS: tuple[float, ...] = (2.0, 0.5, 4.0, 0.25)
"""``SPLT``'s split ratios (new shares per old share), in turn."""
BAD_TICK_EVERY = 120
BAD_TICK_FACTOR = 10.0
DIVIDEND_EVERY = 63
DIVIDEND_PAYER_SHARE = 0.30

GICS_SECTORS: dict[str, tuple[str, ...]] = {
    "Energy": ("Oil & Gas Exploration", "Oil & Gas Equipment", "Integrated Oil & Gas"),
    "Materials": ("Chemicals", "Metals & Mining", "Containers & Packaging"),
    "Industrials": ("Aerospace & Defense", "Machinery", "Airlines"),
    "Consumer Discretionary": ("Automobiles", "Specialty Retail", "Hotels & Leisure"),
    "Consumer Staples": ("Food Products", "Beverages", "Household Products"),
    "Health Care": ("Pharmaceuticals", "Biotechnology", "Health Care Equipment"),
    "Financials": ("Banks", "Insurance", "Capital Markets"),
    "Information Technology": ("Software", "Semiconductors", "IT Services"),
    "Communication Services": ("Interactive Media", "Entertainment", "Telecom Services"),
    "Utilities": ("Electric Utilities", "Gas Utilities", "Water Utilities"),
    "Real Estate": ("Residential REITs", "Office REITs", "Real Estate Services"),
}
"""The 11 GICS sectors with three industries each (``fetch_profiles``)."""

_NAME_WORDS = (
    "Apex",
    "Blue",
    "Cedar",
    "Delta",
    "Ember",
    "Falcon",
    "Granite",
    "Harbor",
    "Iron",
    "Juniper",
    "Keystone",
    "Lumen",
    "Meridian",
    "North",
    "Orion",
    "Pioneer",
    "Quartz",
    "Redwood",
    "Summit",
    "Titan",
    "Union",
    "Vertex",
    "Willow",
    "Zenith",
)
_NAME_SUFFIXES = ("Inc.", "Corp.", "Holdings", "Group", "Co.", "Technologies", "Industries")

_MODEL_TICKER = re.compile(r"^[A-Z]{1,5}(-[A-Z])?$")
_UNIVERSE_SPACE = 26**4
_UNIVERSE_STEP = 7919  # prime, coprime with 26**4: index → name is a bijection
_UNIVERSE_OFFSET = 12345
_N_PARAMS = 24


_TEXT_PROFILE_COLUMNS = ("symbol", "name", "sector", "industry")


def _empty_profiles() -> pd.DataFrame:
    """An empty frame with ``PROFILE_COLUMNS``: text columns object, the rest float64."""
    return pd.DataFrame(
        {
            c: pd.Series([], dtype=object if c in _TEXT_PROFILE_COLUMNS else "float64")
            for c in PROFILE_COLUMNS
        }
    )


# ----------------------------------------------------------------------------- seeds


def _symbol_key(symbol: str) -> int:
    """A stable 128-bit key of ``symbol`` (blake2b; Python's ``hash`` is salted)."""
    return int.from_bytes(hashlib.blake2b(symbol.encode(), digest_size=16).digest(), "little")


def _stream(seed: int, symbol: str, stream: int) -> np.random.PCG64:
    """The bit generator of one of a symbol's independent streams (0 params, 1 path,
    2 intraday detail)."""
    return np.random.PCG64(np.random.SeedSequence([seed, _symbol_key(symbol), stream]))


# ------------------------------------------------------------------------ ETF series


@lru_cache(maxsize=1)
def _etf_latent_matrix() -> np.ndarray:
    """A (8, 8) matrix ``A`` with ETF standardized returns ``x = A @ n``, ``n ~ N(0, I)``.

    Latent order: market, rates, six style residual innovations. Every row has unit
    norm, so ``A @ A.T`` is the ETFs' correlation matrix.
    """
    a = np.zeros((8, 8))
    a[0, 0] = 1.0
    tlt = ETF_SPECS["TLT"].market_corr
    a[1, 0], a[1, 1] = tlt, math.sqrt(1.0 - tlt**2)
    chol = np.linalg.cholesky(_STYLE_RESIDUAL_CORR)  # shape: (6, 6)
    for i, sym in enumerate(ETF_SYMBOLS[2:]):
        rho = ETF_SPECS[sym].market_corr
        a[2 + i, 0] = rho
        a[2 + i, 2:] = math.sqrt(1.0 - rho**2) * chol[i]
    a.setflags(write=False)
    return a


def etf_correlation() -> np.ndarray:
    """The model's (8, 8) correlation matrix of daily ETF returns, ``ETF_SYMBOLS`` order."""
    a = _etf_latent_matrix()
    return a @ a.T


def etf_daily_covariance() -> np.ndarray:
    """The model's (8, 8) covariance of daily simple ETF returns, ``ETF_SYMBOLS`` order."""
    return _etf_daily_covariance().copy()


@lru_cache(maxsize=1)
def _etf_daily_covariance() -> np.ndarray:
    vol = np.array([ETF_SPECS[s].vol for s in ETF_SYMBOLS]) / math.sqrt(TRADING_DAYS)
    cov = etf_correlation() * np.outer(vol, vol)
    cov.setflags(write=False)
    return cov


@lru_cache(maxsize=8)
def _etf_series(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """ETF daily simple returns and log closes, each (HORIZON, 8); cached, read-only."""
    gen = np.random.Generator(_stream(seed, "__reference_etfs__", 1))
    latent = gen.standard_normal((HORIZON, 8))
    x = latent @ _etf_latent_matrix().T  # shape: (HORIZON, 8)
    drift = np.array([ETF_SPECS[s].drift for s in ETF_SYMBOLS]) / TRADING_DAYS
    vol = np.array([ETF_SPECS[s].vol for s in ETF_SYMBOLS]) / math.sqrt(TRADING_DAYS)
    returns = drift + vol * x
    returns[0] = 0.0  # the first session has no previous close
    log_close = np.log([ETF_SPECS[s].price0 for s in ETF_SYMBOLS]) + np.cumsum(
        np.log1p(returns), axis=0
    )
    returns.setflags(write=False)
    log_close.setflags(write=False)
    return returns, log_close


@lru_cache(maxsize=1)
def _reversion_weights() -> tuple[np.ndarray, np.ndarray]:
    """``ρ^t`` and ``ρ^-t`` for t < HORIZON, ρ = 1 − κ (the AR(1) closed form)."""
    t = np.arange(HORIZON, dtype=np.float64)
    rho = 1.0 - MEAN_REVERSION
    return rho**t, rho ** (-t)


# ------------------------------------------------------------------- per-symbol model


@dataclass(frozen=True)
class _Model:
    """Everything about one symbol's series except the random paths themselves."""

    symbol: str
    etf_index: int  # -1 for an equity
    loadings: tuple[float, ...]  # ETF_SYMBOLS order
    alpha: float  # daily
    idio_vol: float  # daily
    day_vol: float  # daily total vol (approximate, for the intraday range)
    log_level: float  # log price the equity's log close reverts to
    dollar_volume: float
    dividend_q: float  # dividend per quarter as a fraction of the close; 0 = none
    dividend_offset: int
    split_offset: int  # -1 = no splits
    bad_tick_offset: int  # -1 = no bad ticks
    missing_share: float
    recent: bool
    delisted: bool
    params: tuple[float, ...]  # the raw uniforms (profiles)


@lru_cache(maxsize=65536)
def _model(seed: int, symbol: str) -> _Model:
    """The model of a symbol the synthetic provider knows (caller checked the name)."""
    u = np.random.Generator(_stream(seed, symbol, 0)).random(_N_PARAMS)
    params = tuple(float(v) for v in u)
    dollar_volume = math.exp(math.log(2e6) + u[6] * math.log(1000.0))
    if symbol in ETF_SPECS:
        i = ETF_SYMBOLS.index(symbol)
        spec = ETF_SPECS[symbol]
        return _Model(
            symbol=symbol,
            etf_index=i,
            loadings=tuple(float(j == i) for j in range(len(ETF_SYMBOLS))),
            alpha=0.0,
            idio_vol=0.0,
            day_vol=spec.vol / math.sqrt(TRADING_DAYS),
            log_level=math.log(spec.price0),
            dollar_volume=dollar_volume * 20,
            dividend_q=0.0,
            dividend_offset=0,
            split_offset=-1,
            bad_tick_offset=-1,
            missing_share=0.0,
            recent=False,
            delisted=False,
            params=params,
        )
    loadings = [0.5 + 1.3 * u[0], 0.30 * (u[1] - 0.5)] + [0.24 * (v - 0.5) for v in u[2:8]]
    if symbol.startswith(MARKET_ONLY_PREFIX):
        loadings = [PLANTED_MARKET_BETAS.get(symbol, loadings[0])] + [0.0] * 7
    idio_annual = 0.15 + 0.25 * u[8]
    beta = np.array(loadings)
    systematic = float(beta @ _etf_daily_covariance() @ beta)
    idio = idio_annual / math.sqrt(TRADING_DAYS)
    special = symbol in SPECIAL_SYMBOLS
    if symbol == DIVIDEND:
        dividend_q = 0.03 / 4
    elif not special and u[9] < DIVIDEND_PAYER_SHARE:
        dividend_q = (0.01 + 0.04 * u[10]) / 4
    else:
        dividend_q = 0.0
    log_level = math.log(15.0) + u[11] * math.log(10.0)
    if symbol == SPLITTER:
        log_level = math.log(120.0)
    return _Model(
        symbol=symbol,
        etf_index=-1,
        loadings=tuple(float(b) for b in loadings),
        alpha=0.04 * (u[12] - 0.5) / TRADING_DAYS,
        idio_vol=idio,
        day_vol=math.sqrt(systematic + idio**2),
        log_level=log_level,
        dollar_volume=dollar_volume,
        dividend_q=dividend_q,
        dividend_offset=int(u[13] * DIVIDEND_EVERY),
        split_offset=int(u[14] * SPLIT_EVERY) if symbol == SPLITTER else -1,
        bad_tick_offset=int(u[15] * BAD_TICK_EVERY) if symbol == BAD_TICK else -1,
        missing_share=MISSING_SHARE.get(symbol, 0.0),
        recent=symbol == RECENT,
        delisted=symbol == DELISTED,
        params=params,
    )


def _check_symbol(symbol: str) -> str | None:
    """``None`` if the model has a series for ``symbol``, else the error reason."""
    try:
        canonical = validate_symbol(symbol)
    except InvalidSymbolError as exc:
        return f"invalid_symbol: {exc.problem}"
    if canonical != symbol:
        return f"invalid_symbol: not in canonical form (use {canonical!r})"
    if not is_market_symbol(symbol):
        return "invalid_symbol: a private or internal identifier, not a market symbol"
    if not _MODEL_TICKER.match(symbol):
        return (
            f"no_data: the synthetic model has no series for {symbol!r} "
            "(only 1-5 letter tickers, optionally with a class suffix like BRK-B)"
        )
    return None


# --------------------------------------------------------------------- path building


def _action_logs(models: Sequence[_Model], n: int, start: int = 0
                 ) -> tuple[np.ndarray, np.ndarray]:
    """Per-session log factors of dividends and splits, each (k, n - start), positions
    start..n-1.

    A dividend multiplies the close by ``1 − q`` (log ``log(1 − q)``) on its ex-date; a
    split by ``1/ratio``. Zero where nothing happens.
    """
    pos = np.arange(start, n)
    log_div = np.zeros((len(models), n - start))
    log_split = np.zeros((len(models), n - start))
    for i, m in enumerate(models):
        if m.dividend_q > 0:
            mask = (pos % DIVIDEND_EVERY == m.dividend_offset) & (pos > 0)
            log_div[i, mask] = math.log1p(-m.dividend_q)
        if m.split_offset >= 0:
            hits = pos[(pos % SPLIT_EVERY == m.split_offset) & (pos > 0)]
            ratios = np.array(SPLIT_RATIOS)[(hits // SPLIT_EVERY) % len(SPLIT_RATIOS)]
            log_split[i, hits - start] = -np.log(ratios)
    return log_div, log_split


def _split_log_levels(models: Sequence[_Model], n: int, start: int) -> np.ndarray:
    """``cumsum(log_split, axis=1)[:, start:n]`` of :func:`_action_logs` (positions from 0),
    without the positions before ``start``: adding the zeros between two splits changes no
    bit of a sequential sum, so the sum of the split logs up to each position is the same."""
    out = np.zeros((len(models), n - start))
    for i, m in enumerate(models):
        if m.split_offset < 0:
            continue
        _, logs = _action_logs([m], n)
        out[i] = np.cumsum(logs[0])[start:]
    return out


PATH_TAIL = 64
"""Sessions of cumulative sums kept per symbol for the next request (see :class:`_PathEnd`)."""
PATH_CACHE_SIZE = 100_000
"""Symbols whose path ends are kept per process (about 1.5 KB each)."""


@dataclass
class _PathEnd:
    """Where an equity's path stopped in this process: its noise generator after ``n`` draws
    and the cumulative sums ``cumsum(h_s · ρ^-s)`` of positions ``n - len(cum)``..``n - 1``.

    A later request for positions ``first..m - 1`` with ``first ≥ n - len(cum)`` continues
    from here — draws ``m - n`` more and adds them to the last sum — instead of drawing
    from ``BASE_DATE`` again: a Generator draws in order and the cumulative sum is
    sequential, so every value has the same bits either way."""

    n: int
    bitgen: np.random.PCG64
    cum: np.ndarray


_path_ends: dict[tuple[int, str], _PathEnd] = {}
_path_ends_lock = threading.Lock()


def clear_path_cache() -> None:
    """Forget every path end kept by this process (tests: a cold provider)."""
    with _path_ends_lock:
        _path_ends.clear()


def _take_path_ends(seed: int, models: Sequence[_Model], n: int, first: int
                    ) -> dict[int, _PathEnd]:
    """The kept ends that can serve positions ``first..n - 1`` (by index in ``models``),
    taken out of the cache while in use (another thread computes its own)."""
    out: dict[int, _PathEnd] = {}
    with _path_ends_lock:
        for i, m in enumerate(models):
            end = _path_ends.get((seed, m.symbol))
            if end is not None and end.n - len(end.cum) <= first and end.n <= n:
                out[i] = _path_ends.pop((seed, m.symbol))
    return out


def _keep_path_ends(seed: int, ends: dict[str, _PathEnd]) -> None:
    with _path_ends_lock:
        if len(_path_ends) + len(ends) > PATH_CACHE_SIZE:
            _path_ends.clear()
        for symbol, end in ends.items():
            _path_ends[(seed, symbol)] = end


def _steps(models: Sequence[_Model], noise: np.ndarray, etf_returns: np.ndarray,
           log_div: np.ndarray, ipw: np.ndarray, start: int) -> np.ndarray:
    """``h_s · ρ^-s`` of equities ``models`` for positions ``start..start + noise.shape[1] - 1``
    from their noise draws of those positions (elementwise: a position's value does not
    depend on the range it is computed in)."""
    n = start + noise.shape[1]
    loadings = np.array([m.loadings for m in models])  # shape: (k_eq, 8)
    alpha = np.array([m.alpha for m in models])[:, None]
    idio = np.array([m.idio_vol for m in models])[:, None]
    r = idio * noise  # shape: (k_eq, n - start)
    r += alpha
    for j in range(len(ETF_SYMBOLS)):  # explicit sum: BLAS could vary with the shapes
        col = loadings[:, j]
        if np.any(col != 0.0):
            r += col[:, None] * etf_returns[None, start:n, j]
    if start == 0:
        r[:, 0] = 0.0
    np.maximum(r, -0.95, out=r)
    h = np.log1p(r)
    h += log_div
    h *= ipw[None, start:n]
    return h


def _log_paths(seed: int, models: Sequence[_Model], n: int, first: int = 0) -> np.ndarray:
    """Log raw closes before splits, (k, n - first) for positions first..n-1 (dividend drops
    in).

    ETFs: cached paths. Equities: ``h_t = log1p(r_t) + log_div_t`` filtered by the AR(1)
    ``y_t = ρ·y_{t-1} + h_t`` around the symbol's level, in closed form
    ``y_t = ρ^t · cumsum(h_s · ρ^-s)`` (elementwise and a sequential cumsum, so a
    position's value does not depend on ``n``, ``first`` or on the other symbols; the steps
    after the cumsum are made on positions ``first``.. only). An equity whose path this
    process already drew up to a position not far before ``first`` continues from there
    (:class:`_PathEnd`: the same bits).
    """
    k = len(models)
    out = np.empty((k, n - first))
    eq = [i for i, m in enumerate(models) if m.etf_index < 0]
    etf_returns, etf_log_close = _etf_series(seed)
    for i, m in enumerate(models):
        if m.etf_index >= 0:
            out[i] = etf_log_close[first:n, m.etf_index]
    if not eq:
        return out
    pw, ipw = _reversion_weights()
    eq_models = [models[i] for i in eq]
    taken = _take_path_ends(seed, eq_models, n, first)
    cold = [j for j in range(len(eq)) if j not in taken]
    kept: dict[str, _PathEnd] = {}
    tails = np.empty((len(eq), n - first))  # cumulative sums of positions first..n-1
    if cold:
        cold_models = [eq_models[j] for j in cold]
        noise = np.empty((len(cold), n))
        gens = []
        for j, m in enumerate(cold_models):
            # a Generator fills sequentially: the first n draws do not depend on n
            gens.append(_stream(seed, m.symbol, 1))
            np.random.Generator(gens[-1]).standard_normal(out=noise[j])
        h = _steps(cold_models, noise, etf_returns, _action_logs(cold_models, n)[0], ipw, 0)
        del noise
        np.cumsum(h, axis=1, out=h)
        tails[cold] = h[:, first:]
        keep_from = max(0, n - PATH_TAIL)
        for j, m in enumerate(cold_models):
            kept[m.symbol] = _PathEnd(n, gens[j], h[j, keep_from:].copy())
        del h
    by_start: dict[int, list[int]] = {}
    for j, end in taken.items():
        by_start.setdefault(end.n, []).append(j)
    for n0, group in by_start.items():
        group_models = [eq_models[j] for j in group]
        noise = np.empty((len(group), n - n0))
        for row, j in enumerate(group):
            np.random.Generator(taken[j].bitgen).standard_normal(out=noise[row])
        h = _steps(group_models, noise, etf_returns,
                   _action_logs(group_models, n, n0)[0], ipw, n0)
        for row, j in enumerate(group):
            end = taken[j]
            seq = np.concatenate([end.cum, h[row]])  # positions n0 - len(cum)..n - 1
            lo = n0 - len(end.cum)
            np.cumsum(seq[len(end.cum) - 1:], out=seq[len(end.cum) - 1:])
            tails[j] = seq[first - lo:]
            kept[group_models[row].symbol] = _PathEnd(
                n, end.bitgen, seq[max(0, len(seq) - PATH_TAIL):].copy())
    _keep_path_ends(seed, kept)
    tails *= pw[None, first:n]
    tails += np.array([m.log_level for m in eq_models])[:, None]
    out[eq] = tails
    return out


# ---------------------------------------------------------------------------- provider


class SyntheticProvider:
    """Seeded synthetic daily prices from a factor model (see the module docstring).

    ``seed`` selects the whole synthetic market; ``delist_date`` is the last date
    ``DLST`` has rows. Stateless apart from per-process caches: thread-safe.
    """

    name = "synthetic"

    def __init__(self, seed: int = 7, delist_date: date = date(2026, 6, 30)) -> None:
        self.seed = int(seed)
        self.delist_date = delist_date

    # ---------------------------------------------------------------- public helpers

    def true_loadings(self, symbol: str) -> dict[str, float]:
        """The model's loadings of ``symbol`` on each reference ETF (name → loading).

        Daily simple return = alpha + Σ loading · ETF simple return + idiosyncratic.
        An ETF has loading 1 on itself. ``InvalidSymbolError`` if the model has no
        series for ``symbol``.
        """
        reason = _check_symbol(symbol)
        if reason is not None:
            raise InvalidSymbolError(symbol, reason)
        return dict(zip(ETF_SYMBOLS, _model(self.seed, symbol).loadings, strict=True))

    def implied_market_beta(self, symbol: str) -> float:
        """Population slope of ``symbol``'s returns on SPY's: Σ_k loading_k·cov(k,SPY)/var(SPY).

        This is what a univariate OLS on SPY estimates; it equals the SPY loading only
        for market-only symbols (``MKT*``).
        """
        beta = np.array(list(self.true_loadings(symbol).values()))
        cov = _etf_daily_covariance()
        return float(beta @ cov[:, 0] / cov[0, 0])

    def universe(self, n: int) -> list[str]:
        """``n`` deterministic equity symbols (no ETFs), special symbols first when n ≥ 10.

        The others are 4-letter names from a fixed bijection of the index, skipping the
        ETF names, the special names and the ``MKT`` prefix. Same for every seed.
        """
        if n < 0:
            raise ValueError(f"n must be ≥ 0, got {n}")
        if n > _UNIVERSE_SPACE // 2:
            raise ValueError(f"n must be ≤ {_UNIVERSE_SPACE // 2}, got {n}")
        out = list(SPECIAL_SYMBOLS) if n >= 10 else []
        reserved = set(SPECIAL_SYMBOLS) | set(ETF_SYMBOLS)
        i = 0
        while len(out) < n:
            code = (i * _UNIVERSE_STEP + _UNIVERSE_OFFSET) % _UNIVERSE_SPACE
            i += 1
            letters = []
            for _ in range(4):
                code, d = divmod(code, 26)
                letters.append(chr(65 + d))
            name = "".join(letters)
            if name in reserved or name.startswith(MARKET_ONLY_PREFIX):
                continue
            out.append(name)
        return out[:n]

    # ------------------------------------------------------------------------ fetch

    def fetch(self, symbols: Sequence[str], start: date, end: date) -> FetchResult:
        """Bars, actions and per-symbol errors for sessions ``start ≤ d ≤ end``.

        Symbols must be canonical (``validate_symbol(s) == s``) market symbols, else
        ``invalid_symbol``; names the model cannot generate and ranges without rows get
        ``no_data``. ``adj_close`` is back-adjusted as of ``end``. Rows are ordered by
        the request's symbol order, then date. ``ValueError`` if ``end < start``.
        """
        if isinstance(symbols, str):
            raise TypeError("symbols must be a sequence of strings, not one string")
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        errors: dict[str, str] = {}
        models: list[_Model] = []
        for s in dict.fromkeys(symbols):
            reason = _check_symbol(s)
            if reason is None:
                models.append(_model(self.seed, s))
            else:
                errors[s] = reason
        sessions = calendar.trading_days_between(max(start, BASE_DATE), end)
        base = int(calendar.session_positions([BASE_DATE])[0])
        positions = calendar.session_positions(sessions) - base
        keep = positions < HORIZON
        sessions = [d for d, k in zip(sessions, keep, strict=True) if k]
        if not sessions:
            for m in models:
                errors[m.symbol] = f"no_data: no sessions between {start} and {end}"
            return FetchResult(errors=errors, provider=self.name)
        p0, p1 = int(positions[0]), int(positions[keep][-1])
        delist_pos = self._delist_position(base)
        dates = np.array(sessions, dtype="datetime64[D]").astype("datetime64[ns]")

        bar_parts: list[pd.DataFrame] = []
        action_parts: list[pd.DataFrame] = []
        for b in range(0, len(models), BATCH):
            batch = models[b : b + BATCH]
            bars, actions = self._build(batch, p0, p1, dates, delist_pos)
            bar_parts.append(bars)
            action_parts.append(actions)
        bars = pd.concat(bar_parts, ignore_index=True) if bar_parts else empty_bars()
        actions = pd.concat(action_parts, ignore_index=True) if action_parts else empty_actions()
        have = set(bars["symbol"].unique())
        for m in models:
            if m.symbol not in have:
                why = f"no_data: no rows between {start} and {end}"
                if m.delisted and delist_pos < p0:
                    why += f" (delisted after {self.delist_date})"
                errors[m.symbol] = why
        return FetchResult(
            bars=bars,
            actions=actions,
            errors=errors,
            provider=self.name,
            provider_by_symbol=served_by(bars, self.name),
        )

    def _delist_position(self, base: int) -> int:
        """Position (sessions after ``BASE_DATE``) of ``DLST``'s last session."""
        try:
            last = calendar.session_on_or_before(self.delist_date)
        except calendar.CalendarRangeError:
            return HORIZON if self.delist_date > BASE_DATE else -1
        return int(calendar.session_positions([last])[0]) - base

    def _build(
        self,
        models: Sequence[_Model],
        p0: int,
        p1: int,
        dates: np.ndarray,
        delist_pos: int,
    ) -> tuple[pd.DataFrame, pd.DataFrame]:
        """Bars and actions of ``models`` for positions ``p0..p1`` (inclusive)."""
        k, n, m = len(models), p1 + 1, p1 - p0 + 1
        lo = max(p0 - 1, 0)  # the first position needed: the close before p0
        log_div, log_split = _action_logs(models, n, p0)
        log_close = _log_paths(self.seed, models, n, first=lo)
        log_close += _split_log_levels(models, n, lo)
        close_all = np.exp(log_close)  # shape: (k, n - lo) raw closes of positions lo..p1
        log_factor = log_div + log_split
        prev_close = np.empty((k, m))
        prev_close[:, 1:] = close_all[:, p0 - lo : p1 - lo]
        prev_close[:, 0] = close_all[:, p0 - 1 - lo] if p0 > 0 else close_all[:, 0]
        close = close_all[:, p0 - lo :]
        factor = np.exp(log_factor)
        # Yahoo: adj_close[d] = close[d] · Π factors of actions in (d, end]
        cum = np.cumsum(log_factor, axis=1)
        adj_mult = np.exp(cum[:, -1:] - cum)

        detail = np.empty((k, m, 5))
        for i, mod in enumerate(models):
            bitgen = _stream(self.seed, mod.symbol, 2)
            bitgen.advance(p0 * 5)  # one 64-bit draw per uniform: position-addressable
            np.random.Generator(bitgen).random(out=detail[i])
        vol = np.array([mod.day_vol for mod in models])[:, None]
        ref = prev_close * factor  # previous close after today's action
        open_ = ref * np.exp(0.25 * math.sqrt(3.0) * vol * (2.0 * detail[..., 0] - 1.0))
        high = np.maximum(open_, close) * np.exp(-0.5 * vol * np.log1p(-detail[..., 1]))
        low = np.minimum(open_, close) * np.exp(0.5 * vol * np.log1p(-detail[..., 2]))
        dollar = np.array([mod.dollar_volume for mod in models])[:, None]
        volume = np.maximum(
            100.0, np.round(dollar * np.exp(-0.5 * np.log1p(-detail[..., 3]) - 0.5) / close)
        )

        pos = np.arange(p0, n)
        present = np.ones((k, m), dtype=bool)
        bad = np.zeros((k, m), dtype=bool)
        for i, mod in enumerate(models):
            if mod.missing_share > 0:
                present[i] &= detail[i, :, 4] >= mod.missing_share
            if mod.recent:
                present[i] &= pos > p1 - RECENT_SESSIONS
            if mod.delisted:
                present[i] &= pos <= delist_pos
            if mod.bad_tick_offset >= 0:
                bad[i] = (pos % BAD_TICK_EVERY == mod.bad_tick_offset) & (pos > 0)
        scale = np.where(bad, BAD_TICK_FACTOR, 1.0)
        close_out = close * scale
        syms = np.array([mod.symbol for mod in models], dtype=object)
        flat = present.ravel()
        sym_col = np.repeat(syms, m)[flat]
        bars = pd.DataFrame(
            {
                "symbol": pd.Series(sym_col, dtype=object),
                "date": pd.Series(np.tile(dates, k)[flat]).astype("datetime64[ns]"),
                "open": (open_ * scale).ravel()[flat],
                "high": (high * scale).ravel()[flat],
                "low": (low * scale).ravel()[flat],
                "close": close_out.ravel()[flat],
                "adj_close": (close_out * adj_mult).ravel()[flat],
                "volume": volume.ravel()[flat],
            },
            columns=list(BAR_COLUMNS),
        )

        acts = (log_factor != 0.0) & present
        if not acts.any():
            return bars, empty_actions()
        rows, cols = np.nonzero(acts)
        is_split = log_split[rows, cols] != 0.0
        split_value = np.exp(-log_split[rows, cols])
        q = np.array([mod.dividend_q for mod in models])[rows]
        dividend_value = q * prev_close[rows, cols]
        actions = pd.DataFrame(
            {
                "symbol": pd.Series(syms[rows], dtype=object),
                "date": pd.Series(dates[cols]).astype("datetime64[ns]"),
                "kind": pd.Series(np.where(is_split, "split", "dividend"), dtype=object),
                "value": np.where(is_split, split_value, dividend_value),
            }
        )
        return bars, actions

    # --------------------------------------------------------------------- profiles

    def fetch_profiles(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Deterministic descriptive data, columns ``PROFILE_COLUMNS``, one row per symbol
        the model knows (others are left out).

        Name, GICS sector and industry (ETFs: sector and industry ``"ETF"``), market
        cap in USD, P/E (NaN for ~10 % loss-makers and ETFs), ``provider_beta`` = the
        implied univariate market beta rounded to 2 decimals, and the 52-week high/low
        of the 252 sessions ending at the latest completed session (NaN if no rows).
        """
        known = [s for s in dict.fromkeys(symbols) if _check_symbol(s) is None]
        if not known:
            return _empty_profiles()
        last = calendar.latest_completed_session()
        first = calendar.sessions_back(last, TRADING_DAYS - 1)
        bars = self.fetch(known, first, last).bars
        hi = bars.groupby("symbol")["high"].max()
        lo = bars.groupby("symbol")["low"].min()
        sectors = list(GICS_SECTORS)
        rows = []
        for s in known:
            mod = _model(self.seed, s)
            u = mod.params
            if mod.etf_index >= 0:
                name, sector, industry = ETF_SPECS[s].name, "ETF", "ETF"
                pe = math.nan
                cap = math.exp(math.log(5e9) + u[16] * math.log(100.0))
            else:
                sector = sectors[int(u[17] * len(sectors))]
                industry = GICS_SECTORS[sector][int(u[18] * 3)]
                word = _NAME_WORDS[int(u[19] * len(_NAME_WORDS))]
                suffix = _NAME_SUFFIXES[int(u[20] * len(_NAME_SUFFIXES))]
                name = f"{word} {s.title()} {suffix}"
                pe = math.nan if u[21] < 0.1 else round(8.0 + 52.0 * u[22], 2)
                cap = math.exp(math.log(3e8) + u[16] * math.log(5000.0))
            rows.append(
                {
                    "symbol": s,
                    "name": name,
                    "sector": sector,
                    "industry": industry,
                    "market_cap": round(cap, -3),
                    "pe_ratio": pe,
                    "provider_beta": round(self.implied_market_beta(s), 2),
                    "week52_high": float(hi.get(s, math.nan)),
                    "week52_low": float(lo.get(s, math.nan)),
                }
            )
        out = pd.DataFrame(rows, columns=list(PROFILE_COLUMNS))
        for c in _TEXT_PROFILE_COLUMNS:
            out[c] = out[c].astype(object)
        return out
