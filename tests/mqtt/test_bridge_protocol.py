"""Bridge protocol framing and validation, reorder window, partitioning (no broker needed)."""

from __future__ import annotations

import json
import struct
from collections.abc import Sequence

import numpy as np
import pytest

from firmware_interface.bridge import (
    MAX_RAW_PAYLOAD_BYTES,
    BridgeFormatError,
    Status,
    decode_raw_batch,
    decode_status,
    encode_raw_batch,
    encode_status,
    parse_topic,
    topic,
)
from firmware_interface.protocol import encode_data_packet
from imu.server import ReorderBuffer, partition_of


def _pkt(seq: int) -> bytes:
    return encode_data_packet(seq, seq * 50_000, 200, 16, 2000, np.zeros((10, 6), np.int16))


def test_raw_batch_round_trip() -> None:
    pkts = [(1_700_000_000_000_000 + i, _pkt(i)) for i in range(5)]
    payload = encode_raw_batch(7, pkts)
    assert len(payload) == 8 + 5 * (10 + len(pkts[0][1]))
    batch = decode_raw_batch(payload)
    assert batch.batch_seq == 7
    assert batch.rx_time_us == [t for t, _ in pkts]
    assert batch.packets == [p for _, p in pkts]


@pytest.mark.parametrize(
    ("mutate", "reason"),
    [
        (lambda p: p[:5], "truncated"),
        (lambda p: p[:-1], "truncated"),
        (lambda p: p + b"\0", "trailing_bytes"),
        (lambda p: b"\x02" + p[1:], "bad_version"),
        (lambda p: p[:1] + b"\x01" + p[2:], "bad_flags"),
        (lambda p: p[:2] + struct.pack("<H", 0) + p[4:], "bad_count"),
        (lambda p: p[:16] + struct.pack("<H", 0) + p[18:], "bad_packet_length"),
        (lambda p: p[:16] + struct.pack("<H", 245) + p[18:], "bad_packet_length"),
        (lambda p: b"\x01" * (MAX_RAW_PAYLOAD_BYTES + 1), "too_large"),
        (lambda p: b"", "truncated"),
    ],
)
def test_raw_batch_rejects(mutate: object, reason: str) -> None:
    payload = encode_raw_batch(0, [(1, _pkt(0)), (2, _pkt(1))])
    with pytest.raises(BridgeFormatError) as exc:
        decode_raw_batch(mutate(payload))  # type: ignore[operator]
    assert exc.value.reason == reason


def test_status_round_trip_and_strictness() -> None:
    st = Status(
        type="start", start_utc_s=1.7e9, battery_pct=50, ble="connected", device={"name": "x"}
    )
    assert decode_status(encode_status(st)) == Status(
        type="start", start_utc_s=1.7e9, battery_pct=50.0, ble="connected", device={"name": "x"}
    )
    ok = {"v": 1, "type": "info", "x_vendor": [1, 2]}
    assert decode_status(json.dumps(ok).encode()).type == "info"
    bad = [
        b"not json",
        b"[1]",
        b'{"type":"start"}',
        b'{"v":2,"type":"start"}',
        b'{"v":1,"type":"pause"}',
        b'{"v":1,"type":"start","battery_pct":101}',
        b'{"v":1,"type":"start","battery_pct":true}',
        b'{"v":1,"type":"start","surprise":1}',
        b'{"v":1,"type":"start","ble":"maybe"}',
        b'{"v":1,"type":"start","time_utc_s":NaN}',
        b'{"v":1,"type":"start","device":{"name":5}}',
        b'{"v":1,"type":"start","app":"' + b"a" * 9000 + b'"}',
    ]
    for payload in bad:
        with pytest.raises(BridgeFormatError):
            decode_status(payload)


def test_topics() -> None:
    assert topic("alice", "s-1", "raw") == "imu/alice/s-1/raw"
    parts = parse_topic("imu/alice/s-1/status")
    assert (parts.runner, parts.session, parts.kind) == ("alice", "s-1", "status")
    for bad in [
        "imu/alice/raw",
        "imu/alice/s/x",
        "imu/_server/s/raw",
        "imu/a b/s/raw",
        "x/a/s/raw",
        "imu/a/s/raw/x",
    ]:
        with pytest.raises(BridgeFormatError):
            parse_topic(bad)
    with pytest.raises(BridgeFormatError):
        topic("a/b", "s", "raw")


