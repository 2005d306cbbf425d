"""An in-process Order Manager for plugin tests: :class:`EngineHarness`.

It is the real engine — ``SignalProcessor`` inside a real ``Service`` — on a temporary SQLite
file, the in-process bus and the paper exchange with its random walk off, with the built-in
plugins (or the ones you name) loaded through their entry points, plus any plugin object a
test registers. No broker, database or exchange needs to be set up.

The engine runs on its own event loop in a background thread, so the harness works the
same from synchronous tests (``harness.run_sync(...)``) and from ``async`` tests under any
event loop (``await harness.run(...)``), with or without pytest-asyncio.

Time is under the test's control: ``EngineHarness(now="2025-01-06T09:00:00Z")`` or
:meth:`EngineHarness.set_time` freeze the engine's clock at that instant (signal age, the
context's ``now``, the trading day, the last minute's order count all follow it) until
:meth:`EngineHarness.advance_time` moves it on. Without either, it is the wall clock.

What it does not do: apply the exchange's order updates back. Orders it placed stay
``submitted`` (and count as open orders for later signals in the same test), and positions
change only through :meth:`EngineHarness.set_position`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar

import pluggy
from sqlmodel import col, select

from om_core.clock import use_clock
from om_core.config import load_settings
from om_core.db.models import Order as OrderRow
from om_core.db.models import Position as PositionRow
from om_core.db.models import PositionSnapshot, TradingStateRow
from om_core.db.types import utcnow
from om_core.orders.status import OrderStatus
from om_core.plugins import PluginHooks
from om_core.service import Service
from om_core.signals.contract import InvalidSignal, decode_json, parse_signal, read_signal_id
from om_core.tools.outcomes import Outcome, conflict_outcome, invalid_outcome, read_outcome
from om_core.tools.sandbox import Sandbox, start_sandbox
from om_plugins.testing.builders import Number, _dec, signal_payload
from om_plugins.testing.registry import PluginRegistrar
from om_plugins.types import Category, Side, Signal, TradingState
from plugins_builtin.paper.exchange import PaperExchange

__all__ = ["EngineHarness", "HarnessClock", "SignalInput"]

T = TypeVar("T")

#: What :meth:`EngineHarness.run` accepts: a signal JSON object (a mapping), its encoded
#: JSON (``bytes``/``str``), or a :class:`~om_plugins.Signal`.
SignalInput = Mapping[str, Any] | bytes | str | Signal

# Alembic keeps the running migration in module globals: harnesses start one at a time.
_START_LOCK = threading.Lock()
_run_ids = itertools.count(1)


def _moment(value: datetime | str) -> datetime:
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    if moment.tzinfo is None:
        raise ValueError(f"the harness clock needs a timezone-aware time (UTC), got {value!r}")
    return moment.astimezone(UTC)


class HarnessClock:
    """The engine's clock in a harness: the wall clock until a test sets the time, then
    frozen at that instant until it is set or advanced again. Safe to call from any thread."""

    def __init__(self, start: datetime | str | None = None) -> None:
        self._frozen = None if start is None else _moment(start)

    def __call__(self) -> datetime:
        frozen = self._frozen
        return datetime.now(UTC) if frozen is None else frozen

    @property
    def frozen(self) -> bool:
        return self._frozen is not None

    def set(self, moment: datetime | str) -> datetime:
        self._frozen = _moment(moment)
        return self._frozen

    def advance(self, delta: timedelta) -> datetime:
        """Move a frozen clock on by ``delta`` (a wall clock is frozen at now first)."""
        self._frozen = self() + delta
        return self._frozen

    def unfreeze(self) -> None:
        """Back to the wall clock."""
        self._frozen = None


class _EngineLoop:
    """An event loop running in a daemon thread, and ways to call into it."""

    def __init__(self, clock: HarnessClock) -> None:
        self.clock = clock
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._main, name="om-test-engine", daemon=True)
        self._thread.start()

    def _main(self) -> None:
        asyncio.set_event_loop(self.loop)
        try:
            self.loop.run_forever()
        finally:
            try:
                pending = asyncio.all_tasks(self.loop)
                for task in pending:
                    task.cancel()
                if pending:
                    self.loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                self.loop.run_until_complete(self.loop.shutdown_asyncgens())
                self.loop.run_until_complete(self.loop.shutdown_default_executor())
            finally:
                self.loop.close()

    def submit(self, make: Callable[[], Awaitable[T]]) -> concurrent.futures.Future[T]:
        if threading.current_thread() is self._thread:
            raise RuntimeError("the harness cannot be called from its own engine loop")

        async def call() -> T:
            # The engine's tasks, and the decision threads they use, inherit this clock.
            use_clock(self.clock)
            return await make()

        return asyncio.run_coroutine_threadsafe(call(), self.loop)

    def call(self, make: Callable[[], Awaitable[T]], timeout: float) -> T:
        future = self.submit(make)
        try:
            return future.result(timeout)
        except concurrent.futures.TimeoutError:
            future.cancel()
            raise TimeoutError(f"the engine did not answer within {timeout}s") from None

    async def acall(self, make: Callable[[], Awaitable[T]], limit: float) -> T:
        future = asyncio.wrap_future(self.submit(make))
        try:
            async with asyncio.timeout(limit):
                return await future
        except TimeoutError:
            raise TimeoutError(f"the engine did not answer within {limit}s") from None

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join()


class EngineHarness:
    """A real engine on the paper exchange, for tests. See the module documentation.

    :param plugins: plugins to enable by entry-point name, like ``OM_PLUGINS``
        (``"builtin"`` = paper, risk, order_type, sizing); ``paper`` is added when missing.
    :param settings: plugin settings by plugin name, like the config file's
        ``[plugin.<name>]`` tables, e.g. ``{"risk": {"max_order_notional": "5000"}}``.
    :param env: extra variables: ``OM_PLUGIN_<NAME>_<FIELD>`` for plugin settings and
        ``OM_*`` service settings (e.g. ``OM_MAX_SIGNAL_AGE_SECONDS``). The process
        environment is *not* read, so a developer's shell cannot change a test.
    :param prices: starting paper prices by symbol (default BTCUSDT 60000, ETHUSDT 3000,
        SOLUSDT 150).
    :param balance: the paper account's starting wallet balance in USDT (default 100 000).
    :param now: freeze the engine's clock at this instant (a timezone-aware ``datetime`` or
        an ISO 8601 string such as ``"2025-01-06T09:00:00Z"``); default: the wall clock.
    :param timeout: seconds any one call may take before it fails.

    Settings for a plugin that is not enabled, unknown settings and unknown ``OM_*``
    variables are errors, as in the service.

    Use it as a context manager (``with EngineHarness() as h:``, also ``async with``), or
    call :meth:`start` and :meth:`close`. The ``harness`` pytest fixture does that for you.
    """

    def __init__(
        self,
        *,
        plugins: Sequence[str] = ("builtin",),
        settings: Mapping[str, Mapping[str, Any]] | None = None,
        env: Mapping[str, str] | None = None,
        prices: Mapping[str, Number] | None = None,
        balance: Number | None = None,
        now: datetime | str | None = None,
        timeout: float = 30.0,
    ) -> None:
        if isinstance(plugins, str):
            plugins = [p.strip() for p in plugins.split(",") if p.strip()]
        self._plugins = list(plugins)
        self._tables: dict[str, dict[str, Any]] = {k: dict(v) for k, v in (settings or {}).items()}
        if prices or balance is not None:
            paper = self._tables.setdefault("paper", {})
            if prices:
                paper["prices"] = {
                    **paper.get("prices", {}),
                    **{symbol.upper(): str(_dec(p)) for symbol, p in prices.items()},
                }
            if balance is not None:
                paper["initial_balance"] = str(_dec(balance))
        self._env = dict(env or {})
        self.timeout = timeout
        #: The engine's clock; see :meth:`set_time` and :meth:`advance_time`.
        self.clock = HarnessClock(now)
        self._loop: _EngineLoop | None = None
        self._sandbox: Sandbox | None = None
        self._registrar: PluginRegistrar | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the engine (a fraction of a second); returns the harness."""
        if self._loop is not None:
            raise RuntimeError("the harness is already started")
        # The harness applies no exchange updates, so nothing may reconcile its state away
        # behind the test's back: periodic reconciliation is off unless a test sets it.
        env = {"OM_SYNC_INTERVAL": "0", **self._env}
        # The process environment is never read: explicit values only, checked like the
        # service's (an unknown OM_* variable is an error).
        base = load_settings(env=env)
        base.plugin_config = self._tables
        loop = _EngineLoop(self.clock)
        try:
            with _START_LOCK:
                self._sandbox = loop.call(
                    lambda: start_sandbox(base, plugin_env=env, plugins=self._plugins),
                    self.timeout,
                )
        except BaseException:
            loop.stop()
            raise
        self._loop = loop
        self._registrar = PluginRegistrar(self.service.plugins.pm, self.service.hooks)
        return self

    def close(self) -> None:
        """Unregister test plugins, stop the engine and delete its files."""
        loop, sandbox = self._loop, self._sandbox
        self._loop = self._sandbox = None
        if self._registrar is not None:
            self._registrar.unregister_all()
            self._registrar = None
        if loop is None:
            return
        try:
            if sandbox is not None:
                loop.call(sandbox.stop, self.timeout)
        finally:
            loop.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    async def __aenter__(self) -> Self:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.close)

    # -- what it runs on -----------------------------------------------------------------------

    @property
    def service(self) -> Service:
        return self._started().service

    @property
    def paper(self) -> PaperExchange:
        """The paper exchange: ``orders``, ``create_calls``, ``position(symbol)``…"""
        paper: PaperExchange = self._started().paper
        return paper

    @property
    def pm(self) -> pluggy.PluginManager:
        return self.service.plugins.pm

    @property
    def hooks(self) -> PluginHooks:
        return self.service.hooks

    @property
    def enabled_plugins(self) -> tuple[str, ...]:
        """The plugins enabled through their entry points, in the order they were enabled
        (``paper`` first when the harness added it)."""
        return tuple(self.service.plugins.objects)

    def get_plugin(self, name: str) -> Any:
        """The plugin object registered as ``name`` (enabled, or registered by the test);
        its validated settings are usually its ``settings`` attribute."""
        plugin = self.pm.get_plugin(name)
        if plugin is None:
            raise KeyError(f"no plugin {name!r} (registered: {', '.join(self.pm_names())})")
        return plugin

    def pm_names(self) -> list[str]:
        return [name for name, _ in self.pm.list_name_plugin()]

    # -- time ----------------------------------------------------------------------------------

    @property
    def now(self) -> datetime:
        """The engine's current time."""
        return self.clock()

    def set_time(self, moment: datetime | str) -> datetime:
        """Freeze the engine's clock at ``moment`` (aware ``datetime`` or ISO 8601 text)."""
        return self.clock.set(moment)

    def advance_time(
        self,
        delta: timedelta | None = None,
        *,
        days: float = 0,
        hours: float = 0,
        minutes: float = 0,
        seconds: float = 0,
    ) -> datetime:
        """Move the engine's clock on (``advance_time(minutes=5)``); returns the new time."""
        step = delta or timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)
        return self.clock.advance(step)

    # -- plugins -------------------------------------------------------------------------------

    @property
    def plugins(self) -> PluginRegistrar:
        """Registers test plugins on this engine (unregistered by :meth:`close`)."""
        self._started()
        assert self._registrar is not None
        return self._registrar

    def register(
        self, plugin: object, name: str | None = None, *, settings: Mapping[str, Any] | None = None
    ) -> Any:
        """Register a plugin object (or class, instantiated with ``settings``) with the
        engine; it is asked before the built-in defaults. Returns the registered object."""
        return self.plugins(plugin, name, settings=settings)

    def unregister(self, name: str) -> None:
        self.plugins.unregister(name)

    @contextmanager
    def plugin(
        self, plugin: object, name: str | None = None, *, settings: Mapping[str, Any] | None = None
    ) -> Iterator[Any]:
        """``with harness.plugin(MyRisk()):`` — registered for the block only."""
        with self.plugins.registered(plugin, name, settings=settings) as obj:
            yield obj

    # -- signals -------------------------------------------------------------------------------

    async def run(self, signal: SignalInput | None = None, /, **fields: Any) -> Outcome:
        """Run one signal through the whole pipeline and return its outcome.

        ``signal`` is a JSON object (``{"symbol": "BTCUSDT", "side": "buy", "qty": "0.01"}``),
        its JSON text, or a :class:`~om_plugins.Signal`; keyword ``fields`` are laid over it
        (``await harness.run(symbol="BTCUSDT", side="buy", qty="0.01")`` works too). A
        missing ``signal_id`` is generated. An invalid signal gives status ``invalid``.
        """
        payload = self._payload(signal, fields)
        return await self._acall(lambda: self._process(payload))

    def run_sync(self, signal: SignalInput | None = None, /, **fields: Any) -> Outcome:
        """:meth:`run` for synchronous tests."""
        payload = self._payload(signal, fields)
        return self._call(lambda: self._process(payload))

    async def outcome(self, signal_id: str) -> Outcome | None:
        """The recorded outcome of ``signal_id`` (``None`` if the engine never saw it)."""
        return await self._acall(lambda: read_outcome(self.service.sessions, signal_id))

    @staticmethod
    def _payload(signal: SignalInput | None, fields: Mapping[str, Any]) -> Any:
        if isinstance(signal, Signal):
            data: Any = signal_payload(signal)
        elif isinstance(signal, bytes | str):
            try:
                data = decode_json(signal.encode("utf-8") if isinstance(signal, str) else signal)
            except InvalidSignal as exc:
                return exc
        else:
            data = dict(signal or {})
        if isinstance(data, dict):
            data = {**data, **fields}
            data.setdefault("signal_id", f"harness-{next(_run_ids)}")
        return data

    async def _process(self, payload: Any) -> Outcome:
        if isinstance(payload, InvalidSignal):
            return invalid_outcome(None, payload.problems)
        try:
            signal = parse_signal(payload)
        except InvalidSignal as exc:
            return invalid_outcome(exc.signal_id or read_signal_id(payload), exc.problems)
        result = await self.service.processor.process(signal, payload)
        if result.conflict:
            return conflict_outcome(signal.signal_id, result.reasons)
        outcome = await read_outcome(
            self.service.sessions, signal.signal_id, duplicate=result.duplicate
        )
        assert outcome is not None
        return outcome

    def wait_until(
        self, condition: Callable[[], object], *, timeout: float | None = None, what: str = ""
    ) -> None:
        """Wait until ``condition()`` is true, for what the engine does after a call returned
        (events reach observers a moment later); fails after ``timeout`` seconds (default:
        the harness's)."""
        limit = self.timeout if timeout is None else timeout
        deadline = time.monotonic() + limit
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {limit}s: {what or condition}")
            time.sleep(0.005)

    async def wait_until_async(self, condition: Callable[[], object], *, what: str = "") -> None:
        """:meth:`wait_until` for ``async`` tests (within the harness's timeout)."""
        deadline = time.monotonic() + self.timeout
        while not condition():
            if time.monotonic() > deadline:
                raise AssertionError(f"not true within {self.timeout}s: {what or condition}")
            await asyncio.sleep(0.005)

    # -- market, account and state -----------------------------------------------------------

    async def set_price(self, symbol: str, price: Number) -> None:
        """Move the paper price of ``symbol`` (resting limit orders it reaches fill)."""
        await self._acall(lambda: self.paper.set_price(symbol.upper(), _dec(price)))

    def set_price_sync(self, symbol: str, price: Number) -> None:
        self._call(lambda: self.paper.set_price(symbol.upper(), _dec(price)))

    async def set_position(self, symbol: str, size: Number, **fields: Any) -> None:
        """Make the engine (and the paper account) hold a position.

        ``size`` is signed (> 0 long). Keywords: ``avg_entry_price`` (default: the current
        paper price), ``realized_pnl``, ``fees_paid`` (the position's cumulative figures; what
        they add since the last call counts in the current trading day, ``context.today``),
        ``mark_price``, ``category`` (``linear``), ``position_idx`` (0).
        """
        await self._acall(lambda: self._set_position(symbol, size, **fields))

    def set_position_sync(self, symbol: str, size: Number, **fields: Any) -> None:
        self._call(lambda: self._set_position(symbol, size, **fields))

    async def set_balance(self, amount: Number) -> None:
        """Set the paper account's wallet balance (USDT). The available balance the hooks see
        is this less the margin of positions and resting orders on the paper account."""
        await self._acall(lambda: self._set_balance(amount))

    def set_balance_sync(self, amount: Number) -> None:
        self._call(lambda: self._set_balance(amount))

    async def set_open_order(
        self, symbol: str, side: Side | str, qty: Number, **fields: Any
    ) -> str:
        """Record an open order in the engine, as if placed earlier; returns its client id.

        Keywords: ``price`` (a limit price; default: market), ``filled_qty`` (0),
        ``reduce_only`` (false), ``category`` (``linear``), ``client_order_id`` (a new
        one), ``created_at`` (now: it counts in the last minute's orders). Decision hooks
        see it in ``context.open_orders``; the paper exchange does not hold it, so it never
        fills.
        """
        return await self._acall(lambda: self._set_open_order(symbol, side, qty, **fields))

    def set_open_order_sync(self, symbol: str, side: Side | str, qty: Number, **fields: Any) -> str:
        return self._call(lambda: self._set_open_order(symbol, side, qty, **fields))

    async def set_trading_state(
        self, state: TradingState | str, reason: str = "set by a test"
    ) -> None:
        """``active``, ``reducing`` or ``halted``, as an operator would set it."""
        await self._acall(lambda: self._set_trading_state(state, reason))

    def set_trading_state_sync(
        self, state: TradingState | str, reason: str = "set by a test"
    ) -> None:
        self._call(lambda: self._set_trading_state(state, reason))

    async def _set_position(
        self,
        symbol: str,
        size: Number,
        *,
        avg_entry_price: Number | None = None,
        realized_pnl: Number = "0",
        fees_paid: Number = "0",
        mark_price: Number | None = None,
        category: Category | str = Category.LINEAR,
        position_idx: int = 0,
    ) -> None:
        symbol = symbol.upper()
        signed = _dec(size)
        paper = self.paper
        price = await paper.get_reference_price(Category(category), symbol)
        entry = _dec(avg_entry_price) if avg_entry_price is not None else price
        async with self.service.sessions() as session, session.begin():
            row = (
                await session.exec(
                    select(PositionRow).where(
                        col(PositionRow.category) == Category(category).value,
                        col(PositionRow.symbol) == symbol,
                        col(PositionRow.position_idx) == position_idx,
                    )
                )
            ).one_or_none()
            if row is None:
                row = PositionRow(
                    category=Category(category).value, symbol=symbol, position_idx=position_idx
                )
                session.add(row)
            row.size = signed
            row.avg_entry_price = entry if signed else Decimal(0)
            row.realized_pnl = _dec(realized_pnl)
            row.fees_paid = _dec(fees_paid)
            row.mark_price = _dec(mark_price) if mark_price is not None else price
            row.updated_at = utcnow()
            await session.flush()
            assert row.id is not None
            # As the engine records every change of a position: the trading day's PnL is
            # the difference to the last snapshot before the day began.
            session.add(
                PositionSnapshot(
                    position_id=row.id,
                    category=row.category,
                    symbol=symbol,
                    position_idx=position_idx,
                    size=row.size,
                    avg_entry_price=row.avg_entry_price,
                    realized_pnl=row.realized_pnl,
                    fees_paid=row.fees_paid,
                    mark_price=row.mark_price,
                    reason="sync",
                    created_at=row.updated_at,
                )
            )
        # Keep the simulated account in step, so reduce-only orders and margin checks on the
        # paper exchange see the same position the engine does.
        paper.set_position(symbol, signed, entry)

    async def _set_balance(self, amount: Number) -> None:
        self.paper.set_wallet_balance(_dec(amount))

    async def _set_open_order(
        self,
        symbol: str,
        side: Side | str,
        qty: Number,
        *,
        price: Number | None = None,
        filled_qty: Number = "0",
        reduce_only: bool = False,
        category: Category | str = Category.LINEAR,
        client_order_id: str | None = None,
        created_at: datetime | None = None,
    ) -> str:
        filled = _dec(filled_qty)
        client_id = client_order_id or str(uuid.uuid4())
        when = created_at or utcnow()
        async with self.service.sessions() as session, session.begin():
            session.add(
                OrderRow(
                    client_order_id=client_id,
                    exchange_order_id=f"harness-{client_id}",
                    exchange=self.service.settings.exchange,
                    category=Category(category).value,
                    symbol=symbol.upper(),
                    side=Side(side).value,
                    order_type="limit" if price is not None else "market",
                    qty=_dec(qty),
                    price=_dec(price) if price is not None else None,
                    reduce_only=reduce_only,
                    status=(OrderStatus.PARTIALLY_FILLED if filled else OrderStatus.NEW).value,
                    filled_qty=filled,
                    created_at=when,
                    updated_at=when,
                )
            )
        return client_id

    async def _set_trading_state(self, state: TradingState | str, reason: str) -> None:
        value = TradingState(state)
        async with self.service.sessions() as session, session.begin():
            row = await session.get(TradingStateRow, 1)
            if row is None:
                session.add(TradingStateRow(id=1, state=value.value, reason=reason))
            else:
                row.state = value.value
                row.reason = reason
                row.updated_at = utcnow()

    # -- internals -------------------------------------------------------------------------

    def _started(self) -> Sandbox:
        if self._sandbox is None:
            raise RuntimeError("the harness is not started: use start() or `with`")
        return self._sandbox

    def _engine(self) -> _EngineLoop:
        if self._loop is None:
            raise RuntimeError("the harness is not started: use start() or `with`")
        return self._loop

    def _call(self, make: Callable[[], Awaitable[T]]) -> T:
        return self._engine().call(make, self.timeout)

    async def _acall(self, make: Callable[[], Awaitable[T]]) -> T:
        return await self._engine().acall(make, self.timeout)
