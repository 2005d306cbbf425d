"""The plugin that registers the Bybit exchange under the name ``bybit``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from om_plugins import ExchangeContext, hookimpl
from om_plugins.hookspecs import RegisterExchange
from plugins_builtin.bybit.adapter import BybitExchange
from plugins_builtin.bybit.settings import ENV_PREFIX, BybitSettings

__all__ = ["BybitPlugin"]


class BybitPlugin:
    """Provides ``OM_EXCHANGE=bybit``: a Bybit V5 unified trading account over REST.

    Loaded with the other built-ins whichever exchange is selected; it registers its factory
    and does nothing else until ``OM_EXCHANGE=bybit`` asks for it. The credentials are
    checked when the factory builds the adapter.
    """

    settings_model: ClassVar[type[BaseModel]] = BybitSettings
    settings_env_prefix: ClassVar[str] = ENV_PREFIX

    def __init__(self, settings: BybitSettings | None = None) -> None:
        self.settings = settings if settings is not None else BybitSettings()

    @hookimpl
    def om_register_exchanges(self, register: RegisterExchange) -> None:
        register("bybit", self.create_exchange)

    def create_exchange(self, context: ExchangeContext) -> BybitExchange:
        return BybitExchange(self.settings, context)
