"""Recording files (``.rec``): raw wire packets with host receive times and session metadata.

Layout (all integers little-endian; full specification in ``docs/protocol.md``)::

    file header
      8 bytes   magic            b"IMUREC\\x00\\x01"
      u16       format version   (= 1)
      u16       flags            (= 0, reserved)
      u32       metadata length  L (bytes)
      L bytes   metadata         UTF-8 JSON object
      u32       CRC32            over format version .. metadata
    records, repeated until end of file
      u8        record type      1 = packet, 2 = event
      f64       rx_time_s        host receive time, seconds since the unix epoch
      u32       payload length   P (bytes)
      P bytes   payload          packet: the notification bytes as received;
                                 event: UTF-8 JSON object with a "type" key
      u32       CRC32            over record type .. payload

The file is append-only and every record is written with a single unbuffered ``write``, so a
crash loses at most the record being written. A reader stops at the first incomplete or corrupt
record and reports it in :attr:`RecordingReader.truncated`. Records of an unknown type with a
valid CRC are skipped (room for later record types without a format version bump).
"""

from __future__ import annotations

import json
import os
import struct
import time
import zlib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from enum import IntEnum
from pathlib import Path
from types import TracebackType
from typing import Any, BinaryIO

import numpy as np
import numpy.typing as npt

from firmware_interface.errors import RecordingError

__all__ = [
    "FORMAT_VERSION",
    "MAGIC",
    "Record",
    "RecordType",
    "RecordingReader",
    "RecordingWriter",
]

MAGIC = b"IMUREC\x00\x01"
FORMAT_VERSION = 1
MAX_PAYLOAD_BYTES = 1 << 20  # a longer record length is treated as corruption

_FILE_HEADER = struct.Struct("<HHI")  # format version, flags, metadata length
_RECORD_HEADER = struct.Struct("<BdI")  # record type, rx_time_s, payload length
_CRC = struct.Struct("<I")


class RecordType(IntEnum):
    """First byte of a record."""

    PACKET = 1
    EVENT = 2


@dataclass(frozen=True, slots=True)
class Record:
    """One record of a recording.

    Attributes:
        kind: packet or event.
        rx_time_s: host receive time, seconds since the unix epoch.
        payload: packet bytes as received, or the UTF-8 JSON text of an event.
    """

    kind: RecordType
    rx_time_s: float
    payload: bytes

    @property
    def event(self) -> dict[str, Any]:
        """The event as a dict (only for ``kind == RecordType.EVENT``)."""
        if self.kind is not RecordType.EVENT:
            raise ValueError("not an event record")
        try:
            value = json.loads(self.payload)
        except (UnicodeDecodeError, json.JSONDecodeError):
            value = None
        if isinstance(value, dict):
            return value
        return {"type": "invalid", "text": self.payload.decode("utf-8", "replace")}


def _pack_record(kind: RecordType, rx_time_s: float, payload: bytes) -> bytes:
    head = _RECORD_HEADER.pack(kind, rx_time_s, len(payload))
    return head + payload + _CRC.pack(zlib.crc32(payload, zlib.crc32(head)))


class RecordingWriter:
    """Append-only writer of a ``.rec`` file; use as a context manager.

    Every record goes to the OS in one unbuffered write (a process crash loses at most the record
    being written); :meth:`close` also fsyncs. On close an ``{"type": "end"}`` event is appended
    unless one was written, so a reader can tell a clean end from a crash.

    Args:
        path: file to create.
        metadata: session metadata, any JSON object (e.g. device address, firmware, config).
        overwrite: replace an existing file instead of raising.

    Raises:
        RecordingError: the file exists and ``overwrite`` is false, or it cannot be created.
        TypeError: ``metadata`` is not JSON-serialisable.
    """

    def __init__(
        self, path: str | os.PathLike[str], metadata: Mapping[str, Any], *, overwrite: bool = False
    ) -> None:
        self.path = Path(path)
        meta = json.dumps(dict(metadata), separators=(",", ":"), allow_nan=False).encode()
        fixed = _FILE_HEADER.pack(FORMAT_VERSION, 0, len(meta))
        header = MAGIC + fixed + meta + _CRC.pack(zlib.crc32(meta, zlib.crc32(fixed)))
        try:
            self._file: BinaryIO | None = open(  # noqa: SIM115 (closed in close())
                self.path, "wb" if overwrite else "xb", buffering=0
            )
        except FileExistsError:
            raise RecordingError(str(path), "file exists (pass overwrite=True)") from None
        except OSError as exc:
            raise RecordingError(str(path), f"cannot create: {exc.strerror or exc}") from exc
        self._ended = False
        self._last_rx_time_s = float("-inf")
        self._file.write(header)

    def write_packet(self, rx_time_s: float, payload: bytes | bytearray | memoryview) -> None:
        """Append one wire packet exactly as received.

        Args:
            rx_time_s: host receive time, seconds since the unix epoch.
            payload: the notification bytes.
        """
        self._write(RecordType.PACKET, rx_time_s, bytes(payload))

    def write_event(self, rx_time_s: float, event: Mapping[str, Any]) -> None:
        """Append a session event.

        Args:
            rx_time_s: host time of the event, seconds since the unix epoch.
            event: JSON object with a ``"type"`` key; conventional types are ``"gap"``,
                ``"reconnect"``, ``"note"`` and ``"end"``.

        Raises:
            ValueError: ``event`` has no string ``"type"``.
            TypeError: ``event`` is not JSON-serialisable.
        """
        if not isinstance(event.get("type"), str):
            raise ValueError("an event needs a string 'type' key")
        text = json.dumps(dict(event), separators=(",", ":"), allow_nan=False).encode()
        self._write(RecordType.EVENT, rx_time_s, text)
        if event["type"] == "end":
            self._ended = True

    def _write(self, kind: RecordType, rx_time_s: float, payload: bytes) -> None:
        if self._file is None:
            raise ValueError(f"recording {self.path} is closed")
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"record payload of {len(payload)} bytes > {MAX_PAYLOAD_BYTES}")
        self._file.write(_pack_record(kind, float(rx_time_s), payload))
        self._last_rx_time_s = max(self._last_rx_time_s, float(rx_time_s))

    def close(self) -> None:
        """Append the end event (if not written yet), fsync and close. Idempotent."""
        if self._file is None:
            return
        try:
            if not self._ended:
                self.write_event(max(time.time(), self._last_rx_time_s), {"type": "end"})
            os.fsync(self._file.fileno())
        finally:
            self._file.close()
            self._file = None

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


