"""Cash dividends in the daily P&L (core.portfolio.valuation, "Income").

Hand-computed books with planted asymmetric numbers: the raw close drops on the ex-date,
the price P&L shows the drop and the income offsets it; a short pays; a split before (or
on) the ex-date scales the quantity that earns it; a buyer on the ex-date earns nothing,
a seller on the ex-date keeps it, a position exited before it earns nothing. Then
identities as Hypothesis properties (total = price + income; a close that drops by
exactly the dividend leaves the total P&L at 0).
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal as D

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.portfolio.analytics import SymbolData, analyse_portfolio
from core.portfolio.valuation import (
    Holding,
    InvestmentClass,
    Snapshot,
    dividend_income,
    realized_pnl,
    value_portfolio,
)

D0 = dt.date(2024, 3, 1)  # entry of the base book
D1 = dt.date(2024, 3, 4)  # previous session
D2 = dt.date(2024, 3, 5)  # ex-date
D3 = dt.date(2024, 3, 6)
CASH = D("1000")
C1 = {"AAA": D("100.10"), "BBB": D("205.40")}
C2 = {"AAA": D("99.55"), "BBB": D("203.90")}  # AAA: −0.80 dividend, +0.25 market
DIV = {"AAA": [(D2, D("0.80"))], "BBB": [(D2, D("1.35"))]}


def _long(**kw: object) -> Holding:
    args: dict[str, object] = {"position_id": "p-aaa", "symbol": "AAA", "quantity": D(10),
                               "entry_date": D0, "entry_price": D("95.50")}
    args.update(kw)
    return Holding(**args)


def _short(**kw: object) -> Holding:
    args: dict[str, object] = {"position_id": "p-bbb", "symbol": "BBB", "quantity": D(-4),
                               "entry_date": D0, "entry_price": D("210.25")}
    args.update(kw)
    return Holding(**args)


def _day2(holdings: list[Holding], closes_2: dict = C2, dividends: dict = DIV) -> Snapshot:
    return value_portfolio(holdings, D2, CASH, closes_2, prev_day=D1, prev_closes=C1,
                           previous_equity=D("1179.40"), dividends=dividends)


def test_long_over_its_ex_date_price_drop_offset_by_income() -> None:
    s = _day2([_long()])
    # price: 10 × (99.55 − 100.10) = −5.50; income: 10 × 0.80 = 8.00
    assert s.price_pnl == D("-5.50")
    assert s.income == D("8.00")
    assert s.daily_pnl == D("2.50")
    assert s.daily_return == pytest.approx(2.50 / 1179.40, rel=1e-15)
    # the dividend is not booked to cash: equity = cash + 10 × 99.55
    assert s.equity == D("1995.50") and s.cash == CASH


def test_short_pays_the_dividend() -> None:
    s = _day2([_short()])
    # price: −4 × (203.90 − 205.40) = +6.00; income: −4 × 1.35 = −5.40
    assert (s.price_pnl, s.income, s.daily_pnl) == (D("6.00"), D("-5.40"), D("0.60"))


def test_long_and_short_together_sum_per_holding() -> None:
    s = _day2([_long(), _short()])
    assert s.price_pnl == D("0.50") and s.income == D("2.60")
    assert s.daily_pnl == D("3.10")


def test_split_then_dividend_uses_the_quantity_after_the_split() -> None:
    """2-for-1 on D2; a dividend on D3 is paid on 20 shares (and on the split day itself
    it is quoted per post-split share, like that day's raw close)."""
    h = _long()
    splits = {"AAA": [(D2, 2.0)]}
    c2 = {"AAA": D("50.20")}  # after the split: 100.10 / 2 = 50.05, +0.15
    c3 = {"AAA": D("49.90")}  # −0.40 dividend, +0.10 market
    div = {"AAA": [(D3, D("0.40"))]}
    s3 = value_portfolio([h], D3, CASH, c3, prev_day=D2, prev_closes=c2, splits=splits,
                         dividends=div)
    # price: 20 × 49.90 − 20 × 50.20 = −6.00; income: 20 × 0.40 = 8.00
    assert (s3.price_pnl, s3.income, s3.daily_pnl) == (D("-6.00"), D("8.00"), D("2.00"))
    same_day = value_portfolio([h], D2, CASH, {"AAA": D("49.85")}, prev_day=D1,
                               prev_closes=C1, splits=splits,
                               dividends={"AAA": [(D2, D("0.40"))]})
    # price: 20 × 49.85 − 10 × 100.10 = 997.00 − 1001.00 = −4.00; income 20 × 0.40 = 8.00
    assert (same_day.price_pnl, same_day.income) == (D("-4.00"), D("8.00"))
    assert dividend_income(h, D3, D2, div, splits) == D("8.00")


def test_buyer_on_the_ex_date_gets_nothing() -> None:
    new = Holding("p-new", "AAA", D(6), D2, D("99.00"))
    s = _day2([new])
    # entered on D2: value − cost = 6 × 99.55 − 6 × 99.00 = 3.30; not held at D1's close
    assert (s.price_pnl, s.income, s.daily_pnl) == (
        D("3.30"), D("0.00"), D("3.30"))


def test_exit_before_the_ex_date_gets_nothing_exit_on_it_keeps_it() -> None:
    gone = _long(exit_date=D1, exit_price=D("100.00"))
    s = _day2([gone])
    assert (s.price_pnl, s.income, s.daily_pnl) == (
        D("0.00"), D("0.00"), D("0.00"))
    seller = _long(exit_date=D2, exit_price=D("99.60"))
    s = _day2([seller])
    # proceeds − previous value = 996.00 − 1001.00 = −5.00; held at D1's close: +8.00
    assert (s.price_pnl, s.income, s.daily_pnl) == (
        D("-5.00"), D("8.00"), D("3.00"))


def test_ex_date_on_a_skipped_session_is_counted_once() -> None:
    c3 = {"AAA": D("99.70")}
    s = value_portfolio([_long()], D3, CASH, c3, prev_day=D1, prev_closes=C1, dividends=DIV)
    # price: 10 × (99.70 − 100.10) = −4.00; income of D2: 8.00
    assert (s.price_pnl, s.income) == (D("-4.00"), D("8.00"))
    # an ex-date outside (prev_day, day] earns nothing: on prev_day, or after day
    for d in (D1, D3 + dt.timedelta(days=1)):
        s = _day2([_long()], dividends={"AAA": [(d, D("0.80"))]})
        assert s.income == D("0.00")


def test_first_snapshot_has_no_pnl_parts() -> None:
    s = value_portfolio([_long()], D2, CASH, C2, dividends=DIV)
    assert s.price_pnl is None and s.income is None and s.daily_pnl is None


def test_missing_price_options_and_private_earn_no_income() -> None:
    s = _day2([_long()], closes_2={})  # AAA has no price on the ex-date
    assert s.partial and s.income == D("0.00") and s.daily_pnl == D("0.00")
    opt = Holding("p-opt", "AAA", D(2), D0, D("3.10"), investment_class=InvestmentClass.OPTIONS)
    fund = Holding("p-fund", "AAA", D(1), D0, D(500), investment_class=InvestmentClass.PRIVATE,
                   manual_value=D(600))
    s = value_portfolio([opt, fund], D2, CASH, {"AAA": D("3.00")}, prev_day=D1,
                        prev_closes={"AAA": D("3.20")}, dividends=DIV)
    # option: 2 × 100 × (3.00 − 3.20) = −40.00; the private holding 600 − 600 = 0
    assert (s.price_pnl, s.income) == (D("-40.00"), D("0.00"))


def test_float_dividend_read_to_six_places_and_money_to_four() -> None:
    # 0.1234567 → 0.123457; 7 × 0.123457 = 0.864199 → 0.8642 (half-even irrelevant here)
    h = _long(quantity=D(7))
    assert dividend_income(h, D2, D1, {"AAA": [(D2, 0.1234567)]}) == D("0.8642")
    # 3 × 0.00005 = 0.00015 → 0.0002 (half-even: 1 is odd, rounds up)
    assert dividend_income(_long(quantity=D(3)), D2, D1, {"AAA": [(D2, D("0.00005"))]}) \
        == D("0.0002")


@pytest.mark.parametrize("bad", [D("-0.1"), float("nan"), float("inf"), "0.5", True])
def test_bad_dividend_is_a_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="dividend of AAA on 2024-03-05"):
        _day2([_long()], dividends={"AAA": [(D2, bad)]})


