"""The symbol universe as an operator manages it: list, add (or import), remove, refetch.

The universe is the ``symbols`` table. The nightly symbol batch fetches its ``active`` and
``pending`` symbols; an operator adds symbols (``pending`` until the next batch fetches
them), removes them (``inactive``: never fetched again, their stored history kept; ``add``
re-activates them) and re-requests a symbol's whole stored history when a provider
corrected it (``refetch``). ``factorflow symbols …`` and the admin API
(``/v1/admin/symbols``) both call these functions.

Removing a symbol is an operator's decision about the symbol layer, but it is checked
against the portfolio layer: a symbol an open position of a live portfolio holds is
removed only when forced, and the answer names the portfolios.

Reading ticker files is :mod:`core.services.ticker_file`. May import: repositories, the
plain symbol steps (``core.symbol_steps``), providers, ``core.db``, ``core.run_lock``.
Not: flows, api, cli, Prefect.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from core import run_lock
from core.db.engine import flow_engine, reading, transaction
from core.db.models import (
    OnboardingJob,
    PriceRevision,
    Symbol,
    SymbolFactorExposure,
    SymbolKind,
    SymbolStatus,
)
from core.errors import Conflict, InvalidInput, NotFound
from core.factors.definitions import REFERENCE_ETFS
from core.providers.base import PriceProvider, ProviderError
from core.repositories import portfolios as portfolio_repo
from core.repositories import symbols as symbol_repo
from core.services.ticker_file import TickerEntry
from core.settings import Settings, get_settings
from core.symbol_steps import (
    BATCH_LOCK,
    FetchRequest,
    compute_and_store_factors,
    fetch_and_store,
    provider_for,
)
from core.symbols import InvalidSymbolError, is_market_symbol, validate_symbol

_symbols = Symbol.__table__  # type: ignore[attr-defined]
_jobs = OnboardingJob.__table__  # type: ignore[attr-defined]
_revision_log = PriceRevision.__table__  # type: ignore[attr-defined]
_exposures = SymbolFactorExposure.__table__  # type: ignore[attr-defined]

STATUSES = tuple(s.value for s in SymbolStatus)
MAX_REVISIONS_SHOWN = 50
"""Price revisions listed per symbol in a refetch report (all are in ``price_revisions``)."""


class NoValidSymbols(InvalidInput):
    """Nothing valid was given to add; ``report`` says why each entry was rejected."""

    def __init__(self, message: str, field_name: str | None, report: AddReport) -> None:
        super().__init__(message, field_name)
        self.report = report


class RefetchBlocked(Conflict):
    """A live symbol batch (or another refetch) holds the symbol-batch lock."""


# --- listing -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class UniverseRow:
    """One symbol of the universe as an operator sees it."""

    symbol: str
    kind: str
    status: str
    first_price_date: dt.date | None
    last_price_date: dt.date | None
    last_factor_date: dt.date | None
    error_reason: str | None


@dataclass(frozen=True)
class UniversePage:
    """A page of the universe (ordered by symbol), with the count of every status."""

    items: list[UniverseRow]
    total: int
    """Symbols matching the filter (all pages)."""
    limit: int | None
    offset: int
    counts: dict[str, int]
    """Symbols per status, over the whole universe (not only the filter)."""


def _status(value: str | None) -> str | None:
    if value is None:
        return None
    s = value.strip().lower()
    if s not in STATUSES:
        raise InvalidInput(f"status: unknown status {value!r} (expected "
                           f"{', '.join(STATUSES)})", "status")
    return s


MAX_OFFSET = 10_000_000
"""The largest page offset of the universe's list (far beyond any universe)."""


