from __future__ import annotations

from collections.abc import Iterable

from om_plugins.errors import PluginError

__all__ = ["PluginLoadError"]


class PluginLoadError(PluginError):
    """Startup must stop: ``plugin`` could not be loaded for ``reason``.

    ``problems`` holds one readable line per problem (e.g. per invalid setting); ``plugins``
    every plugin named by them, ``plugin`` the first.
    """

    def __init__(
        self,
        plugin: str,
        reason: str,
        problems: list[str] | None = None,
        *,
        plugins: Iterable[str] = (),
    ) -> None:
        self.plugin = plugin
        self.reason = reason
        self.problems = problems or [f"plugin {plugin!r}: {reason}"]
        self.plugins = list(dict.fromkeys([plugin, *plugins]))
        super().__init__("\n".join(self.problems))

    @classmethod
    def combine(cls, errors: Iterable[PluginLoadError]) -> PluginLoadError:
        """One error reporting every problem of ``errors`` (which must not be empty)."""
        found = list(errors)
        problems = [line for err in found for line in err.problems]
        names = [name for err in found for name in err.plugins]
        reason = found[0].reason if len(found) == 1 else f"{len(problems)} problems"
        return cls(names[0], reason, problems, plugins=names)
