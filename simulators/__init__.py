"""Simulated runner + sacrum IMU: the ground truth of every accuracy figure of the project.

One call::

    run = simulate_run(2.0, seed=7)
    run.packets        # [(host_rx_time_s, packet_bytes)] in arrival order (protocol v1)
    t, acc, gyr = run.samples        # quantised sensor-frame output, sensor clock
    run.truth_events, run.truth_steps  # EVENT_DTYPE / STEP_DTYPE, sensor clock

Same seed (and arguments) -> byte-identical packets.  The runner motion, the mounting and the
sensor errors use independent random streams, so changing the sensor configuration does not
change the motion or its truth.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dsp.types import Activity
from simulators.runner import (
    FatigueProfile,
    MotionState,
    RunnerMotion,
    RunnerProfile,
    Segment,
    WalkProfile,
    build_motion,
    default_segments,
)
from simulators.sensor import (
    LinkStats,
    SensorConfig,
    SensorSamples,
    mounting_matrix,
    packetize,
    random_mounting,
    sample_motion,
)

__all__ = [
    "FatigueProfile",
    "LinkStats",
    "MotionState",
    "RunnerMotion",
    "RunnerProfile",
    "Segment",
    "SensorConfig",
    "SensorSamples",
    "SimulatedRun",
    "WalkProfile",
    "default_profile",
    "default_segments",
    "random_mounting",
    "simulate_run",
]


@dataclass
class SimulatedRun:
    """Everything a simulated session produces. Times are on the sensor clock."""

    packets: list[tuple[float, bytes]]
    samples: SensorSamples
    truth_events: npt.NDArray[np.void]
    truth_steps: npt.NDArray[np.void]
    metadata: dict[str, Any]
    motion: RunnerMotion = field(repr=False)
    mounting: npt.NDArray[np.float64] = field(repr=False)  # sensor <- body
    sensor: SensorConfig = field(repr=False)
    #: true (host) time of each sample; ``motion.evaluate(t_true_s)`` gives its exact kinematics
    t_true_s: npt.NDArray[np.float64] = field(repr=False)


def default_profile(total_s: float) -> RunnerProfile:
    """The default runner with mild fatigue from the middle of the running part."""
    segs = default_segments(total_s)
    run_start = sum(s.duration_s for s in segs[:-1])
    onset_min = (run_start + 0.5 * segs[-1].duration_s) / 60.0
    return RunnerProfile(
        fatigue=FatigueProfile(
            onset_min=onset_min,
            pelvic_drop_left_deg_per_min=0.06,
            pelvic_drop_right_deg_per_min=0.04,
            contact_time_s_per_min=0.0005,
            cadence_spm_per_min=-0.15,
            vertical_oscillation_m_per_min=0.0001,
            max_drift_min=60.0,
        )
    )


def simulate_run(
    minutes: float,
    seed: int,
    *,
    profile: RunnerProfile | None = None,
    segments: list[Segment] | None = None,
    sensor: SensorConfig | None = None,
    truth_rate_hz: float = 1000.0,
) -> SimulatedRun:
    """Simulate a session of ``minutes`` minutes.

    Args:
        minutes: session length; ``segments`` are laid out from t = 0, the last one stretched or
            the list truncated to fit.
        seed: drives everything (runner, mounting, sensor errors unless ``sensor.seed`` is set).
        profile: the runner; default: :func:`default_profile` (mild fatigue in the second half).
        segments: the session; default: ~20 s standing, ~30 s walking, running for the rest.
        sensor: sensor and link model; default ``SensorConfig()`` with a random mounting.
        truth_rate_hz: fine grid of the truth metrics (extrema at 1 kHz are exact to ~1e-5 deg).
    """
    total_s = float(minutes) * 60.0
    if not (math.isfinite(total_s) and total_s > 0):
        raise ValueError(f"minutes must be > 0, got {minutes}")
    sensor = sensor or SensorConfig()
    root = np.random.SeedSequence(seed)
    runner_ss, mount_ss, sensor_ss = root.spawn(3)
    if sensor.seed is not None:
        sensor_ss = np.random.SeedSequence(sensor.seed).spawn(1)[0]
    if profile is None:
        profile = default_profile(total_s)
    motion = build_motion(profile, segments, total_s, np.random.default_rng(runner_ss))
    if sensor.mounting is None:
        mounting = random_mounting(np.random.default_rng(mount_ss))
    else:
        mounting = mounting_matrix(sensor.mounting)
    r_sample, r_link = np.random.default_rng(sensor_ss).spawn(2)
    sampled = sample_motion(motion, sensor, mounting, r_sample)
    packets, link = packetize(sampled, sensor, r_link)
    events, steps = motion.truth(rate_hz=truth_rate_hz)
    # truth on the sensor clock
    scale = sensor.clock_scale
    events["time_s"] = sensor.to_sensor_clock(events["time_s"])
    steps["time_s"] = sensor.to_sensor_clock(steps["time_s"])
    steps["contact_time_s"] *= scale
    steps["flight_time_s"] *= scale
    steps["cadence_spm"] /= scale
    metadata: dict[str, Any] = {
        "seed": seed,
        "minutes": float(minutes),
        "profile": _finite(dataclasses.asdict(profile)),
        "segments": [
            {
                "activity": Activity(seg.activity).name.lower(),
                "start_s": start,
                "end_s": end,
                "speed_mps": seg.speed_mps,
                "cadence_spm": seg.cadence_spm,
            }
            for start, end, seg in motion.layout
        ],
        "sensor": _finite({k: v for k, v in dataclasses.asdict(sensor).items() if k != "mounting"}),
        "mounting_sensor_from_body": mounting.tolist(),
        "sample_rate_hz": sensor.sample_rate_hz,
        "samples": int(sampled.t_true_s.size),
        "acc_bias_mps2": sampled.acc_bias_mps2.tolist(),
        "gyr_bias_dps": sampled.gyr_bias_dps.tolist(),
        "link": dataclasses.asdict(link),
        "truth_rate_hz": truth_rate_hz,
        "truth_steps": int(steps.size),
        "motion_stats": dict(motion.stats),
    }
    return SimulatedRun(
        packets=packets,
        samples=sampled.samples,
        truth_events=events,
        truth_steps=steps,
        metadata=metadata,
        motion=motion,
        mounting=mounting,
        sensor=sensor,
        t_true_s=sampled.t_true_s,
    )


def _finite(obj: Any) -> Any:
    """JSON-safe metadata: infinite floats -> None."""
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    return obj
