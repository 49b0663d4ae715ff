"""Sessions from each source, all through :class:`imu.pipeline.Pipeline`.

* :func:`simulate_session`: simulated runner -> wire packets, processed as they "arrive"
  (optionally recorded);
* :func:`replay_session`: a recording, as fast as possible or paced as recorded;
* :func:`analyze_csv`: a CSV file from another tool.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import nullcontext
from pathlib import Path
from typing import Any

from rich.progress import Progress

from imu.baseline import Baseline, BaselineStore
from imu.csv_input import AccUnit, GyrUnit, read_csv
from imu.outputs import json_safe, write_outputs, write_steps_csv
from imu.pipeline import Pipeline, PipelineResult, SessionInfo
from storage.records import Sink

#: packets handed to the pipeline per call in a replay (any value gives the same results)
REPLAY_BATCH_PACKETS = 256
#: a live source hands over what arrived in this much host time
LIVE_BATCH_S = 0.1


def _sinks(sink: Sink | None) -> list[Sink]:
    return [sink] if sink is not None else []


def _finish(
    pipeline: Pipeline, out_dir: str | Path | None, baselines: BaselineStore | None = None
) -> PipelineResult:
    """Close the pipeline, write the result files, save what the session learned of the runner."""
    res = pipeline.close()
    if out_dir is not None:
        write_outputs(out_dir, res.events, res.steps, res.alerts, res.summary)
    learned = pipeline.learned_baseline
    if baselines is not None and learned is not None:
        baselines.save(learned, runner=pipeline.info.runner)
    return res


def _baselines(sink: Sink | None) -> BaselineStore | None:
    """A runner's usual values are kept only when results are kept (not with --no-store)."""
    return BaselineStore() if sink is not None else None


