"""Wire the engine together and run it: database, bus, plugins, exchange, consumers, relay.

``Service.start()`` brings everything up in the order safety needs — migrations checked,
plugins loaded, exchange connected, orders left in doubt settled — and only then consumes
signals. ``Service.stop()`` stops consuming, lets in-flight messages finish within the grace
period, flushes the outbox and closes connections.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncEngine

from om_core.cluster import Coordinator, Group, LocalLocks, LockSession, PgLocks, Slot
from om_core.cluster.work import PartitionConsumer
from om_core.config import Settings
from om_core.db import migrate
from om_core.db.session import SessionFactory, create_engine, create_session_factory
from om_core.dead_letters import DeadLetterStore
from om_core.engine.consumer import SignalConsumer
from om_core.engine.context import ContextBuilder
from om_core.engine.executor import OrderExecutor
from om_core.engine.processor import SignalProcessor
from om_core.engine.recovery import InDoubtResolver
from om_core.events.live import LiveFeed
from om_core.events.relay import OutboxRelay
from om_core.instruments import Instruments
from om_core.messaging import MessageBus, create_bus
from om_core.messaging.base import Consumer
from om_core.messaging.batching import Batcher
from om_core.messaging.partition_batching import PartitionBatcher
from om_core.messaging.topology import ORDER_UPDATES_QUEUE, SIGNALS_QUEUE
from om_core.orders.cancel import OrderCanceller
from om_core.plugins import LoadedPlugins, PluginHooks, load_plugins
from om_core.positions.periodic import PeriodicSnapshots
from om_core.reconcile import Reconciler
from om_core.sampler import Sampler
from om_core.signals.contract import SignalLimits
from om_core.signals.intake import SignalIntake
from om_core.updates.apply import UpdateApplier
from om_core.updates.subscriber import EventSubscriber
from om_plugins.exchange import ExchangeAdapter, ExchangeContext
from om_plugins.reports import Report, encode_reports

__all__ = ["Service", "StartupConfigError", "StartupError"]

log = logging.getLogger("om_core.service")

#: The slot of the work that runs once in a deployment: outbox relay, reconciler, snapshots.
SINGLETONS = "singletons"
#: A retry's last attempt may start just before the bound: a retry this much longer is stuck.
_RETRY_SLACK = 10.0


class StartupError(Exception):
    """The service cannot start; the message says why and what to do."""


class StartupConfigError(StartupError):
    """The service cannot start because of its configuration (``om`` exits 2)."""


def exchange_not_provided(exchange: str, available: list[str]) -> str:
    from om_core.suggest import did_you_mean

    known = ", ".join(sorted(available)) or "none"
    return (
        f"OM_EXCHANGE={exchange!r} is not provided by any enabled plugin"
        f"{did_you_mean(exchange, available)} (available: {known})"
    )


def _lines(exc: Exception) -> list[str]:
    problems: list[str] | None = getattr(exc, "problems", None)
    return problems or str(exc).splitlines() or [type(exc).__name__]


class Service:
    def __init__(
        self,
        settings: Settings,
        *,
        plugins: LoadedPlugins | None = None,
        env: Mapping[str, str] | None = None,
        before_commit: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self.settings = settings
        self._plugins = plugins
        self._env = env
        self._before_commit = before_commit
        self._consumers: list[Consumer] = []
        self._partition_batchers: list[PartitionBatcher] = []
        #: Set once the orders left in doubt at startup are settled: consuming waits for it.
        self._settled = asyncio.Event()
        self.running = False
        # Set by start():
        self.db: AsyncEngine
        self.sessions: SessionFactory
        self.bus: MessageBus
        self.hooks: PluginHooks
        self.exchange: ExchangeAdapter
        self.relay: OutboxRelay
        self.executor: OrderExecutor
        self.processor: SignalProcessor
        self.cancels: OrderCanceller
        self.signal_consumer: SignalConsumer
        self.resolver: InDoubtResolver
        self.applier: UpdateApplier
        self.event_subscriber: EventSubscriber
        self.snapshots: PeriodicSnapshots
        self.reconciler: Reconciler
        self.instruments: Instruments
        self.live: LiveFeed
        self.dead_letters: DeadLetterStore
        self.sampler: Sampler
        self.intake: SignalIntake
        self.coordinator: Coordinator

    @property
    def plugins(self) -> LoadedPlugins:
        if self._plugins is None:
            raise RuntimeError("plugins are loaded by start()")
        return self._plugins

    async def start(self, *, consume: bool = True, serving_api: bool = False) -> None:
        s = self.settings
        plugin_name = self._preflight(serving_api=serving_api)

        self.db = create_engine(s.database_url)
        if s.auto_migrate:
            await migrate.upgrade(s.database_url)
        else:
            try:
                await migrate.check_migrated(s.database_url)
            except migrate.NotMigratedError as exc:
                await self.db.dispose()
                raise StartupError(str(exc)) from exc
        self.sessions = create_session_factory(self.db)

        self.bus = create_bus(
            s.broker_url,
            queue_type=s.queue_type,
            delivery_limit=s.delivery_limit,
            publish_timeout=s.publish_timeout_seconds,
            partitions=s.partitions,
        )
        if s.partitions and s.broker_url.startswith("memory://"):
            log.warning("OM_PARTITIONS applies to RabbitMQ only; the in-process bus ignores it")
        await self.bus.start()

        await self.exchange.start()
        self.instruments = Instruments(self.exchange)

        #: What the service just did, for the console's live view.
        self.live = LiveFeed()
        # Started by the coordinator on the one instance that runs the singletons.
        self.relay = OutboxRelay(
            self.sessions,
            self.bus,
            self.hooks,
            in_flight=s.outbox_in_flight,
            on_published=self.live.published_events,
        )
        self.dead_letters = DeadLetterStore(
            self.sessions,
            self.bus,
            on_recorded=lambda row: self.live.publish("dead_letter", row),
        )
        self.bus.dead_letter_sink = self.dead_letters.record
        limits = SignalLimits.of(s)
        self.intake = SignalIntake(
            self.sessions, self.bus, self.live, limits, on_committed=self.relay.notify
        )
        max_age = timedelta(seconds=s.max_signal_age_seconds)
        context = ContextBuilder(self.exchange, self.instruments, day_start=s.trading_day_start)
        self.executor = OrderExecutor(
            self.sessions,
            self.exchange,
            max_signal_age=max_age,
            on_committed=self.relay.notify,
            before_commit=self._before_commit,
            forget_instrument=context.forget_instrument,
        )
        #: Operator cancels (API, console): recorded, idempotent, published.
        self.cancels = OrderCanceller(
            self.sessions,
            self.exchange,
            pause=self.executor.pause,
            on_committed=self.relay.notify,
        )
        self.processor = SignalProcessor(
            self.sessions,
            self.hooks,
            s.exchange,
            context,
            self.executor,
            max_signal_age=max_age,
            clock_skew=limits.clock_skew,
            on_committed=self.relay.notify,
        )
        self.signal_consumer = SignalConsumer(
            self.sessions,
            self.processor,
            limits,
            retry_seconds=s.retry_seconds,
            retries=self.bus.activity,
        )
        #: The ``model-service.trading_signals`` handler: signals that arrive together are
        #: decided in one transaction and placed at once.
        self.signal_handler = Batcher(
            self.signal_consumer.handle_batch, max_batch=s.signal_batch, name="signals"
        )
        self.resolver = InDoubtResolver(self.sessions, self.executor)
        self.applier = UpdateApplier(
            self.sessions,
            self.instruments,
            position_mode=self.exchange.get_position_mode,
            on_committed=self.relay.notify,
        )
        self.event_subscriber = EventSubscriber(
            self.applier,
            self.exchange.decode_stream,
            on_gateway_reconnected=self.on_stream_gap,
            retry_seconds=s.retry_seconds,
            retries=self.bus.activity,
        )
        #: The ``ws-gateway.order`` handler: reports that arrive together share a transaction.
        self.update_handler = Batcher(
            self.event_subscriber.handle_batch, max_batch=s.update_batch, name="order-updates"
        )
        self.reconciler = Reconciler(self.sessions, self.exchange, self.applier, self.executor)
        self.snapshots = PeriodicSnapshots(
            self.sessions, self.exchange, interval=s.position_snapshot_interval
        )
        self.sampler = Sampler(
            self.sessions, self.bus, self.exchange, interval=s.metrics_sample_seconds
        )

        await self.hooks.startup(s.describe())
        # Singletons (and, partitioned, routers and partitions) go where the coordinator puts
        # them. What this instance takes waits for the in-doubt resolution below, except the
        # outbox relay: events already committed go out meanwhile.
        self.coordinator = Coordinator(
            self._locks(),
            self._work(consume),
            interval=s.cluster_check_interval,
            timeout=s.cluster_session_timeout,
            leader=SINGLETONS,
        )
        await self.coordinator.start()
        # Fail closed: nothing new is placed while an earlier order's fate is unknown.
        await self.resolver.resolve_until_settled()
        self.resolver.start()
        self._settled.set()
        # Every instance samples its own metrics for the console's charts.
        self.sampler.start()
        # A sole instance runs everything now (the leader has reconciled).
        await self.coordinator.first_round()
        if consume and not self._partitioned:
            # Updates first: a fill must never wait behind a queue of new signals.
            self._consumers.append(
                await self.bus.consume(
                    ORDER_UPDATES_QUEUE, self.update_handler, prefetch=s.prefetch
                )
            )
            self._consumers.append(
                await self.bus.consume(SIGNALS_QUEUE, self.signal_handler, prefetch=s.prefetch)
            )
        self.running = True
        log.info(
            "order manager running: exchange %s (plugin %s), plugins %s",
            s.exchange,
            plugin_name,
            ", ".join(self.plugins.objects),
        )

    def _preflight(self, *, serving_api: bool) -> str:
        """Everything that can be checked without I/O, before a connection or a consumer
        exists: settings (:mod:`om_core.startup`), plugin settings (as they load), the
        exchange (provided, and built: its factory refuses missing credentials). Raises
        :class:`StartupConfigError` with every problem, one line each; returns the name of
        the plugin that provides the exchange."""
        from om_core.plugins import PluginLoadError
        from om_core.startup import check_settings
        from om_plugins.errors import PluginError

        s = self.settings
        plugin_name = ""
        problems = check_settings(s, serving_api=serving_api)
        #: The exceptions behind plugin problems: raised as they are when they are all there is.
        causes: list[PluginError] = []
        if self._plugins is None:
            try:
                self._plugins = load_plugins(s.plugins, s.plugin_config, self._env)
            except PluginLoadError as exc:
                problems += exc.problems or [str(exc)]
                causes.append(exc)
        if self._plugins is not None:
            self.hooks = PluginHooks(
                self._plugins.pm, trace=s.trace_plugins, budget_ms=s.hook_budget_ms
            )
            factories = self.hooks.exchange_factories()
            if s.exchange not in factories:
                problems.append(exchange_not_provided(s.exchange, list(factories)))
            else:
                plugin_name, factory = factories[s.exchange]
                try:
                    # Built now, started later: missing credentials are a configuration problem.
                    context = ExchangeContext(publish_reports=self._publish_reports)
                    self.exchange = factory(context)
                except PluginError as exc:
                    problems += str(exc).splitlines() or [type(exc).__name__]
                    causes.append(exc)
        if len(causes) == 1 and len(problems) == len(_lines(causes[0])):
            raise causes[0]
        if problems:
            raise StartupConfigError("\n".join(problems))
        return plugin_name

    # -- who runs what -----------------------------------------------------------------------

    @property
    def _partitioned(self) -> dict[str, tuple[str, ...]]:
        """entry queue → partition queues, when the bus partitions (RabbitMQ, OM_PARTITIONS)."""
        partitioned = getattr(self.bus, "partitioned", None)
        return dict(partitioned) if isinstance(partitioned, dict) else {}

    def _locks(self) -> LockSession:
        s = self.settings
        if s.is_embedded_db:
            return LocalLocks()
        return PgLocks(s.database_url, session_timeout=s.cluster_session_timeout)

    def _work(self, consume: bool) -> list[Group]:
        """The exclusive work of the deployment, as coordinator slots (lock numbers are part
        of the deployment's contract: every instance must use the same)."""
        s = self.settings
        roles = [Slot(SINGLETONS, 1, self._start_singletons, self._stop_singletons)]
        groups = [Group("roles", roles)]
        if not consume or not self._partitioned:
            return groups
        from om_core.messaging.rabbitmq import RabbitBus
        from om_core.messaging.router import PartitionRouter

        assert isinstance(self.bus, RabbitBus)
        handlers = {
            ORDER_UPDATES_QUEUE: (self.event_subscriber.handle_batch, s.update_batch, 2000),
            SIGNALS_QUEUE: (self.signal_consumer.handle_batch, s.signal_batch, 1000),
        }
        for number, entry in enumerate(sorted(self._partitioned), start=2):
            router = PartitionRouter(
                self.bus, entry, prefetch=s.prefetch, grace=s.shutdown_grace_seconds
            )
            roles.append(
                Slot(f"router:{entry}", number, self._after_settling(router.start), router.stop)
            )
        # Updates first, as above.
        for entry in (ORDER_UPDATES_QUEUE, SIGNALS_QUEUE):
            process, batch, base = handlers[entry]
            # One batcher over all the partitions this instance holds: batches as large as
            # without partitions, one partition's messages still strictly in order.
            batcher = PartitionBatcher(process, max_batch=batch, name=entry)
            self._partition_batchers.append(batcher)
            slots = []
            for index, queue in enumerate(self._partitioned.get(entry, ())):
                work = PartitionConsumer(
                    self.bus,
                    queue,
                    batcher.handler(queue),
                    prefetch=s.prefetch,
                    grace=s.shutdown_grace_seconds,
                )
                start = self._after_settling(work.start)
                slots.append(Slot(f"partition:{queue}", base + index, start, work.stop))
            groups.append(Group(entry, slots))
        return groups

    def _after_settling(
        self, start: Callable[[], Awaitable[None]]
    ) -> Callable[[], Awaitable[None]]:
        async def gated() -> None:
            await self._settled.wait()
            await start()

        return gated

    async def _start_singletons(self) -> None:
        self.relay.start()
        log.info("this instance runs the singletons: outbox relay, reconciler, snapshots")
        await self._settled.wait()
        # A new leader may follow one that died: fix what it left before the periodic pass.
        await self._reconcile_at_startup()
        self.reconciler.start(self.settings.sync_interval)
        self.snapshots.start()

    async def _stop_singletons(self) -> None:
        await self.snapshots.stop()
        await self.reconciler.stop()
        await self.relay.stop()

    async def on_stream_gap(self) -> None:
        """The exchange's order stream was interrupted: updates may have been lost."""
        report = await self.reconciler.run()
        log.info("reconciled after a stream gap: %d drift(s)", len(report.drifts))

    async def _reconcile_at_startup(self) -> None:
        try:
            report = await self.reconciler.run()
        except Exception:
            # Orders in doubt are settled already (above); other drift is fixed by the next
            # periodic pass, so an exchange hiccup here must not keep the service down.
            log.exception("startup reconciliation failed; it runs again periodically")
            return
        log.info("reconciled on taking the singletons: %d drift(s)", len(report.drifts))
        if report.errors:
            log.warning(
                "startup reconciliation: %d problem(s), e.g. %s",
                len(report.errors),
                "; ".join(report.errors[:3]),
            )

    async def _publish_reports(self, reports: Sequence[Report]) -> None:
        await self.bus.publish(ORDER_UPDATES_QUEUE, encode_reports(reports))

    async def stop(self) -> None:
        grace = self.settings.shutdown_grace_seconds
        if hasattr(self, "live"):
            self.live.close()
        for consumer in self._consumers:
            await consumer.stop(grace)
        self._consumers.clear()
        for name in ("signal_handler", "update_handler"):
            if hasattr(self, name):
                await getattr(self, name).close()
        if hasattr(self, "resolver"):
            await self.resolver.stop()
        if hasattr(self, "executor"):
            await self.executor.pause.stop()
        if hasattr(self, "sampler"):
            await self.sampler.stop()
        if hasattr(self, "coordinator"):
            # Partitions, routers, then the singletons; leaving frees this instance's locks.
            await self.coordinator.stop()
        for batcher in self._partition_batchers:
            await batcher.close()
        if hasattr(self, "relay"):
            try:
                await self.relay.publish_pending()
            except Exception:
                log.exception("could not flush the outbox at shutdown; it is kept for later")
        if hasattr(self, "processor"):
            self.processor.close()
        if hasattr(self, "hooks"):
            await self.hooks.shutdown()
        if hasattr(self, "exchange"):
            await self.exchange.close()
        if hasattr(self, "bus"):
            await self.bus.close()
        if hasattr(self, "db"):
            await self.db.dispose()
        self.running = False

    def stuck_consumers(self) -> dict[str, str]:
        """Queues whose consumer is stuck, with why: a message held unacknowledged longer
        than ``OM_READY_MAX_UNACKED_SECONDS``, or a retry running past ``OM_RETRY_SECONDS``."""
        if not hasattr(self, "bus"):
            return {}
        s, activity = self.settings, self.bus.activity
        stuck: dict[str, str] = {}
        for queue in activity.queues():
            held = activity.oldest_unacked_age(queue)
            retrying = activity.oldest_retry_age(queue)
            if held > s.ready_max_unacked_seconds:
                stuck[queue] = f"a message unacknowledged for {held:.0f}s"
            elif retrying > s.retry_seconds + _RETRY_SLACK:
                stuck[queue] = f"a message in retry for {retrying:.0f}s"
        if stuck:
            log.warning("readiness: consumers stuck: %s", stuck)
        return stuck

    async def ready(self) -> dict[str, bool]:
        """Up/down of what the service needs, for ``/ready``."""
        consuming = bool(self._consumers) or (
            bool(self._partitioned) and hasattr(self, "coordinator")
        )
        checks = {
            "database": False,
            "broker": False,
            "consumers": consuming,
            "consumers_flowing": not self.stuck_consumers(),
        }
        if hasattr(self, "coordinator"):
            checks["coordination"] = self.coordinator.healthy
        try:
            async with self.sessions() as session:
                await (await session.connection()).execute(text("SELECT 1"))
            checks["database"] = True
        except Exception:
            log.warning("readiness: database unreachable", exc_info=True)
        try:
            checks["broker"] = await self.bus.is_healthy()
        except Exception:
            log.warning("readiness: broker unreachable", exc_info=True)
        return checks
