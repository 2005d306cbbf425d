"""OrderExecutor: send an order whose intent is committed, exactly once, and record the answer.

The rules (see ``docs/exactly-once.md``):

* the intent row (``pending_submit``, unique client id) is committed before the call;
* the exchange is called once per attempt; only :class:`ExchangeUnavailable` (certainly
  not sent) is retried directly;
* an ambiguous outcome becomes ``submit_unknown`` and is resolved by looking the order up by
  client id; only after repeated definitive "not found" answers, past the exchange's resend
  guard window, is it sent again, with the same client id;
* a definitive rejection is stored with the exchange's code and message and published;
* sending again (after "certainly not sent", or a resend after lookups) is a new placement:
  the trading state as it is then decides (:mod:`om_core.engine.guard`) — nothing while
  halted, only what shrinks the position while reducing. Lookups are never blocked.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from decimal import Decimal
from typing import TypeVar

from sqlmodel import col, select

from om_core import faults, metrics
from om_core.db.models import Order, SignalRecord
from om_core.db.models import Position as PositionRow
from om_core.db.session import AsyncSession, SessionFactory
from om_core.db.types import utcnow
from om_core.engine import guard
from om_core.engine.context import open_order
from om_core.engine.pause import ExchangePause
from om_core.events.outbox import add_event
from om_core.events.payloads import EventType, new_event, order_payload
from om_core.orders.lifecycle import accept_orders, mark_accepted, settle_signal
from om_core.orders.rows import Intent
from om_core.orders.status import IN_DOUBT, TERMINAL, OrderStatus
from om_core.signals.contract import signal_born, stale_rejection
from om_core.trading_state import current_state, set_state
from om_plugins.errors import (
    DuplicateClientOrderId,
    ExchangeAuthError,
    ExchangeError,
    ExchangeRejected,
    ExchangeUnavailable,
)
from om_plugins.exchange import ExchangeAdapter, OrderRequest, PlacedOrder
from om_plugins.reports import OrderReport, ReasonCode
from om_plugins.types import (
    Category,
    OrderType,
    Position,
    PositionMode,
    Rejection,
    Side,
    TimeInForce,
    TradingState,
)

__all__ = ["OrderExecutor", "request_for"]

log = logging.getLogger(__name__)
T = TypeVar("T")

#: Statuses of an order found by a lookup that it keeps on leaving doubt; other states
#: (fills, cancels) reach it through the order stream or reconciliation.
_LIVE = frozenset(
    {
        OrderStatus.NEW,
        OrderStatus.PARTIALLY_FILLED,
        OrderStatus.UNTRIGGERED,
        OrderStatus.TRIGGERED,
    }
)


class _Again:
    """The exchange was certainly not reached: make the attempt again."""


_AGAIN = _Again()


def request_for(order: Order | Intent) -> OrderRequest:
    return OrderRequest(
        client_order_id=order.client_order_id,
        symbol=order.symbol,
        category=Category(order.category),
        side=Side(order.side),
        order_type=OrderType(order.order_type),
        qty=order.qty,
        price=order.price,
        time_in_force=TimeInForce(order.time_in_force) if order.time_in_force else None,
        reduce_only=order.reduce_only,
        position_idx=order.position_idx,
        take_profit=order.take_profit,
        stop_loss=order.stop_loss,
    )


class OrderExecutor:
    def __init__(
        self,
        factory: SessionFactory,
        exchange: ExchangeAdapter,
        *,
        max_signal_age: timedelta,
        on_committed: Callable[[], None] = lambda: None,
        lookup_misses_before_resend: int = 3,
        unavailable_backoff: float = 0.5,
        before_commit: Callable[[str], Awaitable[None]] | None = None,
        forget_instrument: Callable[[Category, str], None] = lambda _c, _s: None,
        pause: ExchangePause | None = None,
    ) -> None:
        self._factory = factory
        self._exchange = exchange
        self._max_age = max_signal_age
        self._on_committed = on_committed
        self._misses_needed = lookup_misses_before_resend
        self._backoff = unavailable_backoff
        #: Test seam for fault injection: awaited between the exchange call and the commit.
        self._before_commit = before_commit
        #: Called on a definitive rejection: the instrument's rules may have changed
        #: (a precision or minimum rejection), so they are fetched again next time.
        self._forget_instrument = forget_instrument
        #: Halts trading while the exchange refuses us for long (an IP ban).
        self.pause = pause or ExchangePause(factory, on_committed=on_committed)
        #: Orders this process is sending right now: a lookup could not tell them apart from
        #: lost ones, so resolution leaves them to the call in flight.
        self._in_flight: set[int] = set()

    # -- placing ---------------------------------------------------------------------------

    async def submit_many(self, fresh: Sequence[Intent]) -> list[OrderStatus | None]:
        """Send intents just committed together (their first attempt recorded with them, their
        signals just checked for age) and commit what the exchange said.

        The exchange calls go out at once, and the answers that accepted an order are
        committed in one transaction. Returns each order's status once the exchange accepted
        it, ``None`` otherwise (rejected, in doubt, or handled elsewhere: the database tells).
        """
        mine = [o for o in fresh if o.id is not None and o.id not in self._in_flight]
        ids = [o.id for o in mine if o.id is not None]
        self._in_flight.update(ids)
        statuses: dict[int, OrderStatus | None] = {}
        try:
            answers = await asyncio.gather(
                *(self._attempt(o, self._backoff) for o in mine), return_exceptions=True
            )
            placed: dict[int, str] = {}
            again: list[int] = []
            errors = [a for a in answers if isinstance(a, BaseException)]
            for order, answer in zip(mine, answers, strict=True):
                assert order.id is not None
                if answer is _AGAIN:
                    again.append(order.id)
                elif isinstance(answer, PlacedOrder):
                    faults.checkpoint("exchange.create_sent")
                    if self._before_commit is not None:
                        await self._before_commit(order.client_order_id)
                    placed[order.id] = answer.exchange_order_id
            # What the exchange accepted is committed first: neither a retry below nor an
            # error of another order's attempt may leave it in doubt.
            if placed:
                statuses.update(await self._accepted(placed, None))
                for _ in placed:
                    faults.checkpoint("exchange.result_committed")
            if errors:
                raise errors[0]
            for order_id in again:
                statuses[order_id] = await self._submit(order_id, after_first=True)
        finally:
            self._in_flight.difference_update(ids)
        return [statuses.get(o.id) if o.id is not None else None for o in fresh]

    async def _submit(self, order_id: int, *, after_first: bool = False) -> OrderStatus | None:
        delay = self._backoff * 2 if after_first else self._backoff
        while True:
            order = await self._load(order_id)
            if order is None or order.status not in IN_DOUBT:
                return None
            if await self._stale(order):
                await self._expire(order_id, "SIGNAL_STALE", "signal too old to place")
                return None
            # The exchange certainly does not have it: sending it is a new placement, so the
            # trading state as it is now decides, not as it was when the order was decided.
            refused = await self._refused(order)
            if refused is not None:
                await self._expire(order_id, refused.code, refused.message)
                return None
            await self._mark_attempt(order_id)
            answer = await self._attempt(order, delay)
            if answer is _AGAIN:
                delay = min(delay * 2, 10.0)
                continue
            if not isinstance(answer, PlacedOrder):
                return None
            faults.checkpoint("exchange.create_sent")
            if self._before_commit is not None:
                await self._before_commit(order.client_order_id)
            status = (await self._accepted({order_id: answer.exchange_order_id}, None))[order_id]
            faults.checkpoint("exchange.result_committed")
            return status

    async def _attempt(self, order: Order | Intent, delay: float) -> PlacedOrder | _Again | None:
        """One create call, its attempt recorded already. The exchange's order when it was
        accepted; ``_AGAIN`` when the exchange was certainly not reached and the attempt is to
        be repeated (after a pause, taken here); ``None`` when the outcome was handled."""
        assert order.id is not None
        order_id = order.id
        try:
            return await _timed("order.create", self._exchange.place_order(request_for(order)))
        except DuplicateClientOrderId:
            log.info("order %s already on the exchange; looking it up", order.client_order_id)
            await self._resolve(order_id)
        except ExchangeAuthError as exc:
            await self.halt(f"exchange authentication failed: {exc.message}")
            await self._rejected(order_id, ReasonCode.AUTH.value, exc.message, exc.code)
        except ExchangeRejected as exc:
            self._forget_instrument(Category(order.category), order.symbol)
            code = exc.reason_code or ReasonCode.EXCHANGE_REJECTED.value
            await self._rejected(order_id, code, exc.message, exc.code)
        except ExchangeUnavailable as exc:
            wait = exc.retry_after if exc.retry_after is not None else delay
            await self.pause.pause_for(exc)
            log.warning(
                "exchange unavailable for %s (%s); retrying in %.2fs",
                order.client_order_id,
                exc,
                wait,
            )
            await self._reset_attempt(order_id)
            await asyncio.sleep(wait)
            return _AGAIN
        except Exception as exc:
            # Timeouts, 5xx, broken connections, bugs after sending: the order may exist.
            log.warning("placing %s had an unknown outcome: %r", order.client_order_id, exc)
            await self._set_status(order_id, OrderStatus.SUBMIT_UNKNOWN)
            await self._resolve(order_id)
        return None

    # -- resolving orders in doubt -----------------------------------------------------------

    async def resolve(self, order_id: int) -> bool:
        """Settle an order in doubt by asking the exchange; True when it is no longer in doubt.

        Sends the order again (same client id) only after ``lookup_misses_before_resend``
        definitive "not found" answers past the exchange's resend guard window.
        """
        if order_id in self._in_flight:
            return False
        self._in_flight.add(order_id)
        try:
            return await self._resolve(order_id)
        finally:
            self._in_flight.discard(order_id)

    async def _resolve(self, order_id: int) -> bool:
        order = await self._load(order_id)
        if order is None or order.status not in IN_DOUBT:
            return True
        found = await _timed(
            "order.lookup",
            self._exchange.get_order(Category(order.category), order.symbol, order.client_order_id),
        )
        if found is not None:
            await self._apply_found(order_id, found)
            return True
        misses = await self._count_miss(order_id)
        guard = timedelta(seconds=self._exchange.resend_guard_seconds)
        sent_at = order.submitted_at or order.created_at
        if misses < self._misses_needed or utcnow() - sent_at < guard:
            return False
        if await self._stale(order):
            await self._expire(
                order_id, "SUBMIT_NOT_FOUND", "the exchange never received the order"
            )
            return True
        log.warning(
            "order %s not found after %d lookups; sending it again", order.client_order_id, misses
        )
        await self._submit(order_id)
        return True

    # -- state changes (each its own short transaction) ---------------------------------------

    async def _load(self, order_id: int) -> Order | None:
        async with self._factory() as session:
            return await session.get(Order, order_id)

    async def _stale(self, order: Order) -> bool:
        if order.signal_id is None:
            return False
        async with self._factory() as session:
            signal = (
                await session.exec(
                    select(SignalRecord).where(col(SignalRecord.signal_id) == order.signal_id)
                )
            ).one_or_none()
        if signal is None:
            return False
        born = signal_born(signal.signal_created_at, sent_at=None, received_at=signal.received_at)
        return stale_rejection(born, utcnow(), max_age=self._max_age) is not None

    async def _refused(self, order: Order) -> Rejection | None:
        """Why ``order`` may not be sent (again) in the trading state as it is now: halted
        sends nothing; reducing only what shrinks the position in the book now."""
        async with self._factory() as session:
            conn = await session.connection()
            state = await current_state(conn)
            if state is TradingState.ACTIVE:
                return None
            if state is TradingState.HALTED:
                return guard.halted(state)
            request = request_for(order)
            rows = (
                await session.exec(
                    select(PositionRow).where(
                        col(PositionRow.symbol) == order.symbol,
                        col(PositionRow.category) == order.category,
                    )
                )
            ).all()
            others = (
                await session.exec(
                    select(Order).where(
                        col(Order.symbol) == order.symbol,
                        col(Order.category) == order.category,
                        col(Order.status).not_in([s.value for s in TERMINAL]),
                        col(Order.id) != order.id,
                    )
                )
            ).all()
        positions = [
            Position(
                category=request.category,
                symbol=order.symbol,
                size=row.size,
                position_idx=row.position_idx,
            )
            for row in rows
        ]
        mode = PositionMode.ONE_WAY if order.position_idx == 0 else PositionMode.HEDGE
        reduces, size, working = guard.reduces_position(
            request,
            mode=mode,
            position=Position(
                category=request.category,
                symbol=order.symbol,
                size=sum((p.size for p in positions), Decimal(0)),
            ),
            positions=positions,
            open_orders=[open_order(o) for o in others],
        )
        return None if reduces else guard.reducing_only(request, state, size, working)

    async def _mark_attempt(self, order_id: int) -> None:
        async with self._factory() as session, session.begin():
            order = await _locked(session, order_id)
            order.submit_attempts += 1
            order.submitted_at = utcnow()
            order.lookup_misses = 0

    async def _reset_attempt(self, order_id: int) -> None:
        async with self._factory() as session, session.begin():
            order = await _locked(session, order_id)
            order.submit_attempts = max(0, order.submit_attempts - 1)

    async def _count_miss(self, order_id: int) -> int:
        async with self._factory() as session, session.begin():
            order = await _locked(session, order_id)
            order.lookup_misses += 1
            return order.lookup_misses

    async def _set_status(self, order_id: int, status: OrderStatus) -> None:
        async with self._factory() as session, session.begin():
            order = await _locked(session, order_id)
            if order.status in IN_DOUBT:
                order.status = status
                order.updated_at = utcnow()

    async def _accepted(
        self, exchange_ids: Mapping[int, str], status: OrderStatus | None
    ) -> dict[int, OrderStatus | None]:
        """Record that the exchange has these orders (order id → its id), in one transaction;
        returns each order's status after."""
        async with self._factory() as session, session.begin():
            now: dict[int, OrderStatus | None] = dict(
                await accept_orders(await session.connection(), exchange_ids, status)
            )
            for order_id, exchange_order_id in exchange_ids.items():
                if order_id not in now:
                    # The order stream settled it first; only the exchange id may be missing.
                    order = await _locked(session, order_id)
                    await mark_accepted(session, order, exchange_order_id, status)
                    now[order_id] = OrderStatus(order.status)
        self._on_committed()
        return now

    async def _apply_found(self, order_id: int, found: OrderReport) -> None:
        if found.status is OrderStatus.REJECTED:
            reason = found.reason
            await self._rejected(
                order_id,
                reason.code if reason else ReasonCode.EXCHANGE_REJECTED.value,
                (reason.exchange_message if reason else "") or "rejected by the exchange",
                reason.exchange_code if reason else "",
            )
            return
        # Fills and terminal states arrive through the order stream or reconciliation; here
        # we only settle that the order exists.
        status = found.status if found.status in _LIVE else None
        await self._accepted({order_id: found.exchange_order_id}, status)

    async def _rejected(
        self, order_id: int, code: str, message: str, exchange_code: str = ""
    ) -> None:
        """``code`` is neutral (a ``ReasonCode`` or the engine's own); ``exchange_code`` and
        ``message`` are the exchange's, when it was the exchange that refused."""
        async with self._factory() as session, session.begin():
            order = await _locked(session, order_id)
            if order.status not in IN_DOUBT:
                return
            order.status = OrderStatus.REJECTED
            order.reject_code = code[:32] if code else None
            order.reject_reason = message
            order.exchange_code = exchange_code[:64] or None
            order.exchange_message = message if exchange_code else None
            order.updated_at = utcnow()
            add_event(
                session,
                new_event(
                    EventType.ORDER_REJECTED,
                    signal_id=order.signal_id,
                    order=order_payload(order),
                ),
            )
            await settle_signal(session, order, accepted=False, code=code, message=message)
        self._on_committed()

    async def _expire(self, order_id: int, code: str, message: str) -> None:
        """The order certainly never reached the exchange and must not be sent any more."""
        await self._rejected(order_id, code, message)

    async def halt(self, reason: str) -> None:
        """Stop trading (persisted, published): something a human must fix is wrong."""
        log.error("halting trading: %s", reason)
        async with self._factory() as session, session.begin():
            await set_state(session, TradingState.HALTED, reason, actor="engine")
        self._on_committed()


async def _locked(session: AsyncSession, order_id: int) -> Order:
    order = await session.get(Order, order_id, with_for_update=True)
    if order is None:
        raise LookupError(f"order {order_id} vanished")
    return order


async def _timed(endpoint: str, call: Awaitable[T]) -> T:
    """Await an exchange call, recording its latency and result code."""
    started = time.perf_counter()
    try:
        result = await call
    except ExchangeError as exc:
        metrics.count_exchange_request(endpoint, exc.code or type(exc).__name__, _since(started))
        raise
    except Exception as exc:
        metrics.count_exchange_request(endpoint, type(exc).__name__, _since(started))
        raise
    metrics.count_exchange_request(endpoint, 0, _since(started))
    return result


def _since(started: float) -> float:
    return time.perf_counter() - started
