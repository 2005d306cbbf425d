from __future__ import annotations

from datetime import timedelta
from decimal import Decimal
from typing import Any

import pytest
from pydantic import ValidationError

from om_core.plugins import PluginLoadError, load_plugins
from om_plugins import Category, Position, Rejection, Side, TradingState
from plugins_builtin.risk import RiskPlugin, RiskSettings
from tests.plugins_builtin.builders import NOW, context, proposed, signal

# Every limit off, so each test switches on exactly the rule it is about.
NO_LIMITS: dict[str, Any] = {"max_order_notional": None}


def risk(**limits: Any) -> RiskPlugin:
    return RiskPlugin(settings=RiskSettings(**{**NO_LIMITS, **limits}))


def codes(rejections: list[Rejection]) -> list[str]:
    return [r.code for r in rejections]


def only(rejections: list[Rejection], code: str) -> Rejection:
    assert codes(rejections) == [code]
    rejection = rejections[0]
    assert rejection.message
    return rejection


def test_defaults_are_documented_and_let_an_ordinary_signal_through() -> None:
    settings = RiskSettings()
    assert settings.max_order_notional == Decimal(100_000)
    assert settings.max_signal_age_seconds is None
    assert settings.allowed_symbols == []
    assert settings.min_strength is None
    assert settings.max_open_orders_per_symbol is None
    assert settings.max_orders_per_minute is None
    assert settings.max_position_notional is None
    assert settings.max_gross_exposure is None

    plugin = RiskPlugin()
    assert plugin.om_check_signal(signal(), context()) == []
    assert plugin.om_check_order(proposed(), signal(), context()) == []


def test_a_mistyped_setting_fails_validation() -> None:
    with pytest.raises(ValidationError):
        RiskSettings(max_order_notinal=Decimal(1))  # type: ignore[call-arg]


# -- signal rules -----------------------------------------------------------------------------


def test_symbol_not_in_allowed_symbols_is_rejected() -> None:
    rejection = only(
        risk(allowed_symbols=["ETHUSDT", "SOLUSDT"]).om_check_signal(signal(), context()),
        "SYMBOL_NOT_ALLOWED",
    )
    assert rejection.details == {"limit": "ETHUSDT,SOLUSDT", "actual": "BTCUSDT"}


def test_allowed_symbols_accepts_listed_symbol_case_insensitively() -> None:
    assert risk(allowed_symbols=["btcusdt"]).om_check_signal(signal(), context()) == []


@pytest.mark.parametrize("off", ["none", "", "OFF"])
def test_a_default_limit_can_be_switched_off_from_the_environment(off: str) -> None:
    settings = RiskSettings.model_validate({"max_order_notional": off})
    assert settings.max_order_notional is None
    plugin = RiskPlugin(settings=settings)
    assert plugin.om_check_order(proposed(qty="100"), signal(), context()) == []


@pytest.mark.parametrize(
    "values",
    [{"max_order_notional": "0"}, {"max_orders_per_minute": -1}],
)
def test_nonsense_limits_fail_validation(values: dict[str, Any]) -> None:
    with pytest.raises(ValidationError):
        RiskSettings.model_validate(values)


def test_allowed_symbols_parse_from_a_comma_separated_environment_value() -> None:
    settings = RiskSettings.model_validate({"allowed_symbols": "BTCUSDT, ethusdt,"})
    assert settings.allowed_symbols == ["BTCUSDT", "ETHUSDT"]


@pytest.mark.parametrize("value", ["60", "30", 5])
def test_the_age_limit_moved_to_the_engine_and_setting_it_here_says_so(value: Any) -> None:
    # One staleness check, the engine's (SIGNAL_STALE): a configuration that still sets the
    # plugin's old limit is refused with the way out, not silently ignored.
    with pytest.raises(ValidationError, match="OM_MAX_SIGNAL_AGE_SECONDS"):
        RiskSettings.model_validate({"max_signal_age_seconds": value})
    assert (
        RiskSettings.model_validate({"max_signal_age_seconds": "none"}).max_signal_age_seconds
        is None
    )


def test_old_signals_are_not_this_plugins_business() -> None:
    old = signal(created_at=NOW - timedelta(hours=1))
    assert RiskPlugin().om_check_signal(old, context()) == []


def test_weak_signal_is_rejected() -> None:
    rejection = only(
        risk(min_strength=Decimal("0.5")).om_check_signal(
            signal(strength=Decimal("0.49")), context()
        ),
        "STRENGTH_TOO_LOW",
    )
    assert rejection.details == {"limit": "0.5", "actual": "0.49"}


