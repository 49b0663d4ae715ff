"""Helpers of the MQTT bridge tests (imported by name: ``from mqtt_helpers import ...``).

Kept out of ``conftest.py``: test modules of several directories importing ``conftest`` by name
get whichever ``conftest`` module was imported first.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator, Sequence

from mqtt_broker import Mosquitto

from imu.server import BridgeServer, ServerConfig
from storage.records import Sink

SERVER_USER = "imu-server"
PASSWORDS = {SERVER_USER: "server-pw", "alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


@functools.cache
def simulated_packets(minutes: float, seed: int) -> Sequence[tuple[float, bytes]]:
    from simulators import simulate_run

    return list(simulate_run(minutes, seed).packets)


@contextlib.asynccontextmanager
async def running_server(
    broker: Mosquitto, sinks: Sequence[Sink] = (), **kw: object
) -> AsyncIterator[BridgeServer]:
    """A :class:`BridgeServer` task on ``broker``, connected before the body runs."""
    kw.setdefault("server_id", "test")
    kw.setdefault("stats_interval_s", 0.0)
    kw.setdefault("backoff_cap_s", 0.5)
    cfg = ServerConfig(host=broker.host, port=broker.port, **kw)  # type: ignore[arg-type]
    server = BridgeServer(cfg, sinks)
    task = asyncio.create_task(server.run(), name="test.server")
    try:
        await asyncio.wait_for(server.connected.wait(), 10)
        yield server
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
