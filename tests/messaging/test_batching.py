"""Batcher: deliveries that arrive together reach the batch function together, and each
message still gets its own outcome."""

from __future__ import annotations

import asyncio
import errno
from collections.abc import Sequence

import pytest

from om_core.messaging.base import DeadLetter, Message
from om_core.messaging.batching import Batcher
from tests.conftest import wait_for


class Recorder:
    """A batch function that records its batches and can be held at the gate."""

    def __init__(self) -> None:
        self.batches: list[list[bytes]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.entered = asyncio.Event()

    async def __call__(self, messages: Sequence[Message]) -> list[BaseException | None]:
        self.batches.append([m.body for m in messages])
        self.entered.set()
        await self.gate.wait()
        return [DeadLetter("bad") if m.body == b"bad" else None for m in messages]


async def busy(batcher: Batcher, recorder: Recorder) -> asyncio.Task[None]:
    """Hold the batcher's only worker in a first batch; returns that message's handler."""
    recorder.gate.clear()
    first = asyncio.create_task(batcher(Message(b"0")))
    await asyncio.wait_for(recorder.entered.wait(), 5)
    return first


async def test_a_lone_message_is_processed_alone_at_once() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=10, name="t")
    await asyncio.wait_for(batcher(Message(b"one")), 5)
    assert recorder.batches == [[b"one"]]


async def test_messages_arriving_while_the_workers_are_busy_share_a_batch() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=3, name="t", concurrency=1)
    first = await busy(batcher, recorder)
    rest = [asyncio.create_task(batcher(Message(str(n).encode()))) for n in range(1, 6)]
    await wait_for(lambda: batcher.waiting == 5, timeout=5)
    recorder.gate.set()
    await asyncio.wait_for(asyncio.gather(first, *rest), 5)
    assert recorder.batches == [[b"0"], [b"1", b"2", b"3"], [b"4", b"5"]]


async def test_each_message_gets_its_own_outcome() -> None:
    recorder = Recorder()
    batcher = Batcher(recorder, max_batch=10, name="t", concurrency=1)
    blocker = await busy(batcher, recorder)
    good = asyncio.create_task(batcher(Message(b"good")))
    bad = asyncio.create_task(batcher(Message(b"bad")))
    await wait_for(lambda: batcher.waiting == 2, timeout=5)
    recorder.gate.set()
    await asyncio.wait_for(good, 5)
    with pytest.raises(DeadLetter):
        await asyncio.wait_for(bad, 5)
    await blocker
    assert recorder.batches[1] == [b"good", b"bad"]


async def test_a_failing_batch_function_dead_letters_a_message_that_fails_alone() -> None:
    async def broken(messages: Sequence[Message]) -> list[BaseException | None]:
        raise RuntimeError("bug")

    batcher = Batcher(broken, max_batch=10, name="t")
    with pytest.raises(DeadLetter, match="RuntimeError: bug"):
        await asyncio.wait_for(batcher(Message(b"x")), 5)


async def test_a_transient_failure_of_a_lone_message_returns_it_to_its_queue() -> None:
    async def down(messages: Sequence[Message]) -> list[BaseException | None]:
        raise ConnectionResetError(errno.ECONNRESET, "connection reset")

    batcher = Batcher(down, max_batch=10, name="t")
    with pytest.raises(ConnectionResetError):
        await asyncio.wait_for(batcher(Message(b"x")), 5)


async def test_a_batch_that_fails_as_a_whole_is_processed_message_by_message() -> None:
    """A poison message that breaks its whole batch costs only its own message."""
    calls: list[list[bytes]] = []
    gate = asyncio.Event()

    async def poisoned(messages: Sequence[Message]) -> list[BaseException | None]:
        calls.append([m.body for m in messages])
        await gate.wait()
        if any(m.body == b"poison" for m in messages):
            raise OverflowError("date value out of range")
        return [None] * len(messages)

    batcher = Batcher(poisoned, max_batch=10, name="t", concurrency=1)
    first = asyncio.create_task(batcher(Message(b"0")))
    await wait_for(lambda: calls, timeout=5)
    handlers = {
        body: asyncio.create_task(batcher(Message(body))) for body in (b"a", b"poison", b"b")
    }
    await wait_for(lambda: batcher.waiting == 3, timeout=5)
    gate.set()
    await asyncio.wait_for(first, 5)
    await asyncio.wait_for(handlers[b"a"], 5)
    await asyncio.wait_for(handlers[b"b"], 5)
    with pytest.raises(DeadLetter, match="OverflowError"):
        await asyncio.wait_for(handlers[b"poison"], 5)
    assert calls[1:] == [[b"a", b"poison", b"b"], [b"a"], [b"poison"], [b"b"]]


async def test_close_cancels_batches_in_progress() -> None:
    recorder = Recorder()
    recorder.gate.clear()
    batcher = Batcher(recorder, max_batch=10, name="t")
    waiting = asyncio.create_task(batcher(Message(b"x")))
    await asyncio.wait_for(recorder.entered.wait(), 5)
    await batcher.close()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(waiting, 5)
