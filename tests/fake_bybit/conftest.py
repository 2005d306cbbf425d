from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, TypeVar

import aiohttp
import pytest
from pybit.unified_trading import HTTP
from yarl import URL

from tests.fake_bybit import FakeBybit
from tests.fake_bybit.signing import signed_headers

API_KEY = "test-key"
API_SECRET = "test-secret"
#: Bybit's documented payloads, copied verbatim into the repository.
EXAMPLES = Path(__file__).resolve().parents[1] / "flow" / "bybit_examples"

T = TypeVar("T")


def example(name: str) -> dict[str, Any]:
    """A verbatim Bybit docs payload."""
    data: dict[str, Any] = json.loads((EXAMPLES / name).read_text())
    return data


def assert_same_shape(ours: dict[str, Any], docs: dict[str, Any], *, where: str) -> None:
    """Every field of the docs payload is present, with the same JSON type."""
    missing = sorted(set(docs) - set(ours))
    assert not missing, f"{where}: missing {missing}"
    for key, value in docs.items():
        if value is None:
            continue
        assert type(ours[key]) is type(value), f"{where}.{key}: {ours[key]!r} vs docs {value!r}"


@pytest.fixture
async def fake() -> AsyncIterator[FakeBybit]:
    async with FakeBybit(api_key=API_KEY, api_secret=API_SECRET) as server:
        yield server


def pybit_session(fake: FakeBybit, **kwargs: Any) -> HTTP:
    """pybit's own client, unmodified, pointed at the fake."""
    session = HTTP(testnet=True, api_key=API_KEY, api_secret=API_SECRET, recv_window=5000, **kwargs)
    session.endpoint = fake.http_url
    return session


@pytest.fixture
def session(fake: FakeBybit) -> HTTP:
    return pybit_session(fake)


async def call(fn: Callable[..., T], /, **kwargs: Any) -> T:
    """pybit blocks; run it off the event loop."""
    return await asyncio.to_thread(fn, **kwargs)


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    text: str

    def json(self) -> dict[str, Any]:
        data: dict[str, Any] = json.loads(self.text, parse_float=Decimal)
        return data


async def raw_request(
    fake: FakeBybit,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> RawResponse:
    """One HTTP request with the query string and body sent byte for byte as given."""
    url = URL(f"{fake.http_url}{path}" + (f"?{query}" if query else ""), encoded=True)
    async with (
        aiohttp.ClientSession() as client,
        client.request(method, url, data=body or None, headers=headers or {}) as response,
    ):
        return RawResponse(response.status, dict(response.headers), await response.text())


async def signed_request(
    fake: FakeBybit,
    method: str,
    path: str,
    *,
    query: str = "",
    body: bytes = b"",
    timestamp_ms: int | None = None,
    api_key: str = API_KEY,
    api_secret: str = API_SECRET,
    recv_window: int | None = 5000,
) -> RawResponse:
    headers = signed_headers(
        api_key=api_key,
        api_secret=api_secret,
        timestamp_ms=int(time.time() * 1000) if timestamp_ms is None else timestamp_ms,
        payload=body if method == "POST" else query.encode(),
        recv_window=recv_window,
    )
    headers["Content-Type"] = "application/json"
    return await raw_request(fake, method, path, query=query, body=body, headers=headers)