def test_signal_at_min_strength_passes() -> None:
    plugin = risk(min_strength=Decimal("0.5"))
    assert plugin.om_check_signal(signal(strength=Decimal("0.5")), context()) == []


def test_the_trading_state_is_not_this_plugins_business() -> None:
    # The engine enforces halted and reducing (om_core.engine.guard), with or without this
    # plugin; the plugin does not repeat it.
    for state in (TradingState.HALTED, TradingState.REDUCING):
        ctx = context(trading_state=state)
        assert risk().om_check_signal(signal(), ctx) == []
        assert risk().om_check_order(proposed(), signal(), ctx) == []


def test_too_many_open_orders_is_rejected() -> None:
    rejection = only(
        risk(max_open_orders_per_symbol=2).om_check_signal(signal(), context(open_orders=2)),
        "MAX_OPEN_ORDERS",
    )
    assert rejection.details == {"limit": "2", "actual": "2"}


def test_one_open_order_under_the_limit_passes() -> None:
    plugin = risk(max_open_orders_per_symbol=2)
    assert plugin.om_check_signal(signal(), context(open_orders=1)) == []


def test_order_rate_limit_is_rejected() -> None:
    rejection = only(
        risk(max_orders_per_minute=5).om_check_signal(signal(), context(recent_order_count=5)),
        "ORDER_RATE_LIMIT",
    )
    assert rejection.details == {"limit": "5", "actual": "5"}


def test_order_rate_just_under_the_limit_passes() -> None:
    plugin = risk(max_orders_per_minute=5)
    assert plugin.om_check_signal(signal(), context(recent_order_count=4)) == []


def test_every_violated_signal_rule_is_reported() -> None:
    plugin = risk(
        allowed_symbols=["ETHUSDT"],
        min_strength=Decimal("0.9"),
        max_open_orders_per_symbol=1,
        max_orders_per_minute=1,
    )
    found = plugin.om_check_signal(
        signal(strength=Decimal("0.1"), created_at=NOW - timedelta(minutes=5)),
        context(trading_state=TradingState.HALTED, open_orders=3, recent_order_count=3),
    )
    assert codes(found) == [
        "SYMBOL_NOT_ALLOWED",
        "STRENGTH_TOO_LOW",
        "MAX_OPEN_ORDERS",
        "ORDER_RATE_LIMIT",
    ]


# -- order rules ----------------------------------------------------------------------------


def test_order_above_max_notional_is_rejected() -> None:
    rejection = only(
        risk(max_order_notional=Decimal(1000)).om_check_order(
            proposed(qty="0.021", price="50000"), signal(), context()
        ),
        "MAX_ORDER_NOTIONAL",
    )
    assert rejection.details["limit"] == "1000"
    assert Decimal(rejection.details["actual"]) == Decimal(1050)


def test_order_exactly_at_max_notional_passes() -> None:
    plugin = risk(max_order_notional=Decimal(1000))
    assert plugin.om_check_order(proposed(qty="0.020", price="50000"), signal(), context()) == []


def test_market_order_notional_uses_the_reference_price() -> None:
    plugin = risk(max_order_notional=Decimal(1000))
    order = proposed(qty="0.020", price=None, reference_price="50001")
    rejection = only(plugin.om_check_order(order, signal(), context()), "MAX_ORDER_NOTIONAL")
    assert Decimal(rejection.details["actual"]) == Decimal("1000.02")


def test_position_above_max_notional_is_rejected() -> None:
    rejection = only(
        risk(max_position_notional=Decimal(3000)).om_check_order(
            proposed(qty="0.011", price="60000"), signal(), context(position_size="0.04")
        ),
        "MAX_POSITION_NOTIONAL",
    )
    assert rejection.details["limit"] == "3000"
    assert Decimal(rejection.details["actual"]) == Decimal(3060)
    assert Decimal(rejection.details["position_size_after"]) == Decimal("0.051")


def test_position_exactly_at_max_notional_passes() -> None:
    plugin = risk(max_position_notional=Decimal(3000))
    order = proposed(qty="0.010", price="60000")
    assert plugin.om_check_order(order, signal(), context(position_size="0.04")) == []


def test_open_orders_on_the_same_side_count_as_filled_for_the_position_limit() -> None:
    plugin = risk(max_position_notional=Decimal(3000))
    order = proposed(qty="0.010", price="60000")
    # 0.04 held + 0.010 ordered fits exactly; one more open 0.001 buy tips it over.
    assert plugin.om_check_order(order, signal(), context(position_size="0.04")) == []
    found = plugin.om_check_order(order, signal(), context(position_size="0.04", open_orders=1))
    assert codes(found) == ["MAX_POSITION_NOTIONAL"]
    sell = proposed(side=Side.SELL, qty="0.010", price="60000")
    # Open buys do not make a sell bigger.
    assert (
        plugin.om_check_order(
            sell, signal(side=Side.SELL), context(position_size="-0.04", open_orders=1)
        )
        == []
    )


