"""The project's BleakScanner/BleakClient code path (firmware_interface.ble) end to end.

Simulated sensors run on Bumble's in-process LocalLink behind a small bleak backend
(tests/ble/bumble_backend.py); tests marked ``hardware`` also run against a real sensor with
``--imu-address``.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable

import numpy as np
import pytest
from ble_targets import SIM_BACKENDS, Target
from bumble_backend import BumbleLinkClient, BumbleLinkScanner, get_link

from firmware_interface.ble import (
    CommandRejectedError,
    ConnectionLostError,
    DeviceNotFoundError,
    LinkEvent,
    MtuTooSmallError,
    Received,
    ReconnectPolicy,
    SensorLink,
    StreamConfig,
    find_sensor,
    max_samples_for_mtu,
)
from firmware_interface.decoder import PacketDecoder
from simulators.ble_peripheral import SimulatedSensor

FAST = ReconnectPolicy(
    base_s=0.05, cap_s=0.4, max_attempts=6, connect_timeout_s=1.0, rng=random.Random(1)
)


async def collect(
    link: SensorLink,
    n_packets: int,
    *,
    timeout_s: float = 10.0,
    on_count: Callable[[int], object] | None = None,
) -> list[Received]:
    """Packets from the link until ``n_packets`` arrived (asyncio timeout)."""
    got: list[Received] = []

    async def run() -> None:
        async for batch in link.batches(max_wait_s=0.05):
            got.extend(batch)
            if on_count is not None:
                res = on_count(len(got))
                if asyncio.iscoroutine(res):
                    await res
            if len(got) >= n_packets:
                return

    await asyncio.wait_for(run(), timeout_s)
    return got


def sent_samples(sim: SimulatedSensor) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = sim.state.sent_samples
    return (
        np.concatenate([p[0] for p in parts]),
        np.concatenate([p[1] for p in parts]),
        np.concatenate([p[2] for p in parts]),
    )


async def test_connect_configure_stream(target: Target) -> None:
    device = await asyncio.wait_for(
        find_sensor(target.identifier, timeout_s=5.0, **target.scan_kwargs), 10
    )
    async with SensorLink(device, StreamConfig(sample_rate_hz=200), **target.kwargs) as link:
        assert link.info is not None
        assert link.info.protocol_version == 1
        assert link.stats.mtu >= 23
        assert link.stats.samples_per_packet == max_samples_for_mtu(link.stats.mtu)
        packets = await collect(link, 60)
    decoder = PacketDecoder()
    out = decoder.decode([p.data for p in packets])
    assert decoder.stats.decoded == len(packets)
    assert decoder.stats.corrupt == 0
    assert out.sample_rate_hz == 200
    assert np.all(np.diff(out.t_s) > 0)
    if target.sim is not None:  # decoded samples equal what the simulated sensor sent
        assert link.stats.mtu == 247
        assert link.stats.samples_per_packet == 19
        t_s, acc, gyr = sent_samples(target.sim)
        n = len(out)
        t0 = out.t_s[0]
        i0 = int(np.argmin(np.abs(t_s - t0)))
        np.testing.assert_allclose(out.t_s, t_s[i0 : i0 + n] + (t0 - t_s[i0]), atol=1e-9)
        np.testing.assert_array_equal(out.acc_mps2, acc[i0 : i0 + n])
        np.testing.assert_array_equal(out.gyr_dps, gyr[i0 : i0 + n])
        assert target.sim.state.commands[:2] == [0x05, 0x03]  # DEVICE_INFO, SET_CONFIG first
    # sensor-clock times map to UTC close to the host clock (in-process link: ~zero latency)
    est = link.clock.estimate()
    assert est.round_trips >= 5
    assert abs(link.clock.to_utc(out.t_s[-1] + (link.unwrapper.peek(0) * 0)) - time.time()) < 5.0


async def test_find_by_name_and_address(sim_sensor: SimulatedSensor) -> None:
    by_name = await asyncio.wait_for(
        find_sensor("IMU-SIM1", timeout_s=3.0, scanner_backend=BumbleLinkScanner), 5
    )
    by_addr = await asyncio.wait_for(
        find_sensor(sim_sensor.address.lower(), timeout_s=3.0, scanner_backend=BumbleLinkScanner), 5
    )
    assert by_name.address == by_addr.address == sim_sensor.address


async def test_sensor_that_never_appears() -> None:
    started = time.monotonic()
    with pytest.raises(DeviceNotFoundError) as err:
        await asyncio.wait_for(
            find_sensor("NoSuchIMU", timeout_s=0.5, scanner_backend=BumbleLinkScanner), 5
        )
    assert err.value.identifier == "NoSuchIMU"
    assert err.value.timeout_s == 0.5
    assert "NoSuchIMU" in str(err.value)
    assert time.monotonic() - started < 2.0
    # connecting straight to an address nobody advertises: clear error after the connect timeout
    with pytest.raises(DeviceNotFoundError) as err2:
        async with SensorLink("AA:BB:CC:DD:EE:FF", reconnect=FAST, **SIM_BACKENDS):
            pass
    assert err2.value.identifier == "AA:BB:CC:DD:EE:FF"


async def test_powered_but_not_advertising_then_connect_times_out() -> None:
    async with SimulatedSensor(get_link(), advertise=False) as sim:
        device = None
        with pytest.raises(DeviceNotFoundError):
            device = await find_sensor(
                sim.address, timeout_s=0.3, scanner_backend=BumbleLinkScanner
            )
        assert device is None


async def test_packet_loss_is_counted(sim_sensor: SimulatedSensor) -> None:
    async with SensorLink(sim_sensor.address, reconnect=FAST, **SIM_BACKENDS) as link:
        injected = False

        def inject(count: int) -> None:
            nonlocal injected
            if count >= 10 and not injected:
                injected = True
                sim_sensor.lose_packets(7)

        packets = await collect(link, 60, on_count=inject)
    decoder = PacketDecoder()
    decoder.decode([p.data for p in packets])
    assert sim_sensor.state.skipped == 7
    assert decoder.stats.lost == 7
    assert decoder.stats.gaps == 1
    assert link.stats.queue_drops == 0


async def test_duplicate_delivery_is_dropped_by_sequence(sim_sensor: SimulatedSensor) -> None:
    async with SensorLink(sim_sensor.address, reconnect=FAST, **SIM_BACKENDS) as link:
        sim_sensor.duplicate_packets(25)
        packets = await collect(link, 60)
    decoder = PacketDecoder()
    out = decoder.decode([p.data for p in packets])
    assert sim_sensor.state.duplicated == 25
    assert link.stats.duplicates == 25
    assert decoder.stats.duplicates == 0
    assert decoder.stats.lost == 0
    _t_s, acc, _ = sent_samples(sim_sensor)
    np.testing.assert_array_equal(out.acc_mps2, acc[: len(out)])


async def test_peripheral_disconnect_reconnects_and_continues(sim_sensor: SimulatedSensor) -> None:
    events: list[LinkEvent] = []
    dropped = False

    async def drop(count: int) -> None:
        nonlocal dropped
        if count >= 20 and not dropped:
            dropped = True
            await sim_sensor.drop_link()

    async with SensorLink(
        sim_sensor.address, reconnect=FAST, on_event=events.append, **SIM_BACKENDS
    ) as link:
        packets = await collect(link, 80, on_count=drop, timeout_s=15)
        stats = link.stats
    kinds = [e.type for e in events]
    assert kinds.count("disconnected") == 1
    assert kinds.count("reconnected") == 1
    assert kinds.count("config") == 2  # configured again after the reconnect
    gap = next(e for e in events if e.type == "gap")
    assert gap.data["gap_s"] > 0
    assert gap.data["missing_samples"] > 0
    assert stats.reconnects == 1
    assert stats.disconnects == 1
    assert stats.gaps == 1
    assert sim_sensor.state.connections == 2
    assert sim_sensor.state.commands.count(0x01) == 2  # START_STREAM again
    # the session continues on one decoder: sequence numbers continue, time jumps over the gap
    decoder = PacketDecoder()
    out = decoder.decode([p.data for p in packets])
    assert decoder.stats.decoded == len(packets)
    assert decoder.stats.reordered == 0
    jumps = np.diff(out.t_s)
    assert np.sum(jumps > 2 / 200) == 1
    reconnect = next(e for e in events if e.type == "reconnected")
    print(
        f"\nreconnect: outage {reconnect.data['outage_s'] * 1e3:.0f} ms, attempts {reconnect.data['attempts']}"
    )


async def test_reconnect_gives_up_with_a_clear_error(sim_sensor: SimulatedSensor) -> None:
    async with SensorLink(sim_sensor.address, reconnect=FAST, **SIM_BACKENDS) as link:
        await collect(link, 5)
        await sim_sensor.close()  # the sensor is switched off
        with pytest.raises(ConnectionLostError) as err:
            await collect(link, 10_000, timeout_s=20)
    assert err.value.address == sim_sensor.address
    assert err.value.attempts == FAST.max_attempts


async def test_small_mtu_gives_fewer_samples_per_packet() -> None:
    async with SimulatedSensor(get_link(), speed=20.0, max_mtu=100) as sim:
        async with SensorLink(sim.address, reconnect=FAST, **SIM_BACKENDS) as link:
            packets = await collect(link, 10)
        assert link.stats.mtu == 100
        assert link.stats.samples_per_packet == 6  # 16 + 12 * 6 = 88 <= 97
        assert {len(p.data) for p in packets} == {88}
        with pytest.raises(MtuTooSmallError) as err:
            async with SensorLink(
                sim.address, StreamConfig(samples_per_packet=19), reconnect=FAST, **SIM_BACKENDS
            ):
                pass
        assert err.value.mtu == 100
        assert err.value.needed_bytes == 244


async def test_sensor_refusing_large_notifications() -> None:
    """MTU 247, but the sensor's radio buffer takes 100 bytes: it refuses, the host steps down."""
    async with SimulatedSensor(get_link(), speed=20.0, max_notify_bytes=100) as sim:
        async with SensorLink(sim.address, reconnect=FAST, **SIM_BACKENDS) as link:
            packets = await collect(link, 10)
        assert link.stats.samples_per_packet == 7  # 16 + 12 * 7 = 100
        assert [c[3] for c in sim.state.refused_configs] == list(range(19, 7, -1))
        assert {len(p.data) for p in packets} == {100}
        with pytest.raises(CommandRejectedError) as err:
            async with SensorLink(
                sim.address, StreamConfig(samples_per_packet=10), reconnect=FAST, **SIM_BACKENDS
            ):
                pass
        assert err.value.command == "SET_CONFIG"


