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
            "OM_API_KEYS": "k-trade-1:trade,sha256:" + "ab" * 32 + ":read,plainkey",
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
