"""Discovery and loading through real entry points: built-ins, a throwaway third-party
distribution, and every way a plugin can be broken."""

from __future__ import annotations

import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from om_core.plugins import PluginHooks, PluginLoadError, discover, hooks_of, load_plugins
from tests import builders
from tests.plugins.distributions import install_plugin_dist

BUILTINS = {"paper", "risk", "order_type", "sizing"}

VETO = """
from om_plugins import Rejection, hookimpl

class VetoPlugin:
    @hookimpl
    def om_check_signal(self, signal, context):
        return Rejection(code="VETO", message=f"no trading {signal.symbol} today")
"""


@pytest.fixture
def veto_dist(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-veto",
        entry_points={"veto": "om_veto_plugin:VetoPlugin"},
        modules={"om_veto_plugin": VETO},
    )


def test_builtins_are_discovered_through_entry_points() -> None:
    names = {p.name for p in discover()}
    assert BUILTINS <= names
    paper = next(p for p in discover() if p.name == "paper")
    assert paper.distribution == "order-manager"


def test_third_party_plugin_is_listed_enabled_by_name_and_run(veto_dist: Path) -> None:
    found = {p.name: p for p in discover()}
    assert found["veto"].distribution == "om-veto"
    assert found["veto"].version == "0.1.0"

    # Installed but not enabled: not loaded.
    loaded = load_plugins(["risk"])
    assert "veto" not in loaded.objects

    loaded = load_plugins(["risk", "veto"])
    assert hooks_of(loaded.pm, "veto") == ["om_check_signal"]
    reasons = PluginHooks(loaded.pm).check_signal(builders.signal(), builders.context())
    assert [(r.plugin, r.code) for r in reasons] == [("veto", "VETO")]


def test_om_plugins_list_shows_builtins_and_third_party(veto_dist: Path, tmp_path: Path) -> None:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(veto_dist), *sys.path]),
        "OM_PLUGINS": "builtin,veto",
    }
    out = subprocess.run(
        [sys.executable, "-m", "om_core.cli", "plugins", "list", "--hooks"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        check=True,
    ).stdout
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    for name in BUILTINS:
        assert " yes " in rows[name], out
    assert "om-veto 0.1.0" in rows["veto"]
    assert "om_check_signal" in rows["veto"]
    # Call order: the third-party plugin is asked before the trylast built-in.
    order_line = next(line for line in out.splitlines() if "om_check_signal:" in line)
    assert order_line.index("veto") < order_line.index("risk")


@pytest.mark.parametrize(
    ("source", "expected"),
    [
        ("import does_not_exist_anywhere\n", "failed to import"),
        (
            "from om_plugins import hookimpl\n"
            "class P:\n"
            "    @hookimpl\n"
            "    def om_check_signal(self, signal, context, surprise):\n"
            "        return None\n",
            "surprise",
        ),
        (
            "from om_plugins import hookimpl\n"
            "class P:\n"
            "    @hookimpl\n"
            "    def om_chek_signal(self, signal, context):\n"
            "        return None\n",
            "unknown hook(s) om_chek_signal",
        ),
        (
            "class P:\n    om_api_version = '>=2,<3'\n",
            "requires plugin API >=2,<3",
        ),
    ],
    ids=["import-error", "wrong-signature", "unknown-hook", "api-version"],
)
def test_a_broken_enabled_plugin_stops_startup_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, source: str, expected: str
) -> None:
    install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-broken",
        entry_points={"broken": "om_broken_plugin:P"},
        modules={"om_broken_plugin": source},
    )
    with pytest.raises(PluginLoadError) as info:
        load_plugins(["risk", "broken"])
    assert info.value.plugin == "broken"
    assert expected in str(info.value)


def test_a_broken_plugin_that_is_not_enabled_does_not_matter(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-broken",
        entry_points={"broken": "om_broken_plugin:P"},
        modules={"om_broken_plugin": "raise RuntimeError('boom')\n"},
    )
    assert "risk" in load_plugins(["risk"]).objects


def test_enabling_a_plugin_that_is_not_installed_is_an_error() -> None:
    with pytest.raises(PluginLoadError, match="not installed"):
        load_plugins(["risk", "nonexistent_plugin"])


SETTINGS_PLUGIN = """
from decimal import Decimal
from pydantic import BaseModel, ConfigDict
from om_plugins import Rejection, hookimpl

class Limits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    max_qty: Decimal
    symbols: list[str] = []

class Capped:
    settings_model = Limits

    def __init__(self, settings):
        self.settings = settings

    @hookimpl
    def om_check_signal(self, signal, context):
        if signal.qty is not None and signal.qty > self.settings.max_qty:
            limit = str(self.settings.max_qty)
            return Rejection(code="CAP", message="too big", details={"max": limit})
"""


def test_plugin_settings_come_from_file_tables_and_env(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-capped",
        entry_points={"capped": "om_capped_plugin:Capped"},
        modules={"om_capped_plugin": SETTINGS_PLUGIN},
    )
    loaded = load_plugins(
        ["capped"],
        {"capped": {"max_qty": "5", "symbols": ["BTCUSDT"]}},
        env={"OM_PLUGIN_CAPPED_MAX_QTY": "0.1"},
    )
    settings = loaded.settings["capped"]
    assert settings.max_qty == Decimal("0.1")  # env wins over the file, exactly
    assert settings.symbols == ["BTCUSDT"]
    reasons = PluginHooks(loaded.pm).check_signal(
        builders.signal(qty=Decimal("0.2")), builders.context()
    )
    assert [(r.plugin, r.code, r.details["max"]) for r in reasons] == [("capped", "CAP", "0.1")]


def test_invalid_plugin_settings_name_the_plugin_and_field(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-capped",
        entry_points={"capped": "om_capped_plugin:Capped"},
        modules={"om_capped_plugin": SETTINGS_PLUGIN},
    )
    with pytest.raises(PluginLoadError) as info:
        load_plugins(["capped"], {"capped": {"max_qty": "lots", "typo": 1}}, env={})
    assert info.value.problems == [
        "plugin 'capped': unknown setting 'typo' ([plugin.capped]); its settings: max_qty, "
        "symbols",
        "plugin 'capped' setting max_qty ([plugin.capped]): Input should be a valid decimal "
        "(got 'lots')",
    ]
    with pytest.raises(PluginLoadError) as info:
        load_plugins(["capped"], {}, env={"OM_PLUGIN_CAPPED_MAX_QTY": "lots"})
    assert info.value.problems == [
        "plugin 'capped' setting max_qty (OM_PLUGIN_CAPPED_MAX_QTY): Input should be a valid "
        "decimal (got 'lots')"
    ]
