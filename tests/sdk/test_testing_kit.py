"""The plugin test kit (om_plugins.testing): the engine harness, plugin registration and the
builders, used exactly as a plugin author would use them."""

from __future__ import annotations

from datetime import UTC, datetime
from decimal import Decimal

import pytest
from pydantic import BaseModel, ConfigDict

from om_core.config import ConfigError
from om_core.plugins import PLUGIN_ERROR, PluginLoadError
from om_plugins import (
    DecisionContext,
    FeeRates,
    OrderType,
    OrderTypeDecision,
    PnL,
    QuantityDecision,
    Rejection,
    Side,
    TimeInForce,
    TradingState,
    hookimpl,
)
from om_plugins.testing import (
    NOW,
    EngineHarness,
    PluginRegistrar,
    make_balance,
    make_context,
    make_instrument,
    make_open_order,
    make_order,
    make_position,
    make_signal,
    plugin_name,
    signal_payload,
)

pytest_plugins = ("pytester",)


class Veto:
    @hookimpl
    def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
        return Rejection("VETO", f"no {signal.symbol}", details={"symbol": signal.symbol})


class Explodes:
    @hookimpl
    def om_check_order(self, order, signal, context):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("bug")


class AlwaysLimit:
    @hookimpl
    def om_select_order_type(self, signal, context):  # type: ignore[no-untyped-def]
        return OrderTypeDecision(OrderType.LIMIT, Decimal("59000.0"), TimeInForce.POST_ONLY)


# -- the harness runs the real pipeline --------------------------------------------------------


def test_run_sync_places_the_exact_order(harness: EngineHarness) -> None:
    outcome = harness.run_sync({"symbol": "BTCUSDT", "side": "buy", "qty": "0.0105"})
    assert outcome.status == "placed" and outcome.placed and outcome.reasons == ()
    order = outcome.order
    assert (order.side, order.order_type, order.time_in_force) == (
        Side.BUY,
        OrderType.MARKET,
        TimeInForce.IOC,
    )
    assert order.qty == Decimal("0.010")  # rounded down to the 0.001 step
    assert order.price is None
    assert order.status == "submitted"
    assert [o.client_order_id for o in harness.paper.orders.values()] == [order.client_order_id]


async def test_run_async_rounds_a_limit_price_never_worse(harness: EngineHarness) -> None:
    outcome = await harness.run(symbol="ETHUSDT", side="buy", price="2999.999", notional="300")
    order = outcome.order
    assert (order.order_type, order.price, order.qty) == (
        OrderType.LIMIT,
        Decimal("2999.99"),
        Decimal("0.1"),
    )
    assert order.time_in_force is TimeInForce.GTC


def test_a_rejection_carries_plugin_code_message_and_details(harness: EngineHarness) -> None:
    outcome = harness.run_sync(symbol="BTCUSDT", side="buy", qty="2")
    assert outcome.rejected and outcome.orders == ()
    (reason,) = outcome.reasons
    assert (reason.plugin, reason.code) == ("risk", "MAX_ORDER_NOTIONAL")
    assert reason.details == {"limit": "100000", "actual": "120000.000"}
    assert "above the limit" in reason.message
    assert harness.paper.create_calls == []


def test_signal_objects_and_json_text_are_accepted(harness: EngineHarness) -> None:
    signal = make_signal("SOLUSDT", "sell", qty="1.25", signal_id="obj-1")
    assert harness.run_sync(signal).order.qty == Decimal("1.2")
    text = '{"signal_id": "text-1", "symbol": "SOLUSDT", "side": "buy", "qty": 0.3}'
    assert harness.run_sync(text).order.qty == Decimal("0.3")


