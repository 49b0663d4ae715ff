"""The storage data model: every result is a :class:`Record` (InfluxDB's point model).

The embedded store and the InfluxDB sinks write exactly these, so both hold the same schema
(measurements, tags, fields: ``docs/storage.md`` and :mod:`storage.schema`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

FieldValue = float | int | str | bool


@dataclass(frozen=True, slots=True)
class Record:
    """One point.

    Attributes:
        measurement: ``steps``, ``events``, ``alerts`` or ``sessions`` (see :mod:`storage.schema`).
        time_ns: UTC timestamp in nanoseconds (sensor clock mapped to UTC).
        tags: indexed string dimensions (runner, session, side, ...).
        fields: values; a NaN float means "not computed" and is left out on write.
    """

    measurement: str
    time_ns: int
    tags: Mapping[str, str] = field(default_factory=dict)
    fields: Mapping[str, FieldValue] = field(default_factory=dict)


class Sink(Protocol):
    """Anything results are written to. ``write`` must not block for long; ``close`` drains."""

    def write(self, records: Sequence[Record]) -> None: ...

    def close(self) -> None: ...
