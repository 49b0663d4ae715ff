"""Causal resampler: non-uniform (jittered, gappy) samples -> uniform grid by linear interpolation.

The grid is ``t0 + k / fs`` with ``t0`` the time of the first accepted sample and ``k`` an absolute
integer index. A grid point is emitted as soon as the first input sample at or after it arrives
(look-ahead = one input sample). Intervals longer than ``max_gap_s`` are not bridged: the grid
points inside the gap are skipped and the first emitted point after the gap carries ``flag = 1``
(downstream kernels restart their stride state there; the sensor alignment is kept). Samples with
non-increasing time or non-finite values are dropped and counted.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from dsp._config import NJIT_OPTS

# float state layout
_T_PREV = 0
_T0 = 1
_ACC_PREV = 2  # 3 values
_GYR_PREV = 5  # 3 values
_NF = 8
# int state layout
_STARTED = 0
_NEXT_K = 1
_N_GAPS = 2
_N_DROPPED = 3
_PENDING_FLAG = 4
_N_IN = 5
_N_OUT = 6
_NI = 7


class ResampleState(NamedTuple):
    """Complete resampler state (arrays, mutated in place and returned)."""

    f: NDArray[np.float64]
    i: NDArray[np.int64]


class ResampleOutput(NamedTuple):
    """Uniform samples: grid index ``k`` (time = t0 + k / fs), acc, gyr and a restart flag."""

    k: NDArray[np.int64]
    acc: NDArray[np.float64]
    gyr: NDArray[np.float64]
    flag: NDArray[np.int8]


def resample_initial_state() -> ResampleState:
    """Fresh resampler state."""
    return ResampleState(np.zeros(_NF), np.zeros(_NI, dtype=np.int64))


@njit(**NJIT_OPTS)
def _resample_pass(
    t: NDArray[np.float64],
    acc: NDArray[np.float64],
    gyr: NDArray[np.float64],
    fs: float,
    max_gap_s: float,
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    out_k: NDArray[np.int64],
    out_acc: NDArray[np.float64],
    out_gyr: NDArray[np.float64],
    out_flag: NDArray[np.int8],
    write: bool,
) -> int:
    m = 0
    for j in range(t.shape[0]):
        tj = t[j]
        ok = math.isfinite(tj)
        for c in range(3):
            if not (math.isfinite(acc[j, c]) and math.isfinite(gyr[j, c])):
                ok = False
        if not ok:
            st[_N_DROPPED] += 1
            continue
        st[_N_IN] += 1
        if st[_STARTED] == 0:
            st[_STARTED] = 1
            f[_T0] = tj
            f[_T_PREV] = tj
            for c in range(3):
                f[_ACC_PREV + c] = acc[j, c]
                f[_GYR_PREV + c] = gyr[j, c]
            if write:
                out_k[m] = 0
                out_flag[m] = 1
                for c in range(3):
                    out_acc[m, c] = acc[j, c]
                    out_gyr[m, c] = gyr[j, c]
            m += 1
            st[_NEXT_K] = 1
            continue
        tp = f[_T_PREV]
        if tj <= tp:
            st[_N_DROPPED] += 1
            continue
        t0 = f[_T0]
        if tj - tp > max_gap_s:
            st[_N_GAPS] += 1
            st[_PENDING_FLAG] = 1
            nk = math.ceil((tj - t0) * fs - 1e-9)
            st[_NEXT_K] = max(nk, st[_NEXT_K])
            # a grid point that coincides with this sample is emitted now
            k = st[_NEXT_K]
            if t0 + k / fs <= tj:
                if write:
                    out_k[m] = k
                    out_flag[m] = 1
                    for c in range(3):
                        out_acc[m, c] = acc[j, c]
                        out_gyr[m, c] = gyr[j, c]
                m += 1
                st[_NEXT_K] = k + 1
                st[_PENDING_FLAG] = 0
        else:
            inv = 1.0 / (tj - tp)
            while True:
                k = st[_NEXT_K]
                tg = t0 + k / fs
                if tg > tj:
                    break
                w = (tg - tp) * inv
                if write:
                    out_k[m] = k
                    out_flag[m] = st[_PENDING_FLAG]
                    for c in range(3):
                        out_acc[m, c] = f[_ACC_PREV + c] + w * (acc[j, c] - f[_ACC_PREV + c])
                        out_gyr[m, c] = f[_GYR_PREV + c] + w * (gyr[j, c] - f[_GYR_PREV + c])
                st[_PENDING_FLAG] = 0
                m += 1
                st[_NEXT_K] = k + 1
        f[_T_PREV] = tj
        for c in range(3):
            f[_ACC_PREV + c] = acc[j, c]
            f[_GYR_PREV + c] = gyr[j, c]
    st[_N_OUT] += m
    return m


@njit(**NJIT_OPTS)
def _resample_kernel(
    t: NDArray[np.float64],
    acc: NDArray[np.float64],
    gyr: NDArray[np.float64],
    fs: float,
    max_gap_s: float,
    f: NDArray[np.float64],
    st: NDArray[np.int64],
) -> tuple[
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.int8],
    NDArray[np.float64],
    NDArray[np.int64],
]:
    """One pass to count (on a state copy), one to fill; returns outputs and the new state."""
    fc = f.copy()
    sc = st.copy()
    dk = np.zeros(0, dtype=np.int64)
    da = np.zeros((0, 3))
    dfl = np.zeros(0, dtype=np.int8)
    m = _resample_pass(t, acc, gyr, fs, max_gap_s, fc, sc, dk, da, da, dfl, False)
    out_k = np.empty(m, dtype=np.int64)
    out_acc = np.empty((m, 3))
    out_gyr = np.empty((m, 3))
    out_flag = np.empty(m, dtype=np.int8)
    _resample_pass(t, acc, gyr, fs, max_gap_s, f, st, out_k, out_acc, out_gyr, out_flag, True)
    return out_k, out_acc, out_gyr, out_flag, f, st


def resample_uniform(
    t_s: NDArray[np.float64],
    acc: NDArray[np.float64],
    gyr: NDArray[np.float64],
    *,
    sample_rate_hz: float,
    max_gap_s: float = 0.25,
    state: ResampleState | None = None,
) -> tuple[ResampleOutput, ResampleState, float]:
    """Resample onto the uniform grid (offline = one kernel call). Returns output, state and t0."""
    s = state if state is not None else resample_initial_state()
    k, a, g, fl, f, i = _resample_kernel(
        np.ascontiguousarray(t_s, dtype=np.float64),
        np.ascontiguousarray(acc, dtype=np.float64),
        np.ascontiguousarray(gyr, dtype=np.float64),
        float(sample_rate_hz),
        float(max_gap_s),
        s.f,
        s.i,
    )
    return ResampleOutput(k, a, g, fl), ResampleState(f, i), float(f[_T0])
