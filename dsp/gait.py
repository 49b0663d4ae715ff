"""Causal gait events (IC, TO, stance side), gait-bout logic and per-step metrics, one kernel.

Input: the uniform per-sample signals of :mod:`dsp.orientation` (vertical specific force, AP/ML
acceleration, pelvis angles and rates). Everything is sequential over samples; the complete
state (filters, detectors, ring buffer of recent samples, the open bout) lives in arrays.

* **Running IC / TO** (flight phase present). ``x`` = vertical specific force in g (optional
  causal low-pass ``fc_fast_hz``, default none; its DC group delay is subtracted). A loaded phase
  is confirmed when ``x > load_g`` after a flight (``x`` went below ``flight_max_g``) within
  ``max_rise_s`` of the IC crossing. Default (a skin-mounted sacral sensor): IC = last upward
  crossing of flight level + ``ic_level_g`` (0.5 g, sub-sample) + ``run_ic_offset_s`` (-6 ms, the
  rise time); TO = falling crossing of flight + ``to_level_g`` (0.1 g) + ``run_to_offset_s``
  (-20 ms: the sacral sensor stays ~0.4 g above the flight level for ~40 ms after toe-off). One
  rule for the simulator's default sensor (rigid force + the sacral waveform fitted on real data)
  and for real sacral data (Alcantara, held out: IC bias +-0.9 ms, contact RMSE 14-15 ms).
  ``RIGID_PELVIS`` (``onset_fit``): IC = the flight + L / 2L crossings extrapolated back to the
  flight level, TO = the 4L / 2L / L crossings extrapolated forward with a power-law tail fit
  (p <= ``fit_max_p_to``): right for a rigid sensor (no soft tissue), ~30 ms late at TO on real
  sacral data. ``SACRAL_SOFT_TISSUE`` = the default's rules with a 30 Hz low-pass (first preset).
* **Walking IC** (no flight). Candidates = peaks of the vertical jerk (derivative of ``x``
  low-passed at ``fc_slow_hz``) divided by its running RMS (``walk_norm_tau_s``), above a
  permissive ``walk_thr_norm`` and a raw floor: the steep rise of the vertical acceleration at
  heel strike (the causal analogue of McCamley/Ionescu). At the end of the hold a candidate is
  accepted when a logistic score of four features is >= 0 (:func:`_walk_score`: log jerk peak,
  normalised peak, vertical acceleration maximum since the IC, drop of the AP acceleration across
  the IC; weights fitted on mobgap); an accepted IC starts the refractory period, a rejected one
  does not. Walking TO_k = steepest fall of ``x`` in the window after IC_{k+1} (approximate, not
  validated).
* **Side.** Evidence per step = change of the pelvis obliquity from IC to IC + ``side_window_s``:
  the swing side drops in early stance (contralateral pelvic drop), so obliquity rises during a
  LEFT stance. Its sign depends on the estimated forward axis, so it is multiplied by the sign of
  a running mean of the early-stance AP acceleration (braking after a running IC points
  backward). Accumulated over the bout with the alternation parity (forgetting per step), so a
  single noisy step cannot flip the assignment. Walking: evidence = mean ML acceleration over the
  previous step (toward the coming stance side); see :func:`_walk_side_evidence`. Without gyro:
  unknown.
* **Bouts.** A bout is a run of ICs of one mode (running/walking) with step times inside the
  plausible range; a gap, a mode change or a missing IC ends it. Steps exist only inside bouts.
* **Metrics** per ``docs/architecture.md`` from the ring buffer when step k is complete.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from dsp._config import NJIT_OPTS
from dsp.orientation import (
    N_SIG,
    SIG_A_AP,
    SIG_A_ML,
    SIG_F_V,
    SIG_OBLIQ,
    SIG_TILT,
    SIG_YAW,
    G,
)

MODE_WALK = 1
MODE_RUN = 2
SIDE_UNKNOWN = 0
SIDE_LEFT = 1
SIDE_RIGHT = 2
N_STEP_COLS = 11  # time, side, activity, cadence, contact, flight, vo, drop, rot, tilt, braking
NB = 16  # ICs kept of the open bout (ring)

# per-IC columns of the bout table
_IC_N = 0
_IC_MODE = 1
_IC_SIDE = 2
_IC_TO = 3
_IC_TODONE = 4
_IC_EV = 5
_IC_EMITTED = 6
_IC_EVCNT = 7
_IC_BR = 8  # 1: IC predicted inside a bridged packet gap (its early stance is not measured)
_NC = 9

# float state
_ZF1 = 0
_ZF2 = 1
_ZS1 = 2
_ZS2 = 3
_XF_PREV = 4
_XS_PREV = 5
_D1 = 6
_D2 = 7
_UNL_MIN = 8
_CROSS_N = 9
_LAST_RUN_IC = 10
_PEND_N = 11
_PEND_P = 12
_LAST_WALK = 13
_EMA = 14
_SIDE_S = 15
_EV_SCALE = 16
_KOFS = 17
_TO_LEVEL = 18
_TOW_END = 19
_TOW_MIN = 20
_TOW_N = 21
_FLIGHT = 22  # flight level (g) of the flight before the current contact
_BRAKE = 23  # running mean of the early-stance AP acceleration (forward sign check)
_RC1 = 24  # last upward crossings of flight + (L, 2L, 4L) (sample index, fractional)
_RC2 = 25
_RC3 = 26
_FC1 = 27  # last downward crossings of flight + (L, 2L, 4L)
_FC2 = 28
_FC3 = 29
_WFWD = 30  # walking forward-sign statistic (AP acc before - after IC), forgetting per step
_EV_SCALE_W = 31  # running scale of the walking side evidence (ML acc)
_XF_PREV2 = 32  # x two samples back (quadratic crossing interpolation)
_MSJ = 33  # running mean square of the walking jerk (adaptive amplitude normalisation)
_ND1 = 34  # normalised jerk one / two samples back
_ND2 = 35
_BR_LO = 36  # last measured sample before the latest bridged stretch (resampler flag 2)
_BR_HI = 37  # last bridged sample of that stretch (BR_HI + 1 = first measured sample after it)
_PEND_D = 38  # raw jerk (g/s) of the pending walking candidate (acceptance score)
_NF = 39
# int state
_N = 0
_PHASE = 1  # running detector: 0 unloaded, 1 loaded
_BOUT = 2  # number of ICs in the open bout
_FIN = 3  # next step index (bout-local) to finalize
_PEND = 4  # walking candidate pending
_TOW = 5  # walking TO window open
_EVOPEN = 6  # side evidence window of the last IC open
_N_IC = 7
_N_STEPS = 8
_MAX_LAT = 9  # max IC report latency (samples)
_BOUT_START = 10  # first sample of the current stride segment (after a gap)
_RING_L = 11  # logical ring length: history reads reach back at most this many samples
_LAG = 12  # 1 while sample st[_N] is not in the ring yet: newest readable sample = _N - _LAG
_NI = 13


class GaitParams(NamedTuple):
    """Parameters of the gait kernel (units in the names)."""

    fc_fast_hz: float = 0.0  # low-pass of vertical force for running events (<= 0: none)
    fc_slow_hz: float = 3.0  # low-pass for the walking jerk detector
    #: running TO (and IC with ic_onset_fit) by the onset / power-law tail fit of the rigid pelvis
    #: (RIGID_PELVIS); False: single level crossings flight + ic_level_g / to_level_g plus the
    #: offsets, the rule for a skin-mounted sacral sensor (default)
    onset_fit: bool = False
    ic_onset_fit: bool = False  # with onset_fit: IC by the onset fit too (else single level)
    fit_level_g: float = 0.1  # L of the TO fit: crossings of flight + 4L, 2L, L (g)
    ic_fit_level_g: float = 0.1  # L of the IC onset crossings: flight + L, 2L, 4L (g)
    fit_max_p: float = 1.0  # exponent range [1, fit_max_p] of the fitted IC onset x ~ (t - t0)^p
    fit_max_p_to: float = 2.5  # same for the TO (end of loading, fitted backwards in time)
    ic_level_g: float = 0.5  # IC level above the flight minimum (g), single-level IC
    to_level_g: float = 0.1  # TO level above the flight minimum (g), onset_fit=False
    flight_max_g: float = 0.4  # a running flight must go below this (g)
    load_g: float = 1.2  # loaded phase confirmed above this (g)
    max_rise_s: float = 0.07  # crossing -> loaded confirmation at most this later (latency)
    min_contact_s: float = 0.06
    max_contact_s: float = 0.6
    run_ic_offset_s: float = -0.006  # added to running IC times (single-level IC: rise time)
    run_to_offset_s: float = -0.020  # added to running TO times (single level: sacral shoulder)
    walk_thr_gps: float = 1.5  # absolute minimum jerk peak (g/s), walk_norm_tau_s <= 0 only
    walk_rel: float = 0.0  # relative to the running mean of accepted peaks (0: off)
    walk_refractory_s: float = 0.25
    walk_norm_tau_s: float = 0.5  # jerk / its running RMS over this time (<= 0: raw jerk)
    walk_thr_norm: float = 0.5  # normalised jerk peak threshold (walk_norm_tau_s > 0): candidates
    walk_floor_gps: float = 0.2  # raw jerk floor of a normalised peak (rejects standing noise)
    # walking candidate acceptance (walk_accept): score = w_jerk ln(jerk peak, g/s) + w_norm
    # (normalised jerk peak) + w_vmax max(vertical acc, g, over [IC, now]) + w_apd (mean AP acc
    # over [IC - apd_pre, IC] - over [IC + apd_post, now], g) + w0 >= 0: logistic regression fitted
    # on mobgap (all 3 participants; leave-one-participant-out figures in docs/dsp.md).
    # walk_accept=False with walk_thr_norm=1.2, walk_floor_gps=0.5 is the previous detector.
    walk_accept: bool = True
    walk_w_jerk: float = 0.373
    walk_w_norm: float = 0.414
    walk_w_vmax: float = 3.352
    walk_w_apd: float = 5.785
    walk_w0: float = -0.795
    walk_apd_pre_s: float = 0.05
    walk_apd_post_s: float = 0.03
    walk_hold_s: float = 0.02  # report delay = 3 Hz low-pass group delay (75 ms) + hold
    walk_ic_offset_s: float = 0.0
    quad_cross: bool = True  # IC level crossings: quadratic through 3 samples (else linear)
    quad_cross_to: bool = False  # same for the TO crossings (measured: contact RMSE +0.3 ms)
    run_hold_s: float = 1.0  # walking detector is muted this long after a running IC
    min_step_s: float = 0.2
    max_step_run_s: float = 0.6
    max_step_walk_s: float = 1.4
    side_window_s: float = 0.09  # side evidence window after IC (= IC report delay)
    side_signal: int = SIG_OBLIQ  # side evidence = change of this signal over the window
    side_sign_walk: float = 1.0  # +1: leftward ML acc over the previous step = LEFT stance
    side_sign_run: float = 1.0  # same for running
    side_forget: float = 0.9  # per-step forgetting of the side accumulator
    brake_window_s: float = 0.05  # early-stance window of the forward-sign (braking) check
    brake_forget: float = 0.95  # per running step forgetting of the braking statistic
    walk_fwd_check: bool = False  # flip walking sides when the step-locked AP pattern says so
    walk_fwd_forget: float = 0.95  # per walking step forgetting of the walking forward-sign stat
    walk_side_forget: float = 0.3  # per-step forgetting of the walking side accumulator
    walk_side_max_s: float = 0.6  # walking side evidence: ML acc over [IC_k-1, IC_k), at most this
    bridge_min_s: float = 0.03  # bridged gaps (resampler flag 2) at least this long: IC predicted
    bridge_shape: bool = False  # refine it by the stance shape of the last steps (sim: worse)


#: Rigid pelvis (the previous default, follows the simulator's rigid sensor,
#: ``SensorConfig(sacral_soft_tissue=False)``): IC = onset extrapolated from the flight + 0.1 / 0.2 g
#: crossings, TO = power-law tail fit of the flight + 0.4 / 0.2 / 0.1 g crossings, no offsets.
RIGID_PELVIS = GaitParams(
    onset_fit=True, ic_onset_fit=True, run_ic_offset_s=0.0, run_to_offset_s=0.0
)

#: Sacral soft-tissue preset of the first session: the default's single level crossings with a 30 Hz
#: low-pass; levels / offsets calibrated by an earlier author on all Alcantara trials (real sacral
#: acc vs 0.1 BW force; re-fitted on one half the offsets are IC -6 / -7 ms, TO -25 / -22 ms).
SACRAL_SOFT_TISSUE = GaitParams(
    fc_fast_hz=30.0,
    onset_fit=False,
    ic_level_g=0.5,
    to_level_g=0.1,
    run_ic_offset_s=-0.006,
    run_to_offset_s=-0.020,
)


class GaitState(NamedTuple):
    """Complete kernel state (arrays, mutated in place and returned)."""

    f: NDArray[np.float64]
    i: NDArray[np.int64]
    ring: NDArray[np.float64]
    ics: NDArray[np.float64]


def _butter2_lowpass(fc_hz: float, fs_hz: float) -> NDArray[np.float64]:
    """2nd-order Butterworth low-pass [b0 b1 b2 a1 a2] by the prewarped bilinear transform.

    The same coefficients as ``scipy.signal.butter(2, fc_hz, fs=fs_hz)`` (tested), without importing
    scipy.signal (0.6 s of start-up for every ``imu`` command).
    """
    k = math.tan(math.pi * fc_hz / fs_hz)
    norm = 1.0 / (1.0 + math.sqrt(2.0) * k + k * k)
    b0 = k * k * norm
    return np.array(
        [b0, 2.0 * b0, b0, 2.0 * (k * k - 1.0) * norm, (1.0 - math.sqrt(2.0) * k + k * k) * norm]
    )


def gait_coefficients(sample_rate_hz: float, params: GaitParams) -> NDArray[np.float64]:
    """Biquad coefficients [b0 b1 b2 a1 a2] x (fast, slow) + DC group delays (samples)."""
    out = np.zeros(12)
    for idx, fc in enumerate((params.fc_fast_hz, params.fc_slow_hz)):
        if fc <= 0.0:  # no filtering (identity biquad, no delay)
            out[idx * 5] = 1.0
            continue
        fcc = min(fc, 0.3 * sample_rate_hz)
        out[idx * 5 : idx * 5 + 5] = _butter2_lowpass(fcc, sample_rate_hz)
        # DC group delay of a 2nd-order Butterworth: sqrt(2) / wc (analog prototype, prewarped)
        wc = 2.0 * sample_rate_hz * math.tan(math.pi * fcc / sample_rate_hz)
        out[10 + idx] = math.sqrt(2.0) / wc * sample_rate_hz
    return out


def gait_initial_state(sample_rate_hz: float, ring_s: float = 4.0) -> GaitState:
    """Fresh state; history reads reach back ``ring_s`` seconds (the logical ring length, kept in
    the int state); the physical ring is the next power of two (index = sample & (rows - 1))."""
    f = np.zeros(_NF)
    f[_EV_SCALE] = 0.0
    f[_LAST_RUN_IC] = -1e18
    f[_LAST_WALK] = -1e18
    f[_BR_LO] = -1e18
    f[_BR_HI] = -1e18
    n_ring = max(16, round(ring_s * sample_rate_hz))
    ring = np.zeros((1 << (n_ring - 1).bit_length(), N_SIG))
    ics = np.zeros((NB, _NC))
    st = np.zeros(_NI, dtype=np.int64)
    st[_RING_L] = n_ring
    return GaitState(f, st, ring, ics)


@njit(**NJIT_OPTS)
def _emit_event(ev: NDArray[np.float64], ne: int, t: float, kind: int, side: float) -> int:
    ev[ne, 0] = t
    ev[ne, 1] = kind
    ev[ne, 2] = side
    return ne + 1


@njit(**NJIT_OPTS)
def _time(f: NDArray[np.float64], n_frac: float, t0: float, fs: float) -> float:
    return t0 + (n_frac + f[_KOFS]) / fs


@njit(**NJIT_OPTS)
def _ring_mean(
    ring: NDArray[np.float64], col: int, a: float, b: float, lo: int, last: int, L: int
) -> float:
    """Mean of ``ring[:, col]`` over samples [ceil(a), floor(b)]; NaN unless all of them lie in
    [lo, last] and in the ring's logical history (last - L, last], ``last`` = newest written."""
    M = ring.shape[0] - 1  # physical rows - 1 (a power of two - 1)
    i0 = math.ceil(a)
    i1 = math.floor(b)
    if i1 < i0 or i0 < max(lo, last - L + 1) or i1 > last:
        return np.nan
    s = 0.0
    for i in range(i0, i1 + 1):
        s += ring[i & M, col]
    return s / (i1 - i0 + 1)


