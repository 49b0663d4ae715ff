"""Fixtures of the web tests: a real Mosquitto (passwords + ACL) and a `.rec` fixture of a simulated
run. The stack itself (in-process BridgeServer + embedded store + web server) is in web_stack.py."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

sys.path.append(str(Path(__file__).resolve().parents[1]))  # tests/ for mqtt_broker (appended:
# tests/simulators must not shadow the simulators package)
sys.path.insert(0, str(Path(__file__).parent))

from mqtt_broker import RUNNER_ACL, Mosquitto, missing_mosquitto
from web_stack import CLINIC_ACL, PASSWORDS, RUN_MINUTES, RUN_SEED, SERVER_USER


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Mosquitto]:
    msg = missing_mosquitto()
    if msg:
        pytest.skip(msg)
    m = Mosquitto(
        tmp_path / "mosq",
        users=PASSWORDS,
        acl=RUNNER_ACL.format(server_user=SERVER_USER) + CLINIC_ACL,
    )
    m.start()
    yield m
    m.stop()


@pytest.fixture(scope="session")
def recording(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """A `.rec` file of a simulated run: the page's replay source streams its real v1 packets."""
    from firmware_interface.recording import RecordingWriter
    from simulators import simulate_run

    run = simulate_run(RUN_MINUTES, RUN_SEED)
    path = tmp_path_factory.mktemp("rec") / "run.rec"
    with RecordingWriter(path, {"sample_rate_hz": 200, "source": "simulate_run"}) as w:
        for rx_s, pkt in run.packets:
            w.write_packet(rx_s, pkt)
    return path, len(run.packets)
