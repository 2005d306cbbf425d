"""The private WebSocket, through pybit's own client and through a bare ``websockets`` one.

pybit reads its private URL from the module constant ``PRIVATE_WSS`` when a ``WebSocket`` is
built, so the tests point it at the fake with ``monkeypatch`` (pybit itself is unmodified).
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from decimal import Decimal
from typing import Any

import pybit.unified_trading
import pytest
from pybit.unified_trading import HTTP, WebSocket
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from tests.conftest import wait_for
from tests.fake_bybit import FakeBybit
from tests.fake_bybit.conftest import API_KEY, API_SECRET, assert_same_shape, call, example
from tests.fake_bybit.signing import ws_auth_signature

DEADLINE = 5.0


class Inbox:
    """Collects messages from pybit's socket thread for the test's event loop."""

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()

    def __call__(self, message: dict[str, Any]) -> None:
        self._loop.call_soon_threadsafe(self._queue.put_nowait, message)

    async def next(self) -> dict[str, Any]:
        return await asyncio.wait_for(self._queue.get(), DEADLINE)


@pytest.fixture
async def stream(
    fake: FakeBybit, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[WebSocket, Inbox]]:
    monkeypatch.setattr(pybit.unified_trading, "PRIVATE_WSS", fake.ws_private_url)
    ws = await call(
        WebSocket,
        testnet=True,
        channel_type="private",
        api_key=API_KEY,
        api_secret=API_SECRET,
    )
    inbox = Inbox()
    try:
        await call(ws.order_stream, callback=inbox)
        await call(ws.execution_stream, callback=inbox)
        await wait_for(lambda: ws.auth, timeout=DEADLINE, message="pybit's auth to succeed")
        yield ws, inbox
    finally:
        await call(ws.exit)


async def test_pybit_receives_order_and_execution_messages(
    fake: FakeBybit, session: HTTP, stream: tuple[WebSocket, Inbox]
) -> None:
    ws, inbox = stream
    assert ws.is_connected() and fake.ws_connections == 1

    await call(
        session.place_order,
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        orderType="Limit",
        qty="0.01",
        price="59000",
        orderLinkId="w-1",
    )
    new = await inbox.next()
    await fake.fill("w-1")
    execution, filled = await inbox.next(), await inbox.next()

    assert new["topic"] == "order" and new["data"][0]["orderStatus"] == "New"
    assert execution["topic"] == "execution"
    assert filled["topic"] == "order" and filled["data"][0]["orderStatus"] == "Filled"
    docs_order = example("docs_ws_order_stream_message.json")
    docs_execution = example("docs_ws_execution_stream_message.json")
    for message, docs in ((new, docs_order), (execution, docs_execution), (filled, docs_order)):
        assert_same_shape(message, docs, where=message["topic"])
        assert_same_shape(message["data"][0], docs["data"][0], where=f"{message['topic']}.data")
    item = filled["data"][0]
    assert item["orderLinkId"] == "w-1" and item["category"] == "linear"
    assert item["cumExecQty"] == "0.010" and item["leavesQty"] == "0.000"
    assert item["avgPrice"] == "59000" and item["cumExecFee"] == "0.118"
    assert int(item["updatedTime"]) >= int(item["createdTime"])
    assert new["data"][0]["avgPrice"] == "" and new["data"][0]["cumExecValue"] == "0"
    trade = execution["data"][0]
    assert trade["execQty"] == "0.01" and trade["isMaker"] is True
    assert trade["orderId"] == item["orderId"] and trade["execType"] == "Trade"


async def test_each_fill_has_a_unique_exec_id(
    fake: FakeBybit, session: HTTP, stream: tuple[WebSocket, Inbox]
) -> None:
    _, inbox = stream
    await call(
        session.place_order,
        category="linear",
        symbol="ETHUSDT",
        side="Sell",
        orderType="Limit",
        qty="0.03",
        price="3100",
        orderLinkId="w-2",
    )
    assert (await inbox.next())["data"][0]["orderStatus"] == "New"

    statuses, exec_ids = [], []
    for _ in range(3):
        await fake.fill("w-2", Decimal("0.01"))
        execution, order = await inbox.next(), await inbox.next()
        exec_ids.append(execution["data"][0]["execId"])
        statuses.append(order["data"][0]["orderStatus"])

    assert statuses == ["PartiallyFilled", "PartiallyFilled", "Filled"]
    assert len(set(exec_ids)) == 3


async def test_drop_ws_cuts_pybit_off_and_pybit_comes_back_subscribed(
    fake: FakeBybit, session: HTTP, stream: tuple[WebSocket, Inbox]
) -> None:
    _, inbox = stream

    await fake.drop_ws()

    assert fake.ws_connections == 0
    await wait_for(lambda: fake.ws_connections == 1, timeout=DEADLINE, message="a reconnect")
    await call(
        session.place_order,
        category="linear",
        symbol="BTCUSDT",
        side="Buy",
        orderType="Market",
        qty="0.01",
        orderLinkId="w-3",
    )
    execution, order = await inbox.next(), await inbox.next()
    assert execution["data"][0]["orderLinkId"] == "w-3"
    assert order["data"][0]["orderStatus"] == "Filled"


# ---------------------------------------------------------------- bare client


def auth_frame(expires: int | None = None, *, secret: str = API_SECRET, key: str = API_KEY) -> str:
    expires = int(time.time() * 1000) + 10_000 if expires is None else expires
    return json.dumps({"op": "auth", "args": [key, expires, ws_auth_signature(secret, expires)]})


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), DEADLINE))
    return message


@pytest.fixture
async def client(fake: FakeBybit) -> AsyncIterator[ClientConnection]:
    async with connect(fake.ws_private_url) as ws:
        yield ws


async def authed(ws: ClientConnection) -> dict[str, Any]:
    await ws.send(auth_frame())
    return await receive(ws)


async def test_auth_success_is_the_docs_frame(fake: FakeBybit, client: ClientConnection) -> None:
    answer = await authed(client)

    docs = example("docs_ws_auth_success_response.json")
    assert list(answer) == list(docs)
    assert answer["success"] is True and answer["ret_msg"] == "" and answer["op"] == "auth"
    assert isinstance(answer["conn_id"], str) and answer["conn_id"]
    assert fake.ws_connections == 1


@pytest.mark.parametrize(
    "frame",
    [
        pytest.param(auth_frame(secret="wrong"), id="bad-signature"),
        pytest.param(auth_frame(key="someone-else"), id="bad-key"),
        pytest.param(auth_frame(int(time.time() * 1000) - 1), id="expired"),
        pytest.param(json.dumps({"op": "auth", "args": [API_KEY]}), id="malformed"),
    ],
)
async def test_failed_auth_is_reported_and_the_socket_stays_open(
    fake: FakeBybit, client: ClientConnection, frame: str
) -> None:
    await client.send(frame)
    failure = await receive(client)

    assert failure["success"] is False and failure["op"] == "auth"
    assert failure["ret_msg"] == "Params Error" and failure["conn_id"]
    assert fake.auth_failures == 1 and fake.ws_connections == 0
    assert (await authed(client))["success"] is True
    assert fake.ws_connections == 1


async def test_subscribe_before_auth_is_refused(client: ClientConnection) -> None:
    await client.send(json.dumps({"op": "subscribe", "req_id": "s1", "args": ["order"]}))

    answer = await receive(client)

    assert answer["success"] is False and answer["ret_msg"] == "Request not authorized"
    assert answer["req_id"] == "s1" and answer["op"] == "subscribe"


async def test_subscribe_ack_is_the_docs_frame_and_echoes_req_id(
    client: ClientConnection,
) -> None:
    await authed(client)

    sent = time.monotonic()
    await client.send(json.dumps({"op": "subscribe", "args": ["order", "execution"]}))
    plain = await receive(client)
    # pybit records a subscription only after sending it: an instant ack would kill its stream.
    assert time.monotonic() - sent >= 0.015
    await client.send(json.dumps({"op": "subscribe", "req_id": "r-7", "args": ["wallet"]}))
    with_id = await receive(client)

    docs = example("docs_ws_private_subscribe_response.json")
    assert list(plain) == list(docs)
    assert plain["success"] is True and plain["op"] == "subscribe" and plain["ret_msg"] == ""
    assert with_id["req_id"] == "r-7" and with_id["success"] is True


async def test_bad_topics_are_refused(client: ClientConnection) -> None:
    await authed(client)

    await client.send(json.dumps({"op": "subscribe", "args": ["orderbook.1.BTCUSDT"]}))
    unknown = await receive(client)
    await client.send(json.dumps({"op": "subscribe", "args": ["order", "order.linear"]}))
    mixed = await receive(client)

    assert unknown["success"] is False and mixed["success"] is False


async def test_ping_gets_the_private_pong(client: ClientConnection) -> None:
    await client.send(json.dumps({"op": "ping", "req_id": "test"}))
    pong = await receive(client)
    await client.send(json.dumps({"op": "ping"}))
    bare = await receive(client)

    assert list(pong) == ["req_id", "op", "args", "conn_id"]
    assert pong["op"] == "pong" and pong["req_id"] == "test"
    assert abs(int(pong["args"][0]) - time.time() * 1000) < 60_000
    assert "req_id" not in bare and bare["op"] == "pong"
    await asyncio.wait_for(await client.ping(), DEADLINE)  # protocol-level ping


async def push_order(fake: FakeBybit, session: HTTP, **params: Any) -> None:
    params = {
        "category": "linear",
        "symbol": "BTCUSDT",
        "side": "Buy",
        "orderType": "Limit",
        "qty": "0.01",
        "price": "59000",
        **params,
    }
    await call(session.place_order, **params)


async def test_category_topic_gets_only_its_category(
    fake: FakeBybit, session: HTTP, client: ClientConnection
) -> None:
    await authed(client)
    await client.send(json.dumps({"op": "subscribe", "args": ["order.spot"]}))
    assert (await receive(client))["success"] is True

    await push_order(fake, session, orderLinkId="lin")
    await push_order(fake, session, category="spot", qty="0.001", orderLinkId="sp")

    message = await receive(client)
    assert message["topic"] == "order.spot"
    assert message["data"][0]["orderLinkId"] == "sp"


async def test_unsubscribe_stops_the_topic(
    fake: FakeBybit, session: HTTP, client: ClientConnection
) -> None:
    await authed(client)
    await client.send(json.dumps({"op": "subscribe", "args": ["order", "position"]}))
    await receive(client)
    await client.send(json.dumps({"op": "unsubscribe", "args": ["order"]}))
    assert (await receive(client))["op"] == "unsubscribe"

    await push_order(fake, session)

    assert (await receive(client))["topic"] == "position"


async def test_position_and_wallet_follow_a_fill(
    fake: FakeBybit, session: HTTP, client: ClientConnection
) -> None:
    await authed(client)
    await client.send(json.dumps({"op": "subscribe", "args": ["position", "wallet"]}))
    await receive(client)

    await push_order(fake, session, orderType="Market")
    position, wallet = await receive(client), await receive(client)

    assert_same_shape(position, example("docs_ws_position_stream_message.json"), where="pos")
    assert_same_shape(
        position["data"][0],
        example("docs_ws_position_stream_message.json")["data"][0],
        where="pos.data",
    )
    assert position["data"][0]["size"] == "0.010" and position["data"][0]["side"] == "Buy"
    assert_same_shape(
        wallet["data"][0],
        example("docs_ws_wallet_stream_message.json")["data"][0],
        where="wallet.data",
    )


async def test_push_raw_reaches_subscribed_sockets_only(
    fake: FakeBybit, client: ClientConnection
) -> None:
    async with connect(fake.ws_private_url) as idle:
        await authed(client)
        await authed(idle)
        await client.send(json.dumps({"op": "subscribe", "args": ["order"]}))
        await receive(client)

        await fake.push_raw({"topic": "order", "data": "anything"})

        assert await receive(client) == {"topic": "order", "data": "anything"}
        await idle.send(json.dumps({"op": "ping"}))
        assert (await receive(idle))["op"] == "pong"  # nothing else was queued before it


async def test_drop_ws_closes_abruptly(fake: FakeBybit, client: ClientConnection) -> None:
    await authed(client)

    await fake.drop_ws()

    with pytest.raises(ConnectionClosed) as closed:
        await asyncio.wait_for(client.recv(), DEADLINE)
    assert closed.value.rcvd is None  # no close frame: the TCP connection was cut
    assert fake.ws_connections == 0
