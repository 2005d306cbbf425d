"""One background loop shape for the service's periodic work (resolution, snapshots,
reconciliation): run an action every ``interval`` seconds, log its failures, never die."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

__all__ = ["Every"]

log = logging.getLogger(__name__)


class Every:
    def __init__(self, interval: float, action: Callable[[], Awaitable[Any]], *, name: str) -> None:
        self.interval = interval
        self._action = action
        self._name = name
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start the loop; an interval of 0 or less means never."""
        if self.interval > 0 and self._task is None:
            self._task = asyncio.create_task(self._run(), name=self._name)

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                await self._action()
            except Exception:
                log.exception("%s failed; trying again in %.0fs", self._name, self.interval)