def test_reorder_buffer_restores_order_and_drops_duplicates() -> None:
    pk = {i: _pkt(i) for i in range(65530, 65536)} | {i: _pkt(i) for i in range(10)}
    seqs = [65530, 65532, 65531, 65533, 65533, 65535, 65534, 0, 2, 1, 3, 1, 4]
    buf = ReorderBuffer(window=4, hold_s=1.0)
    out: list[bytes] = []
    for s in seqs:
        out += buf.push([pk[s]], now_s=0.0)
    out += buf.flush()
    want = [65530, 65531, 65532, 65533, 65534, 65535, 0, 1, 2, 3, 4]
    assert out == [pk[s] for s in want]
    assert buf.duplicates == 2
    assert buf.late == 0


def test_reorder_buffer_skips_gap_after_window_or_hold() -> None:
    buf = ReorderBuffer(window=2, hold_s=0.5)
    out = buf.push([_pkt(0), _pkt(2), _pkt(3)], now_s=0.0)
    assert out == [_pkt(0)]  # 1 missing; 2 packets held
    out = buf.push([_pkt(4)], now_s=0.1)  # 3 held > window: skip the gap
    assert out == [_pkt(2), _pkt(3), _pkt(4)]
    assert buf.skipped == 1
    out = buf.push([_pkt(1)], now_s=0.2)  # too late: passed on for the decoder to count
    assert out == [_pkt(1)]
    assert buf.late == 1
    out = buf.push([_pkt(6)], now_s=0.3)
    assert out == []
    assert buf.expire(0.5) == []
    assert buf.expire(0.9) == [_pkt(6)]


def test_reorder_fast_window_skips_ble_loss_without_waiting() -> None:
    buf = ReorderBuffer(window=32, hold_s=1.0)
    # full window: the gap (1) holds everything until hold_s
    assert buf.push([_pkt(0), _pkt(2), _pkt(3)], now_s=0.0) == [_pkt(0)]
    # a small window for this call: the gap is skipped at once, an adjacent swap still fixed
    out = buf.push([_pkt(5), _pkt(4), _pkt(7), _pkt(8), _pkt(9), _pkt(10)], now_s=0.1, window=2)
    assert out == [_pkt(i) for i in (2, 3, 4, 5, 7, 8, 9, 10)]
    assert buf.skipped == 2  # packets 1 and 6: lost, nobody waits for them
    assert buf.held == 0


def test_default_fast_window_fixes_swap_across_batches_and_skips_loss_at_next_packet() -> None:
    from imu.server import ServerConfig

    fast = ServerConfig().reorder_fast_window
    buf = ReorderBuffer(window=32, hold_s=1.0)
    # batch 1 ends with packet 2, packet 1 comes first in batch 2 (an adjacent swap)
    assert buf.push([_pkt(0), _pkt(2)], now_s=0.0, window=fast) == [_pkt(0)]
    assert buf.push([_pkt(1), _pkt(3)], now_s=0.1, window=fast) == [_pkt(i) for i in (1, 2, 3)]
    # packet 4 lost: 5 waits only until the next packet arrives (6), not for the window or hold
    assert buf.push([_pkt(5)], now_s=0.2, window=fast) == []
    assert buf.push([_pkt(6), _pkt(7)], now_s=0.3, window=fast) == [_pkt(i) for i in (5, 6, 7)]
    assert (buf.skipped, buf.late, buf.duplicates) == (1, 0, 0)


