"""PacketDecoder: round trip, fuzzing, sequence bookkeeping, time unwrap, chunking invariance."""

from __future__ import annotations

import binascii
import dataclasses
import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from firmware_interface import decoder as decoder_module
from firmware_interface.decoder import DecodedSamples, DecoderStats, PacketDecoder, decode_one
from firmware_interface.protocol import (
    ACC_RANGES_G,
    GYR_RANGES_DPS,
    MAX_SAMPLES_PER_PACKET,
    STANDARD_GRAVITY_MPS2,
    crc16,
    encode_data_packet,
)

T_WRAP_US = 1 << 32


def packet(
    seq: int,
    t0_us: int | None = None,
    *,
    n: int = 4,
    rate_hz: int = 200,
    acc_range_g: int = 8,
    gyr_range_dps: int = 2000,
    fill: int | None = None,
) -> bytes:
    """A valid packet; samples are seq-dependent so that packets are distinguishable."""
    if t0_us is None:
        t0_us = seq * n * 1_000_000 // rate_hz
    raw = np.full((n, 6), seq % 30000 if fill is None else fill, dtype=np.int16)
    raw[:, 0] = np.arange(n)
    return encode_data_packet(seq, t0_us, rate_hz, acc_range_g, gyr_range_dps, raw)


def seqs_of(out: DecodedSamples, n: int = 4) -> list[int]:
    """Recover the seq (mod 30000) of each decoded packet from the `packet` fill pattern."""
    raw_y = np.rint(out.acc_mps2[::n, 1] / (8 / 32768 * STANDARD_GRAVITY_MPS2)).astype(int)
    return raw_y.tolist()


def rejected(s: DecoderStats) -> int:
    return s.corrupt + s.duplicates + s.reordered


def check_accounting(s: DecoderStats) -> None:
    assert s.received == s.decoded + rejected(s)
    assert min(dataclasses.astuple(s)) >= 0


# --- round trip -----------------------------------------------------------------------------


@st.composite
def packet_params(draw: st.DrawFn) -> dict:
    n = draw(st.integers(1, MAX_SAMPLES_PER_PACKET))
    return {
        "seq": draw(st.integers(0, 0xFFFF)),
        "t0_us": draw(st.integers(0, T_WRAP_US - 1)),
        "sample_rate_hz": draw(st.integers(100, 400)),
        "acc_range_g": draw(st.sampled_from(ACC_RANGES_G)),
        "gyr_range_dps": draw(st.sampled_from(GYR_RANGES_DPS)),
        "samples_raw": draw(hnp.arrays(np.int16, (n, 6))),
    }


@settings(max_examples=150, deadline=None)
@given(packet_params())
def test_round_trip_exact(p: dict) -> None:
    data = encode_data_packet(**p)
    dec = PacketDecoder()
    out = dec.decode([data])
    raw = p["samples_raw"].astype(np.float64)
    n = len(raw)
    np.testing.assert_array_equal(
        out.acc_mps2, raw[:, :3] * (p["acc_range_g"] / 32768 * STANDARD_GRAVITY_MPS2)
    )
    np.testing.assert_array_equal(out.gyr_dps, raw[:, 3:] * (p["gyr_range_dps"] / 32768))
    np.testing.assert_array_equal(out.t_s, p["t0_us"] / 1e6 + np.arange(n) / p["sample_rate_hz"])
    assert out.sample_rate_hz == p["sample_rate_hz"]
    assert dec.stats == DecoderStats(received=1, decoded=1)
    one = decode_one(data)
    assert one is not None
    header, samples = one
    assert header == {
        "version": 1,
        "packet_type": 1,
        "seq": p["seq"],
        "t0_us": p["t0_us"],
        "sample_rate_hz": p["sample_rate_hz"],
        "acc_range_g": p["acc_range_g"],
        "gyr_range_dps": p["gyr_range_dps"],
        "n": n,
    }
    np.testing.assert_array_equal(samples.acc_mps2, out.acc_mps2)