@njit(**NJIT_OPTS)
def _walk_score(
    n_ic: float,
    jerk_gps: float,
    jerk_norm: float,
    last: int,
    st: NDArray[np.int64],
    ring: NDArray[np.float64],
    p: GaitParams,
    fs: float,
) -> float:
    """Acceptance score of a walking candidate with IC at sample ``n_ic`` (fractional), raw jerk
    peak ``jerk_gps`` (normalised: ``jerk_norm``), decided at the newest written sample ``last``
    (end of the hold after the peak): a heel strike has a strong jerk peak, a high vertical
    acceleration right after it and a drop of the AP acceleration (the pelvis is decelerated).
    Logistic-regression weights in :class:`GaitParams` (>= 0: accept). Every read lies in
    [bout start, last] and in the ring's logical history; an AP window outside it contributes 0."""
    M = ring.shape[0] - 1
    L = st[_RING_L]
    lo = max(st[_BOUT_START], last - L + 1)
    vmax = 0.0
    i0 = max(math.ceil(n_ic), lo)
    if i0 <= last:
        vmax = -1e300
        for i in range(i0, last + 1):
            vmax = max(vmax, ring[i & M, SIG_F_V])
        vmax = vmax / G - 1.0
    m0 = _ring_mean(ring, SIG_A_AP, n_ic - p.walk_apd_pre_s * fs, n_ic, lo, last, L)
    m1 = _ring_mean(ring, SIG_A_AP, n_ic + p.walk_apd_post_s * fs, last, lo, last, L)
    apd = (m0 - m1) / G if math.isfinite(m0) and math.isfinite(m1) else 0.0
    return (
        p.walk_w_jerk * math.log(max(jerk_gps, 1e-6))
        + p.walk_w_norm * jerk_norm
        + p.walk_w_vmax * vmax
        + p.walk_w_apd * apd
        + p.walk_w0
    )


