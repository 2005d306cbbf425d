"""The template plugin: each hook on its own, then through the real engine."""

from om_template import TemplatePlugin, TemplateSettings

from om_plugins.testing import EngineHarness, make_context, make_signal


def test_blocked_symbol_is_refused_and_others_pass() -> None:
    plugin = TemplatePlugin(TemplateSettings(blocked_symbols=["DOGEUSDT"]))
    refused = plugin.om_check_signal(make_signal("DOGEUSDT"), make_context("DOGEUSDT"))
    assert refused is not None and refused.code == "SYMBOL_BLOCKED"
    assert plugin.om_check_signal(make_signal("BTCUSDT"), make_context()) is None


def test_enabled_through_its_entry_point() -> None:
    settings = {"template": {"blocked_symbols": ["BTCUSDT"]}}
    with EngineHarness(plugins=["builtin", "template"], settings=settings) as harness:
        blocked = harness.run_sync(symbol="BTCUSDT", side="buy", qty="0.001")
        assert [(r.plugin, r.code) for r in blocked.reasons] == [
            ("template", "SYMBOL_BLOCKED"),
        ]
        assert harness.run_sync(symbol="ETHUSDT", side="buy", qty="0.01").placed
