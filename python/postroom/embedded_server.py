"""Serves the embedded (in-memory, development-only) broker to other processes, as
``postroom broker`` does: the broker listens on an ephemeral local port, and optionally a
small asyncio TCP relay accepts bootstrap connections on a fixed one. Kafka clients bootstrap
through the relay, then follow the broker's advertised 127.0.0.1 address."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import Callable, Iterable
from typing import Any

from ._core import EmbeddedBroker

Announce = Callable[[str], object]


def serve(name: str = "", *, port: int | None = None,
          topics: Iterable[tuple[str, int]] = (), announce: Announce = print) -> None:
    """Creates ``topics`` (name, partitions) on the embedded broker ``embedded://name``, says
    where it listens through ``announce`` and serves until SIGINT or SIGTERM. With ``port``,
    also relays bootstrap connections from 127.0.0.1:port."""
    broker = EmbeddedBroker.shared(name)
    for topic, partitions in topics:
        broker.create_topic(topic, partitions)
    bootstrap = broker.bootstrap_servers
    announce(f"embedded broker ready: kafka://{bootstrap}  (in memory; Ctrl-C stops)")
    if port is None:
        _wait_for_signal()
        return
    asyncio.run(_relay(port, bootstrap, announce))


def _wait_for_signal() -> None:
    stop = False

    def handler(signum: int, frame: Any) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    while not stop:
        time.sleep(0.2)


async def _relay(port: int, bootstrap: str, announce: Announce) -> None:
    """Accepts connections on 127.0.0.1:port and relays them to the embedded broker until
    SIGINT or SIGTERM."""
    target_host, target_port = bootstrap.split(",")[0].rsplit(":", 1)

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()

    async def handle(client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        try:
            broker_r, broker_w = await asyncio.open_connection(target_host, int(target_port))
        except OSError:
            client_w.close()
            return
        await asyncio.gather(pipe(client_r, broker_w), pipe(broker_r, client_w))

    server = await asyncio.start_server(handle, "127.0.0.1", port)
    announce(f"also listening on kafka://127.0.0.1:{port}")
    loop = asyncio.get_running_loop()
    stopped = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stopped.set)
    async with server:
        await stopped.wait()


__all__ = ["serve"]
