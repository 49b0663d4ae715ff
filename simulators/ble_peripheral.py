"""Simulated BLE sensors on Bumble's in-process virtual radio (no hardware, no OS Bluetooth).

:class:`SimulatedSensor` implements the sensor side of ``docs/protocol.md``: the IMU service with a
data characteristic (notify) and a control characteristic (write + indicate), the v1 control
commands (``DEVICE_INFO``, ``SET_CONFIG``, ``START_STREAM``, ``STOP_STREAM``, ``TIME_SYNC``) and
streaming of v1 data packets built from a :class:`SampleSource` (by default the simulated runner
of :mod:`simulators`). It has a drifting crystal (``clock_drift_ppm``), a free-running u32
microsecond clock that may start near its wrap, and fault injection for tests: lost packets
(sequence numbers skipped), duplicated notifications, a peripheral-initiated disconnect and a
notification size limit smaller than the MTU.

Every device lives on a :class:`bumble.link.LocalLink` shared with the central (see
``tests/ble/bumble_backend.py`` for the bleak backend that talks to it)::

    async with SimulatedSensor(link, source=ArraySource(acc, gyr, 200)) as sensor:
        ...  # BleakScanner / BleakClient with the Bumble backend find and stream from it
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from bumble.controller import Controller
from bumble.core import UUID, AdvertisingData
from bumble.device import Connection, Device
from bumble.gatt import Characteristic, CharacteristicValue, Service
from bumble.hci import Address
from bumble.host import Host
from bumble.link import LocalLink
from bumble.transport.common import AsyncPipeSink

from firmware_interface.control import DeviceInfo, encode_device_info, encode_time_sync_reply
from firmware_interface.protocol import (
    ACC_RANGES_G,
    CONTROL_CHAR_UUID,
    DATA_CHAR_UUID,
    GYR_RANGES_DPS,
    HEADER_BYTES,
    MAX_SAMPLES_PER_PACKET,
    PROTOCOL_VERSION,
    SAMPLE_BYTES,
    SERVICE_UUID,
    STANDARD_GRAVITY_MPS2,
    Command,
    Status,
    encode_data_packet,
    to_raw,
)

log = logging.getLogger(__name__)

__all__ = [
    "ADVERTISING_INTERVAL_MS",
    "ArraySource",
    "SampleSource",
    "SensorState",
    "SimulatedSensor",
    "advertising_payloads",
    "runner_source",
]

#: advertising interval of every simulated device (fast discovery in tests)
ADVERTISING_INTERVAL_MS = 20
#: legacy advertising PDU payload limit (Bumble does not enforce it, real stacks do)
LEGACY_ADV_MAX_BYTES = 31
_CRC_BYTES = 2
_SET_CONFIG = struct.Struct("<HBHB")
_U32 = 1 << 32


class SampleSource(Protocol):
    """Where a simulated sensor's samples come from."""

    def read(
        self, start: int, n: int, rate_hz: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Samples ``start .. start + n - 1`` at ``rate_hz``: (acc_mps2 (n, 3), gyr_dps (n, 3))."""
        ...


@dataclass(slots=True)
class ArraySource:
    """Samples from arrays recorded at ``rate_hz`` (repeated end to end; nearest sample on rate change).

    Attributes:
        acc_mps2: (m, 3) specific force in m/s^2.
        gyr_dps: (m, 3) angular rate in deg/s.
        rate_hz: rate of the arrays.
    """

    acc_mps2: npt.NDArray[np.float64]
    gyr_dps: npt.NDArray[np.float64]
    rate_hz: float

    def read(
        self, start: int, n: int, rate_hz: int
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        idx = np.arange(start, start + n, dtype=np.int64)
        if rate_hz != self.rate_hz:
            idx = np.floor(idx * (self.rate_hz / rate_hz)).astype(np.int64)
        idx %= len(self.acc_mps2)
        return self.acc_mps2[idx], self.gyr_dps[idx]


def runner_source(minutes: float = 1.0, seed: int = 1, rate_hz: int = 200) -> ArraySource:
    """Samples of the simulated runner (:func:`simulators.simulate_run`), sensor frame, quantised.

    Falls back to a synthetic 2.8 Hz running-like signal if the runner simulator is unavailable.
    """
    try:
        from simulators import simulate_run
        from simulators.sensor import SensorConfig
    except ImportError:
        return synthetic_source(minutes, rate_hz)
    run = simulate_run(minutes, seed, sensor=SensorConfig(sample_rate_hz=rate_hz, seed=seed))
    _t, acc, gyr = run.samples
    return ArraySource(
        np.asarray(acc, dtype=np.float64), np.asarray(gyr, dtype=np.float64), float(rate_hz)
    )


def synthetic_source(minutes: float = 1.0, rate_hz: int = 200) -> ArraySource:
    """A deterministic running-like signal (vertical bounce at 2.8 Hz, pelvis rotation at 1.4 Hz)."""
    t = np.arange(round(minutes * 60 * rate_hz)) / rate_hz
    acc = np.zeros((len(t), 3))
    acc[:, 2] = STANDARD_GRAVITY_MPS2 + 12.0 * np.sin(2 * np.pi * 2.8 * t)
    acc[:, 0] = 3.0 * np.sin(2 * np.pi * 2.8 * t + 1.0)
    acc[:, 1] = 2.0 * np.sin(2 * np.pi * 1.4 * t)
    gyr = np.zeros((len(t), 3))
    gyr[:, 2] = 60.0 * np.sin(2 * np.pi * 1.4 * t)
    gyr[:, 0] = 30.0 * np.sin(2 * np.pi * 1.4 * t + 0.5)
    gyr[:, 1] = 20.0 * np.sin(2 * np.pi * 2.8 * t)
    return ArraySource(acc, gyr, float(rate_hz))


def advertising_payloads(name: str, service_uuid: str) -> tuple[bytes, bytes]:
    """(advertising data, scan response) that fit real 31-byte legacy PDUs.

    Flags and the 128-bit service UUID take 21 bytes of the advertisement; the complete local
    name goes there too when it fits (names up to 8 bytes), else into the scan response only.
    (Bumble's virtual controller answers scan requests with the advertising data, so a name that
    lives only in the scan response is invisible in the in-process tests.)

    Raises:
        ValueError: a payload exceeds 31 bytes.
    """
    base: list[tuple[int, bytes]] = [
        (AdvertisingData.FLAGS, b"\x06"),
        (AdvertisingData.COMPLETE_LIST_OF_128_BIT_SERVICE_CLASS_UUIDS, bytes(UUID(service_uuid))),
    ]
    name_field = (AdvertisingData.COMPLETE_LOCAL_NAME, name.encode())
    adv = bytes(AdvertisingData([*base, name_field]))
    if len(adv) > LEGACY_ADV_MAX_BYTES:
        adv = bytes(AdvertisingData(base))
    scan = bytes(AdvertisingData([name_field]))
    for what, payload in (("advertising data", adv), ("scan response", scan)):
        if len(payload) > LEGACY_ADV_MAX_BYTES:
            raise ValueError(f"{what} of {len(payload)} bytes > {LEGACY_ADV_MAX_BYTES}")
    return adv, scan


@dataclass(slots=True)
class SensorState:
    """What a test can observe of a simulated sensor.

    Attributes:
        sample_rate_hz, acc_range_g, gyr_range_dps, samples_per_packet: current configuration.
        streaming: between START_STREAM and STOP_STREAM/disconnect.
        seq: sequence number of the next packet sent (u16).
        sample_index: index of the next sample in the source.
        sent: packets handed to the radio (duplicates included), per session of the sensor.
        skipped: packets whose sequence number was consumed but that were not sent (loss).
        duplicated: extra copies sent.
        connections: connections accepted so far.
        commands: every command byte received, in order.
        refused_configs: SET_CONFIG requests answered BAD_VALUE.
        sent_samples: (t_s sensor clock, acc_mps2, gyr_dps) of every sample of every packet
            delivered, quantised exactly as on the wire (for "decoded == sent" checks).
    """

    sample_rate_hz: int = 200
    acc_range_g: int = 16
    gyr_range_dps: int = 2000
    samples_per_packet: int = 10
    streaming: bool = False
    seq: int = 0
    sample_index: int = 0
    sent: int = 0
    skipped: int = 0
    duplicated: int = 0
    connections: int = 0
    commands: list[int] = field(default_factory=list)
    refused_configs: list[tuple[int, int, int, int]] = field(default_factory=list)
    sent_samples: list[
        tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]
    ] = field(default_factory=list)


class SimulatedSensor:
    """Our v1 sensor as a Bumble peripheral; an async context manager (powers on and advertises).

    Args:
        link: the virtual radio shared with the central.
        address: public address.
        name: advertised local name (scan response).
        source: sample source (default: :func:`synthetic_source`).
        speed: sensor time runs this many times faster than host time (test acceleration; 1 =
            real time). Packets are paced on the sensor clock.
        clock_drift_ppm: crystal error of the sensor clock relative to host time.
        clock_start_us: sensor clock at power-on (u32; set near 2**32 to exercise the wrap).
        max_mtu: largest ATT MTU the sensor negotiates.
        max_notify_bytes: largest notification the sensor's radio buffer takes (a
            SET_CONFIG whose packets are longer is refused with BAD_VALUE, as is one longer
            than ``MTU - 3``).
        supported_rates_hz: rates DEVICE_INFO reports and SET_CONFIG accepts.
        seq_start: first sequence number.
        record_samples: keep :attr:`SensorState.sent_samples` (tests).
        advertise: False for a sensor that is powered but never visible.
    """

    def __init__(
        self,
        link: LocalLink,
        *,
        address: str = "F0:F1:F2:F3:F4:F5",
        name: str = "IMU-SIM1",
        source: SampleSource | None = None,
        speed: float = 1.0,
        clock_drift_ppm: float = 0.0,
        clock_start_us: int = 5_000_000,
        max_mtu: int = 247,
        max_notify_bytes: int = 244,
        supported_rates_hz: tuple[int, ...] = (100, 200, 400),
        seq_start: int = 0,
        record_samples: bool = False,
        advertise: bool = True,
        firmware_version: tuple[int, int, int] = (1, 0, 0),
        serial: str = "SIM0001",
    ) -> None:
        self.address = address
        self.name = name
        self.source: SampleSource = source or synthetic_source(0.5)
        self.speed = float(speed)
        self.clock_drift_ppm = float(clock_drift_ppm)
        self.clock_start_us = int(clock_start_us)
        self.max_notify_bytes = int(max_notify_bytes)
        self.supported_rates_hz = tuple(supported_rates_hz)
        self.record_samples = record_samples
        self.advertise = advertise
        self.info = DeviceInfo(
            PROTOCOL_VERSION, firmware_version, "SIM-SACRUM-1", serial, self.supported_rates_hz
        )
        self.state = SensorState(seq=seq_start & 0xFFFF)
        self._lose_next = 0
        self._duplicate_next = 0
        self._t0_mono = time.monotonic()
        self._connection: Connection | None = None
        self._stream_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.connected = asyncio.Event()
        self.disconnected = asyncio.Event()
        self.on_packet: Callable[[bytes], None] | None = None

        ctrl = Controller(name, link=link, public_address=address)
        self._controller = ctrl
        self.device = Device(
            name=name, address=Address(address), host=Host(ctrl, AsyncPipeSink(ctrl))
        )
        self.device.gatt_server.max_mtu = int(max_mtu)
        self.data_char = Characteristic(
            UUID(DATA_CHAR_UUID),
            Characteristic.Properties.NOTIFY,
            Characteristic.Permissions.READABLE,
            b"",
        )
        self.control_char: Characteristic[bytes] = Characteristic(
            UUID(CONTROL_CHAR_UUID),
            Characteristic.Properties.WRITE | Characteristic.Properties.INDICATE,
            Characteristic.Permissions.WRITEABLE | Characteristic.Permissions.READABLE,
            CharacteristicValue[bytes](write=self._on_control_write),
        )
        self.device.add_service(Service(UUID(SERVICE_UUID), [self.data_char, self.control_char]))
        self._adv, self._scan_response = advertising_payloads(name, SERVICE_UUID)
        self.device.on("connection", self._on_connection)

    # --- lifecycle ---------------------------------------------------------------------------
    async def __aenter__(self) -> SimulatedSensor:
        await self.device.power_on()
        if self.advertise:
            await self.start_advertising()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def start_advertising(self) -> None:
        """Advertise every 20 ms (re-advertise automatically after a disconnect)."""
        await self.device.start_advertising(
            auto_restart=True,
            advertising_data=self._adv,
            scan_response_data=self._scan_response,
            advertising_interval_min=ADVERTISING_INTERVAL_MS,
            advertising_interval_max=ADVERTISING_INTERVAL_MS,
        )

    async def close(self) -> None:
        """Stop streaming, drop the link and leave the air."""
        self._stop_stream()
        for task in list(self._tasks):
            task.cancel()
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        if self._connection is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._connection.disconnect(), 1.0)
        link = self._controller.link
        if self._controller in link.controllers:
            link.remove_controller(self._controller)

    # --- clock -------------------------------------------------------------------------------
    def sensor_time_s(self) -> float:
        """Sensor clock now (seconds, unwrapped)."""
        host_s = (time.monotonic() - self._t0_mono) * self.speed
        return self.clock_start_us / 1e6 + host_s * (1.0 + self.clock_drift_ppm * 1e-6)

    def sensor_time_us(self) -> int:
        """Sensor clock now as sent on the wire (u32 microseconds, wraps)."""
        return math.floor(self.sensor_time_s() * 1e6) % _U32

    # --- fault injection ---------------------------------------------------------------------
    def lose_packets(self, n: int) -> None:
        """The next ``n`` packets are lost on air: their sequence numbers are used, nothing is sent."""
        self._lose_next += n

    def duplicate_packets(self, n: int) -> None:
        """Each of the next ``n`` packets is notified twice (the host must drop the copies)."""
        self._duplicate_next += n

    async def drop_link(self) -> None:
        """Peripheral-initiated disconnect (e.g. the runner's arm blocks the radio too long)."""
        conn = self._connection
        if conn is not None:
            await conn.disconnect()

    # --- GATT --------------------------------------------------------------------------------
    def _spawn(self, coro: Any) -> None:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    def _on_connection(self, connection: Connection) -> None:
        self._connection = connection
        self.state.connections += 1
        self.disconnected.clear()
        self.connected.set()
        connection.on("disconnection", lambda reason: self._on_disconnection(connection))

    def _on_disconnection(self, connection: Connection) -> None:
        if self._connection is connection:
            self._connection = None
        self._stop_stream()
        self.connected.clear()
        self.disconnected.set()

    def _on_control_write(self, connection: Connection, value: bytes) -> None:
        # answer after the write response, as real firmware does
        self._spawn(self._answer(connection, bytes(value)))

    async def _answer(self, connection: Connection, req: bytes) -> None:
        await asyncio.sleep(0)
        response = self._handle_command(connection, req)
        with contextlib.suppress(Exception):
            await self.device.indicate_subscriber(connection, self.control_char, response)

    def _handle_command(self, connection: Connection, req: bytes) -> bytes:
        cmd = req[0] if req else 0
        self.state.commands.append(cmd)
        ok = bytes([cmd, Status.OK])
        bad_command = bytes([cmd, Status.BAD_COMMAND])
        bad_value = bytes([cmd, Status.BAD_VALUE])
        if cmd == Command.DEVICE_INFO and len(req) == 1:
            return ok + encode_device_info(self.info)
        if cmd == Command.START_STREAM and len(req) == 1:
            self._start_stream(connection)
            return ok
        if cmd == Command.STOP_STREAM and len(req) == 1:
            self._stop_stream()
            return ok
        if cmd == Command.TIME_SYNC and len(req) == 9:
            (host_us,) = struct.unpack_from("<Q", req, 1)
            return ok + encode_time_sync_reply(host_us, self.sensor_time_us())
        if cmd == Command.SET_CONFIG and len(req) == 1 + _SET_CONFIG.size:
            rate, acc, gyr, spp = _SET_CONFIG.unpack_from(req, 1)
            size = HEADER_BYTES + SAMPLE_BYTES * spp + _CRC_BYTES
            if (
                rate not in self.supported_rates_hz
                or acc not in ACC_RANGES_G
                or gyr not in GYR_RANGES_DPS
                or not 1 <= spp <= MAX_SAMPLES_PER_PACKET
                or size > connection.att_mtu - 3
                or size > self.max_notify_bytes
            ):
                self.state.refused_configs.append((rate, acc, gyr, spp))
                return bad_value
            st = self.state
            st.sample_rate_hz, st.acc_range_g, st.gyr_range_dps, st.samples_per_packet = (
                rate,
                acc,
                gyr,
                spp,
            )
            return ok
        return bad_command

    # --- streaming ---------------------------------------------------------------------------
    def _start_stream(self, connection: Connection) -> None:
        if self._stream_task is not None and not self._stream_task.done():
            return
        self.state.streaming = True
        # the first sample is the next sampling instant of the free-running sensor clock
        self.state.sample_index = math.ceil(self.sensor_time_s() * self.state.sample_rate_hz)
        self._stream_task = asyncio.ensure_future(self._stream(connection))

    def _stop_stream(self) -> None:
        self.state.streaming = False
        task, self._stream_task = self._stream_task, None
        if task is not None and task is not asyncio.current_task():
            task.cancel()

    async def _stream(self, connection: Connection) -> None:
        st = self.state
        try:
            while st.streaming and self._connection is connection:
                rate, n = st.sample_rate_hz, st.samples_per_packet
                due_s = (st.sample_index + n) / rate  # sensor time of the end of the packet
                wait_host_s = (
                    (due_s - self.sensor_time_s()) / (1 + self.clock_drift_ppm * 1e-6) / self.speed
                )
                await asyncio.sleep(max(wait_host_s, 0.0))
                if not st.streaming or self._connection is not connection:
                    return
                await self._send_one(connection)
        except asyncio.CancelledError:
            raise
        except Exception:  # link gone mid-send: the disconnect handler cleans up
            log.debug("stream ended", exc_info=True)

    async def _send_one(self, connection: Connection) -> None:
        st = self.state
        rate, n = st.sample_rate_hz, st.samples_per_packet
        acc, gyr = self.source.read(st.sample_index - self._index0(), n, rate)
        raw = np.concatenate(
            [to_raw(acc / STANDARD_GRAVITY_MPS2, st.acc_range_g), to_raw(gyr, st.gyr_range_dps)],
            axis=1,
        )
        t0_us = round(st.sample_index * 1e6 / rate)
        packet = encode_data_packet(st.seq, t0_us, rate, st.acc_range_g, st.gyr_range_dps, raw)
        seq = st.seq
        st.seq = (st.seq + 1) & 0xFFFF
        st.sample_index += n
        if self._lose_next > 0:
            self._lose_next -= 1
            st.skipped += 1
            return
        copies = 1
        if self._duplicate_next > 0:
            self._duplicate_next -= 1
            copies = 2
            st.duplicated += 1
        if self.record_samples:
            t_s = t0_us / 1e6 + np.arange(n) / rate
            st.sent_samples.append(
                (
                    t_s,
                    raw[:, :3] * (st.acc_range_g / 32768.0 * STANDARD_GRAVITY_MPS2),
                    raw[:, 3:] * (st.gyr_range_dps / 32768.0),
                )
            )
        for _ in range(copies):
            await self.device.notify_subscriber(connection, self.data_char, packet)
            st.sent += 1
        if self.on_packet is not None:
            self.on_packet(packet)
        del seq

    def _index0(self) -> int:
        """Source index 0 = the sensor's first streamed sample at the current rate (a stable origin)."""
        return math.ceil(self.clock_start_us / 1e6 * self.state.sample_rate_hz)


class SimulatedMovesense:
    """A Movesense sensor running the GATT SensorData app (GSP), ``/Meas/IMU6`` only.

    HELLO is answered with ``"Hello"``; SUBSCRIBE to ``/Meas/IMU6/{rate}`` with status 200 and then
    DATA notifications of ``samples_per_batch`` samples, split into DATA + DATA_PART2 at
    ``split_at`` bytes (or when longer than ``MTU - 3``). Unknown paths get 404.

    Args:
        link: the virtual radio.
        source: samples (m/s^2, deg/s).
        samples_per_batch: N per notification batch.
        split_at: DATA payload bytes (after type/ref) in the first part; ``None`` = split only
            when the MTU requires it.
        speed: sensor time runs this many times faster than host time.
    """

    def __init__(
        self,
        link: LocalLink,
        *,
        address: str = "F2:00:00:00:00:01",
        name: str = "Movesense 2",
        source: SampleSource | None = None,
        samples_per_batch: int = 8,
        split_at: int | None = None,
        speed: float = 1.0,
        timestamp_start_ms: int = 1_000,
    ) -> None:
        from firmware_interface.vendors import movesense as ms

        self._ms = ms
        self.address = address
        self.source: SampleSource = source or synthetic_source(0.5, 104)
        self.n = samples_per_batch
        self.split_at = split_at
        self.speed = speed
        self.timestamp_start_ms = timestamp_start_ms
        self.sent_batches: list[tuple[int, npt.NDArray[np.float64], npt.NDArray[np.float64]]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None
        self._connection: Connection | None = None
        ctrl = Controller(name, link=link, public_address=address)
        self._controller = ctrl
        self.device = Device(
            name=name, address=Address(address), host=Host(ctrl, AsyncPipeSink(ctrl))
        )
        self.notify_char = Characteristic(
            UUID(ms.NOTIFY_UUID),
            Characteristic.Properties.NOTIFY,
            Characteristic.Permissions.READABLE,
            b"",
        )
        self.write_char: Characteristic[bytes] = Characteristic(
            UUID(ms.WRITE_UUID),
            Characteristic.Properties.WRITE | Characteristic.Properties.WRITE_WITHOUT_RESPONSE,
            Characteristic.Permissions.WRITEABLE,
            CharacteristicValue[bytes](write=self._on_write),
        )
        self.device.add_service(Service(UUID(ms.SERVICE_UUID), [self.write_char, self.notify_char]))
        self._adv, self._scan = advertising_payloads(name, ms.SERVICE_UUID)
        self.device.on("connection", self._on_connection)

    async def __aenter__(self) -> SimulatedMovesense:
        await self.device.power_on()
        await self.device.start_advertising(
            auto_restart=True,
            advertising_data=self._adv,
            scan_response_data=self._scan,
            advertising_interval_min=ADVERTISING_INTERVAL_MS,
            advertising_interval_max=ADVERTISING_INTERVAL_MS,
        )
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._task is not None:
            self._task.cancel()
        with contextlib.suppress(Exception):
            await self.device.stop_advertising()
        link = self._controller.link
        if self._controller in link.controllers:
            link.remove_controller(self._controller)

    def _on_connection(self, connection: Connection) -> None:
        self._connection = connection

        def gone(_reason: int) -> None:
            self._connection = None
            if self._task is not None:
                self._task.cancel()

        connection.on("disconnection", gone)

    def _on_write(self, connection: Connection, value: bytes) -> None:
        task = asyncio.ensure_future(self._command(connection, bytes(value)))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _command(self, connection: Connection, req: bytes) -> None:
        ms = self._ms
        await asyncio.sleep(0)
        if len(req) < 2:
            return
        cmd, ref = req[0], req[1]
        result = bytes([ms.NotificationType.COMMAND_RESULT, ref])
        if cmd == ms.GspCommand.HELLO:
            await self.device.notify_subscriber(connection, self.notify_char, result + b"Hello")
        elif cmd == ms.GspCommand.SUBSCRIBE:
            path = req[2:].decode("ascii", "replace")
            parts = path.split("/")
            if (
                len(parts) == 4
                and parts[1:3] == ["Meas", "IMU6"]
                and parts[3].isdigit()
                and int(parts[3]) in ms.RATES_HZ
            ):
                await self.device.notify_subscriber(
                    connection, self.notify_char, result + struct.pack("<H", 200)
                )
                self._task = asyncio.ensure_future(self._stream(connection, ref, int(parts[3])))
            else:
                await self.device.notify_subscriber(
                    connection, self.notify_char, result + struct.pack("<H", 404)
                )
        elif cmd == ms.GspCommand.UNSUBSCRIBE:
            if self._task is not None:
                self._task.cancel()
            await self.device.notify_subscriber(
                connection, self.notify_char, result + struct.pack("<H", 200)
            )

    async def _stream(self, connection: Connection, ref: int, rate: int) -> None:
        ms = self._ms
        index = 0
        with contextlib.suppress(asyncio.CancelledError):
            while self._connection is connection:
                await asyncio.sleep(self.n / rate / self.speed)
                acc, gyr = self.source.read(index, self.n, rate)
                ts = self.timestamp_start_ms + round(index * 1000 / rate)
                payload = ms.encode_imu6_data(ref, ts, acc, gyr)
                self.sent_batches.append(
                    (
                        ts,
                        acc.astype(np.float32).astype(np.float64),
                        gyr.astype(np.float32).astype(np.float64),
                    )
                )
                index += self.n
                room = connection.att_mtu - 3
                cut = (
                    self.split_at
                    if self.split_at is not None
                    else (room - 2 if len(payload) > room else None)
                )
                if cut is None:
                    await self.device.notify_subscriber(connection, self.notify_char, payload)
                else:
                    await self.device.notify_subscriber(
                        connection, self.notify_char, payload[: 2 + cut]
                    )
                    part2 = bytes([ms.NotificationType.DATA_PART2, ref]) + payload[2 + cut :]
                    await self.device.notify_subscriber(connection, self.notify_char, part2)
