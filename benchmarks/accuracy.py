"""Accuracy of the DSP against ground truth: ``python -m benchmarks.accuracy [--quick]``.

Sections (each prints a table):
1. own simulator (``simulators.simulate_run``) through the packet decoder, over random
   mountings / rates / noise / clipping / packet loss;
2. real running: Alcantara et al. force-treadmill data (sacral acc, GRF 0.1 BW events);
3. real walking: mobgap lower-back IMU with INDIP reference, sensor frame randomly rotated.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.realdata import G, load_alcantara, load_mobgap, match_events, shared_data_dir
from dsp.analyzer import AnalyzerParams, analyze
from dsp.gait import RIGID_PELVIS, SACRAL_SOFT_TISSUE, GaitParams
from dsp.types import Activity, EventKind, Side


def _rot(rng: np.random.Generator) -> NDArray[np.float64]:
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


def _table(title: str, rows: list[tuple[str, str, str]]) -> None:
    print(f"\n## {title}")
    w = max(len(r[0]) for r in rows)
    print(f"{'metric':<{w}}  {'measured':>12}  target")
    for name, val, tgt in rows:
        print(f"{name:<{w}}  {val:>12}  {tgt}")


def _f1(tp: int, n_det: int, n_ref: int) -> float:
    p = tp / n_det if n_det else 0.0
    r = tp / n_ref if n_ref else 0.0
    return 2 * p * r / (p + r) if p + r else 0.0


# ---------------------------------------------------------------------------------------------
#: sensor variations of the simulator section (cycled over the runs)
SIM_VARIANTS: tuple[tuple[str, dict[str, Any]], ...] = (
    ("default", {}),
    ("noisy", {"acc_noise_mps2": 0.15, "gyr_noise_dps": 0.5, "acc_bias_mps2": 0.3}),
    ("clip 4 g / 500 dps", {"acc_range_g": 4, "gyr_range_dps": 500}),
    ("2 % packet loss", {"packet_loss": 0.02, "reordering": 0.01, "corruption": 0.005}),
)


def simulated_samples(
    minutes: float, seed: int, rate_hz: int, **sensor_kw: Any
) -> tuple[Any, NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """One simulated session through the real packet path (loss/reorder/corruption decoded)."""
    from firmware_interface.decoder import PacketDecoder
    from simulators import SensorConfig, simulate_run

    run = simulate_run(minutes, seed, sensor=SensorConfig(sample_rate_hz=rate_hz, **sensor_kw))
    dec = PacketDecoder().decode([p for _, p in run.packets])
    return run, dec.t_s, dec.acc_mps2, dec.gyr_dps


def score_simulated(run: Any, out: Any, warmup_s: float = 3.0) -> dict[str, Any]:
    """Raw per-event / per-step errors of one simulated session (running and walking apart)."""
    tev = run.truth_events
    tst = run.truth_steps
    tic = tev[tev["kind"] == EventKind.INITIAL_CONTACT]
    # activity of each truth IC = activity of its step
    act = np.full(tic.size, -1)
    si, ti = match_events(tst["time_s"], tic["time_s"], 1e-6)
    act[ti] = tst["activity"][si]
    ev = out.events
    icm = ev["kind"] == EventKind.INITIAL_CONTACT
    ic, icsd = ev["time_s"][icm], ev["side"][icm]
    res: dict[str, Any] = {}
    t_start = float(tst["time_s"][0]) if tst.size else 0.0
    for name, code in (("run", Activity.RUNNING), ("walk", Activity.WALKING)):
        sel = (act == code) & (tic["time_s"] > t_start + warmup_s)
        ref = tic["time_s"][sel]
        if ref.size == 0:
            res[name] = None
            continue
        lo, hi = ref.min() - 0.1, ref.max() + 0.1
        # detections inside this activity's span (+-0.1 s); assign by nearest truth activity
        dm = (ic >= lo) & (ic <= hi)
        near = np.searchsorted(tic["time_s"], ic[dm])
        near = np.clip(near, 0, tic.size - 1)
        prev = np.clip(near - 1, 0, tic.size - 1)
        pick = np.where(
            np.abs(tic["time_s"][near] - ic[dm]) < np.abs(tic["time_s"][prev] - ic[dm]), near, prev
        )
        keep = (act[pick] == code) & (tic["time_s"][pick] > t_start + warmup_s - 0.05)
        det, dsd = ic[dm][keep], icsd[dm][keep]
        di, ri = match_events(det, ref, 0.05)
        known = dsd[di] != Side.UNKNOWN
        r: dict[str, Any] = {
            "tp": di.size,
            "nd": det.size,
            "nr": ref.size,
            "err": det[di] - ref[ri],
            "side_ok": int((dsd[di] == tic["side"][sel][ri])[known].sum()),
            "side_n": int(known.sum()),
        }
        st = out.steps
        ts = tst[(tst["activity"] == code) & (tst["time_s"] > t_start + warmup_s + 5.0)]
        sdi, sri = match_events(st["time_s"], ts["time_s"], 0.05)
        for key, col in (
            ("ct", "contact_time_s"),
            ("cad", "cadence_spm"),
            ("vo", "vertical_oscillation_m"),
            ("drop", "pelvic_drop_deg"),
        ):
            r[key] = st[col][sdi] - ts[col][sri]
        res[name] = r
    return res


def eval_simulator(
    n_seeds: int,
    minutes: float = 2.0,
    seed0: int = 100,
    params: AnalyzerParams | None = None,
    **sensor_kw: Any,
) -> dict[str, Any]:
    """Project simulator: random mountings, 100/200/400 Hz, sensor variants, packet path;
    ``sensor_kw`` go to every run's ``SensorConfig`` (e.g. ``sacral_soft_tissue=False``)."""
    acc_: dict[str, dict[str, list[Any]]] = {"run": {}, "walk": {}}
    k = 0
    per: list[tuple[str, float, float, float]] = []
    for s in range(n_seeds):
        for rate in (100, 200, 400):
            vname, kw = SIM_VARIANTS[k % len(SIM_VARIANTS)]
            k += 1
            run, t, a, g = simulated_samples(minutes, seed0 + s, rate, **kw, **sensor_kw)
            out = analyze(t, a, g, sample_rate_hz=float(rate), params=params)
            sc = score_simulated(run, out)
            for name in ("run", "walk"):
                if sc[name] is None:
                    continue
                for key, val in sc[name].items():
                    acc_[name].setdefault(key, []).append(val)
            r = sc["run"]
            per.append(
                (
                    f"seed {seed0 + s} {rate} Hz {vname}",
                    _f1(r["tp"], r["nd"], r["nr"]),
                    1e3 * float(np.percentile(np.abs(r["err"]), 95)),
                    r["side_ok"] / max(r["side_n"], 1),
                )
            )

    def summary(d: dict[str, list[Any]]) -> dict[str, Any]:
        e = np.concatenate(d["err"]) if d else np.zeros(0)
        if e.size == 0:
            return {"f1": 0.0, "n_ref": sum(d.get("nr", [0]))}

        def rmse(key: str) -> float:
            x = np.concatenate(d[key])
            return float(np.sqrt(np.nanmean(x**2)))

        cad = np.concatenate(d["cad"])
        return {
            "f1": _f1(sum(d["tp"]), sum(d["nd"]), sum(d["nr"])),
            "n_ref": sum(d["nr"]),
            "bias_ms": 1e3 * float(np.mean(e)),
            "p95_ms": 1e3 * float(np.percentile(np.abs(e), 95)),
            "side": sum(d["side_ok"]) / max(sum(d["side_n"]), 1),
            "side_n": sum(d["side_n"]),
            "ct_rmse_ms": 1e3 * rmse("ct"),
            "ct_bias_ms": 1e3 * float(np.nanmean(np.concatenate(d["ct"]))),
            "cad_mae": float(np.nanmean(np.abs(cad))),
            "vo_rmse_mm": 1e3 * rmse("vo"),
            "drop_rmse": rmse("drop"),
            "drop_nan": float(np.mean(np.isnan(np.concatenate(d["drop"])))),
        }

    return {"run": summary(acc_["run"]), "walk": summary(acc_["walk"]), "per_run": per}


