"""How the engine calls hooks: votes keep every reason, first-result hooks honour trylast
defaults, and a misbehaving plugin fails closed."""

from __future__ import annotations

import time
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
from om_plugins.testing import make_order
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


# -- feedback that names the culprit ------------------------------------------------------------


class SaysTrue:
    @hookimpl
    def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
        return True


class SaysMixed:
    @hookimpl
    def om_check_order(self, order, signal, context):  # type: ignore[no-untyped-def]
        return [Rejection("OK", "fine"), "not a rejection"]


class SizesWithADecimal:
    @hookimpl
    def om_calculate_quantity(self, signal, context, order_type):  # type: ignore[no-untyped-def]
        return Decimal("0.5")


class AsyncCheck:
    @hookimpl
    async def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
        return None


def test_a_vote_hook_returning_the_wrong_type_is_refused_naming_plugin_hook_and_value(
    hooks: PluginHooks, caplog: pytest.LogCaptureFixture
) -> None:
    registered(hooks, SaysTrue(), "quant_risk")
    (reason,) = hooks.check_signal(builders.signal(), builders.context())
    assert (reason.plugin, reason.code) == ("quant_risk", PLUGIN_ERROR)
    assert reason.message == (
        "om_check_signal returned True (bool); it may return a Rejection, a list of "
        "Rejection, or None"
    )
    assert reason.details == {
        "hook": "om_check_signal",
        "returned": "bool",
        "expected": "a Rejection, a list of Rejection, or None",
    }
    # Reported as the plugin's mistake, not as a crash of the engine's facade.
    assert not [r for r in caplog.records if r.exc_info]
    registered(hooks, SaysMixed(), "mixed")
    (mixed,) = hooks.check_order(make_order(), builders.signal(), builders.context())
    assert (mixed.plugin, mixed.code) == ("mixed", PLUGIN_ERROR)
    assert mixed.message.startswith(
        "om_check_order returned a list holding 'not a rejection' (str); it may return"
    )


def test_a_sizing_hook_returning_a_decimal_is_told_what_it_may_return(
    hooks: PluginHooks,
) -> None:
    registered(hooks, SyncSizing(), "sizing")
    registered(hooks, SizesWithADecimal(), "stop_sizing")
    result = hooks.calculate_quantity(
        builders.signal(), builders.context(), OrderTypeDecision(OrderType.MARKET)
    )
    assert isinstance(result, Rejection)
    assert (result.plugin, result.code) == ("stop_sizing", PLUGIN_ERROR)
    assert result.message == (
        "om_calculate_quantity returned Decimal('0.5') (Decimal); it may return "
        "QuantityDecision, Rejection or None"
    )


def test_the_awaitable_message_names_the_hook(hooks: PluginHooks) -> None:
    registered(hooks, AsyncCheck(), "async_check")
    (reason,) = hooks.check_signal(builders.signal(), builders.context())
    assert reason.message.startswith("om_check_signal is async (it returned an awaitable)")
    registered(hooks, SyncSizing(), "builtin")
    registered(hooks, AsyncSizing(), "async_sizing")
    sized = hooks.calculate_quantity(
        builders.signal(), builders.context(), OrderTypeDecision(OrderType.MARKET)
    )
    assert isinstance(sized, Rejection)
    assert sized.message.startswith("om_calculate_quantity is async")
    assert "define it with def, not async def" in sized.message


def test_first_result_decisions_say_which_plugin_decided(hooks: PluginHooks) -> None:
    registered(hooks, DefaultType(), "order_type")
    registered(hooks, LimitType(), "limits")
    decided = hooks.choose_order_type(builders.signal(), builders.context())
    assert not isinstance(decided, Rejection)
    assert (decided.plugin, decided.value.order_type) == ("limits", OrderType.LIMIT)


# -- the time budget ----------------------------------------------------------------------------


class Slow:
    @hookimpl
    def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
        time.sleep(0.005)  # the subject of the test: a hook over its budget
        return None


def _samples(plugin: str, hook: str) -> float:
    from om_core.metrics import REGISTRY

    value = REGISTRY.get_sample_value(
        "om_plugin_hook_duration_seconds_count", {"plugin": plugin, "hook": hook}
    )
    return value or 0.0


def test_a_hook_over_its_budget_is_a_warning_and_every_call_is_measured(
    caplog: pytest.LogCaptureFixture,
) -> None:
    hooks = PluginHooks(new_plugin_manager(), budget_ms=1)
    registered(hooks, Slow(), "slow_budget")
    registered(hooks, SaysNoTwice(), "quick_budget")
    before = _samples("slow_budget", "om_check_signal"), _samples("quick_budget", "om_check_signal")
    with caplog.at_level("WARNING", logger="om_core.plugins"):
        hooks.check_signal(builders.signal(), builders.context())
        hooks.check_signal(builders.signal(), builders.context())
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    # Once per plugin hook within 10 s: a slow plugin cannot flood the log.
    assert len(warnings) == 1
    assert warnings[0].startswith("plugin 'slow_budget' hook om_check_signal took ")
    assert "ms, over the 1 ms budget (OM_HOOK_BUDGET_MS)" in warnings[0]
    after = _samples("slow_budget", "om_check_signal"), _samples("quick_budget", "om_check_signal")
    assert (after[0] - before[0], after[1] - before[1]) == (2, 2)
