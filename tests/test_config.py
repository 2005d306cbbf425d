from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from om_core.config import BUILTIN_PLUGINS, ConfigError, load_settings, mask_url


def test_embedded_defaults_need_no_server() -> None:
    s = load_settings(env={})
    assert s.database_url == "sqlite+aiosqlite:///./order_manager.db"
    assert s.broker_url == "memory://"
    assert s.exchange == "paper"
    assert s.plugins == list(BUILTIN_PLUGINS)
    assert s.auto_migrate is True  # embedded database migrates itself
    assert (s.api_host, s.api_port) == ("127.0.0.1", 8000)


def test_env_values_and_builtin_expansion() -> None:
    s = load_settings(
        env={
            "OM_DATABASE_URL": "postgresql+asyncpg://om:pw@db:5432/om",
            "OM_BROKER_URL": "amqp://guest:guest@127.0.0.1:5672/",
            "OM_PLUGINS": "builtin, my_risk",
            "OM_API_KEYS": "k-trade-1-0123456:trade,sha256:" + "ab" * 32 + ":read,plain-0123456789",
            "OM_LOG_FORMAT": "json",
        }
    )
    assert s.plugins == [*BUILTIN_PLUGINS, "my_risk"]
    assert s.auto_migrate is False  # a server database is migrated by `om db upgrade`
    assert [(k.scope, k.is_hashed) for k in s.api_keys] == [
        ("trade", False),
        ("read", True),
        ("read", False),
    ]


def test_toml_file_with_plugin_tables_env_wins(tmp_path: Path) -> None:
    cfg = tmp_path / "om.toml"
    cfg.write_text(
        'exchange = "paper"\napi_port = 9000\nlog_level = "DEBUG"\n'
        '[plugins.risk]\nmax_order_notional = "2500"\n',
        encoding="utf-8",
    )
    s = load_settings(cfg, env={"OM_API_PORT": "9100"})
    assert s.api_port == 9100
    assert s.log_level == "DEBUG"
    assert s.plugin_config == {"risk": {"max_order_notional": "2500"}}


def test_every_bad_value_is_one_readable_line_with_secrets_masked() -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(
            env={
                "OM_DATABASE_URL": "mysql://root:hunter2@db/om",
                "OM_API_PORT": "http",
                "OM_LOG_FORMAT": "xml",
            }
        )
    problems = info.value.problems
    assert len(problems) == 3
    assert any(p.startswith("OM_DATABASE_URL:") for p in problems)
    assert any(p.startswith("OM_API_PORT:") for p in problems)
    assert any(p.startswith("OM_LOG_FORMAT:") for p in problems)
    assert "hunter2" not in "\n".join(problems)


def test_mask_url() -> None:
    assert mask_url("amqp://guest:secret@h:5672/") == "amqp://guest:***@h:5672/"
    assert mask_url("memory://") == "memory://"


