"""The coordinator on a real PostgreSQL: singletons once, partitions spread, fail-over."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

import asyncpg
import pytest

from om_core.cluster import Coordinator, Group, LocalLocks, PgLocks, Slot, quota
from tests.conftest import wait_for

PARTITIONS = 8


def test_quotas_add_up_and_differ_by_one_at_most() -> None:
    for size in (1, 3, 8, 13):
        for count in range(1, 6):
            members = list(range(100, 100 + count))
            shares = [quota(size, members, m) for m in members]
            assert sum(shares) == size
            assert max(shares) - min(shares) <= 1
    assert quota(8, [1, 2], 3) == 0  # not a member: nothing
    # The remainder stays with those holding most: a fourth member for three roles gets none
    # when the others hold one each, whatever the member ids.
    held = {30: 1, 20: 1, 40: 1}
    assert [quota(3, [10, 20, 30, 40], m, held) for m in (10, 20, 30, 40)] == [0, 1, 1, 1]


@dataclass
class Ledger:
    """Which instance runs which slot, and every overlap seen (there must be none)."""

    running: dict[str, str] = field(default_factory=dict)
    overlaps: list[str] = field(default_factory=list)
    history: list[tuple[str, str, str]] = field(default_factory=list)

    def slot(self, owner: str, name: str, lock: int) -> Slot:
        async def start() -> None:
            other = self.running.get(name)
            if other is not None:
                self.overlaps.append(f"{name}: {owner} started while {other} ran it")
            self.running[name] = owner
            self.history.append(("start", owner, name))

        async def stop() -> None:
            await asyncio.sleep(0.05)  # a stop takes a moment; the lock must outlast it
            if self.running.get(name) == owner:
                del self.running[name]
            self.history.append(("stop", owner, name))

        return Slot(name, lock, start, stop)

    def groups(self, owner: str) -> list[Group]:
        roles = [self.slot(owner, "singletons", 1), self.slot(owner, "router", 2)]
        parts = [self.slot(owner, f"p{i}", 100 + i) for i in range(PARTITIONS)]
        return [Group("roles", roles), Group("parts", parts)]

    def owned(self, owner: str) -> set[str]:
        return {name for name, who in self.running.items() if who == owner}


@asynccontextmanager
async def member(
    url: str, ledger: Ledger, owner: str, *, timeout: float = 3.0
) -> AsyncIterator[Coordinator]:
    coordinator = Coordinator(
        PgLocks(url, session_timeout=timeout, name=f"test:{owner}"),
        ledger.groups(owner),
        interval=0.2,
        timeout=timeout,
        leader="singletons",
    )
    await coordinator.start()
    await coordinator.first_round()
    try:
        yield coordinator
    finally:
        await coordinator.stop()


def parts_of(ledger: Ledger, owner: str) -> int:
    return len([n for n in ledger.owned(owner) if n.startswith("p")])


async def test_one_instance_alone_runs_everything_after_its_first_round() -> None:
    ledger = Ledger()
    coordinator = Coordinator(LocalLocks(), ledger.groups("solo"), interval=0.1)
    await coordinator.start()
    await coordinator.first_round()
    assert ledger.owned("solo") == {"singletons", "router", *(f"p{i}" for i in range(8))}
    assert coordinator.runs("singletons")
    await coordinator.stop()
    assert ledger.running == {}
    # Partitions stop before the roles they depend on.
    stops = [name for kind, _, name in ledger.history if kind == "stop"]
    assert stops.index("singletons") > max(stops.index(f"p{i}") for i in range(8))


@pytest.mark.postgres
async def test_instances_share_the_work_and_take_over_a_dead_ones(pg_url: str) -> None:
    ledger = Ledger()
    async with member(pg_url, ledger, "a") as a:
        assert len(ledger.owned("a")) == 2 + PARTITIONS  # alone: everything, at once
        async with member(pg_url, ledger, "b"), member(pg_url, ledger, "c") as c:

            def balanced() -> bool:
                counts = [parts_of(ledger, o) for o in "abc"]
                return sorted(counts) == [2, 3, 3]

            await wait_for(balanced, timeout=15, message="partitions spread 3/3/2")
            # The singletons stay where they were; the router went to a newcomer.
            assert ledger.running["singletons"] == "a"
            assert ledger.running["router"] in {"b", "c"}
            assert a.members == 3

            # a dies without a word: its session goes (as with kill -9, the socket closes).
            await _crash(a)
            for name in ledger.owned("a"):  # its work died with it
                del ledger.running[name]
            await wait_for(
                lambda: ledger.running.get("singletons") in {"b", "c"},
                timeout=5,
                message="singletons taken over",
            )
            await wait_for(
                lambda: sorted(parts_of(ledger, o) for o in "bc") == [4, 4],
                timeout=10,
                message="a's partitions taken over",
            )
            assert c.members == 2
    assert not ledger.overlaps, ledger.overlaps
    assert ledger.running == {}


@pytest.mark.postgres
async def test_a_lost_session_stops_the_work_at_once_and_rejoins(pg_url: str) -> None:
    ledger = Ledger()
    async with member(pg_url, ledger, "a") as a, member(pg_url, ledger, "b"):
        await wait_for(lambda: parts_of(ledger, "b") == 4, timeout=10, message="balanced")
        name = ledger.running["singletons"]
        held = ledger.owned(name)
        mark = len(ledger.history)
        # The server ends the leader's coordination session (a DBA, a failover, a timeout):
        # its locks are gone, so it must stop everything it ran, at once.
        await _terminate(pg_url, f"test:{name}")
        await wait_for(
            lambda: (
                held
                <= {n for kind, who, n in ledger.history[mark:] if (kind, who) == ("stop", name)}
            ),
            timeout=2,
            message="the old leader stopped all it ran",
        )
        # Someone runs the singletons again, and the old leader is back as a member.
        await wait_for(lambda: "singletons" in ledger.running, timeout=5, message="new leader")
        await wait_for(lambda: a.healthy and a.members == 2, timeout=10, message="rejoined")
        await wait_for(
            lambda: sorted(parts_of(ledger, o) for o in "ab") == [4, 4],
            timeout=10,
            message="rebalanced after the rejoin",
        )
    assert ledger.running == {}


@pytest.mark.postgres
async def test_a_slot_that_fails_to_start_is_released(pg_url: str) -> None:
    attempts: Counter[str] = Counter()

    def failing(name: str) -> Callable[[], asyncio.Future[None]]:
        async def start() -> None:
            attempts[name] += 1
            raise RuntimeError("cannot start")

        return start  # type: ignore[return-value]

    async def nothing() -> None:
        return None

    slot = Slot("broken", 7, failing("broken"), nothing)
    coordinator = Coordinator(
        PgLocks(pg_url, session_timeout=3), [Group("g", [slot])], interval=0.1, timeout=3
    )
    await coordinator.start()
    try:
        await wait_for(lambda: not coordinator.runs("broken"), timeout=5)
        await asyncio.sleep(0.5)
        # Released for others, and not retried here in a hot loop.
        assert attempts["broken"] == 1
        assert not await _held_by_anyone(pg_url, 7)
    finally:
        await coordinator.stop()


async def _crash(coordinator: Coordinator) -> None:
    """Stop the coordinator's loop and drop its connection, as a killed process would."""
    loop_task = coordinator._loop_task
    assert loop_task is not None
    loop_task.cancel()
    await asyncio.gather(loop_task, return_exceptions=True)
    locks = coordinator._locks
    assert isinstance(locks, PgLocks)
    locks._conn.terminate()
    coordinator._loop_task = None
    coordinator._state.running.clear()


async def _connect(url: str) -> asyncpg.Connection:
    return await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))


async def _terminate(url: str, application_name: str) -> None:
    conn = await _connect(url)
    try:
        n = await conn.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE application_name = $1",
            application_name,
        )
        assert n == 1
    finally:
        await conn.close()


async def _held_by_anyone(url: str, slot: int) -> bool:
    conn = await _connect(url)
    try:
        return bool(
            await conn.fetchval(
                "SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND objsubid = 2 "
                "AND objid = $1",
                slot,
            )
        )
    finally:
        await conn.close()
