"""DSP arrays -> :class:`~storage.records.Record` (pure, no I/O).

Timestamps: a step/event at sensor time ``time_s`` (seconds on the session's sensor clock) is stored
at ``start_utc_ns + round(time_s * 1e9)`` where ``start_utc_ns`` is the UTC time of sensor time 0.
The same step of the same session therefore always maps to the same point (same tags + time), which
is what makes writes idempotent in the embedded store and in InfluxDB.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np
from numpy.typing import NDArray

from dsp.types import (
    ACTIVITY_NAMES,
    EVENT_DTYPE,
    EVENT_NAMES,
    SIDE_NAMES,
    STEP_DTYPE,
    STEP_METRICS,
    Activity,
    EventKind,
    Side,
)
from storage.records import FieldValue, Record
from storage.schema import (
    MEASUREMENT_EVENTS,
    MEASUREMENT_SESSIONS,
    MEASUREMENT_STEPS,
)

__all__ = [
    "ACTIVITY_CODES",
    "EVENT_CODES",
    "SIDE_CODES",
    "event_records",
    "sensor_time_to_ns",
    "session_record",
    "step_records",
]

SIDE_CODES: dict[str, int] = {name: int(code) for code, name in SIDE_NAMES.items()}
ACTIVITY_CODES: dict[str, int] = {name: int(code) for code, name in ACTIVITY_NAMES.items()}
EVENT_CODES: dict[str, int] = {name: int(code) for code, name in EVENT_NAMES.items()}


def sensor_time_to_ns(start_utc_ns: int, time_s: float) -> int:
    """UTC ns of a sensor-clock time (rounded to the nanosecond)."""
    return int(start_utc_ns) + round(float(time_s) * 1e9)


def _base_tags(runner: str, session: str, device: str) -> dict[str, str]:
    return {"runner": runner, "session": session, "device": device}


def step_records(
    steps: NDArray[np.void],
    *,
    start_utc_ns: int,
    runner: str,
    session: str,
    device: str = "",
) -> list[Record]:
    """One ``steps`` record per row of a ``STEP_DTYPE`` array."""
    if steps.dtype != STEP_DTYPE:
        raise TypeError(f"expected STEP_DTYPE, got {steps.dtype}")
    base = _base_tags(runner, session, device)
    out: list[Record] = []
    for row in steps.tolist():
        values = dict(zip(STEP_DTYPE.names or (), row, strict=True))
        tags = dict(base)
        tags["side"] = SIDE_NAMES.get(Side(values["side"]), "unknown")
        tags["activity"] = ACTIVITY_NAMES.get(Activity(values["activity"]), "unknown")
        fields: dict[str, FieldValue] = {"sensor_time_s": float(values["time_s"])}
        for name in STEP_METRICS:
            fields[name] = float(values[name])
        out.append(
            Record(
                MEASUREMENT_STEPS,
                sensor_time_to_ns(start_utc_ns, values["time_s"]),
                tags,
                fields,
            )
        )
    return out


def event_records(
    events: NDArray[np.void],
    *,
    start_utc_ns: int,
    runner: str,
    session: str,
    device: str = "",
) -> list[Record]:
    """One ``events`` record per row of an ``EVENT_DTYPE`` array."""
    if events.dtype != EVENT_DTYPE:
        raise TypeError(f"expected EVENT_DTYPE, got {events.dtype}")
    base = _base_tags(runner, session, device)
    out: list[Record] = []
    for time_s, kind, side in events.tolist():
        tags = dict(base)
        tags["side"] = SIDE_NAMES.get(Side(side), "unknown")
        tags["event"] = EVENT_NAMES[EventKind(kind)]
        out.append(
            Record(
                MEASUREMENT_EVENTS,
                sensor_time_to_ns(start_utc_ns, time_s),
                tags,
                {"sensor_time_s": float(time_s)},
            )
        )
    return out


def session_record(
    *,
    start_utc_ns: int,
    runner: str,
    session: str,
    device: str = "",
    source: str = "",
    fields: Mapping[str, FieldValue] | None = None,
) -> Record:
    """The ``sessions`` record of a session, timestamped at its start.

    Write it once at the start (``fields`` may hold only ``start_utc_s``) and again at the end with
    the totals: same tags + time, so it is an upsert (fields merge, later values win).
    """
    f: dict[str, FieldValue] = {"start_utc_s": start_utc_ns / 1e9}
    if fields:
        f.update({k: v for k, v in fields.items() if not _is_nan(v)})
    tags = _base_tags(runner, session, device)
    tags["source"] = source
    return Record(MEASUREMENT_SESSIONS, int(start_utc_ns), tags, f)


def _is_nan(v: FieldValue) -> bool:
    return isinstance(v, float) and math.isnan(v)
