"""Accuracy of the DSP against ground truth: ``python -m benchmarks.accuracy [--quick]``.

Sections (each prints a table):
1. own simulator (``simulators.simulate_run``) when available, else the small synthetic runner of
   the tests, over random mountings / rates / noise / packet loss;
2. real running: Alcantara et al. force-treadmill data (sacral acc, GRF 0.1 BW events);
3. real walking: mobgap lower-back IMU with INDIP reference, sensor frame randomly rotated.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from benchmarks.realdata import G, load_alcantara, load_mobgap, match_events, shared_data_dir
from dsp.analyzer import AnalyzerParams, analyze
from dsp.types import EventKind, Side


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
def _truth_steps(sy: Any) -> dict[str, NDArray[np.float64]]:
    """Per-step truth of the synthetic runner with the architecture.md definitions."""
    ic, to, side = sy.ic, sy.to, sy.side
    fs = 1.0 / (sy.t[1] - sy.t[0])
    n = ic.size - 1
    vo = np.full(n, np.nan)
    drop = np.full(n, np.nan)
    for k in range(n):
        i0, i1 = int(np.ceil(ic[k] * fs)), int(np.floor(ic[k + 1] * fs))
        z = sy.z_m[i0 : i1 + 1]
        # remove the (numerical) drift of the truth integration linearly over the step
        z = z - np.linspace(z[0], z[-1], z.size)
        vo[k] = z.max() - z.min()
        s0 = ic[k - 1] if k >= 1 else ic[k]
        s1 = ic[k + 1] if k >= 1 else (ic[k + 2] if k + 2 < ic.size else ic[k + 1])
        j0, j1 = int(np.ceil(s0 * fs)), int(np.floor(s1 * fs))
        mo = sy.obliq_deg[j0 : j1 + 1].mean()
        sg = 1.0 if side[k] == Side.LEFT else -1.0
        drop[k] = np.max(sg * (sy.obliq_deg[i0 : int(np.floor(to[k] * fs)) + 1] - mo))
    return {
        "ic": ic[:n],
        "side": side[:n],
        "cadence": 60.0 / np.diff(ic),
        "contact": (to - ic)[:n],
        "vo": vo,
        "drop": drop,
    }


def eval_synthetic(n_runs: int, seed: int = 0) -> dict[str, Any]:
    """Synthetic runner (tests/dsp/dsp_synth.py) over random mountings, rates, noise, loss."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "dsp"))
    from dsp_synth import synth_run

    rng = np.random.default_rng(seed)
    tp = nd = nr = 0
    errs, side_ok, side_n = [], 0, 0
    ct: list[float] = []
    cad: list[float] = []
    vo: list[float] = []
    drop: list[float] = []
    for _r in range(n_runs):
        fs = float(rng.choice([100.0, 200.0, 400.0]))
        sy = synth_run(
            duration_s=60.0,
            fs=fs,
            seed=int(rng.integers(1 << 30)),
            step_s=float(rng.uniform(0.32, 0.40)),
            contact_s=float(rng.uniform(0.20, 0.28)),
            noise=float(rng.uniform(0.02, 0.2)),
        )
        t = sy.t + rng.normal(0, 0.1 / fs, sy.t.size)  # clock jitter
        t.sort()
        acc = np.clip(sy.acc, -16 * G, 16 * G)  # +-16 g clipping
        gyr = np.clip(sy.gyr, -2000, 2000)
        keep = np.ones(t.size, bool)  # packet loss: drop 20-sample packets (1 %)
        for p0 in range(0, t.size, 20):
            if rng.random() < 0.01:
                keep[p0 : p0 + 20] = False
        out = analyze(t[keep], acc[keep], gyr[keep], sample_rate_hz=fs)
        tr = _truth_steps(sy)
        ev = out.events
        ic = ev["time_s"][ev["kind"] == EventKind.INITIAL_CONTACT]
        icsd = ev["side"][ev["kind"] == EventKind.INITIAL_CONTACT]
        ref = tr["ic"][tr["ic"] > 3.0]  # after the 3 s warm-up
        det_m = ic > 2.95
        di, ri = match_events(ic[det_m], ref, 0.05)
        tp += di.size
        nd += int(det_m.sum())
        nr += ref.size
        errs.extend(ic[det_m][di] - ref[ri])
        side_ok += int((icsd[det_m][di] == tr["side"][tr["ic"] > 3.0][ri]).sum())
        side_n += di.size
        st = out.steps
        sdi, sri = match_events(st["time_s"], tr["ic"], 0.05)
        good = tr["ic"][sri] > 10.0
        sdi, sri = sdi[good], sri[good]
        ct.extend(st["contact_time_s"][sdi] - tr["contact"][sri])
        cad.extend(st["cadence_spm"][sdi] - tr["cadence"][sri])
        vo.extend(st["vertical_oscillation_m"][sdi] - tr["vo"][sri])
        drop.extend(st["pelvic_drop_deg"][sdi] - tr["drop"][sri])
    e = np.asarray(errs)

    def rmse(x: list[float]) -> float:
        a = np.asarray(x)
        return float(np.sqrt(np.nanmean(a**2)))

    return {
        "f1": _f1(tp, nd, nr),
        "p95_ms": 1e3 * float(np.percentile(np.abs(e), 95)),
        "bias_ms": 1e3 * float(np.mean(e)),
        "side": side_ok / side_n if side_n else np.nan,
        "ct_rmse_ms": 1e3 * rmse(ct),
        "cad_mae": float(np.nanmean(np.abs(cad))),
        "vo_rmse_mm": 1e3 * rmse(vo),
        "drop_rmse": rmse(drop),
        "n_ref": nr,
    }


