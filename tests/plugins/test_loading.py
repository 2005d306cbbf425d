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
            "class P:\n    om_api_version = '>=3,<4'\n",
            "requires plugin API >=3,<4",
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
        "plugin 'capped': unknown setting 'typo' ([plugin.capped]); its settings: max_qty, symbols",
        "plugin 'capped' setting max_qty ([plugin.capped]): Input should be a valid decimal "
        "(got 'lots')",
    ]
    with pytest.raises(PluginLoadError) as info:
        load_plugins(["capped"], {}, env={"OM_PLUGIN_CAPPED_MAX_QTY": "lots"})
    assert info.value.problems == [
        "plugin 'capped' setting max_qty (OM_PLUGIN_CAPPED_MAX_QTY): Input should be a valid "
        "decimal (got 'lots')"
    ]


# -- configuration mistakes are refused, every one at once --------------------------------------


def _capped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str = "quant_risk") -> None:
    install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist=f"om-{name.replace('_', '-')}",
        entry_points={name: "om_capped_plugin:Capped"},
        modules={"om_capped_plugin": SETTINGS_PLUGIN},
    )


def test_the_readme_example_loads_with_its_plugins(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from om_core.config import load_settings
    from tests.test_config import readme_example

    _capped(tmp_path, monkeypatch, name="my_risk")
    cfg = tmp_path / "om.toml"
    cfg.write_text(readme_example(), encoding="utf-8")
    settings = load_settings(cfg, env={})
    loaded = load_plugins(settings.plugins, settings.plugin_config, env={})
    assert loaded.settings["risk"].max_order_notional == Decimal("2500")
    assert loaded.settings["risk"].allowed_symbols == ["BTCUSDT", "ETHUSDT"]
    assert loaded.settings["my_risk"].max_qty == Decimal("0.5")


def test_settings_for_a_misspelt_plugin_name_are_an_error_with_a_suggestion(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-quant",
        entry_points={
            "quant_risk": "om_capped_plugin:Capped",
            "quant_order_type": "om_capped_plugin:Capped",
        },
        modules={"om_capped_plugin": SETTINGS_PLUGIN},
    )
    with pytest.raises(PluginLoadError) as info:
        load_plugins(
            ["risk", "quant_order_type", "quant_risk"],
            {"quant_risk": {"max_qty": "1"}, "quant_ordertype": {"max_qty": "1"}},
            env={"OM_PLUGIN_QUANTRISK_MAX_QTY": "0.1"},
        )
    # Without these errors both limits would silently be off (quant_order_type's max_qty is
    # required, so it is reported missing too).
    assert info.value.problems == [
        "plugin 'quant_ordertype': [plugin.quant_ordertype] sets plugin 'quant_ordertype', "
        "which is not installed; did you mean 'quant_order_type'?",
        "plugin 'quant_risk': OM_PLUGIN_QUANTRISK_MAX_QTY names no installed plugin; did you "
        "mean OM_PLUGIN_QUANT_RISK_MAX_QTY? (enabled: risk, quant_order_type, quant_risk)",
        "plugin 'quant_order_type' setting max_qty (OM_PLUGIN_QUANT_ORDER_TYPE_MAX_QTY or "
        "[plugin.quant_order_type]): Field required",
    ]


def test_settings_for_a_plugin_that_is_not_enabled_are_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _capped(tmp_path, monkeypatch)
    with pytest.raises(PluginLoadError) as info:
        load_plugins(
            ["risk"],
            {"quant_risk": {"max_qty": "1"}},
            env={"OM_PLUGIN_QUANT_RISK_MAX_QTY": "1", "OM_BYBIT_API_KEY": "key-123456"},
        )
    assert info.value.problems == [
        "plugin 'quant_risk': [plugin.quant_risk] sets plugin 'quant_risk', which is not "
        "enabled: add it to plugins / OM_PLUGINS, or remove the table",
        "plugin 'bybit': OM_BYBIT_API_KEY looks like a setting of plugin 'bybit', which is not "
        "enabled: add it to OM_PLUGINS, or unset the variable",
        "plugin 'quant_risk': OM_PLUGIN_QUANT_RISK_MAX_QTY sets plugin 'quant_risk', which is "
        "not enabled: add it to OM_PLUGINS, or unset the variable",
    ]
    assert info.value.plugins == ["quant_risk", "bybit"]
    with pytest.raises(PluginLoadError) as info:
        load_plugins(["risk"], env={"OM_RISK_MAX_ORDER_NOTIONAL": "1"})  # PLUGIN_ forgotten
    assert info.value.problems == [
        "plugin 'risk': OM_RISK_MAX_ORDER_NOTIONAL is not read: plugin 'risk' takes its "
        "settings from OM_PLUGIN_RISK_<FIELD>; did you mean OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL?"
    ]


def test_invalid_json_in_a_structured_setting_is_an_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _capped(tmp_path, monkeypatch)
    env = {"OM_PLUGIN_QUANT_RISK_MAX_QTY": "1", "OM_PLUGIN_QUANT_RISK_SYMBOLS": '["BTC",]'}
    with pytest.raises(PluginLoadError) as info:
        load_plugins(["quant_risk"], {}, env=env)
    assert info.value.problems == [
        "plugin 'quant_risk' setting symbols (OM_PLUGIN_QUANT_RISK_SYMBOLS): invalid JSON: "
        "Expecting value at column 8 (got '[\"BTC\",]')"
    ]
    env["OM_PLUGIN_QUANT_RISK_SYMBOLS"] = '["BTC"]'
    assert load_plugins(["quant_risk"], {}, env=env).settings["quant_risk"].symbols == ["BTC"]


def test_bad_settings_of_several_plugins_are_all_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _capped(tmp_path, monkeypatch)
    env = {
        "OM_PLUGIN_QUANT_RISK_MAX_QTY": "lots",
        "OM_PLUGIN_RISK_MAX_ORDER_NOTIONL": "5",
        "OM_PLUGIN_SIZING_ON_ABOVE_MAX": "explode",
    }
    with pytest.raises(PluginLoadError) as info:
        load_plugins(["risk", "sizing", "quant_risk", "missing_one"], {}, env=env)
    problems = info.value.problems
    assert problems[0].startswith("plugin 'missing_one': is enabled but not installed")
    assert problems[1:] == [
        "plugin 'risk': unknown setting 'max_order_notionl' (OM_PLUGIN_RISK_MAX_ORDER_NOTIONL)"
        "; did you mean 'OM_PLUGIN_RISK_MAX_ORDER_NOTIONAL'?; its settings: allowed_symbols, "
        "max_signal_age_seconds, min_strength, max_open_orders_per_symbol, "
        "max_orders_per_minute, max_order_notional, max_position_notional, max_gross_exposure",
        "plugin 'sizing' setting on_above_max (OM_PLUGIN_SIZING_ON_ABOVE_MAX): Input should be "
        "'cap' or 'reject' (got 'explode')",
        "plugin 'quant_risk' setting max_qty (OM_PLUGIN_QUANT_RISK_MAX_QTY): Input should be a "
        "valid decimal (got 'lots')",
    ]
    assert info.value.plugins == ["missing_one", "risk", "sizing", "quant_risk"]


NO_HOOKS = """
from om_plugins import Rejection

class Forgetful:
    def om_check_signal(self, signal, context):  # @hookimpl forgotten
        return Rejection("NO", "never asked")

class Empty:
    pass
"""


def test_a_plugin_without_hook_implementations_is_an_error_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-forgetful",
        entry_points={"forgetful": "om_forgetful:Forgetful", "empty": "om_forgetful:Empty"},
        modules={"om_forgetful": NO_HOOKS},
    )
    with pytest.raises(PluginLoadError) as info:
        load_plugins(["risk", "forgetful", "empty"], env={})
    forgetful, empty = info.value.problems
    assert forgetful == (
        "plugin 'forgetful': implements no hooks: om_check_signal is not marked @hookimpl "
        "(from om_plugins import hookimpl)"
    )
    assert empty.startswith("plugin 'empty': implements no hooks: implement one of the hooks (")


