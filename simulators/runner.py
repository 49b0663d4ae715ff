"""Simulated runner: pelvis trajectory and orientation, and the exact per-step ground truth.

The pelvis is a rigid body whose origin is the point the sensor sits on (no lever arm: the
accelerometer sees the specific force of the pelvis origin itself).  Everything is analytic in
time, so any instant can be evaluated exactly (:meth:`RunnerMotion.evaluate`), and the signals
are mutually consistent: the gyro is the body-frame angular velocity ``R^T dR/dt`` of the
simulated orientation and the specific force is ``R^T (a_world + g e_z)`` with ``a_world`` the
second derivative of the simulated position.

Frames and conventions (``docs/architecture.md``):

* world: x/y horizontal, z up; ``g = 9.80665`` m/s^2.
* body (pelvis): x = ap (+forward), y = ml (+left), z = v (+up).
* ``R = Rz(heading + yaw) @ Rx(obliquity) @ Ry(tilt)`` (body -> world).  With this order the
  architecture's obliquity ``asin(R[2,1])`` is *exactly* the simulated obliquity angle; tilt
  ``asin(-R[2,0]) = asin(cos(obl) sin(tilt))`` and yaw ``atan2(R[1,0], R[0,0]) - heading``
  pick up a small, genuine cross-coupling (up to ~1 deg in yaw with 10 deg mean tilt).
* obliquity > 0 = left side higher (right dropped).  During a LEFT stance the swing (right) side
  drops, so obliquity rises to a positive peak at 40 % of the stance and returns to neutral at the
  next initial contact; during a RIGHT stance it goes negative.
* yaw (relative to the heading) is at stride frequency: ``-Y/2`` at a LEFT initial contact (left
  hip forward = pelvis turned right), ``+Y/2`` at a RIGHT initial contact.
* tilt (> 0 anterior) is at step frequency: ``mean - T/2`` at each initial contact,
  ``mean + T/2`` at 60 % of the stance.
* mediolateral sway: toward the stance side, extreme (+left) at mid-stance of a LEFT step.

The angle and sway tracks are interpolated between knots with the quintic smootherstep, so they
are C2 (angular acceleration defined everywhere) and monotone between knots.

Vertical motion (per step, ``T`` = step time, ``c`` = contact time, ``u`` = stance fraction):

* running: ``a_z = A h(u) - g`` in stance, ``a_z = -g`` in flight (ballistic), with the force
  shape ``h(u) = f_p(u) + lam * sin^2(pi u / w)`` (``u < w``): an active bump
  ``f_p(u) = (4 u (1-u))^p`` (a sin(pi u)^p look-alike with closed-form integrals via the
  incomplete beta function) plus a short impact transient (``RunnerProfile.impact_ratio`` = lam,
  ``impact_fraction`` = w; lam = 0 disables it).  ``A`` makes the impulse balance gravity plus
  the change of vertical velocity between consecutive initial contacts, chosen so that the pelvis
  height at every initial contact is the same (no drift); the contact velocity converges
  geometrically to its periodic value (``-g T/2 + g c H1/H0``, H0/H1 = 0th/1st moment of h).
  ``p`` in ``[1, 2]`` (``P_MAX``: a realistic unloading tail, see there) is chosen per step
  (lookup in a steady-state table) to hit the requested vertical oscillation; requests outside
  the attainable range are clamped and counted in ``RunnerMotion.stats["vo_clamped_steps"]``.
  At 176 spm with the default impact the range is about 0.073-0.082 m at duty 0.6, 0.060-0.070 m
  at duty 0.72, 0.050-0.062 m at duty 0.8 (with p up to 60 it was 0.073-0.096 / 0.060-0.087 /
  0.050-0.081 m, through force shapes with a flat tail no real runner shows).
* walking (and the last step before a stop):
  ``z = VO/2 (cos 2 pi phi - cos 2 pi (x - phi)) + (v0 - vc) T x (1-x)^2`` (``x = t/T``), lowest
  ``phi T = WalkProfile.vertical_lag_s`` after the initial contact (as measured on real walking,
  mobgap), ``vc`` = the cosine's velocity at both step ends (continuous between walking steps;
  ``phi = 0`` for the last step before a stop, which ends at rest; ``v0`` absorbs the
  vertical velocity left by a preceding step), plus a heel-strike pulse
  (``WalkProfile.impact_mps2``) whose velocity/height change is removed within the step by a
  cubic.  The vertical acceleration jumps at walking contacts and at walk <-> run transitions
  (heel-strike-like steps, up to ~13 m/s^2 at a walk -> run transition); it is continuous
  (C0) within running.

Anteroposterior: the speed follows smooth ramps between segments; each stance adds
``-B sin(2 pi u)`` (braking in the first half, propulsion in the second, zero net).  The heading
drifts with distance (two sines), so turns only happen while moving.

Ground truth (:meth:`RunnerMotion.truth`) is measured on the simulated trajectory with the
definitions of the architecture: ranges/maxima on a uniform fine grid (default 1 kHz: max error
~1e-5 deg for the angles, ~1e-3 m/s^2 for braking, vs 8 kHz) plus the
exact window end points, the stride-mean obliquity by trapezoid integration, and the vertical
oscillation from the exact extrema of the analytic vertical trajectory.
"""

from __future__ import annotations

import bisect
import itertools
import logging
import math
from dataclasses import dataclass, field
from functools import lru_cache
from typing import NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.special import betainc, betaln

from dsp.types import EVENT_DTYPE, STEP_DTYPE, Activity, EventKind, Side
from firmware_interface.protocol import STANDARD_GRAVITY_MPS2

__all__ = [
    "G_MPS2",
    "FatigueProfile",
    "MotionState",
    "RunnerMotion",
    "RunnerProfile",
    "Segment",
    "WalkProfile",
    "build_motion",
    "default_segments",
    "layout_segments",
]

log = logging.getLogger(__name__)

G_MPS2 = STANDARD_GRAVITY_MPS2
F8 = npt.NDArray[np.float64]

#: shape parameter range of the stance force family (p < 1 would need an infinite jerk at contact).
#: p <= 2: real force-treadmill GRF falls 0.75 / 0.47 / 0.25 / 0.10 BW over the last 30 ms of the
#: contact (Alcantara), p ~ 1.3-1.8 here; larger p gave a flat tail (p ~ 3.7 at VO 0.08 m: < 0.1 BW
#: for the last ~27 ms, up to p ~ 21 for long contacts) that no real runner shows. VO requests
#: beyond what p <= 2 reaches are clamped (RunnerMotion.stats["vo_clamped_steps"]).
P_MIN = 1.0
P_MAX = 2.0
_VMODE_BUMP = 1
_VMODE_COS = 2


# --------------------------------------------------------------------------------------------
# profiles and sessions


@dataclass(frozen=True)
class FatigueProfile:
    """Linear drift of the running form after ``onset_min`` (minutes since the session start).

    The drift stops growing ``max_drift_min`` minutes after the onset (default: never).
    """

    onset_min: float = math.inf
    pelvic_drop_left_deg_per_min: float = 0.0
    pelvic_drop_right_deg_per_min: float = 0.0
    contact_time_s_per_min: float = 0.0
    cadence_spm_per_min: float = 0.0
    vertical_oscillation_m_per_min: float = 0.0
    max_drift_min: float = math.inf

    def minutes_past_onset(self, t_s: float) -> float:
        if not math.isfinite(self.onset_min):
            return 0.0
        return min(max(t_s / 60.0 - self.onset_min, 0.0), self.max_drift_min)


