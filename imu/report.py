"""Post-run report: one self-contained HTML page with plots a physical therapist can read.

``write_report(steps, events, alerts, session_meta, out_dir)`` writes ``<out_dir>/report.html``
(PNG images inline as base64) and the same images as PNG files next to it. It takes plain arrays
and dicts so the CLI can feed it from any store; it recomputes the baseline from the steps with
the same :class:`imu.alerts.AlertEngine` the live run used unless one is given.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import math
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dsp.types import STEP_DTYPE, Activity, Side
from imu.alerts import Alert, AlertConfig, AlertEngine, format_clock
from imu.baseline import Baseline
from imu.errors import InputError

LEFT_COLOUR = "#1f77b4"  # blue
RIGHT_COLOUR = "#d95f02"  # orange (colour-blind safe with blue)
LEVEL_COLOUR = {"info": "#2ca02c", "warning": "#e6a100", "critical": "#c00000"}


@dataclass(frozen=True, slots=True)
class _Panel:
    metric: str
    title: str
    unit: str
    scale: float  # stored unit -> plotted unit
    alert_metrics: tuple[str, ...]
    higher_is: str  # what a rise means, for the reader


PANELS = (
    _Panel(
        "pelvic_drop_deg",
        "Pelvic drop (contralateral, per stance side)",
        "deg",
        1.0,
        ("pelvic_drop_deg", "pelvic_drop_asymmetry_deg"),
        "more drop of the swing-side hip",
    ),
    _Panel(
        "contact_time_s",
        "Ground contact time",
        "ms",
        1000.0,
        ("contact_time_s", "contact_time_balance_pct"),
        "longer ground contact",
    ),
    _Panel("cadence_spm", "Cadence", "steps/min", 1.0, ("cadence_spm",), "quicker steps"),
    _Panel(
        "vertical_oscillation_m",
        "Vertical oscillation",
        "cm",
        100.0,
        ("vertical_oscillation_m",),
        "more bounce",
    ),
    _Panel("pelvic_rotation_deg", "Pelvic rotation range", "deg", 1.0, (), "more rotation"),
    _Panel("pelvic_tilt_deg", "Pelvic tilt range", "deg", 1.0, (), "more tilt motion"),
    _Panel("braking_mps2", "Braking (peak deceleration)", "m/s²", 1.0, (), "harder braking"),
)


def _alert_dicts(alerts: Iterable[Alert | Mapping[str, Any]]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for a in alerts:
        d = a.as_dict() if isinstance(a, Alert) else dict(a)
        if "time_s" not in d:
            d["time_s"] = d.get("sensor_time_s", math.nan)
        d.setdefault("active", True)
        d.setdefault("side", "")
        if d["side"] == "both":
            d["side"] = ""
        d.setdefault("level", "warning")
        d.setdefault("metric", "")
        d.setdefault("message", "")
        d.setdefault("code", "")
        out.append(d)
    out.sort(key=lambda d: float(d["time_s"]))
    return out


def _rolling_median(
    t: npt.NDArray[np.float64], y: npt.NDArray[np.float64], half_s: float, gap_s: float = 5.0
) -> npt.NDArray[np.float64]:
    """Centred rolling median over about +-half_s (in steps at the median step interval),
    computed per gap-free piece (gaps > gap_s); NaN where the value itself is NaN."""
    from scipy.ndimage import median_filter

    out = np.full(len(y), np.nan)
    if len(y) < 3:
        return out
    dt = np.diff(t)
    step = float(np.median(dt[dt > 0])) if (dt > 0).any() else 1.0
    size = max(3, 2 * round(half_s / step) + 1)
    cuts = np.concatenate(([0], np.nonzero(dt > gap_s)[0] + 1, [len(y)]))
    for a, b in itertools.pairwise(cuts):
        seg = y[a:b]
        ok = np.isfinite(seg)
        if ok.sum() < 3:
            continue
        idx = np.arange(len(seg))
        filled = np.interp(idx, idx[ok], seg[ok])
        med = median_filter(filled, size=min(size, len(seg) | 1), mode="nearest")
        half = size // 2
        for i in [*range(min(half, len(seg))), *range(max(len(seg) - half, half), len(seg))]:
            med[i] = np.median(filled[max(0, i - half) : i + half + 1])  # truncated at the ends
        out[a:b] = np.where(ok, med, np.nan)
    return out


def _break_gaps(
    t: npt.NDArray[np.float64], y: npt.NDArray[np.float64], gap_s: float
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    if len(t) < 2:
        return t, y
    gaps = np.nonzero(np.diff(t) > gap_s)[0]
    return np.insert(t, gaps + 1, np.nan), np.insert(y, gaps + 1, np.nan)


def _bouts(steps: npt.NDArray[Any], gap_s: float = 1.2) -> list[tuple[float, float, int]]:
    """(start, end, activity) of contiguous bouts; stops are the gaps between them."""
    if len(steps) == 0:
        return []
    t, act = steps["time_s"], steps["activity"]
    out: list[tuple[float, float, int]] = []
    s0 = 0
    for i in range(1, len(steps) + 1):
        if i == len(steps) or act[i] != act[s0] or t[i] - t[i - 1] > gap_s:
            out.append((float(t[s0]), float(t[i - 1]), int(act[s0])))
            s0 = i
    return out


def _shade_activity(ax: Any, bouts: list[tuple[float, float, int]], t_end: float) -> None:
    prev_end = 0.0
    for s, e, a in bouts:
        if s - prev_end > 3.0:
            ax.axvspan(prev_end / 60, s / 60, color="#bbbbbb", alpha=0.35, lw=0)
        if a == Activity.WALKING:
            ax.axvspan(s / 60, e / 60, color="#f2d98c", alpha=0.45, lw=0)
        prev_end = e
    if t_end - prev_end > 3.0:
        ax.axvspan(prev_end / 60, t_end / 60, color="#bbbbbb", alpha=0.35, lw=0)


def _fig_png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


def write_report(
    steps: npt.NDArray[Any],
    events: npt.NDArray[Any] | None,
    alerts: Sequence[Alert | Mapping[str, Any]],
    session_meta: Mapping[str, Any],
    out_dir: str | Path,
    *,
    baseline: Baseline | Mapping[str, Any] | None = None,
    config: AlertConfig | None = None,
) -> Path:
    """Write the post-run report and return the path of the HTML page.

    Args:
        steps: STEP_DTYPE records of the session (sensor clock).
        events: EVENT_DTYPE records (only counted; may be None).
        alerts: :class:`Alert` objects or dicts as stored (``sensor_time_s`` or ``time_s``, ...).
        session_meta: free-form: ``session``, ``runner``, ``start_utc_s``, ``device``, ...;
            ``baseline`` (a :meth:`Baseline.to_dict`) is used if ``baseline`` is not given.
        out_dir: created if needed; gets ``report.html`` and ``report_*.png``.
        baseline: the session baseline (default: recomputed from the steps).
        config: alert configuration the run used (thresholds drawn as the baseline band).
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    steps = np.asarray(steps)
    if steps.dtype != STEP_DTYPE:
        raise InputError("steps", f"must be STEP_DTYPE, got {steps.dtype}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cfg = config or AlertConfig()
    al = _alert_dicts(alerts)

    # pace covariate and (if needed) the baseline from the same engine as the live run
    prior = None
    if baseline is None and isinstance(session_meta.get("baseline"), Mapping):
        baseline = Baseline.from_dict(session_meta["baseline"])
    if isinstance(baseline, Mapping):
        baseline = Baseline.from_dict(baseline)
    eng = AlertEngine(cfg, prior, trace=True)
    eng.update(steps)
    eng.finish()
    b = baseline if baseline is not None else eng.baseline
    trace = eng.trace or []
    pace_t = np.array([r.time_s for r in trace])
    pace = np.array([r.step_time_s for r in trace])
    # steady running (no bout starts / ends) for the median lines: the engine's own transitions
    transition_t = np.array([r.time_s for r in trace if r.transition])

    t = steps["time_s"].astype(np.float64)
    t_end = float(t[-1]) if len(t) else 0.0
    run = steps["activity"] == Activity.RUNNING
    bouts = _bouts(steps, cfg.max_step_gap_s)
    sides = (("left", Side.LEFT, LEFT_COLOUR), ("right", Side.RIGHT, RIGHT_COLOUR))
    images: list[tuple[str, str, bytes]] = []  # (file, caption, png)

    def expected_line(
        metric: str, side: str, scale: float
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]] | None:
        if b is None or len(pace_t) == 0:
            return None
        m = b.model(metric, side)
        if m is None:
            return None
        ex = m.predict(pace, b.ref_step_time_s) * scale
        return _break_gaps(pace_t, _rolling_median(pace_t, ex, 15.0), 5.0)

    # the alert threshold drawn above the expected line: per side for pelvic drop, pooled else
    warn_of = {
        "pelvic_drop_deg": lambda mdl: cfg.pelvic_drop_warn_deg,
        "contact_time_s": lambda mdl: cfg.contact_time_warn_pct / 100 * mdl.intercept,
        "vertical_oscillation_m": lambda mdl: (
            cfg.vertical_oscillation_warn_pct / 100 * mdl.intercept
        ),
    }

    plt.rcParams.update({"font.size": 10, "axes.titlesize": 11})
    for p in PANELS:
        y_all = steps[p.metric].astype(np.float64) * p.scale
        if not np.isfinite(y_all[run]).any():
            continue
        fig, ax = plt.subplots(figsize=(11, 3.6), layout="constrained")
        _shade_activity(ax, bouts, t_end)
        if b is not None and math.isfinite(b.window_start_s):
            ax.axvspan(b.window_start_s / 60, b.window_end_s / 60, color="#9ecae1", alpha=0.3, lw=0)
        per_side = p.metric != "cadence_spm"
        groups = sides if per_side else (("", None, "#444444"),)
        lo_hi: list[float] = []
        for name, code, colour in groups:
            msk = run if code is None else run & (steps["side"] == code)
            ts, ys = t[msk], y_all[msk]
            if ys.size == 0:
                continue
            ax.plot(ts / 60, ys, ".", ms=1.5, color=colour, alpha=0.15, rasterized=True)
            steady = ~np.isin(ts, transition_t)
            med = _rolling_median(ts[steady], ys[steady], 15.0)
            tt, mm = _break_gaps(ts[steady], med, 5.0)
            label = f"{name} stance" if p.metric == "pelvic_drop_deg" else (name or "both sides")
            ax.plot(tt / 60, mm, "-", lw=1.6, color=colour, label=f"{label} (30 s median)")
            q = np.nanpercentile(ys, [1, 99])
            lo_hi += [float(q[0]), float(q[1])]
        if p.metric == "cadence_spm" and b is not None and math.isfinite(b.cadence_spm):
            ax.axhline(b.cadence_spm, color="#333333", ls="--", lw=1.1)
            ax.axhspan(
                1.05 * b.cadence_spm, 1.10 * b.cadence_spm, color="#2ca02c", alpha=0.10, lw=0
            )
            ax.text(
                0.005,
                1.075 * b.cadence_spm,
                " cue target +5-10 %",
                transform=ax.get_yaxis_transform(),
                fontsize=8,
                color="#2ca02c",
                va="center",
            )
            lo_hi.append(1.10 * b.cadence_spm)
        # expected at the current pace (+ alert threshold)
        line_groups = sides if p.metric == "pelvic_drop_deg" else (("", None, "#333333"),)
        for name, _, colour in line_groups:
            ex = expected_line(p.metric, name, p.scale)
            if ex is None or b is None:
                continue
            xt, xv = ex
            ax.plot(xt / 60, xv, "--", lw=1.1, color=colour, alpha=0.95)
            mdl = b.model(p.metric, name)
            if p.metric in warn_of and mdl is not None:
                w = warn_of[p.metric](mdl) * p.scale
                ax.plot(xt / 60, xv + w, ":", lw=1.3, color=colour, alpha=0.95)
                lo_hi.append(float(np.nanmax(xv + w)))
        if lo_hi:
            span = max(lo_hi) - min(lo_hi) + 1e-9
            ax.set_ylim(min(lo_hi) - 0.05 * span, max(lo_hi) + 0.22 * span)
        ylo, yhi = ax.get_ylim()
        last_x, stagger = -math.inf, 0
        for a in al:
            if not p.alert_metrics or a["metric"] not in p.alert_metrics:
                continue
            x = float(a["time_s"]) / 60
            if a["active"]:
                colour = LEVEL_COLOUR.get(str(a["level"]), "#888888")
                ax.axvline(x, color=colour, lw=1.2, alpha=0.9)
                sc = {"left": LEFT_COLOUR, "right": RIGHT_COLOUR}.get(str(a["side"]), "#444444")
                stagger = stagger + 1 if x - last_x < 0.06 * t_end / 60 else 0
                last_x = x
                ytop = yhi - (0.06 + 0.09 * (stagger % 2)) * (yhi - ylo)
                ax.plot([x], [ytop], marker="v", ms=9, color=colour, mec=sc, mew=1.5)
                ax.annotate(
                    _short_label(a),
                    (x, ytop),
                    xytext=(5, -3),
                    textcoords="offset points",
                    fontsize=8,
                    color=sc,
                    va="top",
                )
            else:
                ax.axvline(x, color=LEVEL_COLOUR["info"], lw=1.4, ls=":")
        ax.set_title(f"{p.title} — higher = {p.higher_is}", loc="left")
        ax.set_xlabel("time since start (min)")
        ax.set_ylabel(p.unit)
        ax.set_xlim(0, max(t_end / 60, 1e-3))
        ax.grid(alpha=0.3)
        _legend(
            ax,
            b is not None,
            p.metric in warn_of,
            bool(p.alert_metrics) and any(a["metric"] in p.alert_metrics for a in al),
        )
        fname = f"report_{p.metric}.png"
        images.append((fname, p.title, _fig_png(fig)))
        plt.close(fig)

    steady_run = run & ~np.isin(t, transition_t)
    asym = _asymmetry_figure(plt, steps, t, steady_run, bouts, t_end, b, al)
    if asym is not None:
        images.insert(1, ("report_asymmetry.png", "Left/right asymmetry", asym))

    for fname, _, png in images:
        (out / fname).write_bytes(png)
    page = _html(steps, events, al, session_meta, b, cfg, images, t, run)
    path = out / "report.html"
    path.write_text(page, encoding="utf-8")
    return path


