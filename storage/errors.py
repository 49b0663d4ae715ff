"""Errors of the storage package. One root: :class:`StorageError`."""

from __future__ import annotations


class StorageError(Exception):
    """Root of every error raised by :mod:`storage`."""


class SessionNotFoundError(StorageError):
    def __init__(self, session: str) -> None:
        self.session = session
        super().__init__(f"no session {session!r} in the store")


class WriteRejectedError(StorageError):
    """The server refused a write for a reason that retrying will not fix (4xx other than 429)."""

    def __init__(self, status: int, body: str) -> None:
        self.status = status
        self.body = body
        super().__init__(f"write rejected with HTTP {status}: {body[:200]}")


class StorageUnavailableError(StorageError):
    """The server could not be reached after all retries."""

    def __init__(self, attempts: int, reason: str) -> None:
        self.attempts = attempts
        self.reason = reason
        super().__init__(f"store unreachable after {attempts} attempts: {reason}")