@dataclass(frozen=True)
class WalkProfile:
    """Walking gait (used in walking segments)."""

    speed_mps: float = 1.4
    cadence_spm: float = 116.0
    stance_fraction: float = 0.62  # of the stride: contact = 1.24 step times (double support)
    vertical_oscillation_m: float = 0.035
    pelvic_drop_deg: float = 4.0
    pelvic_rotation_deg: float = 8.0
    pelvic_tilt_deg: float = 3.0
    ml_sway_m: float = 0.02
    braking_mps2: float = 1.5
    impact_mps2: float = 4.0  # heel-strike pulse peak (vertical)
    impact_duration_s: float = 0.05
    # The pelvis is lowest (vertical acc maximum) this long AFTER the initial contact. Measured on
    # mobgap (lower-back IMU, 238 INDIP initial contacts, world-vertical acc averaged around each
    # IC): minimum ~200 ms before IC, steep rise from ~IC - 20 ms, maximum at IC + 60-70 ms. With
    # the cosine lowest AT the contact (the former model) detectors matched to real walking
    # fired ~120 ms early on the simulator. Stopping steps keep lag 0 (they end at rest).
    vertical_lag_s: float = 0.065


@dataclass(frozen=True)
class RunnerProfile:
    """Running form of one runner. Drops are the requested truth ``pelvic_drop_deg`` per side."""

    speed_mps: float = 3.3
    cadence_spm: float = 176.0
    contact_time_s: float = 0.24
    #: 0.065 m: with this cadence / contact the stance force exponent is p ~ 1.3, whose unloading
    #: tail matches real force-treadmill GRF (0.73 / 0.46 / 0.20 BW 30 / 20 / 10 ms before toe-off;
    #: Alcantara 0.75 / 0.47 / 0.25); 0.08 m needed p ~ 3.7: force < 0.1 BW for the last ~27 ms
    vertical_oscillation_m: float = 0.065
    pelvic_drop_left_deg: float = 6.0  # during LEFT stance (right side drops)
    pelvic_drop_right_deg: float = 5.0  # during RIGHT stance (left side drops)
    pelvic_rotation_deg: float = 10.0  # yaw range per step
    pelvic_tilt_deg: float = 5.0  # tilt range per step
    mean_tilt_deg: float = 10.0  # posture (anterior tilt), also while standing/walking
    ml_sway_m: float = 0.015  # +- lateral excursion toward the stance side
    braking_mps2: float = 4.0  # amplitude of the stance AP deceleration
    impact_ratio: float = 0.6  # impact pulse peak / active force peak (0 = no impact transient)
    impact_fraction: float = 0.15  # impact pulse length / contact time
    contact_asymmetry: float = 1.0  # contact time LEFT / RIGHT
    step_time_jitter: float = 0.01  # relative SD per step
    contact_time_jitter: float = 0.015  # relative SD per step
    pelvic_drop_jitter_deg: float = 0.3  # SD per step
    contact_speed_exponent: float = 0.7  # contact ~ speed^-exponent for speed overrides
    turn_amplitude_deg: float = 45.0  # heading wander amplitude (plus a 1/3 harmonic)
    turn_wavelength_m: float = 500.0
    fatigue: FatigueProfile = field(default_factory=FatigueProfile)
    walk: WalkProfile = field(default_factory=WalkProfile)

    def __post_init__(self) -> None:
        checks = {
            "speed_mps": self.speed_mps > 0,
            "cadence_spm": 60.0 < self.cadence_spm < 300.0,
            "contact_time_s": 0.05 < self.contact_time_s < 60.0 / self.cadence_spm,
            "vertical_oscillation_m": 0.0 <= self.vertical_oscillation_m < 0.3,
            "contact_asymmetry": 0.5 < self.contact_asymmetry < 2.0,
            "turn_wavelength_m": self.turn_wavelength_m > 0,
            "impact_ratio": 0.0 <= self.impact_ratio <= 3.0,
            "impact_fraction": 0.02 <= self.impact_fraction <= 0.5,
        }
        for name, ok in checks.items():
            if not ok:
                raise ValueError(f"RunnerProfile.{name} out of range: {getattr(self, name)}")


@dataclass(frozen=True)
class Segment:
    """One part of a session. Speed/cadence ``None`` = the profile's value for the activity."""

    activity: Activity
    duration_s: float
    speed_mps: float | None = None
    cadence_spm: float | None = None

    def __post_init__(self) -> None:
        if not self.duration_s > 0:
            raise ValueError(f"segment duration must be > 0, got {self.duration_s}")
        if self.activity == Activity.STANDING and (self.speed_mps or self.cadence_spm):
            raise ValueError("a standing segment has no speed or cadence")

    @staticmethod
    def standing(duration_s: float) -> Segment:
        return Segment(Activity.STANDING, duration_s)

    @staticmethod
    def walking(
        duration_s: float, speed_mps: float | None = None, cadence_spm: float | None = None
    ) -> Segment:
        return Segment(Activity.WALKING, duration_s, speed_mps, cadence_spm)

    @staticmethod
    def running(
        duration_s: float, speed_mps: float | None = None, cadence_spm: float | None = None
    ) -> Segment:
        return Segment(Activity.RUNNING, duration_s, speed_mps, cadence_spm)


def default_segments(total_s: float) -> list[Segment]:
    """~20 s standing, ~30 s walking, then running (shortened proportionally for short sessions)."""
    stand = min(20.0, 0.2 * total_s)
    walk = min(30.0, 0.3 * total_s)
    run = total_s - stand - walk
    return [Segment.standing(stand), Segment.walking(walk), Segment.running(run)]


def layout_segments(segments: list[Segment], total_s: float) -> list[tuple[float, float, Segment]]:
    """(start, end, segment) covering exactly ``[0, total_s]``: the last segment is stretched or
    the list truncated."""
    if not segments:
        raise ValueError("a session needs at least one segment")
    out: list[tuple[float, float, Segment]] = []
    t = 0.0
    for seg in segments:
        if t >= total_s:
            break
        out.append((t, min(t + seg.duration_s, total_s), seg))
        t += seg.duration_s
    if out[-1][1] < total_s:
        s0, _, seg = out[-1]
        out[-1] = (s0, total_s, seg)
    return out


# --------------------------------------------------------------------------------------------
# smooth interpolation


def _smoothstep(x: F8) -> tuple[F8, F8, F8]:
    """Quintic smootherstep on clipped x and its first two derivatives (zero at 0 and 1)."""
    x = np.clip(x, 0.0, 1.0)
    x2 = x * x
    s = x2 * x * (10.0 + x * (-15.0 + 6.0 * x))
    s1 = 30.0 * x2 * (1.0 - x) ** 2
    s2 = 60.0 * x * (1.0 - x) * (1.0 - 2.0 * x)
    return s, s1, s2


