"""Live session from a BLE sensor: stream -> record -> :class:`imu.pipeline.Pipeline` -> live view.

:func:`run_live` connects (:class:`firmware_interface.ble.SensorLink`), records every packet the
pipeline sees to a ``.rec`` file while it runs (each record is one unbuffered write, so a file cut
off by a crash or a pulled battery stays readable), analyses it through the one pipeline every
source uses, and redraws a terminal view in place (:class:`LiveView`, ``rich.live.Live``). Setting
the ``stop`` event (Ctrl-C in ``imu live``) ends the session cleanly: stream stopped, DSP flushed,
summary written, recording closed with its end marker and fsynced.

Time: the session's ``start_utc_s`` is the UTC time of its first sample, taken from the sensor
clock through :class:`firmware_interface.clock_sync.ClockSync` (TIME_SYNC round trips plus the
packet lower envelope), never from a packet's arrival time. Link events (config, disconnect,
reconnect, gap, clock) go into the recording as event records.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text

from dsp.types import Side
from firmware_interface.ble import LinkEvent, SensorLink, StreamConfig, find_sensor
from firmware_interface.decoder import decode_one
from firmware_interface.recording import RecordingWriter
from imu.alerts import Alert
from imu.pipeline import Pipeline, PipelineResult, SessionInfo
from storage.records import Sink

__all__ = ["LiveState", "LiveView", "run_live"]

#: steps per side averaged in the live view
VIEW_STEPS = 10
#: redraws per second
VIEW_FPS = 4.0
_VIEW_METRICS = (
    ("cadence_spm", "cadence", "{:.0f} spm"),
    ("contact_time_s", "contact", "{:.0f} ms", 1e3),
    ("flight_time_s", "flight", "{:.0f} ms", 1e3),
    ("vertical_oscillation_m", "vert. osc.", "{:.1f} cm", 1e2),
    ("pelvic_drop_deg", "pelvic drop", "{:.1f}°"),
    ("pelvic_rotation_deg", "pelvic rot.", "{:.1f}°"),
    ("pelvic_tilt_deg", "pelvic tilt", "{:.1f}°"),
    ("braking_mps2", "braking", "{:.1f} m/s²"),
)


@dataclass(slots=True)
class LiveState:
    """What the live view shows; updated by the session, read by :class:`LiveView`."""

    device: str = ""
    session: str = ""
    started_s: float = field(default_factory=time.time)
    steps: dict[int, deque[Any]] = field(
        default_factory=lambda: {s: deque(maxlen=VIEW_STEPS) for s in Side}
    )
    total_steps: int = 0
    alerts: deque[Alert] = field(default_factory=lambda: deque(maxlen=5))
    link: SensorLink | None = None
    pipeline: Pipeline | None = None
    status: str = "connecting"
    events: deque[str] = field(default_factory=lambda: deque(maxlen=4))

    def add_steps(self, steps: npt.NDArray[Any]) -> None:
        for s in steps:
            self.steps[int(s["side"])].append(s)
        self.total_steps += len(steps)

    def add_alerts(self, alerts: list[Alert]) -> None:
        self.alerts.extend(alerts)

    def add_event(self, ev: LinkEvent) -> None:
        if ev.type == "disconnected":
            self.status = "reconnecting"
        elif ev.type in ("reconnected", "config"):
            self.status = "streaming"
        stamp = time.strftime("%H:%M:%S", time.localtime(ev.host_time_s))
        detail = ""
        if ev.type == "gap":
            detail = f" {ev.data.get('gap_s', 0):.2f} s of data missing"
        elif ev.type == "reconnected":
            detail = f" after {ev.data.get('outage_s', 0):.2f} s"
        if ev.type != "config" or self.events:
            self.events.append(f"{stamp} {ev.type}{detail}")


class LiveView:
    """Renders a :class:`LiveState` as one rich renderable (metrics, alerts, link quality)."""

    def __init__(self, state: LiveState) -> None:
        self.state = state

    def __rich__(self) -> Group:
        st = self.state
        elapsed = time.time() - st.started_s
        title = f"{st.device}  session {st.session}  {int(elapsed // 60):02d}:{int(elapsed % 60):02d}  [{st.status}]"
        table = Table(title=title, title_justify="left", expand=False)
        table.add_column(f"last {VIEW_STEPS} steps")
        table.add_column("left", justify="right")
        table.add_column("right", justify="right")
        for spec in _VIEW_METRICS:
            key, label, fmt = spec[0], spec[1], spec[2]
            scale = spec[3] if len(spec) > 3 else 1.0
            cells = []
            for side in (Side.LEFT, Side.RIGHT):
                vals = np.array([float(s[key]) for s in st.steps[side]], dtype=float)
                vals = vals[np.isfinite(vals)]
                cells.append(fmt.format(float(np.mean(vals)) * float(scale)) if vals.size else "-")
            table.add_row(label, *cells)
        table.add_row("steps", str(len(st.steps[Side.LEFT])), str(len(st.steps[Side.RIGHT])))
        all_recent = [s for side in Side for s in st.steps[side]]
        cad = [float(s["cadence_spm"]) for s in all_recent if np.isfinite(s["cadence_spm"])]
        lines = [
            Text(
                f"cadence {np.mean(cad):.0f} spm   total steps {st.total_steps}"
                if cad
                else f"total steps {st.total_steps}"
            )
        ]
        active = [a for a in st.alerts if a.active]
        for a in active[-3:]:
            lines.append(Text(f"ALERT [{a.level}] {a.message}", style="bold red"))
        lines.append(Text(self._link_line()))
        lines.extend(Text(e, style="dim") for e in st.events)
        return Group(table, *lines)

    def _link_line(self) -> str:
        st = self.state
        if st.link is None:
            return "link: connecting"
        ls = st.link.stats
        dec = st.pipeline.stats() if st.pipeline is not None else {}
        clock = ""
        if st.link.clock.ready:
            est = st.link.clock.estimate()
            clock = f"  clock drift {est.drift_ppm:+.0f} ppm"
        return (
            f"link: {dec.get('packets_received', 0)} packets, {dec.get('packets_lost', 0)} lost, "
            f"{ls.duplicates} dup, {ls.queue_drops} queue drops, {ls.reconnects} reconnects "
            f"({ls.gap_s:.1f} s gaps)  MTU {ls.mtu}, {ls.samples_per_packet}/packet{clock}"
        )


async def run_live(
    identifier: str | None,
    *,
    record_path: str | Path | None = None,
    sink: Sink | None = None,
    runner: str = "runner",
    config: StreamConfig | None = None,
    scan_timeout_s: float = 15.0,
    duration_s: float | None = None,
    stop: asyncio.Event | None = None,
    console: Console | None = None,
    show: bool = True,
    link_kwargs: dict[str, Any] | None = None,
    on_batch: Callable[[Sequence[tuple[float, bytes]]], Any] | None = None,
) -> PipelineResult:
    """Run one live session until ``stop`` is set, ``duration_s`` has passed or the link gives up.

    Args:
        identifier: sensor address or name; ``None`` = the first sensor advertising our service.
        record_path: write the raw session here (``.rec``); must not exist.
        sink: store for steps/events/alerts (e.g. the embedded store).
        runner: runner name written with every record.
        config: requested stream configuration.
        scan_timeout_s: how long to scan for the sensor.
        duration_s: end the session after this long (host time).
        stop: set it to end the session (Ctrl-C handler).
        console: where the live view goes.
        show: draw the live view.
        link_kwargs: extra :class:`SensorLink` arguments (tests: Bumble backends, backoff).
        on_batch: called with every batch of ``(rx_time_s, packet)`` (e.g. the MQTT bridge).

    Returns:
        The pipeline result; ``summary["link"]`` has the link counters and ``summary["clock"]`` the
        final clock estimate.

    Raises:
        DeviceNotFoundError, ConnectionLostError, BleError: from the link (the recording and the
            pipeline are still closed cleanly first).
    """
    kwargs = dict(link_kwargs or {})
    stop = stop or asyncio.Event()
    scanner_backend = kwargs.get("scanner_backend")
    device = await find_sensor(
        identifier, timeout_s=scan_timeout_s, scanner_backend=scanner_backend
    )
    session_id = f"ble-{time.strftime('%Y%m%dT%H%M%S', time.gmtime())}-{uuid.uuid4().hex[:6]}"
    device_label = f"{device.name or 'sensor'} {device.address}"
    state = LiveState(device=device_label, session=session_id)
    writer: RecordingWriter | None = None
    pipeline: Pipeline | None = None
    link: SensorLink | None = None
    live: Live | None = None

    def on_event(ev: LinkEvent) -> None:
        state.add_event(ev)
        if writer is not None:
            kind = {"reconnected": "reconnect"}.get(ev.type, ev.type)
            writer.write_event(ev.host_time_s, {"type": kind, **ev.data})

    def make_pipeline(first_packet: bytes) -> Pipeline:
        assert link is not None
        start_utc_s = time.time()
        parsed = decode_one(first_packet)
        if parsed is not None and link.clock.ready:
            header, _samples = parsed
            start_utc_s = link.clock.to_utc(link.unwrapper.peek(header["t0_us"]) / 1e6)
        drift_ppm = link.clock.estimate().drift_ppm if link.clock.ready else 0.0
        info = SessionInfo(
            session_id=session_id,
            runner=runner,
            device=device_label,
            source="ble",
            start_utc_s=start_utc_s,
            clock_drift_ppm=drift_ppm,
            metadata={"address": device.address, "config": _config_dict(link)},
        )
        if writer is not None:
            writer.write_event(
                time.time(),
                {
                    "type": "session",
                    "start_utc_s": start_utc_s,
                    "clock_drift_ppm": drift_ppm,
                    "session": session_id,
                },
            )
        return Pipeline(
            info,
            [sink] if sink is not None else [],
            on_steps=state.add_steps,
            on_alerts=state.add_alerts,
        )

    try:
        if record_path is not None:
            writer = RecordingWriter(
                str(record_path),
                {
                    "session": session_id,
                    "runner": runner,
                    "device": device_label,
                    "address": device.address,
                    "source": "ble",
                    "created_utc_s": time.time(),
                },
            )
        if show:
            live = Live(LiveView(state), console=console, auto_refresh=False, transient=False)
            live.start()
        async with SensorLink(device, config, on_event=on_event, **kwargs) as link:
            state.link = link
            state.status = "streaming"
            deadline = None if duration_s is None else time.monotonic() + duration_s
            last_draw = 0.0
            batches = link.batches(max_wait_s=0.1)
            while not stop.is_set() and (deadline is None or time.monotonic() < deadline):
                try:
                    batch = await asyncio.wait_for(anext(batches), 0.25)
                except TimeoutError:
                    batch = []
                except StopAsyncIteration:
                    break
                if batch:
                    if writer is not None:
                        for item in batch:
                            writer.write_packet(item.rx_time_s, item.data)
                    if pipeline is None:
                        pipeline = make_pipeline(batch[0].data)
                        state.pipeline = pipeline
                    pipeline.feed_packets([item.data for item in batch])
                    if on_batch is not None:
                        res = on_batch([(item.rx_time_s, item.data) for item in batch])
                        if asyncio.iscoroutine(res):
                            await res
                now = time.monotonic()
                if live is not None and now - last_draw >= 1.0 / VIEW_FPS:
                    live.refresh()
                    last_draw = now
            aclose = getattr(batches, "aclose", None)
            if aclose is not None:
                with contextlib.suppress(Exception):
                    await aclose()
    finally:
        if pipeline is None and link is not None:
            pipeline = Pipeline(
                SessionInfo(
                    session_id=session_id,
                    runner=runner,
                    device=device_label,
                    source="ble",
                    start_utc_s=time.time(),
                ),
                [sink] if sink is not None else [],
            )
        result = pipeline.close() if pipeline is not None else None
        if writer is not None:
            if link is not None and link.clock.ready:
                est = link.clock.estimate()
                writer.write_event(
                    time.time(),
                    {
                        "type": "clock",
                        "offset_s": est.offset_s,
                        "drift_ppm": est.drift_ppm,
                        "ref_sensor_s": est.ref_sensor_s,
                    },
                )
            writer.close()
        if live is not None:
            live.refresh()
            live.stop()
    assert result is not None
    assert link is not None
    result.summary["link"] = _link_dict(link)
    if link.clock.ready:
        est = link.clock.estimate()
        result.summary["clock"] = {
            "offset_s": est.offset_s,
            "drift_ppm": est.drift_ppm,
            "latency_s": est.latency_s,
            "round_trips": est.round_trips,
        }
    return result


def _config_dict(link: SensorLink) -> dict[str, Any]:
    cfg = link.config
    return {
        "sample_rate_hz": cfg.sample_rate_hz,
        "acc_range_g": cfg.acc_range_g,
        "gyr_range_dps": cfg.gyr_range_dps,
        "samples_per_packet": link.stats.samples_per_packet,
        "mtu": link.stats.mtu,
    }


def _link_dict(link: SensorLink) -> dict[str, Any]:
    s = link.stats
    return {
        "notifications": s.notifications,
        "duplicates": s.duplicates,
        "queue_drops": s.queue_drops,
        "connects": s.connects,
        "reconnects": s.reconnects,
        "disconnects": s.disconnects,
        "gaps": s.gaps,
        "gap_s": round(s.gap_s, 6),
        "mtu": s.mtu,
        "samples_per_packet": s.samples_per_packet,
    }
