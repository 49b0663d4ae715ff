"""Public entry point: :class:`GaitAnalyzer` (stream) and :func:`analyze` (offline = push + flush).

Chain per pushed block (all numeric work in numba kernels, state carried between pushes):
``resample`` (uniform grid) -> ``orientation`` (mounting alignment + pelvis orientation) ->
``gait`` (events, stance side, bouts, per-step metrics). Any chunking of the input gives exactly
the offline result because every kernel is sequential over samples with its complete state in
arrays.

Examples
--------
>>> import numpy as np
>>> from dsp.analyzer import GaitAnalyzer, analyze
>>> t = np.arange(2000) / 200.0
>>> acc = np.tile([0.0, 0.0, 9.81], (2000, 1))
>>> out = analyze(t, acc, None, sample_rate_hz=200.0)  # standing still: no steps
>>> len(out.steps)
0
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numba import njit
from numpy.typing import NDArray

from dsp._config import NJIT_OPTS
from dsp.errors import InputValidationError
from dsp.gait import (
    N_STEP_COLS,
    GaitParams,
    GaitState,
    _gait_kernel,
    gait_coefficients,
    gait_initial_state,
)
from dsp.orientation import (
    N_SIG,
    SIG_ROLL_RATE,
    SIG_YAW_RATE,
    OrientParams,
    OrientState,
    _orient_kernel,
    alignment_info,
    orient_initial_state,
)
from dsp.resample import (
    ResampleState,
    _resample_capacity,
    _resample_kernel,
    resample_initial_state,
)
from dsp.types import EVENT_DTYPE, STEP_DTYPE

_N_RATE_EST = 64  # samples used to estimate the rate when sample_rate_hz is None
PIPELINE_BLOCK = 4096
"""Input samples per block inside :func:`_pipeline_kernel`: the block's resampled samples and
orientation signals (~120 B per sample) stay in the L2 cache between the three stages."""


@njit(**NJIT_OPTS)
def _append_rows(dst: NDArray[np.float64], n: int, src: NDArray[np.float64]) -> NDArray[np.float64]:
    """``dst[n : n + len(src)] = src``, growing ``dst`` (doubling) when needed."""
    m = src.shape[0]
    if n + m > dst.shape[0]:
        new = np.empty((max(2 * dst.shape[0], n + m), dst.shape[1]))
        new[:n] = dst[:n]
        dst = new
    dst[n : n + m] = src
    return dst


@njit(**NJIT_OPTS)
def _pipeline_kernel(
    t: NDArray[np.float64],
    acc: NDArray[np.float64],
    gyr: NDArray[np.float64],
    has_gyro: bool,
    fs: float,
    max_gap_s: float,
    rs_f: NDArray[np.float64],
    rs_i: NDArray[np.int64],
    op: OrientParams,
    os_f: NDArray[np.float64],
    os_i: NDArray[np.int64],
    coef: NDArray[np.float64],
    gp: GaitParams,
    gs_f: NDArray[np.float64],
    gs_i: NDArray[np.int64],
    ring: NDArray[np.float64],
    ics: NDArray[np.float64],
    finish: bool,
    block: int,
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """resample -> align + orient -> gait on one input chunk; all states are updated in place.

    The chunk is walked in blocks of ``block`` input samples and the three stage kernels run
    per block on small reused buffers (they stay in cache; nothing of the size of the recording
    is allocated). By chunk invariance of every stage this is exactly the result of one call of
    each kernel on the whole chunk. ``finish`` (end of stream) applies after the last block.
    Returns the event rows (time, kind, side) and the step rows (``N_STEP_COLS``).
    """
    n = t.shape[0]
    cap = 0
    k_buf = np.empty(0, dtype=np.int64)
    a_buf = np.empty((0, 3))
    g_buf = np.empty((0, 3))
    f_buf = np.empty(0, dtype=np.int8)
    s_buf = np.empty((0, N_SIG))
    ev_all = np.empty((16, 3))
    st_all = np.empty((16, N_STEP_COLS))
    ne = 0
    ns = 0
    a = 0
    while True:
        b = min(n, a + block)
        tb = t[a:b]
        c = _resample_capacity(tb, fs, max_gap_s, rs_f, rs_i)
        if c > cap:
            cap = max(c, min(block, n) + 8)
            k_buf = np.empty(cap, dtype=np.int64)
            a_buf = np.empty((cap, 3))
            g_buf = np.empty((cap, 3))
            f_buf = np.empty(cap, dtype=np.int8)
            s_buf = np.empty((cap, N_SIG))
            s_buf[:, SIG_YAW_RATE:] = np.nan  # stay NaN when op.rate_outputs is False
        m = _resample_kernel(
            tb, acc[a:b], gyr[a:b], fs, max_gap_s, rs_f, rs_i, k_buf, a_buf, g_buf, f_buf
        )
        _orient_kernel(a_buf[:m], g_buf[:m], f_buf[:m], has_gyro, fs, op, os_f, os_i, s_buf[:m])
        ev, steps, _, _, _, _ = _gait_kernel(
            s_buf[:m],
            k_buf[:m],
            f_buf[:m],
            has_gyro,
            fs,
            rs_f[1],
            coef,
            gp,
            gs_f,
            gs_i,
            ring,
            ics,
            finish and b == n,
        )
        ev_all = _append_rows(ev_all, ne, ev)
        ne += ev.shape[0]
        st_all = _append_rows(st_all, ns, steps)
        ns += steps.shape[0]
        a = b
        if a >= n:
            break
    return ev_all[:ne], st_all[:ns]


@dataclass(frozen=True)
class AnalyzerParams:
    """All tunables of the analyzer.

    Attributes
    ----------
    orient, gait:
        Kernel parameters (:class:`dsp.orientation.OrientParams`, :class:`dsp.gait.GaitParams`).
    max_gap_s:
        Input gaps longer than this are not interpolated; the stride state restarts after them.
    forward_axis, up_axis:
        Known mounting (sensor-frame unit vectors of pelvis forward and up). When both are given the
        mounting is not estimated (``known_axes``), e.g. for data already in the body frame.
    """

    orient: OrientParams = field(default_factory=OrientParams)
    gait: GaitParams = field(default_factory=GaitParams)
    max_gap_s: float = 0.25
    forward_axis: tuple[float, float, float] | None = None
    up_axis: tuple[float, float, float] | None = None


@dataclass
class AnalyzerOutput:
    """Finalized events and steps of one push (or of a whole recording)."""

    events: NDArray[np.void]
    steps: NDArray[np.void]


def _is_kernel_array(x: Any, ndim: int) -> bool:
    """``x`` is what the compiled kernel's array arguments are typed as: a writeable, aligned,
    C-contiguous float64 ndarray of ``ndim`` dimensions (no conversion needed)."""
    if type(x) is not np.ndarray or x.dtype != np.float64 or x.ndim != ndim:
        return False
    f = x.flags
    return bool(f.c_contiguous and f.writeable and f.aligned)


def _ready_arrays(t: Any, a: Any, g: Any) -> bool:
    """``t`` (n,), ``a`` and ``g`` (n, 3) are arrays of the kernel's argument types."""
    return (
        _is_kernel_array(t, 1)
        and _is_kernel_array(a, 2)
        and _is_kernel_array(g, 2)
        and a.shape[1] == 3
        and a.shape[0] == t.shape[0]
        and g.shape == a.shape
    )


