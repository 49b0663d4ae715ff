"""The pipeline kernel (blocks of PIPELINE_BLOCK inside one call) == the three offline stage
functions called one after the other on the whole recording, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from dsp_synth import synth_run

import dsp.analyzer as an
from dsp.analyzer import AnalyzerParams, analyze
from dsp.gait import GaitParams, gait_events
from dsp.orientation import SIG_OBLIQ, SIG_ROLL_RATE, orient
from dsp.resample import resample_uniform


@pytest.mark.parametrize("side_signal", [SIG_OBLIQ, SIG_ROLL_RATE])
@pytest.mark.parametrize("block", [1, 97, 4096])
def test_pipeline_equals_stage_chain(
    side_signal: int, block: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    s = synth_run(duration_s=40.0, fs=200.0, seed=8)
    rng = np.random.default_rng(2)
    t = np.sort(s.t + 0.001 * rng.standard_normal(s.t.size))
    keep = np.ones(t.size, dtype=bool)
    keep[3000:3030] = False  # a lost packet (bridged)
    keep[5000:5100] = False  # a gap (restart)
    t, acc, gyr = t[keep], s.acc[keep], s.gyr[keep]
    params = AnalyzerParams(gait=GaitParams(side_signal=side_signal))
    monkeypatch.setattr(an, "PIPELINE_BLOCK", block)
    out = analyze(t, acc, gyr, sample_rate_hz=200.0, params=params)
    # the stage chain (rate outputs on: every column of sig is real)
    r, _, t0 = resample_uniform(t, acc, gyr, sample_rate_hz=200.0)
    sig, _ = orient(r.acc, r.gyr, r.flag, sample_rate_hz=200.0)
    ev, steps, _ = gait_events(
        sig, r.k, r.flag, has_gyro=True, sample_rate_hz=200.0, t0=t0, params=params.gait
    )
    assert len(out.steps) > 50
    assert out.events.tobytes() == an._to_events(ev).tobytes()
    assert out.steps.tobytes() == an._to_steps(steps).tobytes()
