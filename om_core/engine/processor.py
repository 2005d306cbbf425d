"""SignalProcessor: validate → risk → order type → quantity → order risk → intent → place.

Decisions for one symbol are serialized by a lock held from reading the context to
committing the intent, also across service instances, so two concurrent signals cannot both
pass a limit only one of them fits.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlmodel import col, select

from om_core import faults, metrics
from om_core.db.locks import locked_transaction
from om_core.db.models import Order, SignalRecord
from om_core.db.session import SessionFactory
from om_core.db.types import utcnow
from om_core.engine.context import ContextBuilder
from om_core.engine.executor import OrderExecutor
from om_core.orders.client_id import client_order_id
from om_core.orders.rows import insert_intent
from om_core.orders.status import IN_DOUBT, OrderStatus
from om_core.plugins.facade import PluginHooks
from om_core.signals import store
from om_core.signals.store import FINAL, SignalStatus
from om_plugins.errors import ExchangeAuthError, ExchangeRejected
from om_plugins.rounding import is_multiple
from om_plugins.types import (
    DecisionContext,
    OrderType,
    ProposedOrder,
    Rejection,
    Signal,
)

__all__ = ["SignalOutcome", "SignalProcessor", "symbol_lock_key"]


#: Order statuses after a placement attempt that do not make the signal placed.
_NOT_PLACED = IN_DOUBT | {OrderStatus.REJECTED}


def symbol_lock_key(category: str, symbol: str) -> str:
    return f"om:symbol:{category}:{symbol}"


@dataclass(frozen=True, slots=True)
class SignalOutcome:
    signal_id: str
    #: processing (an order is still in doubt) | placed | rejected
    status: str
    reasons: Sequence[Mapping[str, Any]] = ()
    client_order_ids: Sequence[str] = ()
    #: True when this call found the signal already decided and changed nothing.
    duplicate: bool = False


@dataclass(slots=True)
class _Work:
    submit: list[Order] = field(default_factory=list)
    resolve: list[int] = field(default_factory=list)


class SignalProcessor:
    def __init__(
        self,
        factory: SessionFactory,
        hooks: PluginHooks,
        exchange_name: str,
        context: ContextBuilder,
        executor: OrderExecutor,
        *,
        max_signal_age: timedelta,
        on_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._factory = factory
        self._hooks = hooks
        self._exchange_name = exchange_name
        self._context = context
        self._executor = executor
        self._max_age = max_signal_age
        self._on_committed = on_committed

    async def process(
        self, signal: Signal, payload: Mapping[str, Any], received_at: datetime | None = None
    ) -> SignalOutcome:
        received_at = received_at or utcnow()
        # A duplicate is found under the lock below; exchange reads for one are wasted but
        # harmless, and checking first would cost every signal a transaction.
        try:
            market = await self._context.market_data(signal)
        except ExchangeAuthError as exc:
            # Credentials are wrong or revoked: retrying cannot help and must not loop.
            await self._executor.halt(f"exchange authentication failed: {exc.message}")
            market = None
            unavailable = Rejection(
                code="EXCHANGE_AUTH",
                message=f"the exchange refused our credentials: {exc.message}",
                details={"exchange_code": exc.code},
                plugin="engine",
            )
        except ExchangeRejected as exc:
            market = None
            unavailable = Rejection(
                code="INSTRUMENT_UNAVAILABLE",
                message=f"the exchange has no tradable {signal.symbol}: {exc.message}",
                details={"exchange_code": exc.code},
                plugin="engine",
            )
        work = _Work()
        rejected: list[dict[str, Any]] | None = None
        async with locked_transaction(
            self._factory, symbol_lock_key(signal.category.value, signal.symbol)
        ) as session:
            conn = await session.connection()
            row_id = await store.insert_new(conn, signal, payload, received_at)
            born = signal.created_at or received_at
            if row_id is None:
                row, _ = await store.get_or_create(session, signal, payload, received_at)
                if row.status in FINAL:
                    return _duplicate(await self._outcome_in(session, row))
                # Written now: the Core statements below must not be overwritten at commit.
                await session.flush()
                assert row.id is not None
                row_id, born = row.id, signal.created_at or row.received_at
                orders = (
                    await session.exec(
                        select(Order).where(col(Order.signal_id) == signal.signal_id)
                    )
                ).all()
                # An earlier attempt committed its intents and died: never decide twice.
                work.resolve = [o.id for o in orders if o.status in IN_DOUBT and o.id]
                undecided = not orders
            else:
                undecided = True
            if undecided:
                now = utcnow()
                if market is None:
                    decision: ProposedOrder | list[Rejection] = [unavailable]
                elif now - born > self._max_age:
                    decision = [_stale(now - born, self._max_age)]
                else:
                    ctx = await self._context.build(conn, signal, market, now)
                    decision = self.decide(signal, ctx)
                if isinstance(decision, list):
                    rejected = await store.reject_new(conn, row_id, signal.signal_id, decision)
                else:
                    order = self._intent(decision, signal)
                    # The first attempt is recorded with the intent: one commit, not two.
                    order.submit_attempts = 1
                    order.submitted_at = now
                    await insert_intent(conn, order)
                    work.submit.append(order)
        self._on_committed()
        if rejected is not None:
            return SignalOutcome(signal.signal_id, SignalStatus.REJECTED.value, tuple(rejected))
        placed = bool(work.submit) and not work.resolve
        for order in work.submit:
            faults.checkpoint("signal.intent_committed")
            assert order.id is not None
            status = await self._executor.submit(order.id, fresh=order)
            metrics.observe_placement_latency((utcnow() - received_at).total_seconds())
            placed = placed and status is not None and status not in _NOT_PLACED
        for order_id in work.resolve:
            await self._executor.resolve(order_id)
        if placed:
            # Every order is on the exchange: the signal is placed, no need to read it back.
            ids = tuple(o.client_order_id for o in work.submit)
            return SignalOutcome(signal.signal_id, SignalStatus.PLACED.value, (), ids)
        outcome = await self.outcome(signal.signal_id)
        assert outcome is not None
        return outcome

    def decide(self, signal: Signal, ctx: DecisionContext) -> ProposedOrder | list[Rejection]:
        """Run the decision hooks; pure, so previews and replays can call it too."""
        reasons = self._hooks.check_signal(signal, ctx)
        if reasons:
            return reasons
        order_type = self._hooks.select_order_type(signal, ctx)
        if isinstance(order_type, Rejection):
            return [order_type]
        quantity = self._hooks.calculate_quantity(signal, ctx, order_type)
        if isinstance(quantity, Rejection):
            return [quantity]
        proposed = ProposedOrder(
            signal_id=signal.signal_id,
            leg=0,
            symbol=signal.symbol,
            category=signal.category,
            side=signal.side,
            order_type=order_type.order_type,
            qty=quantity.qty,
            price=order_type.price if order_type.order_type is OrderType.LIMIT else None,
            reference_price=ctx.reference_price,
            time_in_force=order_type.time_in_force,
            reduce_only=signal.reduce_only,
            take_profit=signal.take_profit,
            stop_loss=signal.stop_loss,
        )
        problems = _sanity(proposed, ctx)
        if problems:
            return problems
        return self._hooks.check_order(proposed, signal, ctx) or proposed

    def _intent(self, order: ProposedOrder, signal: Signal) -> Order:
        return Order(
            client_order_id=client_order_id(signal.signal_id, order.leg),
            signal_id=signal.signal_id,
            leg=order.leg,
            exchange=self._exchange_name,
            category=order.category.value,
            symbol=order.symbol,
            side=order.side.value,
            order_type=order.order_type.value,
            time_in_force=order.time_in_force.value if order.time_in_force else None,
            qty=order.qty,
            price=order.price,
            reference_price=order.reference_price,
            reduce_only=order.reduce_only,
            position_idx=order.position_idx,
            take_profit=order.take_profit,
            stop_loss=order.stop_loss,
            status=OrderStatus.PENDING_SUBMIT,
        )

    async def outcome(self, signal_id: str) -> SignalOutcome | None:
        async with self._factory() as session:
            row = (
                await session.exec(
                    select(SignalRecord).where(col(SignalRecord.signal_id) == signal_id)
                )
            ).one_or_none()
            if row is None:
                return None
            return await self._outcome_in(session, row)

    async def _outcome_in(self, session: Any, row: SignalRecord) -> SignalOutcome:
        ids = (
            await session.exec(
                select(Order.client_order_id)
                .where(col(Order.signal_id) == row.signal_id)
                .order_by(col(Order.leg))
            )
        ).all()
        return SignalOutcome(
            signal_id=row.signal_id,
            status=row.status,
            reasons=tuple(row.reasons),
            client_order_ids=tuple(ids),
        )


def _duplicate(outcome: SignalOutcome) -> SignalOutcome:
    return SignalOutcome(
        outcome.signal_id, outcome.status, outcome.reasons, outcome.client_order_ids, True
    )


def _stale(age: timedelta, limit: timedelta) -> Rejection:
    return Rejection(
        code="SIGNAL_STALE",
        message="the signal is older than the maximum signal age; not executed late",
        details={
            "age_seconds": f"{age.total_seconds():.3f}",
            "max_age_seconds": f"{limit.total_seconds():.3f}",
        },
        plugin="engine",
    )


def _sanity(order: ProposedOrder, ctx: DecisionContext) -> list[Rejection]:
    """The engine's own floor under whatever plugins decided: never send a malformed order."""
    rules = ctx.instrument
    problems = []
    if order.qty <= 0 or not is_multiple(order.qty, rules.qty_step):
        problems.append(f"qty {order.qty} is not a positive multiple of {rules.qty_step}")
    if order.order_type is OrderType.LIMIT:
        if order.price is None or order.price <= 0:
            problems.append("a limit order needs a positive price")
        elif not is_multiple(order.price, rules.tick_size):
            problems.append(f"price {order.price} is not a multiple of tick {rules.tick_size}")
    return [Rejection(code="INVALID_DECISION", message=p, plugin="engine") for p in problems]
