"""Independent reference for the factor engine: statsmodels and scikit-learn, symbol by symbol.

``reference_factor_exposures`` recomputes ``engine.compute_factor_exposures`` one
symbol and one factor at a time with statsmodels ``OLS`` + ``add_constant`` and
scikit-learn ``StandardScaler`` + ``Ridge``. It shares no math with the engine: only
the factor definitions, the input checks and the rule selecting a symbol's valid rows
(symbol return and every regressor return finite). Used by the tests and by the
benchmark; far too slow for the nightly flow.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import numpy.typing as npt
from sklearn.linear_model import Ridge
from sklearn.preprocessing import StandardScaler
from statsmodels.regression.linear_model import OLS
from statsmodels.tools.tools import add_constant

from core.factors.definitions import (
    BETA_FLAG_ABS,
    FACTOR_NAMES,
    FACTORS,
    FLAG_ABS_BETA,
    FLAG_R2_NEAR_ZERO,
    FLAG_SEPARATOR,
    R2_FLAG_BELOW,
    RIDGE_ALPHA,
    RIDGE_ETFS,
    RIDGE_FACTORS,
    RIDGE_WINDOW,
    data_check_reason,
    insufficient_data_reason,
    min_obs,
    spread_name,
    zero_variance_reason,
)
from core.factors.engine import FactorExposures, validate_inputs


def reference_factor_exposures(
    symbol_returns: npt.ArrayLike,
    etf_returns: Mapping[str, npt.ArrayLike],
    blocked: Mapping[int, str] | None = None,
) -> FactorExposures:
    """Same contract as :func:`core.factors.engine.compute_factor_exposures`, one symbol at a time.

    Parameters
    ----------
    symbol_returns : array_like, shape (T, N)
        Daily simple returns of N symbols, last row = ``as_of``, T >= 180; NaN = missing.
    etf_returns : mapping of str to array_like, shape (T,)
        Daily simple returns of every reference ETF on the same rows.
    blocked : mapping of int to str, optional
        Column index → data-check failure; those symbols get no value.

    Returns
    -------
    FactorExposures
        OLS values from ``OLS(y, add_constant(x)).fit()`` (``params[1]``,
        ``rsquared``, ``sqrt(mse_resid)``); ridge values from ``Ridge(alpha=1.0)`` on
        ``StandardScaler().fit_transform(X)`` (``coef_ / scale_``, ``score``,
        ``sqrt(SSR / (n - K - 1))``).

    Raises
    ------
    ValueError
        As the engine does.
    """
    y, etfs = validate_inputs(symbol_returns, etf_returns, blocked)
    n_cols = y.shape[1]
    n_fac = len(FACTORS)
    blocked = dict(blocked or {})
    beta = np.full((n_fac, n_cols), np.nan)
    n_obs = np.zeros((n_fac, n_cols), dtype=np.int64)
    r2 = np.full((n_fac, n_cols), np.nan)
    resid_vol = np.full((n_fac, n_cols), np.nan)
    reason = np.full((n_fac, n_cols), None, dtype=object)
    flag = np.full((n_fac, n_cols), None, dtype=object)

    regressors: dict[str, np.ndarray] = {}
    for spec in FACTORS:
        if spec.family == "ols":
            regressors[spec.name] = etfs[spec.etfs[0]][-spec.window :]
        elif spec.family == "spread":
            long, short = (etfs[e][-spec.window :] for e in spec.etfs)
            regressors[spec.name] = long - short
    style = np.column_stack([etfs[e][-RIDGE_WINDOW:] for e in RIDGE_ETFS])
    ridge_rows = [FACTOR_NAMES.index(s.name) for s in RIDGE_FACTORS]

    for j in range(n_cols):
        if j in blocked:
            reason[:, j] = data_check_reason(blocked[j])
            continue
        for i, spec in enumerate(FACTORS):
            if spec.family == "ridge":
                continue
            yw = y[-spec.window :, j]
            xw = regressors[spec.name]
            valid = np.isfinite(yw) & np.isfinite(xw)
            n = int(valid.sum())
            n_obs[i, j] = n
            name = spec.etfs[0] if spec.family == "ols" else spread_name(spec)
            if n < min_obs(spec.window):
                reason[i, j] = insufficient_data_reason(n, spec.window)
            elif np.ptp(xw[valid]) == 0:
                reason[i, j] = zero_variance_reason([name], n)
            else:
                fit = OLS(yw[valid], add_constant(xw[valid], has_constant="add")).fit()
                beta[i, j] = fit.params[1]
                resid_vol[i, j] = np.sqrt(fit.mse_resid)
                r2[i, j] = fit.rsquared if np.ptp(yw[valid]) > 0 else np.nan

        yw = y[-RIDGE_WINDOW:, j]
        valid = np.isfinite(yw) & np.isfinite(style).all(axis=1)
        n = int(valid.sum())
        n_obs[ridge_rows, j] = n
        const = np.ptp(style[valid], axis=0) == 0 if n else np.zeros(len(RIDGE_ETFS), bool)
        if n < min_obs(RIDGE_WINDOW):
            reason[ridge_rows, j] = insufficient_data_reason(n, RIDGE_WINDOW)
        elif const.any():
            names = [e for e, c in zip(RIDGE_ETFS, const, strict=True) if c]
            reason[ridge_rows, j] = zero_variance_reason(names, n)
        else:
            scaler = StandardScaler().fit(style[valid])
            z = scaler.transform(style[valid])
            model = Ridge(alpha=RIDGE_ALPHA).fit(z, yw[valid])
            beta[ridge_rows, j] = model.coef_ / scaler.scale_
            ssr = float(np.sum((yw[valid] - model.predict(z)) ** 2))
            resid_vol[ridge_rows, j] = np.sqrt(ssr / (n - len(RIDGE_ETFS) - 1))
            r2[ridge_rows, j] = model.score(z, yw[valid]) if np.ptp(yw[valid]) > 0 else np.nan

        for i in range(n_fac):
            flag[i, j] = _flag(float(beta[i, j]), float(r2[i, j]))

    return FactorExposures(
        factors=FACTOR_NAMES,
        beta=beta,
        n_obs=n_obs,
        r_squared=r2,
        resid_vol=resid_vol,
        window=np.array([f.window for f in FACTORS], dtype=np.int64),
        reason=reason,
        flag=flag,
    )


def _flag(beta: float, r_squared: float) -> str | None:
    flags = []
    if abs(beta) > BETA_FLAG_ABS:
        flags.append(FLAG_ABS_BETA)
    if r_squared < R2_FLAG_BELOW:
        flags.append(FLAG_R2_NEAR_ZERO)
    return FLAG_SEPARATOR.join(flags) or None
