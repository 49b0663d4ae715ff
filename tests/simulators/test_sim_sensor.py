"""Simulated sensor, wire packets and the one-call API."""

from __future__ import annotations

import struct

import numpy as np
import pytest
from scipy.spatial.transform import Rotation

from dsp.types import EVENT_DTYPE, STEP_DTYPE, Activity
from firmware_interface.protocol import HEADER_STRUCT, STANDARD_GRAVITY_MPS2, crc16
from simulators import (
    RunnerProfile,
    Segment,
    SensorConfig,
    SimulatedRun,
    random_mounting,
    simulate_run,
)


def _decode(pkt: bytes) -> tuple[int, int, int, int, int, np.ndarray] | None:
    """Tiny reference decoder: (seq, t0_us, rate, acc_range, gyr_range, raw (n, 6)) or None."""
    if len(pkt) < 16 or crc16(pkt[:-2]) != struct.unpack("<H", pkt[-2:])[0]:
        return None
    _ver, _typ, seq, t0, rate, ar, gr, n = HEADER_STRUCT.unpack(pkt[:14])
    raw = np.frombuffer(pkt[14 : 14 + 12 * n], dtype="<i2").reshape(n, 6)
    return seq, t0, rate, ar, gr, raw


@pytest.fixture(scope="module")
def ideal_run() -> SimulatedRun:
    return simulate_run(1.5, 5, sensor=SensorConfig.ideal(sample_rate_hz=400))


def test_determinism() -> None:
    a = simulate_run(0.8, 42)
    b = simulate_run(0.8, 42)
    assert a.packets == b.packets
    assert np.array_equal(a.truth_steps, b.truth_steps)
    assert np.array_equal(a.samples.acc_mps2, b.samples.acc_mps2)
    c = simulate_run(0.8, 43)
    assert c.packets != a.packets
    # the sensor model does not change the motion or its truth
    d = simulate_run(0.8, 42, sensor=SensorConfig.ideal())
    assert np.allclose(d.truth_steps["contact_time_s"], a.truth_steps["contact_time_s"], rtol=1e-4)
    assert np.array_equal(d.mounting, a.mounting)


def test_types_and_default_session() -> None:
    run = simulate_run(2.0, 7)
    t, acc, gyr = run.samples
    assert acc.shape == gyr.shape == (t.size, 3)
    assert 200 * 119 < t.size < 200 * 121
    assert run.truth_steps.dtype == STEP_DTYPE
    assert run.truth_events.dtype == EVENT_DTYPE
    steps = run.truth_steps
    assert steps["time_s"].min() >= 20.0 - 1e-6  # standing first
    walk = steps[steps["activity"] == Activity.WALKING]
    run_steps = steps[steps["activity"] == Activity.RUNNING]
    assert walk["time_s"].max() < 50.5 < run_steps["time_s"].min() + 1.0
    assert steps.size > 250
    rx = [p[0] for p in run.packets]
    assert rx == sorted(rx)
    assert run.metadata["profile"]["fatigue"]["onset_min"] == pytest.approx((50 + 35) / 60)
    assert run.metadata["seed"] == 7
    assert np.allclose(np.array(run.metadata["mounting_sensor_from_body"]), run.mounting)


def test_standing_accelerometer_reads_g(ideal_run: SimulatedRun) -> None:
    t, acc, gyr = ideal_run.samples
    standing = t < 15.0
    norm = np.linalg.norm(acc[standing], axis=1)
    lsb = 16 * STANDARD_GRAVITY_MPS2 / 32768
    assert np.abs(norm - 9.80665).max() < 2 * lsb
    assert np.abs(gyr[standing]).max() < 0.1


def test_mounting_rotates_body_signals(ideal_run: SimulatedRun) -> None:
    run = ideal_run
    st = run.motion.evaluate(run.t_true_s, position=False)
    m = run.mounting
    acc_body = run.samples.acc_mps2 @ m  # M^T x_sensor, row-wise
    gyr_body = run.samples.gyr_dps @ m
    assert np.abs(acc_body - st.specific_force_body_mps2).max() < 0.01
    assert np.abs(gyr_body - np.degrees(st.omega_body_rps)).max() < 0.1
    # any orientation, including upside down
    zs = [random_mounting(np.random.default_rng(i))[2, 2] for i in range(200)]
    assert min(zs) < -0.9
    assert max(zs) > 0.9


