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
    """Sensor -> world rotation matrices from pure gyro integration (scipy Rotation)."""
    from scipy.spatial.transform import Rotation

    r = Rotation.identity()
    out = np.empty((gyr_dps.shape[0], 3, 3))
    for i, w in enumerate(np.deg2rad(gyr_dps)):
        r = r * Rotation.from_rotvec(w / fs)
        out[i] = r.as_matrix()
    return out