class _KnotTrack:
    """Values at knots joined by smootherstep pieces: C2, monotone between knots."""

    def __init__(self, times: npt.ArrayLike, values: npt.ArrayLike, default: float = 0.0) -> None:
        t = np.asarray(times, dtype=np.float64)
        v = np.asarray(values, dtype=np.float64)
        if t.size == 0:
            t, v = np.array([0.0, 1.0]), np.array([default, default])
        elif t.size == 1:
            t, v = np.array([t[0], t[0] + 1.0]), np.array([v[0], v[0]])
        if np.any(np.diff(t) <= 0):
            raise ValueError("knot times must increase strictly")
        self.t = t
        self.v = v
        self._tl = t.tolist()
        self._cum = np.concatenate([[0.0], np.cumsum(0.5 * (v[1:] + v[:-1]) * np.diff(t))])

    def _locate(self, t: F8) -> tuple[npt.NDArray[np.intp], F8, F8, F8]:
        j = np.clip(np.searchsorted(self.t, t, side="right") - 1, 0, self.t.size - 2)
        h = self.t[j + 1] - self.t[j]
        x = (t - self.t[j]) / h
        return j, h, x, self.v[j + 1] - self.v[j]

    def value(self, t: float) -> float:
        """Scalar value (fast path for the step loop)."""
        j = min(max(bisect.bisect_right(self._tl, t) - 1, 0), len(self._tl) - 2)
        x = min(max((t - self._tl[j]) / (self._tl[j + 1] - self._tl[j]), 0.0), 1.0)
        s = x * x * x * (10.0 + x * (-15.0 + 6.0 * x))
        return float(self.v[j] + (self.v[j + 1] - self.v[j]) * s)

    def values(self, t: F8) -> F8:
        j, _, x, dv = self._locate(t)
        x = np.clip(x, 0.0, 1.0)
        return self.v[j] + dv * (x * x * x * (10.0 + x * (-15.0 + 6.0 * x)))

    def eval(self, t: F8) -> tuple[F8, F8, F8]:
        j, h, x, dv = self._locate(t)
        s, s1, s2 = _smoothstep(x)
        return self.v[j] + dv * s, dv * s1 / h, dv * s2 / (h * h)

    def integral(self, t: F8) -> F8:
        """Integral from the first knot (constant extension outside the knots)."""
        j, h, x, dv = self._locate(t)
        xc = np.clip(x, 0.0, 1.0)
        si = xc**4 * (2.5 + xc * (-3.0 + xc))  # integral of smootherstep from 0 to xc
        out = self._cum[j] + h * (self.v[j] * xc + dv * si)
        out = out + np.where(t < self.t[0], (t - self.t[0]) * self.v[0], 0.0)
        return out + np.where(t > self.t[-1], (t - self.t[-1]) * self.v[-1], 0.0)


# --------------------------------------------------------------------------------------------
# vertical force family


def _force_consts(p: F8) -> tuple[F8, F8]:
    """B1 = int_0^1 f_p, B2 = int_0^1 u f_p(u) du... as used in Phi (see ``_bump_z``)."""
    ln4p = p * math.log(4.0)
    b1 = np.exp(ln4p + betaln(p + 1.0, p + 1.0))
    b2 = np.exp(ln4p + betaln(p + 2.0, p + 1.0))
    return b1, b2


def _impact(u: F8, w: float) -> tuple[F8, F8, F8]:
    """Impact pulse sin^2(pi u / w) on [0, w] (u = stance fraction), its integral and double
    integral from 0 (elementary closed forms)."""
    uc = np.minimum(u, w)
    arg = 2.0 * np.pi * uc / w
    i = np.where(u < w, np.sin(np.pi * uc / w) ** 2, 0.0)
    i0 = uc / 2.0 - w / (4.0 * np.pi) * np.sin(arg)
    i00 = uc * uc / 4.0 + w * w / (8.0 * np.pi**2) * (np.cos(arg) - 1.0) + (w / 2.0) * (u - uc)
    return i, i0, i00


def _stance_moments(b1: F8, lam: float, w: float) -> tuple[F8, F8]:
    """H0 = int_0^1 h, H1 = int_0^1 u h(u) du of the stance shape h = f_p + lam * impact."""
    return b1 + lam * w / 2.0, b1 / 2.0 + lam * w * w / 4.0


def _bump_kin(
    tau: F8,
    c: F8,
    v0: F8,
    amp: F8,
    p: F8,
    b1: F8,
    b2: F8,
    *,
    lam: float,
    w: float,
    level: int,
) -> tuple[F8, F8, F8]:
    """(z, vz, az) of a running step at ``tau`` s after initial contact (z = 0 at contact).

    Stance force per unit mass ``amp * (f_p(u) + lam * impact(u))``.  ``level`` 0: only az
    (z, vz NaN); 1: vz and az; 2: all.
    """
    u = np.clip(tau / c, 0.0, 1.0)
    stance = tau < c
    imp, imp0, imp00 = _impact(u, w)
    f = np.where(stance, (4.0 * u * (1.0 - u)) ** p + lam * imp, 0.0)
    az = amp * f - G_MPS2
    nan = np.full_like(tau, np.nan)
    if level == 0:
        return nan, nan, az
    i1 = betainc(p + 1.0, p + 1.0, u)
    vz = v0 - G_MPS2 * tau + amp * c * (b1 * i1 + lam * imp0)
    if level == 1:
        return nan, vz, az
    i2 = betainc(p + 2.0, p + 1.0, u)
    phi = u * b1 * i1 - b2 * i2 + lam * imp00  # double integral of the shape over [0, u]
    h0 = b1 + lam * w / 2.0
    z = v0 * tau - 0.5 * G_MPS2 * tau * tau + amp * c * c * phi + amp * c * h0 * (tau - c * u)
    return z, vz, az


def _cos_vc(dur: F8, vo: F8, phase: F8 | float) -> F8:
    """Vertical velocity of the phase-shifted cosine at both ends of a walking step."""
    return -np.pi * vo / dur * np.sin(2.0 * np.pi * phase)


def _cos_kin(
    tau: F8,
    dur: F8,
    v0: F8,
    vo: F8,
    imp: F8 | float = 0.0,
    imp_s: float = 0.05,
    phase: F8 | float = 0.0,
) -> tuple[F8, F8, F8]:
    """(z, vz, az) of a walking / stopping step: z = 0 and vz = v0 at contact, z = 0 and
    vz = ``_cos_vc(dur, vo, phase)`` at the end (at rest for phase 0, used by stopping steps).

    The cosine is lowest ``phase`` (step fraction) after the contact:
    ``z = VO/2 (cos 2 pi phase - cos 2 pi (x - phase))``. A heel-strike pulse
    ``imp * sin^2(pi t / imp_s)`` is added to the acceleration and its velocity / height change
    removed within the step by a cubic (so the closure holds).
    """
    x = tau / dur
    w = 2.0 * np.pi * (x - phase)
    c0 = np.cos(2.0 * np.pi * phase)
    vc = _cos_vc(dur, vo, phase)
    vp = v0 - vc  # the x (1 - x)^2 term brings the contact velocity from vc to v0
    z = 0.5 * vo * (c0 - np.cos(w)) + vp * dur * x * (1.0 - x) ** 2
    vz = vo * np.pi / dur * np.sin(w) + vp * (1.0 - 4.0 * x + 3.0 * x * x)
    az = 2.0 * np.pi**2 * vo / (dur * dur) * np.cos(w) + vp * (6.0 * x - 4.0) / dur
    wx = np.minimum(imp_s / dur, 0.5)
    i, i0, i00 = _impact(x, wx)  # type: ignore[arg-type]
    v1 = imp * dur * wx / 2.0
    z1 = imp * dur * dur * (wx * wx / 4.0 + wx / 2.0 * (1.0 - wx))
    beta = -v1 * dur + 2.0 * z1
    alpha = v1 * dur - 3.0 * z1
    z = z + imp * dur * dur * i00 + alpha * x * x + beta * x**3
    vz = vz + imp * dur * i0 + (2.0 * alpha * x + 3.0 * beta * x * x) / dur
    az = az + imp * i + (2.0 * alpha + 6.0 * beta * x) / (dur * dur)
    return z, vz, az