def test_invalid_and_duplicate_signals(harness: EngineHarness) -> None:
    invalid = harness.run_sync({"signal_id": "bad-1", "symbol": "BTCUSDT", "side": "hold"})
    assert (invalid.status, invalid.signal_id, invalid.codes) == (
        "invalid",
        "bad-1",
        ["INVALID_SIGNAL"],
    )
    assert "side" in invalid.reasons[0].message
    first = harness.run_sync(signal_id="dup-1", symbol="BTCUSDT", side="buy", qty="0.001")
    again = harness.run_sync(signal_id="dup-1", symbol="BTCUSDT", side="buy", qty="0.001")
    assert not first.duplicate and again.duplicate
    assert again.order == first.order
    # The same id with other content: refused, the first copy stands.
    other = harness.run_sync(signal_id="dup-1", symbol="BTCUSDT", side="buy", qty="0.5")
    assert (other.status, other.codes, other.orders) == ("rejected", ["SIGNAL_ID_CONFLICT"], ())
    assert len(harness.paper.create_calls) == 1


def test_set_price_and_balance_drive_sizing(harness: EngineHarness) -> None:
    harness.set_price_sync("BTCUSDT", "50000")
    assert harness.run_sync(symbol="BTCUSDT", side="buy", notional="1000").order.qty == Decimal(
        "0.02"
    )
    harness.set_balance_sync("20000")
    # 1 % of the available balance (20000 less the margin of the position just opened on the
    # paper account) at full strength: just under 200 USDT, so 3 steps of 0.001 × 50000.
    outcome = harness.run_sync(symbol="BTCUSDT", side="buy")
    assert outcome.order.qty == Decimal("0.003")


async def test_positions_count_in_the_engine_and_on_the_paper_account(
    harness: EngineHarness,
) -> None:
    await harness.set_position("BTCUSDT", "0.5", avg_entry_price="58000", realized_pnl="-12.5")
    assert harness.paper.position("BTCUSDT").size == Decimal("0.5")
    outcome = await harness.run(symbol="BTCUSDT", side="sell", reduce_only=True)
    order = outcome.order
    assert (order.side, order.qty, order.reduce_only, order.status) == (
        Side.SELL,
        Decimal("0.5"),
        True,
        "submitted",  # the paper exchange took it: it knows the position too
    )


def test_trading_state(harness: EngineHarness) -> None:
    harness.set_trading_state_sync(TradingState.HALTED)
    assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").codes == ["TRADING_HALTED"]
    harness.set_trading_state_sync("active")
    assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").placed


@pytest.mark.om_harness(
    settings={"risk": {"max_order_notional": "500"}},
    prices={"BTCUSDT": "40000"},
    env={"OM_PLUGIN_SIZING_ON_ABOVE_MAX": "reject"},
)
def test_marker_configures_plugin_settings_prices_and_env(harness: EngineHarness) -> None:
    outcome = harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.02")
    assert [(r.code, r.details["actual"]) for r in outcome.reasons] == [
        ("MAX_ORDER_NOTIONAL", "800.000")
    ]
    assert harness.hooks.pm.get_plugin("sizing").settings.on_above_max == "reject"


def test_the_process_environment_does_not_leak_into_a_harness(
    monkeypatch: pytest.MonkeyPatch, harness_factory
) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL", "1")
    monkeypatch.setenv("OM_MAX_SIGNAL_AGE_SECONDS", "0.000001")
    engine = harness_factory()
    assert engine.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").placed


def test_a_harness_is_a_context_manager_and_cleans_up() -> None:
    with EngineHarness(plugins=["paper", "risk", "order_type", "sizing"]) as engine:
        directory = engine._started().directory
        assert directory.exists()
        assert engine.run_sync(symbol="SOLUSDT", side="buy", qty="1").placed
    assert not directory.exists()
    with pytest.raises(RuntimeError, match="not started"):
        engine.run_sync(symbol="SOLUSDT", side="buy", qty="1")


async def test_async_context_manager() -> None:
    async with EngineHarness(balance="500") as engine:
        outcome = await engine.run(symbol="BTCUSDT", side="buy", qty="0.1")
        # 6000 USDT of BTC at 10x leverage needs 600 of margin: the paper exchange says no.
        assert [(r.plugin, r.code) for r in outcome.reasons] == [
            ("exchange", "INSUFFICIENT_BALANCE")
        ]
        assert outcome.reasons[0].details == {"exchange_code": "110007"}


