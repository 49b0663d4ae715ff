"""Movesense "GATT SensorData Protocol" (GSP): ``/Meas/IMU6/{rate}`` over BLE, pure decoding.

Needs the Movesense ``gatt_sensordata_app`` firmware (a sample/prebuilt package from Movesense; the
stock firmware speaks Whiteboard/MDS instead). Sources: Movesense docs "GATT SensorData Protocol
specification" and the official sample client (see ``docs/ble.md``).

GATT: service :data:`SERVICE_UUID`, commands written to :data:`WRITE_UUID`, responses and data
notified on :data:`NOTIFY_UUID`.

Commands ``[cmd u8][ref u8 != 0][payload]`` (``ref`` chosen by the host, echoed back):
``HELLO = 0``, ``SUBSCRIBE = 1`` (payload: resource path in ASCII, e.g. ``/Meas/IMU6/104``),
``UNSUBSCRIBE = 2``.

Notifications ``[type u8][ref u8][...]``: ``1`` COMMAND_RESULT + u16 LE HTTP-style status (the
HELLO answer carries ``"Hello"`` instead), ``2`` DATA, ``3`` DATA_PART2 (continuation of the
previous DATA of the same ``ref`` when a batch exceeds the MTU: append ``part2[2:]``).

``/Meas/IMU6`` DATA payload (after type and ref)::

    u32 LE timestamp   ms since sensor boot (time of the first sample)
    N x f32 x, y, z    acceleration, m/s^2 (gravity included)
    N x f32 x, y, z    angular rate, deg/s

Sample ``i`` of a batch is at ``timestamp + i * 1000 / rate`` ms. ``N`` depends on the rate and
firmware (8 at 104 Hz in the official example), and a first half of a split batch can itself be a
multiple of 24 bytes, so the parser must be told ``N`` (:class:`GspImu6Parser`).
"""

from __future__ import annotations

import struct
from dataclasses import dataclass
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from firmware_interface.errors import ProtocolError

__all__ = [
    "NOTIFY_UUID",
    "RATES_HZ",
    "SERVICE_UUID",
    "WRITE_UUID",
    "CommandResult",
    "GspCommand",
    "GspError",
    "GspImu6Parser",
    "Imu6Batch",
    "MovesenseClock",
    "NotificationType",
    "encode_hello",
    "encode_imu6_data",
    "encode_subscribe",
    "encode_unsubscribe",
    "imu6_path",
]

SERVICE_UUID = "34802252-7185-4d5d-b431-630e7050e8f0"
WRITE_UUID = "34800001-7185-4d5d-b431-630e7050e8f0"
NOTIFY_UUID = "34800002-7185-4d5d-b431-630e7050e8f0"
ADVERTISED_UUID16 = 0xFDF3
RATES_HZ = (13, 26, 52, 104, 208, 416, 833, 1666)
_TS = struct.Struct("<I")


class GspCommand(IntEnum):
    HELLO = 0
    SUBSCRIBE = 1
    UNSUBSCRIBE = 2


class NotificationType(IntEnum):
    COMMAND_RESULT = 1
    DATA = 2
    DATA_PART2 = 3


