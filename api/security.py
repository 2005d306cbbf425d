"""API keys: header ``X-API-Key``, scopes ``read`` and ``trade`` (trade includes read).

Every configured key is kept only as the SHA-256 digest of its secret (a ``sha256:<hex>`` key
already is one), and a presented key is hashed and compared against every digest with
``hmac.compare_digest``: the comparison takes the same time whatever the key, its length, or
which key (if any) it matches. Several keys can be active at once, so a key is rotated by
adding the new one, moving clients over, then removing the old one.

Keys are never logged. A request is attributed to ``api-key:<first 8 hex of its digest>``,
which an operator can match against ``printf %s "$KEY" | sha256sum`` without the key being
recoverable from it.

With no key configured the API is open (every request has the trade scope): ``om run``
refuses that unless the API is bound to a loopback address.
"""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Iterable
from dataclasses import dataclass

from fastapi import Request, Security
from fastapi.security import APIKeyHeader

from api.errors import ApiError
from om_core.config import ApiKey, ApiScope

__all__ = [
    "API_KEY_HEADER",
    "CHALLENGE",
    "ApiKeyError",
    "KeyRing",
    "Principal",
    "api_key_header",
    "require_read",
    "require_trade",
]

API_KEY_HEADER = "X-API-Key"

api_key_header = APIKeyHeader(
    name=API_KEY_HEADER,
    scheme_name="ApiKey",
    description=(
        "An API key from `OM_API_KEYS`. `read` keys may call every GET route; `trade` keys "
        "may also cancel orders, change the trading state and start reconciliation."
    ),
    auto_error=False,
)

_HEX_DIGEST = re.compile(r"[0-9a-fA-F]{64}")
#: A 401 names how to authenticate (RFC 9110 requires the header).
CHALLENGE = {"WWW-Authenticate": f'ApiKey header="{API_KEY_HEADER}"'}


class ApiKeyError(ValueError):
    """A configured key cannot be used; the message never contains the key."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who is calling: the key's scope and a fingerprint safe to log."""

    scope: ApiScope
    key_id: str

    @property
    def actor(self) -> str:
        return f"api-key:{self.key_id}"


ANONYMOUS = Principal(ApiScope.TRADE, "none")


def _digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("utf-8")).digest()


@dataclass(frozen=True, slots=True)
class _Entry:
    digest: bytes
    scope: ApiScope


class KeyRing:
    """The configured keys, as digests."""

    def __init__(self, keys: Iterable[ApiKey]) -> None:
        entries = []
        for number, key in enumerate(keys, start=1):
            secret = key.secret.get_secret_value()
            if key.is_hashed:
                hexdigest = secret.removeprefix("sha256:")
                if not _HEX_DIGEST.fullmatch(hexdigest):
                    raise ApiKeyError(
                        f"OM_API_KEYS entry {number}: a sha256: key needs 64 hex digits"
                    )
                digest = bytes.fromhex(hexdigest)
            else:
                if not secret:
                    raise ApiKeyError(f"OM_API_KEYS entry {number} is empty")
                digest = _digest(secret)
            entries.append(_Entry(digest, key.scope))
        self._entries = tuple(entries)

    @property
    def enabled(self) -> bool:
        return bool(self._entries)

    def identify(self, presented: str) -> Principal | None:
        """The principal of ``presented``, or ``None`` when no configured key matches."""
        digest = _digest(presented)
        found: _Entry | None = None
        # No early exit: every entry is compared, so timing does not tell which one matched.
        for entry in self._entries:
            if hmac.compare_digest(digest, entry.digest) and found is None:
                found = entry
        if found is None:
            return None
        return Principal(found.scope, digest.hex()[:8])


def _keyring(request: Request) -> KeyRing:
    ring: KeyRing = request.app.state.keyring
    return ring


def _authenticate(request: Request, presented: str | None) -> Principal:
    ring = _keyring(request)
    if not ring.enabled:
        return ANONYMOUS
    if not presented:
        raise ApiError(
            401,
            "missing_api_key",
            f"this route needs an API key in the {API_KEY_HEADER} header",
            headers=CHALLENGE,
        )
    principal = ring.identify(presented)
    if principal is None:
        raise ApiError(
            401,
            "invalid_api_key",
            "the API key is not valid",
            headers=CHALLENGE,
        )
    return principal


async def require_read(
    request: Request, presented: str | None = Security(api_key_header)
) -> Principal:
    """Any valid key (read or trade)."""
    return _authenticate(request, presented)


async def require_trade(
    request: Request, presented: str | None = Security(api_key_header)
) -> Principal:
    """A valid key with the trade scope."""
    principal = _authenticate(request, presented)
    if principal.scope is not ApiScope.TRADE:
        raise ApiError(
            403,
            "insufficient_scope",
            "this route changes state and needs a key with the trade scope",
            {"required_scope": ApiScope.TRADE.value, "key_scope": principal.scope.value},
        )
    return principal
