"""The fake exchange's book-keeping: orders, fills, positions, balances.

Everything here is synchronous and free of I/O: each state change returns the private-stream
events it causes, ``(topic, category, item)``, rendered at the moment of the change, so a later
change can never alter an earlier message. The HTTP layer turns :class:`BybitError` into
Bybit's error envelope.

Matching model: one price per symbol (``set_price``) and unlimited liquidity at it. Market
orders and limit orders that cross that price fill completely at it as takers; resting limit
orders fill at their own price as makers when a later price crosses them, or when a test calls
``fill``.
"""

from __future__ import annotations

import itertools
import re
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_DOWN, Decimal
from typing import Any, TypeVar
from urllib.parse import unquote

from tests.fake_bybit import wire
from tests.fake_bybit.instruments import Instrument
from tests.fake_bybit.model import (
    FEE_RATES,
    OPEN_STATUSES,
    ZERO,
    BybitError,
    Execution,
    FakeOrder,
    Position,
)
from tests.fake_bybit.params import BodyParams, QueryParams, parse_decimal

#: ``(topic, category, item)`` for the private WebSocket.
Event = tuple[str, str, dict[str, Any]]

CATEGORIES = ("linear", "inverse", "spot", "option")
_ORDER_LINK_ID = re.compile(r"[0-9A-Za-z_-]{1,36}")
_CURSOR = re.compile(r"page_args=(\d+)")
_MISSING_SCOPE = "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin"
#: How far a derivatives market order's protection price sits from the last price.
_MARKET_SLIPPAGE = Decimal("0.01")
_SEVEN_DAYS_MS = 7 * 24 * 3600 * 1000

T = TypeVar("T")


