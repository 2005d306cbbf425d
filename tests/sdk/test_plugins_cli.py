"""``om plugins list --hooks`` shows, per hook, the order in which the engine asks plugins."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from om_core.plugins import PluginHooks, load_plugins
from om_plugins.testing import make_context, make_signal
from tests.plugins.distributions import install_plugin_dist
from tests.sdk.cli import om

TWO_PLUGINS = """
from om_plugins import OrderType, OrderTypeDecision, Rejection, hookimpl

class First:
    @hookimpl
    def om_check_signal(self, signal, context):
        return Rejection("FIRST", "first")

    @hookimpl
    def om_select_order_type(self, signal, context):
        return OrderTypeDecision(OrderType.MARKET)

class Second:
    @hookimpl
    def om_check_signal(self, signal, context):
        return Rejection("SECOND", "second")
"""


def test_call_order_per_hook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    site = install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-ordering",
        entry_points={"first": "om_ordering:First", "second": "om_ordering:Second"},
        modules={"om_ordering": TWO_PLUGINS},
    )
    result = om(
        "plugins",
        "list",
        "--hooks",
        cwd=tmp_path,
        OM_PLUGINS="builtin,first,second",
        PYTHONPATH=os.pathsep.join([str(site), *sys.path]),
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    order = lines[lines.index("call order per hook (first called first):") + 1 :]
    # Later-enabled plugins are asked first; the trylast built-ins are asked last.
    assert "  om_check_signal: second → first → risk" in order
    assert "  om_select_order_type: first → order_type" in order
    assert "  om_check_order: risk" in order
    assert "  om_calculate_quantity: sizing" in order

    # The engine calls them in exactly that order.
    loaded = load_plugins(["risk", "order_type", "first", "second"])
    reasons = PluginHooks(loaded.pm).check_signal(make_signal(), make_context())
    assert [(r.plugin, r.code) for r in reasons] == [("second", "SECOND"), ("first", "FIRST")]


def test_plugins_list_without_hooks_lists_every_installed_plugin(tmp_path: Path) -> None:
    result = om("plugins", "list", cwd=tmp_path, OM_PLUGINS="paper,risk")
    assert result.returncode == 0, result.stderr
    rows = {line.split()[0]: line.split()[1] for line in result.stdout.splitlines()[1:] if line}
    assert rows["paper"] == "yes" and rows["risk"] == "yes" and rows["sizing"] == "no"
    assert "call order" not in result.stdout


# -- om plugins show ----------------------------------------------------------------------------


def test_plugins_show_prints_schema_defaults_and_values_with_their_source(tmp_path: Path) -> None:
    cfg = tmp_path / "om.toml"
    cfg.write_text('[plugin.risk]\nallowed_symbols = ["BTCUSDT"]\n', encoding="utf-8")
    result = om(
        "--config",
        str(cfg),
        "plugins",
        "show",
        "risk",
        cwd=tmp_path,
        OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL="2500",
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert out.startswith("plugin risk: enabled\n")
    assert "  hooks     om_check_order, om_check_signal" in out
    block = out.split("max_order_notional: decimal or unset\n", 1)[1].split("\n\n", 1)[0]
    assert block.splitlines()[-3:] == [
        '    default   "100000"',
        '    value     "2500"  (from OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL)',
        "    variable  OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL",
    ]
    assert '    value     ["BTCUSDT"]  (from [plugin.risk])' in out
    assert "    value     unset  (from default)" in out


def test_plugins_show_masks_secrets_and_speaks_json(tmp_path: Path) -> None:
    result = om(
        "plugins", "show", "bybit", "--json", cwd=tmp_path, OM_BYBIT_API_SECRET="s3cr3t-value-x"
    )
    assert result.returncode == 0, result.stderr
    assert "s3cr3t-value-x" not in result.stdout
    info = json.loads(result.stdout)
    assert (info["name"], info["enabled"], info["env_prefix"]) == ("bybit", True, "OM_BYBIT_")
    assert info["schema"]["properties"]["env"]["default"] == "testnet"  # the JSON schema
    secret = next(s for s in info["settings"] if s["name"] == "api_secret")
    assert (secret["secret"], secret["value"], secret["source"]) == (
        True,
        "***",
        "OM_BYBIT_API_SECRET",
    )


def test_plugins_show_exits_2_on_invalid_settings_or_an_unknown_plugin(tmp_path: Path) -> None:
    bad = om("plugins", "show", "sizing", cwd=tmp_path, OM_PLUGIN_SIZING_ON_ABOVE_MAX="x")
    assert bad.returncode == 2
    assert "on_above_max (OM_PLUGIN_SIZING_ON_ABOVE_MAX)" in bad.stderr
    assert "(the settings are invalid, see below)" in bad.stdout
    unknown = om("plugins", "show", "sizeing", cwd=tmp_path)
    assert unknown.returncode == 2
    assert "is not installed; did you mean 'sizing'?" in unknown.stderr


# -- every configuration or plugin-loading error exits 2 ---------------------------------------


@pytest.mark.parametrize(
    "args",
    [("run",), ("plugins", "list"), ("order", "preview", "--signal", "{}")],
    ids=["run", "plugins-list", "preview"],
)
def test_plugin_errors_exit_2(tmp_path: Path, args: tuple[str, ...]) -> None:
    result = om(
        *args,
        cwd=tmp_path,
        OM_PLUGINS="builtin,not_there",
        OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL="lots",
        OM_API_ENABLED="false",
    )
    assert result.returncode == 2, result.stdout + result.stderr
    # Both problems at once, one line each.
    missing, invalid = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert missing.startswith("error: plugin 'not_there': is enabled but not installed")
    assert invalid == (
        "error: plugin 'risk' setting max_order_notional (OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL): "
        "Input should be a valid decimal (got 'lots')"
    )
