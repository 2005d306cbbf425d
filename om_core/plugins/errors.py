from __future__ import annotations

from om_plugins.errors import PluginError

__all__ = ["PluginLoadError"]


class PluginLoadError(PluginError):
    """Startup must stop: ``plugin`` could not be loaded for ``reason``.

    ``problems`` holds one readable line per problem (e.g. per invalid setting).
    """

    def __init__(self, plugin: str, reason: str, problems: list[str] | None = None) -> None:
        self.plugin = plugin
        self.reason = reason
        self.problems = problems or [f"plugin {plugin!r}: {reason}"]
        super().__init__("\n".join(self.problems))
