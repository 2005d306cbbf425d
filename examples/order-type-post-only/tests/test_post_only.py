from decimal import Decimal

from om_order_type_post_only import PostOnlyPlugin, PostOnlySettings

from om_plugins import OrderType, OrderTypeDecision, TimeInForce
from om_plugins.testing import EngineHarness, make_context, make_signal


def plugin(**settings: object) -> PostOnlyPlugin:
    return PostOnlyPlugin(PostOnlySettings.model_validate(settings))


def test_weak_signals_rest_post_only_on_the_passive_side_on_the_tick() -> None:
    rules = plugin(offset_bps="7.5", strength_threshold="0.6")
    ctx = make_context(reference_price="60003.3")
    # 60003.3 × (1 − 0.00075) = 59958.29752…: a buy rounds down to 59958.2
    assert rules.om_select_order_type(make_signal(strength="0.4"), ctx) == OrderTypeDecision(
        OrderType.LIMIT, Decimal("59958.2"), TimeInForce.POST_ONLY
    )
    # 60003.3 × (1 + 0.00075) = 60048.30247…: a sell rounds up to 60048.4
    sell = make_signal(side="sell", strength="0.59")
    assert rules.om_select_order_type(sell, ctx) == OrderTypeDecision(
        OrderType.LIMIT, Decimal("60048.4"), TimeInForce.POST_ONLY
    )


def test_strong_signals_go_to_market() -> None:
    rules = plugin(strength_threshold="0.6", market_time_in_force="FOK")
    decision = rules.om_select_order_type(make_signal(strength="0.6"), make_context())
    assert decision == OrderTypeDecision(OrderType.MARKET, None, TimeInForce.FOK)


def test_an_explicit_order_type_or_price_is_left_to_the_next_plugin() -> None:
    rules = plugin()
    ctx = make_context()
    assert rules.om_select_order_type(make_signal(strength="0.1", price="59000"), ctx) is None
    assert rules.om_select_order_type(make_signal(order_type="market", strength="0.1"), ctx) is None


def test_through_the_engine_before_the_builtin_order_type() -> None:
    with EngineHarness(
        plugins=["builtin", "post_only"], env={"OM_PLUGIN_POST_ONLY_OFFSET_BPS": "10"}
    ) as harness:
        weak = harness.run_sync(symbol="SOLUSDT", side="buy", strength="0.3", qty="2")
        assert (weak.order.order_type, weak.order.price, weak.order.time_in_force) == (
            OrderType.LIMIT,
            Decimal("149.85"),
            TimeInForce.POST_ONLY,
        )
        strong = harness.run_sync(symbol="SOLUSDT", side="sell", strength="0.9", qty="2")
        assert (strong.order.order_type, strong.order.price) == (OrderType.MARKET, None)
        # Enabled after the built-ins, yet asked first: the built-in rules are `trylast`.
        assert harness.enabled_plugins[-1] == "post_only"
