"""Vectorised, stateful decoder for v1 IMU data packets (see ``docs/protocol.md``).

:class:`PacketDecoder` turns a batch of raw notifications into samples in physical units. It never
raises on bad bytes: every rejected packet is counted in exactly one field of :class:`DecoderStats`,
so that ``received == decoded + rejected`` where ``rejected`` is the sum of ``bad_length``,
``unknown_version``, ``unknown_type``, ``crc_errors``, ``bad_header``, ``duplicates`` and
``reordered``.

Work is vectorised with numpy: packets are grouped by length, each group is stacked into a 2-D
``uint8`` array, and headers, CRCs and samples are computed column-wise over all packets of the
group. Only the sequence-number bookkeeping loops per packet, and only when a batch contains a
duplicate or an out-of-order packet (the in-order case is vectorised too).

Small batches (up to 256 packets, the live case: one BLE notification or one MQTT raw batch) in
which every packet is accepted, all of one length and configuration, take a fast path
(one numba kernel over the joined bytes: checks, CRC, restart scan, sequence and time bookkeeping
and the samples, with the same float operations as the vectorised path, so exactly the same
results); any other batch takes the vectorised path.

Classification order of one packet (the first matching rule wins):

1. empty -> ``bad_length``
2. byte 0 != :data:`~firmware_interface.protocol.PROTOCOL_VERSION` -> ``unknown_version``
3. shorter than the 14-byte header -> ``bad_length``
4. byte 1 != ``PacketType.IMU_DATA`` -> ``unknown_type``
5. ``n`` not in 1..19 or length != 14 + 12 n + 2 -> ``bad_length``
6. CRC mismatch -> ``crc_errors``
7. rate outside 100..400 Hz or a range not in the allowed sets -> ``bad_header``
8. sequence number already seen -> ``duplicates``; older than the newest accepted packet and not
   seen -> ``reordered`` (dropped; if it had been counted in ``lost``, ``lost`` is decremented)
9. otherwise the packet is accepted (``decoded``); a forward jump of the sequence number by d > 1
   adds d - 1 to ``lost`` and 1 to ``gaps``.

Sensor restart (reboot, brown-out, battery swap while the host keeps the session): the sensor's
sequence number and microsecond clock start again from wherever its firmware starts them. A valid
packet whose ``t0_us`` lies more than ``restart_back_s`` (default 2 s) BEHIND the newest valid
packet so far (signed modular steps between consecutive valid packets, so not a wrap) cannot be a late packet of this stream (BLE delivers
notifications in order; the MQTT server's reorder window holds at most 1 s), so it starts a new
stream segment: ``restarts`` += 1, the sequence state starts afresh at that packet (nothing is
counted lost, duplicate or reordered across the restart), and its samples continue the output time
axis ``restart_gap_s`` (default 1 s) after the last sample before the restart, which is more than
the DSP's largest bridged gap, so the analysis restarts cleanly. The real outage is unknown to the
decoder; a caller that knows host receive times can re-map them. Without this rule every packet
after a reboot would be dropped as ``reordered`` or ``duplicates``, or its time would run backwards.

Sequence numbers (u16) and ``t0_us`` (u32) wrap; both are compared modulo their range, a forward
step being a difference in ``[1, 2**(bits-1))``. A gap of 32768 packets or more is therefore
indistinguishable from reordering: start a new :class:`PacketDecoder` (or :meth:`reset`) after a
reconnect.
"""

from __future__ import annotations

import binascii
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from firmware_interface.protocol import (
    ACC_RANGES_G,
    CRC_BYTES,
    GYR_RANGES_DPS,
    HEADER_BYTES,
    MAX_RATE_HZ,
    MAX_SAMPLES_PER_PACKET,
    MIN_RATE_HZ,
    PROTOCOL_VERSION,
    SAMPLE_BYTES,
    STANDARD_GRAVITY_MPS2,
    PacketType,
)

__all__ = [
    "RESTART_BACK_S",
    "RESTART_GAP_S",
    "DecodedSamples",
    "DecoderStats",
    "PacketDecoder",
    "decode_one",
]

#: a valid packet this far behind the newest one is a sensor restart (see the module docstring)
RESTART_BACK_S = 2.0
#: session time inserted between the last sample before a sensor restart and the first after it
RESTART_GAP_S = 1.0
_SEQ_MOD = 1 << 16
_SEQ_HALF = 1 << 15
_T_MOD = 1 << 32
_T_HALF = 1 << 31
# Below this many packets of one length, binascii.crc_hqx per packet beats the column-wise
# numpy CRC (whose cost is ~2 numpy calls per 16-bit word regardless of the number of packets).
_SMALL_GROUP = 16
# Up to this many packets, sequence bookkeeping runs on Python ints (cheaper than numpy calls).
_SMALL_BATCH = 8
# Up to this many packets, a batch of well-formed, in-order packets of one length and one
# configuration is decoded by one compiled kernel (_fast_kernel via PacketDecoder._decode_fast);
# anything else (or a larger batch) takes the vectorised path.
_FAST_BATCH = 256


_IMU_DATA = int(PacketType.IMU_DATA)