def _short_label(a: Mapping[str, Any]) -> str:
    side = {"left": "L ", "right": "R "}.get(str(a.get("side", "")), "")
    dev = a.get("deviation")
    txt = _dev_text(str(a.get("metric", "")), float(dev)) if isinstance(dev, int | float) else ""
    return f"{side}{txt}".strip()


def _legend(ax: Any, has_baseline: bool, has_threshold: bool, has_alerts: bool) -> None:
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    handles, labels = ax.get_legend_handles_labels()
    if has_baseline:
        handles += [Line2D([], [], ls="--", color="#555555")]
        labels += ["baseline, at the current pace"]
        if has_threshold:
            handles += [Line2D([], [], ls=":", color="#555555", lw=1.3)]
            labels += ["alert threshold"]
        handles += [Patch(color="#9ecae1", alpha=0.5)]
        labels += ["baseline window"]
    handles += [Patch(color="#f2d98c", alpha=0.6), Patch(color="#bbbbbb", alpha=0.6)]
    labels += ["walking", "stopped"]
    if has_alerts:
        handles += [
            Line2D([], [], color=LEVEL_COLOUR["warning"], marker="v", lw=1.2),
            Line2D([], [], color=LEVEL_COLOUR["critical"], marker="v", lw=1.2),
            Line2D([], [], color=LEVEL_COLOUR["info"], ls=":"),
        ]
        labels += ["alert: warning", "alert: critical", "alert cleared"]
    ax.legend(
        handles, labels, loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False
    )


