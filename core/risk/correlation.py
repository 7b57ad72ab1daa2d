"""Position correlations: pairwise-complete Pearson matrix, nearest-correlation repair, summary.

Inputs are daily **log** returns of a portfolio's P positions over the correlation
window (the last 90 NYSE sessions; the caller slices it), one column per position,
NaN (or any non-finite value) = missing. Gaps are handled pair by pair: a recently
listed position shortens only its own pairs, never the whole matrix.

Pairwise deletion can produce a matrix that is not positive semi-definite (each
entry is estimated on different rows). :func:`correlation_summary` then repairs it
with :func:`nearest_correlation` (Higham 2002), the closest valid correlation matrix
in Frobenius norm (found by Qi & Sun's Newton method).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from scipy.sparse.csgraph import connected_components

from core.factors.ols import is_constant

FloatArray = npt.NDArray[np.float64]
IntArray = npt.NDArray[np.int64]

MIN_OVERLAP = 20
"""Minimum number of rows where both positions have a return for a pair to get a value."""

CLUSTER_THRESHOLD = 0.7
"""Two positions are linked in a cluster when ``|rho| >= CLUSTER_THRESHOLD``."""

REPAIR_EIGENVALUE_TOL = -1e-10
"""A matrix whose smallest eigenvalue is below this is repaired."""


@dataclass(frozen=True, eq=False)
class CorrelationSummary:
    """Result of :func:`correlation_summary` for P positions (columns of ``returns``).

    Attributes
    ----------
    matrix : ndarray of float64, shape (P, P)
        The correlation matrix to report: symmetric, unit diagonal, positive
        semi-definite, every entry finite. Equal to ``raw`` on pairs with enough overlap
        unless ``repaired``; pairs without a value enter the repair as 0.
    raw : ndarray of float64, shape (P, P)
        The pairwise-complete matrix of :func:`pairwise_correlation`, NaN where a pair
        has no value.
    n_overlap : ndarray of int64, shape (P, P)
        Rows where both positions have a return (diagonal: the column's valid rows).
    average_correlation : float
        Value-weighted average off-diagonal correlation of ``matrix``,
        ``sum_{i != j} |w_i| |w_j| rho_ij / sum_{i != j} |w_i| |w_j|`` over the pairs
        with a value in ``raw``; NaN if no such pair carries weight.
    clusters : list of list of int
        Connected components with at least two members of the graph whose edges are
        the pairs with ``|matrix[i, j]| >= cluster_threshold`` and a value in ``raw``;
        each list ascending, lists ordered by their first index.
    effective_positions : float
        ``1 / sum_i a_i**2`` with ``a_i = |w_i| / sum_j |w_j|``: P for equal weights,
        about 1 when one position dominates; NaN if every weight is 0.
    insufficient_pairs : list of tuple of int
        Pairs ``(i, j)``, ``i < j``, without a value in ``raw`` (overlap below
        ``min_overlap``, or one of the two constant over the overlap), ascending.
    repaired : bool
        Whether the matrix was replaced by its nearest correlation matrix (smallest
        eigenvalue below ``REPAIR_EIGENVALUE_TOL`` after filling missing pairs with 0).
    """

    matrix: FloatArray
    raw: FloatArray
    n_overlap: IntArray
    average_correlation: float
    clusters: list[list[int]]
    effective_positions: float
    insufficient_pairs: list[tuple[int, int]]
    repaired: bool


def pairwise_correlation(
    returns: npt.ArrayLike, min_overlap: int = MIN_OVERLAP
) -> tuple[FloatArray, IntArray]:
    """Pearson correlation of every pair of columns over the rows where both are finite.

    Parameters
    ----------
    returns : array_like, shape (T, P)
        Daily log returns of P positions (columns) on T sessions; NaN (or any
        non-finite value) = missing.
    min_overlap : int, optional
        Minimum number of rows where both columns are finite for a pair to get a
        value (default 20).

    Returns
    -------
    corr : ndarray of float64, shape (P, P)
        Symmetric; ``corr[i, j]`` is the Pearson correlation of columns i and j over
        their common valid rows, in [-1, 1]. NaN where the overlap is below
        ``min_overlap`` or either column is constant over the overlap. The diagonal is
        1, or NaN when the column itself has fewer than ``min_overlap`` valid rows or
        is constant. Equal to pandas ``DataFrame(returns).corr(min_periods=min_overlap)``.
    n_overlap : ndarray of int64, shape (P, P)
        Number of common valid rows of each pair (diagonal: valid rows per column).

    Raises
    ------
    ValueError
        If ``returns`` is not 2-D or ``min_overlap < 1``.

    Notes
    -----
    Vectorized with masked matrix products (no loop over pairs). Each column is first
    centered on the mean of its own valid rows (correlation is translation
    invariant), so the per-pair sums below lose few digits::

        n   = M'M          S = X'M          Q = (X*X)'M          C = X'X
        cov = C - S S'/n   var_i = Q - S^2/n,   var_j = var_i'

    with ``X`` the centered returns (0 where missing) and ``M`` the 0/1 validity mask;
    ``S[i, j]`` is the sum of column i over the rows where j is valid too. A variance
    within the rounding bound of zero (``core.factors.ols.is_constant``) counts as
    constant.
    """
    x = np.asarray(returns, dtype=np.float64)
    if x.ndim != 2:
        raise ValueError(f"returns must be 2-D (T, P), got shape {x.shape}")
    if int(min_overlap) < 1:
        raise ValueError(f"min_overlap must be at least 1, got {min_overlap}")
    corr, n_overlap = _pairwise(x[None], int(min_overlap))
    return corr[0], n_overlap[0]


def _pairwise(x: FloatArray, min_overlap: int) -> tuple[FloatArray, IntArray]:
    """:func:`pairwise_correlation` of a stack of windows of one shape, (N, T, P) → (N, P, P):
    the same operations on each window (each slice's products are the same BLAS calls)."""
    p = x.shape[2]
    valid = np.isfinite(x)  # shape: (N, T, P)
    m = valid.astype(np.float64)
    count = m.sum(axis=1)  # shape: (N, P)
    col_mean = np.divide(
        np.where(valid, x, 0.0).sum(axis=1), count, out=np.zeros(count.shape), where=count > 0
    )
    xc = np.where(valid, x - col_mean[:, None, :], 0.0)  # centered, 0 where missing

    def t(a: npt.NDArray[Any]) -> npt.NDArray[Any]:
        return a.transpose(0, 2, 1)

    n = t(m) @ m  # shape: (N, P, P)
    s = t(xc) @ m  # s[i, j] = sum of column i over the rows where i and j are valid
    q = t(xc * xc) @ m
    c = t(xc) @ xc
    c = 0.5 * (c + t(c))
    n_overlap = np.rint(n).astype(np.int64)

    with np.errstate(divide="ignore", invalid="ignore"):
        cov = c - s * t(s) / n
        var = q - s * s / n  # var[i, j]: centered sum of squares of i over the overlap
        mean = col_mean[:, :, None] + s / n  # pairwise mean of column i
        const = is_constant(var / n, mean, n)
        const = const | t(const)
        corr = cov / np.sqrt(var * t(var))
    ok = (n_overlap >= min_overlap) & ~const & np.isfinite(corr)
    corr = np.where(ok, np.clip(corr, -1.0, 1.0), np.nan)
    diag = np.arange(p)
    corr[:, diag, diag] = np.where(ok[:, diag, diag], 1.0, np.nan)
    return corr, n_overlap


def nearest_correlation(corr: npt.ArrayLike, tol: float = 1e-10, max_iter: int = 200) -> FloatArray:
    """The correlation matrix nearest to ``corr`` in Frobenius norm.

    Parameters
    ----------
    corr : array_like, shape (P, P)
        A finite, (approximately) symmetric matrix, typically a pairwise correlation
        matrix that is not positive semi-definite. Only its symmetric part
        ``(corr + corr.T) / 2`` is used; its diagonal is ignored (set to 1).
    tol : float, optional
        Convergence tolerance: the iteration stops once every diagonal entry of the
        positive semi-definite iterate is within ``tol`` of 1.
    max_iter : int, optional
        Maximum number of Newton iterations (a handful suffice in practice).

    Returns
    -------
    ndarray of float64, shape (P, P)
        Symmetric, positive semi-definite (eigenvalues >= 0 up to rounding), unit
        diagonal. A valid correlation matrix is returned unchanged (up to rounding).

    Raises
    ------
    ValueError
        If ``corr`` is not square, has a non-finite entry, ``tol <= 0`` or
        ``max_iter < 1``.

    Notes
    -----
    The problem (Higham, "Computing the nearest correlation matrix — a problem from
    finance", IMA J. Numer. Anal. 22, 2002) has a unique solution
    ``X = (G + diag(y))_+`` (eigenvalues clipped at 0), where ``y`` minimises the convex
    dual ``theta(y) = ||(G + diag(y))_+||_F^2 / 2 - sum(y)``. It is found by the
    semismooth Newton method of Qi & Sun (SIAM J. Matrix Anal. Appl. 28, 2006):
    each step solves the generalised Newton equation by preconditioned conjugate
    gradients (matrix-free, ``O(P^2 r)`` per product with ``r`` the number of positive
    eigenvalues) and takes an Armijo step on ``theta``. Convergence is quadratic: about
    5 eigendecompositions for P = 1,000, where Higham's alternating projections (the
    method used before; the same solution, to ~1e-8) took 150. The last iterate's
    diagonal is rescaled to exactly 1 (``D^-1/2 X D^-1/2``), which keeps it a valid
    correlation matrix.
    """
    a = np.asarray(corr, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1]:
        raise ValueError(f"corr must be a square matrix, got shape {a.shape}")
    if not np.isfinite(a).all():
        raise ValueError("corr must be finite (fill or drop missing pairs first)")
    if not tol > 0:
        raise ValueError(f"tol must be positive, got {tol}")
    if int(max_iter) < 1:
        raise ValueError(f"max_iter must be at least 1, got {max_iter}")
    g = 0.5 * (a + a.T)
    np.fill_diagonal(g, 1.0)
    if g.shape[0] == 0:
        return g
    y = np.zeros(g.shape[0])
    state = _dual_state(g, y)
    for _ in range(int(max_iter)):
        residual = 1.0 - state.diag  # -grad theta(y), shape: (P,)
        norm = float(np.linalg.norm(residual))
        if float(np.abs(residual).max()) <= tol:
            break
        step = _newton_direction(state, residual, min(1e-2, max(1e-10, 0.1 * norm)))
        slope = -float(residual @ step)  # directional derivative of theta (< 0)
        alpha, best = 1.0, state
        for _ in range(_MAX_HALVINGS):
            trial = _dual_state(g, y + alpha * step)
            if trial.theta <= state.theta + _ARMIJO * alpha * slope + 1e-14 * abs(state.theta):
                best = trial
                break
            if trial.theta < best.theta:
                best = trial
            alpha *= 0.5
        if best is state:  # no decrease in floating point: as close as it gets
            break
        y, state = best.y, best
    x = state.positive_part()
    dg = np.diagonal(x)
    d = np.divide(1.0, np.sqrt(dg), out=np.zeros_like(dg), where=dg > 0)
    x = x * d[:, None] * d[None, :]
    x = 0.5 * (x + x.T)
    np.fill_diagonal(x, 1.0)
    return x


_ARMIJO = 1e-4
_MAX_HALVINGS = 30


@dataclass(frozen=True, eq=False)
class _DualState:
    """``G + diag(y)`` at one dual point: its eigenvalues (descending) and eigenvectors,
    the dual objective and ``diag((G + diag(y))_+)`` (the gradient plus 1)."""

    y: FloatArray
    w: FloatArray
    v: FloatArray
    r: int
    theta: float
    diag: FloatArray

    def positive_part(self) -> FloatArray:
        p1 = self.v[:, : self.r]
        return (p1 * self.w[: self.r]) @ p1.T


def _dual_state(g: FloatArray, y: FloatArray) -> _DualState:
    m = g.copy()
    m[np.diag_indices_from(m)] += y
    w, v = np.linalg.eigh(m)
    w, v = w[::-1], v[:, ::-1]  # descending: the positive eigenvalues first
    r = int(np.count_nonzero(w > 0))
    wp = w[:r]
    theta = 0.5 * float(wp @ wp) - float(y.sum())
    diag = (v[:, :r] * v[:, :r]) @ wp
    return _DualState(y, w, v, r, theta, diag)


def _newton_direction(s: _DualState, rhs: FloatArray, rel_tol: float) -> FloatArray:
    """Solve ``V d = rhs`` for an element ``V`` of the generalised Hessian of theta at
    ``s.y`` (Qi & Sun 2006, eq. 3.10), by conjugate gradients with its diagonal as the
    preconditioner; the products never form ``V`` (P x P) explicitly."""
    p1, p2 = s.v[:, : s.r], s.v[:, s.r :]
    lp, ln = s.w[: s.r, None], s.w[None, s.r :]
    omega = lp / (lp - ln)  # shape: (r, P - r); in (0, 1]

    def apply(h: FloatArray) -> FloatArray:
        a = (p1 * h[:, None]).T  # shape: (r, P)
        m11 = a @ p1  # shape: (r, r)
        m12 = omega * (a @ p2)  # shape: (r, P - r)
        out = np.einsum("ij,ij->i", p1 @ m11, p1) + 2.0 * np.einsum("ij,ij->i", p1 @ m12, p2)
        return out + 1e-10 * h  # keeps V positive definite (Qi & Sun's regularisation)

    q1, q2 = p1 * p1, p2 * p2
    precond = np.maximum(q1.sum(axis=1) ** 2 + 2.0 * np.einsum("ij,ij->i", q1 @ omega, q2),
                         1e-8)
    x = np.zeros_like(rhs)
    res = rhs.copy()
    z = res / precond
    d = z.copy()
    rz = float(res @ z)
    bound = rel_tol * float(np.linalg.norm(rhs))
    for _ in range(_MAX_CG):
        vd = apply(d)
        step = rz / float(d @ vd)
        x += step * d
        res -= step * vd
        if float(np.linalg.norm(res)) <= bound:
            break
        z = res / precond
        rz_next = float(res @ z)
        d = z + (rz_next / rz) * d
        rz = rz_next
    return x


_MAX_CG = 200

_SMALL_GRAPH = 64
"""Up to this many positions the clusters come from a boolean transitive closure (a few
tiny matrix products) instead of scipy's graph search, whose input validation costs more
than the search on a 25-position book."""


def _components(edges: npt.NDArray[np.bool_]) -> tuple[int, npt.NDArray[np.intp]]:
    """Connected components of an undirected graph given by a symmetric boolean adjacency
    matrix: (count, label of each node), labels numbered by their first node."""
    p = edges.shape[0]
    if p > _SMALL_GRAPH:
        n, labels = connected_components(edges.astype(np.int8), directed=False)
        return int(n), np.asarray(labels, dtype=np.intp)
    reach = (edges | np.eye(p, dtype=bool)).astype(np.float64)
    while True:  # squaring doubles the path length reached: at most log2(p) rounds
        wider = (reach @ reach) > 0
        if (wider == (reach > 0)).all():
            break
        reach = wider.astype(np.float64)
    first = np.argmax(reach > 0, axis=1)  # the smallest node each node reaches
    roots, labels = np.unique(first, return_inverse=True)
    return len(roots), labels.astype(np.intp)


def correlation_summary(
    returns: npt.ArrayLike,
    weights: npt.ArrayLike,
    min_overlap: int = MIN_OVERLAP,
    cluster_threshold: float = CLUSTER_THRESHOLD,
) -> CorrelationSummary:
    """Correlation matrix of a portfolio's positions and its summary statistics.

    Parameters
    ----------
    returns : array_like, shape (T, P)
        Daily log returns of the P positions over the last 90 NYSE sessions (the
        caller slices the window); NaN = missing.
    weights : array_like, shape (P,)
        Signed market-value weights (market value / equity; shorts negative). Only
        their absolute values matter here.
    min_overlap : int, optional
        Minimum common valid rows of a pair (default 20).
    cluster_threshold : float, optional
        ``|rho|`` at or above which two positions are linked (default 0.7).

    Returns
    -------
    CorrelationSummary
        ``matrix`` (valid, repaired if needed), ``raw`` (pairwise, NaN where
        insufficient), ``n_overlap``, ``average_correlation``, ``clusters``,
        ``effective_positions``, ``insufficient_pairs`` and ``repaired``.

    Raises
    ------
    ValueError
        If ``returns`` is not 2-D with at least one column, ``weights`` does not have
        shape (P,) or is not finite, ``min_overlap < 1`` or ``cluster_threshold`` is
        not in (0, 1].

    Notes
    -----
    Steps: :func:`pairwise_correlation`; pairs without a value are listed in
    ``insufficient_pairs`` and set to 0 (no information: uncorrelated), a diagonal
    without a value to 1; if the smallest eigenvalue is below -1e-10 the matrix is
    replaced by :func:`nearest_correlation` (``repaired=True``). The average
    correlation and the clusters use the reported ``matrix`` (so they agree with what
    is shown), restricted to pairs that had a value.
    """
    return correlation_summaries([(returns, weights)], min_overlap, cluster_threshold)[0]


def correlation_summaries(
    windows: Sequence[tuple[npt.ArrayLike, npt.ArrayLike]],
    min_overlap: int = MIN_OVERLAP,
    cluster_threshold: float = CLUSTER_THRESHOLD,
) -> list[CorrelationSummary]:
    """:func:`correlation_summary` of many portfolios at once, one per ``(returns, weights)``
    of ``windows``, in order: the same operations, run on stacks of the windows of one
    shape (numpy's per-call cost, not the arithmetic, dominates a 25-position window), so
    each result equals the portfolio's own :func:`correlation_summary`.

    Raises
    ------
    ValueError
        As :func:`correlation_summary`, for the first window that breaks a rule.
    """
    if not 0.0 < cluster_threshold <= 1.0:
        raise ValueError(f"cluster_threshold must be in (0, 1], got {cluster_threshold}")
    if int(min_overlap) < 1:
        raise ValueError(f"min_overlap must be at least 1, got {min_overlap}")
    groups: dict[tuple[int, int], list[int]] = {}
    checked: list[tuple[FloatArray, FloatArray]] = []
    for k, (returns, weights) in enumerate(windows):
        x = np.asarray(returns, dtype=np.float64)
        w = np.asarray(weights, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] < 1:
            raise ValueError(f"returns must be 2-D (T, P) with P >= 1, got shape {x.shape}")
        p = x.shape[1]
        if w.shape != (p,):
            raise ValueError(f"weights must have shape ({p},), got {w.shape}")
        if not np.isfinite(w).all():
            raise ValueError("weights must be finite")
        checked.append((x, w))
        groups.setdefault(x.shape, []).append(k)
    out: list[CorrelationSummary | None] = [None] * len(checked)
    for members in groups.values():
        x = np.stack([checked[k][0] for k in members])  # shape: (N, T, P)
        w = np.stack([checked[k][1] for k in members])  # shape: (N, P)
        for k, summary in zip(members, _summaries(x, w, int(min_overlap), cluster_threshold),
                              strict=True):
            out[k] = summary
    return [s for s in out if s is not None]


def _summaries(x: FloatArray, w: FloatArray, min_overlap: int, cluster_threshold: float
               ) -> list[CorrelationSummary]:
    """The summaries of a stack of windows of one shape: (N, T, P) returns, (N, P) weights."""
    n_windows, p = x.shape[0], x.shape[2]
    raw, n_overlap = _pairwise(x, min_overlap)
    has_value = np.isfinite(raw)  # shape: (N, P, P)
    off = ~np.eye(p, dtype=bool)
    upper = np.triu(np.ones((p, p), dtype=bool), k=1)
    kw, iu, ju = np.nonzero(~has_value & upper)
    insufficient: list[list[tuple[int, int]]] = [[] for _ in range(n_windows)]
    for k, i, j in zip(kw.tolist(), iu.tolist(), ju.tolist(), strict=True):
        insufficient[k].append((i, j))

    filled = np.where(has_value, raw, 0.0)
    diag = np.arange(p)
    filled[:, diag, diag] = 1.0
    repaired = (np.linalg.eigvalsh(filled)[:, 0] < REPAIR_EIGENVALUE_TOL).tolist()

    pairs = has_value & off
    aw = np.abs(w)  # shape: (N, P)
    total = aw.sum(axis=1)
    out = []
    for k in range(n_windows):
        matrix = nearest_correlation(filled[k]) if repaired[k] else filled[k]
        ww = np.outer(aw[k], aw[k]) * pairs[k]
        denom = float(ww.sum())
        average = float((ww * matrix).sum() / denom) if denom > 0 else float("nan")

        edges = pairs[k] & (np.abs(matrix) >= cluster_threshold)
        clusters: list[list[int]] = []
        if edges.any():  # most portfolios have no highly correlated pair: skip the graph work
            n_comp, labels = _components(edges)
            members = [np.flatnonzero(labels == c) for c in range(n_comp)]
            clusters = sorted(
                ([int(i) for i in idx] for idx in members if idx.size >= 2), key=lambda c: c[0]
            )

        if total[k] > 0:
            a = aw[k] / total[k]
            effective = float(1.0 / np.sum(a * a))
        else:
            effective = float("nan")
        out.append(CorrelationSummary(
            matrix=matrix, raw=raw[k], n_overlap=n_overlap[k], average_correlation=average,
            clusters=clusters, effective_positions=effective,
            insufficient_pairs=insufficient[k], repaired=bool(repaired[k])))
    return out