@njit(**NJIT_OPTS)
def _walk_side_evidence(
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    ring: NDArray[np.float64],
    ics: NDArray[np.float64],
    p: GaitParams,
    fs: float,
    j: int,
    last: int,
) -> None:
    """Walking side evidence of bout IC ``j`` (accumulated raw; the optional forward-sign check
    ``walk_fwd_check`` is applied at the decision, so it re-labels the whole bout consistently).
    Default: the forward sign of the orientation stage is trusted (right on all mobgap trials).

    * Forward sign (mobgap, lower back): the AP acceleration is high just before IC and drops
      sharply after it (the pelvis is decelerated at heel strike), so
      ``mean a_ap[IC - 50 ms, IC] - mean a_ap[IC + 50, IC + 150 ms] > 0`` for a correct forward
      axis (89 / 86 / 67 / 73 % of the steps on the correctly aligned trials, 0 / 33 % on the
      reversed ones, but 44 % on MS001 Test5 Trial2 and inverted on the simulator, hence off by
      default). Computed for IC_{j-1} (its post-IC window is complete), accumulated over all
      walking steps with forgetting.
    * Side: the mean ML acceleration over the previous step [IC_{j-1}, IC_j) points to the left
      (times the forward sign) before a LEFT contact: 94 % of single steps on mobgap with the
      reference ICs (the pelvis is pushed toward the next stance side during the previous step)."""
    lo = st[_BOUT_START]
    L = st[_RING_L]
    n_ic = ics[j % NB, _IC_N]
    if j >= 1:
        pn = ics[(j - 1) % NB, _IC_N]
        m0 = _ring_mean(ring, SIG_A_AP, pn - 0.05 * fs, pn, lo, last, L)
        m1 = _ring_mean(ring, SIG_A_AP, pn + 0.05 * fs, pn + 0.15 * fs, lo, last, L)
        if math.isfinite(m0) and math.isfinite(m1):
            f[_WFWD] = p.walk_fwd_forget * f[_WFWD] + (m0 - m1)
        a = max(pn, n_ic - p.walk_side_max_s * fs)
    else:
        a = n_ic - 0.45 * fs
    sh = p.walk_ic_offset_s * fs  # window on the detector's own timing (offset-independent)
    e = _ring_mean(ring, SIG_A_ML, a - sh, n_ic - 1.0 - sh, lo, last, L)
    if not math.isfinite(e):
        return
    ae = abs(e)
    if f[_EV_SCALE_W] <= 0.0:
        f[_EV_SCALE_W] = ae if ae > 0.0 else 1.0
    else:
        f[_EV_SCALE_W] += 0.05 * (ae - f[_EV_SCALE_W])
    par = 1.0 if j % 2 == 0 else -1.0
    f[_SIDE_S] = p.walk_side_forget * f[_SIDE_S] + par * e / max(f[_EV_SCALE_W], 1e-9)


