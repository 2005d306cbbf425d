"""The plugin framework: discovery and loading (stevedore), calling (pluggy facade)."""

from __future__ import annotations

from om_core.plugins.errors import PluginLoadError
from om_core.plugins.facade import PLUGIN_ERROR, PluginHooks
from om_core.plugins.loader import (
    ENTRY_POINT_GROUP,
    DiscoveredPlugin,
    LoadedPlugins,
    discover,
    hooks_of,
    load_plugins,
    new_plugin_manager,
    register,
)

__all__ = [
    "ENTRY_POINT_GROUP",
    "PLUGIN_ERROR",
    "DiscoveredPlugin",
    "LoadedPlugins",
    "PluginHooks",
    "PluginLoadError",
    "discover",
    "hooks_of",
    "load_plugins",
    "new_plugin_manager",
    "register",
]