def _asymmetry_figure(
    plt: Any,
    steps: npt.NDArray[Any],
    t: npt.NDArray[np.float64],
    run: npt.NDArray[np.bool_],
    bouts: list[tuple[float, float, int]],
    t_end: float,
    b: Baseline | None,
    al: list[dict[str, Any]],
) -> bytes | None:
    """``run``: the steady running steps (bout starts and ends left out)."""
    lm, rm = run & (steps["side"] == Side.LEFT), run & (steps["side"] == Side.RIGHT)
    if lm.sum() < 10 or rm.sum() < 10:
        return None
    grid = t[run]
    fig, axes = plt.subplots(2, 1, figsize=(11, 5.0), sharex=True, layout="constrained")
    specs = (
        (
            "pelvic_drop_deg",
            "Pelvic drop left − right stance (deg)",
            ("pelvic_drop_asymmetry_deg", "pelvic_drop_deg"),
        ),
        (
            "contact_time_s",
            "Contact-time balance (% left; 50 = even)",
            ("contact_time_balance_pct",),
        ),
    )
    for ax, (metric, title, alert_metrics) in zip(axes, specs, strict=True):
        _shade_activity(ax, bouts, t_end)
        if b is not None and math.isfinite(b.window_start_s):
            ax.axvspan(b.window_start_s / 60, b.window_end_s / 60, color="#9ecae1", alpha=0.3, lw=0)
        lmed = np.interp(
            grid, t[lm], _fill(_rolling_median(t[lm], steps[metric][lm].astype(float), 15.0))
        )
        rmed = np.interp(
            grid, t[rm], _fill(_rolling_median(t[rm], steps[metric][rm].astype(float), 15.0))
        )
        if metric == "pelvic_drop_deg":
            y = lmed - rmed
            base = None
            if b is not None:
                ml, mr = b.model(metric, "left"), b.model(metric, "right")
                if ml is not None and mr is not None:
                    base = ml.intercept - mr.intercept
        else:
            y = 100 * lmed / (lmed + rmed)
            base = None
            if b is not None:
                ml, mr = b.model(metric, "left"), b.model(metric, "right")
                if ml is not None and mr is not None:
                    base = 100 * ml.intercept / (ml.intercept + mr.intercept)
            ax.axhline(50, color="#999999", lw=0.8)
        tt, yy = _break_gaps(grid, y, 5.0)
        ax.plot(tt / 60, yy, color="#444444", lw=1.4, label="30 s median")
        if base is not None:
            ax.axhline(base, color="#444444", ls="--", lw=1.0, label="baseline")
        for a in al:
            if a["metric"] in alert_metrics:
                colour = (
                    LEVEL_COLOUR.get(str(a["level"]), "#888888")
                    if a["active"]
                    else LEVEL_COLOUR["info"]
                )
                ax.axvline(
                    float(a["time_s"]) / 60, color=colour, lw=1.2, ls="-" if a["active"] else ":"
                )
        ax.set_title(title, loc="left")
        ax.grid(alpha=0.3)
        ax.legend(loc="upper left", bbox_to_anchor=(1.005, 1.0), fontsize=8, frameon=False)
    axes[0].text(
        0.995,
        0.04,
        "> 0: more drop in left stance",
        transform=axes[0].transAxes,
        ha="right",
        fontsize=8,
        color="#555555",
    )
    axes[-1].set_xlabel("time since start (min)")
    axes[-1].set_xlim(0, max(t_end / 60, 1e-3))
    png: bytes = _fig_png(fig)
    plt.close(fig)
    return png


