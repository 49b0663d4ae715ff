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
_YAW_PREV = 38
_FLIGHT = 39
_T_INIT = 40  # seconds since (re)initialisation of the orientation
_VAR_AV = 41
_VAR_HD = 42
_ANIS = 43
_RHO = 44
_AVPREV = 45
_NF = 48
# int state layout
_N = 0
_Q_INIT = 1
_AXES_OK = 2
_N_STAT = 3
_NI = 4


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
    axes_every_s: float = 0.1  # s, how often the forward axis is re-estimated
    flight_g: float = 0.35  # specific force below this = flight (running indicator)
    rho_min: float = 0.03  # minimum |correlation| to set/flip the forward sign
    known_axes: bool = False  # True: use the given sensor axes, do not estimate the mounting
    angle_warmup_s: float = 3.0  # s, pelvis angles are NaN this long after (re)initialisation


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
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int64]]:
    n = acc.shape[0]
    sig = np.empty((n, N_SIG))
    dt = 1.0 / fs
    a_err = dt / p.tau_err_s
    a_grav = dt / p.tau_gravity_s
    a_mount = dt / p.tau_mount_s
    a_stat = 1.0 - math.exp(-2.0 * math.pi * p.fc_stat_hz * dt)
    a_flight = dt / 2.0
    every = max(1, round(p.axes_every_s * fs))
    for j in range(n):
        ax = acc[j, 0]
        ay = acc[j, 1]
        az = acc[j, 2]
        cnt = st[_N]
        # ---- gravity (running mean, then exponential forgetting) --------------------------
        al = max(1.0 / (cnt + 1.0), a_mount)
        ag = max(1.0 / (cnt + 1.0), a_grav)
        if p.known_axes:
            al = 0.0
        f[_GLP] += al * (ax - f[_GLP]) if not p.known_axes else 0.0
        f[_GLP + 1] += al * (ay - f[_GLP + 1]) if not p.known_axes else 0.0
        f[_GLP + 2] += al * (az - f[_GLP + 2]) if not p.known_axes else 0.0
        if p.known_axes and cnt == 0:
            st[_AXES_OK] = 1
            f[_GLP] = f[_V] * G
            f[_GLP + 1] = f[_V + 1] * G
            f[_GLP + 2] = f[_V + 2] * G
        # fast gravity estimate (acc-only up direction); stored in the DLP slot's neighbour
        # we reuse HPREV for nothing else: keep a separate fast low-pass in _ELP when no gyro
        if not has_gyro:
            f[_ELP] += ag * (ax - f[_ELP])
            f[_ELP + 1] += ag * (ay - f[_ELP + 1])
            f[_ELP + 2] += ag * (az - f[_ELP + 2])
        # ---- orientation ---------------------------------------------------------------
        if has_gyro:
            if st[_Q_INIT] == 0 or flag[j] != 0:
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
                    f[_Q] = qw / nq
                    f[_Q + 1] = qx / nq
                    f[_Q + 2] = qy / nq
                    f[_Q + 3] = qz / nq
                    st[_Q_INIT] = 1
                    f[_T_INIT] = 0.0
                    f[_ELP] = 0.0
                    f[_ELP + 1] = 0.0
                    f[_ELP + 2] = 0.0
            qw = f[_Q]
            qx = f[_Q + 1]
            qy = f[_Q + 2]
            qz = f[_Q + 3]
            wx = (gyr[j, 0] - f[_BIAS]) * RAD
            wy = (gyr[j, 1] - f[_BIAS + 1]) * RAD
            wz = (gyr[j, 2] - f[_BIAS + 2]) * RAD
            # body-rate integration q <- q * [1, w dt / 2]
            hx = 0.5 * dt * wx
            hy = 0.5 * dt * wy
            hz = 0.5 * dt * wz
            nw = qw - qx * hx - qy * hy - qz * hz
            nx = qx + qw * hx + qy * hz - qz * hy
            ny = qy + qw * hy - qx * hz + qz * hx
            nz = qz + qw * hz + qx * hy - qy * hx
            # rotation matrix rows
            r00 = 1.0 - 2.0 * (ny * ny + nz * nz)
            r01 = 2.0 * (nx * ny - nw * nz)
            r02 = 2.0 * (nx * nz + nw * ny)
            r10 = 2.0 * (nx * ny + nw * nz)
            r11 = 1.0 - 2.0 * (nx * nx + nz * nz)
            r12 = 2.0 * (ny * nz - nw * nx)
            nn = nw * nw + nx * nx + ny * ny + nz * nz
            r00 /= nn
            r01 /= nn
            r02 /= nn
            r10 /= nn
            r11 /= nn
            r12 /= nn
            awx = r00 * ax + r01 * ay + r02 * az
            awy = r10 * ax + r11 * ay + r12 * az
            # world tilt error (a_w / g) x z = (awy, -awx, 0) / g, stride-averaged by a low-pass
            f[_ELP] += a_err * (awy / G - f[_ELP])
            f[_ELP + 1] += a_err * (-awx / G - f[_ELP + 1])
            ti = f[_T_INIT]
            ramp = 1.0 - ti / p.ramp_s
            ramp = max(ramp, 0.0)
            kp = p.kp_final + (p.kp_init - p.kp_final) * ramp
            ex = f[_ELP]
            ey = f[_ELP + 1]
            # left-multiply by the world correction [1, kp e dt / 2]
            cx = 0.5 * kp * dt * ex
            cy = 0.5 * kp * dt * ey
            qw = nw - cx * nx - cy * ny
            qx = nx + cx * nw + cy * nz
            qy = ny + cy * nw - cx * nz
            qz = nz + cx * ny - cy * nx
            nq = math.sqrt(qw * qw + qx * qx + qy * qy + qz * qz)
            qw /= nq
            qx /= nq
            qy /= nq
            qz /= nq
            f[_Q] = qw
            f[_Q + 1] = qx
            f[_Q + 2] = qy
            f[_Q + 3] = qz
            r00 = 1.0 - 2.0 * (qy * qy + qz * qz)
            r01 = 2.0 * (qx * qy - qw * qz)
            r02 = 2.0 * (qx * qz + qw * qy)
            r10 = 2.0 * (qx * qy + qw * qz)
            r11 = 1.0 - 2.0 * (qx * qx + qz * qz)
            r12 = 2.0 * (qy * qz - qw * qx)
            r20 = 2.0 * (qx * qz - qw * qy)
            r21 = 2.0 * (qy * qz + qw * qx)
            r22 = 1.0 - 2.0 * (qx * qx + qy * qy)
            if ramp == 0.0:
                # bias integral: b -= ki dt R^T e (deg/s)
                kb = p.ki * dt * DEG
                f[_BIAS] -= kb * (r00 * ex + r10 * ey)
                f[_BIAS + 1] -= kb * (r01 * ex + r11 * ey)
                f[_BIAS + 2] -= kb * (r02 * ex + r12 * ey)
            f[_T_INIT] = ti + dt
            upx = r20
            upy = r21
            upz = r22
        else:
            ng = math.sqrt(f[_ELP] ** 2 + f[_ELP + 1] ** 2 + f[_ELP + 2] ** 2)
            if p.known_axes:
                upx = f[_V]
                upy = f[_V + 1]
                upz = f[_V + 2]
            elif ng > 1e-9:
                upx = f[_ELP] / ng
                upy = f[_ELP + 1] / ng
                upz = f[_ELP + 2] / ng
            else:
                upx, upy, upz = 0.0, 0.0, 1.0
            r00 = r01 = r02 = r10 = r11 = r12 = r20 = r21 = r22 = 0.0
            wx = wy = wz = 0.0
        fv = ax * upx + ay * upy + az * upz
        # ---- running indicator (flight = specific force near 0) ----------------------------
        fl = 1.0 if fv < p.flight_g * G else 0.0
        f[_FLIGHT] += a_flight * (fl - f[_FLIGHT])
        running = f[_FLIGHT] > 0.03
        # ---- alignment statistics -----------------------------------------------------
        if not p.known_axes:
            dx = ax - f[_GLP]
            dy = ay - f[_GLP + 1]
            dz = az - f[_GLP + 2]
            f[_DLP] += a_stat * (dx - f[_DLP])
            f[_DLP + 1] += a_stat * (dy - f[_DLP + 1])
            f[_DLP + 2] += a_stat * (dz - f[_DLP + 2])
            ng = math.sqrt(f[_GLP] ** 2 + f[_GLP + 1] ** 2 + f[_GLP + 2] ** 2)
            if ng > 1e-9:
                vx = f[_GLP] / ng
                vy = f[_GLP + 1] / ng
                vz = f[_GLP + 2] / ng
                av = f[_DLP] * vx + f[_DLP + 1] * vy + f[_DLP + 2] * vz
                hx = f[_DLP] - av * vx
                hy = f[_DLP + 1] - av * vy
                hz = f[_DLP + 2] - av * vz
                if cnt > 0:
                    am = max(1.0 / (st[_N_STAT] + 1.0), a_mount)
                    st[_N_STAT] += 1
                    f[_C] += am * (hx * hx - f[_C])
                    f[_C + 1] += am * (hx * hy - f[_C + 1])
                    f[_C + 2] += am * (hx * hz - f[_C + 2])
                    f[_C + 3] += am * (hy * hy - f[_C + 3])
                    f[_C + 4] += am * (hy * hz - f[_C + 4])
                    f[_C + 5] += am * (hz * hz - f[_C + 5])
                    sgn = 1.0 if running else -1.0
                    hdx = (hx - f[_HPREV]) * fs
                    hdy = (hy - f[_HPREV + 1]) * fs
                    hdz = (hz - f[_HPREV + 2]) * fs
                    f[_W] += am * (sgn * av * hdx - f[_W])
                    f[_W + 1] += am * (sgn * av * hdy - f[_W + 1])
                    f[_W + 2] += am * (sgn * av * hdz - f[_W + 2])
                    f[_VAR_AV] += am * (av * av - f[_VAR_AV])
                    f[_VAR_HD] += am * (hdx * hdx + hdy * hdy + hdz * hdz - f[_VAR_HD])
                f[_HPREV] = hx
                f[_HPREV + 1] = hy
                f[_HPREV + 2] = hz
            if (cnt + 1) % every == 0:
                _update_axes(f, st, p.rho_min)
        # ---- outputs -------------------------------------------------------------------
        sig[j, SIG_F_V] = fv
        apx = f[_AP]
        apy = f[_AP + 1]
        apz = f[_AP + 2]
        mlx = f[_ML]
        mly = f[_ML + 1]
        mlz = f[_ML + 2]
        if has_gyro:
            # pelvis axes in the world
            awx_ = r00 * apx + r01 * apy + r02 * apz
            awy_ = r10 * apx + r11 * apy + r12 * apz
            awz_ = r20 * apx + r21 * apy + r22 * apz
            mwz = r20 * mlx + r21 * mly + r22 * mlz
            sig[j, SIG_OBLIQ] = math.asin(min(1.0, max(-1.0, mwz))) * DEG
            sig[j, SIG_TILT] = math.asin(min(1.0, max(-1.0, -awz_))) * DEG
            yaw = math.atan2(awy_, awx_)
            if cnt == 0:
                f[_YAW_UNW] = yaw
            else:
                dy = yaw - f[_YAW_PREV]
                if dy > math.pi:
                    dy -= 2.0 * math.pi
                elif dy < -math.pi:
                    dy += 2.0 * math.pi
                f[_YAW_UNW] += dy
            f[_YAW_PREV] = yaw
            sig[j, SIG_YAW] = f[_YAW_UNW] * DEG
            if f[_T_INIT] < p.angle_warmup_s or st[_AXES_OK] == 0:
                sig[j, SIG_OBLIQ] = np.nan
                sig[j, SIG_TILT] = np.nan
                sig[j, SIG_YAW] = np.nan
            hn = math.sqrt(awx_ * awx_ + awy_ * awy_)
            if hn > 1e-9:
                hfx = awx_ / hn
                hfy = awy_ / hn
            else:
                hfx, hfy = 1.0, 0.0
            aw0 = r00 * ax + r01 * ay + r02 * az
            aw1 = r10 * ax + r11 * ay + r12 * az
            sig[j, SIG_A_AP] = aw0 * hfx + aw1 * hfy
            sig[j, SIG_A_ML] = -aw0 * hfy + aw1 * hfx
            sig[j, SIG_YAW_RATE] = (r20 * wx + r21 * wy + r22 * wz) * DEG
            sig[j, SIG_ROLL_RATE] = (wx * apx + wy * apy + wz * apz) * DEG
        else:
            dx = ax - f[_GLP]
            dy = ay - f[_GLP + 1]
            dz = az - f[_GLP + 2]
            sig[j, SIG_A_AP] = dx * apx + dy * apy + dz * apz
            sig[j, SIG_A_ML] = dx * mlx + dy * mly + dz * mlz
            sig[j, SIG_OBLIQ] = np.nan
            sig[j, SIG_TILT] = np.nan
            sig[j, SIG_YAW] = np.nan
            sig[j, SIG_YAW_RATE] = np.nan
            sig[j, SIG_ROLL_RATE] = np.nan
        st[_N] = cnt + 1
    return sig, f, st


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
    sig, f, i = _orient_kernel(a, g, flag, has_gyro, float(sample_rate_hz), p, s.f, s.i)
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
