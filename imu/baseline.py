"""Personal baselines: what a runner's steps look like when fresh, as a function of step time.

A :class:`Baseline` holds, for every per-step metric and side, a robust straight line

    metric ~ intercept + slope * (step_time_s - ref_step_time_s)

fitted on the steady running of the baseline window (e.g. minutes 2-6 of running). Step time
(60 / cadence, smoothed over a few seconds) is the pace proxy a pelvis IMU has: running faster
shortens steps and ground contact together, so comparing a step with the line at its own step
time (the residual) separates form changes from pace changes (intervals, hills, slower second
halves). In a steady window the slope is poorly determined; it is shrunk towards a prior slope
(population value, or the runner's own pooled slope from earlier sessions).

:class:`BaselineStore` keeps the baselines of past sessions per runner in a small JSON file
(``$IMU_HOME/baselines/<runner>.json``, default ``~/.local/share/imu/baselines``) and merges them
into the runner's *usual* baseline, which the alert engine takes as its prior.

This module does no I/O except :class:`BaselineStore`, and knows nothing of storage or the CLI.
"""

from __future__ import annotations

import json
import math
import os
import re
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from imu.errors import ImuError

#: metrics modelled against step time (the float columns of STEP_DTYPE except cadence).
MODELLED_METRICS = (
    "contact_time_s",
    "flight_time_s",
    "vertical_oscillation_m",
    "pelvic_drop_deg",
    "pelvic_rotation_deg",
    "pelvic_tilt_deg",
    "braking_mps2",
)

#: model sides: "" = both sides pooled.
MODEL_SIDES = ("", "left", "right")

#: Prior pace dependence as an elasticity d ln(metric) / d ln(step time), turned into a slope at
#: the runner's own values (slope = elasticity * value / step time). Contact time: median of the
#: within-runner regressions of force-plate contact time on step time over 3.8-5.4 m/s,
#: 37 runners (Alcantara et al. 2021, PeerJ 9:e11199; ../shared/data/alcantara_sacral_summary):
#: 2.4 (IQR 2.0-2.9); i.e. running slower lengthens contact about 2.4x as much (relatively) as it
#: lengthens the step. Flight time = step time - contact time. Others: no dependable value, 0.
PRIOR_ELASTICITY: Mapping[str, float] = {"contact_time_s": 2.4}


def prior_slope(metric: str, ref_step_time_s: float, contact_time_s: float) -> float:
    """Population prior of d(metric)/d(step time) at a runner's step and contact time."""
    if not (
        math.isfinite(ref_step_time_s) and ref_step_time_s > 0 and math.isfinite(contact_time_s)
    ):
        return 0.0
    ct_slope = PRIOR_ELASTICITY["contact_time_s"] * contact_time_s / ref_step_time_s
    if metric == "contact_time_s":
        return ct_slope
    if metric == "flight_time_s":
        return 1.0 - ct_slope
    return PRIOR_ELASTICITY.get(metric, 0.0)


#: Strength of the prior slope, as the sum of squares of step-time spread (s^2) it is worth:
#: 0.05 s^2 ~ 700 steps (4 min) spread +-8.5 ms (2.5 %) around the reference step time. It must
#: outweigh the spread a steady window gets from measurement noise alone (the smoothed step time
#: of a steady run scatters by ~3 ms, Sxx ~0.005 s^2 over 4 min), which carries no pace
#: information and would pull the slope towards 0 (regression dilution); real pace changes in
#: the window (intervals: Sxx ~0.2 s^2) override it.
PRIOR_SXX_S2 = 0.05

BASELINE_FORMAT = "imu-baseline"
BASELINE_VERSION = 1