def test_decision_plugins_declaring_1_x_or_2_keep_working_and_others_are_told_why(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = (
        "from om_plugins import hookimpl\n"
        "class Old:\n    om_api_version = '>=1,<3'\n"
        "    @hookimpl\n    def om_check_signal(self, signal, context):\n        return None\n"
        "class Pinned(Old):\n    om_api_version = '==1.0.0'\n"
    )
    install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-versions",
        entry_points={"old": "om_versions:Old", "pinned": "om_versions:Pinned"},
        modules={"om_versions": source},
    )
    assert "old" in load_plugins(["old"], env={}).objects
    with pytest.raises(PluginLoadError) as info:
        load_plugins(["pinned"], env={})
    assert info.value.problems == [
        "plugin 'pinned': requires plugin API ==1.0.0, this Order Manager provides 2.0.0 "
        "(plugin API 2.0 changed only the exchange adapter interface: a plugin with decision "
        'hooks only, written for 1.x, declares om_api_version = ">=1,<3" (docs/plugins.md, '
        "'Changes in 2.0'))"
    ]


def test_a_plugin_for_api_1_is_told_what_changed_in_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    install_plugin_dist(
        tmp_path,
        monkeypatch,
        dist="om-old",
        entry_points={"old_risk": "om_old_plugin:P"},
        modules={"om_old_plugin": "class P:\n    om_api_version = '>=1,<2'\n"},
    )
    with pytest.raises(PluginLoadError) as info:
        load_plugins(["old_risk"])
    message = str(info.value)
    assert "requires plugin API >=1,<2, this Order Manager provides 2.0.0" in message
    assert 'declares om_api_version = ">=1,<3"' in message
