"""Mounting alignment against the simulator: any mounting (incl. upside down), 100-400 Hz.

The forward axis must be found within the first 10 s of running and stay put; its confidence is
reported in ``GaitAnalyzer.info``.
"""

from __future__ import annotations

import numpy as np
import pytest
from numpy.typing import NDArray

from dsp.analyzer import GaitAnalyzer
from simulators import Segment, SensorConfig, simulate_run

_UPSIDE_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # sensor <- body
_ON_SIDE = np.array([[0.0, 0.0, 1.0], [0.0, 1.0, 0.0], [-1.0, 0.0, 0.0]])  # body up = -sensor x


def _forward_error_deg(info: dict[str, object], mount: NDArray[np.float64]) -> float:
    """Angle between the estimated forward axis and the true one projected on the horizontal."""
    fwd = np.asarray(info["forward_axis_sensor"])
    up = np.asarray(info["up_axis_sensor"])
    tf = mount[:, 0] - (mount[:, 0] @ up) * up
    tf /= np.linalg.norm(tf)
    return float(np.degrees(np.arccos(np.clip(fwd @ tf, -1.0, 1.0))))


@pytest.mark.parametrize(
    ("seed", "fs", "mounting", "walk_first"),
    [
        (1, 100, _UPSIDE_DOWN, False),
        (2, 200, None, False),
        (3, 400, None, False),
        (4, 200, _ON_SIDE, True),
        (5, 400, _UPSIDE_DOWN, True),
        (7, 100, None, True),
    ],
)
def test_alignment_within_10_s_of_running(
    seed: int, fs: int, mounting: NDArray[np.float64] | None, walk_first: bool
) -> None:
    segs = [Segment.standing(3.0)]
    if walk_first:
        segs.append(Segment.walking(15.0))
    segs.append(Segment.running(40.0))
    run = simulate_run(
        1.0, seed, segments=segs, sensor=SensorConfig(sample_rate_hz=fs, mounting=mounting)
    )
    t, acc, gyr = run.samples
    t_run = next(s["start_s"] for s in run.metadata["segments"] if s["activity"] == "running")
    an = GaitAnalyzer(has_gyro=True, sample_rate_hz=float(fs))
    i10 = int(np.searchsorted(t, t_run + 10.0))
    for a in range(0, i10, 20):  # live-like packets
        an.push(t[a : min(a + 20, i10)], acc[a : min(a + 20, i10)], gyr[a : min(a + 20, i10)])
    info = an.info
    assert _forward_error_deg(info, run.mounting) < 5.0
    assert info["alignment_confidence"] > 0.3
    # kept: still right at the end of the run
    an.push(t[i10:], acc[i10:], gyr[i10:])
    assert _forward_error_deg(an.info, run.mounting) < 5.0
    # pelvis up (gravity) within the mean pelvic tilt (10 deg) + margin of the body z axis
    up = np.asarray(an.info["up_axis_sensor"])
    assert np.degrees(np.arccos(up @ run.mounting[:, 2])) < 14.0
