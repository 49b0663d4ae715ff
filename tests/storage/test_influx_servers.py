"""InfluxSink against real servers: InfluxDB 1.6 (v1 /write + InfluxQL) and VictoriaMetrics (v2 API).

Needs the Debian packages ``influxdb`` and ``victoria-metrics`` (skipped with a message otherwise).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pytest

from dsp.types import STEP_DTYPE, STEP_METRICS
from storage.config import InfluxConfig, Secret
from storage.convert import session_record, step_records
from storage.influx import InfluxSink, V1Transport
from storage.records import Record
from storage.testing_servers import InfluxD, VictoriaMetrics

pytestmark = pytest.mark.services

T0 = 1_763_900_000_000_000_000


def synthetic_steps(n: int, *, seed: int = 0, t_start: float = 0.5) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = np.zeros(n, dtype=STEP_DTYPE)
    s["time_s"] = t_start + np.arange(n) * 0.35 + rng.uniform(-0.01, 0.01, n)
    s["side"] = np.where(np.arange(n) % 2 == 0, 1, 2)
    s["activity"] = 2
    s["cadence_spm"] = rng.normal(172, 3, n)
    s["contact_time_s"] = rng.normal(0.24, 0.01, n)
    s["flight_time_s"] = rng.normal(0.11, 0.01, n)
    s["vertical_oscillation_m"] = rng.normal(0.08, 0.005, n)
    s["pelvic_drop_deg"] = rng.normal(6.0, 1.0, n)
    s["pelvic_rotation_deg"] = rng.normal(10.0, 1.0, n)
    s["pelvic_tilt_deg"] = rng.normal(4.0, 0.5, n)
    s["braking_mps2"] = rng.normal(3.0, 0.3, n)
    return s


def v1_config(server: InfluxD, db: str, tmp_path: Path, **kw: object) -> InfluxConfig:
    base: dict[str, object] = {
        "url": server.url,
        "database": db,
        "batch_size": 100,
        "flush_interval_s": 0.05,
        "retry_base_s": 0.05,
        "retry_cap_s": 0.4,
        "max_retries": 2,
        "timeout_s": 2.0,
        "spool_dir": tmp_path / "spool",
    }
    base.update(kw)
    return InfluxConfig.from_mapping(base)


class Recording:
    """Wraps a transport and records the lines the server acknowledged, in order."""

    def __init__(self, inner: V1Transport) -> None:
        self.inner = inner
        self.lines: list[str] = []

    def write(self, lines: Sequence[str]) -> None:
        self.inner.write(lines)
        self.lines.extend(lines)

    def close(self) -> None:
        self.inner.close()


def test_v1_write_and_read_back_exact(influxd: InfluxD, influx_db: str, tmp_path: Path) -> None:
    steps = synthetic_steps(40)
    steps["braking_mps2"][3] = np.nan
    records: list[Record] = step_records(
        steps, start_utc_ns=T0, runner="ana maria", session="2026-11-23,a", device='d"1\\x'
    )
    records.append(
        Record(
            "alerts",
            T0 + 5 * 10**9,
            {
                "runner": "ana maria",
                "session": "2026-11-23,a",
                "metric": "pelvic_drop_deg",
                "level": "warn",
                "side": "left",
            },
            {
                "value": 9.25,
                "baseline": 6.0,
                "active": True,
                "message": 'left hip "drops" = 9°, check',
            },
        )
    )
    with InfluxSink(v1_config(influxd, influx_db, tmp_path)) as sink:
        sink.write(records)
        assert sink.flush(10) == 0
        assert sink.stats.points_written == 41
    rows = influxd.rows("SELECT * FROM steps ORDER BY time", influx_db)
    assert len(rows) == 40
    for row, step, rec in zip(rows, steps, records, strict=False):
        assert row["time"] == rec.time_ns
        assert row["runner"] == "ana maria"
        assert row["session"] == "2026-11-23,a"
        assert row["device"] == 'd"1\\x'
        assert row["side"] == ("left" if step["side"] == 1 else "right")
        assert row["activity"] == "running"
        assert row["sensor_time_s"] == step["time_s"]  # exact float round trip
        for m in STEP_METRICS:
            if math.isnan(step[m]):
                assert row[m] is None
            else:
                assert row[m] == step[m]
    (alert,) = influxd.rows("SELECT * FROM alerts", influx_db)
    assert alert["message"] == 'left hip "drops" = 9°, check'
    assert alert["active"] is True
    assert alert["value"] == 9.25
    # tags are indexed: GROUP BY side works
    counts = influxd.rows("SELECT count(cadence_spm) FROM steps GROUP BY side", influx_db)
    assert {r["side"]: r["count"] for r in counts} == {"left": 20, "right": 20}


def test_v1_idempotent_rewrite(influxd: InfluxD, influx_db: str, tmp_path: Path) -> None:
    records = step_records(synthetic_steps(120), start_utc_ns=T0, runner="r", session="s")
    with InfluxSink(v1_config(influxd, influx_db, tmp_path)) as sink:
        sink.write(records)
        sink.flush(10)
        sink.write(records)  # same steps again (e.g. a replayed recording)
        sink.flush(10)
        assert sink.stats.points_written == 240
    (row,) = influxd.rows("SELECT count(cadence_spm) FROM steps", influx_db)
    assert row["count"] == 120


def test_v2_write_to_victoria_metrics(victoria: VictoriaMetrics, tmp_path: Path) -> None:
    steps = synthetic_steps(30, seed=5)
    records = step_records(steps, start_utc_ns=T0, runner="vm-runner", session="vm1")
    cfg = InfluxConfig(
        url=victoria.url,
        bucket="running",
        org="imu",
        token=Secret("vm-ignores-it"),
        batch_size=20,
        flush_interval_s=0.05,
        spool_dir=tmp_path / "spool",
    )
    with InfluxSink(cfg) as sink:
        sink.write(records)
        sink.write(records)  # a re-send: VM's dedup (-dedup.minScrapeInterval=1ms) keeps one
        assert sink.flush(10) == 0
    match = '{__name__="steps_cadence_spm",session="vm1"}'
    assert victoria.wait_count(match, 30) == 30
    series = victoria.export(match)
    by_side = {s["metric"]["side"]: s for s in series}
    assert set(by_side) == {"left", "right"}
    assert by_side["left"]["metric"]["runner"] == "vm-runner"
    assert "bucket" not in by_side["left"]["metric"]  # VM drops bucket/org
    left = steps[steps["side"] == 1]
    # VM keeps ms timestamps and float64 values
    assert by_side["left"]["timestamps"] == [
        int((T0 + round(t * 1e9)) // 10**6) for t in left["time_s"]
    ]
    np.testing.assert_allclose(by_side["left"]["values"], left["cadence_spm"], rtol=1e-12)


def test_spool_while_down_then_drained_in_order(
    influxd_factory: Callable[[], InfluxD], tmp_path: Path
) -> None:
    server = influxd_factory()
    server.create_database("run")
    cfg = v1_config(server, "run", tmp_path)
    rec = Recording(V1Transport(cfg))
    sink = InfluxSink(cfg, transport=rec)
    start = session_record(start_utc_ns=T0, runner="r", session="s", fields={"duration_s": 0.0})
    sink.write([start])
    sink.flush(10)
    server.stop()
    records = step_records(synthetic_steps(300), start_utc_ns=T0, runner="r", session="s")
    for i in range(0, 300, 60):
        sink.write(records[i : i + 60])
    # the end-of-session upsert of the same point: must land after the start record's value
    end = session_record(
        start_utc_ns=T0, runner="r", session="s", fields={"duration_s": 105.0, "steps": 300}
    )
    sink.write([end])
    assert sink.flush(20) == 301  # everything spooled, nothing lost
    assert sink.stats.points_spooled == 301
    server.start()
    assert sink.flush(20) == 0
    assert sink.drain_and_close() == 0
    (row,) = server.rows("SELECT count(cadence_spm) FROM steps", "run")
    assert row["count"] == 300
    (sess,) = server.rows("SELECT * FROM sessions", "run")
    assert sess["duration_s"] == 105.0
    assert sess["steps"] == 300
    # the replay went out in write order
    replayed = list(rec.lines[1:])
    assert [int(ln.rsplit(" ", 1)[1]) for ln in replayed[:300]] == [r.time_ns for r in records]
    assert replayed[-1].startswith("sessions,")


def test_fault_sigkill_influxd_mid_stream_exactly_once(
    influxd_factory: Callable[[], InfluxD], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """SIGKILL influxd while a stream of steps is being written, restart it on the same data dir
    and port: every point arrives exactly once."""
    server = influxd_factory()
    server.create_database("run")
    sink = InfluxSink(v1_config(server, "run", tmp_path, batch_size=50, flush_interval_s=0.02))
    n_chunks, chunk = 60, 20
    steps = synthetic_steps(n_chunks * chunk, seed=11)
    records = step_records(steps, start_utc_ns=T0, runner="fault", session="f1", device="sim")
    killed_at: float | None = None
    restarted = False
    spooled_during_outage = 0

    def restart_if_due(force: bool = False) -> None:
        nonlocal restarted, spooled_during_outage
        if killed_at is None or restarted:
            return
        # keep it down >= 0.5 s and until batches really went to the spool
        due = time.monotonic() - killed_at >= 0.5 and sink.stats.points_spooled > 0
        if force:
            end = time.monotonic() + 10
            while sink.stats.points_spooled == 0 and time.monotonic() < end:
                time.sleep(0.02)
            due = True
        if due:
            spooled_during_outage = sink.stats.points_spooled
            server.start()  # same data dir and port
            restarted = True

    for k in range(n_chunks):
        sink.write(records[k * chunk : (k + 1) * chunk])
        time.sleep(0.02)  # a live stream (~1 k steps/s)
        if k == n_chunks // 4:
            server.kill()  # SIGKILL by PID, mid-stream
            killed_at = time.monotonic()
        restart_if_due()
    restart_if_due(force=True)
    left = sink.drain_and_close(timeout_s=30)
    stats = sink.stats
    (row,) = server.rows("SELECT count(cadence_spm) FROM steps", "run")
    distinct = row["count"]
    sent = len(records)
    with capsys.disabled():
        print(
            f"\n[fault test] sent={sent} written_acks={stats.points_written} "
            f"spooled={stats.points_spooled} (during outage {spooled_during_outage}) "
            f"replayed={stats.points_replayed} retries={stats.batches_retried} "
            f"left_in_spool={left} in_influx={distinct} "
            f"re-sent(acked twice)={stats.points_written - sent} duplicates_in_db={distinct - sent}"
        )
    assert killed_at is not None
    assert restarted
    assert spooled_during_outage > 0  # the outage really happened while writing
    assert left == 0
    assert distinct == sent  # exactly once in the database
    times = [r["time"] for r in server.rows("SELECT cadence_spm FROM steps", "run")]
    assert times == sorted({r.time_ns for r in records})
