"""A typed facade over ``pm.hook``: the engine, API and CLI call these methods, never pluggy.

Vote hooks (risk checks) are called implementation by implementation so every reason is
attributed to the plugin that gave it, and so a plugin that raises *rejects* the signal
(fail closed) instead of silently letting it through.
"""

from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Callable, Iterable, Mapping
from typing import Any

import pluggy

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

__all__ = ["PLUGIN_ERROR", "PluginHooks"]

log = logging.getLogger("om_core.plugins")

#: Rejection code used when a plugin raised instead of deciding.
PLUGIN_ERROR = "PLUGIN_ERROR"


class PluginHooks:
    def __init__(self, pm: pluggy.PluginManager, *, trace: bool = False) -> None:
        self.pm = pm
        self._undo_tracing: Callable[[], None] | None = None
        self._tracing = False
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
        for result in self.pm.hook.om_startup(settings=settings):
            if inspect.isawaitable(result):
                await result

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
        decision: OrderTypeDecision | Rejection = self._first(
            "om_select_order_type", (OrderTypeDecision,), signal=signal, context=context
        )
        return decision

    def calculate_quantity(
        self, signal: Signal, context: DecisionContext, order_type: OrderTypeDecision
    ) -> QuantityDecision | Rejection:
        decision: QuantityDecision | Rejection = self._first(
            "om_calculate_quantity",
            (QuantityDecision, Rejection),
            signal=signal,
            context=context,
            order_type=order_type,
        )
        return decision

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
        """Call one implementation; when tracing, log it with its result and duration."""
        if not self._tracing:
            return impl.function(**args)
        started = time.perf_counter()
        try:
            result = impl.function(**args)
        except Exception as exc:
            elapsed = (time.perf_counter() - started) * 1e3
            log.info("hook %s [%s] raised %r in %.3f ms", hook_name, impl.plugin_name, exc, elapsed)
            raise
        elapsed = (time.perf_counter() - started) * 1e3
        log.info(
            "hook %s [%s] args=%s → %s in %.3f ms",
            hook_name,
            impl.plugin_name,
            _summary(args),
            _short(result),
            elapsed,
        )
        return result

    def _vote(self, hook_name: str, **kwargs: Any) -> list[Rejection]:
        caller = getattr(self.pm.hook, hook_name)
        reasons: list[Rejection] = []
        # pluggy calls the last of get_hookimpls() first; keep that order.
        for impl in reversed(caller.get_hookimpls()):
            args = {k: kwargs[k] for k in impl.argnames}
            try:
                result = self._call(hook_name, impl, args)
                reasons.extend(_as_rejections(result, impl.plugin_name))
            except Exception as exc:
                log.exception("plugin %s raised in %s", impl.plugin_name, hook_name)
                reasons.append(
                    Rejection(
                        code=PLUGIN_ERROR,
                        message=f"{hook_name} raised {type(exc).__name__}: {exc}",
                        plugin=impl.plugin_name,
                    )
                )
        return reasons

    def _first(self, hook_name: str, accepted: tuple[type, ...], **kwargs: Any) -> Any:
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            args = {k: kwargs[k] for k in impl.argnames}
            try:
                result = self._call(hook_name, impl, args)
            except Exception as exc:
                log.exception("plugin %s raised in %s", impl.plugin_name, hook_name)
                return Rejection(
                    code=PLUGIN_ERROR,
                    message=f"{hook_name} raised {type(exc).__name__}: {exc}",
                    plugin=impl.plugin_name,
                )
            if result is None:
                continue
            if inspect.isawaitable(result):
                _close(result)
                return _bad_result(impl.plugin_name, hook_name, "returned an awaitable")
            if isinstance(result, Rejection):
                return _attributed(result, impl.plugin_name)
            if not isinstance(result, accepted):
                return _bad_result(impl.plugin_name, hook_name, f"returned {type(result).__name__}")
            return result
        return Rejection(
            code="NO_DECISION",
            message=f"no enabled plugin implements {hook_name} with a result",
            plugin="engine",
        )


def _as_rejections(result: Any, plugin: str) -> list[Rejection]:
    if result is None:
        return []
    if inspect.isawaitable(result):
        _close(result)
        return [_bad_result(plugin, "risk check", "returned an awaitable")]
    items: Iterable[Any] = [result] if isinstance(result, Rejection) else result
    out = []
    for item in items:
        if not isinstance(item, Rejection):
            out.append(_bad_result(plugin, "risk check", f"returned {type(item).__name__}"))
        else:
            out.append(_attributed(item, plugin))
    return out


def _attributed(rejection: Rejection, plugin: str) -> Rejection:
    if rejection.plugin == plugin:
        return rejection
    return Rejection(rejection.code, rejection.message, dict(rejection.details), plugin)


def _bad_result(plugin: str, hook_name: str, what: str) -> Rejection:
    return Rejection(
        code=PLUGIN_ERROR,
        message=f"{hook_name} {what}; decision hooks must be synchronous and return a decision",
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
