"""One-shot fault switches a test arms on the fake server.

Each switch applies to the next matching request(s) and then clears itself, so a test states
exactly which request misbehaves. Order in which the server consults them for a request:

1. ``fail_next`` (the gateway in front of Bybit failed): before authentication;
2. authentication;
3. ``throttle`` (Bybit's rate limiter runs after authentication, per account);
4. ``reject_next_create`` / ``reject_next_create_after_ack`` / ``timeout_next_create``
   (``/v5/order/create`` only, one queue, first armed first used).
"""

from __future__ import annotations

from dataclasses import dataclass

#: Body of the HTML page a gateway answers with, by status (what a CDN/load balancer sends).
_GATEWAY_PAGES = {
    500: "500 Internal Server Error",
    502: "502 Bad Gateway",
    503: "503 Service Temporarily Unavailable",
    504: "504 Gateway Time-out",
}


def gateway_page(status: int) -> str:
    title = _GATEWAY_PAGES.get(status, f"{status} Error")
    return (
        f"<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n</body>\r\n</html>\r\n"
    )


@dataclass(frozen=True, slots=True)
class GatewayFailure:
    status: int
    #: Whether the request still reaches the exchange (order placed) before the error page.
    execute: bool


@dataclass(frozen=True, slots=True)
class CreateRejection:
    ret_code: int
    ret_msg: str


@dataclass(frozen=True, slots=True)
class CreateRejectionAfterAck:
    reject_reason: str


@dataclass(frozen=True, slots=True)
class CreateTimeout:
    execute: bool
    delay: float
    close: bool


CreateFault = CreateRejection | CreateRejectionAfterAck | CreateTimeout


@dataclass
class Throttle:
    remaining: int
    reset_ms: int


class Faults:
    """The armed switches; the ``take_*`` methods consume them."""

    def __init__(self) -> None:
        self._gateway: dict[str, list[GatewayFailure]] = {}
        self._throttles: dict[str, Throttle] = {}
        self._create: list[CreateFault] = []

    def fail_next(self, path: str, status: int, execute: bool) -> None:
        if not 500 <= status <= 599:
            raise ValueError("fail_next is for gateway errors: status must be 5xx")
        self._gateway.setdefault(path, []).append(GatewayFailure(status, execute))

    def throttle(self, path: str, count: int, reset_ms: int) -> None:
        if count < 1 or reset_ms < 1:
            raise ValueError("count and reset_ms must be positive")
        self._throttles[path] = Throttle(count, reset_ms)

    def reject_next_create(self, ret_code: int, ret_msg: str) -> None:
        if ret_code == 0:
            raise ValueError("a rejection needs a non-zero retCode")
        self._create.append(CreateRejection(ret_code, ret_msg))

    def reject_next_create_after_ack(self, reject_reason: str) -> None:
        self._create.append(CreateRejectionAfterAck(reject_reason))

    def timeout_next_create(self, execute: bool, delay: float, close: bool) -> None:
        self._create.append(CreateTimeout(execute, delay, close))

    def take_gateway_failure(self, path: str) -> GatewayFailure | None:
        queue = self._gateway.get(path)
        return queue.pop(0) if queue else None

    def take_throttle(self, path: str) -> Throttle | None:
        throttle = self._throttles.get(path)
        if throttle is None:
            return None
        throttle.remaining -= 1
        if throttle.remaining == 0:
            del self._throttles[path]
        return throttle

    def take_create_fault(self) -> CreateFault | None:
        return self._create.pop(0) if self._create else None
