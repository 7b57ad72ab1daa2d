"""Process-wide wiring of the flows (``flows.common``): malloc arenas, quoted bulk values."""

from __future__ import annotations

import ctypes

import pytest
from prefect.utilities.annotations import quote

from flows.common import bulk, limit_malloc_arenas


def test_malloc_arenas_are_capped_unless_the_operator_chose(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    assert limit_malloc_arenas() is False  # the operator's setting wins
    monkeypatch.delenv("MALLOC_ARENA_MAX")
    try:
        glibc = hasattr(ctypes.CDLL("libc.so.6"), "mallopt")
    except OSError:
        glibc = False
    assert limit_malloc_arenas() is glibc  # capped on glibc; elsewhere nothing to do


def test_bulk_values_are_quoted_and_unwrap_unchanged() -> None:
    universe = [f"S{i}" for i in range(10_000)]
    quoted = bulk(universe)
    assert isinstance(quoted, quote) and quoted.unquote() is universe