class Exchange:
    """One Bybit unified account and the market it trades in."""

    def __init__(
        self,
        instruments: Iterable[Instrument],
        prices: Mapping[str, Decimal],
        balances: Mapping[str, Decimal],
        clock: Callable[[], int],
    ) -> None:
        self.instruments: dict[tuple[str, str], Instrument] = {
            (inst.category, inst.symbol): inst for inst in instruments
        }
        missing = {i.symbol for i in self.instruments.values()} - set(prices)
        if missing:
            raise ValueError(f"no price for {sorted(missing)}")
        self.prices: dict[str, Decimal] = {s: Decimal(p) for s, p in prices.items()}
        self.wallet: dict[str, Decimal] = {c: Decimal(v) for c, v in balances.items()}
        self.realised: dict[str, Decimal] = {}
        self.orders_by_id: dict[str, FakeOrder] = {}
        self.orders_by_link: dict[str, FakeOrder] = {}
        self.executions: list[Execution] = []
        self.positions: dict[str, Position] = {}
        self._clock = clock
        self._seq = itertools.count(4_688_002_127)
        self._index = itertools.count(1)
        self._spot_ids = itertools.count(1_900_000_000_000_000_001)

    # ----------------------------------------------------------------- orders

    def create(
        self, body: Mapping[str, Any], *, reject_reason: str | None = None
    ) -> tuple[dict[str, str], list[Event]]:
        """``POST /v5/order/create``: validate like Bybit, place, match.

        With ``reject_reason`` the order is accepted (acknowledged) and then ``Rejected`` by the
        matching engine instead of matched, as Bybit's asynchronous order entry can do.
        """
        p = BodyParams(body)
        category = p.required("category")
        if category not in CATEGORIES:
            raise BybitError(10001, "Illegal category")
        symbol = p.required("symbol")
        inst = self.instruments.get((category, symbol))
        spot = category == "spot"
        if inst is None:
            raise (
                BybitError(170121, "Invalid symbol.")
                if spot
                else BybitError(10001, "params error: symbol invalid")
            )
        side = p.required("side")
        if side not in ("Buy", "Sell"):
            raise (
                BybitError(170117, "Invalid side.")
                if spot
                else BybitError(10001, "params error: side invalid")
            )
        order_type = p.required("orderType")
        if order_type not in ("Market", "Limit"):
            raise (
                BybitError(170116, "Invalid orderType.")
                if spot
                else BybitError(10001, "params error: orderType invalid")
            )
        qty = parse_decimal(p.required("qty"))
        if qty is None or qty <= 0:
            raise (
                BybitError(170130, "Data sent for paramter 'qty' is not valid.")
                if spot
                else (BybitError(10001, "Qty invalid"))
            )
        price_text = p.text("price")
        time_in_force = p.text("timeInForce", "GTC")
        if time_in_force not in ("GTC", "IOC", "FOK", "PostOnly", "RPI"):
            raise (
                BybitError(170115, "Invalid timeInForce.")
                if spot
                else BybitError(10001, "params error: timeInForce invalid")
            )
        link = p.text("orderLinkId")
        if link and not _ORDER_LINK_ID.fullmatch(link):
            raise BybitError(10001, "params error: orderLinkId invalid")
        reduce_only = p.flag("reduceOnly", False)
        close_on_trigger = p.flag("closeOnTrigger", False)
        position_idx = p.integer("positionIdx", 0)
        p.integer("isLeverage", 0)
        p.integer("triggerDirection", 0)
        market_unit = p.text("marketUnit")
        take_profit = self._optional_price(p, "takeProfit", inst)
        stop_loss = self._optional_price(p, "stopLoss", inst)
        for name in ("tpslMode", "tpTriggerBy", "slTriggerBy", "orderFilter", "smpType"):
            p.text(name)
        if p.text("triggerPrice"):
            raise BybitError(10001, "fake-bybit: conditional orders (triggerPrice) not supported")
        if position_idx in (1, 2):
            raise BybitError(10001, "position idx not match position mode")
        if position_idx != 0:
            raise BybitError(10001, "params error: positionIdx invalid")
        if link and link in self.orders_by_link:
            if spot:
                raise BybitError(170141, "Duplicate clientOrderId")
            raise BybitError(110072, "OrderLinkedID is duplicate")

        last = self.prices[symbol]
        price: Decimal | None = None
        if order_type == "Limit":
            if not price_text:
                raise BybitError(10001, "params error: price is required for a limit order")
            price = parse_decimal(price_text)
            if price is None or price <= 0:
                raise (
                    BybitError(170130, "Data sent for paramter 'price' is not valid.")
                    if (spot)
                    else BybitError(10001, "Price invalid")
                )
        else:
            time_in_force = "IOC"

        if spot:
            market_unit = self._check_spot(inst, side, order_type, qty, price, market_unit, last)
        else:
            market_unit = ""
            qty = self._check_derivative(inst, side, order_type, qty, price, reduce_only, last)
            if order_type == "Market":
                factor = 1 + _MARKET_SLIPPAGE if side == "Buy" else 1 - _MARKET_SLIPPAGE
                price = (last * factor).quantize(inst.tick_size, rounding=ROUND_DOWN)

        now = self._clock()
        order = FakeOrder(
            index=next(self._index),
            order_id=str(next(self._spot_ids)) if spot else str(uuid.uuid4()),
            order_link_id=link,
            instrument=inst,
            side=side,
            order_type=order_type,
            qty=qty,
            price=price,
            time_in_force=time_in_force,
            reduce_only=reduce_only,
            close_on_trigger=close_on_trigger,
            position_idx=position_idx,
            market_unit=market_unit,
            take_profit=take_profit,
            stop_loss=stop_loss,
            last_price_on_created=last,
            created_ms=now,
            updated_ms=now,
            request=dict(body),
        )
        self.orders_by_id[order.order_id] = order
        if link:
            self.orders_by_link[link] = order
        if reject_reason is not None:
            events = self._close(order, "Rejected", reject_reason=reject_reason)
        else:
            events = self._match_new(order, last)
        return {"orderId": order.order_id, "orderLinkId": link}, events

    def _match_new(self, order: FakeOrder, last: Decimal) -> list[Event]:
        if order.order_type == "Market":
            return self._fill(order, order.leaves_qty or order.qty, last, is_maker=False)
        assert order.price is not None
        crosses = order.price >= last if order.side == "Buy" else order.price <= last
        if crosses and order.time_in_force == "PostOnly":
            return self._close(order, "Cancelled", reject_reason="EC_PostOnlyWillTakeLiquidity")
        if crosses:
            return self._fill(order, order.leaves_qty, last, is_maker=False)
        if order.time_in_force in ("IOC", "FOK"):
            reason = (
                "EC_NoImmediateQtyToFill"
                if order.time_in_force == "IOC"
                else ("EC_CancelForNoFullFill")
            )
            return self._close(order, "Cancelled", reject_reason=reason)
        return [self._order_event(order), *self._position_events(order.instrument)]

    def _optional_price(self, p: BodyParams, name: str, inst: Instrument) -> Decimal | None:
        text = p.text(name)
        if not text:
            return None
        value = parse_decimal(text)
        if value is None or value % inst.tick_size != 0:
            raise BybitError(10001, f"params error: {name} invalid")
        return value if value > 0 else None

    def _check_derivative(
        self,
        inst: Instrument,
        side: str,
        order_type: str,
        qty: Decimal,
        price: Decimal | None,
        reduce_only: bool,
        last: Decimal,
    ) -> Decimal:
        """Bybit's lot, tick, notional, reduce-only and margin rules; returns the order qty."""
        if qty % inst.qty_step != 0:
            raise BybitError(10001, "Qty invalid")
        if qty < inst.lot("minOrderQty"):
            raise BybitError(10001, "The number of contracts exceeds minimum limit allowed")
        max_qty = inst.lot("maxMktOrderQty" if order_type == "Market" else "maxOrderQty")
        if qty > max_qty:
            raise BybitError(
                10001,
                "The number of contracts exceeds maximum limit allowed: too large, "
                f"order_qty:{int(qty * 10**8)} > max_qty:{int(max_qty * 10**8)}",
            )
        if price is not None:
            if price % inst.tick_size != 0:
                raise BybitError(10001, "Price invalid")
            low, high = inst.min_price, inst.max_price
            if (low is not None and price < low) or (high is not None and price > high):
                raise BybitError(110003, "Order price exceeds the allowable range.")
        notional = qty * (price if price is not None else last)
        min_notional = inst.lot("minNotionalValue")
        if notional < min_notional:
            raise BybitError(
                110094,
                f"Order does not meet minimum order value {wire.plain(min_notional)}"
                f"{inst.settle_coin}",
            )
        if reduce_only:
            position = self.positions.get(inst.symbol)
            size = position.size if position is not None else ZERO
            if size == 0:
                raise BybitError(
                    110017, "current position is zero, cannot fix reduce-only order qty"
                )
            if (side == "Buy") == (size > 0):
                raise BybitError(110017, "Reduce-only rule not satisfied")
            return min(qty, abs(size))
        leverage = self._position(inst).leverage
        if notional / leverage > self.available_margin(inst.settle_coin):
            raise BybitError(110007, "ab not enough for new order")
        return qty

    def _check_spot(
        self,
        inst: Instrument,
        side: str,
        order_type: str,
        qty: Decimal,
        price: Decimal | None,
        market_unit: str,
        last: Decimal,
    ) -> str:
        """Bybit's spot lot, tick, amount and balance rules; returns the effective marketUnit."""
        if order_type == "Market":
            market_unit = market_unit or ("quoteCoin" if side == "Buy" else "baseCoin")
            if market_unit not in ("baseCoin", "quoteCoin"):
                raise BybitError(170130, "Data sent for paramter 'marketUnit' is not valid.")
        else:
            market_unit = ""
        if market_unit == "quoteCoin":
            if qty % inst.lot("quotePrecision") != 0:
                raise BybitError(170148, "Market order amount decimal too long")
            amount = qty
        else:
            if qty % inst.lot("basePrecision") != 0:
                raise BybitError(170137, "Order volume decimal too long")
            if qty < inst.lot("minOrderQty"):
                raise BybitError(170136, "Order quantity lower than the minimum.")
            limit_name = "maxMarketOrderQty" if order_type == "Market" else "maxLimitOrderQty"
            if qty > inst.lot(limit_name):
                raise BybitError(170135, "Order quantity too large.")
            amount = qty * (price if price is not None else last)
        if price is not None and price % inst.tick_size != 0:
            raise BybitError(170134, "Order price decimal too long.")
        if amount < inst.lot("minOrderAmt"):
            raise BybitError(170140, "Transaction amount lower than the minimum.")
        if side == "Buy":
            need, coin = amount, inst.quote_coin
        else:
            need = qty if market_unit != "quoteCoin" else qty / last
            coin = inst.base_coin
        if need > self.free(coin):
            raise BybitError(170131, "Balance insufficient")
        return market_unit

    def cancel(self, body: Mapping[str, Any]) -> tuple[dict[str, str], list[Event]]:
        """``POST /v5/order/cancel``."""
        p = BodyParams(body)
        category = p.required("category")
        if category not in CATEGORIES:
            raise BybitError(10001, "Illegal category")
        symbol = p.required("symbol")
        order_id, link = p.text("orderId"), p.text("orderLinkId")
        p.text("orderFilter")
        if not order_id and not link:
            raise BybitError(10001, "params error: orderId or orderLinkId is required")
        order = self.orders_by_id.get(order_id) if order_id else self.orders_by_link.get(link)
        if (
            order is None
            or order.category != category
            or order.symbol != symbol
            or not order.is_open
        ):
            if category == "spot":
                raise BybitError(170213, "Order does not exist.")
            raise BybitError(110001, "order not exists or too late to cancel")
        return (
            {"orderId": order.order_id, "orderLinkId": order.order_link_id},
            self._close(order, self._cancelled_status(order), cancel_type="CancelByUser"),
        )

    def cancel_all(self, body: Mapping[str, Any]) -> tuple[dict[str, Any], list[Event]]:
        """``POST /v5/order/cancel-all``."""
        p = BodyParams(body)
        category = p.required("category")
        if category not in CATEGORIES:
            raise BybitError(10001, "Illegal category")
        symbol, base, settle = p.text("symbol"), p.text("baseCoin"), p.text("settleCoin")
        if category == "linear" and not (symbol or base or settle):
            raise BybitError(10001, _MISSING_SCOPE)
        cancelled: list[dict[str, str]] = []
        events: list[Event] = []
        for order in sorted(self.orders_by_id.values(), key=lambda o: o.index):
            if not order.is_open or order.category != category:
                continue
            inst = order.instrument
            if (
                (symbol and inst.symbol != symbol)
                or (base and inst.base_coin != base)
                or (settle and inst.settle_coin != settle)
            ):
                continue
            cancelled.append({"orderId": order.order_id, "orderLinkId": order.order_link_id})
            events += self._close(order, self._cancelled_status(order), cancel_type="CancelByUser")
        return {"list": cancelled, "success": "1"}, events

    @staticmethod
    def _cancelled_status(order: FakeOrder) -> str:
        if order.category == "spot" and order.cum_exec_qty > 0:
            return "PartiallyFilledCanceled"
        return "Cancelled"

    def _close(
        self,
        order: FakeOrder,
        status: str,
        *,
        cancel_type: str = "UNKNOWN",
        reject_reason: str = "EC_NoError",
    ) -> list[Event]:
        order.status = status
        order.cancel_type = cancel_type
        order.reject_reason = reject_reason
        order.updated_ms = self._clock()
        return [self._order_event(order), *self._position_events(order.instrument)]

    # ------------------------------------------------------------------ fills

    def set_price(self, symbol: str, price: Decimal) -> list[Event]:
        """New last price for ``symbol``; fills every resting limit order it crosses."""
        if symbol not in self.prices:
            raise KeyError(f"unknown symbol {symbol}")
        self.prices[symbol] = Decimal(price)
        events: list[Event] = []
        for order in sorted(self.orders_by_id.values(), key=lambda o: o.index):
            if not order.is_open or order.symbol != symbol or order.price is None:
                continue
            crossed = order.price >= price if order.side == "Buy" else order.price <= price
            if crossed:
                events += self._fill(order, order.leaves_qty, order.price, is_maker=True)
        return events

    def fill(self, order: FakeOrder, qty: Decimal | None, price: Decimal | None) -> list[Event]:
        """A (partial) maker fill of a resting order, as a test asks for it."""
        if not order.is_open:
            raise ValueError(f"order {order.order_link_id or order.order_id} is {order.status}")
        qty = order.leaves_qty if qty is None else Decimal(qty)
        if not 0 < qty <= order.leaves_qty:
            raise ValueError(f"fill qty {qty} outside (0, {order.leaves_qty}]")
        fill_price = Decimal(price) if price is not None else order.price
        if fill_price is None:
            fill_price = self.prices[order.symbol]
        return self._fill(order, qty, fill_price, is_maker=True)

    def _fill(
        self, order: FakeOrder, qty: Decimal, price: Decimal, *, is_maker: bool
    ) -> list[Event]:
        inst = order.instrument
        if order.reduce_only and inst.category != "spot":
            position = self.positions.get(inst.symbol)
            size = position.size if position is not None else ZERO
            room = abs(size) if (order.side == "Buy") == (size < 0) else ZERO
            if room == 0:
                return self._close(order, "Cancelled", cancel_type="CancelByReduceOnly")
            if qty > room:
                partial = self._fill(order, room, price, is_maker=is_maker)
                return partial + self._close(order, "Cancelled", cancel_type="CancelByReduceOnly")
        now = self._clock()
        taker, maker = FEE_RATES[inst.category]
        rate = maker if is_maker else taker
        closed_size = exec_pnl = ZERO
        if inst.category == "spot":
            if order.quote_qty:
                qty = (qty / price).quantize(inst.lot("basePrecision"), rounding=ROUND_DOWN)
            value = qty * price
            if order.side == "Buy":
                fee, fee_coin = qty * rate, inst.base_coin
                self._credit(inst.quote_coin, -value)
                self._credit(inst.base_coin, qty - fee)
            else:
                fee, fee_coin = value * rate, inst.quote_coin
                self._credit(inst.base_coin, -qty)
                self._credit(inst.quote_coin, value - fee)
        else:
            value = qty * price
            fee, fee_coin = value * rate, inst.settle_coin
            closed_size, exec_pnl = self._apply_to_position(inst, order.side, qty, price, fee, now)
            self._credit(fee_coin, exec_pnl - fee)
            self.realised[fee_coin] = self.realised.get(fee_coin, ZERO) + exec_pnl - fee
        order.cum_exec_qty += qty
        order.cum_exec_value += value
        order.cum_exec_fee += fee
        order.closed_pnl += exec_pnl - fee if closed_size else ZERO
        order.fee_coin = fee_coin
        order.updated_ms = now
        done = order.quote_qty or order.cum_exec_qty >= order.qty
        order.status = "Filled" if done else "PartiallyFilled"
        execution = Execution(
            seq=next(self._seq),
            exec_id=str(uuid.uuid4()),
            order_id=order.order_id,
            order_link_id=order.order_link_id,
            instrument=inst,
            side=order.side,
            order_type=order.order_type,
            order_qty=order.qty,
            order_price=order.price,
            market_unit=order.market_unit,
            exec_qty=qty,
            exec_price=price,
            exec_value=value,
            exec_fee=fee,
            fee_rate=rate,
            fee_coin=fee_coin,
            is_maker=is_maker,
            leaves_qty=order.leaves_qty,
            closed_size=closed_size,
            exec_pnl=exec_pnl,
            mark_price=self.prices[inst.symbol],
            exec_time_ms=now,
        )
        self.executions.append(execution)
        return [
            ("execution", inst.category, wire.execution_ws(execution)),
            self._order_event(order),
            *self._position_events(inst),
            ("wallet", inst.category, self.wallet_account(None)),
        ]

    def _apply_to_position(
        self, inst: Instrument, side: str, qty: Decimal, price: Decimal, fee: Decimal, now: int
    ) -> tuple[Decimal, Decimal]:
        """Books a derivatives fill; returns (closed size, gross realised PnL)."""
        position = self._position(inst)
        signed = qty if side == "Buy" else -qty
        closed = pnl = ZERO
        if position.size == 0:
            position.cur_realised_pnl = ZERO
        if position.size == 0 or (position.size > 0) == (signed > 0):
            new_size = position.size + signed
            position.avg_price = (abs(position.size) * position.avg_price + qty * price) / abs(
                new_size
            )
            position.size = new_size
        else:
            closed = min(qty, abs(position.size))
            direction = 1 if position.size > 0 else -1
            pnl = closed * (price - position.avg_price) * direction
            position.size += signed
            if position.size == 0:
                position.avg_price = ZERO
            elif (position.size > 0) != (direction > 0):
                position.avg_price = price
        position.cur_realised_pnl += pnl - fee
        position.cum_realised_pnl += pnl - fee
        position.seq = next(self._seq)
        position.updated_ms = now
        return closed, pnl

    def _position(self, inst: Instrument) -> Position:
        position = self.positions.get(inst.symbol)
        if position is None:
            now = self._clock()
            position = Position(inst, created_ms=now, updated_ms=now)
            self.positions[inst.symbol] = position
        return position

    def _credit(self, coin: str, amount: Decimal) -> None:
        self.wallet[coin] = self.wallet.get(coin, ZERO) + amount

    def _order_event(self, order: FakeOrder) -> Event:
        return ("order", order.category, wire.order_ws(order))

    def _position_events(self, inst: Instrument) -> list[Event]:
        """Bybit pushes the position on every order change of a derivatives symbol."""
        if inst.category == "spot":
            return []
        position = self._position(inst)
        return [("position", inst.category, wire.position_ws(position, self.prices[inst.symbol]))]

    # --------------------------------------------------------------- balances

    def _linear_positions(self, coin: str) -> list[Position]:
        return [
            p for p in self.positions.values() if p.instrument.settle_coin == coin and p.size != 0
        ]

    def _order_margin(self, coin: str) -> Decimal:
        total = ZERO
        for order in self.orders_by_id.values():
            inst = order.instrument
            if (
                order.is_open
                and inst.category != "spot"
                and inst.settle_coin == coin
                and not order.reduce_only
                and order.price is not None
            ):
                total += order.leaves_qty * order.price / self._position(inst).leverage
        return total

    def locked(self, coin: str) -> Decimal:
        """What open spot orders hold back of ``coin``."""
        total = ZERO
        for order in self.orders_by_id.values():
            inst = order.instrument
            if not order.is_open or inst.category != "spot" or order.price is None:
                continue
            if order.side == "Buy" and inst.quote_coin == coin:
                total += order.leaves_qty * order.price
            elif order.side == "Sell" and inst.base_coin == coin:
                total += order.leaves_qty
        return total

    def free(self, coin: str) -> Decimal:
        return self.wallet.get(coin, ZERO) - self.locked(coin)

    def available_margin(self, coin: str) -> Decimal:
        positions = self._linear_positions(coin)
        upl = sum((p.unrealised_pnl(self.prices[p.instrument.symbol]) for p in positions), ZERO)
        im = sum((p.initial_margin for p in positions), ZERO)
        return self.free(coin) + upl - im - self._order_margin(coin)

    def _usd_price(self, coin: str) -> Decimal:
        if coin in ("USDT", "USDC"):
            return Decimal(1)
        return self.prices.get(f"{coin}USDT", ZERO)

    def wallet_account(self, coins: set[str] | None) -> dict[str, Any]:
        """The single UNIFIED account item of ``wallet-balance`` (and the ``wallet`` topic)."""
        total_equity = total_wallet = total_upl = total_im = total_mm = ZERO
        coin_items: list[dict[str, Any]] = []
        for coin in sorted(self.wallet):
            positions = self._linear_positions(coin)
            upl = sum((p.unrealised_pnl(self.prices[p.instrument.symbol]) for p in positions), ZERO)
            position_im = sum((p.initial_margin for p in positions), ZERO)
            position_mm = sum((p.value * Decimal("0.005") for p in positions), ZERO)
            order_im = self._order_margin(coin)
            balance = self.wallet[coin]
            usd = self._usd_price(coin)
            equity = balance + upl
            total_equity += equity * usd
            total_wallet += balance * usd
            total_upl += upl * usd
            total_im += (position_im + order_im) * usd
            total_mm += position_mm * usd
            if coins is not None and coin not in coins:
                continue
            coin_items.append(
                {
                    "availableToBorrow": "",
                    "bonus": "0",
                    "accruedInterest": "0",
                    "availableToWithdraw": "",
                    "totalOrderIM": wire.plain(order_im),
                    "equity": wire.plain(equity),
                    "totalPositionMM": wire.plain(position_mm),
                    "usdValue": wire.plain(equity * usd),
                    "spotHedgingQty": "0",
                    "unrealisedPnl": wire.plain(upl),
                    "collateralSwitch": True,
                    "borrowAmount": "0",
                    "totalPositionIM": wire.plain(position_im),
                    "walletBalance": wire.plain(balance),
                    "cumRealisedPnl": wire.plain(self.realised.get(coin, ZERO)),
                    "locked": wire.plain(self.locked(coin)),
                    "marginCollateral": True,
                    "coin": coin,
                    "spotBorrow": "0",
                }
            )
        margin_balance = total_wallet + total_upl
        return {
            "totalEquity": wire.plain(total_equity),
            "accountIMRate": wire.plain(_ratio(total_im, margin_balance)),
            "accountIMRateByMp": wire.plain(_ratio(total_im, margin_balance)),
            "totalMarginBalance": wire.plain(margin_balance),
            "totalInitialMargin": wire.plain(total_im),
            "totalInitialMarginByMp": wire.plain(total_im),
            "accountType": "UNIFIED",
            "totalAvailableBalance": wire.plain(margin_balance - total_im),
            "accountMMRate": wire.plain(_ratio(total_mm, margin_balance)),
            "accountMMRateByMp": wire.plain(_ratio(total_mm, margin_balance)),
            "totalPerpUPL": wire.plain(total_upl),
            "totalWalletBalance": wire.plain(total_wallet),
            "accountLTV": "0",
            "totalMaintenanceMargin": wire.plain(total_mm),
            "totalMaintenanceMarginByMp": wire.plain(total_mm),
            "coin": coin_items,
        }

    # ---------------------------------------------------------------- queries

    def _category(self, q: QueryParams) -> str:
        category = q.text("category")
        if category not in CATEGORIES:
            raise BybitError(10001, "Illegal category")
        return category

    def _orders_matching(self, q: QueryParams, category: str) -> list[FakeOrder] | None:
        """Orders selected by Bybit's priority orderId > orderLinkId; ``None``: not by id."""
        order_id, link = q.text("orderId"), q.text("orderLinkId")
        if order_id:
            found = self.orders_by_id.get(order_id)
        elif link:
            found = self.orders_by_link.get(link)
        else:
            return None
        if found is None or found.category != category:
            return []
        return [found]

    def _scoped(self, orders: Iterable[FakeOrder], q: QueryParams) -> list[FakeOrder]:
        symbol, base, settle = q.text("symbol"), q.text("baseCoin"), q.text("settleCoin")
        return [
            o
            for o in orders
            if (not symbol or o.symbol == symbol)
            and (not base or o.instrument.base_coin == base)
            and (not settle or o.instrument.settle_coin == settle)
        ]

    def realtime(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/order/realtime``: open orders, and recent closed ones with ``openOnly=1``."""
        q = QueryParams(query)
        category = self._category(q)
        if category == "linear" and not (
            q.text("symbol") or q.text("baseCoin") or q.text("settleCoin")
        ):
            raise BybitError(10001, _MISSING_SCOPE)
        open_only = q.integer("openOnly", default=0, low=0, high=2)
        limit = q.integer("limit", default=20, low=1, high=50)
        q.text("orderFilter")
        selected = self._orders_matching(q, category)
        if selected is None:
            selected = [
                o
                for o in self.orders_by_id.values()
                if o.category == category and (o.is_open or open_only != 0)
            ]
        visible = [o for o in self._scoped(selected, q) if o.in_realtime]
        return self._page_of_orders(visible, category, limit, q.text("cursor"))

    def history(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/order/history``: every order of the last seven days, any status."""
        q = QueryParams(query)
        category = self._category(q)
        limit = q.integer("limit", default=20, low=1, high=50)
        start, end = self._time_window(q)
        status = q.text("orderStatus")
        q.text("orderFilter")
        selected = self._orders_matching(q, category)
        if selected is None:
            selected = [
                o
                for o in self.orders_by_id.values()
                if o.category == category and start <= o.created_ms <= end
            ]
        chosen = [o for o in self._scoped(selected, q) if not status or o.status == status]
        return self._page_of_orders(chosen, category, limit, q.text("cursor"))

    def _time_window(self, q: QueryParams) -> tuple[int, int]:
        start_text, end_text = q.text("startTime"), q.text("endTime")
        if bool(start_text) != bool(end_text):
            raise BybitError(10001, "params error: startTime and endTime must be passed together")
        if not start_text:
            now = self._clock()
            return now - _SEVEN_DAYS_MS, now + 1
        try:
            start, end = int(start_text), int(end_text)
        except ValueError:
            raise BybitError(10001, "params error: startTime or endTime invalid") from None
        if end < start or end - start > _SEVEN_DAYS_MS:
            raise BybitError(10001, "params error: time range must be within 7 days")
        return start, end

    def _page_of_orders(
        self, orders: list[FakeOrder], category: str, limit: int, cursor: str
    ) -> dict[str, Any]:
        page, next_cursor = _page(orders, limit, cursor, key=lambda o: o.index)
        return {
            "list": [wire.order_rest(o) for o in page],
            "nextPageCursor": next_cursor,
            "category": category,
        }

    def execution_list(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/execution/list``, newest first."""
        q = QueryParams(query)
        category = self._category(q)
        limit = q.integer("limit", default=50, low=1, high=100)
        start, end = self._time_window(q)
        symbol, base = q.text("symbol"), q.text("baseCoin")
        order_id, link = q.text("orderId"), q.text("orderLinkId")
        exec_type = q.text("execType")
        chosen = [
            e
            for e in self.executions
            if e.category == category
            and start <= e.exec_time_ms <= end
            and (not symbol or e.symbol == symbol)
            and (not base or e.instrument.base_coin == base)
            and (not order_id or e.order_id == order_id)
            and (not link or e.order_link_id == link)
            and (not exec_type or exec_type == "Trade")
        ]
        page, next_cursor = _page(chosen, limit, q.text("cursor"), key=lambda e: e.seq)
        return {
            "nextPageCursor": next_cursor,
            "category": category,
            "list": [wire.execution_rest(e) for e in page],
        }

    def position_list(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/position/list`` (one-way mode)."""
        q = QueryParams(query)
        category = q.text("category")
        if category not in ("linear", "inverse", "option"):
            raise BybitError(10001, "Illegal category")
        limit = q.integer("limit", default=20, low=1, high=200)
        symbol, settle, base = q.text("symbol"), q.text("settleCoin"), q.text("baseCoin")
        if category == "linear" and not (symbol or settle or base):
            raise BybitError(10001, _MISSING_SCOPE)
        if symbol:
            inst = self.instruments.get((category, symbol))
            if inst is None:
                raise BybitError(10001, "params error: symbol invalid")
            positions = [self._position(inst)]
        else:
            positions = [
                p
                for p in self.positions.values()
                if p.instrument.category == category
                and p.size != 0
                and (not settle or p.instrument.settle_coin == settle)
                and (not base or p.instrument.base_coin == base)
            ]
        positions.sort(key=lambda p: p.instrument.symbol)
        ranked = {id(p): i for i, p in enumerate(reversed(positions), start=1)}
        page, next_cursor = _page(positions, limit, q.text("cursor"), key=lambda p: ranked[id(p)])
        return {
            "list": [wire.position_rest(p, self.prices[p.instrument.symbol]) for p in page],
            "nextPageCursor": next_cursor,
            "category": category,
        }

    def wallet_balance(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/account/wallet-balance?accountType=UNIFIED``."""
        q = QueryParams(query)
        account_type = q.text("accountType")
        if account_type != "UNIFIED":
            raise BybitError(10001, "accountType only support UNIFIED.")
        coin = q.text("coin")
        coins = {c for c in coin.split(",") if c} if coin else None
        return {"list": [self.wallet_account(coins)]}

    def instruments_info(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/market/instruments-info``."""
        q = QueryParams(query)
        category = self._category(q)
        q.integer("limit", default=500, low=1, high=1000)
        symbol, status, base = q.text("symbol"), q.text("status"), q.text("baseCoin")
        items = [
            dict(inst.info)
            for inst in self.instruments.values()
            if inst.category == category
            and (not symbol or inst.symbol == symbol)
            and (not status or inst.info.get("status") == status)
            and (not base or inst.base_coin == base)
        ]
        result: dict[str, Any] = {"category": category, "list": items}
        if category != "spot":
            result["nextPageCursor"] = ""
        return result

    def tickers(self, query: Mapping[str, str]) -> dict[str, Any]:
        """``GET /v5/market/tickers``."""
        q = QueryParams(query)
        category = self._category(q)
        symbol = q.text("symbol")
        listed = [i for i in self.instruments.values() if i.category == category]
        if symbol:
            listed = [i for i in listed if i.symbol == symbol]
            if not listed:
                raise BybitError(10001, "Not supported symbols")
        return {
            "category": category,
            "list": [wire.ticker(i, self.prices[i.symbol]) for i in listed],
        }

    def open_orders(self) -> list[FakeOrder]:
        return [o for o in self.orders_by_id.values() if o.status in OPEN_STATUSES]


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    if denominator <= 0:
        return ZERO
    return (numerator / denominator).quantize(Decimal("0.0001"))


def _page(
    items: list[T], limit: int, cursor: str, *, key: Callable[[T], int]
) -> tuple[list[T], str]:
    """Newest first, ``limit`` at a time; Bybit-style opaque, percent-encoded cursors."""
    ordered = sorted(items, key=key, reverse=True)
    if cursor:
        # The query string was decoded once already; a client that encoded the cursor a
        # second time still names the same page.
        match = _CURSOR.search(unquote(unquote(cursor)))
        if match is None:
            raise BybitError(10001, "params error: cursor invalid")
        after = int(match.group(1))
        ordered = [item for item in ordered if key(item) < after]
    page = ordered[:limit]
    if len(ordered) <= limit:
        return page, ""
    return page, f"page_args%3D{key(page[-1])}%26"
