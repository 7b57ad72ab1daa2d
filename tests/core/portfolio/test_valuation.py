"""Tests of core.portfolio.valuation.

Hand-computed books with asymmetric planted numbers (a long and a short of different
sizes, prices that move by different amounts), then accounting identities and
symmetries as Hypothesis properties.
"""

from __future__ import annotations

from datetime import date, timedelta
from decimal import Decimal as D

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.portfolio.valuation import (
    OPTION_MULTIPLIER,
    Holding,
    InvestmentClass,
    Snapshot,
    cost_basis,
    held_quantity,
    open_holdings,
    realized_pnl,
    value_portfolio,
)

D0 = date(2024, 3, 1)  # Friday: entry of the base book
D1 = date(2024, 3, 4)
D2 = date(2024, 3, 5)
D3 = date(2024, 3, 6)

CASH = D("1000")
CLOSES_1 = {"AAA": D("100.10"), "BBB": D("205.40")}
CLOSES_2 = {"AAA": D("101.35"), "BBB": D("207.90")}


def _long(**kw: object) -> Holding:
    args: dict[str, object] = {
        "position_id": "p-aaa",
        "symbol": "AAA",
        "quantity": D(10),
        "entry_date": D0,
        "entry_price": D("95.50"),
    }
    args.update(kw)
    return Holding(**args)  # type: ignore[arg-type]


def _short(**kw: object) -> Holding:
    args: dict[str, object] = {
        "position_id": "p-bbb",
        "symbol": "BBB",
        "quantity": D(-4),
        "entry_date": D0,
        "entry_price": D("210.25"),
    }
    args.update(kw)
    return Holding(**args)  # type: ignore[arg-type]


def _two_days(holdings: list[Holding], closes_2: dict, **kw: object) -> tuple[Snapshot, Snapshot]:
    s1 = value_portfolio(holdings, D1, CASH, CLOSES_1, **kw)  # type: ignore[arg-type]
    s2 = value_portfolio(
        holdings,
        D2,
        CASH,
        closes_2,
        prev_day=D1,
        prev_closes=CLOSES_1,
        previous_equity=s1.equity,
        **kw,  # type: ignore[arg-type]
    )
    return s1, s2


# ---------------------------------------------------------------- hand-computed books


def test_long_and_short_over_two_days() -> None:
    s1, s2 = _two_days([_long(), _short()], CLOSES_2)

    # day 1: AAA 10 × 100.10 = 1001.00; BBB -4 × 205.40 = -821.60
    assert s1.position_values == {"p-aaa": D("1001.00"), "p-bbb": D("-821.60")}
    assert s1.market_value == D("179.40")
    assert s1.equity == D("1179.40")
    assert s1.cash == D("1000")
    # cost: 10 × 95.50 = 955.00; -4 × 210.25 = -841.00
    assert s1.cost_basis == D("114.00")
    # unrealized: (1001.00 - 955.00) + (-821.60 + 841.00) = 46.00 + 19.40
    assert s1.unrealized_pnl == D("65.40")
    assert s1.long_exposure == D("1001.00")
    assert s1.short_exposure == D("-821.60")
    assert s1.gross_exposure == D("1822.60")
    assert s1.net_exposure == D("179.40")
    assert s1.position_count == 2
    assert s1.daily_pnl is None and s1.daily_return is None
    assert not s1.partial and s1.missing_symbols == ()

    # day 2: AAA 1013.50 (+12.50); BBB -4 × 207.90 = -831.60 (-10.00)
    assert s2.position_values == {"p-aaa": D("1013.50"), "p-bbb": D("-831.60")}
    assert s2.daily_pnl == D("2.50")
    # no dividends: all of it is price P&L (income 0; a first snapshot has neither)
    assert (s2.price_pnl, s2.income) == (D("2.50"), D("0"))
    assert s1.price_pnl is None and s1.income is None
    assert s2.daily_return == pytest.approx(2.50 / 1179.40, rel=1e-15)
    assert s2.equity == D("1181.90")
    assert s2.unrealized_pnl == D("67.90")
    assert s2.gross_exposure == D("1845.10")


