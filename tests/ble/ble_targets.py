"""Where a BLE test streams from (a named module: test modules import it, never conftest)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from bumble_backend import BumbleLinkClient, BumbleLinkScanner

from simulators.ble_peripheral import SimulatedSensor


@dataclass
class Target:
    """Where a test streams from: a simulated sensor (with its fault injection) or real hardware."""

    identifier: str
    sim: SimulatedSensor | None = None
    kwargs: dict[str, Any] = field(default_factory=dict)  # backends for SensorLink / find_sensor

    @property
    def scan_kwargs(self) -> dict[str, Any]:
        return {"scanner_backend": self.kwargs["scanner_backend"]} if self.kwargs else {}


SIM_BACKENDS: dict[str, Any] = {
    "client_backend": BumbleLinkClient,
    "scanner_backend": BumbleLinkScanner,
}
