"""The hooks an Order Manager plugin may implement.

Hooks are grouped by when the engine calls them:
*bootstrap* → *order pipeline* (signal risk → order type → quantity → order risk) →
*execution* → *reporting*.

Every decision hook is **synchronous and pure**: it receives a snapshot the engine prepared
(:class:`~om_plugins.types.DecisionContext`) and returns a decision. It must not do I/O; the
engine may call it again with the same arguments for previews and replays. Async work lives in
exchange adapters and in the lifecycle hooks' returned awaitables.

The engine calls decision hooks in a worker thread, off its event loop, and may call them for
different symbols from two threads at once — harmless for a pure function. Each call is timed
against ``OM_HOOK_BUDGET_MS`` (default 20 ms): a slower one is logged as a WARNING naming
plugin, hook and duration, and every call lands in the ``om_plugin_hook_duration_seconds``
histogram.

What a decision hook finds in ``context`` (:class:`~om_plugins.types.DecisionContext`):

* ``now`` (UTC), ``trading_state``, ``reference_price`` and ``prices`` by symbol;
* ``instrument`` — the exchange's rules: ``tick_size``, ``qty_step``, ``min_qty``,
  ``max_qty``, ``max_market_qty`` (market orders), ``min_notional`` (qty × price), the
  ``base_coin``/``quote_coin``; with plugin API 2.0 also
  ``qty_unit`` (``QtyUnit.BASE``: quantities in the base coin, linear and spot;
  ``QtyUnit.CONTRACTS``: in contracts, inverse), ``contract_size`` (the contract multiplier:
  1 for linear and spot, for inverse the quote-coin value of one contract), ``settle_coin``,
  and ``notional(qty, price)`` / ``qty_for_notional(notional, price)``, which apply them;
* ``position`` (the symbol's), ``positions`` (every open one), ``open_orders`` (the
  symbol's), ``recent_order_count`` (last 60 s) and ``balance``;
* ``fees`` — the account's ``maker``/``taker`` rates (:class:`~om_plugins.types.FeeRates`),
  ``None`` when the exchange adapter does not report them (plugin API 2.0);
* ``leverage`` — set on the exchange for the symbol, ``None`` when unknown (plugin API 2.0);
* ``today`` — realized PnL and fees of the current trading day
  (:class:`~om_plugins.types.TradingDay`: ``total``, ``by_symbol``, ``start``, ``end``; the day
  starts at ``OM_TRADING_DAY_START``, UTC midnight by default) (plugin API 2.0).

Default implementations in ``plugins_builtin`` are marked ``trylast``, so any third-party
implementation runs first and, for ``firstresult`` hooks, wins by returning a value.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any

import pluggy

from om_plugins.exchange import ExchangeFactory, StreamGatewayFactory
from om_plugins.types import (
    DecisionContext,
    OrderTypeDecision,
    ProposedOrder,
    QuantityDecision,
    Rejection,
    Signal,
)

__all__ = ["PROJECT_NAME", "hookspec"]

PROJECT_NAME = "order_manager"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)

RegisterExchange = Callable[[str, ExchangeFactory], None]
RegisterStreamGateway = Callable[[str, StreamGatewayFactory], None]


# -- bootstrap -------------------------------------------------------------------------------


@hookspec
def om_register_exchanges(register: RegisterExchange) -> None:
    """Register exchange adapter factories.

    Call rule: every plugin is called. Call ``register(name, factory)`` once per exchange
    your plugin provides; ``OM_EXCHANGE=name`` selects it. Registering a name twice stops
    startup with an error naming both plugins.

    :param register: ``register(name, factory)`` where ``factory(context)`` returns an
        :class:`~om_plugins.exchange.ExchangeAdapter`.
    """


@hookspec
def om_register_stream_gateways(register: RegisterStreamGateway) -> None:
    """Register the gateway that brings an exchange's private order stream to the engine.

    Call rule: every plugin is called. Call ``register(name, factory)`` with the name your
    exchange is registered under; ``om ws-gateway`` (and ``om run --with-ws-gateway``) run
    the gateway of ``OM_EXCHANGE``. An exchange whose adapter publishes its own reports
    (``ExchangeContext.publish_reports``, like the paper exchange) needs none.

    :param register: ``register(name, factory)`` where ``factory(context)`` returns a
        :class:`~om_plugins.exchange.StreamGateway`.
    """


@hookspec
def om_startup(settings: Mapping[str, Any]) -> Awaitable[None] | None:
    """The service is starting, after configuration and before any message is consumed.

    Call rule: every plugin is called; an awaitable returned is awaited. An exception stops
    startup.

    :param settings: the service's settings (secrets masked) as a plain mapping.
    """


@hookspec
def om_shutdown() -> Awaitable[None] | None:
    """The service is stopping, after consumers drained.

    Call rule: every plugin is called; an awaitable returned is awaited. Exceptions are
    logged and do not stop the other plugins' shutdown.
    """


# -- order pipeline ---------------------------------------------------------------------------


@hookspec
def om_check_signal(
    signal: Signal, context: DecisionContext
) -> Rejection | Iterable[Rejection] | None:
    """Pre-trade risk check of a signal, before any order is shaped.

    Call rule: **every enabled plugin votes**. Return ``None`` (or an empty list) to allow, a
    :class:`~om_plugins.types.Rejection` or several to refuse. If any plugin refuses, the
    signal is rejected and *all* reasons from all plugins are recorded, each with the
    plugin's name.

    Use it for rules that do not depend on size: allowed symbols, signal age, strength,
    trading state, order rate, trading hours (``context.now``), a daily loss limit
    (``context.today.total.net``).

    Return anything else (``True``, a string, a decision) and the signal is rejected with
    ``PLUGIN_ERROR`` naming your plugin, the hook and what it returned.

    :param signal: the validated signal.
    :param context: the engine's snapshot of instrument, prices, position, orders, balance,
        trading state, fee rates, leverage and today's PnL for the signal's symbol (see the
        module documentation).
    """


@hookspec(firstresult=True)
def om_select_order_type(signal: Signal, context: DecisionContext) -> OrderTypeDecision | None:
    """Choose market or limit, the limit price and the time in force.

    Call rule: **first non-None result wins**; plugins are called in reverse registration
    order, built-in defaults last. Return ``None`` to let the next plugin decide.
    A limit price must already be rounded to ``context.instrument.tick_size``
    (:func:`om_plugins.rounding.round_price`); a price off the grid rejects the signal as
    ``INVALID_DECISION`` attributed to your plugin.
    """


@hookspec(firstresult=True)
def om_calculate_quantity(
    signal: Signal, context: DecisionContext, order_type: OrderTypeDecision
) -> QuantityDecision | Rejection | None:
    """Compute the quantity of the order.

    Call rule: **first non-None result wins**. Return a
    :class:`~om_plugins.types.QuantityDecision` already rounded down to the instrument's
    ``qty_step`` (:func:`om_plugins.rounding.round_qty_down`), a
    :class:`~om_plugins.types.Rejection` when no valid quantity exists (e.g. below the
    minimum), or ``None`` to let the next plugin decide. A quantity off the grid rejects the
    signal as ``INVALID_DECISION`` attributed to your plugin.

    What sizing needs is in ``context`` (see the module documentation):

    * the exchange's limits in ``context.instrument``: ``min_qty``, ``max_qty``,
      ``max_market_qty`` (for market orders, when lower), ``min_notional`` (qty × price),
      ``qty_step``;
    * the quantity's unit: ``context.instrument.qty_unit`` — base coin (linear, spot) or
      contracts (inverse) — and ``context.instrument.contract_size``, the contract
      multiplier; ``context.instrument.qty_for_notional(value, price)`` converts a value in
      the quote coin into a quantity in that unit;
    * costs and leverage: ``context.fees`` (``maker``, ``taker``: fractions of the order
      value; ``None`` when unknown) and ``context.leverage`` (``None`` when unknown);
    * the account: ``context.balance`` (``available``, ``equity``), ``context.position`` and
      ``context.today`` (today's realized PnL and fees).

    :param order_type: the decision of ``om_select_order_type``; value the order at its
        limit ``price``, or at ``context.reference_price`` for market orders.
    """


@hookspec
def om_check_order(
    order: ProposedOrder, signal: Signal, context: DecisionContext
) -> Rejection | Iterable[Rejection] | None:
    """Risk check of the fully shaped order, just before it is sent.

    Call rule: **every enabled plugin votes**, as in :func:`om_check_signal`. Use it for
    rules that depend on size: order notional (``order.notional``), position and exposure
    limits, open orders, fees (``context.fees``) or margin (``context.leverage``).
    """


# -- reporting -------------------------------------------------------------------------------


@hookspec
def om_order_event(event: Mapping[str, Any]) -> None:
    """Observe every event the service publishes on ``order-manager.order_events``.

    Call rule: every plugin is called, after the event is durably recorded; an exception is
    logged and never affects trading. ``event`` follows the event schema in
    ``docs/events.md``. Do not block: hand work to your own task or queue.
    """