class BaselineError(ImuError):
    """A baseline file cannot be read or written.

    Attributes:
        path: the file at fault.
        reason: what is wrong, in one line.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"{path}: {reason}")


def model_key(metric: str, side: str = "") -> str:
    """Key of a metric model in :attr:`Baseline.models`: ``metric`` or ``metric:side``."""
    return f"{metric}:{side}" if side else metric


@dataclass(frozen=True, slots=True)
class MetricModel:
    """``value ~ intercept + slope * (step_time_s - ref_step_time_s)`` with a robust residual SD.

    Attributes:
        intercept: expected value at the reference step time (metric unit).
        slope: metric unit per second of step time.
        resid_sd: robust (1.4826 * MAD) SD of the per-step residuals (metric unit).
        n: steps used.
        sxx_s2: weighted sum of squared step-time deviations (how well the slope is determined).
    """

    intercept: float
    slope: float
    resid_sd: float
    n: int
    sxx_s2: float

    def predict(self, step_time_s: float | npt.NDArray[np.float64], ref_step_time_s: float) -> Any:
        return self.intercept + self.slope * (step_time_s - ref_step_time_s)


@dataclass(frozen=True, slots=True)
class Baseline:
    """A runner's fresh running form (one session, or the merged usual of several).

    Attributes:
        runner: who.
        session: the session it was learned in (``"usual"`` for a merged baseline).
        ref_step_time_s: reference step time (median in the window), s.
        cadence_spm: median cadence in the window.
        cadence_sd_spm: robust SD of the per-step cadence.
        window_start_s / window_end_s: sensor time of the first / last step used.
        n_steps: running steps used.
        sessions: how many session baselines this one merges (1 for a session baseline).
        models: per metric and side (see :func:`model_key`).
    """

    runner: str
    session: str
    ref_step_time_s: float
    cadence_spm: float
    cadence_sd_spm: float
    window_start_s: float
    window_end_s: float
    n_steps: int
    sessions: int = 1
    models: Mapping[str, MetricModel] = field(default_factory=dict)

    def model(self, metric: str, side: str = "") -> MetricModel | None:
        return self.models.get(model_key(metric, side))

    def expected(self, metric: str, side: str, step_time_s: float) -> float:
        """Expected value of ``metric`` on ``side`` at ``step_time_s`` (NaN if not modelled)."""
        m = self.model(metric, side)
        if m is None:
            return math.nan
        return float(m.predict(step_time_s, self.ref_step_time_s))

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["models"] = {k: asdict(v) for k, v in self.models.items()}
        return d

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Baseline:
        models = {
            str(k): MetricModel(**{f: _from_json(x) for f, x in dict(v).items()})
            for k, v in dict(d.get("models", {})).items()
        }
        fields = {k: _from_json(d[k]) for k in cls.__dataclass_fields__ if k in d and k != "models"}
        return cls(**fields, models=models)


# --- fitting -------------------------------------------------------------------------------
def _mad_sd(r: npt.NDArray[np.float64]) -> float:
    if r.size == 0:
        return math.nan
    return float(1.4826 * np.median(np.abs(r - np.median(r))))


def robust_line(
    x: npt.NDArray[np.float64],
    y: npt.NDArray[np.float64],
    prior_slope: float,
    prior_sxx: float,
    *,
    iterations: int = 12,
    huber_k: float = 1.345,
) -> tuple[float, float, float, float]:
    """Huber-IRLS line ``y ~ a + b x`` with a ridge penalty ``prior_sxx * (b - prior_slope)^2``.

    Returns (a, b, robust residual SD, weighted sum of x^2). ``x`` should be centred.
    """
    b = prior_slope
    a = float(np.median(y - b * x))
    w = np.ones_like(y)
    sd = _mad_sd(y - a - b * x)
    for _ in range(iterations):
        r = y - a - b * x
        sd = _mad_sd(r)
        scale = max(sd, 1e-12) * huber_k
        ar = np.abs(r)
        w = np.where(ar <= scale, 1.0, scale / np.maximum(ar, 1e-300))
        sw, swx, swy = w.sum(), (w * x).sum(), (w * y).sum()
        swxx, swxy = (w * x * x).sum() + prior_sxx, (w * x * y).sum() + prior_sxx * prior_slope
        det = sw * swxx - swx * swx
        if det <= 0:
            break
        a_new = (swxx * swy - swx * swxy) / det
        b_new = (sw * swxy - swx * swy) / det
        done = abs(a_new - a) <= 1e-9 * (1 + abs(a)) and abs(b_new - b) <= 1e-9 * (1 + abs(b))
        a, b = float(a_new), float(b_new)
        if done:
            break
    sd = _mad_sd(y - a - b * x)
    return a, b, sd, float((w * x * x).sum())


def fit_baseline(
    steps: npt.NDArray[Any],
    step_time_s: npt.NDArray[np.float64],
    *,
    runner: str = "",
    session: str = "",
    prior: Baseline | None = None,
    prior_sxx_s2: float = PRIOR_SXX_S2,
    min_steps_per_model: int = 30,
) -> Baseline:
    """Fit a :class:`Baseline` on ``steps`` (STEP_DTYPE, already selected: running, steady).

    Args:
        steps: the baseline-window steps.
        step_time_s: per-step pace covariate (smoothed 60 / cadence), same length.
        prior: a previous (usual) baseline: its slopes are the prior, worth its own ``sxx_s2``
            (capped) on top of ``prior_sxx_s2``.
    """
    from dsp.types import Side

    st = np.asarray(step_time_s, dtype=np.float64)
    ok = np.isfinite(st)
    cad = steps["cadence_spm"][ok & np.isfinite(steps["cadence_spm"])]
    ref = float(np.median(st[ok])) if ok.any() else math.nan
    ct_all = steps["contact_time_s"][ok & np.isfinite(steps["contact_time_s"])]
    ct_med = float(np.median(ct_all)) if ct_all.size else math.nan
    models: dict[str, MetricModel] = {}
    side_masks = {
        "": np.ones(len(steps), bool),
        "left": steps["side"] == Side.LEFT,
        "right": steps["side"] == Side.RIGHT,
    }
    for metric in MODELLED_METRICS:
        y_all = np.asarray(steps[metric], dtype=np.float64)
        for side, smask in side_masks.items():
            m = ok & smask & np.isfinite(y_all)
            if m.sum() < min_steps_per_model:
                continue
            b0, s0 = prior_slope(metric, ref, ct_med), prior_sxx_s2
            pm = prior.model(metric, side) if prior is not None else None
            if pm is not None and math.isfinite(pm.slope):
                extra = min(pm.sxx_s2, 1.0)
                b0 = (s0 * b0 + extra * pm.slope) / (s0 + extra)
                s0 += extra
            a, b, sd, sxx = robust_line(st[m] - ref, y_all[m], b0, s0)
            models[model_key(metric, side)] = MetricModel(a, b, sd, int(m.sum()), sxx)
    t = steps["time_s"]
    return Baseline(
        runner=runner,
        session=session,
        ref_step_time_s=ref,
        cadence_spm=float(np.median(cad)) if cad.size else math.nan,
        cadence_sd_spm=_mad_sd(cad),
        window_start_s=float(t[0]) if len(t) else math.nan,
        window_end_s=float(t[-1]) if len(t) else math.nan,
        n_steps=len(steps),
        sessions=1,
        models=models,
    )


def merge_baselines(baselines: Iterable[Baseline], runner: str = "") -> Baseline | None:
    """The runner's usual baseline from several sessions.

    Intercepts (moved to a common reference step time) and residual SDs: step-count-weighted
    medians, robust to one odd session. Slopes: pooled, each session weighted by its step-time
    spread ``sxx_s2`` (a session with intervals tells more about pace dependence than a steady one).
    """
    bs = [b for b in baselines if math.isfinite(b.ref_step_time_s)]
    if not bs:
        return None
    w = np.array([max(b.n_steps, 1) for b in bs], dtype=np.float64)
    ref = _weighted_median(np.array([b.ref_step_time_s for b in bs]), w)
    models: dict[str, MetricModel] = {}
    keys = sorted({k for b in bs for k in b.models})
    for k in keys:
        ms = [(b, b.models[k]) for b in bs if k in b.models]
        sxx = np.array([m.sxx_s2 for _, m in ms])
        slopes = np.array([m.slope for _, m in ms])
        slope = (
            float((sxx * slopes).sum() / sxx.sum()) if sxx.sum() > 0 else float(np.median(slopes))
        )
        inter = np.array([m.intercept + slope * (ref - b.ref_step_time_s) for b, m in ms])
        wk = np.array([max(m.n, 1) for _, m in ms], dtype=np.float64)
        models[k] = MetricModel(
            intercept=_weighted_median(inter, wk),
            slope=slope,
            resid_sd=_weighted_median(np.array([m.resid_sd for _, m in ms]), wk),
            n=int(sum(m.n for _, m in ms)),
            sxx_s2=float(sxx.sum()),
        )
    return Baseline(
        runner=runner or bs[-1].runner,
        session="usual",
        ref_step_time_s=ref,
        cadence_spm=_weighted_median(np.array([b.cadence_spm for b in bs]), w),
        cadence_sd_spm=_weighted_median(np.array([b.cadence_sd_spm for b in bs]), w),
        window_start_s=math.nan,
        window_end_s=math.nan,
        n_steps=int(w.sum()),
        sessions=int(sum(b.sessions for b in bs)),
        models=models,
    )


def _weighted_median(values: npt.NDArray[np.float64], weights: npt.NDArray[np.float64]) -> float:
    ok = np.isfinite(values)
    if not ok.any():
        return math.nan
    v, w = values[ok], weights[ok]
    order = np.argsort(v, kind="stable")
    v, w = v[order], w[order]
    c = np.cumsum(w)
    return float(v[np.searchsorted(c, 0.5 * c[-1])])


# --- store ---------------------------------------------------------------------------------
_RUNNER_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,127}$")


def default_baseline_dir() -> Path:
    """``$IMU_HOME/baselines`` if IMU_HOME is set, else ``~/.local/share/imu/baselines``."""
    home = os.environ.get("IMU_HOME")
    if home:
        return Path(home) / "baselines"
    return Path.home() / ".local" / "share" / "imu" / "baselines"


class BaselineStore:
    """Session baselines per runner in ``<root>/<runner>.json``; :meth:`load` gives the usual.

    Args:
        root: directory of the JSON files (default :func:`default_baseline_dir`).
        max_sessions: keep the most recent N session baselines per runner (older ones drop out,
            so the usual follows a runner who changes over months).
    """

    def __init__(self, root: str | Path | None = None, *, max_sessions: int = 10) -> None:
        self.root = Path(root) if root is not None else default_baseline_dir()
        self.max_sessions = max_sessions

    def path(self, runner: str) -> Path:
        if not _RUNNER_RE.match(runner):
            raise BaselineError(
                runner, "runner name must be 1-128 characters of A-Z a-z 0-9 _ . @ -"
            )
        return self.root / f"{runner}.json"

    def history(self, runner: str) -> list[Baseline]:
        """The stored session baselines of ``runner``, oldest first (empty if none)."""
        p = self.path(runner)
        if not p.exists():
            return []
        try:
            doc = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as e:
            raise BaselineError(str(p), f"cannot read baseline file: {e}") from e
        if not isinstance(doc, dict) or doc.get("format") != BASELINE_FORMAT:
            raise BaselineError(str(p), "not an imu baseline file")
        if doc.get("version") != BASELINE_VERSION:
            raise BaselineError(str(p), f"unsupported baseline version {doc.get('version')!r}")
        try:
            return [Baseline.from_dict(d) for d in doc.get("sessions", [])]
        except (TypeError, KeyError, ValueError) as e:
            raise BaselineError(str(p), f"malformed baseline entry: {e}") from e

    def load(self, runner: str) -> Baseline | None:
        """The runner's usual baseline (merge of the stored sessions), or None."""
        return merge_baselines(self.history(runner), runner)

    def save(self, baseline: Baseline, runner: str | None = None) -> Baseline:
        """Add a session baseline (replacing one of the same session) and return the new usual."""
        who = runner or baseline.runner
        b = replace(baseline, runner=who)
        hist = [h for h in self.history(who) if h.session != b.session or not b.session]
        hist = [*hist, b][-self.max_sessions :]
        p = self.path(who)
        doc = {
            "format": BASELINE_FORMAT,
            "version": BASELINE_VERSION,
            "runner": who,
            "sessions": [_json_safe(h.to_dict()) for h in hist],
        }
        p.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{who}.", suffix=".tmp", dir=p.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(doc, f, indent=1, allow_nan=False)
            os.replace(tmp, p)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        usual = merge_baselines(hist, who)
        assert usual is not None
        return usual


def _from_json(v: Any) -> Any:
    return math.nan if v is None else v


def _json_safe(obj: Any) -> Any:
    """NaN/inf -> None, recursively (JSON has no NaN); :meth:`Baseline.from_dict` maps back."""
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_json_safe(v) for v in obj]
    return obj
