"""Risk contributions of core/risk/model.py against skfolio (a peer library, test-only) on
the same covariance: returns built so that their sample covariance is exactly the model's
``B Σ_f Bᵀ + D``, then skfolio's finite-difference contributions to the standard deviation."""

from __future__ import annotations

import numpy as np
import pytest
from skfolio import Portfolio, RiskMeasure

from core.risk.model import portfolio_risk


def _returns_with_covariance(cov: np.ndarray, n: int, seed: int) -> np.ndarray:
    """n rows whose sample covariance (ddof 1) equals ``cov`` to rounding."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, len(cov)))
    z -= z.mean(axis=0)
    # whiten: sample covariance of z becomes the identity exactly
    c = np.cov(z, rowvar=False)
    z = z @ np.linalg.inv(np.linalg.cholesky(c)).T
    return z @ np.linalg.cholesky(cov).T


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_position_contributions_equal_skfolios(seed: int) -> None:
    rng = np.random.default_rng(seed)
    n_assets, k = 8, 7
    b = rng.normal(size=(n_assets, k))
    s = rng.uniform(1e-5, 3e-4, size=n_assets)
    a = rng.normal(size=(k, k)) * 0.01
    factor_cov = a @ a.T
    big = b @ factor_cov @ b.T + np.diag(s)
    x = _returns_with_covariance(big, 400, seed)
    np.testing.assert_allclose(np.cov(x, rowvar=False), big, rtol=1e-9, atol=1e-15)
    w = rng.normal(size=n_assets)
    w /= np.abs(w).sum()  # weights (fractions of equity), long/short
    ours = portfolio_risk(w[None, :], b, s, factor_cov)
    theirs = Portfolio(X=x, weights=w)
    std = theirs.standard_deviation  # skfolio: sample standard deviation of w·x
    assert ours.volatility[0] == pytest.approx(std, rel=1e-8)
    contribution = theirs.contribution(measure=RiskMeasure.STANDARD_DEVIATION)
    np.testing.assert_allclose(ours.position_contribution[0], contribution, rtol=1e-5,
                               atol=1e-9)
