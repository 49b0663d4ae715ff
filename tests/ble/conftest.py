"""BLE tests: the project's real bleak code path against simulated sensors on Bumble's LocalLink.

``--imu-address ADDR|NAME`` runs the tests marked ``hardware`` (the same scenarios that need no
fault injection) against a real sensor through the OS Bluetooth stack; without it they are skipped.
"""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import bleak_retry_connector
from ble_targets import SIM_BACKENDS, Target
from bumble_backend import reset_link

from simulators.ble_peripheral import SimulatedSensor


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--imu-address",
        action="store",
        default=None,
        help="address or name of a real v1 sensor: run the 'hardware' BLE tests against it",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--imu-address"):
        return
    skip = pytest.mark.skip(reason="needs a real sensor: pass --imu-address ADDR|NAME")
    for item in items:
        if "hardware" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def fresh_air(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """A new virtual radio per test; bleak-retry-connector's 20 s connect timeout shortened."""
    reset_link()
    monkeypatch.setattr(bleak_retry_connector, "BLEAK_TIMEOUT", 0.5)
    return


@pytest.fixture
async def sim_sensor() -> AsyncIterator[SimulatedSensor]:
    """A simulated sensor at 20x real time (200 Hz -> 4000 samples per host second)."""
    from bumble_backend import get_link

    async with SimulatedSensor(get_link(), speed=20.0, record_samples=True) as sim:
        yield sim


@pytest.fixture(params=["sim", pytest.param("hardware", marks=pytest.mark.hardware)])
async def target(request: pytest.FixtureRequest) -> AsyncIterator[Target]:
    """The same test against the simulator and (with --imu-address) a real sensor."""
    if request.param == "hardware":
        yield Target(str(request.config.getoption("--imu-address")))
        return
    from bumble_backend import get_link

    async with SimulatedSensor(get_link(), speed=20.0, record_samples=True) as sim:
        yield Target(sim.address, sim, dict(SIM_BACKENDS))
