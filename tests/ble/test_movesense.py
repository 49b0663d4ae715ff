"""Movesense GSP (/Meas/IMU6): decoder on documented byte vectors, a simulated sensor via real bleak,
and its samples through the pipeline with sensor timestamps."""

from __future__ import annotations

import asyncio
import struct

import numpy as np
import pytest
from bumble_backend import BumbleLinkClient, BumbleLinkScanner, get_link

from firmware_interface.ble import VendorLink, find_sensor
from firmware_interface.vendors.movesense import (
    NOTIFY_UUID,
    WRITE_UUID,
    CommandResult,
    GspError,
    GspImu6Parser,
    Imu6Batch,
    MovesenseClock,
    encode_hello,
    encode_imu6_data,
    encode_subscribe,
    encode_unsubscribe,
    imu6_path,
)
from imu.pipeline import Pipeline, SessionInfo
from simulators.ble_peripheral import SimulatedMovesense, synthetic_source


def test_command_vectors_from_the_documentation() -> None:
    # [1, 99] + b"/Meas/IMU6/104" as quoted from the official sample client
    assert encode_subscribe(99, imu6_path(104)) == bytes.fromhex(
        "01 63 2F 4D 65 61 73 2F 49 4D 55 36 2F 31 30 34"
    )
    assert encode_hello(7) == bytes([0x00, 0x07])
    assert encode_unsubscribe(99) == bytes([0x02, 0x63])
    with pytest.raises(GspError, match="100 Hz"):
        imu6_path(100)
    with pytest.raises(GspError):
        encode_hello(0)


def test_responses_from_the_documentation() -> None:
    p = GspImu6Parser(8)
    assert p.feed(bytes([0x01, 0x07]) + b"Hello") == CommandResult(7, None, "Hello")
    assert p.feed(bytes([0x01, 0x63, 0xC8, 0x00])) == CommandResult(99, 200)  # 200 OK
    assert p.feed(bytes([0x01, 0x63, 0xFB, 0x01])) == CommandResult(99, 507)  # no free slot


def _imu6(n: int, ts: int = 0x00001234) -> tuple[bytes, np.ndarray, np.ndarray]:
    acc = np.arange(3 * n, dtype=np.float32).reshape(n, 3) * 0.5 + 9.0
    gyr = -np.arange(3 * n, dtype=np.float32).reshape(n, 3) * 1.25
    return encode_imu6_data(99, ts, acc, gyr), acc.astype(float), gyr.astype(float)


def test_imu6_layout_byte_by_byte() -> None:
    data, acc, gyr = _imu6(2)
    # type DATA, ref 99, u32 LE timestamp, 2 x acc xyz f32, 2 x gyr xyz f32
    assert data[:6] == bytes([0x02, 0x63, 0x34, 0x12, 0x00, 0x00])
    assert struct.unpack_from("<6f", data, 6) == tuple(acc.reshape(-1))
    assert struct.unpack_from("<6f", data, 30) == tuple(gyr.reshape(-1))
    batch = GspImu6Parser(2).feed(data)
    assert isinstance(batch, Imu6Batch)
    assert batch.timestamp_ms == 0x1234
    np.testing.assert_array_equal(batch.acc_mps2, acc)
    np.testing.assert_array_equal(batch.gyr_dps, gyr)


@pytest.mark.parametrize("cut", [1, 24, 28, 48, 51])  # 24 and 48: first part a multiple of 24
def test_split_batches_are_joined(cut: int) -> None:
    data, acc, gyr = _imu6(2)
    p = GspImu6Parser(2)
    assert p.feed(data[: 2 + cut]) is None
    batch = p.feed(bytes([0x03, 0x63]) + data[2 + cut :])
    assert isinstance(batch, Imu6Batch)
    np.testing.assert_array_equal(batch.acc_mps2, acc)
    np.testing.assert_array_equal(batch.gyr_dps, gyr)
    assert p.bad == 0


def test_garbage_is_counted_not_raised() -> None:
    p = GspImu6Parser(2)
    assert p.feed(b"") is None
    assert p.feed(bytes([0x03, 0x63, 1, 2, 3])) is None  # PART2 without DATA
    assert p.feed(bytes([0x09, 0x01])) is None  # unknown type
    assert p.feed(_imu6(3)[0]) is None  # longer than N=2
    assert p.bad == 4


def test_clock_unwraps_the_ms_timestamp() -> None:
    clock = MovesenseClock(104)
    a = np.zeros((8, 3))
    t1 = clock.sample_times_s(Imu6Batch(1, 0xFFFFFFF0, a, a))
    t2 = clock.sample_times_s(Imu6Batch(1, 0x00000040, a, a))  # wrapped
    assert t2[0] - t1[0] == pytest.approx((0x40 + 0x10) / 1000)
    assert np.diff(t1) == pytest.approx(1 / 104)


async def test_movesense_through_bleak_into_the_pipeline() -> None:
    source = synthetic_source(0.5, 104)
    async with SimulatedMovesense(
        get_link(), source=source, samples_per_batch=8, split_at=100, speed=20.0
    ) as sim:
        device = await asyncio.wait_for(
            find_sensor(sim.address, timeout_s=3, scanner_backend=BumbleLinkScanner), 5
        )
        parser = GspImu6Parser(8)
        clock = MovesenseClock(104)
        results: list[CommandResult] = []
        batches: list[Imu6Batch] = []
        pipeline = Pipeline(SessionInfo("movesense-test", source="movesense"))
        async with VendorLink(
            device,
            notify_uuid=NOTIFY_UUID,
            write_uuid=WRITE_UUID,
            start_commands=(encode_hello(1), encode_subscribe(99, imu6_path(104))),
            stop_commands=(encode_unsubscribe(99),),
            client_backend=BumbleLinkClient,
        ) as link:

            async def run() -> None:
                async for items in link.notifications():
                    for item in items:
                        out = parser.feed(item.data)
                        if isinstance(out, CommandResult):
                            results.append(out)
                        elif isinstance(out, Imu6Batch):
                            batches.append(out)
                            pipeline.feed_samples(
                                clock.sample_times_s(out), out.acc_mps2, out.gyr_dps
                            )
                    if len(batches) >= 40:
                        return

            await asyncio.wait_for(run(), 15)
        res = pipeline.close()
    assert results[:2] == [CommandResult(1, None, "Hello"), CommandResult(99, 200)]
    assert parser.bad == 0
    for got, (ts, acc, gyr) in zip(batches, sim.sent_batches, strict=False):
        assert got.timestamp_ms == ts
        np.testing.assert_array_equal(got.acc_mps2, acc)
        np.testing.assert_array_equal(got.gyr_dps, gyr)
    assert res.summary["decoder"]["samples"] == 8 * len(batches)
