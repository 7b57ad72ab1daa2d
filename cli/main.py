"""The ``factorflow`` command line.

``--json`` prints one JSON object on the last line of stdout; everything else is
for people. Prefect runs in its local (ephemeral) mode unless ``PREFECT_API_URL``
is set; its state then lives under ``$FACTORFLOW_HOME/prefect``.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import errno
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any


def _prefect_environment() -> None:
    """Defaults that must be in place before Prefect is imported."""
    home = Path(os.environ.get("FACTORFLOW_HOME", ".factorflow")).resolve()
    if "PREFECT_API_URL" not in os.environ:
        os.environ.setdefault("PREFECT_HOME", str(home / "prefect"))
    os.environ.setdefault("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "120")
    os.environ.setdefault("PREFECT_LOGGING_LEVEL", "WARNING")
    os.environ.setdefault("PREFECT_UI_ENABLED", "false")
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")


def _no_orphaned_prefect_servers() -> None:
    """In Prefect's local mode: stop temporary servers a killed earlier run left behind, and
    make the one this process may start die with it (``flows/local_prefect.py``)."""
    home = os.environ.get("PREFECT_HOME")
    if os.environ.get("PREFECT_API_URL") or not home:
        return
    from flows.local_prefect import stop_orphaned_servers, tie_local_servers_to_this_process

    stop_orphaned_servers(Path(home))
    tie_local_servers_to_this_process()


class _ShutdownNoise(logging.Filter):
    """Drops the harmless CancelledError tracebacks of a stopping ephemeral server."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            return False
        return "CancelledError" not in record.getMessage()


def _install_flow_launcher() -> None:
    """Services started from the CLI start flows the way the API does (``core.launch``)."""
    from core import launch
    from flows.launcher import PrefectLauncher

    launch.install(PrefectLauncher())


def _quiet_shutdown() -> None:
    noise = _ShutdownNoise()
    for name in ("", "prefect", "prefect.server", "uvicorn.error", "asyncio"):
        logging.getLogger(name).addFilter(noise)
        for h in logging.getLogger(name).handlers:
            h.addFilter(noise)


def _date(text: str) -> dt.date:
    try:
        return dt.date.fromisoformat(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"not a date (YYYY-MM-DD): {text!r}") from exc


def _port(text: str) -> int:
    try:
        port = int(text)
    except ValueError:
        port = -1
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"not a TCP port (1-65535): {text!r}")
    return port


def _shown(url: str) -> str:
    """A database URL fit for printing: the password hidden."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


def _emit(result: dict[str, Any], as_json: bool, human: str) -> None:
    print(human)
    if as_json:
        print(json.dumps(result, default=str, sort_keys=True))


def _db(args: argparse.Namespace) -> int:
    from core.db import migrate
    from core.settings import get_settings

    url = get_settings().resolved_database_url
    if args.action == "upgrade":
        migrate.upgrade(url, args.revision or "head")
    elif args.action == "downgrade":
        migrate.downgrade(url, args.revision or "base")
    rev = asyncio.run(migrate.current_revision(url))
    head = migrate.head_revision()
    print(f"database {_shown(url)}: revision {rev or '(empty)'} (head {head})")
    return 0


def _format_batch(summary: dict[str, Any]) -> str:
    if summary["status"] == "skipped":
        return f"symbol-batch skipped for {summary['as_of']}: {summary['reason']}"
    c, s, e = summary["counts"], summary["seconds"], summary["errors"]
    lines = [
        f"symbol-batch {summary['status']} for {summary['as_of']}"
        + (f" (from {summary['start']})" if summary["start"] != summary["as_of"] else ""),
        f"  universe {c['universe']} symbols; prices fetched for {c['symbols_fetched']} "
        f"({c['price_rows']} rows, {c['rejected_rows']} rejected, "
        f"{c['refetched_for_actions']} re-fetched after a split/dividend)",
        f"  factors: {c['factor_values']} values stored for {c['factor_symbols']} symbols "
        f"({', '.join(f'{k} {v}' for k, v in sorted(c['values_by_family'].items()))}); "
        f"{c['blocked_by_checks']} symbol(s) held back by data checks, "
        f"{c['flagged_values']} values flagged",
    ]
    if c["no_value_reasons"]:
        lines.append("  no value: " + ", ".join(
            f"{k} {v}" for k, v in sorted(c["no_value_reasons"].items())))
    if c["findings"]:
        lines.append("  data checks: " + ", ".join(
            f"{k} {v}" for k, v in sorted(c["findings"].items())))
    failed = {
        **e["symbols"],
        **{s_: f"data check: {r}" for s_, r in e["blocked"].items()},
        **{s_: f"{r} (marked delisted)" for s_, r in e.get("delisted", {}).items()},
    }
    if failed:
        lines.append(f"  symbols without fresh data or factors ({len(failed)}):")
        for sym, reason in sorted(failed.items())[:15]:
            lines.append(f"    {sym}: {reason}")
        if len(failed) > 15:
            lines.append(f"    … and {len(failed) - 15} more (see the batch_runs row / artifact)")
    lines.append("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()))
    return "\n".join(lines)


class _NamedErrorOneLine(logging.Filter):
    """Prefect's console shows a flow's *named* error (a run already running, a reference
    ETF that failed its checks, a full disk…) as its message only: the command prints it
    once more as its last line and exits 1; tracebacks stay for unexpected errors (and
    every record still reaches the Prefect API, hence the UI, unchanged)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and _is_named_error(exc):
            record.exc_info, record.exc_text = None, None
        return True


