"""The exchange adapter interface.

An exchange plugin implements the ``om_register_exchanges`` hook and registers a factory;
the engine calls the factory once at startup with an :class:`ExchangeContext` and drives the
returned :class:`ExchangeAdapter`. Adapters are async; anything blocking (an HTTP client such
as pybit) must run off the event loop. Everything an adapter returns is in the neutral types
of :mod:`om_plugins.types` and :mod:`om_plugins.reports`: the engine speaks no exchange's
dialect. ``docs/plugins.md`` ("Writing an exchange plugin") is the guide, and
:mod:`om_plugins.testing.exchange_contract` the test suite an adapter must pass.

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
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from om_plugins.reports import (
    ExecutionReport,
    OrderReport,
    PositionReport,
    Report,
    decode_reports,
)
from om_plugins.types import (
    Balance,
    Category,
    FeeRates,
    Instrument,
    OrderType,
    PositionMode,
    Side,
    TimeInForce,
)

__all__ = [
    "ExchangeAdapter",
    "ExchangeContext",
    "ExchangeFactory",
    "GatewayContext",
    "OrderRequest",
    "PlacedOrder",
    "PublishReports",
    "StreamGateway",
    "StreamGatewayFactory",
]

#: Publishes reports onto ``ws-gateway.order`` in the neutral form (see
#: :func:`om_plugins.reports.encode_reports`).
PublishReports = Callable[[Sequence[Report]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class ExchangeContext:
    """What the engine hands an exchange factory."""

    #: Publishes reports onto ``ws-gateway.order``, the queue the engine applies order
    #: updates from; simulated exchanges use it to report through the same path a real
    #: exchange's WS-Gateway does.
    publish_reports: PublishReports


@dataclass(frozen=True, slots=True)
class OrderRequest:
    """One order to send, fully decided and rounded.

    ``qty`` counts the instrument's unit (base coin, or contracts on inverse instruments);
    ``position_idx`` is 0 in one-way mode and 1/2 (the long/short side) in hedge mode.
    """

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


class ExchangeAdapter(abc.ABC):
    """One connection to one exchange account."""

    #: The name the adapter is registered under (``OM_EXCHANGE``).
    name: str = ""
    #: Seconds after a create request during which the exchange might still accept it (its
    #: receive window plus clock skew). Until then a "not found" answer proves nothing, and
    #: the engine never re-sends an order in doubt.
    resend_guard_seconds: float = 10.0
    #: The categories this account trades: reconciliation covers each of them.
    categories: tuple[Category, ...] = (Category.LINEAR,)

    async def start(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Open connections; called once before any other method."""

    async def close(self) -> None:  # noqa: B027 - optional hook, empty by design
        """Release connections; called once at shutdown."""

    # -- market and account --------------------------------------------------------------------

    @abc.abstractmethod
    async def get_instrument(self, category: Category, symbol: str) -> Instrument:
        """Trading rules for ``symbol``; raise ``ExchangeRejected`` if it does not exist."""

    @abc.abstractmethod
    async def get_reference_price(self, category: Category, symbol: str) -> Decimal:
        """A current price (last or mark) to value orders and positions."""

    @abc.abstractmethod
    async def get_balance(self, coin: str) -> Balance:
        """Available balance and equity in ``coin``."""

    async def get_position_mode(self, category: Category, symbol: str) -> PositionMode:
        """How the account holds ``symbol``'s positions. Spot is always one-way.

        The engine derives each order's ``position_idx`` from it: 0 in one-way mode; in
        hedge mode 1 for a buy that opens (or a sell that reduces) the long side, 2 for a
        sell that opens (or a buy that reduces) the short side. Cache the answer.
        """
        return PositionMode.ONE_WAY

    async def get_fee_rates(self, category: Category, symbol: str) -> FeeRates | None:
        """The account's maker/taker fee rates for ``symbol``; ``None`` if unknown."""
        return None

    async def get_leverage(self, category: Category, symbol: str) -> Decimal | None:
        """The leverage set for ``symbol``; ``None`` if unknown or not applicable (spot)."""
        return None

    # -- orders ----------------------------------------------------------------------------

    @abc.abstractmethod
    async def place_order(self, request: OrderRequest) -> PlacedOrder:
        """Send one order, exactly once. See the module docstring for the outcome rules."""

    @abc.abstractmethod
    async def get_order(
        self,
        category: Category,
        symbol: str,
        client_order_id: str,
        *,
        exchange_order_id: str = "",
    ) -> OrderReport | None:
        """Look an order up, wherever the exchange keeps it (open, history, or rebuilt from
        its executions); ``None`` means the exchange definitively has none.

        By ``client_order_id``; or, when that is empty, by ``exchange_order_id`` — orders
        placed elsewhere may have no client id the exchange knows.
        """

    @abc.abstractmethod
    async def cancel_order(self, category: Category, symbol: str, client_order_id: str) -> None:
        """Ask the exchange to cancel; the result arrives through the order stream.

        Raise ``ExchangeRejected`` with reason code ``ORDER_NOT_FOUND`` when the order is not
        open (any more).
        """

    @abc.abstractmethod
    async def list_open_orders(
        self, category: Category, symbol: str | None = None
    ) -> list[OrderReport]:
        """Every open order in ``category`` (optionally one symbol), placed by us or not."""

    async def list_executions(
        self,
        category: Category,
        symbol: str,
        *,
        client_order_id: str = "",
        exchange_order_id: str = "",
        since: datetime | None = None,
    ) -> list[ExecutionReport]:
        """Executions of one order (by either id), for fills the stream did not deliver.

        Optional: without it the engine books what order reports say has filled as inferred
        fills, at the order's average price.
        """
        raise NotImplementedError

    async def list_positions(self, category: Category) -> list[PositionReport]:
        """Every non-flat position in ``category``, for reconciliation (spot: balances).

        Optional: an adapter that cannot list positions raises ``NotImplementedError`` and
        reconciliation then checks orders only.
        """
        raise NotImplementedError

    # -- the order stream ----------------------------------------------------------------------

    def decode_stream(self, body: bytes) -> list[Report]:
        """The reports in one message of ``ws-gateway.order``.

        The default reads the neutral form (:func:`~om_plugins.reports.decode_reports`);
        an exchange whose WS-Gateway publishes the exchange's own messages decodes those.
        Raise :class:`~om_plugins.reports.InvalidReport` for a message that can never be
        decoded (it is dead-lettered with that reason). Must not block: no I/O.
        """
        return decode_reports(body)


#: What ``om_register_exchanges`` registers: builds an adapter from the engine's context.
ExchangeFactory = Callable[[ExchangeContext], ExchangeAdapter]


@dataclass(frozen=True, slots=True)
class GatewayContext:
    """What the engine hands a stream-gateway factory."""

    #: Publishes one message onto ``ws-gateway.order`` with publisher confirms:
    #: ``publish(body, message_id, type)``; raises when the broker did not confirm.
    publish: Callable[[bytes, str, str], Awaitable[None]]


class StreamGateway(Protocol):
    """Brings an exchange's private order stream onto ``ws-gateway.order`` (``om ws-gateway``,
    or ``om run --with-ws-gateway``). After every (re)connection it must publish something
    the adapter's ``decode_stream`` turns into a :class:`~om_plugins.reports.StreamGap`."""

    async def start(self) -> None: ...

    async def stop(self) -> None: ...


#: What ``om_register_stream_gateways`` registers.
StreamGatewayFactory = Callable[[GatewayContext], StreamGateway]
