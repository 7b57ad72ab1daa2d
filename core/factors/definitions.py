"""Factor definitions: reference ETFs, factor list, windows, coverage rule, flags.

Windows are counted in NYSE sessions ending at ``as_of`` (the last row of every
window is ``as_of``). Returns are daily simple returns of adjusted closes.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

REFERENCE_ETFS: tuple[str, ...] = ("SPY", "TLT", "VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV")
"""Every ETF the factors regress on."""

MIN_COVERAGE = 0.75
"""Share of a window's returns that must be valid for a factor to get a value."""

RIDGE_ALPHA = 1.0
"""L2 penalty of the style ridge, on standardized regressors (scikit-learn's ``alpha``)."""

BETA_FLAG_ABS = 5.0
"""``|beta|`` above this is flagged (not capped)."""

R2_FLAG_BELOW = 1e-3
"""r² below this is flagged as "r² ≈ 0" (value kept)."""

FLAG_ABS_BETA = "abs_beta_gt_5"
FLAG_R2_NEAR_ZERO = "r2_near_zero"
FLAG_SEPARATOR = ","
"""When both flags apply they are joined: ``"abs_beta_gt_5,r2_near_zero"``."""

FactorFamily = Literal["ols", "ridge", "spread"]


@dataclass(frozen=True)
class FactorSpec:
    """One factor.

    Attributes
    ----------
    name : str
        Stable identifier stored with the exposure.
    family : {"ols", "ridge", "spread"}
        ``ols``: univariate OLS with intercept on ``etfs[0]``. ``ridge``: coefficient
        of ``etfs[0]`` in the one multivariate ridge on all ridge ETFs. ``spread``:
        univariate OLS with intercept on ``etfs[0] - etfs[1]`` (long minus short).
    window : int
        Number of most recent daily returns used (last row = ``as_of``).
    etfs : tuple of str
        The ETF(s) the factor is defined on.
    """

    name: str
    family: FactorFamily
    window: int
    etfs: tuple[str, ...]


FACTORS: tuple[FactorSpec, ...] = (
    FactorSpec("market_beta", "ols", 90, ("SPY",)),
    FactorSpec("ir_beta", "ols", 90, ("TLT",)),
    FactorSpec("value", "ridge", 90, ("VTV",)),
    FactorSpec("growth", "ridge", 90, ("VUG",)),
    FactorSpec("momentum", "ridge", 90, ("MTUM",)),
    FactorSpec("quality", "ridge", 90, ("QUAL",)),
    FactorSpec("size", "ridge", 90, ("IWM",)),
    FactorSpec("low_volatility", "ridge", 90, ("USMV",)),
    FactorSpec("growth_value_spread", "spread", 180, ("VUG", "VTV")),
    FactorSpec("momentum_spread", "spread", 180, ("MTUM", "SPY")),
    FactorSpec("size_spread", "spread", 180, ("IWM", "SPY")),
    FactorSpec("quality_spread", "spread", 180, ("QUAL", "SPY")),
)
"""All factors, in the order of every ``(F, N)`` result array."""

FACTOR_NAMES: tuple[str, ...] = tuple(f.name for f in FACTORS)

MAX_WINDOW: int = max(f.window for f in FACTORS)
"""The longest window (180): the engine needs at least this many rows of returns."""

RIDGE_FACTORS: tuple[FactorSpec, ...] = tuple(f for f in FACTORS if f.family == "ridge")
"""The six style factors of the multivariate ridge, in ``FACTORS`` order."""

RIDGE_ETFS: tuple[str, ...] = tuple(f.etfs[0] for f in RIDGE_FACTORS)
"""The ridge regressors, column order of the ridge design matrix."""

RIDGE_WINDOW: int = RIDGE_FACTORS[0].window


def min_obs(window: int) -> int:
    """Minimum number of valid returns for a window: ``ceil(MIN_COVERAGE * window)``.

    Parameters
    ----------
    window : int
        Window length in sessions (positive).

    Returns
    -------
    int
        68 for 90, 135 for 180.
    """
    if window <= 0:
        raise ValueError(f"window must be positive, got {window}")
    # round() first so that e.g. 0.7 * 100 = 70.00000000000001 does not become 71
    return math.ceil(round(MIN_COVERAGE * window, 9))


def insufficient_data_reason(n_valid: int, window: int) -> str:
    """Reason text for a window with fewer than ``min_obs(window)`` valid returns."""
    return f"insufficient_data: {n_valid} of {window} returns valid (need {min_obs(window)})"


def zero_variance_reason(names: Sequence[str], n_valid: int) -> str:
    """Reason text for regressor(s) constant over the valid rows of a window."""
    return f"zero_variance: {', '.join(names)} constant over the {n_valid} valid rows"


def data_check_reason(reason: str) -> str:
    """Reason text for a symbol the caller excluded after a failed data check."""
    return f"data_check: {reason}"


def spread_name(spec: FactorSpec) -> str:
    """Name of a spread regressor, e.g. ``"VUG-VTV"``."""
    return "-".join(spec.etfs)
