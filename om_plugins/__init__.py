"""The public SDK for Order Manager plugins.

Everything a plugin author may rely on is importable from here; nothing else in the
``om_core`` engine is promised. A plugin is an object (usually a class, instantiated by the
engine) whose methods are marked with :data:`hookimpl`, published through the entry-point
group ``order_manager.plugins`` and enabled by name in ``OM_PLUGINS``::

    [project.entry-points."order_manager.plugins"]
    my_risk = "my_package.plugin:MyRiskPlugin"

A plugin class may declare ``settings_model`` (a pydantic model); the engine validates the
plugin's settings (``[plugins.<name>]``, ``OM_PLUGIN_<NAME>_<FIELD>``) at startup and passes
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
    Instrument,
    OpenOrder,
    OrderType,
    OrderTypeDecision,
    Position,
    ProposedOrder,
    QuantityDecision,
    Rejection,
    Side,
    Signal,
    TimeInForce,
    TradingState,
)

#: Version of this SDK's public API (semver). Plugins may declare the range they support
#: with a module- or class-level ``om_api_version = ">=1,<2"``.
__api_version__ = "1.0.0"

#: Marks a plugin method as an implementation of a hook in :mod:`om_plugins.hookspecs`.
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)

__all__ = [
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
    "Instrument",
    "OpenOrder",
    "OrderRequest",
    "OrderType",
    "OrderTypeDecision",
    "OutcomeUnknown",
    "PlacedOrder",
    "PluginError",
    "Position",
    "ProposedOrder",
    "QuantityDecision",
    "Rejection",
    "Side",
    "Signal",
    "TimeInForce",
    "TradingState",
    "__api_version__",
    "hookimpl",
]
