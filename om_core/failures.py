"""Which failures of a bus message are worth retrying: one classification, in one place.

A consumer (signals, order updates, and their batches) that fails on a message asks
:func:`is_transient`. Only failures *known* to be about the world rather than the message are
retried:

* the database connection was lost or refused (SQLSTATE class ``08``, an invalidated
  connection, the server shutting down or refusing connections: ``57P01``–``57P03``,
  ``53300``), a serialization failure (``40001``), a deadlock (``40P01``), a lock timeout
  (``55P03``); SQLite's "database is locked";
* the broker connection was lost (``ConnectionError``, which aio-pika's and aiormq's connection
  errors are, a closed channel, a publish that was not confirmed);
* the network: timeouts and the socket errors of a lost peer (by ``errno``: an ``OSError``
  raised while converting data, such as ``EOVERFLOW`` from a timestamp, is *not* transient);
* the exchange unreachable, or an order's outcome unknown (the executor's protocol settles it).

Everything else — a ``DataError`` (string too long, numeric overflow, invalid byte sequence),
``ValueError``, ``OverflowError``, a bug — is about this one message: retrying cannot help, so
the consumer dead-letters it at once with the reason (:func:`dead_letter`).

A uniqueness conflict (:func:`is_conflict`) is retried a few times only: the retry sees the row
of the concurrent writer that won. Retries are bounded in time (``OM_RETRY_SECONDS``): a
message whose transient failure outlasts the bound is dead-lettered too, with the last error,
so it never holds a consumer slot for good (:func:`retry_transient`).
"""

from __future__ import annotations

import asyncio
import errno
import logging
import re
import time
from collections.abc import Awaitable, Callable
from contextlib import AbstractContextManager
from typing import TypeVar

from aiormq.exceptions import ChannelInvalidStateError
from sqlalchemy import exc as sa

from om_core.messaging.base import ConsumerActivity, DeadLetter, PublishError
from om_plugins.errors import ExchangeUnavailable, OutcomeUnknown

__all__ = [
    "DEFAULT_RETRY_SECONDS",
    "dead_letter",
    "describe",
    "is_conflict",
    "is_transient",
    "retry_transient",
    "sqlstate",
]

log = logging.getLogger(__name__)
T = TypeVar("T")

DEFAULT_RETRY_SECONDS = 60.0
#: Tries of a uniqueness conflict (the retry sees the row that won the race).
MAX_CONFLICT_RETRIES = 3

#: PostgreSQL SQLSTATEs of failures that are about the server or concurrency, not the data.
_TRANSIENT_STATES = frozenset(
    {
        "40001",  # serialization_failure
        "40P01",  # deadlock_detected
        "55P03",  # lock_not_available (lock_timeout)
        "57P01",  # admin_shutdown
        "57P02",  # crash_shutdown
        "57P03",  # cannot_connect_now
        "53300",  # too_many_connections
    }
)
#: Socket errors of a peer that went away or cannot be reached.
_NETWORK_ERRNOS = frozenset(
    getattr(errno, name)
    for name in (
        "ECONNREFUSED",
        "ECONNRESET",
        "ECONNABORTED",
        "EPIPE",
        "ETIMEDOUT",
        "EHOSTUNREACH",
        "EHOSTDOWN",
        "ENETUNREACH",
        "ENETDOWN",
        "ENETRESET",
        "ENOTCONN",
        "ESHUTDOWN",
        "EAI_AGAIN",
    )
    if hasattr(errno, name)
)
#: SQLite has no SQLSTATE: only a busy database is worth waiting for.
_SQLITE_BUSY = re.compile(r"database is locked|database table is locked|database is busy", re.I)