def test_om_exits_non_zero_on_bad_config(tmp_path: Path) -> None:
    env = {**os.environ, "OM_BROKER_URL": "kafka://user:topsecret@x", "OM_PREFETCH": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "om_core.cli", "run"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert all(line.startswith("error: OM_") for line in lines)
    assert "topsecret" not in proc.stderr


def test_an_explicit_environment_ignores_the_process_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("OM_MAX_SIGNAL_AGE_SECONDS", "7")
    assert load_settings(env={}).max_signal_age_seconds == 60
    assert load_settings().max_signal_age_seconds == 7


# -- the config file: enabled list, [plugin.<name>] tables, mistakes refused ------------------

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_example() -> str:
    """The `om.toml` the README shows."""
    text = README.read_text(encoding="utf-8")
    after = text.split("Example `om.toml`:", 1)[1]
    return after.split("```toml\n", 1)[1].split("```", 1)[0]


def test_the_readme_example_loads(tmp_path: Path) -> None:
    cfg = tmp_path / "om.toml"
    cfg.write_text(readme_example(), encoding="utf-8")
    s = load_settings(cfg, env={})
    assert s.plugins == [*BUILTIN_PLUGINS, "my_risk"]  # the enabled list, from the file
    assert s.database_url == "postgresql+asyncpg://om@127.0.0.1:5432/om"
    assert s.plugin_config == {
        "risk": {"max_order_notional": "2500", "allowed_symbols": ["BTCUSDT", "ETHUSDT"]},
        "my_risk": {"max_qty": "0.5"},
    }


def test_the_environment_wins_over_the_files_enabled_list(tmp_path: Path) -> None:
    cfg = tmp_path / "om.toml"
    cfg.write_text('plugins = ["paper", "risk"]\n', encoding="utf-8")
    assert load_settings(cfg, env={}).plugins == ["paper", "risk"]
    assert load_settings(cfg, env={"OM_PLUGINS": "paper"}).plugins == ["paper"]


def test_old_plugins_tables_are_still_read_when_unambiguous(tmp_path: Path) -> None:
    cfg = tmp_path / "om.toml"
    cfg.write_text('[plugins.risk]\nmax_order_notional = "2500"\n', encoding="utf-8")
    s = load_settings(cfg, env={"OM_PLUGINS": "paper,risk"})
    assert s.plugins == ["paper", "risk"]
    assert s.plugin_config == {"risk": {"max_order_notional": "2500"}}
    both = tmp_path / "both.toml"
    both.write_text("[plugins.risk]\na = 1\n[plugin.sizing]\nb = 2\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_settings(both, env={})
    assert "both [plugins.<name>] and [plugin.<name>] tables" in info.value.problems[0]


def test_unknown_keys_and_variables_are_errors_with_a_suggestion_all_at_once(
    tmp_path: Path,
) -> None:
    cfg = tmp_path / "om.toml"
    cfg.write_text(
        'databse_url = "sqlite+aiosqlite:///x.db"\napi_port = "http"\nflavour = 1\n'
        "[plugin]\nrisk = 5\n",
        encoding="utf-8",
    )
    with pytest.raises(ConfigError) as info:
        load_settings(
            cfg, env={"OM_MAX_SIGNAL_AGE": "5", "OM_SYNC_INTERVAL_SECONDS": "0", "OM_TEST_X": "1"}
        )
    assert info.value.problems == [
        f"config file {cfg}: [plugin] must hold one table per plugin, [plugin.<name>]",
        f"config file {cfg}: unknown key 'databse_url'; did you mean 'database_url'?",
        f"config file {cfg}: unknown key 'flavour'",
        "OM_MAX_SIGNAL_AGE: not a setting of Order Manager; did you mean "
        "'OM_MAX_SIGNAL_AGE_SECONDS'? (service settings: see the README; plugin settings: "
        "OM_PLUGIN_<NAME>_<FIELD>)",
        "OM_SYNC_INTERVAL_SECONDS: not a setting of Order Manager; did you mean "
        "'OM_SYNC_INTERVAL'? (service settings: see the README; plugin settings: "
        "OM_PLUGIN_<NAME>_<FIELD>)",
        f"config file {cfg}: api_port: Input should be a valid integer, unable to parse "
        "string as an integer (got 'http')",
    ]


def test_the_process_environment_is_checked_too(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OM_LOG_LEVLE", "DEBUG")
    with pytest.raises(ConfigError, match=r"OM_LOG_LEVLE: .*did you mean 'OM_LOG_LEVEL'"):
        load_settings()


def test_trading_day_start_and_hook_budget() -> None:
    s = load_settings(env={"OM_TRADING_DAY_START": "22:00", "OM_HOOK_BUDGET_MS": "5"})
    assert (s.trading_day_start.hour, s.hook_budget_ms) == (22, 5.0)
    assert load_settings(env={}).describe()["trading_day_start"] == "00:00"
    with pytest.raises(ConfigError) as info:
        load_settings(env={"OM_TRADING_DAY_START": "22:00+02:00", "OM_HOOK_BUDGET_MS": "0"})
    assert [p.split(":")[0] for p in info.value.problems] == [
        "OM_HOOK_BUDGET_MS",
        "OM_TRADING_DAY_START",
    ]
