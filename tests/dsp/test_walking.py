"""Walking detector: permissive vertical-jerk candidates + the acceptance score (dsp.gait._walk_score).

Kernel-level tests on synthetic orientation-stage signals (no real data): heel strikes (vertical
acceleration rising after the contact, AP acceleration dropping) are accepted, small mid-step
bumps (a jerk peak without the heel-strike pattern) are rejected; any chunking gives the offline
result. Real data (mobgap): the Python replica used to fit the weights matches the kernel, and a
streamed, ring-poisoned trial equals the offline result.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from numpy.typing import NDArray

from benchmarks.realdata import shared_data_dir
from dsp.gait import GaitParams, gait_events
from dsp.orientation import N_SIG, SIG_A_AP, SIG_F_V, G

_FS = 100.0


def _walk_sig(
    seed: int = 0, duration_s: float = 30.0, bumps: bool = True
) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
    """Orientation-stage signals of level walking: steps every ~0.55 s; at each contact the
    vertical acceleration rises to ~+0.3 g (peak 60 ms after it) and the AP acceleration drops by
    ~0.2 g; optional mid-step bumps (+0.12 g vertical while the AP acceleration rises by 0.06 g: a
    jerk peak without the heel-strike pattern). Returns sig, true ICs (s), bump times (s)."""
    rng = np.random.default_rng(seed)
    n = int(duration_s * _FS)
    t = np.arange(n) / _FS
    ics = np.cumsum(0.55 + 0.03 * rng.standard_normal(int(duration_s / 0.55)))
    ics = ics[(ics > 1.5) & (ics < duration_s - 1.0)]
    v = np.zeros(n)
    ap = np.zeros(n)
    for c in ics:
        v += 0.3 * np.exp(-0.5 * ((t - c - 0.06) / 0.04) ** 2)
        v -= 0.1 * np.exp(-0.5 * ((t - c + 0.2) / 0.08) ** 2)
        ap += 0.1 * np.exp(-0.5 * ((t - c + 0.02) / 0.05) ** 2)
        ap -= 0.1 * np.exp(-0.5 * ((t - c - 0.12) / 0.05) ** 2)
    bt = ics[:-1] + 0.7 * np.diff(ics) if bumps else np.zeros(0)
    for c in bt:
        v += 0.12 * np.exp(-0.5 * ((t - c) / 0.06) ** 2)
        ap += 0.06 * np.exp(-0.5 * ((t - c - 0.08) / 0.06) ** 2)
    v += 0.005 * rng.standard_normal(n)
    ap += 0.005 * rng.standard_normal(n)
    sig = np.zeros((n, N_SIG))
    sig[:, SIG_F_V] = G * (1.0 + v)
    sig[:, SIG_A_AP] = G * ap
    sig[:, 3:] = 0.0  # angles / rates: a level, non-rotating pelvis
    return sig, ics, bt


def _ics(ev: NDArray[np.float64]) -> NDArray[np.float64]:
    return ev[ev[:, 1] == 0, 0]


def _run(
    sig: NDArray[np.float64], p: GaitParams, cuts: list[int] | None = None
) -> NDArray[np.float64]:
    n = sig.shape[0]
    kidx = np.arange(n, dtype=np.int64)
    flag = np.zeros(n, dtype=np.int8)
    if cuts is None:
        ev, _, _ = gait_events(sig, kidx, flag, has_gyro=True, sample_rate_hz=_FS, params=p)
        return ev
    out = []
    state = None
    bounds = [0, *sorted(cuts), n]
    for k, (a, b) in enumerate(itertools.pairwise(bounds)):
        ev, _, state = gait_events(
            sig[a:b],
            kidx[a:b],
            flag[a:b],
            has_gyro=True,
            sample_rate_hz=_FS,
            params=p,
            state=state,
            finish=k == len(bounds) - 2,
        )
        out.append(ev)
    return np.concatenate(out)


def _matched(det: NDArray[np.float64], ref: NDArray[np.float64], tol: float) -> int:
    return int(sum(np.any(np.abs(det - r) <= tol) for r in ref))


def test_heel_strikes_accepted_bumps_rejected() -> None:
    sig, ics, bt = _walk_sig()
    on = _ics(_run(sig, GaitParams()))
    off = _ics(_run(sig, GaitParams(walk_accept=False)))
    # without the acceptance stage the permissive candidates include the mid-step bumps
    assert _matched(off, bt, 0.1) >= 0.5 * bt.size
    # with it: every heel strike (within 60 ms), no bump
    assert _matched(on, ics, 0.06) == ics.size
    assert _matched(on, bt, 0.1) == 0
    assert on.size == ics.size


def test_walking_chunking_equals_offline() -> None:
    sig, _, _ = _walk_sig(seed=1)
    ref = _run(sig, GaitParams())
    rng = np.random.default_rng(2)
    for _ in range(4):
        cuts = sorted(rng.choice(np.arange(1, sig.shape[0]), size=40, replace=False).tolist())
        got = _run(sig, GaitParams(), cuts)
        assert got.shape == ref.shape
        np.testing.assert_array_equal(got, ref)
    got = _run(sig, GaitParams(), list(range(1, sig.shape[0])))  # size-1 chunks
    np.testing.assert_array_equal(got, ref)


def _need_mobgap() -> None:
    if not (shared_data_dir() / "mobgap").exists():
        pytest.skip(f"real data missing: {shared_data_dir() / 'mobgap'}")


@pytest.mark.realdata
def test_replica_matches_kernel_on_mobgap() -> None:
    """The fitting replica (benchmarks.accuracy.walk_candidates / select_walk) selects exactly the
    kernel's walking ICs (trials without a running-detector intervention or gaps)."""
    _need_mobgap()
    from benchmarks.accuracy import _mobgap_trials, select_walk, walk_candidates
    from benchmarks.realdata import G as G0
    from dsp.analyzer import analyze
    from dsp.types import EventKind

    gp = GaitParams()
    w = np.array([gp.walk_w_jerk, gp.walk_w_norm, gp.walk_w_vmax, gp.walk_w_apd])
    n_rej = 0
    for tr, R, sig in _mobgap_trials():
        if tr.name.startswith("HA001-Test11"):
            continue  # a running IC (3.3 g jump at 52 s) mutes the walking detector there
        c = walk_candidates(sig, tr.fs, gp)
        score = c[3] @ w + gp.walk_w0
        n_rej += int((score < 0).sum())
        rep = select_walk(c[0], c[1], c[2], score, gp, tr.fs) / tr.fs
        acc = tr.acc_g * G0 @ R.T
        gyr = tr.gyr_dps @ R.T
        ev = analyze(np.arange(acc.shape[0]) / tr.fs, acc, gyr, sample_rate_hz=tr.fs).events
        k = ev["time_s"][ev["kind"] == EventKind.INITIAL_CONTACT]
        np.testing.assert_allclose(k, rep, rtol=0, atol=1e-9)
    assert n_rej > 50  # the acceptance stage is exercised


@pytest.mark.realdata
def test_mobgap_streamed_with_ring_poison_equals_offline() -> None:
    """MS001 Test11 (daily activities, many rejected candidates) streamed in 7-sample chunks with
    every ring slot outside the logical history poisoned after each chunk."""
    _need_mobgap()
    from test_ring import _assert_same, _streamed_poisoned

    from benchmarks.accuracy import _mobgap_trials
    from benchmarks.realdata import G as G0
    from dsp.analyzer import analyze

    tr, R, _ = next(x for x in _mobgap_trials() if x[0].name.startswith("MS001-Test11"))
    sl = slice(9000, 16000)  # 90-160 s: walking bouts with turns and pauses
    acc = (tr.acc_g * G0 @ R.T)[sl]
    gyr = (tr.gyr_dps @ R.T)[sl]
    t = np.arange(acc.shape[0]) / tr.fs
    ref = analyze(t, acc, gyr, sample_rate_hz=_FS)
    assert len(ref.events) > 60
    _assert_same(_streamed_poisoned(t, acc, gyr, 7), ref)
