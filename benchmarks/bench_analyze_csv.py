"""Whole-process time of ``imu analyze`` on one hour of 200 Hz CSV (issue 3: <= 3 s, warm caches).

``python -m benchmarks.bench_analyze_csv [--hours 1] [--repeat 3]``

Writes the simulated run of :func:`benchmarks.bench_pipeline.load_run` (random mounting, noise, gyro
bias, clock jitter) as a CSV in the ``imu analyze`` contract (time_s, acc_x..z in m/s^2, gyr_x..z in
deg/s), runs ``imu analyze`` once to warm the numba caches, then ``--repeat`` times each with
``--no-store`` and with the default embedded store (a fresh ``IMU_HOME``), and prints the wall times
(best and all) in one line per mode. Wall time includes interpreter start-up and imports.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks.bench_pipeline import load_run


def write_csv(path: Path, hours: float) -> int:
    t, acc, gyr = load_run(hours)
    data = np.column_stack([t - t[0], acc, gyr])
    header = "time_s,acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z"
    np.savetxt(path, data, fmt="%.6f", delimiter=",", header=header, comments="")
    return len(t)


def run_analyze(csv: Path, out: Path, imu_home: Path, *, store: bool) -> float:
    imu = Path(sys.executable).with_name("imu")  # the console script, as a user runs it
    cmd = [str(imu), "analyze", str(csv), "--out", str(out)]
    if not store:
        cmd.append("--no-store")
    env = {**os.environ, "IMU_HOME": str(imu_home)}
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--hours", type=float, default=1.0)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        csv = d / "run.csv"
        rows = write_csv(csv, args.hours)
        mb = csv.stat().st_size / 1e6
        run_analyze(csv, d / "warm", d / "home-warm", store=False)  # numba caches
        for store in (False, True):
            times = [
                run_analyze(csv, d / f"out{i}", d / f"home{store}{i}", store=store)
                for i in range(args.repeat)
            ]
            mode = "default store" if store else "--no-store"
            print(
                f"ANALYZE_CSV hours={args.hours:g} rows={rows} mb={mb:.0f} mode={mode!r} "
                f"best_s={min(times):.2f} all_s={','.join(f'{x:.2f}' for x in times)}"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
