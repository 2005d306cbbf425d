"""PartitionBatcher: batches over partitions, one batch per partition at a time, in order."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from om_core.messaging import DeadLetter, Message
from om_core.messaging.partition_batching import PartitionBatcher
from tests.conftest import wait_for


class Recorder:
    """A batch function that holds each batch until released, and records them all."""

    def __init__(self) -> None:
        self.batches: list[list[str]] = []
        self.running = 0
        self.most_running = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self, messages: Sequence[Message]) -> list[BaseException | None]:
        self.batches.append([m.body.decode() for m in messages])
        self.running += 1
        self.most_running = max(self.most_running, self.running)
        try:
            await self.gate.wait()
            await asyncio.sleep(0)
        finally:
            self.running -= 1
        return [DeadLetter("bad") if m.body.startswith(b"bad") else None for m in messages]


def msg(body: str) -> Message:
    return Message(body=body.encode(), message_id=body)


async def test_one_partition_is_never_in_two_batches_and_keeps_its_order() -> None:
    record = Recorder()
    batcher = PartitionBatcher(record, max_batch=5, name="t", concurrency=3)
    record.gate.clear()
    handlers = {p: batcher.handler(p) for p in ("p0", "p1", "p2")}
    # p0 gets a lot, the others a little, interleaved as a broker would deliver them.
    plan = [("p0", f"p0-{i}") for i in range(12)] + [("p1", "p1-0"), ("p2", "p2-0")]
    plan += [("p1", "p1-1"), ("p0", "p0-12")]
    tasks = []
    for partition, body in plan:
        tasks.append(asyncio.create_task(handlers[partition](msg(body))))
        await asyncio.sleep(0)
    await wait_for(lambda: len(record.batches) >= 1)
    record.gate.set()
    await asyncio.gather(*tasks)

    # Every message once; per partition, batches one after the other and in order.
    seen = [body for batch in record.batches for body in batch]
    assert sorted(seen) == sorted(body for _, body in plan)
    for partition in ("p0", "p1", "p2"):
        order = [b for b in seen if b.startswith(partition)]
        assert order == [b for p, b in plan if p == partition]
    assert all(len(batch) <= 5 for batch in record.batches)
    await batcher.close()


async def test_what_waits_behind_a_batch_goes_together_whatever_its_partition() -> None:
    record = Recorder()
    batcher = PartitionBatcher(record, max_batch=10, name="t", concurrency=1)
    record.gate.clear()
    first = asyncio.create_task(batcher.handler("p0")(msg("p0-a")))
    await wait_for(lambda: record.running == 1)
    rest = [
        asyncio.create_task(batcher.handler(p)(msg(f"{p}-b"))) for p in ("p0", "p1", "p2", "p1")
    ]
    await asyncio.sleep(0)
    record.gate.set()
    await asyncio.gather(first, *rest)
    # One batch as large as without partitions, each partition's messages in order in it.
    assert record.batches == [["p0-a"], ["p0-b", "p1-b", "p2-b", "p1-b"]]
    await batcher.close()


async def test_a_busy_partition_waits_while_others_run() -> None:
    record = Recorder()
    batcher = PartitionBatcher(record, max_batch=10, name="t", concurrency=2)
    record.gate.clear()
    first = asyncio.create_task(batcher.handler("p0")(msg("p0-a")))
    await wait_for(lambda: record.running == 1)
    # p0 is busy: its next message waits; p1's starts a second batch at once.
    second = asyncio.create_task(batcher.handler("p0")(msg("p0-b")))
    third = asyncio.create_task(batcher.handler("p1")(msg("p1-a")))
    await wait_for(lambda: record.running == 2)
    assert record.batches == [["p0-a"], ["p1-a"]]
    assert batcher.waiting == 1
    record.gate.set()
    await asyncio.gather(first, second, third)
    assert record.batches[-1] == ["p0-b"]
    assert record.most_running == 2
    await batcher.close()


async def test_each_message_gets_its_own_outcome() -> None:
    batcher = PartitionBatcher(Recorder(), max_batch=10, name="t")
    ok = asyncio.create_task(batcher.handler("p0")(msg("good")))
    bad = asyncio.create_task(batcher.handler("p1")(msg("bad")))
    await ok
    with pytest.raises(DeadLetter):
        await bad
    await batcher.close()


async def test_a_message_whose_handler_gave_up_is_left_out() -> None:
    record = Recorder()
    batcher = PartitionBatcher(record, max_batch=10, name="t", concurrency=1)
    record.gate.clear()
    running = asyncio.create_task(batcher.handler("p0")(msg("p0-a")))
    await wait_for(lambda: record.running == 1)
    abandoned = asyncio.create_task(batcher.handler("p1")(msg("p1-a")))
    kept = asyncio.create_task(batcher.handler("p1")(msg("p1-b")))
    await asyncio.sleep(0)
    abandoned.cancel()  # its consumer stopped: the broker delivers it again elsewhere
    record.gate.set()
    await asyncio.gather(running, kept)
    assert ["p1-a"] not in record.batches and ["p1-b"] in record.batches
    await batcher.close()


async def test_under_load_a_small_batch_waits_for_a_running_one() -> None:
    record = Recorder()
    batcher = PartitionBatcher(record, max_batch=4, name="t", concurrency=2)
    record.gate.clear()
    first = asyncio.create_task(batcher.handler("p0")(msg("p0-a")))
    await wait_for(lambda: record.running == 1)
    # Load: three waiting for busy p0, one for free p1. A batch of p1 alone would be tiny.
    rest = [asyncio.create_task(batcher.handler("p0")(msg(f"p0-{i}"))) for i in "bcd"]
    rest.append(asyncio.create_task(batcher.handler("p1")(msg("p1-a"))))
    await wait_for(lambda: batcher.waiting == 4, timeout=2)
    assert record.running == 1
    record.gate.set()
    await asyncio.gather(first, *rest)
    assert record.batches == [["p0-a"], ["p0-b", "p0-c", "p0-d", "p1-a"]]
    await batcher.close()


async def test_a_batch_that_fails_as_a_whole_is_processed_message_by_message() -> None:
    """A poison message that breaks its whole batch costs only its own message (issue 14)."""
    calls: list[list[str]] = []
    gate = asyncio.Event()

    async def poisoned(messages: Sequence[Message]) -> list[BaseException | None]:
        calls.append([m.body.decode() for m in messages])
        await gate.wait()
        if any(m.body == b"poison" for m in messages):
            raise ValueError("year 99999 is out of range")
        return [None] * len(messages)

    batcher = PartitionBatcher(poisoned, max_batch=10, name="t", concurrency=1)
    first = asyncio.create_task(batcher.handler("p0")(msg("first")))
    await wait_for(lambda: calls, timeout=5)
    handlers = {
        body: asyncio.create_task(batcher.handler(p)(msg(body)))
        for p, body in (("p1", "a"), ("p2", "poison"), ("p3", "b"))
    }
    await wait_for(lambda: batcher.waiting == 3, timeout=5)
    gate.set()
    await asyncio.wait_for(first, 5)
    await asyncio.wait_for(handlers["a"], 5)
    await asyncio.wait_for(handlers["b"], 5)
    with pytest.raises(DeadLetter, match="ValueError: year 99999"):
        await asyncio.wait_for(handlers["poison"], 5)
    assert calls[1:] == [["a", "poison", "b"], ["a"], ["poison"], ["b"]]
