"""Deterministic client order ids: ≤ 36 characters of ``[A-Za-z0-9_-]``, which every exchange we
know accepts as its client order id."""

from __future__ import annotations

import uuid

__all__ = ["client_order_id"]

# A fixed namespace: the same (signal, leg) must map to the same id forever, in every process.
_NAMESPACE = uuid.UUID("6f1d3c3e-5b0a-4c55-9a57-0e8f7a4b1c2d")


def client_order_id(signal_id: str, leg: int) -> str:
    """The id every attempt to place leg ``leg`` of ``signal_id`` uses: 36 chars, a UUIDv5."""
    return str(uuid.uuid5(_NAMESPACE, f"{signal_id}\x1f{leg}"))
