"""Mounting alignment (sensor -> pelvis axes) and pelvis orientation, one sequential kernel.

Per uniform sample:

* **Orientation (gyro available).** Quaternion ``q`` (sensor -> world, world z up) integrated from
  the bias-corrected gyro. Drift is corrected from gravity *averaged over the stride*: the world
  frame specific force ``a_w = R acc`` averages to ``g z`` over a stride, so the tilt error
  ``e = (a_w / g) x z`` is low-passed (``tau_err_s``, removes the step/stride oscillation) and fed
  back with a small proportional gain (Mahony-type PI on the world frame error, integral = gyro
  bias). The gain starts high (fast convergence from the first sample) and ramps down.
* **Orientation (accelerometer only).** Up = direction of the low-passed acc; angles are NaN.
* **Alignment.** Pelvis up in the sensor frame = running mean of the acc direction (gravity);
  forward = principal axis of the horizontal dynamic acceleration (AP braking/propulsion dominates
  at the step frequency); its sign from the phase between vertical and AP acceleration:
  ``E[a_v * d(a_ap)/dt] > 0`` in running (spring-mass: AP acc rises during the loaded phase) and
  ``< 0`` in walking (inverted pendulum). Left = up x forward. Confidence = anisotropy of the
  horizontal acceleration x strength of the sign correlation.

Output signals (columns of ``sig``): see the ``SIG_*`` constants.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np
from numba import njit
from numpy.typing import NDArray

from dsp._config import NJIT_OPTS

G = 9.80665
DEG = 180.0 / math.pi
RAD = math.pi / 180.0

SIG_F_V = 0  # vertical specific force along world up (m/s^2, gravity included)
SIG_A_AP = 1  # forward horizontal acceleration (m/s^2, no gravity)
SIG_A_ML = 2  # leftward horizontal acceleration (m/s^2)
SIG_OBLIQ = 3  # pelvis obliquity (deg), NaN without gyro
SIG_TILT = 4  # pelvis tilt (deg), NaN without gyro
SIG_YAW = 5  # pelvis yaw (deg, unwrapped, arbitrary zero), NaN without gyro
SIG_YAW_RATE = 6  # angular rate about world vertical (deg/s), NaN without gyro
SIG_ROLL_RATE = 7  # angular rate about the pelvis forward axis (deg/s), NaN without gyro
N_SIG = 8

# float state layout
_Q = 0  # 4
_BIAS = 4  # 3 (deg/s)
_ELP = 7  # 3
_GLP = 10  # 3 mean acc in sensor frame (gravity)
_C = 13  # 6 horizontal covariance xx xy xz yy yz zz
_W = 19  # 3 sign statistic
_DLP = 22  # 3 low-passed dynamic acc
_HPREV = 25  # 3
_AP = 28  # 3 pelvis forward axis in sensor frame
_ML = 31  # 3
_V = 34  # 3
_YAW_UNW = 37
_YHX = 38  # previous horizontal forward axis in the world (yaw increments)
_FLIGHT = 39
_T_INIT = 40  # seconds since (re)initialisation of the orientation
_VAR_AV = 41
_VAR_HD = 42
_ANIS = 43
_RHO = 44
_YHY = 45
_GPREV = 46  # 3 previous gyro sample (deg/s), trapezoidal integration
_NF = 49
# int state layout
_N = 0
_Q_INIT = 1
_AXES_OK = 2
_N_STAT = 3
_UPD = 4  # samples since the last axes update
_NCOR = 5  # samples since the last drift correction
_SCT = 6  # samples since the last alignment-statistics update
_NI = 7


class OrientParams(NamedTuple):
    """Parameters of the alignment / orientation kernel (units in the names)."""

    kp_init: float = 2.0  # 1/s, proportional gain right after (re)start
    kp_final: float = 0.2  # 1/s, steady-state gain (drift correction time constant 5 s)
    ramp_s: float = 6.0  # s, gain ramp duration
    ki: float = 0.01  # 1/s^2, gyro bias integral gain (after the ramp)
    tau_err_s: float = 0.3  # s, low-pass of the tilt error (averages out the stride oscillation)
    tau_mount_s: float = 30.0  # s, forgetting of the mounting statistics (running mean before)
    tau_gravity_s: float = 1.0  # s, low-pass of acc for the accelerometer-only up direction
    fc_stat_hz: float = 6.0  # Hz, low-pass of the dynamic acc used by the alignment statistics
    axes_every_s: float = 0.5  # s, how often the forward axis is re-estimated
    flight_g: float = 0.35  # specific force below this = flight (running indicator)
    rho_min: float = 0.03  # minimum |correlation| to set/flip the forward sign
    known_axes: bool = False  # True: use the given sensor axes, do not estimate the mounting
    correct_every_s: float = 0.02  # s, drift correction / renormalisation interval
    angle_warmup_s: float = 3.0  # s, pelvis angles are NaN this long after (re)initialisation
    rate_outputs: bool = True  # False: the yaw / roll rate columns of ``sig`` are not written


class OrientState(NamedTuple):
    """Complete kernel state (arrays, mutated in place and returned)."""

    f: NDArray[np.float64]
    i: NDArray[np.int64]


def orient_initial_state(
    ap_axis: NDArray[np.float64] | None = None, up_axis: NDArray[np.float64] | None = None
) -> OrientState:
    """Fresh state; ``ap_axis``/``up_axis`` (sensor frame) seed the mounting (used with known_axes)."""
    f = np.zeros(_NF)
    f[_Q] = 1.0
    ap = np.array([1.0, 0.0, 0.0]) if ap_axis is None else np.asarray(ap_axis, dtype=np.float64)
    up = np.array([0.0, 0.0, 1.0]) if up_axis is None else np.asarray(up_axis, dtype=np.float64)
    up = up / np.linalg.norm(up)
    ap = ap - np.dot(ap, up) * up
    ap = ap / np.linalg.norm(ap)
    f[_AP : _AP + 3] = ap
    f[_V : _V + 3] = up
    f[_ML : _ML + 3] = np.cross(up, ap)
    return OrientState(f, np.zeros(_NI, dtype=np.int64))


@njit(**NJIT_OPTS)
def _update_axes(f: NDArray[np.float64], st: NDArray[np.int64], rho_min: float) -> None:
    """Forward axis = principal horizontal direction of C, sign from W (keeps continuity)."""
    vx = f[_GLP]
    vy = f[_GLP + 1]
    vz = f[_GLP + 2]
    nv = math.sqrt(vx * vx + vy * vy + vz * vz)
    if nv < 1e-9:
        return
    vx /= nv
    vy /= nv
    vz /= nv
    f[_V] = vx
    f[_V + 1] = vy
    f[_V + 2] = vz
    # basis e1, e2 perpendicular to v (e1 from the previous forward axis for continuity)
    px = f[_AP]
    py = f[_AP + 1]
    pz = f[_AP + 2]
    d = px * vx + py * vy + pz * vz
    e1x = px - d * vx
    e1y = py - d * vy
    e1z = pz - d * vz
    n1 = math.sqrt(e1x * e1x + e1y * e1y + e1z * e1z)
    if n1 < 1e-6:
        # previous axis parallel to v: pick any perpendicular
        if abs(vx) < 0.9:
            e1x, e1y, e1z = 0.0, vz, -vy
        else:
            e1x, e1y, e1z = -vz, 0.0, vx
        n1 = math.sqrt(e1x * e1x + e1y * e1y + e1z * e1z)
    e1x /= n1
    e1y /= n1
    e1z /= n1
    e2x = vy * e1z - vz * e1y
    e2y = vz * e1x - vx * e1z
    e2z = vx * e1y - vy * e1x
    cxx = f[_C]
    cxy = f[_C + 1]
    cxz = f[_C + 2]
    cyy = f[_C + 3]
    cyz = f[_C + 4]
    czz = f[_C + 5]
    # c_ab = e_a^T C e_b
    c1x = cxx * e1x + cxy * e1y + cxz * e1z
    c1y = cxy * e1x + cyy * e1y + cyz * e1z
    c1z = cxz * e1x + cyz * e1y + czz * e1z
    c2x = cxx * e2x + cxy * e2y + cxz * e2z
    c2y = cxy * e2x + cyy * e2y + cyz * e2z
    c2z = cxz * e2x + cyz * e2y + czz * e2z
    c11 = e1x * c1x + e1y * c1y + e1z * c1z
    c12 = e1x * c2x + e1y * c2y + e1z * c2z
    c22 = e2x * c2x + e2y * c2y + e2z * c2z
    tr = c11 + c22
    if tr <= 0.0:
        return
    th = 0.5 * math.atan2(2.0 * c12, c11 - c22)
    ct = math.cos(th)
    sn = math.sin(th)
    ax = ct * e1x + sn * e2x
    ay = ct * e1y + sn * e2y
    az = ct * e1z + sn * e2z
    disc = math.sqrt(0.25 * (c11 - c22) ** 2 + c12 * c12)
    f[_ANIS] = 2.0 * disc / tr
    # sign: keep continuity with the previous axis (cos(th) >= 0 by construction), then the
    # physical sign statistic decides when it is strong enough
    wdot = ax * f[_W] + ay * f[_W + 1] + az * f[_W + 2]
    den = math.sqrt(f[_VAR_AV] * f[_VAR_HD])
    rho = wdot / den if den > 0.0 else 0.0
    if rho < -rho_min or (st[_AXES_OK] == 0 and rho < 0.0):
        ax = -ax
        ay = -ay
        az = -az
        rho = -rho
    f[_RHO] = rho
    f[_AP] = ax
    f[_AP + 1] = ay
    f[_AP + 2] = az
    f[_ML] = vy * az - vz * ay
    f[_ML + 1] = vz * ax - vx * az
    f[_ML + 2] = vx * ay - vy * ax
    st[_AXES_OK] = 1


# No libm asin/atan2 in the per-sample path: asin(x) = x + x^3 P(x^2) on |x| <= 0.5 (least-squares
# fit, max error 1.3e-13 rad measured on 1e6 points), evaluated by Estrin's scheme (short
# dependency chains, no division); the per-sample yaw increment is an atan series (|u| <= 0.125,
# error < 2e-15 rad). Larger arguments fall back to libm.
_AS = (
    0.16666666664549276,
    0.0750000051068772,
    0.0446424953938645,
    0.030393609661331585,
    0.022167976215232147,
    0.01945862607576175,
    0.0007736186694986959,
    0.061080379811747854,
    -0.09375609200017962,
    0.1043890704824853,
)


@njit(**NJIT_OPTS)
def _asin_deg(x: float) -> float:
    """asin(x) in degrees, x clamped to [-1, 1]."""
    if x > 0.5 or x < -0.5:
        return math.asin(min(1.0, max(-1.0, x))) * DEG
    z = x * x
    z2 = z * z
    z4 = z2 * z2
    z8 = z4 * z4
    p01 = _AS[0] + _AS[1] * z
    p23 = _AS[2] + _AS[3] * z
    p45 = _AS[4] + _AS[5] * z
    p67 = _AS[6] + _AS[7] * z
    p89 = _AS[8] + _AS[9] * z
    pz = (p01 + p23 * z2) + (p45 + p67 * z2) * z4 + p89 * z8
    return (x + x * z * pz) * DEG


@njit(**NJIT_OPTS)
def _atan2_small(y: float, x: float) -> float:
    """atan2(y, x) (rad); series for |y/x| <= 0.125 with x > 0 (per-sample yaw increments)."""
    if x > 0.0 and abs(y) <= 0.125 * x:
        u = y / x
        z = u * u
        z2 = z * z
        z4 = z2 * z2
        a = (1.0 - z * (1.0 / 3.0)) + z2 * ((1.0 / 5.0) - z * (1.0 / 7.0))
        b = ((1.0 / 9.0) - z * (1.0 / 11.0)) + z2 * (1.0 / 13.0)
        return u * (a + z4 * b)
    return math.atan2(y, x)


# The angle outputs are computed after the sequential loop, per sub-block of _SUB samples, in
# loops without loop-carried dependencies that LLVM vectorises (SIMD): the same IEEE operations
# in the same order as _asin_deg / _atan2_small, so the results are bit-identical to them; the
# rare arguments outside the series ranges are fixed up with libm afterwards. The NaN-free
# division / sqrt need error_model="numpy" (no ZeroDivisionError branch, which blocks SIMD);
# the selects keep every divisor non-zero anyway.
_SUB = 256
_VEC_OPTS = {**NJIT_OPTS, "error_model": "numpy"}


@njit(**_VEC_OPTS)
def _asin_deg_vec(x: NDArray[np.float64]) -> None:
    """``x[i] <- asin(x[i])`` in degrees, in place, polynomial of _asin_deg for all i (the
    arguments outside [-0.5, 0.5] are fixed up by the caller)."""
    for i in range(x.shape[0]):
        v = x[i]
        z = v * v
        z2 = z * z
        z4 = z2 * z2
        z8 = z4 * z4
        p01 = _AS[0] + _AS[1] * z
        p23 = _AS[2] + _AS[3] * z
        p45 = _AS[4] + _AS[5] * z
        p67 = _AS[6] + _AS[7] * z
        p89 = _AS[8] + _AS[9] * z
        pz = (p01 + p23 * z2) + (p45 + p67 * z2) * z4 + p89 * z8
        x[i] = (v + v * z * pz) * DEG


@njit(**_VEC_OPTS)
def _horizontal_acc_vec(
    fx: NDArray[np.float64],
    fy: NDArray[np.float64],
    a0: NDArray[np.float64],
    a1: NDArray[np.float64],
) -> None:
    """``a0, a1`` (world horizontal acc) <- AP, ML along the horizontal part of the world forward
    axis ``(fx, fy)[i + 1]``, in place."""
    for i in range(a0.shape[0]):
        hx = fx[i + 1]
        hy = fy[i + 1]
        hn2 = hx * hx + hy * hy
        big = hn2 > 1e-18
        ih = 1.0 / math.sqrt(hn2 if big else 1.0)
        hfx = hx * ih if big else 1.0
        hfy = hy * ih if big else 0.0
        u = a0[i]
        v = a1[i]
        a0[i] = u * hfx + v * hfy
        a1[i] = -u * hfy + v * hfx


@njit(**_VEC_OPTS)
def _yaw_inc_vec(
    fx: NDArray[np.float64], fy: NDArray[np.float64], inc: NDArray[np.float64]
) -> None:
    """``inc[i]`` = atan series of the yaw increment from ``(fx, fy)[i]`` to ``[i + 1]`` (as
    _atan2_small); NaN where the series does not apply (fixed up by the caller with libm)."""
    for i in range(inc.shape[0]):
        px = fx[i]
        py = fy[i]
        hx = fx[i + 1]
        hy = fy[i + 1]
        yy = px * hy - py * hx
        xx = px * hx + py * hy
        g = (xx > 0.0) & (abs(yy) <= 0.125 * xx)
        u = yy / (xx if g else 1.0)
        z = u * u
        z2 = z * z
        z4 = z2 * z2
        a = (1.0 - z * (1.0 / 3.0)) + z2 * ((1.0 / 5.0) - z * (1.0 / 7.0))
        b = ((1.0 / 9.0) - z * (1.0 / 11.0)) + z2 * (1.0 / 13.0)
        inc[i] = u * (a + z4 * b) if g else np.nan


@njit(**NJIT_OPTS)
def _angle_outputs(
    sig: NDArray[np.float64],
    j0: int,
    m: int,
    first: int,
    yaw_unw: float,
    fx: NDArray[np.float64],
    fy: NDArray[np.float64],
    lz: NDArray[np.float64],
    tz: NDArray[np.float64],
    ok: NDArray[np.bool_],
    a0: NDArray[np.float64],
    a1: NDArray[np.float64],
    inc: NDArray[np.float64],
) -> float:
    """Angles, AP / ML acc and yaw of ``sig[j0 : j0 + m]`` from the sequential loop's scratch:
    world forward axis ``(fx, fy)[i + 1]`` (``[0]`` = previous sample), up components ``lz`` of
    the left and ``tz`` = -(up component) of the forward axis, ``ok`` = angles valid, world
    horizontal acc ``a0, a1``; ``first`` = index of the stream's first sample (or -1).
    Returns the unwrapped yaw (rad)."""
    nan = np.nan
    ob = inc[m : 2 * m]
    tl = inc[2 * m : 3 * m]
    ob[:] = lz[:m]
    tl[:] = tz[:m]
    _asin_deg_vec(ob)
    _asin_deg_vec(tl)
    _horizontal_acc_vec(fx, fy, a0[:m], a1[:m])
    dy = inc[:m]
    _yaw_inc_vec(fx, fy, dy)
    for i in range(m):
        j = j0 + i
        sig[j, SIG_A_AP] = a0[i]
        sig[j, SIG_A_ML] = a1[i]
        if i == first:
            yaw_unw = math.atan2(fy[i + 1], fx[i + 1])
        else:
            d = dy[i]
            if math.isnan(d):
                hx = fx[i + 1]
                hy = fy[i + 1]
                d = math.atan2(fx[i] * hy - fy[i] * hx, fx[i] * hx + fy[i] * hy)
            yaw_unw += d
        if ok[i]:
            x = lz[i]
            sig[j, SIG_OBLIQ] = ob[i] if -0.5 <= x <= 0.5 else _asin_deg(x)
            x = tz[i]
            sig[j, SIG_TILT] = tl[i] if -0.5 <= x <= 0.5 else _asin_deg(x)
            sig[j, SIG_YAW] = yaw_unw * DEG
        else:
            sig[j, SIG_OBLIQ] = nan
            sig[j, SIG_TILT] = nan
            sig[j, SIG_YAW] = nan
    return yaw_unw


@njit(**NJIT_OPTS)
def _orient_kernel_seq(
    acc: NDArray[np.float64],
    gyr: NDArray[np.float64],
    flag: NDArray[np.int8],
    has_gyro: bool,
    fs: float,
    p: OrientParams,
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    sig: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Fills ``sig`` (n, N_SIG), allocated by the caller (numpy: huge pages for big arrays)."""
    n = acc.shape[0]
    dt = 1.0 / fs
    a_err = dt / p.tau_err_s
    a_grav = dt / p.tau_gravity_s
    a_mount = dt / p.tau_mount_s
    n_mount = 1.0 / a_mount  # running mean (1/(n+1)) until n + 1 reaches this, then forgetting
    n_grav = 1.0 / a_grav
    a_stat = 1.0 - math.exp(-2.0 * math.pi * p.fc_stat_hz * dt)
    a_flight = dt / 2.0
    every = max(1, round(p.axes_every_s * fs))
    known = p.known_axes
    flight_lvl = p.flight_g * G
    kp_final = p.kp_final
    kp_span = p.kp_init - p.kp_final
    inv_ramp = 1.0 / p.ramp_s
    every_c = max(1, round(p.correct_every_s * fs))
    every_s = max(1, round(fs / 100.0))  # alignment statistics at ~100 Hz
    fs_s = fs / every_s
    a_mount_s = a_mount * every_s
    n_mount_s = 1.0 / a_mount_s
    dt_c = every_c * dt
    kb_c = p.ki * dt_c * DEG
    warm = p.angle_warmup_s
    hdt = 0.5 * dt * RAD  # deg/s -> half rotation angle per sample (rad)
    nan = np.nan
    # ---- state -> registers (written back at the end; the kernel is sequential) -------------
    qw = f[_Q]
    qx = f[_Q + 1]
    qy = f[_Q + 2]
    qz = f[_Q + 3]
    bx = f[_BIAS]
    by = f[_BIAS + 1]
    bz = f[_BIAS + 2]
    ex = f[_ELP]
    ey = f[_ELP + 1]
    ez = f[_ELP + 2]
    gx = f[_GLP]
    gy = f[_GLP + 1]
    gz = f[_GLP + 2]
    c0 = f[_C]
    c1 = f[_C + 1]
    c2 = f[_C + 2]
    c3 = f[_C + 3]
    c4 = f[_C + 4]
    c5 = f[_C + 5]
    w0 = f[_W]
    w1 = f[_W + 1]
    w2 = f[_W + 2]
    d0 = f[_DLP]
    d1 = f[_DLP + 1]
    d2 = f[_DLP + 2]
    hp0 = f[_HPREV]
    hp1 = f[_HPREV + 1]
    hp2 = f[_HPREV + 2]
    apx = f[_AP]
    apy = f[_AP + 1]
    apz = f[_AP + 2]
    mlx = f[_ML]
    mly = f[_ML + 1]
    mlz = f[_ML + 2]
    vx = f[_V]
    vy = f[_V + 1]
    vz = f[_V + 2]
    yaw_unw = f[_YAW_UNW]
    yhx = f[_YHX]
    yhy = f[_YHY]
    gp0 = f[_GPREV]
    gp1 = f[_GPREV + 1]
    gp2 = f[_GPREV + 2]
    flight = f[_FLIGHT]
    ti = f[_T_INIT]
    var_av = f[_VAR_AV]
    var_hd = f[_VAR_HD]
    cnt = st[_N]
    q_init = st[_Q_INIT]
    axes_ok = st[_AXES_OK]
    n_stat = st[_N_STAT]
    upd = st[_UPD]
    ncor = st[_NCOR]
    sct = st[_SCT]
    rates = p.rate_outputs
    # scratch of one sub-block for _angle_outputs ([0] of fx / fy: the previous sample)
    msub = min(n, _SUB) if has_gyro else 0
    s_fx = np.empty(msub + 1)
    s_fy = np.empty(msub + 1)
    s_lz = np.empty(msub)
    s_tz = np.empty(msub)
    s_ok = np.empty(msub, dtype=np.bool_)
    s_a0 = np.empty(msub)
    s_a1 = np.empty(msub)
    s_inc = np.empty(3 * msub)
    j0 = 0
    while j0 < n:
        j1 = min(n, j0 + _SUB)
        first = -1
        if has_gyro:
            s_fx[0] = yhx
            s_fy[0] = yhy
        for j in range(j0, j1):
            ax = acc[j, 0]
            ay = acc[j, 1]
            az = acc[j, 2]
            # ---- gravity in the sensor frame (running mean, then exponential forgetting) ----------
            if known:
                if cnt == 0:
                    axes_ok = 1
                    gx = vx * G
                    gy = vy * G
                    gz = vz * G
            else:
                al = 1.0 / (cnt + 1.0) if cnt + 1.0 < n_mount else a_mount
                gx += al * (ax - gx)
                gy += al * (ay - gy)
                gz += al * (az - gz)
                if cnt == 0:
                    ng = math.sqrt(gx * gx + gy * gy + gz * gz)
                    if ng > 1e-9:
                        vx = gx / ng
                        vy = gy / ng
                        vz = gz / ng
            # ---- orientation ---------------------------------------------------------------
            if has_gyro:
                restart = q_init == 0 or flag[j] == 1
                if restart:
                    # tilt from this sample's acc, yaw 0 (q rotates acc onto +z)
                    na = math.sqrt(ax * ax + ay * ay + az * az)
                    if na > 1e-6:
                        ux = ax / na
                        uy = ay / na
                        uz = az / na
                        if uz > -0.999999:
                            qw = 1.0 + uz
                            qx = uy
                            qy = -ux
                            qz = 0.0
                        else:
                            qw, qx, qy, qz = 0.0, 1.0, 0.0, 0.0
                        nq = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
                        qw /= nq
                        qx /= nq
                        qy /= nq
                        qz /= nq
                        q_init = 1
                        ti = 0.0
                        ex = 0.0
                        ey = 0.0
                g0 = gyr[j, 0]
                g1 = gyr[j, 1]
                g2 = gyr[j, 2]
                if restart:
                    gp0 = g0
                    gp1 = g1
                    gp2 = g2
                gxr = g0 - bx
                gyr_ = g1 - by
                gzr = g2 - bz
                # body-rate integration over [t_j-1, t_j]: q <- q * exp(w dt / 2) with the mean of the
                # two rate samples (trapezoid: no half-sample lag) and exp to second order
                hx = hdt * (0.5 * (g0 + gp0) - bx)
                hy = hdt * (0.5 * (g1 + gp1) - by)
                hz = hdt * (0.5 * (g2 + gp2) - bz)
                gp0 = g0
                gp1 = g1
                gp2 = g2
                h0 = 1.0 - 0.5 * (hx * hx + hy * hy + hz * hz)
                nw = qw * h0 - qx * hx - qy * hy - qz * hz
                nx = qx * h0 + qw * hx + qy * hz - qz * hy
                ny = qy * h0 + qw * hy - qx * hz + qz * hx
                nz = qz * h0 + qw * hz + qx * hy - qy * hx
                qw = nw
                qx = nx
                qy = ny
                qz = nz
                ncor += 1
                if ncor >= every_c:
                    # drift correction every ``correct_every_s`` (keeps the per-sample dependency
                    # chain short): world tilt correction [1, kp e T / 2] (left multiply) with the
                    # stride-averaged error e = LP((a_w / g) x z), the bias integral, exact renormalisation
                    ncor = 0
                    ramp = max(1.0 - ti * inv_ramp, 0.0)
                    kp = kp_final + kp_span * ramp
                    cx = 0.5 * kp * dt_c * ex
                    cy = 0.5 * kp * dt_c * ey
                    qw = nw - cx * nx - cy * ny
                    qx = nx + cx * nw + cy * nz
                    qy = ny + cy * nw - cx * nz
                    qz = nz + cx * ny - cy * nx
                    nq = 1.0 / math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
                    qw *= nq
                    qx *= nq
                    qy *= nq
                    qz *= nq
                    if ramp == 0.0:
                        # b -= ki T R^T e (deg/s), R^T e from the (unit) quaternion
                        e0 = (1.0 - 2.0 * (qy * qy + qz * qz)) * ex + 2.0 * (qx * qy + qw * qz) * ey
                        e1 = 2.0 * (qx * qy - qw * qz) * ex + (1.0 - 2.0 * (qx * qx + qz * qz)) * ey
                        e2 = 2.0 * (qx * qz + qw * qy) * ex + 2.0 * (qy * qz - qw * qx) * ey
                        bx -= kb_c * e0
                        by -= kb_c * e1
                        bz -= kb_c * e2
                # rotation matrix of the (not renormalised) q, homogeneous form R |q|^2, scaled by
                # 1/|q|^2 ~ 2 - |q|^2 (|q|^2 - 1 = O(every_c |w dt / 2|^2), residual its square)
                sww = qw * qw
                sxx = qx * qx
                syy = qy * qy
                szz = qz * qz
                sc = 2.0 - (sww + sxx + syy + szz)
                s2 = 2.0 * sc
                r00 = (sww + sxx - syy - szz) * sc
                r11 = (sww - sxx + syy - szz) * sc
                r22 = (sww - sxx - syy + szz) * sc
                xy = qx * qy
                xz = qx * qz
                yz = qy * qz
                wx_ = qw * qx
                wy_ = qw * qy
                wz_ = qw * qz
                r01 = (xy - wz_) * s2
                r02 = (xz + wy_) * s2
                r10 = (xy + wz_) * s2
                r12 = (yz - wx_) * s2
                r20 = (xz - wy_) * s2
                r21 = (yz + wx_) * s2
                aw0 = r00 * ax + r01 * ay + r02 * az
                aw1 = r10 * ax + r11 * ay + r12 * az
                fv = r20 * ax + r21 * ay + r22 * az
                ex += a_err * (aw1 * (1.0 / G) - ex)
                ey += a_err * (-aw0 * (1.0 / G) - ey)
                ti += dt
                wx = gxr
                wy = gyr_
                wz = gzr
            else:
                ag = 1.0 / (cnt + 1.0) if cnt + 1.0 < n_grav else a_grav
                ex += ag * (ax - ex)
                ey += ag * (ay - ey)
                ez += ag * (az - ez)
                if known:
                    upx = vx
                    upy = vy
                    upz = vz
                else:
                    ng = math.sqrt(ex * ex + ey * ey + ez * ez)
                    if ng > 1e-9:
                        upx = ex / ng
                        upy = ey / ng
                        upz = ez / ng
                    else:
                        upx, upy, upz = 0.0, 0.0, 1.0
                fv = ax * upx + ay * upy + az * upz
                r00 = r01 = r02 = r10 = r11 = r12 = r20 = r21 = r22 = 0.0
                aw0 = aw1 = 0.0
                wx = wy = wz = 0.0
            # ---- running indicator (flight = specific force near 0) ----------------------------
            fl = 1.0 if fv < flight_lvl else 0.0
            flight += a_flight * (fl - flight)
            flight = flight if flight > 1e-300 else 0.0  # (no subnormals, read only as > 0.03)
            # ---- alignment statistics (vertical v refreshed with the axes) -------------------
            if not known:
                dx = ax - gx
                dy = ay - gy
                dz = az - gz
                d0 += a_stat * (dx - d0)
                d1 += a_stat * (dy - d1)
                d2 += a_stat * (dz - d2)
                sct += 1
                if sct >= every_s:
                    # statistics at ~100 Hz (every_s samples): the 6 Hz low-passed input does not
                    # need more, the derivative is taken over the same interval
                    sct = 0
                    av = d0 * vx + d1 * vy + d2 * vz
                    hx_ = d0 - av * vx
                    hy_ = d1 - av * vy
                    hz_ = d2 - av * vz
                    if cnt > 0:
                        am = 1.0 / (n_stat + 1.0) if n_stat + 1.0 < n_mount_s else a_mount_s
                        n_stat += 1
                        c0 += am * (hx_ * hx_ - c0)
                        c1 += am * (hx_ * hy_ - c1)
                        c2 += am * (hx_ * hz_ - c2)
                        c3 += am * (hy_ * hy_ - c3)
                        c4 += am * (hy_ * hz_ - c4)
                        c5 += am * (hz_ * hz_ - c5)
                        sav = av if flight > 0.03 else -av  # running: +, walking: -
                        hdx = (hx_ - hp0) * fs_s
                        hdy = (hy_ - hp1) * fs_s
                        hdz = (hz_ - hp2) * fs_s
                        w0 += am * (sav * hdx - w0)
                        w1 += am * (sav * hdy - w1)
                        w2 += am * (sav * hdz - w2)
                        var_av += am * (av * av - var_av)
                        var_hd += am * (hdx * hdx + hdy * hdy + hdz * hdz - var_hd)
                    hp0 = hx_
                    hp1 = hy_
                    hp2 = hz_
                upd += 1
                if upd >= every:
                    upd = 0
                    f[_GLP] = gx
                    f[_GLP + 1] = gy
                    f[_GLP + 2] = gz
                    f[_C] = c0
                    f[_C + 1] = c1
                    f[_C + 2] = c2
                    f[_C + 3] = c3
                    f[_C + 4] = c4
                    f[_C + 5] = c5
                    f[_W] = w0
                    f[_W + 1] = w1
                    f[_W + 2] = w2
                    f[_VAR_AV] = var_av
                    f[_VAR_HD] = var_hd
                    st[_AXES_OK] = axes_ok
                    _update_axes(f, st, p.rho_min)
                    axes_ok = st[_AXES_OK]
                    vx = f[_V]
                    vy = f[_V + 1]
                    vz = f[_V + 2]
                    # this sample's horizontal part in the new vertical: the next derivative
                    # (sign statistic) must not see the change of v as a step
                    av = d0 * vx + d1 * vy + d2 * vz
                    hp0 = d0 - av * vx
                    hp1 = d1 - av * vy
                    hp2 = d2 - av * vz
                    apx = f[_AP]
                    apy = f[_AP + 1]
                    apz = f[_AP + 2]
                    mlx = f[_ML]
                    mly = f[_ML + 1]
                    mlz = f[_ML + 2]
            # ---- outputs -------------------------------------------------------------------
            sig[j, SIG_F_V] = fv
            if has_gyro:
                # pelvis forward / left axes in the world
                fwx = r00 * apx + r01 * apy + r02 * apz
                fwy = r10 * apx + r11 * apy + r12 * apz
                fwz = r20 * apx + r21 * apy + r22 * apz
                lwz = r20 * mlx + r21 * mly + r22 * mlz
                # angles, AP / ML and yaw (unwrapped by per-sample increments): _angle_outputs
                i = j - j0
                if cnt == 0:
                    first = i
                s_fx[i + 1] = fwx
                s_fy[i + 1] = fwy
                s_lz[i] = lwz
                s_tz[i] = -fwz
                s_ok[i] = not (ti < warm or axes_ok == 0)
                s_a0[i] = aw0
                s_a1[i] = aw1
                if rates:
                    sig[j, SIG_YAW_RATE] = r20 * wx + r21 * wy + r22 * wz
                    sig[j, SIG_ROLL_RATE] = wx * apx + wy * apy + wz * apz
            else:
                dx = ax - gx
                dy = ay - gy
                dz = az - gz
                sig[j, SIG_A_AP] = dx * apx + dy * apy + dz * apz
                sig[j, SIG_A_ML] = dx * mlx + dy * mly + dz * mlz
                sig[j, SIG_OBLIQ] = nan
                sig[j, SIG_TILT] = nan
                sig[j, SIG_YAW] = nan
                sig[j, SIG_YAW_RATE] = nan
                sig[j, SIG_ROLL_RATE] = nan
            cnt += 1
        if has_gyro:
            m = j1 - j0
            yaw_unw = _angle_outputs(
                sig, j0, m, first, yaw_unw, s_fx, s_fy, s_lz, s_tz, s_ok, s_a0, s_a1, s_inc
            )
            yhx = s_fx[m]
            yhy = s_fy[m]
        j0 = j1
    # ---- registers -> state --------------------------------------------------------------
    f[_Q] = qw
    f[_Q + 1] = qx
    f[_Q + 2] = qy
    f[_Q + 3] = qz
    f[_BIAS] = bx
    f[_BIAS + 1] = by
    f[_BIAS + 2] = bz
    f[_ELP] = ex
    f[_ELP + 1] = ey
    f[_ELP + 2] = ez
    f[_GLP] = gx
    f[_GLP + 1] = gy
    f[_GLP + 2] = gz
    f[_C] = c0
    f[_C + 1] = c1
    f[_C + 2] = c2
    f[_C + 3] = c3
    f[_C + 4] = c4
    f[_C + 5] = c5
    f[_W] = w0
    f[_W + 1] = w1
    f[_W + 2] = w2
    f[_DLP] = d0
    f[_DLP + 1] = d1
    f[_DLP + 2] = d2
    f[_HPREV] = hp0
    f[_HPREV + 1] = hp1
    f[_HPREV + 2] = hp2
    f[_AP] = apx
    f[_AP + 1] = apy
    f[_AP + 2] = apz
    f[_ML] = mlx
    f[_ML + 1] = mly
    f[_ML + 2] = mlz
    f[_V] = vx
    f[_V + 1] = vy
    f[_V + 2] = vz
    f[_YAW_UNW] = yaw_unw
    f[_YHX] = yhx
    f[_YHY] = yhy
    f[_GPREV] = gp0
    f[_GPREV + 1] = gp1
    f[_GPREV + 2] = gp2
    f[_FLIGHT] = flight
    f[_T_INIT] = ti
    f[_VAR_AV] = var_av
    f[_VAR_HD] = var_hd
    st[_N] = cnt
    st[_Q_INIT] = q_init
    st[_AXES_OK] = axes_ok
    st[_N_STAT] = n_stat
    st[_UPD] = upd
    st[_NCOR] = ncor
    st[_SCT] = sct
    return sig, f, st


