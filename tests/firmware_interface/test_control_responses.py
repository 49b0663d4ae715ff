"""Control responses: round trips and malformed input."""

from __future__ import annotations

import pytest

from firmware_interface.control import (
    DeviceInfo,
    TimeSyncReply,
    decode_control_response,
    decode_device_info,
    decode_time_sync,
    encode_control_response,
    encode_device_info,
    encode_time_sync_reply,
)
from firmware_interface.errors import CommandError
from firmware_interface.protocol import Command, Status


def test_response_round_trip() -> None:
    r = decode_control_response(encode_control_response(Command.SET_CONFIG, Status.BAD_VALUE))
    assert (r.command, r.status, r.payload, r.ok) == (
        Command.SET_CONFIG,
        Status.BAD_VALUE,
        b"",
        False,
    )
    r = decode_control_response(bytearray([Command.START_STREAM, Status.OK]))
    assert r.ok
    assert r.command is Command.START_STREAM


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "need at least 2"),
        (b"\x01", "need at least 2"),
        (b"\x99\x00", "unknown command"),
        (b"\x01\x77", "unknown status"),
    ],
)
def test_bad_responses(data: bytes, match: str) -> None:
    with pytest.raises(CommandError, match=match):
        decode_control_response(data)


def test_time_sync_wraps_and_checks_size() -> None:
    payload = encode_time_sync_reply(5, (1 << 32) + 7)
    assert decode_time_sync(payload) == TimeSyncReply(5, 7)
    with pytest.raises(CommandError, match="expected 12"):
        decode_time_sync(payload[:-1])


def test_device_info_round_trip_and_malformed() -> None:
    info = DeviceInfo(1, (0, 9, 255), "Sacrum ü", "", (100, 104, 208, 400))
    payload = encode_device_info(info)
    assert decode_device_info(payload) == info
    for cut in range(len(payload)):
        with pytest.raises(CommandError, match="malformed"):
            decode_device_info(payload[:cut])
    with pytest.raises(CommandError, match="trailing"):
        decode_device_info(payload + b"\x00")
    bad_utf8 = bytearray(payload)
    bad_utf8[5] = 0xFF
    with pytest.raises(CommandError, match="malformed"):
        decode_device_info(bytes(bad_utf8))
    with pytest.raises(CommandError, match="longer than 255"):
        encode_device_info(DeviceInfo(1, (1, 0, 0), "m" * 256, "s", ()))
