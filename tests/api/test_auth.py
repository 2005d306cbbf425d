"""Every /api/v1 route needs a key; write routes need the trade scope; keys never leak."""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi import FastAPI
from pydantic import SecretStr

from api.security import ApiKeyError, KeyRing
from om_core.config import ApiKey, ApiScope
from tests.api.conftest import HASHED_TRADE_KEY, KEYS, READ_KEY, TRADE_KEY, Api, api_for, error_code

READ_METHODS = {"GET", "HEAD", "OPTIONS"}


def _routes(app: FastAPI) -> Iterator[Any]:
    """Every route of ``app``, included routers flattened, with its served path."""
    try:
        from fastapi.routing import iter_route_contexts
    except ImportError:  # FastAPI before 0.160 lists every route in app.routes itself
        yield from app.routes
    else:
        yield from iter_route_contexts(app.routes)


def _api_routes(api: Api) -> list[tuple[str, str]]:
    """(method, concrete path) of every /api/v1 route the app serves."""
    out = []
    for route in _routes(api.app):
        path = getattr(route, "path", None)
        methods = getattr(route, "methods", None)
        if not path or not methods or not path.startswith("/api/v1"):
            continue
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        out.extend((method, concrete) for method in sorted(methods))
    return out


async def test_every_api_route_refuses_missing_and_unknown_keys_and_read_keys_on_writes(
    api: Api,
) -> None:
    routes = _api_routes(api)
    # The routes this suite knows of must be among them, so the loop cannot pass empty.
    assert {("GET", "/api/v1/orders"), ("POST", "/api/v1/orders/1/cancel")} <= set(routes)
    assert ("PUT", "/api/v1/trading-state") in routes
    for method, path in routes:
        missing = await api.client.request(method, path)
        assert missing.status_code == 401, (method, path, missing.text)
        assert error_code(missing) == "missing_api_key"

        wrong = await api.client.request(method, path, headers={"X-API-Key": "not-a-key"})
        assert wrong.status_code == 401, (method, path, wrong.text)
        assert error_code(wrong) == "invalid_api_key"

        # A key differing from a real one in its last character is just as unknown.
        near = await api.client.request(method, path, headers={"X-API-Key": TRADE_KEY[:-1]})
        assert near.status_code == 401, (method, path)

        as_reader = await api.client.request(method, path, headers={"X-API-Key": READ_KEY})
        if method in READ_METHODS:
            assert as_reader.status_code not in (401, 403), (method, path, as_reader.text)
        else:
            assert as_reader.status_code == 403, (method, path, as_reader.text)
            assert error_code(as_reader) == "insufficient_scope"


async def test_trade_keys_plain_and_hashed_both_work_at_once(api: Api) -> None:
    for key in ("trade", "hashed"):
        response = await api.put(
            "/api/v1/trading-state", {"state": "active", "reason": key}, key=key
        )
        assert response.status_code == 200, response.text
        assert (await api.get("/api/v1/orders", key=key)).status_code == 200


async def test_keys_are_never_logged(api: Api, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    await api.get("/api/v1/orders", key="read")
    await api.get("/api/v1/orders", key="not-a-key-but-secret-looking")
    await api.put("/api/v1/trading-state", {"state": "halted", "reason": "test"}, key="hashed")
    await api.post("/api/v1/orders/client:nope/cancel", key="trade")
    await api.put("/api/v1/trading-state", {"state": "halted", "reason": "x"}, key="read")
    assert "api-key:" in caplog.text  # the change was attributed, by fingerprint
    for secret in (*KEYS.values(), "not-a-key-but-secret-looking"):
        assert secret not in caplog.text


async def test_without_configured_keys_the_api_is_open(pg_url: str) -> None:
    # `om run` only allows this on a loopback address.
    async with api_for(pg_url, env={"OM_API_KEYS": ""}) as api:
        assert (await api.get("/api/v1/orders", key=None)).status_code == 200
        body = {"state": "reducing", "reason": "local operator"}
        assert (await api.put("/api/v1/trading-state", body, key=None)).status_code == 200


def test_keyring_matches_plain_and_hashed_keys_by_scope() -> None:
    hexdigest = hashlib.sha256(HASHED_TRADE_KEY.encode()).hexdigest().upper()
    ring = KeyRing(
        [
            ApiKey(secret=SecretStr(READ_KEY), scope=ApiScope.READ),
            ApiKey(secret=SecretStr(f"sha256:{hexdigest}"), scope=ApiScope.TRADE),
        ]
    )
    reader = ring.identify(READ_KEY)
    trader = ring.identify(HASHED_TRADE_KEY)
    assert reader is not None and reader.scope is ApiScope.READ
    assert trader is not None and trader.scope is ApiScope.TRADE
    assert trader.actor == "api-key:" + hexdigest.lower()[:8]
    assert ring.identify(f"sha256:{hexdigest}") is None  # the digest is not the key
    assert ring.identify("") is None


@pytest.mark.parametrize("secret", ["sha256:abc", "sha256:" + "g" * 64])
def test_keyring_refuses_malformed_hashed_keys_without_echoing_them(secret: str) -> None:
    with pytest.raises(ApiKeyError) as info:
        # Settings refuse it first (tests/api/test_edges.py); the key ring checks again.
        KeyRing([ApiKey.model_construct(secret=SecretStr(secret), scope=ApiScope.TRADE)])
    assert secret not in str(info.value)
