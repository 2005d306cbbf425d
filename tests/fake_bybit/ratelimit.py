"""Bybit's rate-limit response headers (rate-limit.mdx, and the gateway's ``setHeader``).

Limits are counted per path in a rolling one-second window but never enforced: only
``FakeBybit.throttle`` makes the server answer 10006.  Real Bybit sends the current time as
``X-Bapi-Limit-Reset-Timestamp`` while under the limit; this fake always sends a moment in the
future (when the oldest request of the window leaves it), because pybit's 10006 handling
crashes on a reset time in the past.
"""

from __future__ import annotations

from collections import deque

WINDOW_MS = 1000

#: Default per-second limits (UTA Pro table); other private and public paths get 50.
_LIMITS = {
    "/v5/order/create": 10,
    "/v5/order/cancel": 10,
    "/v5/order/cancel-all": 10,
}


class RateCounter:
    def __init__(self) -> None:
        self._hits: dict[str, deque[int]] = {}

    def record(self, path: str, now_ms: int) -> dict[str, str]:
        """Counts one request; returns the headers for its response."""
        hits = self._hits.setdefault(path, deque())
        while hits and hits[0] <= now_ms - WINDOW_MS:
            hits.popleft()
        hits.append(now_ms)
        limit = _LIMITS.get(path, 50)
        return headers(limit, max(limit - len(hits), 0), hits[0] + WINDOW_MS)

    @staticmethod
    def limit(path: str) -> int:
        return _LIMITS.get(path, 50)


def headers(limit: int, status: int, reset_ms: int) -> dict[str, str]:
    return {
        "X-Bapi-Limit": str(limit),
        "X-Bapi-Limit-Status": str(status),
        "X-Bapi-Limit-Reset-Timestamp": str(reset_ms),
    }