def _fill(y: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    ok = np.isfinite(y)
    if not ok.any():
        return y
    idx = np.arange(len(y))
    return np.interp(idx, idx[ok], y[ok])


def _mean(x: npt.NDArray[Any]) -> float:
    x = np.asarray(x, dtype=np.float64)
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def _fmt(v: float, scale: float, digits: int) -> str:
    return "–" if not math.isfinite(v) else f"{v * scale:.{digits}f}"


_TABLE_ROWS = (
    ("pelvic_drop_deg", "Pelvic drop (deg)", 1.0, 1),
    ("contact_time_s", "Contact time (ms)", 1000.0, 0),
    ("flight_time_s", "Flight time (ms)", 1000.0, 0),
    ("cadence_spm", "Cadence (spm)", 1.0, 0),
    ("vertical_oscillation_m", "Vertical oscillation (cm)", 100.0, 1),
    ("pelvic_rotation_deg", "Pelvic rotation (deg)", 1.0, 1),
    ("pelvic_tilt_deg", "Pelvic tilt (deg)", 1.0, 1),
    ("braking_mps2", "Braking (m/s²)", 1.0, 1),
)


def _html(
    steps: npt.NDArray[Any],
    events: npt.NDArray[Any] | None,
    al: list[dict[str, Any]],
    meta: Mapping[str, Any],
    b: Baseline | None,
    cfg: AlertConfig,
    images: list[tuple[str, str, bytes]],
    t: npt.NDArray[np.float64],
    run: npt.NDArray[np.bool_],
) -> str:
    e = html.escape
    session = str(meta.get("session", meta.get("session_id", "session")))
    runner = str(meta.get("runner", ""))
    start = meta.get("start_utc_s")
    start_txt = (
        time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(float(start)))
        if isinstance(start, int | float) and start > 0
        else ""
    )
    dur = float(t[-1]) if len(t) else 0.0
    run_time = _running_time(steps)
    walk_n = int(np.count_nonzero(steps["activity"] == Activity.WALKING))
    n_run = int(run.sum())

    # per-side table: whole run, early (baseline window or first 10 min) vs last 10 min of running
    lm, rm = run & (steps["side"] == Side.LEFT), run & (steps["side"] == Side.RIGHT)
    tr = t[run]
    if b is not None and math.isfinite(b.window_start_s):
        early = (t >= b.window_start_s) & (t <= b.window_end_s)
        early_name = (
            f"baseline window ({format_clock(b.window_start_s)}–{format_clock(b.window_end_s)})"
        )
    else:
        early = t <= (tr[0] + 600 if tr.size else 0)
        early_name = "first 10 min"
    late = t >= (tr[-1] - 600 if tr.size else 0)
    rows = []
    for metric, label, scale, dig in _TABLE_ROWS:
        vl, vr = _mean(steps[metric][lm]), _mean(steps[metric][rm])
        el, er = _mean(steps[metric][lm & early]), _mean(steps[metric][rm & early])
        ll, lr = _mean(steps[metric][lm & late]), _mean(steps[metric][rm & late])
        asym = (
            100 * (vl - vr) / ((vl + vr) / 2)
            if math.isfinite(vl + vr) and vl + vr != 0
            else math.nan
        )
        rows.append(
            f"<tr><td>{e(label)}</td><td>{_fmt(vl, scale, dig)}</td><td>{_fmt(vr, scale, dig)}</td>"
            f"<td>{_fmt(asym, 1, 1)}</td>"
            f"<td>{_fmt(el, scale, dig)} / {_fmt(er, scale, dig)}</td>"
            f"<td>{_fmt(ll, scale, dig)} / {_fmt(lr, scale, dig)}</td>"
            f"<td>{_change(el, ll, scale, dig)} / {_change(er, lr, scale, dig)}</td></tr>"
        )
    active = [a for a in al if a["active"]]
    findings = _findings(steps, al, b, lm, rm, early, late)
    alert_rows = "".join(
        f"<tr><td>{format_clock(float(a['time_s']))}</td><td>{e(str(a['level']))}</td>"
        f"<td>{e(str(a['metric']))}</td><td>{e(str(a['side']) or 'both')}</td>"
        f"<td>{'' if a['active'] else 'cleared: '}{e(str(a['message']))}</td></tr>"
        for a in al
    )
    imgs = "".join(
        f'<figure><img alt="{e(cap)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
        f'<figcaption>{e(cap)} (<a href="{e(fname)}">{e(fname)}</a>)</figcaption></figure>'
        for fname, cap, png in images
    )
    n_events = 0 if events is None else len(events)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1"><title>Running form report {e(session)}</title>
