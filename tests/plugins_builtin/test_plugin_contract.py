"""The built-ins load and behave exactly like third-party plugins would."""

from __future__ import annotations

import importlib.metadata
from decimal import Decimal
from typing import Any

import pluggy
import pytest
from pydantic import BaseModel, ValidationError

import om_plugins
from om_plugins import (
    DecisionContext,
    ExchangeAdapter,
    ExchangeContext,
    ExchangeFactory,
    OrderType,
    OrderTypeDecision,
    QuantityDecision,
    Signal,
    TimeInForce,
    hookimpl,
)
from om_plugins.hookspecs import PROJECT_NAME
from plugins_builtin.order_type import OrderTypePlugin
from plugins_builtin.paper import PaperExchange, PaperExchangePlugin, PaperSettings
from plugins_builtin.risk import RiskPlugin
from plugins_builtin.sizing import SizingPlugin
from tests.plugins_builtin.builders import context, signal

ENTRY_POINTS = {
    "paper": PaperExchangePlugin,
    "risk": RiskPlugin,
    "order_type": OrderTypePlugin,
    "sizing": SizingPlugin,
}


def manager(*plugins: object) -> pluggy.PluginManager:
    pm = pluggy.PluginManager(PROJECT_NAME)
    pm.add_hookspecs(om_plugins.hookspecs)
    for plugin in plugins:
        pm.register(plugin)  # validates every hookimpl against its spec
    pm.check_pending()
    return pm


def builtins() -> list[object]:
    return [cls() for cls in ENTRY_POINTS.values()]


def test_entry_points_name_the_builtin_classes() -> None:
    found = {
        ep.name: ep.load()
        for ep in importlib.metadata.entry_points(group="order_manager.plugins")
        if ep.name in ENTRY_POINTS
    }
    assert found == ENTRY_POINTS


@pytest.mark.parametrize("cls", ENTRY_POINTS.values())
def test_each_plugin_is_built_from_its_validated_settings_model(cls: Any) -> None:
    model = cls.settings_model
    assert issubclass(model, BaseModel)
    assert model.model_config.get("extra") == "forbid"
    settings = model.model_validate({})
    assert cls(settings=settings).settings is settings
    with pytest.raises(ValidationError):
        model.model_validate({"no_such_setting": "1"})


def test_all_builtins_register_against_the_hookspecs() -> None:
    manager(*builtins())


@pytest.mark.parametrize(
    "hook", ["om_check_signal", "om_select_order_type", "om_calculate_quantity", "om_check_order"]
)
def test_default_decision_hooks_run_last(hook: str) -> None:
    pm = manager(*builtins())
    impls = getattr(pm.hook, hook).get_hookimpls()
    assert impls
    assert all(impl.trylast for impl in impls)


class MarketAlways:
    """A third-party plugin that insists on market orders and 0.5 BTC."""

    @hookimpl
    def om_select_order_type(self, signal: Signal, context: DecisionContext) -> OrderTypeDecision:
        return OrderTypeDecision(order_type=OrderType.MARKET, time_in_force=TimeInForce.FOK)

    @hookimpl
    def om_calculate_quantity(
        self, signal: Signal, context: DecisionContext, order_type: OrderTypeDecision
    ) -> QuantityDecision:
        return QuantityDecision(qty=Decimal("0.5"))


def test_a_third_party_plugin_overrides_the_defaults_even_when_registered_first() -> None:
    pm = manager(MarketAlways(), *builtins())
    sig, ctx = signal(price=Decimal(59000)), context()
    decision = pm.hook.om_select_order_type(signal=sig, context=ctx)
    assert decision.time_in_force is TimeInForce.FOK
    qty = pm.hook.om_calculate_quantity(signal=sig, context=ctx, order_type=decision)
    assert qty == QuantityDecision(qty=Decimal("0.5"))


def test_without_overrides_the_defaults_decide() -> None:
    pm = manager(*builtins())
    sig, ctx = signal(price=Decimal(59000)), context()
    decision = pm.hook.om_select_order_type(signal=sig, context=ctx)
    assert decision == OrderTypeDecision(OrderType.LIMIT, Decimal(59000), TimeInForce.GTC)
    qty = pm.hook.om_calculate_quantity(signal=sig, context=ctx, order_type=decision)
    # 1 % of 100000 USDT at 59000 → 0.016 BTC
    assert qty == QuantityDecision(qty=Decimal("0.016"))
    assert pm.hook.om_check_signal(signal=sig, context=ctx) == [[]]


def test_paper_plugin_registers_a_paper_exchange_factory() -> None:
    registered: dict[str, ExchangeFactory] = {}

    def register(name: str, factory: ExchangeFactory) -> None:
        assert name not in registered
        registered[name] = factory

    plugin = PaperExchangePlugin(settings=PaperSettings(random_walk=False))
    manager(plugin).hook.om_register_exchanges(register=register)

    async def publish(message: Any) -> None:
        return None

    adapter = registered["paper"](ExchangeContext(publish_reports=publish))
    assert isinstance(adapter, ExchangeAdapter)
    assert isinstance(adapter, PaperExchange)
    assert adapter.name == "paper"
