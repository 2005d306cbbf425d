"""Discover plugins (stevedore, entry-point group ``order_manager.plugins``) and register the
enabled ones with pluggy.

An enabled plugin that cannot be imported, is missing, targets another SDK version, has
invalid settings, implements no hook or a hook with a wrong signature stops startup with an
error naming the plugin: trading without the risk checks an operator enabled is worse than
not trading at all. Settings for a plugin that is not enabled, or not installed, are refused
too (a misspelled name would silently switch a limit off). Every problem of every plugin is
reported at once, one line each.
"""

from __future__ import annotations

import difflib
import importlib.metadata
import logging
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import pluggy
from stevedore import NamedExtensionManager

import om_plugins
from om_core.plugins.errors import PluginLoadError
from om_core.plugins.settings import (
    DEFAULT_ENV_PREFIX,
    build_plugin_settings,
    default_env_prefix,
    env_prefix_for,
)
from om_core.plugins.versions import version_matches
from om_core.suggest import closest, did_you_mean
from om_plugins import hookspecs

__all__ = [
    "ENTRY_POINT_GROUP",
    "DiscoveredPlugin",
    "PluginLoadError",
    "discover",
    "implemented_hooks",
    "import_plugin",
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


def instantiate(
    name: str, target: Any, plugin_config: Mapping[str, Any], env: Mapping[str, str]
) -> tuple[object, Any]:
    """Turn an entry point's target into the object pluggy registers, with its settings."""
    check_api_version(name, target)
    settings_model = getattr(target, "settings_model", None)
    settings = None
    if settings_model is not None:
        settings = build_plugin_settings(name, target, settings_model, plugin_config, env)
    elif plugin_config:
        raise PluginLoadError(
            name,
            f"takes no settings (it declares no settings_model), yet [plugin.{name}] sets "
            f"{', '.join(sorted(plugin_config))}",
        )
    if isinstance(target, type):
        try:
            obj = target(settings=settings) if settings_model is not None else target()
        except Exception as exc:
            raise PluginLoadError(name, f"failed to start: {type(exc).__name__}: {exc}") from exc
        return obj, settings
    return target, settings


def check_api_version(name: str, target: Any) -> None:
    """Refuse a plugin whose ``om_api_version`` (class or module) excludes this SDK."""
    wanted = getattr(target, "om_api_version", None)
    if wanted is None:
        owner = target if isinstance(target, type) else type(target)
        module = getattr(target, "__module__", None) or owner.__module__
        if isinstance(module, str):
            wanted = getattr(sys.modules.get(module), "om_api_version", None)
    if wanted is None:
        return
    try:
        matches = version_matches(om_plugins.__api_version__, str(wanted))
    except ValueError as exc:
        raise PluginLoadError(name, f"declares an unreadable om_api_version: {exc}") from exc
    if not matches:
        raise PluginLoadError(
            name,
            f"requires plugin API {wanted}, this Order Manager provides "
            f"{om_plugins.__api_version__} ({om_plugins.API_COMPATIBILITY})",
        )


def register(pm: pluggy.PluginManager, name: str, obj: object) -> None:
    """Register ``obj`` under ``name``, turning pluggy's validation errors into ours.

    A plugin must implement at least one hook, and only hooks the SDK declares.
    """
    try:
        pm.register(obj, name=name)
    except (pluggy.PluginValidationError, ValueError) as exc:
        raise PluginLoadError(name, str(exc)) from exc
    implemented = _implemented_hooks(pm, obj)
    unknown = [hook for hook in implemented if not hasattr(hookspecs, hook)]
    if unknown:
        pm.unregister(obj)
        hints = [
            f"{hook} (did you mean {match}?)" if (match := closest(hook, _hook_names())) else hook
            for hook in unknown
        ]
        raise PluginLoadError(
            name, f"implements unknown hook(s) {', '.join(hints)} (typo, or a newer SDK?)"
        )
    if not implemented:
        pm.unregister(obj)
        unmarked = [
            attr
            for attr in dir(obj)
            if attr in _hook_names() and callable(getattr(obj, attr, None))
        ]
        if unmarked:
            hint = (
                f"{', '.join(unmarked)} {'is' if len(unmarked) == 1 else 'are'} not marked "
                "@hookimpl (from om_plugins import hookimpl)"
            )
        else:
            hint = f"implement one of the hooks ({', '.join(_hook_names())}) with @hookimpl"
        raise PluginLoadError(name, f"implements no hooks: {hint}")


def _hook_names() -> list[str]:
    return sorted(
        name
        for name, value in vars(hookspecs).items()
        if callable(value) and hasattr(value, f"{hookspecs.PROJECT_NAME}_spec")
    )


def implemented_hooks(target: Any) -> list[str]:
    """The ``om_*`` hooks a plugin (class, instance or module) marks with ``@hookimpl``."""
    return sorted(_implemented_hooks(new_plugin_manager(), target))


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


def import_plugin(name: str) -> Any:
    """The target of the installed plugin ``name`` (imported), for introspection."""
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP, name=name):
        try:
            return ep.load()
        except Exception as exc:
            raise PluginLoadError(
                name, f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
            ) from exc
    installed = [p.name for p in discover()]
    raise PluginLoadError(
        name,
        f"is not installed{did_you_mean(name, installed)} "
        f"(installed: {', '.join(installed) or 'none'})",
    )


