"""The plugin is harmless until selected: settings validate without credentials, and the
factory names the missing variables."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from om_core.plugins.errors import PluginLoadError
from om_core.plugins.settings import build_plugin_settings
from om_plugins import Category, GatewayContext, PluginError
from plugins_builtin.bybit import (
    BybitEnv,
    BybitExchange,
    BybitPlugin,
    BybitSettings,
    Gateway,
    PositionModeSetting,
)
from tests.bybit.conftest import CONTEXT


def load(env: dict[str, str], file_values: dict[str, Any] | None = None) -> BybitSettings:
    settings = build_plugin_settings("bybit", BybitPlugin, BybitSettings, file_values or {}, env)
    assert isinstance(settings, BybitSettings)
    return settings


def test_validates_without_credentials_and_defaults_to_testnet() -> None:
    settings = load({})
    assert settings.env is BybitEnv.TESTNET
    assert settings.api_key is None
    assert settings.http_url == "https://api-testnet.bybit.com"
    assert settings.private_ws_url == "wss://stream-testnet.bybit.com/v5/private"
    assert settings.recv_window_ms == 5000
    assert settings.categories == [Category.LINEAR, Category.INVERSE, Category.SPOT]
    assert settings.position_mode is PositionModeSetting.AUTO
    assert settings.ban_initial_s == 60 and settings.spot_quote_coin == "USDT"


def test_categories_modes_and_bans() -> None:
    settings = load(
        {
            "OM_BYBIT_CATEGORIES": "Spot, linear,spot",
            "OM_BYBIT_POSITION_MODE": "hedge",
            "OM_BYBIT_SPOT_COINS": "btc,eth",
            "OM_BYBIT_BAN_INITIAL_S": "120",
        }
    )
    assert settings.categories == [Category.SPOT, Category.LINEAR]
    assert settings.position_mode is PositionModeSetting.HEDGE
    assert settings.spot_coins == ["BTC", "ETH"] and settings.ban_initial_s == 120
    for bad in (
        {"OM_BYBIT_CATEGORIES": "option"},
        {"OM_BYBIT_CATEGORIES": ""},
        {"OM_BYBIT_POSITION_MODE": "both"},
        {"OM_BYBIT_BAN_INITIAL_S": "10"},
        {"OM_BYBIT_BAN_INITIAL_S": "600", "OM_BYBIT_BAN_MAX_S": "300"},
    ):
        with pytest.raises(PluginLoadError):
            load(bad)


def test_reads_om_bybit_variables() -> None:
    settings = load(
        {
            "OM_BYBIT_API_KEY": "k" * 18,
            "OM_BYBIT_API_SECRET": "s" * 36,
            "OM_BYBIT_ENV": "demo",
            "OM_BYBIT_BASE_URL": "http://127.0.0.1:9/",
            "OM_BYBIT_RATE_LIMIT_CREATE_LINEAR": "20",
            "OM_BYBIT_LINEAR_SETTLE_COINS": "usdt",
            "OM_PLUGIN_BYBIT_ENV": "mainnet",  # not this plugin's prefix
        }
    )
    assert settings.env is BybitEnv.DEMO
    assert settings.http_url == "http://127.0.0.1:9"
    assert settings.private_ws_url == "wss://stream-demo.bybit.com/v5/private"
    assert settings.rate_limit_create_linear == 20
    assert settings.linear_settle_coins == ["USDT"]
    assert settings.credentials().api_secret == "s" * 36


def test_empty_credentials_count_as_missing() -> None:
    settings = load({"OM_BYBIT_API_KEY": "", "OM_BYBIT_API_SECRET": " "})
    assert settings.api_key is None and settings.api_secret is None


def test_invalid_values_name_the_variable_and_mask_secrets() -> None:
    with pytest.raises(PluginLoadError) as raised:
        load({"OM_BYBIT_ENV": "prod", "OM_BYBIT_API_SECRET": "x" * 10 + "topsecret"})
    text = str(raised.value)
    assert "OM_BYBIT_ENV" in text
    with pytest.raises(PluginLoadError) as raised:
        load({"OM_BYBIT_API_SECRET": "topsecret-value", "OM_BYBIT_TYPO": "1"})
    assert "OM_BYBIT_TYPO" in str(raised.value)
    assert "topsecret-value" not in str(raised.value)


def test_factory_names_missing_credentials() -> None:
    plugin = BybitPlugin(settings=load({"OM_BYBIT_API_KEY": "key-only"}))
    with pytest.raises(PluginError) as raised:
        plugin.create_exchange(CONTEXT)
    assert "OM_BYBIT_API_SECRET" in str(raised.value)
    assert "OM_BYBIT_API_KEY" not in str(raised.value)
    plugin = BybitPlugin(settings=load({}))
    with pytest.raises(PluginError, match="OM_BYBIT_API_KEY and OM_BYBIT_API_SECRET"):
        plugin.create_exchange(CONTEXT)


def test_secrets_do_not_show_in_repr() -> None:
    settings = load({"OM_BYBIT_API_KEY": "visible-key", "OM_BYBIT_API_SECRET": "hidden-secret"})
    assert "hidden-secret" not in repr(settings)
    assert "hidden-secret" not in repr(settings.credentials())


def test_registers_the_bybit_factory() -> None:
    registered: dict[str, Any] = {}
    BybitPlugin().om_register_exchanges(register=registered.__setitem__)
    assert list(registered) == ["bybit"]


async def _publish(body: bytes, message_id: str, type: str) -> None:
    """Drops what it is given."""


def test_registers_the_ws_gateway_under_the_same_name() -> None:
    registered: dict[str, Any] = {}
    plugin = BybitPlugin(
        settings=load(
            {
                "OM_BYBIT_API_KEY": "k",
                "OM_BYBIT_API_SECRET": "s",
                "OM_BYBIT_WS_URL": "ws://127.0.0.1:9/v5/private",
                "OM_BYBIT_ACCOUNT_LABEL": "main",
            }
        )
    )
    plugin.om_register_stream_gateways(register=registered.__setitem__)
    assert list(registered) == ["bybit"]
    gateway = registered["bybit"](GatewayContext(publish=_publish))
    assert isinstance(gateway, Gateway)
    assert gateway.config.ws_url == "ws://127.0.0.1:9/v5/private"
    assert gateway.config.account == "main"
    with pytest.raises(PluginError, match="OM_BYBIT_API_KEY"):
        BybitPlugin(settings=load({})).create_gateway(GatewayContext(publish=_publish))


async def test_resend_guard_follows_the_receive_window() -> None:
    settings = load(
        {"OM_BYBIT_API_KEY": "k", "OM_BYBIT_API_SECRET": "s", "OM_BYBIT_RECV_WINDOW_MS": "8000"}
    )
    exchange = BybitExchange(settings, CONTEXT)
    try:
        assert exchange.resend_guard_seconds == 13.0
    finally:
        await exchange.close()


async def test_mainnet_start_warns(caplog: pytest.LogCaptureFixture) -> None:
    settings = load(
        {"OM_BYBIT_API_KEY": "k", "OM_BYBIT_API_SECRET": "s", "OM_BYBIT_ENV": "mainnet"}
    )
    exchange = BybitExchange(settings, CONTEXT)
    try:
        with caplog.at_level(logging.INFO, logger="plugins_builtin.bybit"):
            await exchange.start()
    finally:
        await exchange.close()
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings and "MAINNET" in warnings[0].getMessage()
