"""Discover plugins (stevedore, entry-point group ``order_manager.plugins``) and register the
enabled ones with pluggy.

An enabled plugin that cannot be imported, is missing, targets another SDK version, has
invalid settings, or implements a hook with a wrong signature stops startup with an error
naming the plugin: trading without the risk checks an operator enabled is worse than not
trading at all.
"""

from __future__ import annotations

import importlib.metadata
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy
from stevedore import NamedExtensionManager

import om_plugins
from om_core.plugins.errors import PluginLoadError
from om_core.plugins.settings import build_plugin_settings
from om_core.plugins.versions import version_matches
from om_plugins import hookspecs

__all__ = [
    "ENTRY_POINT_GROUP",
    "DiscoveredPlugin",
    "PluginLoadError",
    "discover",
    "load_plugins",
    "new_plugin_manager",
]

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "order_manager.plugins"


@dataclass(frozen=True, slots=True)
class DiscoveredPlugin:
    name: str
    target: str
    distribution: str
    version: str


@dataclass(slots=True)
class LoadedPlugins:
    pm: pluggy.PluginManager
    #: Plugin name → the registered object, in the order they were enabled.
    objects: dict[str, object] = field(default_factory=dict)
    #: Plugin name → its validated settings (a pydantic model) when it declares some.
    settings: dict[str, Any] = field(default_factory=dict)


def discover() -> list[DiscoveredPlugin]:
    """Every installed plugin, without importing any of them."""
    found: dict[str, DiscoveredPlugin] = {}
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        dist = ep.dist
        found.setdefault(
            ep.name,
            DiscoveredPlugin(
                name=ep.name,
                target=ep.value,
                distribution=dist.name if dist is not None else "?",
                version=dist.version if dist is not None else "?",
            ),
        )
    return sorted(found.values(), key=lambda p: p.name)


def new_plugin_manager() -> pluggy.PluginManager:
    pm = pluggy.PluginManager(hookspecs.PROJECT_NAME)
    pm.add_hookspecs(hookspecs)
    return pm


def _raise_load_failure(_manager: Any, ep: Any, err: BaseException) -> None:
    raise PluginLoadError(ep.name, f"failed to import {ep.value}: {type(err).__name__}: {err}")


def _raise_missing(names: Any) -> None:
    available = ", ".join(p.name for p in discover()) or "none"
    missing = ", ".join(sorted(names))
    raise PluginLoadError(missing, f"is enabled but not installed (installed: {available})")


def instantiate(
    name: str, target: Any, plugin_config: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[object, Any]:
    """Turn an entry point's target into the object pluggy registers, with its settings."""
    _check_api_version(name, target)
    settings_model = getattr(target, "settings_model", None)
    settings = None
    if settings_model is not None:
        settings = build_plugin_settings(name, target, settings_model, plugin_config, env)
    if isinstance(target, type):
        try:
            obj = target(settings=settings) if settings_model is not None else target()
        except Exception as exc:
            raise PluginLoadError(name, f"failed to start: {type(exc).__name__}: {exc}") from exc
        return obj, settings
    return target, settings


def _check_api_version(name: str, target: Any) -> None:
    wanted = getattr(target, "om_api_version", None)
    if wanted is None:
        module = getattr(target, "__module__", None)
        if isinstance(module, str):
            import sys

            wanted = getattr(sys.modules.get(module), "om_api_version", None)
    if wanted is None:
        return
    try:
        matches = version_matches(om_plugins.__api_version__, str(wanted))
    except ValueError as exc:
        raise PluginLoadError(name, f"declares an unreadable om_api_version: {exc}") from exc
    if not matches:
        hint = ""
        if version_matches("1.0.0", str(wanted)):
            # 2.0 changed only the exchange interface: decision-hook plugins still work.
            hint = (
                "; 2.0 changed only the exchange adapter interface, so a plugin with decision "
                "hooks only can declare om_api_version = \">=1,<3\" (docs/plugins.md, "
                "'Changes in 2.0')"
            )
        raise PluginLoadError(
            name,
            f"requires plugin API {wanted}, this Order Manager provides "
            f"{om_plugins.__api_version__}{hint}",
        )


def register(pm: pluggy.PluginManager, name: str, obj: object) -> None:
    """Register ``obj`` under ``name``, turning pluggy's validation errors into ours."""
    try:
        pm.register(obj, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginLoadError(name, str(exc)) from exc
    unknown = [
        hook
        for hook in _implemented_hooks(pm, obj)
        if hook.startswith("om_") and not hasattr(hookspecs, hook)
    ]
    if unknown:
        pm.unregister(obj)
        raise PluginLoadError(
            name, f"implements unknown hook(s) {', '.join(unknown)} (typo, or a newer SDK?)"
        )


def _implemented_hooks(pm: pluggy.PluginManager, obj: object) -> list[str]:
    names = []
    for attr in dir(obj):
        if attr.startswith("_"):
            continue
        try:
            method = getattr(obj, attr)
        except Exception:  # noqa: S112 - a property may raise; it is not a hook either way
            continue
        if pm.parse_hookimpl_opts(obj, attr) is not None and callable(method):
            names.append(attr)
    return names


def load_plugins(
    names: Sequence[str],
    plugin_config: Mapping[str, Mapping[str, Any]] | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedPlugins:
    """Load and register the plugins in ``names`` (in that order) from entry points."""
    import os

    environ = os.environ if env is None else env
    pm = new_plugin_manager()
    loaded = LoadedPlugins(pm=pm)
    if not names:
        return loaded
    # stevedore memoizes entry points per namespace for the life of the process; discovery
    # must see what is installed now (``om plugins list`` after a pip install, tests).
    NamedExtensionManager.ENTRY_POINT_CACHE.pop(ENTRY_POINT_GROUP, None)
    manager = NamedExtensionManager(
        ENTRY_POINT_GROUP,
        names=list(names),
        invoke_on_load=False,
        name_order=True,
        on_load_failure_callback=_raise_load_failure,
        on_missing_entrypoints_callback=_raise_missing,
    )
    for ext in manager.extensions:
        obj, settings = instantiate(
            ext.name, ext.plugin, (plugin_config or {}).get(ext.name, {}), environ
        )
        register(pm, ext.name, obj)
        loaded.objects[ext.name] = obj
        if settings is not None:
            loaded.settings[ext.name] = settings
    return loaded


def hooks_of(pm: pluggy.PluginManager, name: str) -> list[str]:
    """Hook names implemented by the registered plugin ``name``."""
    plugin = pm.get_plugin(name)
    if plugin is None:
        return []
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
