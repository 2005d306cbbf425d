"""SignalProcessor: validate → risk → order type → quantity → order risk → intent → place.

Decisions for one symbol are serialized by a lock held from reading the context to
committing the intent, also across service instances, so two concurrent signals cannot both
pass a limit only one of them fits.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from om_core import faults, metrics
from om_core.db.locks import locked_transaction, symbol_lock_key
from om_core.db.models import Order, SignalRecord
from om_core.db.session import AsyncSession, SessionFactory
from om_core.db.types import utcnow
from om_core.engine import guard
from om_core.engine.context import ContextBuilder, DatabaseState, MarketData, open_order
from om_core.engine.decisions import DecisionThreads
from om_core.engine.executor import OrderExecutor
from om_core.events.payloads import reasons_payload
from om_core.orders.client_id import client_order_id
from om_core.orders.rows import Intent, insert_intents
from om_core.orders.status import IN_DOUBT, OrderStatus
from om_core.plugins.facade import Decided, PluginHooks
from om_core.signals import store
from om_core.signals.contract import signal_born, timing_rejection
from om_core.signals.store import FINAL, SignalStatus
from om_plugins.errors import ExchangeAuthError, ExchangeRejected, ExchangeUnavailable
from om_plugins.rounding import is_multiple, round_down, round_up
from om_plugins.types import (
    DecisionContext,
    OrderType,
    OrderTypeDecision,
    PositionMode,
    ProposedOrder,
    QtyUnit,
    QuantityDecision,
    Rejection,
    Side,
    Signal,
)

__all__ = ["IN_DOUBT_OUTCOME", "Incoming", "SignalOutcome", "SignalProcessor"]

log = logging.getLogger(__name__)

#: The outcome of a signal whose order was sent and whose answer was lost (its row says
#: ``processing``): the intent is durable, and the order is looked up until it settles.
IN_DOUBT_OUTCOME = "in_doubt"


#: Order statuses after a placement attempt that do not make the signal placed.
_NOT_PLACED = IN_DOUBT | {OrderStatus.REJECTED}


@dataclass(frozen=True, slots=True)
class SignalOutcome:
    signal_id: str
    #: placed | rejected | in_doubt (an order was sent and its answer is still unknown)
    status: str
    reasons: Sequence[Mapping[str, Any]] = ()
    client_order_ids: Sequence[str] = ()
    #: True when this call found the signal already decided and changed nothing.
    duplicate: bool = False
    #: True when this copy was refused ``SIGNAL_ID_CONFLICT`` (the stored signal, with its
    #: own outcome, is unchanged); ``status`` and ``reasons`` are the copy's.
    conflict: bool = False


@dataclass(frozen=True, slots=True)
class Incoming:
    """A signal as it arrived: parsed, its payload as sent, and when it was received."""

    signal: Signal
    payload: Mapping[str, Any]
    received_at: datetime
    #: The AMQP ``timestamp`` the producer stamped, if any.
    sent_at: datetime | None = None


@dataclass(slots=True)
class _Plan:
    """One signal's way through a batch."""

    incoming: Incoming
    market: MarketData | Rejection
    row_id: int | None = None
    born: datetime | None = None
    undecided: bool = False
    order: Intent | None = None
    rejection: list[Rejection] | None = None
    resolve: list[int] = field(default_factory=list)
    outcome: SignalOutcome | None = None
    #: The payload stored under the signal id (the first stored copy's, which wins).
    stored: Any = None
    #: The first copy in the batch conflicts with the stored one (``outcome`` says so).
    conflict: bool = False


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
        clock_skew: timedelta = timedelta(seconds=5),
        on_committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._factory = factory
        self._hooks = hooks
        self._exchange_name = exchange_name
        self._context = context
        self._executor = executor
        self._max_age = max_signal_age
        self._clock_skew = clock_skew
        self._on_committed = on_committed
        #: Decision hooks run here, off the event loop (see :mod:`om_core.engine.decisions`).
        self.decisions = DecisionThreads()

    def close(self) -> None:
        self.decisions.close()

    async def process(
        self, signal: Signal, payload: Mapping[str, Any], received_at: datetime | None = None
    ) -> SignalOutcome:
        (outcome,) = await self.process_many([Incoming(signal, payload, received_at or utcnow())])
        return outcome

    async def process_many(self, batch: Sequence[Incoming]) -> list[SignalOutcome]:
        """Decide and place signals that arrived together, with one decision transaction.

        The transaction holds the locks of all their symbols; signals are decided in arrival
        order, each seeing the intents of those before it, exactly as if each had its own
        transaction. The orders then go to the exchange at once.
        """
        # The first copy of each signal id; later copies in the batch are its duplicates (or,
        # with other content, conflicts).
        first: dict[str, Incoming] = {}
        for incoming in batch:
            first.setdefault(incoming.signal.signal_id, incoming)
        unique = list(first.values())
        # A signal decided earlier is found under the lock below; exchange reads for it are
        # wasted but harmless, and checking first would cost every signal a transaction.
        try:
            markets = await asyncio.gather(*(self._market(i.signal) for i in unique))
        except Exception:
            # Held for a retry (the exchange is unreachable): the first receipt is kept, so
            # a redelivery after a restart still counts the signal's age from it.
            await self._keep_receipts(unique)
            raise
        plans = {
            i.signal.signal_id: _Plan(i, market) for i, market in zip(unique, markets, strict=True)
        }
        keys = {
            symbol_lock_key(p.incoming.signal.category.value, p.incoming.signal.symbol)
            for p in plans.values()
        }
        async with locked_transaction(self._factory, keys) as session:
            conn = await session.connection()
            created = await store.insert_new(
                conn,
                [
                    (p.incoming.signal, p.incoming.payload, p.incoming.received_at)
                    for p in plans.values()
                ],
            )
            for plan in plans.values():
                signal = plan.incoming.signal
                if signal.signal_id in created:
                    plan.row_id = created[signal.signal_id]
                    plan.born = self._born(plan.incoming, plan.incoming.received_at)
                    plan.undecided = True
                    plan.stored = store.json_safe(plan.incoming.payload)
                else:
                    await self._known(session, plan)
            # Later copies of an id in this batch: content unlike the stored copy's conflicts.
            later: dict[int, SignalOutcome] = {}
            for incoming in batch:
                plan = plans[incoming.signal.signal_id]
                if first[incoming.signal.signal_id] is not incoming:
                    reason = store.conflict_reason(plan.stored, incoming.payload)
                    if reason is not None:
                        later[id(incoming)] = _conflict_outcome(incoming.signal.signal_id, reason)
            conflicts = [*later.values()] + [
                p.outcome for p in plans.values() if p.outcome is not None and p.conflict
            ]
            await store.stage_rejections(conn, [(o.signal_id, o.reasons) for o in conflicts])
            await self._decide_all(conn, [p for p in plans.values() if p.undecided])
        if conflicts or any(p.rejection is not None for p in plans.values()):
            # Only rejections write events here; a relay pass for nothing costs a transaction.
            self._on_committed()
        await self._place([p for p in plans.values() if p.order is not None])
        outcomes: dict[str, SignalOutcome] = {}
        for signal_id, plan in plans.items():
            for order_id in plan.resolve:
                await self._executor.resolve(order_id)
            outcome = plan.outcome
            if outcome is None:
                outcome = await self.outcome(signal_id)
                assert outcome is not None
            outcomes[signal_id] = outcome
        result = []
        for incoming in batch:
            outcome = outcomes[incoming.signal.signal_id]
            if first[incoming.signal.signal_id] is not incoming:
                conflicting = later.get(id(incoming))
                if conflicting is not None:
                    outcome = conflicting
                else:
                    if plans[incoming.signal.signal_id].conflict:
                        # The first copy was refused; this one is the stored signal again.
                        stored = await self.outcome(incoming.signal.signal_id)
                        assert stored is not None
                        outcome = stored
                    outcome = _duplicate(outcome)
            result.append(outcome)
        return result

    def _born(self, incoming: Incoming, first_received_at: datetime) -> datetime:
        return signal_born(
            incoming.signal.created_at,
            sent_at=incoming.sent_at,
            received_at=min(first_received_at, incoming.received_at),
        )

    async def _keep_receipts(self, batch: Sequence[Incoming]) -> None:
        """Store the rows of signals that are held before they could be decided (best
        effort: when the database is the trouble, there is nothing to keep them in)."""
        try:
            async with self._factory() as session, session.begin():
                conn = await session.connection()
                await store.insert_new(conn, [(i.signal, i.payload, i.received_at) for i in batch])
        except Exception:
            log.warning("cannot keep the receipt of %d held signals", len(batch), exc_info=True)

    async def _market(self, signal: Signal) -> MarketData | Rejection:
        """Exchange reads, before any lock is taken; a reason when they cannot be had."""
        try:
            return await self._context.market_data(signal)
        except ExchangeAuthError as exc:
            # Credentials are wrong or revoked: retrying cannot help and must not loop.
            await self._executor.halt(f"exchange authentication failed: {exc.message}")
            return Rejection(
                code="EXCHANGE_AUTH",
                message=f"the exchange refused our credentials: {exc.message}",
                details={"exchange_code": exc.code},
                plugin="engine",
            )
        except ExchangeUnavailable as exc:
            # An IP ban met by a read pauses trading as one met by the order would; the
            # signal is held (retried) meanwhile, without a request reaching the exchange.
            await self._executor.pause.pause_for(exc)
            raise
        except ExchangeRejected as exc:
            return Rejection(
                code="INSTRUMENT_UNAVAILABLE",
                message=f"the exchange has no tradable {signal.symbol}: {exc.message}",
                details={"exchange_code": exc.code},
                plugin="engine",
            )

    async def _known(self, session: AsyncSession, plan: _Plan) -> None:
        """A signal whose row existed: decided already, died halfway, or dead-lettered once."""
        incoming = plan.incoming
        signal = incoming.signal
        status = (
            await session.exec(
                select(SignalRecord.status).where(col(SignalRecord.signal_id) == signal.signal_id)
            )
        ).one_or_none()
        row, _ = await store.get_or_create(session, signal, incoming.payload, incoming.received_at)
        plan.stored = row.payload
        # A dead-lettered id starts over with a valid copy; any other stored copy wins, always.
        reason = (
            None
            if status == SignalStatus.DEAD_LETTERED
            else store.conflict_reason(row.payload, incoming.payload)
        )
        if reason is not None:
            plan.outcome = _conflict_outcome(signal.signal_id, reason)
            plan.conflict = True
            return
        if row.status in FINAL:
            plan.outcome = _duplicate(await self._outcome_in(session, row))
            return
        # Written now: the Core statements of the batch must not be overwritten at commit.
        await session.flush()
        assert row.id is not None
        orders = (
            await session.exec(select(Order).where(col(Order.signal_id) == signal.signal_id))
        ).all()
        # An earlier attempt committed its intents and died: never decide twice.
        plan.resolve = [o.id for o in orders if o.status in IN_DOUBT and o.id]
        if not orders:
            plan.row_id, plan.born, plan.undecided = (
                row.id,
                self._born(incoming, row.received_at),
                True,
            )

    async def _decide_all(self, conn: AsyncConnection, plans: Sequence[_Plan]) -> None:
        if not plans:
            return
        now = utcnow()
        state = await self._context.read(
            conn, {(p.incoming.signal.category, p.incoming.signal.symbol) for p in plans}, now
        )
        # Plugin code: in a worker thread, so a hook that blocks cannot freeze the loop.
        await self.decisions.run(lambda: self._decide_plans(plans, state, now))
        await insert_intents(conn, [p.order for p in plans if p.order is not None])
        rejected = [p for p in plans if p.rejection is not None]
        stored = await store.reject(
            conn,
            [
                (p.row_id, p.incoming.signal.signal_id, p.rejection)
                for p in rejected
                if p.row_id is not None and p.rejection is not None
            ],
        )
        for plan, reasons in zip(rejected, stored, strict=True):
            plan.outcome = SignalOutcome(
                plan.incoming.signal.signal_id, SignalStatus.REJECTED.value, tuple(reasons)
            )

    def _decide_plans(self, plans: Sequence[_Plan], state: DatabaseState, now: datetime) -> None:
        """Decide each plan in arrival order, each seeing the intents decided before it."""
        for plan in plans:
            signal = plan.incoming.signal
            assert plan.born is not None
            decision: ProposedOrder | list[Rejection]
            if isinstance(plan.market, Rejection):
                decision = [plan.market]
            elif (
                late := timing_rejection(
                    plan.born, now, max_age=self._max_age, clock_skew=self._clock_skew
                )
            ) is not None:
                decision = [late]
            else:
                decision = self.decide(signal, state.context(signal, plan.market))
            if isinstance(decision, list):
                plan.rejection = decision
                continue
            order = self._intent(decision, signal, now)
            plan.order = order
            state.add_intent(open_order(order))

    async def _place(self, plans: Sequence[_Plan]) -> None:
        orders = [p.order for p in plans if p.order is not None]
        for _ in orders:
            faults.checkpoint("signal.intent_committed")
        statuses = await self._executor.submit_many(orders)
        for plan, order, status in zip(plans, orders, statuses, strict=True):
            metrics.observe_placement_latency(
                (utcnow() - plan.incoming.received_at).total_seconds()
            )
            if status is not None and status not in _NOT_PLACED:
                # On the exchange: the signal is placed, no need to read it back.
                plan.outcome = SignalOutcome(
                    plan.incoming.signal.signal_id,
                    SignalStatus.PLACED.value,
                    (),
                    (order.client_order_id,),
                )

    def decide(self, signal: Signal, ctx: DecisionContext) -> ProposedOrder | list[Rejection]:
        """Run the decision hooks; pure, so previews and replays can call it too.

        Synchronous plugin code: the service calls it through :attr:`decisions`, off the
        event loop.
        """
        # The engine's own checks first, from the state as read for this decision (captured
        # before any plugin code runs); plugins' reasons are added, never subtracted.
        state, mode, position = ctx.trading_state, ctx.position_mode, ctx.position
        positions, open_orders = ctx.positions, ctx.open_orders
        reasons = guard.check_state(state) + self._hooks.check_signal(signal, ctx)
        if reasons:
            return reasons
        chosen_type = self._hooks.choose_order_type(signal, ctx)
        if isinstance(chosen_type, Rejection):
            return [chosen_type]
        order_type = chosen_type.value
        quantity = self._hooks.choose_quantity(signal, ctx, order_type)
        if isinstance(quantity, Rejection):
            return [quantity]
        instrument = ctx.instrument
        proposed = ProposedOrder(
            signal_id=signal.signal_id,
            leg=0,
            symbol=signal.symbol,
            category=signal.category,
            side=signal.side,
            order_type=order_type.order_type,
            qty=quantity.value.qty,
            price=order_type.price if order_type.order_type is OrderType.LIMIT else None,
            reference_price=ctx.reference_price,
            time_in_force=order_type.time_in_force,
            reduce_only=signal.reduce_only,
            position_idx=position_idx(ctx.position_mode, signal.side, signal.reduce_only),
            take_profit=_tpsl(signal.take_profit, signal.side, True, instrument.tick_size),
            stop_loss=_tpsl(signal.stop_loss, signal.side, False, instrument.tick_size),
            qty_unit=instrument.qty_unit,
            contract_size=instrument.contract_size,
        )
        problems = _sanity(proposed, ctx, chosen_type, quantity)
        if problems:
            return problems
        guarded = guard.check_order(
            proposed,
            state=state,
            mode=mode,
            position=position,
            positions=positions,
            open_orders=open_orders,
        )
        if isinstance(guarded, list):
            return guarded + self._hooks.check_order(proposed, signal, ctx)
        return self._hooks.check_order(guarded, signal, ctx) or guarded

    def _intent(self, order: ProposedOrder, signal: Signal, now: datetime) -> Intent:
        return Intent(
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
            submitted_at=now,
            qty_unit=order.qty_unit.value,
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
            status=IN_DOUBT_OUTCOME if row.status == SignalStatus.PROCESSING else row.status,
            reasons=tuple(row.reasons),
            client_order_ids=tuple(ids),
        )