class RecordingReader:
    """Reader of a ``.rec`` file; the header is validated on construction.

    Args:
        path: the recording.

    Raises:
        RecordingError: missing, empty, foreign (wrong magic), unsupported format version, or a
            corrupt header.

    Attributes:
        path: the recording.
        metadata: the session metadata written by :class:`RecordingWriter`.
        format_version: format version of the file.
        truncated: set by a full read when the file ends mid-record or a record fails its CRC
            (reading stopped there; everything before it was returned).
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.truncated = False
        name = str(path)
        try:
            with open(self.path, "rb") as f:
                start = f.read(len(MAGIC) + _FILE_HEADER.size)
                if not start:
                    raise RecordingError(name, "empty file, not a recording")
                if start[: len(MAGIC)] != MAGIC[: len(start)]:
                    raise RecordingError(name, "not an IMU recording (wrong magic bytes)")
                if len(start) < len(MAGIC) + _FILE_HEADER.size:
                    raise RecordingError(name, "recording header is truncated")
                fixed = start[len(MAGIC) :]
                version, _flags, meta_len = _FILE_HEADER.unpack(fixed)
                if version != FORMAT_VERSION:
                    raise RecordingError(
                        name,
                        f"unsupported recording format version {version} "
                        f"(this reader supports {FORMAT_VERSION})",
                    )
                rest = f.read(meta_len + _CRC.size)
        except OSError as exc:
            raise RecordingError(name, f"cannot open: {exc.strerror or exc}") from exc
        if len(rest) < meta_len + _CRC.size:
            raise RecordingError(name, "recording header is truncated")
        meta, (crc,) = rest[:meta_len], _CRC.unpack(rest[meta_len:])
        if zlib.crc32(meta, zlib.crc32(fixed)) != crc:
            raise RecordingError(name, "recording header is corrupt (CRC mismatch)")
        try:
            metadata = json.loads(meta)
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise RecordingError(name, "recording metadata is not valid JSON") from None
        if not isinstance(metadata, dict):
            raise RecordingError(name, "recording metadata is not a JSON object")
        self.metadata: dict[str, Any] = metadata
        self.format_version: int = version
        self._data_offset = len(MAGIC) + _FILE_HEADER.size + meta_len + _CRC.size

    def records(self) -> Iterator[Record]:
        """Iterate over the records in file order, stopping at the first bad one.

        Sets :attr:`truncated` when the file ends mid-record or a record fails its CRC.

        Raises:
            RecordingError: the file disappeared or cannot be read.
        """
        self.truncated = False
        try:
            with open(self.path, "rb") as f:
                f.seek(self._data_offset)
                yield from self._iter_records(f)
        except OSError as exc:
            raise RecordingError(str(self.path), f"cannot read: {exc.strerror or exc}") from exc

    def _iter_records(self, f: BinaryIO) -> Iterator[Record]:
        while True:
            head = f.read(_RECORD_HEADER.size)
            if not head:
                return
            if len(head) < _RECORD_HEADER.size:
                self.truncated = True
                return
            kind, rx_time_s, length = _RECORD_HEADER.unpack(head)
            if length > MAX_PAYLOAD_BYTES:
                self.truncated = True
                return
            body = f.read(length + _CRC.size)
            if len(body) < length + _CRC.size:
                self.truncated = True
                return
            payload = body[:length]
            if zlib.crc32(payload, zlib.crc32(head)) != _CRC.unpack(body[length:])[0]:
                self.truncated = True
                return
            if kind in (RecordType.PACKET, RecordType.EVENT):
                yield Record(RecordType(kind), rx_time_s, payload)

    def packets(self) -> tuple[npt.NDArray[np.float64], list[bytes]]:
        """All packet records.

        Returns:
            ``(rx_time_s, payloads)``: host receive times (float64, seconds since the unix epoch)
            and the packet bytes, in file order.
        """
        times: list[float] = []
        payloads: list[bytes] = []
        for rec in self.records():
            if rec.kind is RecordType.PACKET:
                times.append(rec.rx_time_s)
                payloads.append(rec.payload)
        return np.asarray(times, dtype=np.float64), payloads

    def events(self) -> list[tuple[float, dict[str, Any]]]:
        """All event records as ``(rx_time_s, event)``, in file order."""
        return [(r.rx_time_s, r.event) for r in self.records() if r.kind is RecordType.EVENT]

    def __repr__(self) -> str:
        return f"RecordingReader({str(self.path)!r}, format_version={self.format_version})"