def _compiled_entry(
    args: tuple[Any, ...],
) -> Callable[..., tuple[NDArray[np.float64], NDArray[np.float64]]] | None:
    """The compiled entry point of :func:`_pipeline_kernel` for the types of ``args``, or None.

    Calling the dispatcher costs ~8 us per push, mostly for typing the arguments (two
    NamedTuples of parameters) to find the compiled version; the entry point of that version
    (same machine code, same results) skips it (~3 us). Only used while the per-push arrays
    have the types checked by :func:`_is_kernel_array` (the state arrays and scalars of one
    analyzer keep their types until :meth:`GaitAnalyzer.reset` or a new rate).
    """
    if not all(_is_kernel_array(x, n) for x, n in zip(args[:3], (1, 2, 2), strict=True)):
        return None
    try:
        sig = tuple(_pipeline_kernel.typeof_pyval(x) for x in args)
        cres = _pipeline_kernel.overloads.get(sig)
        entry = getattr(cres, "entry_point", None)
    except Exception:  # numba internals changed: keep using the dispatcher
        return None
    return entry if callable(entry) else None


# shared outputs of the pushes that finalize nothing (zero-size: nothing to mutate)
_NO_EVENTS = np.zeros(0, dtype=EVENT_DTYPE)
_NO_STEPS = np.zeros(0, dtype=STEP_DTYPE)