def test_packets_decode_exactly(ideal_run: SimulatedRun) -> None:
    run = ideal_run
    dec = [_decode(p) for _, p in run.packets]
    assert all(d is not None for d in dec)
    seqs = [d[0] for d in dec if d is not None]
    assert seqs == list(range(len(seqs)))
    raw = np.concatenate([d[5] for d in dec if d is not None])
    acc = raw[:, :3] * (16 * STANDARD_GRAVITY_MPS2 / 32768)
    gyr = raw[:, 3:] * (2000 / 32768)
    assert np.array_equal(acc, run.samples.acc_mps2)
    assert np.array_equal(gyr, run.samples.gyr_dps)
    t0 = np.array([d[1] for d in dec if d is not None]) / 1e6
    assert np.allclose(t0, run.samples.t_s[::10], atol=1e-6)
    assert {d[2] for d in dec if d is not None} == {400}


def test_project_decoder_when_available(ideal_run: SimulatedRun) -> None:
    decoder = pytest.importorskip("firmware_interface.decoder")
    out = decoder.PacketDecoder().decode([p for _, p in ideal_run.packets])
    assert np.allclose(out.t_s, ideal_run.samples.t_s, atol=1e-6)
    assert np.allclose(out.acc_mps2, ideal_run.samples.acc_mps2)
    assert np.allclose(out.gyr_dps, ideal_run.samples.gyr_dps)


def test_clock_wraps_jitter_and_drift() -> None:
    cfg = SensorConfig.ideal(
        sample_rate_hz=400,
        samples_per_packet=1,
        clock_offset_s=2**32 / 1e6 - 5.0,  # u32 us wraps after 5 s
        clock_drift_ppm=100.0,
        time_jitter_s=50e-6,
    )
    run = simulate_run(
        3.0,
        1,
        sensor=cfg,
        segments=[Segment.standing(5.0), Segment.running(200.0)],
        truth_rate_hz=500.0,
    )
    dec = [_decode(p) for _, p in run.packets]
    seqs = np.array([d[0] for d in dec if d is not None])
    t0 = np.array([d[1] for d in dec if d is not None], dtype=np.int64)
    assert seqs.size > 65536
    assert seqs.max() == 65535
    assert np.array_equal(seqs, np.arange(seqs.size) % 65536)  # u16 wrap
    assert t0[0] > 2**32 - 5_100_000  # u32 wrap
    assert t0[-1] < 200_000_000
    unwrapped = t0 + np.cumsum(np.concatenate([[0], np.diff(t0) < 0])) * 2**32
    assert np.allclose(unwrapped / 1e6, run.samples.t_s, atol=1e-6)
    # actual instants jitter around the nominal grid
    dev = run.samples.t_s - cfg.clock_offset_s - np.arange(run.samples.t_s.size) / 400
    assert 30e-6 < dev.std() < 70e-6
    # drift: the sensor clock runs 100 ppm fast; truth is on the sensor clock
    t_true = run.t_true_s
    assert np.allclose(run.samples.t_s, cfg.to_sensor_clock(t_true), atol=2.6e-4 / 400)
    ev = run.truth_events["time_s"]
    assert ev.min() > cfg.clock_offset_s + 5.0
    assert ev.max() < run.samples.t_s[-1]


def test_link_error_rates() -> None:
    cfg = SensorConfig(packet_loss=0.1, corruption=0.05, duplication=0.05, reordering=0.05)
    run = simulate_run(3.0, 9, sensor=cfg, segments=[Segment.running(180.0)])
    n = run.metadata["link"]["packets"]
    assert n == pytest.approx(180 * 200 / 10, abs=2)
    dec = [_decode(p) for _, p in run.packets]
    good = [d for d in dec if d is not None]
    bad = len(dec) - len(good)
    seqs = np.array([d[0] for d in good])
    uniq = np.unique(seqs)
    assert 0.08 < 1 - uniq.size / n < 0.17  # lost or corrupted
    assert 0.035 < bad / n < 0.065
    assert 0.035 < (seqs.size - uniq.size) / n < 0.065  # duplicates
    late = np.sum(seqs[1:] < np.maximum.accumulate(seqs)[:-1])
    assert 0.025 < late / n < 0.07  # reordered (invisible when the successor is lost)
    assert run.metadata["link"]["lost"] == pytest.approx(0.1 * n, rel=0.2)


