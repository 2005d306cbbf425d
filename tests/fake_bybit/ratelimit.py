"""Bybit's per-UID rate limits and their response headers (rate-limit.mdx, and the gateway's
``setHeader``).

Authenticated requests are counted per endpoint in a rolling one-second window and, while
``FakeBybit.rate_limits`` is on (the default), a request beyond the limit is answered with
``retCode`` 10006 "Too many visits!" (``X-Bapi-Limit-Status: 0``) and not executed; creates
and cancels are counted per category group (linear + inverse share one limit, spot has its
own), as Bybit does. Public requests are counted for the headers only (Bybit limits them per
IP, 600 per 5 s, which the fake does not model). Refused requests do not count.

Real Bybit sends the current time as ``X-Bapi-Limit-Reset-Timestamp`` while under the limit;
this fake always sends a moment in the future (when the oldest request of the window leaves
it), because pybit's 10006 handling crashes on a reset time in the past.
"""

from __future__ import annotations

from collections import deque

WINDOW_MS = 1000

#: Default per-second limits per UID (UTA Pro table): (linear + inverse, spot).
_TRADE_LIMITS = {
    "/v5/order/create": (10, 20),
    "/v5/order/cancel": (10, 20),
    "/v5/order/cancel-all": (10, 20),
}
#: Every other endpoint.
_READ_LIMIT = 50


def limit_key(path: str, category: str) -> tuple[str, str]:
    """The counter a request goes to: trade endpoints count per category group."""
    if path in _TRADE_LIMITS:
        return path, "spot" if category == "spot" else "linear"
    return path, ""


def limit_for(key: tuple[str, str]) -> int:
    path, group = key
    limits = _TRADE_LIMITS.get(path)
    if limits is None:
        return _READ_LIMIT
    return limits[1] if group == "spot" else limits[0]


class RateCounter:
    def __init__(self) -> None:
        self._hits: dict[tuple[str, str], deque[int]] = {}

    def record(
        self, key: tuple[str, str], now_ms: int, *, enforce: bool
    ) -> tuple[bool, dict[str, str]]:
        """Counts one request unless it is over the limit (and ``enforce``); returns whether
        it may go through, and the headers for its response."""
        hits = self._hits.setdefault(key, deque())
        while hits and hits[0] <= now_ms - WINDOW_MS:
            hits.popleft()
        limit = limit_for(key)
        if enforce and len(hits) >= limit:
            return False, headers(limit, 0, hits[0] + WINDOW_MS)
        hits.append(now_ms)
        return True, headers(limit, max(limit - len(hits), 0), hits[0] + WINDOW_MS)


def headers(limit: int, status: int, reset_ms: int) -> dict[str, str]:
    return {
        "X-Bapi-Limit": str(limit),
        "X-Bapi-Limit-Status": str(status),
        "X-Bapi-Limit-Reset-Timestamp": str(reset_ms),
    }