def sqlstate(exc: BaseException) -> str | None:
    """The PostgreSQL SQLSTATE of ``exc`` (SQLAlchemy-wrapped or asyncpg's own), if any."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        for attribute in ("sqlstate", "pgcode"):
            value = getattr(current, attribute, None)
            if isinstance(value, str) and len(value) == 5:
                return value
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return None


def is_conflict(exc: BaseException) -> bool:
    """A uniqueness (or other integrity) conflict: a concurrent writer got there first."""
    return isinstance(exc, sa.IntegrityError)


def is_transient(exc: BaseException) -> bool:
    """True when ``exc`` is a failure of the world (connection, concurrency), not of the
    message: retrying the same message later can succeed."""
    if isinstance(exc, DeadLetter):
        return False
    if isinstance(exc, ExchangeUnavailable | OutcomeUnknown | PublishError):
        return True
    if isinstance(exc, ChannelInvalidStateError):
        return True  # the broker channel closed under us (aiormq: a RuntimeError)
    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated:
            return True
        state = sqlstate(exc)
        if state is not None:
            return _transient_state(state)
        cause = exc.orig.__cause__ if exc.orig is not None else None
        if cause is not None and _network(cause):
            return True
        return isinstance(exc, sa.OperationalError) and bool(_SQLITE_BUSY.search(str(exc.orig)))
    if isinstance(exc, sa.DisconnectionError | sa.TimeoutError):
        return True  # a connection pool that could not give a working connection in time
    if isinstance(exc, sa.SQLAlchemyError):
        return False
    state = sqlstate(exc)
    if state is not None:
        return _transient_state(state)  # asyncpg used directly
    return _network(exc)


def _transient_state(state: str) -> bool:
    return state.startswith("08") or state in _TRANSIENT_STATES


def _network(exc: BaseException) -> bool:
    if isinstance(exc, ConnectionError | TimeoutError):
        return True
    return isinstance(exc, OSError) and exc.errno in _NETWORK_ERRNOS


def describe(exc: BaseException) -> str:
    """A one-line reason for ``exc`` (its type, SQLSTATE when there is one, and message)."""
    state = sqlstate(exc)
    text = " ".join(str(exc).split()) or "(no message)"
    if isinstance(exc, sa.StatementError) and exc.orig is not None:
        # SQLAlchemy appends the statement and its parameters: long, and the data is in the
        # message already.
        text = " ".join(str(exc.orig).split()) or text
    name = type(exc.orig).__name__ if isinstance(exc, sa.DBAPIError) else type(exc).__name__
    return f"{name}{f' [{state}]' if state else ''}: {text}"[:500]


def dead_letter(exc: BaseException, what: str, *, logger: logging.Logger = log) -> DeadLetter:
    """The :class:`DeadLetter` for a message that failed with ``exc`` (not transient, or
    transient past the retry bound), logged once: a failure about the data in one line, any
    other (a bug) with its traceback."""
    error = exc if isinstance(exc, DeadLetter) else DeadLetter(f"{what} failed: {describe(exc)}")
    if isinstance(exc, DeadLetter | sa.DBAPIError | ValueError | ArithmeticError | OSError):
        logger.warning("dead-lettering: %s", error.reason)
    else:
        logger.error("dead-lettering: %s", error.reason, exc_info=exc)
    return error


async def retry_transient(
    action: Callable[[], Awaitable[T]],
    *,
    what: str,
    deadline: float | None = None,
    seconds: float = DEFAULT_RETRY_SECONDS,
    tracker: ConsumerActivity | None = None,
    queue: str = "",
    count: int = 1,
    initial: float = 0.2,
    maximum: float = 5.0,
) -> T:
    """Run ``action``, retrying transient failures until ``deadline`` (``time.monotonic()``;
    default: ``seconds`` from now).

    ``action`` runs at least once. A failure that is not transient propagates unchanged (the
    caller decides: a batch falls back to its messages one by one, a message is
    dead-lettered); a transient one still failing at the deadline raises :class:`DeadLetter`
    with the last error. While it waits to retry, ``count`` messages of ``queue`` are
    counted in ``tracker`` (``/metrics``, ``/ready``).
    """
    if deadline is None:
        deadline = time.monotonic() + seconds
    delay = initial
    conflicts = 0
    with _Waiting(tracker, queue, count) as waiting:
        while True:
            try:
                return await action()
            except Exception as exc:
                if is_conflict(exc):
                    conflicts += 1
                    if conflicts > MAX_CONFLICT_RETRIES:
                        raise
                elif not is_transient(exc):
                    raise
                left = deadline - time.monotonic()
                if left <= 0:
                    log.warning("%s still failing at the retry bound: %s", what, describe(exc))
                    raise DeadLetter(
                        f"{what}: transient failure outlasted the retry bound: {describe(exc)}"
                    ) from exc
                pause = min(delay, left)
                log.warning(
                    "%s failed transiently (%s); retrying in %.1fs", what, describe(exc), pause
                )
                waiting.start()
                await asyncio.sleep(pause)
                delay = min(delay * 2, maximum)


class _Waiting:
    """Counts the messages in ``tracker`` from their first retry until the end."""

    def __init__(self, tracker: ConsumerActivity | None, queue: str, count: int) -> None:
        self._tracker = tracker
        self._queue = queue
        self._count = count
        self._block: AbstractContextManager[None] | None = None

    def __enter__(self) -> _Waiting:
        return self

    def start(self) -> None:
        if self._tracker is not None and self._block is None:
            self._block = self._tracker.retrying(self._queue, self._count)
            self._block.__enter__()

    def __exit__(self, *exc_info: object) -> None:
        if self._block is not None:
            self._block.__exit__(None, None, None)
            self._block = None
