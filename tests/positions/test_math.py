from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from om_core.positions.math import PositionState, apply_fill, unrealized_pnl

D = Decimal


def fills(
    state: PositionState, *steps: tuple[str, str, str], inverse: bool = False
) -> PositionState:
    for side, qty, price in steps:
        state = apply_fill(state, side=side, qty=D(qty), price=D(price), inverse=inverse)
    return state


def test_open_add_average() -> None:
    s = fills(PositionState(), ("buy", "1", "100"), ("buy", "3", "200"))
    assert (s.size, s.avg_entry_price, s.realized_pnl) == (D(4), D(175), D(0))


def test_reduce_realizes_on_the_closed_part_only() -> None:
    s = fills(PositionState(), ("buy", "2", "100"), ("sell", "0.5", "120"))
    assert (s.size, s.avg_entry_price, s.realized_pnl) == (D("1.5"), D(100), D(10))


def test_short_profit_when_price_falls() -> None:
    s = fills(PositionState(), ("sell", "2", "100"), ("buy", "2", "90"))
    assert (s.size, s.avg_entry_price, s.realized_pnl) == (D(0), D(0), D(20))


def test_flip_closes_and_opens_at_the_fill_price() -> None:
    s = fills(PositionState(), ("buy", "1", "100"), ("sell", "3", "110"))
    assert (s.size, s.avg_entry_price, s.realized_pnl) == (D(-2), D(110), D(10))


def test_fees_accumulate_separately() -> None:
    s = apply_fill(PositionState(), side="buy", qty=D(1), price=D(100), fee=D("0.055"))
    s = apply_fill(s, side="sell", qty=D(1), price=D(100), fee=D("0.055"))
    assert (s.realized_pnl, s.fees_paid) == (D(0), D("0.110"))


def test_inverse_pnl_is_in_the_base_coin() -> None:
    # 1000 USD contracts long from 20,000 to 25,000: 1000 × (1/20000 − 1/25000) = 0.01 BTC.
    s = fills(PositionState(), ("buy", "1000", "20000"), ("sell", "1000", "25000"), inverse=True)
    assert s.realized_pnl == D("0.01")


def test_a_holding_of_unknown_cost_is_not_valued_at_nothing() -> None:
    # 1 BTC found by reconciliation (a spot balance: no entry price), then 1 bought at 100.
    found = PositionState(size=D(1))
    s = fills(found, ("buy", "1", "100"))
    assert (s.size, s.avg_entry_price) == (D(2), D(0))  # still unknown, not 50
    s = fills(s, ("sell", "2", "120"))
    assert (s.size, s.realized_pnl) == (D(0), D(0))  # not 240 of invented profit
    # Flat again, the next position's entry is known.
    s = fills(s, ("buy", "1", "110"), ("sell", "1", "120"))
    assert s.realized_pnl == D(10)


def test_unrealized() -> None:
    s = fills(PositionState(), ("sell", "2", "100"))
    assert unrealized_pnl(s, D(90)) == D(20)
    assert unrealized_pnl(PositionState(), D(90)) == D(0)


def test_pnl_on_an_average_that_does_not_terminate_fits_the_stored_scale() -> None:
    s = fills(
        PositionState(),
        ("buy", "0.004", "50000"),
        ("buy", "0.002", "55000"),
        ("sell", "0.003", "70000"),
    )
    for value in (s.avg_entry_price, s.realized_pnl):
        exponent = value.as_tuple().exponent
        assert isinstance(exponent, int) and exponent >= -18
    assert abs(s.realized_pnl - D("55")) < D("1e-15")


def test_zero_qty_is_refused() -> None:
    with pytest.raises(ValueError, match="positive"):
        apply_fill(PositionState(), side="buy", qty=D(0), price=D(1))


prices = st.decimals(min_value=D("0.01"), max_value=D(100000), places=2)
qtys = st.decimals(min_value=D("0.001"), max_value=D(100), places=3)
steps = st.lists(st.tuples(st.sampled_from(["buy", "sell"]), qtys, prices), max_size=30)


@given(steps)
def test_size_is_the_signed_sum_and_pnl_matches_cash_accounting(seq: list) -> None:  # type: ignore[type-arg]
    """Realized + unrealized PnL equals the cash flows of all fills valued at the last price."""
    state = PositionState()
    cash = D(0)
    for side, qty, price in seq:
        state = apply_fill(state, side=side, qty=qty, price=price)
        cash += -qty * price if side == "buy" else qty * price
    size = sum((q if s == "buy" else -q for s, q, _ in seq), D(0))
    assert state.size == size
    if seq:
        mark = seq[-1][2]
        total = state.realized_pnl + unrealized_pnl(state, mark)
        # Averages are rounded to 18 places; the identity holds to that precision.
        assert abs(total - (cash + size * mark)) < D("1e-9")
    if state.size == 0:
        assert state.avg_entry_price == 0