def _duplicate(outcome: SignalOutcome) -> SignalOutcome:
    return SignalOutcome(
        outcome.signal_id, outcome.status, outcome.reasons, outcome.client_order_ids, True
    )


def _conflict_outcome(signal_id: str, reason: Rejection) -> SignalOutcome:
    log.warning(
        "signal %s: known with other content (differs in %s); the first stored copy wins, "
        "this one is rejected SIGNAL_ID_CONFLICT",
        signal_id,
        reason.details.get("fields"),
    )
    return SignalOutcome(
        signal_id, SignalStatus.REJECTED.value, tuple(reasons_payload([reason])), conflict=True
    )


def position_idx(mode: PositionMode, side: Side, reduce_only: bool) -> int:
    """Which position an order trades: 0 in one-way mode; in hedge mode the long side (1)
    for a buy that opens or a sell that reduces, the short side (2) otherwise."""
    if mode is PositionMode.ONE_WAY:
        return 0
    opens_long = side is Side.BUY
    return 1 if opens_long != reduce_only else 2


def _tpsl(price: Decimal | None, side: Side, take_profit: bool, tick: Decimal) -> Decimal | None:
    """A take-profit or stop-loss price on the tick grid, rounded towards the entry (a long's
    take-profit down and stop-loss up, a short's the other way): never further away than
    the signal asked for."""
    if price is None:
        return None
    above_entry = (side is Side.BUY) == take_profit
    return round_down(price, tick) if above_entry else round_up(price, tick)


