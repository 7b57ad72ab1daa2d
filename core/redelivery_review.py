"""Reviewing a re-delivery of stored prices: which offered rows are new, the same, an accepted
restatement or correction, or refused (the stored row is kept).

Pure functions on numpy, no I/O; ``core/price_store.py`` applies the decisions under the
data-trust rules of DESIGN.md. Split from ``core/quality.py`` (the checks of fetched bars and
stored series), whose checks it reuses.

May import: numpy and ``core.quality``. No database, provider or Prefect code.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from core.quality import format_value, jump_endpoints

PRICE_FIELDS: tuple[str, ...] = ("open", "high", "low", "close", "adj_close", "volume")
"""Fields of a stored price row compared on a re-delivery."""

PRICE_DECIMALS = 6
"""Decimals of the stored prices: values equal at this precision are the same value."""

INSERT, SAME, REPLACE, REJECT = 1, 2, 3, 4
"""Decisions of :func:`review_redelivery` for one offered row (0: nothing offered)."""


def adjusted_basis_ratio(
    stored_close: np.ndarray, stored_adj: np.ndarray,
    offered_close: np.ndarray, offered_adj: np.ndarray,
) -> np.ndarray:
    """Per symbol, the factor that puts offered adjusted closes on the stored basis.

    Providers back-adjust as of the day they answer (or, for a past range, as of its
    end), so a delivery of history may be on an older basis than what is stored: every
    stored ``adj_close / close`` then differs from the offered one by the same factor
    (the corporate actions in between). All inputs are (T, N) on the same sessions, NaN
    where absent. Returns (N,) float64: the median over sessions where both are present
    and the raw closes agree of ``(stored_adj/stored_close) / (offered_adj/offered_close)``
    — 1.0 where there is no such session.
    """
    with np.errstate(invalid="ignore", divide="ignore"):
        ratio = (stored_adj / stored_close) / (offered_adj / offered_close)
        same_close = np.isclose(stored_close, offered_close, rtol=1e-6, atol=1e-6)
    ok = same_close & np.isfinite(ratio) & (ratio > 0)
    out = np.ones(stored_close.shape[1])
    cols = np.flatnonzero(ok.any(axis=0))
    if cols.size:
        masked = np.where(ok[:, cols], ratio[:, cols], np.nan)
        out[cols] = np.nanmedian(masked, axis=0)
    return out


@dataclass(frozen=True)
class Review:
    """What to do with each offered row of a re-delivery (see :func:`review_redelivery`).

    ``decision`` (T, N) int8: 0 nothing offered, ``INSERT`` (no stored row), ``SAME``
    (equal to the stored row at the stored precision, or only missing fields the
    stored row has), ``REPLACE`` (accepted restatement or correction), ``REJECT``
    (the stored row is kept). ``reason`` (T, N) object: why, for REPLACE and REJECT.
    ``rebased`` marks the REPLACE rows of which only ``adj_close`` is to be written.
    """

    decision: np.ndarray
    reason: np.ndarray
    rebased: np.ndarray | None = None
    """(T, N) bool: REPLACE rows where only ``adj_close`` changes (the rest is kept)."""


def review_redelivery(
    stored: dict[str, np.ndarray],
    offered: dict[str, np.ndarray],
    split_ratio: np.ndarray,
    jump_threshold: float = 0.5,
    rebase: np.ndarray | None = None,
) -> Review:
    """Decide, row by row, whether offered prices may replace stored ones.

    The rule (README, "Data trust"): a stored price is replaced only by one that passes
    the data checks and loses no field; a stored price that failed its checks is
    replaced by a corrected delivery that passes them.

    Parameters
    ----------
    stored, offered : dict of field → ndarray (T, N) float64
        ``PRICE_FIELDS`` on T consecutive sessions (the offered rows plus a margin of
        stored neighbours) for N symbols, NaN where there is no row / no value. Offered
        rows must already have passed :func:`validate_bars` and have their
        ``adj_close`` on the stored basis (:func:`adjusted_basis_ratio`).
    split_ratio : ndarray (T, N)
        Splits known from the stored and the offered corporate actions.
    jump_threshold : float
        As in :func:`check_series`.
    rebase : ndarray (N,) of bool, optional
        Symbols whose whole history is re-delivered on a newer adjusted basis (a new
        split or dividend): their ``adj_close`` may change without a reason.

    Notes
    -----
    For an offered row on a session that has a stored row:

    * every field equal at ``PRICE_DECIMALS`` (offered NaN where stored has a value
      counts as equal: nothing is lost by keeping the stored row) → ``SAME``;
    * the stored close failed the jump check in the stored series
      (:func:`jump_endpoints`) and the offered close passes it in the series with the
      offered rows in place → ``REPLACE`` (a correction);
    * the stored row passed: the offered one must pass the jump check in that series,
      lose no field the stored row has, and keep its close within ``jump_threshold`` of
      the stored close (as delivered, or after the splits after that session, for
      providers that split-adjust history) → ``REPLACE``; otherwise ``REJECT``.

    An ``adj_close`` that differs while the close is equal is a basis difference, not
    a restatement: it is ``SAME`` unless the symbol is rebased (``REPLACE``).
    """
    close_s = np.asarray(stored["close"], dtype="float64")
    t_len, n_sym = close_s.shape
    close_o = np.asarray(offered["close"], dtype="float64")
    has_o = np.isfinite(close_o)
    has_s = np.isfinite(close_s)
    decision = np.zeros((t_len, n_sym), dtype=np.int8)
    reason = np.full((t_len, n_sym), None, dtype=object)
    decision[has_o & ~has_s] = INSERT
    both = has_o & has_s
    if not both.any():
        return Review(decision, reason)
    rebase = np.zeros(n_sym, dtype=bool) if rebase is None else np.asarray(rebase, dtype=bool)
    differs, lost, raw_change = _field_changes(stored, offered, rebase)
    decision[both & ~differs] = SAME

    candidates = both & differs
    if not candidates.any():
        return Review(decision, reason)
    checks = _redelivery_checks(close_s, close_o, has_o, split_ratio, jump_threshold)
    rebased = candidates & ~raw_change  # only adj_close moves, onto a newer basis
    correction = candidates & raw_change & checks.bad_stored & ~checks.bad_merged
    restatement = (candidates & raw_change & ~checks.bad_stored & ~checks.bad_merged & ~lost
                   & checks.close_ok)
    accept = rebased | correction | restatement
    decision[accept] = REPLACE
    decision[candidates & ~accept] = REJECT
    for t, j in zip(*np.nonzero(candidates), strict=True):
        if accept[t, j]:
            reason[t, j] = _accepted_reason(close_s[t, j], close_o[t, j], bool(rebased[t, j]),
                                            bool(correction[t, j]))
        else:
            reason[t, j] = _rejection_reason(stored, offered, close_s, close_o, t, j,
                                             lost, checks)
    return Review(decision, reason, rebased)


def _accepted_reason(close_s: float, close_o: float, rebased: bool, correction: bool) -> str:
    """Why an accepted offered row replaces the stored one: rebase, correction or restatement."""
    was, now = format_value(close_s), format_value(close_o)
    if rebased:
        return "rebased: adjusted close on the basis of a new corporate action"
    if correction:
        return f"correction: stored close {was} failed the jump check, {now} passes"
    return f"restatement: close {was} → {now}" if was != now else (
        "restatement: open/high/low/volume")


def _field_changes(
    stored: dict[str, np.ndarray], offered: dict[str, np.ndarray], rebase: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, N) masks ``differs``, ``lost``, ``raw_change`` comparing offered with stored rows.

    ``differs``: the offered row has a value the stored row lacks or changes (``adj_close``
    counts only for ``rebase`` symbols); ``lost``: the stored row has a value the offered
    one lacks; ``raw_change``: a field other than ``adj_close`` changes.
    """
    shape = np.shape(stored["close"])

    def rounded(a: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(a, dtype="float64"), PRICE_DECIMALS)

    differs = np.zeros(shape, dtype=bool)
    lost = np.zeros(shape, dtype=bool)
    raw_change = np.zeros(shape, dtype=bool)
    for f in PRICE_FIELDS:
        s_v, o_v = rounded(stored[f]), rounded(offered[f])
        s_ok, o_ok = np.isfinite(s_v), np.isfinite(o_v)
        changed = o_ok & (~s_ok | (np.abs(o_v - s_v) > 0.5 * 10.0**-PRICE_DECIMALS))
        if f == "adj_close":
            changed &= rebase[None, :]
        else:
            raw_change |= changed
        differs |= changed
        lost |= s_ok & ~o_ok
    return differs, lost, raw_change


