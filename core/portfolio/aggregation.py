"""Aggregation of per-symbol factor betas and sectors to one portfolio.

Position ``i`` has a signed market value ``MV_i`` (shorts negative, in the portfolio
currency) and weight ``w_i = MV_i / equity``, where ``equity = cash + Σ MV``; shorts
thus count negative. The portfolio beta on factor ``f`` is ``Σ w_i β_if`` over the
positions *covered* for ``f`` (both a finite market value and a finite beta), and its
dollar exposure ``Σ MV_i β_if`` (= beta × equity): the P&L, in currency, of a unit
move of the factor. Uncovered positions are left out rather than guessed, and the
share of the book that is covered is reported next to every aggregate.

Degenerate data (empyrical style): when ``equity`` is not > 0 (or not finite) the
weights are undefined and every weight-based result (betas, covered weights,
contributions, sector weights) is NaN, while dollar amounts are still computed. A
covered share over a book with no gross exposure is NaN (0 / 0). A sum over no
covered position is 0 (no known exposure), so read a beta with its covered share.
A market value that is NaN (not finite) means the position could not be valued: it
is left out of every sum, the gross exposure included. All float64, vectorized.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]

UNCLASSIFIED = "Unclassified"
"""Sector of positions whose sector is None, empty or blank."""


@dataclass(frozen=True, eq=False)
class FactorAggregate:
    """Factor exposures of one portfolio; every array has shape (F,), float64.

    Attributes
    ----------
    factors : tuple of str
        Factor names, the order of every array.
    beta : ndarray
        ``Σ_i w_i β_if`` over the positions covered for ``f``, ``w_i = MV_i / equity``
        (shorts negative). NaN when equity is not > 0.
    dollar_exposure : ndarray
        ``Σ_i MV_i β_if`` over the same positions, in the portfolio currency
        (= ``beta × equity`` when equity > 0).
    covered_share : ndarray
        ``Σ_{i covered for f} |MV_i| / Σ_i |MV_i|``: share of the gross exposure of the
        valued positions that has a beta, in [0, 1]; NaN when the gross exposure is 0.
    covered_weight : ndarray
        ``Σ_{i covered for f} w_i``: signed share of equity covered (a covered short
        lowers it). NaN when equity is not > 0.
    """

    factors: tuple[str, ...]
    beta: FloatArray
    dollar_exposure: FloatArray
    covered_share: FloatArray
    covered_weight: FloatArray


def _market_values(market_values: npt.ArrayLike) -> FloatArray:
    mv = np.asarray(market_values, dtype=np.float64)
    if mv.ndim != 1:
        raise ValueError(f"market_values must be 1-D (P,), got shape {mv.shape}")
    return mv


def _betas(betas: npt.ArrayLike, n_positions: int) -> FloatArray:
    b = np.asarray(betas, dtype=np.float64)
    if b.ndim != 2 or b.shape[0] != n_positions:
        raise ValueError(f"betas must have shape ({n_positions}, F), got {b.shape}")
    return b


def _weight_base(equity: float) -> float:
    """The equity weights divide by; NaN when they are undefined (equity not finite > 0)."""
    e = float(equity)
    return e if np.isfinite(e) and e > 0 else np.nan


def aggregate_factors(
    market_values: npt.ArrayLike,
    betas: npt.ArrayLike,
    equity: float,
    factors: Sequence[str],
) -> FactorAggregate:
    """Portfolio factor betas and dollar exposures from the positions' symbol betas.

    Parameters
    ----------
    market_values : array_like, shape (P,)
        Signed market value of each position (shorts negative), in the portfolio
        currency; NaN = not valued (left out of every sum).
    betas : array_like, shape (P, F)
        Beta of each position's symbol on each factor (per unit of factor return);
        NaN = no value (the position is uncovered for that factor).
    equity : float
        Portfolio equity, ``cash + Σ MV``, in the same currency.
    factors : sequence of str, length F
        Factor names (e.g. :data:`core.factors.definitions.FACTOR_NAMES`).

    Returns
    -------
    FactorAggregate
        ``beta``, ``dollar_exposure``, ``covered_share`` and ``covered_weight``, each
        shape (F,); see its attributes. ``dollar_exposure == beta × equity``.

    Notes
    -----
    Equity not > 0 is degenerate: ``beta`` and ``covered_weight`` are NaN,
    ``dollar_exposure`` and ``covered_share`` are still computed. A factor with no
    covered position has ``beta = dollar_exposure = covered_weight = 0`` and
    ``covered_share = 0``.

    Raises
    ------
    ValueError
        If the shapes disagree or ``len(factors) != F``.
    """
    mv = _market_values(market_values)
    b = _betas(betas, mv.size)
    names = tuple(factors)
    if len(names) != b.shape[1]:
        raise ValueError(f"factors has {len(names)} names for {b.shape[1]} columns of betas")
    valued = np.isfinite(mv)
    mv0 = np.where(valued, mv, 0.0)  # shape: (P,)
    covered = valued[:, None] & np.isfinite(b)  # shape: (P, F)
    b0 = np.where(covered, b, 0.0)  # shape: (P, F)
    dollar = mv0 @ b0  # shape: (F,)
    covered_mv = mv0 @ covered  # shape: (F,), Σ signed MV of covered positions
    gross = float(np.abs(mv0).sum())
    with np.errstate(divide="ignore", invalid="ignore"):
        covered_share = (np.abs(mv0) @ covered) / gross
    base = _weight_base(equity)
    return FactorAggregate(
        factors=names,
        beta=dollar / base,
        dollar_exposure=dollar,
        covered_share=np.asarray(covered_share, dtype=np.float64),
        covered_weight=covered_mv / base,
    )


def position_factor_contributions(
    market_values: npt.ArrayLike,
    betas: npt.ArrayLike,
    equity: float,
) -> FloatArray:
    """Each position's contribution ``w_i β_if`` to the portfolio beta.

    Parameters
    ----------
    market_values : array_like, shape (P,)
        Signed market values (shorts negative); NaN = not valued.
    betas : array_like, shape (P, F)
        Symbol betas; NaN = no value.
    equity : float
        Portfolio equity (``cash + Σ MV``).

    Returns
    -------
    ndarray, shape (P, F)
        ``MV_i / equity × β_if``; NaN where the beta or the market value is missing,
        and everywhere when equity is not > 0. The column sums over the finite entries
        (``np.nansum(..., axis=0)``) equal :func:`aggregate_factors`' ``beta``.

    Raises
    ------
    ValueError
        If the shapes disagree.
    """
    mv = _market_values(market_values)
    b = _betas(betas, mv.size)
    w = mv / _weight_base(equity)  # shape: (P,)
    return w[:, None] * b


def sector_exposure(
    market_values: npt.ArrayLike,
    sectors: Sequence[str | None],
    equity: float,
) -> dict[str, tuple[float, float]]:
    """Net signed exposure of each sector, in currency and as a share of equity.

    Parameters
    ----------
    market_values : array_like, shape (P,)
        Signed market values (shorts negative); NaN = not valued (left out).
    sectors : sequence of str or None, length P
        Sector of each position's symbol; None, empty or blank = ``"Unclassified"``.
        Names are stripped of surrounding blanks.
    equity : float
        Portfolio equity (``cash + Σ MV``).

    Returns
    -------
    dict of str to (float, float)
        Sector → (``Σ MV`` of its valued positions, that sum / equity), sorted by
        sector name. The weight is NaN when equity is not > 0. A sector whose
        positions are all unvalued does not appear.

    Raises
    ------
    ValueError
        If ``len(sectors) != P``.
    """
    mv = _market_values(market_values)
    if len(sectors) != mv.size:
        raise ValueError(f"sectors has {len(sectors)} entries for {mv.size} market values")
    names = np.array(
        [(s.strip() if isinstance(s, str) else "") or UNCLASSIFIED for s in sectors],
        dtype=object,
    )
    valued = np.isfinite(mv)
    if not valued.any():
        return {}
    keys, inverse = np.unique(names[valued].astype(str), return_inverse=True)
    dollars = np.bincount(inverse, weights=mv[valued], minlength=keys.size)  # shape: (S,)
    weights = dollars / _weight_base(equity)
    return {str(k): (float(d), float(w)) for k, d, w in zip(keys, dollars, weights, strict=True)}
