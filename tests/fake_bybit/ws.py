"""The private WebSocket (``/v5/private``) as Bybit serves it.

Frames follow the docs (``websocket/wss-authentication.mdx`` and the private topic pages):

* ``{"op":"auth","args":[key, expires_ms, hex_hmac("GET/realtime" + expires)]}`` →
  ``{"success":true,"ret_msg":"","op":"auth","conn_id":…}``; a wrong key, a wrong signature,
  malformed args or an ``expires`` not later than the server clock →
  ``{"success":false,"ret_msg":"Params Error","op":"auth","conn_id":…}`` and the connection
  stays open (the client may retry; pybit gives up and closes on its own).
* ``{"op":"subscribe","req_id"?:…,"args":["order","execution",…]}`` → the private ack
  ``{"success":true,"ret_msg":"","op":"subscribe","conn_id":…}`` (with ``req_id`` echoed when
  sent). The subscription takes effect at once, but the connection then goes quiet for
  ``ack_delay`` seconds before the ack and whatever follows it are sent, in order: pybit 5.17
  records a subscription only after sending it, and an instant ack kills its stream.
  Before authentication: ``success:false``, ``ret_msg`` "Request not authorized".
* ``{"op":"ping"}`` → ``{"op":"pong","args":["<server ms>"],"conn_id":…}`` (``req_id`` echoed);
  protocol-level pings are answered by aiohttp.
* Pushes: ``{"id","topic","creationTime","data":[item, …]}``: one message per topic and
  change, holding every item of that topic the change produced (several executions and
  orders when a price crosses several orders, both hedge sides), in the order the changes
  happened; ``topic`` is the name the connection subscribed with (``order`` or
  ``order.linear``). ``order``, ``execution``, ``position`` and ``wallet`` are pushed;
  ``execution.fast``, ``greeks`` and ``dcp`` are accepted but never pushed.
* Out of order: with ``executions_out_of_order`` set, each change's execution message comes
  after its order message, its items newest first; across changes, after
  :meth:`PrivateStream.hold_executions`, execution items are held back
  (orders, positions and wallets still go out) until :meth:`PrivateStream.release_executions`
  pushes them in one message, newest first by default.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import string
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import WSMsgType, web

from tests.fake_bybit.signing import ws_auth_signature
from tests.fake_bybit.state import Event

_TOPICS = {"order", "execution", "execution.fast", "position", "wallet", "greeks", "dcp"}
_CATEGORY_TOPICS = {
    f"{base}.{category}"
    for base in ("order", "execution", "execution.fast")
    for category in ("spot", "linear", "inverse", "option")
} | {f"position.{category}" for category in ("linear", "inverse", "option")}


def _conn_id() -> str:
    alphabet = string.ascii_lowercase + string.digits
    body = "".join(secrets.choice(alphabet) for _ in range(20))
    return f"{body}-{secrets.choice(alphabet)}{secrets.choice(alphabet)}"


@dataclass(eq=False)
class _Connection:
    ws: web.WebSocketResponse
    request: web.Request
    conn_id: str = field(default_factory=_conn_id)
    authenticated: bool = False
    topics: set[str] = field(default_factory=set)
    #: Frames to send in order; a float is a pause in seconds, ``None`` ends the writer.
    outbox: asyncio.Queue[str | float | None] = field(default_factory=asyncio.Queue)
    closed: bool = False

    def send(self, message: dict[str, Any]) -> None:
        if not self.closed:
            self.outbox.put_nowait(json.dumps(message))

    def topic_for(self, base: str, category: str) -> str | None:
        if base in self.topics:
            return base
        specific = f"{base}.{category}"
        return specific if specific in self.topics else None


class PrivateStream:
    """Every private connection of the fake server."""

    def __init__(
        self,
        *,
        api_key: str,
        api_secret: str,
        uid: str,
        clock: Callable[[], int],
        ack_delay: float,
    ) -> None:
        self._api_key = api_key
        self._api_secret = api_secret
        self._uid = uid
        self._clock = clock
        self._ack_delay = float(ack_delay)
        self._connections: set[_Connection] = set()
        self.auth_failures = 0
        self._holding = False
        self._held: list[Event] = []
        #: The switch: each change's executions come after its orders, newest first.
        self.executions_out_of_order = False

    @property
    def authenticated_connections(self) -> int:
        return sum(1 for c in self._connections if c.authenticated and not c.closed)

    async def handle(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse(autoping=True)
        await ws.prepare(request)
        conn = _Connection(ws, request)
        self._connections.add(conn)
        writer = asyncio.create_task(self._write(conn))
        try:
            async for frame in ws:
                if frame.type is WSMsgType.TEXT:
                    self._on_text(conn, frame.data)
        finally:
            conn.closed = True
            self._connections.discard(conn)
            conn.outbox.put_nowait(None)
            with contextlib.suppress(asyncio.CancelledError):
                await writer
        return ws

    async def _write(self, conn: _Connection) -> None:
        while (item := await conn.outbox.get()) is not None:
            if isinstance(item, float):
                await asyncio.sleep(item)
                continue
            try:
                await conn.ws.send_str(item)
            except (ConnectionError, RuntimeError):
                return

    def _on_text(self, conn: _Connection, text: str) -> None:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict):
            conn.send({"success": False, "ret_msg": "Invalid request", "conn_id": conn.conn_id})
            return
        op = message.get("op")
        reply: dict[str, Any] = {}
        if "req_id" in message:
            reply["req_id"] = message["req_id"]
        if op == "auth":
            self._auth(conn, message.get("args"), reply)
        elif op == "ping":
            conn.send(
                {**reply, "op": "pong", "args": [str(self._clock())], "conn_id": conn.conn_id}
            )
        elif op in ("subscribe", "unsubscribe"):
            self._subscribe(conn, op, message.get("args"), reply)
        else:
            conn.send(
                {
                    "success": False,
                    "ret_msg": f"Invalid op: {op}",
                    "conn_id": conn.conn_id,
                    **reply,
                    "op": op,
                }
            )

    def _auth(self, conn: _Connection, args: Any, reply: dict[str, Any]) -> None:
        ok = False
        if isinstance(args, list) and len(args) == 3:
            key, expires, signature = args
            if isinstance(expires, str) and expires.isdigit():
                expires = int(expires)
            ok = (
                key == self._api_key
                and isinstance(expires, int)
                and not isinstance(expires, bool)
                and expires > self._clock()
                and isinstance(signature, str)
                and signature.lower() == ws_auth_signature(self._api_secret, expires)
            )
        if ok:
            conn.authenticated = True
        else:
            self.auth_failures += 1
        conn.send(
            {
                "success": ok,
                "ret_msg": "" if ok else "Params Error",
                "op": "auth",
                "conn_id": conn.conn_id,
                **reply,
            }
        )

    def _subscribe(self, conn: _Connection, op: str, args: Any, reply: dict[str, Any]) -> None:
        def answer(success: bool, ret_msg: str) -> dict[str, Any]:
            return {"success": success, "ret_msg": ret_msg, "op": op, "conn_id": conn.conn_id}

        if not conn.authenticated:
            conn.send({**answer(False, "Request not authorized"), **reply})
            return
        if not isinstance(args, list) or not args or not all(isinstance(a, str) for a in args):
            conn.send({**answer(False, "Invalid args"), **reply})
            return
        unknown = [a for a in args if a not in _TOPICS and a not in _CATEGORY_TOPICS]
        if unknown:
            conn.send({**answer(False, f"Invalid topic: {','.join(unknown)}"), **reply})
            return
        bases = {a.split(".")[0] for a in args if a in _CATEGORY_TOPICS}
        if bases & set(args):
            conn.send({**answer(False, "Cannot mix all-in-one and category topics"), **reply})
            return
        if op == "subscribe":
            conn.topics.update(args)
        else:
            conn.topics.difference_update(args)
        conn.outbox.put_nowait(self._ack_delay)
        conn.send({**answer(True, ""), **reply})

    # ------------------------------------------------------------------ pushes

    def publish(self, events: Iterable[Event]) -> None:
        """Push the events of one change: one message per topic, several items each."""
        pending = list(events)
        if self.executions_out_of_order:
            executions = [e for e in pending if e[0] == "execution"]
            pending = [e for e in pending if e[0] != "execution"] + executions[::-1]
        if self._holding:
            self._held += [e for e in pending if e[0] == "execution"]
            pending = [e for e in pending if e[0] != "execution"]
        self._push(pending)

    def hold_executions(self) -> None:
        self._holding = True

    def release_executions(self, *, newest_first: bool = True) -> None:
        held, self._held, self._holding = self._held, [], False
        if newest_first:
            held.reverse()
        self._push(held)

    def _push(self, events: list[Event]) -> None:
        groups: dict[str, list[Event]] = {}
        for event in events:
            groups.setdefault(event[0], []).append(event)
        now = self._clock()
        for base, group in groups.items():
            first = group[0][2]
            if base == "execution":
                message_id = f"{self._uid}_{first['symbol']}_{first['seq']}"
            else:
                message_id = f"{self._uid}{uuid.uuid4()}"
            for conn in list(self._connections):
                if not conn.authenticated:
                    continue
                by_topic: dict[str, list[dict[str, Any]]] = {}
                for _, category, item in group:
                    topic = conn.topic_for(base, category)
                    if topic is not None:
                        by_topic.setdefault(topic, []).append(item)
                for topic, items in by_topic.items():
                    conn.send(
                        {"id": message_id, "topic": topic, "creationTime": now, "data": items}
                    )

    def push_raw(self, message: dict[str, Any]) -> None:
        for conn in list(self._connections):
            if conn.authenticated and conn.topics:
                conn.send(message)

    def drop_all(self) -> None:
        """Cut every connection at the TCP level, without a close frame."""
        for conn in list(self._connections):
            conn.closed = True
            transport = conn.request.transport
            if transport is not None:
                transport.abort()

    async def close_all(self) -> None:
        for conn in list(self._connections):
            await conn.ws.close()
