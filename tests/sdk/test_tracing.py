"""OM_TRACE_PLUGINS: every hook call is logged — also the decision hooks, which the engine
calls implementation by implementation, past pluggy's own monitoring."""

from __future__ import annotations

import logging

import pytest

from om_core.plugins import PluginHooks, new_plugin_manager
from om_plugins import Rejection, hookimpl
from om_plugins.testing import EngineHarness, make_context, make_order, make_signal


class Veto:
    @hookimpl
    def om_check_signal(self, signal, context):  # type: ignore[no-untyped-def]
        return Rejection("VETO", "no")


class Broken:
    @hookimpl
    def om_check_order(self, order, signal, context):  # type: ignore[no-untyped-def]
        raise ValueError("oops")


def _traces(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "om_core.plugins"]


def test_decision_hooks_are_traced_per_plugin(caplog: pytest.LogCaptureFixture) -> None:
    pm = new_plugin_manager()
    pm.register(Veto(), name="veto")
    pm.register(Broken(), name="broken")
    hooks = PluginHooks(pm, trace=True)
    signal, ctx = make_signal(signal_id="traced-1"), make_context()
    with caplog.at_level(logging.INFO, logger="om_core.plugins"):
        hooks.check_signal(signal, ctx)
        hooks.check_order(make_order(signal), signal, ctx)
    traces = _traces(caplog)
    veto = next(t for t in traces if t.startswith("hook om_check_signal [veto]"))
    assert "args=signal=Signal(traced-1), context=DecisionContext(" in veto
    assert "Rejection(code='VETO'" in veto and veto.endswith(" ms")
    broken = next(t for t in traces if t.startswith("hook om_check_order [broken]"))
    assert "raised ValueError('oops')" in broken


def test_no_trace_lines_when_tracing_is_off(caplog: pytest.LogCaptureFixture) -> None:
    pm = new_plugin_manager()
    pm.register(Veto(), name="veto")
    with caplog.at_level(logging.INFO, logger="om_core.plugins"):
        PluginHooks(pm).check_signal(make_signal(), make_context())
    assert _traces(caplog) == []


def test_om_trace_plugins_traces_a_whole_signal(caplog: pytest.LogCaptureFixture) -> None:
    with (
        caplog.at_level(logging.INFO, logger="om_core.plugins"),
        EngineHarness(env={"OM_TRACE_PLUGINS": "true"}) as harness,
    ):
        assert harness.run_sync(signal_id="traced-2", symbol="BTCUSDT", side="buy").placed
    traces = _traces(caplog)
    for prefix in (
        "hook om_startup → ",  # through pluggy's monitoring
        "hook om_check_signal [risk] args=signal=Signal(traced-2)",
        "hook om_select_order_type [order_type]",
        "hook om_calculate_quantity [sizing]",
        "hook om_check_order [risk]",
    ):
        assert any(t.startswith(prefix) for t in traces), (prefix, traces)