def _to_events(rows: NDArray[np.float64]) -> NDArray[np.void]:
    if not rows.shape[0]:
        return _NO_EVENTS
    ev = np.zeros(rows.shape[0], dtype=EVENT_DTYPE)
    if rows.shape[0]:
        ev["time_s"] = rows[:, 0]
        ev["kind"] = rows[:, 1].astype(np.int8)
        ev["side"] = rows[:, 2].astype(np.int8)
    return ev


_STEP_FLOATS = (
    "cadence_spm",
    "contact_time_s",
    "flight_time_s",
    "vertical_oscillation_m",
    "pelvic_drop_deg",
    "pelvic_rotation_deg",
    "pelvic_tilt_deg",
    "braking_mps2",
)


def _to_steps(rows: NDArray[np.float64]) -> NDArray[np.void]:
    if not rows.shape[0]:
        return _NO_STEPS
    st = np.zeros(rows.shape[0], dtype=STEP_DTYPE)
    if rows.shape[0]:
        st["time_s"] = rows[:, 0]
        st["side"] = rows[:, 1].astype(np.int8)
        st["activity"] = rows[:, 2].astype(np.int8)
        for q, name in enumerate(_STEP_FLOATS):
            st[name] = rows[:, 3 + q]
    return st


def _estimate_rate(t: NDArray[np.float64]) -> float:
    d = np.diff(t)
    d = d[np.isfinite(d) & (d > 0)]
    if d.size == 0:
        raise InputValidationError("t_s", "cannot estimate the sample rate (need increasing times)")
    fs = 1.0 / float(np.median(d))
    r = round(fs)
    return float(r) if abs(fs - r) <= 0.03 * fs else round(fs, 1)