def _import_enabled(names: Sequence[str], errors: list[PluginLoadError]) -> dict[str, Any]:
    """Import the enabled plugins through stevedore; failures are collected, not raised."""
    if not names:
        return {}

    def failed(_manager: Any, ep: Any, err: BaseException) -> None:
        errors.append(
            PluginLoadError(ep.name, f"failed to import {ep.value}: {type(err).__name__}: {err}")
        )

    # stevedore memoizes entry points per namespace for the life of the process; discovery
    # must see what is installed now (``om plugins list`` after a pip install, tests).
    NamedExtensionManager.ENTRY_POINT_CACHE.pop(ENTRY_POINT_GROUP, None)
    manager = NamedExtensionManager(
        ENTRY_POINT_GROUP,
        names=list(names),
        invoke_on_load=False,
        name_order=True,
        on_load_failure_callback=failed,
        on_missing_entrypoints_callback=None,
    )
    return {ext.name: ext.plugin for ext in manager.extensions}


def _name_problems(
    names: Sequence[str], tables: Mapping[str, Any], installed: Sequence[str]
) -> list[PluginLoadError]:
    """Enabled plugins that are not installed; settings tables of plugins not enabled."""
    errors = []
    listing = ", ".join(installed) or "none"
    for name in names:
        if name not in installed:
            errors.append(
                PluginLoadError(
                    name,
                    f"is enabled but not installed{did_you_mean(name, installed)} "
                    f"(installed: {listing})",
                )
            )
    for table in tables:
        if table in names:
            continue
        if table in installed:
            reason = (
                f"[plugin.{table}] sets plugin {table!r}, which is not enabled: add it to "
                "plugins / OM_PLUGINS, or remove the table"
            )
        else:
            reason = (
                f"[plugin.{table}] sets plugin {table!r}, which is not installed"
                f"{did_you_mean(table, [*names, *installed])}"
            )
        errors.append(PluginLoadError(table, reason, [f"plugin {table!r}: {reason}"]))
    return errors