def test_quantisation_and_clipping() -> None:
    # the default (sacral soft tissue) sensor: peaks ~3 g at the impact overshoot
    cfg = SensorConfig.ideal(acc_range_g=2, gyr_range_dps=125, sacral_soft_tissue=True)
    run = simulate_run(1.0, 3, sensor=cfg, segments=[Segment.running(60.0)])
    _, acc, gyr = run.samples
    fs = 2 * STANDARD_GRAVITY_MPS2
    assert acc.max() <= fs * 32767 / 32768 + 1e-12
    assert acc.min() >= -fs - 1e-12
    assert np.isclose(np.abs(acc).max(), fs, rtol=1e-3)  # running peaks > 2 g: clipped
    lsb = fs / 32768
    assert np.allclose(acc / lsb, np.round(acc / lsb))
    assert np.abs(gyr).max() <= 125


def test_noise_and_bias_present() -> None:
    base = simulate_run(0.5, 4, sensor=SensorConfig.ideal(mounting=np.eye(3)))
    noisy = simulate_run(0.5, 4, sensor=SensorConfig(mounting=np.eye(3), seed=99))
    still = base.samples.t_s < 5.0  # standing (6 s in a 0.5 min default session)
    d = noisy.samples.acc_mps2[still] - base.samples.acc_mps2[still]
    assert 0.008 < d.std(axis=0).mean() < 0.03
    g = noisy.samples.gyr_dps[still] - base.samples.gyr_dps[still]
    bias = np.array(noisy.metadata["gyr_bias_dps"])
    assert np.allclose(g.mean(axis=0), bias, atol=0.05)


def test_custom_profile_and_rotation_input() -> None:
    prof = RunnerProfile(cadence_spm=165.0, speed_mps=3.0)
    rot = Rotation.from_euler("xyz", [180, 20, -70], degrees=True)
    run = simulate_run(
        1.0,
        8,
        profile=prof,
        segments=[Segment.running(60)],
        sensor=SensorConfig.ideal(mounting=rot),
    )
    assert np.allclose(run.mounting, rot.as_matrix())
    assert abs(np.median(run.truth_steps["cadence_spm"]) - 165.0) < 2.0
    assert run.metadata["profile"]["fatigue"]["onset_min"] is None  # no fatigue, JSON-safe
    with pytest.raises(ValueError, match="sample rate"):
        SensorConfig(sample_rate_hz=50)
    with pytest.raises(ValueError, match="rotation"):
        SensorConfig(mounting=np.diag([1.0, 1.0, -1.0]))


def test_sacral_soft_tissue_waveform() -> None:
    """Option: the skin-mounted sacral waveform is added along the world vertical at running
    contacts only, with the table's shape (overshoot ~1.1 g at IC + 30 ms, ~0.44 g at TO), and
    removed in the step mean (the sensor still averages to gravity); the truth is unchanged."""
    from simulators.sensor import SACRAL_IC_TEMPLATE_G

    kw = {"sample_rate_hz": 400, "mounting": np.eye(3)}
    rigid = simulate_run(1.0, 3, sensor=SensorConfig.ideal(**kw))
    soft = simulate_run(1.0, 3, sensor=SensorConfig.ideal(sacral_soft_tissue=True, **kw))
    np.testing.assert_array_equal(rigid.truth_steps, soft.truth_steps)
    t = rigid.t_true_s
    dv = (soft.samples.acc_mps2 - rigid.samples.acc_mps2) / STANDARD_GRAVITY_MPS2
    np.testing.assert_array_equal(soft.samples.gyr_dps, rigid.samples.gyr_dps)
    ic, to, end = rigid.motion.running_contacts()
    assert ic.size > 60
    run_span = (t >= ic[0] - 0.03) & (t < end[-1] + 0.05)
    assert np.all(np.abs(dv[~run_span]) < 1e-3)  # standing / walking: untouched (quantisation)
    # mean over whole running steps ~ 0 (per-step mean removal)
    inside = (t >= ic[1]) & (t < end[-2])
    assert abs(float(np.mean(dv[inside, 2]))) < 0.01
    # shape: vertical (body z ~ world vertical, 10 deg tilt) near the contacts
    k30 = np.searchsorted(t, ic[5:-5] + 0.03)
    k_to = np.searchsorted(t, to[5:-5])
    assert 0.8 < float(np.median(dv[k30, 2])) + 0.15 < 1.3
    assert 0.2 < float(np.median(dv[k_to, 2])) + 0.15 < 0.6
    assert float(np.max(SACRAL_IC_TEMPLATE_G)) > 1.0
