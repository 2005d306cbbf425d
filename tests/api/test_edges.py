"""Issue 14, observation 9 (API half): the API's edge.

Authentication before the body is read, one body size limit for the whole API, strict API
key parsing, an empty ``cursor=`` and a complete ``Allow``. Every refusal is a 4xx with the
API's JSON error body.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator

import httpx
import pytest
from pydantic import SecretStr, ValidationError

from om_core.config import ApiKey, ApiScope, ConfigError, load_settings
from tests.api.conftest import READ_KEY, TRADE_KEY, Api, api_for, error_code, signal

MIB = 1024 * 1024


class Body:
    """A request body that counts how much of it the server pulled."""

    def __init__(self, size: int, chunk: int = 64 * 1024) -> None:
        self.size = size
        self.chunk = chunk
        self.sent = 0

    async def stream(self) -> AsyncIterator[bytes]:
        while self.sent < self.size:
            part = min(self.chunk, self.size - self.sent)
            self.sent += part
            yield b" " * part


async def _put(
    api: Api, body: Body, *, key: str | None, declare: bool, path: str = "/api/v1/trading-state"
) -> httpx.Response:
    headers = {"Content-Type": "application/json"}
    if key is not None:
        headers["X-API-Key"] = key
    if declare:
        headers["Content-Length"] = str(body.size)
    return await api.client.put(path, content=body.stream(), headers=headers)


@pytest.mark.parametrize("declare", [True, False], ids=["content-length", "chunked"])
@pytest.mark.parametrize(
    ("key", "status", "code"),
    [
        (None, 401, "missing_api_key"),
        ("not-a-valid-key-at-all", 401, "invalid_api_key"),
        (READ_KEY, 403, "insufficient_scope"),
    ],
)
async def test_a_50_mb_body_without_a_usable_key_is_refused_unread(
    api: Api, declare: bool, key: str | None, status: int, code: str
) -> None:
    body = Body(50 * MIB)
    response = await _put(api, body, key=key, declare=declare)
    assert response.status_code == status, response.text
    assert error_code(response) == code
    if status == 401:
        assert response.headers["WWW-Authenticate"].startswith("ApiKey")
    assert body.sent <= body.chunk  # at most what the transport pulled before the answer


async def test_a_body_over_the_limit_is_413_declared_or_not(api: Api) -> None:
    declared = Body(50 * MIB)
    response = await _put(api, declared, key=TRADE_KEY, declare=True)
    assert response.status_code == 413, response.text
    assert error_code(response) == "payload_too_large"
    assert response.json()["error"]["details"] == {"max_bytes": MIB}
    assert declared.sent <= declared.chunk

    streamed = Body(50 * MIB)
    response = await _put(api, streamed, key=TRADE_KEY, declare=False)
    assert response.status_code == 413, response.text
    assert error_code(response) == "payload_too_large"
    assert streamed.sent <= MIB + 2 * streamed.chunk  # stopped as soon as it passed the limit

    # Under the limit the route reads it, and says what is wrong with it.
    small = await api.client.put(
        "/api/v1/trading-state",
        content=b'{"state": "nope"}',
        headers={"X-API-Key": TRADE_KEY, "Content-Type": "application/json"},
    )
    assert small.status_code == 422 and error_code(small) == "validation_error"


async def test_the_limit_is_a_setting_for_every_route(pg_url: str) -> None:
    async with api_for(pg_url, env={"OM_API_MAX_BODY_BYTES": "2048"}) as api:
        big = signal("s-big", metadata={"note": "x" * 4096})
        for path in ("/api/v1/signals", "/api/v1/orders/preview"):
            response = await api.client.post(path, json=big, headers={"X-API-Key": TRADE_KEY})
            assert response.status_code == 413, (path, response.text)
            assert response.json()["error"]["details"] == {"max_bytes": 2048}
        ok = await api.client.post(
            "/api/v1/signals", json=signal("s-small"), headers={"X-API-Key": TRADE_KEY}
        )
        assert ok.status_code == 202, ok.text


async def test_a_malformed_content_length_is_400(api: Api) -> None:
    response = await api.client.put(
        "/api/v1/trading-state",
        content=b"{}",
        headers={"X-API-Key": TRADE_KEY, "Content-Length": "abc"},
    )
    assert response.status_code == 400 and error_code(response) == "bad_request"


async def test_an_empty_cursor_is_the_first_page(api: Api) -> None:
    for path in (
        "/api/v1/orders",
        "/api/v1/signals",
        "/api/v1/dead-letters",
        "/api/v1/positions/BTCUSDT/snapshots",
    ):
        response = await api.client.get(path + "?cursor=", headers={"X-API-Key": READ_KEY})
        assert response.status_code == 200, (path, response.text)
        junk = await api.get(path, cursor="x")
        assert junk.status_code == 400 and error_code(junk) == "invalid_cursor"


async def test_options_and_405_name_every_method_of_the_path(api: Api) -> None:
    response = await api.client.options("/api/v1/trading-state")
    assert response.status_code == 204
    assert set(response.headers["Allow"].split(", ")) == {"GET", "OPTIONS", "PUT"}

    wrong = await api.client.delete("/api/v1/trading-state", headers={"X-API-Key": TRADE_KEY})
    assert wrong.status_code == 405 and error_code(wrong) == "method_not_allowed"
    assert set(wrong.headers["Allow"].split(", ")) == {"GET", "OPTIONS", "PUT"}

    signals = await api.client.options("/api/v1/signals")
    assert set(signals.headers["Allow"].split(", ")) == {"GET", "OPTIONS", "POST"}


# -- strict keys (OM_API_KEYS) ----------------------------------------------------------------


@pytest.mark.parametrize(
    "keys",
    [
        "k1:Trade",
        "k1:write",
        "long-enough-key-0001:Trade",
        "long-enough-key-0001:write",
        "long-enough-key-0001:trade:read",
        "x",
        "short-key:trade",
        "sha256:abc:trade",
        "sha256:" + "g" * 64,
        "sha256:" + "a" * 63,
        "has a space in it 0001:trade",
    ],
)
def test_malformed_keys_stop_the_configuration(keys: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_settings(env={"OM_API_KEYS": keys})
    [problem] = info.value.problems
    assert problem.startswith("OM_API_KEYS: ")
    if len(keys) > 3:
        assert keys not in problem  # never echoed
    assert "long-enough-key" not in problem and "short-key" not in problem


def test_well_formed_keys_with_their_scopes() -> None:
    digest = hashlib.sha256(b"hashed-key-000001").hexdigest()
    settings = load_settings(
        env={
            "OM_API_KEYS": f"long-enough-key-0001:trade, long-enough-key-0002 ,"
            f"sha256:{digest}:trade,sha256:{digest.upper()}"
        }
    )
    assert [(k.scope, k.is_hashed) for k in settings.api_keys] == [
        (ApiScope.TRADE, False),
        (ApiScope.READ, False),
        (ApiScope.TRADE, True),
        (ApiScope.READ, True),
    ]
    with pytest.raises(ValidationError):
        ApiKey(secret=SecretStr("short"))
