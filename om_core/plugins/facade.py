"""A typed facade over ``pm.hook``: the engine, API and CLI call these methods, never pluggy.

Vote hooks (risk checks) are called implementation by implementation so every reason is
attributed to the plugin that gave it, and so a plugin that raises *rejects* the signal
(fail closed) instead of silently letting it through. A result of the wrong shape is a
rejection too, naming plugin, hook, what was returned and what the hook may return.

Every decision-hook and observer call is timed: it lands in the
``om_plugin_hook_duration_seconds`` histogram, and one that takes longer than the budget
(``OM_HOOK_BUDGET_MS``) is logged as a WARNING naming plugin, hook and duration.
"""

from __future__ import annotations

import inspect
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import pluggy

from om_core import metrics
from om_core.plugins.errors import PluginLoadError
from om_plugins.exchange import ExchangeFactory, StreamGatewayFactory
from om_plugins.types import (
    DecisionContext,
    OrderTypeDecision,
    ProposedOrder,
    QuantityDecision,
    Rejection,
    Signal,
)

__all__ = ["DEFAULT_BUDGET_MS", "PLUGIN_ERROR", "Decided", "PluginHooks"]

log = logging.getLogger("om_core.plugins")

T = TypeVar("T")

#: Rejection code used when a plugin raised, or returned something it may not, instead of
#: deciding.
PLUGIN_ERROR = "PLUGIN_ERROR"

#: Default time budget of one hook call, in milliseconds (``OM_HOOK_BUDGET_MS``).
DEFAULT_BUDGET_MS = 20.0

#: Over-budget warnings of one plugin hook are logged at most this often (seconds); the
#: next one says how many calls were over budget in between.
_WARN_EVERY = 10.0

_VOTE_ACCEPTS = "a Rejection, a list of Rejection, or None"


@dataclass(frozen=True, slots=True)
class Decided(Generic[T]):
    """A first-result hook's decision and the plugin that made it."""

    value: T
    plugin: str


