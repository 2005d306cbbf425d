"""Bybit V5 request authentication, checked the way Bybit's API gateway checks it.

The order of the checks, the messages and the string that is signed follow the gateway's
open-source code (``bgw`` ``openapi`` filter: ``newV3Checker``, ``antiReplay``,
``VerifySign``) and Bybit's guide: parameter presence (10001), timestamp window (10002), key
(10003), signature (10004).  The signed string is taken from the raw query string or the raw
body bytes exactly as they arrived, never from a decoded or re-serialised form.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping
from dataclasses import dataclass

#: Bybit's allowance for a client clock running ahead of the server.
ALLOWED_FUTURE_MS = 1000
DEFAULT_RECV_WINDOW_MS = 5000


@dataclass(frozen=True, slots=True)
class AuthError:
    """A failed check: Bybit's ``retCode`` and ``retMsg``."""

    ret_code: int
    ret_msg: str


def hmac_hex(secret: str, message: bytes) -> str:
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def rest_signature(
    secret: str, timestamp: str, api_key: str, recv_window: str, payload: bytes
) -> str:
    """``X-BAPI-SIGN`` for one request: HMAC over ``timestamp + key + recvWindow + payload``."""
    return hmac_hex(secret, (timestamp + api_key + recv_window).encode() + payload)


def ws_auth_signature(secret: str, expires_ms: int) -> str:
    """The third argument of the private WebSocket ``auth`` op."""
    return hmac_hex(secret, f"GET/realtime{expires_ms}".encode())


def signed_headers(
    *,
    api_key: str,
    api_secret: str,
    timestamp_ms: int,
    payload: bytes,
    recv_window: int | None = DEFAULT_RECV_WINDOW_MS,
) -> dict[str, str]:
    """Headers a correct client sends; tests use it to craft raw requests."""
    window = "" if recv_window is None else str(recv_window)
    headers = {
        "X-BAPI-API-KEY": api_key,
        "X-BAPI-TIMESTAMP": str(timestamp_ms),
        "X-BAPI-SIGN": rest_signature(api_secret, str(timestamp_ms), api_key, window, payload),
        "X-BAPI-SIGN-TYPE": "2",
    }
    if recv_window is not None:
        headers["X-BAPI-RECV-WINDOW"] = window
    return headers


def check_request(
    headers: Mapping[str, str],
    payload: bytes,
    *,
    now_ms: int,
    keys: Mapping[str, str],
    default_recv_window: int = DEFAULT_RECV_WINDOW_MS,
) -> AuthError | None:
    """Run the gateway's checks on one private request; ``None`` means it is authentic.

    ``payload`` is the raw query string (GET) or the raw body (POST); ``keys`` maps API keys to
    their secrets.
    """
    api_key = headers.get("X-BAPI-API-KEY", "")
    timestamp = headers.get("X-BAPI-TIMESTAMP", "")
    signature = headers.get("X-BAPI-SIGN", "")
    # The gateway signs with the header exactly as sent: absent means "" in the signed string,
    # while the window itself then defaults to 5000 ms.
    recv_window = headers.get("X-BAPI-RECV-WINDOW", "")
    if not api_key:
        # Without the key header the gateway falls back to the legacy (v2) parameter scheme.
        return AuthError(10001, "empty value: apiTimestamp[] apiKey[] apiSignature[]")
    if not timestamp:
        return AuthError(10001, f"empty value: apiTimestamp[{timestamp}] apiKey[{api_key}]")
    if not signature:
        return AuthError(
            10001,
            f"empty value: apiTimestamp[{timestamp}] apiKey[{api_key}] apiSignature[{signature}]",
        )
    window_error = check_timestamp(
        timestamp, recv_window, now_ms=now_ms, default_window=default_recv_window
    )
    if window_error is not None:
        return window_error
    secret = keys.get(api_key)
    if secret is None:
        return AuthError(10003, "API key is invalid.")
    signed = (timestamp + api_key + recv_window).encode() + payload
    if not hmac.compare_digest(hmac_hex(secret, signed), signature.lower()):
        return AuthError(10004, f"error sign! origin_string[{signed.decode('utf-8', 'replace')}]")
    return None


def check_timestamp(
    timestamp: str,
    recv_window: str,
    *,
    now_ms: int,
    default_window: int = DEFAULT_RECV_WINDOW_MS,
) -> AuthError | None:
    """``server_time - recv_window <= timestamp < server_time + 1000``, Bybit's rule."""
    try:
        request_ms = int(timestamp)
    except ValueError:
        return AuthError(10001, "openapi params error! req_timestamp invalid")
    window = default_window
    if recv_window:
        try:
            window = int(recv_window)
        except ValueError:
            return AuthError(10001, "openapi params error! recv_window invalid")
    if request_ms >= now_ms + ALLOWED_FUTURE_MS or request_ms < now_ms - window:
        return AuthError(
            10002,
            "invalid request, please check your server timestamp or recv_window param. "
            f"req_timestamp[{request_ms}],server_timestamp[{now_ms}],recv_window[{window}]",
        )
    return None
