"""A portfolio's report as one self-contained HTML page (pure: answers in, text out).

:func:`render_report` lays out what the API already answers — performance, attribution,
risk, factor exposures, stress tests — with charts drawn on the server as inline SVG by
matplotlib (no script, no font, no stylesheet or image fetched: the page opens offline and
in a mail client). Every chart has its numbers beside it in a table, so the figures can be
read exactly and by a screen reader.

Conventions: returns and fractions are shown in percent with two decimals, money with the
portfolio's currency unsigned by a symbol and two decimals, a loss positive in VaR/ES as the
risk answer has it. An absent figure is shown as "–" with the answer's reason when it gives
one.

May import: the standard library, numpy, matplotlib. No I/O (the service gathers the data).
"""

from __future__ import annotations

import datetime as dt
import html
import io
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from matplotlib import rc_context
from matplotlib.dates import DateFormatter
from matplotlib.figure import Figure

ROLLING_SESSIONS = 63
"""Sessions of the rolling realized volatility drawn against the model's ex-ante one."""
TOP_CONTRIBUTORS = 10
"""Positions listed among the top risk contributors."""

_INK, _ACCENT, _MUTED, _BAD, _GOOD = "#1f2933", "#2563eb", "#9aa5b1", "#c2410c", "#15803d"


@dataclass(frozen=True)
class ReportSeries:
    """The daily series behind the charts, one value per session, oldest first.

    Attributes
    ----------
    dates : sequence of date
    portfolio_return : ndarray, shape (T,)
        Time-weighted daily return of the portfolio (NaN: none that day).
    benchmark_return : ndarray, shape (T,)
        The benchmark's daily simple return (NaN: none).
    exante_volatility : ndarray, shape (T,)
        The risk model's annualised ex-ante volatility stored that night (NaN: none).
    """

    dates: Sequence[dt.date]
    portfolio_return: np.ndarray
    benchmark_return: np.ndarray
    exante_volatility: np.ndarray


@dataclass(frozen=True)
class ReportInput:
    """Everything the page shows: the portfolio, the series and the API's answers (each
    as the API returns it, or None when the portfolio has none)."""

    portfolio_id: str
    name: str
    benchmark: str
    data_as_of: str
    series: ReportSeries
    overview: Mapping[str, Any] | None
    performance: Mapping[str, Any] | None
    attribution: Mapping[str, Any] | None
    risk: Mapping[str, Any] | None
    factor_exposures: Mapping[str, Any] | None
    stress: Mapping[str, Any] | None


def _pct(x: Any) -> str:
    return f"{100 * x:.2f} %" if isinstance(x, int | float) and math.isfinite(x) else "–"


def _money(x: Any) -> str:
    try:
        v = float(x)
    except (TypeError, ValueError):
        return "–"
    return f"{v:,.2f}" if math.isfinite(v) else "–"


def _num(x: Any, digits: int = 2) -> str:
    return f"{x:.{digits}f}" if isinstance(x, int | float) and math.isfinite(x) else "–"


def _e(text: Any) -> str:
    return html.escape(str(text), quote=True)


def wealth(returns: np.ndarray) -> np.ndarray:
    """Growth of 1 from daily simple returns (a missing return leaves wealth unchanged).

    Parameters
    ----------
    returns : ndarray, shape (T,)
        Daily simple returns, NaN where none.

    Returns
    -------
    ndarray, shape (T,)
        ``prod(1 + r)`` through each day.
    """
    return np.cumprod(1.0 + np.nan_to_num(np.asarray(returns, dtype=np.float64)))


def drawdown(returns: np.ndarray) -> np.ndarray:
    """Drawdown from the running peak of :func:`wealth` (≤ 0; the start counts as a peak)."""
    w = wealth(returns)
    peak = np.maximum.accumulate(np.concatenate([[1.0], w]))[1:]
    return w / peak - 1.0


def rolling_volatility(returns: np.ndarray, window: int = ROLLING_SESSIONS,
                       periods: int = 252) -> np.ndarray:
    """Annualised standard deviation (ddof 1) of the last ``window`` returns on each day;
    NaN until ``window`` returns exist in the window (a missing return does not count)."""
    r = np.asarray(returns, dtype=np.float64)
    out = np.full(len(r), np.nan)
    for t in range(window - 1, len(r)):
        x = r[t - window + 1:t + 1]
        x = x[np.isfinite(x)]
        if len(x) == window:
            out[t] = float(np.std(x, ddof=1)) * math.sqrt(periods)
    return out


