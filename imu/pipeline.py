"""The one pipeline every source goes through: packets or samples -> DSP -> alerts -> sinks.

Sources (simulator, recording, CSV, and later BLE and MQTT) only differ in how they call
:meth:`Pipeline.feed_packets` or :meth:`Pipeline.feed_samples`; the results do not depend on how
the input is chunked, so a replay gives exactly what the live session gave.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from dsp.analyzer import AnalyzerOutput, GaitAnalyzer
from dsp.types import (
    ACTIVITY_NAMES,
    EVENT_DTYPE,
    EVENT_NAMES,
    SIDE_NAMES,
    STEP_DTYPE,
    STEP_METRICS,
    Activity,
    EventKind,
    Side,
)
from firmware_interface.decoder import PacketDecoder
from imu.alerts import Alert, AlertConfig, AlertEngine
from imu.baseline import Baseline
from imu.outputs import json_safe, summarize
from storage.records import Record, Sink
from storage.schema import (
    MEASUREMENT_ALERTS,
    MEASUREMENT_EVENTS,
    MEASUREMENT_SESSIONS,
    MEASUREMENT_STEPS,
)

log = logging.getLogger(__name__)

StepCallback = Callable[[npt.NDArray[Any]], None]
AlertCallback = Callable[[list[Alert]], None]


@dataclass(slots=True)
class SessionInfo:
    """Who and what a session is.

    ``start_utc_s`` is the UTC time of session time 0 (the first sample); a session time t maps to
    ``start_utc_s + t * (1 + clock_drift_ppm * 1e-6)`` (the sensor clock's rate error, from clock
    sync), so results carry sensor-clock times mapped to UTC, never packet arrival times.
    """

    session_id: str
    runner: str = "runner"
    device: str = "unknown"
    source: str = "unknown"
    start_utc_s: float = 0.0
    clock_drift_ppm: float = 0.0
    metadata: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class PipelineResult:
    events: npt.NDArray[Any]
    steps: npt.NDArray[Any]
    alerts: list[Alert]
    summary: dict[str, Any]


class Pipeline:
    """Source-independent processing of one session.

    Args:
        info: session identity; written with every record as tags.
        sinks: where records go (embedded store, InfluxDB, ...). Each gets every record.
        has_gyro: False for accelerometer-only input (no side, no angles).
        time_origin_s: sensor time that becomes session time 0. ``None``: the first sample's time
            (packet sources); CSV input passes 0 to keep the file's own time base.
        alert_config: thresholds of the alert engine; default :class:`AlertConfig`.
        baseline: the runner's stored baseline, if any.
        on_steps / on_alerts: called with every new batch (live display, MQTT publisher).
    """

    def __init__(
        self,
        info: SessionInfo,
        sinks: Sequence[Sink] = (),
        *,
        has_gyro: bool = True,
        time_origin_s: float | None = None,
        alert_config: AlertConfig | None = None,
        baseline: Baseline | None = None,
        on_steps: StepCallback | None = None,
        on_alerts: AlertCallback | None = None,
    ) -> None:
        self.info = info
        self.sinks = list(sinks)
        self.has_gyro = has_gyro
        self.decoder = PacketDecoder()
        self.analyzer = GaitAnalyzer(has_gyro=has_gyro)
        self.alert_engine = AlertEngine(
            alert_config or AlertConfig(),
            baseline=baseline,
            runner=info.runner,
            session=info.session_id,
        )
        self._origin_s = time_origin_s
        self._on_steps = on_steps
        self._on_alerts = on_alerts
        self._events: list[npt.NDArray[Any]] = []
        self._steps: list[npt.NDArray[Any]] = []
        self._alerts: list[Alert] = []
        self._samples = 0
        self._last_t_s = 0.0
        self._closed = False
        # tags of step / event records by (side, activity) / (side, kind) code: shared, read-only
        self._step_tags: dict[tuple[int, int], dict[str, str]] = {}
        self._event_tags: dict[tuple[int, int], dict[str, str]] = {}
        self._write([self._session_record(final=False)])

    # --- input -------------------------------------------------------------------------
    def feed_packets(self, packets: Sequence[bytes]) -> None:
        """Decode wire packets (any batch size) and process their samples."""
        decoded = self.decoder.decode(packets)
        if decoded.t_s.size:
            self.feed_samples(
                decoded.t_s, decoded.acc_mps2, decoded.gyr_dps if self.has_gyro else None
            )

    def feed_samples(
        self,
        t_s: npt.NDArray[np.float64],
        acc_mps2: npt.NDArray[np.float64],
        gyr_dps: npt.NDArray[np.float64] | None,
    ) -> None:
        """Process samples on the sensor clock (seconds), sensor frame, m/s^2 and deg/s."""
        if len(t_s) == 0:
            return
        if self._origin_s is None:
            self._origin_s = float(t_s[0])
        t_rel = np.asarray(t_s, dtype=np.float64) - self._origin_s
        self._samples += len(t_rel)
        self._last_t_s = float(t_rel[-1])
        self._handle(self.analyzer.push(t_rel, acc_mps2, gyr_dps if self.has_gyro else None))

    def close(self) -> PipelineResult:
        """Flush the DSP and the alert engine, write the session summary, close nothing else.

        Sinks are owned by the caller (they may outlive one session); they are not closed here.
        """
        if not self._closed:
            self._handle(self.analyzer.flush())
            self._emit_alerts(self.alert_engine.finish())
            self._closed = True
            self._write([self._session_record(final=True)])
        return self.result()

    # --- results -----------------------------------------------------------------------
    @property
    def steps(self) -> npt.NDArray[Any]:
        return np.concatenate(self._steps) if self._steps else np.zeros(0, STEP_DTYPE)

    @property
    def events(self) -> npt.NDArray[Any]:
        return np.concatenate(self._events) if self._events else np.zeros(0, EVENT_DTYPE)

    @property
    def learned_baseline(self) -> Baseline | None:
        """The baseline this session learned (to be saved as the runner's usual), if any."""
        return self.alert_engine.baseline

    @property
    def alerts(self) -> list[Alert]:
        return list(self._alerts)

    def stats(self) -> dict[str, Any]:
        st = self.decoder.stats
        return {
            "packets_received": int(st.received),
            "packets_decoded": int(st.decoded),
            "packets_lost": int(st.lost),
            "packets_corrupt": int(st.corrupt),
            "packets_duplicate": int(st.duplicates),
            "packets_reordered": int(st.reordered),
            "packets_unknown_version": int(st.unknown_version),
            "sensor_restarts": int(st.restarts),
            "samples": int(self._samples),
        }

    def result(self) -> PipelineResult:
        steps = self.steps
        extra: dict[str, Any] = {
            "session": self.info.session_id,
            "runner": self.info.runner,
            "device": self.info.device,
            "source": self.info.source,
            "duration_s": round(self._last_t_s, 3),
            "alerts": len([a for a in self._alerts if a.active]),
            "decoder": self.stats(),
            "dsp": json_safe(self.analyzer.info),
            "activity_steps": {
                ACTIVITY_NAMES[a]: int(np.count_nonzero(steps["activity"] == a)) for a in Activity
            },
        }
        return PipelineResult(self.events, steps, self.alerts, summarize(steps, extra))

    # --- internals ---------------------------------------------------------------------
    def _handle(self, out: AnalyzerOutput) -> None:
        records: list[Record] = []
        if len(out.events):
            self._events.append(out.events)
            if self.sinks:
                records += self._event_records(out.events)
        if len(out.steps):
            self._steps.append(out.steps)
            if self.sinks:
                records += self._step_records(out.steps)
        if records:
            self._write(records)
        if len(out.steps):
            if self._on_steps is not None:
                self._on_steps(out.steps)
            self._emit_alerts(self.alert_engine.update(out.steps))

    def _emit_alerts(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        self._alerts.extend(alerts)
        self._write([self._alert_record(a) for a in alerts])
        if self._on_alerts is not None:
            self._on_alerts(alerts)

    def _write(self, records: list[Record]) -> None:
        for sink in self.sinks:
            sink.write(records)

    def _time_ns(self, t_s: float) -> int:
        return round((self.info.start_utc_s + t_s * (1.0 + self.info.clock_drift_ppm * 1e-6)) * 1e9)

    def _tags(self, **extra: str) -> dict[str, str]:
        tags = {
            "runner": self.info.runner,
            "session": self.info.session_id,
            "device": self.info.device,
        }
        tags.update(extra)
        return tags

    def _times_ns(self, t_s: npt.NDArray[np.float64]) -> list[int]:
        """:meth:`_time_ns` of many times (same float operations, same rounding)."""
        scale = 1.0 + self.info.clock_drift_ppm * 1e-6
        x = (self.info.start_utc_s + t_s * scale) * 1e9
        if x.size == 0:
            return []
        if not (np.isfinite(x).all() and np.abs(x).max() < 2.0**62):
            return [self._time_ns(t) for t in t_s.tolist()]
        times: list[int] = np.rint(x).astype(np.int64).tolist()
        return times

    def _step_records(self, steps: npt.NDArray[Any]) -> list[Record]:
        """``steps`` records: tags + side/activity, fields sensor_time_s + the finite metrics."""
        t_s = np.asarray(steps["time_s"], dtype=np.float64)
        cols = np.stack([t_s] + [steps[m].astype(np.float64) for m in STEP_METRICS], axis=1)
        cache = self._step_tags
        isfinite = math.isfinite
        out = []
        for time_ns, side, act, row in zip(
            self._times_ns(t_s),
            steps["side"].tolist(),
            steps["activity"].tolist(),
            cols.tolist(),
            strict=True,
        ):
            tags = cache.get((side, act))
            if tags is None:
                tags = cache[side, act] = self._tags(
                    side=SIDE_NAMES[Side(side)], activity=ACTIVITY_NAMES[Activity(act)]
                )
            fields: dict[str, float | int | str | bool] = {"sensor_time_s": row[0]}
            for m, v in zip(STEP_METRICS, row[1:], strict=True):
                if isfinite(v):
                    fields[m] = v
            out.append(Record(MEASUREMENT_STEPS, time_ns, tags, fields))
        return out

    def _event_records(self, events: npt.NDArray[Any]) -> list[Record]:
        """``events`` records: tags + side/event, field sensor_time_s."""
        t_s = np.asarray(events["time_s"], dtype=np.float64)
        cache = self._event_tags
        out = []
        for time_ns, t, side, kind in zip(
            self._times_ns(t_s),
            t_s.tolist(),
            events["side"].tolist(),
            events["kind"].tolist(),
            strict=True,
        ):
            tags = cache.get((side, kind))
            if tags is None:
                tags = cache[side, kind] = self._tags(
                    side=SIDE_NAMES[Side(side)], event=EVENT_NAMES[EventKind(kind)]
                )
            out.append(Record(MEASUREMENT_EVENTS, time_ns, tags, {"sensor_time_s": t}))
        return out

    def _alert_record(self, a: Alert) -> Record:
        fields: dict[str, float | int | str | bool] = {
            "sensor_time_s": float(a.time_s),
            "active": bool(a.active),
            "message": a.message,
        }
        for name in ("value", "baseline", "deviation", "since_s"):
            v = getattr(a, name)
            if v is not None and np.isfinite(v):
                fields[name] = float(v)
        return Record(
            MEASUREMENT_ALERTS,
            self._time_ns(float(a.time_s)),
            self._tags(side=a.side or "both", metric=a.metric, level=a.level),
            fields,
        )

    def _session_record(self, *, final: bool) -> Record:
        fields: dict[str, float | int | str | bool] = {"start_utc_s": float(self.info.start_utc_s)}
        if final:
            st = self.stats()
            fields.update(
                {
                    "duration_s": float(self._last_t_s),
                    "steps": int(sum(len(s) for s in self._steps)),
                    "packets_received": st["packets_received"],
                    "packets_lost": st["packets_lost"],
                    "packets_corrupt": st["packets_corrupt"],
                }
            )
            conf = self.analyzer.info.get("alignment_confidence")
            if isinstance(conf, (int, float)) and np.isfinite(conf):
                fields["alignment_confidence"] = float(conf)
            rate = self.analyzer.info.get("sample_rate_hz")
            if isinstance(rate, (int, float)) and np.isfinite(rate):
                fields["sample_rate_hz"] = float(rate)
        return Record(
            MEASUREMENT_SESSIONS,
            round(self.info.start_utc_s * 1e9),
            {
                "runner": self.info.runner,
                "session": self.info.session_id,
                "device": self.info.device,
                "source": self.info.source,
            },
            fields,
        )
