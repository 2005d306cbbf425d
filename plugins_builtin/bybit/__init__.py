"""The Bybit V5 exchange (``OM_EXCHANGE=bybit``), on pybit.

:mod:`.settings` (``OM_BYBIT_*``), :mod:`.client` (pybit in bounded thread pools),
:mod:`.ratelimit` (per-endpoint request budgets), :mod:`.ban` (HTTP 403/429 pauses),
:mod:`.codes` (Bybit's codes → neutral reasons), :mod:`.errors` (failed requests → outcomes),
:mod:`.decode` (orders, executions, positions and stream messages → neutral reports),
:mod:`.convert` (requests, instruments, balances, tickers), :mod:`.adapter` (the
``ExchangeAdapter``), :mod:`.gateway` and :mod:`.stream` (the WS-Gateway).
"""

from plugins_builtin.bybit.adapter import BybitExchange
from plugins_builtin.bybit.gateway import Gateway, GatewayConfig
from plugins_builtin.bybit.plugin import BybitPlugin
from plugins_builtin.bybit.settings import BybitEnv, BybitSettings, PositionModeSetting

__all__ = [
    "BybitEnv",
    "BybitExchange",
    "BybitPlugin",
    "BybitSettings",
    "Gateway",
    "GatewayConfig",
    "PositionModeSetting",
]