def test_inputs_not_mutated() -> None:
    div = {"AAA": [(D2, D("0.80"))]}
    _day2([_long()], dividends=div)
    assert div == {"AAA": [(D2, D("0.80"))]}


def test_analyse_portfolio_passes_the_dividends_of_its_days() -> None:
    """SymbolData.dividends reach every snapshot; those on or before the first day do not."""
    sessions = [D0, D1, D2, D3]
    close = np.array([[100.0], [100.1], [99.55], [99.70]])
    data = SymbolData(sessions, ["AAA"], close, close.copy(), ("market_beta",),
                      np.array([[1.0]]), dividends={"AAA": [(D1, 5.0), (D2, 0.8), (D3, 0.3)]})
    h = [_long(entry_date=D0)]
    res = analyse_portfolio(h, CASH, [D2, D3], data, None, previous_day=D1,
                            previous_equity=D("2001.00"), correlations=False)
    s2, s3 = res.snapshots
    assert (s2.price_pnl, s2.income, s2.daily_pnl) == (D("-5.50"), D("8.00"), D("2.50"))
    # D3: 10 × (99.70 − 99.55) = 1.50; 10 × 0.3 = 3.00
    assert (s3.price_pnl, s3.income, s3.daily_pnl) == (D("1.50"), D("3.00"), D("4.50"))
    assert s3.daily_return == pytest.approx(4.50 / float(s2.equity), rel=1e-15)
    first = analyse_portfolio(h, CASH, [D1, D2], data, None, correlations=False).snapshots
    assert first[0].income is None and first[1].income == D("8.00")  # D1's own is not earned


