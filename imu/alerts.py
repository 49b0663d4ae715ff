"""Fatigue / form alerts: sustained, pace-corrected deviation from the runner's own baseline.

How it works (per step, in time order; any chunking of the step stream gives the same alerts):

1. **Segments and pace.** Steps are grouped into bouts (same activity, no gap > ``max_step_gap_s``).
   The pace covariate of a step is the centred running median of its step time (60 / cadence)
   over +-``pace_window_steps`` steps of its bout, so the engine holds back that many steps
   (a couple of seconds) before it judges one. Only running steps count; the first
   ``transition_s`` of a bout and its last steps are transitions and are skipped.
2. **Baseline.** The steady running between ``baseline_start_s`` and ``baseline_start_s +
   baseline_duration_s`` of *running time* (warm-up excluded) is fitted by
   :func:`imu.baseline.fit_baseline`: per metric and side a robust line against step time
   (slope shrunk to the prior: population value or the runner's usual from earlier sessions).
3. **Deviation.** Each step's residual (value minus the baseline line at its own pace) feeds a
   time-constant EWMA (``ewma_tau_s`` of running). Channels: pelvic drop per side, drop
   asymmetry (left minus right), contact time, contact-time balance (% left), vertical
   oscillation, optionally cadence, and optional absolute limits. A channel's threshold is the
   larger of the clinical minimum (``*_warn_*``) and ``noise_z`` standard deviations of its EWMA.
   Per-step residuals are clipped at ``outlier_clip_sd`` baseline SDs (a missed contact or a
   glitch moves the EWMA by little). Contact time and VO are judged only while the pace is
   within ``pace_gate_pct`` of the baseline window's paces: their pace models are not
   extrapolated to recovery jogs or sprints.
4. **Alert state machine per channel.** Above threshold continuously for ``grace_s`` -> an active
   alert (warning; critical above the critical threshold; a warning escalates once to critical
   after another ``grace_s``). Back below ``hysteresis_frac`` x threshold for ``clear_hold_s`` ->
   a cleared record (``active=False``), then the channel's family (drop, contact, ...) is quiet
   for ``cooldown_s``. One active alert per family (the drop on one side does not also raise a
   drop-asymmetry alert), and at least ``min_alert_gap_s`` between new alerts.

The engine knows nothing of storage or the CLI: :class:`Alert` is a plain value; the pipeline
maps it to an ``alerts`` record (tags side/metric/level, fields value/baseline/deviation/...).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from dsp.types import STEP_DTYPE, Activity, Side
from imu.baseline import Baseline, fit_baseline
from imu.errors import InputError

Level = Literal["info", "warning", "critical"]
SideName = Literal["left", "right", ""]

# stable alert codes (public contract)
CODE_DROP = "pelvic_drop_high"
CODE_DROP_ASYM = "pelvic_drop_asymmetry"
CODE_CONTACT = "contact_time_high"
CODE_BALANCE = "contact_balance_shift"
CODE_VO = "vertical_oscillation_high"
CODE_CADENCE = "cadence_low"
CODE_DROP_LIMIT = "pelvic_drop_over_limit"
CODE_CONTACT_LIMIT = "contact_time_over_limit"
CODE_CADENCE_LIMIT = "cadence_under_limit"
ALERT_CODES = (
    CODE_DROP,
    CODE_DROP_ASYM,
    CODE_CONTACT,
    CODE_BALANCE,
    CODE_VO,
    CODE_CADENCE,
    CODE_DROP_LIMIT,
    CODE_CONTACT_LIMIT,
    CODE_CADENCE_LIMIT,
)

# alert metric names (the ``metric`` tag)
METRIC_DROP = "pelvic_drop_deg"
METRIC_DROP_ASYM = "pelvic_drop_asymmetry_deg"
METRIC_CONTACT = "contact_time_s"
METRIC_BALANCE = "contact_time_balance_pct"
METRIC_VO = "vertical_oscillation_m"
METRIC_CADENCE = "cadence_spm"


@dataclass(frozen=True, slots=True)
class AlertConfig:
    """Thresholds and timing of :class:`AlertEngine`. Times are seconds; running time excludes
    walking and standing. ``None`` switches an optional channel off.

    Baseline deviations (personal, pace-corrected) are on by default; absolute limits and the
    cadence-drop channel are off by default: without a speed sensor a deliberate slow-down
    lowers cadence exactly as fatigue does, and fixed limits nag runners whose normal lies
    outside them. Turn them on per runner (e.g. ``cadence_min_spm`` for a metronome target).
    """

    # baseline window and segmentation
    baseline_start_s: float = 120.0
    baseline_duration_s: float = 240.0
    baseline_min_steps: int = 200
    transition_s: float = 10.0
    max_step_gap_s: float = 1.2
    pace_window_steps: int = 8
    #: contact time and VO are judged only while the step time is within the baseline window's
    #: 5-95 % range widened by this much (their pace models are not extrapolated further)
    pace_gate_pct: float = 4.0
    # smoothing and noise guard
    ewma_tau_s: float = 30.0
    noise_z: float = 4.0
    outlier_clip_sd: float = 4.0  # per-step residuals clipped at +-this many baseline SDs (0: off)
    # timing (no nagging)
    grace_s: float = 20.0
    clear_hold_s: float = 20.0
    cooldown_s: float = 120.0
    min_alert_gap_s: float = 30.0
    hysteresis_frac: float = 0.5
    # deviation from baseline
    pelvic_drop_warn_deg: float = 1.0
    pelvic_drop_critical_deg: float = 2.0
    pelvic_drop_asymmetry_warn_deg: float = 1.5
    pelvic_drop_asymmetry_critical_deg: float = 3.0
    contact_time_warn_pct: float = 8.0
    contact_time_critical_pct: float = 15.0
    contact_balance_warn_pp: float = 1.5
    contact_balance_critical_pp: float = 3.0
    vertical_oscillation_warn_pct: float = 12.0
    vertical_oscillation_critical_pct: float = 25.0
    cadence_drop_warn_pct: float | None = None
    cadence_drop_critical_pct: float | None = None
    # absolute limits (warning level; hysteresis in the same unit)
    pelvic_drop_max_deg: float | None = None
    pelvic_drop_max_hysteresis_deg: float = 0.5
    contact_time_max_s: float | None = None
    contact_time_max_hysteresis_s: float = 0.010
    cadence_min_spm: float | None = None
    cadence_min_hysteresis_spm: float = 3.0
    # switches
    disabled_codes: frozenset[str] = frozenset()

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, int | float):
                continue
            if not math.isfinite(v) or v < 0:
                raise InputError(
                    f"AlertConfig.{f.name}", f"must be a finite number >= 0, got {v!r}"
                )
        if not 0 < self.hysteresis_frac < 1:
            raise InputError("AlertConfig.hysteresis_frac", "must be in (0, 1)")
        if self.ewma_tau_s <= 0:
            raise InputError("AlertConfig.ewma_tau_s", "must be > 0")
        unknown = set(self.disabled_codes) - set(ALERT_CODES)
        if unknown:
            raise InputError("AlertConfig.disabled_codes", f"unknown codes {sorted(unknown)}")


@dataclass(frozen=True, slots=True)
class Alert:
    """One alert record. ``active=False`` marks the clearing of an earlier alert (same code/side).

    Attributes:
        time_s: session sensor clock (s) of the step that triggered the record.
        metric: ``pelvic_drop_deg``, ``pelvic_drop_asymmetry_deg``, ``contact_time_s``,
            ``contact_time_balance_pct``, ``vertical_oscillation_m`` or ``cadence_spm``.
        side: ``left``/``right`` (for pelvic drop: the *stance* side, as in the step records;
            the pelvis drops on the other side) or ``""`` for both sides.
        level: ``info`` (cleared), ``warning`` or ``critical``.
        code: stable machine-readable code (see ``ALERT_CODES``).
        value: current smoothed value (metric unit).
        baseline: the runner's baseline at the current pace (metric unit).
        deviation: value - baseline (metric unit); for absolute limits: value - limit.
        since_s: sensor time when the deviation started (last time it was within hysteresis).
        message: a short cue the runner can act on.
    """

    time_s: float
    metric: str
    side: SideName
    level: Level
    code: str
    value: float
    baseline: float
    deviation: float
    since_s: float
    active: bool
    message: str

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --- channel state machine -----------------------------------------------------------------
_IDLE, _PENDING, _ACTIVE, _CLEARING = 0, 1, 2, 3


@dataclass(slots=True)
class _Channel:
    key: str
    code: str
    metric: str
    side: SideName
    family: str
    warn: float  # deviation thresholds in "bad" units (positive = worse)
    crit: float
    off: float
    priority: int = 0  # within a family, a pending lower number fires first
    state: int = _IDLE
    t_on: float = math.nan
    t_crit: float = math.nan
    t_off: float = math.nan
    last_low_t: float = math.nan
    level: Level = "warning"
    since_s: float = math.nan
    fired_side: SideName = ""


@dataclass(slots=True)
class _Reading:
    """One channel evaluation: ``bad`` is the deviation in the bad direction (positive = worse)."""

    bad: float
    value: float
    baseline: float
    deviation: float
    side: SideName


@dataclass(slots=True)
class _Step:
    t: float
    side: int
    activity: int
    seg: int
    values: tuple[float, ...]  # STEP metric columns in _COLS order
    pace_pt: float | None  # 60 / cadence (s) when the cadence is finite and > 0, else None


_COLS = (
    "cadence_spm",
    "contact_time_s",
    "flight_time_s",
    "vertical_oscillation_m",
    "pelvic_drop_deg",
    "pelvic_rotation_deg",
    "pelvic_tilt_deg",
    "braking_mps2",
)
_I = {c: i for i, c in enumerate(_COLS)}
_RUNNING = int(Activity.RUNNING)


def _median(xs: list[float]) -> float:
    """``float(np.median(xs))`` of finite values (same arithmetic: middle or mean of two)."""
    xs = sorted(xs)
    n = len(xs)
    h = n // 2
    return xs[h] if n % 2 else (xs[h - 1] + xs[h]) / 2.0


_SIDE_NAME: dict[int, SideName] = {int(Side.LEFT): "left", int(Side.RIGHT): "right"}


@dataclass(slots=True)
class TraceRow:
    """Per-step internals (only with ``AlertEngine(trace=True)``), for reports and debugging."""

    time_s: float
    step_time_s: float  # pace covariate
    running_time_s: float
    in_baseline: bool
    transition: bool
    bad: dict[str, float] = field(default_factory=dict)  # channel key -> bad deviation


class AlertEngine:
    """Streaming alert engine of one session.

    Args:
        config: thresholds and timing.
        baseline: the runner's usual baseline (from :class:`imu.baseline.BaselineStore`), if any.
            Its slopes are the prior of this session's baseline fit.
        runner / session: written into the learned baseline.
        trace: keep per-step internals in :attr:`trace` (tests, reports).

    Call :meth:`update` with each new batch of steps (STEP_DTYPE, time order), then
    :meth:`finish`. :attr:`baseline` is the baseline learned in this session (None until the
    window is complete), to be saved with ``BaselineStore.save``.
    """

    def __init__(
        self,
        config: AlertConfig | None = None,
        baseline: Baseline | None = None,
        *,
        runner: str = "",
        session: str = "",
        trace: bool = False,
    ) -> None:
        self.config = config or AlertConfig()
        self.prior = baseline
        self.runner = runner or (baseline.runner if baseline is not None else "")
        self.session = session
        self.baseline: Baseline | None = None
        self.trace: list[TraceRow] | None = [] if trace else None
        c = self.config
        self._h = max(int(c.pace_window_steps), 0)
        self._q: list[_Step] = []  # steps arrived; _q[_next] is the next one to judge
        self._next = 0
        self._seg = -1
        self._last_t = -math.inf
        self._last_act = -1
        self._seg_start_t: dict[int, float] = {}
        self._run_time = 0.0
        self._win: list[tuple[_Step, float]] = []  # baseline window steps with their pace
        self._finished = False
        self._ew: dict[str, float] = {}  # EWMA states
        self._ew_w: dict[str, float] = {}  # bias-correction weights
        self._channels: dict[str, _Channel] = {}
        self._family_cooldown: dict[str, float] = {}
        self._last_new_alert_t = -math.inf
        self._detect_start_t = math.nan
        self._pace_gate = (0.0, math.inf)
        self._mods: dict[tuple[str, str], tuple[Any, Any, float, str]] = {}
        self._mods_of: Baseline | None = None
        self._make_absolute_channels()

    # --- public -----------------------------------------------------------------------------
    def update(self, steps: npt.NDArray[Any]) -> list[Alert]:
        """Feed new steps (time order, after the previous batch); return the new alert records."""
        if self._finished:
            raise InputError("AlertEngine.update", "called after finish()")
        steps = np.asarray(steps)
        if steps.dtype != STEP_DTYPE:
            raise InputError("AlertEngine.update", f"steps must be STEP_DTYPE, got {steps.dtype}")
        out: list[Alert] = []
        if len(steps) == 0:
            return out
        # rows of Python floats per step (STEP_DTYPE's fields are f8 / i1: tolist is exact)
        rows = zip(*[steps[c].tolist() for c in _COLS], strict=True)
        times = steps["time_s"].tolist()
        sides = steps["side"].tolist()
        acts = steps["activity"].tolist()
        for t, sd, act, vals in zip(times, sides, acts, rows, strict=True):
            if not t >= self._last_t:
                raise InputError("AlertEngine.update", f"steps out of time order at t={t:.3f} s")
            if act != self._last_act or t - self._last_t > self.config.max_step_gap_s:
                self._seg += 1
                self._seg_start_t[self._seg] = t
            self._last_t, self._last_act = t, act
            cad = vals[0]
            pace_pt = 60.0 / cad if cad > 0 and math.isfinite(cad) else None
            self._q.append(_Step(t, sd, act, self._seg, vals, pace_pt))
            self._drain(out, final=False)
        return out

    def finish(self) -> list[Alert]:
        """Judge the held-back steps; active alerts stay active (the run ended with them)."""
        out: list[Alert] = []
        if not self._finished:
            self._drain(out, final=True)
            if self.baseline is None and len(self._win) >= self.config.baseline_min_steps:
                self._fit_baseline()
            self._finished = True
        return out

    # --- stream mechanics -------------------------------------------------------------------
    def _drain(self, out: list[Alert], *, final: bool) -> None:
        h = self._h
        q = self._q
        while self._next < len(q):
            k = self._next
            s = q[k]
            seg = s.seg
            closed = q[-1].seg != seg
            if not (final or closed or len(q) - 1 - k >= h):
                return
            if s.activity == _RUNNING:  # _judge ignores every other step
                lo = max(0, k - h)
                hi = min(len(q), k + h + 1)
                # pace points of the window; whether the bout ends within h steps after k
                pts = [w.pace_pt for w in q[lo:hi] if w.seg == seg and w.pace_pt is not None]
                ends_soon = (final or closed) and sum(w.seg == seg for w in q[k + 1 : hi]) < h
                self._judge(s, pts, ends_soon, out)
            self._next += 1
        # keep h judged steps for the backward half of the pace window
        drop = max(0, self._next - h)
        if drop > 256:
            del self._q[:drop]
            self._next -= drop

    def _judge(self, s: _Step, pts: list[float], ends_soon: bool, out: list[Alert]) -> None:
        """Judge running step ``s``; ``pts``: the pace points of its window."""
        c = self.config
        if not pts:
            return
        pace = _median(pts)
        transition = ends_soon or (s.t - self._seg_start_t[s.seg] < c.transition_s)
        run_before = self._run_time
        self._run_time += min(pace, 1.0)
        in_win = False
        if self.baseline is None:
            if not transition and run_before >= c.baseline_start_s:
                self._win.append((s, pace))
                in_win = True
            if (
                self._run_time >= c.baseline_start_s + c.baseline_duration_s
                and len(self._win) >= c.baseline_min_steps
            ):
                self._fit_baseline()
                self._detect_start_t = s.t
        row = (
            TraceRow(s.t, pace, self._run_time, in_win, transition)
            if self.trace is not None
            else None
        )
        if not transition and run_before >= c.baseline_start_s:
            self._detect(s, pace, out, row)
        if row is not None and self.trace is not None:
            self.trace.append(row)

    def _fit_baseline(self) -> None:
        steps = np.zeros(len(self._win), STEP_DTYPE)
        for i, (s, _) in enumerate(self._win):
            steps[i]["time_s"] = s.t
            steps[i]["side"] = s.side
            steps[i]["activity"] = s.activity
            for j, col in enumerate(_COLS):
                steps[i][col] = s.values[j]
        pace = np.array([p for _, p in self._win])
        g = self.config.pace_gate_pct / 100.0
        lo, hi = np.percentile(pace, [5.0, 95.0])
        self._pace_gate = (float(lo) * (1.0 - g), float(hi) * (1.0 + g))
        self.baseline = fit_baseline(
            steps, pace, runner=self.runner, session=self.session, prior=self.prior
        )
        self._win = []
        self._make_deviation_channels(self.baseline)

    # --- channels -----------------------------------------------------------------------------
    def _add(
        self,
        key: str,
        code: str,
        metric: str,
        side: SideName,
        family: str,
        warn: float,
        crit: float,
        off: float,
        priority: int = 0,
    ) -> None:
        if code in self.config.disabled_codes or not (math.isfinite(warn) and warn > 0):
            return
        self._channels[key] = _Channel(key, code, metric, side, family, warn, crit, off, priority)

    def _make_absolute_channels(self) -> None:
        c = self.config
        if c.pelvic_drop_max_deg is not None:
            hy = c.pelvic_drop_max_hysteresis_deg
            for sd in ("left", "right"):
                self._add(
                    f"drop_limit:{sd}",
                    CODE_DROP_LIMIT,
                    METRIC_DROP,
                    sd,
                    "pelvic_drop",
                    hy,
                    math.inf,
                    0.0,
                    1,
                )
        if c.contact_time_max_s is not None:
            hy = c.contact_time_max_hysteresis_s
            self._add(
                "contact_limit",
                CODE_CONTACT_LIMIT,
                METRIC_CONTACT,
                "",
                "contact",
                hy,
                math.inf,
                0.0,
                1,
            )
        if c.cadence_min_spm is not None:
            hy = c.cadence_min_hysteresis_spm
            self._add(
                "cadence_limit",
                CODE_CADENCE_LIMIT,
                METRIC_CADENCE,
                "",
                "cadence",
                hy,
                math.inf,
                0.0,
                1,
            )

    def _ewma_sd(self, resid_sd: float, per_side: bool, b: Baseline) -> float:
        dt = b.ref_step_time_s * (2.0 if per_side else 1.0)
        a = 1.0 - math.exp(-dt / self.config.ewma_tau_s)
        return resid_sd * math.sqrt(a / (2.0 - a))

    def _make_deviation_channels(self, b: Baseline) -> None:
        c = self.config
        z = c.noise_z
        hf = c.hysteresis_frac

        def thr(warn: float, crit: float, sd: float) -> tuple[float, float, float]:
            w = max(warn, z * sd) if math.isfinite(sd) else warn
            cr = max(crit, w * crit / warn) if warn > 0 else crit
            return w, cr, hf * w

        for sd in ("left", "right"):
            m = b.model("pelvic_drop_deg", sd)
            if m is not None:
                w, cr, off = thr(
                    c.pelvic_drop_warn_deg,
                    c.pelvic_drop_critical_deg,
                    self._ewma_sd(m.resid_sd, True, b),
                )
                self._add(f"drop:{sd}", CODE_DROP, METRIC_DROP, sd, "pelvic_drop", w, cr, off)
        ml, mr = b.model("pelvic_drop_deg", "left"), b.model("pelvic_drop_deg", "right")
        if ml is not None and mr is not None:
            sd_ = math.hypot(
                self._ewma_sd(ml.resid_sd, True, b), self._ewma_sd(mr.resid_sd, True, b)
            )
            w, cr, off = thr(
                c.pelvic_drop_asymmetry_warn_deg, c.pelvic_drop_asymmetry_critical_deg, sd_
            )
            self._add(
                "drop_asym", CODE_DROP_ASYM, METRIC_DROP_ASYM, "", "pelvic_drop", w, cr, off, 2
            )
        m = b.model("contact_time_s")
        if m is not None and m.intercept > 0:
            w, cr, off = thr(
                c.contact_time_warn_pct / 100 * m.intercept,
                c.contact_time_critical_pct / 100 * m.intercept,
                self._ewma_sd(m.resid_sd, False, b),
            )
            self._add("contact", CODE_CONTACT, METRIC_CONTACT, "", "contact", w, cr, off)
        cl, cr_ = b.model("contact_time_s", "left"), b.model("contact_time_s", "right")
        if cl is not None and cr_ is not None and cl.intercept > 0 and cr_.intercept > 0:
            tot = cl.intercept + cr_.intercept
            # d(balance %) ~ 100 * (dL * R - dR * L) / (L + R)^2
            sd_ = (
                100
                * math.hypot(
                    self._ewma_sd(cl.resid_sd, True, b) * cr_.intercept,
                    self._ewma_sd(cr_.resid_sd, True, b) * cl.intercept,
                )
                / tot**2
            )
            w, crt, off = thr(c.contact_balance_warn_pp, c.contact_balance_critical_pp, sd_)
            self._add("balance", CODE_BALANCE, METRIC_BALANCE, "", "contact", w, crt, off, 2)
        m = b.model("vertical_oscillation_m")
        if m is not None and m.intercept > 0:
            w, cr, off = thr(
                c.vertical_oscillation_warn_pct / 100 * m.intercept,
                c.vertical_oscillation_critical_pct / 100 * m.intercept,
                self._ewma_sd(m.resid_sd, False, b),
            )
            self._add("vo", CODE_VO, METRIC_VO, "", "vertical_oscillation", w, cr, off)
        if c.cadence_drop_warn_pct is not None and math.isfinite(b.cadence_spm):
            crit_pct = c.cadence_drop_critical_pct or 2 * c.cadence_drop_warn_pct
            a = 1.0 - math.exp(-b.ref_step_time_s / c.ewma_tau_s)
            sd_ = b.cadence_sd_spm * math.sqrt(a / (2.0 - a))
            w, cr, off = thr(
                c.cadence_drop_warn_pct / 100 * b.cadence_spm, crit_pct / 100 * b.cadence_spm, sd_
            )
            self._add("cadence", CODE_CADENCE, METRIC_CADENCE, "", "cadence", w, cr, off)

    def _ewma(self, key: str, x: float, dt: float, *, start: float | None = 0.0) -> float:
        """Time-constant EWMA; ``start=None``: bias-corrected (begins at the first value)."""
        a = 1.0 - math.exp(-dt / self.config.ewma_tau_s)
        if start is None:
            if math.isfinite(x):
                prev = self._ew.get(key, 0.0)
                self._ew[key] = prev + a * (x - prev)
                self._ew_w[key] = self._ew_w.get(key, 0.0) * (1.0 - a) + a
            w = self._ew_w.get(key, 0.0)
            return self._ew[key] / w if w > 0 else math.nan
        if math.isfinite(x):
            prev = self._ew.get(key, start)
            self._ew[key] = prev + a * (x - prev)
        return self._ew.get(key, math.nan)

    def _detect(self, s: _Step, pace: float, out: list[Alert], row: TraceRow | None) -> None:
        c = self.config
        side = _SIDE_NAME.get(s.side, "")
        v = s.values
        readings: dict[str, _Reading] = {}
        # absolute limits: bias-corrected EWMA of the raw values
        if c.pelvic_drop_max_deg is not None and side:
            x = self._ewma(f"raw_drop:{side}", v[_I["pelvic_drop_deg"]], 2 * pace, start=None)
            if math.isfinite(x):
                lim = c.pelvic_drop_max_deg
                readings[f"drop_limit:{side}"] = _Reading(
                    x - lim + c.pelvic_drop_max_hysteresis_deg, x, lim, x - lim, side
                )
        if c.contact_time_max_s is not None:
            x = self._ewma("raw_contact", v[_I["contact_time_s"]], pace, start=None)
            if math.isfinite(x):
                lim = c.contact_time_max_s
                readings["contact_limit"] = _Reading(
                    x - lim + c.contact_time_max_hysteresis_s, x, lim, x - lim, ""
                )
        if c.cadence_min_spm is not None:
            x = self._ewma("raw_cadence", v[_I["cadence_spm"]], pace, start=None)
            if math.isfinite(x):
                lim = c.cadence_min_spm
                readings["cadence_limit"] = _Reading(
                    lim - x + c.cadence_min_hysteresis_spm, x, lim, x - lim, ""
                )
        b = self.baseline
        if b is not None:
            self._deviation_readings(b, s, side, pace, readings)
        for key, r in readings.items():
            if row is not None:
                row.bad[key] = r.bad
            ch = self._channels.get(key)
            if ch is not None and math.isfinite(r.bad):
                alert = self._advance(ch, s.t, r)
                if alert is not None:
                    out.append(alert)

    def _model_table(self, b: Baseline) -> dict[tuple[str, str], tuple[Any, Any, float, str]]:
        """Per (metric, side): intercept, slope, residual clip and EWMA key (cached per baseline)."""
        if self._mods_of is not b:
            clip = self.config.outlier_clip_sd
            table: dict[tuple[str, str], tuple[Any, Any, float, str]] = {}
            for metric in ("pelvic_drop_deg", "contact_time_s", "vertical_oscillation_m"):
                for sd in ("left", "right", ""):
                    m = b.model(metric, sd)
                    if m is not None:
                        lim = clip * m.resid_sd if clip > 0 and m.resid_sd > 0 else math.inf
                        table[metric, sd] = (m.intercept, m.slope, lim, f"r:{metric}:{sd}")
            self._mods, self._mods_of = table, b
        return self._mods

    def _deviation_readings(
        self, b: Baseline, s: _Step, side: SideName, pace: float, readings: dict[str, _Reading]
    ) -> None:
        v = s.values
        ref = b.ref_step_time_s
        clip = self.config.outlier_clip_sd
        mods = self._model_table(b)
        ew = self._ew
        nan = math.nan
        isfinite = math.isfinite
        tau = self.config.ewma_tau_s
        # EWMA weights of the two step intervals used below (as in _ewma)
        a1 = 1.0 - math.exp(-pace / tau)
        a2 = 1.0 - math.exp(-(2 * pace) / tau)

        def resid(metric: str, sd: SideName, a: float) -> tuple[float, float]:
            m = mods.get((metric, sd))
            if m is None:
                return nan, nan
            icpt, slope, lim, key = m
            pred = float(icpt + slope * (pace - ref))
            r = min(max(v[_I[metric]] - pred, -lim), lim)  # NaN stays NaN
            if isfinite(r):
                prev = ew.get(key, 0.0)
                ew[key] = prev + a * (r - prev)
            return pred, ew.get(key, nan)

        def current(metric: str, sd: SideName) -> tuple[float, float]:
            m = mods.get((metric, sd))
            if m is None:
                return nan, nan
            return float(m[0] + m[1] * (pace - ref)), ew.get(m[3], 0.0)

        if side:
            pred, r = resid("pelvic_drop_deg", side, a2)
            if isfinite(r):
                readings[f"drop:{side}"] = _Reading(r, pred + r, pred, r, side)
            pl, rl = current("pelvic_drop_deg", "left")
            pr, rr = current("pelvic_drop_deg", "right")
            if isfinite(pl + pr):
                d = rl - rr
                worse: SideName = "left" if d > 0 else "right"
                readings["drop_asym"] = _Reading(abs(d), (pl + rl) - (pr + rr), pl - pr, d, worse)
            resid("contact_time_s", side, a2)
            pl, rl = current("contact_time_s", "left")
            pr, rr = current("contact_time_s", "right")
            if isfinite(pl + pr) and pl + pr > 0:
                cl, cr = pl + rl, pr + rr
                val = 100 * cl / (cl + cr)
                base = 100 * pl / (pl + pr)
                d = val - base
                longer: SideName = "left" if d > 0 else "right"
                readings["balance"] = _Reading(abs(d), val, base, d, longer)
        # contact time and bounce depend strongly on speed: judged only near the baseline's paces
        # (no extrapolation of the pace model to recovery jogs or sprints)
        if self._pace_gate[0] <= pace <= self._pace_gate[1]:
            pred, r = resid("contact_time_s", "", a1)
            if isfinite(r):
                readings["contact"] = _Reading(r, pred + r, pred, r, "")
            pred, r = resid("vertical_oscillation_m", "", a1)
            if isfinite(r):
                readings["vo"] = _Reading(r, pred + r, pred, r, "")
        if "cadence" in self._channels:
            lim = clip * b.cadence_sd_spm if clip > 0 and b.cadence_sd_spm > 0 else math.inf
            x = self._ewma(
                "r:cadence", min(max(v[_I["cadence_spm"]] - b.cadence_spm, -lim), lim), pace
            )
            if isfinite(x):
                readings["cadence"] = _Reading(-x, b.cadence_spm + x, b.cadence_spm, x, "")

    def _advance(self, ch: _Channel, t: float, r: _Reading) -> Alert | None:
        c = self.config
        d = r.bad
        if ch.state in (_IDLE, _PENDING) and (d <= ch.off or math.isnan(ch.last_low_t)):
            ch.last_low_t = t
        if ch.state == _IDLE:
            if d > ch.warn:
                ch.state, ch.t_on = _PENDING, t
            return None
        if ch.state == _PENDING:
            if d <= ch.warn:
                ch.state = _IDLE
                return None
            if t - ch.t_on < c.grace_s or not self._may_fire(ch, t):
                return None
            ch.state = _ACTIVE
            ch.level = "critical" if d > ch.crit else "warning"
            ch.t_crit = math.nan
            ch.since_s = ch.last_low_t
            ch.fired_side = r.side or ch.side
            self._last_new_alert_t = t
            return self._alert(ch, t, r, active=True)
        # active / clearing
        if ch.level == "warning":
            if d > ch.crit:
                if math.isnan(ch.t_crit):
                    ch.t_crit = t
                elif t - ch.t_crit >= c.grace_s:
                    ch.level = "critical"
                    ch.state = _ACTIVE
                    return self._alert(ch, t, r, active=True)
            else:
                ch.t_crit = math.nan
        if ch.state == _ACTIVE:
            if d <= ch.off:
                ch.state, ch.t_off = _CLEARING, t
            return None
        if d > ch.off:  # clearing interrupted
            ch.state = _ACTIVE
            return None
        if t - ch.t_off >= c.clear_hold_s:
            ch.state = _IDLE
            ch.last_low_t = t
            self._family_cooldown[ch.family] = t + c.cooldown_s
            return self._alert(ch, t, r, active=False)
        return None

    def _may_fire(self, ch: _Channel, t: float) -> bool:
        if t < self._family_cooldown.get(ch.family, -math.inf):
            return False
        if t - self._last_new_alert_t < self.config.min_alert_gap_s:
            return False
        return not any(
            o.family == ch.family
            and (
                o.state in (_ACTIVE, _CLEARING)
                or (o.state == _PENDING and o.priority < ch.priority)
            )
            for o in self._channels.values()
        )

    def _alert(self, ch: _Channel, t: float, r: _Reading, *, active: bool) -> Alert:
        side = ch.fired_side if ch.side == "" else ch.side
        level: Level = ch.level if active else "info"
        msg = _message(ch.code, side, r, ch.since_s, t, active, self.baseline)
        return Alert(
            time_s=t,
            metric=ch.metric,
            side=side,
            level=level,
            code=ch.code,
            value=r.value,
            baseline=r.baseline,
            deviation=r.deviation,
            since_s=ch.since_s,
            active=active,
            message=msg,
        )


# --- messages -------------------------------------------------------------------------------
def format_clock(t_s: float) -> str:
    """Session time as m:ss or h:mm:ss."""
    if not math.isfinite(t_s):
        return "?"
    s = round(t_s)
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


_OTHER: dict[str, str] = {"left": "right", "right": "left"}


def _cadence_cue(b: Baseline | None) -> str:
    if b is not None and math.isfinite(b.cadence_spm):
        lo, hi = b.cadence_spm * 1.05, b.cadence_spm * 1.10
        return f"cadence +5-10 % (about {lo:.0f}-{hi:.0f} spm)"
    return "cadence +5-10 %"


def _message(
    code: str,
    side: SideName,
    r: _Reading,
    since_s: float,
    t: float,
    active: bool,
    b: Baseline | None,
) -> str:
    since = format_clock(since_s)
    dur = format_clock(t - since_s)
    sign = "+" if r.deviation >= 0 else "-"
    dev = abs(r.deviation)
    texts: dict[str, Callable[[], tuple[str, str]]] = {
        CODE_DROP: lambda: (
            f"pelvic drop in {side}-foot stance {sign}{dev:.1f} deg since {since} "
            f"({_OTHER.get(side, 'other')} hip sagging)",
            f"shorten your stride, {_cadence_cue(b)}",
        ),
        CODE_DROP_ASYM: lambda: (
            f"pelvic drop uneven: {side}-foot stance {dev:.1f} deg more than usual vs the other side "
            f"since {since}",
            f"shorten your stride, {_cadence_cue(b)}; if it hurts, ease off",
        ),
        CODE_CONTACT: lambda: (
            f"ground contact {r.value * 1000:.0f} ms, {sign}{dev * 1000:.0f} ms vs usual at this cadence "
            f"({100 * r.deviation / r.baseline:+.0f} %) since {since}",
            f"quick light steps, {_cadence_cue(b)}",
        ),
        CODE_BALANCE: lambda: (
            f"contact balance {r.value:.1f} % left (usual {r.baseline:.1f} %): longer on the {side} "
            f"since {since}",
            f"even out your steps; a new niggle on the {side}? ease off",
        ),
        CODE_VO: lambda: (
            f"bouncing more: vertical oscillation {r.value * 100:.1f} cm ({sign}{dev * 100:.1f} cm) "
            f"since {since}",
            "run tall, push back not up, quicker steps",
        ),
        CODE_CADENCE: lambda: (
            f"cadence {r.value:.0f} spm, {dev:.0f} below your usual {r.baseline:.0f} since {since}",
            "if you did not mean to slow down: short quick steps back to your usual cadence",
        ),
        CODE_DROP_LIMIT: lambda: (
            f"pelvic drop in {side}-foot stance {r.value:.1f} deg, over your limit {r.baseline:.1f} "
            f"since {since}",
            f"shorten your stride, {_cadence_cue(b)}",
        ),
        CODE_CONTACT_LIMIT: lambda: (
            f"ground contact {r.value * 1000:.0f} ms, over your limit {r.baseline * 1000:.0f} ms since {since}",
            f"quick light steps, {_cadence_cue(b)}",
        ),
        CODE_CADENCE_LIMIT: lambda: (
            f"cadence {r.value:.0f} spm, under your target {r.baseline:.0f} since {since}",
            "short quick steps",
        ),
    }
    what, cue = texts[code]()
    if active:
        return f"{what}: {cue}"
    names = {
        CODE_DROP: f"pelvic drop in {side}-foot stance",
        CODE_DROP_ASYM: "pelvic drop symmetry",
        CODE_CONTACT: "ground contact time",
        CODE_BALANCE: "contact balance",
        CODE_VO: "vertical oscillation",
        CODE_CADENCE: "cadence",
        CODE_DROP_LIMIT: f"pelvic drop in {side}-foot stance",
        CODE_CONTACT_LIMIT: "ground contact time",
        CODE_CADENCE_LIMIT: "cadence",
    }
    return f"{names[code]} back to normal after {dur}: keep it up"


def run_alerts(
    steps: npt.NDArray[Any],
    config: AlertConfig | None = None,
    baseline: Baseline | None = None,
    *,
    trace: bool = False,
) -> tuple[list[Alert], AlertEngine]:
    """Offline: one :meth:`AlertEngine.update` on all steps + :meth:`AlertEngine.finish`."""
    eng = AlertEngine(config, baseline, trace=trace)
    alerts = eng.update(steps)
    alerts += eng.finish()
    return alerts, eng
