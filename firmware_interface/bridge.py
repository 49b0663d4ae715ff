"""Phone bridge protocol v1: MQTT topics, the binary raw-batch framing and the JSON messages.

The specification for phone-app developers is ``docs/bridge.md``; this module is its reference
implementation (encoders for the phone side, strict validators for the server side). Pure: no I/O.

Topics (``{runner}`` and ``{session}`` match :data:`ID_PATTERN`)::

    imu/{runner}/{session}/raw     phone -> server  binary raw batch (below), QoS 1
    imu/{runner}/{session}/status  phone -> server  JSON status (start / stop / info), QoS 1
    imu/{runner}/{session}/steps   server -> phone  JSON per-step metrics and the final summary
    imu/{runner}/{session}/alerts  server -> phone  JSON alerts, QoS 1
    imu/_server/{server}/stats     server -> ops    JSON counters (not readable by runners)

Raw batch (little-endian)::

    offset size field
    0      1    bridge protocol version (= 1)
    1      1    flags (= 0, reserved)
    2      2    count: packets in this batch, 1 .. MAX_BATCH_PACKETS
    4      4    batch_seq: u32, 0 for the first batch of a session, +1 per batch; a batch resent
                after a reconnect keeps its number
    8      ...  count x { u64 rx_time_us (phone receive time, us since the Unix epoch, UTC);
                          u16 length (1 .. 244); length bytes: the sensor notification as received }

The payload must end exactly after the last packet; at most :data:`MAX_RAW_PAYLOAD_BYTES`.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal

import numpy as np
import numpy.typing as npt

from dsp.types import ACTIVITY_NAMES, SIDE_NAMES, STEP_METRICS, Activity, Side
from firmware_interface.protocol import MAX_PACKET_BYTES

__all__ = [
    "BRIDGE_VERSION",
    "MAX_BATCH_PACKETS",
    "MAX_JSON_PAYLOAD_BYTES",
    "MAX_RAW_PAYLOAD_BYTES",
    "BridgeFormatError",
    "RawBatch",
    "Status",
    "TopicParts",
    "decode_json_message",
    "decode_raw_batch",
    "decode_status",
    "encode_alerts",
    "encode_raw_batch",
    "encode_status",
    "encode_steps",
    "encode_summary",
    "parse_topic",
    "server_stats_topic",
    "topic",
]

BRIDGE_VERSION: Final = 1
TOPIC_ROOT: Final = "imu"
SERVER_TOPIC_RUNNER: Final = "_server"
#: runner and session ids: 1..64 characters, letters, digits, ``_ . -``; not starting with ``_``
#: (``_server`` is reserved) nor ``.``.
ID_PATTERN: Final = re.compile(r"[A-Za-z0-9-][A-Za-z0-9_.-]{0,63}")
KINDS: Final = ("raw", "status", "steps", "alerts")
Kind = Literal["raw", "status", "steps", "alerts"]

RAW_HEADER: Final = struct.Struct("<BBHI")
PACKET_HEADER: Final = struct.Struct("<QH")
MAX_BATCH_PACKETS: Final = 1024
MAX_RAW_PAYLOAD_BYTES: Final = 65536
MAX_JSON_PAYLOAD_BYTES: Final = 8192

STATUS_TYPES: Final = ("start", "stop", "info")
BLE_STATES: Final = ("connected", "disconnected", "reconnecting")
#: status keys and their JSON types; ``x_*`` keys (vendor extensions) are allowed and ignored
_STATUS_FIELDS: Final[dict[str, tuple[type, ...]]] = {
    "v": (int,),
    "type": (str,),
    "time_utc_s": (int, float),
    "start_utc_s": (int, float),
    "battery_pct": (int, float),
    "ble": (str,),
    "device": (dict,),
    "app": (str,),
    "sample_rate_hz": (int, float),
}
_DEVICE_FIELDS: Final = ("name", "address", "firmware", "hardware", "serial")
_MAX_TEXT: Final = 128


class BridgeFormatError(ValueError):
    """A bridge payload or topic is invalid. ``reason`` is a short stable label for counters.

    Attributes:
        reason: label such as ``"too_large"``, ``"bad_version"``, ``"truncated"``.
        detail: one human-readable line.
    """

    def __init__(self, reason: str, detail: str) -> None:
        self.reason = reason
        self.detail = detail
        super().__init__(f"{reason}: {detail}")


# --- topics ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class TopicParts:
    runner: str
    session: str
    kind: Kind


def topic(runner: str, session: str, kind: Kind) -> str:
    """``imu/{runner}/{session}/{kind}``; raises :class:`BridgeFormatError` on a bad id."""
    for what, value in (("runner", runner), ("session", session)):
        if not ID_PATTERN.fullmatch(value):
            raise BridgeFormatError(
                "bad_topic", f"{what} id {value!r} does not match {ID_PATTERN.pattern}"
            )
    return f"{TOPIC_ROOT}/{runner}/{session}/{kind}"


def parse_topic(name: str) -> TopicParts:
    """Split and validate ``imu/{runner}/{session}/{kind}``."""
    parts = name.split("/")
    if len(parts) != 4 or parts[0] != TOPIC_ROOT or parts[3] not in KINDS:
        raise BridgeFormatError(
            "bad_topic", f"topic {name[:200]!r} is not imu/<runner>/<session>/<kind>"
        )
    runner, session, kind = parts[1], parts[2], parts[3]
    if not ID_PATTERN.fullmatch(runner) or not ID_PATTERN.fullmatch(session):
        raise BridgeFormatError("bad_topic", f"bad runner or session id in topic {name[:200]!r}")
    return TopicParts(runner, session, kind)  # type: ignore[arg-type]


def server_stats_topic(server_id: str) -> str:
    return f"{TOPIC_ROOT}/{SERVER_TOPIC_RUNNER}/{server_id}/stats"


# --- raw batches ----------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RawBatch:
    """One decoded raw message: sensor notifications with their phone receive times."""

    batch_seq: int
    rx_time_us: list[int]
    packets: list[bytes]


def encode_raw_batch(batch_seq: int, packets: Sequence[tuple[int, bytes]]) -> bytes:
    """Frame ``(rx_time_us, notification)`` pairs as one raw batch (phone side)."""
    if not 1 <= len(packets) <= MAX_BATCH_PACKETS:
        raise BridgeFormatError(
            "bad_count", f"a batch carries 1..{MAX_BATCH_PACKETS} packets, got {len(packets)}"
        )
    if not 0 <= batch_seq < 1 << 32:
        raise BridgeFormatError("bad_batch_seq", f"batch_seq {batch_seq} outside u32")
    parts = [RAW_HEADER.pack(BRIDGE_VERSION, 0, len(packets), batch_seq)]
    for rx_us, pkt in packets:
        if not 1 <= len(pkt) <= MAX_PACKET_BYTES:
            raise BridgeFormatError(
                "bad_packet_length", f"packet length {len(pkt)} outside 1..{MAX_PACKET_BYTES}"
            )
        parts.append(PACKET_HEADER.pack(rx_us, len(pkt)))
        parts.append(bytes(pkt))
    out = b"".join(parts)
    if len(out) > MAX_RAW_PAYLOAD_BYTES:
        raise BridgeFormatError("too_large", f"batch of {len(out)} bytes > {MAX_RAW_PAYLOAD_BYTES}")
    return out


def decode_raw_batch(payload: bytes) -> RawBatch:
    """Validate and split a raw batch (server side). Raises :class:`BridgeFormatError`.

    The packets themselves are not checked beyond their length: the sensor decoder counts their
    CRC, version and sequence problems like for any other source.
    """
    size = len(payload)
    if size > MAX_RAW_PAYLOAD_BYTES:
        raise BridgeFormatError("too_large", f"{size} bytes > {MAX_RAW_PAYLOAD_BYTES}")
    if size < RAW_HEADER.size:
        raise BridgeFormatError(
            "truncated", f"{size} bytes, shorter than the {RAW_HEADER.size}-byte header"
        )
    version, flags, count, batch_seq = RAW_HEADER.unpack_from(payload, 0)
    if version != BRIDGE_VERSION:
        raise BridgeFormatError(
            "bad_version", f"bridge protocol version {version}, expected {BRIDGE_VERSION}"
        )
    if flags != 0:
        raise BridgeFormatError("bad_flags", f"flags 0x{flags:02x}, expected 0")
    if not 1 <= count <= MAX_BATCH_PACKETS:
        raise BridgeFormatError("bad_count", f"count {count} outside 1..{MAX_BATCH_PACKETS}")
    off = RAW_HEADER.size
    rx: list[int] = []
    pkts: list[bytes] = []
    unpack = PACKET_HEADER.unpack_from
    hsize = PACKET_HEADER.size
    for i in range(count):
        if off + hsize > size:
            raise BridgeFormatError("truncated", f"packet {i} header past the end ({size} bytes)")
        rx_us, length = unpack(payload, off)
        off += hsize
        if not 1 <= length <= MAX_PACKET_BYTES:
            raise BridgeFormatError(
                "bad_packet_length", f"packet {i} length {length} outside 1..{MAX_PACKET_BYTES}"
            )
        end = off + length
        if end > size:
            raise BridgeFormatError("truncated", f"packet {i} body past the end ({size} bytes)")
        rx.append(rx_us)
        pkts.append(payload[off:end])
        off = end
    if off != size:
        raise BridgeFormatError("trailing_bytes", f"{size - off} bytes after the last packet")
    return RawBatch(batch_seq, rx, pkts)


# --- JSON messages --------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Status:
    """A validated status message (phone -> server)."""

    type: Literal["start", "stop", "info"]
    time_utc_s: float | None = None
    start_utc_s: float | None = None
    battery_pct: float | None = None
    ble: str | None = None
    device: Mapping[str, str] | None = None
    app: str | None = None
    sample_rate_hz: float | None = None

    def as_dict(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return {k: v for k, v in out.items() if v is not None}


def encode_status(status: Status) -> bytes:
    return json_bytes({"v": BRIDGE_VERSION, **status.as_dict()})


def json_bytes(obj: Mapping[str, Any]) -> bytes:
    """Compact JSON; NaN and infinities become ``null`` (JSON has no NaN)."""
    return json.dumps(_finite(obj), separators=(",", ":"), allow_nan=False).encode()


def _finite(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, Mapping):
        return {str(k): _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


def decode_json_message(
    payload: bytes, *, max_bytes: int = MAX_JSON_PAYLOAD_BYTES
) -> dict[str, Any]:
    """A JSON object of this protocol version; raises :class:`BridgeFormatError`."""
    if len(payload) > max_bytes:
        raise BridgeFormatError("too_large", f"{len(payload)} bytes > {max_bytes}")
    try:
        obj = json.loads(payload, parse_constant=_reject_constant)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BridgeFormatError("bad_json", str(exc)[:120]) from None
    if not isinstance(obj, dict):
        raise BridgeFormatError("bad_json", f"expected a JSON object, got {type(obj).__name__}")
    v = obj.get("v")
    if type(v) is not int or v != BRIDGE_VERSION:
        raise BridgeFormatError("bad_version", f"'v' is {v!r}, expected {BRIDGE_VERSION}")
    return obj


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def decode_status(payload: bytes) -> Status:
    """Validate a status message strictly (types, ranges, no unknown keys except ``x_*``)."""
    obj = decode_json_message(payload)
    for key, value in obj.items():
        if key.startswith("x_"):
            continue
        types = _STATUS_FIELDS.get(key)
        if types is None:
            raise BridgeFormatError("bad_status", f"unknown key {key[:40]!r}")
        if isinstance(value, bool) or not isinstance(value, types):
            raise BridgeFormatError(
                "bad_status", f"{key!r} has the wrong type {type(value).__name__}"
            )
        if isinstance(value, float) and not math.isfinite(value):
            raise BridgeFormatError("bad_status", f"{key!r} is not finite")
    kind = obj.get("type")
    if kind not in STATUS_TYPES:
        raise BridgeFormatError("bad_status", f"'type' is {kind!r}, expected one of {STATUS_TYPES}")
    battery = obj.get("battery_pct")
    if battery is not None and not 0 <= battery <= 100:
        raise BridgeFormatError("bad_status", f"battery_pct {battery} outside 0..100")
    ble = obj.get("ble")
    if ble is not None and ble not in BLE_STATES:
        raise BridgeFormatError("bad_status", f"'ble' is {ble!r}, expected one of {BLE_STATES}")
    for key in ("time_utc_s", "start_utc_s"):
        t = obj.get(key)
        if t is not None and not 0 <= t < 1e10:
            raise BridgeFormatError("bad_status", f"{key} {t} is not a Unix time in seconds")
    rate = obj.get("sample_rate_hz")
    if rate is not None and not 1 <= rate <= 10_000:
        raise BridgeFormatError("bad_status", f"sample_rate_hz {rate} out of range")
    app = obj.get("app")
    if app is not None and len(app) > _MAX_TEXT:
        raise BridgeFormatError("bad_status", f"'app' longer than {_MAX_TEXT} characters")
    device = obj.get("device")
    if device is not None:
        for k, val in device.items():
            if k not in _DEVICE_FIELDS or not isinstance(val, str) or len(val) > _MAX_TEXT:
                raise BridgeFormatError(
                    "bad_status", f"device.{k[:40]} is not one of {_DEVICE_FIELDS} as text"
                )
    return Status(
        type=kind,
        time_utc_s=_opt_float(obj.get("time_utc_s")),
        start_utc_s=_opt_float(obj.get("start_utc_s")),
        battery_pct=_opt_float(battery),
        ble=ble,
        device=dict(device) if device is not None else None,
        app=app,
        sample_rate_hz=_opt_float(rate),
    )


def _opt_float(v: Any) -> float | None:
    return None if v is None else float(v)


# --- server -> phone ------------------------------------------------------------------------
def step_dicts(steps: npt.NDArray[Any]) -> list[dict[str, Any]]:
    """Rows of ``STEP_DTYPE`` as JSON-ready dicts (NaN -> ``None``)."""
    out: list[dict[str, Any]] = []
    cols = {m: steps[m].tolist() for m in ("time_s", *STEP_METRICS)}
    sides = steps["side"].tolist()
    acts = steps["activity"].tolist()
    for i in range(len(steps)):
        d: dict[str, Any] = {
            "time_s": cols["time_s"][i],
            "side": SIDE_NAMES[Side(sides[i])],
            "activity": ACTIVITY_NAMES[Activity(acts[i])],
        }
        for m in STEP_METRICS:
            v = cols[m][i]
            d[m] = v if math.isfinite(v) else None
        out.append(d)
    return out


_SIDE_JSON: Final = {int(k): json.dumps(v) for k, v in SIDE_NAMES.items()}
_ACTIVITY_JSON: Final = {int(k): json.dumps(v) for k, v in ACTIVITY_NAMES.items()}
_METRIC_KEYS: Final = tuple(f',"{m}":' for m in STEP_METRICS)
_STEP_FIELDS: Final = ("time_s", "side", "activity", *STEP_METRICS)
_STEP_JSON: Final = (
    '{"time_s":%s,"side":%s,"activity":%s' + "".join(k + "%s" for k in _METRIC_KEYS) + "}"
)


def _json_float(v: float) -> str:
    return float.__repr__(v) if math.isfinite(v) else "null"  # as json.dumps writes a float


def encode_steps(steps: npt.NDArray[Any], *, batch_seq: int | None) -> bytes:
    """``steps`` message: the steps a raw batch completed. ``batch`` = that batch's number.

    Byte for byte ``json_bytes({"v", "type", "batch", "steps": step_dicts(steps)})``, written
    directly (the server encodes ~3,000 of these a second at 1,000 runners).
    """
    parts = [
        # v - v == 0 is False for inf and NaN: float.__repr__ (= repr) as json.dumps, else null
        _STEP_JSON
        % (
            repr(t) if t - t == 0 else "null",
            _SIDE_JSON[side],
            _ACTIVITY_JSON[act],
            *[repr(v) if v - v == 0 else "null" for v in vals],
        )
        for t, side, act, *vals in (
            steps.tolist()
            if steps.dtype.names == _STEP_FIELDS
            else steps[list(_STEP_FIELDS)].tolist()
        )
    ]
    batch = "null" if batch_seq is None else str(int(batch_seq))
    text = f'{{"v":{BRIDGE_VERSION},"type":"steps","batch":{batch},"steps":[{",".join(parts)}]}}'
    return text.encode()


ALERT_FIELDS: Final = (
    "time_s", "metric", "side", "level", "code", "active", "message", "value", "baseline", "deviation", "since_s",
)  # fmt: skip


def alert_dict(alert: Any) -> dict[str, Any]:
    """An :class:`imu.alerts.Alert` as a JSON-ready dict (the documented fields only)."""
    d: dict[str, Any] = {}
    for name in ALERT_FIELDS:
        v = getattr(alert, name, None)
        if isinstance(v, np.generic):
            v = v.item()
        d[name] = v
    return d


def encode_alerts(alerts: Sequence[Any], *, batch_seq: int | None) -> bytes:
    return json_bytes(
        {
            "v": BRIDGE_VERSION,
            "type": "alerts",
            "batch": batch_seq,
            "alerts": [alert_dict(a) for a in alerts],
        }
    )


def encode_summary(summary: Mapping[str, Any], bridge: Mapping[str, Any]) -> bytes:
    """Final ``summary`` message on the steps topic, sent once when the server closes a session."""
    return json_bytes(
        {
            "v": BRIDGE_VERSION,
            "type": "summary",
            "summary": _plain(summary),
            "bridge": _plain(bridge),
        }
    )


def _plain(obj: Any) -> Any:
    if isinstance(obj, Mapping):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _plain(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    return str(obj)
