"""A runner's training history from either store (embedded SQLite or InfluxDB 1.x via InfluxQL).

:func:`runner_history` returns plain data (JSON-serialisable) for ``imu history``::

    {
      "runner": "ana",
      "sessions": [   # oldest first
        {"session", "start_utc" (ISO 8601), "start_utc_s", "week" ("2026-W47"),
         "duration_s", "distance_m", "steps", "averages": {metric: mean or None}}, ...],
      "weeks": [      # every ISO week (UTC, Monday first) from the first session's to the last's
        {"week", "week_start" (date), "sessions", "duration_s", "distance_m", "steps",
         "change_pct": {"duration_s", "distance_m", "steps"}  # vs the previous week; None if it was 0
        }, ...],
      "totals": {"sessions", "duration_s", "distance_m", "steps",
                 "averages": {metric: step-weighted mean over sessions}},
    }

``duration_s``/``steps`` come from the ``sessions`` record, or from the steps when it lacks them
(a crashed session); ``distance_m`` only from the ``sessions`` record (None when unknown; counted as
0 in the weekly sums).
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from dsp.types import STEP_METRICS
from storage.embedded import EmbeddedStore
from storage.influx import InfluxQLClient

__all__ = ["runner_history"]

_VOLUME = ("duration_s", "distance_m", "steps")


def runner_history(store: EmbeddedStore | InfluxQLClient, runner: str) -> dict[str, Any]:
    """Per-session distance/time/steps/metric averages, weekly volume and week-over-week change.

    Args:
        store: an :class:`~storage.embedded.EmbeddedStore` or an
            :class:`~storage.influx.InfluxQLClient` (InfluxDB 1.x, or 2.x/3.x with a DBRP mapping).
        runner: the ``runner`` tag.
    """
    if isinstance(store, EmbeddedStore):
        sessions = _embedded_sessions(store, runner)
    else:
        sessions = _influx_sessions(store, runner)
    sessions.sort(key=lambda s: (s["start_utc_s"], s["session"]))
    for s in sessions:
        start = dt.datetime.fromtimestamp(s["start_utc_s"], tz=dt.UTC)
        s["start_utc"] = start.isoformat().replace("+00:00", "Z")
        year, week, _ = start.isocalendar()
        s["week"] = f"{year}-W{week:02d}"
    return {
        "runner": runner,
        "sessions": sessions,
        "weeks": _weeks(sessions),
        "totals": _totals(sessions),
    }


def _session_dict(
    session: str,
    start_utc_s: float,
    duration_s: float | None,
    distance_m: float | None,
    steps: int | None,
    averages: dict[str, float | None],
) -> dict[str, Any]:
    return {
        "session": session,
        "start_utc_s": start_utc_s,
        "duration_s": duration_s,
        "distance_m": distance_m,
        "steps": steps,
        "averages": {m: averages.get(m) for m in STEP_METRICS},
    }


def _embedded_sessions(store: EmbeddedStore, runner: str) -> list[dict[str, Any]]:
    averages = store.step_averages(runner)
    out = []
    for s in store.list_sessions(runner):
        steps = s.get("steps")
        out.append(
            _session_dict(
                s["session"],
                s["start_utc_s"] if s.get("start_utc_s") is not None else s["time_ns"] / 1e9,
                s.get("duration_s"),
                s.get("distance_m"),
                steps if steps is not None else s.get("step_count"),
                averages.get(s["session"], {}),
            )
        )
    return out


def _quote(value: str) -> str:
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


def _influx_sessions(client: InfluxQLClient, runner: str) -> list[dict[str, Any]]:
    r = _quote(runner)
    merged: dict[str, dict[str, Any]] = {}
    for row in client.rows(f"SELECT * FROM sessions WHERE runner = {r}"):
        cur = merged.setdefault(row["session"], {"time": row["time"]})
        cur.update({k: v for k, v in row.items() if v is not None and k != "time"})
    means = ", ".join(f'mean("{m}") AS "{m}"' for m in STEP_METRICS)
    step_rows = client.rows(
        f'SELECT count("sensor_time_s") AS n, min("sensor_time_s") AS s0, '
        f'max("sensor_time_s") AS s1, {means} FROM steps WHERE runner = {r} GROUP BY session'
    )
    first = {
        row["session"]: row["time"]
        for row in client.rows(
            f'SELECT first("sensor_time_s") FROM steps WHERE runner = {r} GROUP BY session'
        )
    }
    stepinfo = {row["session"]: row for row in step_rows}
    out = []
    for name in sorted(set(merged) | set(stepinfo)):
        sess = merged.get(name, {})
        st = stepinfo.get(name, {})
        start = sess.get("start_utc_s")
        if start is None:
            start = (sess.get("time") or first.get(name) or 0) / 1e9
        duration = sess.get("duration_s")
        if duration is None and st.get("s0") is not None and st.get("s1") is not None:
            duration = st["s1"] - st["s0"]
        steps = sess.get("steps")
        if steps is None:
            steps = st.get("n", 0)
        out.append(
            _session_dict(
                name,
                float(start),
                duration,
                sess.get("distance_m"),
                int(steps),
                {m: st.get(m) for m in STEP_METRICS},
            )
        )
    return out


def _monday(d: dt.date) -> dt.date:
    return d - dt.timedelta(days=d.weekday())


def _weeks(sessions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    if not sessions:
        return []
    by_week: dict[dt.date, dict[str, Any]] = {}
    for s in sessions:
        monday = _monday(dt.datetime.fromtimestamp(s["start_utc_s"], tz=dt.UTC).date())
        w = by_week.setdefault(monday, {"sessions": 0, **dict.fromkeys(_VOLUME, 0.0)})
        w["sessions"] += 1
        for k in _VOLUME:
            w[k] += s[k] or 0
    first, last = min(by_week), max(by_week)
    out: list[dict[str, Any]] = []
    prev: dict[str, Any] | None = None
    day = first
    while day <= last:
        w = by_week.get(day, {"sessions": 0, **dict.fromkeys(_VOLUME, 0.0)})
        year, week, _ = day.isocalendar()
        row: dict[str, Any] = {
            "week": f"{year}-W{week:02d}",
            "week_start": day.isoformat(),
            "sessions": w["sessions"],
            "duration_s": float(w["duration_s"]),
            "distance_m": float(w["distance_m"]),
            "steps": int(w["steps"]),
            "change_pct": {
                k: (
                    None
                    if prev is None or not prev[k]
                    else round(100.0 * (w[k] - prev[k]) / prev[k], 1)
                )
                for k in _VOLUME
            },
        }
        out.append(row)
        prev = row
        day += dt.timedelta(days=7)
    return out


def _totals(sessions: list[dict[str, Any]]) -> dict[str, Any]:
    averages: dict[str, float | None] = {}
    for m in STEP_METRICS:
        num = den = 0.0
        for s in sessions:
            v = s["averages"].get(m)
            n = s["steps"] or 0
            if v is not None and n:
                num += v * n
                den += n
        averages[m] = num / den if den else None
    return {
        "sessions": len(sessions),
        "duration_s": float(sum(s["duration_s"] or 0 for s in sessions)),
        "distance_m": float(sum(s["distance_m"] or 0 for s in sessions)),
        "steps": int(sum(s["steps"] or 0 for s in sessions)),
        "averages": averages,
    }