@njit(**NJIT_OPTS)
def _close_evidence(
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    ring: NDArray[np.float64],
    ics: NDArray[np.float64],
    has_gyro: bool,
    p: GaitParams,
    ev: NDArray[np.float64],
    ne: int,
    t0: float,
    fs: float,
) -> int:
    """Side of the last IC from the accumulated alternating evidence; emit its IC event.

    Evidence = change of the side signal (obliquity) from IC to IC + window: the swing side
    drops in early stance, so obliquity rises during a LEFT stance. Its sign depends on the
    estimated forward axis (left = up x forward), so it is multiplied by the sign check of the
    early-stance braking (AP acceleration just after a running IC points backward). The evidence
    is accumulated over the bout with the alternation parity (one noisy step cannot flip it)."""
    j = st[_BOUT] - 1
    r = j % NB
    st[_EVOPEN] = 0
    side = SIDE_UNKNOWN
    M = ring.shape[0] - 1  # physical rows - 1 (a power of two - 1)
    L = st[_RING_L]
    # newest sample in the ring: the current one inside the sample loop, the one before it when a
    # bout is ended by a gap flag (the post-gap sample is not written yet) or at the end of input
    last = st[_N] - st[_LAG]
    n_ic = ics[r, _IC_N]
    lo = max(math.ceil(n_ic), last - L + 1, st[_BOUT_START])
    if ics[r, _IC_MODE] == MODE_RUN:
        # forward-sign check: mean AP acceleration over the first part of the contact
        hb = min(last, math.floor(n_ic + p.brake_window_s * fs))
        sb = 0.0
        cb = 0
        for i in range(lo, hb + 1):
            sb += ring[i & M, SIG_A_AP]
            cb += 1
        if cb > 0:
            f[_BRAKE] = p.brake_forget * f[_BRAKE] + sb / cb
    if has_gyro and ics[r, _IC_MODE] == MODE_WALK:
        _walk_side_evidence(f, st, ring, ics, p, fs, j, last)
        if f[_SIDE_S] != 0.0:
            par = 1.0 if j % 2 == 0 else -1.0
            sc = p.side_sign_walk * par * f[_SIDE_S]
            if p.walk_fwd_check and f[_WFWD] < 0.0:
                sc = -sc  # estimated forward axis points backward: left/right mirrored
            side = SIDE_LEFT if sc >= 0.0 else SIDE_RIGHT
    elif has_gyro:
        hi = min(last, math.floor(n_ic + p.side_window_s * fs))
        if hi > lo:
            v0 = ring[lo & M, p.side_signal]
            v1 = ring[hi & M, p.side_signal]
            e = v1 - v0
            if math.isfinite(e):
                if f[_BRAKE] > 0.0:
                    e = -e  # forward axis points backward: left/right mirrored
                ae = abs(e)
                if f[_EV_SCALE] <= 0.0:
                    f[_EV_SCALE] = ae if ae > 0.0 else 1.0
                else:
                    f[_EV_SCALE] += 0.05 * (ae - f[_EV_SCALE])
                par = 1.0 if j % 2 == 0 else -1.0
                f[_SIDE_S] = p.side_forget * f[_SIDE_S] + par * e / max(f[_EV_SCALE], 1e-9)
        if f[_SIDE_S] != 0.0:
            par = 1.0 if j % 2 == 0 else -1.0
            sgn = p.side_sign_run if ics[r, _IC_MODE] == MODE_RUN else p.side_sign_walk
            sc = sgn * par * f[_SIDE_S]
            side = SIDE_LEFT if sc >= 0.0 else SIDE_RIGHT
    ics[r, _IC_SIDE] = side
    ics[r, _IC_EMITTED] = 1.0
    lat = st[_N] - ics[r, _IC_N]
    st[_MAX_LAT] = max(st[_MAX_LAT], int(lat))
    st[_N_IC] += 1
    return _emit_event(ev, ne, _time(f, ics[r, _IC_N], t0, fs), 0, side)