def test_daily_return_none_without_or_with_zero_previous_equity() -> None:
    h = [_long()]
    s = value_portfolio(h, D2, CASH, CLOSES_2, prev_day=D1, prev_closes=CLOSES_1)
    assert s.daily_pnl == D("12.50") and s.daily_return is None
    s = value_portfolio(
        h, D2, CASH, CLOSES_2, prev_day=D1, prev_closes=CLOSES_1, previous_equity=D(0)
    )
    assert s.daily_return is None


def test_position_opened_mid_range_earns_value_minus_cost_on_entry_day() -> None:
    new = Holding("p-ccc", "CCC", D(20), D2, D("50.25"))
    closes_1 = dict(CLOSES_1)  # CCC has no price needed on day 1
    s1 = value_portfolio([_long(), new], D1, CASH, closes_1)
    assert "p-ccc" not in s1.position_values
    assert s1.position_count == 1

    closes_2 = {**CLOSES_2, "CCC": D("52.00")}
    s2 = value_portfolio([_long(), new], D2, CASH, closes_2, prev_day=D1, prev_closes=closes_1)
    # CCC: 20 × 52.00 - 20 × 50.25 = 1040.00 - 1005.00 = 35.00; AAA: +12.50
    assert s2.position_values["p-ccc"] == D("1040.00")
    assert s2.daily_pnl == D("47.50")
    assert s2.cost_basis == D("955.00") + D("1005.00")
    assert not s2.partial


def test_exit_with_exit_price() -> None:
    aaa = _long(exit_date=D2, exit_price=D("101.00"))
    # the exit price needs no close on the exit day
    s2 = value_portfolio(
        [aaa, _short()], D2, CASH, {"BBB": D("207.90")}, prev_day=D1, prev_closes=CLOSES_1
    )
    # AAA: 10 × 101.00 - 1001.00 = 9.00; BBB: -10.00
    assert s2.daily_pnl == D("-1.00")
    assert "p-aaa" not in s2.position_values
    assert s2.position_count == 1
    assert s2.market_value == D("-831.60")
    assert not s2.partial


def test_exit_at_close_long_and_short() -> None:
    holdings = [_long(exit_date=D2), _short(exit_date=D2)]
    s1, s2 = _two_days(holdings, CLOSES_2)
    assert s1.position_count == 2  # still open on day 1
    # AAA sold at 101.35: +12.50; BBB covered at 207.90: -831.60 - (-821.60) = -10.00
    assert s2.daily_pnl == D("2.50")
    assert s2.position_count == 0
    assert s2.market_value == D(0) and s2.equity == CASH
    # the day after the exit the holdings contribute nothing, and need no price
    s3 = value_portfolio(holdings, D3, CASH, {}, prev_day=D2, prev_closes={})
    assert s3.daily_pnl == D(0) and not s3.partial


def test_exit_at_close_without_a_close_is_missing() -> None:
    s2 = value_portfolio([_long(exit_date=D2)], D2, CASH, {}, prev_day=D1, prev_closes=CLOSES_1)
    assert s2.partial and s2.missing_symbols == ("AAA",)
    assert s2.daily_pnl == D(0)


def test_entered_and_exited_on_the_same_day() -> None:
    flip = Holding("p-x", "AAA", D(-7), D2, D("100.00"), exit_date=D2, exit_price=D("99.10"))
    s2 = value_portfolio([flip], D2, CASH, {}, prev_day=D1, prev_closes={})
    # short 7 at 100.00, covered at 99.10: -693.70 - (-700.00) = +6.30
    assert s2.daily_pnl == D("6.30")
    assert s2.position_count == 0


