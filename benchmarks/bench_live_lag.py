"""Lag from a step's time to its point being queryable in InfluxDB, in a live (real-time paced) run.

Starts InfluxDB 1.x (Debian ``influxd``) on a free loopback port, streams a simulated run through
the pipeline in real time (packets handed over when the phone would have received them) into an
``InfluxSink``, and polls InfluxQL until every step point is visible. For each step:

* ``dsp_s``   = wall time the pipeline emitted the step - the step's UTC time (its initial contact).
  A step ends at the NEXT initial contact, so this includes one step duration plus the detector's
  look-ahead.
* ``lag_s``   = wall time the point first appeared in a query - the step's UTC time.

Run: ``python -m benchmarks.bench_live_lag [--minutes 1.5] [--flush-interval-s 1.0]``
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
import uuid

import numpy as np

from imu.pipeline import Pipeline, SessionInfo
from simulators import simulate_run
from storage.config import InfluxConfig
from storage.influx import InfluxSink
from storage.testing_servers import InfluxD, missing_binary


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--minutes", type=float, default=1.5)
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--flush-interval-s", type=float, default=1.0)
    ap.add_argument("--poll-s", type=float, default=0.05)
    args = ap.parse_args()
    if missing_binary("influxd"):
        raise SystemExit("influxd not found: install the Debian package 'influxdb'")

    run = simulate_run(args.minutes, args.seed)
    with tempfile.TemporaryDirectory() as tmp, InfluxD(tmp) as server:
        server.create_database("running")
        config = InfluxConfig.from_mapping(
            {
                "url": server.url,
                "database": "running",
                "flush_interval_s": args.flush_interval_s,
                "spool_dir": f"{tmp}/spool",
            }
        )
        sink = InfluxSink(config)
        session = f"lag-{uuid.uuid4().hex[:6]}"
        t_wall0 = time.time() + 0.5
        first_sensor_s = float(run.samples.t_s[0])
        info = SessionInfo(
            session,
            runner="bench",
            device="sim",
            source="bench",
            start_utc_s=t_wall0 + first_sensor_s,
        )
        emitted: dict[int, float] = {}

        def on_steps(steps: np.ndarray) -> None:
            now = time.time()
            for s in steps:
                emitted[round((info.start_utc_s + float(s["time_s"])) * 1e9)] = now

        pipeline = Pipeline(info, [sink], on_steps=on_steps)
        visible: dict[int, float] = {}
        stop = threading.Event()

        def poll() -> None:
            while not stop.is_set():
                rows = server.rows(
                    f"SELECT sensor_time_s FROM steps WHERE \"session\" = '{session}'", "running"
                )
                now = time.time()
                for r in rows:
                    visible.setdefault(int(r["time"]), now)
                time.sleep(args.poll_s)

        poller = threading.Thread(target=poll, daemon=True)
        poller.start()
        for rx_s, payload in run.packets:
            delay = t_wall0 + rx_s - time.time()
            if delay > 0:
                time.sleep(delay)
            pipeline.feed_packets([payload])
        pipeline.close()
        sink.flush()
        deadline = time.time() + 10
        while len(visible) < len(emitted) and time.time() < deadline:
            time.sleep(0.1)
        stop.set()
        poller.join()
        sink.close()

    keys = sorted(k for k in emitted if k in visible)
    dsp = np.array([emitted[k] - k / 1e9 for k in keys])
    lag = np.array([visible[k] - k / 1e9 for k in keys])
    print(
        f"steps emitted {len(emitted)}, visible {len(visible)}, flush_interval_s={args.flush_interval_s}"
    )
    print(
        f"step time -> emitted by the pipeline: p50 {np.median(dsp) * 1e3:.0f} ms  p95 {np.percentile(dsp, 95) * 1e3:.0f} ms"
    )
    print(
        f"step time -> queryable in InfluxDB:   p50 {np.median(lag) * 1e3:.0f} ms  p95 {np.percentile(lag, 95) * 1e3:.0f} ms  max {lag.max() * 1e3:.0f} ms"
    )
    print(
        f"BENCH live_lag_p50_ms={np.median(lag) * 1e3:.0f} live_lag_p95_ms={np.percentile(lag, 95) * 1e3:.0f}"
    )


if __name__ == "__main__":
    main()
