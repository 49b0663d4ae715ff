"""Accuracy against ground truth: the project simulator (always) and real data (when present)."""

from __future__ import annotations

import numpy as np
import pytest
from dsp_synth import synth_run

from benchmarks.accuracy import score_simulated, simulated_samples
from benchmarks.realdata import shared_data_dir
from dsp.analyzer import AnalyzerParams, analyze, analyze_with_info
from dsp.gait import RIGID_PELVIS, GaitParams


@pytest.mark.parametrize("rate", [200, 100])
def test_simulated_two_minute_run(rate: int) -> None:
    run, t, a, g = simulated_samples(2.0, 7, rate)
    out, info = analyze_with_info(t, a, g, sample_rate_hz=float(rate))
    sc = score_simulated(run, out)
    r = sc["run"]
    f1 = 2 * r["tp"] / (r["nd"] + r["nr"])
    assert f1 >= 0.99
    assert np.percentile(np.abs(r["err"]), 95) <= 0.006  # 1.4 / 1.6 ms (200 / 100 Hz)
    assert r["side_ok"] / r["side_n"] >= 0.99
    assert np.sqrt(np.nanmean(r["ct"] ** 2)) <= 0.011  # 6.4 / 6.7 ms on this seed
    assert np.sqrt(np.nanmean(r["drop"] ** 2)) <= 0.5
    assert np.nanmean(np.abs(r["cad"])) <= 1.6  # 0.37 / 0.46 spm
    assert np.sqrt(np.nanmean(r["vo"] ** 2)) <= 0.005  # 3.9 / 4.1 mm (sacral skin waveform)
    # running ICs are reported <= 0.09 s after contact; walking (jerk detector: 3 Hz low-pass
    # group delay 75 ms + hold 20 ms) <= 0.1 s
    assert info["max_ic_report_latency_s"] <= 0.1 + 1e-6
    w = sc["walk"]
    if w is not None and w["tp"] > 10:
        # simulated walking now has its vertical acc peak after the contact as on mobgap: the
        # walking detector lands ~34 ms early (mobgap: -24 ms) instead of ~120 ms
        assert -0.05 <= float(np.median(w["err"])) <= 0.0
        assert w["side_ok"] / max(w["side_n"], 1) >= 0.95


def test_rigid_sensor_with_rigid_pelvis_detector() -> None:
    """A sensor without soft tissue (rigid pelvis) needs the RIGID_PELVIS detector; the default
    (sacral) rules end its contacts ~20 ms early there."""
    run, t, a, g = simulated_samples(2.0, 7, 200, sacral_soft_tissue=False)
    rates = {}
    for name, gp in (("rigid", RIGID_PELVIS), ("default", GaitParams())):
        out = analyze(t, a, g, sample_rate_hz=200.0, params=AnalyzerParams(gait=gp))
        rates[name] = score_simulated(run, out)["run"]
    r = rates["rigid"]
    assert np.percentile(np.abs(r["err"]), 95) <= 0.006
    assert np.sqrt(np.nanmean(r["ct"] ** 2)) <= 0.011
    assert np.nanmean(rates["default"]["ct"]) < -0.015


def test_accelerometer_only_gives_events_and_timing() -> None:
    s = synth_run(duration_s=30.0, fs=100.0, seed=5)
    out = analyze(s.t, s.acc, None, sample_rate_hz=100.0)
    assert len(out.steps) > 60
    assert (out.steps["side"] == 0).all()
    assert np.isnan(out.steps["pelvic_drop_deg"]).all()
    assert np.isfinite(out.steps["contact_time_s"]).mean() > 0.9


def test_standing_gives_no_steps() -> None:
    rng = np.random.default_rng(0)
    n = 6000
    t = np.arange(n) / 200.0
    acc = np.array([1.0, -2.0, 9.5]) + 0.05 * rng.normal(size=(n, 3))
    gyr = 0.5 * rng.normal(size=(n, 3))
    out = analyze(t, acc, gyr)
    assert len(out.steps) == 0


def _need(path: str) -> None:
    p = shared_data_dir() / path
    if not p.exists():
        pytest.skip(f"real data missing: {p}")


@pytest.mark.realdata
def test_alcantara_running_ic() -> None:
    _need("alcantara_running_grf")
    from benchmarks.accuracy import eval_alcantara
    from dsp.gait import SACRAL_SOFT_TISSUE

    r = eval_alcantara(known_axes=True, gait=SACRAL_SOFT_TISSUE)
    assert r["f1"] >= 0.98
    assert abs(r["bias_ms"]) <= 5.0
    assert r["p95_ms"] <= 20.0
    # the default detector (odd / even: F1 0.985 / 0.998, IC bias +0.2 / +1.1 ms, p95 17.3 / 19.4 ms,
    # contact RMSE 14.9 / 13.6 ms; RIGID_PELVIS, the default before: F1 0.81 / 0.78, p95 32 / 35 ms,
    # contact RMSE 43 / 47 ms)
    for half in ("odd", "even"):
        r = eval_alcantara(known_axes=True, half=half)
        assert r["f1"] >= 0.98
        assert abs(r["bias_ms"]) <= 3.0
        assert r["p95_ms"] <= 20.0
        assert r["ct_rmse_ms"] <= 16.0


@pytest.mark.realdata
def test_mobgap_walking_ic() -> None:
    _need("mobgap")
    from benchmarks.accuracy import eval_mobgap

    r = eval_mobgap()
    # target 0.92 not met; weights fitted in-sample, held-out figure in test_mobgap_walking_lopo
    assert r["f1"] >= 0.855  # measured 0.864 (duplicated reference ICs counted once)
    assert r["recall"] >= 0.865  # measured 0.877
    assert r["side_acc"] >= 0.96  # measured 0.971
    r_old = eval_mobgap(edge=False)  # only detections inside the reference bouts
    assert r_old["f1"] >= 0.81  # measured 0.820 (before: 0.791)


@pytest.mark.realdata
def test_mobgap_walking_lopo() -> None:
    """Leave-one-participant-out: acceptance weights fitted on two participants, the third scored
    by the kernel with them."""
    _need("mobgap")
    from benchmarks.accuracy import mobgap_lopo

    lo = mobgap_lopo()
    assert lo["f1"] >= 0.84  # measured 0.850 (previous detector's parameter grid: 0.815)
