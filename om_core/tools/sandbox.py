"""A throwaway engine: the real :class:`~om_core.service.Service` on a temporary SQLite file,
the in-process bus and the paper exchange with its random walk off.

Nothing leaves the process and nothing outlives :meth:`Sandbox.stop`. Signals go through the
very pipeline production uses (``SignalProcessor.process``: risk, order type, sizing, order
risk, intent, exchange call). The service does not consume any queue: the caller feeds
signals in, and the paper exchange's order updates are not applied back, so positions only
change when the caller sets them.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from om_core.config import BUILTIN_PLUGINS, Settings
from om_core.plugins import load_plugins
from om_core.service import Service

__all__ = ["PAPER", "Sandbox", "expand_plugin_names", "start_sandbox"]

PAPER = "paper"


def expand_plugin_names(names: Iterable[str]) -> list[str]:
    """``OM_PLUGINS`` semantics: ``builtin`` expands to the built-ins, duplicates drop out."""
    out: list[str] = []
    for name in names:
        for item in BUILTIN_PLUGINS if name == "builtin" else (name,):
            if item and item not in out:
                out.append(item)
    return out


def _with_paper(names: Sequence[str]) -> list[str]:
    # The sandbox trades on the paper exchange whatever else is enabled.
    return list(names) if PAPER in names else [PAPER, *names]


@dataclass
class Sandbox:
    service: Service
    directory: Path

    @property
    def paper(self) -> Any:
        """The paper exchange adapter (typed loosely: the engine knows no plugin's classes)."""
        exchange = self.service.exchange
        if exchange.name != PAPER:
            raise TypeError(f"the sandbox runs on the paper exchange, not {exchange.name!r}")
        return exchange

    async def stop(self) -> None:
        try:
            await self.service.stop()
        finally:
            shutil.rmtree(self.directory, ignore_errors=True)


async def start_sandbox(
    base: Settings,
    *,
    plugin_env: Mapping[str, str],
    plugins: Sequence[str] | None = None,
) -> Sandbox:
    """Start a sandbox engine.

    :param base: settings to start from (plugin tables, signal age, tracing…); storage, bus,
        exchange and API are replaced by the sandbox's own.
    :param plugin_env: ``OM_PLUGIN_*`` variables for plugin settings (the sandbox adds
        ``OM_PLUGIN_PAPER_RANDOM_WALK=false``).
    :param plugins: plugin names to enable instead of ``base.plugins`` (``builtin`` works);
        ``paper`` is added when missing.
    """
    names = _with_paper(expand_plugin_names(base.plugins if plugins is None else plugins))
    directory = Path(tempfile.mkdtemp(prefix="om-sandbox-"))
    settings = base.model_copy(
        update={
            "database_url": f"sqlite+aiosqlite:///{directory / 'om.db'}",
            "broker_url": "memory://",
            "exchange": PAPER,
            "plugins": names,
            "db_auto_migrate": True,
            "api_enabled": False,
        }
    )
    env = {**plugin_env, "OM_PLUGIN_PAPER_RANDOM_WALK": "false"}
    try:
        loaded = load_plugins(names, settings.plugin_config, env)
        service = Service(settings, plugins=loaded, env=env)
        try:
            await service.start(consume=False)
        except BaseException:
            await service.stop()
            raise
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    return Sandbox(service, directory)