def _is_named_error(exc: BaseException) -> bool:
    from core.db.errors import StorageError
    from core.portfolio_steps import PortfolioRefreshError
    from core.symbol_steps import SymbolBatchError

    return isinstance(exc, SymbolBatchError | PortfolioRefreshError | StorageError)


def _console_without_named_tracebacks() -> None:
    """Attach :class:`_NamedErrorOneLine` to Prefect's console handlers (once Prefect has
    configured its logging, i.e. after it is imported)."""
    one_line = _NamedErrorOneLine()
    names = ["", *(n for n in logging.Logger.manager.loggerDict if n.startswith("prefect"))]
    for name in names:
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not any(
                    isinstance(f, _NamedErrorOneLine) for f in handler.filters):
                handler.addFilter(one_line)


def _run_symbol_batch(**params: Any) -> dict[str, Any]:
    from flows.symbol_batch import symbol_batch

    _console_without_named_tracebacks()
    return symbol_batch(**params)


def _run_portfolio_refresh(**params: Any) -> dict[str, Any]:
    from flows.portfolio_refresh import portfolio_refresh

    _console_without_named_tracebacks()
    return portfolio_refresh(**params)


def _format_refresh(summary: dict[str, Any]) -> str:
    c, s, e = summary["counts"], summary["seconds"], summary["errors"]
    lines = [
        f"portfolio-refresh {summary['status']} for {summary['as_of']}"
        + (" (DEGRADED: more than 10% failed)" if summary.get("degraded") else ""),
        f"  portfolios {c['portfolios']}: {c['refreshed']} refreshed, {c['up_to_date']} "
        f"already up to date, "
        + (f"{c['newer']} only dated after it, " if c.get("newer") else "")
        + f"{c['failed']} failed; {c['snapshots']} snapshots written "
        f"({c['partial_snapshots']} partial: missing prices)",
        f"  stress scenarios available: {c['scenarios_available']} of {c['scenarios']}",
    ]
    for name, reason in sorted(e["scenarios"].items()):
        lines.append(f"    {name}: {reason}")
    for pid, reason in sorted(e["portfolios"].items())[:10]:
        lines.append(f"  failed {pid}: {reason}")
    lines.append("  seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in s.items()))
    return "\n".join(lines)


def _portfolio_refresh(args: argparse.Namespace) -> int:
    from core.db import migrate

    migrate.upgrade()
    summary = _run_portfolio_refresh(as_of=args.as_of, wait_seconds=args.wait,
                                     lock_wait_seconds=args.lock_wait)
    _emit(summary, args.json, _format_refresh(summary))
    return 0


def _symbol_batch(args: argparse.Namespace) -> int:
    from core.config_check import ensure_configuration
    from core.db import migrate
    from core.symbol_steps import resolve_target_dates

    resolve_target_dates(args.as_of, args.start, args.end)  # fail fast, before Prefect starts
    ensure_configuration()
    migrate.upgrade()
    summary = _run_symbol_batch(as_of=args.as_of, start=args.start, end=args.end)
    _emit(summary, args.json, _format_batch(summary))
    return 0


def _snapshots(args: argparse.Namespace) -> int:
    from core.db import migrate
    from core.snapshot_recompute import recompute_snapshots

    migrate.upgrade()
    summary = asyncio.run(recompute_snapshots(args.portfolio, args.start, args.end,
                                              args.lock_wait))
    span = f"{args.start or 'the first'} → {args.end or 'the last'}"
    lines = [f"snapshots recompute ({span}): {summary['changed']} of {summary['snapshots']} "
             f"snapshot(s) of {summary['portfolios']} portfolio(s) changed"]
    lines += [f"  {pid}: {n} changed" for pid, n in
              list(summary["changed_by_portfolio"].items())[:20]]
    if len(summary["changed_by_portfolio"]) > 20:
        lines.append(f"  … and {len(summary['changed_by_portfolio']) - 20} more portfolio(s)")
    lines += [f"  skipped {pid}: {why}" for pid, why in list(summary["skipped"].items())[:20]]
    _emit(summary, args.json, "\n".join(lines))
    return 0


def _demo_symbols(n: int) -> list[str]:
    from core.providers.synthetic import SyntheticProvider
    from core.settings import get_settings

    settings = get_settings()
    chain = settings.provider_chain
    if chain and chain[0] == "csv" and settings.csv_path:
        import pandas as pd

        return sorted(pd.read_csv(settings.csv_path, usecols=["symbol"])["symbol"].unique())[:n]
    return SyntheticProvider(seed=settings.synthetic_seed).universe(n)


def _demo(args: argparse.Namespace) -> int:
    from core import calendar
    from core.config_check import ensure_configuration
    from core.db import migrate
    from core.demo import demo_symbols, seed_portfolios
    from core.settings import get_settings
    from core.symbol_steps import register_universe

    ensure_configuration()
    settings = get_settings()
    t0 = time.perf_counter()
    migrate.upgrade()
    symbols = demo_symbols(_demo_symbols(args.symbols))
    asyncio.run(register_universe(symbols))
    end = calendar.latest_completed_session()
    first = calendar.sessions_back(end, args.days - 1)
    params: dict[str, Any] = {"as_of": end}
    if args.days > 1:
        params = {"start": first, "end": end}
    t1 = time.perf_counter()
    summary = _run_symbol_batch(**params)
    seeded = asyncio.run(seed_portfolios(args.portfolios, first, positions=args.positions))
    refreshes = []
    if args.days > 1:  # the first refresh snapshots `first`; the second backfills the rest
        refreshes.append(_run_portfolio_refresh(as_of=first))
    refreshes.append(_run_portfolio_refresh(as_of=end))
    summary["portfolio_refresh"] = refreshes[-1]
    summary["seeded"] = seeded
    total = time.perf_counter() - t0
    summary["demo"] = {
        "symbols_requested": args.symbols,
        "database": _shown(settings.resolved_database_url),
        "prefect": os.environ.get("PREFECT_API_URL") or os.environ.get("PREFECT_HOME"),
        "provider": settings.price_provider,
        "flows_wall_s": round(time.perf_counter() - t1, 3),
        "total_s": round(total, 3),
    }
    human = "\n".join([
        f"factorflow demo: {len(symbols)} symbols + 8 reference ETFs, "
        f"provider {settings.price_provider}; {args.portfolios} portfolios of ~"
        f"{args.positions} positions ({seeded['portfolios_created']} created now)",
        _format_batch(summary),
        *[_format_refresh(r) for r in refreshes],
        f"  flows wall time {summary['demo']['flows_wall_s']:.1f} s (incl. Prefect start-up), "
        f"total {total:.1f} s",
        f"  data: {_shown(settings.resolved_database_url)}",
        f"  Prefect state: {summary['demo']['prefect']}",
    ])
    _emit(summary, args.json, human)
    return 0


def _port_problem(host: str, port: int) -> str | None:
    """Why ``host:port`` cannot be listened on (in use, unknown host), else None."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        return f"--host {host!r}: {exc.strerror}"
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            probe.bind(address)
        except OSError as exc:
            why = ("in use (another factorflow api?)" if exc.errno == errno.EADDRINUSE
                   else f"not available ({exc.strerror})")
            return f"port {port} on {host} is {why}: choose another with --port"
    return None


def _api(args: argparse.Namespace) -> int:
    import uvicorn

    from api.app import create_app
    from core.config_check import ensure_configuration
    from core.db import migrate
    from core.settings import get_settings

    problem = _port_problem(args.host, args.port)
    if problem:  # before anything else: a second server must not touch the first's queue
        print(f"factorflow api: refusing to start: {problem}", file=sys.stderr)
        return 2
    ensure_configuration()
    url = get_settings().resolved_database_url
    migrate.upgrade(url)
    print(f"factorflow API on http://{args.host}:{args.port} (OpenAPI: /schema, "
          f"database {_shown(url)})", flush=True)
    uvicorn.run(create_app(url), host=args.host, port=args.port,
                log_level="info" if args.verbose else "warning",
                access_log=bool(args.verbose))
    return 0


def _serve(args: argparse.Namespace) -> int:
    from core.config_check import configuration_problems
    from core.db import migrate
    from flows.serve import serve

    problems = configuration_problems()  # refuse at once what would fail every run later
    if problems:
        print(f"factorflow serve: refusing to start: {'; '.join(problems)}", file=sys.stderr)
        return 2
    migrate.upgrade()
    return serve(start_server=args.start_server, port=args.server_port)


def _symbols_added(report: Any) -> list[str]:
    lines = []
    if report.added:
        fetched = [a["symbol"] for a in report.added if a["kind"] != "private"]
        private = [a["symbol"] for a in report.added if a["kind"] == "private"]
        if fetched:
            lines.append(f"added {len(fetched)} (pending): {', '.join(fetched)}")
        if private:
            lines.append(f"added {len(private)} private identifier(s), never sent to a price "
                         f"provider: {', '.join(private)}")
    if report.reactivated:
        lines.append(f"re-activated {len(report.reactivated)}: " + ", ".join(
            f"{r['symbol']} (was {r['previous_status']}, now {r['status']})"
            for r in report.reactivated))
    if report.already_present:
        lines.append(f"already present {len(report.already_present)}: " + ", ".join(
            f"{r['symbol']} ({r['status']})" for r in report.already_present))
    if report.reference_added:
        lines.append(f"also added the {len(report.reference_added)} reference ETFs the factors "
                     f"need: {', '.join(report.reference_added)}")
    if report.rejected:
        lines.append(f"rejected {len(report.rejected)}:")
        lines += [f"  {r['where']}: {r['input']!r}: {r['reason']}" for r in report.rejected]
    if report.added or report.reactivated:
        lines.append("the next symbol batch fetches them (a new symbol about a year of "
                     "prices, a re-activated one the sessions it missed); `factorflow "
                     "symbol-batch` fetches them now")
    return lines


def _symbols_removed(report: Any) -> list[str]:
    def portfolios(ps: list[dict[str, str]]) -> str:
        return ", ".join(f"{p['name']!r} of {p['owner']} ({p['id']})" for p in ps)

    lines = []
    if report.removed:
        lines.append(f"removed {len(report.removed)} (inactive: no longer fetched, stored "
                     "history kept; `factorflow symbols add` re-activates): " + ", ".join(
                         f"{r['symbol']} (was {r['previous_status']})" for r in report.removed))
        lines += [f"  {r['symbol']} is still held by {portfolios(r['held_by'])}: their "
                  "snapshots become partial once its last price is older than the session "
                  "they value" for r in report.removed if r["held_by"]]
    if report.already_inactive:
        lines.append(f"already inactive {len(report.already_inactive)}: "
                     f"{', '.join(report.already_inactive)}")
    for h in report.held:
        lines.append(f"not removed: {h['symbol']} is held by {len(h['portfolios'])} live "
                     f"portfolio(s): {portfolios(h['portfolios'])} (--force removes it anyway)")
    for r in report.refused:
        lines.append(f"not removed: {r['input']}: {r['reason']}")
    return lines


def _beta(value: float | None) -> str:
    return "none" if value is None else f"{value:.4f}"


def _symbols_refetched(report: Any) -> list[str]:
    lines = []
    for s in report.symbols:
        head = f"{s.symbol}: history {s.start} → {s.end} re-requested"
        if s.error:
            lines.append(f"{head}: nothing delivered: {s.error}")
            continue
        lines.append(f"{head} from {s.provider or 'the provider chain'}: {s.replaced} "
                     f"replaced, {s.refused} refused, {s.rebased} rebased, {s.inserted} "
                     f"inserted (status {s.status})")
        for r in s.revisions:
            verb = "replaced" if r["outcome"] == "replaced" else "REFUSED"
            lines.append(f"  {verb} {r['date']}: close {r['stored_close']} → "
                         f"{r['offered_close']}: {r['reason']}")
        if s.factor_date is None:
            lines.append("  no factors computed yet: the next symbol batch computes them")
            continue
        valued = sum(v is not None for v in s.factors_after.values())
        lines.append(f"  factors recomputed at {s.factor_date}: market_beta "
                     f"{_beta(s.factors_before.get('market_beta'))} → "
                     f"{_beta(s.factors_after.get('market_beta'))}; {valued} of "
                     f"{len(s.factors_after)} factors have a value"
                     + (f" (no value: {s.no_value_reason})" if s.no_value_reason else ""))
    for day, n in sorted(report.recomputed.items()):
        if n > len(report.symbols):
            lines.append(f"a reference ETF changed: factors of all {n} symbols recomputed "
                         f"at {day}")
    if report.portfolios_invalidated:
        lines.append(f"cached analytics of {report.portfolios_invalidated} portfolio(s) "
                     "dropped: the API recomputes them from the new betas")
    lines += [f"skipped {s['input']}: {s['reason']}" for s in report.skipped]
    return lines


def _symbols(args: argparse.Namespace) -> int:
    from core.db import migrate
    from core.db.engine import create_engine
    from core.services import ticker_file, universe
    from core.settings import get_settings

    url = get_settings().resolved_database_url
    migrate.upgrade(url)
    prefix = f"factorflow symbols {args.action}"

    async def _call(fn: Any, *fn_args: Any, **kwargs: Any) -> Any:
        engine = create_engine(url)
        try:
            return await fn(*fn_args, engine=engine, **kwargs)
        finally:
            await engine.dispose()

    if args.action == "list":
        try:
            page = asyncio.run(_call(universe.list_symbols, status=args.status))
        except universe.InvalidInput as exc:
            print(f"{prefix}: {exc.message}", file=sys.stderr)
            return 2
        w = max([6, *(len(r.symbol) for r in page.items)])
        lines = [f"{'symbol':<{w}}  {'kind':<7}  {'status':<8}  {'first price':<11}  "
                 f"{'last price':<11}  {'last factor':<11}  reason"] if page.items else []
        lines += [f"{r.symbol:<{w}}  {r.kind:<7}  {r.status:<8}  "
                  f"{r.first_price_date or '–'!s:<11}  {r.last_price_date or '–'!s:<11}  "
                  f"{r.last_factor_date or '–'!s:<11}  {r.error_reason or ''}".rstrip()
                  for r in page.items]
        counts = ", ".join(f"{k} {v}" for k, v in page.counts.items()) or "empty"
        whole = sum(page.counts.values())
        if not whole:
            lines.append("no symbols yet: `factorflow symbols add SYM …` or `factorflow "
                         "symbols import FILE`")
        elif args.status:
            lines.append(f"{page.total} of {whole} symbols with status {args.status.lower()}; "
                         f"by status: {counts}")
        else:
            lines.append(f"{whole} symbols: {counts}")
        _emit({"symbols": [vars(r) for r in page.items], "total": page.total,
               "counts": page.counts}, args.json, "\n".join(lines))
        return 0

    if args.action in ("add", "import"):
        try:
            entries = (ticker_file.read_ticker_file(args.file) if args.action == "import" else
                       [ticker_file.TickerEntry(t, f"argument {i}")
                        for i, t in enumerate(args.tickers, 1)])
            report = asyncio.run(_call(universe.add_symbols, entries))
        except ticker_file.TickerFileError as exc:
            print(f"{prefix}: {exc}", file=sys.stderr)
            return 1
        except universe.NoValidSymbols as exc:
            _emit({**exc.report.to_dict(), "error": exc.message}, args.json,
                  "\n".join(_symbols_added(exc.report)))
            print(f"{prefix}: nothing valid to add: {exc.message}", file=sys.stderr)
            return 1
        _emit(report.to_dict(), args.json, "\n".join(_symbols_added(report)))
        return 0

    if args.action == "remove":
        removed = asyncio.run(_call(universe.remove_symbols, args.tickers, force=args.force))
        _emit(removed.to_dict(), args.json, "\n".join(_symbols_removed(removed)))
        if not removed.ok:
            n = len(removed.held) + len(removed.refused)
            print(f"{prefix}: {n} symbol(s) not removed (" + "; ".join(
                [f"{h['symbol']}: held by {len(h['portfolios'])} live portfolio(s), --force "
                 "removes it" for h in removed.held]
                + [f"{r['input']}: {r['reason']}" for r in removed.refused]) + ")",
                file=sys.stderr)
            return 1
        return 0

    from core.config_check import ensure_configuration

    ensure_configuration()
    try:
        refetched = universe.refetch_blocking(args.tickers, url)
    except universe.RefetchBlocked as exc:
        print(f"{prefix}: {exc.message}", file=sys.stderr)
        return 1
    _emit(refetched.to_dict(), args.json, "\n".join(_symbols_refetched(refetched)))
    if not any(s.error is None for s in refetched.symbols):
        print(f"{prefix}: nothing refetched" + "".join(
            f"; {s.symbol}: {s.error}" for s in refetched.symbols)
            + "".join(f"; {s['input']}: {s['reason']}" for s in refetched.skipped),
            file=sys.stderr)
        return 1
    return 0


def _report(args: argparse.Namespace) -> int:
    from core.db import migrate
    from core.db.engine import create_engine
    from core.errors import AppError
    from core.services.report import portfolio_report
    from core.settings import get_settings

    url = get_settings().resolved_database_url
    migrate.upgrade(url)

    async def render() -> str:
        engine = create_engine(url)
        try:
            return await portfolio_report(args.portfolio_id, window=args.window,
                                          benchmark=args.benchmark, engine=engine)
        finally:
            await engine.dispose()

    try:
        page = asyncio.run(render())
    except AppError as exc:
        print(f"factorflow: {exc.message}", file=sys.stderr)
        return 1
    try:
        args.out.write_text(page, encoding="utf-8")
    except OSError as exc:
        print(f"factorflow: cannot write {args.out}: {exc.strerror or exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.out} ({len(page.encode()) / 1024:.0f} KB; one self-contained page)")
    return 0


def _users(args: argparse.Namespace) -> int:
    from core.db import migrate
    from core.db.engine import create_engine
    from core.errors import AppError
    from core.services import users as users_service
    from core.settings import get_settings

    url = get_settings().resolved_database_url
    migrate.upgrade(url)

    async def _call(fn: Any, *fn_args: Any, **kwargs: Any) -> Any:
        engine = create_engine(url)
        try:
            return await fn(engine, *fn_args, **kwargs)
        finally:
            await engine.dispose()

    try:
        if args.action == "list":
            users = asyncio.run(_call(users_service.list_users))
            human = "\n".join(
                f"{u['name']:<24} {'admin' if u['admin'] else 'user ':<5} "
                f"{u['portfolios']:>5} portfolios  created {u['created_at']:%Y-%m-%d}  {u['id']}"
                for u in users) or "no users yet (factorflow users create NAME)"
            _emit({"users": users}, args.json, human)
            return 0
        if args.action == "create":
            user_id, token = asyncio.run(_call(users_service.create_user, args.name,
                                               args.admin))
            role = "admin" if args.admin else "user"
            human = (f"created {role} {args.name!r} (id {user_id})\n"
                     f"token (shown only now; the database keeps its hash): {token}")
            _emit({"id": user_id, "name": args.name.strip(), "admin": args.admin,
                   "token": token}, args.json, human)
            return 0
        revoke = args.action == "revoke"
        user_id, new = asyncio.run(_call(users_service.replace_token, args.name,
                                         revoke=revoke))
    except AppError as exc:
        print(f"factorflow: {exc.message}", file=sys.stderr)
        return 1
    lag = ("running API processes refuse it for writes at once and for reads within about "
           "a second")
    human = (f"revoked the token of {args.name!r} ({lag}; `users rotate` gives a new one)"
             if revoke else f"new token of {args.name!r} (shown only now; {lag}): {new}")
    _emit({"id": user_id, "name": args.name.strip(), "token": new}, args.json, human)
    return 0


def _runs(args: argparse.Namespace) -> int:
    from core import run_lock
    from core.db import migrate
    from core.db.engine import create_engine
    from core.repositories import batch_runs
    from core.settings import get_settings

    url = get_settings().resolved_database_url
    migrate.upgrade(url)

    async def _call(fn: Any, *fn_args: Any) -> Any:
        engine = create_engine(url)
        try:
            return await fn(*fn_args, engine)
        finally:
            await engine.dispose()

    if args.action == "clear-lock":
        try:
            state = asyncio.run(_call(lambda n, e: run_lock.clear(n, args.force, e), args.name))
        except KeyError:
            print(f"factorflow: no lock named {args.name!r} (`factorflow runs` lists them)",
                  file=sys.stderr)
            return 1
        except run_lock.LockHeld as exc:
            print(f"factorflow: {exc}", file=sys.stderr)
            return 1
        _emit({"cleared": args.name, "holder": state.holder}, args.json,
              f"cleared lock {args.name} (was held by {state.describe()})")
        return 0

    async def _list(engine: Any) -> tuple[list, list]:
        async with engine.connect() as conn:
            runs = await batch_runs.list_runs(conn, args.job, args.limit)
        return runs, await run_lock.list_locks(engine)

    runs, locks = asyncio.run(_call(_list))
    alive = {True: "alive", False: "DEAD (taken over by the next run)", None: "on another host"}
    lines = ["locks:" if locks else "locks: none"]
    lines += [f"  {lk.name:<20} {lk.describe()}, expires {lk.expires_at:%H:%M:%S} UTC, "
              f"holder {alive[lk.alive]}" for lk in locks]
    lines.append(f"runs (newest {args.limit}):" if runs else "runs: none yet")
    for r in runs:
        took = (f"{(r.finished_at - r.started_at).total_seconds():7.1f} s"
                if r.finished_at else "        –")
        error = (r.error_summary or {}).get("error", "")
        lines.append(f"  {r.started_at:%Y-%m-%d %H:%M} {r.job_type:<18} {r.target_date} "
                     f"{r.status:<24} {took}  {r.id}" + (f"\n      {error}" if error else ""))
    _emit({"locks": [vars(lk) for lk in locks],
           "runs": [dict(r._mapping) for r in runs]}, args.json, "\n".join(lines))
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``factorflow``."""
    p = argparse.ArgumentParser(prog="factorflow", description=__doc__.splitlines()[0])
    p.add_argument("-v", "--verbose", action="store_true", help="show Prefect's INFO logs")
    sub = p.add_subparsers(dest="command", required=True)

    db = sub.add_parser("db", help="apply or inspect database migrations")
    db.add_argument("action", choices=["upgrade", "downgrade", "current"])
    db.add_argument("--revision", help="target revision (default head / base)")
    db.set_defaults(func=_db)

    sb = sub.add_parser("symbol-batch", help="run the symbol flow (prices, checks, factors)")
    sb.add_argument("--as-of", type=_date, help="session to process (default: latest completed)")
    sb.add_argument("--start", type=_date, help="backfill from this date (with --end)")
    sb.add_argument("--end", type=_date, help="backfill through this date (with --start)")
    sb.add_argument("--json", action="store_true", help="print the summary as JSON (last line)")
    sb.set_defaults(func=_symbol_batch)

    pr = sub.add_parser("portfolio-refresh", help="run the portfolio flow (snapshots, analytics)")
    pr.add_argument("--as-of", type=_date, help="session to refresh (default: latest completed)")
    pr.add_argument("--wait", type=float, default=0,
                    help="seconds to wait for that session's symbol batch (default 0)")
    pr.add_argument("--lock-wait", type=float, default=600, metavar="SECONDS",
                    help="seconds to wait for another running refresh to finish before "
                         "failing with RefreshAlreadyRunning (default 600)")
    pr.add_argument("--json", action="store_true", help="print the summary as JSON (last line)")
    pr.set_defaults(func=_portfolio_refresh)

    snaps = sub.add_parser("snapshots", help="stored portfolio snapshots")
    snaps_sub = snaps.add_subparsers(dest="action", required=True)
    recompute = snaps_sub.add_parser(
        "recompute", help="recompute stored snapshots with the current valuation (daily P&L "
                          "= price P&L + dividend income); idempotent; waits for a refresh")
    recompute.add_argument("--portfolio", metavar="ID", help="only this portfolio")
    recompute.add_argument("--start", type=_date, help="first snapshot date (default: all)")
    recompute.add_argument("--end", type=_date, help="last snapshot date (default: all)")
    recompute.add_argument("--lock-wait", type=float, default=600, metavar="SECONDS",
                           help="seconds to wait for a running portfolio refresh (default 600)")
    recompute.add_argument("--json", action="store_true",
                           help="print the summary as JSON (last line)")
    recompute.set_defaults(func=_snapshots)

    demo = sub.add_parser("demo", help="seed a synthetic universe and portfolios, run both flows")
    demo.add_argument("--symbols", type=int, default=200, help="synthetic symbols (default 200)")
    demo.add_argument("--days", type=int, default=3,
                      help="sessions to process (default 3: the portfolio refresh backfills)")
    demo.add_argument("--portfolios", type=int, default=50, help="synthetic portfolios")
    demo.add_argument("--positions", type=int, default=25, help="positions per portfolio")
    demo.add_argument("--json", action="store_true", help="print the summary as JSON (last line)")
    demo.set_defaults(func=_demo)

    serve = sub.add_parser("api", help="serve the HTTP API (migrates the database first)")
    serve.add_argument("--host", default="127.0.0.1", help="interface (default 127.0.0.1)")
    serve.add_argument("--port", type=_port, default=8000, help="port (default 8000)")
    serve.set_defaults(func=_api)

    srv = sub.add_parser(
        "serve", help="run the four deployments of prefect.yaml in this process (Prefect serve)")
    srv.add_argument("--start-server", action="store_true",
                     help="without PREFECT_API_URL, start a local Prefect server (127.0.0.1)")
    srv.add_argument("--server-port", type=_port, default=4200,
                     help="port of that local server (default 4200)")
    srv.set_defaults(func=_serve)

    listing_options = argparse.ArgumentParser(add_help=False)
    listing_options.add_argument("--job", default=argparse.SUPPRESS,
                                 help="only this job (symbol-batch, portfolio-refresh, onboarding)")
    listing_options.add_argument("--limit", type=int, default=argparse.SUPPRESS,
                                 help="runs shown (default 20)")
    listing_options.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                                 help="print as JSON (last line)")
    runs = sub.add_parser("runs", parents=[listing_options],
                          help="list recent runs and run locks, or clear a stale lock")
    runs.set_defaults(func=_runs, action="list", job=None, limit=20, json=False)
    runs_sub = runs.add_subparsers(dest="action")
    runs_sub.add_parser("list", parents=[listing_options],
                        help="recent runs (newest first) and the locks (the default)")
    clear = runs_sub.add_parser(
        "clear-lock", help="remove a run lock (refused while its holder is alive here)")
    clear.add_argument("name", help="lock name, e.g. symbol-batch")
    clear.add_argument("--force", action="store_true",
                       help="remove it even if its holder looks alive")
    clear.add_argument("--json", action="store_true", help="print as JSON (last line)")

    report = sub.add_parser(
        "report", help="write a portfolio's report (one self-contained HTML page, as "
                       "GET /v1/portfolios/{id}/report answers it)")
    report.add_argument("portfolio_id", metavar="PORTFOLIO_ID")
    report.add_argument("--out", type=Path, required=True, metavar="FILE.html",
                        help="where to write the page")
    report.add_argument("--window", default="1Y",
                        help="performance window: 1M, 3M, YTD, 1Y (default) or ITD")
    report.add_argument("--benchmark", default="SPY", help="benchmark symbol (default SPY)")
    report.set_defaults(func=_report)

    users = sub.add_parser("users", help="manage API users")
    users_sub = users.add_subparsers(dest="action", required=True)
    create = users_sub.add_parser("create", help="create a user and print its token once")
    create.add_argument("name", help="unique user name")
    create.add_argument("--admin", action="store_true", help="give the admin role")
    listing = users_sub.add_parser("list", help="list users (names, roles, portfolios)")
    rotate = users_sub.add_parser(
        "rotate", help="give a user a new token (printed once); the old one stops working")
    rotate.add_argument("name", help="user name")
    revoke = users_sub.add_parser(
        "revoke", help="invalidate a user's token without a new one (portfolios are kept)")
    revoke.add_argument("name", help="user name")
    for cmd in (create, listing, rotate, revoke):
        cmd.add_argument("--json", action="store_true",
                         help="print the result as JSON (last line)")
        cmd.set_defaults(func=_users)

    symbols = sub.add_parser("symbols", help="manage the universe: list, add, import, remove, "
                                             "refetch symbols")
    symbols_sub = symbols.add_subparsers(dest="action", required=True)
    sym_list = symbols_sub.add_parser(
        "list", help="every symbol: kind, status, price and factor dates, error reason")
    sym_list.add_argument("--status", help="only this status (pending, active, delisted, "
                                           "error, inactive)")
    sym_add = symbols_sub.add_parser(
        "add", help="add symbols (pending: the next symbol batch fetches them); re-activates "
                    "removed ones")
    # dest "tickers": main() reads an integer `symbols` option (demo --symbols)
    sym_add.add_argument("tickers", nargs="+", metavar="SYMBOL", help="e.g. AAPL BRK-B")
    sym_import = symbols_sub.add_parser(
        "import", help="add the symbols of a file: one ticker per line, or a CSV with a "
                       "'symbol' column (e.g. a price file); blank lines and # comments ignored")
    sym_import.add_argument("file", metavar="FILE", help="the ticker file")
    sym_remove = symbols_sub.add_parser(
        "remove", help="stop fetching symbols (status inactive; stored history kept)")
    sym_remove.add_argument("tickers", nargs="+", metavar="SYMBOL", help="tickers")
    sym_remove.add_argument("--force", action="store_true",
                            help="remove symbols that live portfolios hold too")
    sym_refetch = symbols_sub.add_parser(
        "refetch", help="re-request symbols' whole stored history now (corrected prices "
                        "replace bad ones) and recompute their factors; not during a batch")
    sym_refetch.add_argument("tickers", nargs="+", metavar="SYMBOL", help="tickers")
    for cmd in (sym_list, sym_add, sym_import, sym_remove, sym_refetch):
        cmd.add_argument("--json", action="store_true", help="print the result as JSON "
                                                              "(last line)")
        cmd.set_defaults(func=_symbols)
    return p