def test_bytes_like_inputs_and_empty_batch() -> None:
    p = packet(0)
    dec = PacketDecoder()
    out = dec.decode([bytearray(p), memoryview(p), memoryview(bytearray(packet(1)))])
    assert len(out) == 8
    assert dec.stats.duplicates == 1
    empty = dec.decode([])
    assert len(empty) == 0
    assert empty.acc_mps2.shape == (0, 3)
    assert empty.sample_rate_hz == 200.0  # last known rate
    assert PacketDecoder().decode([]).sample_rate_hz == 0.0


def test_non_bytes_is_a_type_error_and_changes_nothing() -> None:
    dec = PacketDecoder()
    with pytest.raises(TypeError, match="bytes-like"):
        dec.decode([packet(0), "not bytes"])  # type: ignore[list-item]
    assert dec.stats == DecoderStats()


def test_vectorised_crc_matches_binascii() -> None:
    rng = np.random.default_rng(1)
    for k in (2, 14, 242):
        body = rng.integers(0, 256, (3 * decoder_module._SMALL_GROUP, k), dtype=np.uint8)
        got = decoder_module._crc16_rows(body)
        want = [binascii.crc_hqx(row.tobytes(), 0xFFFF) for row in body]
        assert got.tolist() == want
    assert crc16(b"123456789") == 0x29B1


@pytest.mark.parametrize("count", [3, 40])  # binascii path and vectorised path
def test_crc_errors_counted_in_small_and_large_batches(count: int) -> None:
    pkts = [bytearray(packet(i)) for i in range(count)]
    for i in range(0, count, 3):
        pkts[i][20] ^= 0x10
    dec = PacketDecoder()
    out = dec.decode([bytes(p) for p in pkts])
    bad = len(range(0, count, 3))
    assert dec.stats.crc_errors == bad
    assert dec.stats.decoded == count - bad
    assert len(out) == 4 * (count - bad)


# --- classification -------------------------------------------------------------------------


def with_crc(body: bytes) -> bytes:
    return body + crc16(body).to_bytes(2, "little")


def test_classification_of_each_defect() -> None:
    good = packet(0)
    body = bytearray(good[:-2])
    cases = {
        "bad_length": [b"", b"\x01", good[:10], good[:-1], good + b"\x00", good + bytes(12)],
        "unknown_version": [b"\x02", bytes([2]) + good[1:], b"\x00" * 30],
        "unknown_type": [with_crc(bytes([1, 7]) + bytes(body[2:]))],
        "crc_errors": [good[:-2] + bytes([good[-2] ^ 1, good[-1]])],
    }
    rate0 = bytearray(body)
    rate0[8:10] = (0).to_bytes(2, "little")
    rate500 = bytearray(body)
    rate500[8:10] = (500).to_bytes(2, "little")
    acc3 = bytearray(body)
    acc3[10] = 3
    gyr300 = bytearray(body)
    gyr300[11:13] = (300).to_bytes(2, "little")
    cases["bad_header"] = [with_crc(bytes(b)) for b in (rate0, rate500, acc3, gyr300)]
    n0 = bytearray(body)
    n0[13] = 0
    n20 = bytes([1, 1]) + bytes(11) + bytes([20]) + bytes(240)
    cases["bad_length"] += [with_crc(bytes(n0)), with_crc(n20)]
    for field, pkts in cases.items():
        dec = PacketDecoder()
        out = dec.decode(pkts)
        assert len(out) == 0, field
        assert getattr(dec.stats, field) == len(pkts), (field, dec.stats)
        check_accounting(dec.stats)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.binary(max_size=300), max_size=20))
def test_random_bytes_never_raise(blobs: list[bytes]) -> None:
    dec = PacketDecoder()
    out = dec.decode(blobs)
    assert dec.stats.received == len(blobs)
    assert out.acc_mps2.shape == (len(out), 3)
    check_accounting(dec.stats)