_DUTY_GRID = np.linspace(0.2, 0.96, 39)
_P_GRID = np.geomspace(P_MIN, P_MAX, 48)


@lru_cache(maxsize=8)
def _vo_table(lam: float, w: float) -> F8:
    """Steady-state VO / (g T^2) on (_DUTY_GRID, _P_GRID) (T = 1, g = 1 by scaling)."""
    d = _DUTY_GRID[:, None, None]
    p = _P_GRID[None, :, None]
    u = np.linspace(0.0, 1.0, 129)[None, None, :]
    b1, b2 = _force_consts(p)
    h0, h1 = _stance_moments(b1, lam, w)
    amp = G_MPS2 / (d * h0)
    v0 = G_MPS2 * (-0.5 + d * h1 / h0)  # periodic contact velocity -g T / 2 + g c H1 / H0
    shape = np.broadcast_shapes(d.shape, p.shape, u.shape)
    args = [np.broadcast_to(x, shape) for x in (u * d, d, v0, amp, p, b1, b2)]
    z, vz, _ = _bump_kin(*args, lam=lam, w=w, level=2)
    g_scale = G_MPS2  # _bump_kin uses the real g: rescale to g = 1 units
    z = z / g_scale
    z_to = z[..., -1]
    v_to = vz[..., -1] / g_scale
    apex = np.where(v_to > 0, z_to + 0.5 * v_to**2, z_to)
    zmax = np.maximum(np.maximum(z.max(axis=-1), apex), 0.0)
    return np.asarray(zmax - z.min(axis=-1), dtype=np.float64)


def _choose_p(duty: F8, target: F8, lam: float, w: float) -> tuple[F8, npt.NDArray[np.bool_]]:
    """Shape parameter per step for VO/(g T^2) = target; returns (p, clamped)."""
    table = _vo_table(lam, w)
    pos = np.interp(duty, _DUTY_GRID, np.arange(_DUTY_GRID.size))
    i0 = np.clip(np.floor(pos).astype(np.intp), 0, _DUTY_GRID.size - 2)
    wt = (pos - i0)[:, None]
    rows = (1.0 - wt) * table[i0] + wt * table[i0 + 1]  # (n, np) increasing in p
    rows = np.maximum.accumulate(rows, axis=1)
    lo, hi = rows[:, 0], rows[:, -1]
    clamped = (target < lo) | (target > hi)
    tgt = np.clip(target, lo, hi)
    j = np.clip((rows < tgt[:, None]).sum(axis=1) - 1, 0, _P_GRID.size - 2)
    r0 = rows[np.arange(rows.shape[0]), j]
    r1 = rows[np.arange(rows.shape[0]), j + 1]
    frac = np.where(r1 > r0, (tgt - r0) / np.where(r1 > r0, r1 - r0, 1.0), 0.0)
    lp = np.log(_P_GRID)
    p = np.exp(lp[j] + np.clip(frac, 0.0, 1.0) * (lp[j + 1] - lp[j]))
    return p, clamped


# --------------------------------------------------------------------------------------------
# motion


class MotionState(NamedTuple):
    """Exact kinematics at the requested instants (true time, seconds)."""

    t_s: F8
    z_m: F8  # pelvis height relative to its height at initial contact (NaN if not requested)
    vz_mps: F8
    acc_world_mps2: F8  # (n, 3) second derivative of the position (no gravity)
    rot: F8  # (n, 3, 3) body -> world
    omega_body_rps: F8  # (n, 3) body-frame angular velocity, rad/s
    specific_force_body_mps2: F8  # (n, 3) R^T (a_world + g e_z)
    heading_rad: F8  # running heading (direction of travel)
    obliquity_deg: F8  # per the architecture's definitions, from rot
    tilt_deg: F8
    yaw_deg: F8  # relative to the heading
    acc_ap_mps2: F8  # horizontal acceleration along the heading
    sway_m: F8  # lateral offset from the path, +left


@dataclass
class _Steps:
    """All generated steps (true time), including a few past the session end."""

    ic: F8
    dur: F8  # to the next initial contact (the closing contact for the last step of a bout)
    contact: F8
    side: npt.NDArray[np.int8]
    activity: npt.NDArray[np.int8]
    bout: npt.NDArray[np.intp]
    first: npt.NDArray[np.bool_]
    vmode: npt.NDArray[np.int8]
    vo: F8
    p: F8
    amp: F8
    v0: F8
    b1: F8
    b2: F8
    drop: F8  # signed obliquity peak (deg)
    yaw: F8  # yaw range (deg)
    tilt: F8  # tilt range (deg)
    sway: F8  # ML excursion (m)
    brake: F8  # AP amplitude (m/s^2)
    imp: F8  # heel-strike pulse of walking / stopping steps (m/s^2)
    phase: F8  # cosine phase of walking steps (step fraction; 0 for stopping steps)


