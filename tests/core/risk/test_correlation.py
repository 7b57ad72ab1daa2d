"""Tests of core.risk.correlation.

Layers: an independent reference (pandas ``DataFrame.corr(min_periods=20)``, Higham's
published example, a direct numerical minimisation of the Frobenius distance),
planted structure (blocks, an overlap just too short, a non-PSD pairwise matrix),
hand-computed statistics on asymmetric weights, and invariances (column order, no
mutation of the inputs).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpy.testing import assert_allclose, assert_array_equal
from scipy.optimize import minimize

from core.risk.correlation import (
    correlation_summaries,
    correlation_summary,
    nearest_correlation,
    pairwise_correlation,
)

T = 90


def _returns(seed: int, p: int = 14) -> np.ndarray:
    """Asymmetric daily log returns with every awkward case.

    Column 0: complete. 1: recently listed (last 25 rows). 2: 19 valid rows (below the
    overlap). 3: constant (a stale price). 4: mean far from zero. 5: valid in the first
    50 rows only, so its overlap with column 1 is 0. Rest: one common factor with
    varied loadings (some negative), scattered gaps.
    """
    rng = np.random.default_rng(seed)
    f = 0.011 * rng.standard_normal(T) + 0.003 * rng.standard_t(3, T)
    load = rng.normal(0.6, 0.7, p)
    x = np.outer(f, load) + 0.015 * rng.standard_normal((T, p)) * rng.uniform(0.3, 2.0, p)
    x += rng.normal(0.0, 5e-4, p)
    x[rng.random((T, p)) < 0.06] = np.nan
    x[:, 0] = f + 0.004 * rng.standard_normal(T)
    x[: T - 25, 1] = np.nan
    x[:, 2] = np.where(np.arange(T) % 4 == 1, x[:, 2], np.nan)
    x[np.flatnonzero(np.isfinite(x[:, 2]))[19:], 2] = np.nan
    x[:, 3] = 0.0
    x[:, 4] += 0.8
    x[50:, 5] = np.nan
    return x


def _is_psd(a: np.ndarray, tol: float = 1e-10) -> bool:
    return bool(np.linalg.eigvalsh(a)[0] >= -tol)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_pandas_pairwise_complete(seed: int) -> None:
    x = _returns(seed)
    before = x.copy()
    corr, n = pairwise_correlation(x, min_overlap=20)
    ref = pd.DataFrame(x).corr(min_periods=20).to_numpy()
    assert_array_equal(np.isnan(corr), np.isnan(ref))
    assert_allclose(corr, ref, rtol=0, atol=1e-12, equal_nan=True)
    valid = np.isfinite(x)
    expected_n = np.array(
        [[np.sum(valid[:, i] & valid[:, j]) for j in range(14)] for i in range(14)]
    )
    assert_array_equal(n, expected_n)
    assert_array_equal(x, before)  # input not mutated
    # the recently listed column keeps its own pairs, and shortens only them
    assert np.isfinite(corr[1, 0]) and 20 <= n[1, 0] <= 25
    assert n[0, 6] > 70 and n[6, 7] > 60
    assert np.isnan(corr[2, 2]) and np.isnan(corr[2, 0])  # 19 valid rows
    assert np.isnan(corr[3]).all()  # constant column: zero variance, diagonal too
    assert n[1, 5] == 0 and np.isnan(corr[1, 5])
    assert corr[0, 0] == 1.0 and corr[4, 4] == 1.0


def test_pandas_equality_with_other_min_overlap() -> None:
    x = _returns(3)
    corr, _ = pairwise_correlation(x, min_overlap=5)
    ref = pd.DataFrame(x).corr(min_periods=5).to_numpy()
    assert_allclose(corr, ref, rtol=0, atol=1e-12, equal_nan=True)
    assert np.isfinite(corr[2, 0])  # 19 rows are enough now


def test_caller_mistakes_raise() -> None:
    with pytest.raises(ValueError, match="2-D"):
        pairwise_correlation(np.zeros(5))
    with pytest.raises(ValueError, match="min_overlap"):
        pairwise_correlation(np.zeros((5, 2)), min_overlap=0)
    with pytest.raises(ValueError, match="square"):
        nearest_correlation(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="finite"):
        nearest_correlation(np.array([[1.0, np.nan], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="weights"):
        correlation_summary(np.zeros((30, 3)), np.ones(2))
    with pytest.raises(ValueError, match="weights"):
        correlation_summary(np.zeros((30, 2)), np.array([1.0, np.nan]))


def test_insufficient_overlap_is_nan_listed_and_zero_before_repair() -> None:
    rng = np.random.default_rng(7)
    x = 0.01 * rng.standard_normal((T, 4))
    x[:, 3] = 0.7 * x[:, 0] + 0.006 * rng.standard_normal(T)
    x[50:, 1] = np.nan  # rows 0..49
    x[:36, 2] = np.nan  # rows 36..89: overlap with column 1 = 14 rows
    s = correlation_summary(x, np.array([0.4, 0.3, -0.2, 0.1]))
    assert s.n_overlap[1, 2] == 14
    assert np.isnan(s.raw[1, 2]) and np.isnan(s.raw[2, 1])
    assert s.insufficient_pairs == [(1, 2)]
    assert not s.repaired
    assert s.matrix[1, 2] == 0.0 and s.matrix[2, 1] == 0.0
    other = np.isfinite(s.raw)
    assert_array_equal(s.matrix[other], s.raw[other])


def _non_psd_returns(seed: int = 11) -> np.ndarray:
    """Pairwise deletion that breaks PSD: A ~ B on rows 0-29, B ~ C on 30-59, A ~ -C on
    60-89 (each pair estimated on its own 30 rows)."""
    rng = np.random.default_rng(seed)
    x = np.full((T, 3), np.nan)
    z = 0.01 * rng.standard_normal(T)
    x[:30, 0] = z[:30]
    x[:30, 1] = 1.3 * z[:30] + 0.002 * rng.standard_normal(30)
    x[30:60, 1] = z[30:60]
    x[30:60, 2] = 0.8 * z[30:60] + 0.003 * rng.standard_normal(30)
    x[60:, 0] = z[60:]
    x[60:, 2] = -0.6 * z[60:] + 0.002 * rng.standard_normal(30)
    return x


def _naive_clip(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    b = (v * np.maximum(w, 0.0)) @ v.T
    d = 1.0 / np.sqrt(np.diag(b))
    return b * np.outer(d, d)


def test_non_psd_pairwise_matrix_is_repaired() -> None:
    x = _non_psd_returns()
    s = correlation_summary(x, np.array([0.5, 0.3, 0.2]))
    raw = s.raw
    assert raw[0, 1] > 0.9 and raw[1, 2] > 0.9 and raw[0, 2] < -0.9
    assert np.linalg.eigvalsh(raw)[0] < -0.5  # badly non-PSD
    assert s.repaired and s.insufficient_pairs == []
    m = s.matrix
    assert_array_equal(m, m.T)
    assert_array_equal(np.diag(m), np.ones(3))
    assert _is_psd(m)
    assert np.abs(m).max() <= 1.0
    naive = _naive_clip(raw)
    # Higham's projection is the nearest; clipping eigenvalues and rescaling is not
    assert np.linalg.norm(m - raw) < np.linalg.norm(naive - raw) - 1e-6


def test_higham_published_example() -> None:
    # Higham (2002), section 4: the nearest correlation matrix of this 3 x 3 matrix
    a = np.array([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 1.0, 1.0]])
    x = nearest_correlation(a)
    expected = np.array([[1.0, 0.7607, 0.1573], [0.7607, 1.0, 0.7607], [0.1573, 0.7607, 1.0]])
    assert_allclose(x, expected, atol=5e-5)


def _reference_nearest(a: np.ndarray) -> np.ndarray:
    """Independent reference: minimise ||V V' - A||_F over V with unit rows (BFGS)."""
    p = a.shape[0]

    def unit(v: np.ndarray) -> np.ndarray:
        v = v.reshape(p, p)
        return v / np.linalg.norm(v, axis=1, keepdims=True)

    def loss(v: np.ndarray) -> float:
        u = unit(v)
        return float(np.sum((u @ u.T - a) ** 2))

    start = np.linalg.cholesky(_naive_clip(a) + 1e-9 * np.eye(p)).ravel()
    res = minimize(loss, start, method="BFGS", options={"gtol": 1e-12, "maxiter": 5000})
    u = unit(res.x)
    return u @ u.T


