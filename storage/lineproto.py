"""Record -> InfluxDB line protocol (pure, no I/O).

One line per :class:`~storage.records.Record`::

    measurement,tag1=v1,tag2=v2 field1=1.5,field2=3i,field3="text",field4=true 1700000000000000000

Rules (line protocol as InfluxDB 1.x/2.x parse it; checked against InfluxDB 1.6 in the tests):

* measurement: ``,`` and space are escaped with a backslash;
* tag keys, tag values, field keys: ``,``, ``=`` and space are escaped;
* a backslash is literal (InfluxDB 1.x stores ``a\\b`` as is), except one right before ``,``/``=``/
  space or at the end, which is doubled so that it cannot escape the separator (InfluxDB then
  stores two backslashes: the one lossy case);
* newline, CR and tab in names/tags (not representable) are written as ``\\n``, ``\\r``, ``\\t``;
* string field values are double-quoted with ``"`` and ``\\`` escaped;
* ints get an ``i`` suffix, bools are ``true``/``false``, floats use the shortest round-trip repr;
* NaN/inf float fields are left out ("not computed"); a record left with no field is skipped
  (InfluxDB rejects a point without fields);
* tags with an empty value are left out (InfluxDB rejects them); tags are sorted by key (the order
  InfluxDB stores them in, so identical points give identical lines);
* for the measurements in :mod:`storage.schema`, fields declared as ``count`` are written as ints
  and ``bool`` fields as bools, so a value never changes type between writes (InfluxDB rejects a
  field type conflict with HTTP 400).
"""

from __future__ import annotations

import functools
import math
import numbers
import re
from collections.abc import Iterable

from storage.records import FieldValue, Record
from storage.schema import FIELDS

__all__ = ["encode_field", "record_to_line", "records_to_lines", "records_to_payload"]

_ESCAPE_MEASUREMENT = str.maketrans({",": r"\,", " ": r"\ ", "\n": r"\n", "\t": r"\t", "\r": r"\r"})
_ESCAPE_KEY = str.maketrans(
    {",": r"\,", " ": r"\ ", "=": r"\=", "\n": r"\n", "\t": r"\t", "\r": r"\r"}
)
# InfluxDB unescapes only "\," "\=" "\ " in names/tags; a backslash elsewhere is literal. A
# backslash right before such a character (or at the end) would escape it, so it is doubled.
_LONE_BACKSLASH_KEY = re.compile(r"\\(?=[,= ]|\Z)")
_LONE_BACKSLASH_MEASUREMENT = re.compile(r"\\(?=[, ]|\Z)")
_ESCAPE_STRING = str.maketrans({'"': r"\"", "\\": "\\\\"})

#: schema field kinds that force a type
_INT_UNITS = frozenset({"count"})
_BOOL_UNITS = frozenset({"bool"})
_SPECIAL_UNITS = _INT_UNITS | _BOOL_UNITS


@functools.lru_cache(maxsize=256)
def _escape_measurement(name: str) -> str:
    return _LONE_BACKSLASH_MEASUREMENT.sub(r"\\\\", name).translate(_ESCAPE_MEASUREMENT)


@functools.lru_cache(maxsize=4096)
def _escape_key(key: str) -> str:
    return _LONE_BACKSLASH_KEY.sub(r"\\\\", key).translate(_ESCAPE_KEY)


def encode_field(value: FieldValue, unit: str | None = None) -> str | None:
    """Line-protocol text of one field value, or ``None`` when the value is left out (NaN/inf).

    Args:
        value: the field value (numpy scalars are accepted).
        unit: the schema unit of the field; ``"count"`` forces an int, ``"bool"`` a bool.
    """
    if type(value) is float and unit not in _SPECIAL_UNITS:  # fast path: most fields
        return repr(value) if math.isfinite(value) else None
    if isinstance(value, str):
        return '"' + value.translate(_ESCAPE_STRING) + '"'
    if unit in _BOOL_UNITS or isinstance(value, bool):
        return "true" if bool(value) else "false"
    if isinstance(value, numbers.Integral):
        if unit is not None and unit not in _INT_UNITS:
            return repr(float(value))
        return f"{int(value)}i"
    if isinstance(value, numbers.Real):
        f = float(value)
        if not math.isfinite(f):
            return None
        if unit in _INT_UNITS:
            if not f.is_integer():
                return repr(f)  # a non-integral "count" is a caller bug; keep the value
            return f"{int(f)}i"
        return repr(f)
    raise TypeError(f"unsupported field value type {type(value).__name__}: {value!r}")


def record_to_line(record: Record) -> str | None:
    """One line (no trailing newline), or ``None`` if the record has no writable field."""
    units = FIELDS.get(record.measurement, {})
    parts: list[str] = []
    for key in sorted(record.fields):
        text = encode_field(record.fields[key], units.get(key))
        if text is not None:
            parts.append(f"{_escape_key(key)}={text}")
    if not parts:
        return None
    head = _series_key(record.measurement, tuple(sorted(record.tags.items())))
    return f"{head} {','.join(parts)} {int(record.time_ns)}"


@functools.lru_cache(maxsize=4096)
def _series_key(measurement: str, tags: tuple[tuple[str, str], ...]) -> str:
    """``measurement,tag=value,...`` (cached: a session has few distinct tag sets)."""
    return _escape_measurement(measurement) + "".join(
        f",{_escape_key(k)}={_escape_key(v)}" for k, v in tags if v != ""
    )


def records_to_lines(records: Iterable[Record]) -> list[str]:
    """Lines of the writable records, in order (records without fields are skipped)."""
    out: list[str] = []
    for r in records:
        line = record_to_line(r)
        if line is not None:
            out.append(line)
    return out


def records_to_payload(records: Iterable[Record]) -> bytes:
    """The HTTP body for ``/write`` (``precision=ns``): lines joined by ``\\n``, UTF-8."""
    return "\n".join(records_to_lines(records)).encode()
