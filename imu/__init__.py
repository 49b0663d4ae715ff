"""Running-form monitor: pipeline, sessions, CLI (``imu``)."""

from imu.errors import ImuError, InputError

__all__ = ["ImuError", "InputError"]
