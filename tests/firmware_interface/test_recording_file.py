"""Recording files: round trip, crash truncation at every byte, foreign and corrupt files."""

from __future__ import annotations

import json
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from firmware_interface.decoder import PacketDecoder
from firmware_interface.errors import ProtocolError, RecordingError
from firmware_interface.protocol import encode_data_packet
from firmware_interface.recording import (
    FORMAT_VERSION,
    MAGIC,
    RecordingReader,
    RecordingWriter,
    RecordType,
)

META = {"session": "s1", "device": "AA:BB", "config": {"sample_rate_hz": 200}}


def packets(count: int) -> list[bytes]:
    rng = np.random.default_rng(0)
    return [
        encode_data_packet(
            i, i * 50_000, 200, 8, 2000, rng.integers(-999, 999, (10, 6)).astype(np.int16)
        )
        for i in range(count)
    ]


def write(path: Path, pkts: list[bytes], *, close: bool = True) -> RecordingWriter:
    w = RecordingWriter(path, META)
    w.write_event(1000.0, {"type": "note", "text": "start"})
    for i, p in enumerate(pkts):
        w.write_packet(1000.0 + 0.05 * i, p)
    w.write_event(1000.0 + 0.05 * len(pkts), {"type": "gap", "lost": 0})
    if close:
        w.close()
    return w


def test_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "a.rec"
    pkts = [*packets(20), b"", b"\x01garbage"]  # corrupt packets are recorded as received
    write(path, pkts)
    r = RecordingReader(path)
    assert r.metadata == META
    assert r.format_version == FORMAT_VERSION
    rx, payloads = r.packets()
    assert payloads == pkts
    np.testing.assert_array_equal(rx, 1000.0 + 0.05 * np.arange(len(pkts)))
    assert rx.dtype == np.float64
    events = r.events()
    assert [e["type"] for _, e in events] == ["note", "gap", "end"]
    assert events[0] == (1000.0, {"type": "note", "text": "start"})
    kinds = [rec.kind for rec in r.records()]
    assert kinds.count(RecordType.PACKET) == len(pkts)
    assert r.truncated is False
    dec = PacketDecoder()
    assert len(dec.decode(payloads)) == 200
    assert dec.stats.bad_length == 2


def test_context_manager_writes_end_once_and_file_readable_before_close(tmp_path: Path) -> None:
    path = tmp_path / "b.rec"
    with RecordingWriter(path, {}) as w:
        w.write_packet(1.0, packets(1)[0])
        # unbuffered: a crash now would keep this record
        assert RecordingReader(path).packets()[1] == packets(1)
        w.write_event(2.0, {"type": "end", "reason": "user"})
    assert RecordingReader(path).events() == [(2.0, {"type": "end", "reason": "user"})]
    w.close()  # idempotent
    with pytest.raises(ValueError, match="closed"):
        w.write_packet(3.0, b"x")


def test_writer_refuses_to_overwrite_and_bad_events(tmp_path: Path) -> None:
    path = tmp_path / "c.rec"
    RecordingWriter(path, {}).close()
    with pytest.raises(RecordingError, match="exists") as info:
        RecordingWriter(path, {})
    assert info.value.path == str(path)
    with RecordingWriter(path, {"x": 1}, overwrite=True) as w:
        with pytest.raises(ValueError, match="type"):
            w.write_event(0.0, {"no": "type"})
        with pytest.raises(TypeError):
            w.write_event(0.0, {"type": "note", "obj": object()})
    assert RecordingReader(path).metadata == {"x": 1}
    with pytest.raises(TypeError):
        RecordingWriter(tmp_path / "d.rec", {"obj": object()})
    with pytest.raises(RecordingError, match="cannot create"):
        RecordingWriter(tmp_path / "missing-dir" / "e.rec", {})


