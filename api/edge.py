"""The API's edge, as ASGI middleware: what is decided before a route (or its body) is touched.

* **Authentication before the body.** A request to ``/api/v1`` without a valid key is refused
  401 from its headers alone, a request that changes state (any method but GET, HEAD,
  OPTIONS) with a read key 403: a 50 MB ``PUT`` without a key costs nothing but its headers.
  The routes' own dependencies still check again (:mod:`api.security`).
* **A body size limit** for the whole API (``OM_API_MAX_BODY_BYTES``): a ``Content-Length``
  over it is refused 413 before reading; a body sent without one (chunked) is counted as it
  arrives and refused 413 as soon as it passes the limit.
* **OPTIONS and 405 name every method of the path**: Starlette answers from the first route
  that matches the path only (``GET`` for ``/api/v1/trading-state``, though ``PUT`` exists);
  here ``OPTIONS`` answers 204 with the complete ``Allow`` and a 405's ``Allow`` is completed.

Every refusal is the API's JSON error body.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from fastapi import HTTPException
from starlette.routing import BaseRoute, Match, Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api.errors import error_body
from api.security import API_KEY_HEADER, CHALLENGE, KeyRing
from om_core.config import ApiScope

__all__ = ["API_PREFIX", "ApiEdge", "body_too_large"]

#: Paths that need an API key (the console signs in with a session; health and metrics are
#: open).
API_PREFIX = "/api/v1/"
_READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
_METHODS = ("DELETE", "GET", "HEAD", "PATCH", "POST", "PUT")
_HEADER = API_KEY_HEADER.lower().encode("latin-1")


def body_too_large(limit: int) -> HTTPException:
    """The 413 of a body past ``limit``; an HTTPException, so FastAPI's body parsing (which
    turns other errors into 400) passes it on to the API's error handler."""
    return HTTPException(
        413,
        detail={
            "code": "payload_too_large",
            "message": f"the request body is larger than {limit} bytes (OM_API_MAX_BODY_BYTES)",
            "details": {"max_bytes": limit},
        },
    )


class ApiEdge:
    """See the module documentation; ``routes`` is the application's (live) route list."""

    def __init__(
        self, app: ASGIApp, *, keyring: KeyRing, max_body_bytes: int, routes: Sequence[BaseRoute]
    ) -> None:
        self.app = app
        self.keyring = keyring
        self.max_body_bytes = max_body_bytes
        self.routes = routes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        headers = dict(scope["headers"])

        if method == "OPTIONS":
            allowed = self._allowed(scope)
            if allowed:
                await _answer(send, 204, None, {"allow": ", ".join(allowed)})
                return
        if path.startswith(API_PREFIX) and method != "OPTIONS":
            refusal = self._refuse_key(headers.get(_HEADER), method)
            if refusal is not None:
                status, body, extra = refusal
                await _answer(send, status, body, extra)
                return

        length = headers.get(b"content-length")
        if length is not None:
            try:
                declared = int(length)
                if declared < 0:
                    raise ValueError
            except ValueError:
                await _answer(
                    send,
                    400,
                    error_body("bad_request", "the Content-Length header is not a number"),
                )
                return
            if declared > self.max_body_bytes:
                exc = body_too_large(self.max_body_bytes)
                await _answer(send, 413, {"error": exc.detail}, {"connection": "close"})
                return

        received = 0
        limit = self.max_body_bytes

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise body_too_large(limit)
            return message

        started = False

        async def tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] == 405:
                    message = _with_allow(message, self._allowed(scope))
            await send(message)

        try:
            await self.app(scope, counted, tracked)
        except HTTPException as exc:
            # A body past the limit read outside a route's error handling.
            if exc.status_code != 413 or started:
                raise
            await _answer(send, 413, {"error": exc.detail}, {"connection": "close"})

    def _refuse_key(
        self, presented: bytes | None, method: str
    ) -> tuple[int, dict[str, Any], dict[str, str]] | None:
        if not self.keyring.enabled:
            return None
        if not presented:
            return (
                401,
                error_body(
                    "missing_api_key",
                    f"this route needs an API key in the {API_KEY_HEADER} header",
                ),
                dict(CHALLENGE),
            )
        principal = self.keyring.identify(presented.decode("latin-1"))
        if principal is None:
            return 401, error_body("invalid_api_key", "the API key is not valid"), dict(CHALLENGE)
        if method not in _READ_METHODS and principal.scope is not ApiScope.TRADE:
            return (
                403,
                error_body(
                    "insufficient_scope",
                    "this route changes state and needs a key with the trade scope",
                    {"required_scope": ApiScope.TRADE.value, "key_scope": principal.scope.value},
                ),
                {},
            )
        return None

    def _allowed(self, scope: Scope) -> list[str]:
        """Every method some route serves at this path (and OPTIONS), asking each route
        whether it fully matches the path with that method (included routers too)."""
        methods = set()
        for method in _METHODS:
            probe = {**scope, "method": method}
            # A Mount (static files) matches every method: it says nothing about methods.
            routes = (r for r in self.routes if not isinstance(r, Mount))
            if any(route.matches(probe)[0] is Match.FULL for route in routes):
                methods.add(method)
        if not methods:
            return []
        return sorted(methods | {"OPTIONS"})


def _with_allow(message: Message, allowed: list[str]) -> Message:
    if not allowed:
        return message
    headers = [(k, v) for k, v in message.get("headers", []) if k.lower() != b"allow"]
    headers.append((b"allow", ", ".join(allowed).encode("latin-1")))
    return {**message, "headers": headers}


async def _answer(
    send: Send, status: int, body: dict[str, Any] | None, headers: dict[str, str] | None = None
) -> None:
    raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode("utf-8")
    out = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in (headers or {}).items()]
    if body is not None:
        out.append((b"content-type", b"application/json"))
    out.append((b"content-length", str(len(raw)).encode("latin-1")))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": raw})
