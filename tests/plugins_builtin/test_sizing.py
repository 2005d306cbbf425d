from __future__ import annotations

from dataclasses import replace
from decimal import Decimal
from fractions import Fraction
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st
from pydantic import ValidationError

from om_plugins import (
    Balance,
    Category,
    Instrument,
    OrderType,
    OrderTypeDecision,
    QtyUnit,
    QuantityDecision,
    Rejection,
    Side,
    TimeInForce,
)
from plugins_builtin.sizing import SizingPlugin, SizingSettings
from tests.plugins_builtin.builders import BTC, context, signal

MARKET = OrderTypeDecision(order_type=OrderType.MARKET, time_in_force=TimeInForce.IOC)


def limit(price: str) -> OrderTypeDecision:
    return OrderTypeDecision(order_type=OrderType.LIMIT, price=Decimal(price))


def size(
    order_type: OrderTypeDecision = MARKET,
    *,
    plugin: SizingPlugin | None = None,
    ctx: dict[str, Any] | None = None,
    **signal_fields: Any,
) -> QuantityDecision | Rejection:
    plugin = plugin or SizingPlugin()
    return plugin.om_calculate_quantity(signal(**signal_fields), context(**(ctx or {})), order_type)


def qty_of(result: QuantityDecision | Rejection) -> Decimal:
    assert isinstance(result, QuantityDecision), result
    return result.qty


def rejected(result: QuantityDecision | Rejection, code: str) -> Rejection:
    assert isinstance(result, Rejection), result
    assert result.code == code
    assert result.message
    return result


def test_explicit_qty_is_rounded_down_to_the_step() -> None:
    assert qty_of(size(qty=Decimal("0.0129"))) == Decimal("0.012")


def test_notional_is_divided_by_the_limit_price_and_rounded_down() -> None:
    # 1000 / 60000 = 0.01666… → 0.016
    assert qty_of(size(limit("60000"), notional=Decimal(1000))) == Decimal("0.016")


def test_notional_of_a_market_order_uses_the_reference_price() -> None:
    result = size(notional=Decimal(1000), ctx={"reference_price": "50000"})
    assert qty_of(result) == Decimal("0.020")


def test_notional_exactly_divisible_gives_the_exact_quantity() -> None:
    assert qty_of(size(limit("50000"), notional=Decimal(1000))) == Decimal("0.020")


def test_without_qty_or_notional_a_fraction_of_the_balance_is_scaled_by_strength() -> None:
    # 0.01 × 100000 × 0.5 = 500 USDT at 50000 → 0.01 BTC
    result = size(strength=Decimal("0.5"), ctx={"reference_price": "50000"})
    assert qty_of(result) == Decimal("0.010")


def test_balance_fraction_is_configurable() -> None:
    plugin = SizingPlugin(settings=SizingSettings.model_validate({"balance_fraction": "0.02"}))
    assert qty_of(size(limit("40000"), plugin=plugin)) == Decimal("0.050")


@pytest.mark.parametrize(("position", "expected"), [("-0.0234", "0.023"), ("0.5", "0.500")])
def test_reduce_only_without_size_closes_the_whole_position(position: str, expected: str) -> None:
    result = size(reduce_only=True, side=Side.BUY, ctx={"position_size": position})
    assert qty_of(result) == Decimal(expected)


def test_reduce_only_with_nothing_to_close_is_rejected() -> None:
    rejected(size(reduce_only=True), "QTY_ZERO")


def test_below_min_qty_is_rejected() -> None:
    rejection = rejected(size(qty=Decimal("0.0009")), "QTY_BELOW_MINIMUM")
    assert rejection.details["limit"] == "0.001"
    assert Decimal(rejection.details["actual"]) == 0
    assert rejection.details["requested"] == "0.0009"


def test_below_min_notional_is_rejected() -> None:
    rejection = rejected(size(limit("4000"), qty=Decimal("0.001")), "NOTIONAL_BELOW_MINIMUM")
    assert rejection.details["limit"] == "5"
    assert Decimal(rejection.details["actual"]) == Decimal(4)


def test_exactly_min_notional_passes() -> None:
    assert qty_of(size(limit("5000"), qty=Decimal("0.001"))) == Decimal("0.001")


def test_market_order_is_capped_at_the_market_maximum() -> None:
    assert qty_of(size(qty=Decimal(600))) == Decimal("500.000")


def test_limit_order_uses_the_limit_maximum() -> None:
    assert qty_of(size(limit("100"), qty=Decimal(600))) == Decimal(600)
    assert qty_of(size(limit("100"), qty=Decimal(1200))) == Decimal("1190.000")


def test_market_order_falls_back_to_max_qty_without_a_market_maximum() -> None:
    instrument = replace(BTC, max_market_qty=None)
    result = SizingPlugin().om_calculate_quantity(
        signal(qty=Decimal(1200)), context(instrument=instrument), MARKET
    )
    assert qty_of(result) == Decimal("1190.000")


