"""The paper exchange's order stream: neutral reports, delivered in order.

Every change of an order is reported the way an exchange's private stream would: the
executions it made (one :class:`~om_plugins.ExecutionReport` each) and then the order's
new state (an :class:`~om_plugins.OrderReport` with cumulative figures), published through
``ExchangeContext.publish_reports`` onto ``ws-gateway.order``.
"""

from __future__ import annotations

import itertools
import logging
from collections import deque
from datetime import UTC, datetime

from om_plugins import ExecutionReport, Fee, OrderReport, OrderType, Report
from om_plugins.exchange import PublishReports
from plugins_builtin.paper.orders import PaperOrder

__all__ = ["MAX_ITEMS", "OrderStream", "now", "order_report"]

logger = logging.getLogger(__name__)


def now() -> datetime:
    # Millisecond precision, like an exchange's timestamps.
    at = datetime.now(UTC)
    return at.replace(microsecond=at.microsecond // 1000 * 1000)


def order_report(order: PaperOrder) -> OrderReport:
    """``order`` as it is now."""
    req = order.request
    fee_coin = order.instrument.quote_coin
    return OrderReport(
        exchange_order_id=order.order_id,
        client_order_id=req.client_order_id,
        category=req.category,
        symbol=req.symbol,
        side=req.side,
        status=order.status,
        qty=req.qty,
        order_type=req.order_type,
        price=req.price if req.order_type is OrderType.LIMIT else None,
        filled_qty=order.cum_qty,
        filled_value=order.cum_value,
        avg_price=order.avg_price,
        fees=(Fee(order.cum_fee, fee_coin),) if order.cum_fee else (),
        leaves_qty=order.leaves_qty,
        time_in_force=order.time_in_force,
        reduce_only=req.reduce_only,
        position_idx=req.position_idx,
        take_profit=req.take_profit,
        stop_loss=req.stop_loss,
        reason=order.reason,
        created_at=order.created_at,
        updated_at=order.updated_at,
    )


#: Most reports the paper exchange puts in one stream message.
MAX_ITEMS = 50


class OrderStream:
    """Publishes reports in the order the state changes happened.

    State changes only *queue* reports (:meth:`report`), synchronously, so a report always
    follows the change it describes; :meth:`flush` then sends the queue. Only one flush sends
    at a time — a flush started while another is sending returns at once and the running one
    delivers its reports too, so no message overtakes an earlier one and a publisher that
    calls back into the exchange cannot deadlock.

    Reports queued while a publish awaits its confirm go out together in the next message,
    as an exchange pushes several in one message (at most :data:`MAX_ITEMS` here).

    A publish that raises is logged and the message dropped: the exchange's own state is
    already correct and the engine reconciles by looking orders up. A flush that is
    cancelled mid-publish keeps the message and sends it again with the next flush.
    """

    def __init__(self, publish: PublishReports) -> None:
        self._publish = publish
        self._pending: deque[Report] = deque()
        self._flushing = False

    def report(self, order: PaperOrder, executions: list[ExecutionReport] | None = None) -> None:
        """Queue ``executions`` (just made) and then the order's new state."""
        self._pending.extend(executions or ())
        self._pending.append(order_report(order))

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
                try:
                    await self._publish(queued)
                except Exception:
                    logger.exception(
                        "paper exchange: publishing reports of orders %s failed; dropped",
                        ", ".join(sorted({getattr(r, "client_order_id", "") for r in queued})),
                    )
                for _ in queued:
                    self._pending.popleft()
        finally:
            self._flushing = False
