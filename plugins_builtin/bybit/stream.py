"""pybit's private WebSocket, subclassed just enough to be supervised from asyncio.

What the subclass changes, and why (pybit 5.17 behaviour, see the Bybit notes §6):

* ``_connect`` ignores pybit's URL template and uses the configured address: pybit has no
  way to point a ``WebSocket`` at another host (it formats a module constant).
* ``_on_message`` hands every frame to a :class:`StreamListener` *as received* (the raw
  text, so the gateway forwards it byte for byte) and never raises: in pybit an exception
  on the socket thread (a failed auth, a subscribe acknowledgement racing its bookkeeping,
  an error in a callback) closes the stream for good. pybit's own dispatch is not used.
* ``_on_error`` reports the disconnect and closes the socket without pybit's reconnect,
  which gives up after a few attempts and would hide the gap: the gateway reconnects
  itself, so it knows when messages may have been missed.
* :meth:`abandon` ends a stream from outside, including one stuck in pybit's
  ``while not self.is_connected(): time.sleep(...)`` loops (``is_connected`` turns true so
  those loops end, and the next send fails).
"""

from __future__ import annotations

import json
import logging
import time
from typing import Any, Protocol

from pybit.unified_trading import WebSocket

__all__ = ["PrivateStream", "StreamListener"]

log = logging.getLogger(__name__)


class StreamListener(Protocol):
    """Called on the socket's thread; implementations must be quick and never raise."""

    def attach(self, stream: PrivateStream) -> None: ...

    def on_data(self, raw: str, topic: str) -> None: ...

    def on_auth(self, success: bool, reason: str) -> None: ...

    def on_subscribed(self, success: bool, reason: str) -> None: ...

    def on_closed(self, reason: str) -> None: ...


class PrivateStream(WebSocket):  # type: ignore[misc]  # pybit is untyped
    """One authenticated connection to Bybit's private stream (``channel_type="private"``).

    Constructing it connects and authenticates (blocking); call it from a worker thread.
    """

    def __init__(self, url: str, listener: StreamListener, **kwargs: Any) -> None:
        # Set before pybit's constructor, which connects from inside itself.
        self._url = url
        self._listener = listener
        self._abandoned = False
        self.last_activity = time.monotonic()
        listener.attach(self)
        super().__init__(channel_type="private", restart_on_error=False, **kwargs)

    # -- pybit overrides -------------------------------------------------------------------

    def _connect(self, url: str) -> None:
        super()._connect(self._url)

    def is_connected(self) -> bool:
        if self._abandoned:
            return True  # releases pybit's wait loops; the next send raises
        return bool(super().is_connected())

    def _on_message(self, message: str) -> None:
        self.last_activity = time.monotonic()
        try:
            self._dispatch(message)
        except Exception:
            log.exception(
                "ws stream: could not handle a frame; it is not forwarded: %.300s", message
            )

    def _on_pong(self) -> None:
        self.last_activity = time.monotonic()
        try:
            super()._on_pong()
        except Exception:
            log.debug("ws stream: custom ping failed", exc_info=True)

    def _on_error(self, error: Exception) -> None:
        try:
            self._listener.on_closed(f"{type(error).__name__}: {error}")
        finally:
            self._close_quietly()

    def _on_close(self) -> None:
        self._listener.on_closed("closed")

    # -- ours ------------------------------------------------------------------------------

    def open(self) -> bool:
        """True while the socket is connected (unlike ``is_connected`` once abandoned)."""
        return not self._abandoned and bool(super().is_connected())

    def abandon(self) -> None:
        """Close for good, from any thread; blocks briefly while the socket closes."""
        self._abandoned = True
        self._close_quietly()

    def _close_quietly(self) -> None:
        try:
            self.exit()
        except Exception:
            log.debug("ws stream: error while closing", exc_info=True)

    def _dispatch(self, raw: str) -> None:
        message = json.loads(raw)
        if not isinstance(message, dict):
            log.warning("ws stream: ignoring a frame that is not an object: %.300s", raw)
            return
        topic = message.get("topic")
        if isinstance(topic, str) and "data" in message:
            self._listener.on_data(raw, topic)
            return
        op = message.get("op")
        if op == "auth":
            self._listener.on_auth(message.get("success") is True, str(message.get("ret_msg")))
        elif op == "subscribe":
            self._listener.on_subscribed(
                message.get("success") is True, str(message.get("ret_msg"))
            )
        elif op in ("pong", "ping") or message.get("ret_msg") == "pong":
            return
        else:
            log.info("ws stream: unexpected frame: %.300s", raw)
