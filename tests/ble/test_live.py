"""`imu live` session end to end over real bleak: stream, record, analyse, reconnect, clean stop."""

from __future__ import annotations

import asyncio
import random

import numpy as np
import pytest
from ble_targets import SIM_BACKENDS
from bumble_backend import get_link
from rich.console import Console

from firmware_interface.ble import ReconnectPolicy
from firmware_interface.recording import RecordingReader
from imu.live import LiveState, LiveView, run_live
from imu.sessions import replay_session
from simulators.ble_peripheral import SimulatedSensor, runner_source

FAST = ReconnectPolicy(
    base_s=0.05, cap_s=0.4, max_attempts=6, connect_timeout_s=1.0, rng=random.Random(2)
)


@pytest.fixture(scope="module")
def runner_samples():  # type: ignore[no-untyped-def]
    return runner_source(minutes=1.5, seed=4, rate_hz=200)


async def test_live_session_records_reconnects_and_replays(tmp_path, runner_samples) -> None:  # type: ignore[no-untyped-def]
    rec = tmp_path / "live.rec"
    async with SimulatedSensor(get_link(), speed=25.0, source=runner_samples) as sim:
        stop = asyncio.Event()

        async def drive() -> None:
            await asyncio.sleep(1.2)
            await sim.drop_link()  # peripheral-initiated disconnect mid-session
            await asyncio.sleep(2.0)
            stop.set()  # what Ctrl-C does in `imu live`

        driver = asyncio.create_task(drive())
        console = Console(file=open(tmp_path / "view.txt", "w"), force_terminal=True, width=120)  # noqa: SIM115
        res = await asyncio.wait_for(
            run_live(
                sim.address,
                record_path=rec,
                runner="tester",
                stop=stop,
                console=console,
                show=True,
                link_kwargs={**SIM_BACKENDS, "reconnect": FAST},
            ),
            30,
        )
        await driver
        console.file.close()
    s = res.summary
    assert s["link"]["reconnects"] == 1
    assert s["link"]["gaps"] == 1
    assert s["decoder"]["packets_received"] > 100
    # a packet in flight while the link drops is lost (its sequence number was used): at most 1
    assert s["decoder"]["packets_lost"] <= 1
    # the simulated sensor runs 25x faster than the host: the clock sync sees it as drift
    assert s["clock"]["drift_ppm"] == pytest.approx((1 / 25 - 1) * 1e6, rel=0.01)
    # the recording: readable, complete, with the link events
    reader = RecordingReader(rec)
    _rx, packets = reader.packets()
    assert not reader.truncated
    assert len(packets) == s["decoder"]["packets_received"]
    kinds = [e["type"] for _, e in reader.events()]
    for kind in ("config", "session", "disconnected", "reconnect", "gap", "clock", "end"):
        assert kind in kinds, kinds
    # replay gives the same analysis as live
    rep = replay_session(rec)
    assert len(rep.steps) == len(res.steps)
    if len(res.steps):
        np.testing.assert_allclose(rep.steps["time_s"], res.steps["time_s"])
    # the view rendered (in place) without errors
    assert "reconnects" in (tmp_path / "view.txt").read_text()
    # a recording cut off mid-record stays readable up to the cut
    data = rec.read_bytes()
    cut = tmp_path / "cut.rec"
    cut.write_bytes(data[: len(data) // 2 + 7])
    cut_reader = RecordingReader(cut)
    _rx2, cut_packets = cut_reader.packets()
    assert cut_reader.truncated
    assert 0 < len(cut_packets) < len(packets)
    assert cut_packets == packets[: len(cut_packets)]


def test_live_view_renders_empty_state() -> None:
    console = Console(record=True, width=100)
    console.print(LiveView(LiveState(device="x", session="s")))
    assert "link: connecting" in console.export_text()