class RunnerMotion:
    """A simulated session: analytic pelvis motion and its ground truth."""

    def __init__(
        self,
        profile: RunnerProfile,
        segments: list[Segment],
        duration_s: float,
        rng: np.random.Generator,
    ) -> None:
        if not duration_s > 0:
            raise ValueError(f"duration must be > 0, got {duration_s}")
        self.profile = profile
        self.duration_s = float(duration_s)
        self.layout = layout_segments(segments, self.duration_s)
        self.mean_tilt_deg = profile.mean_tilt_deg
        self.stats: dict[str, int] = {"vo_clamped_steps": 0, "contact_clamped_steps": 0}
        self._lam = float(profile.impact_ratio)
        self._w = float(profile.impact_fraction)
        self._walk_imp_s = float(profile.walk.impact_duration_s)
        closing_t, closing_side, speed_knots = self._schedule(rng)
        self.closing_ic = np.asarray(closing_t, dtype=np.float64)
        self.closing_side = np.asarray(closing_side, dtype=np.int8)
        self._speed = _KnotTrack(*speed_knots) if speed_knots[0] else _KnotTrack([], [], 0.0)
        amp = math.radians(profile.turn_amplitude_deg)
        k1 = 2.0 * math.pi / profile.turn_wavelength_m
        self._psi0 = float(rng.uniform(-math.pi, math.pi))
        self._harmonics = [
            (amp, k1, float(rng.uniform(0, 2 * math.pi))),
            (amp / 3.0, 4.0 * k1, float(rng.uniform(0, 2 * math.pi))),
        ]
        self._vertical()
        self._build_tracks()

    # ---- step schedule -----------------------------------------------------------------------

    def _schedule(
        self, rng: np.random.Generator
    ) -> tuple[list[float], list[int], tuple[list[float], list[float]]]:
        prof, walk, fat = self.profile, self.profile.walk, self.profile.fatigue
        bouts: list[list[tuple[float, float, Segment]]] = []
        for item in self.layout:
            if item[2].activity == Activity.STANDING:
                bouts.append([])
            elif bouts and bouts[-1]:
                bouts[-1].append(item)
            else:
                bouts.append([item])
        bouts = [b for b in bouts if b]
        cols: dict[str, list[float]] = {
            k: []
            for k in (
                *("ic", "dur", "contact", "side", "activity", "bout", "first", "vo"),
                *("drop", "yaw", "tilt", "sway", "brake", "closes"),
            )
        }
        closing_t: list[float] = []
        closing_side: list[int] = []
        sk_t: list[float] = []
        sk_v: list[float] = []
        r = prof.contact_asymmetry
        asym = {Side.LEFT: 2.0 * r / (1.0 + r), Side.RIGHT: 2.0 / (1.0 + r)}

        def seg_cadence(seg: Segment) -> float:
            if seg.cadence_spm is not None:
                return seg.cadence_spm
            return prof.cadence_spm if seg.activity == Activity.RUNNING else walk.cadence_spm

        def seg_speed(seg: Segment) -> float:
            if seg.speed_mps is not None:
                return seg.speed_mps
            return prof.speed_mps if seg.activity == Activity.RUNNING else walk.speed_mps

        for b_idx, bout in enumerate(bouts):
            t_start, t_end = bout[0][0], bout[-1][1]
            closes = t_end < self.duration_s - 1e-9
            # cadence: constant per segment, smootherstep ramps across inner boundaries
            ck_t, ck_v = [t_start], [seg_cadence(bout[0][2])]
            for (s0, e0, a), (s1, e1, b) in itertools.pairwise(bout):
                rr = min(1.0, 0.25 * (e0 - s0), 0.25 * (e1 - s1))
                ck_t += [s1 - rr, s1 + rr]
                ck_v += [seg_cadence(a), seg_cadence(b)]
            cad_track = _KnotTrack(*_strict(ck_t, ck_v))
            t = t_start
            side = Side.LEFT if rng.random() < 0.5 else Side.RIGHT
            n_in_bout = 0
            seg_i = 0
            while True:
                while seg_i + 1 < len(bout) and t >= bout[seg_i + 1][0]:
                    seg_i += 1
                seg = bout[seg_i][2]
                running = seg.activity == Activity.RUNNING
                fm = fat.minutes_past_onset(t) if running else 0.0
                cad = cad_track.value(t)
                if running:
                    cad += fat.cadence_spm_per_min * fm
                dur = 60.0 / cad * (1.0 + prof.step_time_jitter * rng.standard_normal())
                if closes and t + dur > t_end:
                    if n_in_bout:
                        closing_t.append(t)
                        closing_side.append(int(side))
                    break
                if not closes and t > self.duration_s + 1.0:
                    break
                jc = 1.0 + prof.contact_time_jitter * rng.standard_normal()
                jd = prof.pelvic_drop_jitter_deg * rng.standard_normal()
                if running:
                    c = prof.contact_time_s * (prof.speed_mps / seg_speed(seg)) ** (
                        prof.contact_speed_exponent
                    )
                    c = (c + fat.contact_time_s_per_min * fm) * asym[side] * jc
                    lo, hi = 0.25 * dur, 0.9 * dur
                    drop_l = prof.pelvic_drop_left_deg + fat.pelvic_drop_left_deg_per_min * fm
                    drop_r = prof.pelvic_drop_right_deg + fat.pelvic_drop_right_deg_per_min * fm
                    own, other = (drop_l, drop_r) if side == Side.LEFT else (drop_r, drop_l)
                    own += jd
                    vals = (
                        prof.vertical_oscillation_m + fat.vertical_oscillation_m_per_min * fm,
                        1.5 * own - 0.5 * other,  # so that the stride-mean-relative drop = own
                        prof.pelvic_rotation_deg,
                        prof.pelvic_tilt_deg,
                        prof.ml_sway_m,
                        prof.braking_mps2,
                    )
                else:
                    c = walk.stance_fraction * 2.0 * dur * asym[side] * jc
                    lo, hi = 1.02 * dur, 1.8 * dur
                    vals = (
                        walk.vertical_oscillation_m,
                        walk.pelvic_drop_deg + jd,
                        walk.pelvic_rotation_deg,
                        walk.pelvic_tilt_deg,
                        walk.ml_sway_m,
                        walk.braking_mps2,
                    )
                if not lo <= c <= hi:
                    self.stats["contact_clamped_steps"] += 1
                    c = min(max(c, lo), hi)
                sgn = 1.0 if side == Side.LEFT else -1.0
                row = (t, dur, c, float(side), float(seg.activity), float(b_idx))
                keys = ("ic", "dur", "contact", "side", "activity", "bout")
                for key, val in zip(keys, row, strict=True):
                    cols[key].append(val)
                cols["first"].append(float(n_in_bout == 0))
                cols["closes"].append(0.0)
                cols["vo"].append(vals[0])
                cols["drop"].append(sgn * vals[1])
                cols["yaw"].append(vals[2])
                cols["tilt"].append(vals[3])
                cols["sway"].append(vals[4])
                cols["brake"].append(vals[5])
                n_in_bout += 1
                t += dur
                side = Side.RIGHT if side == Side.LEFT else Side.LEFT
            if n_in_bout and closes:
                cols["closes"][-1] = 1.0
            if n_in_bout:
                # speed knots of the bout
                b_end = closing_t[-1] if closes else self.duration_s + 10.0
                r0 = min(3.0, 0.3 * (b_end - t_start))
                kt, kv = [t_start, t_start + r0], [0.0, seg_speed(bout[0][2])]
                for (s0, e0, a), (s1, e1, b) in itertools.pairwise(bout):
                    rr = min(2.0, 0.25 * (e0 - s0), 0.25 * (e1 - s1))
                    kt += [s1 - rr, s1 + rr]
                    kv += [seg_speed(a), seg_speed(b)]
                if closes:
                    kt += [b_end - r0, b_end]
                    kv += [seg_speed(bout[-1][2]), 0.0]
                kt, kv = _strict(kt, kv)
                if sk_t and kt[0] <= sk_t[-1]:
                    raise ValueError("bouts overlap")  # pragma: no cover
                sk_t += kt
                sk_v += kv

        n = len(cols["ic"])
        arr = {k: np.asarray(v, dtype=np.float64) for k, v in cols.items()}
        closes_arr = arr["closes"].astype(bool)
        activity = arr["activity"].astype(np.int8)
        vmode = np.where(
            (activity == Activity.RUNNING) & ~closes_arr, _VMODE_BUMP, _VMODE_COS
        ).astype(np.int8)
        self.steps = _Steps(
            ic=arr["ic"],
            dur=arr["dur"],
            contact=arr["contact"],
            side=arr["side"].astype(np.int8),
            activity=activity,
            bout=arr["bout"].astype(np.intp),
            first=arr["first"].astype(bool),
            vmode=vmode,
            vo=arr["vo"],
            p=np.full(n, np.nan),
            amp=np.zeros(n),
            v0=np.zeros(n),
            b1=np.full(n, np.nan),
            b2=np.full(n, np.nan),
            drop=arr["drop"],
            yaw=arr["yaw"],
            tilt=arr["tilt"],
            sway=arr["sway"],
            brake=arr["brake"],
            imp=np.where(vmode == _VMODE_COS, self.profile.walk.impact_mps2, 0.0),
            phase=np.where(
                (vmode == _VMODE_COS) & ~closes_arr,
                self.profile.walk.vertical_lag_s / arr["dur"],
                0.0,
            ),
        )
        return closing_t, closing_side, (sk_t, sk_v)

    def _vertical(self) -> None:
        st = self.steps
        bump = st.vmode == _VMODE_BUMP
        if bump.any():
            duty = st.contact[bump] / st.dur[bump]
            p, clamped = _choose_p(
                duty, st.vo[bump] / (G_MPS2 * st.dur[bump] ** 2), self._lam, self._w
            )
            st.p[bump] = p
            st.b1[bump], st.b2[bump] = _force_consts(p)
            n_cl = int(clamped.sum())
            self.stats["vo_clamped_steps"] = n_cl
            if n_cl:
                log.info("vertical oscillation not attainable for %d steps: clamped", n_cl)
        v = 0.0
        prev_bout = -1
        ic, dur, con, b1 = st.ic, st.dur, st.contact, st.b1
        for k in range(ic.size):
            if st.bout[k] != prev_bout:
                v, prev_bout = 0.0, int(st.bout[k])
            st.v0[k] = v
            if st.vmode[k] == _VMODE_BUMP:
                # impulse: amp c H0 = g T + dv; same height at the next contact:
                # v T - g T^2 / 2 + amp c (T H0 - c H1) = 0  ->  dv (converges: |factor| < 1)
                h0, h1 = _stance_moments(b1[k], self._lam, self._w)
                arm = dur[k] - con[k] * h1 / h0
                dv = (
                    -(v * dur[k] + 0.5 * G_MPS2 * dur[k] ** 2 - G_MPS2 * dur[k] * (dur[k] - arm))
                    / arm
                )
                st.amp[k] = (G_MPS2 * dur[k] + dv) / (con[k] * h0)
                v = v + dv
            else:
                v = float(_cos_vc(dur[k], st.vo[k], st.phase[k]))  # 0 for stopping steps
        if np.any(st.amp[bump] <= 0):
            raise RuntimeError("non-positive stance force")  # pragma: no cover

    def _build_tracks(self) -> None:
        st = self.steps
        sgn = np.where(st.side == Side.LEFT, 1.0, -1.0)
        cl = self.closing_ic
        mean = self.mean_tilt_deg
        # obliquity: neutral at contacts, peak at 40 % of the stance
        t_pk = st.ic + 0.4 * st.contact
        self._obl = _KnotTrack(
            *_sorted(
                np.concatenate([st.ic, t_pk, cl]),
                np.concatenate([np.zeros(st.ic.size), st.drop, np.zeros(cl.size)]),
            )
        )
        # yaw: extremes at contacts (neutral at the first and closing contact of a bout)
        yv = np.where(st.first, 0.0, -sgn * st.yaw / 2.0)
        self._yaw = _KnotTrack(
            *_sorted(np.concatenate([st.ic, cl]), np.concatenate([yv, np.zeros(cl.size)]))
        )
        # tilt: low at contacts, high at 60 % of the stance
        t_tp = st.ic + np.minimum(0.6 * st.contact, 0.8 * st.dur)
        lo = np.where(st.first, mean, mean - st.tilt / 2.0)
        self._tilt = _KnotTrack(
            *_sorted(
                np.concatenate([st.ic, t_tp, cl]),
                np.concatenate([lo, mean + st.tilt / 2.0, np.full(cl.size, mean)]),
            ),
            default=mean,
        )
        # mediolateral sway: toward the stance side, extreme at mid-stance
        first_ic = st.ic[st.first]
        self._sway = _KnotTrack(
            *_sorted(
                np.concatenate([first_ic, st.ic + 0.5 * st.contact, cl]),
                np.concatenate([np.zeros(first_ic.size), sgn * st.sway, np.zeros(cl.size)]),
            )
        )

    # ---- evaluation --------------------------------------------------------------------------

    def _heading_eval(self, t: F8) -> tuple[F8, F8, F8, F8, F8]:
        """(heading, rate, rate derivative, speed, speed derivative)."""
        v, dv, _ = self._speed.eval(t)
        s = self._speed.integral(t)
        h = np.full_like(t, self._psi0)
        h1 = np.zeros_like(t)
        h2 = np.zeros_like(t)
        for a, k, ph in self._harmonics:
            arg = k * s + ph
            h += a * np.sin(arg)
            h1 += a * k * np.cos(arg)
            h2 -= a * k * k * np.sin(arg)
        return h, h1 * v, h2 * v * v + h1 * dv, v, dv

    def _step_index(self, t: F8) -> tuple[npt.NDArray[np.intp], npt.NDArray[np.bool_]]:
        st = self.steps
        if st.ic.size == 0:
            return np.zeros(t.shape, np.intp), np.zeros(t.shape, bool)
        k = np.searchsorted(st.ic, t, side="right") - 1
        kk = np.clip(k, 0, st.ic.size - 1)
        moving = (k >= 0) & (t - st.ic[kk] < st.dur[kk])
        return kk, moving

    def _ap_osc(self, t: F8, kk: npt.NDArray[np.intp]) -> tuple[F8, F8]:
        """Stance AP velocity / acceleration perturbation (overlapping stances add)."""
        st = self.steps
        v = np.zeros_like(t)
        a = np.zeros_like(t)
        if st.ic.size == 0:
            return v, a
        for back in (0, 1):
            j = np.maximum(kk - back, 0)
            tau = t - st.ic[j]
            on = (tau >= 0) & (tau < st.contact[j]) & (kk >= back)
            u = tau / st.contact[j]
            w = 2.0 * np.pi * u
            a += np.where(on, -st.brake[j] * np.sin(w), 0.0)
            v += np.where(on, st.brake[j] * st.contact[j] / (2.0 * np.pi) * (np.cos(w) - 1.0), 0.0)
        return v, a

    def _vertical_eval(
        self, t: F8, kk: npt.NDArray[np.intp], moving: npt.NDArray[np.bool_], position: bool
    ) -> tuple[F8, F8, F8]:
        st = self.steps
        z = np.zeros_like(t)
        vz = np.zeros_like(t)
        az = np.zeros_like(t)
        if st.ic.size == 0:
            return z, vz, az
        for mode in (_VMODE_BUMP, _VMODE_COS):
            m = moving & (st.vmode[kk] == mode)
            if not m.any():
                continue
            j = kk[m]
            tau = t[m] - st.ic[j]
            if mode == _VMODE_BUMP:
                zz, vv, aa = _bump_kin(
                    tau,
                    st.contact[j],
                    st.v0[j],
                    st.amp[j],
                    st.p[j],
                    st.b1[j],
                    st.b2[j],
                    lam=self._lam,
                    w=self._w,
                    level=2 if position else 0,
                )
            else:
                zz, vv, aa = _cos_kin(
                    tau, st.dur[j], st.v0[j], st.vo[j], st.imp[j], self._walk_imp_s, st.phase[j]
                )
            z[m], vz[m], az[m] = zz, vv, aa
        if not position:
            z[:] = np.nan
            vz[:] = np.nan
        return z, vz, az

    def _angles(self, t: F8) -> tuple[tuple[F8, F8, F8], ...]:
        """(yaw, obliquity, tilt) in rad and the ML sway in m, each with 2 derivatives."""
        out: list[tuple[F8, F8, F8]] = []
        for track in (self._yaw, self._obl, self._tilt):
            y, y1, y2 = track.eval(t)
            out.append((np.radians(y), np.radians(y1), np.radians(y2)))
        out.append(self._sway.eval(t))
        return tuple(out)

    def evaluate(self, t_s: npt.ArrayLike, *, position: bool = True) -> MotionState:
        """Exact kinematics at the true times ``t_s`` (s since the session start).

        ``position=False`` skips the (costly) pelvis height and vertical velocity (NaN then).
        """
        t = np.asarray(t_s, dtype=np.float64).reshape(-1)
        kk, moving = self._step_index(t)
        psi, psi1, psi2, spd, dspd = self._heading_eval(t)
        (ya, ya1, _), (ob, ob1, _), (ti, ti1, _), (y, y1, y2) = self._angles(t)
        v_osc, a_osc = self._ap_osc(t, kk)
        z, vz, az = self._vertical_eval(t, kk, moving, position)
        vf = spd + v_osc
        a_e = dspd + a_osc - 2.0 * y1 * psi1 - y * psi2
        a_n = vf * psi1 + y2 - y * psi1 * psi1
        cp, sp = np.cos(psi), np.sin(psi)
        acc_w = np.stack([a_e * cp - a_n * sp, a_e * sp + a_n * cp, az], axis=1)
        a = psi + ya
        a1 = psi1 + ya1
        ca, sa, cb, sb, cc, sc = (
            np.cos(a),
            np.sin(a),
            np.cos(ob),
            np.sin(ob),
            np.cos(ti),
            np.sin(ti),
        )
        rot = np.empty((t.size, 3, 3))
        rot[:, 0, 0] = ca * cc - sa * sb * sc
        rot[:, 1, 0] = sa * cc + ca * sb * sc
        rot[:, 2, 0] = -cb * sc
        rot[:, 0, 1] = -sa * cb
        rot[:, 1, 1] = ca * cb
        rot[:, 2, 1] = sb
        rot[:, 0, 2] = ca * sc + sa * sb * cc
        rot[:, 1, 2] = sa * sc - ca * sb * cc
        rot[:, 2, 2] = cb * cc
        omega = np.stack([-a1 * sc * cb + ob1 * cc, a1 * sb + ti1, a1 * cc * cb + ob1 * sc], axis=1)
        fw = acc_w.copy()
        fw[:, 2] += G_MPS2
        f_body = np.einsum("nij,ni->nj", rot, fw)
        obl_def = np.degrees(np.arcsin(np.clip(rot[:, 2, 1], -1.0, 1.0)))
        tilt_def = np.degrees(np.arcsin(np.clip(-rot[:, 2, 0], -1.0, 1.0)))
        yaw_def = np.degrees(_wrap(np.arctan2(rot[:, 1, 0], rot[:, 0, 0]) - psi))
        return MotionState(
            t_s=t,
            z_m=z,
            vz_mps=vz,
            acc_world_mps2=acc_w,
            rot=rot,
            omega_body_rps=omega,
            specific_force_body_mps2=f_body,
            heading_rad=psi,
            obliquity_deg=obl_def,
            tilt_deg=tilt_def,
            yaw_deg=yaw_def,
            acc_ap_mps2=a_e,
            sway_m=y,
        )

    def _truth_signals(self, t: F8) -> tuple[F8, F8, F8, F8]:
        """(obliquity, tilt, yaw rel. heading, a_ap) per the definitions, without the heavy parts."""
        kk, _ = self._step_index(t)
        psi, psi1, psi2, _, dspd = self._heading_eval(t)
        ya, ob, ti = (np.radians(tr.values(t)) for tr in (self._yaw, self._obl, self._tilt))
        y, y1, _ = self._sway.eval(t)
        _, a_osc = self._ap_osc(t, kk)
        a_e = dspd + a_osc - 2.0 * y1 * psi1 - y * psi2
        a = psi + ya
        ca, sa = np.cos(a), np.sin(a)
        cb, sb, cc, sc = np.cos(ob), np.sin(ob), np.cos(ti), np.sin(ti)
        r00 = ca * cc - sa * sb * sc
        r10 = sa * cc + ca * sb * sc
        obl = np.degrees(np.arcsin(np.clip(sb, -1.0, 1.0)))
        tilt = np.degrees(np.arcsin(np.clip(cb * sc, -1.0, 1.0)))
        yaw = np.degrees(_wrap(np.arctan2(r10, r00) - psi))
        return obl, tilt, yaw, a_e

    def running_contacts(self) -> tuple[F8, F8, F8]:
        """(initial contact, toe-off, step end) true times of the running (flight) steps: where a
        sensor model adds what a skin-mounted sacral sensor shows around contact and toe-off."""
        st = self.steps
        m = st.vmode == _VMODE_BUMP
        return st.ic[m], st.ic[m] + st.contact[m], st.ic[m] + st.dur[m]

    # ---- ground truth ------------------------------------------------------------------------

    def truth(
        self, *, rate_hz: float = 1000.0, chunk_steps: int = 400
    ) -> tuple[npt.NDArray[np.void], npt.NDArray[np.void]]:
        """Events and steps (true time) of the session ``[0, duration_s]``.

        Events: every initial contact / toe-off inside the session, including the closing contact
        of a bout that ends in standing (an IC with no toe-off and no step).  Steps: every step
        whose next contact and toe-off fall inside the session.
        """
        st = self.steps
        end = self.duration_s
        nxt = st.ic + st.dur
        to = st.ic + st.contact
        ok = (nxt <= end) & (to <= end)
        idx = np.flatnonzero(ok)
        # events
        ev_t = np.concatenate([st.ic, to, self.closing_ic])
        ev_k = np.concatenate(
            [
                np.full(st.ic.size, EventKind.INITIAL_CONTACT),
                np.full(st.ic.size, EventKind.TOE_OFF),
                np.full(self.closing_ic.size, EventKind.INITIAL_CONTACT),
            ]
        )
        ev_s = np.concatenate([st.side, st.side, self.closing_side])
        keep = ev_t <= end
        order = np.lexsort((ev_k[keep], ev_t[keep]))
        events = np.zeros(int(keep.sum()), dtype=EVENT_DTYPE)
        events["time_s"] = ev_t[keep][order]
        events["kind"] = ev_k[keep][order]
        events["side"] = ev_s[keep][order]

        steps = np.zeros(idx.size, dtype=STEP_DTYPE)
        steps["time_s"] = st.ic[idx]
        steps["side"] = st.side[idx]
        steps["activity"] = st.activity[idx]
        steps["cadence_spm"] = 60.0 / st.dur[idx]
        steps["contact_time_s"] = st.contact[idx]
        steps["flight_time_s"] = st.dur[idx] - st.contact[idx]
        steps["vertical_oscillation_m"] = self._truth_vo(idx)
        # stride window for the mean obliquity
        n = st.ic.size
        has_next = np.zeros(n, bool)
        has_next[:-1] = st.bout[1:] == st.bout[:-1]
        sa = np.where(st.first[idx], st.ic[idx], st.ic[np.maximum(idx - 1, 0)])
        sb_first = np.where(has_next[idx], nxt[np.minimum(idx + 1, n - 1)], nxt[idx])
        sb = np.where(st.first[idx], sb_first, nxt[idx])
        for c0 in range(0, idx.size, chunk_steps):
            sl = slice(c0, c0 + chunk_steps)
            k = idx[sl]
            windows = {
                "step": (st.ic[k], nxt[k]),
                "stance": (st.ic[k], to[k]),
                "stride": (sa[sl], sb[sl]),
                "brake": (st.ic[k], st.ic[k] + 0.5 * st.contact[k]),
            }
            lo = min(float(w[0].min()) for w in windows.values())
            hi = max(float(w[1].max()) for w in windows.values())
            grid = np.arange(math.ceil(lo * rate_hz), math.floor(hi * rate_hz) + 1) / rate_hz
            ends = np.concatenate([x for w in windows.values() for x in w])
            sig = self._truth_signals(np.concatenate([grid, ends]))
            g_vals = [s[: grid.size] for s in sig]
            m = k.size
            # end values: window w (in insertion order) starts at 2 w m, ends at (2 w + 1) m
            ends_at = {
                name: (
                    [s[grid.size + 2 * w * m : grid.size + (2 * w + 1) * m] for s in sig],
                    [s[grid.size + (2 * w + 1) * m : grid.size + (2 * w + 2) * m] for s in sig],
                )
                for w, name in enumerate(windows)
            }

            def ends_of(
                name: str, which: int, ends_at: dict[str, tuple[list[F8], list[F8]]] = ends_at
            ) -> tuple[F8, F8]:
                return ends_at[name][0][which], ends_at[name][1][which]

            obl, tilt, yaw, aap = 0, 1, 2, 3
            a, b = windows["step"]
            for which, field_name in ((yaw, "pelvic_rotation_deg"), (tilt, "pelvic_tilt_deg")):
                va, vb = ends_of("step", which)
                mx = _win_reduce(grid, g_vals[which], a, b, va, vb, np.maximum)
                mn = _win_reduce(grid, g_vals[which], a, b, va, vb, np.minimum)
                steps[field_name][sl] = mx - mn
            a, b = windows["stride"]
            va, vb = ends_of("stride", obl)
            mean = _win_integral(grid, g_vals[obl], a, b, va, vb) / (b - a)
            a, b = windows["stance"]
            va, vb = ends_of("stance", obl)
            mx = _win_reduce(grid, g_vals[obl], a, b, va, vb, np.maximum)
            mn = _win_reduce(grid, g_vals[obl], a, b, va, vb, np.minimum)
            left = st.side[k] == Side.LEFT
            steps["pelvic_drop_deg"][sl] = np.where(left, mx - mean, mean - mn)
            a, b = windows["brake"]
            va, vb = ends_of("brake", aap)
            steps["braking_mps2"][sl] = _win_reduce(grid, -g_vals[aap], a, b, -va, -vb, np.maximum)
        return events, steps

    def _truth_vo(self, idx: npt.NDArray[np.intp]) -> F8:
        """Exact max - min of the pelvis height over each step (analytic extrema)."""
        st = self.steps
        out = np.zeros(idx.size)
        cos = st.vmode[idx] == _VMODE_COS
        if cos.any():
            k = idx[cos]
            x = np.linspace(0.0, 1.0, 1025)[None, :]
            z, _, _ = _cos_kin(
                x * st.dur[k][:, None],
                st.dur[k][:, None],
                st.v0[k][:, None],
                st.vo[k][:, None],
                st.imp[k][:, None],
                self._walk_imp_s,
                st.phase[k][:, None],
            )
            out[cos] = z.max(axis=1) - z.min(axis=1)
        bump = ~cos
        if bump.any():
            out[bump] = _bump_vo(st, idx[bump], self._lam, self._w)
        return out