async def test_unsupported_rate_is_refused() -> None:
    async with SimulatedSensor(get_link(), speed=20.0, supported_rates_hz=(100, 200)) as sim:
        with pytest.raises(CommandRejectedError, match="400 Hz"):
            async with SensorLink(
                sim.address, StreamConfig(sample_rate_hz=400), reconnect=FAST, **SIM_BACKENDS
            ):
                pass


async def test_throughput(capsys: pytest.CaptureFixture[str]) -> None:
    """Packets per second through bleak + the Bumble stack + dedup + clock sync + decoder.

    The simulated sensor (400x real time: 4210 packets/s offered) and both Bumble stacks share
    the CPU with the client, so this is a lower bound of what the client sustains.
    """
    async with (
        SimulatedSensor(get_link(), speed=400.0) as sim,
        SensorLink(sim.address, reconnect=FAST, queue_size=100_000, **SIM_BACKENDS) as link,
    ):
        decoder = PacketDecoder()
        got = 0
        started = time.perf_counter()

        async def run() -> None:
            nonlocal got
            async for batch in link.batches(max_wait_s=0.05):
                decoder.decode([p.data for p in batch])
                got += len(batch)
                if got >= 3000:
                    return

        await asyncio.wait_for(run(), 30)
        elapsed = time.perf_counter() - started
    # the client alone: callback + queue + dedup + clock sync + decoder, no radio simulation
    link2 = SensorLink("AA:BB:CC:DD:EE:FF")
    from firmware_interface.protocol import encode_data_packet

    raw = np.zeros((19, 6), np.int16)
    pkts = [encode_data_packet(k, k * 95_000, 200, 16, 2000, raw) for k in range(20_000)]
    dec2 = PacketDecoder()
    t0 = time.perf_counter()
    for k in range(0, len(pkts), 200):
        for p in pkts[k : k + 200]:
            link2._on_data(None, bytearray(p))
        batch = [link2._queue.get_nowait() for _ in range(link2._queue.qsize())]
        dec2.decode([b.data for b in link2._accept(batch)])
    client_rate = len(pkts) / (time.perf_counter() - t0)
    rate = got / elapsed
    with capsys.disabled():
        print(
            f"\nthroughput end to end: {got} packets in {elapsed:.2f} s = {rate:.0f} packets/s "
            f"(queue drops {link.stats.queue_drops}, lost {decoder.stats.lost}); "
            f"client alone: {client_rate:.0f} packets/s"
        )
    assert decoder.stats.lost == 0
    assert link.stats.queue_drops == 0
    assert dec2.stats.decoded == len(pkts)
    assert rate > 100  # a 400 Hz sensor at 19 samples per packet sends 21 packets/s
    assert client_rate > 2000


def test_backoff_is_capped_and_jittered() -> None:
    policy = ReconnectPolicy(base_s=0.25, cap_s=8.0, jitter=0.5, rng=random.Random(0))
    delays = [policy.delay_s(k) for k in range(12)]
    assert all(0 < d <= 8.0 for d in delays)
    assert delays[-1] >= 4.0  # capped at 8 s, at most half removed by jitter
    assert len(set(delays)) == len(delays)


async def test_client_backend_is_real_bleak() -> None:
    from bleak import BleakClient

    client = BleakClient("AA:BB:CC:DD:EE:FF", backend=BumbleLinkClient)
    assert client.backend_id == "BumbleLinkClient"
