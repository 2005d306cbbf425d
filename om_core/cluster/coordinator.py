"""Run each piece of exclusive work on exactly one instance, spread evenly, with fail-over.

A :class:`Slot` is work that must run on one instance at a time: the singletons (outbox
relay, reconciler, periodic snapshots), a partition router, the consumer of one partition
queue. Slots come in :class:`Group` s; within a group each of ``m`` live instances runs its
share, :func:`quota`: ``n // m`` slots, and one more for ``n % m`` of them — those already
holding most, so that a change of members moves as little work as it can. Quotas add up to
exactly the group, and every instance computes the same ones from the same snapshot. Each
tick (``interval`` seconds) an instance:

1. reads members and holders (:meth:`LockSession.snapshot`), which is also its health check;
2. releases the slots whose stop has finished (the lock is held until the work has stopped,
   so the next holder never overlaps it);
3. above its quota, stops its lowest-priority slots; below it, takes free slots (an atomic
   ``pg_try_advisory_lock``) and starts them.

A slot's ``start`` and ``stop`` run in their own tasks, so a slow start (the reconciliation
a new leader runs) never delays the health check. When the session is lost — a query fails
or takes longer than ``timeout`` — the instance stops every slot at once (its locks are gone
or about to be), reconnects with backoff and rejoins as a new member. The locks' own
life-cycle is described in :mod:`om_core.cluster.locks`.

The coordinator knows nothing of what slots do; :class:`om_core.service.Service` builds them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from om_core import metrics
from om_core.cluster.locks import LockSession, Snapshot

__all__ = ["Coordinator", "Group", "Slot", "quota"]

log = logging.getLogger(__name__)

#: How long a slot whose start failed is left to other instances before this one retries it.
_COOLDOWN = 10.0
_MAX_RECONNECT_DELAY = 10.0


@dataclass(frozen=True, slots=True)
class Slot:
    """One piece of exclusive work. ``lock`` is its advisory-lock number (unique, > 0)."""

    name: str
    lock: int
    start: Callable[[], Awaitable[None]]
    stop: Callable[[], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Group:
    """Slots balanced together; the first ones are taken first and given up last."""

    name: str
    slots: Sequence[Slot]


@dataclass(slots=True)
class _Stopping:
    slot: Slot
    task: asyncio.Task[None]
    #: The session generation whose lock to release once stopped; ``None``: the lock is gone.
    generation: int | None


@dataclass(slots=True)
class _State:
    running: dict[str, tuple[Slot, asyncio.Task[None]]] = field(default_factory=dict)
    stopping: dict[str, _Stopping] = field(default_factory=dict)
    cooldown: dict[str, float] = field(default_factory=dict)


def quota(size: int, members: Sequence[int], me: int, held: Mapping[int, int] | None = None) -> int:
    """How many of ``size`` slots member ``me`` runs (0 when it is not a member).

    Each member gets ``size // len(members)``; the remainder goes one each to the members
    holding the most slots already (``held``; then by member id), so that a change of members
    moves as little work as it can — the singletons stay where they run.
    """
    if me not in members:
        return 0
    count = len(members)
    counts = held or {}
    ranked = sorted(members, key=lambda m: (-counts.get(m, 0), m))
    return size // count + (1 if ranked.index(me) < size % count else 0)


class Coordinator:
    def __init__(
        self,
        locks: LockSession,
        groups: Sequence[Group],
        *,
        interval: float = 1.0,
        timeout: float = 10.0,
        leader: str | None = None,
    ) -> None:
        """``leader`` names the slot whose holder the ``om_leader`` gauge reports."""
        names = [s.name for g in groups for s in g.slots]
        numbers = [s.lock for g in groups for s in g.slots]
        if len(set(names)) != len(names) or len(set(numbers)) != len(numbers):
            raise ValueError("slot names and lock numbers must be unique")
        if any(n <= 0 for n in numbers):
            raise ValueError("slot lock numbers must be positive (0 marks membership)")
        self._locks = locks
        self._groups = tuple(groups)
        self._interval = interval
        self._leader = leader
        #: A tick slower than this counts as a lost session; half the server's idle timeout,
        #: so this side gives its slots up before the server can hand them to someone else.
        self._tick_timeout = max(timeout / 2, interval)
        self._state = _State()
        self._generation = 0
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._first_round: list[asyncio.Task[None]] = []
        self._closing = False
        self.healthy = False
        self.members = 0

    # -- life cycle ----------------------------------------------------------------------

    async def start(self) -> None:
        """Join and take this instance's share; the slots start in the background (see
        :meth:`first_round`). Raises when the database cannot be reached."""
        await self._locks.connect()
        self._generation += 1
        self.healthy = True
        await self._tick()
        self._first_round = [task for _, task in self._state.running.values()]
        self._loop_task = asyncio.create_task(self._loop(), name="coordinator")

    async def first_round(self) -> None:
        """Wait until the slots taken on joining have started (or failed to). A sole instance
        runs everything then. The health checks go on meanwhile."""
        if self._first_round:
            await asyncio.gather(*self._first_round, return_exceptions=True)

    async def stop(self) -> None:
        """Stop every slot (groups in reverse order, a group's slots together), then leave."""
        self._closing = True
        if self._loop_task is not None:
            self._loop_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop_task
            self._loop_task = None
        for group in reversed(self._groups):
            for slot in group.slots:
                if slot.name in self._state.running:
                    self._begin_stop(slot, release=False)
            pending = [s.task for s in self._state.stopping.values()]
            if pending:
                await asyncio.gather(*pending, return_exceptions=True)
        self._state.stopping.clear()
        await self._locks.close()
        self.healthy = False
        self._report()

    # -- what runs here --------------------------------------------------------------------

    def running(self, group: str | None = None) -> list[str]:
        """Names of the slots this instance runs (of ``group``), in priority order."""
        return [
            slot.name
            for g in self._groups
            if group is None or g.name == group
            for slot in g.slots
            if slot.name in self._state.running
        ]

    def runs(self, name: str) -> bool:
        return name in self._state.running

    # -- the loop --------------------------------------------------------------------------

    async def _loop(self) -> None:
        while not self._closing:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=self._interval)
            self._wake.clear()
            try:
                async with asyncio.timeout(self._tick_timeout):
                    await self._tick()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                await self._lost(exc)
                await self._rejoin()

    async def _lost(self, exc: BaseException) -> None:
        log.error(
            "lost the coordination session (%s: %s); stopping %s until it is back",
            type(exc).__name__,
            exc,
            ", ".join(self.running()) or "nothing",
        )
        self.healthy = False
        for group in reversed(self._groups):
            for slot in group.slots:
                if slot.name in self._state.running:
                    self._begin_stop(slot, release=False)
        with contextlib.suppress(Exception):
            await self._locks.close()
        self._report()

    async def _rejoin(self) -> None:
        delay = self._interval
        while not self._closing:
            try:
                await self._locks.connect()
            except Exception as exc:
                log.warning("coordination: cannot reconnect (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, _MAX_RECONNECT_DELAY)
                continue
            self._generation += 1
            self.healthy = True
            log.info("coordination session restored")
            return

    async def _tick(self) -> None:
        snap = await self._locks.snapshot()
        if snap.me not in snap.members:
            raise ConnectionError("this instance's membership lock is gone")
        self.members = len(snap.members)
        await self._release_stopped(snap)
        now = time.monotonic()
        for group in self._groups:
            locks = {slot.lock for slot in group.slots}
            held = Counter(m for lock, m in snap.holders.items() if lock in locks)
            share = quota(len(group.slots), snap.members, snap.me, held)
            mine = [s for s in group.slots if s.name in self._state.running]
            if len(mine) > share:
                for slot in list(reversed(mine))[: len(mine) - share]:
                    log.info("handing %s over (%d members now)", slot.name, len(snap.members))
                    self._begin_stop(slot, release=True)
                continue
            for slot in self._candidates(group, snap, now):
                if len(mine) >= share:
                    break
                if await self._locks.try_lock(slot.lock):
                    self._begin_start(slot)
                    mine.append(slot)
        self._report()

    def _candidates(self, group: Group, snap: Snapshot, now: float) -> list[Slot]:
        """Free slots, starting at an offset of this member's own so that instances joining
        together try different ones first."""
        free = [
            s
            for s in group.slots
            if s.lock not in snap.holders
            and s.name not in self._state.running
            and s.name not in self._state.stopping
            and self._state.cooldown.get(s.name, 0.0) <= now
        ]
        if not free:
            return []
        offset = snap.members.index(snap.me) * len(group.slots) // len(snap.members)
        ordered = sorted(free, key=lambda s: (group.slots.index(s) - offset) % len(group.slots))
        return ordered

    async def _release_stopped(self, snap: Snapshot) -> None:
        released: set[str] = set()
        for name, stopping in list(self._state.stopping.items()):
            if not stopping.task.done():
                continue
            del self._state.stopping[name]
            released.add(name)
            if stopping.generation == self._generation:
                await self._locks.unlock(stopping.slot.lock)
        # A lock of ours with nothing running behind it (one the snapshot saw before a
        # cancelled start was booked): give it back.
        busy = set(self._state.running) | set(self._state.stopping) | released
        for group in self._groups:
            for slot in group.slots:
                if snap.holders.get(slot.lock) == snap.me and slot.name not in busy:
                    await self._locks.unlock(slot.lock)

    # -- starting and stopping slots --------------------------------------------------------

    def _begin_start(self, slot: Slot) -> None:
        log.info("now running %s", slot.name)
        task = asyncio.create_task(self._start(slot), name=f"start:{slot.name}")
        self._state.running[slot.name] = (slot, task)

    async def _start(self, slot: Slot) -> None:
        try:
            await slot.start()
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("%s failed to start; leaving it to another instance for now", slot.name)
            self._state.cooldown[slot.name] = time.monotonic() + _COOLDOWN
            if slot.name in self._state.running:
                self._begin_stop(slot, release=True)

    def _begin_stop(self, slot: Slot, *, release: bool) -> None:
        _, started = self._state.running.pop(slot.name)

        async def stopping() -> None:
            if not started.done():
                started.cancel()
            await asyncio.gather(started, return_exceptions=True)
            try:
                await slot.stop()
            except Exception:
                log.exception("stopping %s failed", slot.name)
            log.info("stopped running %s", slot.name)
            self._wake.set()

        task = asyncio.create_task(stopping(), name=f"stop:{slot.name}")
        self._state.stopping[slot.name] = _Stopping(
            slot, task, self._generation if release else None
        )

    def _report(self) -> None:
        metrics.set_cluster_state(
            members=self.members if self.healthy else 0,
            running={g.name: len(self.running(g.name)) for g in self._groups},
            leader=self._leader is not None and self.runs(self._leader),
        )

    def describe(self) -> dict[str, Any]:
        return {"members": self.members, "healthy": self.healthy, "running": self.running()}
