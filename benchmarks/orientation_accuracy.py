"""Pelvis-angle accuracy vs the simulator: ``python -m benchmarks.orientation_accuracy [--quick]``.

Over random mountings (incl. upside down), 100/200/400 Hz, sensor noise, gyro bias (+ drift) and
dropped packets, it compares the orientation kernel's per-sample signals with the simulator's exact
kinematics on the same grid (true time from the sensor clock), and the per-step angle metrics of
:func:`dsp.analyzer.analyze` with the simulator's truth steps (matched by IC time, +-60 ms):

* ``obl``: obliquity (deg), absolute, after the first 10 s of running;
* ``obl_hf``, ``tilt_hf``, ``yaw_hf``: the error minus its centred 2 s moving mean (the mean tilt
  and the heading are not observable with an unknown mounting; the oscillation is what the step
  metrics use); ``yaw_ax_hf``: the same for the yaw of the estimated (level) forward axis on the
  true motion: ``yaw_hf`` minus the unobservable coupling of the 10 deg mean anterior tilt;
* ``orac_*``: drop / rotation / tilt range from this kernel's angles with the TRUE IC/TO/side;
* ``drop``/``rot``/``tilt`` per step; alignment confidence and the angle between the estimated
  and the true forward axis (sensor frame).
Prints one table row per run and a summary line ``ANGLES ...``.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dsp.analyzer import analyze_with_info
from dsp.orientation import SIG_OBLIQ, SIG_TILT, SIG_YAW, orient
from dsp.resample import resample_uniform
from simulators import SensorConfig, simulate_run

_UPSIDE_DOWN = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])  # sensor <- body


def _movmean(x: NDArray[np.float64], w: int) -> NDArray[np.float64]:
    c = np.concatenate([[0.0], np.cumsum(x)])
    out = np.full(x.size, np.nan)
    h = w // 2
    out[h : x.size - h] = (c[w:] - c[:-w])[: x.size - 2 * h] / w
    return out


def _rms(x: NDArray[np.float64]) -> float:
    x = x[np.isfinite(x)]
    return float(np.sqrt(np.mean(x * x))) if x.size else float("nan")


def eval_run(
    seed: int,
    fs: int,
    minutes: float,
    mounting: Any = None,
    bias_dps: float = 0.3,
    noise: float = 1.0,
) -> dict[str, float]:
    sensor = SensorConfig(
        sample_rate_hz=fs,
        mounting=mounting,
        gyr_bias_dps=bias_dps,
        acc_noise_mps2=0.015 * noise,
        gyr_noise_dps=0.07 * noise,
    )
    run = simulate_run(minutes, seed, sensor=sensor)
    t, acc, gyr = run.samples
    rng = np.random.default_rng(seed)
    keep = np.ones(t.size, bool)  # 0.2 % lost 10-sample packets
    for p in np.flatnonzero(rng.random(t.size // 10) < 0.002):
        keep[p * 10 : p * 10 + 10] = False
    t, acc, gyr = t[keep], acc[keep], gyr[keep]
    out, info = analyze_with_info(t, acc, gyr, sample_rate_hz=float(fs))
    # per-sample signals on the grid
    rs, _, t0 = resample_uniform(t, acc, gyr, sample_rate_hz=float(fs))
    sig, _ = orient(rs.acc, rs.gyr, rs.flag, sample_rate_hz=float(fs))
    tg = t0 + rs.k / fs
    tt = np.interp(tg, t, run.t_true_s[keep])
    ms = run.motion.evaluate(tt, position=False)
    run_start = next(s["start_s"] for s in run.metadata["segments"] if s["activity"] == "running")
    m = tt > run_start + 10.0
    w = 2 * fs + 1
    res: dict[str, float] = {}
    for name, col, truth in (
        ("obl", SIG_OBLIQ, ms.obliquity_deg),
        ("tilt", SIG_TILT, ms.tilt_deg),
        ("yaw", SIG_YAW, ms.yaw_deg),
    ):
        e = sig[:, col] - truth
        if name == "obl":
            res["obl"] = _rms(e[m])
        e = np.where(np.isfinite(e), e, 0.0)
        hf = e - _movmean(e, w)
        res[name + "_hf"] = _rms(hf[m])
    # yaw of the estimated forward axis itself (true pelvis motion): without the unobservable
    # mean-tilt coupling of the body x axis (yaw of a 10 deg tilted axis picks up obl sin(tilt))
    fb = run.mounting.T @ np.asarray(info["forward_axis_sensor"])  # in body coordinates
    fw = ms.rot @ fb
    e = sig[:, SIG_YAW] - np.degrees(np.unwrap(np.arctan2(fw[:, 1], fw[:, 0])))
    e = np.where(np.isfinite(e), e, 0.0)
    res["yaw_ax_hf"] = _rms((e - _movmean(e, w))[m])
    # per-step metrics, matched by IC time
    ts, st = run.truth_steps, out.steps
    j = np.searchsorted(ts["time_s"], st["time_s"])
    j = np.clip(j, 1, ts.size - 1)
    j = np.where(
        np.abs(ts["time_s"][j - 1] - st["time_s"]) < np.abs(ts["time_s"][j] - st["time_s"]),
        j - 1,
        j,
    )
    ok = (np.abs(ts["time_s"][j] - st["time_s"]) < 0.06) & (st["activity"] == ts["activity"][j])
    ok &= st["time_s"] > run_start + 10.0
    for name, key in (
        ("drop", "pelvic_drop_deg"),
        ("rot", "pelvic_rotation_deg"),
        ("tilt_rng", "pelvic_tilt_deg"),
    ):
        res["step_" + name] = _rms(st[key][ok] - ts[key][j[ok]])
    res["n_steps"] = float(ok.sum())
    # orientation-only step metrics: this kernel's angles with the TRUE IC/TO/side (architecture
    # definitions), isolating the angle error from event / side errors of the gait kernel
    tic = ts["time_s"]
    to = tic + ts["contact_time_s"]
    gi = (tic - t0) * fs  # fractional grid index
    d_drop, d_rot, d_tilt = [], [], []
    for k in range(1, ts.size - 1):
        if tic[k] < run_start + 10.0 or ts["activity"][k] != 2 or tic[k + 1] - tic[k - 1] > 1.2:
            continue
        i0, i1, i2 = int(np.ceil(gi[k - 1])), int(np.ceil(gi[k])), int(np.ceil(gi[k + 1]))
        ie = int(np.floor((to[k] - t0) * fs))
        if i0 < 0 or i2 >= sig.shape[0]:
            continue
        ob = sig[i0:i2, SIG_OBLIQ]
        s = 1.0 if ts["side"][k] == 1 else -1.0
        est = float(np.max(s * (sig[i1 : ie + 1, SIG_OBLIQ] - ob.mean())))
        d_drop.append(est - ts["pelvic_drop_deg"][k])
        ys = sig[i0:i2, SIG_YAW]  # stride: its linear trend = heading change + yaw drift
        slope = np.polyfit(np.arange(ys.size), ys, 1)[0] if ys.size > 2 else 0.0
        yw = sig[i1 : i2 + 1, SIG_YAW] - slope * np.arange(i2 + 1 - i1)
        d_rot.append(float(np.ptp(yw)) - ts["pelvic_rotation_deg"][k])
        d_tilt.append(float(np.ptp(sig[i1 : i2 + 1, SIG_TILT])) - ts["pelvic_tilt_deg"][k])
    res["orac_drop"] = _rms(np.asarray(d_drop))
    res["orac_rot"] = _rms(np.asarray(d_rot))
    res["orac_tilt"] = _rms(np.asarray(d_tilt))
    res["conf"] = float(info["alignment_confidence"])
    mount = run.mounting  # sensor <- body
    fwd = np.asarray(info["forward_axis_sensor"])
    up = np.asarray(info["up_axis_sensor"])
    tf = mount[:, 0] - (mount[:, 0] @ up) * up  # true forward, horizontal part
    tf /= np.linalg.norm(tf)
    res["fwd_err_deg"] = float(np.degrees(np.arccos(np.clip(fwd @ tf, -1, 1))))
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    minutes = 3.0 if args.quick else 6.0
    cases: list[tuple[int, int, Any, float, float]] = []
    rates = (100, 200, 400)
    n = 6 if args.quick else 12
    for i in range(n):
        cases.append((100 + i, rates[i % 3], None, 0.3 if i % 2 else 1.0, 1.0))
    cases.append((200, 200, _UPSIDE_DOWN, 0.5, 1.0))
    cases.append((201, 100, _UPSIDE_DOWN, 0.5, 1.0))
    cases.append((300, 100, None, 2.0, 3.0))  # 3x the default noise, 2 deg/s gyro bias
    cases.append((301, 400, _UPSIDE_DOWN, 2.0, 3.0))
    keys = (
        "obl",
        "obl_hf",
        "tilt_hf",
        "yaw_hf",
        "yaw_ax_hf",
        "orac_drop",
        "orac_rot",
        "orac_tilt",
        "step_drop",
        "step_rot",
        "step_tilt_rng",
        "conf",
        "fwd_err_deg",
    )
    print("seed  fs  mount  bias noise | " + " ".join(f"{k[:9]:>9s}" for k in keys))
    allr: list[dict[str, float]] = []
    t_start = time.perf_counter()
    for seed, fs, mount, bias, noise in cases:
        r = eval_run(seed, fs, minutes, mount, bias, noise)
        allr.append(r)
        mname = "rand" if mount is None else "updn"
        print(
            f"{seed:4d} {fs:3d} {mname:>6s} {bias:4.1f} {noise:5.1f} | "
            + " ".join(f"{r[k]:9.3f}" for k in keys)
        )

    def pooled(k: str) -> float:
        return float(np.sqrt(np.mean([r[k] ** 2 for r in allr])))

    print(
        "ANGLES "
        + " ".join(f"{k}_rmse={pooled(k):.3f}" for k in keys[:11])
        + f" min_conf={min(r['conf'] for r in allr):.2f}"
        + f" max_fwd_err_deg={max(r['fwd_err_deg'] for r in allr):.1f}"
        + f"  # {len(allr)} runs x {minutes} min, {time.perf_counter() - t_start:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
