"""Causal resampler: non-uniform (jittered, gappy) samples -> uniform grid by linear interpolation.

The grid is ``t0 + k / fs`` with ``t0`` the time of the first accepted sample and ``k`` an absolute
integer index. A grid point is emitted as soon as the first input sample at or after it arrives
(look-ahead = one input sample). Intervals longer than ``max_gap_s`` are not bridged: the grid
points inside the gap are skipped and the first emitted point after the gap carries ``flag = 1``
(downstream kernels restart their stride state there; the sensor alignment is kept). Grid points
interpolated across a shorter interval of more than 1.5 grid periods (a lost packet bridged by a
straight line) carry ``flag = 2``: no restart, but the gait kernel does not trust their shape
(no level crossing on a bridged line is used as an event time). Samples with
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
    """Uniform samples: grid index ``k`` (time = t0 + k / fs), acc, gyr and a flag (0 measured,
    1 restart after a long gap / stream start, 2 bridged across a short gap)."""

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
) -> int:
    # state in registers (the output stores cannot alias them), written back at the end
    tp = f[_T_PREV]
    t0 = f[_T0]
    pa0 = f[_ACC_PREV]
    pa1 = f[_ACC_PREV + 1]
    pa2 = f[_ACC_PREV + 2]
    pg0 = f[_GYR_PREV]
    pg1 = f[_GYR_PREV + 1]
    pg2 = f[_GYR_PREV + 2]
    started = st[_STARTED]
    nk = st[_NEXT_K]
    n_gaps = st[_N_GAPS]
    n_drop = st[_N_DROPPED]
    pend = st[_PENDING_FLAG]
    n_in = st[_N_IN]
    m = 0
    for j in range(t.shape[0]):
        tj = t[j]
        a0 = acc[j, 0]
        a1 = acc[j, 1]
        a2 = acc[j, 2]
        g0 = gyr[j, 0]
        g1 = gyr[j, 1]
        g2 = gyr[j, 2]
        # x - x is 0 for finite x and NaN for inf/NaN: one test for all seven values
        if (tj - tj) + (a0 - a0) + (a1 - a1) + (a2 - a2) + (g0 - g0) + (g1 - g1) + (g2 - g2) != 0.0:
            n_drop += 1
            continue
        if started == 0:
            started = 1
            n_in += 1
            t0 = tj
            out_k[m] = 0
            out_flag[m] = 1
            out_acc[m, 0] = a0
            out_acc[m, 1] = a1
            out_acc[m, 2] = a2
            out_gyr[m, 0] = g0
            out_gyr[m, 1] = g1
            out_gyr[m, 2] = g2
            m += 1
            nk = 1
        elif tj <= tp:
            n_in += 1
            n_drop += 1
            continue
        elif tj - tp > max_gap_s:
            n_in += 1
            n_gaps += 1
            pend = 1
            nk = max(math.ceil((tj - t0) * fs - 1e-9), nk)
            # a grid point that coincides with this sample is emitted now
            if t0 + nk / fs <= tj:
                out_k[m] = nk
                out_flag[m] = 1
                out_acc[m, 0] = a0
                out_acc[m, 1] = a1
                out_acc[m, 2] = a2
                out_gyr[m, 0] = g0
                out_gyr[m, 1] = g1
                out_gyr[m, 2] = g2
                m += 1
                nk += 1
                pend = 0
        else:
            n_in += 1
            inv = 1.0 / (tj - tp)
            # a short gap (lost packet) bridged by the straight line: flag 2 (no restart)
            fl_br = 2 if (tj - tp) * fs > 1.5 else 0
            tg = t0 + nk / fs
            while tg <= tj:
                w = (tg - tp) * inv
                out_k[m] = nk
                out_flag[m] = pend if pend != 0 else fl_br
                out_acc[m, 0] = pa0 + w * (a0 - pa0)
                out_acc[m, 1] = pa1 + w * (a1 - pa1)
                out_acc[m, 2] = pa2 + w * (a2 - pa2)
                out_gyr[m, 0] = pg0 + w * (g0 - pg0)
                out_gyr[m, 1] = pg1 + w * (g1 - pg1)
                out_gyr[m, 2] = pg2 + w * (g2 - pg2)
                pend = 0
                m += 1
                nk += 1
                tg = t0 + nk / fs
        tp = tj
        pa0 = a0
        pa1 = a1
        pa2 = a2
        pg0 = g0
        pg1 = g1
        pg2 = g2
    f[_T_PREV] = tp
    f[_T0] = t0
    f[_ACC_PREV] = pa0
    f[_ACC_PREV + 1] = pa1
    f[_ACC_PREV + 2] = pa2
    f[_GYR_PREV] = pg0
    f[_GYR_PREV + 1] = pg1
    f[_GYR_PREV + 2] = pg2
    st[_STARTED] = started
    st[_NEXT_K] = nk
    st[_N_GAPS] = n_gaps
    st[_N_DROPPED] = n_drop
    st[_PENDING_FLAG] = pend
    st[_N_IN] = n_in
    st[_N_OUT] += m
    return m


@njit(**NJIT_OPTS)
def _resample_capacity(
    t: NDArray[np.float64],
    fs: float,
    max_gap_s: float,
    f: NDArray[np.float64],
    st: NDArray[np.int64],
) -> int:
    """Upper bound on the grid points a block emits (sizes the output buffers).

    Every emitted ``k`` satisfies ``t0 + k / fs <= t_max`` (largest finite time of the block) and
    ``k >= NEXT_K`` (``t0 >= t_min`` when the stream starts in this block; +3 covers rounding);
    and each accepted sample emits at most ``max_gap_s * fs + 1`` points.
    """
    tmax = -np.inf
    tmin = np.inf
    for j in range(t.shape[0]):
        tj = t[j]
        if math.isfinite(tj):
            tmax = max(tmax, tj)
            tmin = min(tmin, tj)
    if tmax == -np.inf:
        return 0
    t0 = f[_T0] if st[_STARTED] else tmin
    k0 = st[_NEXT_K] if st[_STARTED] else 0
    by_time = (tmax - t0) * fs + 3.0 - k0
    by_count = t.shape[0] * (max_gap_s * fs + 2.0)
    return max(0, math.floor(min(by_time, by_count)))


# the single pass is the kernel: outputs go into buffers sized by _resample_capacity (allocated
# by numpy, whose large allocations use transparent huge pages: first-touch page faults of
# numba-allocated 4 KiB pages cost ~25 ns per output sample on the benchmark machine)
_resample_kernel = _resample_pass


def resample_block(
    t: NDArray[np.float64],
    acc: NDArray[np.float64],
    gyr: NDArray[np.float64],
    fs: float,
    max_gap_s: float,
    f: NDArray[np.float64],
    st: NDArray[np.int64],
) -> ResampleOutput:
    """One kernel call on a block (contiguous float64 inputs); ``f``/``st`` are updated in place."""
    cap = _resample_capacity(t, fs, max_gap_s, f, st)
    out_k = np.empty(cap, dtype=np.int64)
    out_acc = np.empty((cap, 3))
    out_gyr = np.empty((cap, 3))
    out_flag = np.empty(cap, dtype=np.int8)
    m = _resample_kernel(t, acc, gyr, fs, max_gap_s, f, st, out_k, out_acc, out_gyr, out_flag)
    return ResampleOutput(out_k[:m], out_acc[:m], out_gyr[:m], out_flag[:m])


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
    out = resample_block(
        np.ascontiguousarray(t_s, dtype=np.float64),
        np.ascontiguousarray(acc, dtype=np.float64),
        np.ascontiguousarray(gyr, dtype=np.float64),
        float(sample_rate_hz),
        float(max_gap_s),
        s.f,
        s.i,
    )
    return out, s, float(s.f[_T0])
