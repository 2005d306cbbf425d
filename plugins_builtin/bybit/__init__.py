"""The Bybit V5 exchange (``OM_EXCHANGE=bybit``), on pybit.

:mod:`.settings` (``OM_BYBIT_*``), :mod:`.client` (pybit in bounded thread pools),
:mod:`.ratelimit` (per-endpoint request budgets), :mod:`.errors` (``retCode`` → outcome),
:mod:`.convert` (JSON → SDK types) and :mod:`.adapter` (the ``ExchangeAdapter``).
"""

from plugins_builtin.bybit.adapter import BybitExchange
from plugins_builtin.bybit.plugin import BybitPlugin
from plugins_builtin.bybit.settings import BybitEnv, BybitSettings

__all__ = ["BybitEnv", "BybitExchange", "BybitPlugin", "BybitSettings"]