# Classification codes, one per packet.
_OK = 0
_BAD_LENGTH = 1
_UNKNOWN_VERSION = 2
_UNKNOWN_TYPE = 3
_CRC_ERROR = 4
_BAD_HEADER = 5

_F8 = npt.NDArray[np.float64]
_I8 = npt.NDArray[np.int64]


def _crc16_word_table() -> npt.NDArray[np.uint16]:
    """CRC-16/CCITT-FALSE table indexed by a 16-bit word: two message bytes per step.

    For a non-reflected 16-bit CRC, feeding the big-endian word ``w`` into register ``r`` gives
    ``T[r ^ w]`` where ``T[v]`` is ``v`` shifted through 16 zero bits modulo the polynomial.
    """
    table = np.arange(1 << 16, dtype=np.int64)
    for _ in range(16):
        carry = (table & 0x8000) != 0
        table = ((table << 1) & 0xFFFF) ^ np.where(carry, 0x1021, 0)
    return table.astype(np.uint16)


_CRC_TABLE = _crc16_word_table()


def _crc16_rows(body: npt.NDArray[np.uint8]) -> npt.NDArray[np.uint16]:
    """CRC-16/CCITT-FALSE of every row of ``body`` (shape (m, k), k even), vectorised over rows."""
    m, k = body.shape
    if m < _SMALL_GROUP:
        return np.array([binascii.crc_hqx(row.tobytes(), 0xFFFF) for row in body], dtype=np.uint16)
    # Column-major words: words[j] holds the j-th big-endian 16-bit word of every packet.
    cols = np.ascontiguousarray(body.T).astype(np.uint16)
    words = (cols[0::2] << 8) | cols[1::2]
    crc = np.full(m, 0xFFFF, dtype=np.uint16)
    for j in range(k // 2):
        crc = _CRC_TABLE[crc ^ words[j]]
    return crc


# State vector of _fast_kernel (int64; flags 0/1 stand for the Python attributes' None).
_ST_HAS_SCAN, _ST_SCAN_RAW, _ST_SCAN_REL, _ST_SCAN_MAX, _ST_BACK_US = 0, 1, 2, 3, 4
_ST_HAS_NEWEST, _ST_NEWEST, _ST_HAVE_T0, _ST_LAST_RAW, _ST_LAST_T0 = 5, 6, 7, 8, 9
_ST_HAS_BASE, _ST_BASE = 10, 11
_ST_SIZE = 12
_ACC_OK_CODES = np.array(sorted(ACC_RANGES_G), dtype=np.int64)
_GYR_OK_CODES = np.array(sorted(GYR_RANGES_DPS), dtype=np.int64)


@njit(cache=True, nogil=True)
def _fast_kernel(
    buf: npt.NDArray[np.uint8],
    m: int,
    length: int,
    n: int,
    crc_table: npt.NDArray[np.uint16],
    acc_ok: npt.NDArray[np.int64],
    gyr_ok: npt.NDArray[np.int64],
    st: npt.NDArray[np.int64],
    t_out: npt.NDArray[np.float64],
    acc_out: npt.NDArray[np.float64],
    gyr_out: npt.NDArray[np.float64],
    jumps: npt.NDArray[np.int64],
) -> int:
    """:meth:`PacketDecoder._decode_fast`'s checks and decoding of ``m`` packets of ``length``
    bytes (``n`` samples each) joined in ``buf``, in one compiled pass.

    Returns the number of forward sequence jumps written to ``jumps`` (base, d), with the new
    stream state in ``st`` and the samples in ``t_out``/``acc_out``/``gyr_out``; or -1 (not the
    fast case: ``st`` untouched). Same float operations as the vectorised path: ``t0_us / 1e6 +
    i / rate``, ``raw * (range / 32768.0 * g)``.
    """
    body = length - CRC_BYTES
    rate = np.int64(buf[8]) | (np.int64(buf[9]) << 8)
    acc_g = np.int64(buf[10])
    gyr_r = np.int64(buf[11]) | (np.int64(buf[12]) << 8)
    if rate < MIN_RATE_HZ or rate > MAX_RATE_HZ:
        return -1
    ok = False
    for v in acc_ok:
        ok = ok or v == acc_g
    if not ok:
        return -1
    ok = False
    for v in gyr_ok:
        ok = ok or v == gyr_r
    if not ok:
        return -1
    for k in range(m):
        o = k * length
        if buf[o] != PROTOCOL_VERSION or buf[o + 1] != _IMU_DATA or buf[o + 13] != n:
            return -1
        for j in range(8, 13):
            if buf[o + j] != buf[j]:
                return -1
        crc = np.int64(0xFFFF)
        for j in range(o, o + body, 2):
            crc = np.int64(crc_table[crc ^ ((np.int64(buf[j]) << 8) | np.int64(buf[j + 1]))])
        if crc != (np.int64(buf[o + body]) | (np.int64(buf[o + body + 1]) << 8)):
            return -1
    # a restart (clock far behind the newest packet) takes the general path
    t_mask = np.int64(_T_MOD - 1)
    scan_raw = st[_ST_SCAN_RAW]
    if st[_ST_HAS_SCAN] == 0:
        scan_raw = np.int64(buf[4]) | (np.int64(buf[5]) << 8) | (np.int64(buf[6]) << 16)
        scan_raw |= np.int64(buf[7]) << 24
    rel = st[_ST_SCAN_REL]
    newest_rel = st[_ST_SCAN_MAX]
    for k in range(m):
        o = k * length
        raw_t = np.int64(buf[o + 4]) | (np.int64(buf[o + 5]) << 8) | (np.int64(buf[o + 6]) << 16)
        raw_t |= np.int64(buf[o + 7]) << 24
        step = (raw_t - scan_raw) & t_mask
        rel += step - _T_MOD if step >= _T_HALF else step
        if rel < newest_rel - st[_ST_BACK_US]:
            return -1
        newest_rel = max(newest_rel, rel)
        scan_raw = raw_t
    # sequence numbers: all forward steps (else the general path sorts out dup/reorder)
    first = st[_ST_HAS_NEWEST] == 0
    seq0 = np.int64(buf[2]) | (np.int64(buf[3]) << 8)
    newest = seq0 if first else st[_ST_NEWEST]
    prev = newest & 0xFFFF
    nj = 0
    for k in range(1 if first else 0, m):
        o = k * length
        q = np.int64(buf[o + 2]) | (np.int64(buf[o + 3]) << 8)
        d = (q - prev) & 0xFFFF
        if not 0 < d < _SEQ_HALF:
            return -1
        if d > 1:
            jumps[nj, 0] = newest
            jumps[nj, 1] = d
            nj += 1
        newest += d
        prev = q
    # accepted: the new stream state
    st[_ST_HAS_SCAN] = 1
    st[_ST_SCAN_RAW] = scan_raw
    st[_ST_SCAN_REL] = rel
    st[_ST_SCAN_MAX] = newest_rel
    st[_ST_HAS_NEWEST] = 1
    st[_ST_NEWEST] = newest
    # time: unwrap the u32 microsecond counter
    if st[_ST_HAVE_T0] == 0:
        first_raw = np.int64(buf[4]) | (np.int64(buf[5]) << 8) | (np.int64(buf[6]) << 16)
        first_raw |= np.int64(buf[7]) << 24
        st[_ST_HAVE_T0] = 1
        st[_ST_LAST_RAW] = first_raw
        st[_ST_LAST_T0] = first_raw if st[_ST_HAS_BASE] == 0 else st[_ST_BASE]
    raw_prev = st[_ST_LAST_RAW]
    t0 = st[_ST_LAST_T0]
    rate_f = np.float64(rate)
    acc_scale = acc_g / 32768.0 * STANDARD_GRAVITY_MPS2
    gyr_scale = gyr_r / 32768.0
    for k in range(m):
        o = k * length
        raw_t = np.int64(buf[o + 4]) | (np.int64(buf[o + 5]) << 8) | (np.int64(buf[o + 6]) << 16)
        raw_t |= np.int64(buf[o + 7]) << 24
        step = (raw_t - raw_prev) & t_mask
        t0 += step - _T_MOD if step >= _T_HALF else step
        raw_prev = raw_t
        t0_s = t0 / 1e6
        for i in range(n):
            r = k * n + i
            t_out[r] = t0_s + np.float64(i) / rate_f
            p = o + HEADER_BYTES + i * SAMPLE_BYTES
            for c in range(6):
                v = np.int64(buf[p + 2 * c]) | (np.int64(buf[p + 2 * c + 1]) << 8)
                if v >= 32768:
                    v -= 65536
                if c < 3:
                    acc_out[r, c] = np.float64(v) * acc_scale
                else:
                    gyr_out[r, c - 3] = np.float64(v) * gyr_scale
    st[_ST_LAST_RAW] = raw_prev
    st[_ST_LAST_T0] = t0
    return nj


@dataclass(frozen=True, slots=True)
class DecoderStats:
    """Packet counters of one stream; every received packet lands in exactly one outcome.

    Attributes:
        received: packets passed to :meth:`PacketDecoder.decode`.
        decoded: packets accepted (their samples were returned).
        crc_errors: well-formed length but CRC mismatch.
        bad_length: empty, shorter than the header, ``n`` not in 1..19, or length != 14 + 12 n + 2.
        unknown_version: byte 0 is not the protocol version this decoder speaks.
        unknown_type: byte 1 is not a known data packet type.
        bad_header: CRC valid but rate or ranges out of the allowed values.
        duplicates: sequence number already seen; dropped.
        reordered: older than the newest accepted packet and not seen before; dropped.
        lost: packets missing from the sequence (net of late arrivals counted in ``reordered``).
        gaps: forward jumps of the sequence number by more than one.
        restarts: sensor restarts detected (clock more than ``restart_back_s`` behind; see the
            module docstring); the stream continues after each.
    """

    received: int = 0
    decoded: int = 0
    crc_errors: int = 0
    bad_length: int = 0
    unknown_version: int = 0
    unknown_type: int = 0
    bad_header: int = 0
    duplicates: int = 0
    reordered: int = 0
    lost: int = 0
    gaps: int = 0
    restarts: int = 0

    @property
    def corrupt(self) -> int:
        """Packets rejected for their content (length, version, type, CRC, header values)."""
        return (
            self.crc_errors
            + self.bad_length
            + self.unknown_version
            + self.unknown_type
            + self.bad_header
        )


@dataclass(frozen=True, slots=True)
class DecodedSamples:
    """Samples of the accepted packets of one :meth:`PacketDecoder.decode` call, in stream order.

    Attributes:
        t_s: (n,) sensor-clock time of each sample in seconds, unwrapped across the u32 wrap:
            ``t0_us / 1e6 + i / sample_rate_hz`` for sample ``i`` of a packet.
        acc_mps2: (n, 3) specific force in m/s^2, sensor frame.
        gyr_dps: (n, 3) angular rate in deg/s, sensor frame.
        sample_rate_hz: nominal rate from the last accepted header so far in the stream
            (0.0 before the first accepted packet).
    """

    t_s: _F8
    acc_mps2: _F8
    gyr_dps: _F8
    sample_rate_hz: float

    def __len__(self) -> int:
        return int(self.t_s.shape[0])

    @classmethod
    def empty(cls, sample_rate_hz: float = 0.0) -> DecodedSamples:
        """No samples."""
        return cls(np.empty(0), np.empty((0, 3)), np.empty((0, 3)), sample_rate_hz)


_HEADER_DTYPE = np.dtype(
    [
        ("version", "u1"),
        ("packet_type", "u1"),
        ("seq", "<u2"),
        ("t0_us", "<u4"),
        ("sample_rate_hz", "<u2"),
        ("acc_range_g", "u1"),
        ("gyr_range_dps", "<u2"),
        ("n", "u1"),
    ]
)
assert _HEADER_DTYPE.itemsize == HEADER_BYTES
_RATE_OK = np.zeros(1 << 16, dtype=bool)
_RATE_OK[MIN_RATE_HZ : MAX_RATE_HZ + 1] = True
_ACC_OK = np.zeros(1 << 8, dtype=bool)
_ACC_OK[list(ACC_RANGES_G)] = True
_GYR_OK = np.zeros(1 << 16, dtype=bool)
_GYR_OK[list(GYR_RANGES_DPS)] = True


@dataclass(slots=True)
class _Group:
    """Good packets of one length: header fields and raw samples, indexed by packet in group."""

    index: _I8  # position of each packet in the decode() batch
    rate_hz: _I8
    acc_range_g: _I8
    gyr_range_dps: _I8
    raw: npt.NDArray[np.int16]  # (m, n, 6)


@dataclass(slots=True)
class _Parsed:
    """Classification of every packet of a batch, and the parsed good ones."""

    code: npt.NDArray[np.int8]  # (count,) one of the _OK.._BAD_HEADER codes
    seq: _I8  # (count,) valid where code == _OK
    t0_us: _I8  # (count,) raw u32, valid where code == _OK
    groups: list[_Group]


def _as_bytes(packet: object) -> bytes:
    if isinstance(packet, bytes):
        return packet
    if isinstance(packet, bytearray):
        return bytes(packet)
    if isinstance(packet, memoryview):
        return packet.tobytes()
    raise TypeError(f"packets must be bytes-like, got {type(packet).__name__}")


def _classify_group(a: npt.NDArray[np.uint8]) -> tuple[npt.NDArray[np.int8], Any]:
    """Classify same-length packets ``a`` (shape (m, length)); returns (codes, headers or None)."""
    m, length = a.shape
    c = np.where(a[:, 0] != PROTOCOL_VERSION, _UNKNOWN_VERSION, _OK).astype(np.int8)
    if length < HEADER_BYTES:
        c[c == _OK] = _BAD_LENGTH
        return c, None
    c[(c == _OK) & (a[:, 1] != PacketType.IMU_DATA)] = _UNKNOWN_TYPE
    n_samples, rem = divmod(length - HEADER_BYTES - CRC_BYTES, SAMPLE_BYTES)
    if rem != 0 or not 1 <= n_samples <= MAX_SAMPLES_PER_PACKET:
        c[c == _OK] = _BAD_LENGTH
        return c, None
    h = np.ascontiguousarray(a[:, :HEADER_BYTES]).view(_HEADER_DTYPE).reshape(m)
    c[(c == _OK) & (h["n"] != n_samples)] = _BAD_LENGTH
    ok = c == _OK
    if ok.any():
        body_end = length - CRC_BYTES
        wire = a[:, body_end].astype(np.uint16) | (a[:, body_end + 1].astype(np.uint16) << 8)
        if ok.all():
            c[_crc16_rows(a[:, :body_end]) != wire] = _CRC_ERROR
        else:
            bad_crc = np.zeros(m, dtype=bool)
            bad_crc[ok] = _crc16_rows(a[ok, :body_end]) != wire[ok]
            c[bad_crc] = _CRC_ERROR
    header_ok = (
        _RATE_OK[h["sample_rate_hz"]] & _ACC_OK[h["acc_range_g"]] & _GYR_OK[h["gyr_range_dps"]]
    )
    c[(c == _OK) & ~header_ok] = _BAD_HEADER
    return c, h


def _parse(packets: Sequence[bytes]) -> _Parsed:
    """Classify every packet and parse the good ones, vectorised per packet length."""
    count = len(packets)
    code = np.full(count, _BAD_LENGTH, dtype=np.int8)
    seq = np.zeros(count, dtype=np.int64)
    t0_us = np.zeros(count, dtype=np.int64)
    groups: list[_Group] = []
    lengths = np.fromiter(map(len, packets), dtype=np.int64, count=count)
    if count == 0 or bool((lengths == lengths[0]).all()):
        by_length = [(int(lengths[0]), np.arange(count))] if count else []
    else:
        by_length = [(int(n), np.flatnonzero(lengths == n)) for n in np.unique(lengths)]
    for length, idx in by_length:
        if length == 0:
            continue  # already _BAD_LENGTH
        joined = (
            b"".join(packets) if len(idx) == count else b"".join([packets[i] for i in idx.tolist()])
        )
        a = np.frombuffer(joined, dtype=np.uint8).reshape(-1, length)
        c, h = _classify_group(a)
        code[idx] = c
        good = c == _OK
        if not good.any():
            continue
        if not good.all():
            a, h, idx = a[good], h[good], idx[good]
        seq[idx] = h["seq"]
        t0_us[idx] = h["t0_us"]
        n_samples = h["n"][0]
        raw = np.ascontiguousarray(a[:, HEADER_BYTES : length - CRC_BYTES]).view("<i2")
        groups.append(
            _Group(
                idx,
                h["sample_rate_hz"].astype(np.int64),
                h["acc_range_g"].astype(np.int64),
                h["gyr_range_dps"].astype(np.int64),
                raw.reshape(len(idx), n_samples, 6),
            )
        )
    return _Parsed(code, seq, t0_us, groups)


def _to_samples(parsed: _Parsed, accepted: _I8, t0_us: _I8) -> tuple[_F8, _F8, _F8, float]:
    """Samples of the ``accepted`` packets (stream order) with unwrapped ``t0_us``, in SI units."""
    count = len(parsed.code)
    is_accepted = np.zeros(count, dtype=bool)
    is_accepted[accepted] = True
    t0_by_packet = np.zeros(count, dtype=np.int64)
    t0_by_packet[accepted] = t0_us
    parts: list[tuple[_I8, _F8, _F8, _F8]] = []
    last_rate_hz = 0.0
    for g in parsed.groups:
        keep = is_accepted[g.index]
        if not keep.any():
            continue
        sel = slice(None) if keep.all() else keep
        idx, raw = g.index[sel], g.raw[sel]
        rate_hz = g.rate_hz[sel].astype(np.float64)
        n = raw.shape[1]
        i = np.arange(n, dtype=np.float64)
        t_s = (t0_by_packet[idx][:, None] / 1e6 + i[None, :] / rate_hz[:, None]).reshape(-1)
        acc_scale = g.acc_range_g[sel] / 32768.0 * STANDARD_GRAVITY_MPS2
        gyr_scale = g.gyr_range_dps[sel] / 32768.0
        acc = (raw[:, :, :3] * acc_scale[:, None, None]).reshape(-1, 3)
        gyr = (raw[:, :, 3:] * gyr_scale[:, None, None]).reshape(-1, 3)
        parts.append((np.repeat(idx, n), t_s, acc, gyr))
        if idx[-1] == accepted[-1]:
            last_rate_hz = float(rate_hz[-1])
    if len(parts) == 1:
        _, t_s, acc, gyr = parts[0]
        return t_s, acc, gyr, last_rate_hz
    order = np.argsort(np.concatenate([p[0] for p in parts]), kind="stable")
    t_s = np.concatenate([p[1] for p in parts])[order]
    acc = np.concatenate([p[2] for p in parts])[order]
    gyr = np.concatenate([p[3] for p in parts])[order]
    return t_s, acc, gyr, last_rate_hz


def _state_field(index: int, has_index: int | None = None) -> Any:
    """A property of :class:`PacketDecoder` stored in its ``_st`` array at ``index`` (a Python
    int; ``None`` when the flag at ``has_index`` is 0)."""

    def get(self: PacketDecoder) -> int | None:
        if has_index is not None and not self._st[has_index]:
            return None
        return int(self._st[index])

    def put(self: PacketDecoder, value: int | None) -> None:
        if has_index is not None:
            self._st[has_index] = value is not None
        if value is not None:
            self._st[index] = value

    return property(get, put)


def _flag_field(index: int) -> Any:
    """A bool property of :class:`PacketDecoder` stored in its ``_st`` array at ``index``."""

    def get(self: PacketDecoder) -> bool:
        return bool(self._st[index])

    def put(self: PacketDecoder, value: bool) -> None:
        self._st[index] = bool(value)

    return property(get, put)


class PacketDecoder:
    """Stateful decoder of one sensor stream (one session); see the module docstring for the rules.

    State (newest sequence number, lost sequence numbers, time unwrap) persists across
    :meth:`decode` calls, so splitting a packet list into any chunks gives the same concatenated
    samples and the same final :attr:`stats`.

    Example:
        >>> dec = PacketDecoder()
        >>> out = dec.decode(packets)  # doctest: +SKIP
        >>> out.acc_mps2.shape, dec.stats.lost  # doctest: +SKIP
    """

    def __init__(
        self, *, restart_back_s: float = RESTART_BACK_S, restart_gap_s: float = RESTART_GAP_S
    ) -> None:
        if not restart_back_s > 0 or not restart_gap_s >= 0:
            raise ValueError(
                f"restart_back_s must be > 0 and restart_gap_s >= 0, got {restart_back_s}, {restart_gap_s}"
            )
        self._restart_back_us = round(restart_back_s * 1e6)
        self._restart_gap_us = round(restart_gap_s * 1e6)
        self._init_state()

    _scan_raw_us = _state_field(_ST_SCAN_RAW, _ST_HAS_SCAN)
    _scan_rel_us = _state_field(_ST_SCAN_REL)
    _scan_max_us = _state_field(_ST_SCAN_MAX)
    _newest_seq = _state_field(_ST_NEWEST, _ST_HAS_NEWEST)
    _have_t0 = _flag_field(_ST_HAVE_T0)
    _last_t0_raw_us = _state_field(_ST_LAST_RAW)
    _last_t0_us = _state_field(_ST_LAST_T0)
    _t0_base_us = _state_field(_ST_BASE, _ST_HAS_BASE)

    def _init_state(self) -> None:
        self._stats = DecoderStats()
        # counters of fast-path batches not yet folded into _stats (see _fold_fast):
        # packets (received = decoded), lost, gaps
        self._fast_packets = 0
        self._fast_lost = 0
        self._fast_gaps = 0
        # the stream state below lives in this array (the properties of the class), which the
        # fast path's kernel reads and updates in place
        self._st = np.zeros(_ST_SIZE, dtype=np.int64)
        self._st[_ST_BACK_US] = self._restart_back_us
        self._newest_seq = None  # unwrapped (monotonic) sequence number
        self._first_seq = 0
        self._lost_seqs: set[int] = set()  # unwrapped seqs counted in `lost`, within reach
        self._have_t0 = False
        self._last_t0_raw_us = 0
        self._last_t0_us = 0  # unwrapped
        self._t0_base_us = None  # unwrapped t0 of the first packet after a restart
        self._last_span_us = 0  # duration of the newest accepted packet's samples
        # restart scan over every valid packet: previous raw t0, its position and the newest
        # position (us, relative to the segment's first packet)
        self._scan_raw_us = None
        self._scan_rel_us = 0
        self._scan_max_us = 0
        self._sample_rate_hz = 0.0

    @property
    def stats(self) -> DecoderStats:
        """Counters since construction or the last :meth:`reset` (an immutable snapshot)."""
        self._fold_fast()
        return self._stats

    def _fold_fast(self) -> None:
        """Add the fast path's pending counters to ``_stats`` (one snapshot instead of one per
        batch: building the frozen dataclass cost ~2 us of each ~20 us live call)."""
        if self._fast_packets:
            s = self._stats
            self._stats = DecoderStats(
                s.received + self._fast_packets,
                s.decoded + self._fast_packets,
                s.crc_errors,
                s.bad_length,
                s.unknown_version,
                s.unknown_type,
                s.bad_header,
                s.duplicates,
                s.reordered,
                s.lost + self._fast_lost,
                s.gaps + self._fast_gaps,
                s.restarts,
            )
            self._fast_packets = self._fast_lost = self._fast_gaps = 0

    def reset(self) -> None:
        """Forget the stream: counters, sequence and time state (e.g. after a reconnect)."""
        self._init_state()

    def decode(self, packets: Sequence[bytes | bytearray | memoryview]) -> DecodedSamples:
        """Decode a batch of data packets in arrival order.

        Args:
            packets: raw notifications (bytes, bytearray or memoryview), any content.

        Returns:
            The samples of the accepted packets, in stream order, in physical units.

        Raises:
            TypeError: an element is not bytes-like (a programming error, not bad data).
        """
        batch = [p if type(p) is bytes else _as_bytes(p) for p in packets]
        if 0 < len(batch) <= _FAST_BATCH:
            fast = self._decode_fast(batch)
            if fast is not None:
                return fast
        parsed = _parse(batch)
        valid = np.flatnonzero(parsed.code == _OK)
        cut = self._scan_restarts(parsed.t0_us[valid])
        if cut is not None:  # rare: decode the two segments separately
            before = self.decode(batch[: int(valid[cut])])
            self._restart(int(parsed.t0_us[valid[cut]]))
            after = self.decode(batch[int(valid[cut]) :])
            return DecodedSamples(
                np.concatenate([before.t_s, after.t_s]),
                np.concatenate([before.acc_mps2, after.acc_mps2]),
                np.concatenate([before.gyr_dps, after.gyr_dps]),
                after.sample_rate_hz,
            )
        codes = np.bincount(parsed.code, minlength=6)
        accepted_pos, dup, reord, lost_delta, gaps = self._sequence(parsed.seq[valid])
        accepted = valid[accepted_pos]
        self._fold_fast()
        s = self._stats
        self._stats = DecoderStats(
            received=s.received + len(batch),
            decoded=s.decoded + len(accepted),
            crc_errors=s.crc_errors + int(codes[_CRC_ERROR]),
            bad_length=s.bad_length + int(codes[_BAD_LENGTH]),
            unknown_version=s.unknown_version + int(codes[_UNKNOWN_VERSION]),
            unknown_type=s.unknown_type + int(codes[_UNKNOWN_TYPE]),
            bad_header=s.bad_header + int(codes[_BAD_HEADER]),
            duplicates=s.duplicates + dup,
            reordered=s.reordered + reord,
            lost=s.lost + lost_delta,
            gaps=s.gaps + gaps,
            restarts=s.restarts,
        )
        if len(accepted) == 0:
            return DecodedSamples.empty(self._sample_rate_hz)
        t0_us = self._unwrap_t0(parsed.t0_us[accepted])
        t_s, acc_mps2, gyr_dps, self._sample_rate_hz = _to_samples(parsed, accepted, t0_us)
        self._last_span_us = round((t_s[-1] - t0_us[-1] / 1e6) * 1e6)
        return DecodedSamples(t_s, acc_mps2, gyr_dps, self._sample_rate_hz)

    # --- sensor restarts ------------------------------------------------------------------------

    def _scan_restarts(self, t0_raw_us: _I8) -> int | None:
        """Index of the first valid packet more than ``restart_back_s`` behind the newest so far.

        None: no restart in these packets, and the scan state now includes them.
        """
        if len(t0_raw_us) == 0:
            return None
        prev = np.empty_like(t0_raw_us)
        prev[0] = t0_raw_us[0] if self._scan_raw_us is None else self._scan_raw_us
        prev[1:] = t0_raw_us[:-1]
        step = (t0_raw_us - prev) % _T_MOD
        step[step >= _T_HALF] -= _T_MOD
        rel = self._scan_rel_us + np.cumsum(step)
        newest = np.maximum.accumulate(np.maximum(rel, self._scan_max_us))
        behind = np.flatnonzero(rel < newest - self._restart_back_us)
        if len(behind):
            return int(behind[0])
        self._scan_raw_us = int(t0_raw_us[-1])
        self._scan_rel_us, self._scan_max_us = int(rel[-1]), int(newest[-1])
        return None

    def _restart(self, t0_raw_us: int) -> None:
        """Start a new segment at a packet with ``t0_raw_us``: fresh sequence state, time continued
        after a gap."""
        self._fold_fast()
        s = self._stats
        self._stats = DecoderStats(**{**_stats_dict(s), "restarts": s.restarts + 1})
        self._newest_seq = None
        self._first_seq = 0
        self._lost_seqs = set()
        if self._have_t0:
            self._t0_base_us = self._last_t0_us + self._last_span_us + self._restart_gap_us
        self._have_t0 = False
        self._scan_raw_us, self._scan_rel_us, self._scan_max_us = t0_raw_us, 0, 0

    # --- internals ------------------------------------------------------------------------------

    def _decode_fast(self, batch: list[bytes]) -> DecodedSamples | None:
        """The common live case in one compiled pass; ``None`` (state untouched) = not it.

        Applies when every packet of ``batch`` is accepted by the rules of the module docstring
        (one length, valid header and CRC, each sequence number a forward step from the previous
        one) and all carry the same rate and ranges. Gives exactly what the vectorised path gives
        (same float operations in the same order).
        """
        length = len(batch[0])
        n, rem = divmod(length - HEADER_BYTES - CRC_BYTES, SAMPLE_BYTES)
        if rem or not 1 <= n <= MAX_SAMPLES_PER_PACKET:
            return None
        if any(len(p) != length for p in batch):
            return None
        m = len(batch)
        buf = np.frombuffer(b"".join(batch), dtype=np.uint8)
        st = self._st
        first = not st[_ST_HAS_NEWEST]
        k = m * n
        t_s = np.empty(k)
        acc = np.empty((k, 3))
        gyr = np.empty((k, 3))
        jumps = np.empty((m, 2), dtype=np.int64)
        n_jumps = _fast_kernel(
            buf, m, length, n, _CRC_TABLE, _ACC_OK_CODES, _GYR_OK_CODES, st, t_s, acc, gyr, jumps
        )
        if n_jumps < 0:
            return None
        # accepted: the kernel updated the stream state in _st; the rest of it here
        if first:
            self._first_seq = int.from_bytes(batch[0][2:4], "little")
        lost = 0
        if n_jumps:
            for base, d in jumps[:n_jumps].tolist():
                self._lost_seqs.update(range(base + 1, base + d))
                lost += d - 1
        if self._lost_seqs:
            self._prune()
        self._fast_packets += m
        self._fast_lost += lost
        self._fast_gaps += n_jumps
        rate = float(int.from_bytes(batch[0][8:10], "little"))
        self._sample_rate_hz = rate
        self._last_span_us = round((n - 1) / rate * 1e6)
        return DecodedSamples(t_s, acc, gyr, rate)

    def _sequence(self, seq: _I8) -> tuple[_I8, int, int, int, int]:
        """Sequence bookkeeping for the valid packets; returns (accepted positions, dup, reord, lost, gaps)."""
        m = len(seq)
        if m == 0:
            return np.empty(0, dtype=np.int64), 0, 0, 0, 0
        start = 0
        if self._newest_seq is None:
            self._newest_seq = self._first_seq = int(seq[0])
            start = 1
        newest = self._newest_seq
        if m - start > _SMALL_BATCH:
            fast = self._sequence_in_order(seq, start, newest)
            if fast is not None:
                return fast
        accepted = list(range(start))
        dup = reord = lost = gaps = 0
        lost_seqs = self._lost_seqs
        seq_list: list[int] = seq.tolist()
        for pos in range(start, m):
            d = (seq_list[pos] - newest) % _SEQ_MOD
            if d == 0:
                dup += 1
            elif d < _SEQ_HALF:
                accepted.append(pos)
                if d > 1:
                    lost += d - 1
                    gaps += 1
                    lost_seqs.update(range(newest + 1, newest + d))
                newest += d
            else:
                u = newest - (_SEQ_MOD - d)
                if u in lost_seqs:
                    lost_seqs.discard(u)
                    lost -= 1
                    reord += 1
                elif u >= self._first_seq:
                    dup += 1
                else:
                    reord += 1
        self._newest_seq = newest
        self._prune()
        return np.asarray(accepted, dtype=np.int64), dup, reord, lost, gaps

    def _sequence_in_order(
        self, seq: _I8, start: int, newest: int
    ) -> tuple[_I8, int, int, int, int] | None:
        """Vectorised :meth:`_sequence` when every packet is newer than the previous one, else None."""
        m = len(seq)
        prev = np.empty(m - start, dtype=np.int64)
        prev[:1] = newest & 0xFFFF
        prev[1:] = seq[start:-1]
        step = (seq[start:] - prev) % _SEQ_MOD
        if not bool(np.all((step >= 1) & (step < _SEQ_HALF))):
            return None
        jumps = np.flatnonzero(step > 1)
        ends = newest + np.cumsum(step)
        for j in jumps:
            self._lost_seqs.update(range(int(ends[j] - step[j]) + 1, int(ends[j])))
        self._newest_seq = int(ends[-1])
        self._prune()
        lost = int(step[jumps].sum()) - len(jumps)
        return np.arange(m, dtype=np.int64), 0, 0, lost, len(jumps)

    def _prune(self) -> None:
        """Drop lost seqs that no later packet can match (older than newest - 2**15)."""
        assert self._newest_seq is not None
        floor = self._newest_seq - _SEQ_HALF
        if self._lost_seqs and min(self._lost_seqs) < floor:
            self._lost_seqs = {u for u in self._lost_seqs if u >= floor}

    def _unwrap_t0(self, t0_raw_us: _I8) -> _I8:
        """Unwrap the u32 microsecond counter of the accepted packets (signed modular steps)."""
        prev = np.empty_like(t0_raw_us)
        if not self._have_t0:  # first accepted packet of the stream (or after a restart)
            prev[0] = t0_raw_us[0]
            base = self._t0_base_us
            self._last_t0_us = int(t0_raw_us[0]) if base is None else base
            self._have_t0 = True
        else:
            prev[0] = self._last_t0_raw_us
        prev[1:] = t0_raw_us[:-1]
        step = (t0_raw_us - prev) % _T_MOD
        step[step >= _T_HALF] -= _T_MOD
        t0_us = self._last_t0_us + np.cumsum(step)
        self._last_t0_raw_us = int(t0_raw_us[-1])
        self._last_t0_us = int(t0_us[-1])
        return t0_us


def _stats_dict(s: DecoderStats) -> dict[str, int]:
    return {f: getattr(s, f) for f in DecoderStats.__dataclass_fields__}


def decode_one(
    packet: bytes | bytearray | memoryview,
) -> tuple[dict[str, Any], DecodedSamples] | None:
    """Decode a single packet without stream state (for inspection, tests and tools).

    Args:
        packet: one raw notification.

    Returns:
        ``(header, samples)`` where ``header`` holds ``version, packet_type, seq, t0_us,
        sample_rate_hz, acc_range_g, gyr_range_dps, n``, or ``None`` if the packet is rejected.
    """
    data = _as_bytes(packet)
    parsed = _parse([data])
    if parsed.code[0] != _OK:
        return None
    h = np.frombuffer(data[:HEADER_BYTES], dtype=_HEADER_DTYPE)[0]
    header = {name: int(h[name]) for name in _HEADER_DTYPE.names or ()}
    t_s, acc_mps2, gyr_dps, rate_hz = _to_samples(parsed, np.zeros(1, np.int64), parsed.t0_us)
    return header, DecodedSamples(t_s, acc_mps2, gyr_dps, rate_hz)
