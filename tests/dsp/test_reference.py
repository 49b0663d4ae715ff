"""Kernels against the slow references in tests/reference/naive_dsp.py."""

from __future__ import annotations

import numpy as np
from dsp_synth import synth_run
from hypothesis import given, settings
from hypothesis import strategies as st
from naive_dsp import (
    naive_lowpass,
    naive_resample,
    naive_resample_stream,
    naive_vertical_oscillation,
)

from dsp.analyzer import analyze
from dsp.gait import GaitParams, _biquad, _biquad_reset, gait_coefficients
from dsp.orientation import SIG_OBLIQ, SIG_TILT, OrientParams, orient, orient_initial_state
from dsp.resample import _resample_capacity, resample_initial_state, resample_uniform


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


def test_orientation_matches_naive_per_sample_filter() -> None:
    """Kernel (drift correction every 20 ms, lazy renormalisation, polynomial asin) vs textbook."""
    from naive_dsp import naive_orientation

    from simulators import Segment, SensorConfig, simulate_run

    fs = 200
    run = simulate_run(
        0.5,
        21,
        segments=[Segment.standing(2.0), Segment.running(60.0)],
        sensor=SensorConfig(sample_rate_hz=fs, gyr_bias_dps=1.0),
    )
    _, acc, gyr = run.samples
    n = 20 * fs
    acc, gyr = acc[:n], gyr[:n]
    mount = run.mounting  # sensor <- body
    for every_s, atol_ramp, atol in ((1.0 / fs, 0.002, 0.005), (0.02, 0.1, 0.02)):
        # correction every sample: the same filter; every 20 ms (default): + a sawtooth of
        # kp e T (largest while the gain is high)
        state = orient_initial_state(mount[:, 0], mount[:, 2])
        p = OrientParams(known_axes=True, angle_warmup_s=0.0, correct_every_s=every_s)
        sig, _ = orient(acc, gyr, np.zeros(n, np.int8), sample_rate_hz=fs, params=p, state=state)
        ap, ml = state.f[28:31], state.f[31:34]
        obl, tilt = naive_orientation(acc, gyr, fs, ap, ml)
        ramp = slice(0, 7 * fs)
        after = slice(7 * fs, n)
        for col, ref in ((SIG_OBLIQ, obl), (SIG_TILT, tilt)):
            np.testing.assert_allclose(sig[ramp, col], ref[ramp], atol=atol_ramp)
            np.testing.assert_allclose(sig[after, col], ref[after], atol=atol)


def test_fast_angle_functions_match_numpy() -> None:
    from dsp.orientation import _asin_deg, _atan2_small

    x = np.concatenate([np.linspace(-1.2, 1.2, 20001), [0.5, -0.5, 0.5000001, 1e-300, 0.0]])
    got = np.array([_asin_deg(v) for v in x])
    np.testing.assert_allclose(got, np.degrees(np.arcsin(np.clip(x, -1, 1))), rtol=0, atol=1e-10)
    rng = np.random.default_rng(3)
    y, xx = rng.normal(size=(2, 5000)) * np.array([[0.1], [1.0]])
    got = np.array([_atan2_small(a, b) for a, b in zip(y, xx, strict=True)])
    np.testing.assert_allclose(got, np.arctan2(y, xx), rtol=0, atol=1e-14)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.sampled_from([0.0, 0.004, 0.005, 0.006, 0.01, -0.003, 0.3, 1.7, np.nan, np.inf]),
            st.booleans(),
        ),
        min_size=0,
        max_size=120,
    ),
    st.sampled_from([100.0, 200.0, 400.0]),
    st.integers(min_value=0, max_value=120),
)
def test_resample_matches_naive_stream(
    steps: list[tuple[float, bool]], fs: float, cut: int
) -> None:
    """Random jitter / duplicates / reversals / gaps / NaN rows: kernel (in two blocks) == rules."""
    rng = np.random.default_rng(len(steps))
    dts = np.array([s[0] for s in steps], dtype=np.float64)
    t = 3.0 + np.cumsum(np.where(np.isfinite(dts), dts, 0.0))
    t[~np.isfinite(dts)] = dts[~np.isfinite(dts)]
    x = rng.normal(size=(t.size, 3))
    x[[s[1] and i % 7 == 3 for i, s in enumerate(steps)]] = np.nan
    rk, rx, rfl = naive_resample_stream(t, x, fs, 0.25)
    s = resample_initial_state()
    c = min(cut, t.size)
    outs = []
    for a, b in ((0, c), (c, t.size)):
        cap = _resample_capacity(t[a:b], fs, 0.25, s.f, s.i)
        o, s, _ = resample_uniform(
            t[a:b], x[a:b], 2 * x[a:b], sample_rate_hz=fs, max_gap_s=0.25, state=s
        )
        assert o.k.size <= cap
        outs.append(o)
    k = np.concatenate([o.k for o in outs])
    np.testing.assert_array_equal(k, rk)
    # flag 2 = bridged short gap (the naive rules know flags 0 / 1 only): the grid points whose
    # bracketing accepted samples are more than 1.5 grid periods apart (and not flagged 1)
    fl = np.concatenate([o.flag for o in outs])
    np.testing.assert_array_equal(np.where(fl == 2, 0, fl), rfl)
    acc_t: list[float] = []
    for tj, xj in zip(t, x, strict=True):
        if np.isfinite(tj) and np.all(np.isfinite(xj)) and (not acc_t or tj > acc_t[-1]):
            acc_t.append(float(tj))
    if acc_t:
        ta = np.array(acc_t)
        tg = ta[0] + k / fs
        idx = np.clip(np.searchsorted(ta, tg, side="left"), 1, max(ta.size - 1, 1))
        gap = ta[np.minimum(idx, ta.size - 1)] - ta[idx - 1]
        want2 = (rfl == 0) & (gap * fs > 1.5) & (k > 0)
        np.testing.assert_array_equal(fl == 2, want2)
    np.testing.assert_allclose(np.concatenate([o.acc for o in outs]), rx, rtol=0, atol=1e-12)
    np.testing.assert_allclose(np.concatenate([o.gyr for o in outs]), 2 * rx, rtol=0, atol=1e-12)


def test_resample_capacity_is_bounded_for_absurd_times() -> None:
    s = resample_initial_state()
    t = np.array([0.0, 1e12, np.inf, -1e300])
    cap = _resample_capacity(t, 200.0, 0.25, s.f, s.i)
    assert cap <= 4 * (0.25 * 200 + 2)
    out, _, _ = resample_uniform(t, np.ones((4, 3)), np.ones((4, 3)), sample_rate_hz=200.0, state=s)
    np.testing.assert_array_equal(out.k, [0, 200 * 10**12])  # 1e12 s: after a gap, on the grid


def test_butterworth_coefficients_match_scipy() -> None:
    """dsp.gait computes its biquads in closed form; scipy.signal.butter is the reference."""
    from scipy import signal

    from dsp.gait import _butter2_lowpass

    for fs in (100.0, 200.0, 400.0, 500.0):
        for fc in (2.0, 5.0, 20.0, 0.3 * fs):
            b, a = signal.butter(2, fc, fs=fs)
            np.testing.assert_allclose(
                _butter2_lowpass(fc, fs), [*b, *a[1:]], rtol=1e-12, atol=1e-15
            )
