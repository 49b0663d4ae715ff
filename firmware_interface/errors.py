"""Errors of the sensor interface. One root: :class:`ProtocolError`."""

from __future__ import annotations


class ProtocolError(Exception):
    """Root of every error raised by :mod:`firmware_interface`."""


class RecordingError(ProtocolError):
    """A recording file cannot be read (foreign, corrupt header, unsupported version).

    Attributes:
        path: the file.
        reason: what is wrong, in words.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class CommandError(ProtocolError):
    """A control command is malformed or has a value out of range."""

    def __init__(self, command: str, reason: str) -> None:
        self.command = command
        self.reason = reason
        super().__init__(f"control command {command}: {reason}")
