"""Soak the service with kill -9: the long variant of tests/faults/test_kill_points.py.

Each cycle starts ``om run`` as a subprocess with ``OM_FAULT_KILL_AT`` set to a kill point and
pass number drawn at random (or kills it from outside at a random moment), publishes a burst
of signals, waits for it to die, restarts it without the variable, lets it settle and drain,
and audits that burst: signals lost/duplicated, orders lost/duplicated on the (fake) Bybit,
events lost/duplicated after de-duplication by event_id, fills and positions. Exit code 1 when
any count is not 0.

    .venv/bin/python -m bench.soak --cycles 200 --burst 20 --seed 7   # from the repository root
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

from pydantic import SecretStr

from om_core.db import migrate
from om_core.messaging.rabbitmq import RabbitBus
from plugins_builtin.bybit.gateway import Gateway, GatewayConfig
from tests.faults.conftest import World
from tests.faults.support import (
    API_KEY,
    API_SECRET,
    Db,
    EventCollector,
    RecordingFakeBybit,
    Tally,
    audit_positions,
)
from tests.faults.test_kill_points import POINTS, run_cycle
from tests.services import fresh_pg_database, fresh_vhost
from tests.support.gateway import bus_context


def _args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cycles", type=int, default=100, help="kill/restart cycles (100)")
    parser.add_argument("--burst", type=int, default=20, help="signals per cycle (20)")
    parser.add_argument("--max-pass", type=int, default=8, help="largest N of point:N (8)")
    parser.add_argument(
        "--random-share", type=float, default=0.2, help="share of outside kills (0.2)"
    )
    parser.add_argument("--seed", type=int, default=1, help="fault schedule seed (1)")
    parser.add_argument("--logs", type=Path, help="keep service logs here (default: temp)")
    return parser.parse_args(argv)


async def soak(args: argparse.Namespace, db_url: str, amqp_url: str, log_dir: Path) -> int:
    rng = random.Random(args.seed)
    total = Tally()
    await migrate.upgrade(db_url)
    async with RecordingFakeBybit() as fake:
        bus = RabbitBus(amqp_url)
        await bus.start()
        db = Db(db_url)
        events = await EventCollector(bus).start()
        gateway = Gateway(
            GatewayConfig(
                ws_url=fake.ws_private_url,
                api_key=API_KEY,
                api_secret=SecretStr(API_SECRET),
                account="soak",
                backoff_initial=0.1,
                backoff_max=0.5,
            ),
            bus_context(bus),
        )
        await gateway.start()
        world = World(db_url, amqp_url, fake, bus, db, events)
        started = time.monotonic()
        try:
            for cycle in range(args.cycles):
                if rng.random() < args.random_share:
                    kill_at, kill_after = None, rng.uniform(0.02, 1.0)
                    label = f"outside kill after {kill_after:.2f}s"
                else:
                    kill_at = f"{rng.choice(POINTS)}:{rng.randint(1, args.max_pass)}"
                    kill_after, label = None, kill_at
                tally, harness = await run_cycle(
                    world,
                    f"c{cycle}",
                    kill_at=kill_at,
                    kill_after=kill_after,
                    log_dir=log_dir,
                    burst=args.burst,
                )
                total += tally
                dirty = {k: v for k, v in tally.counts().items() if v}
                status = "ok" if not dirty and not harness else f"{dirty} {harness[:1]}"
                print(f"cycle {cycle:4d} {label:40s} {status}", flush=True)
            await audit_positions(db, fake, total)
        finally:
            await gateway.stop()
            await events.stop()
            await db.close()
            await bus.close()
    elapsed = time.monotonic() - started
    kept = f"; logs in {log_dir}" if args.logs is not None else ""
    print(f"\n{args.cycles} cycles × {args.burst} signals in {elapsed:.0f}s{kept}")
    print(total.report())
    return 0 if total.clean() else 1


def main(argv: list[str] | None = None) -> int:
    args = _args(argv)
    # Fresh database and vhost, dropped at the end (they are set up outside the event loop).
    with fresh_pg_database() as db_url, fresh_vhost() as amqp_url:
        if args.logs is not None:
            args.logs.mkdir(parents=True, exist_ok=True)
            return asyncio.run(soak(args, db_url, amqp_url, args.logs))
        with tempfile.TemporaryDirectory(prefix="om-soak-") as tmp:
            return asyncio.run(soak(args, db_url, amqp_url, Path(tmp)))


if __name__ == "__main__":
    sys.exit(main())
