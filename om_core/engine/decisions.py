"""Run decision hooks off the event loop.

Decision hooks are plugin code: synchronous, supposed to be pure and quick. One that blocks
(``time.sleep``, a forgotten HTTP call) would freeze everything else the event loop serves —
``/health``, the API, order updates, the outbox — if it ran on the loop. The engine therefore
decides each batch of signals in a worker thread while the loop keeps serving.

What it costs: one thread hand-off per batch (tens of microseconds), and hooks may be called
from a worker thread, and for different symbols from two threads at once — harmless for the
pure functions the SDK asks for. What it does not do: make a slow hook fast. The batch's
symbols stay locked (and, on SQLite, the single database connection stays taken) until its
hooks return; the time budget's WARNING and the per-hook histogram say which plugin to fix.
"""

from __future__ import annotations

import asyncio
import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

__all__ = ["DECISION_THREADS", "DecisionThreads"]

T = TypeVar("T")

#: Batches decided at once (a consumer has at most four batches in progress).
DECISION_THREADS = 4


class DecisionThreads:
    """A small thread pool for decisions; threads start on first use."""

    def __init__(self, workers: int = DECISION_THREADS) -> None:
        self._workers = workers
        self._pool: ThreadPoolExecutor | None = None

    async def run(self, work: Callable[[], T]) -> T:
        """``work()`` in a worker thread, with the caller's context (its clock included)."""
        if self._pool is None:
            self._pool = ThreadPoolExecutor(
                max_workers=self._workers, thread_name_prefix="om-decide"
            )
        context = contextvars.copy_context()
        return await asyncio.get_running_loop().run_in_executor(self._pool, context.run, work)

    def close(self) -> None:
        """Let idle threads go; a hook still running finishes in the background."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=False, cancel_futures=True)