async def list_symbols(
    engine: AsyncEngine | None = None, *, status: str | None = None,
    limit: int | None = None, offset: int = 0,
) -> UniversePage:
    """The universe, ordered by symbol, optionally one ``status`` and one page.

    Parameters
    ----------
    engine
        The database (default: the configured one).
    status
        Only symbols with this status (``InvalidInput`` naming ``status`` if unknown).
    limit, offset
        The page (``limit=None``: every row from ``offset``).

    Returns
    -------
    UniversePage
        The rows, the number matching the filter and the count per status.
    """
    wanted = _status(status)
    if not 0 <= offset <= MAX_OFFSET:  # the database's integers end at 2**63
        raise InvalidInput(f"offset: must be from 0 to {MAX_OFFSET:,}", "offset")
    if limit is not None and limit < 1:
        raise InvalidInput("limit: must be at least 1", "limit")
    stmt = sa.select(_symbols).order_by(_symbols.c.symbol)
    total_stmt = sa.select(sa.func.count()).select_from(_symbols)
    if wanted is not None:
        stmt = stmt.where(_symbols.c.status == wanted)
        total_stmt = total_stmt.where(_symbols.c.status == wanted)
    if offset:
        stmt = stmt.offset(offset)
    if limit is not None:
        stmt = stmt.limit(limit)
    async with reading(engine or flow_engine()) as conn:
        rows = (await conn.execute(stmt)).all()
        total = int((await conn.execute(total_stmt)).scalar_one())
        counts = await symbol_repo.count_by_status(conn)
    items = [UniverseRow(r.symbol, str(r.kind), str(r.status), r.first_price_date,
                         r.last_price_date, r.last_factor_date, r.error_reason) for r in rows]
    return UniversePage(items, total, limit, offset,
                        {s: counts[s] for s in sorted(counts)})


# --- adding ----------------------------------------------------------------------------------


