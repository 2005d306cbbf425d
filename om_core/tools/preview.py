"""Preview: the exact order request a signal would produce, computed and never sent.

The decision is :meth:`SignalProcessor.decide` — the pipeline the service runs (signal risk,
order type, quantity, rounding, engine sanity checks, order risk) — on a
:class:`~om_plugins.DecisionContext` built from the exchange's instrument rules, price and
balance and the database's positions, open orders and trading state. The exchange is
wrapped in :class:`ReadOnlyExchange`, which refuses to place or cancel anything, and nothing
is written to the database: previewing a signal has no effect, however often it is done.

Used by ``om order preview``, ``om replay --preview`` and (through :func:`preview`) the
service's ``POST /api/v1/orders/preview``.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import time, timedelta
from decimal import Decimal
from enum import Enum
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

from om_core.config import Settings, mask_url
from om_core.db import migrate
from om_core.db.session import SessionFactory, create_engine, create_session_factory
from om_core.db.types import utcnow
from om_core.engine import guard
from om_core.engine.context import ContextBuilder
from om_core.engine.executor import OrderExecutor
from om_core.engine.processor import SignalProcessor
from om_core.orders.client_id import client_order_id
from om_core.plugins import PluginHooks, load_plugins
from om_core.service import Service, exchange_not_provided
from om_core.signals.contract import InvalidSignal, parse_signal, read_signal_id
from om_core.signals.store import FINAL
from om_core.tools.outcomes import plain
from om_core.tools.sandbox import expand_plugin_names
from om_plugins.errors import ExchangeRejected
from om_plugins.exchange import (
    ExchangeAdapter,
    ExchangeContext,
    OrderRequest,
    PlacedOrder,
)
from om_plugins.reports import OrderReport, Report
from om_plugins.types import (
    Balance,
    Category,
    FeeRates,
    Instrument,
    PositionMode,
    ProposedOrder,
    Rejection,
    Signal,
)

__all__ = [
    "Evaluation",
    "PreviewSetupError",
    "Previewer",
    "ReadOnlyExchange",
    "SendAttempted",
    "preview",
    "request_fields",
    "standalone_previewer",
]

log = logging.getLogger(__name__)


class SendAttempted(RuntimeError):
    """Something tried to place or cancel an order through a preview's exchange."""


class PreviewSetupError(Exception):
    """The preview cannot run (e.g. the configured exchange is not provided by any plugin)."""


class ReadOnlyExchange(ExchangeAdapter):
    """Passes reads through to ``inner``; refuses to place or cancel anything.

    It does not start or close ``inner``: whoever created the adapter owns its lifecycle.
    """

    def __init__(self, inner: ExchangeAdapter) -> None:
        self._inner = inner
        self.name = inner.name
        self.resend_guard_seconds = inner.resend_guard_seconds
        self.categories = inner.categories

    async def get_instrument(self, category: Category, symbol: str) -> Instrument:
        return await self._inner.get_instrument(category, symbol)

    async def get_reference_price(self, category: Category, symbol: str) -> Decimal:
        return await self._inner.get_reference_price(category, symbol)

    async def get_balance(self, coin: str) -> Balance:
        return await self._inner.get_balance(coin)

    async def get_position_mode(self, category: Category, symbol: str) -> PositionMode:
        return await self._inner.get_position_mode(category, symbol)

    async def get_fee_rates(self, category: Category, symbol: str) -> FeeRates | None:
        return await self._inner.get_fee_rates(category, symbol)

    async def get_leverage(self, category: Category, symbol: str) -> Decimal | None:
        return await self._inner.get_leverage(category, symbol)

    async def get_order(
        self,
        category: Category,
        symbol: str,
        client_order_id: str,
        *,
        exchange_order_id: str = "",
    ) -> OrderReport | None:
        return await self._inner.get_order(
            category, symbol, client_order_id, exchange_order_id=exchange_order_id
        )

    async def list_open_orders(
        self, category: Category, symbol: str | None = None
    ) -> list[OrderReport]:
        return await self._inner.list_open_orders(category, symbol)

    async def place_order(self, request: OrderRequest) -> PlacedOrder:
        raise SendAttempted(f"a preview never sends orders (refused {request.client_order_id})")

    async def cancel_order(self, category: Category, symbol: str, client_order_id: str) -> None:
        raise SendAttempted(f"a preview never cancels orders (refused {client_order_id})")


