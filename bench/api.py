"""Benchmark of the HTTP API over a demo database (not a test; prints figures).

    python bench/api.py [--symbols 1050] [--onboarding 50] [--hits 2000] [--clients 32]
                        [--misses 50] [--large 10] [--large-positions 1000]
                        [--wrk SECONDS] [--json] [--keep]

In a temporary directory: a synthetic universe of S symbols and one symbol batch (the
real Prefect flow, as ``factorflow symbol-batch``), two users, then ``factorflow api``
(uvicorn) on 127.0.0.1. Measured over loopback, with httpx except for the cache hits (a
lean keep-alive client: see ``KeepAliveClient``):

* onboarding: ``POST /v1/portfolios`` with 30 known symbols, one client, p50 / p95;
* large onboarding: ``POST /v1/portfolios`` with 1,000 positions on 1,000 known symbols
  (``--large``, ``--large-positions``; needs ``--symbols`` >= the positions), one client,
  p50 / p95, and ``GET /health/live`` probed meanwhile from another thread on its own
  keep-alive connection (p50 / p99 / max of the probes sent while a create was in flight):
  a create must never stop the server answering; then the first correlations answer of
  such a portfolio (computed on request: the create does not wait for it), a second one
  (cached), its size, and the time and size of ``?matrix=full``;
* analytics cache hits at C concurrent clients (the five kinds in turn), p50 / p99;
* cache misses: the portfolio's cached analytics dropped (as the nightly refresh does)
  before each ``GET .../overview``, p50 / p95; and a PATCH of the cash (re-valued at once);
* ``GET .../risk``: misses (cached answer and stored nightly row dropped) p50 / p95, and
  hits at C clients p99;
* ``GET .../performance?window=1Y``: misses (cached answers dropped) p50 / p95, over a year
  of snapshots (252 sessions written into the database before, a random walk of equity
  around each portfolio's stored snapshot);
* ``GET .../attribution`` misses p50 / p95 over the same year, its positions entered at
  its first snapshot and no nightly risk row before the data date: every close's
  exposures rebuilt in the request;
* a new symbol (1-5 letters, not in the universe): seconds from the ``POST`` that names it
  until ``GET /v1/symbols/{symbol}`` says ready (polled every 0.1 s, at most 120 s);
* the same cache hits from a bare ASGI app serving the bytes the API answered
  (``bench/bare_asgi.py``, the same uvicorn settings): p50 / p99, its server CPU per hit,
  and the API's p99 over it
  (``hit_p99_vs_bare``, issue 16's target ≤ 2);
* with ``--wrk SECONDS``: the same cache hits driven by ``wrk`` (a C client), as a
  cross-check of the Python client's figures.

With ``--json`` the last stdout line is one JSON object.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import datetime as dt
import json
import os
import random
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
from common import ROOT, bench_parser, isolated_environment, report

TARGETS_MS = {"onboarding_p95_ms": 100, "hit_p99_ms": 10, "miss_p95_ms": 100,
              "large_onboarding_p95_ms": 1000, "live_during_large_p99_ms": 50,
              "risk_miss_p95_ms": 100, "risk_hit_p99_ms": 10, "performance_miss_p95_ms": 100}
NEW_SYMBOL_TARGET_S = 10
KINDS = ("overview", "factor-exposures", "sector-exposure", "correlations", "stress-tests")


def pct(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) of ``values``, nearest rank, in milliseconds."""
    s = sorted(values)
    k = min(len(s) - 1, max(0, round(q * len(s) + 0.5) - 1))
    return round(s[k] * 1000, 2)


