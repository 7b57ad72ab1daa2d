"""Tests of core.factors.engine.compute_factor_exposures.

The engine must equal the statsmodels / scikit-learn reference (symbol by symbol) to
1e-9 on a universe with every awkward case; planted betas are recovered; windows are
the last W rows; coverage, blocked symbols, flags and caller mistakes behave as
documented.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from core.factors.definitions import (
    FACTOR_NAMES,
    FACTORS,
    MAX_WINDOW,
    REFERENCE_ETFS,
    RIDGE_FACTORS,
    min_obs,
)
from core.factors.engine import FactorExposures, compute_factor_exposures
from core.factors.reference import reference_factor_exposures

T = 200
ROW = {name: i for i, name in enumerate(FACTOR_NAMES)}

# symbol columns with a planted role
PLANTED, RECENT, BELOW, ABOVE, BLOCKED, HUGE, ORTHOGONAL, STALE = range(8)
SPY_GAPS = (T - 30, T - 75)  # inside the 90-row window
VTV_GAP = T - 10  # ridge rows and the growth-value spread
IWM_GAP = T - 150  # only the 180-row size spread
TLT_GAP = T - 120  # outside every TLT window


def _market(seed: int = 0, n: int = 50) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    mkt = 0.0004 + 0.011 * rng.standard_normal(T)
    etfs: dict[str, np.ndarray] = {}
    for i, name in enumerate(REFERENCE_ETFS):
        load = -0.25 if name == "TLT" else 0.75 + 0.07 * i
        etfs[name] = load * mkt + (0.003 + 0.0005 * i) * rng.standard_normal(T) + 1e-4 * i
    X = np.column_stack([etfs[e] for e in REFERENCE_ETFS])  # shape: (T, 8)
    B = rng.normal(0.12, 0.35, (n, len(REFERENCE_ETFS)))
    y = 0.0002 + X @ B.T + 0.017 * rng.standard_normal((T, n)) * rng.uniform(0.4, 2.0, n)

    gappy = np.arange(n) >= 10
    y[(rng.random((T, n)) < 0.03) & gappy] = np.nan
    y[:, PLANTED] = 0.0003 + 1.3 * etfs["SPY"] + 2e-5 * rng.standard_normal(T)
    y[: T - 100, RECENT] = np.nan
    spy_ok = np.isfinite(etfs["SPY"])  # before the gaps are planted: all True
    last90 = np.arange(T - 90, T)
    others = [r for r in last90 if r not in SPY_GAPS]
    y[others[: len(others) - 67], BELOW] = np.nan  # 67 rows valid with SPY
    y[others[: len(others) - 68], ABOVE] = np.nan  # 68 rows valid with SPY
    assert spy_ok.all()
    y[:, HUGE] = 8.0 * etfs["SPY"] + 0.004 * rng.standard_normal(T)
    y[:, STALE] = 0.0

    for name, row in (("SPY", SPY_GAPS), ("VTV", VTV_GAP), ("IWM", IWM_GAP), ("TLT", TLT_GAP)):
        etfs[name][np.asarray(row)] = np.nan

    # a symbol with no linear relation to SPY over its 90-row window: r² ≈ 0
    spy = etfs["SPY"][-90:]
    ok = np.isfinite(spy)
    z = 0.01 * rng.standard_normal(90)
    xc = spy[ok] - spy[ok].mean()
    z[ok] -= xc * (xc @ (z[ok] - z[ok].mean())) / (xc @ xc)
    y[-90:, ORTHOGONAL] = z
    return y, etfs


BLOCK = {BLOCKED: "non_positive_price on 2024-03-05"}


@pytest.fixture(scope="module")
def universe() -> tuple[np.ndarray, dict[str, np.ndarray]]:
    return _market()


@pytest.fixture(scope="module")
def engine(universe: tuple[np.ndarray, dict[str, np.ndarray]]) -> FactorExposures:
    y, etfs = universe
    return compute_factor_exposures(y, etfs, blocked=BLOCK)


@pytest.fixture(scope="module")
def reference(universe: tuple[np.ndarray, dict[str, np.ndarray]]) -> FactorExposures:
    y, etfs = universe
    return reference_factor_exposures(y, etfs, blocked=BLOCK)


def test_definitions() -> None:
    assert FACTOR_NAMES == (
        "market_beta",
        "ir_beta",
        "value",
        "growth",
        "momentum",
        "quality",
        "size",
        "low_volatility",
        "growth_value_spread",
        "momentum_spread",
        "size_spread",
        "quality_spread",
    )
    assert MAX_WINDOW == 180 == max(f.window for f in FACTORS)
    assert [f.etfs[0] for f in RIDGE_FACTORS] == ["VTV", "VUG", "MTUM", "QUAL", "IWM", "USMV"]
    assert (min_obs(90), min_obs(180), min_obs(4), min_obs(100)) == (68, 135, 3, 75)


def test_engine_equals_reference(engine: FactorExposures, reference: FactorExposures) -> None:
    assert engine.factors == reference.factors == FACTOR_NAMES
    assert_array_equal(engine.window, reference.window)
    assert_array_equal(engine.n_obs, reference.n_obs)
    for field in ("beta", "r_squared", "resid_vol"):
        got, ref = getattr(engine, field), getattr(reference, field)
        assert_array_equal(np.isnan(got), np.isnan(ref), err_msg=field)
        assert_allclose(got, ref, rtol=1e-9, atol=1e-12, err_msg=field)
    assert_allclose(engine.beta, reference.beta, rtol=0, atol=1e-9)
    assert_array_equal(engine.reason, reference.reason)
    assert_array_equal(engine.flag, reference.flag)


def test_output_shapes_and_types(engine: FactorExposures) -> None:
    f, n = len(FACTORS), 50
    assert engine.n_symbols == n
    for field in ("beta", "n_obs", "r_squared", "resid_vol", "reason", "flag"):
        assert getattr(engine, field).shape == (f, n), field
    assert engine.beta.dtype == np.float64 and engine.n_obs.dtype == np.int64
    assert engine.reason.dtype == object and engine.flag.dtype == object
    assert_array_equal(engine.window, [90] * 8 + [180] * 4)
    # a value and its reason exclude each other
    assert_array_equal(np.isnan(engine.beta), engine.reason != None)  # noqa: E711


def test_planted_market_beta(engine: FactorExposures) -> None:
    assert_allclose(engine.beta[ROW["market_beta"], PLANTED], 1.3, atol=1e-3)
    assert engine.r_squared[ROW["market_beta"], PLANTED] > 0.99


def test_etf_gaps_remove_rows_for_every_symbol(engine: FactorExposures) -> None:
    complete = 5  # a symbol without gaps of its own
    n = engine.n_obs[:, complete]
    assert n[ROW["market_beta"]] == 88  # two SPY gaps
    assert n[ROW["ir_beta"]] == 90  # the TLT gap lies before the window
    assert (n[[ROW[s.name] for s in RIDGE_FACTORS]] == 89).all()  # one VTV gap
    assert n[ROW["growth_value_spread"]] == 179
    assert n[ROW["momentum_spread"]] == 178
    assert n[ROW["size_spread"]] == 177  # SPY twice, IWM once
    assert n[ROW["quality_spread"]] == 178


def test_coverage_rule(engine: FactorExposures) -> None:
    mb = ROW["market_beta"]
    assert engine.n_obs[mb, BELOW] == 67 and np.isnan(engine.beta[mb, BELOW])
    assert engine.reason[mb, BELOW] == "insufficient_data: 67 of 90 returns valid (need 68)"
    assert engine.n_obs[mb, ABOVE] == 68 and np.isfinite(engine.beta[mb, ABOVE])
    assert engine.reason[mb, ABOVE] is None
    # the recently listed symbol has the 90-row factors but not the 180-row spreads
    assert np.isfinite(engine.beta[:8, RECENT]).all()
    assert np.isnan(engine.beta[8:, RECENT]).all()
    assert engine.reason[ROW["growth_value_spread"], RECENT] == (
        "insufficient_data: 99 of 180 returns valid (need 135)"
    )


def test_blocked_symbol(engine: FactorExposures) -> None:
    assert np.isnan(engine.beta[:, BLOCKED]).all()
    assert (engine.n_obs[:, BLOCKED] == 0).all()
    assert (engine.reason[:, BLOCKED] == "data_check: non_positive_price on 2024-03-05").all()
    assert (engine.flag[:, BLOCKED] == None).all()  # noqa: E711


def test_flags(engine: FactorExposures) -> None:
    mb = ROW["market_beta"]
    assert engine.beta[mb, HUGE] > 5 and engine.flag[mb, HUGE] == "abs_beta_gt_5"
    assert engine.r_squared[mb, ORTHOGONAL] < 1e-20
    assert engine.flag[mb, ORTHOGONAL] == "r2_near_zero"
    assert engine.flag[mb, PLANTED] is None
    # a stale (constant) series: beta 0, r² undefined, not flagged
    assert_allclose(engine.beta[:, STALE], 0.0, atol=1e-14)
    assert np.isnan(engine.r_squared[:, STALE]).all()
    assert (engine.flag[:, STALE] == None).all()  # noqa: E711


def test_accounting_identity(
    universe: tuple[np.ndarray, dict[str, np.ndarray]], engine: FactorExposures
) -> None:
    # TSS = explained + residual:  Syy = beta² Sxx + resid_vol² (n - 2)
    y, etfs = universe
    mb = ROW["market_beta"]
    x = etfs["SPY"][-90:]
    for j in (PLANTED, 11, 23, 40):
        ok = np.isfinite(y[-90:, j]) & np.isfinite(x)
        yc = y[-90:, j][ok] - y[-90:, j][ok].mean()
        xc = x[ok] - x[ok].mean()
        n = ok.sum()
        explained = engine.beta[mb, j] ** 2 * (xc @ xc)
        residual = engine.resid_vol[mb, j] ** 2 * (n - 2)
        assert_allclose(explained + residual, yc @ yc, rtol=1e-10)
        assert_allclose(engine.r_squared[mb, j], explained / (yc @ yc), rtol=1e-9)


def test_only_the_last_window_rows_matter(
    universe: tuple[np.ndarray, dict[str, np.ndarray]], engine: FactorExposures
) -> None:
    y, etfs = universe
    older = y.copy()
    older[: T - 180] = 0.5  # before every window
    same = compute_factor_exposures(older, etfs, blocked=BLOCK)
    assert_array_equal(same.beta, engine.beta)
    changed = y.copy()
    changed[T - 91, :] = 0.25  # inside the 180-row windows only
    moved = compute_factor_exposures(changed, etfs, blocked=BLOCK)
    assert_array_equal(moved.beta[:8], engine.beta[:8])
    spreads = np.isfinite(engine.beta[8:])
    assert (moved.beta[8:][spreads] != engine.beta[8:][spreads]).all()


def test_symbol_order_and_no_mutation(
    universe: tuple[np.ndarray, dict[str, np.ndarray]], engine: FactorExposures
) -> None:
    y, etfs = universe
    y_before = y.copy()
    etfs_before = {k: v.copy() for k, v in etfs.items()}
    perm = np.random.default_rng(99).permutation(y.shape[1])
    inverse = np.argsort(perm)
    blocked = {int(inverse[j]): why for j, why in BLOCK.items()}
    shuffled = compute_factor_exposures(y[:, perm], etfs, blocked=blocked)
    assert_allclose(shuffled.beta, engine.beta[:, perm], rtol=1e-12, atol=1e-15)
    assert_array_equal(shuffled.reason, engine.reason[:, perm])
    assert_array_equal(shuffled.flag, engine.flag[:, perm])
    compute_factor_exposures(y, etfs, blocked=BLOCK)
    assert_array_equal(y, y_before)
    for k, v in etfs.items():
        assert_array_equal(v, etfs_before[k])


def test_exactly_max_window_rows_is_enough() -> None:
    y, etfs = _market(seed=3, n=12)
    short = compute_factor_exposures(y[-180:], {k: v[-180:] for k, v in etfs.items()})
    full = compute_factor_exposures(y, etfs)
    assert_array_equal(short.beta, full.beta)


def test_caller_mistakes_raise() -> None:
    y, etfs = _market(seed=4, n=10)
    with pytest.raises(ValueError, match="at least 180"):
        compute_factor_exposures(y[-179:], {k: v[-179:] for k, v in etfs.items()})
    with pytest.raises(ValueError, match="2-D"):
        compute_factor_exposures(y[:, 0], etfs)
    with pytest.raises(ValueError, match="lacks USMV"):
        compute_factor_exposures(y, {k: v for k, v in etfs.items() if k != "USMV"})
    with pytest.raises(ValueError, match="shape"):
        compute_factor_exposures(y, {**etfs, "SPY": etfs["SPY"][1:]})
    for bad in (10, -1):
        with pytest.raises(ValueError, match="blocked"):
            compute_factor_exposures(y, etfs, blocked={bad: "stale"})


def test_empty_universe() -> None:
    _, etfs = _market(seed=5, n=10)
    out = compute_factor_exposures(np.empty((T, 0)), etfs)
    assert out.beta.shape == (len(FACTORS), 0)
