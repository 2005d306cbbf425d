"""``om plugins list --hooks`` shows, per hook, the order in which the engine asks plugins."""

from __future__ import annotations

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
