"""Sensor wire protocol v1: constants, packet layout and encoders.

The full specification for firmware authors is ``docs/protocol.md``. All multi-byte
fields are little-endian.

Data packet (notification on :data:`DATA_CHAR_UUID`), at most 244 bytes::

    offset size  field
    0      1     version             (= 1)
    1      1     packet type         (0x01 = IMU data)
    2      2     sequence number     u16, +1 per packet, wraps 65535 -> 0
    4      4     t0_us               u32, sensor clock (microseconds) of the first sample, wraps
    8      2     sample_rate_hz      u16, nominal output data rate (100..400)
    10     1     acc_range_g         u8, full scale of the accelerometer (2, 4, 8, 16)
    11     2     gyr_range_dps       u16, full scale of the gyroscope (125 .. 2000)
    13     1     n                   u8, samples in this packet (1 .. 19)
    14     12*n  samples             int16 x n x [acc_x, acc_y, acc_z, gyr_x, gyr_y, gyr_z]
    14+12n 2     crc                 CRC-16/CCITT-FALSE over bytes [0, 14+12n)

Raw value -> physical: ``acc_g = raw * acc_range_g / 32768``, ``gyr_dps = raw * gyr_range_dps / 32768``.
"""

from __future__ import annotations

import binascii
import struct
from enum import IntEnum

import numpy as np
import numpy.typing as npt

from firmware_interface.errors import CommandError

PROTOCOL_VERSION = 1

SERVICE_UUID = "7a0b1000-6c9e-4d3a-9c1e-5f1d2a3b4c5d"
DATA_CHAR_UUID = "7a0b1001-6c9e-4d3a-9c1e-5f1d2a3b4c5d"
CONTROL_CHAR_UUID = "7a0b1002-6c9e-4d3a-9c1e-5f1d2a3b4c5d"

MAX_PACKET_BYTES = 244
HEADER_BYTES = 14
CRC_BYTES = 2
SAMPLE_BYTES = 12
MAX_SAMPLES_PER_PACKET = (MAX_PACKET_BYTES - HEADER_BYTES - CRC_BYTES) // SAMPLE_BYTES  # 19

ACC_RANGES_G = (2, 4, 8, 16)
GYR_RANGES_DPS = (125, 250, 500, 1000, 2000)
MIN_RATE_HZ = 100
MAX_RATE_HZ = 400

STANDARD_GRAVITY_MPS2 = 9.80665

HEADER_STRUCT = struct.Struct("<BBHIHBHB")
assert HEADER_STRUCT.size == HEADER_BYTES


class PacketType(IntEnum):
    """Value of byte 1 of a notification on the data characteristic."""

    IMU_DATA = 0x01


class Command(IntEnum):
    """First byte of a write to the control characteristic."""

    START_STREAM = 0x01
    STOP_STREAM = 0x02
    SET_CONFIG = 0x03
    TIME_SYNC = 0x04
    DEVICE_INFO = 0x05


class Status(IntEnum):
    """Status byte of a control response (indication on the control characteristic)."""

    OK = 0x00
    BAD_COMMAND = 0x01
    BAD_VALUE = 0x02
    BUSY = 0x03


def crc16(data: bytes) -> int:
    """CRC-16/CCITT-FALSE (poly 0x1021, init 0xFFFF, no reflection, no xor-out)."""
    return binascii.crc_hqx(data, 0xFFFF)


def encode_data_packet(
    seq: int,
    t0_us: int,
    sample_rate_hz: int,
    acc_range_g: int,
    gyr_range_dps: int,
    samples_raw: npt.NDArray[np.int16],
) -> bytes:
    """Encode one IMU data packet.

    Args:
        seq: sequence number; taken modulo 2**16.
        t0_us: sensor-clock time of the first sample in microseconds; taken modulo 2**32.
        sample_rate_hz: nominal sample rate.
        acc_range_g: accelerometer full scale in g.
        gyr_range_dps: gyroscope full scale in deg/s.
        samples_raw: int16 array of shape (n, 6): acc xyz then gyr xyz, raw counts.
    """
    samples = np.ascontiguousarray(samples_raw, dtype="<i2")
    if samples.ndim != 2 or samples.shape[1] != 6:
        raise ValueError(f"samples_raw must have shape (n, 6), got {samples.shape}")
    n = samples.shape[0]
    if not 1 <= n <= MAX_SAMPLES_PER_PACKET:
        raise ValueError(f"a packet carries 1..{MAX_SAMPLES_PER_PACKET} samples, got {n}")
    header = HEADER_STRUCT.pack(
        PROTOCOL_VERSION,
        PacketType.IMU_DATA,
        seq & 0xFFFF,
        t0_us & 0xFFFFFFFF,
        sample_rate_hz,
        acc_range_g,
        gyr_range_dps,
        n,
    )
    body = header + samples.tobytes()
    return body + struct.pack("<H", crc16(body))


def to_raw(values: npt.NDArray[np.float64], full_scale: float) -> npt.NDArray[np.int16]:
    """Quantise physical values to int16 counts for ``full_scale`` (saturating, like a sensor)."""
    counts = np.round(np.asarray(values, dtype=np.float64) * (32768.0 / full_scale))
    return np.clip(counts, -32768, 32767).astype(np.int16)


# --- control characteristic -------------------------------------------------------------

_SET_CONFIG = struct.Struct(
    "<BHBHB"
)  # cmd, rate_hz, acc_range_g, gyr_range_dps, samples_per_packet
_TIME_SYNC = struct.Struct("<BQ")  # cmd, host time (us since unix epoch)


def encode_start_stream() -> bytes:
    return bytes([Command.START_STREAM])


def encode_stop_stream() -> bytes:
    return bytes([Command.STOP_STREAM])


def encode_set_config(
    sample_rate_hz: int, acc_range_g: int, gyr_range_dps: int, samples_per_packet: int
) -> bytes:
    """SET_CONFIG: validated here so that a bad value never reaches a sensor."""
    if not MIN_RATE_HZ <= sample_rate_hz <= MAX_RATE_HZ:
        raise CommandError("SET_CONFIG", f"sample rate {sample_rate_hz} Hz outside 100..400")
    if acc_range_g not in ACC_RANGES_G:
        raise CommandError("SET_CONFIG", f"acc range {acc_range_g} g not in {ACC_RANGES_G}")
    if gyr_range_dps not in GYR_RANGES_DPS:
        raise CommandError("SET_CONFIG", f"gyro range {gyr_range_dps} dps not in {GYR_RANGES_DPS}")
    if not 1 <= samples_per_packet <= MAX_SAMPLES_PER_PACKET:
        raise CommandError(
            "SET_CONFIG",
            f"samples per packet {samples_per_packet} outside 1..{MAX_SAMPLES_PER_PACKET}",
        )
    return _SET_CONFIG.pack(
        Command.SET_CONFIG, sample_rate_hz, acc_range_g, gyr_range_dps, samples_per_packet
    )


def encode_time_sync(host_time_us: int) -> bytes:
    return _TIME_SYNC.pack(Command.TIME_SYNC, host_time_us)


def encode_device_info_request() -> bytes:
    return bytes([Command.DEVICE_INFO])
