"""The nightly symbol batch as plain async functions (no Prefect).

Steps, each callable on its own: resolve the target dates, plan the price fetch,
fetch and store one chunk, then check, compute factors and metrics for one chunk of
symbols. ``flows/symbol_batch.py`` maps these over chunks as Prefect tasks.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import threading
import time
from collections import Counter
from collections.abc import Callable, Collection, Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from sqlalchemy.ext.asyncio import AsyncEngine

from core import calendar, price_store, run_lock
from core.db.engine import flow_engine, reading, transaction
from core.db.errors import short_error, storage_failures_named
from core.db.models import SymbolKind, SymbolStatus
from core.factors.definitions import FACTORS, MAX_WINDOW, REFERENCE_ETFS, RIDGE_ETFS
from core.factors.engine import compute_factor_exposures
from core.factors.returns import simple_returns
from core.faults import fault_point
from core.metrics import symbol_daily_metrics
from core.providers.base import FetchResult, PriceProvider
from core.quality import Finding, blocking_reasons, check_series, validate_bars
from core.repositories import factors as factor_repo
from core.repositories import findings as finding_repo
from core.repositories import price_blocks
from core.repositories import prices as price_repo
from core.repositories import profiles as profile_repo
from core.repositories import symbols as symbol_repo
from core.settings import Settings
from core.symbols import InvalidSymbolError, is_market_symbol, validate_symbol

HISTORY_SESSIONS = 260
"""Price rows loaded per date: 252 for the 1-year metrics plus a margin for YTD."""

FETCH_CHECKS = ("fetch_error", "rejected_rows", "restatement_rejected")
SERIES_CHECKS = ("gaps", "unexplained_jump", "stale", "non_positive_price")


class SymbolBatchError(Exception):
    """Base of the symbol batch's named errors."""


class TargetDateError(SymbolBatchError, ValueError):
    """The requested as_of or date range cannot be processed."""


class BatchAlreadyRunning(SymbolBatchError):
    """Another run holds the symbol batch for this date."""


class ReferenceDataError(SymbolBatchError):
    """A reference ETF lacks prices for a target date: no factor can be trusted."""


def resolve_target_dates(
    as_of: dt.date | None = None,
    start: dt.date | None = None,
    end: dt.date | None = None,
    now: dt.datetime | None = None,
) -> list[dt.date]:
    """Sessions to process: the latest completed one, ``as_of``, or each one in [start, end].

    A non-session ``as_of`` resolves to the session before it; dates after the
    latest completed session are refused (their prices do not exist yet).
    """
    latest = calendar.latest_completed_session(now)
    if (start is None) != (end is None):
        raise TargetDateError("a backfill needs both start and end")
    if start is not None and end is not None:
        if as_of is not None:
            raise TargetDateError("give either as_of or start/end, not both")
        if end < start:
            raise TargetDateError(f"end {end} is before start {start}")
        if end > latest:
            raise TargetDateError(f"end {end} is after the latest completed session {latest}")
        days = calendar.trading_days_between(start, end)
        if not days:
            raise TargetDateError(f"no NYSE session between {start} and {end}")
        return days
    if as_of is None:
        return [latest]
    if as_of > latest:
        raise TargetDateError(f"as_of {as_of} is after the latest completed session {latest}")
    return [calendar.session_on_or_before(as_of)]


def chunked(items: Sequence, size: int) -> list[list]:
    """``items`` in consecutive lists of at most ``size``."""
    return [list(items[i : i + size]) for i in range(0, len(items), size)]


@dataclass(frozen=True)
class FetchRequest:
    """One provider call: ``symbols`` over sessions in [start, end]."""

    symbols: tuple[str, ...]
    start: dt.date
    end: dt.date


SESSIONS_PER_YEAR = 252
"""A year of sessions: the delivery size a fetch chunk of ``fetch_chunk_size`` symbols is
planned for (:func:`plan_fetch`)."""