def test_without_paper_in_the_list_the_harness_adds_it() -> None:
    with EngineHarness(plugins=["risk", "order_type", "sizing"]) as engine:
        assert list(engine.service.plugins.objects) == ["paper", "risk", "order_type", "sizing"]


# -- registering test plugins ------------------------------------------------------------------


def test_register_plugin_on_the_harness_changes_the_outcome(
    harness: EngineHarness, register_plugin: PluginRegistrar
) -> None:
    register_plugin(Veto(), name="veto")
    outcome = harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001")
    assert [(r.plugin, r.code, dict(r.details)) for r in outcome.reasons] == [
        ("veto", "VETO", {"symbol": "BTCUSDT"})
    ]
    register_plugin.unregister("veto")
    assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").placed


def test_a_registered_plugin_runs_before_the_trylast_defaults(harness: EngineHarness) -> None:
    with harness.plugin(AlwaysLimit()):
        order = harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").order
    assert (order.order_type, order.price, order.time_in_force) == (
        OrderType.LIMIT,
        Decimal("59000"),
        TimeInForce.POST_ONLY,
    )
    assert harness.pm.get_plugin("always_limit") is None


def test_a_raising_order_check_rejects_fail_closed(
    harness: EngineHarness, register_plugin: PluginRegistrar
) -> None:
    register_plugin(Explodes())
    outcome = harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001")
    assert [(r.plugin, r.code) for r in outcome.reasons] == [("explodes", PLUGIN_ERROR)]
    assert "ZeroDivisionError" in outcome.reasons[0].message


def test_register_plugin_standalone_calls_hooks_through_the_engine_facade(
    register_plugin: PluginRegistrar,
) -> None:
    register_plugin(Veto())
    register_plugin(Explodes())
    signal, ctx = make_signal(), make_context()
    assert [(r.plugin, r.code) for r in register_plugin.hooks.check_signal(signal, ctx)] == [
        ("veto", "VETO")
    ]
    reasons = register_plugin.hooks.check_order(make_order(signal), signal, ctx)
    assert [(r.plugin, r.code) for r in reasons] == [("explodes", PLUGIN_ERROR)]


class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_qty: Decimal


class Capped:
    settings_model = Limits
    om_api_version = ">=2,<3"

    def __init__(self, settings: Limits) -> None:
        self.settings = settings

    @hookimpl
    def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
        if signal.qty is not None and signal.qty > self.settings.max_qty:
            return Rejection("CAP", "too big")
        return None


def test_a_plugin_class_is_instantiated_with_validated_settings(
    register_plugin: PluginRegistrar,
) -> None:
    plugin = register_plugin(Capped, settings={"max_qty": "0.5"})
    assert plugin.settings.max_qty == Decimal("0.5")
    assert register_plugin.hooks.check_signal(make_signal(qty="1"), make_context())[0].code == (
        "CAP"
    )
    with pytest.raises(PluginLoadError) as info:
        register_plugin(Capped, name="capped2", settings={"max_qty": "lots"})
    assert "plugin 'capped2' setting max_qty" in str(info.value)


def test_registration_validates_like_the_engine(register_plugin: PluginRegistrar) -> None:
    class Typo:
        @hookimpl
        def om_chek_signal(self, signal, context):  # type: ignore[no-untyped-def]
            return None

    class Future:
        om_api_version = ">=3,<4"

        @hookimpl
        def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
            return None

    with pytest.raises(PluginLoadError, match="unknown hook"):
        register_plugin(Typo())
    with pytest.raises(PluginLoadError, match="requires plugin API >=3,<4"):
        register_plugin(Future())
    with pytest.raises(TypeError, match="only be given with a plugin class"):
        register_plugin(Veto(), settings={"x": 1})
    assert plugin_name(Veto()) == "veto" and plugin_name(AlwaysLimit) == "always_limit"