def _svg(fig: Figure, title: str) -> str:
    """The figure as inline SVG text (text kept as text, ids stable, no XML prologue)."""
    buf = io.StringIO()
    with rc_context({"svg.fonttype": "none", "svg.hashsalt": "factorflow"}):
        fig.savefig(buf, format="svg", bbox_inches="tight", metadata={"Date": None})
    text = buf.getvalue()
    text = text[text.index("<svg"):]
    return text.replace("<svg ", f'<svg role="img" aria-label="{_e(title)}" ', 1)


def _figure(width: float = 6.4, height: float = 2.6) -> tuple[Figure, Any]:
    fig = Figure(figsize=(width, height), dpi=96)
    ax = fig.add_subplot()
    ax.spines[["top", "right"]].set_visible(False)
    ax.tick_params(labelsize=8, colors=_INK)
    ax.grid(axis="y", color="#e4e7eb", linewidth=0.6)
    return fig, ax


def _percent_format(series: Sequence[np.ndarray]) -> str:
    """Tick labels with as many decimals as the plotted range needs (a 15.6-16.4 % band
    would read "16 %" on every tick)."""
    finite = np.concatenate([np.asarray(y)[np.isfinite(y)] for y in series])
    span = float(finite.max() - finite.min()) if finite.size else 0.0
    digits = 0 if span >= 5 else 1 if span >= 0.5 else 2
    return "{x:." + str(digits) + "f} %"


def _line_chart(dates: Sequence[dt.date], lines: Sequence[tuple[str, np.ndarray, str]],
                title: str, percent: bool = True, fill: bool = False) -> str:
    fig, ax = _figure()
    x = np.array(dates, dtype="datetime64[D]")
    for label, y, color in lines:
        ys = 100 * y if percent else y
        ax.plot(x, ys, label=label, color=color, linewidth=1.4)
        if fill:
            ax.fill_between(x, ys, 0, color=color, alpha=0.15, linewidth=0)
    if len(lines) > 1:
        ax.legend(fontsize=8, frameon=False)
    ax.xaxis.set_major_formatter(DateFormatter("%Y-%m-%d"))
    if len(x) <= 10:  # a short history: one tick per session, never hours
        ax.set_xticks(x)
    if percent:
        ax.yaxis.set_major_formatter(_percent_format(
            [100 * y for _, y, _ in lines]))
    fig.autofmt_xdate()
    return _svg(fig, title)


def _bar_chart(labels: Sequence[str], values: Sequence[float], title: str,
               percent: bool = False) -> str:
    fig, ax = _figure(6.4, max(1.6, 0.28 * len(labels) + 0.6))
    vals = [100 * v if percent else v for v in values]
    colors = [_BAD if v < 0 else _ACCENT for v in vals]
    ax.barh(range(len(vals)), vals, color=colors)
    ax.set_yticks(range(len(vals)), [str(s) for s in labels])
    ax.invert_yaxis()
    ax.axvline(0, color=_MUTED, linewidth=0.8)
    ax.grid(axis="x", color="#e4e7eb", linewidth=0.6)
    ax.grid(axis="y", visible=False)
    if percent:
        ax.xaxis.set_major_formatter("{x:.1f} %")
    return _svg(fig, title)