@st.composite
def mutated_packet(draw: st.DrawFn) -> bytes:
    n = draw(st.integers(1, MAX_SAMPLES_PER_PACKET))
    data = bytearray(packet(draw(st.integers(0, 0xFFFF)), n=n))
    kind = draw(st.sampled_from(["flip", "truncate", "extend", "flips"]))
    if kind == "flip":
        bit = draw(st.integers(0, 8 * len(data) - 1))
        data[bit // 8] ^= 1 << (bit % 8)
    elif kind == "flips":  # a burst of up to 16 bits: CRC-16 detects every such burst
        start = draw(st.integers(0, 8 * len(data) - 16))
        pattern = draw(st.integers(1, 0xFFFF))
        for b in range(16):
            if pattern >> b & 1:
                bit = start + b
                data[bit // 8] ^= 1 << (bit % 8)
    elif kind == "truncate":
        data = data[: draw(st.integers(0, len(data) - 1))]
    else:
        data += draw(st.binary(min_size=1, max_size=40))
    return bytes(data)


@settings(max_examples=300, deadline=None)
@given(st.lists(mutated_packet(), min_size=1, max_size=8))
def test_mutated_packets_are_all_rejected(pkts: list[bytes]) -> None:
    dec = PacketDecoder()
    out = dec.decode(pkts)
    assert len(out) == 0
    assert dec.stats.decoded == 0
    assert dec.stats.corrupt == len(pkts)
    check_accounting(dec.stats)


# --- sequence bookkeeping -------------------------------------------------------------------


def run(seqs: list[int], *, one_by_one: bool = False) -> tuple[DecoderStats, list[int]]:
    dec = PacketDecoder()
    pkts = [packet(s, t0_us=0) for s in seqs]
    if one_by_one:
        outs = [dec.decode([p]) for p in pkts]
        got = [s for o in outs for s in seqs_of(o)]
    else:
        got = seqs_of(dec.decode(pkts))
    check_accounting(dec.stats)
    return dec.stats, got


@pytest.mark.parametrize("one_by_one", [False, True])
@pytest.mark.parametrize(
    ("seqs", "expect", "accepted"),
    [
        ([0, 1, 2, 5, 6], {"lost": 2, "gaps": 1}, [0, 1, 2, 5, 6]),
        ([0, 1, 1, 2], {"duplicates": 1}, [0, 1, 2]),
        ([0, 1, 3, 2, 4], {"lost": 0, "gaps": 1, "reordered": 1}, [0, 1, 3, 4]),
        ([0, 1, 2, 1], {"duplicates": 1}, [0, 1, 2]),
        ([0, 2, 1, 1], {"lost": 0, "gaps": 1, "reordered": 1, "duplicates": 1}, [0, 2]),
        ([5, 6, 4], {"reordered": 1}, [5, 6]),
        ([65534, 65535, 0, 1], {}, [65534 % 30000, 65535 % 30000, 0, 1]),
        ([65535, 2], {"lost": 2, "gaps": 1}, [65535 % 30000, 2]),
        ([65535, 1, 0], {"lost": 0, "gaps": 1, "reordered": 1}, [65535 % 30000, 1]),
        ([0, 10, 20, 15, 5], {"lost": 16, "gaps": 2, "reordered": 2}, [0, 10, 20]),
        ([*range(20), 3, *range(20, 30)], {"duplicates": 1}, list(range(30))),
        # in-order batches longer than the small-batch threshold take the vectorised path
        (
            list(range(12)) + list(range(15, 30)),
            {"lost": 3, "gaps": 1},
            [*range(12), *range(15, 30)],
        ),
        (
            [*range(12), *range(15, 30), 14, 12, 13],
            {"gaps": 1, "reordered": 3},
            [*range(12), *range(15, 30)],
        ),
    ],
)
def test_sequence_counting(
    seqs: list[int], expect: dict[str, int], accepted: list[int], one_by_one: bool
) -> None:
    stats, got = run(seqs, one_by_one=one_by_one)
    full = {"lost": 0, "gaps": 0, "duplicates": 0, "reordered": 0} | expect
    assert {k: getattr(stats, k) for k in full} == full
    assert stats.decoded == len(accepted)
    assert got == accepted


def test_long_stream_wraps_seq_without_loss() -> None:
    dec = PacketDecoder()
    pkts = [packet(s & 0xFFFF, s * 5000, n=1) for s in range(65530, 65530 + 70000)]
    out = dec.decode(pkts)
    assert dec.stats == DecoderStats(received=70000, decoded=70000)
    assert np.all(np.diff(out.t_s) > 0)


def test_time_unwraps_across_u32_wrap_and_calls() -> None:
    rate_hz, n = 400, 10
    step_us = n * 1_000_000 // rate_hz
    start_us = T_WRAP_US - 3 * step_us
    pkts = [packet(i, (start_us + i * step_us) % T_WRAP_US, n=n, rate_hz=rate_hz) for i in range(8)]
    dec = PacketDecoder()
    outs = [dec.decode(pkts[:2]), dec.decode(pkts[2:5]), dec.decode(pkts[5:])]
    t = np.concatenate([o.t_s for o in outs])
    expected = (start_us + np.arange(8)[:, None] * step_us) / 1e6 + np.arange(n) / rate_hz
    np.testing.assert_allclose(t, expected.ravel(), rtol=0, atol=1e-9)
    assert np.all(np.diff(t) > 0)


def test_mixed_lengths_keep_stream_order() -> None:
    pkts = [packet(i, i * 100_000, n=1 + i % MAX_SAMPLES_PER_PACKET) for i in range(60)]
    pkts.insert(7, b"junk")
    together = PacketDecoder().decode(pkts)
    dec = PacketDecoder()
    single = [dec.decode([p]) for p in pkts]
    np.testing.assert_array_equal(together.t_s, np.concatenate([s.t_s for s in single]))
    np.testing.assert_array_equal(together.acc_mps2, np.concatenate([s.acc_mps2 for s in single]))
    assert np.all(np.diff(together.t_s) > 0)


def test_reset_forgets_the_stream() -> None:
    dec = PacketDecoder()
    dec.decode([packet(0), packet(5)])
    dec.reset()
    assert dec.stats == DecoderStats()
    dec.decode([packet(100)])
    assert dec.stats == DecoderStats(received=1, decoded=1)


# --- chunking invariance --------------------------------------------------------------------


def messy_stream(seed: int, count: int) -> list[bytes]:
    """Packets with gaps, duplicates, swaps, corruption, varied n and a u32 time wrap."""
    rng = np.random.default_rng(seed)
    seq = int(rng.integers(0, 0x10000))
    t_us = int(rng.integers(T_WRAP_US - 2_000_000, T_WRAP_US))
    out: list[bytes] = []
    for _ in range(count):
        n = int(rng.integers(1, MAX_SAMPLES_PER_PACKET + 1))
        raw = rng.integers(-32768, 32768, (n, 6)).astype(np.int16)
        p = encode_data_packet(seq, t_us % T_WRAP_US, 250, 16, 1000, raw)
        seq += 1 + (int(rng.integers(1, 5)) if rng.random() < 0.1 else 0)
        t_us += n * 4000
        r = rng.random()
        if r < 0.05:
            out += [p, p]
        elif r < 0.1 and out:
            out.insert(len(out) - 1, p)
        elif r < 0.15:
            b = bytearray(p)
            b[int(rng.integers(0, len(b)))] ^= 0xFF
            out.append(bytes(b))
        elif r < 0.17:
            out.append(p[: int(rng.integers(0, len(p)))])
        else:
            out.append(p)
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.lists(st.integers(0, 120), max_size=12),
)
def test_chunking_invariance(seed: int, cuts: list[int]) -> None:
    assert_chunking_invariant(messy_stream(seed, 120), cuts)


def assert_chunking_invariant(pkts: list[bytes], cuts: list[int]) -> None:
    """Decoding `pkts` split at `cuts` gives the samples and stats of one call on all of them."""
    whole = PacketDecoder()
    ref = whole.decode(pkts)
    bounds = [0, *sorted(min(c, len(pkts)) for c in cuts), len(pkts)]
    dec = PacketDecoder()
    parts = [dec.decode(pkts[a:b]) for a, b in itertools.pairwise(bounds)]
    np.testing.assert_array_equal(np.concatenate([p.t_s for p in parts]), ref.t_s)
    np.testing.assert_array_equal(np.concatenate([p.acc_mps2 for p in parts]), ref.acc_mps2)
    np.testing.assert_array_equal(np.concatenate([p.gyr_dps for p in parts]), ref.gyr_dps)
    assert dec.stats == whole.stats
    check_accounting(dec.stats)


def test_one_by_one_equals_batch_on_a_long_messy_stream() -> None:
    pkts = messy_stream(7, 3000)
    whole = PacketDecoder()
    ref = whole.decode(pkts)
    dec = PacketDecoder()
    t = np.concatenate([dec.decode([p]).t_s for p in pkts])
    np.testing.assert_array_equal(t, ref.t_s)
    assert dec.stats == whole.stats
    assert whole.stats.lost > 0
    assert whole.stats.duplicates > 0
    assert whole.stats.reordered > 0
    assert whole.stats.corrupt > 0


# --- sensor restarts (reboot mid-session) -----------------------------------------------------


def rebooting_stream(seed: int, count: int, reboots: int, *, messy: bool) -> list[bytes]:
    """Clean or messy packets in which the sensor restarts `reboots` times: a new random sequence
    number and a clock 3 s to 30 min behind where it was (clean), or independent messy segments."""
    rng = np.random.default_rng(seed)
    cuts = sorted(rng.choice(np.arange(5, count - 5), reboots, replace=False).tolist())
    out: list[bytes] = []
    t_us = int(rng.integers(0, T_WRAP_US))
    for k, part in enumerate(np.split(np.arange(count), cuts)):
        if messy:
            out += messy_stream(seed + k, len(part))
            continue
        seq = int(rng.integers(0, 0x10000))
        out += [
            packet((seq + i) % 0x10000, (t_us + i * 20_000) % T_WRAP_US) for i in range(len(part))
        ]
        t_us = (t_us + len(part) * 20_000 - int(rng.integers(3_000_000, 1_800_000_000))) % T_WRAP_US
    return out


def test_sensor_restart_continues_the_stream() -> None:
    before = [packet(40000 + i, 50_000_000 + i * 20_000) for i in range(500)]
    after = [packet(i, 300_000 + i * 20_000) for i in range(300)]  # rebooted: seq and clock from ~0
    pkts = before + after
    whole = PacketDecoder()
    ref = whole.decode(pkts)
    assert whole.stats.restarts == 1
    assert whole.stats.decoded == 800
    assert (whole.stats.lost, whole.stats.duplicates, whole.stats.reordered) == (0, 0, 0)
    assert len(ref) == 800 * 4
    assert np.all(np.diff(ref.t_s) > 0)
    # the first sample after the restart is restart_gap_s (1 s) after the last one before it
    assert ref.t_s[500 * 4] - ref.t_s[500 * 4 - 1] == pytest.approx(1.0, abs=1e-9)
    assert seqs_of(ref)[500:] == list(range(300))
    one = PacketDecoder()
    t = np.concatenate([one.decode([p]).t_s for p in pkts])
    np.testing.assert_array_equal(t, ref.t_s)
    assert one.stats == whole.stats


def test_late_packet_is_not_a_restart() -> None:
    """A packet 1 s late (inside restart_back_s) is still a dropped late packet."""
    pkts = [packet(i) for i in range(200)]
    late = pkts.pop(100)
    dec = PacketDecoder()
    dec.decode(pkts[:150])
    dec.decode([late])
    assert dec.stats.restarts == 0
    assert dec.stats.reordered == 1


def test_restart_parameters_are_checked() -> None:
    with pytest.raises(ValueError, match="restart_back_s"):
        PacketDecoder(restart_back_s=0)


@pytest.mark.parametrize("reboots", [1, 3])
def test_clean_stream_with_reboots_loses_nothing(reboots: int) -> None:
    pkts = rebooting_stream(11, 600, reboots, messy=False)
    dec = PacketDecoder()
    out = dec.decode(pkts)
    assert dec.stats.restarts == reboots
    assert dec.stats.decoded == 600
    assert np.all(np.diff(out.t_s) > 0)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 2**32 - 1),
    st.integers(1, 3),
    st.lists(st.integers(0, 150), max_size=12),
)
def test_chunking_invariance_with_reboots(seed: int, reboots: int, cuts: list[int]) -> None:
    assert_chunking_invariant(rebooting_stream(seed, 150, reboots, messy=True), cuts)
