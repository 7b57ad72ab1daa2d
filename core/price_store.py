"""Storing a provider's delivery of prices under the data-trust rules.

A delivery may carry rows that are already stored: a backfill, a re-request of recent
sessions, a re-fetch after a new split or dividend, an operator's ``symbols refetch``.
The rules (README, "Data trust"):

* a new row (no stored row for that session) is stored as delivered, once it passed
  :func:`core.quality.validate_bars`;
* a stored row is replaced only by one that passes the data checks and loses no field
  (:func:`core.redelivery_review.review_redelivery`); a stored row that failed its checks is
  replaced by a corrected delivery that passes them. Every replacement and refusal is
  kept in ``price_revisions`` with both sets of values, the provider and the time;
* the adjusted basis only moves forward: a delivery on an older basis (a past range
  back-adjusted as of its end) is rescaled onto the stored basis
  (:func:`core.redelivery_review.adjusted_basis_ratio`); only a new corporate action moves it, and
  then the symbol's whole stored history is re-delivered (``rebase``), whose
  ``adj_close``-only changes are written without an audit row each (they follow from
  the stored close and the new action).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sqlalchemy.ext.asyncio import AsyncConnection

from core import calendar
from core.quality import Finding
from core.redelivery_review import (
    INSERT,
    PRICE_FIELDS,
    REJECT,
    REPLACE,
    SAME,
    Review,
    adjusted_basis_ratio,
    review_redelivery,
)
from core.repositories import prices as price_repo
from core.repositories.symbols import SymbolState

NEIGHBOUR_SESSIONS = 5
"""Stored sessions read on each side of a re-delivered range (the jump check's neighbours)."""


def new_actions(delivered: pd.DataFrame, stored: pd.DataFrame) -> pd.DataFrame:
    """Delivered corporate actions that are not stored, or stored with another value.

    Both frames have ``ACTION_COLUMNS``. A new action changes the adjusted basis of every
    earlier price of its symbol.
    """
    if delivered.empty:
        return delivered
    key = ["symbol", "date", "kind"]
    d = delivered.assign(date=pd.to_datetime(delivered["date"]))
    s = stored.assign(date=pd.to_datetime(stored["date"]))
    merged = d.merge(s, on=key, how="left", suffixes=("", "_stored"))
    same = np.isclose(merged["value"].to_numpy(float),
                      merged["value_stored"].to_numpy(float), rtol=1e-9, atol=1e-12)
    return merged.loc[~same, list(delivered.columns)].reset_index(drop=True)


@dataclass
class WritePlan:
    """The rows one delivery writes, and what it refused."""

    bars: pd.DataFrame
    """Rows to upsert (``BAR_COLUMNS`` + ``provider``)."""
    inserted: int = 0
    replaced: int = 0
    rebased: int = 0
    unchanged: int = 0
    rejected: int = 0
    revisions: list[dict] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    inserted_pairs: list[tuple[str, dt.date]] = field(default_factory=list)


def _split_matrix(actions: pd.DataFrame, sessions: list[dt.date], symbols: list[str]
                  ) -> np.ndarray:
    ratio = np.ones((len(sessions), len(symbols)))
    if actions.empty:
        return ratio
    splits = actions[actions["kind"] == "split"]
    rows = pd.DatetimeIndex(pd.to_datetime(list(sessions))).get_indexer(
        pd.to_datetime(splits["date"]))
    cols = pd.Index(symbols).get_indexer(splits["symbol"])
    ok = (rows >= 0) & (cols >= 0) & (splits["value"].to_numpy(float) > 0)
    ratio[rows[ok], cols[ok]] = splits["value"].to_numpy(float)[ok]
    return ratio


def _offered_matrix(bars: pd.DataFrame, sessions: list[dt.date], symbols: list[str]
                    ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    t_idx = pd.DatetimeIndex(pd.to_datetime(list(sessions))).get_indexer(
        pd.to_datetime(bars["date"]))
    j_idx = pd.Index(symbols).get_indexer(bars["symbol"])
    on_grid = (t_idx >= 0) & (j_idx >= 0)
    out = {f: np.full((len(sessions), len(symbols)), np.nan) for f in PRICE_FIELDS}
    for f in PRICE_FIELDS:
        out[f][t_idx[on_grid], j_idx[on_grid]] = bars[f].to_numpy(float)[on_grid]
    return out, t_idx, j_idx


def _revision(symbol: str, day: dt.date, as_of: dt.date, outcome: str, reason: str,
              provider: str | None, stored: dict[str, np.ndarray], stored_provider: object,
              offered: dict[str, np.ndarray], t: int, j: int, now: dt.datetime) -> dict:
    def value(a: np.ndarray) -> float | None:
        v = float(a[t, j])
        return round(v, 6) if np.isfinite(v) else None

    row: dict = {"symbol": symbol, "date": day, "as_of": as_of, "outcome": outcome,
                 "reason": reason, "provider": provider,
                 "stored_provider": stored_provider, "recorded_at": now}
    for f in PRICE_FIELDS:
        row[f"stored_{f}"] = value(stored[f])
        row[f"offered_{f}"] = value(offered[f])
    return row


async def plan_writes(
    conn: AsyncConnection,
    bars: pd.DataFrame,
    actions: pd.DataFrame,
    states: dict[str, SymbolState],
    rebase: set[str],
    as_of: dt.date,
    jump_threshold: float,
) -> WritePlan:
    """Decide which delivered rows are written (see the module docstring).

    ``bars``: validated bars with a ``provider`` column; ``actions``: the delivered and
    the stored corporate actions of these symbols; ``states``: the symbols' stored
    states; ``rebase``: symbols re-delivered on the basis of a new corporate action.
    Reads the stored rows the delivery overlaps (plus neighbours); writes nothing.
    """
    plan = WritePlan(bars=bars)
    if bars.empty:
        return plan
    overlap = _overlapping_symbols(bars, states)
    fresh_mask = ~bars["symbol"].isin(overlap)
    plan.inserted = int(fresh_mask.sum())
    fresh = bars[fresh_mask]
    plan.inserted_pairs = list(zip(fresh["symbol"].tolist(), calendar.as_dates(fresh["date"]),
                                   strict=True))
    if not overlap:
        return plan

    ob = bars[~fresh_mask].reset_index(drop=True)
    ob_days = pd.to_datetime(ob["date"])
    first = calendar.sessions_back(
        calendar.session_on_or_after(ob_days.min().date()), NEIGHBOUR_SESSIONS)
    last = calendar.session_on_or_before(
        ob_days.max().date() + dt.timedelta(days=2 * NEIGHBOUR_SESSIONS))
    stored = await price_repo.load_stored_prices(conn, overlap, first, last)
    sessions, symbols = stored.sessions, stored.symbols
    offered, t_idx, j_idx = _offered_matrix(ob, sessions, symbols)
    rebase_cols = np.array([s in rebase for s in symbols], dtype=bool)
    _onto_stored_basis(ob, offered, stored, rebase_cols)

    review = review_redelivery(stored.fields, offered, _split_matrix(actions, sessions, symbols),
                               jump_threshold, rebase=rebase_cols)
    decision, rebased = _row_decisions(review, t_idx, j_idx, len(ob))
    ob_dates = ob_days.dt.date.to_numpy()
    _record_revisions(plan, ob, ob_dates, decision, rebased, review, stored, offered,
                      t_idx, j_idx, as_of)
    if rebased.any():
        _keep_stored_fields(ob, rebased, stored, t_idx, j_idx)
    write = (decision == INSERT) | (decision == REPLACE)
    plan.inserted += int((decision == INSERT).sum())
    plan.replaced = int(((decision == REPLACE) & ~rebased).sum())
    plan.rebased = int(rebased.sum())
    plan.unchanged = int((decision == SAME).sum())
    plan.rejected = int((decision == REJECT).sum())
    ins = decision == INSERT
    plan.inserted_pairs += list(zip(ob["symbol"][ins], ob_dates[ins], strict=True))
    plan.bars = pd.concat([fresh, ob[write]], ignore_index=True)
    return plan


def _overlapping_symbols(bars: pd.DataFrame, states: dict[str, SymbolState]) -> list[str]:
    """Symbols whose delivered rows start on or before their last stored price."""
    dates = pd.to_datetime(bars["date"])
    span = dates.groupby(bars["symbol"]).agg(["min", "max"])
    overlap: list[str] = []
    for sym, lo in zip(span.index, span["min"], strict=True):
        st = states.get(sym)
        if st is not None and st.last_price_date is not None and lo.date() <= st.last_price_date:
            overlap.append(sym)
    return overlap


def _onto_stored_basis(
    ob: pd.DataFrame, offered: dict[str, np.ndarray], stored: price_repo.StoredPrices,
    rebase_cols: np.ndarray,
) -> None:
    """Rescale the offered ``adj_close`` (in ``offered`` and ``ob``) onto the stored basis.

    The adjusted basis moves only with a new corporate action: ``rebase_cols`` keep theirs.
    """
    k = adjusted_basis_ratio(stored.fields["close"], stored.fields["adj_close"],
                             offered["close"], offered["adj_close"])
    k[rebase_cols] = 1.0
    if np.any(np.abs(k - 1.0) > 1e-9):
        offered["adj_close"] = offered["adj_close"] * k[None, :]
        factor = pd.Series(k, index=stored.symbols).reindex(ob["symbol"]).to_numpy()
        ob["adj_close"] = ob["adj_close"].to_numpy(float) * factor


def _row_decisions(
    review: Review, t_idx: np.ndarray, j_idx: np.ndarray, n_rows: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per delivered row: the review's decision (``INSERT`` off the grid) and whether it is
    an ``adj_close``-only rebase."""
    on_grid = (t_idx >= 0) & (j_idx >= 0)
    decision = np.full(n_rows, INSERT, dtype=np.int8)
    decision[on_grid] = review.decision[t_idx[on_grid], j_idx[on_grid]]
    rebased = np.zeros(n_rows, dtype=bool)
    if review.rebased is not None:
        rebased[on_grid] = review.rebased[t_idx[on_grid], j_idx[on_grid]]
    return decision, rebased


def _record_revisions(
    plan: WritePlan, ob: pd.DataFrame, ob_dates: np.ndarray, decision: np.ndarray,
    rebased: np.ndarray, review: Review, stored: price_repo.StoredPrices,
    offered: dict[str, np.ndarray], t_idx: np.ndarray, j_idx: np.ndarray, as_of: dt.date,
) -> None:
    """Add to ``plan`` a revision per replaced or rejected row (rebases are not audited) and
    one ``restatement_rejected`` warning per symbol with rejected rows."""
    symbols = stored.symbols
    now = dt.datetime.now(dt.UTC)
    rejected_by_symbol: dict[str, list[tuple[dt.date, str]]] = {}
    for i in np.flatnonzero((decision == REPLACE) & ~rebased | (decision == REJECT)):
        t, j = int(t_idx[i]), int(j_idx[i])
        outcome = "replaced" if decision[i] == REPLACE else "rejected"
        plan.revisions.append(_revision(
            symbols[j], ob_dates[i], as_of, outcome, str(review.reason[t, j]),
            ob["provider"].iat[i], stored.fields, stored.provider[t, j], offered, t, j, now))
        if outcome == "rejected":
            rejected_by_symbol.setdefault(symbols[j], []).append(
                (ob_dates[i], str(review.reason[t, j])))
    for sym, items in sorted(rejected_by_symbol.items()):
        items.sort()
        more = "" if len(items) == 1 else f" ({len(items)} rows; see price_revisions)"
        plan.findings.append(Finding(sym, "restatement_rejected", "warning", items[0][0],
                                     f"{items[0][0]}: {items[0][1]}{more}"))


def _keep_stored_fields(
    ob: pd.DataFrame, rebased: np.ndarray, stored: price_repo.StoredPrices,
    t_idx: np.ndarray, j_idx: np.ndarray,
) -> None:
    """Rebased rows keep every stored field but ``adj_close``."""
    ri = np.flatnonzero(rebased)
    for f in ("open", "high", "low", "close", "volume"):
        vals = ob[f].to_numpy(float).copy()
        vals[ri] = stored.fields[f][t_idx[ri], j_idx[ri]]
        ob[f] = vals


def provider_column(bars: pd.DataFrame, by_symbol: dict[str, str], default: str) -> pd.DataFrame:
    """``bars`` with a ``provider`` column: the provider that served each symbol."""
    names = bars["symbol"].map(by_symbol).fillna(default) if by_symbol else default
    return bars.assign(provider=names)


def known_missing_resolved(
    inserted: Sequence[tuple[str, dt.date]], known: set[tuple[str, dt.date]]
) -> list[tuple[str, dt.date]]:
    """Known-missing sessions that this delivery filled after all."""
    return [p for p in inserted if p in known]
