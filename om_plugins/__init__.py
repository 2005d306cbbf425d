"""The public SDK for Order Manager plugins.

Everything a plugin author may rely on is importable from here; nothing else in the
``om_core`` engine is promised. A plugin is an object (usually a class, instantiated by the
engine) whose methods are marked with :data:`hookimpl`, published through the entry-point
group ``order_manager.plugins`` and enabled by name in ``OM_PLUGINS``::

    [project.entry-points."order_manager.plugins"]
    my_risk = "my_package.plugin:MyRiskPlugin"

A plugin class may declare ``settings_model`` (a pydantic model); the engine validates the
plugin's settings (``[plugin.<name>]``, ``OM_PLUGIN_<NAME>_<FIELD>``) at startup and passes
the instance to the constructor as ``settings``. A plugin declares the SDK versions it
supports with ``om_api_version = ">=1,<2"`` on its class or module, checked against
:data:`__api_version__` at startup.

The hooks are in :mod:`om_plugins.hookspecs`, exact rounding in :mod:`om_plugins.rounding`,
and the test kit (fixtures ``harness`` and ``register_plugin``, builders ``make_*``) in
:mod:`om_plugins.testing`. The guide is ``docs/plugins.md``.
"""

from __future__ import annotations

import pluggy

from om_plugins.errors import (
    DuplicateClientOrderId,
    ExchangeAuthError,
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
    OutcomeUnknown,
    PluginError,
)
from om_plugins.exchange import (
    ExchangeAdapter,
    ExchangeContext,
    ExchangeFactory,
    GatewayContext,
    OrderRequest,
    PlacedOrder,
    StreamGateway,
    StreamGatewayFactory,
)
from om_plugins.hookspecs import PROJECT_NAME
from om_plugins.reports import (
    ExchangeReason,
    ExecKind,
    ExecutionReport,
    Fee,
    InvalidReport,
    OrderReport,
    PositionReport,
    ReasonCode,
    Report,
    StreamGap,
)
from om_plugins.types import (
    Balance,
    Category,
    DecisionContext,
    FeeRates,
    Instrument,
    OpenOrder,
    OrderStatus,
    OrderType,
    OrderTypeDecision,
    PnL,
    Position,
    PositionMode,
    ProposedOrder,
    QtyUnit,
    QuantityDecision,
    Rejection,
    Side,
    Signal,
    TimeInForce,
    TradingDay,
    TradingState,
)

#: Version of this SDK's public API (semver). Plugins may declare the range they support
#: with a module- or class-level ``om_api_version = ">=1,<2"``.
#:
#: 2.0.0 made the exchange boundary neutral (:mod:`om_plugins.reports`; adapters return
#: ``OrderReport``/``PositionReport`` and decode their own stream) and added, backwards-
#: compatibly for decision hooks: ``DecisionContext.fees`` (:class:`FeeRates`), ``.leverage``,
#: ``.today`` (:class:`TradingDay`, :class:`PnL`), ``.position_mode``; ``Instrument.qty_unit``,
#: ``contract_size``, ``settle_coin``. A plugin that implements no hook at all is refused.
__api_version__ = "2.0.0"

#: Said when a plugin's ``om_api_version`` excludes this SDK.
API_COMPATIBILITY = (
    "plugin API 2.0 changed only the exchange adapter interface: a plugin with decision "
    'hooks only, written for 1.x, declares om_api_version = ">=1,<3" (docs/plugins.md, '
    "'Changes in 2.0')"
)

#: Marks a plugin method as an implementation of a hook in :mod:`om_plugins.hookspecs`.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = [
    "API_COMPATIBILITY",
    "Balance",
    "Category",
    "DecisionContext",
    "DuplicateClientOrderId",
    "ExchangeAdapter",
    "ExchangeAuthError",
    "ExchangeContext",
    "ExchangeError",
    "ExchangeFactory",
    "ExchangeReason",
    "ExchangeRejected",
    "ExchangeUnavailable",
    "ExecKind",
    "ExecutionReport",
    "Fee",
    "FeeRates",
    "GatewayContext",
    "Instrument",
    "InvalidReport",
    "OpenOrder",
    "OrderReport",
    "OrderRequest",
    "OrderStatus",
    "OrderType",
    "OrderTypeDecision",
    "OutcomeUnknown",
    "PlacedOrder",
    "PluginError",
    "PnL",
    "Position",
    "PositionMode",
    "PositionReport",
    "ProposedOrder",
    "QtyUnit",
    "QuantityDecision",
    "ReasonCode",
    "Rejection",
    "Report",
    "Side",
    "Signal",
    "StreamGap",
    "StreamGateway",
    "StreamGatewayFactory",
    "TimeInForce",
    "TradingDay",
    "TradingState",
    "__api_version__",
    "hookimpl",
]