def eval_alcantara(
    known_axes: bool, gait: GaitParams | None = None, half: str = "all"
) -> dict[str, Any]:
    """Alcantara trials; ``half`` = "odd" / "even" (trial index parity) or "all"."""
    trials = load_alcantara()
    if half != "all":
        trials = trials[(1 if half == "odd" else 0) :: 2]
    errs, to_errs, ct_errs = [], [], []
    tp = nd = nr = 0
    fs = 500.0
    for tr in trials:
        n = tr.v_g.size
        t = np.arange(n) / fs
        acc = np.zeros((n, 3))
        acc[:, 0] = tr.ap_g * G
        acc[:, 2] = tr.v_g * G
        gp = gait if gait is not None else GaitParams()
        params = (
            AnalyzerParams(gait=gp, forward_axis=(1.0, 0.0, 0.0), up_axis=(0.0, 0.0, 1.0))
            if known_axes
            else AnalyzerParams(gait=gp)
        )
        out = analyze(t, acc, None, sample_rate_hz=fs, params=params)
        ev = out.events
        ic = ev["time_s"][ev["kind"] == EventKind.INITIAL_CONTACT]
        # evaluate reference contacts fully inside the window and after 0.5 s of warm-up
        ref_ok = (tr.ic_s > 0.5) & (tr.ic_s < t[-1] - 0.3)
        ref = tr.ic_s[ref_ok]
        det = ic[(ic > 0.45) & (ic < t[-1] - 0.25)]
        di, ri = match_events(det, ref, 0.04)
        tp += di.size
        nd += det.size
        nr += ref.size
        errs.extend(det[di] - ref[ri])
        st = out.steps
        for k in ri:
            r_ic = ref[k]
            r_to = tr.to_s[tr.to_s > r_ic]
            if r_to.size == 0:
                continue
            j = np.argmin(np.abs(st["time_s"] - r_ic)) if len(st) else -1
            if (
                j < 0
                or abs(st["time_s"][j] - r_ic) > 0.04
                or not np.isfinite(st["contact_time_s"][j])
            ):
                continue
            ct_errs.append(st["contact_time_s"][j] - (r_to[0] - r_ic))
            to_errs.append(st["time_s"][j] + st["contact_time_s"][j] - r_to[0])
    e = np.asarray(errs)
    return {
        "f1": _f1(tp, nd, nr),
        "n_ref": nr,
        "bias_ms": 1e3 * float(np.mean(e)),
        "p95_ms": 1e3 * float(np.percentile(np.abs(e), 95)),
        "sd_ms": 1e3 * float(np.std(e)),
        "to_bias_ms": 1e3 * float(np.mean(to_errs)),
        "ct_rmse_ms": 1e3 * float(np.sqrt(np.mean(np.square(ct_errs)))),
        "ct_bias_ms": 1e3 * float(np.mean(ct_errs)),
        "n_ct": len(ct_errs),
    }


def _mobgap_trials(
    seed: int = 0, rotate: bool = True
) -> list[tuple[Any, NDArray[np.float64], Any]]:
    """(trial, rotation, orientation-stage signals) per mobgap trial; the rotation draws are the same
    as in :func:`eval_mobgap` (one per trial, in load order)."""
    from dsp.orientation import orient
    from dsp.resample import resample_uniform

    rng = np.random.default_rng(seed)
    out = []
    for tr in load_mobgap():
        R = _rot(rng) if rotate else np.eye(3)
        acc = tr.acc_g * G @ R.T
        gyr = tr.gyr_dps @ R.T
        t = np.arange(acc.shape[0]) / tr.fs
        rs, _, _ = resample_uniform(t, acc, gyr, sample_rate_hz=tr.fs)
        sig, _ = orient(
            rs.acc, rs.gyr, rs.flag, sample_rate_hz=tr.fs, params=AnalyzerParams().orient
        )
        out.append((tr, R, sig))
    return out