class GaitAnalyzer:
    """Streaming gait analyzer for one pelvis IMU in any orientation.

    Parameters
    ----------
    has_gyro:
        True when gyro samples (deg/s) are pushed; False = accelerometer only (events and timing
        metrics; side unknown and angles NaN).
    sample_rate_hz:
        Uniform processing rate. None = estimated from the first 64 samples (median interval,
        rounded to an integer rate when within 3 %).
    params:
        :class:`AnalyzerParams`.

    Notes
    -----
    ``push`` returns only finalized events/steps; IC events are reported ``side_window_s``
    (90 ms) after the contact at the latest in running. Times are on the input clock.
    """

    def __init__(
        self,
        *,
        has_gyro: bool = True,
        sample_rate_hz: float | None = None,
        params: AnalyzerParams | None = None,
    ) -> None:
        self.has_gyro = bool(has_gyro)
        self.params = params if params is not None else AnalyzerParams()
        if sample_rate_hz is not None and not (np.isfinite(sample_rate_hz) and sample_rate_hz > 0):
            raise InputValidationError("sample_rate_hz", f"must be > 0, got {sample_rate_hz}")
        self._fs_given = sample_rate_hz
        self.reset()

    def reset(self) -> None:
        """Back to a fresh analyzer (same parameters)."""
        self._fs: float | None = float(self._fs_given) if self._fs_given is not None else None
        self._buf: list[tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]] = []
        self._nbuf = 0
        self._rs: ResampleState = resample_initial_state()
        known = self.params.forward_axis is not None and self.params.up_axis is not None
        # the yaw / roll rate columns are computed only when the gait stage reads them
        rates = self.params.gait.side_signal in (SIG_YAW_RATE, SIG_ROLL_RATE)
        self._op = self.params.orient._replace(known_axes=known, rate_outputs=rates)
        self._os: OrientState = orient_initial_state(
            None if self.params.forward_axis is None else np.asarray(self.params.forward_axis),
            None if self.params.up_axis is None else np.asarray(self.params.up_axis),
        )
        self._gs: GaitState | None = None
        self._coef: NDArray[np.float64] | None = None
        # compiled machine-code entry of _pipeline_kernel for this analyzer's argument types
        # (resolved after the first call; see _compiled_entry)
        self._kernel: Callable[..., tuple[NDArray[np.float64], NDArray[np.float64]]] | None = None
        self._kernel_resolved = False
        self._n_in = 0
        self._n_events = 0
        self._n_steps = 0
        if self._fs is not None:
            self._setup_rate(self._fs)

    def _setup_rate(self, fs: float) -> None:
        self._kernel, self._kernel_resolved = None, False
        self._fs = fs
        self._gs = gait_initial_state(fs)
        self._coef = gait_coefficients(fs, self.params.gait)

    # ------------------------------------------------------------------ validation
    def _validate(
        self, t_s: Any, acc: Any, gyr: Any
    ) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        t = np.ascontiguousarray(t_s, dtype=np.float64)
        if t.ndim != 1:
            raise InputValidationError("t_s", f"must be 1-D, got shape {t.shape}")
        a = np.ascontiguousarray(acc, dtype=np.float64)
        if a.ndim != 2 or a.shape[1] != 3 or a.shape[0] != t.shape[0]:
            raise InputValidationError(
                "acc_mps2", f"must have shape ({t.shape[0]}, 3), got {a.shape}"
            )
        if self.has_gyro:
            if gyr is None:
                raise InputValidationError("gyr_dps", "is None but the analyzer has has_gyro=True")
            g = np.ascontiguousarray(gyr, dtype=np.float64)
            if g.shape != a.shape:
                raise InputValidationError("gyr_dps", f"must have shape {a.shape}, got {g.shape}")
        else:
            g = np.zeros_like(a)
        return t, a, g

    # ------------------------------------------------------------------ processing
    def _process(
        self,
        t: NDArray[np.float64],
        a: NDArray[np.float64],
        g: NDArray[np.float64],
        finish: bool,
        ready: bool = False,
    ) -> AnalyzerOutput:
        """One kernel call; ``ready``: t, a, g passed :func:`_ready_arrays`."""
        assert self._fs is not None
        assert self._gs is not None
        assert self._coef is not None
        gs = self._gs
        kernel = self._kernel
        if kernel is None or not (ready or _ready_arrays(t, a, g)):
            kernel = _pipeline_kernel
        # one kernel call per push (the whole recording offline); states mutated in place
        args = (
            t,
            a,
            g,
            self.has_gyro,
            self._fs,
            self.params.max_gap_s,
            self._rs.f,
            self._rs.i,
            self._op,
            self._os.f,
            self._os.i,
            self._coef,
            self.params.gait,
            gs.f,
            gs.i,
            gs.ring,
            gs.ics,
            finish,
            PIPELINE_BLOCK,
        )
        ev, steps = kernel(*args)
        if not self._kernel_resolved:
            self._kernel_resolved = True
            self._kernel = _compiled_entry(args)
        self._n_events += ev.shape[0]
        self._n_steps += steps.shape[0]
        return AnalyzerOutput(_to_events(ev), _to_steps(steps))

    def push(self, t_s: Any, acc_mps2: Any, gyr_dps: Any = None) -> AnalyzerOutput:
        """Process one block of samples; returns the events/steps finalized by it."""
        # the live case (decoder output): arrays of the kernel's types, nothing to convert
        ready = self.has_gyro and _ready_arrays(t_s, acc_mps2, gyr_dps)
        if ready:
            t, a, g = t_s, acc_mps2, gyr_dps
        else:
            t, a, g = self._validate(t_s, acc_mps2, gyr_dps)
        self._n_in += t.shape[0]
        if self._fs is None:
            self._buf.append((t, a, g))
            self._nbuf += t.shape[0]
            if self._nbuf < _N_RATE_EST:
                return AnalyzerOutput(np.zeros(0, EVENT_DTYPE), np.zeros(0, STEP_DTYPE))
            t, a, g = self._drain_buffer()
            ready = False
        return self._process(t, a, g, False, ready)

    def _drain_buffer(self) -> tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]:
        if len(self._buf) == 1:  # one block (offline analysis): no copy
            t, a, g = self._buf[0]
        else:
            t = np.concatenate([b[0] for b in self._buf])
            a = np.concatenate([b[1] for b in self._buf])
            g = np.concatenate([b[2] for b in self._buf])
        self._buf = []
        self._nbuf = 0
        self._setup_rate(_estimate_rate(t[:_N_RATE_EST]))
        return t, a, g

    def flush(self) -> AnalyzerOutput:
        """End of stream: release everything still pending (incomplete last bout)."""
        if self._fs is None:
            if self._nbuf < 2:
                return AnalyzerOutput(np.zeros(0, EVENT_DTYPE), np.zeros(0, STEP_DTYPE))
            t, a, g = self._drain_buffer()
            return self._process(t, a, g, True)
        e = np.zeros(0)
        return self._process(e, np.zeros((0, 3)), np.zeros((0, 3)), True)

    # ------------------------------------------------------------------ state / info
    @property
    def state(self) -> dict[str, Any]:
        """Deep copy of the complete state (restore with :meth:`from_state`)."""
        return copy.deepcopy(
            {
                "fs": self._fs,
                "buf": self._buf,
                "nbuf": self._nbuf,
                "rs": self._rs,
                "os": self._os,
                "gs": self._gs,
                "coef": self._coef,
                "counts": (self._n_in, self._n_events, self._n_steps),
            }
        )

    @classmethod
    def from_state(
        cls, state: dict[str, Any], *, has_gyro: bool = True, params: AnalyzerParams | None = None
    ) -> GaitAnalyzer:
        """New analyzer continuing from ``state`` (same ``has_gyro``/``params`` as the source)."""
        obj = cls(has_gyro=has_gyro, sample_rate_hz=state["fs"], params=params)
        s = copy.deepcopy(state)
        obj._fs = s["fs"]
        obj._buf = s["buf"]
        obj._nbuf = s["nbuf"]
        obj._rs = s["rs"]
        obj._os = s["os"]
        obj._gs = s["gs"]
        obj._coef = s["coef"]
        obj._n_in, obj._n_events, obj._n_steps = s["counts"]
        return obj

    @property
    def info(self) -> dict[str, Any]:
        """Session metadata: alignment + confidence, resample rate, gaps, counts, latency."""
        d: dict[str, Any] = {
            "resample_rate_hz": self._fs,
            "has_gyro": self.has_gyro,
            "known_axes": bool(self._op.known_axes),
            "samples_in": self._n_in,
            "samples_dropped": int(self._rs.i[3]),
            "gaps": int(self._rs.i[2]),
            "samples_resampled": int(self._rs.i[6]),
            "events": self._n_events,
            "steps": self._n_steps,
        }
        d.update(alignment_info(self._os))
        if self._gs is not None and self._fs:
            d["max_ic_report_latency_s"] = round(float(self._gs.i[9]) / self._fs, 4)
        if not self.has_gyro:
            d["gyro_bias_dps"] = None
        return d


