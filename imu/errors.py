"""Errors of the application. One root: :class:`ImuError`."""

from __future__ import annotations


class ImuError(Exception):
    """Root of every error raised by :mod:`imu`."""


class InputError(ImuError):
    """An input file or argument cannot be used.

    Attributes:
        source: the file or argument at fault.
        reason: what is wrong, in one line.
    """

    def __init__(self, source: str, reason: str) -> None:
        self.source = source
        self.reason = reason
        super().__init__(f"{source}: {reason}")