def test_above_maximum_is_rejected_when_configured() -> None:
    plugin = SizingPlugin(settings=SizingSettings(on_above_max="reject"))
    rejection = rejected(size(qty=Decimal(600), plugin=plugin), "QTY_ABOVE_MAXIMUM")
    assert rejection.details["limit"] == "500.000"
    assert rejection.details["actual"] == "600.000"


@pytest.mark.parametrize(
    ("order_type", "ctx"),
    [(MARKET, {"reference_price": "0"}), (limit("-1"), {}), (limit("0"), {})],
)
def test_non_positive_price_is_rejected(order_type: OrderTypeDecision, ctx: dict[str, Any]) -> None:
    rejected(size(order_type, qty=Decimal(1), ctx=ctx), "INVALID_PRICE")


@pytest.mark.parametrize(
    ("fields", "ctx"),
    [
        ({"qty": Decimal(0)}, {}),
        ({"qty": Decimal("-0.1")}, {}),
        ({"notional": Decimal(0)}, {}),
        ({}, {"available": "0"}),
        ({"strength": Decimal(0)}, {}),
    ],
)
def test_zero_or_negative_requested_size_is_rejected(
    fields: dict[str, Any], ctx: dict[str, Any]
) -> None:
    rejected(size(ctx=ctx, **fields), "QTY_ZERO")


def test_settings_reject_typos_and_nonsense() -> None:
    with pytest.raises(ValidationError):
        SizingSettings.model_validate({"balance_fracton": "0.1"})
    with pytest.raises(ValidationError):
        SizingSettings.model_validate({"on_above_max": "clip"})
    with pytest.raises(ValidationError):
        SizingSettings.model_validate({"balance_fraction": "1.5"})


# -- property: the exchange's grid and limits always hold ------------------------------------


def grid(max_exp: int = 2) -> st.SearchStrategy[Decimal]:
    return st.builds(
        lambda unit, exp: Decimal(unit).scaleb(exp),
        st.sampled_from(["1", "2", "5", "25"]),
        st.integers(min_value=-8, max_value=max_exp),
    )


@st.composite
def instruments(draw: st.DrawFn) -> Instrument:
    tick = draw(grid())
    step = draw(grid())
    min_qty = step * draw(st.integers(min_value=1, max_value=1000))
    max_qty = min_qty + step * draw(st.integers(min_value=0, max_value=10**6))
    max_market = draw(st.none() | st.builds(lambda n: min_qty + step * n, st.integers(0, 10**6)))
    min_notional = draw(
        st.decimals(min_value=0, max_value=1000, places=2, allow_nan=False, allow_infinity=False)
    )
    return Instrument(
        symbol="TESTUSDT",
        category=Category.LINEAR,
        tick_size=tick,
        qty_step=step,
        min_qty=min_qty,
        max_qty=max_qty,
        max_market_qty=max_market,
        min_notional=min_notional,
    )


positive = st.decimals(
    min_value=Decimal("1e-8"), max_value=Decimal("1e7"), places=8, allow_nan=False
)


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    basis = draw(st.sampled_from(["qty", "notional", "balance", "close"]))
    fields: dict[str, Any] = {}
    if basis == "qty":
        fields["qty"] = draw(positive)
    elif basis == "notional":
        fields["notional"] = draw(positive)
    elif basis == "balance":
        fields["strength"] = draw(
            st.decimals(min_value=Decimal("0.01"), max_value=1, places=2, allow_nan=False)
        )
    else:
        fields["reduce_only"] = True
    return fields


