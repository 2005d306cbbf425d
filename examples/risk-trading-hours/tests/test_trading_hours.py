from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from om_risk_trading_hours import TradingHoursPlugin, TradingHoursSettings, realized_loss
from pydantic import ValidationError

from om_plugins import Rejection
from om_plugins.testing import (
    EngineHarness,
    PluginRegistrar,
    make_context,
    make_position,
    make_signal,
    make_trading_day,
)

MONDAY_10 = datetime(2025, 1, 6, 10, 0, tzinfo=UTC)


def plugin(**settings: object) -> TradingHoursPlugin:
    return TradingHoursPlugin(TradingHoursSettings.model_validate(settings))


def codes(rejections: list[Rejection]) -> list[str]:
    return [r.code for r in rejections]


@pytest.mark.parametrize(
    ("now", "allowed"),
    [
        (MONDAY_10, True),
        (MONDAY_10.replace(hour=8), True),  # start is inclusive
        (MONDAY_10.replace(hour=16), False),  # end is exclusive
        (MONDAY_10.replace(hour=7, minute=59), False),
        (MONDAY_10 + timedelta(days=5), False),  # Saturday
    ],
)
def test_window_on_weekdays(now: datetime, allowed: bool) -> None:
    rules = plugin(start="08:00", end="16:00", weekdays="mon,tue,wed,thu,fri")
    result = rules.om_check_signal(make_signal(), make_context(now=now))
    assert codes(result) == ([] if allowed else ["OUTSIDE_TRADING_HOURS"])


def test_a_window_across_midnight_belongs_to_the_day_it_opened() -> None:
    rules = plugin(start="22:00", end="06:00", weekdays=["fri"])
    friday_23 = datetime(2025, 1, 10, 23, 0, tzinfo=UTC)
    assert rules.om_check_signal(make_signal(), make_context(now=friday_23)) == []
    saturday_5 = friday_23 + timedelta(hours=6)
    assert rules.om_check_signal(make_signal(), make_context(now=saturday_5)) == []
    saturday_23 = friday_23 + timedelta(days=1)
    assert codes(rules.om_check_signal(make_signal(), make_context(now=saturday_23))) == [
        "OUTSIDE_TRADING_HOURS"
    ]


def test_loss_limit_counts_todays_realized_pnl_net_of_fees() -> None:
    rules = plugin(max_daily_loss="500")
    today = make_trading_day(by_symbol={"BTCUSDT": ("-480", "15"), "ETHUSDT": ("-10", "0")})
    ctx = make_context(today=today)
    assert realized_loss(ctx) == Decimal("505")
    (reason,) = rules.om_check_signal(make_signal(), ctx)
    assert (reason.code, reason.details) == (
        "MAX_DAILY_LOSS",
        {"limit": "500", "actual": "505", "day_start": "2025-01-06T00:00:00+00:00"},
    )
    # What positions realized before today does not count.
    old_losses = make_position(realized_pnl="-9000")
    winning = make_context(position=old_losses, today=make_trading_day(realized_pnl="100"))
    assert rules.om_check_signal(make_signal(), winning) == []


def test_reduce_only_signals_may_always_shrink_risk() -> None:
    rules = plugin(start="08:00", end="09:00", max_daily_loss="1")
    night = MONDAY_10.replace(hour=23)
    losing_at_night = make_context(
        now=night,
        position=make_position(size="1"),
        today=make_trading_day(realized_pnl="-50", now=night),
    )
    assert rules.om_check_signal(make_signal(side="sell", reduce_only=True), losing_at_night) == []
    strict = plugin(start="08:00", end="09:00", allow_reduce_only=False)
    assert codes(
        strict.om_check_signal(make_signal(side="sell", reduce_only=True), losing_at_night)
    ) == ["OUTSIDE_TRADING_HOURS"]


def test_settings_are_validated() -> None:
    with pytest.raises(ValidationError, match="unknown weekday"):
        TradingHoursSettings.model_validate({"weekdays": "mon,funday"})
    with pytest.raises(ValidationError):
        TradingHoursSettings.model_validate({"max_daily_loss": "-5"})


def test_standalone_hooks_attribute_the_rejection(register_plugin: PluginRegistrar) -> None:
    register_plugin(TradingHoursPlugin, name="trading_hours", settings={"max_daily_loss": "1"})
    ctx = make_context(today=make_trading_day(realized_pnl="-2"))
    reasons = register_plugin.hooks.check_signal(make_signal(), ctx)
    assert [(r.plugin, r.code) for r in reasons] == [("trading_hours", "MAX_DAILY_LOSS")]


def test_through_the_engine_enabled_by_name() -> None:
    settings = {"trading_hours": {"start": "08:00", "end": "16:00", "weekdays": "mon,tue"}}
    with EngineHarness(
        plugins=["builtin", "trading_hours"], settings=settings, now="2025-01-06T07:59:00Z"
    ) as harness:
        early = harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001")
        assert [(r.plugin, r.code) for r in early.reasons] == [
            ("trading_hours", "OUTSIDE_TRADING_HOURS")
        ]
        harness.advance_time(minutes=1)  # Monday 08:00: the window opens
        assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").placed
        harness.set_time("2025-01-08T10:00:00Z")  # Wednesday: not a trading day
        assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").codes == [
            "OUTSIDE_TRADING_HOURS"
        ]


def test_the_daily_loss_limit_resets_when_the_day_ends() -> None:
    env = {"OM_PLUGIN_TRADING_HOURS_MAX_DAILY_LOSS": "250"}
    with EngineHarness(
        plugins=["builtin", "trading_hours"], env=env, now="2025-01-06T21:00:00Z"
    ) as harness:
        assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").placed
        harness.set_position_sync("ETHUSDT", "1", realized_pnl="-300")
        outcome = harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001")
        assert outcome.codes == ["MAX_DAILY_LOSS"]
        # Closing the losing position stays possible.
        assert harness.run_sync(symbol="ETHUSDT", side="sell", reduce_only=True).placed
        harness.advance_time(hours=3)  # Tuesday 00:00 UTC: a new trading day
        assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").placed