def _table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{_e(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{_e(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


def _section(title: str, chart: str | None, table: str, note: str = "") -> str:
    chart_html = f'<div class="chart">{chart}</div>' if chart else ""
    note_html = f'<p class="note">{_e(note)}</p>' if note else ""
    return (f'<section><h2>{_e(title)}</h2><div class="row">{chart_html}'
            f'<div class="numbers">{table}</div></div>{note_html}</section>')


def _performance_section(inp: ReportInput) -> str:
    s = inp.series
    p = inp.performance or {}
    finite = np.isfinite(s.portfolio_return)
    rows = [(label, _pct(p.get(key)) if kind == "pct" else _num(p.get(key)))
            for label, key, kind in (
                ("Cumulative return", "cumulative_return", "pct"),
                ("Annualised return", "annualized_return", "pct"),
                ("Annualised volatility", "annualized_volatility", "pct"),
                ("Sharpe ratio", "sharpe_ratio", "num"),
                ("Sortino ratio", "sortino_ratio", "num"),
                ("Max drawdown", "max_drawdown", "pct"),
                ("Calmar ratio", "calmar_ratio", "num"),
                (f"Beta to {inp.benchmark}", "beta", "num"),
                ("Alpha (annualised)", "alpha", "pct"),
                ("Tracking error", "tracking_error", "pct"),
                ("Information ratio", "information_ratio", "num"),
                ("Hit rate", "hit_rate", "pct"))]
    table = _table(("figure", "value"), rows)
    if finite.sum() < 2:
        return _section("Performance", None, table,
                        "fewer than 2 daily returns: no chart yet")
    chart = _line_chart(s.dates, [
        ("portfolio", wealth(s.portfolio_return) - 1.0, _ACCENT),
        (inp.benchmark, wealth(s.benchmark_return) - 1.0, _MUTED)],
        f"Cumulative return against {inp.benchmark}")
    dd = drawdown(s.portfolio_return)
    dd_chart = _line_chart(s.dates, [("drawdown", dd, _BAD)], "Drawdown", fill=True)
    worst = int(np.argmin(dd))
    dd_table = _table(("figure", "value"), [
        ("Deepest drawdown", _pct(float(dd[worst]))),
        ("on", s.dates[worst].isoformat() if dd[worst] < 0 else "–")])
    return (_section("Performance", chart, table)
            + _section("Drawdown", dd_chart, dd_table))


def _volatility_section(inp: ReportInput) -> str | None:
    s = inp.series
    realized = rolling_volatility(s.portfolio_return)
    if max(np.isfinite(realized).sum(), np.isfinite(s.exante_volatility).sum()) < 2:
        return None
    chart = _line_chart(s.dates, [
        (f"realized ({ROLLING_SESSIONS} sessions)", realized, _ACCENT),
        ("model ex-ante", s.exante_volatility, _BAD)],
        "Rolling volatility against the model's ex-ante volatility")
    last_r = realized[np.isfinite(realized)]
    last_m = s.exante_volatility[np.isfinite(s.exante_volatility)]
    table = _table(("figure", "value"), [
        ("Realized, last", _pct(float(last_r[-1])) if len(last_r) else "–"),
        ("Model ex-ante, last", _pct(float(last_m[-1])) if len(last_m) else "–")])
    return _section("Volatility", chart, table)


def _risk_sections(inp: ReportInput) -> str:
    r = inp.risk
    if not r:
        return ""
    vol = r.get("volatility") or {}
    summary = _table(("figure", "value"), [
        ("Volatility, daily", _pct(vol.get("daily"))),
        ("Volatility, annual", _pct(vol.get("annual"))),
        ("Volatility, daily, money", _money(vol.get("dollar_daily"))),
        ("Predicted beta to SPY", _num(r.get("predicted_beta"))),
        ("Factor share of variance", _pct((r.get("variance_split") or {}).get("factor_share"))),
        ("Covered by the model", _pct(((r.get("model") or {}).get("coverage") or {})
                                      .get("covered_share")))])
    var_rows = [(v["measure"].upper(), v["method"].replace("_", "-"),
                 f"{100 * v['confidence']:.0f} %", str(v["horizon_days"]), _money(v["value"]),
                 _pct(v["pct"])) for v in r.get("var") or []]
    var_table = _table(("measure", "method", "confidence", "sessions", "loss", "of equity"),
                       var_rows)
    positions = sorted((p for p in r.get("position_contributions") or []
                        if p.get("percent") is not None),
                       key=lambda p: -abs(p["percent"]))[:TOP_CONTRIBUTORS]
    factors = [f for f in r.get("factor_contributions") or [] if f.get("percent") is not None]
    out = _section("Risk", None, summary, (r.get("reason") or ""))
    if positions:
        out += _section(
            "Top risk contributors",
            _bar_chart([p["symbol"] for p in positions], [p["percent"] for p in positions],
                       "Share of volatility by position", percent=True),
            _table(("position", "share of risk", "contribution"),
                   [(p["symbol"], _pct(p["percent"]), _pct(p["contribution"]))
                    for p in positions]))
    if factors:
        out += _section(
            "Risk by factor",
            _bar_chart([f["factor"] for f in factors], [f["percent"] for f in factors],
                       "Share of volatility by factor", percent=True),
            _table(("factor", "share of risk", "exposure"),
                   [(f["factor"], _pct(f["percent"]), _money(f.get("exposure")))
                    for f in factors]))
    out += _section("Value at risk and expected shortfall", None, var_table,
                    ((r.get("model") or {}).get("ten_day") or ""))
    return out


def _exposure_section(inp: ReportInput) -> str:
    rows = [f for f in (inp.factor_exposures or {}).get("portfolio") or []
            if f.get("beta") is not None]
    if not rows:
        return ""
    return _section(
        "Factor exposures",
        _bar_chart([f["factor"] for f in rows], [f["beta"] for f in rows],
                   "Factor betas of the portfolio"),
        _table(("factor", "beta", "exposure", "covered"),
               [(f["factor"], _num(f["beta"], 3), _money(f.get("dollar_exposure")),
                 _pct(f.get("covered_share"))) for f in rows]))


def _stress_section(inp: ReportInput) -> str:
    scen = [s for s in (inp.stress or {}).get("scenarios") or []]
    if not scen:
        return ""
    shown = [s for s in scen if s.get("available") and s.get("pnl_pct") is not None]
    chart = (_bar_chart([s.get("title") or s["name"] for s in shown],
                        [s["pnl_pct"] for s in shown], "Stress test P&L, % of equity",
                        percent=True) if shown else None)
    return _section("Stress tests", chart, _table(
        ("scenario", "P&L", "of equity"),
        [(s.get("title") or s["name"], _money(s.get("pnl")) if s.get("available")
          else (s.get("reason") or "unavailable"), _pct(s.get("pnl_pct"))) for s in scen]))


def _attribution_section(inp: ReportInput) -> str:
    a = inp.attribution
    if not a or not a.get("factors"):
        return ""
    labels = [f["factor"] for f in a["factors"]] + ["specific"]
    values = [f.get("pnl") or 0.0 for f in a["factors"]] + [a.get("specific_pnl") or 0.0]
    rows = [(k, _money(v)) for k, v in zip(labels, values, strict=True)]
    rows += [("total", _money(a.get("total_pnl"))),
             ("unattributed", _money(a.get("unattributed_pnl")))]
    return _section("P&L attribution by factor",
                    _bar_chart(labels, values, "P&L by factor over the window"),
                    _table(("source", "P&L"), rows),
                    f"{a.get('start', '')} – {a.get('end', '')}")


_STYLE = """
body{font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;color:#1f2933;
margin:0;background:#f5f7fa}
header{background:#1f2933;color:#fff;padding:20px 32px}
header h1{margin:0;font-size:22px}header p{margin:4px 0 0;color:#cbd2d9}
main{max-width:1100px;margin:0 auto;padding:16px 24px 48px}
section{background:#fff;border-radius:8px;margin:16px 0;padding:16px 20px;
box-shadow:0 1px 2px rgba(0,0,0,.06)}
h2{font-size:16px;margin:0 0 12px}
.row{display:flex;flex-wrap:wrap;gap:20px;align-items:flex-start}
.chart{flex:1 1 560px;min-width:300px}.chart svg{width:100%;height:auto}
.numbers{flex:0 1 360px}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}
th,td{padding:3px 8px;border-bottom:1px solid #e4e7eb;text-align:right;white-space:nowrap}
th:first-child,td:first-child{text-align:left}
th{font-weight:600;color:#52606d}
.note{color:#7b8794;font-size:12px;margin:8px 0 0}
.cards{display:flex;flex-wrap:wrap;gap:12px}
.card{flex:1 1 150px;background:#fff;border-radius:8px;padding:12px 16px;
box-shadow:0 1px 2px rgba(0,0,0,.06)}
.card b{display:block;font-size:20px}.card span{color:#7b8794;font-size:12px}
"""


def _cards(inp: ReportInput) -> str:
    snap = (inp.overview or {}).get("snapshot") or {}
    p = inp.performance or {}
    vol = (inp.risk or {}).get("volatility") or {}
    var99: Mapping[str, Any] = next((v for v in (inp.risk or {}).get("var") or []
                  if v["measure"] == "var" and v["method"] == "historical"
                  and v["confidence"] == 0.99 and v["horizon_days"] == 1), {})
    cards = [("Equity", _money(snap.get("equity"))),
             ("Day P&L", _money(snap.get("daily_pnl"))),
             ("Cumulative return", _pct(p.get("cumulative_return"))),
             ("Annual volatility (model)", _pct(vol.get("annual"))),
             ("99 % 1-day VaR (historical)", _money(var99.get("value")))]
    return '<div class="cards">' + "".join(
        f'<div class="card"><span>{_e(k)}</span><b>{_e(v)}</b></div>' for k, v in cards
    ) + "</div>"


def render_report(inp: ReportInput) -> str:
    """The report page of one portfolio.

    Parameters
    ----------
    inp : ReportInput
        The portfolio, its daily series and the API's answers.

    Returns
    -------
    str
        A complete HTML5 document: inline CSS and inline SVG charts only (no script, no
        external reference), each chart with its figures in a table beside it.
    """
    parts = [_cards(inp), _performance_section(inp), _volatility_section(inp) or "",
             _exposure_section(inp), _risk_sections(inp), _stress_section(inp),
             _attribution_section(inp)]
    title = f"{inp.name} — factorflow report"
    return (
        "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
        "<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">"
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>"
        f"<header><h1>{_e(inp.name)}</h1><p>Portfolio {_e(inp.portfolio_id)} · data as of "
        f"{_e(inp.data_as_of)} · benchmark {_e(inp.benchmark)}</p></header>"
        f"<main>{''.join(parts)}</main></body></html>\n")
