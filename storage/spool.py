"""Durable on-disk spool of line-protocol batches (used while the server is unreachable).

Layout of a spool directory::

    000000000001-500.lp       one batch per file: <sequence>-<points>.lp, line protocol, '\\n'-separated
    000000000002-37.lp
    rejected.lp               batches the server refused (4xx), each after a '# ...' reason line
    .lock                     flock: one process per spool directory

A batch is written to ``<name>.tmp``, fsync'ed, renamed into place and the directory fsync'ed, so
after a crash a batch file is either complete or absent (leftover ``.tmp`` files are removed at
open). Files are never modified: they are replayed oldest first (by sequence number) and deleted
only after the server acknowledged them.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from storage.errors import StorageError

__all__ = ["Spool", "SpoolEntry", "SpoolError"]

_NAME = re.compile(r"^(\d{12})-(\d+)\.lp$")
REJECTED_FILE = "rejected.lp"


class SpoolError(StorageError):
    """The spool directory could not be used."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"spool {path}: {reason}")


@dataclass(frozen=True, slots=True, order=True)
class SpoolEntry:
    seq: int
    points: int
    path: Path


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class Spool:
    """Append-only FIFO of batches in a directory; thread-safe, one process per directory.

    Args:
        path: directory (created).
        fsync: fsync files and the directory (disable only in benchmarks of other things).
    """

    def __init__(self, path: str | Path, *, fsync: bool = True) -> None:
        self.path = Path(path)
        self._fsync = fsync
        self._lock = threading.Lock()
        try:
            self.path.mkdir(parents=True, exist_ok=True)
            self._lock_fd: int | None = os.open(self.path / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SpoolError(str(self.path), exc.strerror or str(exc)) from None
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(self._lock_fd)
            self._lock_fd = None
            raise SpoolError(str(self.path), "in use by another process") from None
        for tmp in self.path.glob("*.tmp"):
            tmp.unlink(missing_ok=True)
        self._entries: list[SpoolEntry] = sorted(self._scan())
        self._next_seq = (self._entries[-1].seq + 1) if self._entries else 1

    def _scan(self) -> list[SpoolEntry]:
        out = []
        for p in self.path.iterdir():
            m = _NAME.match(p.name)
            if m:
                out.append(SpoolEntry(int(m.group(1)), int(m.group(2)), p))
        return out

    # -- queue -----------------------------------------------------------------------------------
    def append(self, lines: list[str]) -> SpoolEntry:
        """Durably append one batch (returns when it is on disk)."""
        payload = "\n".join(lines).encode()
        with self._lock:
            seq = self._next_seq
            self._next_seq += 1
            name = f"{seq:012d}-{len(lines)}.lp"
            final = self.path / name
            tmp = self.path / (name + ".tmp")
            try:
                with open(tmp, "wb") as f:
                    f.write(payload)
                    if self._fsync:
                        f.flush()
                        os.fsync(f.fileno())
                os.replace(tmp, final)
                if self._fsync:
                    _fsync_dir(self.path)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    tmp.unlink()
                raise SpoolError(str(self.path), exc.strerror or str(exc)) from None
            entry = SpoolEntry(seq, len(lines), final)
            self._entries.append(entry)
            return entry

    def peek(self, max_points: int | None = None) -> list[SpoolEntry]:
        """The oldest entries, as many as fit in ``max_points`` (at least one if any)."""
        with self._lock:
            out: list[SpoolEntry] = []
            n = 0
            for e in self._entries:
                if out and max_points is not None and n + e.points > max_points:
                    break
                out.append(e)
                n += e.points
            return out

    @staticmethod
    def read(entry: SpoolEntry) -> list[str]:
        text = entry.path.read_text()
        return [ln for ln in text.split("\n") if ln]

    def remove(self, entries: list[SpoolEntry]) -> None:
        """Delete acknowledged entries (they must be the oldest ones)."""
        with self._lock:
            gone = {e.seq for e in entries}
            for e in entries:
                e.path.unlink(missing_ok=True)
            self._entries = [e for e in self._entries if e.seq not in gone]
            if self._fsync and entries:
                _fsync_dir(self.path)

    @property
    def pending_points(self) -> int:
        with self._lock:
            return sum(e.points for e in self._entries)

    @property
    def pending_batches(self) -> int:
        with self._lock:
            return len(self._entries)

    def __len__(self) -> int:
        return self.pending_batches

    # -- rejected --------------------------------------------------------------------------------
    def reject(self, lines: list[str], reason: str) -> None:
        """Append a refused batch to ``rejected.lp`` after a ``# <UTC time> <reason>`` line."""
        stamp = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        reason = " ".join(reason.split())  # one line
        text = f"# {stamp} {reason}\n" + "".join(ln + "\n" for ln in lines)
        with self._lock:
            try:
                with open(self.path / REJECTED_FILE, "ab") as f:
                    f.write(text.encode())
                    if self._fsync:
                        f.flush()
                        os.fsync(f.fileno())
            except OSError as exc:
                raise SpoolError(str(self.path), exc.strerror or str(exc)) from None

    @property
    def rejected_path(self) -> Path:
        return self.path / REJECTED_FILE

    def close(self) -> None:
        with self._lock:
            if self._lock_fd is not None:
                os.close(self._lock_fd)  # releases the flock
                self._lock_fd = None

    def __enter__(self) -> Spool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Spool({str(self.path)!r}, batches={self.pending_batches})"
