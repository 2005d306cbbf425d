"""The fake exchange's book-keeping: orders, fills, positions, balances.

Everything here is synchronous and free of I/O: each state change returns the private-stream
events it causes, ``(topic, category, item)``, rendered at the moment of the change, so a later
change can never alter an earlier message. The HTTP layer turns :class:`BybitError` into
Bybit's error envelope.

Matching model: one price per symbol (``set_price``) and unlimited liquidity at it. Market
orders and limit orders that cross that price fill completely at it as takers; resting limit
orders fill at their own price as makers when a later price crosses them, or when a test calls
``fill`` / ``fill_in_parts``.

Accounts are one-way by default; with ``hedge_mode`` every derivatives order needs
``positionIdx`` 1 (long side) or 2 (short side), a buy on side 2 or a sell on side 1 closes
that side, and each symbol has two positions. Inverse contracts (``BTCUSD``) count contracts of
1 USD; their values, margin, fees and PnL are in the base coin.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Callable, Iterable, Mapping
from decimal import ROUND_DOWN, ROUND_HALF_UP, Decimal
from typing import Any

from tests.fake_bybit import wire
from tests.fake_bybit.instruments import Instrument
from tests.fake_bybit.model import (
    FEE_RATES,
    ZERO,
    BybitError,
    Execution,
    FakeOrder,
    Position,
)
from tests.fake_bybit.params import BodyParams
from tests.fake_bybit.rules import (
    CATEGORIES,
    NewOrder,
    check_derivative_lot,
    check_spot_lot,
    parse_create,
)

#: ``(topic, category, item)`` for the private WebSocket.
Event = tuple[str, str, dict[str, Any]]

MISSING_SCOPE = "Missing some parameters that must be filled in, symbol or settleCoin or baseCoin"
#: How far a derivatives market order's protection price sits from the last price.
_MARKET_SLIPPAGE = Decimal("0.01")
_PRICE_QUANTUM = Decimal("0.00000001")


class Exchange:
    """One Bybit unified account and the market it trades in."""

    def __init__(
        self,
        instruments: Iterable[Instrument],
        prices: Mapping[str, Decimal],
        balances: Mapping[str, Decimal],
        clock: Callable[[], int],
        *,
        fee_rates: Mapping[str, tuple[Decimal, Decimal]] | None = None,
        hedge_mode: bool = False,
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
        #: By (symbol, positionIdx).
        self.positions: dict[tuple[str, int], Position] = {}
        #: (taker, maker) by category; a negative maker rate is a rebate.
        self.fee_rates: dict[str, tuple[Decimal, Decimal]] = {
            **FEE_RATES,
            **{k: (Decimal(t), Decimal(m)) for k, (t, m) in (fee_rates or {}).items()},
        }
        #: Derivatives orders need positionIdx 1/2 (hedge) instead of 0 (one-way).
        self.hedge_mode = hedge_mode
        #: Server time in ms.
        self.now_ms = clock
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
        new = parse_create(body, self.instruments)
        inst, link = new.instrument, new.order_link_id
        if link and link in self.orders_by_link:
            if new.spot:
                raise BybitError(170141, "Duplicate clientOrderId")
            raise BybitError(110072, "OrderLinkedID is duplicate")
        last = self.prices[inst.symbol]
        qty, price, market_unit = new.qty, new.price, ""
        if new.spot:
            needs = check_spot_lot(new, last)
            if needs.amount > self.free(needs.coin):
                raise BybitError(170131, "Balance insufficient")
            market_unit = needs.market_unit
        else:
            self._check_position_idx(new)
            check_derivative_lot(new, last)
            leverage = self.position(inst, new.position_idx).leverage
            margin = inst.value(new.qty, new.price or last) / leverage
            if new.reduce_only or _closes(new.side, new.position_idx):
                qty = self._reduce_only_qty(new)
            elif margin > self.available_margin(inst.settle_coin):
                raise BybitError(110007, "ab not enough for new order")
            if new.order_type == "Market":
                # Bybit shows a market order's price as its slippage-protection limit.
                factor = 1 + _MARKET_SLIPPAGE if new.side == "Buy" else 1 - _MARKET_SLIPPAGE
                price = (last * factor).quantize(inst.tick_size, rounding=ROUND_DOWN)

        now = self.now_ms()
        order = FakeOrder(
            index=next(self._index),
            order_id=str(next(self._spot_ids)) if new.spot else str(uuid.uuid4()),
            order_link_id=link,
            instrument=inst,
            side=new.side,
            order_type=new.order_type,
            qty=qty,
            price=price,
            time_in_force=new.time_in_force,
            reduce_only=new.reduce_only,
            close_on_trigger=new.close_on_trigger,
            position_idx=new.position_idx,
            market_unit=market_unit,
            take_profit=new.take_profit,
            stop_loss=new.stop_loss,
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

    def _check_position_idx(self, new: NewOrder) -> None:
        """Bybit's answer to a positionIdx that does not fit the account's mode."""
        wanted = (1, 2) if self.hedge_mode else (0,)
        if new.position_idx not in wanted:
            raise BybitError(10001, "position idx not match position mode")

    def _reduce_only_qty(self, new: NewOrder) -> Decimal:
        """Bybit trims a reduce-only (or hedge-closing) order to the position it reduces."""
        position = self.positions.get((new.instrument.symbol, new.position_idx))
        size = position.size if position is not None else ZERO
        if size == 0:
            raise BybitError(110017, "current position is zero, cannot fix reduce-only order qty")
        if (new.side == "Buy") == (size > 0):
            raise BybitError(110017, "Reduce-only rule not satisfied")
        return min(new.qty, abs(size))

    def _match_new(self, order: FakeOrder, last: Decimal) -> list[Event]:
        if order.order_type == "Market":
            return self._fill(order, order.leaves_qty or order.qty, last, is_maker=False)
        assert order.price is not None
        crosses = order.price >= last if order.side == "Buy" else order.price <= last
        if crosses and order.time_in_force == "PostOnly":
            return self._close(order, "Cancelled", reject_reason="EC_PostOnlyWillTakeLiquidity")
        if crosses:
            return self._fill(order, order.leaves_qty, last, is_maker=False)
        if order.time_in_force == "IOC":
            return self._close(order, "Cancelled", reject_reason="EC_NoImmediateQtyToFill")
        if order.time_in_force == "FOK":
            return self._close(order, "Cancelled", reject_reason="EC_CancelForNoFullFill")
        return [self._order_event(order), *self._position_events(order.instrument)]

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
            raise BybitError(10001, MISSING_SCOPE)
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
        order.updated_ms = self.now_ms()
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

    def fill_in_parts(
        self, order: FakeOrder, parts: Iterable[tuple[Decimal, Decimal]]
    ) -> list[Event]:
        """Several maker fills of one order, ``(qty, price)`` each, in one change: Bybit then
        pushes them as several items of one message."""
        events: list[Event] = []
        for qty, price in parts:
            events += self.fill(order, Decimal(qty), Decimal(price))
        return events

    def _fill(
        self, order: FakeOrder, qty: Decimal, price: Decimal, *, is_maker: bool
    ) -> list[Event]:
        inst = order.instrument
        if inst.category != "spot" and (
            order.reduce_only or _closes(order.side, order.position_idx)
        ):
            position = self.positions.get((inst.symbol, order.position_idx))
            size = position.size if position is not None else ZERO
            room = abs(size) if (order.side == "Buy") == (size < 0) else ZERO
            if room == 0:
                return self._close(order, "Cancelled", cancel_type="CancelByReduceOnly")
            if qty > room:
                partial = self._fill(order, room, price, is_maker=is_maker)
                return partial + self._close(order, "Cancelled", cancel_type="CancelByReduceOnly")
        now = self.now_ms()
        taker, maker = self.fee_rates[inst.category]
        rate = maker if is_maker else taker
        closed_size = exec_pnl = ZERO
        if inst.category == "spot":
            if order.quote_qty:
                qty = (qty / price).quantize(inst.lot("basePrecision"), rounding=ROUND_DOWN)
            value = qty * price
            # A fee is paid in the coin received, a rebate in the coin given.
            receives_base = order.side == "Buy"
            in_base = receives_base if rate >= 0 else not receives_base
            if in_base:
                fee, fee_coin = qty * rate, inst.base_coin
            else:
                fee, fee_coin = value * rate, inst.quote_coin
            if receives_base:
                self._credit(inst.quote_coin, -value)
                self._credit(inst.base_coin, qty)
            else:
                self._credit(inst.base_coin, -qty)
                self._credit(inst.quote_coin, value)
            self._credit(fee_coin, -fee)
        else:
            value = inst.value(qty, price)
            fee, fee_coin = value * rate, inst.settle_coin
            closed_size, exec_pnl = self._apply_to_position(
                inst, order.position_idx, order.side, qty, price, fee, now
            )
            self._credit(fee_coin, exec_pnl - fee)
            self.realised[fee_coin] = self.realised.get(fee_coin, ZERO) + exec_pnl - fee
        order.cum_exec_qty += qty
        order.cum_exec_value += value
        order.fees[fee_coin] = order.fees.get(fee_coin, ZERO) + fee
        order.fee_coin = order.fee_coin or fee_coin
        order.cum_exec_fee = order.fees[order.fee_coin]
        order.closed_pnl += exec_pnl - fee if closed_size else ZERO
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
        self,
        inst: Instrument,
        position_idx: int,
        side: str,
        qty: Decimal,
        price: Decimal,
        fee: Decimal,
        now: int,
    ) -> tuple[Decimal, Decimal]:
        """Books a derivatives fill; returns (closed size, gross realised PnL)."""
        position = self.position(inst, position_idx)
        signed = qty if side == "Buy" else -qty
        closed = pnl = ZERO
        if position.size == 0:
            position.cur_realised_pnl = ZERO
        if position.size == 0 or (position.size > 0) == (signed > 0):
            new_size = position.size + signed
            if inst.inverse:
                # Contracts are worth a fixed USD amount: the entry price is harmonic.
                coins = position.value  # what the contracts held are worth in the base coin
                average = abs(new_size) / (coins + qty / price)
            else:
                average = (abs(position.size) * position.avg_price + qty * price) / abs(new_size)
            # Bybit keeps entry prices to 8 decimals, and computes PnL from that.
            position.avg_price = average.quantize(_PRICE_QUANTUM, rounding=ROUND_HALF_UP)
            position.size = new_size
        else:
            closed = min(qty, abs(position.size))
            direction = 1 if position.size > 0 else -1
            if inst.inverse:
                pnl = closed * (1 / position.avg_price - 1 / price) * direction
            else:
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

    def position(self, inst: Instrument, position_idx: int = 0) -> Position:
        position = self.positions.get((inst.symbol, position_idx))
        if position is None:
            now = self.now_ms()
            position = Position(inst, created_ms=now, updated_ms=now, position_idx=position_idx)
            self.positions[(inst.symbol, position_idx)] = position
        return position

    def position_sides(self, inst: Instrument) -> list[Position]:
        """The symbol's positions in the account's mode: one (0), or both hedge sides."""
        return [self.position(inst, idx) for idx in ((1, 2) if self.hedge_mode else (0,))]

    def _credit(self, coin: str, amount: Decimal) -> None:
        self.wallet[coin] = self.wallet.get(coin, ZERO) + amount

    def _order_event(self, order: FakeOrder) -> Event:
        return ("order", order.category, wire.order_ws(order))

    def _position_events(self, inst: Instrument) -> list[Event]:
        """Bybit pushes the position on every order change of a derivatives symbol."""
        if inst.category == "spot":
            return []
        mark = self.prices[inst.symbol]
        return [
            ("position", inst.category, wire.position_ws(position, mark))
            for position in self.position_sides(inst)
        ]

    # --------------------------------------------------------------- balances

    def _derivative_positions(self, coin: str) -> list[Position]:
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
                leverage = self.position(inst, order.position_idx).leverage
                total += inst.value(order.leaves_qty, order.price) / leverage
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
        positions = self._derivative_positions(coin)
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
            positions = self._derivative_positions(coin)
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


def _closes(side: str, position_idx: int) -> bool:
    """In hedge mode a sell on the long side (1) or a buy on the short side (2) closes it."""
    return (position_idx == 1 and side == "Sell") or (position_idx == 2 and side == "Buy")


def _ratio(numerator: Decimal, denominator: Decimal) -> Decimal:
    if denominator <= 0:
        return ZERO
    return (numerator / denominator).quantize(Decimal("0.0001"))
