"""Pytest fixtures for real servers (InfluxDB 1.x, VictoriaMetrics), imported by tests/conftest.py.

Each server runs from the Debian binary on a free 127.0.0.1 port with its data in a pytest tmp
dir and is stopped by PID at the end. A missing binary skips the test with the Debian package to
install (CI: ``apt-get install influxdb victoria-metrics mosquitto mosquitto-clients``).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator

import pytest

from storage.testing_servers import InfluxD, VictoriaMetrics, missing_binary

_db_counter = itertools.count(1)


def _require(binary: str) -> None:
    msg = missing_binary(binary)
    if msg:
        pytest.skip(msg)


@pytest.fixture(scope="session")
def influxd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[InfluxD]:
    """One InfluxDB 1.x for the session; tests use their own database (``influx_db``)."""
    _require("influxd")
    server = InfluxD(tmp_path_factory.mktemp("influxd"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def influx_db(influxd: InfluxD) -> str:
    """A fresh database name on the session server (created)."""
    name = f"t{next(_db_counter)}"
    influxd.create_database(name)
    return name


@pytest.fixture
def influxd_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[], InfluxD]]:
    """Private InfluxDB 1.x servers (for tests that kill/restart them); all stopped at the end."""
    _require("influxd")
    started: list[InfluxD] = []

    def make() -> InfluxD:
        server = InfluxD(tmp_path_factory.mktemp("influxd_own"))
        server.start()
        started.append(server)
        return server

    try:
        yield make
    finally:
        for s in started:
            s.stop()


@pytest.fixture(scope="session")
def victoria(tmp_path_factory: pytest.TempPathFactory) -> Iterator[VictoriaMetrics]:
    """One VictoriaMetrics for the session (dedup 1 ms, latency offset 0 s)."""
    _require("victoria-metrics")
    server = VictoriaMetrics(tmp_path_factory.mktemp("vm"))
    server.start()
    try:
        yield server
    finally:
        server.stop()
