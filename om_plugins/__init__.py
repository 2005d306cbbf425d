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
    ExchangeOrder,
    ExchangePosition,
    OrderRequest,
    PlacedOrder,
)
from om_plugins.hookspecs import PROJECT_NAME
from om_plugins.types import (
    Balance,
    Category,
    DecisionContext,
    FeeRates,
    Instrument,
    OpenOrder,
    OrderType,
    OrderTypeDecision,
    PnL,
    Position,
    ProposedOrder,
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
#: 1.1.0 adds, backwards-compatibly: ``DecisionContext.fees`` (:class:`FeeRates`),
#: ``.leverage`` and ``.today`` (:class:`TradingDay`, :class:`PnL`); the optional adapter
#: methods ``ExchangeAdapter.get_fee_rates`` and ``get_leverage``. A plugin written for 1.0
#: keeps working; one that implements no hook at all is now refused at startup.
__api_version__ = "1.1.0"

#: Said when a plugin's ``om_api_version`` excludes this SDK.
API_COMPATIBILITY = (
    "plugin API 1.1 is backwards-compatible with 1.0: a plugin written for 1.x declares "
    'om_api_version = ">=1,<2"'
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
    "ExchangeOrder",
    "ExchangePosition",
    "ExchangeRejected",
    "ExchangeUnavailable",
    "FeeRates",
    "Instrument",
    "OpenOrder",
    "OrderRequest",
    "OrderType",
    "OrderTypeDecision",
    "OutcomeUnknown",
    "PlacedOrder",
    "PluginError",
    "PnL",
    "Position",
    "ProposedOrder",
    "QuantityDecision",
    "Rejection",
    "Side",
    "Signal",
    "TimeInForce",
    "TradingDay",
    "TradingState",
    "__api_version__",
    "hookimpl",
]