@njit(**NJIT_OPTS)
def _step_metrics(
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    ring: NDArray[np.float64],
    ics: NDArray[np.float64],
    s: int,
    has_gyro: bool,
    fs: float,
    t0: float,
    out: NDArray[np.float64],
    ns: int,
) -> int:
    nb = st[_BOUT]
    M = ring.shape[0] - 1  # physical rows - 1 (a power of two - 1)
    L = st[_RING_L]
    now = st[_N]
    last = now - st[_LAG]  # newest sample in the ring (now or now - 1, see _close_evidence)
    a = ics[s % NB, _IC_N]
    b = ics[(s + 1) % NB, _IC_N]
    c = ics[s % NB, _IC_TO]
    side = ics[s % NB, _IC_SIDE]
    mode = ics[s % NB, _IC_MODE]
    # IC inside a bridged gap: the early stance (braking peak, pelvic drop peak) is a straight
    # line there, so neither is reported; contact time and the step time are
    ic_br = ics[s % NB, _IC_BR] != 0.0
    if mode == MODE_RUN and not c < b:
        # a running TO at or after the next IC is impossible: extrapolated from crossings on a
        # linearly bridged packet gap (the contact ended inside the gap). No contact/flight time,
        # braking or pelvic drop for this step; its drop window would reach unwritten samples.
        c = np.nan
    if s >= 1:
        sa = ics[(s - 1) % NB, _IC_N]
        sb = b
    elif nb >= s + 3:
        sa = a
        sb = ics[(s + 2) % NB, _IC_N]
    else:
        sa = a
        sb = b
    out[ns, 0] = _time(f, a, t0, fs)
    out[ns, 1] = side
    out[ns, 2] = mode
    out[ns, 3] = 60.0 * fs / (b - a)
    out[ns, 4] = (c - a) / fs
    out[ns, 5] = (b - c) / fs
    for q in range(6, N_STEP_COLS):
        out[ns, q] = np.nan
    i0 = math.ceil(a)
    i1 = math.floor(b)
    j0 = math.ceil(sa)
    j1 = math.floor(sb)
    if min(i0, j0) <= now - L or i1 <= i0 or i1 >= now or j1 >= now:
        return ns + 1
    dt = 1.0 / fs
    # vertical oscillation: double integration with per-step drift removal (periodic step)
    m = i1 - i0 + 1
    mean_a = 0.0
    for i in range(i0, i1 + 1):
        mean_a += ring[i & M, SIG_F_V]
    mean_a /= m
    vel = 0.0
    sum_v = 0.0
    for i in range(i0, i1 + 1):
        vel += (ring[i & M, SIG_F_V] - mean_a) * dt
        sum_v += vel
    mean_v = sum_v / m
    vel = 0.0
    z = 0.0
    zmin = 0.0
    zmax = 0.0
    for i in range(i0, i1 + 1):
        vel += (ring[i & M, SIG_F_V] - mean_a) * dt
        z += (vel - mean_v) * dt
        zmin = min(zmin, z)
        zmax = max(zmax, z)
    out[ns, 6] = zmax - zmin
    # braking: max of -a_ap over the first half of the contact
    if math.isfinite(c) and c > a and math.floor(a + 0.5 * (c - a)) <= last and not ic_br:
        e = math.floor(a + 0.5 * (c - a))
        br = -1e300
        for i in range(i0, max(e, i0) + 1):
            br = max(br, -ring[i & M, SIG_A_AP])
        out[ns, 10] = br
    if has_gyro:
        # pelvic drop relative to the stride mean obliquity
        mo = 0.0
        for i in range(j0, j1 + 1):
            mo += ring[i & M, SIG_OBLIQ]
        mo /= j1 - j0 + 1
        for i in range(min(i0, j0), max(i1, j1) + 1):
            if not (math.isfinite(ring[i & M, SIG_OBLIQ]) and math.isfinite(ring[i & M, SIG_YAW])):
                return ns + 1
        if math.isfinite(c) and side != SIDE_UNKNOWN and math.floor(c) <= last and not ic_br:
            sg = 1.0 if side == SIDE_LEFT else -1.0
            ce = math.floor(c)
            dmax = -1e300
            for i in range(i0, max(ce, i0) + 1):
                dmax = max(dmax, sg * (ring[i & M, SIG_OBLIQ] - mo))
            out[ns, 7] = dmax
        # rotation range after removing the stride yaw trend (gyro bias, turning)
        slope = (ring[j1 & M, SIG_YAW] - ring[j0 & M, SIG_YAW]) / max(j1 - j0, 1)
        ymin = 1e300
        ymax = -1e300
        tmin = 1e300
        tmax = -1e300
        for i in range(i0, i1 + 1):
            y = ring[i & M, SIG_YAW] - slope * i
            ymin = min(ymin, y)
            ymax = max(ymax, y)
            tl = ring[i & M, SIG_TILT]
            tmin = min(tmin, tl)
            tmax = max(tmax, tl)
        out[ns, 8] = ymax - ymin
        out[ns, 9] = tmax - tmin
    return ns + 1


@njit(**NJIT_OPTS)
def _try_finalize(
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    ring: NDArray[np.float64],
    ics: NDArray[np.float64],
    has_gyro: bool,
    fs: float,
    t0: float,
    ending: bool,
    out: NDArray[np.float64],
    ns: int,
) -> int:
    while st[_FIN] < st[_BOUT] - 1:
        s = st[_FIN]
        if ics[s % NB, _IC_TODONE] == 0.0 and not ending:
            break
        if s == 0 and st[_BOUT] < 3 and not ending:
            break
        if ics[s % NB, _IC_EMITTED] == 0.0:
            break
        ns = _step_metrics(f, st, ring, ics, s, has_gyro, fs, t0, out, ns)
        st[_FIN] = s + 1
        st[_N_STEPS] += 1
    return ns


@njit(**NJIT_OPTS)
def _end_bout(
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    ring: NDArray[np.float64],
    ics: NDArray[np.float64],
    has_gyro: bool,
    p: GaitParams,
    fs: float,
    t0: float,
    ev: NDArray[np.float64],
    ne: int,
    out: NDArray[np.float64],
    ns: int,
) -> tuple[int, int]:
    if st[_BOUT] > 0 and st[_EVOPEN] == 1:
        ne = _close_evidence(f, st, ring, ics, has_gyro, p, ev, ne, t0, fs)
    ns = _try_finalize(f, st, ring, ics, has_gyro, fs, t0, True, out, ns)
    st[_BOUT] = 0
    st[_FIN] = 0
    st[_TOW] = 0
    f[_SIDE_S] = 0.0
    return ne, ns


@njit(**NJIT_OPTS)
def _add_ic(
    n_ic: float,
    mode: int,
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    ring: NDArray[np.float64],
    ics: NDArray[np.float64],
    has_gyro: bool,
    p: GaitParams,
    fs: float,
    t0: float,
    ev: NDArray[np.float64],
    ne: int,
    out: NDArray[np.float64],
    ns: int,
) -> tuple[int, int]:
    nb = st[_BOUT]
    if nb > 0:
        r = (nb - 1) % NB
        dtp = (n_ic - ics[r, _IC_N]) / fs
        if dtp < p.min_step_s and not (mode == MODE_RUN and ics[r, _IC_MODE] == MODE_WALK):
            return ne, ns
        # (a running IC right after a walking IC, e.g. the first running contact after walking,
        # is kept: it ends the walking bout and starts a running one)
        mx = p.max_step_run_s if mode == MODE_RUN else p.max_step_walk_s
        if dtp > mx or ics[r, _IC_MODE] != mode:
            ne, ns = _end_bout(f, st, ring, ics, has_gyro, p, fs, t0, ev, ne, out, ns)
        else:
            if st[_EVOPEN] == 1:
                ne = _close_evidence(f, st, ring, ics, has_gyro, p, ev, ne, t0, fs)
            if mode == MODE_RUN:
                ics[r, _IC_TODONE] = 1.0  # TO of the previous step can no longer come
    nb = st[_BOUT]
    r = nb % NB
    ics[r, _IC_N] = n_ic
    ics[r, _IC_MODE] = mode
    ics[r, _IC_SIDE] = SIDE_UNKNOWN
    ics[r, _IC_TO] = np.nan
    ics[r, _IC_TODONE] = 0.0
    ics[r, _IC_EV] = 0.0
    ics[r, _IC_EVCNT] = 0.0
    ics[r, _IC_EMITTED] = 0.0
    ics[r, _IC_BR] = 0.0
    st[_BOUT] = nb + 1
    now = st[_N]
    wend = n_ic + p.side_window_s * fs
    st[_EVOPEN] = 1
    if now >= wend:
        ne = _close_evidence(f, st, ring, ics, has_gyro, p, ev, ne, t0, fs)
    ns = _try_finalize(f, st, ring, ics, has_gyro, fs, t0, False, out, ns)
    return ne, ns


