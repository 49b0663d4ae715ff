"""Control-characteristic responses: decoders for the host, encoders for simulators and tests.

A response is an indication on :data:`~firmware_interface.protocol.CONTROL_CHAR_UUID`::

    offset size  field
    0      1     command   the command byte being answered (Command)
    1      1     status    Status (0 = OK)
    2      ...   payload   command-specific, only when status == OK (empty otherwise)

Payloads (little-endian):

- ``START_STREAM``, ``STOP_STREAM``, ``SET_CONFIG``: empty.
- ``TIME_SYNC``: ``u64 host_time_us`` (echo of the request) + ``u32 sensor_time_us`` (sensor clock
  when the request was received; same clock as ``t0_us`` of data packets).
- ``DEVICE_INFO``: ``u8 protocol_version, u8 fw_major, u8 fw_minor, u8 fw_patch,
  u8 model_len, model (UTF-8), u8 serial_len, serial (UTF-8), u8 n_rates, u16 rate_hz * n_rates``.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from firmware_interface.errors import CommandError
from firmware_interface.protocol import Command, Status

__all__ = [
    "ControlResponse",
    "DeviceInfo",
    "TimeSyncReply",
    "decode_control_response",
    "decode_device_info",
    "decode_time_sync",
    "encode_control_response",
    "encode_device_info",
    "encode_time_sync_reply",
]

_TIME_SYNC_REPLY = struct.Struct("<QI")


@dataclass(frozen=True, slots=True)
class ControlResponse:
    """One indication on the control characteristic.

    Attributes:
        command: the command answered.
        status: result; the payload is empty unless OK.
        payload: command-specific bytes.
    """

    command: Command
    status: Status
    payload: bytes

    @property
    def ok(self) -> bool:
        """True when the status is OK."""
        return self.status is Status.OK


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """DEVICE_INFO payload.

    Attributes:
        protocol_version: data packet version the firmware sends.
        firmware_version: (major, minor, patch).
        model: model name.
        serial: serial number.
        supported_rates_hz: sample rates SET_CONFIG accepts.
    """

    protocol_version: int
    firmware_version: tuple[int, int, int]
    model: str
    serial: str
    supported_rates_hz: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class TimeSyncReply:
    """TIME_SYNC payload.

    Attributes:
        host_time_us: the host time sent in the request (echo), microseconds since the unix epoch.
        sensor_time_us: sensor clock (u32, wraps) when the request was received.
    """

    host_time_us: int
    sensor_time_us: int


def decode_control_response(data: bytes | bytearray | memoryview) -> ControlResponse:
    """Split an indication into command, status and payload.

    Raises:
        CommandError: shorter than 2 bytes, unknown command or unknown status.
    """
    raw = bytes(data)
    if len(raw) < 2:
        raise CommandError("response", f"{len(raw)} bytes, need at least 2 (command, status)")
    try:
        command = Command(raw[0])
    except ValueError:
        raise CommandError("response", f"unknown command byte 0x{raw[0]:02x}") from None
    try:
        status = Status(raw[1])
    except ValueError:
        raise CommandError(command.name, f"unknown status byte 0x{raw[1]:02x}") from None
    return ControlResponse(command, status, raw[2:])


def decode_time_sync(payload: bytes) -> TimeSyncReply:
    """Decode the payload of an OK TIME_SYNC response.

    Raises:
        CommandError: wrong payload size.
    """
    if len(payload) != _TIME_SYNC_REPLY.size:
        raise CommandError("TIME_SYNC", f"payload of {len(payload)} bytes, expected 12")
    host_us, sensor_us = _TIME_SYNC_REPLY.unpack(payload)
    return TimeSyncReply(host_us, sensor_us)


def decode_device_info(payload: bytes) -> DeviceInfo:
    """Decode the payload of an OK DEVICE_INFO response.

    Raises:
        CommandError: payload truncated, too long, or strings not UTF-8.
    """
    try:
        proto, major, minor, patch = payload[0:4]
        pos = 4
        strings: list[str] = []
        for _ in range(2):
            length = payload[pos]
            text = payload[pos + 1 : pos + 1 + length]
            if len(text) != length:
                raise IndexError
            strings.append(text.decode("utf-8"))
            pos += 1 + length
        n_rates = payload[pos]
        rates = payload[pos + 1 : pos + 1 + 2 * n_rates]
        if len(rates) != 2 * n_rates:
            raise IndexError
        pos += 1 + 2 * n_rates
    except (IndexError, ValueError) as exc:  # ValueError: short unpack, UnicodeDecodeError
        raise CommandError("DEVICE_INFO", f"malformed payload ({len(payload)} bytes)") from exc
    if pos != len(payload):
        raise CommandError("DEVICE_INFO", f"{len(payload) - pos} trailing bytes in payload")
    return DeviceInfo(
        proto,
        (major, minor, patch),
        strings[0],
        strings[1],
        struct.unpack(f"<{n_rates}H", rates),
    )


def encode_control_response(command: Command, status: Status, payload: bytes = b"") -> bytes:
    """Encode a response as the firmware sends it (for simulators and tests)."""
    return bytes([command, status]) + payload


def encode_time_sync_reply(host_time_us: int, sensor_time_us: int) -> bytes:
    """TIME_SYNC payload; ``sensor_time_us`` is taken modulo 2**32."""
    return _TIME_SYNC_REPLY.pack(host_time_us, sensor_time_us & 0xFFFFFFFF)


def encode_device_info(info: DeviceInfo) -> bytes:
    """DEVICE_INFO payload.

    Raises:
        CommandError: a string longer than 255 bytes or more than 255 rates.
    """
    model, serial = info.model.encode(), info.serial.encode()
    if len(model) > 255 or len(serial) > 255 or len(info.supported_rates_hz) > 255:
        raise CommandError("DEVICE_INFO", "model, serial or rate list longer than 255")
    return (
        bytes([info.protocol_version, *info.firmware_version, len(model)])
        + model
        + bytes([len(serial)])
        + serial
        + bytes([len(info.supported_rates_hz)])
        + struct.pack(f"<{len(info.supported_rates_hz)}H", *info.supported_rates_hz)
    )