def test_nearest_matches_direct_minimisation_on_asymmetric_case() -> None:
    a = np.array(
        [
            [1.0, 0.92, -0.35, 0.61],
            [0.92, 1.0, 0.48, -0.12],
            [-0.35, 0.48, 1.0, 0.88],
            [0.61, -0.12, 0.88, 1.0],
        ]
    )
    assert np.linalg.eigvalsh(a)[0] < -0.1
    x = nearest_correlation(a)
    ref = _reference_nearest(a)
    assert np.linalg.norm(x - a) <= np.linalg.norm(ref - a) + 1e-9
    assert_allclose(x, ref, atol=1e-5)
    assert np.linalg.norm(x - a) < np.linalg.norm(_naive_clip(a) - a) - 1e-3
    assert _is_psd(x)
    assert_array_equal(np.diag(x), np.ones(4))
    assert_array_equal(x, x.T)


def test_psd_input_is_returned_unchanged() -> None:
    rng = np.random.default_rng(5)
    x = rng.standard_normal((200, 6)) @ rng.standard_normal((6, 6))
    c = np.corrcoef(x, rowvar=False)
    before = c.copy()
    assert_allclose(nearest_correlation(c), c, rtol=0, atol=1e-10)
    assert_array_equal(c, before)
    s = correlation_summary(x[-T:], np.full(6, 1 / 6))
    assert not s.repaired
    assert_array_equal(s.matrix, s.raw)


