"""Factor exposures of a universe of symbols: the entry point of the nightly symbol flow.

``compute_factor_exposures`` takes the daily simple returns of N symbols and of the
reference ETFs on the same T most recent NYSE sessions (last row = ``as_of``) and
returns every factor of ``definitions.FACTORS`` for every symbol, vectorized across
symbols: two univariate OLS (market, rates), one multivariate ridge on the six style
ETFs, and four univariate OLS on long-minus-short spreads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TypeVar, cast

import numpy as np
import numpy.typing as npt

from core.factors.definitions import (
    BETA_FLAG_ABS,
    FACTOR_NAMES,
    FACTORS,
    FLAG_ABS_BETA,
    FLAG_R2_NEAR_ZERO,
    FLAG_SEPARATOR,
    MAX_WINDOW,
    R2_FLAG_BELOW,
    REFERENCE_ETFS,
    RIDGE_ALPHA,
    RIDGE_ETFS,
    RIDGE_FACTORS,
    RIDGE_WINDOW,
    data_check_reason,
    insufficient_data_reason,
    min_obs,
    spread_name,
)
from core.factors.ols import ols_betas
from core.factors.ridge import ridge_betas

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]
ObjectArray = npt.NDArray[np.object_]


@dataclass(frozen=True, eq=False)
class FactorExposures:
    """Factor exposures of N symbols; rows follow ``factors`` (``FACTOR_NAMES`` order).

    Attributes
    ----------
    factors : tuple of str
        Factor names, ``FACTOR_NAMES``; row ``f`` of every (F, N) array.
    beta : ndarray of float64, shape (F, N)
        Exposure in return units; NaN where there is no value (see ``reason``).
    n_obs : ndarray of int64, shape (F, N)
        Valid returns used in the factor's window (0 for blocked symbols).
    r_squared : ndarray of float64, shape (F, N)
        r² of the regression behind the value (for ridge factors, of the one
        multivariate ridge, so equal across the six style factors of a symbol).
    resid_vol : ndarray of float64, shape (F, N)
        Residual standard deviation in daily return units (not annualized).
    window : ndarray of int64, shape (F,)
        Window length in sessions, ending at ``as_of``.
    reason : ndarray of object, shape (F, N)
        None where ``beta`` has a value, otherwise why not, e.g.
        ``"insufficient_data: 40 of 90 returns valid (need 68)"``.
    flag : ndarray of object, shape (F, N)
        None, ``"abs_beta_gt_5"``, ``"r2_near_zero"`` or both joined by ``","``; the
        value is kept, only flagged.
    """

    factors: tuple[str, ...]
    beta: FloatArray
    n_obs: IntArray
    r_squared: FloatArray
    resid_vol: FloatArray
    window: IntArray
    reason: ObjectArray
    flag: ObjectArray

    @property
    def n_symbols(self) -> int:
        """Number of symbols (columns)."""
        return int(self.beta.shape[1])


def validate_inputs(
    symbol_returns: npt.ArrayLike,
    etf_returns: Mapping[str, npt.ArrayLike],
    blocked: Mapping[int, str] | None = None,
) -> tuple[FloatArray, dict[str, FloatArray]]:
    """Check the engine's inputs and return them as float64 arrays (never copies needlessly).

    Raises
    ------
    ValueError
        If ``symbol_returns`` is not 2-D with at least ``MAX_WINDOW`` rows, an ETF of
        ``REFERENCE_ETFS`` is missing or not shape (T,), or a blocked index is out of
        range.
    """
    y = np.asarray(symbol_returns, dtype=np.float64)
    if y.ndim != 2:
        raise ValueError(f"symbol_returns must be 2-D (T, N), got shape {y.shape}")
    t_rows, n_cols = y.shape
    if t_rows < MAX_WINDOW:
        raise ValueError(
            f"symbol_returns has {t_rows} rows; the factor windows need at least {MAX_WINDOW}"
        )
    missing = [e for e in REFERENCE_ETFS if e not in etf_returns]
    if missing:
        raise ValueError(f"etf_returns lacks {', '.join(missing)}")
    etfs: dict[str, FloatArray] = {}
    for name in REFERENCE_ETFS:
        r = np.asarray(etf_returns[name], dtype=np.float64)
        if r.shape != (t_rows,):
            raise ValueError(f"etf_returns[{name!r}] must have shape ({t_rows},), got {r.shape}")
        etfs[name] = r
    for j in blocked or {}:
        if not 0 <= int(j) < n_cols:
            raise ValueError(f"blocked column {j} is outside 0..{n_cols - 1}")
    return y, etfs


def flags_for(beta: FloatArray, r_squared: FloatArray) -> ObjectArray:
    """Flags for values that are kept but suspicious.

    Parameters
    ----------
    beta, r_squared : ndarray of float64, same shape
        NaN entries are never flagged.

    Returns
    -------
    ndarray of object, same shape
        ``"abs_beta_gt_5"`` where ``|beta| > BETA_FLAG_ABS``, ``"r2_near_zero"`` where
        ``r_squared < R2_FLAG_BELOW``, both joined by ``","``, else None.
    """
    big = np.abs(beta) > BETA_FLAG_ABS
    low = r_squared < R2_FLAG_BELOW
    flag = np.full(beta.shape, None, dtype=object)
    flag[big & ~low] = FLAG_ABS_BETA
    flag[low & ~big] = FLAG_R2_NEAR_ZERO
    flag[big & low] = FLAG_ABS_BETA + FLAG_SEPARATOR + FLAG_R2_NEAR_ZERO
    return flag


def compute_factor_exposures(
    symbol_returns: npt.ArrayLike,
    etf_returns: Mapping[str, npt.ArrayLike],
    blocked: Mapping[int, str] | None = None,
) -> FactorExposures:
    """Every factor of ``FACTORS`` for every symbol, vectorized across symbols.

    Parameters
    ----------
    symbol_returns : array_like, shape (T, N)
        Daily simple returns of the adjusted closes of N symbols on the T most recent
        NYSE sessions ending at ``as_of`` (ascending; last row = ``as_of``); NaN =
        missing. ``T >= MAX_WINDOW`` (180); a factor with window W uses the last W
        rows only.
    etf_returns : mapping of str to array_like, shape (T,)
        Daily simple returns of every ETF of ``REFERENCE_ETFS`` on the same rows; NaN =
        missing. Extra keys are ignored.
    blocked : mapping of int to str, optional
        Column index → reason for symbols that failed the data checks: they get no
        value, ``n_obs`` 0 and reason ``"data_check: <reason>"``.

    Returns
    -------
    FactorExposures
        (F, N) arrays in ``FACTOR_NAMES`` order.

    Notes
    -----
    * OLS factors: OLS with intercept on the ETF's returns over the last 90 rows.
    * Ridge factors: one ridge (alpha 1.0) on the six style ETFs, standardized over
      the symbol's valid rows of the last 90, betas scaled back to return units.
    * Spread factors: OLS with intercept on ``long - short`` over the last 180 rows
      (NaN when either ETF is missing).

    A row is valid for a symbol and factor when the symbol's return and every
    regressor's return are finite; a missing ETF return removes the row for every
    symbol, a missing symbol return only for that symbol. Fewer than
    ``min_obs(W)`` valid rows gives NaN with reason ``insufficient_data``; a regressor
    constant over the valid rows gives NaN with reason ``zero_variance``.

    Raises
    ------
    ValueError
        If ``symbol_returns`` is not 2-D or has fewer than 180 rows, an ETF is missing
        or misshaped, or a blocked index is out of range.
    """
    y, etfs = validate_inputs(symbol_returns, etf_returns, blocked)
    blocked = dict(blocked or {})
    keep = np.ones(y.shape[1], dtype=bool)
    keep[list(blocked)] = False
    if not keep.all():
        y = y[:, keep]  # shape: (T, N - blocked)

    rows = _FactorRows.empty(len(FACTORS), y.shape[1])
    _fill_ridge_factors(rows, y, etfs)
    _fill_univariate_factors(rows, y, etfs)
    _restate_insufficient_data(rows)
    if not keep.all():
        rows = _with_blocked_columns(rows, keep, blocked)

    return FactorExposures(
        factors=FACTOR_NAMES,
        beta=rows.beta,
        n_obs=rows.n_obs,
        r_squared=rows.r_squared,
        resid_vol=rows.resid_vol,
        window=np.array([f.window for f in FACTORS], dtype=np.int64),
        reason=rows.reason,
        flag=flags_for(rows.beta, rows.r_squared),
    )


@dataclass(frozen=True, eq=False)
class _FactorRows:
    """The (F, N) result arrays of :class:`FactorExposures`, filled one factor row at a time."""

    beta: FloatArray
    n_obs: IntArray
    r_squared: FloatArray
    resid_vol: FloatArray
    reason: ObjectArray

    @classmethod
    def empty(cls, n_fac: int, n_cols: int) -> _FactorRows:
        """Rows without values: NaN, 0 observations, no reason."""
        return cls(
            beta=np.full((n_fac, n_cols), np.nan),
            n_obs=np.zeros((n_fac, n_cols), dtype=np.int64),
            r_squared=np.full((n_fac, n_cols), np.nan),
            resid_vol=np.full((n_fac, n_cols), np.nan),
            reason=np.full((n_fac, n_cols), None, dtype=object),
        )

    def put(self, name: str, beta: FloatArray, n_obs: IntArray, r_squared: FloatArray,
            resid_vol: FloatArray, reason: ObjectArray) -> None:
        """Store the results of factor ``name`` in its row."""
        i = FACTOR_NAMES.index(name)
        self.beta[i] = beta
        self.n_obs[i] = n_obs
        self.r_squared[i] = r_squared
        self.resid_vol[i] = resid_vol
        self.reason[i] = reason


def _fill_ridge_factors(rows: _FactorRows, y: FloatArray, etfs: Mapping[str, FloatArray]) -> None:
    """One ridge of every symbol on the six style ETFs over the last ``RIDGE_WINDOW`` rows."""
    ridge = ridge_betas(
        y[-RIDGE_WINDOW:],
        np.column_stack([etfs[e][-RIDGE_WINDOW:] for e in RIDGE_ETFS]),  # shape: (90, 6)
        RIDGE_ALPHA,
        min_obs(RIDGE_WINDOW),
        names=RIDGE_ETFS,
    )
    for k, spec in enumerate(RIDGE_FACTORS):
        rows.put(spec.name, ridge.beta[:, k], ridge.n_obs, ridge.r_squared, ridge.resid_vol,
                 ridge.reason)


def _fill_univariate_factors(
    rows: _FactorRows, y: FloatArray, etfs: Mapping[str, FloatArray]
) -> None:
    """OLS of every symbol on one ETF (``ols``) or on a long-minus-short spread (``spread``)."""
    for spec in FACTORS:
        if spec.family == "ridge":
            continue
        w = spec.window
        if spec.family == "ols":
            x, name = etfs[spec.etfs[0]][-w:], spec.etfs[0]
        else:
            with np.errstate(invalid="ignore"):  # inf - inf is just another missing value
                x = etfs[spec.etfs[0]][-w:] - etfs[spec.etfs[1]][-w:]
            name = spread_name(spec)
        res = ols_betas(y[-w:], x, min_obs(w), x_name=name)
        rows.put(spec.name, res.beta, res.n_obs, res.r_squared, res.resid_vol, res.reason)


def _restate_insufficient_data(rows: _FactorRows) -> None:
    """Reword ``insufficient_data`` reasons with the factor's window.

    The low-level texts do not know the window.
    """
    n_obs, reason = rows.n_obs, rows.reason
    for i, spec in enumerate(FACTORS):
        short = np.flatnonzero(n_obs[i] < min_obs(spec.window))
        for count in np.unique(n_obs[i, short]):
            reason[i, short[n_obs[i, short] == count]] = insufficient_data_reason(
                int(count), spec.window
            )


def _with_blocked_columns(
    rows: _FactorRows, keep: npt.NDArray[np.bool_], blocked: Mapping[int, str]
) -> _FactorRows:
    """All N columns: the computed ones where ``keep``, the blocked ones without a value
    and with reason ``data_check: <reason>``."""
    reason = _scatter(rows.reason, keep, None)
    for j, why in blocked.items():
        reason[:, int(j)] = data_check_reason(why)
    return _FactorRows(
        beta=_scatter(rows.beta, keep, np.nan),
        n_obs=_scatter(rows.n_obs, keep, 0),
        r_squared=_scatter(rows.r_squared, keep, np.nan),
        resid_vol=_scatter(rows.resid_vol, keep, np.nan),
        reason=reason,
    )


_A = TypeVar("_A", bound=np.ndarray)


def _scatter(a: _A, keep: npt.NDArray[np.bool_], fill: object) -> _A:
    """Put the kept columns of ``a`` (F, N_kept) back among N columns, ``fill`` elsewhere."""
    out = np.full((a.shape[0], keep.size), fill, dtype=a.dtype)  # shape: (F, N)
    out[:, keep] = a
    return cast(_A, out)
