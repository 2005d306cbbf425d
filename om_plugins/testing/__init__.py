"""The plugin test kit: an in-process engine, plugin registration and data builders.

Installed with Order Manager and active in pytest automatically (a ``pytest11`` entry
point), it gives every test these fixtures — no broker, database or exchange to set up:

``harness``
    an :class:`EngineHarness`: the real engine on the paper exchange with the built-in
    plugins. ``outcome = harness.run_sync({"symbol": "BTCUSDT", "side": "buy", "qty":
    "0.01"})`` (or ``await harness.run(...)`` in an async test) runs a signal through the
    whole pipeline and returns an :class:`Outcome`. Configure it per test with
    ``@pytest.mark.om_harness(plugins=["builtin", "my_plugin"], settings={...})``.
``harness_factory``
    builds more harnesses (``harness_factory(plugins=[...], prices={...})``), closed after
    the test.
``register_plugin``
    a :class:`PluginRegistrar`: ``register_plugin(MyRisk())`` registers a plugin for one
    test — on the ``harness`` when the test uses it, else on a fresh plugin manager whose
    hooks you call through ``register_plugin.hooks``.

and the builders ``make_signal``, ``make_context``, ``make_instrument``, ``make_position``,
``make_balance``, ``make_open_order``, ``make_order``, ``make_fee_rates`` and
``make_trading_day`` for one-line unit tests of a hook.
See ``docs/plugins.md``, "Testing a plugin".
"""

from __future__ import annotations

from om_core.tools.outcomes import OrderResult, Outcome, Reason
from om_plugins.testing.builders import (
    NOW,
    make_balance,
    make_context,
    make_fee_rates,
    make_instrument,
    make_open_order,
    make_order,
    make_position,
    make_signal,
    make_trading_day,
    signal_payload,
)
from om_plugins.testing.harness import EngineHarness, HarnessClock, SignalInput
from om_plugins.testing.registry import PluginRegistrar, plugin_name

__all__ = [
    "NOW",
    "EngineHarness",
    "HarnessClock",
    "OrderResult",
    "Outcome",
    "PluginRegistrar",
    "Reason",
    "SignalInput",
    "make_balance",
    "make_context",
    "make_fee_rates",
    "make_instrument",
    "make_open_order",
    "make_order",
    "make_position",
    "make_signal",
    "make_trading_day",
    "plugin_name",
    "signal_payload",
]
