"""An in-process Order Manager for plugin tests: :class:`EngineHarness`.

It is the real engine — ``SignalProcessor`` inside a real ``Service`` — on a temporary SQLite
file, the in-process bus and the paper exchange with its random walk off, with the built-in
plugins (or the ones you name) loaded through their entry points, plus any plugin object a
test registers. No broker, database or exchange needs to be set up.

The engine runs on its own event loop in a background thread, so the harness works the
same from synchronous tests (``harness.run_sync(...)``) and from ``async`` tests under any
event loop (``await harness.run(...)``), with or without pytest-asyncio.

What it does not do: apply the exchange's order updates back. Orders it placed stay
``submitted`` (and count as open orders for later signals in the same test), and positions
change only through :meth:`EngineHarness.set_position`.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import threading
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from types import TracebackType
from typing import Any, Self, TypeVar

import pluggy
from pydantic import ValidationError
from sqlmodel import col, select

from om_core.config import ConfigError, Settings, format_validation_error
from om_core.db.models import Position as PositionRow
from om_core.db.models import TradingStateRow
from om_core.db.types import utcnow
from om_core.plugins import PluginHooks
from om_core.service import Service
from om_core.signals.contract import InvalidSignal, decode_json, parse_signal, read_signal_id
from om_core.tools.outcomes import Outcome, invalid_outcome, read_outcome
from om_core.tools.sandbox import Sandbox, start_sandbox
from om_plugins.testing.builders import Number, _dec, signal_payload
from om_plugins.testing.registry import PluginRegistrar
from om_plugins.types import Category, Signal, TradingState
from plugins_builtin.paper.exchange import PaperExchange
from plugins_builtin.paper.ledger import PaperPosition

__all__ = ["EngineHarness", "SignalInput"]

T = TypeVar("T")

#: What :meth:`EngineHarness.run` accepts: a signal JSON object (a mapping), its encoded
#: JSON (``bytes``/``str``), or a :class:`~om_plugins.Signal`.
SignalInput = Mapping[str, Any] | bytes | str | Signal

# Alembic keeps the running migration in module globals: harnesses start one at a time.
_START_LOCK = threading.Lock()
_run_ids = itertools.count(1)


def _isolated_settings(env: Mapping[str, str]) -> Settings:
    """Service settings from ``env`` alone: the process environment is never read."""
    values: dict[str, Any] = {key[3:].lower(): value for key, value in env.items()}
    try:
        # An env prefix nothing uses: pydantic-settings reads os.environ even through
        # model_validate, which load_settings(env=...) relies on.
        return Settings(_env_prefix="OM_HARNESS_READS_NO_ENVIRONMENT_", **values)
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc)) from exc


class _EngineLoop:
    """An event loop running in a daemon thread, and ways to call into it."""

    def __init__(self) -> None:
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
        ``[plugins.<name>]`` tables, e.g. ``{"risk": {"max_order_notional": "5000"}}``.
    :param env: extra variables: ``OM_PLUGIN_<NAME>_<FIELD>`` for plugin settings and
        ``OM_*`` service settings (e.g. ``OM_MAX_SIGNAL_AGE_SECONDS``). The process
        environment is *not* read, so a developer's shell cannot change a test.
    :param prices: starting paper prices by symbol (default BTCUSDT 60000, ETHUSDT 3000,
        SOLUSDT 150).
    :param balance: the paper account's starting wallet balance in USDT (default 100 000).
    :param timeout: seconds any one call may take before it fails.

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
        self._loop: _EngineLoop | None = None
        self._sandbox: Sandbox | None = None
        self._registrar: PluginRegistrar | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Self:
        """Start the engine (a fraction of a second); returns the harness."""
        if self._loop is not None:
            raise RuntimeError("the harness is already started")
        service_env = {
            k: v
            for k, v in self._env.items()
            if k.startswith("OM_") and not k.startswith("OM_PLUGIN_")
        }
        base = _isolated_settings(service_env)
        base.plugin_config = self._tables
        plugin_env = {k: v for k, v in self._env.items() if k.startswith("OM_PLUGIN_")}
        loop = _EngineLoop()
        try:
            with _START_LOCK:
                self._sandbox = loop.call(
                    lambda: start_sandbox(base, plugin_env=plugin_env, plugins=self._plugins),
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
        outcome = await read_outcome(
            self.service.sessions, signal.signal_id, duplicate=result.duplicate
        )
        assert outcome is not None
        return outcome

    # -- market, account and state -----------------------------------------------------------

    async def set_price(self, symbol: str, price: Number) -> None:
        """Move the paper price of ``symbol`` (resting limit orders it reaches fill)."""
        await self._acall(lambda: self.paper.set_price(symbol.upper(), _dec(price)))

    def set_price_sync(self, symbol: str, price: Number) -> None:
        self._call(lambda: self.paper.set_price(symbol.upper(), _dec(price)))

    async def set_position(self, symbol: str, size: Number, **fields: Any) -> None:
        """Make the engine (and the paper account) hold a position.

        ``size`` is signed (> 0 long). Keywords: ``avg_entry_price`` (default: the current
        paper price), ``realized_pnl``, ``fees_paid``, ``mark_price``, ``category``
        (``linear``), ``position_idx`` (0).
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
        # Keep the simulated account in step, so reduce-only orders and margin checks on the
        # paper exchange see the same position the engine does.
        paper._ledger.positions[symbol] = PaperPosition(size=signed, cost=abs(signed) * entry)

    async def _set_balance(self, amount: Number) -> None:
        self.paper._ledger.wallet_balance = _dec(amount)

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