def test_clusters_on_planted_blocks() -> None:
    rng = np.random.default_rng(3)
    f1, f2 = 0.012 * rng.standard_normal((2, T))
    noise = 0.004 * rng.standard_normal((T, 8))
    x = 0.012 * rng.standard_normal((T, 8))  # cols 2, 4, 7 independent
    x[:, 0] = f1 + noise[:, 0]
    x[:, 3] = 1.4 * f1 + noise[:, 3]
    x[:, 5] = -0.9 * f1 + noise[:, 5]  # negative correlation links too (|rho|)
    x[:, 1] = f2 + noise[:, 1]
    x[:, 6] = 0.7 * f2 + noise[:, 6]
    x[:40, 6] = np.nan
    s = correlation_summary(x, rng.uniform(0.05, 0.2, 8))
    assert s.clusters == [[0, 3, 5], [1, 6]]
    within = [s.matrix[i, j] for i, j in ((0, 3), (1, 6))]
    assert min(within) > 0.8 and s.matrix[0, 5] < -0.8
    assert np.abs(s.matrix[2, [0, 1, 3, 4, 5, 6, 7]]).max() < 0.7
    # a threshold above every correlation gives no cluster
    assert correlation_summary(x, np.ones(8), cluster_threshold=0.9999).clusters == []


def test_effective_positions() -> None:
    x = _returns(4, p=6)
    x[:, 3] = 0.01 * np.random.default_rng(0).standard_normal(T)  # not constant here
    assert correlation_summary(x, np.full(6, 0.1)).effective_positions == pytest.approx(6.0)
    signed = np.array([0.2, -0.2, 0.2, -0.2, 0.2, 0.2])
    assert correlation_summary(x, signed).effective_positions == pytest.approx(6.0)
    dominant = np.array([0.97, 1e-3, -1e-3, 1e-3, 1e-3, 1e-3])
    assert correlation_summary(x, dominant).effective_positions == pytest.approx(1.0, abs=0.02)
    hand = np.array([0.5, -0.3, 0.2, 0.0, 0.0, 0.0])  # a = .5, .3, .2: 1 / .38
    assert correlation_summary(x, hand).effective_positions == pytest.approx(1 / 0.38)
    assert np.isnan(correlation_summary(x, np.zeros(6)).effective_positions)


def test_average_correlation_hand_computed() -> None:
    rng = np.random.default_rng(9)
    f = 0.01 * rng.standard_normal(T)
    x = np.column_stack(
        [
            f + 0.005 * rng.standard_normal(T),
            0.5 * f + 0.012 * rng.standard_normal(T),
            -0.8 * f + 0.009 * rng.standard_normal(T),
        ]
    )
    x[:30, 2] = np.nan
    r = pd.DataFrame(x).corr(min_periods=20).to_numpy()
    w = np.array([0.5, -0.3, 0.2])
    s = correlation_summary(x, w)
    # sum_{i != j} |w_i||w_j| rho_ij / sum_{i != j} |w_i||w_j|
    expected = (0.15 * r[0, 1] + 0.10 * r[0, 2] + 0.06 * r[1, 2]) / (0.15 + 0.10 + 0.06)
    assert s.average_correlation == pytest.approx(expected, abs=1e-12)
    assert not s.repaired
    # the same with pair (1, 2) lacking overlap: it drops out of the average
    x2 = x.copy()
    x2[50:, 1] = np.nan  # rows 0-49
    x2[:40, 2] = np.nan  # rows 40-89: 10 rows in common with column 1
    s2 = correlation_summary(x2, w)
    assert s2.insufficient_pairs == [(1, 2)]
    r2 = pd.DataFrame(x2).corr(min_periods=20).to_numpy()
    expected2 = (0.15 * r2[0, 1] + 0.10 * r2[0, 2]) / (0.15 + 0.10)
    assert s2.average_correlation == pytest.approx(expected2, abs=1e-12)


