"""Small synthetic runner for DSP unit tests (the full simulator lives in ``simulators``).

Vertical specific force = half-sine during contact (mean over a step = g), 0 in flight;
AP acc = braking then propulsion during contact; obliquity/yaw/tilt oscillations with the
stance side convention of docs/architecture.md; arbitrary sensor mounting.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

G = 9.80665


def _rot(axis: str, ang: NDArray[np.float64] | float) -> NDArray[np.float64]:
    a = np.asarray(ang, dtype=float)
    c, s = np.cos(a), np.sin(a)
    o, z = np.ones_like(a), np.zeros_like(a)
    if axis == "x":
        m = [[o, z, z], [z, c, -s], [z, s, c]]
    elif axis == "y":
        m = [[c, z, s], [z, o, z], [-s, z, c]]
    else:
        m = [[c, -s, z], [s, c, z], [z, z, o]]
    return np.moveaxis(np.array(m), [0, 1], [-2, -1])


def random_rotation(rng: np.random.Generator) -> NDArray[np.float64]:
    q = rng.normal(size=4)
    q /= np.linalg.norm(q)
    w, x, y, z = q
    return np.array(
        [
            [1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)],
            [2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)],
            [2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)],
        ]
    )


@dataclass
class Synth:
    t: NDArray[np.float64]
    acc: NDArray[np.float64]
    gyr: NDArray[np.float64]
    ic: NDArray[np.float64]
    to: NDArray[np.float64]
    side: NDArray[np.int8]  # 1 left, 2 right
    obliq_deg: NDArray[np.float64]
    z_m: NDArray[np.float64]
    mount: NDArray[np.float64]  # body -> sensor


def synth_run(
    duration_s: float = 60.0,
    fs: float = 200.0,
    seed: int = 0,
    step_s: float = 0.36,
    contact_s: float = 0.24,
    noise: float = 0.05,
    mount: NDArray[np.float64] | None = None,
    standing_s: float = 0.0,
) -> Synth:
    rng = np.random.default_rng(seed)
    n = int(duration_s * fs)
    t = np.arange(n) / fs
    # step times with small variability
    ics = []
    tt = standing_s + 0.137
    while tt < duration_s - 0.5:
        ics.append(tt)
        tt += step_s * (1 + 0.02 * rng.standard_normal())
    ic = np.array(ics)
    tcs = contact_s * (1 + 0.03 * rng.standard_normal(ic.size))
    to = ic + tcs
    side = np.where(np.arange(ic.size) % 2 == 0, 1, 2).astype(np.int8)
    fv = np.zeros(n)
    aap = np.zeros(n)
    phase = np.full(n, np.nan)  # stride phase 0..2 (0..1 left stance step)
    for k in range(ic.size):
        stp = (ic[k + 1] if k + 1 < ic.size else ic[k] + step_s) - ic[k]
        amp = G * np.pi * stp / (2 * tcs[k])
        m = (t >= ic[k]) & (t < to[k])
        u = (t[m] - ic[k]) / tcs[k]
        fv[m] = amp * np.sin(np.pi * u)
        aap[m] = -3.0 * np.sin(2 * np.pi * u)
        mm = (t >= ic[k]) & (t < ic[k] + stp)
        phase[mm] = (0.0 if side[k] == 1 else 1.0) + (t[mm] - ic[k]) / stp
    running = np.isfinite(phase)
    fv[~running] = G
    ph = np.nan_to_num(phase)
    # pelvis angles (rad): obliquity rises during left stance, yaw rate < 0 around left IC (as mobgap)
    obl = np.where(running, np.deg2rad(5.0) * np.sin(np.pi * ph), 0.0)
    yaw = np.where(running, np.deg2rad(4.0) * np.cos(np.pi * (ph + 0.1)), 0.0)
    tilt = np.where(
        running, np.deg2rad(10.0) + np.deg2rad(2.0) * np.sin(2 * np.pi * ph), np.deg2rad(10.0)
    )
    aml = np.where(running, -1.0 * np.sin(np.pi * ph), 0.0)
    # R body->world = Rz(yaw) Ry(tilt) Rx(obliquity)  (tilt: +x down = anterior -> rotate about y)
    R = _rot("z", yaw) @ _rot("y", tilt) @ _rot("x", obl)
    a_world = np.stack(
        [aap, aml, fv], axis=1
    )  # specific force in world (horizontal frame ~ heading)
    M = random_rotation(rng) if mount is None else mount  # body -> sensor
    Rs = R @ M.T  # sensor -> world
    acc = np.einsum("nji,nj->ni", Rs, a_world)
    # gyro: omega_sensor from R_s^T dR_s/dt
    dR = np.gradient(Rs, 1 / fs, axis=0)
    W = np.einsum("nji,njk->nik", Rs, dR)
    gyr = np.rad2deg(np.stack([W[:, 2, 1], W[:, 0, 2], W[:, 1, 0]], axis=1))
    acc = acc + noise * rng.standard_normal(acc.shape)
    gyr = gyr + 0.3 + 0.2 * rng.standard_normal(gyr.shape)
    # vertical position from fv
    av = fv - G
    z = np.cumsum(np.cumsum(av) / fs) / fs
    return Synth(t, acc, gyr, ic, to, side, np.rad2deg(obl), z, M)
