"""Cancel an order through the core: recorded, idempotent, published, counted.

Every cancel an operator asks for (``POST /api/v1/orders/{id}/cancel``, the console's
cancel button) goes through :meth:`OrderCanceller.cancel`:

1. In one transaction, with the order row locked: a final order (filled, cancelled,
   rejected…) is answered :class:`OrderNotOpen` and nothing is recorded or sent; a request
   already ``pending`` (the exchange is being asked) or ``accepted`` for the order is
   returned as it is — no second exchange call (``duplicate``); otherwise a
   ``cancel_requests`` row (``pending``, who asked) is written with an
   ``order.cancel_requested`` event.
2. The exchange is asked, outside any transaction.
3. Its answer is recorded on the request with an ``order.cancel_accepted`` or
   ``order.cancel_failed`` event: ``accepted``; ``rejected`` with a neutral ``reject_code``
   (the exchange plugin's ``ReasonCode``, e.g. ``ORDER_NOT_FOUND``) and the exchange's own
   ``exchange_code`` and message, as for a refused placement; ``unavailable`` (certainly
   not sent: asking again is safe) or ``unknown`` (the answer was lost). After these three a
   new cancel makes a new request.

The order's own new status (``cancelled``, or ``filled`` if it filled first) arrives
through the exchange's order stream, as for any cancel. A ``pending`` request left behind
by a process that died while asking is superseded (marked ``unknown``) after
:data:`PENDING_TIMEOUT`. Counted in ``om_order_cancels_total{outcome}``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from enum import StrEnum

from sqlmodel import col, select

from om_core import metrics
from om_core.db.models import CancelRequest, Order
from om_core.db.session import AsyncSession, SessionFactory
from om_core.db.types import utcnow
from om_core.engine.pause import ExchangePause
from om_core.events.outbox import add_event
from om_core.events.payloads import EventType, cancel_payload, new_event, order_payload
from om_core.orders.status import TERMINAL
from om_plugins.errors import ExchangeAuthError, ExchangeRejected, ExchangeUnavailable
from om_plugins.exchange import ExchangeAdapter
from om_plugins.reports import ReasonCode
from om_plugins.types import Category

__all__ = [
    "PENDING_TIMEOUT",
    "CancelOutcome",
    "CancelState",
    "OrderCanceller",
    "OrderNotOpen",
]

log = logging.getLogger(__name__)

#: A request still ``pending`` after this long was left by a process that died asking.
PENDING_TIMEOUT = timedelta(seconds=60)

#: Engine codes for cancels the exchange did not answer.
UNAVAILABLE = "EXCHANGE_UNAVAILABLE"
UNKNOWN = "OUTCOME_UNKNOWN"


class CancelState(StrEnum):
    PENDING = "pending"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    UNAVAILABLE = "unavailable"
    UNKNOWN = "unknown"


#: A request in these states stands: a new cancel returns it instead of asking again.
_STANDING = frozenset({CancelState.PENDING.value, CancelState.ACCEPTED.value})


class OrderNotOpen(Exception):
    """The order is final: there is nothing to cancel (nothing was recorded or sent)."""

    def __init__(self, order: Order, last: CancelRequest | None) -> None:
        super().__init__(f"order {order.id} is {order.status}: it cannot be cancelled")
        self.order = order
        #: The latest cancel request of the order, if any (e.g. the one that cancelled it).
        self.last = last


@dataclass(frozen=True, slots=True)
class CancelOutcome:
    """The request as recorded after this call, and the order as stored."""

    request: CancelRequest
    order: Order
    #: True when a standing request was returned and the exchange was not asked.
    duplicate: bool = False
    #: What the exchange raised, when it did not accept (for the caller's answer).
    error: Exception | None = None


class OrderCanceller:
    def __init__(
        self,
        factory: SessionFactory,
        exchange: ExchangeAdapter,
        *,
        pause: ExchangePause | None = None,
        on_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._factory = factory
        self._exchange = exchange
        self._pause = pause
        self._on_committed = on_committed

    async def cancel(self, order_id: int, actor: str) -> CancelOutcome:
        """Cancel order ``order_id`` for ``actor`` (see the module documentation).

        Raises :class:`LookupError` for an unknown order, :class:`OrderNotOpen` for a final
        one; an exchange failure is recorded and returned in :attr:`CancelOutcome.error`.
        """
        async with self._factory() as session, session.begin():
            order, request, duplicate = await self._record(session, order_id, actor)
        if order.status in TERMINAL:
            # Raised once the (empty) transaction is over, with the rows still readable.
            metrics.count_cancel("not_open")
            raise OrderNotOpen(order, request)
        assert request is not None  # an open order always gets a request
        if duplicate:
            metrics.count_cancel("duplicate")
            return CancelOutcome(request, order, duplicate=True)
        self._on_committed()
        log.info(
            "cancel of order %s (%s) requested by %s: request %s",
            order.id,
            order.symbol,
            actor,
            request.id,
        )
        error: Exception | None = None
        code = exchange_code = message = None
        try:
            await self._exchange.cancel_order(
                Category(order.category), order.symbol, order.client_order_id
            )
            state = CancelState.ACCEPTED
        except ExchangeRejected as exc:
            error, state = exc, CancelState.REJECTED
            code = exc.reason_code or ReasonCode.EXCHANGE_REJECTED.value
            exchange_code, message = exc.code, exc.message or str(exc)
        except ExchangeAuthError as exc:
            error, state = exc, CancelState.REJECTED
            code, exchange_code, message = ReasonCode.AUTH.value, exc.code, exc.message
        except ExchangeUnavailable as exc:
            error, state = exc, CancelState.UNAVAILABLE
            code = exc.reason_code or UNAVAILABLE
            exchange_code, message = exc.code, exc.message or str(exc)
            if self._pause is not None:
                await self._pause.pause_for(exc)
        except Exception as exc:
            # Timeouts, broken connections, OutcomeUnknown: the cancel may or may not be in.
            log.warning("cancel of order %s had an unknown outcome: %r", order.id, exc)
            error, state = exc, CancelState.UNKNOWN
            code = getattr(exc, "reason_code", "") or UNKNOWN
            exchange_code = getattr(exc, "code", "") or None
            message = getattr(exc, "message", "") or str(exc) or type(exc).__name__
        assert request.id is not None
        async with self._factory() as session, session.begin():
            request, order = await self._answered(
                session, request.id, state, code, exchange_code, message
            )
        self._on_committed()
        metrics.count_cancel(state.value)
        return CancelOutcome(request, order, error=error)

    async def _record(
        self, session: AsyncSession, order_id: int, actor: str
    ) -> tuple[Order, CancelRequest | None, bool]:
        """The order, and the request to answer with: a standing one (``True``), a new one
        (``False``), or for a final order its last one, if any (nothing is written)."""
        order = await session.get(Order, order_id, with_for_update=True)
        if order is None:
            raise LookupError(f"no order {order_id}")
        last = (
            await session.exec(
                select(CancelRequest)
                .where(col(CancelRequest.order_id) == order_id)
                .order_by(col(CancelRequest.id).desc())
                .limit(1)
            )
        ).one_or_none()
        if order.status in TERMINAL:
            return order, last, False
        now = utcnow()
        if last is not None and last.state in _STANDING:
            if last.state != CancelState.PENDING or now - last.requested_at < PENDING_TIMEOUT:
                return order, last, True
            # Left by a process that died while asking: its outcome is unknown.
            last.state = CancelState.UNKNOWN.value
            last.reject_code = UNKNOWN
            last.message = "no answer was recorded; superseded by a new request"
            last.completed_at = now
            session.add(last)
        request = CancelRequest(
            order_id=order_id,
            client_order_id=order.client_order_id,
            state=CancelState.PENDING.value,
            requested_by=actor[:64],
            requested_at=now,
        )
        session.add(request)
        await session.flush()
        _publish(session, EventType.ORDER_CANCEL_REQUESTED, order, request)
        return order, request, False

    async def _answered(
        self,
        session: AsyncSession,
        request_id: int,
        state: CancelState,
        code: str | None,
        exchange_code: str | None,
        message: str | None,
    ) -> tuple[CancelRequest, Order]:
        request = await session.get(CancelRequest, request_id, with_for_update=True)
        if request is None:  # pragma: no cover - written above, never deleted
            raise LookupError(f"cancel request {request_id} vanished")
        request.state = state.value
        request.reject_code = code[:32] if code else None
        request.exchange_code = exchange_code[:64] if exchange_code else None
        request.message = message or None
        request.completed_at = utcnow()
        session.add(request)
        order = await session.get(Order, request.order_id)
        assert order is not None
        event = (
            EventType.ORDER_CANCEL_ACCEPTED
            if state is CancelState.ACCEPTED
            else EventType.ORDER_CANCEL_FAILED
        )
        _publish(session, event, order, request)
        await session.flush()
        return request, order


def _publish(
    session: AsyncSession, event_type: EventType, order: Order, request: CancelRequest
) -> None:
    add_event(
        session,
        new_event(
            event_type,
            signal_id=order.signal_id,
            order=order_payload(order),
            cancel=cancel_payload(request),
        ),
    )