@njit(**NJIT_OPTS)
def _shape_ic(
    ring: NDArray[np.float64], a: float, xe: float, ne: float, pred: float, lim: float
) -> float:
    """IC implied by the measured sample ``xe`` (g) at ``ne`` on the stance shape of the earlier
    step with IC ``a``: ``ne`` - (time after ``a`` at which that step's vertical force rose / fell
    through ``xe``); of the rising / falling candidates the one nearer ``pred``; NaN if none."""
    M = ring.shape[0] - 1
    best = np.nan
    i = math.floor(a) + 1
    v0 = ring[(i - 1) & M, SIG_F_V] / G
    while i <= a + lim:
        v1 = ring[i & M, SIG_F_V] / G
        if (v0 < xe <= v1) or (v0 >= xe > v1):
            c = i - 1 + (xe - v0) / (v1 - v0)
            cand = ne - (c - a)
            if not math.isfinite(best) or abs(cand - pred) < abs(best - pred):
                best = cand
        v0 = v1
        i += 1
    return best


@njit(**NJIT_OPTS)
def _bridged_ic(
    n_ic: float,
    lo: float,
    hi: float,
    xe: float,
    ne: float,
    st: NDArray[np.int64],
    ring: NDArray[np.float64],
    ics: NDArray[np.float64],
    p: GaitParams,
    fs: float,
) -> float:
    """IC whose onset lies in a bridged gap (lo, hi) (measured samples at both ends), confirmed at
    the measured sample ``xe`` (g, raw) at ``ne``. Prediction = last running IC + mean of the last
    (up to two) step times of the open running bout; refined by the stance shape of the last two
    steps (where their force passed ``xe``, averaged) when that agrees with the prediction within
    10 % of a step. Without history: the onset fit on the line (``n_ic``). Clipped to the gap."""
    nb = st[_BOUT]
    est = n_ic
    if nb >= 2:
        r1 = (nb - 1) % NB
        r2 = (nb - 2) % NB
        if ics[r1, _IC_MODE] == MODE_RUN and ics[r2, _IC_MODE] == MODE_RUN:
            dt = ics[r1, _IC_N] - ics[r2, _IC_N]
            if nb >= 3 and ics[(nb - 3) % NB, _IC_MODE] == MODE_RUN:
                dt = 0.5 * (ics[r1, _IC_N] - ics[(nb - 3) % NB, _IC_N])
            pred = ics[r1, _IC_N] + dt
            if dt <= p.max_step_run_s * fs and lo - 0.5 * dt < pred < hi + 0.5 * dt:
                est = pred
            if p.bridge_shape and est == pred:
                lim = min(p.max_contact_s * fs, ne - ics[r1, _IC_N] - 1.0)
                s = 0.0
                k = 0
                for r in (r1, r2):
                    c = _shape_ic(ring, ics[r, _IC_N], xe, ne, pred, lim)
                    if math.isfinite(c):
                        s += c
                        k += 1
                if k > 0 and abs(s / k - pred) <= 0.1 * dt:
                    est = s / k
    return min(max(est, lo), hi)


@njit(**NJIT_OPTS)
def _onset(c1: float, c2: float, c3: float, max_p: float) -> float:
    """Onset t0 of x ~ (t - t0)^p from its crossing times c1 < c2 < c3 of the levels L, 2L, 4L.

    (c3 - c2) / (c2 - c1) = 2^(1/p); p is clipped to [1, max_p] (p = 1: linear extrapolation).
    Falls back to c1 when the crossings are not ordered."""
    if c1 < -1e17:
        return c2 if c2 > -1e17 else c3
    d1 = c2 - c1
    d2 = c3 - c2
    if not (d1 > 0.0 and d2 > 0.0):
        return c1
    r = d2 / d1
    rmin = 2.0 ** (1.0 / max_p)
    r = min(max(r, rmin), 2.0)
    return c1 - d1 / (r - 1.0)


@njit(**NJIT_OPTS)
def _xcross(xpp: float, xp: float, xf: float, lev: float, quad: bool) -> float:
    """Fractional position in [0, 1] after sample n-1 where the signal crosses ``lev`` between
    samples n-1 (``xp``) and n (``xf``): root of the parabola through n-2, n-1, n (``quad``;
    reduces the interpolation error of curved onsets at 100 Hz), else / as fallback linear."""
    lin = (lev - xp) / (xf - xp)
    if not quad:
        return lin
    a = 0.5 * (xf - 2.0 * xp + xpp)
    b = 0.5 * (xf - xpp)
    c = xp - lev
    if abs(a) < 1e-12 * (abs(b) + 1e-300):
        return lin
    disc = b * b - 4.0 * a * c
    if disc < 0.0:
        return lin
    sq = math.sqrt(disc)
    best = lin
    dbest = 1e300
    for r in ((-b + sq) / (2.0 * a), (-b - sq) / (2.0 * a)):
        if 0.0 <= r <= 1.0 and abs(r - lin) < dbest:
            best = r
            dbest = abs(r - lin)
    return best


@njit(**NJIT_OPTS)
def _biquad(x: float, c: NDArray[np.float64], o: int, f: NDArray[np.float64], z: int) -> float:
    y = c[o] * x + f[z]
    f[z] = c[o + 1] * x - c[o + 3] * y + f[z + 1]
    f[z + 1] = c[o + 2] * x - c[o + 4] * y
    return y


@njit(**NJIT_OPTS)
def _biquad_reset(x: float, c: NDArray[np.float64], o: int, f: NDArray[np.float64], z: int) -> None:
    f[z + 1] = (c[o + 2] - c[o + 4]) * x
    f[z] = (c[o + 1] - c[o + 3]) * x + f[z + 1]