@dataclass
class AddReport:
    """What :func:`add_symbols` did with each entry."""

    added: list[dict[str, str]] = field(default_factory=list)
    """``{"symbol", "kind"}``: new in the universe (market symbols ``pending``, private
    identifiers ``active`` and never fetched)."""
    reactivated: list[dict[str, str | None]] = field(default_factory=list)
    """``{"symbol", "previous_status", "previous_reason", "status"}``: inactive (removed),
    error or delisted symbols the next symbol batch fetches again: ``active`` when they have
    stored prices (it fetches the sessions they missed), else ``pending``."""
    already_present: list[dict[str, str]] = field(default_factory=list)
    """``{"symbol", "status"}``: already active or pending (left alone)."""
    rejected: list[dict[str, str]] = field(default_factory=list)
    """``{"input", "where", "reason"}``: not a valid identifier (not stored)."""
    reference_added: list[str] = field(default_factory=list)
    """Reference ETFs the factors need, added because they were missing."""

    @property
    def valid(self) -> int:
        """Entries that named a valid symbol (added, re-activated or already present)."""
        return len(self.added) + len(self.reactivated) + len(self.already_present)

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (JSON output, API responses)."""
        return {**asdict(self), "valid": self.valid}


def _entries(symbols: Sequence[str | TickerEntry]) -> list[TickerEntry]:
    return [s if isinstance(s, TickerEntry) else TickerEntry(str(s), f"symbols[{i}]")
            for i, s in enumerate(symbols)]


async def add_symbols(
    symbols: Sequence[str | TickerEntry], engine: AsyncEngine | None = None,
) -> AddReport:
    """Add symbols to the universe, validated and normalised by the identifier rules
    (``core.symbols``): ``pending`` until the next symbol batch fetches them.

    A symbol that is ``inactive`` (removed), ``error`` or ``delisted`` is fetched again by
    the next batch: it becomes ``active`` when it has stored prices (the batch fetches the
    sessions it missed; its factors and the API's status stay served meanwhile), else
    ``pending``; one that is ``active`` or ``pending`` is left alone. Private identifiers
    (``PRIVATE_FUND_A``, internal IDs) are stored with kind ``private`` and never fetched.
    The reference ETFs are added when missing.

    Parameters
    ----------
    symbols
        Raw tickers (or :class:`TickerEntry` with where each came from, e.g. a file's line).
    engine
        The database (default: the configured one).

    Returns
    -------
    AddReport
        Per entry: added, re-activated, already present or rejected with the reason.

    Raises
    ------
    NoValidSymbols
        Nothing valid was given (empty, or every entry rejected); nothing was written.
    """
    report = AddReport()
    wanted: dict[str, TickerEntry] = {}
    for entry in _entries(symbols):
        try:
            sym = validate_symbol(entry.raw)
        except InvalidSymbolError as exc:
            report.rejected.append({"input": entry.raw, "where": entry.where,
                                    "reason": exc.problem})
            continue
        wanted.setdefault(sym, entry)
    if not wanted:
        if report.rejected:
            first = report.rejected[0]
            more = (f" (and {len(report.rejected) - 1} more rejected)"
                    if len(report.rejected) > 1 else "")
            raise NoValidSymbols(
                f"{first['where']}: invalid symbol {first['input']!r}: {first['reason']}{more}",
                first["where"], report)
        raise NoValidSymbols("symbols: no symbol given", "symbols", report)
    async with transaction(engine or flow_engine()) as conn:
        states = {s.symbol: s for s in await symbol_repo.get_states(
            conn, [*wanted, *REFERENCE_ETFS])}
        missing_etfs = [e for e in REFERENCE_ETFS if e not in states]
        if missing_etfs:
            await symbol_repo.add_symbols(conn, [(e, SymbolKind.etf) for e in missing_etfs])
            report.reference_added = [e for e in missing_etfs if e not in wanted]
        new_market, new_private, again = [], [], []
        for sym in wanted:
            st = states.get(sym)
            if st is None:
                if sym in REFERENCE_ETFS:
                    report.added.append({"symbol": sym, "kind": SymbolKind.etf.value})
                elif is_market_symbol(sym):
                    new_market.append(sym)
                    report.added.append({"symbol": sym, "kind": SymbolKind.equity.value})
                else:
                    new_private.append(sym)
                    report.added.append({"symbol": sym, "kind": SymbolKind.private.value})
            elif st.status in (SymbolStatus.inactive, SymbolStatus.error, SymbolStatus.delisted):
                status = (SymbolStatus.active if st.last_price_date is not None
                          or st.kind == SymbolKind.private else SymbolStatus.pending)
                again.append({"symbol": sym, "status": status.value, "error_reason": None})
                report.reactivated.append({"symbol": sym, "previous_status": st.status.value,
                                           "previous_reason": st.error_reason,
                                           "status": status.value})
            else:
                report.already_present.append({"symbol": sym, "status": st.status.value})
        await symbol_repo.add_symbols(conn, [(s, SymbolKind.equity) for s in new_market])
        await symbol_repo.add_symbols(conn, [(s, SymbolKind.private) for s in new_private],
                                      status=SymbolStatus.active)
        await symbol_repo.update_states(conn, again)
    return report


# --- removing --------------------------------------------------------------------------------


@dataclass
class RemoveReport:
    """What :func:`remove_symbols` did with each symbol."""

    removed: list[dict[str, Any]] = field(default_factory=list)
    """``{"symbol", "previous_status", "held_by"}``: now ``inactive`` (``held_by`` lists the
    live portfolios still holding it: only with ``force``)."""
    already_inactive: list[str] = field(default_factory=list)
    held: list[dict[str, Any]] = field(default_factory=list)
    """``{"symbol", "portfolios"}``: held by live portfolios, not removed (no ``force``)."""
    refused: list[dict[str, str]] = field(default_factory=list)
    """``{"input", "reason", "code"}``: invalid, not in the universe (``not_found``), or a
    reference ETF (``reference_etf``)."""

    @property
    def ok(self) -> bool:
        """True when every symbol given is now inactive."""
        return not self.held and not self.refused

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (JSON output, API responses)."""
        return {**asdict(self), "ok": self.ok}


async def holders(
    conn: AsyncConnection, symbols: Sequence[str], today: dt.date | None = None,
) -> dict[str, list[dict[str, str]]]:
    """Live (not deleted) portfolios with an open position (no exit, or an exit after
    ``today``) in each of ``symbols``: symbol → ``[{"id", "name", "owner"}]``."""
    out: dict[str, list[dict[str, str]]] = {}
    for h in await portfolio_repo.open_position_holders(
            conn, symbols, today or dt.date.today()):
        out.setdefault(h.symbol, []).append({"id": h.id, "name": h.name, "owner": h.owner})
    return out


def removed_reason(day: dt.date) -> str:
    """The reason stored on a symbol an operator removed on ``day``."""
    return f"inactive: removed from the universe on {day} (adding it again re-activates it)"


async def remove_symbols(
    symbols: Sequence[str], force: bool = False, engine: AsyncEngine | None = None,
) -> RemoveReport:
    """Stop fetching symbols: their status becomes ``inactive``; prices, factors and every
    other stored row are kept. Pending onboarding jobs of the symbols are closed.

    A symbol held by an open position of a live portfolio is removed only with ``force``
    (the report names the portfolios either way); a reference ETF is never removed (every
    factor depends on it).

    Parameters
    ----------
    symbols
        Raw tickers (validated and normalised).
    force
        Remove held symbols too (those portfolios' snapshots become partial once the
        symbol's last price is older than the session they value).
    engine
        The database (default: the configured one).

    Returns
    -------
    RemoveReport
        Removed, already inactive, held (not removed) and refused symbols.
    """
    report = RemoveReport()
    wanted: list[str] = []
    for raw in symbols:
        try:
            sym = validate_symbol(raw)
        except InvalidSymbolError as exc:
            report.refused.append({"input": str(raw), "reason": f"invalid symbol: {exc.problem}",
                                   "code": "invalid"})
            continue
        if sym in REFERENCE_ETFS:
            report.refused.append({
                "input": sym, "code": "reference_etf",
                "reason": "a reference ETF: every factor is computed on it, it cannot be "
                          "removed"})
        elif sym not in wanted:
            wanted.append(sym)
    if not wanted:
        return report
    today = dt.date.today()
    async with transaction(engine or flow_engine()) as conn:
        states = {s.symbol: s for s in await symbol_repo.get_states(conn, wanted)}
        held_by = await holders(conn, [s for s in wanted if s in states], today)
        remove: list[str] = []
        for sym in wanted:
            st = states.get(sym)
            if st is None:
                report.refused.append({"input": sym, "code": "not_found",
                                       "reason": "not in the universe"})
            elif st.status == SymbolStatus.inactive:
                report.already_inactive.append(sym)
            elif held_by.get(sym) and not force:
                report.held.append({"symbol": sym, "portfolios": held_by[sym]})
            else:
                remove.append(sym)
                report.removed.append({"symbol": sym, "previous_status": st.status.value,
                                       "held_by": held_by.get(sym, [])})
        await symbol_repo.update_states(conn, [
            {"symbol": s, "status": SymbolStatus.inactive.value,
             "error_reason": removed_reason(today)} for s in remove])
        if remove:
            await conn.execute(sa.update(_jobs).where(
                _jobs.c.symbol.in_(remove),
                _jobs.c.status.in_(("pending", "processing"))
            ).values(status="error", error="removed from the universe by an operator",
                     finished_at=dt.datetime.now(dt.UTC)))
    return report


def _portfolios_text(portfolios: list[dict[str, str]]) -> str:
    shown = ", ".join(f"{p['name']!r} of {p['owner']} ({p['id']})" for p in portfolios[:5])
    return shown + (f" and {len(portfolios) - 5} more" if len(portfolios) > 5 else "")


async def remove_symbol(
    symbol: str, force: bool = False, engine: AsyncEngine | None = None,
) -> RemoveReport:
    """:func:`remove_symbols` for one symbol, its refusals raised as named errors (the API).

    Raises
    ------
    InvalidInput
        An invalid identifier or a reference ETF (field ``symbol``).
    NotFound
        Not in the universe.
    Conflict
        Held by live portfolios and not ``force`` (field ``force``; the message names them).
    """
    report = await remove_symbols([symbol], force, engine)
    for r in report.refused:
        if r["code"] == "not_found":
            raise NotFound(f"symbol {r['input']!r} is not in the universe", "symbol")
        raise InvalidInput(f"symbol: {r['input']!r}: {r['reason']}", "symbol")
    for h in report.held:
        raise Conflict(
            f"{h['symbol']} is held by {len(h['portfolios'])} live portfolio(s): "
            f"{_portfolios_text(h['portfolios'])}; remove it with force=true to stop fetching "
            "it anyway", "force")
    return report


# --- refetching ------------------------------------------------------------------------------


@dataclass
class SymbolRefetch:
    """One symbol's refetch: what the delivery changed and its factors before and after."""

    symbol: str
    start: dt.date
    end: dt.date
    provider: str = ""
    error: str | None = None
    """Why nothing was delivered (the provider's reason), or None."""
    rows_written: int = 0
    inserted: int = 0
    """Sessions that were missing and are now stored."""
    replaced: int = 0
    """Stored prices replaced by corrected ones (audited in ``price_revisions``)."""
    refused: int = 0
    """Re-delivered prices refused (worse than the stored ones; audited)."""
    rebased: int = 0
    """Adjusted closes moved to the basis of a new split or dividend."""
    revisions: list[dict[str, Any]] = field(default_factory=list)
    """The audit rows this refetch wrote: ``{"date", "outcome", "reason", "stored_close",
    "offered_close"}`` (at most ``MAX_REVISIONS_SHOWN``)."""
    factor_date: dt.date | None = None
    """The session its factors were recomputed at (its last factor date), or None."""
    factors_before: dict[str, float | None] = field(default_factory=dict)
    factors_after: dict[str, float | None] = field(default_factory=dict)
    no_value_reason: str | None = None
    """Why a factor has no value after the recompute (e.g. a data check still fails)."""
    status: str = ""
    """The symbol's status afterwards."""


@dataclass
class RefetchReport:
    """What :func:`refetch_symbols` did."""

    symbols: list[SymbolRefetch] = field(default_factory=list)
    skipped: list[dict[str, str]] = field(default_factory=list)
    """``{"input", "code", "reason"}``: invalid, not in the universe, private, no history."""
    recomputed: dict[str, int] = field(default_factory=dict)
    """Session → symbols whose factors were recomputed there (all of that session's symbols
    when a reference ETF's prices changed)."""
    portfolios_invalidated: int = 0
    """Live portfolios holding a refetched symbol whose cached analytics were dropped."""

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (JSON output, API responses)."""
        return asdict(self)


def _owner(holder: str | None) -> run_lock.LockOwner:
    return run_lock.this_process(holder or f"symbols-refetch-{uuid.uuid4()}")


async def _factor_dates(conn: AsyncConnection, symbols: Sequence[str]) -> dict[str, dt.date]:
    """Per symbol the session its factors were last computed at (with or without values)."""
    rows = (await conn.execute(
        sa.select(_exposures.c.symbol, sa.func.max(_exposures.c.date))
        .where(_exposures.c.symbol.in_(list(symbols))).group_by(_exposures.c.symbol))).all()
    return {r[0]: r[1] for r in rows if r[1] is not None}


async def _betas(conn: AsyncConnection, symbol: str, day: dt.date
                 ) -> tuple[dict[str, float | None], str | None]:
    rows = (await conn.execute(
        sa.select(_exposures.c.factor, _exposures.c.beta, _exposures.c.reason)
        .where(_exposures.c.symbol == symbol, _exposures.c.date == day)
        .order_by(_exposures.c.factor))).all()
    reason = next((r.reason for r in rows if r.beta is None and r.reason), None)
    return {r.factor: (None if r.beta is None else float(r.beta)) for r in rows}, reason


def _plain(value: Any) -> float | None:
    return None if value is None else float(value)


async def _revisions(conn: AsyncConnection, symbol: str, after_id: int) -> list[dict[str, Any]]:
    rows = (await conn.execute(
        sa.select(_revision_log.c.date, _revision_log.c.outcome, _revision_log.c.reason,
                  _revision_log.c.stored_close, _revision_log.c.offered_close)
        .where(_revision_log.c.symbol == symbol, _revision_log.c.id > after_id)
        .order_by(_revision_log.c.date)
        .limit(MAX_REVISIONS_SHOWN))).all()
    return [{"date": r.date, "outcome": r.outcome, "reason": r.reason,
             "stored_close": _plain(r.stored_close), "offered_close": _plain(r.offered_close)}
            for r in rows]


async def refetch_symbols(
    symbols: Sequence[str],
    engine: AsyncEngine | None = None,
    settings: Settings | None = None,
    provider: PriceProvider | None = None,
    holder: str | None = None,
) -> RefetchReport:
    """Re-request each symbol's whole stored history now, store it under the data-trust
    rules, and recompute its factors at its last factor date.

    Runs under the symbol batch's lock (``symbol-batch``): never while a symbol batch runs.
    Each symbol is fetched over [first stored price, last stored price] through the
    configured provider chain and stored by ``core.symbol_steps.fetch_and_store``: a stored
    price is replaced only by one that passes the checks and loses no field, a corrected
    delivery replaces a price that failed its checks, refusals and replacements are audited
    in ``price_revisions``. Then the symbol's data checks, factors and metrics are computed
    again at the last session its factors were computed for (every symbol of that session
    when a reference ETF's prices changed), and the cached analytics of live portfolios
    holding it are dropped so the API serves the corrected betas.

    Parameters
    ----------
    symbols
        Raw tickers (validated and normalised).
    engine
        A NullPool engine (``core.db.engine.flow_engine``; default: the configured
        database): the lock's heartbeat uses it from another thread.
    settings, provider
        Default: the configured settings and provider chain.
    holder
        The lock holder's name (default ``symbols-refetch-<uuid>``).

    Returns
    -------
    RefetchReport
        Per symbol: rows inserted, replaced, refused (with reasons) and rebased, and its
        factors before and after; the symbols skipped and why.

    Raises
    ------
    RefetchBlocked
        A live run holds the symbol-batch lock (the message names it).
    """
    engine = engine or flow_engine()
    settings = settings or get_settings()
    report = RefetchReport()
    wanted: list[str] = []
    for raw in symbols:
        try:
            sym = validate_symbol(raw)
        except InvalidSymbolError as exc:
            report.skipped.append({"input": str(raw), "code": "invalid",
                                   "reason": f"invalid symbol: {exc.problem}"})
            continue
        if sym not in wanted:
            wanted.append(sym)
    if not wanted:
        return report
    owner = _owner(holder)
    try:
        await run_lock.acquire(BATCH_LOCK, owner, engine=engine)
    except run_lock.LockHeld as exc:
        raise RefetchBlocked(
            f"a symbol batch is running ({exc}): refetch again when it has finished "
            "(`factorflow runs` lists runs and locks)") from None
    try:
        with run_lock.Heartbeat(BATCH_LOCK, owner.holder, engine=engine):
            await _refetch(wanted, engine, settings, provider or provider_for(settings),
                           report)
    finally:
        await run_lock.release(BATCH_LOCK, owner.holder, engine)
    return report


async def _refetch(wanted: list[str], engine: AsyncEngine, settings: Settings,
                   provider: PriceProvider, report: RefetchReport) -> None:
    async with reading(engine) as conn:
        states = {s.symbol: s for s in await symbol_repo.get_states(conn, wanted)}
        factor_dates = await _factor_dates(conn, wanted)
    todo: list[SymbolRefetch] = []
    for sym in wanted:
        st = states.get(sym)
        if st is None:
            report.skipped.append({"input": sym, "code": "not_found",
                                   "reason": "not in the universe"})
        elif st.kind == SymbolKind.private or not is_market_symbol(sym):
            report.skipped.append({"input": sym, "code": "private",
                                   "reason": "a private identifier: never sent to a price "
                                             "provider"})
        elif st.first_price_date is None or st.last_price_date is None:
            report.skipped.append({
                "input": sym, "code": "no_history",
                "reason": f"no stored prices to refetch (status {st.status.value}); the next "
                          "symbol batch fetches it (`factorflow symbol-batch`)"})
        else:
            last_factor = max([d for d in (st.last_factor_date, factor_dates.get(sym)) if d],
                              default=None)
            todo.append(SymbolRefetch(sym, st.first_price_date, st.last_price_date,
                                      factor_date=last_factor))
    changed_reference: set[dt.date] = set()
    for item in todo:
        async with reading(engine) as conn:
            last_rev = (await conn.execute(
                sa.select(sa.func.max(_revision_log.c.id)))).scalar() or 0
            if item.factor_date is not None:
                item.factors_before, _ = await _betas(conn, item.symbol, item.factor_date)
        as_of = item.factor_date or item.end
        try:
            fetched = await fetch_and_store(
                FetchRequest((item.symbol,), item.start, item.end), provider, settings,
                as_of, engine)
        except ProviderError as exc:
            item.error = f"provider_error: {exc}"
            continue
        item.provider = fetched.provider
        item.error = fetched.errors.get(item.symbol)
        item.rows_written = fetched.rows
        item.replaced = fetched.replaced
        item.refused = fetched.restatements_rejected
        item.rebased = fetched.rebased_rows
        item.inserted = max(0, fetched.rows - fetched.replaced - fetched.rebased_rows)
        async with reading(engine) as conn:
            item.revisions = await _revisions(conn, item.symbol, last_rev)
        if item.symbol in REFERENCE_ETFS and fetched.rows and item.factor_date is not None:
            changed_reference.add(item.factor_date)
    report.symbols = todo
    await _recompute(todo, changed_reference, engine, settings, report)
    async with transaction(engine) as conn:
        states = {s.symbol: s for s in await symbol_repo.get_states(
            conn, [i.symbol for i in todo])}
        for item in todo:
            st = states.get(item.symbol)
            item.status = st.status.value if st else ""
            if item.factor_date is not None:
                item.factors_after, item.no_value_reason = await _betas(
                    conn, item.symbol, item.factor_date)
        held = await holders(conn, [i.symbol for i in todo])
        ids = sorted({p["id"] for ps in held.values() for p in ps})
        if changed_reference:  # every portfolio's betas moved
            ids = sorted(await portfolio_repo.live_portfolio_ids(conn))
        await portfolio_repo.invalidate_cache(conn, ids)
        report.portfolios_invalidated = len(ids)


async def _recompute(todo: list[SymbolRefetch], changed_reference: set[dt.date],
                     engine: AsyncEngine, settings: Settings, report: RefetchReport) -> None:
    """Data checks, factors and metrics again at each symbol's factor date."""
    by_date: dict[dt.date, set[str]] = {}
    for item in todo:
        if item.factor_date is not None:
            by_date.setdefault(item.factor_date, set()).add(item.symbol)
    for day in changed_reference:  # a reference ETF moved: every symbol of that session
        async with reading(engine) as conn:
            rows = (await conn.execute(sa.select(_exposures.c.symbol)
                                       .where(_exposures.c.date == day).distinct())).all()
        by_date.setdefault(day, set()).update(r[0] for r in rows)
    for day, syms in sorted(by_date.items()):
        ordered = sorted(syms)
        size = settings.factor_chunk_size
        for i in range(0, len(ordered), size):
            await compute_and_store_factors(ordered[i:i + size], [day], settings, engine)
        report.recomputed[day.isoformat()] = len(ordered)


def refetch_blocking(symbols: Sequence[str], database_url: str | None = None, *,
                     strict: bool = False, holder: str | None = None) -> RefetchReport:
    """:func:`refetch_symbols` in a new event loop: for a worker thread (the API runs it off
    its event loop) or a command.

    Parameters
    ----------
    symbols
        Raw tickers.
    database_url
        Default: the configured database (a NullPool engine is used either way).
    strict
        Raise the first skipped symbol as a named error (:func:`raise_skipped`): the API's
        single-symbol route.
    holder
        The lock holder's name (default ``symbols-refetch-<uuid>``).
    """
    report = asyncio.run(refetch_symbols(symbols, flow_engine(database_url), holder=holder))
    if strict:
        raise_skipped(report)
    return report


def raise_skipped(report: RefetchReport) -> None:
    """Raise the first skipped symbol of ``report`` as a named error: ``NotFound`` (not in
    the universe) or ``InvalidInput`` naming ``symbol`` (invalid, private, no history)."""
    for s in report.skipped:
        if s["code"] == "not_found":
            raise NotFound(f"symbol {s['input']!r} is not in the universe", "symbol")
        raise InvalidInput(f"symbol: {s['input']!r}: {s['reason']}", "symbol")
