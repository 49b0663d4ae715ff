"""Slow, obvious numpy/scipy references of the DSP kernels (stumpy's naive.py style)."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from scipy import signal


def naive_resample(
    t: NDArray[np.float64], x: NDArray[np.float64], fs: float
) -> NDArray[np.float64]:
    """Linear interpolation onto t0 + k/fs for all grid points inside [t0, t_end]."""
    k = np.arange(int(np.floor((t[-1] - t[0]) * fs + 1e-9)) + 1)
    tg = t[0] + k / fs
    return np.stack([np.interp(tg, t, x[:, c]) for c in range(x.shape[1])], axis=1)


def naive_lowpass(x: NDArray[np.float64], fc: float, fs: float) -> NDArray[np.float64]:
    """2nd-order Butterworth, causal, initial state = steady state of x[0]."""
    b, a = signal.butter(2, min(fc, 0.3 * fs), fs=fs)
    zi = signal.lfilter_zi(b, a) * x[0]
    return signal.lfilter(b, a, x, zi=zi)[0]


def naive_vertical_oscillation(fv: NDArray[np.float64], fs: float) -> float:
    """Range of the double integral of (fv - mean) with zero-mean velocity over one step."""
    a = fv - fv.mean()
    v = np.cumsum(a) / fs
    v = v - v.mean()
    z = np.concatenate([[0.0], np.cumsum(v) / fs])
    return float(z.max() - z.min())


def naive_gyro_integration(gyr_dps: NDArray[np.float64], fs: float) -> NDArray[np.float64]:
    """Sensor -> world rotation matrices from pure gyro integration (scipy Rotation).

    The rotation over [t_i-1, t_i] is the mean of the two rate samples times dt (trapezoid).
    """
    from scipy.spatial.transform import Rotation

    r = Rotation.identity()
    out = np.empty((gyr_dps.shape[0], 3, 3))
    w = np.deg2rad(gyr_dps)
    for i in range(w.shape[0]):
        r = r * Rotation.from_rotvec(0.5 * (w[i] + w[max(i - 1, 0)]) / fs)
        out[i] = r.as_matrix()
    return out


def naive_resample_stream(
    t: NDArray[np.float64], x: NDArray[np.float64], fs: float, max_gap_s: float
) -> tuple[NDArray[np.int64], NDArray[np.float64], NDArray[np.int8]]:
    """The resampler's rules, sample by sample in plain Python (grid ``t0 + k / fs``).

    Rows with a non-finite value or a time not after the previous accepted one are dropped; an
    interval longer than ``max_gap_s`` is not bridged (the first grid point after it is flagged);
    otherwise every grid point up to the sample is linearly interpolated.
    """
    ks: list[int] = []
    xs: list[NDArray[np.float64]] = []
    fl: list[int] = []
    prev: tuple[float, NDArray[np.float64]] | None = None
    t0 = 0.0
    nk = 0
    pending = 0
    for tj, xj in zip(t, x, strict=True):
        if not (np.isfinite(tj) and np.all(np.isfinite(xj))):
            continue
        if prev is None:
            t0 = float(tj)
            ks.append(0)
            xs.append(xj.copy())
            fl.append(1)
            nk = 1
            prev = (float(tj), xj.copy())
            continue
        tp, xp = prev
        if tj <= tp:
            continue
        if tj - tp > max_gap_s:
            pending = 1
            nk = max(int(np.ceil((tj - t0) * fs - 1e-9)), nk)
            if t0 + nk / fs <= tj:
                ks.append(nk)
                xs.append(xj.copy())
                fl.append(1)
                nk += 1
                pending = 0
        else:
            while t0 + nk / fs <= tj:
                w = (t0 + nk / fs - tp) * (1.0 / (tj - tp))
                ks.append(nk)
                xs.append(xp + w * (xj - xp))
                fl.append(pending)
                pending = 0
                nk += 1
        prev = (float(tj), xj.copy())
    xo = np.array(xs).reshape(-1, x.shape[1])
    return np.array(ks, dtype=np.int64), xo, np.array(fl, dtype=np.int8)


def naive_orientation(
    acc: NDArray[np.float64],
    gyr_dps: NDArray[np.float64],
    fs: float,
    ap: NDArray[np.float64],
    ml: NDArray[np.float64],
    *,
    kp_init: float = 2.0,
    kp_final: float = 0.2,
    ramp_s: float = 6.0,
    ki: float = 0.01,
    tau_err_s: float = 0.3,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Textbook per-sample version of the kernel's filter (scipy Rotation, correction every sample).

    R <- R * exp(w dt) (bias-corrected mean gyro of the interval); e = low-pass((R a / g) x z); R <- exp(kp e dt) * R
    with kp ramping from kp_init to kp_final; after the ramp the gyro bias integrates
    ``ki R^T e``. Starts level from the first sample's acc. Returns obliquity and tilt (deg) of the
    pelvis axes ``ap``/``ml`` (sensor frame).
    """
    from scipy.spatial.transform import Rotation

    g = 9.80665
    dt = 1.0 / fs
    r, _ = Rotation.align_vectors([[0.0, 0.0, 1.0]], [acc[0] / np.linalg.norm(acc[0])])
    e = np.zeros(3)
    b = np.zeros(3)
    ti = 0.0
    obl = np.empty(acc.shape[0])
    tilt = np.empty(acc.shape[0])
    for j in range(acc.shape[0]):
        wm = 0.5 * (gyr_dps[j] + gyr_dps[max(j - 1, 0)])  # trapezoid over [t_j-1, t_j]
        r = r * Rotation.from_rotvec(np.deg2rad(wm - b) * dt)
        ramp = max(0.0, 1.0 - ti / ramp_s)
        kp = kp_final + (kp_init - kp_final) * ramp
        r = Rotation.from_rotvec(kp * e * dt) * r
        aw = r.apply(acc[j]) / g
        e += (dt / tau_err_s) * (np.array([aw[1], -aw[0], 0.0]) - e)
        if ramp == 0.0:
            b -= ki * dt * np.rad2deg(r.inv().apply(e))
        ti += dt
        obl[j] = np.rad2deg(np.arcsin(np.clip(r.apply(ml)[2], -1, 1)))
        tilt[j] = np.rad2deg(np.arcsin(np.clip(-r.apply(ap)[2], -1, 1)))
    return obl, tilt
