from decimal import Decimal

import pytest
from om_sizing_volatility import VolatilitySizingPlugin, VolatilitySizingSettings

from om_plugins import OrderType, OrderTypeDecision, QuantityDecision, Rejection
from om_plugins.testing import EngineHarness, make_context, make_instrument, make_signal

MARKET = OrderTypeDecision(OrderType.MARKET)


def sizing(**settings: object) -> VolatilitySizingPlugin:
    return VolatilitySizingPlugin(VolatilitySizingSettings.model_validate(settings))


def test_risk_budget_over_atr_rounded_down_to_the_step() -> None:
    plugin = sizing(risk_per_trade="100", atr_multiple="2")
    # 100 / (2 × 812.5) = 0.0615… → 0.061 on the 0.001 grid
    result = plugin.om_calculate_quantity(
        make_signal(metadata={"atr": "812.5"}), make_context(), MARKET
    )
    assert result == QuantityDecision(Decimal("0.061"))


def test_strength_scales_the_budget_when_enabled() -> None:
    plugin = sizing(risk_per_trade="100", scale_by_strength=True)
    signal = make_signal(strength="0.5", metadata={"atr": Decimal("1000")})
    assert plugin.om_calculate_quantity(signal, make_context(), MARKET) == QuantityDecision(
        Decimal("0.05")
    )


@pytest.mark.parametrize(
    ("metadata", "code"),
    [({}, "ATR_MISSING"), ({"atr": "-3"}, "ATR_INVALID"), ({"atr": "NaN"}, "ATR_INVALID")],
)
def test_missing_or_invalid_atr_is_refused(metadata: dict[str, str], code: str) -> None:
    result = sizing(risk_per_trade="100").om_calculate_quantity(
        make_signal(metadata=metadata), make_context(), MARKET
    )
    assert isinstance(result, Rejection) and result.code == code


def test_missing_atr_can_defer_to_the_default_sizing() -> None:
    plugin = sizing(risk_per_trade="100", on_missing_atr="defer")
    assert plugin.om_calculate_quantity(make_signal(), make_context(), MARKET) is None


def test_explicit_sizes_and_reduce_only_are_left_to_the_next_plugin() -> None:
    plugin = sizing(risk_per_trade="100")
    for signal in (
        make_signal(qty="1", metadata={"atr": "10"}),
        make_signal(notional="500", metadata={"atr": "10"}),
        make_signal(reduce_only=True, metadata={"atr": "10"}),
    ):
        assert plugin.om_calculate_quantity(signal, make_context(), MARKET) is None


def test_exchange_limits_apply() -> None:
    plugin = sizing(risk_per_trade="100")
    tiny = plugin.om_calculate_quantity(
        make_signal(metadata={"atr": "1000000"}), make_context(), MARKET
    )
    assert isinstance(tiny, Rejection) and tiny.code == "QTY_BELOW_MINIMUM"
    capped = plugin.om_calculate_quantity(
        make_signal(metadata={"atr": "0.01"}),
        make_context(instrument=make_instrument(max_market_qty="5")),
        MARKET,
    )
    assert capped == QuantityDecision(Decimal("5"))


def test_through_the_engine_instead_of_the_builtin_sizing() -> None:
    settings = {"volatility_sizing": {"risk_per_trade": "90", "atr_multiple": "1.5"}}
    with EngineHarness(plugins=["builtin", "volatility_sizing"], settings=settings) as harness:
        outcome = harness.run_sync(
            symbol="ETHUSDT", side="buy", price="2950.123", metadata={"atr": "40"}
        )
        order = outcome.order
        # 90 / (1.5 × 40) = 1.5 ETH, limit price rounded down to the 0.01 tick
        assert (order.qty, order.price, order.order_type) == (
            Decimal("1.5"),
            Decimal("2950.12"),
            OrderType.LIMIT,
        )
        missing = harness.run_sync(symbol="ETHUSDT", side="buy")
        assert [(r.plugin, r.code) for r in missing.reasons] == [
            ("volatility_sizing", "ATR_MISSING")
        ]
        # An explicit qty still goes to the built-in sizing.
        assert harness.run_sync(symbol="ETHUSDT", side="buy", qty="0.25").order.qty == Decimal(
            "0.25"
        )