@njit(**_VEC_OPTS)
def _axis_outputs(
    r: NDArray[np.float64],
    i0: int,
    i1: int,
    apx: float,
    apy: float,
    apz: float,
    mlx: float,
    mly: float,
    mlz: float,
    fx: NDArray[np.float64],
    fy: NDArray[np.float64],
    lz: NDArray[np.float64],
    tz: NDArray[np.float64],
) -> None:
    """Pelvis forward / left axes in the world from the per-sample rotation ``r`` (9, m) and
    the mounting axes (constant over [i0, i1))."""
    for i in range(i0, i1):
        fx[i + 1] = r[0, i] * apx + r[1, i] * apy + r[2, i] * apz
        fy[i + 1] = r[3, i] * apx + r[4, i] * apy + r[5, i] * apz
        tz[i] = -(r[6, i] * apx + r[7, i] * apy + r[8, i] * apz)
        lz[i] = r[6, i] * mlx + r[7, i] * mly + r[8, i] * mlz


@njit(**_VEC_OPTS)
def _rotation_vec(q: NDArray[np.float64], m: int, r: NDArray[np.float64]) -> None:
    """``r[:, i]`` = rotation matrix (row-major) of the quaternion ``q[:, i]``, i < m, by the
    operations of the sequential kernel (homogeneous form scaled by ``2 - |q|^2``)."""
    for i in range(m):
        qw = q[0, i]
        qx = q[1, i]
        qy = q[2, i]
        qz = q[3, i]
        sww = qw * qw
        sxx = qx * qx
        syy = qy * qy
        szz = qz * qz
        sc = 2.0 - (sww + sxx + syy + szz)
        s2 = 2.0 * sc
        xy = qx * qy
        xz = qx * qz
        yz = qy * qz
        wx_ = qw * qx
        wy_ = qw * qy
        wz_ = qw * qz
        r[0, i] = (sww + sxx - syy - szz) * sc
        r[1, i] = (xy - wz_) * s2
        r[2, i] = (xz + wy_) * s2
        r[3, i] = (xy + wz_) * s2
        r[4, i] = (sww - sxx + syy - szz) * sc
        r[5, i] = (yz - wx_) * s2
        r[6, i] = (xz - wy_) * s2
        r[7, i] = (yz + wx_) * s2
        r[8, i] = (sww - sxx - syy + szz) * sc


