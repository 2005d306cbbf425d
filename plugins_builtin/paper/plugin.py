"""The plugin that registers the paper exchange under the name ``paper``."""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel

from om_plugins import ExchangeContext, hookimpl
from om_plugins.hookspecs import RegisterExchange
from plugins_builtin.paper.exchange import PaperExchange
from plugins_builtin.paper.settings import PaperSettings

__all__ = ["PaperExchangePlugin"]


class PaperExchangePlugin:
    """Provides ``OM_EXCHANGE=paper``: a simulated Bybit linear account for trying the
    service without an exchange account (see :mod:`plugins_builtin.paper.exchange`)."""

    settings_model: ClassVar[type[BaseModel]] = PaperSettings

    def __init__(self, settings: PaperSettings | None = None) -> None:
        self.settings = settings if settings is not None else PaperSettings()

    @hookimpl
    def om_register_exchanges(self, register: RegisterExchange) -> None:
        register("paper", self.create_exchange)

    def create_exchange(self, context: ExchangeContext) -> PaperExchange:
        return PaperExchange(self.settings, context)
