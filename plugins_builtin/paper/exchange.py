"""The simulated exchange behind ``OM_EXCHANGE=paper``.

It behaves like a Bybit V5 linear (USDT perpetual) account in one-way mode, and reports in
the SDK's neutral types (it has no wire format of its own):

* **Market orders** fill at once, completely, ``slippage_bps`` worse than the current price
  (rounded to the tick against the trader), paying ``taker_fee_rate`` × value.
* **Limit orders** that would cross the current price fill at once like market orders
  (never worse than their limit), unless they are PostOnly — those are cancelled
  (``POST_ONLY_WOULD_TAKE``). Other limit orders rest and fill at their limit price
  when the simulated price reaches it (a buy when the price falls to or below it, a sell
  when it rises to or above it), paying ``maker_fee_rate``. IOC/FOK limits that cannot
  fill at once are cancelled.
* An instrument's ``max_fill_qty`` limits how much of an order fills per event, which
  produces ``PartiallyFilled`` orders; the unfilled rest of a market/IOC order is then
  cancelled, as is the rest of a FOK order (which then fills nothing).
* **Reduce-only** orders never grow or flip the position; the part that would is
  cancelled (``CANCELLED_REDUCE_ONLY``). With no position to reduce they are refused (110017,
  ``REDUCE_ONLY_REJECTED``).
* The **account** is one USDT wallet: fees and realised PnL of closed positions are booked
  into it; equity adds unrealised PnL; available balance is equity less initial margin
  (position value / ``leverage``) of open positions and resting orders.
* Take-profit and stop-loss are accepted and reported but never trigger.
* ``Rejected`` is only produced on demand, by :meth:`PaperExchange.reject_next_order`.

Every order change is published through ``ExchangeContext.publish_reports``, after the
change: the executions it made, then the order's new state (changes that queue while a
publish awaits its confirm share the next message, as on Bybit). Requests are validated like
Bybit does, with Bybit's error codes and the neutral reason codes (see
:mod:`plugins_builtin.paper.rules`); a reused ``client_order_id`` raises
:class:`~om_plugins.DuplicateClientOrderId`.

For tests and demos: :meth:`PaperExchange.set_price` moves a price (and fills what it
crosses), :meth:`PaperExchange.fill` fills a resting order, :attr:`create_calls` lists every
``place_order`` call, :attr:`orders` holds every
accepted order, :meth:`fail_next_place` injects a failure into the next ``place_order`` and
:meth:`reject_next_order` has the next order rejected after it was accepted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from datetime import datetime
from decimal import Decimal

from om_plugins import (
    Balance,
    Category,
    DuplicateClientOrderId,
    ExchangeAdapter,
    ExchangeContext,
    ExchangeError,
    ExchangeReason,
    ExchangeRejected,
    ExecutionReport,
    Fee,
    FeeRates,
    Instrument,
    OrderReport,
    OrderRequest,
    OrderType,
    PlacedOrder,
    PositionReport,
    ReasonCode,
    Side,
    TimeInForce,
)
from plugins_builtin.paper.ledger import Ledger, PaperPosition
from plugins_builtin.paper.market import PriceWalk, taker_price
from plugins_builtin.paper.orders import OrderStatus, PaperOrder
from plugins_builtin.paper.rules import (
    DUPLICATE_ORDER_LINK_ID,
    INSUFFICIENT_BALANCE,
    ORDER_NOT_FOUND,
    REDUCE_ONLY_ZERO,
    params_error,
    validate_request,
)
from plugins_builtin.paper.settings import PaperInstrument, PaperSettings
from plugins_builtin.paper.stream import OrderStream, now, order_report

__all__ = ["PaperExchange"]

logger = logging.getLogger(__name__)

SETTLE_COIN = "USDT"


def _instrument(symbol: str, rules: PaperInstrument) -> Instrument:
    return Instrument(
        symbol=symbol,
        category=Category.LINEAR,
        tick_size=rules.tick_size,
        qty_step=rules.qty_step,
        min_qty=rules.min_qty,
        max_qty=rules.max_qty,
        min_notional=rules.min_notional,
        max_market_qty=rules.max_market_qty,
        base_coin=rules.base_coin or symbol.removesuffix(SETTLE_COIN),
        quote_coin=SETTLE_COIN,
        settle_coin=SETTLE_COIN,
    )


def _reason(code: ReasonCode) -> ExchangeReason:
    return ExchangeReason(code.value)


class PaperExchange(ExchangeAdapter):
    """A simulated Bybit linear account; see the module documentation for its rules."""

    name = "paper"
    #: In-process: an order the exchange does not know now was never received.
    resend_guard_seconds = 0.0

    def __init__(self, settings: PaperSettings, context: ExchangeContext) -> None:
        self.settings = settings
        self._rules = settings.catalogue()
        self._instruments = {s: _instrument(s, r) for s, r in self._rules.items()}
        self._prices = {s: p for s, p in settings.starting_prices().items() if s in self._rules}
        self._ledger = Ledger(settings.initial_balance, settings.leverage)
        self._stream = OrderStream(context.publish_reports)
        self._walk = PriceWalk(settings.walk_step_bps, settings.walk_seed)
        self._walk_task: asyncio.Task[None] | None = None
        self._fault: tuple[Exception, bool] | None = None
        self._reject_reason: ExchangeReason | None = None
        #: Client order id of every ``place_order`` call, in call order, including calls that
        #: were refused, duplicated or failed.
        self.create_calls: list[str] = []
        #: Every order the exchange accepted, by client order id.
        self.orders: dict[str, PaperOrder] = {}
        #: The orders that may still be open, in placement order: scans of open orders
        #: must not grow with every order ever placed (closed ones are dropped as found).
        self._live: dict[str, PaperOrder] = {}

    # -- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.settings.random_walk and self._walk_task is None:
            self._walk_task = asyncio.create_task(self._run_walk(), name="paper-price-walk")

    async def close(self) -> None:
        task, self._walk_task = self._walk_task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run_walk(self) -> None:
        interval = float(self.settings.walk_interval_seconds)  # a delay, not money
        while True:
            await asyncio.sleep(interval)
            try:
                for symbol, instrument in self._instruments.items():
                    self._prices[symbol] = self._walk.next_price(
                        self._prices[symbol], instrument.tick_size
                    )
                    self._match_resting(symbol)
                await self._stream.flush()
            except Exception:
                logger.exception("paper exchange: price walk step failed")

    # -- test and demo controls -------------------------------------------------------------

    async def set_price(self, symbol: str, price: Decimal) -> None:
        """Move ``symbol``'s price and fill the resting limit orders it reaches."""
        if symbol not in self._instruments:
            raise KeyError(f"paper exchange does not list {symbol}")
        if not price.is_finite() or price <= 0:
            raise ValueError(f"price must be positive, got {price}")
        self._prices[symbol] = price
        self._match_resting(symbol)
        await self._stream.flush()

    async def fill(self, client_order_id: str, qty: Decimal | None = None) -> None:
        """Fill ``qty`` (default: all that is left) of a resting limit order at its limit
        price, as a maker — a counterparty arrived, whatever the price walk does."""
        order = self.orders.get(client_order_id)
        if order is None or not order.is_open or order.request.price is None:
            raise KeyError(f"no resting limit order {client_order_id}")
        wanted = order.remaining_qty if qty is None else min(qty, order.remaining_qty)
        made = len(order.executions)
        self._execute(order, wanted, order.request.price, self.settings.maker_fee_rate, maker=True)
        self._stream.report(order, order.executions[made:])
        await self._stream.flush()

    def fail_next_place(self, exc: Exception, *, execute: bool) -> None:
        """Make the next ``place_order`` raise ``exc``.

        With ``execute=True`` the order is first placed as usual (and its updates
        published), as when a request times out after the exchange executed it; with
        ``execute=False`` nothing is placed.
        """
        self._fault = (exc, execute)

    def reject_next_order(
        self,
        reason: str = "EC_Others",
        code: ReasonCode = ReasonCode.EXCHANGE_REJECTED,
        message: str = "",
    ) -> None:
        """Accept the next valid order, then reject it in the matching engine.

        ``place_order`` returns normally and the order's only update is ``rejected`` with
        ``reason`` as the exchange's code — the asynchronous refusal a real exchange can
        send after acknowledging an order.
        """
        self._reject_reason = ExchangeReason(code.value, reason, message or reason)

    async def list_positions(self, category: Category) -> list[PositionReport]:
        if category is not Category.LINEAR:
            return []
        return [
            PositionReport(
                category=Category.LINEAR,
                symbol=symbol,
                size=pos.size,
                avg_entry_price=pos.avg_entry_price,
                mark_price=self._prices.get(symbol),
            )
            for symbol, pos in sorted(self._ledger.positions.items())
            if pos.size
        ]

    async def list_executions(
        self,
        category: Category,
        symbol: str,
        *,
        client_order_id: str = "",
        exchange_order_id: str = "",
        since: datetime | None = None,
    ) -> list[ExecutionReport]:
        found = [
            o
            for o in self.orders.values()
            if o.request.category is category
            and o.request.symbol == symbol
            and (not client_order_id or o.client_order_id == client_order_id)
            and (not exchange_order_id or o.order_id == exchange_order_id)
        ]
        return [e for o in found for e in o.executions if since is None or e.executed_at >= since]

    def position(self, symbol: str) -> PaperPosition:
        """The simulated net position of ``symbol`` (a copy)."""
        pos = self._ledger.positions.get(symbol, PaperPosition())
        return PaperPosition(size=pos.size, cost=pos.cost)

    @property
    def wallet_balance(self) -> Decimal:
        return self._ledger.wallet_balance

    # -- account controls for tests, and the optional reads of plugin API 1.1 ---------------

    def set_wallet_balance(self, amount: Decimal) -> None:
        """Set the USDT wallet balance (available balance follows, less margin in use)."""
        self._ledger.wallet_balance = amount

    def set_position(self, symbol: str, size: Decimal, avg_entry_price: Decimal) -> None:
        """Make the account hold ``size`` (signed) of ``symbol`` at ``avg_entry_price``."""
        self._lookup(Category.LINEAR, symbol)
        self._ledger.positions[symbol] = PaperPosition(size=size, cost=abs(size) * avg_entry_price)

    async def get_fee_rates(self, category: Category, symbol: str) -> FeeRates | None:
        self._lookup(category, symbol)
        return FeeRates(maker=self.settings.maker_fee_rate, taker=self.settings.taker_fee_rate)

    async def get_leverage(self, category: Category, symbol: str) -> Decimal | None:
        self._lookup(category, symbol)
        return self.settings.leverage

    # -- ExchangeAdapter --------------------------------------------------------------------

    async def get_instrument(self, category: Category, symbol: str) -> Instrument:
        return self._lookup(category, symbol)

    async def get_reference_price(self, category: Category, symbol: str) -> Decimal:
        self._lookup(category, symbol)
        return self._prices[symbol]

    async def get_balance(self, coin: str) -> Balance:
        if coin != SETTLE_COIN:
            return Balance(coin=coin, available=Decimal(0), equity=Decimal(0))
        return Balance(
            coin=coin,
            available=self._available(extra_value=Decimal(0)),
            equity=self._ledger.equity(self._prices),
        )

    async def place_order(self, request: OrderRequest) -> PlacedOrder:
        self.create_calls.append(request.client_order_id)
        fault, self._fault = self._fault, None
        if fault is None:
            return await self._place(request)
        exc, execute = fault
        if execute:
            # The client sees only the injected failure, whatever the exchange answered.
            with contextlib.suppress(ExchangeError):
                await self._place(request)
        raise exc

    async def get_order(
        self,
        category: Category,
        symbol: str,
        client_order_id: str,
        *,
        exchange_order_id: str = "",
    ) -> OrderReport | None:
        if client_order_id:
            order = self.orders.get(client_order_id)
        else:
            order = next((o for o in self.orders.values() if o.order_id == exchange_order_id), None)
        # Like Bybit, a lookup under another symbol or category finds nothing.
        if order is None or order.request.symbol != symbol or order.request.category != category:
            return None
        return order_report(order)

    async def cancel_order(self, category: Category, symbol: str, client_order_id: str) -> None:
        order = self.orders.get(client_order_id)
        if (
            order is None
            or order.request.symbol != symbol
            or order.request.category != category
            or not order.is_open
        ):
            raise ExchangeRejected(
                "order not exists or too late to cancel",
                code=ORDER_NOT_FOUND,
                reason_code=ReasonCode.ORDER_NOT_FOUND,
            )
        order.finish(
            OrderStatus.CANCELLED,
            reason=ExchangeReason(ReasonCode.CANCELLED_BY_USER.value, "CancelByUser"),
        )
        order.touch(now())
        self._stream.report(order)
        await self._stream.flush()

    async def list_open_orders(
        self, category: Category, symbol: str | None = None
    ) -> list[OrderReport]:
        found = [
            o
            for o in self._open_orders()
            if o.request.category == category and (symbol is None or o.request.symbol == symbol)
        ]
        # Bybit lists the newest first (reversed first so that equal timestamps also are).
        found.reverse()
        found.sort(key=lambda o: o.created_at, reverse=True)
        return [order_report(o) for o in found]

    # -- placing ----------------------------------------------------------------------------

    def _lookup(self, category: Category, symbol: str) -> Instrument:
        instrument = self._instruments.get(symbol)
        if instrument is None or category is not Category.LINEAR:
            raise params_error(
                f"symbol invalid: {category.value} {symbol}", ReasonCode.SYMBOL_NOT_TRADING
            )
        return instrument

    async def _place(self, request: OrderRequest) -> PlacedOrder:
        if request.client_order_id in self.orders:
            raise DuplicateClientOrderId(
                "OrderLinkedID is duplicate",
                code=DUPLICATE_ORDER_LINK_ID,
                reason_code=ReasonCode.DUPLICATE_ORDER,
            )
        instrument = self._lookup(request.category, request.symbol)
        mark = self._prices[request.symbol]
        validate_request(request, instrument, self._rules[request.symbol], mark)
        self._check_position_rules(request, mark)

        created = now()
        order = PaperOrder(
            order_id=str(uuid.uuid4()),
            request=request,
            instrument=instrument,
            created_at=created,
            updated_at=created,
            last_price_on_created=mark,
        )
        self.orders[request.client_order_id] = order
        self._live[request.client_order_id] = order
        reject_reason, self._reject_reason = self._reject_reason, None
        made = len(order.executions)
        if reject_reason is not None:
            order.finish(OrderStatus.REJECTED, reason=reject_reason)
        else:
            self._match_new(order)
        self._stream.report(order, order.executions[made:])
        await self._stream.flush()
        return PlacedOrder(exchange_order_id=order.order_id, client_order_id=order.client_order_id)

    def _check_position_rules(self, request: OrderRequest, mark: Decimal) -> None:
        size = self._ledger.position(request.symbol).size
        signed = request.side.sign * request.qty
        if request.reduce_only:
            if size == 0:
                raise ExchangeRejected(
                    "current position is zero, cannot fix reduce-only order qty",
                    code=REDUCE_ONLY_ZERO,
                    reason_code=ReasonCode.REDUCE_ONLY_REJECTED,
                )
            if (size > 0) == (signed > 0):
                raise ExchangeRejected(
                    "reduce-only order has same side with current position",
                    code=REDUCE_ONLY_ZERO,
                    reason_code=ReasonCode.REDUCE_ONLY_REJECTED,
                )
            return
        price = request.price if request.order_type is OrderType.LIMIT else mark
        assert price is not None  # validate_request guarantees a limit price
        added = max(abs(size + signed) - abs(size), Decimal(0))
        if added == 0:
            return
        if self._available(extra_value=added * price) < 0:
            raise ExchangeRejected(
                "ab not enough for new order",
                code=INSUFFICIENT_BALANCE,
                reason_code=ReasonCode.INSUFFICIENT_BALANCE,
            )

    def _open_orders(self) -> list[PaperOrder]:
        """Every open order, oldest first; closed ones never reopen, so they are forgotten."""
        closed = [cid for cid, o in self._live.items() if not o.is_open]
        for cid in closed:
            del self._live[cid]
        return list(self._live.values())

    def _available(self, *, extra_value: Decimal) -> Decimal:
        resting = sum(
            (
                o.leaves_qty * o.request.price
                for o in self._open_orders()
                if o.request.price is not None and not o.request.reduce_only
            ),
            Decimal(0),
        )
        return self._ledger.available(self._prices, resting + extra_value)

    # -- matching ---------------------------------------------------------------------------

    def _match_new(self, order: PaperOrder) -> None:
        """Execute what a new order executes at once and settle its status (no report)."""
        req = order.request
        mark = self._prices[req.symbol]
        slipped = taker_price(
            mark, req.side, self.settings.slippage_bps, order.instrument.tick_size
        )
        tif = order.time_in_force

        if req.order_type is OrderType.MARKET:
            self._take(order, slipped)
            return

        assert req.price is not None
        marketable = mark <= req.price if req.side is Side.BUY else mark >= req.price
        if not marketable:
            if tif in (TimeInForce.IOC, TimeInForce.FOK):
                order.finish(OrderStatus.CANCELLED, reason=_reason(ReasonCode.NO_IMMEDIATE_FILL))
            return  # rests as New
        if tif is TimeInForce.POST_ONLY:
            order.finish(OrderStatus.CANCELLED, reason=_reason(ReasonCode.POST_ONLY_WOULD_TAKE))
            return
        # Taking liquidity, but never at a worse price than the limit.
        price = min(slipped, req.price) if req.side is Side.BUY else max(slipped, req.price)
        self._take(order, price)

    def _take(self, order: PaperOrder, price: Decimal) -> None:
        """Fill an order that takes liquidity; what cannot fill now is cancelled unless GTC."""
        tif = order.time_in_force
        wanted = order.remaining_qty
        depth = self._depth(order)
        if tif is TimeInForce.FOK and depth < wanted:
            order.finish(OrderStatus.CANCELLED, reason=_reason(ReasonCode.NOT_FULLY_FILLED))
            return
        self._execute(order, min(wanted, depth), price, self.settings.taker_fee_rate, maker=False)
        if order.status is OrderStatus.PARTIALLY_FILLED and tif is not TimeInForce.GTC:
            order.finish(OrderStatus.CANCELLED, reason=_reason(ReasonCode.NOT_FULLY_FILLED))

    def _match_resting(self, symbol: str) -> None:
        """Fill the resting limit orders of ``symbol`` that the current price reaches."""
        mark = self._prices[symbol]
        resting = sorted(
            (o for o in self._open_orders() if o.request.symbol == symbol),
            key=lambda o: o.created_at,
        )
        for order in resting:
            limit = order.request.price
            if limit is None:
                continue
            reached = mark <= limit if order.request.side is Side.BUY else mark >= limit
            if not reached:
                continue
            qty = min(order.remaining_qty, self._depth(order))
            made = len(order.executions)
            self._execute(order, qty, limit, self.settings.maker_fee_rate, maker=True)
            self._stream.report(order, order.executions[made:])

    def _depth(self, order: PaperOrder) -> Decimal:
        cap = self._rules[order.request.symbol].max_fill_qty
        return order.remaining_qty if cap is None else cap

    def _execute(
        self, order: PaperOrder, qty: Decimal, price: Decimal, fee_rate: Decimal, *, maker: bool
    ) -> None:
        """Book a fill of up to ``qty`` at ``price`` and update the order's status.

        A reduce-only order fills at most the current position; the rest is cancelled.
        """
        req = order.request
        reduce_cut = False
        if req.reduce_only:
            size = self._ledger.position(req.symbol).size
            opposite = size != 0 and (size > 0) != (req.side is Side.BUY)
            closable = abs(size) if opposite else Decimal(0)
            if closable < qty:
                qty, reduce_cut = closable, True
        at = now()
        if qty > 0:
            value = qty * price
            fee = value * fee_rate
            realized = self._ledger.apply_fill(req.symbol, req.side, qty, price, fee)
            order.cum_qty += qty
            order.cum_value += value
            order.cum_fee += fee
            order.closed_pnl += realized
            order.executions.append(
                ExecutionReport(
                    exec_id=str(uuid.uuid4()),
                    exchange_order_id=order.order_id,
                    client_order_id=req.client_order_id,
                    category=req.category,
                    symbol=req.symbol,
                    side=req.side,
                    qty=qty,
                    price=price,
                    executed_at=at,
                    fee=Fee(fee, order.instrument.quote_coin),
                    value=value,
                    is_maker=maker,
                    order_qty=req.qty,
                    leaves_qty=req.qty - order.cum_qty,
                    order_type=req.order_type,
                )
            )
        order.touch(at)
        if reduce_cut:
            order.finish(OrderStatus.CANCELLED, reason=_reason(ReasonCode.CANCELLED_REDUCE_ONLY))
        elif order.remaining_qty == 0:
            order.finish(OrderStatus.FILLED)
        elif order.cum_qty > 0:
            order.finish(OrderStatus.PARTIALLY_FILLED)