def answer_misses(client: Any, db_file: Path, ids: list[str], misses: int, kind: str,
                  query: str, full: Any, what: str) -> list[float]:
    """Seconds of ``misses`` requests of ``GET /v1/portfolios/{id}/<kind><query>`` (after 3
    unmeasured ones), each after the portfolio's cached answers of that kind were dropped;
    every answer must be a miss for which ``full(body)`` holds."""
    out: list[float] = []
    for i in range(misses + 3):
        pid = ids[i % len(ids)]
        with sqlite3.connect(db_file, timeout=30) as con:
            con.execute("DELETE FROM portfolio_analytics_cache WHERE portfolio_id = ? "
                        "AND kind LIKE ?", (pid, f"{kind}:%"))
        t = time.perf_counter()
        resp = client.get(f"/v1/portfolios/{pid}/{kind}{query}")
        elapsed = time.perf_counter() - t
        if resp.status_code != 200 or resp.json()["cached"] or not full(resp.json()):
            raise RuntimeError(f"expected {what}: {resp.status_code} {resp.text[:300]}")
        if i >= 3:
            out.append(elapsed)
    return out


def stop_group(server: subprocess.Popen[bytes]) -> None:
    """Stop the server's process group: SIGTERM (the API shuts down cleanly), then SIGKILL
    for whatever of the group is left (Prefect's local server)."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        server.wait(20)
    time.sleep(1)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(server.pid, signal.SIGKILL)
    server.wait(5)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "cli.main", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=900, check=False)


def wait_until_up(base: str, server: subprocess.Popen[bytes], seconds: float = 90) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise RuntimeError(f"the API exited with {server.returncode}")
        try:
            if httpx.get(f"{base}/health/live", timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"the API did not answer within {seconds:.0f} s")


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None where /proc is absent)."""
    stat = Path(f"/proc/{pid}/stat")
    if not stat.exists():
        return None
    fields = stat.read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(pid: int, seconds: float = 60, busy_share: float = 0.05) -> float:
    """Wait until process ``pid`` uses under ``busy_share`` of a CPU over 1 s (the API warms
    Prefect up in the background after it starts); returns the seconds waited."""
    if cpu_seconds(pid) is None:
        time.sleep(10)
        return 10.0
    t0 = time.monotonic()
    while time.monotonic() - t0 < seconds:
        before = cpu_seconds(pid) or 0.0
        time.sleep(1)
        if (cpu_seconds(pid) or 0.0) - before < busy_share:
            break
    return round(time.monotonic() - t0, 1)


def new_ticker(universe: set[str]) -> str:
    """A 1-5 letter ticker the universe does not hold (the synthetic provider prices it)."""
    rng = random.Random(int(time.time()))
    for _ in range(10_000):
        t = "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ") for _ in range(4))
        if t not in universe and not t.startswith("MKT"):
            return t
    raise RuntimeError("no free ticker found")


def portfolio_body(name: str, symbols: list[str], rng: random.Random, day: str) -> dict:
    return {"name": name, "cash": "10000", "positions": [
        {"symbol": s, "quantity": str(rng.randint(1, 300) * (-1 if rng.random() < 0.2 else 1)),
         "entry_date": day, "entry_price": f"{rng.uniform(5, 400):.2f}"} for s in symbols]}


def year_of_snapshots(con: sqlite3.Connection, ids: list[str], rng: random.Random,
                      sessions: int = 252) -> list[str]:
    """Give each portfolio of positive equity ``sessions`` snapshots before its stored one:
    copies of it whose equity walks back from the stored equity by a random daily P&L (~1 %
    of equity); returns their ids (a portfolio of equity <= 0 has no returns)."""
    from core import calendar

    con.row_factory = sqlite3.Row
    done = []
    for pid in ids:
        last = dict(con.execute("SELECT * FROM portfolio_snapshots WHERE portfolio_id = ? "
                                "ORDER BY date DESC LIMIT 1", (pid,)).fetchone())
        if float(last["equity"]) <= 0:
            continue
        done.append(pid)
        days = [*calendar.sessions_ending_at(calendar.previous_session(
            dt.date.fromisoformat(last["date"])), sessions), last["date"]]
        equity = [0.0] * len(days)
        pnl = [0.0] * len(days)
        equity[-1] = float(last["equity"])
        for k in range(len(days) - 1, 0, -1):
            pnl[k] = equity[k] * rng.gauss(0.0004, 0.01)
            equity[k - 1] = equity[k] - pnl[k]
        cols = list(last)
        rows = [{**last, "date": days[k].isoformat(), "equity": f"{equity[k]:.4f}",
                 "daily_pnl": f"{pnl[k]:.4f}" if k else None,
                 "daily_return": pnl[k] / equity[k - 1] if k else None}
                for k in range(len(days) - 1)]
        con.executemany(f"INSERT INTO portfolio_snapshots ({', '.join(cols)}) VALUES "
                        f"({', '.join('?' * len(cols))})", [[r[c] for c in cols] for r in rows])
        con.execute("UPDATE portfolio_snapshots SET daily_pnl = ?, daily_return = ? WHERE "
                    "portfolio_id = ? AND date = ?",
                    (f"{pnl[-1]:.4f}", pnl[-1] / equity[-2], pid, last["date"]))
    con.row_factory = None
    return done


