"""What the service just did, fanned out in-process to whoever watches (the console).

Fed from what the service produces anyway: the outbox events the relay has published (order
changes, rejected signals, trading-state changes), the dead letters as they are recorded, and
the signals the API accepted. Subscribers are called synchronously and must only queue the
item (the console renders and streams it from its own task); a subscriber that raises is
logged and dropped.

An event reaches the feed once the broker confirmed it, exactly when other services see it.
With several instances sharing a database, the one whose relay published an event is the
one whose feed carries it.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

__all__ = ["LiveEvent", "LiveFeed", "Subscriber"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class LiveEvent:
    #: ``event`` (an outbox event, ``data`` as published), ``dead_letter`` (a dead letter just
    #: recorded), ``signal_accepted`` (a signal the API queued), ``closed`` (the feed ended).
    kind: str
    data: Mapping[str, Any] = field(default_factory=dict)
    #: ``time.time()`` when the feed got it.
    at: float = field(default_factory=time.time)


Subscriber = Callable[[LiveEvent], None]


class LiveFeed:
    def __init__(self) -> None:
        self._subscribers: list[Subscriber] = []
        self.closed = False

    @property
    def watched(self) -> bool:
        return bool(self._subscribers)

    def subscribe(self, subscriber: Subscriber) -> Callable[[], None]:
        """Call ``subscriber`` with every item from now on; returns the unsubscribe call."""
        self._subscribers.append(subscriber)

        def unsubscribe() -> None:
            if subscriber in self._subscribers:
                self._subscribers.remove(subscriber)

        return unsubscribe

    def publish(self, kind: str, data: Mapping[str, Any]) -> None:
        if self.closed or not self._subscribers:
            return
        item = LiveEvent(kind, data)
        for subscriber in list(self._subscribers):
            try:
                subscriber(item)
            except Exception:
                log.exception("live feed subscriber failed; dropping it")
                if subscriber in self._subscribers:
                    self._subscribers.remove(subscriber)

    def published_events(self, payloads: Sequence[str]) -> None:
        """The relay published these outbox events (serialized JSON, as sent)."""
        if self.closed or not self._subscribers:
            return  # nobody watches: not even the JSON is decoded
        for payload in payloads:
            self.publish("event", json.loads(payload))

    def close(self) -> None:
        """The service is stopping: tell every subscriber, then forget them."""
        if self.closed:
            return
        for subscriber in list(self._subscribers):
            try:
                subscriber(LiveEvent("closed"))
            except Exception:
                log.exception("live feed subscriber failed while closing")
        self.closed = True
        self._subscribers.clear()
