"""Gait kernel ring buffer: every read stays inside the logical history of written samples.

Regression (benchmark seed 101, 100 Hz, 2 % packet loss, t = 87.57 s): a lost packet hid the end
of a contact; the resampler bridged it linearly, the TO extrapolated from the crossings on the
bridge landed after the next IC, and the pelvic-drop window [IC, TO] of that step read ring slots
not written yet (with the old 4 s ring: samples from 4 s earlier; with a power-of-two ring: other
samples, which is how it was found). Such a step now has no contact-based metrics, and the
reads are bounded by the newest written sample.

Check: stream in small chunks and, after every chunk, overwrite every ring slot outside the
logical history (newest - L, newest] with a finite poison (NaN would be invisible to the running
max of the pelvic drop). The output must equal the clean offline result exactly.
"""

from __future__ import annotations

import itertools

import numpy as np
from dsp_synth import synth_run
from numpy.typing import NDArray

from benchmarks.accuracy import SIM_VARIANTS, simulated_samples
from dsp.analyzer import AnalyzerOutput, GaitAnalyzer, analyze
from dsp.gait import _N, _RING_L, gait_initial_state
from dsp.types import Activity

_FS = 100.0


def _poison_stale(an: GaitAnalyzer) -> None:
    gs = an._gs
    assert gs is not None
    n_phys = gs.ring.shape[0]
    newest = int(gs.i[_N]) - 1  # between calls: all samples so far are in the ring
    stale = np.arange(newest - n_phys + 1, newest - int(gs.i[_RING_L]) + 1)
    gs.ring[stale[stale >= 0] & (n_phys - 1)] = 1e3


def _streamed_poisoned(
    t: NDArray[np.float64], a: NDArray[np.float64], g: NDArray[np.float64] | None, chunk: int
) -> tuple[NDArray[np.void], NDArray[np.void]]:
    an = GaitAnalyzer(has_gyro=g is not None, sample_rate_hz=_FS)
    outs: list[AnalyzerOutput] = []
    for i0, i1 in itertools.pairwise([*range(0, t.size, chunk), t.size]):
        outs.append(an.push(t[i0:i1], a[i0:i1], None if g is None else g[i0:i1]))
        _poison_stale(an)
    outs.append(an.flush())
    return np.concatenate([o.events for o in outs]), np.concatenate([o.steps for o in outs])


def _assert_same(a: tuple[NDArray[np.void], NDArray[np.void]], b: AnalyzerOutput) -> None:
    ev, steps = a
    assert ev.shape == b.events.shape
    assert steps.shape == b.steps.shape
    np.testing.assert_array_equal(ev, b.events)
    for name in steps.dtype.names or ():
        np.testing.assert_array_equal(steps[name], b.steps[name])


def _impossible_to(steps: NDArray[np.void]) -> NDArray[np.bool_]:
    """Running steps whose TO is not before the next IC (contact time >= step time)."""
    run = steps["activity"] == Activity.RUNNING
    return run & ~(steps["contact_time_s"] < 60.0 / steps["cadence_spm"])


def test_initial_state_ring_is_power_of_two() -> None:
    for fs in (50.0, 100.0, 104.0, 200.0, 400.0):
        s = gait_initial_state(fs)
        n = s.ring.shape[0]
        assert n & (n - 1) == 0
        assert s.i[_RING_L] == round(4.0 * fs) <= n


def test_packet_loss_run_reads_stay_in_history() -> None:
    """The benchmark run of the regression (seed 101, 100 Hz, 2 % packet loss, 2 min)."""
    _, t, a, g = simulated_samples(2.0, 101, 100, **dict(SIM_VARIANTS)["2 % packet loss"])
    ref = analyze(t, a, g, sample_rate_hz=_FS)
    bad = _impossible_to(ref.steps)
    for col in ("contact_time_s", "flight_time_s", "braking_mps2", "pelvic_drop_deg"):
        assert np.isnan(ref.steps[col][bad]).all(), col
    _assert_same(_streamed_poisoned(t, a, g, 5), ref)


def _gappy() -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Synthetic running with lost packets (~0.14 s, bridged) from just before a TO to just
    before the next IC: the TO extrapolated on the bridge falls after the next IC."""
    s = synth_run(duration_s=30.0, fs=_FS, seed=11)
    keep = np.ones(s.t.size, dtype=bool)
    for k in range(10, s.ic.size - 1, 7):
        keep[(s.t >= s.to[k] - 0.03) & (s.t < s.ic[k + 1] - 0.005)] = False
    return s.t[keep], s.acc[keep], s.gyr[keep]


def test_impossible_to_gives_no_contact_metrics() -> None:
    t, a, g = _gappy()
    for gyr in (g, None):
        ref = analyze(t, a, gyr, sample_rate_hz=_FS)
        st = ref.steps
        assert len(st) > 50
        bad = _impossible_to(st)
        assert bad.sum() >= 1  # the case of the regression occurs
        for col in ("contact_time_s", "flight_time_s", "braking_mps2", "pelvic_drop_deg"):
            assert np.all(np.isnan(st[col][bad])), col
        ok = np.isfinite(st["flight_time_s"])
        assert np.all(st["flight_time_s"][ok] >= 0.0)
        _assert_same(_streamed_poisoned(t, a, gyr, 3), ref)


def test_bout_ended_right_after_an_ic() -> None:
    """A bout ended by a long gap (flag) or by the end of input 70 ms after an IC (inside its side
    window): the IC's side evidence is closed while the newest written sample is the one before
    ``st[_N]`` (the old code read slot ``st[_N]``, not written yet)."""
    s = synth_run(duration_s=20.0, fs=_FS, seed=4)
    keep = s.t < s.ic[-8] + 0.07
    for k in (15, 30):
        keep[(s.t >= s.ic[k] + 0.07) & (s.t < s.ic[k] + 0.6)] = False
    t, a, g = s.t[keep], s.acc[keep], s.gyr[keep]
    for gyr in (g, None):
        ref = analyze(t, a, gyr, sample_rate_hz=_FS)
        assert len(ref.steps) > 20
        _assert_same(_streamed_poisoned(t, a, gyr, 4), ref)
