"""A chain of price providers tried in order, and the chain built from settings.

For one ``fetch`` call, the chunk goes to the first provider. If it raises — any
exception: ``ProviderError`` (network, rate limit, a broken file), a parse error, a
bug — or returns a result that cannot be read, the whole chunk goes to the next
(the failure is logged once, with its traceback when it is not a
``ProviderError``); otherwise the symbols it could not serve (in ``errors``, or
silently absent from its bars) go to the next, and so on. Each symbol's bars and
actions come from the first provider that served it, and
``FetchResult.provider_by_symbol`` names that provider.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Sequence
from datetime import date
from typing import cast

import pandas as pd

from core.providers.base import (
    FetchResult,
    PriceProvider,
    ProviderError,
    empty_actions,
    empty_bars,
)
from core.settings import Settings

logger = logging.getLogger(__name__)

CHAIN_SEPARATOR = "→"
NOT_RETURNED = "no_data: the provider returned no rows and no error for this symbol"


def _failure(exc: BaseException) -> str:
    """One line for a provider's exception: its message, or its type and message when
    it is not a ``ProviderError`` (a bug or a parse error must show what it was)."""
    message = " ".join(str(exc).split()) or "(no message)"
    return message if isinstance(exc, ProviderError) else f"{type(exc).__name__}: {message}"


def _tag(reason: str, provider: str) -> str:
    """``"<code>: <message>"`` → ``"<code>: <message> [<provider>]"`` (code stays first)."""
    return f"{reason} [{provider}]"


class FallbackProvider:
    """Try ``providers`` in order for each call (see the module docstring).

    ``name`` is the providers' names joined with ``→``, e.g. ``"csv→synthetic"``.
    ``fetch`` returns the merged bars and actions; ``FetchResult.provider_by_symbol``
    maps each served symbol to the provider that delivered it (as that provider
    reported it, else its ``name``); ``FetchResult.provider`` names the providers that
    served at least one symbol, joined with ``+`` in chain order (or, when none did,
    those that answered without raising). A symbol no provider
    served keeps one reason per provider that tried it, each tagged with the
    provider's name (``"no_data: … [synthetic]; provider_error: … [csv]"``), in chain
    order. If every provider raises, ``ProviderError`` names each failure.
    """

    def __init__(self, providers: Sequence[PriceProvider]) -> None:
        if not providers:
            raise ValueError("FallbackProvider needs at least one provider")
        self.providers: tuple[PriceProvider, ...] = tuple(providers)
        self.name = CHAIN_SEPARATOR.join(p.name for p in self.providers)

    def fetch(self, symbols: Sequence[str], start: date, end: date) -> FetchResult:
        """Bars for ``start ≤ date ≤ end``, each symbol from the first provider serving it.

        ``TypeError`` for a single string, ``ValueError`` if ``end < start`` (checked
        here, before any provider); ``ProviderError`` when every provider failed.
        """
        if isinstance(symbols, str):
            raise TypeError("symbols must be a sequence of strings, not one string")
        if end < start:
            raise ValueError(f"end {end} is before start {start}")
        remaining = list(dict.fromkeys(symbols))
        reasons: dict[str, list[str]] = {}
        failures: list[str] = []
        answered: list[str] = []
        served_by: list[str] = []
        delivered: dict[str, str] = {}
        bar_parts: list[pd.DataFrame] = []
        action_parts: list[pd.DataFrame] = []
        for provider in self.providers:
            if not remaining:
                break
            try:
                result = provider.fetch(remaining, start, end)
                with_bars = set(result.bars["symbol"].unique()) if len(result.bars) else set()
                served = [s for s in remaining if s in with_bars and s not in result.errors]
                served_set = set(served)
                own_bars = result.bars[result.bars["symbol"].isin(served_set)] if served else None
                own_actions = (
                    result.actions[result.actions["symbol"].isin(served_set)]
                    if served and len(result.actions)
                    else None
                )
            except Exception as exc:  # any failure moves the chunk on
                reason = _failure(exc)
                logger.warning(
                    "provider %s failed for %d symbols, trying the next: %s",
                    provider.name,
                    len(remaining),
                    reason,
                    exc_info=not isinstance(exc, ProviderError),
                )
                failures.append(f"{provider.name}: {reason}")
                tagged = _tag(f"provider_error: {reason}", provider.name)
                for s in remaining:
                    reasons.setdefault(s, []).append(tagged)
                continue
            answered.append(provider.name)
            if own_bars is not None:
                bar_parts.append(own_bars)
                if own_actions is not None:
                    action_parts.append(own_actions)
                served_by.append(provider.name)
                own = result.provider_by_symbol
                delivered.update({s: own.get(s, provider.name) for s in served})
            still: list[str] = []
            for s in remaining:
                if s in served_set:
                    continue
                reasons.setdefault(s, []).append(
                    _tag(result.errors.get(s, NOT_RETURNED), provider.name)
                )
                still.append(s)
            remaining = still
        if not answered:
            raise ProviderError("all providers failed: " + "; ".join(failures))
        bars = pd.concat(bar_parts, ignore_index=True) if bar_parts else empty_bars()
        actions = pd.concat(action_parts, ignore_index=True) if action_parts else empty_actions()
        errors = {s: "; ".join(reasons[s]) for s in remaining}
        return FetchResult(
            bars=bars,
            actions=actions,
            errors=errors,
            provider="+".join(served_by or answered),
            provider_by_symbol=delivered,
        )

    def fetch_profiles(self, symbols: Sequence[str]) -> pd.DataFrame:
        """Profiles from the first provider that has a row for each symbol.

        A provider raising (any exception) is skipped; if all raise, ``ProviderError``.
        """
        remaining = list(dict.fromkeys(symbols))
        parts: list[pd.DataFrame] = []
        failures: list[str] = []
        empty: pd.DataFrame | None = None
        for provider in self.providers:
            if not remaining:
                break
            try:
                frame = provider.fetch_profiles(remaining)
            except Exception as exc:  # any failure moves on
                logger.warning(
                    "provider %s failed to give profiles, trying the next: %s",
                    provider.name,
                    _failure(exc),
                    exc_info=not isinstance(exc, ProviderError),
                )
                failures.append(f"{provider.name}: {_failure(exc)}")
                continue
            if empty is None:
                empty = frame.iloc[0:0]
            got = frame[frame["symbol"].isin(remaining)].drop_duplicates("symbol")
            if len(got):
                parts.append(got)
                have = set(got["symbol"])
                remaining = [s for s in remaining if s not in have]
        if empty is None:
            raise ProviderError("all providers failed: " + "; ".join(failures))
        return pd.concat(parts, ignore_index=True) if parts else empty


def _synthetic(settings: Settings) -> PriceProvider:
    from core.providers.synthetic import SyntheticProvider

    return SyntheticProvider(seed=settings.synthetic_seed)


def _csv(settings: Settings) -> PriceProvider:
    from core.providers.csv_file import CsvProvider

    if settings.csv_path is None:
        raise ValueError(
            "price provider 'csv' needs a CSV file: set FACTORFLOW_CSV_PATH (settings.csv_path)"
        )
    return CsvProvider(settings.csv_path)


def _yfinance(settings: Settings) -> PriceProvider:
    # Imported lazily: yfinance (and curl_cffi) load only when configured.
    module = importlib.import_module("core.providers.yfinance_provider")
    return cast(PriceProvider, module.YFinanceProvider())


PROVIDER_FACTORIES: dict[str, Callable[[Settings], PriceProvider]] = {
    "synthetic": _synthetic,
    "csv": _csv,
    "yfinance": _yfinance,
}
"""Provider name (as in ``FACTORFLOW_PRICE_PROVIDER``) → constructor from settings."""


def build_provider(settings: Settings) -> PriceProvider:
    """The price provider configured by ``settings.provider_chain``.

    Names are ``synthetic`` (seed ``settings.synthetic_seed``), ``csv`` (file
    ``settings.csv_path``, required) and ``yfinance``; one name gives that provider
    unwrapped, several a ``FallbackProvider`` in that order. ``ValueError`` for an
    empty chain, an unknown or repeated name (listing the valid names), or ``csv``
    without a path.
    """
    chain = settings.provider_chain
    valid = ", ".join(PROVIDER_FACTORIES)
    if not chain:
        raise ValueError(f"no price provider configured (valid names: {valid})")
    unknown = [n for n in chain if n not in PROVIDER_FACTORIES]
    if unknown:
        raise ValueError(
            f"unknown price provider(s) {', '.join(map(repr, unknown))} (valid names: {valid})"
        )
    repeated = sorted({n for n in chain if chain.count(n) > 1})
    if repeated:
        raise ValueError(f"price provider(s) listed twice: {', '.join(repeated)}")
    providers = [PROVIDER_FACTORIES[n](settings) for n in chain]
    return providers[0] if len(providers) == 1 else FallbackProvider(providers)