class GspError(ProtocolError):
    """A GSP command or path is invalid (``reason`` in words)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(f"Movesense GSP: {reason}")


def imu6_path(rate_hz: int) -> str:
    """``/Meas/IMU6/{rate}``; raises :class:`GspError` for a rate the sensor does not offer."""
    if rate_hz not in RATES_HZ:
        raise GspError(f"IMU6 rate {rate_hz} Hz not in {RATES_HZ}")
    return f"/Meas/IMU6/{rate_hz}"


def _ref(ref: int) -> int:
    if not 1 <= ref <= 255:
        raise GspError(f"reference {ref} outside 1..255")
    return ref


def encode_hello(ref: int = 1) -> bytes:
    return bytes([GspCommand.HELLO, _ref(ref)])


def encode_subscribe(ref: int, path: str) -> bytes:
    return bytes([GspCommand.SUBSCRIBE, _ref(ref)]) + path.encode("ascii")


def encode_unsubscribe(ref: int) -> bytes:
    return bytes([GspCommand.UNSUBSCRIBE, _ref(ref)])


@dataclass(frozen=True, slots=True)
class CommandResult:
    """COMMAND_RESULT: ``status`` is HTTP-like (200 OK, 404, 507 = no subscription slot); ``text``
    is set instead for the HELLO answer."""

    ref: int
    status: int | None
    text: str = ""


@dataclass(frozen=True, slots=True)
class Imu6Batch:
    """One IMU6 notification batch: ``timestamp_ms`` (u32) of sample 0, acc (N, 3) m/s^2, gyr (N, 3) deg/s."""

    ref: int
    timestamp_ms: int
    acc_mps2: npt.NDArray[np.float64]
    gyr_dps: npt.NDArray[np.float64]


def encode_imu6_data(
    ref: int, timestamp_ms: int, acc_mps2: npt.ArrayLike, gyr_dps: npt.ArrayLike
) -> bytes:
    """DATA payload as the sensor sends it, before any split (for simulators and tests)."""
    acc = np.asarray(acc_mps2, dtype="<f4").reshape(-1, 3)
    gyr = np.asarray(gyr_dps, dtype="<f4").reshape(-1, 3)
    if acc.shape != gyr.shape:
        raise GspError(f"acc {acc.shape} and gyr {gyr.shape} differ")
    return (
        bytes([NotificationType.DATA, _ref(ref)])
        + _TS.pack(timestamp_ms & 0xFFFFFFFF)
        + acc.tobytes()
        + gyr.tobytes()
    )


class GspImu6Parser:
    """Stateful parser of the notifications of one GSP connection.

    Args:
        samples_per_batch: N of the subscribed rate (e.g. 8 at 104 Hz, 16 at 208 Hz).

    :meth:`feed` returns what a notification completes: a :class:`CommandResult`, an
    :class:`Imu6Batch`, or ``None`` (first half of a split batch). Malformed notifications are
    counted in :attr:`bad` and skipped, never raised.
    """

    def __init__(self, samples_per_batch: int) -> None:
        if samples_per_batch < 1:
            raise GspError("samples_per_batch must be >= 1")
        self.n = samples_per_batch
        self.size = 4 + 24 * samples_per_batch
        self._partial: dict[int, bytes] = {}
        self.bad = 0
        self.batches = 0

    def feed(self, data: bytes | bytearray) -> CommandResult | Imu6Batch | None:
        raw = bytes(data)
        if len(raw) < 2:
            self.bad += 1
            return None
        kind, ref, body = raw[0], raw[1], raw[2:]
        if kind == NotificationType.COMMAND_RESULT:
            if len(body) == 2:
                return CommandResult(ref, int.from_bytes(body, "little"))
            return CommandResult(ref, None, body.decode("ascii", "replace"))
        if kind == NotificationType.DATA:
            if len(body) == self.size:
                self._partial.pop(ref, None)
                return self._batch(ref, body)
            if len(body) < self.size:
                self._partial[ref] = body
                return None
            self.bad += 1
            return None
        if kind == NotificationType.DATA_PART2:
            first = self._partial.pop(ref, None)
            if first is None or len(first) + len(body) != self.size:
                self.bad += 1
                return None
            return self._batch(ref, first + body)
        self.bad += 1
        return None

    def _batch(self, ref: int, body: bytes) -> Imu6Batch:
        (ts,) = _TS.unpack_from(body)
        values = np.frombuffer(body, dtype="<f4", offset=4).astype(np.float64)
        acc = values[: 3 * self.n].reshape(self.n, 3)
        gyr = values[3 * self.n :].reshape(self.n, 3)
        self.batches += 1
        return Imu6Batch(ref, ts, acc, gyr)


class MovesenseClock:
    """Sample times in seconds on the sensor clock (u32 ms timestamps unwrapped) for the pipeline.

    Args:
        rate_hz: subscribed rate; sample ``i`` of a batch is at ``timestamp + i / rate``.
    """

    def __init__(self, rate_hz: float) -> None:
        self.rate_hz = float(rate_hz)
        self._last_raw: int | None = None
        self._last = 0

    def sample_times_s(self, batch: Imu6Batch) -> npt.NDArray[np.float64]:
        raw = batch.timestamp_ms
        if self._last_raw is None:
            self._last = raw
        else:
            step = (raw - self._last_raw) % (1 << 32)
            if step >= 1 << 31:
                step -= 1 << 32
            self._last += step
        self._last_raw = raw
        n = len(batch.acc_mps2)
        return self._last / 1e3 + np.arange(n) / self.rate_hz
