"""Baselines: robust pace-aware fit, JSON store per runner, reuse across sessions."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from alerts_synth import Segment, intervals_run, steady, synth_steps

from imu.alerts import AlertConfig, AlertEngine, run_alerts
from imu.baseline import (
    Baseline,
    BaselineError,
    BaselineStore,
    default_baseline_dir,
    fit_baseline,
    merge_baselines,
    prior_slope,
    robust_line,
)


def test_robust_line_ignores_outliers_and_shrinks_to_prior() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-0.02, 0.02, 400)
    y = 0.25 + 1.5 * x + 0.005 * rng.standard_normal(400)
    y[::20] += 0.2  # 5 % gross outliers
    a, b, sd, _ = robust_line(x, y, prior_slope=0.0, prior_sxx=1e-6)
    assert a == pytest.approx(0.25, abs=0.002)
    assert b == pytest.approx(1.5, abs=0.1)
    assert sd == pytest.approx(0.005, rel=0.25)
    # no spread in x: the slope is the prior
    _a2, b2, _, _ = robust_line(np.zeros(100), y[:100], prior_slope=1.3, prior_sxx=0.01)
    assert b2 == pytest.approx(1.3)
    # the contact-time prior: elasticity 2.4 at the runner's own values
    assert prior_slope("contact_time_s", 0.34, 0.24) == pytest.approx(2.4 * 0.24 / 0.34)
    assert prior_slope("flight_time_s", 0.34, 0.24) == pytest.approx(1 - 2.4 * 0.24 / 0.34)


def test_fit_baseline_per_side_and_pace() -> None:
    steps, _ = synth_steps(intervals_run(4, 30), seed=4, drop0_deg=(3.5, 5.0))
    run = steps["activity"] == 2
    st = 60.0 / steps["cadence_spm"][run]
    b = fit_baseline(steps[run], st, runner="ana", session="s1")
    assert b.model("pelvic_drop_deg", "left").intercept == pytest.approx(3.5, abs=0.3)  # type: ignore[union-attr]
    assert b.model("pelvic_drop_deg", "right").intercept == pytest.approx(5.0, abs=0.3)  # type: ignore[union-attr]
    ct = b.model("contact_time_s")
    assert ct is not None
    assert ct.slope > 0.5
    assert 160 < b.cadence_spm < 185
    assert math.isnan(b.expected("nope", "", 0.35))


def test_engine_baseline_window_is_steady_running(tmp_path: Path) -> None:
    steps, _ = synth_steps(steady(12), seed=1)
    _, eng = run_alerts(steps)
    b = eng.baseline
    assert b is not None
    assert b.window_start_s >= 120
    assert b.window_end_s <= 6 * 60 + 15
    assert b.cadence_spm == pytest.approx(170, abs=3)
    assert b.ref_step_time_s == pytest.approx(60 / 170, abs=0.01)
    # a walking warm-up and a stop do not count as running time
    steps2, _ = synth_steps([Segment(300, "walk"), Segment(60, "stand"), *steady(10)], seed=1)
    _, eng2 = run_alerts(steps2)
    assert eng2.baseline is not None
    assert eng2.baseline.window_start_s >= 360 + 120


def test_store_roundtrip_merge_and_limits(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("IMU_HOME", str(tmp_path / "home"))
    assert default_baseline_dir() == tmp_path / "home" / "baselines"
    store = BaselineStore(max_sessions=3)
    assert store.load("ana") is None
    bases = []
    for i in range(4):
        steps, _ = synth_steps(steady(10), seed=i, drop0_deg=(4.0 + 0.1 * i, 4.0))
        _, eng = run_alerts(steps)
        assert eng.baseline is not None
        bases.append(
            Baseline.from_dict({**eng.baseline.to_dict(), "session": f"s{i}", "runner": "ana"})
        )
        usual = store.save(bases[-1])
    path = tmp_path / "home" / "baselines" / "ana.json"
    doc = json.loads(path.read_text())
    assert doc["format"] == "imu-baseline"
    assert [s["session"] for s in doc["sessions"]] == [
        "s1",
        "s2",
        "s3",
    ]
    hist = store.history("ana")
    assert hist == bases[1:]  # exact round trip (NaN-free here)
    assert usual.sessions == 3
    assert usual.session == "usual"
    loaded = store.load("ana")
    assert loaded == usual
    # saving the same session again replaces it
    store.save(bases[3])
    assert [h.session for h in store.history("ana")] == ["s1", "s2", "s3"]
    assert usual.model("pelvic_drop_deg", "left").intercept == pytest.approx(4.2, abs=0.3)  # type: ignore[union-attr]


def test_store_errors(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    with pytest.raises(BaselineError):
        store.path("../etc/passwd")
    (tmp_path / "bob.json").write_text("{not json")
    with pytest.raises(BaselineError, match="cannot read"):
        store.load("bob")
    (tmp_path / "bob.json").write_text(json.dumps({"format": "imu-baseline", "version": 99}))
    with pytest.raises(BaselineError, match="version"):
        store.load("bob")


def test_nan_fields_survive_json(tmp_path: Path) -> None:
    steps, _ = synth_steps(steady(10), seed=2)
    steps["braking_mps2"] = np.nan
    _, eng = run_alerts(steps)
    assert eng.baseline is not None
    b = Baseline.from_dict({**eng.baseline.to_dict(), "runner": "ana", "session": "x"})
    usual = BaselineStore(tmp_path).save(b)
    assert usual.model("braking_mps2") is None
    assert math.isnan(merge_baselines([b]).window_start_s)  # type: ignore[union-attr]


def test_reuse_across_sessions_carries_pace_slope(tmp_path: Path) -> None:
    store = BaselineStore(tmp_path)
    # session 1: intervals inside the baseline window -> the pace slope of the drop is learned
    segs = [Segment(120, "run", 3.3)] + [Segment(40, "run", v) for v in (4.3, 2.7) * 4] + steady(10)
    steps, _ = synth_steps(segs, seed=3)
    steps["pelvic_drop_deg"] += np.where(
        steps["activity"] == 2, 60 * (60 / steps["cadence_spm"] - 60 / 170), 0
    )
    cfg = AlertConfig()
    eng = AlertEngine(cfg, runner="ana", session="s1")
    eng.update(steps)
    eng.finish()
    assert eng.baseline is not None
    s1_slope = eng.baseline.model("pelvic_drop_deg").slope  # type: ignore[union-attr]
    assert s1_slope > 20
    usual = store.save(eng.baseline)
    # session 2: steady window; alone it keeps the population prior, with the usual it uses s1's
    steps2, _ = synth_steps(steady(10), seed=9)
    alone = run_alerts(steps2, cfg)[1].baseline
    with_usual = run_alerts(steps2, cfg, store.load("ana"))[1].baseline
    assert alone is not None
    assert with_usual is not None
    # alone: the population prior (0)
    assert abs(alone.model("pelvic_drop_deg").slope) < 10  # type: ignore[union-attr]
    assert with_usual.model("pelvic_drop_deg").slope > 0.6 * s1_slope  # type: ignore[union-attr]
    assert usual.runner == "ana"