class PluginHooks:
    def __init__(
        self,
        pm: pluggy.PluginManager,
        *,
        trace: bool = False,
        budget_ms: float = DEFAULT_BUDGET_MS,
    ) -> None:
        self.pm = pm
        self._undo_tracing: Callable[[], None] | None = None
        self._tracing = False
        self._budget = budget_ms / 1e3
        self._budget_ms = budget_ms
        #: (plugin, hook) → (when last warned, over-budget calls since then)
        self._warned: dict[tuple[str, str], tuple[float, int]] = {}
        self._warn_lock = threading.Lock()
        if trace:
            self.enable_tracing()

    # -- tracing ---------------------------------------------------------------------------

    def enable_tracing(self) -> None:
        """Log every hook call with a summary of its arguments, its result and duration.

        pluggy's monitoring sees the hooks called through ``pm.hook``; decision hooks and
        ``om_order_event`` are called implementation by implementation (see the module
        docstring), so those calls are logged one per plugin by :meth:`_call`.
        """
        self._tracing = True
        if self._undo_tracing is not None:
            return
        started: dict[int, float] = {}

        def before(hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
            started[id(kwargs)] = time.perf_counter()
            log.info(
                "hook %s → %s args=%s",
                hook_name,
                [impl.plugin_name for impl in impls],
                _summary(kwargs),
            )

        def after(outcome: Any, hook_name: str, impls: Any, kwargs: Mapping[str, Any]) -> None:
            elapsed = (time.perf_counter() - started.pop(id(kwargs), time.perf_counter())) * 1e3
            exc = outcome.exception
            result = f"raised {exc!r}" if exc is not None else _short(outcome.get_result())
            log.info("hook %s ← %s in %.3f ms", hook_name, result, elapsed)

        self._undo_tracing = self.pm.add_hookcall_monitoring(before, after)

    # -- bootstrap ---------------------------------------------------------------------------

    def exchange_factories(self) -> dict[str, tuple[str, ExchangeFactory]]:
        """Exchange name → (plugin name, factory); a name registered twice is an error."""
        factories: dict[str, tuple[str, ExchangeFactory]] = {}
        for impl in reversed(self.pm.hook.om_register_exchanges.get_hookimpls()):

            def register(
                name: str, factory: ExchangeFactory, _plugin: str = impl.plugin_name
            ) -> None:
                if name in factories:
                    raise PluginLoadError(
                        _plugin,
                        f"registers exchange {name!r}, already registered by "
                        f"{factories[name][0]!r}",
                    )
                factories[name] = (_plugin, factory)

            impl.function(register=register)
        return factories

    def stream_gateway_factories(self) -> dict[str, tuple[str, StreamGatewayFactory]]:
        """Exchange name → (plugin name, gateway factory); a name registered twice is an
        error."""
        factories: dict[str, tuple[str, StreamGatewayFactory]] = {}
        for impl in reversed(self.pm.hook.om_register_stream_gateways.get_hookimpls()):

            def register(
                name: str, factory: StreamGatewayFactory, _plugin: str = impl.plugin_name
            ) -> None:
                if name in factories:
                    raise PluginLoadError(
                        _plugin,
                        f"registers a stream gateway for {name!r}, already registered by "
                        f"{factories[name][0]!r}",
                    )
                factories[name] = (_plugin, factory)

            impl.function(register=register)
        return factories

    async def startup(self, settings: Mapping[str, Any]) -> None:
        """Every plugin's ``om_startup``, awaited; one that fails stops startup naming it."""
        impls = list(reversed(self.pm.hook.om_startup.get_hookimpls()))
        if self._tracing:
            log.info(
                "hook om_startup → %s args=%s",
                [impl.plugin_name for impl in impls],
                _summary({"settings": settings}),
            )
        for impl in impls:
            args = {"settings": settings} if "settings" in impl.argnames else {}
            try:
                result = impl.function(**args)
                if inspect.isawaitable(result):
                    await result
            except Exception as exc:
                log.exception("plugin %s failed in om_startup", impl.plugin_name)
                raise PluginLoadError(
                    impl.plugin_name, f"om_startup failed: {type(exc).__name__}: {exc}"
                ) from exc

    async def shutdown(self) -> None:
        for impl in self.pm.hook.om_shutdown.get_hookimpls():
            try:
                result = impl.function()
                if inspect.isawaitable(result):
                    await result
            except Exception:
                log.exception("plugin %s failed during shutdown", impl.plugin_name)

    # -- order pipeline ------------------------------------------------------------------------

    def check_signal(self, signal: Signal, context: DecisionContext) -> list[Rejection]:
        return self._vote("om_check_signal", signal=signal, context=context)

    def check_order(
        self, order: ProposedOrder, signal: Signal, context: DecisionContext
    ) -> list[Rejection]:
        return self._vote("om_check_order", order=order, signal=signal, context=context)

    def select_order_type(
        self, signal: Signal, context: DecisionContext
    ) -> OrderTypeDecision | Rejection:
        decided = self.choose_order_type(signal, context)
        return decided.value if isinstance(decided, Decided) else decided

    def calculate_quantity(
        self, signal: Signal, context: DecisionContext, order_type: OrderTypeDecision
    ) -> QuantityDecision | Rejection:
        decided = self.choose_quantity(signal, context, order_type)
        return decided.value if isinstance(decided, Decided) else decided

    def choose_order_type(
        self, signal: Signal, context: DecisionContext
    ) -> Decided[OrderTypeDecision] | Rejection:
        """:meth:`select_order_type`, with the plugin that decided."""
        decided: Decided[OrderTypeDecision] | Rejection = self._first(
            "om_select_order_type", (OrderTypeDecision,), signal=signal, context=context
        )
        return decided

    def choose_quantity(
        self, signal: Signal, context: DecisionContext, order_type: OrderTypeDecision
    ) -> Decided[QuantityDecision] | Rejection:
        """:meth:`calculate_quantity`, with the plugin that decided."""
        decided: Decided[QuantityDecision] | Rejection = self._first(
            "om_calculate_quantity",
            (QuantityDecision, Rejection),
            signal=signal,
            context=context,
            order_type=order_type,
        )
        return decided

    # -- reporting -------------------------------------------------------------------------

    @property
    def observes_order_events(self) -> bool:
        """Whether any plugin implements ``om_order_event`` (so events need decoding)."""
        return bool(self.pm.hook.om_order_event.get_hookimpls())

    def order_event(self, event: Mapping[str, Any]) -> None:
        for impl in reversed(self.pm.hook.om_order_event.get_hookimpls()):
            try:
                self._call("om_order_event", impl, {"event": event})
            except Exception:
                log.exception("plugin %s failed observing an event", impl.plugin_name)

    # -- internals -------------------------------------------------------------------------

    def _call(self, hook_name: str, impl: Any, args: Mapping[str, Any]) -> Any:
        """Call one implementation, timed against the budget; traced when tracing is on."""
        started = time.perf_counter()
        try:
            result = impl.function(**args)
        except Exception as exc:
            elapsed = time.perf_counter() - started
            self._timed(impl.plugin_name, hook_name, elapsed)
            if self._tracing:
                log.info(
                    "hook %s [%s] raised %r in %.3f ms",
                    hook_name,
                    impl.plugin_name,
                    exc,
                    elapsed * 1e3,
                )
            raise
        elapsed = time.perf_counter() - started
        self._timed(impl.plugin_name, hook_name, elapsed)
        if self._tracing:
            log.info(
                "hook %s [%s] args=%s → %s in %.3f ms",
                hook_name,
                impl.plugin_name,
                _summary(args),
                _short(result),
                elapsed * 1e3,
            )
        return result

    def _timed(self, plugin: str, hook_name: str, seconds: float) -> None:
        over = seconds > self._budget
        metrics.observe_hook(plugin, hook_name, seconds, over_budget=over)
        if not over:
            return
        now = time.monotonic()
        with self._warn_lock:
            last, suppressed = self._warned.get((plugin, hook_name), (None, 0))
            if last is not None and now - last < _WARN_EVERY:
                self._warned[(plugin, hook_name)] = (last, suppressed + 1)
                return
            self._warned[(plugin, hook_name)] = (now, 0)
        since = f" ({suppressed} more over budget since the last warning)" if suppressed else ""
        log.warning(
            "plugin %r hook %s took %.1f ms, over the %g ms budget (OM_HOOK_BUDGET_MS)%s; "
            "decision hooks must be quick and never wait for I/O",
            plugin,
            hook_name,
            seconds * 1e3,
            self._budget_ms,
            since,
        )

    def _vote(self, hook_name: str, **kwargs: Any) -> list[Rejection]:
        caller = getattr(self.pm.hook, hook_name)
        reasons: list[Rejection] = []
        # pluggy calls the last of get_hookimpls() first; keep that order.
        for impl in reversed(caller.get_hookimpls()):
            args = {k: kwargs[k] for k in impl.argnames}
            try:
                result = self._call(hook_name, impl, args)
            except Exception as exc:
                log.exception("plugin %s raised in %s", impl.plugin_name, hook_name)
                reasons.append(_raised(impl.plugin_name, hook_name, exc))
                continue
            reasons.extend(_as_rejections(result, impl.plugin_name, hook_name))
        return reasons

    def _first(self, hook_name: str, accepted: tuple[type, ...], **kwargs: Any) -> Any:
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            plugin = impl.plugin_name
            args = {k: kwargs[k] for k in impl.argnames}
            try:
                result = self._call(hook_name, impl, args)
            except Exception as exc:
                log.exception("plugin %s raised in %s", plugin, hook_name)
                return _raised(plugin, hook_name, exc)
            if result is None:
                continue
            if inspect.isawaitable(result):
                _close(result)
                return _async_hook(plugin, hook_name)
            if isinstance(result, Rejection):
                return _attributed(result, plugin)
            if not isinstance(result, accepted):
                expected = ", ".join(t.__name__ for t in accepted) + " or None"
                return _bad_result(plugin, hook_name, result, expected)
            return Decided(result, plugin)
        return Rejection(
            code="NO_DECISION",
            message=f"no enabled plugin implements {hook_name} with a result",
            plugin="engine",
        )


def _as_rejections(result: Any, plugin: str, hook_name: str) -> list[Rejection]:
    """A vote hook's answer as rejections; a wrong shape becomes a rejection naming it."""
    if result is None:
        return []
    if isinstance(result, Rejection):
        return [_attributed(result, plugin)]
    if inspect.isawaitable(result):
        _close(result)
        return [_async_hook(plugin, hook_name)]
    if isinstance(result, str | bytes | Mapping) or not isinstance(result, Iterable):
        return [_bad_result(plugin, hook_name, result, _VOTE_ACCEPTS)]
    items = list(result)
    wrong = [item for item in items if not isinstance(item, Rejection)]
    if wrong:
        what = (
            f"a {type(result).__name__} holding {_short(wrong[0], 80)} ({type(wrong[0]).__name__})"
        )
        return [_bad_result(plugin, hook_name, result, _VOTE_ACCEPTS, what=what)]
    return [_attributed(item, plugin) for item in items]


def _attributed(rejection: Rejection, plugin: str) -> Rejection:
    if rejection.plugin == plugin:
        return rejection
    return Rejection(rejection.code, rejection.message, dict(rejection.details), plugin)


def _raised(plugin: str, hook_name: str, exc: Exception) -> Rejection:
    return Rejection(
        code=PLUGIN_ERROR,
        message=f"{hook_name} raised {type(exc).__name__}: {exc}",
        details={"hook": hook_name, "exception": type(exc).__name__},
        plugin=plugin,
    )


def _bad_result(
    plugin: str, hook_name: str, result: Any, expected: str, *, what: str | None = None
) -> Rejection:
    returned = what or f"{_short(result, 80)} ({type(result).__name__})"
    message = f"{hook_name} returned {returned}; it may return {expected}"
    log.warning("plugin %s: %s", plugin, message)
    return Rejection(
        code=PLUGIN_ERROR,
        message=message,
        details={"hook": hook_name, "returned": type(result).__name__, "expected": expected},
        plugin=plugin,
    )


def _async_hook(plugin: str, hook_name: str) -> Rejection:
    message = (
        f"{hook_name} is async (it returned an awaitable): decision hooks must be synchronous "
        "— define it with def, not async def"
    )
    log.warning("plugin %s: %s", plugin, message)
    return Rejection(
        code=PLUGIN_ERROR,
        message=message,
        details={"hook": hook_name, "returned": "awaitable"},
        plugin=plugin,
    )


def _close(awaitable: Any) -> None:
    close = getattr(awaitable, "close", None)
    if callable(close):
        close()


def _short(value: Any, limit: int = 200) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _summary(kwargs: Mapping[str, Any]) -> str:
    parts = []
    for key, value in kwargs.items():
        ident = getattr(value, "signal_id", None) or getattr(value, "symbol", None)
        parts.append(
            f"{key}={type(value).__name__}({ident})" if ident else f"{key}={_short(value, 60)}"
        )
    return ", ".join(parts)