@njit(**NJIT_OPTS)
def _orient_gyro(
    acc: NDArray[np.float64],
    gyr: NDArray[np.float64],
    flag: NDArray[np.int8],
    fs: float,
    p: OrientParams,
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    sig: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """The gyro case of :func:`_orient_kernel_seq` split into passes (bit-identical results).

    Per segment (at most ``_SUB`` samples, ending at the next axes update): (1) the orientation
    loop (quaternion, drift correction, the two rows of R the tilt error needs) keeps the
    per-sample quaternion and rate in scratch, the rotation matrices follow in a SIMD pass; (2) the alignment-statistics loop (gravity, flight indicator, dynamic
    acc, covariance / sign statistics, axes update at the segment's last sample); (3) the
    axis-dependent outputs with the axes valid at each sample (SIMD); (4) _angle_outputs.
    Each loop carries fewer values than the single loop (fewer register spills) and the
    non-recursive parts vectorise.
    """
    n = acc.shape[0]
    dt = 1.0 / fs
    a_err = dt / p.tau_err_s
    a_mount = dt / p.tau_mount_s
    n_mount = 1.0 / a_mount  # running mean (1/(n+1)) until n + 1 reaches this, then forgetting
    a_stat = 1.0 - math.exp(-2.0 * math.pi * p.fc_stat_hz * dt)
    a_flight = dt / 2.0
    every = max(1, round(p.axes_every_s * fs))
    known = p.known_axes
    flight_lvl = p.flight_g * G
    kp_final = p.kp_final
    kp_span = p.kp_init - p.kp_final
    inv_ramp = 1.0 / p.ramp_s
    every_c = max(1, round(p.correct_every_s * fs))
    every_s = max(1, round(fs / 100.0))  # alignment statistics at ~100 Hz
    fs_s = fs / every_s
    a_mount_s = a_mount * every_s
    n_mount_s = 1.0 / a_mount_s
    dt_c = every_c * dt
    kb_c = p.ki * dt_c * DEG
    warm = p.angle_warmup_s
    hdt = 0.5 * dt * RAD  # deg/s -> half rotation angle per sample (rad)
    # ---- state -> registers (written back at the end; the kernel is sequential) -------------
    qw = f[_Q]
    qx = f[_Q + 1]
    qy = f[_Q + 2]
    qz = f[_Q + 3]
    bx = f[_BIAS]
    by = f[_BIAS + 1]
    bz = f[_BIAS + 2]
    ex = f[_ELP]
    ey = f[_ELP + 1]
    ez = f[_ELP + 2]
    gx = f[_GLP]
    gy = f[_GLP + 1]
    gz = f[_GLP + 2]
    c0 = f[_C]
    c1 = f[_C + 1]
    c2 = f[_C + 2]
    c3 = f[_C + 3]
    c4 = f[_C + 4]
    c5 = f[_C + 5]
    w0 = f[_W]
    w1 = f[_W + 1]
    w2 = f[_W + 2]
    d0 = f[_DLP]
    d1 = f[_DLP + 1]
    d2 = f[_DLP + 2]
    hp0 = f[_HPREV]
    hp1 = f[_HPREV + 1]
    hp2 = f[_HPREV + 2]
    apx = f[_AP]
    apy = f[_AP + 1]
    apz = f[_AP + 2]
    mlx = f[_ML]
    mly = f[_ML + 1]
    mlz = f[_ML + 2]
    vx = f[_V]
    vy = f[_V + 1]
    vz = f[_V + 2]
    yaw_unw = f[_YAW_UNW]
    yhx = f[_YHX]
    yhy = f[_YHY]
    gp0 = f[_GPREV]
    gp1 = f[_GPREV + 1]
    gp2 = f[_GPREV + 2]
    flight = f[_FLIGHT]
    ti = f[_T_INIT]
    var_av = f[_VAR_AV]
    var_hd = f[_VAR_HD]
    cnt = st[_N]
    q_init = st[_Q_INIT]
    axes_ok = st[_AXES_OK]
    n_stat = st[_N_STAT]
    upd = st[_UPD]
    ncor = st[_NCOR]
    sct = st[_SCT]
    rates = p.rate_outputs
    msub = min(n, _SUB)
    s_fx = np.empty(msub + 1)
    s_fy = np.empty(msub + 1)
    s_lz = np.empty(msub)
    s_tz = np.empty(msub)
    s_ok = np.empty(msub, dtype=np.bool_)
    s_tok = np.empty(msub, dtype=np.bool_)
    s_a0 = np.empty(msub)
    s_a1 = np.empty(msub)
    s_inc = np.empty(3 * msub)
    s_r = np.empty((9, msub))
    s_w = np.empty((3, msub))
    s_q = np.empty((4, msub))
    j0 = 0
    while j0 < n:
        # segment: up to _SUB samples, ending at the next axes update (its last sample)
        j1 = min(n, j0 + _SUB)
        if not known:
            j1 = min(j1, j0 + every - upd)
        m = j1 - j0
        first = -1
        if known and cnt == 0:
            axes_ok = 1
            gx = vx * G
            gy = vy * G
            gz = vz * G
        c_start = cnt
        # ---- (1) orientation -----------------------------------------------------------
        for j in range(j0, j1):
            ax = acc[j, 0]
            ay = acc[j, 1]
            az = acc[j, 2]
            restart = q_init == 0 or flag[j] == 1
            if restart:
                # tilt from this sample's acc, yaw 0 (q rotates acc onto +z)
                na = math.sqrt(ax * ax + ay * ay + az * az)
                if na > 1e-6:
                    ux = ax / na
                    uy = ay / na
                    uz = az / na
                    if uz > -0.999999:
                        qw = 1.0 + uz
                        qx = uy
                        qy = -ux
                        qz = 0.0
                    else:
                        qw, qx, qy, qz = 0.0, 1.0, 0.0, 0.0
                    nq = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
                    qw /= nq
                    qx /= nq
                    qy /= nq
                    qz /= nq
                    q_init = 1
                    ti = 0.0
                    ex = 0.0
                    ey = 0.0
            g0 = gyr[j, 0]
            g1 = gyr[j, 1]
            g2 = gyr[j, 2]
            if restart:
                gp0 = g0
                gp1 = g1
                gp2 = g2
            gxr = g0 - bx
            gyr_ = g1 - by
            gzr = g2 - bz
            # body-rate integration over [t_j-1, t_j]: q <- q * exp(w dt / 2) with the mean of the
            # two rate samples (trapezoid: no half-sample lag) and exp to second order
            hx = hdt * (0.5 * (g0 + gp0) - bx)
            hy = hdt * (0.5 * (g1 + gp1) - by)
            hz = hdt * (0.5 * (g2 + gp2) - bz)
            gp0 = g0
            gp1 = g1
            gp2 = g2
            h0 = 1.0 - 0.5 * (hx * hx + hy * hy + hz * hz)
            nw = qw * h0 - qx * hx - qy * hy - qz * hz
            nx = qx * h0 + qw * hx + qy * hz - qz * hy
            ny = qy * h0 + qw * hy - qx * hz + qz * hx
            nz = qz * h0 + qw * hz + qx * hy - qy * hx
            qw = nw
            qx = nx
            qy = ny
            qz = nz
            ncor += 1
            if ncor >= every_c:
                # drift correction every ``correct_every_s`` (keeps the per-sample dependency
                # chain short): world tilt correction [1, kp e T / 2] (left multiply) with the
                # stride-averaged error e = LP((a_w / g) x z), the bias integral, exact renormalisation
                ncor = 0
                ramp = max(1.0 - ti * inv_ramp, 0.0)
                kp = kp_final + kp_span * ramp
                cx = 0.5 * kp * dt_c * ex
                cy = 0.5 * kp * dt_c * ey
                qw = nw - cx * nx - cy * ny
                qx = nx + cx * nw + cy * nz
                qy = ny + cy * nw - cx * nz
                qz = nz + cx * ny - cy * nx
                nq = 1.0 / math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
                qw *= nq
                qx *= nq
                qy *= nq
                qz *= nq
                if ramp == 0.0:
                    # b -= ki T R^T e (deg/s), R^T e from the (unit) quaternion
                    e0 = (1.0 - 2.0 * (qy * qy + qz * qz)) * ex + 2.0 * (qx * qy + qw * qz) * ey
                    e1 = 2.0 * (qx * qy - qw * qz) * ex + (1.0 - 2.0 * (qx * qx + qz * qz)) * ey
                    e2 = 2.0 * (qx * qz + qw * qy) * ex + 2.0 * (qy * qz - qw * qx) * ey
                    bx -= kb_c * e0
                    by -= kb_c * e1
                    bz -= kb_c * e2
            # rotation matrix of the (not renormalised) q, homogeneous form R |q|^2, scaled by
            # 1/|q|^2 ~ 2 - |q|^2 (|q|^2 - 1 = O(every_c |w dt / 2|^2), residual its square)
            # the first two rows of R here (horizontal acc -> tilt error); the whole R of the
            # same q (same operations) in _rotation_vec
            sww = qw * qw
            sxx = qx * qx
            syy = qy * qy
            szz = qz * qz
            sc = 2.0 - (sww + sxx + syy + szz)
            s2 = 2.0 * sc
            r00 = (sww + sxx - syy - szz) * sc
            r11 = (sww - sxx + syy - szz) * sc
            xy = qx * qy
            xz = qx * qz
            yz = qy * qz
            wx_ = qw * qx
            wy_ = qw * qy
            wz_ = qw * qz
            r01 = (xy - wz_) * s2
            r02 = (xz + wy_) * s2
            r10 = (xy + wz_) * s2
            r12 = (yz - wx_) * s2
            aw0 = r00 * ax + r01 * ay + r02 * az
            aw1 = r10 * ax + r11 * ay + r12 * az
            ex += a_err * (aw1 * (1.0 / G) - ex)
            ey += a_err * (-aw0 * (1.0 / G) - ey)
            ti += dt
            i = j - j0
            if cnt == 0:
                first = i
            s_a0[i] = aw0
            s_a1[i] = aw1
            s_tok[i] = not ti < warm
            s_q[0, i] = qw
            s_q[1, i] = qx
            s_q[2, i] = qy
            s_q[3, i] = qz
            s_w[0, i] = gxr
            s_w[1, i] = gyr_
            s_w[2, i] = gzr
            cnt += 1
        _rotation_vec(s_q, m, s_r)
        # ---- (2) alignment statistics (the axes before a possible update at j1 - 1) -------
        o_apx = apx
        o_apy = apy
        o_apz = apz
        o_mlx = mlx
        o_mly = mly
        o_mlz = mlz
        cnt = c_start
        for j in range(j0, j1):
            ax = acc[j, 0]
            ay = acc[j, 1]
            az = acc[j, 2]
            if not known:
                al = 1.0 / (cnt + 1.0) if cnt + 1.0 < n_mount else a_mount
                gx += al * (ax - gx)
                gy += al * (ay - gy)
                gz += al * (az - gz)
                if cnt == 0:
                    ng = math.sqrt(gx * gx + gy * gy + gz * gz)
                    if ng > 1e-9:
                        vx = gx / ng
                        vy = gy / ng
                        vz = gz / ng
            i = j - j0
            fv = s_r[6, i] * ax + s_r[7, i] * ay + s_r[8, i] * az
            sig[j, SIG_F_V] = fv
            # ---- running indicator (flight = specific force near 0) ----------------------------
            fl = 1.0 if fv < flight_lvl else 0.0
            flight += a_flight * (fl - flight)
            flight = flight if flight > 1e-300 else 0.0  # (no subnormals, read only as > 0.03)
            # ---- alignment statistics (vertical v refreshed with the axes) -------------------
            if not known:
                dx = ax - gx
                dy = ay - gy
                dz = az - gz
                d0 += a_stat * (dx - d0)
                d1 += a_stat * (dy - d1)
                d2 += a_stat * (dz - d2)
                sct += 1
                if sct >= every_s:
                    # statistics at ~100 Hz (every_s samples): the 6 Hz low-passed input does not
                    # need more, the derivative is taken over the same interval
                    sct = 0
                    av = d0 * vx + d1 * vy + d2 * vz
                    hx_ = d0 - av * vx
                    hy_ = d1 - av * vy
                    hz_ = d2 - av * vz
                    if cnt > 0:
                        am = 1.0 / (n_stat + 1.0) if n_stat + 1.0 < n_mount_s else a_mount_s
                        n_stat += 1
                        c0 += am * (hx_ * hx_ - c0)
                        c1 += am * (hx_ * hy_ - c1)
                        c2 += am * (hx_ * hz_ - c2)
                        c3 += am * (hy_ * hy_ - c3)
                        c4 += am * (hy_ * hz_ - c4)
                        c5 += am * (hz_ * hz_ - c5)
                        sav = av if flight > 0.03 else -av  # running: +, walking: -
                        hdx = (hx_ - hp0) * fs_s
                        hdy = (hy_ - hp1) * fs_s
                        hdz = (hz_ - hp2) * fs_s
                        w0 += am * (sav * hdx - w0)
                        w1 += am * (sav * hdy - w1)
                        w2 += am * (sav * hdz - w2)
                        var_av += am * (av * av - var_av)
                        var_hd += am * (hdx * hdx + hdy * hdy + hdz * hdz - var_hd)
                    hp0 = hx_
                    hp1 = hy_
                    hp2 = hz_
                upd += 1
                if upd >= every:
                    upd = 0
                    f[_GLP] = gx
                    f[_GLP + 1] = gy
                    f[_GLP + 2] = gz
                    f[_C] = c0
                    f[_C + 1] = c1
                    f[_C + 2] = c2
                    f[_C + 3] = c3
                    f[_C + 4] = c4
                    f[_C + 5] = c5
                    f[_W] = w0
                    f[_W + 1] = w1
                    f[_W + 2] = w2
                    f[_VAR_AV] = var_av
                    f[_VAR_HD] = var_hd
                    st[_AXES_OK] = axes_ok
                    _update_axes(f, st, p.rho_min)
                    axes_ok = st[_AXES_OK]
                    vx = f[_V]
                    vy = f[_V + 1]
                    vz = f[_V + 2]
                    # this sample's horizontal part in the new vertical: the next derivative
                    # (sign statistic) must not see the change of v as a step
                    av = d0 * vx + d1 * vy + d2 * vz
                    hp0 = d0 - av * vx
                    hp1 = d1 - av * vy
                    hp2 = d2 - av * vz
                    apx = f[_AP]
                    apy = f[_AP + 1]
                    apz = f[_AP + 2]
                    mlx = f[_ML]
                    mly = f[_ML + 1]
                    mlz = f[_ML + 2]
            s_ok[i] = s_tok[i] and axes_ok != 0
            if rates:
                wx = s_w[0, i]
                wy = s_w[1, i]
                wz = s_w[2, i]
                sig[j, SIG_YAW_RATE] = s_r[6, i] * wx + s_r[7, i] * wy + s_r[8, i] * wz
                sig[j, SIG_ROLL_RATE] = wx * apx + wy * apy + wz * apz
            cnt += 1
        # ---- (3) axis-dependent outputs (SIMD), (4) angles / AP / ML / yaw ---------------
        s_fx[0] = yhx
        s_fy[0] = yhy
        _axis_outputs(
            s_r, 0, m - 1, o_apx, o_apy, o_apz, o_mlx, o_mly, o_mlz, s_fx, s_fy, s_lz, s_tz
        )
        _axis_outputs(s_r, m - 1, m, apx, apy, apz, mlx, mly, mlz, s_fx, s_fy, s_lz, s_tz)
        yaw_unw = _angle_outputs(
            sig, j0, m, first, yaw_unw, s_fx, s_fy, s_lz, s_tz, s_ok, s_a0, s_a1, s_inc
        )
        yhx = s_fx[m]
        yhy = s_fy[m]
        j0 = j1

    # ---- registers -> state --------------------------------------------------------------
    f[_Q] = qw
    f[_Q + 1] = qx
    f[_Q + 2] = qy
    f[_Q + 3] = qz
    f[_BIAS] = bx
    f[_BIAS + 1] = by
    f[_BIAS + 2] = bz
    f[_ELP] = ex
    f[_ELP + 1] = ey
    f[_ELP + 2] = ez
    f[_GLP] = gx
    f[_GLP + 1] = gy
    f[_GLP + 2] = gz
    f[_C] = c0
    f[_C + 1] = c1
    f[_C + 2] = c2
    f[_C + 3] = c3
    f[_C + 4] = c4
    f[_C + 5] = c5
    f[_W] = w0
    f[_W + 1] = w1
    f[_W + 2] = w2
    f[_DLP] = d0
    f[_DLP + 1] = d1
    f[_DLP + 2] = d2
    f[_HPREV] = hp0
    f[_HPREV + 1] = hp1
    f[_HPREV + 2] = hp2
    f[_AP] = apx
    f[_AP + 1] = apy
    f[_AP + 2] = apz
    f[_ML] = mlx
    f[_ML + 1] = mly
    f[_ML + 2] = mlz
    f[_V] = vx
    f[_V + 1] = vy
    f[_V + 2] = vz
    f[_YAW_UNW] = yaw_unw
    f[_YHX] = yhx
    f[_YHY] = yhy
    f[_GPREV] = gp0
    f[_GPREV + 1] = gp1
    f[_GPREV + 2] = gp2
    f[_FLIGHT] = flight
    f[_T_INIT] = ti
    f[_VAR_AV] = var_av
    f[_VAR_HD] = var_hd
    st[_N] = cnt
    st[_Q_INIT] = q_init
    st[_AXES_OK] = axes_ok
    st[_N_STAT] = n_stat
    st[_UPD] = upd
    st[_NCOR] = ncor
    st[_SCT] = sct
    return sig, f, st


@njit(**NJIT_OPTS)
def _orient_kernel(
    acc: NDArray[np.float64],
    gyr: NDArray[np.float64],
    flag: NDArray[np.int8],
    has_gyro: bool,
    fs: float,
    p: OrientParams,
    f: NDArray[np.float64],
    st: NDArray[np.int64],
    sig: NDArray[np.float64],
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    """Fills ``sig`` (n, N_SIG), allocated by the caller (numpy: huge pages for big arrays).

    With gyro: :func:`_orient_gyro` (the sequential loop split into passes); accelerometer
    only: :func:`_orient_kernel_seq`. Both update ``f`` / ``st`` in place."""
    if has_gyro:
        return _orient_gyro(acc, gyr, flag, fs, p, f, st, sig)
    return _orient_kernel_seq(acc, gyr, flag, False, fs, p, f, st, sig)


def orient(
    acc: NDArray[np.float64],
    gyr: NDArray[np.float64] | None,
    flag: NDArray[np.int8],
    *,
    sample_rate_hz: float,
    params: OrientParams | None = None,
    state: OrientState | None = None,
) -> tuple[NDArray[np.float64], OrientState]:
    """Offline alignment + orientation = one kernel call. Returns ``sig`` (n, N_SIG) and state."""
    p = params if params is not None else OrientParams()
    s = state if state is not None else orient_initial_state()
    a = np.ascontiguousarray(acc, dtype=np.float64)
    has_gyro = gyr is not None
    g = np.ascontiguousarray(gyr, dtype=np.float64) if gyr is not None else np.zeros_like(a)
    sig, f, i = _orient_kernel(
        a, g, flag, has_gyro, float(sample_rate_hz), p, s.f, s.i, np.empty((a.shape[0], N_SIG))
    )
    return sig, OrientState(f, i)


def alignment_info(state: OrientState) -> dict[str, float | list[float]]:
    """Mounting estimate and its confidence from a kernel state."""
    f = state.f
    anis = float(f[_ANIS])
    rho = float(f[_RHO])
    conf = min(1.0, anis / 0.3) * min(1.0, abs(rho) / 0.15) if state.i[_AXES_OK] else 0.0
    return {
        "alignment_confidence": round(conf, 4),
        "alignment_anisotropy": round(anis, 4),
        "alignment_sign_correlation": round(rho, 4),
        "up_axis_sensor": [round(float(x), 5) for x in f[_V : _V + 3]],
        "forward_axis_sensor": [round(float(x), 5) for x in f[_AP : _AP + 3]],
        "left_axis_sensor": [round(float(x), 5) for x in f[_ML : _ML + 3]],
        "gyro_bias_dps": [round(float(x), 4) for x in f[_BIAS : _BIAS + 3]],
    }