def simulate_session(
    *,
    minutes: float,
    seed: int,
    runner: str = "sim-runner",
    rate_hz: int = 200,
    record_path: str | Path | None = None,
    sink: Sink | None = None,
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> PipelineResult:
    """Simulate a run and process its packets in arrival order, as a live session would."""
    from firmware_interface.recording import RecordingWriter
    from simulators import simulate_run
    from simulators.sensor import SensorConfig

    run = simulate_run(minutes, seed, sensor=SensorConfig(sample_rate_hz=rate_hz, seed=seed))
    start_utc_s = time.time()
    info = SessionInfo(
        session_id=f"sim-{seed}-{uuid.uuid4().hex[:8]}",
        runner=runner,
        device="simulated-sacrum-imu",
        source="simulator",
        start_utc_s=start_utc_s,
        metadata={"seed": seed, "minutes": minutes, "sample_rate_hz": rate_hz},
    )
    baselines = _baselines(sink)
    baseline = baselines.load(runner) if baselines is not None else None
    pipeline = Pipeline(info, _sinks(sink), baseline=baseline)
    packets = run.packets
    writer = None
    if record_path is not None:
        meta = _recording_metadata(info, run.metadata)
        meta["baseline"] = baseline.to_dict() if baseline is not None else None
        writer = RecordingWriter(str(record_path), meta)
    try:
        task = progress.add_task("simulating", total=len(packets)) if progress else None
        with progress or nullcontext():
            for batch in _batches_by_time(packets, LIVE_BATCH_S):
                if writer is not None:
                    for rx_s, payload in batch:
                        writer.write_packet(start_utc_s + rx_s, payload)
                pipeline.feed_packets([p for _, p in batch])
                if progress is not None and task is not None:
                    progress.advance(task, len(batch))
    finally:
        if writer is not None:
            writer.close()
    res = _finish(pipeline, out_dir, baselines)
    if out_dir is not None:
        write_steps_csv(Path(out_dir) / "truth_steps.csv", run.truth_steps)
    return res


def replay_session(
    path: str | Path,
    *,
    out_dir: str | Path | None = None,
    realtime: bool = False,
    sink: Sink | None = None,
    progress: Progress | None = None,
    warn: Callable[[str], None] | None = None,
) -> PipelineResult:
    """Process a recording exactly as it was processed live."""
    from firmware_interface.recording import RecordingReader

    reader = RecordingReader(str(path))
    rx_times, payloads = reader.packets()
    if reader.truncated and warn is not None:
        warn(f"{path}: recording is cut off; processing its {len(payloads)} complete packets")
    meta = dict(reader.metadata)
    for _rx, event in reader.events():  # a live session records its clock mapping as an event
        if event.get("type") == "session":
            meta.update({k: v for k, v in event.items() if k in ("start_utc_s", "clock_drift_ppm")})
    info = SessionInfo(
        session_id=str(meta.get("session", Path(path).stem)),
        runner=str(meta.get("runner", "runner")),
        device=str(meta.get("device", "unknown")),
        source="replay",
        start_utc_s=float(meta.get("start_utc_s", rx_times[0] if len(rx_times) else 0.0)),
        clock_drift_ppm=float(meta.get("clock_drift_ppm", 0.0)),
        metadata=meta,
    )
    # the baseline the live session started from, so that replay gives the same alerts
    recorded = meta.get("baseline")
    baseline = Baseline.from_dict(recorded) if isinstance(recorded, dict) else None
    pipeline = Pipeline(info, _sinks(sink), baseline=baseline)
    task = progress.add_task("replaying", total=len(payloads)) if progress else None
    with progress or nullcontext():
        if realtime:
            t_wall0 = time.monotonic()
            rx0 = float(rx_times[0]) if len(rx_times) else 0.0
            for i, payload in enumerate(payloads):
                delay = (float(rx_times[i]) - rx0) - (time.monotonic() - t_wall0)
                if delay > 0:
                    time.sleep(delay)
                pipeline.feed_packets([payload])
                if progress is not None and task is not None:
                    progress.advance(task, 1)
        else:
            for i in range(0, len(payloads), REPLAY_BATCH_PACKETS):
                chunk = payloads[i : i + REPLAY_BATCH_PACKETS]
                pipeline.feed_packets(chunk)
                if progress is not None and task is not None:
                    progress.advance(task, len(chunk))
    return _finish(pipeline, out_dir)


def analyze_csv(
    path: str | Path,
    *,
    out_dir: str | Path | None = None,
    acc_unit: AccUnit = "mps2",
    gyr_unit: GyrUnit = "dps",
    runner: str = "runner",
    sink: Sink | None = None,
) -> PipelineResult:
    """Analyse a CSV recording (public contract of ``imu analyze``)."""
    rec = read_csv(path, acc_unit=acc_unit, gyr_unit=gyr_unit)
    info = SessionInfo(
        session_id=f"csv-{Path(path).stem}-{uuid.uuid4().hex[:8]}",
        runner=runner,
        device="csv",
        source=f"csv:{Path(path).name}",
        start_utc_s=time.time(),
        metadata={"file": str(path), "sample_rate_hz": rec.sample_rate_hz},
    )
    baselines = _baselines(sink)
    pipeline = Pipeline(
        info,
        _sinks(sink),
        has_gyro=rec.gyr_dps is not None,
        time_origin_s=0.0,
        baseline=baselines.load(runner) if baselines is not None else None,
    )
    pipeline.feed_samples(rec.t_s, rec.acc_mps2, rec.gyr_dps)
    return _finish(pipeline, out_dir, baselines)


def _recording_metadata(info: SessionInfo, sim_meta: dict[str, Any]) -> dict[str, Any]:
    return {
        "session": info.session_id,
        "runner": info.runner,
        "device": info.device,
        "start_utc_s": info.start_utc_s,
        "source": info.source,
        "simulator": json_safe(sim_meta),
    }


def _batches_by_time(
    packets: Iterable[tuple[float, bytes]], window_s: float
) -> Iterable[list[tuple[float, bytes]]]:
    batch: list[tuple[float, bytes]] = []
    edge = None
    for rx_s, payload in packets:
        if edge is None:
            edge = rx_s + window_s
        if rx_s >= edge and batch:
            yield batch
            batch = []
            edge = rx_s + window_s
        batch.append((rx_s, payload))
    if batch:
        yield batch
