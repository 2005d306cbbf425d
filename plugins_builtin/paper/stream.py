"""Order updates in Bybit V5's private ``order`` topic shape, and their in-order delivery.

The paper exchange reports through ``ExchangeContext.publish_order_update`` exactly what a
WS-Gateway forwarding Bybit's stream would: ``{"id", "topic": "order", "creationTime",
"data": [...]}`` with every number as a string and ``""`` for a number that has no value.
"""

from __future__ import annotations

import decimal
import itertools
import logging
import time
import uuid
from collections import deque
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from om_plugins import ExchangeOrder, OrderType, Side
from om_plugins.exchange import PublishOrderUpdate
from om_plugins.rounding import is_multiple
from plugins_builtin.paper.orders import PaperOrder

__all__ = ["OrderStream", "fmt", "now_ms", "order_item", "to_exchange_order"]

logger = logging.getLogger(__name__)


def now_ms() -> int:
    return time.time_ns() // 1_000_000


def fmt(value: Decimal | None, grid: Decimal | None = None) -> str:
    """A Decimal as Bybit writes it: plain notation, on ``grid``'s decimals when given.

    ``None`` becomes ``""``. Without a grid, trailing zeros are dropped (``"60.03"``).
    """
    if value is None:
        return ""
    if value == 0:
        value = abs(value)  # never "-0"
    with decimal.localcontext() as ctx:
        ctx.prec = 100
        if grid is not None and is_multiple(value, grid):
            return f"{value.quantize(grid):f}"
        text = f"{value:f}"
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _ms_to_datetime(ms: int) -> datetime:
    seconds, millis = divmod(ms, 1000)
    return datetime.fromtimestamp(seconds, UTC).replace(microsecond=millis * 1000)


def order_item(order: PaperOrder) -> dict[str, Any]:
    """One element of the ``data`` array, describing ``order`` as it is now."""
    req = order.request
    inst = order.instrument
    tick, step = inst.tick_size, inst.qty_step
    limit_price = req.price if req.order_type is OrderType.LIMIT else None
    leaves = order.leaves_qty
    leaves_value = leaves * limit_price if limit_price is not None else Decimal(0)
    has_tpsl = req.take_profit is not None or req.stop_loss is not None
    return {
        "category": req.category.value,
        "symbol": req.symbol,
        "orderId": order.order_id,
        "orderLinkId": req.client_order_id,
        "parentOrderLinkId": "",
        "isLeverage": "",
        "blockTradeId": "",
        "price": fmt(limit_price, tick),
        "brokerOrderPrice": "",
        "qty": fmt(req.qty, step),
        "side": "Buy" if req.side is Side.BUY else "Sell",
        "positionIdx": req.position_idx,
        "orderStatus": order.status.value,
        "createType": "CreateByUser",
        "cancelType": order.cancel_type,
        "rejectReason": order.reject_reason,
        "avgPrice": fmt(order.avg_price, tick),
        "leavesQty": fmt(leaves, step),
        "leavesValue": fmt(leaves_value),
        "cumExecQty": fmt(order.cum_qty, step),
        "cumExecValue": fmt(order.cum_value),
        "cumExecFee": fmt(order.cum_fee),
        "closedPnl": fmt(order.closed_pnl),
        "feeCurrency": "",
        "timeInForce": order.time_in_force.value,
        "orderType": "Limit" if limit_price is not None else "Market",
        "stopOrderType": "",
        "ocoTriggerBy": "",
        "orderIv": "",
        "marketUnit": "",
        "slippageToleranceType": "UNKNOWN",
        "slippageTolerance": "",
        "triggerPrice": "",
        "takeProfit": fmt(req.take_profit, tick),
        "stopLoss": fmt(req.stop_loss, tick),
        "tpslMode": "Full" if has_tpsl else "",
        "tpLimitPrice": "",
        "slLimitPrice": "",
        "tpTriggerBy": "LastPrice" if req.take_profit is not None else "",
        "slTriggerBy": "LastPrice" if req.stop_loss is not None else "",
        "triggerDirection": 0,
        "triggerBy": "",
        "lastPriceOnCreated": fmt(order.last_price_on_created, tick),
        "reduceOnly": req.reduce_only,
        "closeOnTrigger": False,
        "placeType": "",
        "smpType": "None",
        "smpGroup": 0,
        "smpOrderId": "",
        "createdTime": str(order.created_ms),
        "updatedTime": str(order.updated_ms),
        "cumFeeDetail": {inst.quote_coin: fmt(order.cum_fee)} if order.cum_fee else {},
        "rpiTakerAccess": False,
        "rpiMatchedQty": "0",
    }


def to_exchange_order(order: PaperOrder) -> ExchangeOrder:
    req = order.request
    return ExchangeOrder(
        exchange_order_id=order.order_id,
        client_order_id=req.client_order_id,
        symbol=req.symbol,
        category=req.category,
        side=req.side,
        order_type=req.order_type,
        status=order.status.value,
        qty=req.qty,
        price=req.price if req.order_type is OrderType.LIMIT else None,
        filled_qty=order.cum_qty,
        avg_price=order.avg_price,
        cum_exec_value=order.cum_value,
        cum_exec_fee=order.cum_fee,
        created_at=_ms_to_datetime(order.created_ms),
        updated_at=_ms_to_datetime(order.updated_ms),
        reject_reason="" if order.reject_reason == "EC_NoError" else order.reject_reason,
        raw=order_item(order),
    )


#: Most order updates the paper exchange puts in one stream message.
MAX_ITEMS = 50


class OrderStream:
    """Publishes order updates in the order the state changes happened.

    State changes only *queue* a snapshot (:meth:`report`), synchronously, so a snapshot
    always follows the change it describes; :meth:`flush` then sends the queue. Only one
    flush sends at a time — a flush started while another is sending returns at once and
    the running one delivers its messages too, so no message overtakes an earlier one and a
    publisher that calls back into the exchange cannot deadlock.

    Changes queued while a publish awaits its confirm go out together in the next message,
    as Bybit pushes several orders in one message (``data`` is a list; at most
    :data:`MAX_ITEMS` here).

    A publish that raises is logged and the message dropped: the exchange's own state is
    already correct and the engine reconciles by looking orders up. A flush that is
    cancelled mid-publish keeps the message and sends it again with the next flush.
    """

    def __init__(self, publish: PublishOrderUpdate) -> None:
        self._publish = publish
        self._pending: deque[Mapping[str, Any]] = deque()
        self._flushing = False

    def report(self, order: PaperOrder) -> None:
        self._pending.append(
            {
                "id": str(uuid.uuid4()),
                "topic": "order",
                "creationTime": now_ms(),
                "data": [order_item(order)],
            }
        )

    @property
    def pending(self) -> int:
        return len(self._pending)

    async def flush(self) -> None:
        if self._flushing:
            return
        self._flushing = True
        try:
            while self._pending:
                queued = list(itertools.islice(self._pending, MAX_ITEMS))
                message = queued[0]
                if len(queued) > 1:
                    message = {**message, "data": [item for m in queued for item in m["data"]]}
                try:
                    await self._publish(message)
                except Exception:
                    logger.exception(
                        "paper exchange: publishing updates of orders %s failed; dropped",
                        ", ".join(
                            f"{i['orderLinkId']} ({i['orderStatus']})" for i in message["data"]
                        ),
                    )
                for _ in queued:
                    self._pending.popleft()
        finally:
            self._flushing = False
