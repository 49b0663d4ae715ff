"""Loaders + scoring for the real reference data in ../shared/data (numpy/scipy only)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

G = 9.80665


def shared_data_dir() -> Path:
    env = os.environ.get("IMU_SHARED_DATA")
    if env:
        return Path(env)
    return Path(__file__).resolve().parents[1].parent / "shared" / "data"


def match_events(
    det: NDArray[np.float64], ref: NDArray[np.float64], tol_s: float
) -> tuple[NDArray[np.int64], NDArray[np.int64]]:
    """One-to-one greedy matching by increasing |error| within ``tol_s``: (det_idx, ref_idx)."""
    if det.size == 0 or ref.size == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    d = np.abs(det[:, None] - ref[None, :])
    cand = np.argwhere(d <= tol_s)
    order = np.argsort(d[cand[:, 0], cand[:, 1]], kind="stable")
    used_d: set[int] = set()
    used_r: set[int] = set()
    di, ri = [], []
    for c in cand[order]:
        a, b = int(c[0]), int(c[1])
        if a in used_d or b in used_r:
            continue
        used_d.add(a)
        used_r.add(b)
        di.append(a)
        ri.append(b)
    o = np.argsort(ri)
    return np.asarray(di, np.int64)[o], np.asarray(ri, np.int64)[o]


@dataclass
class AlcantaraTrial:
    v_g: NDArray[np.float64]
    ap_g: NDArray[np.float64]
    ic_s: NDArray[np.float64]
    to_s: NDArray[np.float64]
    speed: float
    slope: float


def load_alcantara() -> list[AlcantaraTrial]:
    d = shared_data_dir() / "alcantara_running_grf"
    x = np.loadtxt(d / "Accelerometer_one_sub.csv", delimiter=",")
    y = np.loadtxt(d / "GRF_one_sub.csv", delimiter=",")
    info = np.genfromtxt(
        d / "Sub_Info_one_sub.csv", delimiter=",", names=True, dtype=None, encoding="utf-8"
    )
    names = info.dtype.names or ()
    sp_col = next((n for n in names if "speed" in n.lower()), None)
    sl_col = next((n for n in names if "slope" in n.lower()), None)
    out = []
    fs = 500.0
    for i in range(x.shape[0]):
        grf = y[i]
        on = (grf > 0.1).astype(int)
        dd = np.diff(on)
        # sub-sample crossing of 0.1 BW
        ic = []
        to = []
        for k in np.where(dd == 1)[0]:
            ic.append((k + (0.1 - grf[k]) / (grf[k + 1] - grf[k])) / fs)
        for k in np.where(dd == -1)[0]:
            to.append((k + (grf[k] - 0.1) / (grf[k] - grf[k + 1])) / fs)
        out.append(
            AlcantaraTrial(
                x[i, :2480],
                x[i, 2480:],
                np.asarray(ic),
                np.asarray(to),
                float(info[sp_col][i]) if sp_col else np.nan,
                float(info[sl_col][i]) if sl_col else np.nan,
            )
        )
    return out


@dataclass
class MobgapTrial:
    name: str
    acc_g: NDArray[np.float64]
    gyr_dps: NDArray[np.float64]
    fs: float
    wbs: list[tuple[float, float]]  # walking bouts (s)
    ic_s: NDArray[np.float64]
    ic_left: NDArray[np.bool_]


def load_mobgap() -> list[MobgapTrial]:
    import scipy.io as sio

    base = shared_data_dir() / "mobgap" / "example_data" / "data" / "lab"
    out = []
    for mat in sorted(base.glob("*/*/data.mat")):
        d = sio.loadmat(mat, squeeze_me=True, struct_as_record=False, mat_dtype=True)["data"]
        tm = d.TimeMeasure1
        for test in tm._fieldnames:
            tt = getattr(tm, test)
            for trial in tt._fieldnames:
                tr = getattr(tt, trial)
                su = tr.SU.LowerBack
                fs = float(su.Fs.Acc) if hasattr(su.Fs, "Acc") else 100.0
                try:
                    cwp = tr.Standards.INDIP.ContinuousWalkingPeriod
                except AttributeError:
                    continue
                wl = np.atleast_1d(cwp)
                wbs, ics, lr = [], [], []
                for w in wl:
                    if not hasattr(w, "InitialContact_Event"):
                        continue
                    ev = np.atleast_1d(np.asarray(w.InitialContact_Event, dtype=float))
                    side = np.atleast_1d(w.InitialContact_LeftRight)
                    if ev.size == 0:
                        continue
                    wbs.append((float(w.Start), float(w.End)))
                    for e, s in zip(ev, side, strict=False):
                        if np.isfinite(e):
                            # MATLAB time -> 0-based sample -> seconds on our clock
                            ics.append((round(e * fs) - 1) / fs)
                            lr.append(str(s).lower().startswith("l"))
                if not ics:
                    continue
                name = f"{mat.parent.parent.name}{mat.parent.name}-{test}-{trial}"
                out.append(
                    MobgapTrial(
                        name,
                        np.asarray(su.Acc, float),
                        np.asarray(su.Gyr, float),
                        fs,
                        [((round(a * fs) - 1) / fs, (round(b * fs) - 1) / fs) for a, b in wbs],
                        np.asarray(ics),
                        np.asarray(lr),
                    )
                )
    return out


#: windows (s, relative to the force-plate event) of the sacral waveform templates
SACRAL_IC_WINDOW_S = (-0.03, 0.10)
SACRAL_TO_WINDOW_S = (-0.06, 0.05)


def load_alcantara_grf() -> NDArray[np.float64]:
    """Vertical GRF (body weights), one row per Alcantara trial (same order as load_alcantara)."""
    d = shared_data_dir() / "alcantara_running_grf"
    return np.asarray(np.loadtxt(d / "GRF_one_sub.csv", delimiter=","), dtype=np.float64)


def sacral_waveform_templates(
    half: str = "odd",
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Mean (sacral vertical acc - authors'-filtered GRF) in g around the force-plate ICs and TOs
    of the Alcantara trials of one parity (``half`` = "odd" / "even" / "all"), 2 ms grid over
    :data:`SACRAL_IC_WINDOW_S` / :data:`SACRAL_TO_WINDOW_S`, tapered to 0 at both ends (Tukey,
    25 %). What a skin-mounted sacral accelerometer adds to the whole-body vertical acceleration
    GRF/m near contact (impact overshoot) and after toe-off (shoulder); the source of the
    simulator's ``SensorConfig.sacral_soft_tissue`` tables (fitted on the odd trials)."""
    import scipy.signal as ss

    trials = load_alcantara()
    grf = load_alcantara_grf()
    fs = 500.0
    b, a = ss.butter(4, 20.0, fs=fs)  # the authors' 20 Hz low-pass (zero phase)
    sel = range(len(trials))
    if half != "all":
        sel = range(1 if half == "odd" else 0, len(trials), 2)
    out = []
    for (lo_s, hi_s), key in ((SACRAL_IC_WINDOW_S, "ic_s"), (SACRAL_TO_WINDOW_S, "to_s")):
        lo, hi = round(lo_s * fs), round(hi_s * fs)
        rows = []
        for i in sel:
            tr = trials[i]
            gf = ss.filtfilt(b, a, grf[i])
            for e in getattr(tr, key):
                k = round(e * fs)
                if k + lo >= 0 and k + hi < tr.v_g.size:
                    rows.append(tr.v_g[k + lo : k + hi + 1] - gf[k + lo : k + hi + 1])
        out.append(np.mean(rows, axis=0) * ss.windows.tukey(hi - lo + 1, 0.25))
    return out[0], out[1]