<style>
body{{font-family:system-ui,-apple-system,Segoe UI,sans-serif;max-width:1180px;margin:1.5em auto;padding:0 1em;color:#222}}
table{{border-collapse:collapse;margin:.6em 0}} td,th{{border:1px solid #ccc;padding:.25em .6em;text-align:right}}
td:first-child,th:first-child{{text-align:left}} th{{background:#f3f3f3}}
.alerts td{{text-align:left}} figure{{margin:1em 0}} img{{max-width:100%}} figcaption{{font-size:.85em;color:#555}}
.key{{display:inline-block;width:1em;height:.8em;margin-right:.3em;vertical-align:middle}}
ul.find li{{margin:.25em 0}} .note{{font-size:.85em;color:#555}}
</style></head><body>
<h1>Running form report</h1>
<p><b>Session</b> {e(session)}{f" &nbsp; <b>Runner</b> {e(runner)}" if runner else ""}{f" &nbsp; <b>Start</b> {e(start_txt)}" if start_txt else ""}<br>
<b>Duration</b> {format_clock(dur)} &nbsp; <b>Running</b> {format_clock(run_time)} ({n_run} steps) &nbsp; <b>Walking</b> {walk_n} steps &nbsp; <b>Gait events</b> {n_events}
&nbsp; <b>Alerts</b> {len(active)}</p>
<h2>Summary</h2>
<ul class="find">{"".join(f"<li>{f}</li>" for f in findings)}</ul>
<h2>Per-side averages (running steps)</h2>
<table><tr><th>metric</th><th><span class="key" style="background:{LEFT_COLOUR}"></span>left</th>
<th><span class="key" style="background:{RIGHT_COLOUR}"></span>right</th><th>asymmetry % (L−R)/mean</th>
<th>{e(early_name)} L / R</th><th>last 10 min L / R</th><th>change L / R</th></tr>
{"".join(rows)}</table>
<p class="note">Side = stance foot. Pelvic drop of a left-stance step is the drop of the <i>right</i> (swing-side) hip,
i.e. it reflects the left hip abductors. Contact-time balance = left / (left + right).
"Change" compares raw averages, so it includes pace changes (contact time and cadence follow speed);
the alerts and the dashed baseline lines in the plots are pace-corrected.</p>
<h2>Alerts</h2>
{f'<table class="alerts"><tr><th>time</th><th>level</th><th>metric</th><th>side</th><th>message</th></tr>{alert_rows}</table>' if al else "<p>No alerts: form stayed within the runner's baseline.</p>"}
<h2>Plots</h2>
<p class="note">Dots: single steps; lines: 30 s medians per side; dashed: the runner's baseline at the current pace
(speed-corrected through cadence), dotted: its alert threshold; blue shading: baseline window; yellow: walking;
grey: stopped; triangles: alerts (warning / critical), dotted green: cleared.</p>
{imgs}
<p class="note">Alert thresholds: pelvic drop +{cfg.pelvic_drop_warn_deg:g} deg (critical +{cfg.pelvic_drop_critical_deg:g}),
contact time +{cfg.contact_time_warn_pct:g} %, contact balance ±{cfg.contact_balance_warn_pp:g} points,
vertical oscillation +{cfg.vertical_oscillation_warn_pct:g} %, sustained {cfg.grace_s:g} s.
Baseline: {e(_baseline_text(b))}.</p>
</body></html>
"""


def _change(a: float, b: float, scale: float, digits: int) -> str:
    if not math.isfinite(a + b):
        return "–"
    return f"{(b - a) * scale:+.{digits}f}"


def _running_time(steps: npt.NDArray[Any]) -> float:
    run = steps["activity"] == Activity.RUNNING
    if run.sum() < 2:
        return 0.0
    dt = np.diff(steps["time_s"].astype(np.float64))
    ok = run[:-1] & (dt < 1.2)
    return float(dt[ok].sum())


def _baseline_text(b: Baseline | None) -> str:
    if b is None:
        return "not enough steady running to learn one"
    where = (
        f"{format_clock(b.window_start_s)}–{format_clock(b.window_end_s)} of this run"
        if math.isfinite(b.window_start_s)
        else f"usual of {b.sessions} sessions"
    )
    return f"{b.n_steps} running steps, {where}, cadence {b.cadence_spm:.0f} spm"


def _findings(
    steps: npt.NDArray[Any],
    al: list[dict[str, Any]],
    b: Baseline | None,
    lm: npt.NDArray[np.bool_],
    rm: npt.NDArray[np.bool_],
    early: npt.NDArray[np.bool_],
    late: npt.NDArray[np.bool_],
) -> list[str]:
    e = html.escape
    out: list[str] = []
    dl, dr = _mean(steps["pelvic_drop_deg"][lm]), _mean(steps["pelvic_drop_deg"][rm])
    if math.isfinite(dl + dr):
        more = "left" if dl > dr else "right"
        out.append(
            f"Pelvic drop: left stance {dl:.1f}°, right stance {dr:.1f}° (difference {abs(dl - dr):.1f}°, "
            f"more in {more} stance, i.e. the {'right' if more == 'left' else 'left'} hip drops more)."
        )
        for name, m in (("left", lm), ("right", rm)):
            a0, a1 = (
                _mean(steps["pelvic_drop_deg"][m & early]),
                _mean(steps["pelvic_drop_deg"][m & late]),
            )
            if math.isfinite(a0 + a1) and a1 - a0 >= 0.5:
                out.append(
                    f"Pelvic drop in {name} stance rose {a1 - a0:+.1f}° from the baseline to the last 10 min."
                )
    cl, cr = _mean(steps["contact_time_s"][lm]), _mean(steps["contact_time_s"][rm])
    if math.isfinite(cl + cr) and cl + cr > 0:
        out.append(
            f"Contact time: left {cl * 1000:.0f} ms, right {cr * 1000:.0f} ms (balance {100 * cl / (cl + cr):.1f} % left)."
        )
    active = [a for a in al if a["active"]]
    if not active:
        out.append("No sustained change from the runner's baseline: no sign of form breaking down.")
        return out
    first: dict[tuple[str, str], dict[str, Any]] = {}
    for a in active:
        first.setdefault((str(a["metric"]), str(a["side"])), a)
    for (metric, side), a in first.items():
        since = a.get("since_s")
        since_txt = (
            format_clock(float(since))
            if isinstance(since, int | float) and math.isfinite(since)
            else "?"
        )
        worst = max(
            (x for x in active if x["metric"] == metric and x["side"] == side),
            key=lambda x: abs(float(x.get("deviation", 0.0) or 0.0)),
        )
        cleared = [
            x
            for x in al
            if not x["active"]
            and x["metric"] == metric
            and x["side"] == side
            and float(x["time_s"]) > float(a["time_s"])
        ]
        end = (
            f", recovered at {format_clock(float(cleared[0]['time_s']))}"
            if cleared
            else ", still present at the end"
        )
        out.append(
            e(
                f"Form broke down: {_METRIC_NAMES.get(metric, metric)}"
                f"{(' (' + side + (' stance' if metric == 'pelvic_drop_deg' else '') + ')') if side else ''} "
                f"changing from {since_txt}, "
                f"alert at {format_clock(float(a['time_s']))} ({a['level']}), largest deviation "
                f"{_dev_text(metric, float(worst.get('deviation', math.nan) or math.nan))}{end}."
            )
        )
    return out


_METRIC_NAMES = {
    "pelvic_drop_deg": "pelvic drop",
    "pelvic_drop_asymmetry_deg": "pelvic drop asymmetry",
    "contact_time_s": "ground contact time",
    "contact_time_balance_pct": "contact-time balance",
    "vertical_oscillation_m": "vertical oscillation",
    "cadence_spm": "cadence",
}


def _dev_text(metric: str, dev: float) -> str:
    if not math.isfinite(dev):
        return "?"
    if metric == "contact_time_s":
        return f"{dev * 1000:+.0f} ms"
    if metric == "vertical_oscillation_m":
        return f"{dev * 100:+.1f} cm"
    if metric == "contact_time_balance_pct":
        return f"{dev:+.1f} points"
    if metric == "cadence_spm":
        return f"{dev:+.0f} spm"
    return f"{dev:+.1f}°"