# ---------------------------------------------------------------- properties

quantities = st.integers(-10_000, 10_000).filter(bool).map(D)
prices = st.decimals("0.01", "5000", places=2)


@settings(max_examples=200, deadline=None)
@given(q=quantities, close=prices, share=st.decimals("0", "0.2", places=4),
       ratio=st.sampled_from([1, 2, 3]))
def test_property_close_dropping_by_exactly_the_dividend_leaves_total_pnl_zero(
    q: D, close: D, share: D, ratio: int,
) -> None:
    """Total return: a raw close that falls by exactly the dividend (after a ``ratio``-for-1
    split that day) is no loss: price P&L = −q·ratio·d, income = +q·ratio·d, exactly."""
    div = (close * share).quantize(D("0.01"))
    h = Holding("p", "X", q, D0, close)
    s = value_portfolio([h], D2, D(0), {"X": close - div}, prev_day=D1,
                        prev_closes={"X": close * ratio}, splits={"X": [(D2, ratio)]},
                        dividends={"X": [(D2, div)]})
    assert s.income == q * ratio * div
    assert s.price_pnl == -q * ratio * div
    assert s.daily_pnl == 0


@settings(max_examples=100, deadline=None)
@given(qa=quantities, qb=quantities, da=st.decimals("0", "3", places=3),
       db=st.decimals("0", "3", places=3))
def test_property_total_is_price_plus_income_and_reversal_negates_both(
    qa: D, qb: D, da: D, db: D,
) -> None:
    book = [_long(quantity=qa), _short(quantity=qb)]
    div = {"AAA": [(D2, da)], "BBB": [(D2, db)]}
    s = _day2(book, dividends=div)
    assert s.daily_pnl == s.price_pnl + s.income
    assert s.income == (qa * da).quantize(D("0.0001")) + (qb * db).quantize(
        D("0.0001"))
    flipped = [_long(quantity=-qa), _short(quantity=-qb)]
    r = _day2(flipped, dividends=div)
    assert r.income == -s.income and r.price_pnl == -s.price_pnl


@settings(max_examples=100, deadline=None)
@given(q=quantities, path=st.lists(prices, min_size=3, max_size=3),
       div=st.decimals("0", "2", places=3))
def test_property_realized_is_the_price_part_income_comes_on_top(
    q: D, path: list[D], div: D,
) -> None:
    """Entered at the close of D0, exited at the close of D3, a dividend on D2: Σ price P&L
    (+ the entry day's value − cost) = realized P&L; Σ daily P&L = realized + q × d."""
    entry = D("50.00")
    h = Holding("p", "AAA", q, D0, entry, exit_date=D3)
    days, closes = [D0, D1, D2, D3], [{"AAA": c} for c in [entry, *path]]
    price = total = D(0)
    for i in range(1, 4):
        s = value_portfolio([h], days[i], CASH, closes[i], prev_day=days[i - 1],
                            prev_closes=closes[i - 1], dividends={"AAA": [(D2, div)]})
        assert s.price_pnl is not None and s.daily_pnl is not None
        price += s.price_pnl
        total += s.daily_pnl
    assert realized_pnl(h, D3, exit_close=path[-1]) == price
    assert total == price + (q * div).quantize(D("0.0001"))