def _configuration_error(exc: Exception) -> str | None:
    """One line naming the ``FACTORFLOW_*`` variable behind ``exc`` (a setting that fails
    validation, a database URL that is wrong or unreachable), or None for other errors."""
    from pydantic import ValidationError

    from core.db.engine import database_error_message
    from core.settings import Settings, get_settings, settings_error_message

    if isinstance(exc, ValidationError) and exc.title == Settings.__name__:
        return settings_error_message(exc)
    try:
        url = get_settings().resolved_database_url
    except ValidationError as invalid:
        return settings_error_message(invalid)
    return database_error_message(exc, url)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``factorflow`` console script."""
    args = build_parser().parse_args(argv)
    if getattr(args, "verbose", False):
        os.environ["PREFECT_LOGGING_LEVEL"] = "INFO"
    if any(getattr(args, k, 1) < 1 for k in ("symbols", "days", "portfolios", "positions")):
        print("factorflow: --symbols, --days, --portfolios and --positions must be at least 1",
              file=sys.stderr)
        return 2
    _prefect_environment()
    _quiet_shutdown()
    _no_orphaned_prefect_servers()
    _install_flow_launcher()
    try:
        return int(args.func(args) or 0)
    except BrokenPipeError:  # `factorflow runs | head`: the reader left, nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as exc:  # a named error with its message, not a traceback
        configuration = _configuration_error(exc)
        if configuration is not None:
            print(f"factorflow: {configuration}", file=sys.stderr)
            return 1
        from core.db.errors import StorageError, is_storage_error, short_error
        from core.portfolio_steps import PortfolioRefreshError
        from core.symbol_steps import SymbolBatchError

        if isinstance(exc, SymbolBatchError | PortfolioRefreshError | StorageError | ValueError):
            print(f"factorflow: {type(exc).__name__}: {exc}", file=sys.stderr)
            return 1
        if is_storage_error(exc):  # the database failed anywhere: one line, no SQL
            print(f"factorflow: StorageError: {short_error(exc)}", file=sys.stderr)
            return 1
        raise


if __name__ == "__main__":
    sys.exit(main())
