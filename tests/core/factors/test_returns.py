"""Tests of core.factors.returns: planted prices, missing / invalid prices, no mutation."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from numpy.testing import assert_allclose, assert_array_equal

from core.factors.returns import log_returns, simple_returns


def test_simple_returns_planted_1d() -> None:
    prices = np.array([100.0, 110.0, 99.0, 99.0, 123.75])
    expected = np.array([0.10, -0.10, 0.0, 0.25])
    assert_allclose(simple_returns(prices), expected, rtol=1e-15, atol=1e-16)


def test_simple_returns_planted_2d_asymmetric() -> None:
    prices = np.array(
        [
            [10.0, 50.0, 8.0],
            [12.0, 45.0, 8.4],
            [9.0, 45.0, 8.82],
        ]
    )
    expected = np.array(
        [
            [0.2, -0.1, 0.05],
            [-0.25, 0.0, 0.05],
        ]
    )
    out = simple_returns(prices)
    assert out.shape == (2, 3)
    assert_allclose(out, expected, rtol=1e-13, atol=1e-15)


def test_missing_and_invalid_prices_give_nan_on_both_sides() -> None:
    prices = np.array(
        [
            [100.0, 20.0, 5.0],
            [np.nan, 21.0, 5.5],
            [102.0, 0.0, -1.0],
            [103.02, 22.0, 6.0],
            [104.0, np.inf, 6.6],
        ]
    )
    out = simple_returns(prices)
    expected_nan = np.array(
        [
            [True, False, False],
            [True, True, True],
            [False, True, True],
            [False, True, False],
        ]
    )
    assert_array_equal(np.isnan(out), expected_nan)
    assert_allclose(out[2, 0], 0.01, rtol=1e-12)
    assert_allclose(out[3, 2], 0.1, rtol=1e-12)


def test_log_returns_match_log1p_of_simple() -> None:
    rng = np.random.default_rng(7)
    prices = 50.0 * np.exp(np.cumsum(0.02 * rng.standard_normal((40, 5)), axis=0))
    prices[[3, 17], [1, 4]] = np.nan
    simple = simple_returns(prices)
    logr = log_returns(prices)
    assert_array_equal(np.isnan(simple), np.isnan(logr))
    assert_allclose(logr, np.log1p(simple), rtol=1e-12, equal_nan=True)


def test_inputs_not_mutated_and_pandas_accepted() -> None:
    prices = np.array([[1.0, 2.0], [1.5, np.nan], [3.0, 2.5]])
    before = prices.copy()
    simple_returns(prices)
    log_returns(prices)
    assert_array_equal(prices, before)
    frame = pd.DataFrame(prices, columns=["A", "B"])
    assert_allclose(simple_returns(frame), simple_returns(prices), equal_nan=True)


def test_single_row_gives_no_returns() -> None:
    assert simple_returns(np.array([[1.0, 2.0]])).shape == (0, 2)
    assert log_returns(np.array([5.0])).shape == (0,)


@pytest.mark.parametrize("bad", [np.zeros((2, 2, 2)), np.float64(3.0), np.zeros((0, 3))])
def test_bad_shapes_raise(bad: np.ndarray) -> None:
    with pytest.raises(ValueError):
        simple_returns(bad)
    with pytest.raises(ValueError):
        log_returns(bad)
