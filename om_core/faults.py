"""Kill points for fault-injection tests — inert in production.

``checkpoint("<name>")`` marks a point in the engine where a crash is interesting (between a
commit and the exchange call, between a publish and marking it sent, …). It does nothing —
one lookup in an empty dict — unless the process was started with ``OM_FAULT_KILL_AT``:

* ``OM_FAULT_KILL_AT=name`` — the first time the process passes ``name`` it kills itself
  with SIGKILL (no cleanup, no flush, exactly like ``kill -9`` or a power cut);
* ``OM_FAULT_KILL_AT=name:N`` — on the Nth pass;
* several points may be given, comma-separated; the first one reached wins.

This exists only so ``tests/faults`` and ``bench/soak.py`` can crash the service at precise
points and check that nothing is lost or duplicated. Never set the variable in production.

Points (where they sit):

========================== ================================================================
``signal.received``        a signal message reached its handler, nothing done yet
``signal.intent_committed`` the order intent is committed, the exchange not called yet
``exchange.create_sent``   the exchange accepted the order, its answer not committed yet
``exchange.result_committed`` the exchange's answer is committed
``signal.before_ack``      a signal's handler succeeded, the message not acknowledged yet
``update.received``        an order update is about to be applied
``update.applied``         an order update is committed, the message not acknowledged yet
``update.before_ack``      an order update's handler succeeded, not acknowledged yet
``outbox.published``       an event is confirmed by the broker, its row not marked sent yet
========================== ================================================================
"""

from __future__ import annotations

import os
import signal
from collections.abc import Mapping

from om_core.messaging.topology import ORDER_EVENTS_QUEUE, ORDER_UPDATES_QUEUE, SIGNALS_QUEUE

__all__ = [
    "ENV_VAR",
    "arm",
    "armed",
    "before_ack_point",
    "checkpoint",
    "parse",
    "published_point",
]

ENV_VAR = "OM_FAULT_KILL_AT"

#: Point name → the pass on which to die. Empty unless ``OM_FAULT_KILL_AT`` is set.
_armed: dict[str, int] = {}
_passes: dict[str, int] = {}

#: Queue → the kill point passed just before a message of it is acknowledged.
_BEFORE_ACK = {
    SIGNALS_QUEUE: "signal.before_ack",
    ORDER_UPDATES_QUEUE: "update.before_ack",
}

#: Queue → the kill point passed once the broker confirmed a message published to it.
_PUBLISHED = {ORDER_EVENTS_QUEUE: "outbox.published"}


def parse(spec: str) -> dict[str, int]:
    """``"a, b:3"`` → ``{"a": 1, "b": 3}``; raises ``ValueError`` on a bad count."""
    points: dict[str, int] = {}
    for item in spec.split(","):
        item = item.strip()
        if not item:
            continue
        name, _, count = item.partition(":")
        n = int(count) if count else 1
        if n < 1:
            raise ValueError(f"{ENV_VAR}: the pass number must be at least 1 (got {item!r})")
        points[name.strip()] = n
    return points


def arm(spec: str | None) -> None:
    """(Re)arm from a spec (``None`` or empty disarms); the pass counts start over."""
    _armed.clear()
    _passes.clear()
    if spec:
        _armed.update(parse(spec))


def armed() -> Mapping[str, int]:
    return dict(_armed)


def before_ack_point(queue: str) -> str:
    return _BEFORE_ACK.get(queue, "bus.before_ack")


def published_point(queue: str) -> str:
    return _PUBLISHED.get(queue, "bus.published")


def checkpoint(name: str) -> None:
    """Die here by SIGKILL if this process was told to (see the module docstring)."""
    if name in _armed:
        _hit(name)


def _hit(name: str) -> None:
    count = _passes.get(name, 0) + 1
    _passes[name] = count
    if count >= _armed[name]:
        os.kill(os.getpid(), signal.SIGKILL)


arm(os.environ.get(ENV_VAR))