def _env_problems(
    environ: Mapping[str, str],
    names: Sequence[str],
    targets: Mapping[str, Any],
    installed: Sequence[str],
) -> list[PluginLoadError]:
    """``OM_*`` plugin variables that no enabled plugin reads."""
    from om_core.config import service_env_names

    prefixes = {name: env_prefix_for(name, targets.get(name)) for name in names}
    default_prefixes = {name: default_env_prefix(name) for name in installed}
    services = service_env_names()
    errors = []
    for key in sorted(environ):
        if not key.startswith("OM_") or key in services:
            continue
        if any(key.startswith(prefix) for prefix in prefixes.values()):
            continue
        owner = next(
            (name for name, prefix in default_prefixes.items() if key.startswith(prefix)), None
        )
        if owner is not None and owner in prefixes:
            reason = (
                f"{key} is not read: plugin {owner!r} takes its settings from "
                f"{prefixes[owner]}<FIELD>"
            )
        elif owner is not None:
            reason = (
                f"{key} sets plugin {owner!r}, which is not enabled: add it to OM_PLUGINS, "
                "or unset the variable"
            )
        elif key.startswith(DEFAULT_ENV_PREFIX):
            rest = key[len(DEFAULT_ENV_PREFIX) :]
            guess = _guess_owner(rest, [*names, *installed])
            hint = ""
            if guess is not None:
                hint = f"; did you mean {default_env_prefix(guess[0])}{guess[1]}?"
            reason = f"{key} names no installed plugin{hint} (enabled: {', '.join(names)})"
            owner = guess[0] if guess is not None else rest.split("_", 1)[0].lower()
        else:
            # OM_<NAME>_*: an installed plugin's name without PLUGIN_, or the custom prefix
            # (like the Bybit plugin's OM_BYBIT_) of one that is not enabled — only known
            # once a plugin is imported.
            owner = next(
                (
                    name
                    for name in installed
                    if key.startswith(f"OM_{name.upper().replace('-', '_')}_")
                ),
                None,
            )
            if owner is None:
                continue  # load_settings reports the other unknown OM_* variables
            if owner in prefixes:
                rest = key[len(f"OM_{owner.upper().replace('-', '_')}_") :]
                reason = (
                    f"{key} is not read: plugin {owner!r} takes its settings from "
                    f"{prefixes[owner]}<FIELD>; did you mean {prefixes[owner]}{rest}?"
                )
            else:
                reason = (
                    f"{key} looks like a setting of plugin {owner!r}, which is not enabled: "
                    "add it to OM_PLUGINS, or unset the variable"
                )
        errors.append(PluginLoadError(owner, reason, [f"plugin {owner!r}: {reason}"]))
    return errors


def _guess_owner(rest: str, candidates: Sequence[str]) -> tuple[str, str] | None:
    """The plugin an ``OM_PLUGIN_<rest>`` variable was probably meant for, and the part of
    ``rest`` after its name: ``QUANTRISK_MAX_QTY`` → (``quant_risk``, ``MAX_QTY``)."""
    parts = rest.split("_")
    best: tuple[float, str, str] | None = None
    for cut in range(1, len(parts)):
        head, tail = "_".join(parts[:cut]), "_".join(parts[cut:])
        for name in candidates:
            wanted = name.upper().replace("-", "_")
            ratio = difflib.SequenceMatcher(None, head, wanted).ratio()
            if ratio >= 0.75 and (best is None or ratio > best[0]):
                best = (ratio, name, tail)
    return (best[1], best[2]) if best is not None else None


def load_plugins(
    names: Sequence[str],
    plugin_config: Mapping[str, Mapping[str, Any]] | None = None,
    env: Mapping[str, str] | None = None,
) -> LoadedPlugins:
    """Load and register the plugins in ``names`` (in that order) from entry points.

    ``plugin_config`` holds the config file's ``[plugin.<name>]`` tables and ``env`` the
    variables (default: the process environment). Raises :class:`PluginLoadError` with
    every problem found, one line each.
    """
    environ = os.environ if env is None else env
    tables = plugin_config or {}
    names = list(dict.fromkeys(names))
    pm = new_plugin_manager()
    loaded = LoadedPlugins(pm=pm)
    installed = [p.name for p in discover()]
    errors = _name_problems(names, tables, installed)
    targets = _import_enabled([n for n in names if n in installed], errors)
    errors += _env_problems(environ, names, targets, installed)
    prefixes = {name: env_prefix_for(name, targets.get(name)) for name in names}
    for name in names:
        if name not in targets:
            continue
        # Another plugin's longer prefix (OM_PLUGIN_RISK_EXTRA_ next to OM_PLUGIN_RISK_) is
        # that plugin's, not settings of this one.
        own = prefixes[name]
        longer = tuple(
            p for n, p in prefixes.items() if n != name and p.startswith(own) and p != own
        )
        plugin_env = {k: v for k, v in environ.items() if not (longer and k.startswith(longer))}
        try:
            obj, settings = instantiate(name, targets[name], tables.get(name, {}), plugin_env)
            register(pm, name, obj)
        except PluginLoadError as exc:
            errors.append(exc)
            continue
        loaded.objects[name] = obj
        if settings is not None:
            loaded.settings[name] = settings
    if errors:
        raise PluginLoadError.combine(errors)
    return loaded


def hooks_of(pm: pluggy.PluginManager, name: str) -> list[str]:
    """Hook names implemented by the registered plugin ``name``."""
    plugin = pm.get_plugin(name)
    if plugin is None:
        return []
    return sorted(caller.name for caller in pm.get_hookcallers(plugin) or [])
