"""Shared value types of the DSP: record dtypes, side/event/bout codes and frame names.

Body frame (pelvis), right-handed, used everywhere after alignment:

* ``ap``  anteroposterior, +forward (x)
* ``ml``  mediolateral,    +left    (y)   (runner's own left)
* ``v``   vertical,        +up      (z)

Angles of the pelvis (degrees):

* obliquity = asin(up-component of the pelvis ML (+left) axis): positive = left side higher
  (right side dropped).
* tilt      = asin(-(up-component of the pelvis AP axis)): positive = anterior tilt.
* rotation  = yaw of the AP axis about vertical relative to the running heading.
"""

from __future__ import annotations

from enum import IntEnum

import numpy as np


class Side(IntEnum):
    """Foot in contact during a step (runner's point of view)."""

    UNKNOWN = 0
    LEFT = 1
    RIGHT = 2


SIDE_NAMES = {Side.UNKNOWN: "unknown", Side.LEFT: "left", Side.RIGHT: "right"}


class EventKind(IntEnum):
    INITIAL_CONTACT = 0
    TOE_OFF = 1


EVENT_NAMES = {EventKind.INITIAL_CONTACT: "initial_contact", EventKind.TOE_OFF: "toe_off"}


class Activity(IntEnum):
    """Gait-bout class of a stretch of samples."""

    STANDING = 0
    WALKING = 1
    RUNNING = 2


ACTIVITY_NAMES = {
    Activity.STANDING: "standing",
    Activity.WALKING: "walking",
    Activity.RUNNING: "running",
}

#: One gait event. ``time_s`` is on the session's sensor clock (s since the first sample).
EVENT_DTYPE = np.dtype([("time_s", "f8"), ("kind", "i1"), ("side", "i1")])

#: Per-step metrics, a step = one initial contact to the next. NaN = cannot be computed.
STEP_DTYPE = np.dtype(
    [
        ("time_s", "f8"),  # initial contact of this step
        ("side", "i1"),  # Side of the foot in contact
        ("activity", "i1"),  # Activity (walking / running)
        ("cadence_spm", "f8"),
        ("contact_time_s", "f8"),
        ("flight_time_s", "f8"),
        ("vertical_oscillation_m", "f8"),
        ("pelvic_drop_deg", "f8"),
        ("pelvic_rotation_deg", "f8"),
        ("pelvic_tilt_deg", "f8"),
        ("braking_mps2", "f8"),
    ]
)

#: Columns of steps.csv (public contract of ``imu analyze``; order is fixed).
STEPS_CSV_COLUMNS = (
    "time_s",
    "side",
    "cadence_spm",
    "contact_time_s",
    "flight_time_s",
    "vertical_oscillation_m",
    "pelvic_drop_deg",
    "pelvic_rotation_deg",
    "pelvic_tilt_deg",
)

#: Per-step metric fields (the float columns of STEP_DTYPE).
STEP_METRICS = (
    "cadence_spm",
    "contact_time_s",
    "flight_time_s",
    "vertical_oscillation_m",
    "pelvic_drop_deg",
    "pelvic_rotation_deg",
    "pelvic_tilt_deg",
    "braking_mps2",
)
