"""An observer plugin: the lifecycle hooks and ``om_order_event``.

* ``om_startup`` opens the file and starts a writer thread — it is ``async``, and the engine
  awaits it before consuming any signal; raising here would stop the service from starting.
* ``om_order_event`` only puts the event on a queue: the hook runs in the engine's event
  loop right after the event is durably recorded, so it must not block on I/O.
* ``om_shutdown`` stops the writer after it wrote everything queued, and closes the file.
"""

from __future__ import annotations

import json
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import IO, Any

from pydantic import BaseModel, ConfigDict, Field

from om_plugins import hookimpl

__all__ = ["AuditLogPlugin", "AuditLogSettings"]

om_api_version = ">=2,<3"

_STOP = object()


class AuditLogSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    path: Path = Field(description="JSON Lines file the events are appended to.")
    event_types: list[str] = Field(
        default_factory=list, description="Only these event types (empty: all)."
    )


class AuditLogPlugin:
    settings_model = AuditLogSettings

    def __init__(self, settings: AuditLogSettings) -> None:
        self.settings = settings
        self._queue: queue.SimpleQueue[object] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    @hookimpl
    async def om_startup(self, settings: Mapping[str, Any]) -> None:
        path = self.settings.path
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = path.open("a", encoding="utf-8")
        self._writer = threading.Thread(
            target=self._write, args=(handle,), name="audit-log", daemon=True
        )
        self._writer.start()

    @hookimpl
    def om_order_event(self, event: Mapping[str, Any]) -> None:
        wanted = self.settings.event_types
        if not wanted or event.get("event_type") in wanted:
            self._queue.put(dict(event))

    @hookimpl
    def om_shutdown(self) -> None:
        if self._writer is not None:
            self._queue.put(_STOP)
            self._writer.join()
            self._writer = None

    def _write(self, handle: IO[str]) -> None:
        with handle:
            while (item := self._queue.get()) is not _STOP:
                handle.write(json.dumps(item, ensure_ascii=False) + "\n")
                handle.flush()
