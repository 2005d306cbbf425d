"""Run the fake Bybit standalone: ``python -m tests.fake_bybit --port 8800``.

Prints the REST and private WebSocket URLs and the API key/secret it accepts, then serves
until interrupted (Ctrl-C or SIGTERM). A demo aid: the state lives in memory only.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
from decimal import Decimal

from tests.fake_bybit.server import FakeBybit


async def serve(args: argparse.Namespace) -> None:
    fake = FakeBybit(
        api_key=args.api_key,
        api_secret=args.api_secret,
        balance=Decimal(args.balance),
        host=args.host,
        port=args.port,
    )
    await fake.start()
    print(f"fake Bybit V5 REST:       {fake.http_url}", flush=True)
    print(f"fake Bybit V5 private WS: {fake.ws_private_url}", flush=True)
    print(f"api key: {args.api_key}  api secret: {args.api_secret}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fake_bybit", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8800, help="0 picks a free port")
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--api-secret", default="test-secret")
    parser.add_argument("--balance", default="100000", help="starting USDT wallet balance")
    asyncio.run(serve(parser.parse_args()))


if __name__ == "__main__":
    main()