def eval_alcantara(known_axes: bool) -> dict[str, Any]:
    trials = load_alcantara()
    errs, to_errs, ct_errs = [], [], []
    tp = nd = nr = 0
    fs = 500.0
    for tr in trials:
        n = tr.v_g.size
        t = np.arange(n) / fs
        acc = np.zeros((n, 3))
        acc[:, 0] = tr.ap_g * G
        acc[:, 2] = tr.v_g * G
        params = (
            AnalyzerParams(forward_axis=(1.0, 0.0, 0.0), up_axis=(0.0, 0.0, 1.0))
            if known_axes
            else None
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


def eval_mobgap(seed: int = 0, rotate: bool = True) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    tp = nd = nr = 0
    side_ok = side_n = 0
    errs = []
    per = []
    for tr in load_mobgap():
        R = _rot(rng) if rotate else np.eye(3)
        acc = tr.acc_g * G @ R.T
        gyr = tr.gyr_dps @ R.T
        t = np.arange(acc.shape[0]) / tr.fs
        out = analyze(t, acc, gyr, sample_rate_hz=tr.fs)
        ev = out.events
        icm = ev["kind"] == EventKind.INITIAL_CONTACT
        ic = ev["time_s"][icm]
        sd = ev["side"][icm]
        ttp = tnd = tnr = 0
        for a, b in tr.wbs:
            rm = (tr.ic_s >= a) & (tr.ic_s <= b)
            dm = (ic >= a) & (ic <= b)
            ref = tr.ic_s[rm]
            det = ic[dm]
            di, ri = match_events(det, ref, 0.2)
            ttp += di.size
            tnd += det.size
            tnr += ref.size
            errs.extend(det[di] - ref[ri])
            dsd = sd[dm][di]
            rl = tr.ic_left[rm][ri]
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
        "n_ref": nr,
        "bias_ms": 1e3 * float(np.mean(e)) if e.size else np.nan,
        "side_acc": side_ok / side_n if side_n else np.nan,
        "per_trial": per,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--quick", action="store_true", help="fewer simulated runs")
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    data = shared_data_dir()
    r = eval_synthetic(4 if args.quick else 12)
    _table(
        "Synthetic runner (tests/dsp/dsp_synth.py; the project simulator was not available), random "
        f"mountings, 100/200/400 Hz, noise, jitter, clipping, 1 % packet loss, n_ref={r['n_ref']}",
        [
            ("IC F1 (50 ms)", f"{r['f1']:.4f}", ">= 0.995"),
            ("IC bias ms", f"{r['bias_ms']:+.1f}", ""),
            ("IC |error| p95 ms", f"{r['p95_ms']:.1f}", "<= 10"),
            ("side accuracy", f"{r['side']:.4f}", ">= 0.99"),
            ("contact time RMSE ms", f"{r['ct_rmse_ms']:.1f}", "<= 10"),
            ("cadence MAE spm", f"{r['cad_mae']:.2f}", "<= 1"),
            ("vertical oscillation RMSE mm", f"{r['vo_rmse_mm']:.1f}", "<= 5"),
            ("pelvic drop RMSE deg", f"{r['drop_rmse']:.2f}", "<= 0.5"),
        ],
    )
    if (data / "alcantara_running_grf").exists():
        for known in (True, False):
            r = eval_alcantara(known)
            lab = "known axes (v, ap given)" if known else "axes estimated per 4.96 s window"
            _table(
                f"Real running: Alcantara 2022 sacral acc vs force treadmill, {lab}, n_ref={r['n_ref']}",
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
    else:
        print(f"\n(real running skipped: {data / 'alcantara_running_grf'} missing)")
    if (data / "mobgap").exists():
        r = eval_mobgap()
        _table(
            f"Real walking: mobgap lower back vs INDIP, random sensor rotation, n_ref={r['n_ref']}",
            [
                ("IC F1 (0.2 s, in WBs)", f"{r['f1']:.3f}", ">= 0.92 (mobgap 0.76-0.84)"),
                ("IC precision", f"{r['precision']:.3f}", ""),
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