@dataclass(frozen=True)
class _RedeliveryChecks:
    """(T, N) outcomes of the close checks of a re-delivery (see :func:`review_redelivery`)."""

    bad_stored: np.ndarray
    """The stored close failed the jump check in the stored series."""
    bad_merged: np.ndarray
    """The close fails the jump check with the offered rows in place (read either way)."""
    close_ok: np.ndarray
    """The offered close is within the threshold of the stored one (as is or split-adjusted)."""


def _redelivery_checks(
    close_s: np.ndarray, close_o: np.ndarray, has_o: np.ndarray, split_ratio: np.ndarray,
    jump_threshold: float,
) -> _RedeliveryChecks:
    """Jump checks of the stored and the merged series, and the offered close's move."""
    bad_stored = jump_endpoints(close_s, split_ratio, jump_threshold)
    merged = np.where(has_o, close_o, close_s)
    # a provider that split-adjusts history (Yahoo's "close") delivers no drop on the split
    # day: its series passes when it is smooth read either way
    bad_merged = (jump_endpoints(merged, split_ratio, jump_threshold)
                  & jump_endpoints(merged, np.ones_like(split_ratio), jump_threshold))
    # a provider that split-adjusts history restates old closes by the later splits
    ratio = np.where(np.isfinite(split_ratio) & (split_ratio > 0), split_ratio, 1.0)
    later_splits = np.exp(np.cumsum(np.log(ratio)[::-1], axis=0)[::-1] - np.log(ratio))
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.abs(close_o / close_s - 1.0)
        rel_split = np.abs(close_o * later_splits / close_s - 1.0)
    close_ok = (rel <= jump_threshold) | (rel_split <= jump_threshold)
    return _RedeliveryChecks(bad_stored, bad_merged, close_ok)


def _rejection_reason(
    stored: dict[str, np.ndarray], offered: dict[str, np.ndarray],
    close_s: np.ndarray, close_o: np.ndarray, t: int, j: int,
    lost: np.ndarray, checks: _RedeliveryChecks,
) -> str:
    """Why the offered row at (t, j) may not replace the stored one."""
    why = []
    if checks.bad_merged[t, j]:
        why.append("it fails the jump check against its neighbours")
    if lost[t, j]:
        names = [f for f in PRICE_FIELDS if np.isfinite(stored[f][t, j])
                 and not np.isfinite(offered[f][t, j])]
        why.append(f"it loses {'/'.join(names)}")
    if not checks.close_ok[t, j]:
        why.append(f"its close moves {close_o[t, j] / close_s[t, j] - 1:+.1%} from "
                   "the stored one, unexplained by a split")
    was, now = format_value(close_s[t, j]), format_value(close_o[t, j])
    return f"rejected: offered close {now} for stored {was}: " + "; ".join(why)