@pytest.mark.parametrize("start_seq", [0, 5000])
def test_reorder_buffer_passes_a_rebooted_sensor_on(start_seq: int) -> None:
    """A sensor reboot (sequence and clock from ~0) mid-session: nothing after it is dropped, in
    order, and the decoder continues the session (before: with the session's own first sequence
    numbers still remembered, every packet after the reboot was dropped as a duplicate)."""
    from firmware_interface.decoder import PacketDecoder

    def pkt(seq: int, t0_us: int) -> bytes:
        return encode_data_packet(seq, t0_us, 200, 16, 2000, np.zeros((10, 6), np.int16))

    before = [pkt(start_seq + i, 60_000_000 + i * 50_000) for i in range(400)]
    after = [pkt(i, 200_000 + i * 50_000) for i in range(300)]
    stream = before + after
    stream[450], stream[451] = stream[451], stream[450]  # a swap after the reboot is still fixed
    buf = ReorderBuffer(window=32, hold_s=1.0)
    out: list[bytes] = []
    for k in range(0, len(stream), 2):
        out += buf.push(stream[k : k + 2], now_s=k * 0.05, window=1)
    out += buf.flush()
    assert out == before + after
    assert (buf.restarts, buf.duplicates, buf.late, buf.skipped) == (1, 0, 0, 0)
    dec = PacketDecoder()
    dec.decode(out)
    assert dec.stats.restarts == 1
    assert dec.stats.decoded == 700


def test_server_uses_fast_window_only_while_batches_are_contiguous() -> None:
    from imu.server import BridgeServer, ServerConfig, _Session

    cfg = ServerConfig(reorder_window=32, reorder_fast_window=4, reorder_hold_s=1.0)
    server = BridgeServer(cfg)
    sess = _Session("alice", "s", cfg)
    assert server._reorder_window(sess, 0, 0.0) == 4
    assert server._reorder_window(sess, 1, 0.5) == 4
    assert server._reorder_window(sess, 3, 1.0) is None  # batch 2 missing: full window
    assert server._reorder_window(sess, 2, 1.2) is None  # it came (resent): more may follow
    assert server._reorder_window(sess, 4, 1.5) is None
    assert server._reorder_window(sess, 5, 2.3) == 4  # hold_s after the last gap
    off = BridgeServer(ServerConfig(reorder_fast_window=0))
    assert off._reorder_window(_Session("a", "s", off.cfg), 0, 0.0) is None


def test_reorder_passes_corrupt_packets_through() -> None:
    bad = bytearray(_pkt(5))
    bad[-1] ^= 0xFF
    buf = ReorderBuffer(window=8, hold_s=1.0)
    assert buf.push([_pkt(0), bytes(bad), b"\x01"], now_s=0) == [_pkt(0), bytes(bad), b"\x01"]


def test_partition_is_stable() -> None:
    assert partition_of("alice", 1) == 0
    assert [partition_of(f"r{i}", 2) for i in range(6)] == [
        partition_of(f"r{i}", 2) for i in range(6)
    ]
    assert {partition_of(f"r{i}", 4) for i in range(40)} == {0, 1, 2, 3}


def test_threaded_sink_writes_queued_batches_in_one_call_and_isolates_a_bad_batch() -> None:
    import threading

    from imu.server import _ThreadedSink
    from storage.records import Record

    gate = threading.Event()
    calls: list[list[int]] = []
    attempts: list[list[int]] = []

    class Sink:
        def write(self, records: Sequence[Record]) -> None:
            gate.wait(10)
            times = [r.time_ns for r in records]
            attempts.append(times)
            if -1 in times:
                raise ValueError("bad record")
            calls.append(times)

        def close(self) -> None:
            pass

    ts = _ThreadedSink(Sink())
    ts.write([Record("steps", 0)])  # the writer thread blocks in this one
    for t in range(1, 4):
        ts.write([Record("steps", t)])
    ts.write([Record("steps", -1)])
    ts.write([Record("steps", 9)])
    gate.set()
    ts.close()
    # what waited was written in one call (with or without batch 0, whichever the thread had
    # taken); that call fails on the bad batch, then each batch alone: only the bad one is lost
    combined = [a for a in attempts if len(a) > 1]
    assert len(combined) == 1
    assert combined[0][-5:] == [1, 2, 3, -1, 9]
    assert calls == [[0], [1], [2], [3], [9]]
    assert ts.errors == 1


def _mqtt_packet(first: int, body: bytes) -> bytes:
    """An MQTT packet, encoded here independently of imu.server (the parser's test oracle)."""
    n, length = len(body), bytearray()
    while True:
        n, b = n >> 7, n & 0x7F
        length.append(b | (0x80 if n else 0))
        if not n:
            return bytes([first, *length]) + body