def test_realized_pnl_by_hand() -> None:
    # long 10 @ 95.50 sold @ 101.00: 1010.00 - 955.00 = +55.00
    assert realized_pnl(_long(exit_date=D2, exit_price=D("101.00")), D2) == D("55.00")
    # short 4 @ 210.25 covered at the exit day's close 207.90: -831.60 - (-841.00) = +9.40
    assert realized_pnl(_short(exit_date=D2), D3, exit_close=D("207.90")) == D("9.40")
    # still open on as_of, open for good, or no exit price known: nothing realized
    assert realized_pnl(_long(exit_date=D3, exit_price=D("1")), D2) is None
    assert realized_pnl(_long(), D3) is None
    assert realized_pnl(_short(exit_date=D2), D3) is None
    # a 2-for-1 split while held: 20 shares sold @ 50.00 against 10 bought @ 95.50
    split = {"AAA": [(D1, 2)]}
    assert realized_pnl(_long(exit_date=D2, exit_price=D("50.00")), D2, splits=split) == D(
        "45.00")


@settings(max_examples=60, deadline=None)
@given(
    qty=st.integers(-500, 500).filter(bool),
    entry=st.decimals("0.01", "500", places=2),
    path=st.lists(st.decimals("0.01", "500", places=2), min_size=3, max_size=3),
)
def test_realized_pnl_is_the_sum_of_the_daily_pnl(qty: int, entry: D, path: list[D]) -> None:
    """Entered on D0, exited at the close of D3: the daily P&L of D1..D3 (plus the entry
    day's value − cost) add up to the realized P&L."""
    h = _long(quantity=D(qty), entry_price=entry, exit_date=D3)
    days, closes = [D0, D1, D2, D3], [{"AAA": c} for c in [entry, *path]]
    total, prev_equity = D(0), None
    for i, day in enumerate(days):
        snap = value_portfolio([h], day, CASH, closes[i],
                               prev_day=days[i - 1] if i else None,
                               prev_closes=closes[i - 1] if i else None,
                               previous_equity=prev_equity)
        total += snap.daily_pnl or D(0)
        prev_equity = snap.equity
    first = value_portfolio([h], D0, CASH, closes[0])
    total += first.unrealized_pnl  # the entry day's value − cost basis
    assert realized_pnl(h, D3, exit_close=path[-1]) == total


def test_two_for_one_split_between_two_days_is_continuous() -> None:
    splits = {"AAA": [(D2, 2.0)]}
    h = _long()
    assert held_quantity(h, D1, splits) == D(10)
    assert held_quantity(h, D2, splits) == D(20)
    closes_2 = {"AAA": D("50.40")}  # raw close halves with the split
    s1 = value_portfolio([h], D1, CASH, {"AAA": D("100.10")}, splits=splits)
    s2 = value_portfolio(
        [h],
        D2,
        CASH,
        closes_2,
        prev_day=D1,
        prev_closes={"AAA": D("100.10")},
        previous_equity=s1.equity,
        splits=splits,
    )
    # 20 × 50.40 = 1008.00: no jump, and P&L = 1008.00 - 1001.00 = 7.00
    assert s1.market_value == D("1001.00")
    assert s2.market_value == D("1008.00")
    assert s2.daily_pnl == D("7.00")
    # cost basis is unchanged by the split
    assert s2.cost_basis == s1.cost_basis == D("955.00")
    # day 3 values the 20 shares on both days
    s3 = value_portfolio(
        [h], D3, CASH, {"AAA": D("51.00")}, prev_day=D2, prev_closes=closes_2, splits=splits
    )
    assert s3.daily_pnl == D("12.00")


def test_split_dates_relative_to_entry() -> None:
    h = _long()  # entry D0
    splits = {
        "AAA": [(date(2024, 2, 1), 3.0), (D0, 5.0), (D2, 2.0)],
        "BBB": [(D1, 4.0)],
    }
    # before entry and on entry: already in quantity; other symbols: ignored
    assert held_quantity(h, D1, splits) == D(10)
    assert held_quantity(h, D3, splits) == D(20)
    assert held_quantity(_short(), D1, splits) == D(-16)  # a short stays short