def test_cut_at_every_byte_of_the_last_records(tmp_path: Path) -> None:
    src = tmp_path / "full.rec"
    pkts = packets(5)
    write(src, pkts)
    data = src.read_bytes()
    full = RecordingReader(src)
    records = list(full.records())
    # byte offset where each record ends
    ends, pos = [], full._data_offset
    for rec in records:
        pos += 13 + len(rec.payload) + 4
        ends.append(pos)
    assert ends[-1] == len(data)
    cut_path = tmp_path / "cut.rec"
    for cut in range(ends[-5], len(data) + 1):
        cut_path.write_bytes(data[:cut])
        r = RecordingReader(cut_path)
        got = list(r.records())
        complete = sum(e <= cut for e in ends)
        assert got == records[:complete], cut
        assert r.truncated == (cut not in ends), cut


def test_corrupt_record_stops_reading(tmp_path: Path) -> None:
    path = tmp_path / "f.rec"
    write(path, packets(3))
    data = bytearray(path.read_bytes())
    data[-30] ^= 0x01  # inside the last (end) record
    path.write_bytes(bytes(data))
    r = RecordingReader(path)
    assert len(r.packets()[1]) == 3
    assert r.truncated
    assert [e["type"] for _, e in r.events()] == ["note", "gap"]


def test_absurd_record_length_is_truncation(tmp_path: Path) -> None:
    path = tmp_path / "g.rec"
    RecordingWriter(path, {}).close()
    with path.open("ab") as f:
        f.write(struct.pack("<BdI", 1, 0.0, 0xFFFFFFFF))
    r = RecordingReader(path)
    assert [x["type"] for _, x in r.events()] == ["end"]
    assert r.truncated


def test_unknown_record_type_is_skipped(tmp_path: Path) -> None:
    path = tmp_path / "h.rec"
    with RecordingWriter(path, {}) as w:
        w.write_packet(1.0, b"abc")
    head = struct.pack("<BdI", 9, 2.0, 3)
    with path.open("ab") as f:
        f.write(head + b"xyz" + struct.pack("<I", zlib.crc32(b"xyz", zlib.crc32(head))))
    r = RecordingReader(path)
    assert [rec.kind for rec in r.records()] == [RecordType.PACKET, RecordType.EVENT]
    assert not r.truncated


def header(version: int = FORMAT_VERSION, meta: bytes = b"{}", crc: int | None = None) -> bytes:
    fixed = struct.pack("<HHI", version, 0, len(meta))
    c = zlib.crc32(meta, zlib.crc32(fixed)) if crc is None else crc
    return MAGIC + fixed + meta + struct.pack("<I", c)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (b"", "empty file"),
        (os.urandom(0) + bytes(range(256)) * 4, "wrong magic"),
        (b"PK\x03\x04" + bytes(100), "wrong magic"),
        (b"IMU", "truncated"),
        (MAGIC, "truncated"),
        (header()[:-2], "truncated"),
        (header(version=2), "unsupported recording format version 2"),
        (header(crc=0), "corrupt"),
        (header(meta=b"[1, 2]"), "not a JSON object"),
        (header(meta=b"{nope"), "not valid JSON"),
        (header(meta=b"\xff\xfe"), "not valid JSON"),
    ],
)
def test_foreign_and_corrupt_files(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.rec"
    path.write_bytes(content)
    with pytest.raises(RecordingError, match=reason) as info:
        RecordingReader(path)
    assert isinstance(info.value, ProtocolError)
    assert info.value.path == str(path)
    assert "\n" not in str(info.value)


def test_random_files_raise_recording_error(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    path = tmp_path / "r.rec"
    for size in (1, 7, 8, 20, 1000):
        path.write_bytes(rng.integers(0, 256, size, dtype=np.uint8).tobytes())
        with pytest.raises(RecordingError):
            RecordingReader(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match="cannot open"):
        RecordingReader(tmp_path / "nope.rec")
    with pytest.raises(RecordingError, match="cannot open"):
        RecordingReader(tmp_path)


def test_metadata_is_json_text(tmp_path: Path) -> None:
    path = tmp_path / "m.rec"
    RecordingWriter(path, META).close()
    raw = path.read_bytes()
    (length,) = struct.unpack_from("<I", raw, 12)
    assert json.loads(raw[16 : 16 + length]) == META
