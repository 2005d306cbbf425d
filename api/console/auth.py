"""Signing in to the console: an API key exchanged for a session cookie, and CSRF checks.

The key is checked against the same :class:`~api.security.KeyRing` as the API's
``X-API-Key`` header and never stored: the session keeps the key's scope and fingerprint.
The cookie (``om_session``) is ``HttpOnly``, ``SameSite=Strict``, ``Path=/``, ``Secure`` when
the console is served over HTTPS; it holds a random token, and sessions live in the process
(a restart signs everyone out; several instances behind one address need sticky sessions).

Every state-changing request carries the session's CSRF token (header ``X-CSRF-Token``, which
htmx sends on every request, or form field ``csrf_token``), and a request whose ``Origin``
names another site is refused. The sign-in form itself is protected by a double-submit token.

With no key configured (the API then only listens on loopback) there is no sign-in: every
visitor acts with the trade scope, and the CSRF token is one per process.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Annotated
from urllib.parse import parse_qsl, urlsplit

from fastapi import Depends, Request

from api.security import ANONYMOUS, KeyRing, Principal
from om_core.config import ApiScope

__all__ = [
    "COOKIE",
    "CSRF_HEADER",
    "ConsoleSession",
    "Forbidden",
    "SessionStore",
    "SignInRequired",
    "Trader",
    "Viewer",
    "read_form",
]

COOKIE = "om_session"
LOGIN_CSRF_COOKIE = "om_login_csrf"
CSRF_HEADER = "X-CSRF-Token"
#: A session ends this long after sign-in, whatever its use.
LIFETIME_SECONDS = 12 * 3600
_MAX_SESSIONS = 10_000
_MAX_FORM_BYTES = 64 * 1024
_SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class SignInRequired(Exception):
    """No valid session: pages redirect to the sign-in form, fragments answer 401."""


class Forbidden(Exception):
    """Signed in, but not allowed: a read key acting, or a request failing the CSRF check."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


@dataclass(slots=True)
class ConsoleSession:
    principal: Principal
    csrf: str
    expires_at: float = field(default_factory=lambda: time.monotonic() + LIFETIME_SECONDS)
    #: False in the no-keys mode: nobody signed in, and nobody can sign out.
    signed_in: bool = True

    @property
    def can_trade(self) -> bool:
        return self.principal.scope is ApiScope.TRADE


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode("utf-8")).digest()


class SessionStore:
    def __init__(self, keyring: KeyRing) -> None:
        self.keyring = keyring
        self._sessions: OrderedDict[bytes, ConsoleSession] = OrderedDict()
        self._anonymous = ConsoleSession(
            ANONYMOUS, secrets.token_urlsafe(32), expires_at=float("inf"), signed_in=False
        )

    @property
    def sign_in_needed(self) -> bool:
        return self.keyring.enabled

    def sign_in(self, presented: str) -> tuple[str, ConsoleSession] | None:
        """A new session for a valid key: ``(cookie token, session)``; ``None`` otherwise."""
        principal = self.keyring.identify(presented)
        if principal is None:
            return None
        token = secrets.token_urlsafe(32)
        session = ConsoleSession(principal, secrets.token_urlsafe(32))
        self._sessions[_digest(token)] = session
        while len(self._sessions) > _MAX_SESSIONS:
            self._sessions.popitem(last=False)
        return token, session

    def sign_out(self, token: str | None) -> None:
        if token:
            self._sessions.pop(_digest(token), None)

    def find(self, token: str | None) -> ConsoleSession | None:
        if not self.keyring.enabled:
            return self._anonymous
        if not token or len(token) > 128:
            return None
        session = self._sessions.get(_digest(token))
        if session is None:
            return None
        if session.expires_at <= time.monotonic():
            self._sessions.pop(_digest(token), None)
            return None
        return session


def store(request: Request) -> SessionStore:
    sessions: SessionStore = request.app.state.console_sessions
    return sessions


def current_session(request: Request) -> ConsoleSession | None:
    return store(request).find(request.cookies.get(COOKIE))


async def read_form(request: Request) -> dict[str, str]:
    """An ``application/x-www-form-urlencoded`` body (what htmx and plain forms send)."""
    cached: dict[str, str] | None = getattr(request.state, "form", None)
    if cached is not None:
        return cached
    body = await request.body()
    if len(body) > _MAX_FORM_BYTES:
        raise Forbidden("the form is too large")
    try:
        pairs = parse_qsl(body.decode("utf-8"), keep_blank_values=True, max_num_fields=100)
    except (UnicodeDecodeError, ValueError):
        raise Forbidden("the form could not be read") from None
    form = dict(pairs)
    request.state.form = form
    return form


def _same_origin(request: Request) -> bool:
    if request.headers.get("sec-fetch-site", "same-origin") not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return urlsplit(origin).netloc == request.headers.get("host", "")


async def check_csrf(request: Request, session: ConsoleSession) -> None:
    """Refuse a state-changing request without this session's token, or from another site."""
    if request.method in _SAFE_METHODS:
        return
    if not _same_origin(request):
        raise Forbidden("refused: the request comes from another site")
    presented = request.headers.get(CSRF_HEADER)
    if presented is None:
        presented = (await read_form(request)).get("csrf_token", "")
    if not hmac.compare_digest(presented.encode(), session.csrf.encode()):
        raise Forbidden("refused: the form is stale or forged (CSRF token); reload the page")


async def require_viewer(request: Request) -> ConsoleSession:
    session = current_session(request)
    if session is None:
        raise SignInRequired()
    await check_csrf(request, session)
    return session


async def require_trader(request: Request) -> ConsoleSession:
    session = await require_viewer(request)
    if not session.can_trade:
        raise Forbidden("this needs a key with the trade scope; you signed in with a read key")
    return session


#: Anyone signed in (read or trade scope); state changes also pass the CSRF check.
Viewer = Annotated[ConsoleSession, Depends(require_viewer)]
#: Signed in with a trade key, and the CSRF check passed.
Trader = Annotated[ConsoleSession, Depends(require_trader)]


def login_csrf_token() -> str:
    return secrets.token_urlsafe(24)


def login_csrf_ok(request: Request, presented: str) -> bool:
    expected = request.cookies.get(LOGIN_CSRF_COOKIE, "")
    return bool(expected) and hmac.compare_digest(presented.encode(), expected.encode())
