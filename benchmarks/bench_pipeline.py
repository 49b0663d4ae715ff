"""Speed of the whole DSP: ``python -m benchmarks.bench_pipeline [--hours H]``.

Prints ONE line: ``BENCH samples_per_s=<offline, one core> packet_p99_ms=<live, 20-sample packets>
marathon_s=<wall time of the 4 h run>``. The input is a generated 200 Hz run with gyro
(synthetic runner of the tests when the project simulator is not installed).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from dsp.analyzer import GaitAnalyzer, analyze

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "dsp"))
from dsp_synth import synth_run


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=4.0)
    args = ap.parse_args(argv)
    fs = 200.0
    base = synth_run(duration_s=600.0, fs=fs, seed=11)
    reps = max(1, round(args.hours * 3600 / 600))
    n1 = base.t.size
    t = (np.arange(n1 * reps) / fs).astype(np.float64)
    acc = np.tile(base.acc, (reps, 1))
    gyr = np.tile(base.gyr, (reps, 1))
    analyze(t[:4000], acc[:4000], gyr[:4000], sample_rate_hz=fs)  # compile / load cache
    t0 = time.perf_counter()
    out = analyze(t, acc, gyr, sample_rate_hz=fs)
    marathon = time.perf_counter() - t0
    sps = t.size / marathon
    # live: 20-sample packets through the stream wrapper
    an = GaitAnalyzer(has_gyro=True, sample_rate_hz=fs)
    m = min(t.size, int(30 * 60 * fs))
    lat = []
    for a in range(0, m - 20, 20):
        s = time.perf_counter()
        an.push(t[a : a + 20], acc[a : a + 20], gyr[a : a + 20])
        lat.append(time.perf_counter() - s)
    p99 = float(np.percentile(lat, 99)) * 1e3
    print(
        f"BENCH samples_per_s={sps:.0f} packet_p99_ms={p99:.3f} marathon_s={marathon:.2f}"
        f"  # {t.size} samples, {len(out.steps)} steps"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
