"""The exchange adapter interface.

An exchange plugin implements the ``om_register_exchanges`` hook and registers a factory;
the engine calls the factory once at startup with an :class:`ExchangeContext` and drives the
returned :class:`ExchangeAdapter`. Adapters are async; anything blocking (an HTTP client such
as pybit) must run off the event loop.

How ``place_order`` reports its outcome is the contract money depends on:

* return :class:`PlacedOrder` — the exchange accepted the order;
* raise :class:`~om_plugins.errors.ExchangeRejected` — a definitive "no": nothing was placed;
* raise :class:`~om_plugins.errors.ExchangeUnavailable` — the request certainly never reached
  the exchange (e.g. connection refused, client-side rate limit); the engine may retry;
* raise :class:`~om_plugins.errors.OutcomeUnknown` — anything else (timeout, 5xx, broken
  connection after sending): the engine looks the order up by ``client_order_id`` before it
  ever sends it again.
"""

from __future__ import annotations

import abc
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from om_plugins.types import Balance, Category, FeeRates, Instrument, OrderType, Side, TimeInForce

__all__ = [
    "ExchangeAdapter",
    "ExchangeContext",
    "ExchangeFactory",
    "ExchangeOrder",
    "ExchangePosition",
    "OrderRequest",
    "PlacedOrder",
]

#: Publishes one raw order-stream message (Bybit V5 ``order`` topic shape) to ``ws-gateway.order``.
PublishOrderUpdate = Callable[[Mapping[str, Any]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ExchangeContext:
    """What the engine hands an exchange factory."""

    #: Publishes an order-stream message onto ``ws-gateway.order``; simulated exchanges use it
    #: to report their order updates through the same path a real WS-Gateway does.
    publish_order_update: PublishOrderUpdate


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order to send, fully decided and rounded."""

    client_order_id: str
    symbol: str
    category: Category
    side: Side
    order_type: OrderType
    qty: Decimal
    price: Decimal | None = None
    time_in_force: TimeInForce | None = None
    reduce_only: bool = False
    position_idx: int = 0
    take_profit: Decimal | None = None
    stop_loss: Decimal | None = None


@dataclass(frozen=True, slots=True)
class PlacedOrder:
    exchange_order_id: str
    client_order_id: str


@dataclass(frozen=True, slots=True)
class ExchangeOrder:
    """The exchange's view of one order, normalised from its own format.

    ``status`` uses the exchange's vocabulary (Bybit's ``orderStatus``); ``raw`` keeps the
    original object for the reverse flow.
    """

    exchange_order_id: str
    client_order_id: str
    symbol: str
    category: Category
    side: Side
    order_type: OrderType
    status: str
    qty: Decimal
    price: Decimal | None
    filled_qty: Decimal
    avg_price: Decimal | None
    cum_exec_value: Decimal
    cum_exec_fee: Decimal
    created_at: datetime
    updated_at: datetime
    reject_reason: str = ""
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class ExchangePosition:
    """The exchange's view of one position. ``size`` is signed: > 0 long, < 0 short."""

    category: Category
    symbol: str
    size: Decimal
    avg_entry_price: Decimal
    position_idx: int = 0
    mark_price: Decimal | None = None


class ExchangeAdapter(abc.ABC):
    """One connection to one exchange account."""

    #: The name the adapter is registered under (``OM_EXCHANGE``).
    name: str = ""
    #: Seconds after a create request during which the exchange might still accept it (its
    #: receive window plus clock skew). Until then a "not found" answer proves nothing, and
    #: the engine never re-sends an order in doubt.
    resend_guard_seconds: float = 10.0

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Open connections; called once before any other method."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release connections; called once at shutdown."""

    @abc.abstractmethod
    async def get_instrument(self, category: Category, symbol: str) -> Instrument:
        """Trading rules for ``symbol``; raise ``ExchangeRejected`` if it does not exist."""

    @abc.abstractmethod
    async def get_reference_price(self, category: Category, symbol: str) -> Decimal:
        """A current price (last or mark) to value orders and positions."""

    @abc.abstractmethod
    async def get_balance(self, coin: str) -> Balance:
        """Available balance and equity in ``coin``."""

    @abc.abstractmethod
    async def place_order(self, request: OrderRequest) -> PlacedOrder:
        """Send one order, exactly once. See the module docstring for the outcome rules."""

    @abc.abstractmethod
    async def get_order(
        self, category: Category, symbol: str, client_order_id: str
    ) -> ExchangeOrder | None:
        """Look an order up by client id; ``None`` means the exchange definitively has none."""

    @abc.abstractmethod
    async def cancel_order(self, category: Category, symbol: str, client_order_id: str) -> None:
        """Ask the exchange to cancel; the result arrives through the order stream."""

    @abc.abstractmethod
    async def list_open_orders(
        self, category: Category, symbol: str | None = None
    ) -> list[ExchangeOrder]:
        """Every open order in ``category`` (optionally one symbol)."""

    async def list_positions(self, category: Category) -> list[ExchangePosition]:
        """Every non-flat position in ``category``, for reconciliation.

        Optional: an adapter that cannot list positions raises ``NotImplementedError`` and
        reconciliation then checks orders only.
        """
        raise NotImplementedError

    async def get_fee_rates(self, category: Category, symbol: str) -> FeeRates:
        """The account's maker and taker fee rates for ``symbol`` (plugin API 1.1).

        Optional: an adapter that does not know them raises ``NotImplementedError``, and
        decision hooks see ``context.fees = None``. The engine caches the answer.
        """
        raise NotImplementedError

    async def get_leverage(self, category: Category, symbol: str) -> Decimal | None:
        """The leverage set for ``symbol`` (plugin API 1.1); ``None`` when the adapter does
        not know it or the category has none (spot). The engine caches the answer."""
        return None


#: What ``om_register_exchanges`` registers: builds an adapter from the engine's context.
ExchangeFactory = Callable[[ExchangeContext], ExchangeAdapter]