def analyze(
    t_s: Any,
    acc_mps2: Any,
    gyr_dps: Any = None,
    *,
    sample_rate_hz: float | None = None,
    params: AnalyzerParams | None = None,
) -> AnalyzerOutput:
    """Offline analysis of a whole recording = one :meth:`GaitAnalyzer.push` + :meth:`flush`."""
    an = GaitAnalyzer(has_gyro=gyr_dps is not None, sample_rate_hz=sample_rate_hz, params=params)
    a = an.push(t_s, acc_mps2, gyr_dps)
    b = an.flush()
    return AnalyzerOutput(np.concatenate([a.events, b.events]), np.concatenate([a.steps, b.steps]))


def analyze_with_info(
    t_s: Any,
    acc_mps2: Any,
    gyr_dps: Any = None,
    *,
    sample_rate_hz: float | None = None,
    params: AnalyzerParams | None = None,
) -> tuple[AnalyzerOutput, dict[str, Any]]:
    """:func:`analyze` that also returns :attr:`GaitAnalyzer.info`."""
    an = GaitAnalyzer(has_gyro=gyr_dps is not None, sample_rate_hz=sample_rate_hz, params=params)
    a = an.push(t_s, acc_mps2, gyr_dps)
    b = an.flush()
    out = AnalyzerOutput(np.concatenate([a.events, b.events]), np.concatenate([a.steps, b.steps]))
    return out, an.info