def test_reverse_split_stored_as_rounded_float_is_exact() -> None:
    h = Holding("p-r", "RRR", D(300), D0, D("2.00"))
    assert held_quantity(h, D2, {"RRR": [(D1, 0.333333)]}) == D(100)
    assert held_quantity(h, D2, {"RRR": [(D1, 0.1)]}) == D(30)
    assert held_quantity(h, D2, {"RRR": [(D1, D("1.5"))]}) == D(450)


def test_options_use_multiplier_and_their_own_price() -> None:
    opt = Holding(
        "p-opt",
        "AAA240621C00100000",
        D(3),
        D0,
        D("4.20"),
        investment_class=InvestmentClass.OPTIONS,
    )
    assert D(100) == OPTION_MULTIPLIER
    assert cost_basis(opt) == D("1260.00")  # 3 × 4.20 × 100
    c1 = {"AAA": D("100.10"), "AAA240621C00100000": D("5.15")}
    c2 = {"AAA": D("101.35"), "AAA240621C00100000": D("4.85")}
    s1 = value_portfolio([opt], D1, CASH, c1)
    s2 = value_portfolio([opt], D2, CASH, c2, prev_day=D1, prev_closes=c1)
    assert s1.market_value == D("1545.00")  # 3 × 5.15 × 100
    assert s1.unrealized_pnl == D("285.00")
    assert s2.market_value == D("1455.00")
    assert s2.daily_pnl == D("-90.00")

    # without the contract's own price it is missing (the underlying's does not count)
    s2 = value_portfolio([opt], D2, CASH, {"AAA": D("101.35")}, prev_day=D1, prev_closes=c1)
    assert s2.partial and s2.missing_symbols == ("AAA240621C00100000",)
    assert s2.position_values == {"p-opt": None}
    assert s2.market_value == D(0) and s2.daily_pnl == D(0)
    assert s2.position_count == 1


def test_short_option_exit_with_exit_price() -> None:
    opt = Holding(
        "p-put",
        "XYZP",
        D(-2),
        D0,
        D("3.10"),
        exit_date=D2,
        exit_price=D("1.05"),
        investment_class="OPTIONS",  # type: ignore[arg-type]
    )
    assert opt.investment_class is InvestmentClass.OPTIONS
    s2 = value_portfolio([opt], D2, CASH, {}, prev_day=D1, prev_closes={"XYZP": D("1.60")})
    # bought back at 1.05: -2 × 1.05 × 100 - (-2 × 1.60 × 100) = -210.00 + 320.00
    assert s2.daily_pnl == D("110.00")


def test_private_position_at_manual_value() -> None:
    pe = Holding(
        "p-pe",
        "FO_PRIVATE_CREDIT",
        D(1),
        D0,
        D("250000"),
        investment_class=InvestmentClass.PRIVATE,
        manual_value=D("262500.50"),
    )
    s1, s2 = _two_days([pe, _long()], CLOSES_2)
    assert s1.position_values["p-pe"] == D("262500.50")
    assert s1.unrealized_pnl == D("12500.50") + D("46.00")
    assert s2.daily_pnl == D("12.50")  # the private position contributes 0
    assert not s2.partial

    # entered on day 2: manual value - cost
    pe2 = Holding(
        "p-pe2",
        "FO_INFRA",
        D(2),
        D2,
        D("1000.25"),
        investment_class=InvestmentClass.PRIVATE,
        manual_value=D("1980.00"),
    )
    s2 = value_portfolio([pe2], D2, CASH, {}, prev_day=D1, prev_closes={})
    assert s2.daily_pnl == D("-20.50")  # 1980.00 - 2000.50

    # no manual value: missing
    bare = Holding("p-x", "HOME_EQUITY", D(1), D0, D(5), investment_class=InvestmentClass.PRIVATE)
    s = value_portfolio([bare, _long()], D1, CASH, CLOSES_1)
    assert s.partial and s.missing_symbols == ("HOME_EQUITY",)
    assert s.position_values["p-x"] is None
    assert s.market_value == D("1001.00")


