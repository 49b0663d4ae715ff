"""Errors of the DSP package. One root: :class:`DspError`. Kernels never raise; wrappers do."""

from __future__ import annotations


class DspError(Exception):
    """Root of every error raised by :mod:`dsp`."""


class InputValidationError(DspError):
    """Input arrays have the wrong shape, dtype, units or values.

    Attributes:
        what: the argument or column at fault.
        reason: what is wrong with it.
    """

    def __init__(self, what: str, reason: str) -> None:
        self.what = what
        self.reason = reason
        super().__init__(f"{what}: {reason}")


class DiscontinuityError(DspError):
    """A stream was pushed a block that does not follow the previous one."""

    def __init__(self, expected_index: int, got_index: int) -> None:
        self.expected_index = expected_index
        self.got_index = got_index
        super().__init__(f"expected block starting at sample {expected_index}, got {got_index}")