def plan_fetch(
    states: Iterable[symbol_repo.SymbolState],
    end: dt.date,
    history_days: int,
    chunk_size: int,
    history_start: dt.date | None = None,
    reference_start: dt.date | None = None,
    repair_from: dict[str, dt.date] | None = None,
    extend: Collection[str] = (),
    short_window_scale: int = 1,
) -> list[FetchRequest]:
    """Fetch requests so each market symbol gets only what it lacks up to ``end``.

    A symbol with no prices gets ``history_days`` calendar days; one with prices
    gets the sessions after its last date. ``history_start`` (backfill mode) also
    fetches from there for symbols whose stored history starts later (through their
    first stored session at least, so the delivery overlaps what is stored and its
    adjusted basis can be aligned). The ``extend`` symbols (the nightly history
    extension, :func:`core.history_extension.plan_history_extension`) are asked the same way from
    ``end - history_days``. A new reference ETF starts at ``reference_start``
    (long history for the stress replays). ``repair_from`` (symbol → session) asks again
    for stored ranges with holes or rows that failed their checks
    (:func:`plan_repairs`).

    A chunk holds ``chunk_size`` symbols; a range of ``w`` sessions shorter than a year
    takes up to ``chunk_size × min(short_window_scale, 252 // w)`` (a nightly's one or two
    sessions per symbol: fewer, larger chunks, each delivery no larger than a year of
    ``chunk_size`` symbols' rows).
    """
    by_range: dict[tuple[dt.date, dt.date], list[str]] = {}
    full_start = end - dt.timedelta(days=history_days)
    default_start = min(full_start, history_start or end)
    repair_from = repair_from or {}
    for s in states:
        if s.kind == SymbolKind.private or not is_market_symbol(s.symbol):
            continue
        stop = end
        start: dt.date | None
        if s.last_price_date is None:
            start = default_start
            if s.kind == SymbolKind.etf and reference_start is not None:
                start = min(start, reference_start)
        elif (back := history_start or (full_start if s.symbol in extend else None)) and (
                s.first_price_date and s.first_price_date > back):
            start, stop = back, max(end, s.first_price_date)
        elif s.last_price_date >= end:
            start = None
        else:
            start = calendar.next_session(s.last_price_date)
        again = repair_from.get(s.symbol)
        if again is not None:
            start = again if start is None else min(start, again)
        if start is None:
            continue
        by_range.setdefault((start, stop), []).append(s.symbol)
    out: list[FetchRequest] = []
    for (start, stop), syms in sorted(by_range.items()):
        size = chunk_size
        if short_window_scale > 1:
            sessions = max(1, len(calendar.trading_days_between(start, stop)))
            size *= max(1, min(short_window_scale, SESSIONS_PER_YEAR // sessions))
        out.extend(FetchRequest(tuple(part), start, stop)
                   for part in chunked(sorted(syms), size))
    return out


def history_start_marks(
    request: FetchRequest, states: dict[str, symbol_repo.SymbolState],
    got: pd.DataFrame | None, as_of: dt.date,
) -> list[dict]:
    """Known-missing records for the symbols ``request`` found no older prices for.

    A symbol is recorded when, after this delivery, its first price (delivered or stored)
    is later than the first session of ``request``: the request reached before it (a new
    symbol, a history extension, a backfill) and the provider delivered nothing older. The
    session before that first price is recorded, so :func:`plan_history_extension` does not
    ask for it again. ``got``: first/last delivered date per symbol with rows (None: none).
    """
    if got is None:
        return []
    asked = calendar.session_on_or_after(request.start)
    marks = []
    for sym, delivered in zip(got.index, got["min"], strict=True):
        st = states.get(sym)
        first = delivered.date()
        if st is not None and st.first_price_date is not None:
            first = min(first, st.first_price_date)
        if first > asked:
            marks.append({
                "symbol": sym, "date": calendar.previous_session(first), "marked_as_of": as_of,
                "detail": f"no price before {first}: asked from {request.start}, the provider "
                          f"delivered nothing older (the history extension stops here)"})
    return marks


SUSPECT_CHECKS = ("unexplained_jump", "non_positive_price")
"""Series checks whose first offending session is asked for again (a corrected delivery
replaces a stored price that failed its checks)."""


@dataclass
class RepairPlan:
    """Stored ranges to ask for again, and the sessions given up as known-missing."""

    repair_from: dict[str, dt.date] = field(default_factory=dict)
    holes: int = 0
    suspects: int = 0
    known_missing: list[dict] = field(default_factory=list)


async def plan_repairs(
    states: Sequence[symbol_repo.SymbolState], target: dt.date, sessions: int,
    engine: AsyncEngine | None = None,
) -> RepairPlan:
    """What a run asks for again, besides the sessions after each symbol's last price.

    * **holes**: sessions inside a symbol's stored range, among the last ``sessions``
      sessions through ``target``, with no stored price (a row the checks rejected, a day
      the provider skipped) and not recorded as known-missing → asked again from the
      first such session. A hole older than that window (it was asked for on every run
      while inside it) is recorded in ``known_missing_prices`` and no longer asked for.
    * **suspects**: symbols whose latest data checks found an unexplained jump or a
      non-positive close → asked again from the session before the first one, so a
      corrected delivery can replace the stored row that failed (``core.price_store``).

    The marking is written here (in its own transaction).
    """
    engine = engine or flow_engine()
    plan = RepairPlan()
    live = [s for s in states if s.kind != SymbolKind.private and is_market_symbol(s.symbol)
            and s.last_price_date is not None and s.first_price_date is not None]
    if not live or sessions <= 0:
        return plan
    window_start = calendar.sessions_back(target, sessions - 1)
    scan_start = calendar.sessions_back(target, 2 * sessions - 1)
    syms = [s.symbol for s in live]
    async with reading(engine) as conn:
        pm = await price_repo.load_price_matrix(conn, syms, scan_start, target)
        known = await price_repo.known_missing(conn, syms, scan_start)
        suspects = await finding_repo.first_days(conn, target, SUSPECT_CHECKS)
    days = np.array(pm.sessions, dtype=object)
    for j, st in enumerate(live):
        inside = (days >= st.first_price_date) & (days <= st.last_price_date)
        holes = [d for d in days[inside & ~np.isfinite(pm.close[:, j])]
                 if (st.symbol, d) not in known]
        if not holes:
            continue
        recent = [d for d in holes if d >= window_start]
        if recent:
            plan.repair_from[st.symbol] = recent[0]
            plan.holes += len(recent)
        plan.known_missing += [
            {"symbol": st.symbol, "date": d, "marked_as_of": target,
             "detail": f"no price delivered for {d}: asked for again on every run while it "
                       f"was among the last {sessions} sessions (through {target})"}
            for d in holes if d < window_start]
    by_symbol = {s.symbol: s for s in live}
    for sym, day in suspects.items():
        if sym in by_symbol and day is not None and day <= target:
            again = calendar.previous_session(day)
            plan.repair_from[sym] = min(plan.repair_from.get(sym, again), again)
            plan.suspects += 1
    if plan.known_missing:
        async with transaction(engine) as conn:
            await price_repo.mark_known_missing(conn, plan.known_missing)
    return plan


@dataclass
class FetchReport:
    """What one fetch chunk did."""

    requested: int
    rows: int = 0
    symbols_with_rows: int = 0
    errors: dict[str, str] = field(default_factory=dict)
    rejected_rows: int = 0
    refetched: list[str] = field(default_factory=list)
    delisted: dict[str, str] = field(default_factory=dict)
    provider: str = ""
    profiles: int = 0
    profile_error: str | None = None
    replaced: int = 0
    rebased_rows: int = 0
    restatements_rejected: int = 0
    seconds: float = 0.0
    provider_seconds: float = 0.0
    """Of ``seconds``, the time spent waiting for the provider (the outside world)."""


_provider_lock = threading.Lock()
_providers: dict[tuple, PriceProvider] = {}


def provider_for(settings: Settings) -> PriceProvider:
    """The configured provider chain, built once per process (CSV files are parsed once)."""
    from core.providers.fallback import build_provider

    key = (tuple(settings.provider_chain), str(settings.csv_path), settings.synthetic_seed)
    with _provider_lock:
        if key not in _providers:
            _providers[key] = build_provider(settings)
        return _providers[key]


def _merge_refetch(bars: pd.DataFrame, fresh: pd.DataFrame, symbols: Sequence[str]) -> pd.DataFrame:
    keep = bars[~bars["symbol"].isin(list(symbols))]
    return pd.concat([keep, fresh], ignore_index=True)


def _concerns_present(st: symbol_repo.SymbolState | None, request: FetchRequest) -> bool:
    """True when ``request`` reaches the symbol's latest stored session: only such a fetch
    may change its status (a backfill writes history, never the present). A symbol an
    operator removed (``inactive``) keeps that status whatever a delivery brings."""
    if st is not None and st.status == SymbolStatus.inactive:
        return False
    return st is None or st.last_price_date is None or request.end >= st.last_price_date


async def fetch_and_store(
    request: FetchRequest,
    provider: PriceProvider,
    settings: Settings,
    as_of: dt.date,
    engine: AsyncEngine | None = None,
    provider_gate: AbstractContextManager[Any] | None = None,
    store_gate: AbstractContextManager[Any] | None = None,
) -> FetchReport:
    """Fetch one chunk, validate it, store it under the data-trust rules and update the
    symbols' states (``core.price_store``).

    ``provider_gate`` is held around the provider's answer, ``store_gate`` from that answer
    to the commit (e.g. process-wide semaphores): with one slot each, one chunk is stored
    while the next is fetched.

    Rows the checks reject are never stored; a stored row is replaced only by one that
    passes the checks and loses no field (refusals and replacements are audited in
    ``price_revisions``). A new split or dividend re-fetches that symbol's whole stored
    history so its adjusted closes stay on one basis. Provider-wide failures raise
    ``core.providers.base.ProviderError`` (the task retries them); a database failure
    raises ``StorageError`` (the run fails).
    """
    with storage_failures_named("storing prices failed"):
        t0 = time.perf_counter()
        report = FetchReport(requested=len(request.symbols))

        def ask() -> FetchResult:
            with provider_gate or nullcontext():
                t = time.perf_counter()
                try:
                    return provider.fetch(list(request.symbols), request.start, request.end)
                finally:
                    report.provider_seconds = time.perf_counter() - t

        result = await asyncio.to_thread(ask)
        with store_gate or nullcontext():
            await _store_delivery(request, provider, result, settings, as_of,
                                  engine or flow_engine(), report)
        report.seconds = time.perf_counter() - t0
        return report


async def _store_delivery(
    request: FetchRequest, provider: PriceProvider, result: FetchResult, settings: Settings,
    as_of: dt.date, engine: AsyncEngine, report: FetchReport,
) -> None:
    """Validate ``result`` (the provider's answer to ``request``), store it and update the
    symbols' states; fills ``report``."""
    syms = list(request.symbols)
    report.provider = result.provider or provider.name
    delivery = _validated_delivery(result, report.provider)
    async with reading(engine) as conn:
        states = {s.symbol: s for s in await symbol_repo.get_states(conn, request.symbols)}
        stored_actions = await price_repo.load_actions(conn, syms)
    stored_range = {s: (st.first_price_date, st.last_price_date) for s, st in states.items()
                    if st.first_price_date is not None and st.last_price_date is not None}
    rebase = _symbols_to_rebase(delivery.actions, stored_actions, stored_range)
    refetch = sorted(s for s in rebase if stored_range[s][0] < request.start
                     or stored_range[s][1] > request.end)
    if refetch:
        t = time.perf_counter()
        delivery = await _refetch_history(delivery, provider, request, refetch, stored_range,
                                          report.provider)
        report.provider_seconds += time.perf_counter() - t
        report.refetched = refetch
    report.rejected_rows = delivery.rejected
    offered = set(result.bars["symbol"]) if not result.bars.empty else set()
    bars, actions = delivery.bars, delivery.actions
    async with reading(engine) as conn:
        plan = await price_store.plan_writes(
            conn, bars, pd.concat([stored_actions, actions], ignore_index=True), states,
            rebase, as_of, settings.jump_threshold)
        known = await price_repo.known_missing(
            conn, sorted({p[0] for p in plan.inserted_pairs}),
            min((p[1] for p in plan.inserted_pairs), default=request.start))
    report.replaced, report.rebased_rows = plan.replaced, plan.rebased
    report.restatements_rejected = plan.rejected

    got = bars.groupby("symbol")["date"].agg(["min", "max"]) if not bars.empty else None
    updates = _symbol_state_updates(request, states, got, result.errors, offered, settings,
                                    report)
    fetch_findings = _fetch_findings(report.errors, delivery.findings) + plan.findings
    profiles = None
    if got is not None:
        profiles = await _missing_profiles(provider, engine, list(got.index), report)
    async with transaction(engine) as conn:
        report.rows = await price_repo.upsert_bars(conn, plan.bars)
        fault_point("symbol-batch:inside-price-writes")
        if profiles is not None:
            report.profiles = await profile_repo.upsert_profiles(conn, profiles)
        await price_repo.upsert_actions(conn, actions)
        await price_repo.insert_revisions(conn, plan.revisions)
        await price_repo.forget_known_missing(
            conn, price_store.known_missing_resolved(plan.inserted_pairs, known))
        await price_repo.mark_known_missing(conn, history_start_marks(request, states, got, as_of))
        await symbol_repo.update_states(conn, updates)
        await finding_repo.replace_findings(
            conn, as_of, list(request.symbols), fetch_findings, checks=FETCH_CHECKS
        )
    fault_point("symbol-batch:after-first-price-chunk")  # one chunk committed
    report.symbols_with_rows = 0 if got is None else len(got)


@dataclass(frozen=True)
class _Delivery:
    """A provider's answer for one chunk after :func:`validate_bars`."""

    bars: pd.DataFrame
    """The rows that passed, with a ``provider`` column."""
    actions: pd.DataFrame
    """The delivered corporate actions."""
    findings: list[Finding]
    """The warnings of :func:`validate_bars`."""
    rejected: int
    """Rows :func:`validate_bars` dropped."""


def _validated_delivery(result: FetchResult, default_provider: str) -> _Delivery:
    """``result``'s bars validated and labelled with the provider of each symbol
    (``default_provider`` where the result names none)."""
    bars, findings = validate_bars(result.bars)
    bars = price_store.provider_column(
        bars, dict(result.provider_by_symbol), default_provider)
    return _Delivery(bars, result.actions, findings, len(result.bars) - len(bars))


def _symbols_to_rebase(
    actions: pd.DataFrame, stored_actions: pd.DataFrame,
    stored_range: dict[str, tuple[dt.date, dt.date]],
) -> set[str]:
    """Stored symbols with a new corporate action after their first stored price."""
    # an action changes the adjusted basis of the prices before it: only one after the
    # first stored price moves the stored basis
    fresh_actions = price_store.new_actions(actions, stored_actions)
    return {s for s, d in zip(fresh_actions["symbol"], pd.to_datetime(fresh_actions["date"]),
                              strict=True)
            if s in stored_range and d.date() > stored_range[s][0]}


async def _refetch_history(
    delivery: _Delivery, provider: PriceProvider, request: FetchRequest, refetch: list[str],
    stored_range: dict[str, tuple[dt.date, dt.date]], default_provider: str,
) -> _Delivery:
    """``delivery`` with the whole stored history of the ``refetch`` symbols fetched again
    (on the new adjusted basis) in place of their delivered rows."""
    since = min([request.start, *(stored_range[s][0] for s in refetch)])
    until = max([request.end, *(stored_range[s][1] for s in refetch)])
    again = await asyncio.to_thread(provider.fetch, refetch, since, until)
    fresh = _validated_delivery(again, again.provider or default_provider)
    return _Delivery(
        bars=_merge_refetch(delivery.bars, fresh.bars, refetch),
        actions=pd.concat([delivery.actions, fresh.actions], ignore_index=True).drop_duplicates(
            ["symbol", "date", "kind"], keep="last"
        ),
        findings=delivery.findings + fresh.findings,
        rejected=delivery.rejected + fresh.rejected,
    )


def _symbol_state_updates(
    request: FetchRequest, states: dict[str, symbol_repo.SymbolState], got: pd.DataFrame | None,
    errors: dict[str, str], offered: set[str], settings: Settings, report: FetchReport,
) -> list[dict]:
    """State updates of the requested symbols: price range, and for a fetch that concerns
    the present, status (active, delisted, error). Records fetch errors and delistings in
    ``report``. ``got``: first/last delivered date per symbol with rows (None: no rows)."""
    updates: list[dict] = []
    ranges = {} if got is None else dict(zip(got.index, zip(
        calendar.as_dates(got["min"]), calendar.as_dates(got["max"]), strict=True),
        strict=True))
    for sym in request.symbols:
        st = states.get(sym)
        present = _concerns_present(st, request)
        if sym in ranges:
            lo, hi = ranges[sym]
            update: dict[str, Any] = {"symbol": sym, "first_price_date": lo,
                                      "last_price_date": hi}
            if present:
                last = max(hi, st.last_price_date) if st and st.last_price_date else hi
                update.update(status=SymbolStatus.active.value, error_reason=None)
                if sym not in REFERENCE_ETFS and calendar.session_count_between(
                        last, request.end) > settings.delist_after_sessions:
                    report.delisted[sym] = f"no prices since {last}"
                    update.update(status=SymbolStatus.delisted.value,
                                  error_reason=report.delisted[sym])
            updates.append(update)
        elif sym in errors or sym in offered:
            reason = errors.get(sym) or "no_data: every row failed the data checks"
            report.errors[sym] = reason
            if not present or sym in REFERENCE_ETFS:
                continue  # a reference ETF is never retired: the run fails loudly instead
            if st is None or st.last_price_date is None:
                updates.append({"symbol": sym, "status": SymbolStatus.error.value,
                                "error_reason": reason})
            elif calendar.session_count_between(st.last_price_date, request.end) > (
                settings.delist_after_sessions
            ):
                report.delisted[sym] = f"no prices since {st.last_price_date}: {reason}"
                updates.append({"symbol": sym, "status": SymbolStatus.delisted.value,
                                "error_reason": report.delisted[sym]})
    return updates


def _fetch_findings(errors: dict[str, str], rejected: list[Finding]) -> list[Finding]:
    """A ``fetch_error`` per symbol in ``errors``, then a ``rejected_rows`` warning per
    finding of :func:`validate_bars` (its check named in the detail)."""
    return [
        Finding(symbol=s, check="fetch_error", severity="error", day=None, detail=r)
        for s, r in errors.items()
    ] + [
        Finding(symbol=f.symbol, check="rejected_rows", severity="warning", day=f.day,
                detail=f"{f.check}: {f.detail}")
        for f in rejected
    ]


async def _missing_profiles(
    provider: PriceProvider, engine: AsyncEngine, symbols: list[str], report: FetchReport
) -> pd.DataFrame | None:
    """The provider's profiles of those ``symbols`` that have none stored (None: none needed,
    or the provider failed; the error is noted in ``report``, prices never fail for it)."""
    async with reading(engine) as conn:
        need = await profile_repo.symbols_without_profile(conn, symbols)
    if need:
        try:
            return await asyncio.to_thread(provider.fetch_profiles, need)
        except Exception as exc:  # profiles are descriptive: never fail prices for them
            report.profile_error = short_error(exc)
    return None


async def record_fetch_failures(
    as_of: dt.date, failures: dict[str, str], engine: AsyncEngine | None = None
) -> None:
    """Store ``fetch_error`` findings for symbols whose whole chunk failed (statuses unchanged:
    the next run tries them again)."""
    if not failures:
        return
    findings = [
        Finding(symbol=s, check="fetch_error", severity="error", day=None, detail=r)
        for s, r in failures.items()
    ]
    async with transaction(engine or flow_engine()) as conn:
        await finding_repo.replace_findings(
            conn, as_of, list(failures), findings, checks=FETCH_CHECKS
        )


@dataclass
class FactorReport:
    """What one factor chunk did, over all its dates."""

    symbols: int
    dates: int
    exposure_rows: int = 0
    values_by_family: dict[str, int] = field(default_factory=dict)
    no_value_reasons: dict[str, int] = field(default_factory=dict)
    blocked: dict[str, str] = field(default_factory=dict)
    findings_by_check: dict[str, int] = field(default_factory=dict)
    flagged: int = 0
    load_seconds: float = 0.0
    compute_seconds: float = 0.0
    write_seconds: float = 0.0
    reference_blocked: dict[str, dict[str, str]] = field(default_factory=dict)
    """Date → factor → why it was not computed for any symbol (a reference ETF failed)."""


def reference_blocked_factors(
    sessions: Sequence[dt.date],
    close: np.ndarray,
    split_ratio: np.ndarray,
    as_of: dt.date,
    jump_threshold: float = 0.5,
    stale_sessions: int = 3,
) -> dict[str, str]:
    """Factors that must not be computed because a reference ETF failed a data check.

    ``close``/``split_ratio``: (T, 8) raw closes and split ratios of ``REFERENCE_ETFS`` (in
    that order) on the ``T ≥ MAX_WINDOW + 1`` sessions ending at ``as_of``. Each factor
    family looks at its own window (90 or 180 returns → 91 or 181 prices): an error
    finding of :func:`core.quality.check_series` for an ETF the factor is defined on
    (for the style ridge: any of the six ridge ETFs) holds the factor back for every
    symbol. Returns factor → ``"reference_data: <ETF> failed …"``.
    """
    out: dict[str, str] = {}
    t_len = len(sessions)
    for window in sorted({f.window for f in FACTORS}):
        lo = max(0, t_len - window - 1)
        bad = blocking_reasons(check_series(
            list(REFERENCE_ETFS), sessions[lo:], close[lo:], split_ratio[lo:], as_of,
            jump_threshold=jump_threshold, stale_sessions=stale_sessions))
        for spec in FACTORS:
            if spec.window != window:
                continue
            needs = RIDGE_ETFS if spec.family == "ridge" else spec.etfs
            failed = [e for e in needs if e in bad]
            if failed:
                out[spec.name] = "reference_data: " + "; ".join(
                    f"{e} failed its data checks in the {window}-return window ({bad[e]})"
                    for e in failed)
    return out


def _reason_code(reason: str) -> str:
    return reason.split(":", 1)[0]


async def compute_and_store_factors(
    symbols: Sequence[str],
    dates: Sequence[dt.date],
    settings: Settings,
    engine: AsyncEngine | None = None,
) -> FactorReport:
    """Data checks, factor exposures and daily metrics of ``symbols`` for each of ``dates``
    (see :func:`_compute_and_store_factors`); a database failure raises ``StorageError``."""
    with storage_failures_named("storing factors failed"):
        return await _compute_and_store_factors(symbols, dates, settings, engine)


async def _compute_and_store_factors(
    symbols: Sequence[str],
    dates: Sequence[dt.date],
    settings: Settings,
    engine: AsyncEngine | None = None,
) -> FactorReport:
    """Data checks, factor exposures and daily metrics of ``symbols`` for each of ``dates``.

    Prices are read once for the chunk (``HISTORY_SESSIONS`` sessions before the
    first date through the last). Symbols with error findings get no betas; the
    reason is stored instead.
    """
    engine = engine or flow_engine()
    report = FactorReport(symbols=len(symbols), dates=len(dates))
    syms = list(symbols)
    n = len(syms)
    extra = [e for e in REFERENCE_ETFS if e not in set(syms)]
    t0 = time.perf_counter()
    first = calendar.sessions_back(min(dates), HISTORY_SESSIONS)
    async with reading(engine) as conn:
        pm = await price_repo.load_price_matrix(conn, syms + extra, first, max(dates))
    col = {s: j for j, s in enumerate(pm.symbols)}
    blocks_to_store = pm.rebuilt_blocks
    report.load_seconds = time.perf_counter() - t0
    families = {f.name: f.family for f in FACTORS}
    fam_counts: Counter[str] = Counter()
    reasons: Counter[str] = Counter()
    checks: Counter[str] = Counter()
    for day in dates:
        t1 = time.perf_counter()
        e = pm.sessions.index(day)
        lo = e - MAX_WINDOW
        window_sessions = pm.sessions[lo : e + 1]
        findings = check_series(
            syms, window_sessions, pm.close[lo : e + 1, :n], pm.split_ratio[lo : e + 1, :n], day,
            jump_threshold=settings.jump_threshold, stale_sessions=settings.stale_sessions,
        )
        blocked_by_symbol = blocking_reasons(findings)
        blocked = {col[s]: r for s, r in blocked_by_symbol.items() if col.get(s, n) < n}
        returns = simple_returns(pm.adj_close[lo : e + 1])  # shape: (MAX_WINDOW, N + extra)
        etf_returns = {etf: returns[:, col[etf]] for etf in REFERENCE_ETFS}
        fx = compute_factor_exposures(returns[:, :n], etf_returns, blocked=blocked)
        ref = [col[e] for e in REFERENCE_ETFS]
        held = reference_blocked_factors(
            pm.sessions[lo : e + 1], pm.close[lo : e + 1, ref], pm.split_ratio[lo : e + 1, ref],
            day, settings.jump_threshold, settings.stale_sessions)
        for name, why in held.items():
            fi = fx.factors.index(name)
            fx.beta[fi], fx.r_squared[fi], fx.resid_vol[fi] = np.nan, np.nan, np.nan
            fx.n_obs[fi], fx.reason[fi], fx.flag[fi] = 0, why, None
        if held:
            report.reference_blocked[day.isoformat()] = held
        hlo = max(0, e - HISTORY_SESSIONS + 1)
        metrics = symbol_daily_metrics(pm.adj_close[hlo : e + 1, :n], pm.sessions[hlo : e + 1])
        report.compute_seconds += time.perf_counter() - t1
        t2 = time.perf_counter()
        has_value: np.ndarray = np.asarray(np.isfinite(fx.beta).any(axis=0))
        async with transaction(engine) as conn:
            if blocks_to_store:  # the read's cache fill, stored with the first date's rows
                await price_blocks.store_blocks(conn, blocks_to_store)
                blocks_to_store = []
            report.exposure_rows += await factor_repo.upsert_exposures(conn, day, syms, fx)
            fault_point("symbol-batch:inside-factor-writes")
            await factor_repo.upsert_metrics(conn, syms, metrics)
            await finding_repo.replace_findings(conn, day, syms, findings, checks=SERIES_CHECKS)
            if day == max(dates):
                await symbol_repo.update_states(
                    conn,
                    [{"symbol": s, "last_factor_date": day} for j, s in enumerate(syms)
                     if has_value[j]],
                )
        report.write_seconds += time.perf_counter() - t2
        for fi, name in enumerate(fx.factors):
            fam_counts[families[name]] += int(np.isfinite(fx.beta[fi]).sum())
            for r in fx.reason[fi]:
                if r:
                    reasons[_reason_code(r)] += 1
            report.flagged += sum(1 for f in fx.flag[fi] if f)
        checks.update(f.check for f in findings)
        report.blocked.update(blocked_by_symbol)
    report.values_by_family = dict(fam_counts)
    report.no_value_reasons = dict(reasons)
    report.findings_by_check = dict(checks)
    return report


async def reference_gaps(
    dates: Sequence[dt.date], engine: AsyncEngine | None = None
) -> dict[str, str]:
    """Reference ETFs lacking a price on any of ``dates`` (ETF → message); empty when all good."""
    engine = engine or flow_engine()
    async with reading(engine) as conn:
        pm = await price_repo.load_price_matrix(conn, list(REFERENCE_ETFS), min(dates), max(dates))
    missing: dict[str, str] = {}
    for j, etf in enumerate(pm.symbols):
        absent = [d for i, d in enumerate(pm.sessions) if not np.isfinite(pm.adj_close[i, j])]
        if absent:
            missing[etf] = f"no price on {absent[0]}" + (
                f" and {len(absent) - 1} more session(s)" if len(absent) > 1 else ""
            )
    return missing


async def register_universe(
    symbols: Iterable[str], engine: AsyncEngine | None = None
) -> dict[str, Any]:
    """Add symbols (pending) and the reference ETFs to the universe if absent.

    Symbols are validated and normalised (``core.symbols``); invalid ones are not stored
    and come back under ``rejected`` with the reason. Private identifiers are stored with
    kind ``private`` and never fetched.
    """
    engine = engine or flow_engine()
    market: list[str] = []
    private: list[str] = []
    rejected: dict[str, str] = {}
    for raw in symbols:
        try:
            sym = validate_symbol(raw)
        except InvalidSymbolError as exc:
            rejected[str(raw)] = str(exc)
            continue
        (market if is_market_symbol(sym) else private).append(sym)
    etfs = [(e, SymbolKind.etf) for e in REFERENCE_ETFS]
    async with transaction(engine) as conn:
        added = await symbol_repo.add_symbols(conn, etfs, status=SymbolStatus.pending)
        added += await symbol_repo.add_symbols(
            conn, [(s, SymbolKind.equity) for s in market if s not in REFERENCE_ETFS]
        )
        added += await symbol_repo.add_symbols(
            conn, [(s, SymbolKind.private) for s in private], status=SymbolStatus.active
        )
    return {"market": len(market), "private": len(private), "sent": added, "rejected": rejected}


async def reject_invalid_symbols(
    states: Sequence[symbol_repo.SymbolState], engine: AsyncEngine | None = None
) -> dict[str, str]:
    """Universe rows (not private) whose identifier is not a valid ticker: marked ``error``
    with the reason (they are never sent to a provider); returns symbol → reason."""
    invalid: dict[str, str] = {}
    for st in states:
        if st.kind == SymbolKind.private:
            continue
        try:
            validate_symbol(st.symbol)
        except InvalidSymbolError as exc:
            invalid[st.symbol] = f"invalid_symbol: {exc}"
    if invalid:
        async with transaction(engine or flow_engine()) as conn:
            await symbol_repo.update_states(conn, [
                {"symbol": k, "status": SymbolStatus.error.value, "error_reason": v}
                for k, v in invalid.items()
            ])
    return invalid


BATCH_LOCK = "symbol-batch"
"""One symbol batch at a time per database (whatever its dates: runs share symbols' rows)."""


async def lock_batch(
    owner: run_lock.LockOwner,
    holder_gone: Callable[[run_lock.LockState], bool] | None = None,
    engine: AsyncEngine | None = None,
) -> run_lock.LockState:
    """Take the symbol-batch lock (taking it over from a dead holder) or raise
    ``BatchAlreadyRunning`` naming the live holder."""
    try:
        return await run_lock.acquire(BATCH_LOCK, owner, holder_gone=holder_gone, engine=engine)
    except run_lock.LockHeld as exc:
        raise BatchAlreadyRunning(
            f"another symbol batch is running ({exc}); this run stops without writing. "
            "Run it again once that one has finished (`factorflow runs` lists runs and "
            "locks)") from None


async def unlock_batch(holder: str, engine: AsyncEngine | None = None) -> None:
    """Release the symbol-batch lock if ``holder`` holds it."""
    await run_lock.release(BATCH_LOCK, holder, engine)