@dataclasses.dataclass(frozen=True, slots=True)
class Evaluation:
    """What the service would do with one signal: send ``request``, or refuse for
    ``rejections``."""

    signal: Signal | None
    request: OrderRequest | None
    rejections: tuple[Rejection, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        signal_id = self.signal.signal_id if self.signal is not None else None
        return {
            "signal_id": signal_id,
            "would_send": request_fields(self.request) if self.request is not None else None,
            "rejections": [
                {
                    "plugin": r.plugin,
                    "code": r.code,
                    "message": r.message,
                    "details": dict(r.details),
                }
                for r in self.rejections
            ],
        }


def request_fields(request: OrderRequest) -> dict[str, Any]:
    """The request's fields as JSON: numbers and enums as strings (exact decimals in plain
    notation, without trailing zeros), booleans as booleans, absent values as ``null``."""
    out: dict[str, Any] = {}
    for item in dataclasses.fields(request):
        value = getattr(request, item.name)
        if value is None or isinstance(value, bool):
            out[item.name] = value
        elif isinstance(value, Enum):
            out[item.name] = str(value.value)
        elif isinstance(value, Decimal):
            out[item.name] = plain(value)
        else:
            out[item.name] = str(value)
    return out


def _request(order: ProposedOrder) -> OrderRequest:
    """The request the executor would send for ``order`` (same fields as its intent row)."""
    return OrderRequest(
        client_order_id=client_order_id(order.signal_id, order.leg),
        symbol=order.symbol,
        category=order.category,
        side=order.side,
        order_type=order.order_type,
        qty=order.qty,
        price=order.price,
        time_in_force=order.time_in_force,
        reduce_only=order.reduce_only,
        position_idx=order.position_idx,
        take_profit=order.take_profit,
        stop_loss=order.stop_loss,
    )


def _engine_reason(code: str, message: str, **details: str) -> Rejection:
    return Rejection(code=code, message=message, details=details, plugin="engine")


class Previewer:
    """Evaluates signals against current exchange data and database state; sends nothing."""

    def __init__(
        self,
        processor: SignalProcessor,
        exchange: ExchangeAdapter,
        sessions: SessionFactory,
        max_signal_age: timedelta,
        *,
        state: str = "database",
        day_start: time = time(0, 0),
    ) -> None:
        self._processor = processor
        self._context = ContextBuilder(ReadOnlyExchange(exchange), day_start=day_start)
        self._sessions = sessions
        self._max_age = max_signal_age
        #: ``database`` when positions and orders come from the service's database, ``empty``
        #: when the preview had to assume a flat account with no orders.
        self.state = state

    @classmethod
    def for_service(cls, service: Service) -> Previewer:
        return cls(
            service.processor,
            service.exchange,
            service.sessions,
            timedelta(seconds=service.settings.max_signal_age_seconds),
            day_start=service.settings.trading_day_start,
        )

    async def evaluate(self, signal: Signal) -> Evaluation:
        known = await self._processor.outcome(signal.signal_id)
        if known is not None and known.status in FINAL:
            return Evaluation(
                signal,
                None,
                (
                    _engine_reason(
                        "DUPLICATE_SIGNAL",
                        f"signal {signal.signal_id} was already processed ({known.status}); "
                        "the service would not act on it again",
                        status=known.status,
                    ),
                ),
            )
        try:
            market = await self._context.market_data(signal)
        except ExchangeRejected as exc:
            reason = _engine_reason(
                "INSTRUMENT_UNAVAILABLE",
                f"the exchange has no tradable {signal.symbol}: {exc.message}",
                exchange_code=exc.code,
            )
            return Evaluation(signal, None, (reason,))
        now = utcnow()
        # The service measures age from created_at, else from first receipt: now, here.
        stale = guard.check_age(guard.signal_born_at(signal.created_at, now), now, self._max_age)
        if stale is not None:
            return Evaluation(signal, None, (stale,))
        async with self._sessions() as session:
            ctx = await self._context.build(await session.connection(), signal, market, now)
        # Plugin code, off the event loop as in the service.
        decision = await self._processor.decisions.run(lambda: self._processor.decide(signal, ctx))
        if isinstance(decision, list):
            return Evaluation(signal, None, tuple(decision))
        return Evaluation(signal, _request(decision))

    async def evaluate_payload(self, payload: bytes | Mapping[str, Any]) -> Evaluation:
        """Parse ``payload`` like the service does, then :meth:`evaluate` it."""
        try:
            signal = parse_signal(payload)
        except InvalidSignal as exc:
            reasons = tuple(_engine_reason("INVALID_SIGNAL", p) for p in exc.problems)
            return Evaluation(None, None, reasons)
        return await self.evaluate(signal)


async def preview(service: Service, signal_payload: bytes | Mapping[str, Any]) -> dict[str, Any]:
    """Preview one signal on a running service (the API's ``POST /api/v1/orders/preview``).

    Returns ``{"signal_id", "would_send": {request fields} | None, "rejections": [...]}``;
    nothing is sent and nothing is recorded.
    """
    evaluation = await Previewer.for_service(service).evaluate_payload(signal_payload)
    result = evaluation.as_dict()
    if result["signal_id"] is None and isinstance(signal_payload, Mapping):
        result["signal_id"] = read_signal_id(signal_payload)
    return result


async def _discard(_reports: Sequence[Report]) -> None:
    """A preview's exchange never places orders, so it has no order updates to publish."""


@asynccontextmanager
async def _state_database(
    settings: Settings, notes: list[str]
) -> AsyncIterator[tuple[SessionFactory, str]]:
    """The configured database when it is reachable and migrated, else an empty temporary
    one (a flat account with no orders), noted in ``notes``."""
    url = settings.database_url
    usable: str | None = None
    database = make_url(url).database if settings.is_embedded_db else None
    if database is not None and not await asyncio.to_thread(Path(database).exists):
        notes.append(f"database {database} does not exist")
    else:
        try:
            await migrate.check_migrated(url)
            usable = url
        except Exception as exc:
            notes.append(f"database {mask_url(url)} is not usable: {exc}")
    directory: Path | None = None
    if usable is None:
        notes.append("previewing against an empty state: no positions, no open orders, active")
        directory = Path(tempfile.mkdtemp(prefix="om-preview-"))
        usable = f"sqlite+aiosqlite:///{directory / 'om.db'}"
        await migrate.upgrade(usable)
    engine = create_engine(usable)
    try:
        yield create_session_factory(engine), "database" if directory is None else "empty"
    finally:
        await engine.dispose()
        if directory is not None:
            shutil.rmtree(directory, ignore_errors=True)


@asynccontextmanager
async def standalone_previewer(
    settings: Settings,
    *,
    plugin_env: Mapping[str, str],
    plugins: Sequence[str] | None = None,
    notes: list[str] | None = None,
) -> AsyncIterator[Previewer]:
    """A previewer outside the service (``om order preview``, ``om replay --preview``).

    It loads the enabled plugins, connects the configured exchange (read-only) and reads
    state from the configured database when it can (see :func:`_state_database`). It starts
    no consumer, no relay and no in-doubt resolver, so nothing is ever sent or written.
    """
    notes = notes if notes is not None else []
    names = expand_plugin_names(settings.plugins if plugins is None else plugins)
    loaded = load_plugins(names, settings.plugin_config, plugin_env)
    hooks = PluginHooks(loaded.pm, trace=settings.trace_plugins, budget_ms=settings.hook_budget_ms)
    factories = hooks.exchange_factories()
    if settings.exchange not in factories:
        raise PreviewSetupError(exchange_not_provided(settings.exchange, list(factories)))
    adapter = factories[settings.exchange][1](ExchangeContext(publish_reports=_discard))
    read_only = ReadOnlyExchange(adapter)
    max_age = timedelta(seconds=settings.max_signal_age_seconds)
    await adapter.start()
    try:
        await hooks.startup(settings.describe())
        try:
            async with _state_database(settings, notes) as (sessions, state):
                # decide() only consults the hooks; the executor is never driven, and its
                # exchange could not send anything anyway.
                processor = SignalProcessor(
                    sessions,
                    hooks,
                    settings.exchange,
                    ContextBuilder(read_only, day_start=settings.trading_day_start),
                    OrderExecutor(sessions, read_only, max_signal_age=max_age),
                    max_signal_age=max_age,
                )
                try:
                    yield Previewer(
                        processor,
                        read_only,
                        sessions,
                        max_age,
                        state=state,
                        day_start=settings.trading_day_start,
                    )
                finally:
                    processor.close()
        finally:
            await hooks.shutdown()
    finally:
        await adapter.close()