@pytest.mark.parametrize("v5", [True, False])
def test_mqtt_stream_parser_splits_any_chunking(v5: bool) -> None:
    from imu.server import MqttStreamError, parse_mqtt_stream

    def publish(topic: str, payload: bytes, mid: int, *, dup: bool = False) -> bytes:
        t = topic.encode()
        props = b"\x03\x01\x01\x00" if v5 else b""  # 3 bytes of properties (a made-up one)
        body = len(t).to_bytes(2, "big") + t + mid.to_bytes(2, "big") + props + payload
        return _mqtt_packet(0x32 | (0x08 if dup else 0), body)

    big = bytes(range(256)) * 80  # remaining length needs 3 bytes
    stream = (
        publish("imu/a/s/raw", b"\x01\x02", 7)
        + _mqtt_packet(0x40, b"\x00\x05")  # PUBACK of one of our publishes
        + publish("imu/b/s/status", big, 65535, dup=True)
        + _mqtt_packet(0xD0, b"")  # PINGRESP
        + _mqtt_packet(0x30, b"\x00\x01x" + (b"\x00" if v5 else b"") + b"q0")  # QoS 0: to paho
    )
    want = [
        (0x32, b"imu/a/s/raw", b"\x01\x02", 7),
        (0x40, b"", b"\x00\x05", -1),
        (0x3A, b"imu/b/s/status", big, 65535),
        (0xD0, b"", b"", -1),
        (0x30, b"", b"\x00\x01x" + (b"\x00" if v5 else b"") + b"q0", -1),
    ]
    for cut in [*range(40), len(stream) // 2, len(stream) - 1, len(stream)]:
        buf = bytearray(stream[:cut])
        used, got = parse_mqtt_stream(buf, v5=v5)
        del buf[:used]
        buf += stream[cut:]
        used2, got2 = parse_mqtt_stream(buf, v5=v5)
        assert used2 == len(buf)
        assert [(c, bytes(t), bytes(p), m) for c, t, p, m in got + got2] == want
    with pytest.raises(MqttStreamError):
        parse_mqtt_stream(b"\x32\xff\xff\xff\xff\x01", v5=v5)  # 5-byte remaining length
    with pytest.raises(MqttStreamError):
        parse_mqtt_stream(_mqtt_packet(0x32, b"\x00\x09abc"), v5=v5)  # topic past the end


def test_encode_steps_is_the_json_of_step_dicts() -> None:
    from dsp.types import STEP_DTYPE, STEP_METRICS
    from firmware_interface.bridge import BRIDGE_VERSION, encode_steps, json_bytes, step_dicts

    rng = np.random.default_rng(3)
    steps = np.zeros(7, dtype=STEP_DTYPE)
    steps["time_s"] = np.cumsum(rng.uniform(0.3, 0.4, 7)) + 1e5 * rng.random()
    steps["side"] = [0, 1, 2, 1, 2, 1, 2]
    steps["activity"] = [0, 1, 2, 2, 2, 1, 2]
    for m in STEP_METRICS:
        steps[m] = rng.normal(0, 10, 7) * 10.0 ** rng.integers(-8, 8, 7)
    steps["pelvic_drop_deg"][2] = np.nan
    steps["braking_mps2"][[0, 5]] = np.nan
    steps["cadence_spm"][6] = np.inf
    for seq in (None, 0, 4_000_000_000):
        for part in (steps, steps[:1], steps[:0]):
            want = json_bytes(
                {"v": BRIDGE_VERSION, "type": "steps", "batch": seq, "steps": step_dicts(part)}
            )
            assert encode_steps(part, batch_seq=seq) == want


def test_paho_internals_the_fast_io_uses_exist() -> None:
    """A paho-mqtt upgrade that renames what imu serve's MQTT I/O replaces fails here, and at
    start-up with one line, not silently at run time."""
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from imu.server import check_paho_internals

    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    check_paho_internals(client)  # the installed paho has them all (raises otherwise)


def test_missing_paho_internal_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from imu import server

    monkeypatch.setattr(server, "PAHO_INTERNALS", (*server.PAHO_INTERNALS, "_renamed_in_paho_3"))
    client = mqtt.Client(CallbackAPIVersion.VERSION2)
    with pytest.raises(RuntimeError, match=r"paho-mqtt 2\.\d+\.\d+ lacks _renamed_in_paho_3"):
        server.check_paho_internals(client)