def test_single_position_and_no_pairs() -> None:
    x = np.random.default_rng(1).standard_normal((T, 1))
    s = correlation_summary(x, np.array([0.8]))
    assert_array_equal(s.matrix, [[1.0]])
    assert np.isnan(s.average_correlation)
    assert s.clusters == [] and s.effective_positions == 1.0


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), perm_seed=st.integers(0, 2**32 - 1))
def test_permuting_columns_permutes_the_matrix(seed: int, perm_seed: int) -> None:
    x = _returns(seed % 1000, p=9)
    w = np.random.default_rng(seed).normal(0.0, 0.2, 9)
    perm = np.random.default_rng(perm_seed).permutation(9)
    c, n = pairwise_correlation(x)
    cp, n_p = pairwise_correlation(x[:, perm])
    assert_allclose(cp, c[np.ix_(perm, perm)], rtol=0, atol=1e-12, equal_nan=True)
    assert_array_equal(n_p, n[np.ix_(perm, perm)])
    s, sp = correlation_summary(x, w), correlation_summary(x[:, perm], w[perm])
    assert_allclose(sp.matrix, s.matrix[np.ix_(perm, perm)], atol=1e-9)
    assert sp.average_correlation == pytest.approx(s.average_correlation, abs=1e-12)
    assert sp.effective_positions == pytest.approx(s.effective_positions, rel=1e-12)
    back = sorted(sorted(int(perm[i]) for i in cl) for cl in sp.clusters)
    assert back == sorted(s.clusters)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 70), st.floats(0.0, 0.3), st.integers(0, 2**32 - 1))
def test_components_equal_scipys_graph_search(p: int, density: float, seed: int) -> None:
    """The small-graph transitive closure finds scipy's components (same partition, labels
    numbered by their first node), on both sides of the small-graph limit."""
    from scipy.sparse.csgraph import connected_components

    from core.risk.correlation import _components

    rng = np.random.default_rng(seed)
    upper = np.triu(rng.random((p, p)) < density, k=1)
    edges = upper | upper.T
    n, labels = _components(edges)
    n_ref, ref = connected_components(edges.astype(np.int8), directed=False)
    assert n == n_ref
    groups = sorted(tuple(np.flatnonzero(labels == k)) for k in range(n))
    assert groups == sorted(tuple(np.flatnonzero(ref == k)) for k in range(n_ref))
    firsts = [int(np.flatnonzero(labels == k)[0]) for k in range(n)]
    assert firsts == sorted(firsts)


def _assert_same_summary(a, b) -> None:  # noqa: ANN001 - two CorrelationSummary
    assert_array_equal(a.matrix, b.matrix)  # bit for bit (NaN where NaN)
    assert_array_equal(a.raw, b.raw)
    assert_array_equal(a.n_overlap, b.n_overlap)
    assert (a.clusters, a.insufficient_pairs, a.repaired) == (
        b.clusters, b.insufficient_pairs, b.repaired)
    for x, y in ((a.average_correlation, b.average_correlation),
                 (a.effective_positions, b.effective_positions)):
        assert x == y or (np.isnan(x) and np.isnan(y))


def test_summaries_of_many_windows_equal_each_window_alone() -> None:
    """Stacked windows (the nightly refresh's batch) give, bit for bit, what each window
    gives alone (an instant answer), in order, whatever the mix of shapes, gaps, repairs,
    clusters and zero weights; and the single summary agrees with pandas on the raw
    matrix (the independent reference)."""
    rng = np.random.default_rng(7)
    windows = []
    for seed in range(6):
        windows.append((_returns(seed), rng.normal(0, 0.1, 14)))
        windows.append((_returns(seed, p=6), rng.normal(0, 0.1, 6)))
    windows.insert(3, (_non_psd_returns(), np.array([0.5, 0.3, 0.2])))
    windows.insert(5, (_returns(9, p=7), np.zeros(7)))
    together = correlation_summaries(windows)
    assert len(together) == len(windows)
    for (x, w), s in zip(windows, together, strict=True):
        _assert_same_summary(s, correlation_summary(x, w))
        expected = pd.DataFrame(x).corr(min_periods=20).to_numpy()
        assert_allclose(s.raw, expected, rtol=0, atol=1e-12)
    assert any(s.repaired for s in together) and any(s.clusters for s in together)
    assert correlation_summaries([]) == []


def test_summaries_name_the_first_bad_window() -> None:
    good = (_returns(0), np.ones(14))
    with pytest.raises(ValueError, match="weights must be finite"):
        correlation_summaries([good, (_returns(1), np.full(14, np.nan))])
    with pytest.raises(ValueError, match="2-D"):
        correlation_summaries([good, (np.zeros(5), np.ones(1))])
