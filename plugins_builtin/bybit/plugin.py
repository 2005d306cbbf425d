"""The plugin that registers the Bybit exchange and its WS-Gateway under the name ``bybit``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from om_plugins import ExchangeContext, GatewayContext, hookimpl
from om_plugins.hookspecs import RegisterExchange, RegisterStreamGateway
from plugins_builtin.bybit.adapter import BybitExchange
from plugins_builtin.bybit.gateway import Gateway, GatewayConfig
from plugins_builtin.bybit.settings import ENV_PREFIX, BybitSettings

__all__ = ["BybitPlugin"]


class BybitPlugin:
    """Provides ``OM_EXCHANGE=bybit``: a Bybit V5 unified trading account over REST, and the
    WS-Gateway that brings its private order stream onto ``ws-gateway.order``.

    Loaded with the other built-ins whichever exchange is selected; it registers its
    factories and does nothing else until ``OM_EXCHANGE=bybit`` asks for them. The
    credentials are checked when a factory builds the adapter or the gateway.
    """

    settings_model: ClassVar[type[BaseModel]] = BybitSettings
    settings_env_prefix: ClassVar[str] = ENV_PREFIX

    def __init__(self, settings: BybitSettings | None = None) -> None:
        self.settings = settings if settings is not None else BybitSettings()

    @hookimpl
    def om_register_exchanges(self, register: RegisterExchange) -> None:
        register("bybit", self.create_exchange)

    @hookimpl
    def om_register_stream_gateways(self, register: RegisterStreamGateway) -> None:
        register("bybit", self.create_gateway)

    def create_exchange(self, context: ExchangeContext) -> BybitExchange:
        return BybitExchange(self.settings, context)

    def create_gateway(self, context: GatewayContext) -> Gateway:
        return Gateway(GatewayConfig.from_bybit(self.settings), context)