# -- builders ----------------------------------------------------------------------------------


def test_builders_default_to_values_every_builtin_rule_accepts() -> None:
    ctx = make_context()
    assert ctx.now == NOW and ctx.now.tzinfo is not None
    assert ctx.instrument == make_instrument("BTCUSDT")
    assert (ctx.reference_price, ctx.balance.available, ctx.trading_state) == (
        Decimal("60000"),
        Decimal("100000"),
        TradingState.ACTIVE,
    )
    assert ctx.position.size == 0 and ctx.positions == () and ctx.open_orders == ()
    eth = make_context("ETHUSDT", position="-2", balance=make_balance("50", equity="70"))
    assert eth.instrument.tick_size == Decimal("0.01") and eth.reference_price == Decimal("3000")
    assert eth.positions == (make_position("ETHUSDT", "-2"),)
    assert eth.position.avg_entry_price == Decimal("3000")
    assert (eth.balance.available, eth.balance.equity) == (Decimal("50"), Decimal("70"))
    assert make_instrument("DOGEUSDT", qty_step="1").qty_step == Decimal(1)
    assert make_context(open_orders=[make_open_order(qty="0.2")]).open_orders[0].qty == Decimal(
        "0.2"
    )


def test_builders_refuse_floats() -> None:
    with pytest.raises(TypeError, match="never float"):
        make_signal(qty=0.1)
    with pytest.raises(TypeError, match="never float"):
        make_context(reference_price=60000.0)


def test_make_order_follows_its_signal_and_signals_round_trip() -> None:
    signal = make_signal("SOLUSDT", "sell", qty="3", reduce_only=True, metadata={"atr": "2.5"})
    order = make_order(signal, price="151")
    assert (order.symbol, order.side, order.order_type, order.reduce_only) == (
        "SOLUSDT",
        Side.SELL,
        OrderType.LIMIT,
        True,
    )
    assert order.signal_id == signal.signal_id and order.reference_price == Decimal("150")
    assert make_signal().signal_id != make_signal().signal_id
    from om_core.signals.contract import parse_signal

    assert parse_signal(signal_payload(signal)) == signal


# -- a plugin author's repository: no pytest-asyncio configuration, fixtures from the entry
# -- point, plugins unregistered between tests ---------------------------------------------------