def walk_candidates(
    sig: NDArray[np.float64], fs: float, gp: GaitParams
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Python replica of the gait kernel's walking candidates (vertical-jerk peaks above the
    normalised threshold and the raw floor), without the refractory / acceptance stage.

    Returns, per candidate: IC sample (fractional, on the resampled grid), normalised peak,
    decision sample (peak + hold), features [ln jerk (g/s), normalised jerk, vmax (g), apd (g)] of
    :func:`dsp.gait._walk_score`. Used to fit the acceptance weights (leave-one-participant-out);
    :func:`select_walk` replays the kernel's selection, and the held-out figures come from the
    kernel itself."""
    from dsp.gait import gait_coefficients

    c = gait_coefficients(fs, gp)
    b0, b1, b2, a1, a2 = c[5:10]
    gds = c[11]
    x = sig[:, 0] / G
    # biquad (transposed direct form II as in the kernel), reset to the first sample
    z2 = (b2 - a2) * x[0]
    z1 = (b1 - a1) * x[0] + z2
    n = x.size
    xs = np.empty(n)
    for i in range(n):
        y = b0 * x[i] + z1
        z1 = b1 * x[i] - a1 * y + z2
        z2 = b2 * x[i] - a2 * y
        xs[i] = y
    d = np.zeros(n)
    d[1:] = np.diff(xs) * fs
    ms = np.empty(n)
    m = 0.0
    for i in range(n):
        m = d[i] * d[i] if m <= 0.0 else m + (d[i] * d[i] - m) / (gp.walk_norm_tau_s * fs)
        ms[i] = m
    nj = np.where(d > gp.walk_floor_gps, d / np.sqrt(ms + 1e-12), -1e9)
    pk = (
        np.nonzero((nj[1:-1] > nj[:-2]) & (nj[1:-1] >= nj[2:]) & (nj[1:-1] > gp.walk_thr_norm))[0]
        + 1
    )
    ics, nps, dec, feats = [], [], [], []
    vz = x - 1.0
    ap = sig[:, 1] / G
    for k in pk:
        if k < 2:
            continue
        den = d[k - 1] - 2.0 * d[k] + d[k + 1]
        dl = 0.5 * (d[k - 1] - d[k + 1]) / den if den < 0.0 else 0.0
        npk = k + dl
        last = int(np.ceil(npk + gp.walk_hold_s * fs - 1e-9))
        if last >= n:
            continue
        ic = npk - gds
        i0 = max(int(np.ceil(ic)), 0)
        vmax = float(vz[i0 : last + 1].max()) if i0 <= last else 0.0
        a0, a1_ = int(np.ceil(ic - gp.walk_apd_pre_s * fs)), int(np.floor(ic))
        c0 = int(np.ceil(ic + gp.walk_apd_post_s * fs))
        apd = (
            float(ap[a0 : a1_ + 1].mean() - ap[c0 : last + 1].mean())
            if a0 >= 0 and a1_ >= a0 and last >= c0
            else 0.0
        )
        ics.append(ic)
        nps.append(nj[k])
        dec.append(last)
        feats.append((np.log(max(d[k], 1e-6)), nj[k], vmax, apd))
    return np.asarray(ics), np.asarray(nps), np.asarray(dec), np.asarray(feats).reshape(-1, 4)


def select_walk(
    ics: NDArray[np.float64],
    nps: NDArray[np.float64],
    dec: NDArray[np.float64],
    score: NDArray[np.float64],
    gp: GaitParams,
    fs: float,
) -> NDArray[np.float64]:
    """The kernel's causal selection over :func:`walk_candidates`: a candidate is pending until its
    decision sample (a higher peak within the hold replaces it), then accepted when its score is
    >= 0; accepted ICs start the refractory period. Returns accepted IC samples."""
    from dsp.gait import gait_coefficients

    gds = gait_coefficients(fs, gp)[11]
    out: list[float] = []
    last_walk = -1e18
    pend = -1
    refr = gp.walk_refractory_s * fs
    for j in range(ics.size):
        npk = ics[j] + gds
        if pend >= 0 and dec[pend] <= np.floor(npk) + 1 - 1e-9:
            # the pending one is decided before this peak is seen
            if score[pend] >= 0.0:
                out.append(ics[pend])
                last_walk = ics[pend] + gds
            pend = -1
        if pend >= 0:
            if npk - (ics[pend] + gds) < refr and nps[j] > nps[pend]:
                pend = j
        elif npk - last_walk > refr:
            pend = j
    if pend >= 0 and score[pend] >= 0.0:
        out.append(ics[pend])
    return np.asarray(out)


def eval_alcantara_heldout(gait: GaitParams | None = None) -> dict[str, dict[str, Any]]:
    """Split-half held-out figures (known axes): the constant IC and TO offsets
    (``run_ic_offset_s`` / ``run_to_offset_s``) are re-fitted on one half of the trials (mean IC /
    TO error removed) and the detector is scored on the other half. Returns {"even": scored on the
    even trials with offsets fitted on the odd ones, "odd": the reverse}, each with the fitted
    offsets (s) in "ic_offset_s" / "to_offset_s"."""
    gp = gait if gait is not None else GaitParams()
    out: dict[str, dict[str, Any]] = {}
    for train, test in (("odd", "even"), ("even", "odd")):
        r = eval_alcantara(True, gp, train)
        fit = gp._replace(
            run_ic_offset_s=gp.run_ic_offset_s - 1e-3 * r["bias_ms"],
            run_to_offset_s=gp.run_to_offset_s - 1e-3 * r["to_bias_ms"],
        )
        res = eval_alcantara(True, fit, test)
        res["ic_offset_s"] = fit.run_ic_offset_s
        res["to_offset_s"] = fit.run_to_offset_s
        out[test] = res
    return out


def sim_waveform_check(
    impact_ratio: float,
    soft_tissue: bool,
    authors_filter: bool,
    gait: GaitParams,
    seed: int = 300,
    vo_m: float | None = None,
) -> tuple[float, float]:
    """(IC bias ms, contact time bias ms) of ``gait`` on 1 min of the project simulator's world
    vertical + AP specific force at 500 Hz (known axes, no gyro, noise-free), optionally with the
    sacral soft-tissue waveform and with the Alcantara authors' preprocessing (20 Hz zero-phase
    4th-order low-pass, vertical clipped at 0 g): how the rules depend on the impact transient and
    on that preprocessing."""
    import scipy.signal as ss

    from simulators import RunnerProfile, SensorConfig, simulate_run
    from simulators.sensor import sacral_soft_tissue_mps2

    fs = 500.0
    prof = RunnerProfile(impact_ratio=impact_ratio)
    if vo_m is not None:
        prof = dataclasses.replace(prof, vertical_oscillation_m=vo_m)
    run = simulate_run(1.0, seed, profile=prof, sensor=SensorConfig.ideal(sample_rate_hz=400))
    m = run.motion
    ic, to, _ = m.running_contacts()
    t = np.arange(ic[3] - 0.1, ic[-3], 1.0 / fs)
    st = m.evaluate(t, position=False)
    v = st.acc_world_mps2[:, 2] / G + 1.0
    if soft_tissue:
        v = v + sacral_soft_tissue_mps2(m, t) / G
    ap = st.acc_ap_mps2 / G
    if authors_filter:
        b, a = ss.butter(4, 20.0, fs=fs)
        v = np.clip(ss.filtfilt(b, a, v), 0.0, None)
        ap = ss.filtfilt(b, a, ap)
    sel = (ic > t[0] + 0.5) & (ic < t[-1] - 0.3)
    ric, rto = ic[sel] - t[0], to[sel] - t[0]
    acc = np.zeros((t.size, 3))
    acc[:, 0] = ap * G
    acc[:, 2] = v * G
    params = AnalyzerParams(gait=gait, forward_axis=(1.0, 0.0, 0.0), up_axis=(0.0, 0.0, 1.0))
    out = analyze(t - t[0], acc, None, sample_rate_hz=fs, params=params)
    ev = out.events
    det = ev["time_s"][ev["kind"] == EventKind.INITIAL_CONTACT]
    di, ri = match_events(det, ric, 0.04)
    steps = out.steps
    sdi, sri = match_events(steps["time_s"], ric, 0.04)
    ct = steps["contact_time_s"][sdi] - (rto[sri] - ric[sri])
    return 1e3 * float(np.mean(det[di] - ric[ri])), 1e3 * float(np.nanmean(ct))


def sim_threshold_vs_truth(
    impact_ratio: float, level_g: float = 0.1, vo_m: float | None = None
) -> tuple[float, float]:
    """(IC, TO) of a force-plate style threshold (vertical force > ``level_g`` body weights) minus
    the simulator's truth (force > 0), mean over the running steps of 1 min (ms)."""
    from simulators import RunnerProfile, SensorConfig, simulate_run

    prof = RunnerProfile(impact_ratio=impact_ratio)
    if vo_m is not None:
        prof = dataclasses.replace(prof, vertical_oscillation_m=vo_m)
    run = simulate_run(1.0, 300, profile=prof, sensor=SensorConfig.ideal(sample_rate_hz=400))
    m = run.motion
    ic, to, _ = m.running_contacts()
    dic, dto = [], []
    for a, b in zip(ic[3:-3], to[3:-3], strict=True):
        t = np.arange(a - 0.005, b + 0.005, 0.0002)
        f = m.evaluate(t, position=False).acc_world_mps2[:, 2] / G + 1.0
        on = np.flatnonzero(f > level_g)
        dic.append(t[on[0]] - a)
        dto.append(t[on[-1]] - b)
    return 1e3 * float(np.mean(dic)), 1e3 * float(np.mean(dto))


