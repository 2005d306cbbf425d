"""Registering plugin objects (or classes) on a plugin manager the way the engine does."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import pluggy

from om_core.plugins import PluginHooks, register
from om_core.plugins.loader import check_api_version, instantiate

__all__ = ["PluginRegistrar", "plugin_name"]


def plugin_name(plugin: object) -> str:
    """The default name of a test plugin: its class name in snake_case (``VetoPlugin`` →
    ``veto_plugin``), or a module's last dotted component."""
    explicit = getattr(plugin, "plugin_name", None)
    if isinstance(explicit, str) and explicit:
        return explicit
    if isinstance(plugin, type):
        raw = plugin.__name__
    elif hasattr(plugin, "__spec__") and hasattr(plugin, "__name__"):
        raw = str(plugin.__name__).rsplit(".", 1)[-1]
    else:
        raw = type(plugin).__name__
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", raw).lower()


def prepare(plugin: object, name: str, settings: Mapping[str, Any] | None) -> object:
    """The object to register: a class is instantiated with its settings validated by its
    ``settings_model`` (as the engine does); an object is used as it is."""
    if isinstance(plugin, type):
        if settings and getattr(plugin, "settings_model", None) is None:
            raise TypeError(f"{plugin.__name__} declares no settings_model; it takes no settings")
        obj, _ = instantiate(name, plugin, settings or {}, {})
        return obj
    if settings:
        raise TypeError("settings can only be given with a plugin class, not an instance")
    check_api_version(name, plugin)
    return plugin


class PluginRegistrar:
    """Registers plugins on ``pm`` and remembers them, to unregister them all afterwards.

    Call it: ``register_plugin(MyRisk(), name="my_risk")`` returns the registered object.
    A class is instantiated, with ``settings=`` validated by its ``settings_model``.
    Registration validates like the engine does: no hook at all, an unknown ``om_*`` hook, a
    wrong hook signature or an unsupported ``om_api_version`` raises
    :class:`~om_plugins.PluginError` naming the plugin.
    """

    def __init__(self, pm: pluggy.PluginManager, hooks: PluginHooks | None = None) -> None:
        self.pm = pm
        #: The engine's typed facade over ``pm``: ``check_signal``, ``select_order_type``,
        #: ``calculate_quantity``, ``check_order`` — fail-closed and attributed, as in the
        #: engine.
        self.hooks = hooks if hooks is not None else PluginHooks(pm)
        self._names: list[str] = []

    def __call__(
        self, plugin: object, name: str | None = None, *, settings: Mapping[str, Any] | None = None
    ) -> Any:
        name = name or plugin_name(plugin)
        obj = prepare(plugin, name, settings)
        register(self.pm, name, obj)
        self._names.append(name)
        return obj

    def unregister(self, name: str) -> None:
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        if name in self._names:
            self._names.remove(name)

    def unregister_all(self) -> None:
        while self._names:
            self.unregister(self._names[-1])

    @contextmanager
    def registered(
        self, plugin: object, name: str | None = None, *, settings: Mapping[str, Any] | None = None
    ) -> Iterator[Any]:
        """Registered for the ``with`` block only."""
        name = name or plugin_name(plugin)
        obj = self(plugin, name, settings=settings)
        try:
            yield obj
        finally:
            self.unregister(name)
