"""How many fetch chunks a process runs at once (``Settings.fetch_slots``): one with a local
provider chain (the threads only contend), ``max_workers`` once the chain reaches the
network, and the value asked when ``FACTORFLOW_FETCH_CONCURRENCY`` is set."""

from __future__ import annotations

import pytest

from core.settings import Settings


@pytest.mark.parametrize(("chain", "asked", "expected"), [
    ("synthetic", None, 1),
    ("csv,synthetic", None, 1),
    ("yfinance", None, 6),
    ("yfinance,csv", None, 6),
    ("synthetic", 3, 3),
    ("yfinance", 2, 2),
])
def test_fetch_slots(chain: str, asked: int | None, expected: int) -> None:
    settings = Settings(price_provider=chain, max_workers=6, fetch_concurrency=asked)
    assert settings.fetch_slots == expected


@pytest.mark.parametrize(("chain", "expected"), [
    ("synthetic", 4), ("csv,synthetic", 4), ("yfinance", 1), ("csv,yfinance", 1)])
def test_short_windows_take_larger_chunks_only_from_a_local_chain(chain: str,
                                                                  expected: int) -> None:
    assert Settings(price_provider=chain).short_window_scale == expected
