from __future__ import annotations

import decimal
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from om_plugins import Side
from om_plugins.rounding import is_multiple, round_down, round_price, round_qty_down, round_up

# Grid sizes as exchanges publish them: 1, 2.5 or 5 units of some power of ten.
steps = st.builds(
    lambda unit, exp: Decimal(unit).scaleb(exp),
    st.sampled_from(["1", "2.5", "5", "25", "10"]),
    st.integers(min_value=-8, max_value=3),
)
values = st.decimals(
    min_value=Decimal("-1e9"), max_value=Decimal("1e9"), allow_nan=False, places=12
)


@pytest.mark.parametrize(
    ("qty", "step", "expected"),
    [
        ("0.01999", "0.001", "0.019"),
        ("0.019", "0.001", "0.019"),
        ("5", "0.001", "5.000"),
        ("0.0009", "0.001", "0"),
        ("123.7", "0.5", "123.5"),
        ("0", "0.01", "0"),
    ],
)
def test_round_qty_down(qty: str, step: str, expected: str) -> None:
    assert round_qty_down(Decimal(qty), Decimal(step)) == Decimal(expected)


def test_round_qty_down_refuses_negative_quantities_and_bad_steps() -> None:
    with pytest.raises(ValueError):
        round_qty_down(Decimal("-1"), Decimal("0.1"))
    with pytest.raises(ValueError):
        round_qty_down(Decimal("1"), Decimal("0"))
    with pytest.raises(ValueError):
        round_qty_down(Decimal("NaN"), Decimal("0.1"))


@pytest.mark.parametrize(
    ("price", "side", "expected"),
    [
        ("100.07", Side.BUY, "100.05"),
        ("100.07", Side.SELL, "100.10"),
        ("100.05", Side.BUY, "100.05"),
        ("100.05", Side.SELL, "100.05"),
        ("0.04", Side.BUY, "0"),
    ],
)
def test_round_price_never_worsens_the_limit(price: str, side: Side, expected: str) -> None:
    assert round_price(Decimal(price), Decimal("0.05"), side) == Decimal(expected)


def test_is_multiple() -> None:
    assert is_multiple(Decimal("0.030"), Decimal("0.001"))
    assert is_multiple(Decimal("0"), Decimal("0.001"))
    assert not is_multiple(Decimal("0.0305"), Decimal("0.001"))
    assert is_multiple(Decimal("-7.5"), Decimal("2.5"))


@given(values, steps)
def test_round_down_and_up_bracket_the_value_on_the_grid(value: Decimal, step: Decimal) -> None:
    down, up = round_down(value, step), round_up(value, step)
    assert is_multiple(down, step) and is_multiple(up, step)
    assert down <= value <= up
    assert up - down in (Decimal(0), step)
    assert (down == up) == is_multiple(value, step)


@given(values.filter(lambda v: v > 0), steps)
def test_round_price_moves_buys_down_and_sells_up(price: Decimal, tick: Decimal) -> None:
    assert round_price(price, tick, Side.BUY) == round_down(price, tick)
    assert round_price(price, tick, Side.SELL) == round_up(price, tick)


def test_rounding_is_exact_even_beyond_the_default_context_precision() -> None:
    value = Decimal("123456789012345678901234567890.123456789")
    assert decimal.getcontext().prec < len(value.as_tuple().digits)
    assert round_down(value, Decimal("0.001")) == Decimal("123456789012345678901234567890.123")
    assert round_up(value, Decimal("0.001")) == Decimal("123456789012345678901234567890.124")