def oracle(
    fields: dict[str, Any],
    instrument: Instrument,
    price: Decimal,
    *,
    available: Decimal,
    position: Decimal,
    fraction: Decimal,
    market: bool,
) -> tuple[Fraction, str | None, Fraction]:
    """Independent model with exact rationals: (qty, rejection code or None, budget cap)."""
    step = Fraction(instrument.qty_step)
    if "qty" in fields:
        raw = Fraction(fields["qty"])
        cap = raw * Fraction(price)
    elif "notional" in fields:
        cap = Fraction(fields["notional"])
        raw = cap / Fraction(price)
    elif fields.get("reduce_only"):
        raw = Fraction(abs(position))
        cap = raw * Fraction(price)
    else:
        cap = Fraction(fraction) * Fraction(available) * Fraction(fields["strength"])
        raw = cap / Fraction(price)
    if raw <= 0:
        return Fraction(0), "QTY_ZERO", cap
    qty = (raw // step) * step
    maximum = instrument.max_market_qty if market and instrument.max_market_qty else None
    maximum = maximum or instrument.max_qty
    if qty > maximum:
        qty = Fraction(maximum)
    if qty < Fraction(instrument.min_qty):
        return qty, "QTY_BELOW_MINIMUM", cap
    if qty * Fraction(price) < Fraction(instrument.min_notional):
        return qty, "NOTIONAL_BELOW_MINIMUM", cap
    return qty, None, cap


@given(
    instrument=instruments(),
    fields=requests(),
    price=positive,
    market=st.booleans(),
    available=st.decimals(min_value=0, max_value=Decimal("1e9"), places=4, allow_nan=False),
    position=st.decimals(min_value=-1000, max_value=1000, places=6, allow_nan=False),
    fraction=st.decimals(min_value=Decimal("0.0001"), max_value=1, places=4, allow_nan=False),
)
@example(
    instrument=BTC,
    fields={"notional": Decimal("0.3")},
    price=Decimal("0.1"),
    market=False,
    available=Decimal(0),
    position=Decimal(0),
    fraction=Decimal("0.01"),
)
def test_quantity_is_on_the_grid_within_the_request_and_the_exchange_limits(
    instrument: Instrument,
    fields: dict[str, Any],
    price: Decimal,
    market: bool,
    available: Decimal,
    position: Decimal,
    fraction: Decimal,
) -> None:
    plugin = SizingPlugin(settings=SizingSettings(balance_fraction=fraction))
    order_type = MARKET if market else OrderTypeDecision(order_type=OrderType.LIMIT, price=price)
    ctx = context(
        instrument=instrument,
        reference_price=price,
        available=available,
        position_size=position,
    )
    result = plugin.om_calculate_quantity(signal(**fields), ctx, order_type)
    expected_qty, expected_code, cap = oracle(
        fields,
        instrument,
        price,
        available=available,
        position=position,
        fraction=fraction,
        market=market,
    )

    if expected_code is not None:
        assert isinstance(result, Rejection)
        assert result.code == expected_code
        return

    assert isinstance(result, QuantityDecision)
    qty = result.qty
    assert Fraction(qty) == expected_qty
    # On the grid, exactly.
    assert qty % instrument.qty_step == 0
    # Within the exchange's limits...
    maximum = instrument.max_qty
    if market and instrument.max_market_qty is not None:
        maximum = instrument.max_market_qty
    assert instrument.min_qty <= qty <= maximum
    assert qty * price >= instrument.min_notional
    # ...and never more than asked for.
    assert Fraction(qty) * Fraction(price) <= cap
    if "qty" in fields:
        assert qty <= fields["qty"]


# -- inverse contracts: qty counts 1-USD contracts (observation 6 of issue 13) ----------------

BTCUSD = Instrument(
    symbol="BTCUSD",
    category=Category.INVERSE,
    tick_size=Decimal("0.5"),
    qty_step=Decimal(1),
    min_qty=Decimal(1),
    max_qty=Decimal(1_000_000),
    base_coin="BTC",
    quote_coin="USD",
    qty_unit=QtyUnit.CONTRACTS,
    settle_coin="BTC",
)


def inverse(**ctx: Any) -> Any:
    base = context(instrument=BTCUSD, reference_price="50000", **ctx)
    return replace(base, balance=Balance(coin="BTC", available=Decimal(2), equity=Decimal(2)))


def size_inverse(order_type: OrderTypeDecision = MARKET, **fields: Any) -> Decimal:
    result = SizingPlugin().om_calculate_quantity(
        signal(symbol="BTCUSD", category=Category.INVERSE, **fields), inverse(), order_type
    )
    return qty_of(result)


def test_inverse_qty_is_base_coin_turned_into_contracts() -> None:
    # 1 BTC at 50,000 USD = 50,000 one-dollar contracts (not one $1 contract).
    assert size_inverse(qty=Decimal(1)) == Decimal(50_000)
    assert size_inverse(limit("40000"), qty=Decimal("0.5")) == Decimal(20_000)


def test_inverse_notional_is_a_count_of_one_dollar_contracts() -> None:
    # 100 USD is 100 contracts at any price (not 100 / 50,000 → rounded to 0).
    assert size_inverse(notional=Decimal(100)) == Decimal(100)
    assert size_inverse(limit("40000"), notional=Decimal("100.9")) == Decimal(100)


def test_inverse_balance_fraction_values_the_base_coin_balance() -> None:
    # 1 % of 2 BTC = 0.02 BTC, worth 1,000 USD at 50,000: 1,000 contracts.
    assert size_inverse() == Decimal(1000)


def test_inverse_orders_are_valued_in_usd_by_risk() -> None:
    from plugins_builtin.risk import RiskPlugin, RiskSettings
    from tests.plugins_builtin.builders import proposed

    plugin = RiskPlugin(RiskSettings(max_order_notional=Decimal(1000)))
    order = replace(
        proposed(qty="2000", symbol="BTCUSD"),
        category=Category.INVERSE,
        qty_unit=QtyUnit.CONTRACTS,
        reference_price=Decimal(50_000),
        price=None,
    )
    [reason] = plugin.om_check_order(order, signal(symbol="BTCUSD"), inverse())
    assert reason.code == "MAX_ORDER_NOTIONAL" and reason.details["actual"] == "2000"
