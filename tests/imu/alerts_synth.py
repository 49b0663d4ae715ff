"""Synthetic per-step series (STEP_DTYPE) for alert tests: a runner model with pace, walking
breaks, stops and fatigue ramps, with realistic step-to-step noise.

Pace model (per m/s faster): step time -16 ms, contact time -23 ms (within-runner regression on
Alcantara et al. 2021), vertical oscillation -4 mm, pelvic drop +0.3 deg. Noise per step: cadence
SD ~2 spm, contact time SD 6 ms, drop SD 0.7 deg, VO SD 3 mm; a slow AR(1) wander of the form
(drop SD 0.15 deg, tau 2 min) on top.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from dsp.types import STEP_DTYPE, Activity, Side


@dataclass(frozen=True)
class Segment:
    duration_s: float
    kind: str = "run"  # run | walk | stand
    speed_mps: float = 3.3


@dataclass(frozen=True)
class Ramp:
    """Fatigue: linear ramp from ``onset_s`` over ``duration_s``, then a plateau (or recovery)."""

    onset_s: float
    duration_s: float
    drop_deg: float = 2.0
    side: str = "right"  # stance side whose drop grows: left | right | both
    contact_pct: float = 0.0
    cadence_pct: float = 0.0
    recover_at_s: float | None = None

    def level(self, t: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        f = np.clip((t - self.onset_s) / max(self.duration_s, 1e-9), 0.0, 1.0)
        if self.recover_at_s is not None:
            f = np.where(t >= self.recover_at_s, 0.0, f)
        return f


def synth_steps(
    segments: list[Segment],
    seed: int = 0,
    ramp: Ramp | None = None,
    *,
    cadence0_spm: float = 170.0,
    contact0_s: float = 0.245,
    vo0_m: float = 0.085,
    drop0_deg: tuple[float, float] = (4.0, 4.3),
    drop_sd_deg: float = 0.7,
) -> tuple[npt.NDArray[np.void], npt.NDArray[np.float64]]:
    """Steps of one run and the true fatigue drop increase (deg) of each step."""
    rng = np.random.default_rng(seed)
    t = 0.0
    rows: list[tuple[float, int, int, float]] = []  # t, activity, side, speed
    speed_prev = None
    for seg in segments:
        end = t + seg.duration_s
        if seg.kind == "stand":
            t = end
            speed_prev = None
            continue
        side = Side.LEFT
        while t < end:
            if seg.kind == "walk":
                v = 1.4
                st = 60.0 / 112.0
                act = Activity.WALKING
            else:
                # 5 s speed transition from the previous running speed
                v = seg.speed_mps
                if speed_prev is not None:
                    k = min(1.0, (t - (end - seg.duration_s)) / 5.0)
                    v = speed_prev + (seg.speed_mps - speed_prev) * k
                st = 60.0 / cadence0_spm - 0.016 * (v - 3.3)
                act = Activity.RUNNING
            rows.append((t, int(act), int(side), v))
            side = Side.RIGHT if side == Side.LEFT else Side.LEFT
            t += st * (1 + 0.012 * rng.standard_normal())
        speed_prev = seg.speed_mps if seg.kind == "run" else None
    n = len(rows)
    arr = np.zeros(n, STEP_DTYPE)
    tt = np.array([r[0] for r in rows])
    acts = np.array([r[1] for r in rows])
    sd = np.array([r[2] for r in rows])
    vv = np.array([r[3] for r in rows])
    run = acts == Activity.RUNNING
    f = ramp.level(tt) if ramp is not None else np.zeros(n)
    step_t = np.diff(np.append(tt, tt[-1] + 0.35)) if n else tt
    # slow wander of the form
    wander = np.zeros(n)
    a = np.exp(-0.35 / 120.0)
    e = rng.standard_normal(n) * 0.15 * np.sqrt(1 - a * a)
    for i in range(1, n):
        wander[i] = a * wander[i - 1] + e[i]
    cad_f = 1 - (ramp.cadence_pct / 100 if ramp else 0.0) * f
    arr["time_s"] = tt
    arr["side"] = sd
    arr["activity"] = acts
    arr["cadence_spm"] = 60.0 / step_t * cad_f
    ct_run = (contact0_s - 0.023 * (vv - 3.3)) * (1 + (ramp.contact_pct / 100 if ramp else 0.0) * f)
    ct_run = ct_run + 0.006 * rng.standard_normal(n)
    arr["contact_time_s"] = np.where(run, ct_run, 0.62 + 0.02 * rng.standard_normal(n))
    arr["flight_time_s"] = step_t - arr["contact_time_s"]
    arr["vertical_oscillation_m"] = np.where(
        run, vo0_m - 0.004 * (vv - 3.3) + 0.003 * rng.standard_normal(n), 0.035
    )
    base_drop = np.where(sd == Side.LEFT, drop0_deg[0], drop0_deg[1])
    grow = np.zeros(n)
    if ramp is not None:
        mask = (
            np.ones(n, bool)
            if ramp.side == "both"
            else sd == (Side.LEFT if ramp.side == "left" else Side.RIGHT)
        )
        grow = np.where(mask, ramp.drop_deg * f, 0.0)
    drop = base_drop + 0.3 * (vv - 3.3) + wander + grow + drop_sd_deg * rng.standard_normal(n)
    arr["pelvic_drop_deg"] = np.where(run, drop, 2.0 + 0.5 * rng.standard_normal(n))
    arr["pelvic_rotation_deg"] = 12 + 1.0 * rng.standard_normal(n)
    arr["pelvic_tilt_deg"] = 6 + 0.7 * rng.standard_normal(n)
    arr["braking_mps2"] = 4 + 0.5 * rng.standard_normal(n)
    return arr, grow


def steady(minutes: float, speed_mps: float = 3.3) -> list[Segment]:
    return [Segment(minutes * 60, "run", speed_mps)]


def intervals_run(seed: int = 0, minutes: float = 60) -> list[Segment]:
    """Warm-up, steady, then intervals with recovery jogs, walking breaks and stops."""
    rng = np.random.default_rng(seed)
    segs = [
        Segment(360, "run", 3.0),
        Segment(240, "run", 3.3),
        Segment(180, "run", 4.3),
        Segment(120, "run", 2.7),
        Segment(60, "walk"),
        Segment(30, "stand"),
    ]
    total = sum(s.duration_s for s in segs)
    while total < minutes * 60:
        kind = rng.choice(["fast", "jog", "walk", "stand", "steady"], p=[0.3, 0.25, 0.15, 0.1, 0.2])
        if kind == "fast":
            segs.append(Segment(float(rng.uniform(60, 240)), "run", float(rng.uniform(3.9, 4.6))))
        elif kind == "jog":
            segs.append(Segment(float(rng.uniform(60, 180)), "run", float(rng.uniform(2.5, 2.9))))
        elif kind == "walk":
            segs.append(Segment(float(rng.uniform(30, 120)), "walk"))
        elif kind == "stand":
            segs.append(Segment(float(rng.uniform(10, 60)), "stand"))
        else:
            segs.append(Segment(float(rng.uniform(120, 480)), "run", float(rng.uniform(3.0, 3.6))))
        total += segs[-1].duration_s
    return segs
