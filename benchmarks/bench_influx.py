"""Write throughput and write->queryable lag of our InfluxDB sinks against real local servers.

    python -m benchmarks.bench_influx [--points 200000] [--batch-size 5000] [--lag-samples 20]

Starts InfluxDB 1.x (``influxd``, Debian ``influxdb``) and VictoriaMetrics (Debian
``victoria-metrics``, through the v2 write API / influxdb-client) in a temporary directory on free
loopback ports, and stops them by PID at the end. Throughput is end to end through
``InfluxSink.write`` (line-protocol encoding included) until ``flush()`` returns. Lag is the time
from ``write()`` of one step (no explicit flush; the batch closes by ``flush_interval_s``) until
a query returns it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from dsp.types import STEP_DTYPE, STEP_METRICS
from storage.config import InfluxConfig, Secret
from storage.convert import step_records
from storage.influx import InfluxSink
from storage.lineproto import records_to_lines
from storage.records import Record
from storage.testing_servers import InfluxD, VictoriaMetrics, missing_binary


def make_records(n: int, *, runners: int = 50, seed: int = 0) -> list[Record]:
    rng = np.random.default_rng(seed)
    per = n // runners
    out: list[Record] = []
    t0 = (time.time_ns() // 10**9 - 86400) * 10**9
    for r in range(runners):
        s = np.zeros(per, dtype=STEP_DTYPE)
        s["time_s"] = np.arange(per) * 0.35
        s["side"] = 1 + np.arange(per) % 2
        s["activity"] = 2
        for m in STEP_METRICS:
            s[m] = rng.normal(1.0, 0.1, per)
        out += step_records(s, start_utc_ns=t0, runner=f"r{r}", session=f"bench-{r}")
    return out


def throughput(cfg: InfluxConfig, records: list[Record], chunk: int = 1000) -> tuple[float, float]:
    """(points/s, seconds) through InfluxSink until flush() returns."""
    sink = InfluxSink(cfg)
    t = time.perf_counter()
    for i in range(0, len(records), chunk):
        sink.write(records[i : i + chunk])
    left = sink.flush(600)
    dt = time.perf_counter() - t
    stats = sink.stats
    sink.close()
    if left or stats.points_written < len(records):
        print(f"  warning: {left} spooled, {stats.points_written} written", file=sys.stderr)
    return len(records) / dt, dt


def lag_influx(server: InfluxD, cfg: InfluxConfig, samples: int) -> list[float]:
    lags = []
    with InfluxSink(cfg) as sink:
        for i in range(samples):
            t_ns = time.time_ns()
            rec = Record("lag", t_ns, {"probe": "p"}, {"i": float(i)})
            t = time.perf_counter()
            sink.write([rec])
            while not server.rows(f"SELECT i FROM lag WHERE time = {t_ns}", cfg.database or ""):
                time.sleep(0.002)
            lags.append(time.perf_counter() - t)
    return lags


def lag_vm(server: VictoriaMetrics, cfg: InfluxConfig, samples: int) -> list[float]:
    lags = []
    with InfluxSink(cfg) as sink:
        for i in range(samples):
            t_ns = time.time_ns()
            rec = Record("lag", t_ns, {"probe": f"p{i}"}, {"i": float(i)})
            t = time.perf_counter()
            sink.write([rec])
            while not server.export(f'{{__name__="lag_i",probe="p{i}"}}'):  # export force-flushes
                time.sleep(0.005)
            lags.append(time.perf_counter() - t)
    return lags


def fmt_lags(lags: list[float]) -> str:
    q = sorted(lags)
    p95 = q[min(len(q) - 1, int(0.95 * len(q)))]
    return (
        f"median {statistics.median(q) * 1e3:.0f} ms, p95 {p95 * 1e3:.0f} ms, "
        f"max {q[-1] * 1e3:.0f} ms (n={len(q)})"
    )


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--points", type=int, default=200_000)
    ap.add_argument("--batch-size", type=int, default=5000)
    ap.add_argument("--lag-samples", type=int, default=20)
    ap.add_argument("--flush-interval-s", type=float, default=0.1, help="for the lag runs")
    args = ap.parse_args(argv)
    for b in ("influxd", "victoria-metrics"):
        msg = missing_binary(b)
        if msg:
            print(msg, file=sys.stderr)
            return 2

    records = make_records(args.points)
    t = time.perf_counter()
    records_to_lines(records)
    enc = len(records) / (time.perf_counter() - t)
    print(f"{len(records)} step points, batch_size {args.batch_size}")
    print(f"line-protocol encoding alone: {enc:,.0f} points/s")

    with tempfile.TemporaryDirectory(prefix="bench-influx-") as tmp:
        d = Path(tmp)
        influx = InfluxD(d / "influxd")
        vm = VictoriaMetrics(d / "vm")
        influx.start()
        vm.start()
        try:
            influx.create_database("bench")
            common = {"batch_size": args.batch_size, "max_queue_points": 4 * args.batch_size}
            v1 = InfluxConfig.from_mapping(
                {"url": influx.url, "database": "bench", "spool_dir": d / "sp1", **common}
            )
            v2 = InfluxConfig(
                url=vm.url,
                bucket="bench",
                org="imu",
                token=Secret("unused"),
                spool_dir=d / "sp2",
                batch_size=args.batch_size,
                max_queue_points=4 * args.batch_size,
            )
            rate, secs = throughput(v1, records)
            (row,) = influx.rows("SELECT count(cadence_spm) FROM steps", "bench")
            print(
                f"InfluxDB 1.x (v1 /write):            {rate:,.0f} points/s "
                f"({secs:.2f} s; {row['count']} points stored)"
            )
            rate, secs = throughput(v2, records)
            stored = vm.wait_count('{__name__="steps_cadence_spm"}', len(records), timeout_s=30)
            print(
                f"VictoriaMetrics (v2 API, influxdb-client): {rate:,.0f} points/s "
                f"({secs:.2f} s; {stored} samples of steps_cadence_spm stored)"
            )
            live = {"flush_interval_s": args.flush_interval_s, "batch_size": 500}
            lags = lag_influx(influx, v1.replace(spool_dir=d / "sp3", **live), args.lag_samples)
            print(
                f"lag write->queryable, InfluxDB 1.x (flush_interval_s={args.flush_interval_s}): "
                f"{fmt_lags(lags)}"
            )
            lags = lag_vm(vm, v2.replace(spool_dir=d / "sp4", **live), args.lag_samples)
            print(
                f"lag write->queryable, VictoriaMetrics (flush_interval_s={args.flush_interval_s}, "
                f"force_flush before each poll): {fmt_lags(lags)}"
            )
        finally:
            influx.stop()
            vm.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
