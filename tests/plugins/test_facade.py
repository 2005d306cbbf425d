"""How the engine calls hooks: votes keep every reason, first-result hooks honour trylast
defaults, and a misbehaving plugin fails closed."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal

import pytest

from om_core.plugins import PLUGIN_ERROR, PluginHooks, PluginLoadError, new_plugin_manager
from om_plugins import (
    OrderType,
    OrderTypeDecision,
    QuantityDecision,
    Rejection,
    hookimpl,
)
from tests import builders


@pytest.fixture
def hooks() -> Iterator[PluginHooks]:
    yield PluginHooks(new_plugin_manager())


def registered(hooks: PluginHooks, plugin: object, name: str) -> object:
    hooks.pm.register(plugin, name=name)
    return plugin


class DefaultType:
    @hookimpl(trylast=True)
    def om_select_order_type(self, signal, context):  # type: ignore[no-untyped-def]
        return OrderTypeDecision(OrderType.MARKET)


class LimitType:
    @hookimpl
    def om_select_order_type(self, signal, context):  # type: ignore[no-untyped-def]
        return OrderTypeDecision(OrderType.LIMIT, price=Decimal("59000.0"))


class Abstains:
    @hookimpl
    def om_select_order_type(self, signal, context):  # type: ignore[no-untyped-def]
        return None


def test_third_party_first_result_beats_a_trylast_default_whatever_the_order(
    hooks: PluginHooks,
) -> None:
    registered(hooks, LimitType(), "third_party")
    registered(hooks, DefaultType(), "builtin")  # registered later, still asked last
    decision = hooks.select_order_type(builders.signal(), builders.context())
    assert decision == OrderTypeDecision(OrderType.LIMIT, price=Decimal("59000.0"))
    hooks.pm.unregister(name="third_party")
    assert hooks.select_order_type(builders.signal(), builders.context()) == OrderTypeDecision(
        OrderType.MARKET
    )


def test_none_passes_to_the_next_plugin(hooks: PluginHooks) -> None:
    registered(hooks, DefaultType(), "builtin")
    registered(hooks, Abstains(), "abstains")
    decision = hooks.select_order_type(builders.signal(), builders.context())
    assert decision == OrderTypeDecision(OrderType.MARKET)


def test_no_decision_at_all_is_a_rejection_not_a_crash(hooks: PluginHooks) -> None:
    result = hooks.select_order_type(builders.signal(), builders.context())
    assert isinstance(result, Rejection) and result.code == "NO_DECISION"


class SaysNoTwice:
    @hookimpl
    def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
        return [Rejection("A", "first"), Rejection("B", "second", plugin="spoofed")]


class SaysYes:
    @hookimpl
    def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
        return None


class Explodes:
    @hookimpl
    def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
        raise ZeroDivisionError("bug in plugin")


def test_every_reason_of_every_plugin_is_kept_and_attributed(hooks: PluginHooks) -> None:
    registered(hooks, SaysNoTwice(), "strict")
    registered(hooks, SaysYes(), "lenient")
    reasons = hooks.check_signal(builders.signal(), builders.context())
    assert [(r.plugin, r.code) for r in reasons] == [("strict", "A"), ("strict", "B")]


def test_a_risk_plugin_that_raises_rejects_the_signal(hooks: PluginHooks) -> None:
    registered(hooks, SaysYes(), "lenient")
    registered(hooks, Explodes(), "buggy")
    reasons = hooks.check_signal(builders.signal(), builders.context())
    assert [(r.plugin, r.code) for r in reasons] == [("buggy", PLUGIN_ERROR)]
    assert "ZeroDivisionError" in reasons[0].message


class AsyncSizing:
    @hookimpl
    async def om_calculate_quantity(self, signal, context, order_type):  # type: ignore[no-untyped-def]
        return QuantityDecision(Decimal(1))


class SyncSizing:
    @hookimpl(trylast=True)
    def om_calculate_quantity(self, signal, context, order_type):  # type: ignore[no-untyped-def]
        return QuantityDecision(Decimal("0.5"))


def test_an_async_decision_hook_is_refused_not_taken_as_a_result(hooks: PluginHooks) -> None:
    registered(hooks, SyncSizing(), "builtin")
    registered(hooks, AsyncSizing(), "async_one")
    result = hooks.calculate_quantity(
        builders.signal(), builders.context(), OrderTypeDecision(OrderType.MARKET)
    )
    assert isinstance(result, Rejection)
    assert (result.plugin, result.code) == ("async_one", PLUGIN_ERROR)
    assert "synchronous" in result.message


class ExchangeA:
    @hookimpl
    def om_register_exchanges(self, register):  # type: ignore[no-untyped-def]
        register("demo", lambda ctx: None)


def test_an_exchange_name_registered_twice_names_both_plugins(hooks: PluginHooks) -> None:
    registered(hooks, ExchangeA(), "first")
    assert set(hooks.exchange_factories()) == {"demo"}
    registered(hooks, ExchangeA(), "second")
    with pytest.raises(PluginLoadError) as info:
        hooks.exchange_factories()
    assert {"'first'", "'second'"} <= set(str(info.value).replace(":", " ").split())


class Observer:
    def __init__(self) -> None:
        self.seen: list[str] = []

    @hookimpl
    def om_order_event(self, event):  # type: ignore[no-untyped-def]
        self.seen.append(event["event_type"])
        raise RuntimeError("observers never break trading")


def test_observers_see_events_and_their_errors_are_contained(hooks: PluginHooks) -> None:
    observer = registered(hooks, Observer(), "observer")
    hooks.order_event({"event_type": "order.created"})
    assert observer.seen == ["order.created"]  # type: ignore[attr-defined]


def test_tracing_logs_hook_calls(hooks: PluginHooks, caplog: pytest.LogCaptureFixture) -> None:
    registered(hooks, DefaultType(), "builtin")
    hooks.enable_tracing()
    caplog.set_level("INFO", logger="om_core.plugins")
    hooks.pm.hook.om_select_order_type(signal=builders.signal(), context=builders.context())
    messages = [r.getMessage() for r in caplog.records]
    assert any("hook om_select_order_type → ['builtin']" in m for m in messages)
    assert any("om_select_order_type ←" in m and " ms" in m for m in messages)
