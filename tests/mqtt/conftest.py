"""Fixtures of the MQTT bridge tests: a real Mosquitto per test, simulated runs, an in-process server."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for mqtt_broker

from mqtt_broker import RUNNER_ACL, Mosquitto, missing_mosquitto

from imu.server import BridgeServer, ServerConfig
from storage.records import Sink

SERVER_USER = "imu-server"
PASSWORDS = {SERVER_USER: "server-pw", "alice": "alice-pw", "bob": "bob-pw", "carol": "carol-pw"}


def _require_mosquitto() -> None:
    msg = missing_mosquitto()
    if msg:
        pytest.skip(msg)


@pytest.fixture
def mosquitto_factory(tmp_path: Path) -> Iterator[Callable[..., Mosquitto]]:
    """Start brokers in the test's tmp dir; all are stopped by PID at the end."""
    _require_mosquitto()
    started: list[Mosquitto] = []

    def make(name: str = "mosq", **kw: Any) -> Mosquitto:
        m = Mosquitto(tmp_path / name, **kw)
        m.start()
        started.append(m)
        return m

    yield make
    for m in started:
        m.stop()


@pytest.fixture
def broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """Anonymous broker with persistence and a raised max_queued_messages."""
    return mosquitto_factory()


@pytest.fixture
def acl_broker(mosquitto_factory: Callable[..., Mosquitto]) -> Mosquitto:
    """Broker with passwords and the per-runner ACL of docs/bridge.md."""
    return mosquitto_factory(
        "mosq-acl", users=PASSWORDS, acl=RUNNER_ACL.format(server_user=SERVER_USER)
    )


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