def test_missing_price_today_makes_snapshot_partial() -> None:
    s2 = value_portfolio(
        [_long(), _short(), _short(position_id="p-bbb-2", quantity=D(-1))],
        D2,
        CASH,
        {"AAA": D("101.35")},
        prev_day=D1,
        prev_closes=CLOSES_1,
    )
    assert s2.partial
    assert s2.missing_symbols == ("BBB",)  # unique
    assert s2.position_values == {"p-aaa": D("1013.50"), "p-bbb": None, "p-bbb-2": None}
    assert s2.market_value == D("1013.50")
    assert s2.short_exposure == D(0)
    assert s2.cost_basis == D("955.00")
    assert s2.daily_pnl == D("12.50")
    assert s2.position_count == 3


def test_missing_price_yesterday_drops_only_the_pnl_term() -> None:
    s2 = value_portfolio(
        [_long(), _short()],
        D2,
        CASH,
        CLOSES_2,
        prev_day=D1,
        prev_closes={"BBB": D("205.40"), "AAA": float("nan")},
    )
    assert s2.partial and s2.missing_symbols == ("AAA",)
    assert s2.market_value == D("181.90")  # today's values are complete
    assert s2.daily_pnl == D("-10.00")  # BBB only


def test_identities_of_exposures() -> None:
    s = value_portfolio([_long(), _short()], D1, D("-50.25"), CLOSES_1)
    assert s.equity == s.cash + s.long_exposure + s.short_exposure
    assert s.gross_exposure == s.long_exposure - s.short_exposure
    assert s.net_exposure == s.market_value == s.long_exposure + s.short_exposure
    assert s.unrealized_pnl == s.market_value - s.cost_basis
    assert s.equity == D("129.15")


def test_decimal_exactness_and_float_closes() -> None:
    a = Holding("a", "A", D(1), D0, D("0.1"))
    b = Holding("b", "B", D(1), D0, D("0.2"))
    s = value_portfolio([a, b], D1, D("0.1"), {"A": 0.1, "B": 0.2})
    assert s.market_value == D("0.3")  # not 0.30000000000000004
    assert s.equity == D("0.4")
    assert s.cost_basis == D("0.3")
    assert s.unrealized_pnl == D(0)
    # a float close is read to 6 decimals
    s = value_portfolio([_long()], D1, CASH, {"AAA": 100.1 + 1e-9})
    assert s.market_value == D("1001.0")
    # quantization to 4 places rounds half to even
    c = Holding("c", "C", D(1), D0, D(0))
    assert value_portfolio([c], D1, D(0), {"C": D("0.00005")}).market_value == D("0.0000")
    assert value_portfolio([c], D1, D(0), {"C": D("0.00015")}).market_value == D("0.0002")
    assert str(value_portfolio([c], D1, D(0), {"C": D("2")}).market_value) == "2.0000"


