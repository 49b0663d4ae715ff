"""Any chunking of the input (incl. size-1 and empty chunks) gives exactly the offline result."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
from dsp_synth import synth_run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from numpy.typing import NDArray

import dsp.analyzer as analyzer_module
from dsp.analyzer import AnalyzerOutput, GaitAnalyzer, analyze
from dsp.orientation import orient, orient_initial_state

_S = synth_run(duration_s=12.0, fs=100.0, seed=3)
# jitter + a gap + a dropout so the resampler's paths are exercised
_rng = np.random.default_rng(5)
_T = _S.t + 0.002 * _rng.standard_normal(_S.t.size)
_T = np.sort(_T)
_KEEP = np.ones(_T.size, dtype=bool)
_KEEP[600:640] = False  # 0.4 s gap
_T, _ACC, _GYR = _T[_KEEP], _S.acc[_KEEP], _S.gyr[_KEEP]


def _concat(outs: list[AnalyzerOutput]) -> tuple[NDArray[np.void], NDArray[np.void]]:
    return np.concatenate([o.events for o in outs]), np.concatenate([o.steps for o in outs])


def _assert_same(a: tuple[NDArray[np.void], NDArray[np.void]], b: AnalyzerOutput) -> None:
    ev, steps = a
    assert ev.shape == b.events.shape
    assert steps.shape == b.steps.shape
    np.testing.assert_array_equal(ev["kind"], b.events["kind"])
    np.testing.assert_array_equal(ev["side"], b.events["side"])
    np.testing.assert_allclose(ev["time_s"], b.events["time_s"], rtol=0, atol=1e-12)
    for name in steps.dtype.names or ():
        np.testing.assert_allclose(steps[name], b.steps[name], rtol=0, atol=1e-12, equal_nan=True)


_OFF_GYRO = analyze(_T, _ACC, _GYR, sample_rate_hz=100.0)
_OFF_ACC = analyze(_T, _ACC, None)


def test_offline_finds_steps() -> None:
    assert len(_OFF_GYRO.steps) > 15
    assert len(_OFF_ACC.steps) > 15


def _run_chunks(cuts: list[int], has_gyro: bool, fs: float | None) -> list[AnalyzerOutput]:
    an = GaitAnalyzer(has_gyro=has_gyro, sample_rate_hz=fs)
    outs = []
    bounds = [0, *sorted(cuts), _T.size]
    for a, b in itertools.pairwise(bounds):
        outs.append(an.push(_T[a:b], _ACC[a:b], _GYR[a:b] if has_gyro else None))
    outs.append(an.flush())
    return outs


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=_T.size), min_size=0, max_size=40))
def test_any_chunking_equals_offline_gyro(cuts: list[int]) -> None:
    _assert_same(_concat(_run_chunks(cuts, True, 100.0)), _OFF_GYRO)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=_T.size), min_size=0, max_size=40))
def test_any_chunking_equals_offline_acc_only_rate_estimated(cuts: list[int]) -> None:
    _assert_same(_concat(_run_chunks(cuts, False, None)), _OFF_ACC)


def test_size_one_chunks() -> None:
    cuts = list(range(700)) + list(range(700, _T.size, 37))
    _assert_same(_concat(_run_chunks(cuts, True, 100.0)), _OFF_GYRO)


def test_state_roundtrip() -> None:
    an = GaitAnalyzer(has_gyro=True, sample_rate_hz=100.0)
    outs = [an.push(_T[:500], _ACC[:500], _GYR[:500])]
    an2 = GaitAnalyzer.from_state(an.state, has_gyro=True)
    outs.append(an2.push(_T[500:], _ACC[500:], _GYR[500:]))
    outs.append(an2.flush())
    _assert_same(_concat(outs), _OFF_GYRO)


def _orient_data() -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.int8]]:
    from simulators import Segment, SensorConfig, simulate_run

    upside_down = np.array([[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]])
    run = simulate_run(
        0.5,
        9,
        segments=[Segment.standing(1.0), Segment.running(30.0)],
        sensor=SensorConfig(sample_rate_hz=400, mounting=upside_down),
    )
    _, acc, gyr = run.samples
    n = 6000
    flag = np.zeros(n, np.int8)
    flag[0] = 1
    flag[3000] = 1  # restart after a gap
    return acc[:n], gyr[:n], flag


_OA, _OG, _OF = _orient_data()
_O_OFF = orient(_OA, _OG, _OF, sample_rate_hz=400.0)[0]


@settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.integers(min_value=0, max_value=6000), min_size=0, max_size=30))
def test_orientation_kernel_chunks_bitwise(cuts: list[int]) -> None:
    """400 Hz, upside-down mounting, a restart: the kernel's correction / axes counters and the
    yaw increments carry over chunk boundaries exactly."""
    s = orient_initial_state()
    parts = []
    bounds = [0, *sorted(cuts), _OA.shape[0]]
    for a, b in itertools.pairwise(bounds):
        sig, s = orient(_OA[a:b], _OG[a:b], _OF[a:b], sample_rate_hz=400.0, state=s)
        parts.append(sig)
    np.testing.assert_array_equal(np.concatenate(parts), _O_OFF)


def _live_chunks(an: GaitAnalyzer, size: int, readonly: bool = False) -> AnalyzerOutput:
    outs = []
    for a in range(0, _T.size, size):
        t, acc, gyr = (x[a : a + size].copy() for x in (_T, _ACC, _GYR))
        for x in (t, acc, gyr):
            x.flags.writeable = not readonly
        outs.append(an.push(t, acc, gyr))
    outs.append(an.flush())
    ev, steps = _concat(outs)
    return AnalyzerOutput(ev, steps)


def test_compiled_entry_point_same_as_dispatcher(monkeypatch: Any) -> None:
    """Pushes call the pipeline kernel's compiled entry point directly (no re-typing of the
    arguments per push); bit for bit what the numba dispatcher gives, also for inputs that need
    the dispatcher (read-only arrays)."""
    fast = GaitAnalyzer(sample_rate_hz=100.0)
    out_fast = _live_chunks(fast, 40)
    assert fast._kernel is not None
    out_ro = _live_chunks(GaitAnalyzer(sample_rate_hz=100.0), 40, readonly=True)
    monkeypatch.setattr(analyzer_module, "_compiled_entry", lambda args: None)
    slow = GaitAnalyzer(sample_rate_hz=100.0)
    out_slow = _live_chunks(slow, 40)
    assert slow._kernel is None
    assert len(out_slow.steps) > 15
    for out in (out_fast, out_ro):
        assert out.steps.tobytes() == out_slow.steps.tobytes()
        assert out.events.tobytes() == out_slow.events.tobytes()