def test_short_position_growing_past_max_notional_is_rejected() -> None:
    order = proposed(side=Side.SELL, qty="0.011", price="60000")
    found = risk(max_position_notional=Decimal(3000)).om_check_order(
        order, signal(side=Side.SELL), context(position_size="-0.04")
    )
    assert codes(found) == ["MAX_POSITION_NOTIONAL"]


def test_reducing_an_oversized_position_is_always_allowed() -> None:
    order = proposed(side=Side.SELL, qty="0.01", price="60000")
    plugin = risk(max_position_notional=Decimal(3000), max_gross_exposure=Decimal(3000))
    assert plugin.om_check_order(order, signal(side=Side.SELL), context(position_size="0.1")) == []


def test_flipping_into_an_oversized_position_is_rejected() -> None:
    order = proposed(side=Side.SELL, qty="0.07", price="60000")
    found = risk(max_position_notional=Decimal(3000)).om_check_order(
        order, signal(side=Side.SELL), context(position_size="0.01")
    )
    rejection = only(found, "MAX_POSITION_NOTIONAL")
    assert Decimal(rejection.details["actual"]) == Decimal(3600)
    assert Decimal(rejection.details["position_size_after"]) == Decimal("-0.06")


ETH_POSITION = Position(category=Category.LINEAR, symbol="ETHUSDT", size=Decimal(1))
MARKS = {"BTCUSDT": Decimal(60000), "ETHUSDT": Decimal(3000)}


def test_gross_exposure_above_the_limit_is_rejected() -> None:
    # BTC 0.05 × 60000 = 3000 and ETH 1 × 3000 = 3000: gross 6000 before the order.
    ctx = context(position_size="0.05", other_positions=[ETH_POSITION], prices=MARKS)
    assert ctx.gross_exposure() == Decimal(6000)
    rejection = only(
        risk(max_gross_exposure=Decimal(7000)).om_check_order(
            proposed(qty="0.017", price="60000"), signal(), ctx
        ),
        "MAX_GROSS_EXPOSURE",
    )
    # BTC after: 0.067 × 60000 = 4020; ETH unchanged 3000.
    assert rejection.details["limit"] == "7000"
    assert Decimal(rejection.details["actual"]) == Decimal(7020)


def test_gross_exposure_just_under_the_limit_passes() -> None:
    ctx = context(position_size="0.05", other_positions=[ETH_POSITION], prices=MARKS)
    plugin = risk(max_gross_exposure=Decimal(7000))
    assert plugin.om_check_order(proposed(qty="0.016", price="60000"), signal(), ctx) == []


def test_gross_exposure_values_the_current_position_like_the_context_does() -> None:
    # No mark for BTC: the context values it at its entry price (50000), so replacing it
    # must subtract 0.05 × 50000 = 2500, not a value at the order's price.
    ctx = context(
        position_size="0.05",
        avg_entry_price="50000",
        other_positions=[ETH_POSITION],
        prices={"ETHUSDT": Decimal(3000)},
    )
    assert ctx.gross_exposure() == Decimal(5500)
    found = risk(max_gross_exposure=Decimal(7019)).om_check_order(
        proposed(qty="0.017", price="60000"), signal(), ctx
    )
    assert Decimal(only(found, "MAX_GROSS_EXPOSURE").details["actual"]) == Decimal(7020)


def test_every_violated_order_rule_is_reported() -> None:
    plugin = risk(
        max_order_notional=Decimal(1000),
        max_position_notional=Decimal(1000),
        max_gross_exposure=Decimal(1000),
    )
    ctx = context(trading_state=TradingState.REDUCING)
    found = plugin.om_check_order(proposed(qty="0.1"), signal(), ctx)
    assert codes(found) == [
        "MAX_ORDER_NOTIONAL",
        "MAX_POSITION_NOTIONAL",
        "MAX_GROSS_EXPOSURE",
    ]


def test_an_old_config_with_the_age_limit_fails_at_startup_with_the_way_out() -> None:
    for config, env in (
        ({"risk": {"max_signal_age_seconds": 30}}, {}),
        ({}, {"OM_PLUGIN_RISK_MAX_SIGNAL_AGE_SECONDS": "30"}),
    ):
        with pytest.raises(PluginLoadError) as info:
            load_plugins(["risk"], config, env=env)
        [problem] = info.value.problems
        assert problem.startswith("plugin 'risk' setting max_signal_age_seconds (")
        assert "set OM_MAX_SIGNAL_AGE_SECONDS" in problem
