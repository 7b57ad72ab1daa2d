"""The JSON shape of a portfolio snapshot and of money amounts in API answers.

One formatter for every snapshot the API shows: a stored ``portfolio_snapshots`` row (the
portfolio view, the snapshot list) and the one just computed (the instant snapshot, the
analytics overview) give the same text for the same numbers.

May import: the standard library only. Not: repositories, ``core.db``, flows, api, cli.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

_MONEY_FIELDS = ("equity", "market_value", "cash", "cost_basis", "unrealized_pnl",
                 "daily_pnl")
_EXPOSURE_FIELDS = ("long_exposure", "short_exposure", "gross_exposure", "net_exposure")
_PNL_PARTS = ("price_pnl", "income")
"""``daily_pnl = price_pnl + income`` (dividends); both None on a first snapshot and on a
row stored before they existed (migration 0008) and not yet recomputed."""


def money_text(amount: Decimal | None) -> str | None:
    """A money amount (Decimal, 4 decimal places as stored) as plain decimal text, never
    in exponent notation (``Decimal("0E-4")`` → ``"0.0000"``); None stays None."""
    return None if amount is None else f"{amount:f}"


def snapshot_dict(snapshot: Mapping[Any, Any]) -> dict[str, Any]:
    """A snapshot as the API shows it.

    Parameters
    ----------
    snapshot
        The columns of ``portfolio_snapshots`` by name (a row's ``_mapping``, or a dict of
        the same keys): ``date`` (a date), money as Decimal (USD), ``daily_return`` a float
        fraction or None, ``position_count``, ``partial``, ``missing_symbols``, and
        optionally ``price_pnl`` and ``income`` (absent = None). ``portfolio_id`` is
        ignored.

    Returns
    -------
    dict
        ``date`` ISO text, money as :func:`money_text`, the rest as JSON numbers, booleans
        and lists, in the column order; then ``price_pnl`` and ``income`` (the two parts
        of ``daily_pnl``: price moves and cash dividends; None on a first snapshot and
        on a row stored before migration 0008 and not recomputed since).
    """
    out: dict[str, Any] = {"date": snapshot["date"].isoformat()}
    out.update({k: money_text(snapshot[k]) for k in _MONEY_FIELDS})
    out["daily_return"] = snapshot["daily_return"]
    out.update({k: money_text(snapshot[k]) for k in _EXPOSURE_FIELDS})
    out["position_count"] = int(snapshot["position_count"])
    out["partial"] = bool(snapshot["partial"])
    out["missing_symbols"] = list(snapshot["missing_symbols"] or [])
    out.update({k: money_text(snapshot.get(k)) for k in _PNL_PARTS})
    return out
