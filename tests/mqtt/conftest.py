"""Fixtures of the MQTT bridge tests: a real Mosquitto per test, simulated runs, an in-process server."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/ for mqtt_broker

from mqtt_broker import RUNNER_ACL, Mosquitto, missing_mosquitto
from mqtt_helpers import PASSWORDS, SERVER_USER


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