def alcantara_grf_tail(level_bw: float = 0.03) -> tuple[float, float]:
    """Real GRF: time from the 0.1 BW toe-off (the reference) to the ``level_bw`` crossing, mean
    and SD (ms): how far 'force ~ 0' lies after the reference toe-off."""
    from benchmarks.realdata import load_alcantara_grf

    fs = 500.0
    d = []
    for tr, g in zip(load_alcantara(), load_alcantara_grf(), strict=True):
        for to in tr.to_s:
            k = int(to * fs)
            for j in range(k, min(k + 60, g.size - 1)):
                if g[j + 1] < level_bw <= g[j]:
                    d.append((j + (g[j] - level_bw) / (g[j] - g[j + 1])) / fs - to)
                    break
    return 1e3 * float(np.mean(d)), 1e3 * float(np.std(d))


def _ic_errors_and_peaks(
    t: NDArray[np.float64],
    v_g: NDArray[np.float64],
    ap_g: NDArray[np.float64],
    ref_ic: NDArray[np.float64],
    window_s: float = 0.09,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Default-detector IC errors (s) at 500 Hz, known axes, and the peak vertical acc (g) in
    [IC, IC + window] of each matched detection."""
    fs = 500.0
    acc = np.zeros((t.size, 3))
    acc[:, 0] = ap_g * G
    acc[:, 2] = v_g * G
    params = AnalyzerParams(forward_axis=(1.0, 0.0, 0.0), up_axis=(0.0, 0.0, 1.0))
    ev = analyze(t, acc, None, sample_rate_hz=fs, params=params).events
    det = ev["time_s"][ev["kind"] == EventKind.INITIAL_CONTACT]
    det = det[(det > 0.45) & (det < t[-1] - 0.25)]
    ref = ref_ic[(ref_ic > 0.5) & (ref_ic < t[-1] - 0.3)]
    di, ri = match_events(det, ref, 0.04)
    pk = [
        float(v_g[math.ceil(d * fs) : math.floor((d + window_s) * fs) + 1].max()) for d in det[di]
    ]
    return det[di] - ref[ri], np.asarray(pk)


def peak_correction_check() -> list[str]:
    """Per-step IC correction by the peak vertical acc after the IC (a trial-offset proxy): fitted
    on one half of the Alcantara trials, scored on the other; and the same regression slope on the
    simulator (6 runner variants) raw vs through the authors' 20 Hz zero-phase filter + clip."""
    import scipy.signal as ss

    from simulators import RunnerProfile, SensorConfig, simulate_run

    lines = []
    trials = load_alcantara()
    per = []
    for tr in trials:
        t = np.arange(tr.v_g.size) / 500.0
        per.append(_ic_errors_and_peaks(t, tr.v_g, tr.ap_g, tr.ic_s))
    for train, test in ((1, 0), (0, 1)):
        x = np.concatenate([per[i][1] for i in range(train, len(per), 2)])
        y = np.concatenate([per[i][0] for i in range(train, len(per), 2)])
        c = np.polyfit(x, y, 1)
        e0 = np.concatenate([per[i][0] for i in range(test, len(per), 2)])
        xt = np.concatenate([per[i][1] for i in range(test, len(per), 2)])
        e1 = e0 - np.polyval(c, xt)
        e0 = e0 - float(np.mean(y))
        lines.append(
            f"Alcantara, fitted on {'odd' if train else 'even'} ({1e3 * c[0]:+.1f} ms/g, r "
            f"{np.corrcoef(x, y)[0, 1]:+.2f}), scored on {'even' if train else 'odd'}: IC p95 "
            f"{1e3 * np.percentile(np.abs(e0), 95):.1f} ms (constant offset) -> "
            f"{1e3 * np.percentile(np.abs(e1), 95):.1f} ms (peak correction), bias "
            f"{1e3 * np.mean(e1):+.1f} ms"
        )
    b, a = ss.butter(4, 20.0, fs=500.0)
    variants = (
        (0.3, 0.08, 176),
        (0.6, 0.08, 176),
        (1.0, 0.07, 176),
        (1.5, 0.07, 186),
        (0.6, 0.06, 190),
        (1.2, 0.09, 166),
    )
    for filt in (False, True):
        xs, ys = [], []
        for k, (imp, vo, cad) in enumerate(variants):
            prof = RunnerProfile(impact_ratio=imp, vertical_oscillation_m=vo, cadence_spm=cad)
            run = simulate_run(1.0, 200 + k, profile=prof, sensor=SensorConfig.ideal())
            ic, _, _ = run.motion.running_contacts()
            t = np.arange(ic[3] - 0.1, ic[-3], 1.0 / 500.0)
            st = run.motion.evaluate(t, position=False)
            v = st.acc_world_mps2[:, 2] / G + 1.0
            ap = st.acc_ap_mps2 / G
            if filt:
                v = np.clip(ss.filtfilt(b, a, v), 0.0, None)
                ap = ss.filtfilt(b, a, ap)
            e, pk = _ic_errors_and_peaks(t - t[0], v, ap, ic - t[0])
            xs.append(pk)
            ys.append(e)
        c = np.polyfit(np.concatenate(xs), np.concatenate(ys), 1)
        lines.append(
            f"simulator, 6 runner variants, {'authors filter + clip' if filt else 'raw'}: "
            f"{1e3 * c[0]:+.1f} ms/g"
        )
    return lines


def eval_mobgap(
    seed: int = 0,
    rotate: bool = True,
    gait: GaitParams | None = None,
    edge: bool = True,
    participants: tuple[str, ...] | None = None,
    dedup: bool = True,
    tol_s: float = 0.2,
) -> dict[str, Any]:
    """mobgap lab trials (lower back, walking), sensor frame randomly rotated per trial.

    Reference walking bouts start at their first IC and end at their last one. ``edge=True``:
    a detection up to the 0.2 s tolerance OUTSIDE a bout may match that bout's first / last IC
    (unmatched detections outside the bout are not counted, as before). ``edge=False``: the
    old protocol, only detections inside [start, end] (a detection 10 ms before the first IC
    counted as a miss). ``dedup``: reference ICs listed twice at the same time (2 in MS001
    Test11) count once, as mobgap's own loader does (its README counts: 91, not 93).
    ``participants``: only these (e.g. ("HA001",)), leave-one-out tuning. ``tol_s``: matching
    tolerance (0.2 s = the target; mobgap's own ICD scorer uses 0.5 s)."""
    params = AnalyzerParams(gait=gait) if gait is not None else None
    rng = np.random.default_rng(seed)
    tp = nd = nr = 0
    side_ok = side_n = 0
    fp_gap = 0
    errs = []
    per = []
    tol = tol_s
    for tr in load_mobgap():
        R = _rot(rng) if rotate else np.eye(3)
        if participants is not None and not tr.name.startswith(participants):
            continue
        acc = tr.acc_g * G @ R.T
        gyr = tr.gyr_dps @ R.T
        t = np.arange(acc.shape[0]) / tr.fs
        out = analyze(t, acc, gyr, sample_rate_hz=tr.fs, params=params)
        ev = out.events
        icm = ev["kind"] == EventKind.INITIAL_CONTACT
        ic = ev["time_s"][icm]
        sd = ev["side"][icm]
        ref_t = tr.ic_s
        ref_l = tr.ic_left
        if dedup:
            keep = np.ones(ref_t.size, bool)
            keep[1:] = np.diff(ref_t) > 0.0
            ref_t = ref_t[keep]
            ref_l = ref_l[keep]
        ttp = tnd = tnr = 0
        for a, b in tr.wbs:
            rm = (ref_t >= a) & (ref_t <= b)
            pad = tol if edge else 0.0
            dm = (ic >= a - pad) & (ic <= b + pad)
            ref = ref_t[rm]
            det = ic[dm]
            di, ri = match_events(det, ref, tol)
            inside = (det >= a) & (det <= b)
            ttp += di.size
            # detections outside [a, b] count only when matched (edge protocol)
            tnd += int(inside.sum()) + int((~inside[di]).sum())
            tnr += ref.size
            errs.extend(det[di] - ref[ri])
            # unmatched detections inside the bout between two consecutive SAME-side reference
            # ICs (a contact of the other foot is missing there, or one foot shuffled): info
            rs = ref_l[rm]
            um = np.ones(det.size, bool)
            um[di] = False
            for x in det[um & inside]:
                k = np.searchsorted(ref, x)
                if 0 < k < ref.size and rs[k - 1] == rs[k] and ref[k - 1] + tol < x < ref[k] - tol:
                    fp_gap += 1
            dsd = sd[dm][di]
            rl = ref_l[rm][ri]
            known = dsd != Side.UNKNOWN
            side_n += int(known.sum())
            side_ok += int(((dsd == Side.LEFT) == rl)[known].sum())
        per.append((tr.name, _f1(ttp, tnd, tnr)))
        tp += ttp
        nd += tnd
        nr += tnr
    e = np.asarray(errs)
    return {
        "f1": _f1(tp, nd, nr),
        "precision": tp / nd if nd else 0.0,
        "recall": tp / nr if nr else 0.0,
        "tp": tp,
        "n_det": nd,
        "n_ref": nr,
        "bias_ms": 1e3 * float(np.mean(e)) if e.size else np.nan,
        "side_acc": side_ok / side_n if side_n else np.nan,
        "fp_same_side_gap": fp_gap,
        "per_trial": per,
    }


def _logreg(X: NDArray[np.float64], y: NDArray[np.float64], l2: float) -> NDArray[np.float64]:
    """L2-regularised logistic regression (Newton), bias unpenalised; returns [w..., b]."""
    X1 = np.c_[X, np.ones(len(X))]
    w = np.zeros(X1.shape[1])
    reg = l2 * np.eye(w.size)
    reg[-1, -1] = 0.0
    for _ in range(50):
        pr = 1.0 / (1.0 + np.exp(-X1 @ w))
        H = X1.T @ (X1 * (pr * (1.0 - pr))[:, None]) + reg
        w -= np.linalg.solve(H, X1.T @ (pr - y) + reg @ w)
    return w


def _fit_walk_accept(
    data: Sequence[tuple[Any, tuple[NDArray[np.float64], ...], NDArray[np.int64]]],
    gp: GaitParams,
    l2: float = 1.0,
) -> GaitParams:
    """Fit the walking acceptance weights on ``data`` = [(trial, sig, labels-in-bout mask ...)].

    Each element: (trial, candidate tuple from :func:`walk_candidates`, label array with 1 =
    candidate matched to a reference IC, 0 = unmatched in a bout, -1 = outside bouts). The
    logistic regression is on standardised features; the decision threshold (logit grid) is the
    one with the best pooled F1 of the replayed kernel selection on the same data."""
    X = np.concatenate([c[3][lab >= 0] for _, c, lab in data])
    y = np.concatenate([lab[lab >= 0] for _, c, lab in data]).astype(float)
    mu = X.mean(0)
    sd = X.std(0)
    w = _logreg((X - mu) / sd, y, l2)
    wr = w[:-1] / sd
    b = w[-1] - float(np.sum(w[:-1] * mu / sd))
    best = (-1.0, 0.0)
    for thr in np.linspace(-1.5, 0.5, 9):
        tp = nd = nr = 0
        for tr, c, _ in data:
            acc = select_walk(c[0], c[1], c[2], c[3] @ wr + b - thr, gp, tr.fs) / tr.fs
            a_tp, a_nd, a_nr = _match_in_bouts(tr, acc)
            tp, nd, nr = tp + a_tp, nd + a_nd, nr + a_nr
        f = _f1(tp, nd, nr)
        if f > best[0] + 1e-12:
            best = (f, thr)
    return gp._replace(
        walk_w_jerk=float(wr[0]),
        walk_w_norm=float(wr[1]),
        walk_w_vmax=float(wr[2]),
        walk_w_apd=float(wr[3]),
        walk_w0=float(b - best[1]),
    )


def _ref_dedup(tr: Any) -> NDArray[np.float64]:
    keep = np.ones(tr.ic_s.size, bool)
    keep[1:] = np.diff(tr.ic_s) > 0.0
    return np.asarray(tr.ic_s[keep])


def _match_in_bouts(tr: Any, det_s: NDArray[np.float64], tol: float = 0.2) -> tuple[int, int, int]:
    """(tp, counted detections, reference ICs) of the edge protocol for one trial."""
    ref_t = _ref_dedup(tr)
    tp = nd = nr = 0
    for a, b in tr.wbs:
        ref = ref_t[(ref_t >= a) & (ref_t <= b)]
        det = det_s[(det_s >= a - tol) & (det_s <= b + tol)]
        di, _ = match_events(det, ref, tol)
        inside = (det >= a) & (det <= b)
        tp += di.size
        nd += int(inside.sum()) + int((~inside[di]).sum())
        nr += ref.size
    return tp, nd, nr


def _candidate_labels(tr: Any, ic_s: NDArray[np.float64], tol: float = 0.2) -> NDArray[np.int64]:
    """1 = candidate matched (one-to-one) to a reference IC of its bout, 0 = unmatched in a bout
    (+- tol), -1 = outside every bout."""
    ref_t = _ref_dedup(tr)
    lab = -np.ones(ic_s.size, np.int64)
    for a, b in tr.wbs:
        idx = np.nonzero((ic_s >= a - tol) & (ic_s <= b + tol))[0]
        lab[idx] = np.maximum(lab[idx], 0)
        di, _ = match_events(ic_s[idx], ref_t[(ref_t >= a) & (ref_t <= b)], tol)
        lab[idx[di]] = 1
    return lab


def mobgap_lopo(l2: float = 1.0) -> dict[str, Any]:
    """Leave-one-participant-out over HA001 / HA002 / MS001 for the walking acceptance stage:
    the logistic-regression weights and the decision threshold are fitted on the candidates of
    two participants (kernel replica :func:`walk_candidates`), the third is scored by the kernel
    with those weights (:func:`eval_mobgap`). Returns the pooled held-out F1 / precision /
    recall and the per-fold weights (a few seconds)."""
    parts = ("HA001", "HA002", "MS001")
    gp = GaitParams()
    data = []
    for tr, _, sig in _mobgap_trials():
        c = walk_candidates(sig, tr.fs, gp)
        data.append((tr, c, _candidate_labels(tr, c[0] / tr.fs)))
    tot = np.zeros(3)
    folds = []
    for held in parts:
        gpf = _fit_walk_accept([d for d in data if not d[0].name.startswith(held)], gp, l2)
        r = eval_mobgap(gait=gpf, participants=(held,))
        tot += (r["tp"], r["n_det"], r["n_ref"])
        w = (gpf.walk_w_jerk, gpf.walk_w_norm, gpf.walk_w_vmax, gpf.walk_w_apd, gpf.walk_w0)
        folds.append((held, tuple(round(v, 3) for v in w), r["f1"]))
    full = _fit_walk_accept(data, gp, l2)
    return {
        "f1": _f1(int(tot[0]), int(tot[1]), int(tot[2])),
        "precision": tot[0] / tot[1],
        "recall": tot[0] / tot[2],
        "folds": folds,
        "all": (
            full.walk_w_jerk,
            full.walk_w_norm,
            full.walk_w_vmax,
            full.walk_w_apd,
            full.walk_w0,
        ),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer simulated runs")
    ap.add_argument("--lopo", action="store_true", help="mobgap leave-one-participant-out only")
    ap.add_argument(
        "--waveforms",
        action="store_true",
        help="running rules vs the simulator's impact transient / soft tissue / authors' filter",
    )
    args = ap.parse_args(argv)
    if args.waveforms:
        print(
            "IC bias / contact time bias (ms) on the simulator, 500 Hz, known axes; 'raw' = as "
            "simulated, 'authors' = 20 Hz zero-phase low-pass + clip at 0 g (Alcantara)"
        )
        dets = (("default", GaitParams()), ("RIGID_PELVIS", RIGID_PELVIS))
        for pname, gp in dets:
            for vo in (None, 0.08):
                for soft in (False, True):
                    for imp in (0.0, 0.3, 0.6, 1.2):
                        cells = [
                            sim_waveform_check(imp, soft, filt, gp, vo_m=vo)
                            for filt in (False, True)
                        ]
                        print(
                            f"{pname:12s} VO {'default' if vo is None else vo:7} "
                            f"{'sacral soft tissue' if soft else 'rigid':18s} "
                            f"impact_ratio {imp:.1f}: raw {cells[0][0]:+6.1f} / {cells[0][1]:+6.1f}   "
                            f"authors {cells[1][0]:+6.1f} / {cells[1][1]:+6.1f}"
                        )
        for vo in (None, 0.07, 0.08):
            for imp in (0.0, 0.6, 1.2):
                dic, dto = sim_threshold_vs_truth(imp, vo_m=vo)
                print(
                    f"simulator VO {'default' if vo is None else vo} impact_ratio {imp:.1f}: a 0.1 g "
                    f"force threshold vs the truth (force > 0): IC {dic:+.1f} ms, TO {dto:+.1f} ms, "
                    f"contact {dto - dic:+.1f} ms"
                )
        if (shared_data_dir() / "alcantara_running_grf").exists():
            m, sd = alcantara_grf_tail()
            print(f"Alcantara GRF: 0.03 BW is reached {m:.1f} ms (SD {sd:.1f}) after the 0.1 BW TO")
            for line in peak_correction_check():
                print(line)
        return 0
    if args.lopo:
        lo = mobgap_lopo()
        for held, w, fte in lo["folds"]:
            print(f"held out {held}: weights (jerk, norm, vmax, apd, w0) {w} held-out F1 {fte:.3f}")
        print(
            f"pooled held-out F1 {lo['f1']:.3f} (P {lo['precision']:.3f}, R {lo['recall']:.3f}); "
            f"fitted on all: {tuple(round(v, 3) for v in lo['all'])}"
        )
        return 0
    t0 = time.perf_counter()
    data = shared_data_dir()
    n_seeds = 1 if args.quick else 3
    sim = eval_simulator(n_seeds)
    r = sim["run"]
    _table(
        f"Project simulator (simulators.simulate_run), running steps, {3 * n_seeds} x 2 min, random "
        "mountings, 100/200/400 Hz, sensor variants (default / noisy / clip 4 g 500 dps / 2 % "
        f"packet loss + reorder + corruption) through the packet decoder, n_ref={r['n_ref']}",
        [
            ("IC F1 (50 ms)", f"{r['f1']:.4f}", ">= 0.995"),
            ("IC bias ms", f"{r['bias_ms']:+.1f}", ""),
            ("IC |error| p95 ms", f"{r['p95_ms']:.1f}", "<= 10"),
            ("side accuracy", f"{r['side']:.4f}", ">= 0.99"),
            ("contact time RMSE ms", f"{r['ct_rmse_ms']:.1f}", "<= 10"),
            ("contact time bias ms", f"{r['ct_bias_ms']:+.1f}", ""),
            ("cadence MAE spm", f"{r['cad_mae']:.2f}", "<= 1"),
            ("vertical oscillation RMSE mm", f"{r['vo_rmse_mm']:.1f}", "<= 5"),
            ("pelvic drop RMSE deg", f"{r['drop_rmse']:.2f}", "<= 0.5"),
        ]
        + [
            (f"  {n}: F1/p95/side", f"{f:.3f}/{p:.1f}/{sd:.2f}", "")
            for n, f, p, sd in sim["per_run"]
        ],
    )
    cross = []
    for sname, skw in (
        ("sacral soft tissue (default)", {}),
        ("rigid pelvis", {"sacral_soft_tissue": False}),
    ):
        for dname, gp in (("default", GaitParams()), ("RIGID_PELVIS", RIGID_PELVIS)):
            rr = eval_simulator(1, params=AnalyzerParams(gait=gp), **skw)["run"]
            cross.append(
                (
                    f"  sensor {sname}, detector {dname}",
                    f"{rr['f1']:.4f}/{rr['p95_ms']:.1f}/{rr['ct_rmse_ms']:.1f}/{rr['ct_bias_ms']:+.1f}",
                    "",
                )
            )
    _table(
        "Simulator sensor model x running detector (seed 100, 3 runs): IC F1 / IC p95 ms / contact "
        "RMSE ms / contact bias ms",
        cross,
    )
    w = sim["walk"]
    _table(
        f"Project simulator, walking steps (info; no target), n_ref={w['n_ref']}",
        [("IC F1 (50 ms)", f"{w['f1']:.3f}", "")]
        + (
            [
                ("IC bias ms", f"{w['bias_ms']:+.1f}", ""),
                ("IC |error| p95 ms", f"{w['p95_ms']:.1f}", ""),
                ("side accuracy", f"{w['side']:.3f}", ""),
            ]
            if "bias_ms" in w
            else []
        ),
    )
    if (data / "alcantara_running_grf").exists():
        presets: tuple[tuple[str, GaitParams], ...] = (
            ("default detector", GaitParams()),
            ("SACRAL_SOFT_TISSUE preset", SACRAL_SOFT_TISSUE),
            ("RIGID_PELVIS (previous default)", RIGID_PELVIS),
        )
        for pname, gp in presets:
            for known in (True, False):
                for half in ("odd", "even"):
                    r = eval_alcantara(known, gp, half)
                    lab = "known axes" if known else "axes estimated (acc only)"
                    _table(
                        f"Real running: Alcantara sacral acc vs force treadmill, {pname}, {lab}, "
                        f"{half} trials, n_ref={r['n_ref']}",
                        [
                            ("IC F1 (40 ms)", f"{r['f1']:.3f}", ""),
                            ("IC bias ms", f"{r['bias_ms']:+.1f}", "within +-5"),
                            ("IC |error| p95 ms", f"{r['p95_ms']:.1f}", "<= 15"),
                            ("IC error SD ms", f"{r['sd_ms']:.1f}", ""),
                            ("TO bias ms", f"{r['to_bias_ms']:+.1f}", ""),
                            ("contact time RMSE ms", f"{r['ct_rmse_ms']:.1f}", "<= 10"),
                            ("contact time bias ms", f"{r['ct_bias_ms']:+.1f}", ""),
                        ],
                    )
        for pname, gp in presets:
            ho = eval_alcantara_heldout(gp)
            _table(
                f"Real running, {pname}, known axes, HELD OUT: constant IC / TO offsets re-fitted "
                "on one half of the trials, scored on the other (odd -> even | even -> odd)",
                [
                    (
                        "fitted IC / TO offset ms (on odd | on even)",
                        " | ".join(
                            f"{1e3 * ho[h]['ic_offset_s']:+.1f} / {1e3 * ho[h]['to_offset_s']:+.1f}"
                            for h in ("even", "odd")
                        ),
                        "",
                    ),
                    *(
                        (label, " | ".join(format(ho[h][key], fmt) for h in ("even", "odd")), tgt)
                        for label, key, fmt, tgt in (
                            ("IC F1 (40 ms)", "f1", ".3f", ""),
                            ("IC bias ms", "bias_ms", "+.1f", "within +-5"),
                            ("IC |error| p95 ms", "p95_ms", ".1f", "<= 15"),
                            ("contact time RMSE ms", "ct_rmse_ms", ".1f", "<= 10"),
                            ("contact time bias ms", "ct_bias_ms", "+.1f", ""),
                        )
                    ),
                ],
            )
    else:
        print(f"\n(real running skipped: {data / 'alcantara_running_grf'} missing)")
    if (data / "mobgap").exists():
        r = eval_mobgap()
        r_dup = eval_mobgap(dedup=False)
        r_old = eval_mobgap(edge=False)
        r_05 = eval_mobgap(tol_s=0.5)
        _table(
            f"Real walking: mobgap lower back vs INDIP, random sensor rotation, n_ref={r['n_ref']}",
            [
                ("IC F1 (0.2 s, in WBs)", f"{r['f1']:.3f}", ">= 0.92 (mobgap 0.76-0.84)"),
                ("IC F1, duplicated reference ICs kept", f"{r_dup['f1']:.3f}", "(n_ref 238)"),
                ("IC F1, detections inside WBs only", f"{r_old['f1']:.3f}", "(old protocol)"),
                ("IC F1 at 0.5 s (mobgap's own ICD scorer)", f"{r_05['f1']:.3f}", "(info)"),
                ("IC precision", f"{r['precision']:.3f}", ""),
                (
                    "  unmatched det. between 2 same-side ref ICs",
                    f"{r['fp_same_side_gap']} of {r['n_det'] - r['tp']}",
                    "(info: reference lacks a contact?)",
                ),
                ("IC recall", f"{r['recall']:.3f}", ""),
                ("IC bias ms", f"{r['bias_ms']:+.1f}", ""),
                ("left/right accuracy", f"{r['side_acc']:.3f}", ">= 0.95"),
            ]
            + [(f"  F1 {n}", f"{f:.3f}", "") for n, f in r["per_trial"]],
        )
    else:
        print(f"\n(real walking skipped: {data / 'mobgap'} missing)")
    print(f"\n(total {time.perf_counter() - t0:.1f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
