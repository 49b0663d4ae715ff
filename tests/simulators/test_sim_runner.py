"""Physical consistency and truth of the simulated runner (no sensor errors involved)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dsp.types import Activity, EventKind, Side
from simulators.runner import (
    G_MPS2,
    FatigueProfile,
    RunnerMotion,
    RunnerProfile,
    Segment,
    build_motion,
)

PROFILE = RunnerProfile(
    speed_mps=3.5,
    cadence_spm=170.0,
    contact_time_s=0.25,
    vertical_oscillation_m=0.072,  # attainable with a realistic force tail (p <= 2) at duty 0.71
    pelvic_drop_left_deg=7.0,
    pelvic_drop_right_deg=4.5,
    pelvic_rotation_deg=12.0,
    pelvic_tilt_deg=6.0,
    contact_asymmetry=1.05,
)
SEGMENTS = [
    Segment.standing(5.0),
    Segment.walking(10.0),
    Segment.running(40.0),
    Segment.running(15.0, speed_mps=4.5, cadence_spm=180.0),
    Segment.walking(8.0),
    Segment.standing(5.0),
    Segment.running(20.0),
]


@pytest.fixture(scope="module")
def motion() -> RunnerMotion:
    return build_motion(PROFILE, SEGMENTS, 103.0, np.random.default_rng(11))


@pytest.fixture(scope="module")
def truth(motion: RunnerMotion) -> tuple[np.ndarray, np.ndarray]:
    return motion.truth()


def _running(steps: np.ndarray, t0: float, t1: float) -> np.ndarray:
    sel = (steps["activity"] == Activity.RUNNING) & (steps["time_s"] > t0) & (steps["time_s"] < t1)
    return steps[sel]


def test_gyro_is_derivative_of_orientation(motion: RunnerMotion) -> None:
    # finite difference: R^T dR/dt = [omega]x
    t = np.linspace(14.0, 20.0, 3001)
    h = 1e-6
    s0, sp, sm = motion.evaluate(t), motion.evaluate(t + h), motion.evaluate(t - h)
    d = np.einsum("nji,njk->nik", s0.rot, (sp.rot - sm.rot) / (2 * h))
    w_fd = np.stack([d[:, 2, 1], d[:, 0, 2], d[:, 1, 0]], axis=1)
    assert np.abs(w_fd - s0.omega_body_rps).max() < 1e-5
    # integration: propagate R with the body rates over 10 s of walking -> running
    dt = 1e-3
    tt = np.arange(10.0, 20.0 + dt / 2, dt)
    st = motion.evaluate(tt)
    mid = motion.evaluate(tt[:-1] + dt / 2).omega_body_rps
    w = st.omega_body_rps
    rot = Rotation.from_matrix(st.rot[0])
    for i in range(tt.size - 1):  # 3-sample (Simpson-like) rotation increment
        rot = rot * Rotation.from_rotvec((w[i] + 4 * mid[i] + w[i + 1]) / 6 * dt)
    err = (rot.inv() * Rotation.from_matrix(st.rot[-1])).magnitude()
    assert np.degrees(err) < 0.05


def _integrate(a: np.ndarray, dt: float, x0: float) -> np.ndarray:
    return x0 + np.concatenate([[0.0], np.cumsum(0.5 * (a[1:] + a[:-1]) * dt)])


def test_accelerometer_double_integrates_to_height(
    motion: RunnerMotion, truth: tuple[np.ndarray, np.ndarray]
) -> None:
    # 18 s of running: the vertical acceleration is continuous, integrate straight through
    dt = 5e-4
    t = np.arange(21.0, 39.0, dt)
    st = motion.evaluate(t)
    # world acceleration from the specific force: R f - g e_z
    a_w = np.einsum("nij,nj->ni", st.rot, st.specific_force_body_mps2)
    a_w[:, 2] -= G_MPS2
    assert np.abs(a_w - st.acc_world_mps2).max() < 1e-9
    vz = _integrate(a_w[:, 2], dt, st.vz_mps[0])
    z = _integrate(vz, dt, st.z_m[0])
    assert np.abs(vz - st.vz_mps).max() < 2e-4
    assert np.abs(z - st.z_m).max() < 1e-3
    # every step of walking and running: integrate from its contact (the acceleration may jump
    # at a contact: walking steps, walk <-> run transitions); truth VO = max - min of that height
    _, steps = truth
    sel = steps[(steps["time_s"] > 5.0) & (steps["time_s"] < 75.0)]
    assert sel.size > 150
    for s in sel:
        dur = 60.0 / s["cadence_spm"]
        tt = np.linspace(s["time_s"], s["time_s"] + dur, 1001)
        k = motion.evaluate(tt)
        az = np.einsum("nij,nj->ni", k.rot, k.specific_force_body_mps2)[:, 2] - G_MPS2
        zz = _integrate(_integrate(az, tt[1] - tt[0], k.vz_mps[0]), tt[1] - tt[0], 0.0)
        assert abs(zz[-1]) < 1e-4  # back at the contact height
        assert abs(zz.max() - zz.min() - s["vertical_oscillation_m"]) < 1e-3
    # periodic: same height at every initial contact, ballistic in flight
    ic = motion.steps.ic[(motion.steps.ic > 5) & (motion.steps.ic < 75)]
    assert np.abs(motion.evaluate(ic).z_m).max() < 1e-9
    run = _running(steps, 20.0, 39.0)
    t_fl = run["time_s"] + run["contact_time_s"] + 0.5 * run["flight_time_s"]
    assert np.allclose(motion.evaluate(t_fl).acc_world_mps2[:, 2], -G_MPS2)


def test_standing_reads_gravity(motion: RunnerMotion) -> None:
    st = motion.evaluate(np.linspace(0.2, 4.8, 200))
    assert np.allclose(np.linalg.norm(st.specific_force_body_mps2, axis=1), G_MPS2, atol=1e-9)
    assert np.abs(st.omega_body_rps).max() < 1e-12
    # posture: only the mean anterior tilt
    assert np.allclose(st.tilt_deg, PROFILE.mean_tilt_deg)
    assert np.allclose(st.obliquity_deg, 0.0)


def test_truth_matches_profile(truth: tuple[np.ndarray, np.ndarray]) -> None:
    _, steps = truth
    run = _running(steps, 20.0, 53.0)  # steady part of the first running segment
    assert run.size > 80
    assert abs(np.median(run["cadence_spm"]) - PROFILE.cadence_spm) < 1.5
    assert abs(np.median(run["contact_time_s"]) - PROFILE.contact_time_s) < 0.01
    med_flight = np.median(run["flight_time_s"])
    assert abs(med_flight - (60.0 / PROFILE.cadence_spm - PROFILE.contact_time_s)) < 0.01
    assert abs(np.median(run["vertical_oscillation_m"]) - PROFILE.vertical_oscillation_m) < 0.003
    left, right = run[run["side"] == Side.LEFT], run[run["side"] == Side.RIGHT]
    assert abs(np.median(left["pelvic_drop_deg"]) - PROFILE.pelvic_drop_left_deg) < 0.3
    assert abs(np.median(right["pelvic_drop_deg"]) - PROFILE.pelvic_drop_right_deg) < 0.3
    ratio = np.median(left["contact_time_s"]) / np.median(right["contact_time_s"])
    assert abs(ratio - PROFILE.contact_asymmetry) < 0.02
    assert abs(np.median(run["pelvic_rotation_deg"]) - PROFILE.pelvic_rotation_deg) < 1.0
    assert abs(np.median(run["pelvic_tilt_deg"]) - PROFILE.pelvic_tilt_deg) < 0.5
    assert abs(np.median(run["braking_mps2"]) - PROFILE.braking_mps2) < 0.5
    # interval: faster -> shorter contact, higher cadence
    fast = _running(steps, 57.0, 69.0)
    assert abs(np.median(fast["cadence_spm"]) - 180.0) < 2.0
    assert np.median(fast["contact_time_s"]) < np.median(run["contact_time_s"]) - 0.02


def test_walking_standing_and_events(
    motion: RunnerMotion, truth: tuple[np.ndarray, np.ndarray]
) -> None:
    events, steps = truth
    walk = steps[steps["activity"] == Activity.WALKING]
    assert walk.size > 20
    assert np.all(walk["flight_time_s"] < 0)  # double support
    assert np.all(walk["contact_time_s"] > 0.5 * 60.0 / walk["cadence_spm"])
    assert abs(np.median(walk["cadence_spm"]) - PROFILE.walk.cadence_spm) < 2.0
    # no steps while standing
    for t0, t1 in ((0.0, 5.0), (78.0, 83.0)):
        assert not np.any((steps["time_s"] >= t0) & (steps["time_s"] < t1))
    # events: IC and TO of every step with its side; sides alternate within a bout
    ic = events[events["kind"] == EventKind.INITIAL_CONTACT]
    to = events[events["kind"] == EventKind.TOE_OFF]
    assert np.all(np.isin(steps["time_s"], ic["time_s"]))
    assert np.all(np.isin(steps["time_s"] + steps["contact_time_s"], to["time_s"]))
    assert np.all(np.diff(events["time_s"]) >= 0)
    bout1 = steps[(steps["time_s"] > 5) & (steps["time_s"] < 78)]
    assert np.all(np.diff(bout1["side"].astype(int)) != 0)
    # closing contact before the standing break: an IC without step
    assert np.any(
        (ic["time_s"] > 73) & (ic["time_s"] <= 78) & ~np.isin(ic["time_s"], steps["time_s"])
    )


def test_sign_conventions(motion: RunnerMotion, truth: tuple[np.ndarray, np.ndarray]) -> None:
    _, steps = truth
    run = _running(steps, 20.0, 50.0)
    for s in run[:10]:
        t_pk = s["time_s"] + 0.4 * s["contact_time_s"]
        st = motion.evaluate(np.array([s["time_s"], t_pk]))
        left_axis_up = st.rot[1, 2, 1]  # up component of the +left axis at the drop peak
        if s["side"] == Side.LEFT:
            assert left_axis_up > 0.05  # right (swing) side lower
            assert st.yaw_deg[0] < -3  # left hip forward at left contact: turned right
        else:
            assert left_axis_up < -0.05
            assert st.yaw_deg[0] > 3
    # ML sway toward the stance side (extreme at mid-stance)
    for s in run[:6]:
        st = motion.evaluate(np.array([s["time_s"] + 0.5 * s["contact_time_s"]]))
        assert (st.sway_m[0] > 0) == (s["side"] == Side.LEFT)


def test_heading_changes_and_rotation_is_relative(motion: RunnerMotion) -> None:
    st = motion.evaluate(np.array([16.0, 55.0]))
    assert abs(st.heading_rad[1] - st.heading_rad[0]) > np.radians(2.0)


def test_fatigue_drift_and_clamp() -> None:
    prof = RunnerProfile(
        pelvic_drop_jitter_deg=0.0,
        fatigue=FatigueProfile(
            onset_min=1.0,
            pelvic_drop_right_deg_per_min=1.0,
            contact_time_s_per_min=0.01,
            cadence_spm_per_min=-2.0,
            vertical_oscillation_m_per_min=0.005,
        ),
    )
    m = build_motion(prof, [Segment.running(180.0)], 180.0, np.random.default_rng(2))
    _, steps = m.truth()
    early = steps[(steps["time_s"] > 20) & (steps["time_s"] < 55)]
    late = steps[steps["time_s"] > 170]
    r_e, r_l = early[early["side"] == Side.RIGHT], late[late["side"] == Side.RIGHT]
    l_e, l_l = early[early["side"] == Side.LEFT], late[late["side"] == Side.LEFT]
    d_right = np.median(r_l["pelvic_drop_deg"]) - np.median(r_e["pelvic_drop_deg"])
    d_left = np.median(l_l["pelvic_drop_deg"]) - np.median(l_e["pelvic_drop_deg"])
    assert 1.6 < d_right < 2.2  # ~1.9 min past onset at 1 deg/min
    assert abs(d_left) < 0.3
    assert np.median(late["contact_time_s"]) - np.median(early["contact_time_s"]) > 0.015
    assert np.median(early["cadence_spm"]) - np.median(late["cadence_spm"]) > 3.0
    dvo = np.median(late["vertical_oscillation_m"]) - np.median(early["vertical_oscillation_m"])
    assert 0.006 < dvo < 0.012
    # an unattainable oscillation is clamped and counted
    m2 = build_motion(
        RunnerProfile(vertical_oscillation_m=0.2),
        [Segment.running(20.0)],
        20.0,
        np.random.default_rng(0),
    )
    assert m2.stats["vo_clamped_steps"] > 0


def test_knot_tracks_are_c2(motion: RunnerMotion) -> None:
    # angular acceleration is continuous: finite differences of omega have no jumps
    dt = 1e-4
    t = np.arange(30.0, 32.0, dt)
    w = motion.evaluate(t, position=False).omega_body_rps
    dw = np.diff(w, axis=0) / dt
    assert np.abs(np.diff(dw, axis=0)).max() < 5.0  # rad/s^2: no step in angular acceleration
