"""The paper exchange: a simulated Bybit V5 linear account (``OM_EXCHANGE=paper``)."""

from plugins_builtin.paper.exchange import PaperExchange
from plugins_builtin.paper.plugin import PaperExchangePlugin
from plugins_builtin.paper.settings import PaperInstrument, PaperSettings

__all__ = ["PaperExchange", "PaperExchangePlugin", "PaperInstrument", "PaperSettings"]