def _bump_vo(st: _Steps, k: npt.NDArray[np.intp], lam: float, w: float) -> F8:
    """Exact VO of running steps: the extrema are the roots of vz in stance (bracketed on a
    coarse grid, then bisected), the contacts, the toe-off and the flight apex."""
    c, dur, v0, amp, p, b1, b2 = (
        x[k] for x in (st.contact, st.dur, st.v0, st.amp, st.p, st.b1, st.b2)
    )

    def kin(tau: F8, level: int) -> tuple[F8, F8, F8]:
        return _bump_kin(tau, c, v0, amp, p, b1, b2, lam=lam, w=w, level=level)

    u = np.linspace(0.0, 1.0, 33)
    cols = [c[:, None], v0[:, None], amp[:, None], p[:, None], b1[:, None], b2[:, None]]
    vz = _bump_kin(u[None, :] * cols[0], *cols, lam=lam, w=w, level=1)[1]
    cand_max = [np.zeros(k.size)]
    cand_min = [np.zeros(k.size)]
    for rising in (True, False):
        if rising:
            cross = (vz[:, :-1] < 0) & (vz[:, 1:] >= 0)
        else:
            cross = (vz[:, :-1] > 0) & (vz[:, 1:] <= 0)
        has = cross.any(axis=1)
        j = np.argmax(cross, axis=1)
        lo, hi = u[j] * c, u[j + 1] * c
        for _ in range(18):  # z is stationary at the root: its error is ~ a * (c/32/2^18)^2
            mid = 0.5 * (lo + hi)
            vm = kin(mid, 1)[1]
            go_right = (vm < 0) if rising else (vm > 0)
            lo = np.where(go_right, mid, lo)
            hi = np.where(go_right, hi, mid)
        z_root = kin(0.5 * (lo + hi), 2)[0]
        if rising:
            cand_min.append(np.where(has, z_root, np.inf))
        else:
            cand_max.append(np.where(has, z_root, -np.inf))
    z_to, v_to, _ = kin(c, 2)
    z_end = kin(dur, 2)[0]
    t_apex = c + np.maximum(v_to, 0.0) / G_MPS2
    apex_in = (v_to > 0) & (t_apex <= dur)
    cand_max += [z_to, z_end, np.where(apex_in, z_to + v_to**2 / (2.0 * G_MPS2), -np.inf)]
    cand_min += [z_to, z_end]
    return np.max(np.stack(cand_max), axis=0) - np.min(np.stack(cand_min), axis=0)