def test_fixtures_work_in_a_project_without_asyncio_configuration(
    pytester: pytest.Pytester,
) -> None:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(
        test_author="""
        import pytest
        from om_plugins import Rejection, hookimpl

        class Veto:
            @hookimpl
            def om_check_signal(self, signal, context):
                return Rejection("VETO", "no")

        def test_registered(harness, register_plugin):
            register_plugin(Veto())
            assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").codes == ["VETO"]

        def test_gone_in_the_next_test(harness, register_plugin):
            assert harness.pm.get_plugin("veto") is None
            assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").placed

        @pytest.mark.om_harness(plugins=["paper", "sizing", "order_type"])
        def test_marker(harness):
            assert list(harness.service.plugins.objects) == ["paper", "sizing", "order_type"]
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:asyncio", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=3)


# -- the harness refuses what the service refuses -----------------------------------------------


def test_settings_for_a_plugin_the_harness_does_not_enable_are_an_error() -> None:
    with pytest.raises(PluginLoadError) as info:
        EngineHarness(
            plugins=["paper", "order_type", "sizing"],
            settings={"risk": {"max_order_notional": "1"}},
        ).start()
    assert info.value.problems == [
        "plugin 'risk': [plugin.risk] sets plugin 'risk', which is not enabled: add it to "
        "plugins / OM_PLUGINS, or remove the table"
    ]
    with pytest.raises(ConfigError, match=r"OM_MAX_SIGNAL_AGE: .*did you mean"):
        EngineHarness(env={"OM_MAX_SIGNAL_AGE": "5"}).start()


def test_enabled_plugins_and_their_objects_are_public(harness: EngineHarness) -> None:
    assert harness.enabled_plugins == ("paper", "risk", "order_type", "sizing", "bybit")
    assert harness.get_plugin("risk").settings.max_order_notional == Decimal(100_000)
    with pytest.raises(KeyError, match="no plugin 'nope'"):
        harness.get_plugin("nope")


# -- the clock ----------------------------------------------------------------------------------


class Capture:
    def __init__(self) -> None:
        self.contexts: list[DecisionContext] = []

    @hookimpl
    def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
        self.contexts.append(context)


@pytest.mark.om_harness(now="2025-03-03T09:30:00Z")
def test_the_engine_runs_on_the_harness_clock(
    harness: EngineHarness, register_plugin: PluginRegistrar
) -> None:
    seen = register_plugin(Capture())
    assert harness.now == datetime(2025, 3, 3, 9, 30, tzinfo=UTC)
    created = "2025-03-03T09:29:00Z"
    assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001", created_at=created).placed
    assert seen.contexts[-1].now == harness.now
    harness.advance_time(minutes=1, seconds=1)  # the signal is now 2 min 1 s old
    stale = harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001", created_at=created)
    assert stale.codes == ["SIGNAL_STALE"]  # the engine's own limit, 60 s
    assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").placed
    assert seen.contexts[-1].now == datetime(2025, 3, 3, 9, 31, 1, tzinfo=UTC)
    harness.set_time("2025-03-04T00:00:00+00:00")
    assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").placed
    assert seen.contexts[-1].today.start == datetime(2025, 3, 4, tzinfo=UTC)


@pytest.mark.om_harness(now="2025-03-03T09:30:00Z", settings={"risk": {"max_orders_per_minute": 2}})
def test_the_order_rate_window_moves_with_the_clock(harness: EngineHarness) -> None:
    for _ in range(2):
        assert harness.run_sync(symbol="SOLUSDT", side="buy", qty="1").placed
    assert harness.run_sync(symbol="SOLUSDT", side="buy", qty="1").codes == ["ORDER_RATE_LIMIT"]
    harness.advance_time(seconds=61)
    assert harness.run_sync(symbol="SOLUSDT", side="buy", qty="1").placed


def test_each_harness_has_its_own_clock(harness_factory) -> None:  # type: ignore[no-untyped-def]
    frozen = harness_factory(now="2030-01-01T00:00:00Z")
    wall = harness_factory()
    assert frozen.now.year == 2030 and wall.now.year < 2030
    with pytest.raises(ValueError, match="timezone-aware"):
        frozen.set_time(datetime(2030, 1, 1))


# -- public setters -----------------------------------------------------------------------------


@pytest.mark.om_harness(settings={"risk": {"max_open_orders_per_symbol": 2}})
def test_open_orders_can_be_set(harness: EngineHarness, register_plugin: PluginRegistrar) -> None:
    seen = register_plugin(Capture())
    first = harness.set_open_order_sync("ETHUSDT", "buy", "0.5", price="2900")
    harness.set_open_order_sync("ETHUSDT", "sell", "1", price="3100", filled_qty="0.25")
    outcome = harness.run_sync(symbol="ETHUSDT", side="buy", qty="0.1")
    assert outcome.codes == ["MAX_OPEN_ORDERS"]
    orders = seen.contexts[-1].open_orders
    assert (orders[0].client_order_id, orders[0].side, orders[0].qty, orders[0].price) == (
        first,
        Side.BUY,
        Decimal("0.5"),
        Decimal("2900"),
    )
    assert orders[0].status == "new"
    assert (orders[1].filled_qty, orders[1].status) == (Decimal("0.25"), "partially_filled")
    assert harness.paper.orders == {}  # only the engine knows them


# -- the richer decision context ----------------------------------------------------------------


@pytest.mark.om_harness(now="2025-03-03T10:00:00Z", env={"OM_TRADING_DAY_START": "22:00"})
def test_the_context_has_fees_leverage_and_the_trading_days_pnl(
    harness: EngineHarness, register_plugin: PluginRegistrar
) -> None:
    seen = register_plugin(Capture())
    harness.set_position_sync("ETHUSDT", "1", realized_pnl="-120", fees_paid="3")
    harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001")
    ctx = seen.contexts[-1]
    assert ctx.fees == FeeRates(maker=Decimal("0.0002"), taker=Decimal("0.00055"))
    assert ctx.leverage == Decimal(10)
    # The day began at 22:00 UTC yesterday.
    assert (ctx.today.start, ctx.today.end) == (
        datetime(2025, 3, 2, 22, tzinfo=UTC),
        datetime(2025, 3, 3, 22, tzinfo=UTC),
    )
    assert ctx.today.total == PnL(Decimal("-120"), Decimal("3"))
    assert ctx.today.symbol("ETHUSDT").net == Decimal("-123")
    assert ctx.today.symbol("BTCUSDT") == PnL()

    harness.advance_time(hours=12, minutes=30)  # 22:30: a new trading day
    harness.set_position_sync("ETHUSDT", "0", realized_pnl="-100", fees_paid="4")
    harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001")
    today = seen.contexts[-1].today
    assert today.start == datetime(2025, 3, 3, 22, tzinfo=UTC)
    # Only what changed since the day began: +20 realized, 1 more in fees — the position
    # is flat now, and still counted.
    assert today.by_symbol == {"ETHUSDT": PnL(Decimal("20"), Decimal("1"))}


# -- an invalid decision is the plugin's --------------------------------------------------------


class Sloppy:
    @hookimpl
    def om_calculate_quantity(self, signal, context, order_type):  # type: ignore[no-untyped-def]
        return QuantityDecision(Decimal("0.0105"))  # not on BTCUSDT's 0.001 step

    @hookimpl
    def om_select_order_type(self, signal, context):  # type: ignore[no-untyped-def]
        if signal.symbol == "ETHUSDT":
            return OrderTypeDecision(OrderType.LIMIT, Decimal("2999.995"))  # off the tick
        return None


def test_an_invalid_decision_is_attributed_to_the_plugin_that_made_it(
    harness: EngineHarness, register_plugin: PluginRegistrar
) -> None:
    register_plugin(Sloppy(), name="sloppy")
    (reason,) = harness.run_sync(symbol="BTCUSDT", side="buy").reasons
    assert (reason.plugin, reason.code) == ("sloppy", "INVALID_DECISION")
    assert reason.message.startswith(
        "om_calculate_quantity returned qty 0.0105, not a positive multiple of the "
        "instrument's qty_step 0.001"
    )
    reasons = harness.run_sync(symbol="ETHUSDT", side="buy").reasons
    assert [(r.plugin, r.code, r.details["hook"]) for r in reasons] == [
        ("sloppy", "INVALID_DECISION", "om_calculate_quantity"),
        ("sloppy", "INVALID_DECISION", "om_select_order_type"),
    ]
    assert harness.paper.create_calls == []


# -- a plugin author's test run prints no warning -----------------------------------------------


def test_a_plugin_projects_test_run_has_no_warnings(pytester: pytest.Pytester) -> None:
    # A project with no pytest configuration, in an environment where pytest-asyncio is
    # installed (it comes with Order Manager's test tools).
    pytester.makepyprojecttoml('[project]\nname = "om-author"\n')
    pytester.makepyfile(
        test_author="""
        from om_plugins.testing import make_context, make_signal

        def test_unit():
            assert make_context().now.tzinfo is not None and make_signal().symbol == "BTCUSDT"

        def test_harness(harness):
            assert harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001").placed
        """
    )
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider")
    assert "asyncio" in result.stdout.str()  # pytest-asyncio was active
    assert result.parseoutcomes() == {"passed": 2}
    assert "Warning" not in result.stdout.str() + result.stderr.str()