class KeepAliveClient:
    """One HTTP/1.1 keep-alive connection sending prepared GETs: the least client-side work
    per request, so the latencies are the server's and the loopback's, not the client's
    (httpx spends ~0.5 ms of CPU per request: on a 2-core machine it saturates itself at
    ~1,800 requests/s and the 32-client figures measured httpx, not the server)."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.head = "".join(f"{k}: {v}\r\n" for k, v in
                            {"Host": f"127.0.0.1:{port}", **headers}.items())

    async def __aenter__(self) -> KeepAliveClient:
        self.reader, self.writer = await asyncio.open_connection("127.0.0.1", self.port)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.writer.close()
        with contextlib.suppress(ConnectionError):
            await self.writer.wait_closed()

    async def get(self, url: str) -> tuple[int, bytes]:
        """GET ``url``: (status, body). The body is read by its Content-Length."""
        self.writer.write(f"GET {url} HTTP/1.1\r\n{self.head}\r\n".encode())
        head = await self.reader.readuntil(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        length = next((int(line.split(":", 1)[1]) for line in lines
                       if line.lower().startswith("content-length:")), None)
        if length is None:
            raise RuntimeError(f"no Content-Length in {lines[0]!r}")
        return int(lines[0].split()[1]), await self.reader.readexactly(length)


async def hammer(port: int, headers: dict[str, str], urls: list[str], clients: int
                 ) -> tuple[list[float], float, int]:
    """GET every url from ``clients`` concurrent clients (each its own keep-alive connection,
    connected before the clock starts; a client sends its next request when the answer to
    the previous one is in): latencies, wall seconds, answers that were not cached 200s."""
    latencies: list[float] = []
    bad = 0
    queue = list(reversed(urls))
    connected = asyncio.Barrier(clients + 1)
    go = asyncio.Event()

    async def client_loop() -> None:
        nonlocal bad
        async with KeepAliveClient(port, headers) as client:
            await client.get("/health/live")  # the connection is open and used, untimed
            await connected.wait()
            await go.wait()
            while queue:
                url = queue.pop()
                t = time.perf_counter()
                status, body = await client.get(url)
                latencies.append(time.perf_counter() - t)
                if status != 200 or b'"cached":true' not in body:
                    bad += 1

    tasks = [asyncio.create_task(client_loop()) for _ in range(clients)]
    await connected.wait()
    t0 = time.perf_counter()
    go.set()
    await asyncio.gather(*tasks)
    return latencies, time.perf_counter() - t0, bad


def _wrk_ms(text: str) -> float:
    value, unit = float(text[:-2] if text.endswith(("ms", "us")) else text[:-1]), text[-2:]
    return round(value / 1000 if unit == "us" else value if unit == "ms" else value * 1000, 2)


class LiveProbe:
    """``GET /health/live`` in a loop from a thread of its own (its own event loop and
    keep-alive connection, so the client's work on the creates does not delay it), every
    ``interval`` seconds while ``active`` is set; latencies of the probes sent then."""

    def __init__(self, port: int, interval: float = 0.01) -> None:
        import threading

        self.port, self.interval = port, interval
        self.active = threading.Event()
        self.stop = threading.Event()
        self.latencies: list[float] = []
        self.failures = 0
        self.thread = threading.Thread(target=lambda: asyncio.run(self._run()), daemon=True)

    async def _run(self) -> None:
        async with KeepAliveClient(self.port, {}) as client:
            while not self.stop.is_set():
                if not self.active.is_set():
                    await asyncio.sleep(0.002)
                    continue
                t = time.perf_counter()
                status, _ = await client.get("/health/live")
                elapsed = time.perf_counter() - t
                if self.active.is_set():  # still during a create: it counts
                    self.latencies.append(elapsed)
                    self.failures += status != 200
                await asyncio.sleep(self.interval)

    def __enter__(self) -> LiveProbe:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(30)


def large_onboarding(base: str, port: int, headers: dict[str, str], known: list[str],
                     count: int, positions: int, rng: random.Random, day: str
                     ) -> dict[str, Any]:
    """``count`` creates of ``positions`` positions (+1 warm-up), /health/live probed during
    each; then the correlations answers of the last portfolio."""
    out: dict[str, Any] = {"large_positions": positions}
    lat: list[float] = []
    pid = ""
    with httpx.Client(base_url=base, headers=headers, timeout=300) as client, \
            LiveProbe(port) as probe:
        for i in range(count + 1):
            body = portfolio_body(f"bench-large-{i:03d}", rng.sample(known, positions), rng,
                                  day)
            if i:  # the first create warms up (not counted)
                probe.active.set()
            t = time.perf_counter()
            resp = client.post("/v1/portfolios", json=body)
            elapsed = time.perf_counter() - t
            probe.active.clear()
            if resp.status_code != 201:
                raise RuntimeError(f"large create failed: {resp.status_code} {resp.text[:500]}")
            created = resp.json()
            if created["snapshot"] is None or created["snapshot"]["position_count"] != positions:
                raise RuntimeError(f"large create not valued: {str(created['snapshot'])[:300]}")
            pid = created["portfolio"]["id"]
            if i:
                lat.append(elapsed)
        out["large_onboarding_p50_ms"] = pct(lat, 0.50)
        out["large_onboarding_p95_ms"] = pct(lat, 0.95)
        live = probe.latencies
        out["live_during_large_probes"] = len(live)
        out["live_during_large_failures"] = probe.failures
        out["live_during_large_p50_ms"] = pct(live, 0.50) if live else None
        out["live_during_large_p99_ms"] = pct(live, 0.99) if live else None
        out["live_during_large_max_ms"] = round(max(live) * 1000, 2) if live else None
        out["large_vs_live"] = (f"create p95 {out['large_onboarding_p95_ms']} ms (< 1000) | "
                                f"/health/live p99 {out['live_during_large_p99_ms']} ms (< 50)")
        t = time.perf_counter()  # the first request computes them (the create did not)
        resp = client.get(f"/v1/portfolios/{pid}/correlations")
        out["large_correlations_first_ms"] = round((time.perf_counter() - t) * 1000, 1)
        out["large_correlations_first_cached"] = resp.json()["cached"]
        t = time.perf_counter()
        resp = client.get(f"/v1/portfolios/{pid}/correlations")
        out["large_correlations_hit_ms"] = round((time.perf_counter() - t) * 1000, 1)
        out["large_correlations_default_bytes"] = len(resp.content)
        out["large_correlations_default_has_matrix"] = resp.json()["matrix"] is not None
        t = time.perf_counter()
        resp = client.get(f"/v1/portfolios/{pid}/correlations?matrix=full")
        out["large_correlations_full_ms"] = round((time.perf_counter() - t) * 1000, 1)
        out["large_correlations_full_bytes"] = len(resp.content)
        if resp.status_code != 200 or len(resp.json()["matrix"]) != len(resp.json()["symbols"]):
            raise RuntimeError(f"matrix=full: {resp.status_code} {resp.text[:300]}")
        out["large_correlations_full_vs_default_size"] = round(
            out["large_correlations_full_bytes"] / out["large_correlations_default_bytes"], 1)
    return out


def wrk_hits(base: str, headers: dict[str, str], urls: list[str], clients: int,
             seconds: int, workdir: Path) -> dict[str, Any]:
    """The same cache hits driven by ``wrk -t1 -c{clients} --latency`` (a separate C process,
    so the client's own cost is not Python's) for ``seconds``, the URLs in turn; empty when
    wrk is not installed."""
    import re
    import shutil

    if shutil.which("wrk") is None:
        return {"wrk": "not installed"}
    script = workdir / "hits.lua"
    script.write_text(
        "local urls = {" + ",".join(json.dumps(u) for u in urls) + "}\n"
        "local i = 0\n"
        f"wrk.headers[\"Authorization\"] = {json.dumps(headers['Authorization'])}\n"
        "request = function()\n  i = i % #urls + 1\n"
        "  return wrk.format(\"GET\", urls[i])\nend\n")
    run = subprocess.run(["wrk", "-t1", f"-c{clients}", f"-d{seconds}s", "--latency",
                          "-s", str(script), base], capture_output=True, text=True, check=True)
    found = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", run.stdout, re.M))
    rps = re.search(r"^Requests/sec:\s+(\S+)$", run.stdout, re.M)
    bad = re.search(r"Non-2xx or 3xx responses: (\d+)", run.stdout)
    return {"wrk_hit_p50_ms": _wrk_ms(found["50"]), "wrk_hit_p99_ms": _wrk_ms(found["99"]),
            "wrk_hit_rps": float(rps.group(1)) if rps else None,
            "wrk_non_2xx": int(bad.group(1)) if bad else 0}


def bare_hits(base: str, api_port: int, headers: dict[str, str], urls: list[str],
              clients: int, workdir: Path) -> dict[str, float]:
    """The same cache hits from a bare ASGI app (``bench/bare_asgi.py``) serving the bytes
    the API answered, on the same uvicorn settings and machine: p50 / p99 and requests/s.
    The API keeps running meanwhile (idle), as the bare app ran alone before it."""
    recorded: dict[str, list] = {}
    with httpx.Client(base_url=base, headers=headers, timeout=60) as client:
        for path in dict.fromkeys(["/health/live", *urls]):
            resp = client.get(path)
            recorded[path] = [resp.status_code, resp.headers.get("content-type", ""),
                              base64.b64encode(resp.content).decode()]
    file = workdir / "bare_responses.json"
    file.write_text(json.dumps(recorded))
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-c", "import uvicorn; uvicorn.run('bench.bare_asgi:app', "
         f"host='127.0.0.1', port={port}, log_level='warning', access_log=False)"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(workdir / "bare.log", "wb"),  # noqa: SIM115
        env={**os.environ, "FACTORFLOW_BENCH_RESPONSES": str(file)}, start_new_session=True)
    try:
        wait_until_up(f"http://127.0.0.1:{port}", server)
        asyncio.run(hammer(port, headers, urls[: clients * len(KINDS)], clients))  # warm
        cpu0 = cpu_seconds(server.pid)
        lat, wall, bad = asyncio.run(hammer(port, headers, urls, clients))
        cpu1 = cpu_seconds(server.pid)
    finally:
        stop_group(server)
    if bad:
        raise RuntimeError(f"{bad} requests to the bare app were not the recorded answers")
    out = {"bare_hit_p50_ms": pct(lat, 0.50), "bare_hit_p99_ms": pct(lat, 0.99),
           "bare_hit_rps": round(len(lat) / wall, 1)}
    if cpu0 is not None and cpu1 is not None:
        out["bare_hit_server_cpu_ms"] = round((cpu1 - cpu0) / len(lat) * 1000, 3)
    return out


def main() -> int:
    ap = bench_parser(__doc__)
    ap.add_argument("--symbols", type=int, default=1050,
                    help="universe size (a few symbols are held back by the data checks: "
                         "the large creates need --large-positions known ones)")
    ap.add_argument("--onboarding", type=int, default=50, help="portfolios created")
    ap.add_argument("--positions", type=int, default=30, help="known symbols per portfolio")
    ap.add_argument("--hits", type=int, default=20000, help="cache-hit requests")
    ap.add_argument("--clients", type=int, default=32, help="concurrent clients for hits")
    ap.add_argument("--misses", type=int, default=50, help="cache-miss requests")
    ap.add_argument("--large", type=int, default=10,
                    help="1,000-position creates measured (0: none)")
    ap.add_argument("--large-positions", type=int, default=1000,
                    help="positions (distinct known symbols) per large create")
    ap.add_argument("--wrk", type=int, default=0, metavar="SECONDS",
                    help="also drive the cache hits with wrk for SECONDS (if installed)")
    args = ap.parse_args()
    workdir = isolated_environment("factorflow-bench-api-", keep=args.keep)

    from core import calendar
    from core.db import migrate
    from core.db.engine import create_engine
    from core.providers.synthetic import SyntheticProvider
    from core.services import users
    from core.settings import get_settings
    from core.symbol_steps import register_universe

    out: dict[str, Any] = {"symbols": args.symbols}
    url = get_settings().resolved_database_url
    db_file = Path(url.split("///", 1)[1])
    migrate.upgrade(url)
    universe = SyntheticProvider().universe(args.symbols)
    asyncio.run(register_universe(universe))
    t = time.perf_counter()
    batch = cli("symbol-batch", "--json")
    if batch.returncode != 0:
        print(batch.stderr[-3000:], file=sys.stderr)
        return 1
    out["symbol_batch_s"] = round(time.perf_counter() - t, 1)
    out["symbol_batch_status"] = json.loads(batch.stdout.strip().splitlines()[-1])["status"]

    async def bench_users() -> tuple[str, str]:
        engine = create_engine(url)
        try:
            _, user = await users.create_user(engine, "bench")
            _, admin = await users.create_user(engine, "bench-admin", admin=True)
            return user, admin
        finally:
            await engine.dispose()

    token, admin_token = asyncio.run(bench_users())
    with sqlite3.connect(db_file) as con:
        known = sorted(r[0] for r in con.execute(
            "SELECT symbol FROM symbols WHERE status = 'active' AND kind = 'equity' "
            "AND last_factor_date IS NOT NULL"))
    out["known_symbols"] = len(known)
    day = calendar.sessions_back(calendar.latest_completed_session(), 20).isoformat()

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "cli.main", "api", "--host", "127.0.0.1", "--port", str(port)],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=open(workdir / "api.log", "wb"),  # noqa: SIM115
        env={**os.environ}, start_new_session=True)  # its own group: Prefect's server too
    try:
        wait_until_up(base, server)
        out["settle_s"] = wait_idle(server.pid)
        h = {"Authorization": f"Bearer {token}"}
        rng = random.Random(5)
        with httpx.Client(base_url=base, headers=h, timeout=60) as client:
            # onboarding: new portfolios of known symbols (3 warm-up requests not counted)
            ids: list[str] = []
            lat: list[float] = []
            for i in range(args.onboarding + 3):
                body = portfolio_body(f"bench-{i:04d}", rng.sample(known, args.positions),
                                      rng, day)
                t = time.perf_counter()
                resp = client.post("/v1/portfolios", json=body)
                elapsed = time.perf_counter() - t
                if resp.status_code != 201:
                    raise RuntimeError(f"create failed: {resp.status_code} {resp.text[:500]}")
                if resp.json()["pending_symbols"]:
                    raise RuntimeError(f"known symbols pending: {resp.json()['pending_symbols']}")
                ids.append(resp.json()["portfolio"]["id"])
                if i >= 3:
                    lat.append(elapsed)
            out["onboarding_p50_ms"] = pct(lat, 0.50)
            out["onboarding_p95_ms"] = pct(lat, 0.95)

            # cache misses: drop the cached analytics (as the nightly refresh does), then GET
            miss: list[float] = []
            for i in range(args.misses + 3):
                pid = ids[i % len(ids)]
                with sqlite3.connect(db_file, timeout=30) as con:
                    con.execute("DELETE FROM portfolio_analytics_cache WHERE portfolio_id = ?",
                                (pid,))
                t = time.perf_counter()
                resp = client.get(f"/v1/portfolios/{pid}/overview")
                elapsed = time.perf_counter() - t
                if resp.status_code != 200 or resp.json()["cached"]:
                    raise RuntimeError(f"expected a miss: {resp.status_code} {resp.text[:300]}")
                if i >= 3:
                    miss.append(elapsed)
            out["miss_p50_ms"] = pct(miss, 0.50)
            out["miss_p95_ms"] = pct(miss, 0.95)

            # /risk misses: no cached answer and no stored nightly row, computed in the request
            risk_miss: list[float] = []
            for i in range(args.misses + 3):
                pid = ids[i % len(ids)]
                with sqlite3.connect(db_file, timeout=30) as con:
                    con.execute("DELETE FROM portfolio_analytics_cache WHERE portfolio_id = ?",
                                (pid,))
                    con.execute("DELETE FROM portfolio_risk WHERE portfolio_id = ?", (pid,))
                t = time.perf_counter()
                resp = client.get(f"/v1/portfolios/{pid}/risk")
                elapsed = time.perf_counter() - t
                if resp.status_code != 200 or resp.json()["cached"]:
                    raise RuntimeError(f"expected a risk miss: {resp.status_code} "
                                       f"{resp.text[:300]}")
                if i >= 3:
                    risk_miss.append(elapsed)
            out["risk_miss_p50_ms"] = pct(risk_miss, 0.50)
            out["risk_miss_p95_ms"] = pct(risk_miss, 0.95)

            # /performance misses over a year of snapshots (written here: the bench's
            # portfolios are new), computed in the request
            with sqlite3.connect(db_file, timeout=30) as con:
                perf_ids = year_of_snapshots(con, ids[: args.misses + 3], rng)
            perf_miss = answer_misses(
                client, db_file, perf_ids, args.misses, "performance", "?window=1Y",
                lambda body: body["n_returns"] >= 200, "a performance miss over a year")
            out["performance_miss_p50_ms"] = pct(perf_miss, 0.50)
            out["performance_miss_p95_ms"] = pct(perf_miss, 0.95)

            # /attribution misses over the same year, its positions entered at its start
            # and no nightly risk row before the data date: every close's exposures are
            # rebuilt in the request (the positions valued at 251 closes, one risk pass)
            with sqlite3.connect(db_file, timeout=30) as con:
                for pid in perf_ids:
                    (first,), = con.execute("SELECT min(date) FROM portfolio_snapshots "
                                            "WHERE portfolio_id = ?", (pid,))
                    con.execute("UPDATE positions SET entry_date = ? WHERE portfolio_id = ?",
                                (first, pid))
            attribution_miss = answer_misses(
                client, db_file, perf_ids, args.misses, "attribution", "",
                lambda body: body["n_rebuilt"] >= 200, "an attribution miss rebuilding a year")
            out["attribution_rebuilt_miss_p50_ms"] = pct(attribution_miss, 0.50)
            out["attribution_rebuilt_miss_p95_ms"] = pct(attribution_miss, 0.95)

            # a cash change: invalidates and re-values the portfolio in the request
            patch: list[float] = []
            for i in range(min(args.misses, len(ids))):
                t = time.perf_counter()
                resp = client.patch(f"/v1/portfolios/{ids[i]}", json={"cash": str(20000 + i)})
                patch.append(time.perf_counter() - t)
                if resp.status_code != 200:
                    raise RuntimeError(f"patch failed: {resp.status_code} {resp.text[:300]}")
            out["patch_cash_p95_ms"] = pct(patch, 0.95)

        # cache hits at N concurrent clients, the five kinds in turn (warmed first)
        hot = ids[: args.clients]
        urls = [f"/v1/portfolios/{hot[i % len(hot)]}/{KINDS[i % len(KINDS)]}"
                for i in range(args.hits)]
        asyncio.run(hammer(port, h, urls[: len(hot) * len(KINDS)], args.clients))
        cpu0 = cpu_seconds(server.pid)
        lat, wall, bad = asyncio.run(hammer(port, h, urls, args.clients))
        cpu1 = cpu_seconds(server.pid)
        if bad:
            raise RuntimeError(f"{bad} cache-hit requests failed or were not cached")
        out["hit_clients"] = args.clients
        out["hit_p50_ms"] = pct(lat, 0.50)
        out["hit_p99_ms"] = pct(lat, 0.99)
        out["hit_rps"] = round(len(lat) / wall, 1)
        if cpu0 is not None and cpu1 is not None:  # the server's own cost of one hit
            out["hit_server_cpu_ms"] = round((cpu1 - cpu0) / len(lat) * 1000, 3)
        risk_urls = [f"/v1/portfolios/{hot[i % len(hot)]}/risk" for i in range(args.hits)]
        asyncio.run(hammer(port, h, risk_urls[: len(hot)], args.clients))  # warm
        risk_lat, _, bad = asyncio.run(hammer(port, h, risk_urls, args.clients))
        if bad:
            raise RuntimeError(f"{bad} /risk cache-hit requests failed or were not cached")
        out["risk_hit_p99_ms"] = pct(risk_lat, 0.99)
        out.update(bare_hits(base, port, h, urls, args.clients, workdir))
        if out.get("bare_hit_p99_ms"):
            out["hit_p99_vs_bare"] = round(out["hit_p99_ms"] / out["bare_hit_p99_ms"], 2)
        one, _, _ = asyncio.run(hammer(port, h, urls[:300], 1))
        out["hit_p50_ms_1_client"] = pct(one, 0.50)
        out["hit_p99_ms_1_client"] = pct(one, 0.99)
        if args.wrk:
            out.update(wrk_hits(base, h, urls[: len(hot) * len(KINDS)], args.clients,
                                args.wrk, workdir))

        if args.large:
            if len(known) < args.large_positions:
                raise RuntimeError(f"--large-positions {args.large_positions} needs as many "
                                   f"known symbols; {len(known)} (raise --symbols)")
            out.update(large_onboarding(base, port, h, known, args.large, args.large_positions,
                                        rng, day))
            if out.get("onboarding_p95_ms"):  # 1,000 positions against 30, same server
                out["large_vs_small_onboarding_p95"] = round(
                    out["large_onboarding_p95_ms"] / out["onboarding_p95_ms"], 1)

        # a new symbol: pending → ready
        ticker = new_ticker(set(universe))
        with httpx.Client(base_url=base, headers=h, timeout=60) as client:
            body = portfolio_body("bench-new-symbol", [ticker, *known[:5]], rng, day)
            t0 = time.perf_counter()
            resp = client.post("/v1/portfolios", json=body)
            created = resp.json()
            if resp.status_code != 201 or created["pending_symbols"] != [ticker]:
                raise RuntimeError(f"new symbol not pending: {resp.status_code} {resp.text[:300]}")
            status = "pending"
            while time.perf_counter() - t0 < 120:
                status = client.get(f"/v1/symbols/{ticker}").json()["status"]
                if status != "pending":
                    break
                time.sleep(0.1)
            out["new_symbol"] = ticker
            out["new_symbol_status"] = status
            out["new_symbol_ready_s"] = round(time.perf_counter() - t0, 2)
            pid = created["portfolio"]["id"]
            for _ in range(100):  # the flow re-values the portfolio after the symbol
                snap = client.get(f"/v1/portfolios/{pid}").json()["latest_snapshot"]
                if snap and not snap["partial"]:
                    break
                time.sleep(0.1)
            out["new_symbol_portfolio_revalued"] = bool(snap and not snap["partial"])
            admin = {"Authorization": f"Bearer {admin_token}"}
            out["ready"] = client.get("/health/ready").json()["status"]
            out["freshness_stale"] = client.get("/v1/admin/freshness", headers=admin).json()[
                "jobs"]["symbol-batch"]["stale"]
    except BaseException:
        log = (workdir / "api.log").read_text(errors="replace")[-4000:]
        print(f"bench/api.py failed; the API server's log ends:\n{log}", file=sys.stderr)
        raise
    finally:  # the API and what it started (Prefect's local server), by process group
        stop_group(server)
    out["targets_met"] = {
        **{k: out[k] is not None and out[k] < v for k, v in TARGETS_MS.items() if k in out},
        "new_symbol_ready_s": out.get("new_symbol_status") == "ready"
        and out["new_symbol_ready_s"] < NEW_SYMBOL_TARGET_S,
    }
    out["workdir"] = str(workdir) if args.keep else None
    report(out, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