def _win_reduce(grid: F8, vals: F8, a: F8, b: F8, va: F8, vb: F8, op: np.ufunc) -> F8:
    """op-reduction of a signal over [a, b]: grid samples inside plus exact end values."""
    i0 = np.searchsorted(grid, a, side="left")
    i1 = np.searchsorted(grid, b, side="right")
    padded = np.append(vals, vals[-1] if vals.size else 0.0)
    idx = np.empty(2 * a.size, dtype=np.intp)
    idx[0::2] = i0
    idx[1::2] = i1
    red = op.reduceat(padded, idx)[0::2]
    red = np.where(i1 > i0, red, va)
    return np.asarray(op(op(red, va), vb), dtype=np.float64)


def _win_integral(grid: F8, vals: F8, a: F8, b: F8, va: F8, vb: F8) -> F8:
    """Trapezoid integral over [a, b] with the exact end values."""
    cum = np.concatenate([[0.0], np.cumsum(0.5 * (vals[1:] + vals[:-1]) * np.diff(grid))])
    i0 = np.searchsorted(grid, a, side="left")
    i1 = np.searchsorted(grid, b, side="right") - 1  # last grid point <= b
    inner = i1 >= i0
    j0 = np.clip(i0, 0, grid.size - 1)
    j1 = np.clip(i1, 0, grid.size - 1)
    body = cum[j1] - cum[j0]
    head = (grid[j0] - a) * (va + vals[j0]) / 2.0
    tail = (b - grid[j1]) * (vals[j1] + vb) / 2.0
    return np.where(inner, body + head + tail, (b - a) * (va + vb) / 2.0)


def _wrap(x: F8) -> F8:
    return (x + np.pi) % (2.0 * np.pi) - np.pi


def _strict(t: list[float], v: list[float]) -> tuple[list[float], list[float]]:
    """Drop knots that do not strictly follow the previous one."""
    ot, ov = [t[0]], [v[0]]
    for ti, vi in zip(t[1:], v[1:], strict=True):
        if ti > ot[-1] + 1e-9:
            ot.append(ti)
            ov.append(vi)
    return ot, ov


def _sorted(t: F8, v: F8) -> tuple[F8, F8]:
    order = np.argsort(t, kind="stable")
    return t[order], v[order]


def build_motion(
    profile: RunnerProfile | None,
    segments: list[Segment] | None,
    duration_s: float,
    rng: np.random.Generator,
) -> RunnerMotion:
    """The motion of a session (default profile / segments when ``None``)."""
    return RunnerMotion(
        profile or RunnerProfile(), segments or default_segments(duration_s), duration_s, rng
    )