def _sanity(
    order: ProposedOrder,
    ctx: DecisionContext,
    order_type: Decided[OrderTypeDecision],
    quantity: Decided[QuantityDecision],
) -> list[Rejection]:
    """The engine's own floor under whatever plugins decided: never send a malformed order.

    A problem is attributed to the plugin whose decision it is in, with the hook named.
    """
    rules = ctx.instrument
    problems = []
    if rules.qty_unit is QtyUnit.CONTRACTS and rules.contract_size != 1:
        problems.append(
            Rejection(
                code="UNSUPPORTED_INSTRUMENT",
                message=(
                    f"{rules.symbol} contracts are worth {rules.contract_size}, and the "
                    "engine's position arithmetic supports contracts of 1 only"
                ),
                plugin="engine",
            )
        )
    if order.qty <= 0 or not is_multiple(order.qty, rules.qty_step):
        problems.append(
            Rejection(
                code="INVALID_DECISION",
                message=(
                    f"om_calculate_quantity returned qty {order.qty}, not a positive multiple "
                    f"of the instrument's qty_step {rules.qty_step} (round it down with "
                    "om_plugins.rounding.round_qty_down)"
                ),
                details={"hook": "om_calculate_quantity", "qty": str(order.qty)},
                plugin=quantity.plugin,
            )
        )
    if order.order_type is OrderType.LIMIT:
        problem = None
        if order.price is None or order.price <= 0:
            problem = f"a limit order needs a positive price, got {order.price}"
        elif not is_multiple(order.price, rules.tick_size):
            problem = (
                f"price {order.price} is not a multiple of the instrument's tick_size "
                f"{rules.tick_size} (round it with om_plugins.rounding.round_price)"
            )
        if problem is not None:
            problems.append(
                Rejection(
                    code="INVALID_DECISION",
                    message=f"om_select_order_type returned a limit order: {problem}",
                    details={"hook": "om_select_order_type", "price": str(order.price)},
                    plugin=order_type.plugin,
                )
            )
    return problems