def test_open_holdings() -> None:
    hs = [_long(exit_date=D2), _short(), Holding("c", "CCC", D(1), D2, D(1))]
    assert [h.position_id for h in open_holdings(hs, D0)] == ["p-aaa", "p-bbb"]
    assert [h.position_id for h in open_holdings(hs, D2)] == ["p-bbb", "c"]


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"exit_date": date(2024, 2, 28)}, "before entry_date"),
        ({"exit_price": D(1)}, "exit_price given without exit_date"),
        ({"manual_value": D(1)}, "only for PRIVATE"),
        ({"quantity": 10.0}, "quantity must be a Decimal"),
        ({"entry_price": D(-1)}, "entry_price must be >= 0"),
        ({"entry_price": D("NaN")}, "must be finite"),
        ({"investment_class": "BONDS"}, "unknown investment_class"),
        ({"symbol": ""}, "symbol must be a non-empty string"),
    ],
)
def test_holding_rejects_caller_mistakes(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        _long(**kwargs)


def test_value_portfolio_rejects_caller_mistakes() -> None:
    with pytest.raises(ValueError, match="duplicate position_id"):
        value_portfolio([_long(), _long()], D1, CASH, CLOSES_1)
    with pytest.raises(ValueError, match="prev_day .* must be before day"):
        value_portfolio([_long()], D1, CASH, CLOSES_1, prev_day=D1, prev_closes=CLOSES_1)
    with pytest.raises(ValueError, match="prev_closes is required"):
        value_portfolio([_long()], D2, CASH, CLOSES_2, prev_day=D1)
    with pytest.raises(ValueError, match="prev_closes given without prev_day"):
        value_portfolio([_long()], D2, CASH, CLOSES_2, prev_closes=CLOSES_1)
    with pytest.raises(ValueError, match="cash must be a Decimal"):
        value_portfolio([_long()], D1, 1000.0, CLOSES_1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="ratio must be > 0"):
        value_portfolio([_long()], D2, CASH, CLOSES_2, splits={"AAA": [(D1, 0.0)]})


def test_inputs_not_mutated() -> None:
    closes = dict(CLOSES_2)
    prev = dict(CLOSES_1)
    splits = {"AAA": [(D2, 2.0)]}
    holdings = [_long(), _short()]
    value_portfolio(holdings, D2, CASH, closes, prev_day=D1, prev_closes=prev, splits=splits)
    assert closes == CLOSES_2 and prev == CLOSES_1 and splits == {"AAA": [(D2, 2.0)]}
    assert holdings == [_long(), _short()]


# ---------------------------------------------------------------- properties

SYMBOLS = ("AAA", "BBB", "CCC", "OPT", "PRV")
DAYS = tuple(D1 + timedelta(days=k) for k in range(5))

money = st.decimals(min_value=D("0.01"), max_value=D("5000"), places=2)
quantities = st.decimals(min_value=D("-500"), max_value=D("500"), places=3).filter(lambda q: q != 0)


@st.composite
def books(draw: st.DrawFn, *, buy_and_hold: bool = False) -> list[Holding]:
    n = draw(st.integers(min_value=1, max_value=6))
    out = []
    for i in range(n):
        sym = draw(st.sampled_from(SYMBOLS))
        cls = {"OPT": InvestmentClass.OPTIONS, "PRV": InvestmentClass.PRIVATE}.get(
            sym, InvestmentClass.PUBLIC
        )
        entry = D0 if buy_and_hold else draw(st.sampled_from((D0, *DAYS)))
        exit_date = None
        if not buy_and_hold and draw(st.booleans()):
            exit_date = draw(st.sampled_from([d for d in DAYS if d >= entry] or [entry]))
        manual = None
        if cls is InvestmentClass.PRIVATE:
            manual = draw(
                st.none() | st.decimals(min_value=D(-(10**6)), max_value=D(10**6), places=2)
            )
        out.append(
            Holding(
                f"p{i}",
                sym,
                draw(quantities),
                entry,
                draw(money),
                exit_date=exit_date,
                exit_price=draw(st.none() | money) if exit_date else None,
                investment_class=cls,
                manual_value=manual,
            )
        )
    return out


closes_st = st.fixed_dictionaries(
    {s: st.floats(min_value=0.01, max_value=2000.0) | st.none() for s in SYMBOLS[:4]}
)
splits_st = st.dictionaries(
    st.sampled_from(SYMBOLS[:3]),
    st.lists(st.tuples(st.sampled_from(DAYS), st.sampled_from((2.0, 3.0, 0.5, 1.5))), max_size=2),
)


def _flip(h: Holding) -> Holding:
    return Holding(
        h.position_id,
        h.symbol,
        -h.quantity,
        h.entry_date,
        h.entry_price,
        exit_date=h.exit_date,
        exit_price=h.exit_price,
        investment_class=h.investment_class,
        manual_value=None if h.manual_value is None else -h.manual_value,
    )


@settings(max_examples=150, deadline=None)
@given(
    book=books(),
    cash=st.decimals(min_value=D(-(10**5)), max_value=D(10**5), places=4),
    c1=closes_st,
    c2=closes_st,
    splits=splits_st,
)
def test_property_exposure_identities(
    book: list[Holding], cash: D, c1: dict, c2: dict, splits: dict
) -> None:
    s = value_portfolio(book, DAYS[2], cash, c2, prev_day=DAYS[1], prev_closes=c1, splits=splits)
    assert s.equity == s.cash + s.long_exposure + s.short_exposure
    assert s.gross_exposure == s.long_exposure - s.short_exposure >= 0
    assert s.short_exposure <= 0 <= s.long_exposure
    assert s.net_exposure == s.market_value
    assert s.unrealized_pnl == s.market_value - s.cost_basis
    assert s.partial == bool(s.missing_symbols)
    assert list(s.missing_symbols) == sorted(set(s.missing_symbols))
    assert s.position_count == len(s.position_values) == len(open_holdings(book, DAYS[2]))
    assert sum(v for v in s.position_values.values() if v is not None) == s.market_value


@settings(max_examples=100, deadline=None)
@given(
    book=books(buy_and_hold=True),
    closes=st.lists(
        st.fixed_dictionaries(
            {s: st.floats(min_value=0.01, max_value=2000.0) for s in SYMBOLS[:4]}
        ),
        min_size=len(DAYS),
        max_size=len(DAYS),
    ),
    splits=splits_st,
)
def test_property_buy_and_hold_pnl_sums_to_change_in_value(
    book: list[Holding], closes: list[dict], splits: dict
) -> None:
    snaps = [value_portfolio(book, DAYS[0], D(0), closes[0], splits=splits)]
    for k in range(1, len(DAYS)):
        snaps.append(
            value_portfolio(
                book,
                DAYS[k],
                D(0),
                closes[k],
                prev_day=DAYS[k - 1],
                prev_closes=closes[k - 1],
                previous_equity=snaps[-1].equity,
                splits=splits,
            )
        )
    total = sum(s.daily_pnl for s in snaps[1:] if s.daily_pnl is not None)
    assert all(s.partial == snaps[0].partial for s in snaps)  # only PRIVATE can be missing
    assert total == snaps[-1].market_value - snaps[0].market_value


@settings(max_examples=150, deadline=None)
@given(book=books(), c1=closes_st, c2=closes_st, splits=splits_st)
def test_property_reversing_quantities_negates_pnl_and_values(
    book: list[Holding], c1: dict, c2: dict, splits: dict
) -> None:
    kw = {"prev_day": DAYS[1], "prev_closes": c1, "splits": splits}
    s = value_portfolio(book, DAYS[2], D(0), c2, **kw)  # type: ignore[arg-type]
    r = value_portfolio([_flip(h) for h in book], DAYS[2], D(0), c2, **kw)  # type: ignore[arg-type]
    assert s.daily_pnl is not None and r.daily_pnl is not None
    assert r.daily_pnl == -s.daily_pnl
    assert r.market_value == -s.market_value
    assert r.long_exposure == -s.short_exposure
    assert r.short_exposure == -s.long_exposure
    assert r.cost_basis == -s.cost_basis
    assert r.unrealized_pnl == -s.unrealized_pnl
    assert r.missing_symbols == s.missing_symbols
    for pid, v in s.position_values.items():
        assert r.position_values[pid] == (None if v is None else -v)
