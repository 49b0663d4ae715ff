"""The SIMD output passes of the orientation kernel equal the scalar functions bit for bit."""

from __future__ import annotations

import itertools
import math

import numpy as np

from dsp.orientation import (
    DEG,
    N_SIG,
    SIG_A_AP,
    SIG_A_ML,
    SIG_OBLIQ,
    SIG_TILT,
    SIG_YAW,
    _angle_outputs,
    _asin_deg,
    _atan2_small,
)


def _scalar(
    fx: np.ndarray,
    fy: np.ndarray,
    lz: np.ndarray,
    tz: np.ndarray,
    ok: np.ndarray,
    a0: np.ndarray,
    a1: np.ndarray,
    first: int,
    yaw: float,
) -> np.ndarray:
    """The per-sample code the passes replace (as in the kernel before the split)."""
    m = lz.size
    sig = np.full((m, N_SIG), -7.0)
    for i in range(m):
        x, y = fx[i + 1], fy[i + 1]
        if i == first:
            yaw = math.atan2(y, x)
        else:
            yaw += _atan2_small(fx[i] * y - fy[i] * x, fx[i] * x + fy[i] * y)
        if ok[i]:
            sig[i, SIG_OBLIQ] = _asin_deg(lz[i])
            sig[i, SIG_TILT] = _asin_deg(tz[i])
            sig[i, SIG_YAW] = yaw * DEG
        else:
            sig[i, SIG_OBLIQ] = sig[i, SIG_TILT] = sig[i, SIG_YAW] = np.nan
        hn2 = x * x + y * y
        if hn2 > 1e-18:
            ih = 1.0 / math.sqrt(hn2)
            hfx, hfy = x * ih, y * ih
        else:
            hfx, hfy = 1.0, 0.0
        sig[i, SIG_A_AP] = a0[i] * hfx + a1[i] * hfy
        sig[i, SIG_A_ML] = -a0[i] * hfy + a1[i] * hfx
    return sig


def test_angle_outputs_bit_identical_to_scalar() -> None:
    rng = np.random.default_rng(7)
    for m in (1, 5, 64, 256):
        for first in (-1, 0, m // 2):
            # forward axis drifting slowly, with jumps (yaw series out of range), zero vectors,
            # backward steps (x < 0), NaN; angles up to +-1.3 (polynomial range +-0.5, clamp)
            ang = np.cumsum(rng.normal(0, 0.05, m + 1))
            ang[rng.random(m + 1) < 0.1] += rng.uniform(-3, 3)
            r = rng.uniform(0.2, 1.0, m + 1)
            fx, fy = r * np.cos(ang), r * np.sin(ang)
            fx[rng.random(m + 1) < 0.05] = 0.0
            fy[fx == 0.0] = 0.0
            fx[rng.random(m + 1) < 0.02] = np.nan
            lz = rng.uniform(-1.3, 1.3, m) * rng.choice([0.2, 1.0], m)
            tz = rng.uniform(-1.3, 1.3, m) * rng.choice([0.2, 1.0], m)
            lz[rng.random(m) < 0.05] = np.nan
            ok = rng.random(m) < 0.8
            a0, a1 = rng.normal(size=(2, m)) * 5
            yaw0 = float(rng.normal())
            want = _scalar(fx, fy, lz, tz, ok, a0, a1, first, yaw0)
            sig = np.full((m, N_SIG), -7.0)
            yaw = _angle_outputs(
                sig, 0, m, first, yaw0, fx, fy, lz, tz, ok, a0.copy(), a1.copy(), np.empty(3 * m)
            )
            np.testing.assert_array_equal(sig.view(np.int64), want.view(np.int64))
            last = want[-1, SIG_YAW] if ok[-1] else None
            if last is not None and math.isfinite(last):
                assert yaw * DEG == last


def test_split_gyro_kernel_equals_single_loop() -> None:
    """_orient_gyro (passes per segment) == _orient_kernel_seq (one loop) bit for bit: 100 and
    400 Hz, random mountings (one upside down), restarts, known axes, rate outputs on / off,
    chunked (segments restart at chunk boundaries and at every axes update)."""
    from dsp.orientation import (
        SIG_ROLL_RATE,
        SIG_YAW_RATE,
        OrientParams,
        _orient_gyro,
        _orient_kernel_seq,
        orient_initial_state,
    )
    from simulators import Segment, SensorConfig, simulate_run

    rng = np.random.default_rng(11)
    for fs, seed, mount in ((100, 3, None), (400, 4, np.diag([1.0, -1.0, -1.0]))):
        run = simulate_run(
            0.5,
            seed,
            segments=[Segment.standing(1.0), Segment.running(20.0), Segment.walking(5.0)],
            sensor=SensorConfig(sample_rate_hz=fs, mounting=mount),
        )
        _, acc, gyr = run.samples
        n = acc.shape[0]
        flag = np.zeros(n, np.int8)
        flag[0] = 1
        flag[rng.integers(1, n, 3)] = 1
        for known, rates in ((False, True), (True, False)):
            p = OrientParams(known_axes=known, rate_outputs=rates)
            s1 = orient_initial_state(np.array([0.0, 1.0, 0.0]), np.array([0.3, 0.0, 1.0]))
            s2 = orient_initial_state(np.array([0.0, 1.0, 0.0]), np.array([0.3, 0.0, 1.0]))
            want = np.full((n, N_SIG), -7.0)
            got = np.full((n, N_SIG), -7.0)
            _orient_kernel_seq(acc, gyr, flag, True, float(fs), p, s1.f, s1.i, want)
            cuts = [0, *sorted(rng.integers(0, n, 6)), n]
            for a, b in itertools.pairwise(cuts):
                _orient_gyro(acc[a:b], gyr[a:b], flag[a:b], float(fs), p, s2.f, s2.i, got[a:b])
            if not rates:
                assert np.all(got[:, SIG_YAW_RATE:] == -7.0)
                got[:, SIG_YAW_RATE : SIG_ROLL_RATE + 1] = want[:, SIG_YAW_RATE:]
            np.testing.assert_array_equal(got.view(np.int64), want.view(np.int64))
            np.testing.assert_array_equal(s1.f.view(np.int64), s2.f.view(np.int64))
            np.testing.assert_array_equal(s1.i, s2.i)
