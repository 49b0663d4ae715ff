"""Kernels against the slow references in tests/reference/naive_dsp.py."""

from __future__ import annotations

import numpy as np
from dsp_synth import synth_run
from naive_dsp import naive_lowpass, naive_resample, naive_vertical_oscillation

from dsp.analyzer import analyze
from dsp.gait import GaitParams, _biquad, _biquad_reset, gait_coefficients
from dsp.orientation import SIG_OBLIQ, OrientParams, orient
from dsp.resample import resample_uniform


def test_resample_matches_interp() -> None:
    rng = np.random.default_rng(0)
    fs = 100.0
    t = np.cumsum(rng.uniform(0.007, 0.013, 500))
    x = rng.normal(size=(500, 3))
    out, _, t0 = resample_uniform(t, x, x * 2, sample_rate_hz=fs, max_gap_s=1.0)
    ref = naive_resample(t, x, fs)
    assert t0 == t[0]
    np.testing.assert_array_equal(out.k, np.arange(ref.shape[0]))
    np.testing.assert_allclose(out.acc, ref, atol=1e-12)
    np.testing.assert_allclose(out.gyr, 2 * ref, atol=1e-12)
    assert out.flag[0] == 1
    assert not out.flag[1:].any()


def test_resample_gap_flags_and_skips() -> None:
    fs = 100.0
    t = np.concatenate([np.arange(100) / fs, 2.0 + np.arange(100) / fs])
    x = np.ones((200, 3))
    out, st, _ = resample_uniform(t, x, x, sample_rate_hz=fs, max_gap_s=0.25)
    assert out.k.size == 200
    assert out.flag[100] == 1
    assert out.k[100] == 200
    assert st.i[2] == 1  # one gap counted


def test_biquad_matches_lfilter() -> None:
    rng = np.random.default_rng(1)
    x = 1.0 + rng.normal(size=400)
    fs = 200.0
    c = gait_coefficients(fs, GaitParams())
    z = np.zeros(4)
    _biquad_reset(x[0], c, 5, z, 0)
    y = np.array([_biquad(v, c, 5, z, 0) for v in x])
    np.testing.assert_allclose(y, naive_lowpass(x, GaitParams().fc_slow_hz, fs), atol=1e-10)


def test_step_vertical_oscillation_matches_reference() -> None:
    s = synth_run(duration_s=20.0, fs=200.0, seed=4)
    out = analyze(s.t, s.acc, s.gyr, sample_rate_hz=200.0)
    sig, _ = orient(s.acc, s.gyr, np.zeros(s.t.size, np.int8), sample_rate_hz=200.0)
    st = out.steps
    assert len(st) > 30
    for k in range(5, 10):
        a = st["time_s"][k] * 200.0
        b = st["time_s"][k + 1] * 200.0
        i0, i1 = int(np.ceil(a)), int(np.floor(b))
        ref = naive_vertical_oscillation(sig[i0 : i1 + 1, 0], 200.0)
        assert abs(st["vertical_oscillation_m"][k] - ref) < 1e-9
        assert abs(st["cadence_spm"][k] - 60.0 / (st["time_s"][k + 1] - st["time_s"][k])) < 1e-9


def test_pure_gyro_orientation_matches_scipy() -> None:
    from naive_dsp import naive_gyro_integration

    rng = np.random.default_rng(2)
    fs = 200.0
    gyr = np.cumsum(rng.normal(0, 5, size=(400, 3)), axis=0)
    acc = np.tile([0.0, 0.0, 9.80665], (400, 1))
    p = OrientParams(kp_init=0.0, kp_final=0.0, ki=0.0, angle_warmup_s=0.0, known_axes=True)
    sig, _ = orient(acc, gyr, np.zeros(400, np.int8), sample_rate_hz=fs, params=p)
    R = naive_gyro_integration(gyr, fs)
    # obliquity = asin(up component of the +left axis (sensor y with default known axes))
    ref = np.rad2deg(np.arcsin(R[:, 2, 1]))
    np.testing.assert_allclose(sig[:, SIG_OBLIQ], ref, atol=0.05)
