"""OM_<X>_FILE: every secret setting can come from a file (Docker secrets, systemd
credentials) — the service's own and the plugins'."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import BaseModel, SecretStr

from om_core.cli import _secrets
from om_core.config import SECRET_SETTINGS, ConfigError, Settings, load_settings
from om_core.plugins.errors import PluginLoadError
from om_core.plugins.settings import build_plugin_settings
from om_core.secret_files import secret_fields
from plugins_builtin.bybit import BybitPlugin, BybitSettings


def secret(tmp_path: Path, name: str, content: str) -> str:
    path = tmp_path / name
    path.write_text(content, encoding="utf-8")
    return str(path)


def test_every_secret_setting_has_a_file_variant(tmp_path: Path) -> None:
    env = {
        "OM_DATABASE_URL_FILE": secret(tmp_path, "db", "postgresql+asyncpg://om:pw@db/om\n"),
        "OM_BROKER_URL_FILE": secret(tmp_path, "mq", "amqp://om:pw2@mq:5672/\r\n"),
        "OM_API_KEYS_FILE": secret(tmp_path, "keys", "k-one-0123456789:trade,k-two-0123456789\n"),
    }
    s = load_settings(env=env)
    assert s.database_url == "postgresql+asyncpg://om:pw@db/om"  # final line break dropped
    assert s.broker_url == "amqp://om:pw2@mq:5672/"
    assert [(k.secret.get_secret_value(), k.scope) for k in s.api_keys] == [
        ("k-one-0123456789", "trade"),
        ("k-two-0123456789", "read"),
    ]
    # The file names are consumed, not kept next to the values.
    assert s.database_url_file is None
    assert set(SECRET_SETTINGS) <= set(Settings.model_fields)
    for name in SECRET_SETTINGS:
        assert f"{name}_file" in Settings.model_fields


def test_from_the_process_environment_and_the_config_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for key in list(os.environ):
        if key.startswith("OM_"):
            monkeypatch.delenv(key)
    monkeypatch.setenv("OM_BROKER_URL_FILE", secret(tmp_path, "mq", "amqp://a:b@h/\n"))
    config = tmp_path / "om.toml"
    config.write_text(f'database_url_file = "{secret(tmp_path, "db", "sqlite+aiosqlite:///x")}"\n')
    s = load_settings(config)
    assert (s.broker_url, s.database_url) == ("amqp://a:b@h/", "sqlite+aiosqlite:///x")


def test_a_value_and_its_file_together_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(
            env={
                "OM_DATABASE_URL": "postgresql+asyncpg://om:hunter2@db/om",
                "OM_DATABASE_URL_FILE": secret(tmp_path, "db", "postgresql+asyncpg://x@y/z"),
            }
        )
    assert raised.value.problems == [
        "OM_DATABASE_URL and OM_DATABASE_URL_FILE are both set; set only one"
    ]


def test_an_unreadable_file_names_the_variable_and_the_path(tmp_path: Path) -> None:
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as raised:
        load_settings(env={"OM_API_KEYS_FILE": str(missing)})
    [problem] = raised.value.problems
    assert problem.startswith(f"OM_API_KEYS_FILE: cannot read {missing}")


def test_what_a_file_holds_is_validated_like_the_variable(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as raised:
        load_settings(env={"OM_BROKER_URL_FILE": secret(tmp_path, "mq", "kafka://u:pw@h")})
    [problem] = raised.value.problems
    assert problem.startswith("OM_BROKER_URL:") and "pw" not in problem


# -- plugins -------------------------------------------------------------------------------


def test_bybit_keys_from_files(tmp_path: Path) -> None:
    env = {
        "OM_BYBIT_API_KEY_FILE": secret(tmp_path, "k", "the-key\n"),
        "OM_BYBIT_API_SECRET_FILE": secret(tmp_path, "s", "the-secret\n"),
    }
    settings = build_plugin_settings("bybit", BybitPlugin, BybitSettings, {}, env)
    assert isinstance(settings, BybitSettings)
    credentials = settings.credentials()
    assert (credentials.api_key, credentials.api_secret) == ("the-key", "the-secret")
    assert secret_fields(BybitSettings) == ["api_key", "api_secret"]
    # In the config file's table too.
    table = {"api_key_file": env["OM_BYBIT_API_KEY_FILE"], "api_secret": "inline"}
    settings = build_plugin_settings("bybit", BybitPlugin, BybitSettings, table, {})
    assert isinstance(settings, BybitSettings)
    assert settings.credentials().api_key == "the-key"


def test_only_secret_plugin_settings_have_a_file_variant(tmp_path: Path) -> None:
    env = {"OM_BYBIT_BASE_URL_FILE": secret(tmp_path, "u", "http://127.0.0.1:1\n")}
    with pytest.raises(PluginLoadError) as raised:
        build_plugin_settings("bybit", BybitPlugin, BybitSettings, {}, env)
    assert "base_url_file" in str(raised.value)


class _Vault(BaseModel):
    token: SecretStr | None = None
    region: str = "eu"


class _VaultPlugin:
    settings_model = _Vault


def test_a_third_party_plugins_secret_from_a_file(tmp_path: Path) -> None:
    env = {"OM_PLUGIN_VAULT_TOKEN_FILE": secret(tmp_path, "t", "s3cr3t\n")}
    settings = build_plugin_settings("vault", _VaultPlugin, _Vault, {}, env)
    assert isinstance(settings, _Vault) and settings.token is not None
    assert settings.token.get_secret_value() == "s3cr3t"
    both = {**env, "OM_PLUGIN_VAULT_TOKEN": "other"}
    with pytest.raises(PluginLoadError) as raised:
        build_plugin_settings("vault", _VaultPlugin, _Vault, {}, both)
    assert "OM_PLUGIN_VAULT_TOKEN and OM_PLUGIN_VAULT_TOKEN_FILE are both set" in str(
        raised.value.problems
    )


def test_secrets_from_files_are_scrubbed_from_logs_before_plugins_read_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OM_BYBIT_API_SECRET_FILE", secret(tmp_path, "s", "file-held-secret\n"))
    assert "file-held-secret" in _secrets(load_settings(env={}))


def test_om_reads_the_files_and_never_prints_their_contents(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OM_")}
    env["OM_DATABASE_URL_FILE"] = secret(tmp_path, "db", "mysql://root:topsecret-pw@db/om\n")
    proc = subprocess.run(
        [sys.executable, "-m", "om_core.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: OM_DATABASE_URL: ")
    assert "topsecret-pw" not in proc.stdout + proc.stderr
    env["OM_DATABASE_URL_FILE"] = str(tmp_path / "absent")
    proc = subprocess.run(
        [sys.executable, "-m", "om_core.cli", "run"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: OM_DATABASE_URL_FILE: cannot read")
