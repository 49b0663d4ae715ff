"""The worked examples in docs/protocol.md are real: they decode and match the encoders."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest

from firmware_interface.control import (
    DeviceInfo,
    decode_control_response,
    decode_device_info,
    decode_time_sync,
    encode_control_response,
    encode_device_info,
    encode_time_sync_reply,
)
from firmware_interface.decoder import PacketDecoder, decode_one
from firmware_interface.protocol import (
    Command,
    Status,
    crc16,
    encode_data_packet,
    encode_set_config,
    encode_time_sync,
)

DOC = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()


def doc_vector() -> bytes:
    match = re.search(r"<!-- test-vector:.*?-->\s*```text\n(.+?)\n```", DOC, re.S)
    assert match, "test vector block missing from docs/protocol.md"
    return bytes.fromhex(match.group(1))


def test_doc_vector_decodes() -> None:
    data = doc_vector()
    assert len(data) == 40
    result = decode_one(data)
    assert result is not None
    header, samples = result
    assert header == {
        "version": 1,
        "packet_type": 1,
        "seq": 0x1234,
        "t0_us": 0x89ABCDEF,
        "sample_rate_hz": 200,
        "acc_range_g": 8,
        "gyr_range_dps": 2000,
        "n": 2,
    }
    np.testing.assert_array_equal(samples.t_s, [2309.737967, 2309.737967 + 0.005])
    assert samples.acc_mps2[0, 2] == pytest.approx(9.80665, abs=0)
    np.testing.assert_allclose(samples.gyr_dps[0], [6.1035, -12.2070, 18.3105], atol=1e-4)
    assert crc16(data[:-2]) == 0x9B6D == int.from_bytes(data[-2:], "little")
    dec = PacketDecoder()
    assert len(dec.decode([data])) == 2


def test_doc_vector_matches_encoder() -> None:
    raw = np.array([[0, 0, 4096, 100, -200, 300], [-1, 2, 4095, -32768, 32767, 0]], np.int16)
    assert encode_data_packet(0x1234, 0x89ABCDEF, 200, 8, 2000, raw) == doc_vector()


def spaced(b: bytes) -> str:
    return b.hex(" ")


def test_doc_control_examples() -> None:
    info = DeviceInfo(1, (1, 2, 3), "SACRUM-1", "A1B2", (100, 200, 400))
    payload = encode_device_info(info)
    assert spaced(payload) in DOC
    assert decode_device_info(payload) == info
    req = encode_time_sync(1_700_000_000_000_000)
    resp = encode_control_response(
        Command.TIME_SYNC, Status.OK, encode_time_sync_reply(1_700_000_000_000_000, 123456789)
    )
    assert f"request `{spaced(req)}`" in DOC
    assert f"`{spaced(resp)}`" in DOC
    assert f"`{spaced(encode_set_config(200, 8, 2000, 10))}`" in DOC
    r = decode_control_response(resp)
    assert r.ok
    assert decode_time_sync(r.payload).sensor_time_us == 123456789
