"""Live updates for the console: server-sent events fed from the service's live feed.

One :class:`Broadcaster` per app takes what the service produces anyway (published outbox
events, recorded dead letters, signals the API queued), renders each change once as the row
the page shows, and hands it to every connected page; nothing is polled per client. Rows of
signals that were rejected or placed are read from the database once per batch of events,
shared by every client; positions are re-read (with their unrealized PnL) after a fill and
every few seconds while someone watches, since prices move.

A client that falls behind by :data:`CLIENT_BACKLOG` messages is disconnected; its browser
reconnects and reloads its tables, so it never shows a stale picture silently.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from sqlmodel import col, select

from api.console.auth import ConsoleSession, Viewer
from api.console.pages import signal_view
from api.console.render import macro, render
from api.routes import positions as position_routes
from api.security import ANONYMOUS
from om_core import trading_state
from om_core.db.models import SignalRecord
from om_core.events.live import LiveEvent
from om_core.service import Service

__all__ = ["Broadcaster", "router"]

log = logging.getLogger("api.console")

router = APIRouter(include_in_schema=False)

CLIENT_BACKLOG = 2000
HEARTBEAT_SECONDS = 15.0
POSITIONS_EVERY_SECONDS = 5.0
#: Positions are re-read after fills at most this often (50 fills a second are one read).
POSITIONS_AFTER_FILL_SECONDS = 1.0
_BATCH = 500


@dataclass(eq=False)
class _Client:
    can_trade: bool
    queue: asyncio.Queue[str | None] = field(default_factory=lambda: asyncio.Queue(CLIENT_BACKLOG))


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'), default=str)}\n\n"


class Broadcaster:
    def __init__(self, service: Service) -> None:
        self._service = service
        self._clients: set[_Client] = set()
        self._inbox: asyncio.Queue[LiveEvent] | None = None
        self._task: asyncio.Task[None] | None = None
        self._unsubscribe: Any = None
        self._closed = False
        self._signal_ids: set[str] = set()
        self._positions_due = False
        self._refresh_wake = asyncio.Event()

    # -- clients -------------------------------------------------------------------------------

    def connect(self, session: ConsoleSession) -> _Client | None:
        if self._closed or self._service.live.closed:
            return None
        self._start()
        client = _Client(session.can_trade)
        self._clients.add(client)
        return client

    def disconnect(self, client: _Client) -> None:
        self._clients.discard(client)

    def _start(self) -> None:
        if self._task is None:
            self._inbox = asyncio.Queue()
            self._unsubscribe = self._service.live.subscribe(self._inbox.put_nowait)
            self._task = asyncio.create_task(self._run(), name="console-live")

    def _send(self, text: str, *, trade: str | None = None) -> None:
        """Queue ``text`` for every client (``trade`` instead for clients that may act)."""
        for client in list(self._clients):
            message = trade if trade is not None and client.can_trade else text
            if not message:
                continue
            try:
                client.queue.put_nowait(message)
            except asyncio.QueueFull:
                log.info("a console client fell behind; disconnecting it")
                self._drop(client)

    def _variant(self, render: Callable[[bool], str], trade: bool) -> str:
        """A message rendered for clients that may act (``trade``) or not, only when such a
        client is connected ('' otherwise)."""
        if any(client.can_trade is trade for client in self._clients):
            return render(trade)
        return ""

    def _drop(self, client: _Client) -> None:
        self._clients.discard(client)
        while not client.queue.empty():
            client.queue.get_nowait()
        client.queue.put_nowait(None)

    def close(self) -> None:
        self._closed = True
        for client in list(self._clients):
            self._drop(client)
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()

    # -- the loop ------------------------------------------------------------------------------

    async def _run(self) -> None:
        """Render and fan out; reading the database is left to :meth:`_refresh`, so a slow
        read never holds an order row back."""
        assert self._inbox is not None
        inbox = self._inbox
        refresher = asyncio.create_task(self._refresh(), name="console-live-refresh")
        try:
            while True:
                batch = [await inbox.get()]
                while not inbox.empty() and len(batch) < _BATCH:
                    batch.append(inbox.get_nowait())
                if any(item.kind == "closed" for item in batch):
                    self.close()
                    return
                try:
                    self._handle(batch)
                except Exception:
                    log.exception("console live updates: a batch failed; going on")
        finally:
            refresher.cancel()

    def _handle(self, batch: list[LiveEvent]) -> None:
        signal_ids: list[str] = []
        for item in batch:
            data = item.data
            if item.kind == "event":
                if self._event(data, signal_ids):
                    self._positions_due = True
            elif item.kind == "dead_letter":
                self._dead_letter(data)
            elif item.kind == "signal_accepted":
                view = {**data, "status": "queued", "received_at": None, "reasons": []}
                html = macro("rows.html", "signal_row", signal_view(view))
                self._send(
                    _sse(
                        "signal", {"signal_id": data["signal_id"], "status": "queued", "html": html}
                    )
                )
        if signal_ids:
            self._signal_ids.update(signal_ids)
        if signal_ids or self._positions_due:
            self._refresh_wake.set()

    async def _refresh(self) -> None:
        """Rows that need the database: signals decided (once per batch of ids, shared by
        every client), positions after fills (at most once a second) and every few seconds."""
        next_positions = time.monotonic() + POSITIONS_EVERY_SECONDS
        positions_not_before = 0.0
        while True:
            now = time.monotonic()
            wake_at = next_positions
            if self._positions_due:
                wake_at = min(wake_at, max(positions_not_before, now))
            try:
                await asyncio.wait_for(self._refresh_wake.wait(), max(wake_at - now, 0.0))
            except TimeoutError:
                pass
            self._refresh_wake.clear()
            try:
                ids, self._signal_ids = self._signal_ids, set()
                if ids and self._clients:
                    await self._signals(sorted(ids))
                now = time.monotonic()
                due = self._positions_due and now >= positions_not_before
                if due or now >= next_positions:
                    self._positions_due = False
                    next_positions = now + POSITIONS_EVERY_SECONDS
                    positions_not_before = now + POSITIONS_AFTER_FILL_SECONDS
                    if self._clients:
                        await self._positions()
            except Exception:
                log.exception("console live updates: a refresh failed; going on")

    def _event(self, event: Any, signal_ids: list[str]) -> bool:
        kind = str(event.get("event_type", ""))
        signal_id = event.get("signal_id")
        occurred = event.get("occurred_at")
        if kind.startswith("order.") and isinstance(event.get("order"), dict):
            order = {**event["order"], "signal_id": signal_id}
            data = {
                "id": order["id"],
                "symbol": order["symbol"],
                "status": order["status"],
                "side": order["side"],
                "occurred_at": occurred,
            }
            self._send(
                self._variant(
                    lambda trade: _sse(
                        "order", {**data, "html": macro("rows.html", "order_row", order, trade)}
                    ),
                    False,
                ),
                trade=self._variant(
                    lambda trade: _sse(
                        "order", {**data, "html": macro("rows.html", "order_row", order, trade)}
                    ),
                    True,
                ),
            )
            fill = event.get("fill")
            if isinstance(fill, dict):
                row = {
                    **fill,
                    "at": occurred,
                    "order_id": order["id"],
                    "symbol": order["symbol"],
                    "side": order["side"],
                }
                self._send(_sse("fill", {"html": macro("rows.html", "fill_row", row)}))
            if signal_id:
                signal_ids.append(signal_id)
            return event.get("position") is not None
        if kind == "signal.rejected" and signal_id:
            signal_ids.append(signal_id)
        elif kind == "trading_state.changed" and isinstance(event.get("trading_state"), dict):
            change = event["trading_state"]
            view = {"state": {"value": change.get("state")}, "reason": change.get("reason", "")}
            badge = render("trading_badge.html", trading=view)
            self._send(_sse("trading_state", {**change, "occurred_at": occurred, "html": badge}))
        return False

    def _dead_letter(self, row: Any) -> None:
        body = bytes(row.get("body", b""))
        view = {
            **row,
            "dead_lettered_at": row.get("created_at"),
            "body_size": len(body),
            "body_preview": body[:2000].decode("utf-8", "replace")[:500],
            "resolved_by": None,
            "resolved_at": None,
        }
        data = {"id": row["id"], "queue": row["queue"], "state": "pending"}
        self._send(
            self._variant(
                lambda trade: _sse(
                    "dead_letter",
                    {**data, "html": macro("rows.html", "dead_letter_row", view, trade)},
                ),
                False,
            ),
            trade=self._variant(
                lambda trade: _sse(
                    "dead_letter",
                    {**data, "html": macro("rows.html", "dead_letter_row", view, trade)},
                ),
                True,
            ),
        )

    async def _signals(self, signal_ids: list[str]) -> None:
        unique = list(dict.fromkeys(signal_ids))
        async with self._service.sessions() as db:
            rows = (
                await db.exec(select(SignalRecord).where(col(SignalRecord.signal_id).in_(unique)))
            ).all()
        for row in rows:
            html = macro("rows.html", "signal_row", signal_view(row))
            self._send(
                _sse("signal", {"signal_id": row.signal_id, "status": row.status, "html": html})
            )

    async def _positions(self) -> None:
        service = self._service
        async with service.sessions() as db:
            listed = await position_routes.list_positions(
                ANONYMOUS, db, service, include_closed=False
            )
            state = await trading_state.get_state(db)
        html = render("positions_rows.html", positions=list(listed.items))
        self._send(_sse("positions", {"html": html}))
        badge = render("trading_badge.html", trading=state)
        self._send(_sse("trading_badge", {"html": badge}))


def _broadcaster(request: Request) -> Broadcaster:
    broadcaster: Broadcaster = request.app.state.console_live
    return broadcaster


@router.get("/console/events")
async def events(request: Request, session: Viewer) -> StreamingResponse:
    broadcaster = _broadcaster(request)
    client = broadcaster.connect(session)

    async def stream() -> AsyncIterator[str]:
        if client is None:
            return
        try:
            yield "retry: 2000\n\n"
            while True:
                try:
                    message = await asyncio.wait_for(client.queue.get(), HEARTBEAT_SECONDS)
                except TimeoutError:
                    yield ": keep-alive\n\n"
                    continue
                if message is None:
                    return
                yield message
        finally:
            broadcaster.disconnect(client)

    return StreamingResponse(
        stream(),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"},
    )


async def stop(broadcaster: Broadcaster) -> None:
    broadcaster.close()
    task = broadcaster._task
    if task is not None:
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
