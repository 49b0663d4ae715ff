"""Result files of ``imu analyze`` / ``imu replay`` / ``imu simulate``: the public output contract.

``events.csv``, ``steps.csv``, ``alerts.csv`` and ``summary.json`` in one directory. Formatting is fixed
(so the same input gives byte-identical files); a metric that cannot be computed is an empty cell.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from dsp.types import EVENT_NAMES, SIDE_NAMES, STEP_METRICS, STEPS_CSV_COLUMNS, EventKind, Side

#: decimals per steps.csv column
_STEP_FORMAT = {
    "time_s": 4,
    "cadence_spm": 2,
    "contact_time_s": 4,
    "flight_time_s": 4,
    "vertical_oscillation_m": 4,
    "pelvic_drop_deg": 2,
    "pelvic_rotation_deg": 2,
    "pelvic_tilt_deg": 2,
}

ALERTS_CSV_COLUMNS = ("time_s", "metric", "level", "message")


def _fmt(value: float, decimals: int) -> str:
    if value is None or not math.isfinite(value):
        return ""
    text = f"{value:.{decimals}f}"
    return "0." + "0" * decimals if text == "-0." + "0" * decimals else text


# Whole-table formatting: every numeric cell is "%.<d>f" % value, then the two cases of _fmt that
# differ from plain formatting are fixed on the text: a non-finite value is an empty cell and a
# negative zero ("-0.00") is written without its sign.
_NONFINITE_CELL = re.compile(r"(?m)(^|,)(?:nan|-?inf)(?=,|$)")
_NEG_ZERO_CELL = re.compile(r"(?m)(^|,)-(0\.0+)(?=,|$)")
_SIDE_BY_CODE = {int(k): v for k, v in SIDE_NAMES.items()}
_EVENT_BY_CODE = {int(k): v for k, v in EVENT_NAMES.items()}


def _names(codes: npt.NDArray[Any], by_code: dict[int, str], enum: Any, names: Any) -> list[str]:
    """Names of integer codes; an unknown code raises as ``names[enum(code)]`` would."""
    return [by_code[c] if c in by_code else names[enum(c)] for c in codes.tolist()]


def _write_table(path: Path, header: str, template: str, columns: list[list[Any]]) -> None:
    """``header`` and one ``template % row`` line per row, cells fixed as by :func:`_fmt`."""
    text = "\n".join([header] + [template % row for row in zip(*columns, strict=True)]) + "\n"
    if "nan" in text or "inf" in text:
        text = _NONFINITE_CELL.sub(r"\1", text)
    if "-0." in text:
        text = _NEG_ZERO_CELL.sub(r"\1\2", text)
    path.write_text(text, encoding="utf-8")


def write_events_csv(path: Path, events: npt.NDArray[Any]) -> None:
    columns = [
        np.asarray(events["time_s"], dtype=np.float64).tolist(),
        _names(events["kind"], _EVENT_BY_CODE, EventKind, EVENT_NAMES),
        _names(events["side"], _SIDE_BY_CODE, Side, SIDE_NAMES),
    ]
    _write_table(path, "time_s,event,side", "%.4f,%s,%s", columns)


def write_steps_csv(path: Path, steps: npt.NDArray[Any]) -> None:
    columns: list[list[Any]] = []
    cells: list[str] = []
    for col in STEPS_CSV_COLUMNS:
        if col == "side":
            columns.append(_names(steps["side"], _SIDE_BY_CODE, Side, SIDE_NAMES))
            cells.append("%s")
        else:
            columns.append(np.asarray(steps[col], dtype=np.float64).tolist())
            cells.append(f"%.{_STEP_FORMAT[col]}f")
    _write_table(path, ",".join(STEPS_CSV_COLUMNS), ",".join(cells), columns)


def _csv_text(value: str) -> str:
    if any(c in value for c in ',"\n'):
        return '"' + value.replace('"', '""') + '"'
    return value


def write_alerts_csv(path: Path, alerts: Iterable[Any]) -> None:
    """``alerts`` are :class:`imu.alerts.Alert` objects (time_s, metric, level, message)."""
    lines = [",".join(ALERTS_CSV_COLUMNS)]
    lines += [
        f"{_fmt(float(a.time_s), 4)},{_csv_text(a.metric)},{_csv_text(a.level)},{_csv_text(a.message)}"
        for a in alerts
    ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _nanmean(values: npt.NDArray[np.float64]) -> float | None:
    finite = values[np.isfinite(values)]
    return round(float(finite.mean()), 6) if finite.size else None


def summarize(steps: npt.NDArray[Any], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Per-side averages and counts plus left/right asymmetry of each metric.

    Asymmetry (%) = 100 * (left - right) / mean(left, right); positive = left larger.
    """
    summary: dict[str, Any] = {"steps": len(steps)}
    per_side: dict[str, dict[str, Any]] = {}
    for side in (Side.LEFT, Side.RIGHT, Side.UNKNOWN):
        sel = steps[steps["side"] == side]
        entry: dict[str, Any] = {"steps": len(sel)}
        for m in STEP_METRICS:
            entry[m] = _nanmean(sel[m]) if len(sel) else None
        per_side[SIDE_NAMES[side]] = entry
    summary["per_side"] = per_side
    overall: dict[str, Any] = {}
    for m in STEP_METRICS:
        overall[m] = _nanmean(steps[m]) if len(steps) else None
    summary["overall"] = overall
    asym: dict[str, float | None] = {}
    for m in STEP_METRICS:
        left, right = per_side["left"][m], per_side["right"][m]
        if left is None or right is None or (left + right) == 0:
            asym[m] = None
        else:
            asym[m] = round(100.0 * (left - right) / (0.5 * (left + right)), 3)
    summary["asymmetry_pct"] = asym
    if extra:
        summary.update(extra)
    return summary


def write_summary_json(path: Path, summary: Mapping[str, Any]) -> None:
    path.write_text(
        json.dumps(summary, indent=2, sort_keys=True, default=_json_default) + "\n",
        encoding="utf-8",
    )


def _json_default(obj: Any) -> Any:
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return None if not math.isfinite(float(obj)) else float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def write_outputs(
    out_dir: str | Path,
    events: npt.NDArray[Any],
    steps: npt.NDArray[Any],
    alerts: Iterable[Any],
    summary: Mapping[str, Any],
) -> Path:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    write_events_csv(out / "events.csv", events)
    write_steps_csv(out / "steps.csv", steps)
    write_alerts_csv(out / "alerts.csv", alerts)
    write_summary_json(out / "summary.json", summary)
    return out


def json_safe(obj: Any) -> Any:
    """Metadata -> JSON-safe values (numpy arrays and scalars, dataclasses, nested containers)."""
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [json_safe(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "__dataclass_fields__"):
        return json_safe({k: getattr(obj, k) for k in obj.__dataclass_fields__})
    return str(obj)