@njit(**NJIT_OPTS)
def _gait_kernel(
    sig: NDArray[np.float64],
    kidx: NDArray[np.int64],
    flag: NDArray[np.int8],
    has_gyro: bool,
    fs: float,
    t0: float,
    coef: NDArray[np.float64],
    p: GaitParams,
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    ring: NDArray[np.float64],
    ics: NDArray[np.float64],
    finish: bool,
) -> tuple[
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.float64],
    NDArray[np.int64],
    NDArray[np.float64],
    NDArray[np.float64],
]:
    n = sig.shape[0]
    M = ring.shape[0] - 1  # physical rows - 1 (a power of two - 1)
    min_step = max(1, int(p.min_step_s * fs))
    cap = 2 * (n // min_step) + 4 * NB + 8
    ev = np.empty((cap, 3))
    out = np.empty((cap, N_STEP_COLS))
    ne = 0
    ns = 0
    gdf = coef[10]
    gds = coef[11]
    for j in range(n):
        x = sig[j, SIG_F_V] / G
        cnt = st[_N]
        if flag[j] == 1 or cnt == 0:
            if st[_BOUT] > 0:
                st[_LAG] = 1  # sample cnt (after the gap) is not written yet
                ne, ns = _end_bout(f, st, ring, ics, has_gyro, p, fs, t0, ev, ne, out, ns)
                st[_LAG] = 0
            f[_KOFS] = kidx[j] - cnt
            st[_BOUT_START] = cnt
            _biquad_reset(x, coef, 0, f, _ZF1)
            _biquad_reset(x, coef, 5, f, _ZS1)
            f[_XF_PREV] = x
            f[_XF_PREV2] = x
            f[_XS_PREV] = x
            f[_D1] = 0.0
            f[_D2] = 0.0
            f[_ND1] = -1e9
            f[_ND2] = -1e9
            f[_UNL_MIN] = x
            f[_CROSS_N] = -1e18
            for q in range(3):
                f[_RC1 + q] = -1e18
                f[_FC1 + q] = -1e18
            st[_PHASE] = 0
            st[_PEND] = 0
        bridged = flag[j] == 2
        if bridged:
            if f[_BR_HI] != cnt - 1:
                f[_BR_LO] = cnt - 1
            f[_BR_HI] = cnt
        xf = _biquad(x, coef, 0, f, _ZF1)
        xs = _biquad(x, coef, 5, f, _ZS1)
        r = cnt & M
        for q in range(N_SIG):
            ring[r, q] = sig[j, q]
        # ---- side evidence window of the last IC closes -> IC event ---------------------
        if st[_EVOPEN] == 1:
            rr = (st[_BOUT] - 1) % NB
            if cnt >= ics[rr, _IC_N] + p.side_window_s * fs:
                ne = _close_evidence(f, st, ring, ics, has_gyro, p, ev, ne, t0, fs)
                ns = _try_finalize(f, st, ring, ics, has_gyro, fs, t0, False, out, ns)
        # ---- running detector ----------------------------------------------------------
        xp = f[_XF_PREV]
        xpp = f[_XF_PREV2]
        if st[_PHASE] == 0:
            f[_UNL_MIN] = min(f[_UNL_MIN], xf)
            base = max(f[_UNL_MIN], 0.0)
            lev = base + p.ic_level_g
            if xp < lev <= xf:
                f[_CROSS_N] = cnt - 1 + _xcross(xpp, xp, xf, lev, p.quad_cross)
            # onset crossings (flight + L, 2L, 4L): the IC fit (ic_onset_fit), the loaded-phase
            # confirmation and the bridged-gap test; the IC itself may be the single level
            ic_fit = p.onset_fit and p.ic_onset_fit
            if p.onset_fit:
                for q in range(3):
                    lq = base + p.ic_fit_level_g * (1 << q)
                    if xp < lq <= xf:
                        f[_RC1 + q] = cnt - 1 + _xcross(xpp, xp, xf, lq, p.quad_cross)
                c_ref = f[_RC3]
            else:
                c_ref = f[_CROSS_N]
            # onset crossing on a bridged line (lost packet): confirmed at the first measured
            # sample after the gap, the IC is predicted from the recent step times
            c_lo = f[_RC1] if p.onset_fit else f[_CROSS_N]
            br_hi1 = f[_BR_HI] + 1.0
            br_long = br_hi1 - f[_BR_LO] >= p.bridge_min_s * fs
            ic_br = br_long and f[_BR_LO] < c_lo < br_hi1
            # (no confirmation on a bridged sample: deferred to the gap end, so the rise time
            # counts from there when the onset crossing was on the line; relaxing this also for
            # crossings just before the gap: sim F1 0.9989 -> 0.9992 but IC p95 3.5 -> 3.6 ms)
            rise_ok = cnt - c_ref <= p.max_rise_s * fs or (
                ic_br and cnt - br_hi1 <= p.max_rise_s * fs
            )
            if xf > p.load_g and f[_UNL_MIN] < p.flight_max_g and rise_ok and not bridged:
                if ic_fit:
                    n_ic = _onset(f[_RC1], f[_RC2], f[_RC3], p.fit_max_p) - gdf
                else:
                    n_ic = f[_CROSS_N] - gdf
                n_ic += p.run_ic_offset_s * fs
                if ic_br:
                    n_ic = _bridged_ic(
                        n_ic, f[_BR_LO] - gdf, br_hi1 - gdf, x, cnt, st, ring, ics, p, fs
                    )
                st[_PHASE] = 1
                f[_FLIGHT] = base
                f[_TO_LEVEL] = base + (p.fit_level_g if p.onset_fit else p.to_level_g)
                f[_LAST_RUN_IC] = cnt
                st[_PEND] = 0
                for q in range(3):
                    f[_FC1 + q] = -1e18
                ne, ns = _add_ic(
                    n_ic, MODE_RUN, f, st, ring, ics, has_gyro, p, fs, t0, ev, ne, out, ns
                )
                rl = (st[_BOUT] - 1) % NB
                if ic_br and st[_BOUT] > 0 and ics[rl, _IC_N] == n_ic:
                    ics[rl, _IC_BR] = 1.0
        else:
            lev = f[_TO_LEVEL]
            if p.onset_fit:
                for q in range(1, 3):
                    lq = f[_FLIGHT] + p.fit_level_g * (1 << q)
                    if xf < lq <= xp:
                        f[_FC1 + q] = cnt - 1 + _xcross(xpp, xp, xf, lq, p.quad_cross_to)
            if xf < lev <= xp and st[_BOUT] > 0:
                rr = (st[_BOUT] - 1) % NB
                n_cr = cnt - 1 + _xcross(xpp, xp, xf, lev, p.quad_cross_to)
                if p.onset_fit:
                    n_to = -_onset(-n_cr, -f[_FC2], -f[_FC3], p.fit_max_p_to) - gdf
                else:
                    n_to = n_cr - gdf
                n_to += p.run_to_offset_s * fs
                # a TO extrapolated from crossings on a bridged line is not measured: none
                bl = f[_BR_LO]
                bh1 = f[_BR_HI] + 1.0
                to_br = bh1 - bl >= p.bridge_min_s * fs and (
                    (cnt - 1 >= bl and cnt <= bh1)
                    or (p.onset_fit and (bl < f[_FC2] < bh1 or bl < f[_FC3] < bh1))
                )
                if to_br:
                    n_to = np.nan
                if to_br or n_to - ics[rr, _IC_N] >= p.min_contact_s * fs:
                    st[_PHASE] = 0
                    f[_UNL_MIN] = xf
                    f[_CROSS_N] = -1e18
                    for q in range(3):
                        f[_RC1 + q] = -1e18
                    if ics[rr, _IC_MODE] == MODE_RUN and ics[rr, _IC_TODONE] == 0.0:
                        if st[_EVOPEN] == 1:
                            ne = _close_evidence(f, st, ring, ics, has_gyro, p, ev, ne, t0, fs)
                        ics[rr, _IC_TO] = n_to
                        ics[rr, _IC_TODONE] = 1.0
                        if not to_br:
                            ne = _emit_event(ev, ne, _time(f, n_to, t0, fs), 1, ics[rr, _IC_SIDE])
                        ns = _try_finalize(f, st, ring, ics, has_gyro, fs, t0, False, out, ns)
            elif cnt - f[_LAST_RUN_IC] > p.max_contact_s * fs:
                st[_PHASE] = 0
                f[_UNL_MIN] = xf
                f[_CROSS_N] = -1e18
                for q in range(3):
                    f[_RC1 + q] = -1e18
        f[_XF_PREV2] = f[_XF_PREV]
        f[_XF_PREV] = xf
        # ---- walking detector (vertical jerk peaks) -------------------------------------
        d0 = (xs - f[_XS_PREV]) * fs
        f[_XS_PREV] = xs
        d1 = f[_D1]
        d2 = f[_D2]
        if p.walk_norm_tau_s > 0.0:
            # jerk / its running RMS: the threshold follows the step amplitude (small shuffling
            # steps as well as brisk walking); a raw floor rejects standing noise
            if f[_MSJ] <= 0.0:
                f[_MSJ] = d0 * d0
            else:
                f[_MSJ] += (d0 * d0 - f[_MSJ]) / (p.walk_norm_tau_s * fs)
            n0 = d0 / math.sqrt(f[_MSJ] + 1e-12) if d0 > p.walk_floor_gps else -1e9
            n1 = f[_ND1]
            n2 = f[_ND2]
            f[_ND2] = n1
            f[_ND1] = n0
            thr_w = p.walk_thr_norm
        else:
            n0 = d0
            n1 = d1
            n2 = d2
            thr_w = p.walk_thr_gps
        # (stops at ~1e-300: subnormals ~1 h after the last walking peak cost +20 ns / sample)
        if f[_EMA] > 1e-300:
            f[_EMA] *= 1.0 - 1.0 / (5.0 * fs)
        running_active = cnt - f[_LAST_RUN_IC] < p.run_hold_s * fs
        if not running_active and n1 > n2 and n1 >= n0 and n1 > max(thr_w, p.walk_rel * f[_EMA]):
            den = d2 - 2.0 * d1 + d0
            dl = 0.5 * (d2 - d0) / den if den < 0.0 else 0.0
            npk = cnt - 1 + dl
            if st[_PEND] == 1:
                if npk - f[_PEND_N] < p.walk_refractory_s * fs and n1 > f[_PEND_P]:
                    f[_PEND_N] = npk
                    f[_PEND_P] = n1
                    f[_PEND_D] = d1
            elif npk - f[_LAST_WALK] > p.walk_refractory_s * fs:
                st[_PEND] = 1
                f[_PEND_N] = npk
                f[_PEND_P] = n1
                f[_PEND_D] = d1
        if running_active:
            st[_PEND] = 0
        if (
            st[_PEND] == 1
            and cnt - f[_PEND_N] >= p.walk_hold_s * fs
            and p.walk_accept
            and _walk_score(f[_PEND_N] - gds, f[_PEND_D], f[_PEND_P], cnt, st, ring, p, fs) < 0.0
        ):
            st[_PEND] = 0  # candidate rejected: no IC, no refractory
        if st[_PEND] == 1 and cnt - f[_PEND_N] >= p.walk_hold_s * fs:
            st[_PEND] = 0
            pk = f[_PEND_P]
            f[_EMA] = pk if f[_EMA] <= 0.0 else 0.8 * f[_EMA] + 0.2 * pk
            f[_LAST_WALK] = f[_PEND_N]
            n_ic = f[_PEND_N] - gds + p.walk_ic_offset_s * fs
            nb0 = st[_BOUT]
            ne, ns = _add_ic(
                n_ic, MODE_WALK, f, st, ring, ics, has_gyro, p, fs, t0, ev, ne, out, ns
            )
            if st[_BOUT] >= 2 and st[_BOUT] != nb0:
                # walking TO of the previous step: steepest fall of x after this IC
                rp = (st[_BOUT] - 2) % NB
                st[_TOW] = 1
                f[_TOW_END] = n_ic + 0.35 * (n_ic - ics[rp, _IC_N])
                f[_TOW_MIN] = 1e300
                f[_TOW_N] = np.nan
        f[_D2] = d1
        f[_D1] = d0
        if st[_TOW] == 1 and st[_BOUT] >= 2:
            if cnt - 1 - gds >= ics[(st[_BOUT] - 1) % NB, _IC_N] and d1 < f[_TOW_MIN]:
                f[_TOW_MIN] = d1
                f[_TOW_N] = cnt - 1 - gds
            if cnt - gds >= f[_TOW_END]:
                st[_TOW] = 0
                rp = (st[_BOUT] - 2) % NB
                if ics[rp, _IC_TODONE] == 0.0:
                    ics[rp, _IC_TO] = f[_TOW_N]
                    ics[rp, _IC_TODONE] = 1.0
                    if math.isfinite(f[_TOW_N]):
                        ne = _emit_event(ev, ne, _time(f, f[_TOW_N], t0, fs), 1, ics[rp, _IC_SIDE])
                    ns = _try_finalize(f, st, ring, ics, has_gyro, fs, t0, False, out, ns)
        # ---- bout timeout ----------------------------------------------------------------
        if st[_BOUT] > 0:
            rl = (st[_BOUT] - 1) % NB
            mx = p.max_step_run_s if ics[rl, _IC_MODE] == MODE_RUN else p.max_step_walk_s
            if cnt - ics[rl, _IC_N] > mx * fs + 1.0:
                ne, ns = _end_bout(f, st, ring, ics, has_gyro, p, fs, t0, ev, ne, out, ns)
        st[_N] = cnt + 1
    if finish and st[_BOUT] > 0:
        st[_LAG] = 1  # st[_N] = n: the newest sample is n - 1
        ne, ns = _end_bout(f, st, ring, ics, has_gyro, p, fs, t0, ev, ne, out, ns)
        st[_LAG] = 0
    return ev[:ne], out[:ns], f, st, ring, ics


def gait_events(
    sig: NDArray[np.float64],
    kidx: NDArray[np.int64],
    flag: NDArray[np.int8],
    *,
    has_gyro: bool,
    sample_rate_hz: float,
    t0: float = 0.0,
    params: GaitParams | None = None,
    state: GaitState | None = None,
    finish: bool = True,
) -> tuple[NDArray[np.float64], NDArray[np.float64], GaitState]:
    """Offline events + steps = one kernel call. Returns raw event rows (time, kind, side),
    step rows (N_STEP_COLS) and the state."""
    p = params if params is not None else GaitParams()
    s = state if state is not None else gait_initial_state(sample_rate_hz)
    coef = gait_coefficients(sample_rate_hz, p)
    ev, steps, f, i, ring, ics = _gait_kernel(
        np.ascontiguousarray(sig, dtype=np.float64),
        np.ascontiguousarray(kidx, dtype=np.int64),
        np.ascontiguousarray(flag, dtype=np.int8),
        has_gyro,
        float(sample_rate_hz),
        float(t0),
        coef,
        p,
        s.f,
        s.i,
        s.ring,
        s.ics,
        finish,
    )
    return ev, steps, GaitState(f, i, ring, ics)
