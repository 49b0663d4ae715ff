"""Speed of the whole DSP: ``python -m benchmarks.bench_pipeline [--hours H] [--stages]``.

Prints ONE line: ``BENCH samples_per_s=<offline, one core> packet_p99_ms=<live, 20-sample packets>
marathon_s=<wall time of the 4 h run>``. The input is a 4 h, 200 Hz run of the project simulator
(``simulators.simulate_run``: random mounting, noise, gyro bias, clock jitter/drift), generated once
and cached as ``.npz`` in the temp directory, keyed by a hash of the simulator source (~20 s to generate). Offline = ``dsp.analyzer.analyze``
(resample, alignment, orientation, events, metrics; numba kernels, one thread), best of
``--repeat`` runs (wall clock; the CPU time of the same run and the wall time of the first run in the
process are in the comment). ``analyze`` is one call of ``dsp.analyzer._pipeline_kernel``, which
walks the recording in ``PIPELINE_BLOCK`` samples through the three stage kernels. ``--stages``
also prints the per-kernel breakdown (``STAGES`` line, CPU seconds of each stage kernel, called
per block as in the pipeline kernel). ``--orient-warm`` prints the orientation kernel alone on the
first hour, resampled beforehand, in 16 384-sample blocks (``ORIENT_WARM`` line). ``--feed`` also
prints the per-call cost of the whole live path (``FEED`` line: ``imu.pipeline.Pipeline.feed_packets``
= decoder + DSP + records + alerts, on 10 min of the run as 10-sample wire packets, 1 and 10 packets
per call, without a sink and with an embedded SQLite store in a temp directory; CPU microseconds per
call, best of ``--repeat``).
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from dsp.analyzer import PIPELINE_BLOCK, GaitAnalyzer, analyze
from dsp.gait import GaitParams, _gait_kernel, gait_coefficients, gait_initial_state
from dsp.orientation import N_SIG, OrientParams, _orient_kernel, orient_initial_state
from dsp.resample import _resample_capacity, _resample_kernel, resample_initial_state

Arrays = tuple[NDArray[np.float64], NDArray[np.float64], NDArray[np.float64]]


def load_run(hours: float, fs: int = 200, seed: int = 11) -> Arrays:
    """Simulated run (cached in the temp directory, keyed by the simulator's source code)."""
    import simulators

    src = sorted(Path(simulators.__file__).parent.glob("*.py"))
    version = hashlib.sha256(b"".join(f.read_bytes() for f in src)).hexdigest()[:12]
    name = f"imu_bench_sim_{hours:g}h_{fs}hz_s{seed}_{version}.npz"
    path = Path(tempfile.gettempdir()) / name
    if path.exists():
        d = np.load(path)
        return d["t"], d["acc"], d["gyr"]
    from simulators import SensorConfig, simulate_run

    run = simulate_run(hours * 60.0, seed, sensor=SensorConfig(sample_rate_hz=fs))
    t, acc, gyr = run.samples
    np.savez(path, t=t, acc=acc, gyr=gyr)
    return t, acc, gyr


def stages(
    t: NDArray[np.float64], acc: NDArray[np.float64], gyr: NDArray[np.float64], fs: float
) -> dict[str, float]:
    """CPU seconds of each stage kernel on the whole run, called per ``PIPELINE_BLOCK`` input
    samples on reused buffers as inside ``dsp.analyzer._pipeline_kernel`` (``analyze``)."""
    clk = time.thread_time
    blk = PIPELINE_BLOCK
    rs = resample_initial_state()
    os_ = orient_initial_state()
    op = OrientParams(rate_outputs=False)
    gp = GaitParams()
    gs = gait_initial_state(fs)
    coef = gait_coefficients(fs, gp)
    sb = np.empty((0, N_SIG))
    kb = np.empty(0, dtype=np.int64)
    ab = gb = np.empty((0, 3))
    fb = np.empty(0, dtype=np.int8)
    tot = np.zeros(3)
    for a in range(0, t.size, blk):
        b = min(t.size, a + blk)
        cap = _resample_capacity(t[a:b], fs, 0.25, rs.f, rs.i)
        if cap > kb.shape[0]:
            kb = np.empty(cap, dtype=np.int64)
            ab = np.empty((cap, 3))
            gb = np.empty((cap, 3))
            fb = np.empty(cap, dtype=np.int8)
            sb = np.full((cap, N_SIG), np.nan)
        c0 = clk()
        m = _resample_kernel(t[a:b], acc[a:b], gyr[a:b], fs, 0.25, rs.f, rs.i, kb, ab, gb, fb)
        c1 = clk()
        _orient_kernel(ab[:m], gb[:m], fb[:m], True, fs, op, os_.f, os_.i, sb[:m])
        c2 = clk()
        _gait_kernel(
            sb[:m],
            kb[:m],
            fb[:m],
            True,
            fs,
            float(rs.f[1]),
            coef,
            gp,
            gs.f,
            gs.i,
            gs.ring,
            gs.ics,
            b == t.size,
        )
        c3 = clk()
        tot += (c1 - c0, c2 - c1, c3 - c2)
    return {"resample": float(tot[0]), "orient": float(tot[1]), "gait": float(tot[2])}


def orient_warm(
    t: NDArray[np.float64], acc: NDArray[np.float64], gyr: NDArray[np.float64], fs: float
) -> float:
    """CPU ns per sample of the orientation kernel alone on the first hour, resampled beforehand
    and fed in 16 384-sample blocks (no resampling / memory streaming in the figure)."""
    n = min(t.size, int(3600 * fs))
    rs = resample_initial_state()
    cap = _resample_capacity(t[:n], fs, 0.25, rs.f, rs.i)
    kb = np.empty(cap, dtype=np.int64)
    ab = np.empty((cap, 3))
    gb = np.empty((cap, 3))
    fb = np.empty(cap, dtype=np.int8)
    m = _resample_kernel(t[:n], acc[:n], gyr[:n], fs, 0.25, rs.f, rs.i, kb, ab, gb, fb)
    blk = 16384
    sb = np.full((blk, N_SIG), np.nan)
    op = OrientParams(rate_outputs=False)
    os_ = orient_initial_state()
    c0 = time.thread_time()
    for a in range(0, m, blk):
        b = min(m, a + blk)
        _orient_kernel(ab[a:b], gb[a:b], fb[a:b], True, fs, op, os_.f, os_.i, sb[: b - a])
    return (time.thread_time() - c0) / m * 1e9


def wire_packets(
    t: NDArray[np.float64], acc: NDArray[np.float64], gyr: NDArray[np.float64], n: int = 10
) -> list[bytes]:
    """Samples as v1 wire packets of ``n`` samples (16 g, 2000 deg/s, 200 Hz), as the sensor sends."""
    from firmware_interface.protocol import STANDARD_GRAVITY_MPS2, encode_data_packet

    a = np.clip(np.round(acc / (16 * STANDARD_GRAVITY_MPS2) * 32768), -32768, 32767)
    g = np.clip(np.round(gyr / 2000.0 * 32768), -32768, 32767)
    raw = np.concatenate([a, g], axis=1).astype(np.int16)
    step_us = n * 1_000_000 // 200
    return [
        encode_data_packet(
            i & 0xFFFF, (i * step_us) & 0xFFFFFFFF, 200, 16, 2000, raw[i * n : i * n + n]
        )
        for i in range(len(t) // n)
    ]


def feed_cost(packets: list[bytes], batch: int, store: bool, repeat: int) -> float:
    """CPU microseconds per ``Pipeline.feed_packets`` call of ``batch`` packets (best run)."""
    from imu.pipeline import Pipeline, SessionInfo
    from storage.embedded import EmbeddedStore

    best = float("inf")
    for _ in range(max(1, repeat)):
        with tempfile.TemporaryDirectory() as tmp:
            sink = EmbeddedStore(Path(tmp) / "bench.db") if store else None
            pipe = Pipeline(
                SessionInfo("bench", start_utc_s=1.7e9), [sink] if sink is not None else []
            )
            calls = 0
            c0 = time.process_time()
            for i in range(0, len(packets), batch):
                pipe.feed_packets(packets[i : i + batch])
                calls += 1
            best = min(best, (time.process_time() - c0) / calls)
            pipe.close()
            if sink is not None:
                sink.close()
    return best * 1e6


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hours", type=float, default=4.0)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--stages", action="store_true", help="also print the per-kernel breakdown")
    ap.add_argument(
        "--orient-warm",
        action="store_true",
        help="also print the orientation kernel alone on 1 h of cached resampled samples",
    )
    ap.add_argument(
        "--feed", action="store_true", help="also print the per-call cost of Pipeline.feed_packets"
    )
    args = ap.parse_args(argv)
    fs = 200.0
    t, acc, gyr = load_run(args.hours)
    analyze(t[:4000], acc[:4000], gyr[:4000], sample_rate_hz=fs)  # compile / load the cache
    runs = []
    n_steps = 0
    for _ in range(max(1, args.repeat)):
        w0, c0 = time.perf_counter(), time.thread_time()
        out = analyze(t, acc, gyr, sample_rate_hz=fs)
        runs.append((time.perf_counter() - w0, time.thread_time() - c0))
        n_steps = len(out.steps)
        del out
    marathon, cpu = min(runs)
    first = runs[0][0]  # includes the first-touch cost of fresh memory in this process
    sps = t.size / marathon
    if args.stages:
        st_runs = [stages(t, acc, gyr, fs) for _ in range(max(1, args.repeat))]
        st = {key: min(r[key] for r in st_runs) for key in st_runs[0]}
        tot = sum(st.values())
        print(
            "STAGES "
            + " ".join(
                f"{key}_s={v:.3f} ({v / t.size * 1e9:.0f} ns/sample)" for key, v in st.items()
            )
            + f" sum_s={tot:.3f} -> {t.size / tot:.3g} samples/s (CPU time, best of {len(st_runs)})"
        )
    if args.orient_warm:
        ow = min(orient_warm(t, acc, gyr, fs) for _ in range(max(1, args.repeat)))
        print(f"ORIENT_WARM {ow:.1f} ns/sample (CPU, best of {max(1, args.repeat)})")
    if args.feed:
        m = int(10 * 60 * fs)
        packets = wire_packets(t[:m], acc[:m], gyr[:m])
        feed_cost(packets[:600], 10, False, 1)  # warm-up
        cells = [
            f"{b}pkt_{'sqlite' if st else 'nosink'}_us={feed_cost(packets, b, st, args.repeat):.1f}"
            for b in (1, 10)
            for st in (False, True)
        ]
        print(
            "FEED "
            + " ".join(cells)
            + f"  # CPU us per Pipeline.feed_packets call, 10-sample packets, {len(packets)} packets"
        )
    # live: 20-sample packets through the stream wrapper (30 min)
    an = GaitAnalyzer(has_gyro=True, sample_rate_hz=fs)
    m = min(t.size, int(30 * 60 * fs))
    lat = np.empty((m - 20) // 20 + 1)
    q = 0
    for a in range(0, m - 20, 20):
        s = time.perf_counter()
        an.push(t[a : a + 20], acc[a : a + 20], gyr[a : a + 20])
        lat[q] = time.perf_counter() - s
        q += 1
    p99 = float(np.percentile(lat[:q], 99)) * 1e3
    print(
        f"BENCH samples_per_s={sps:.3g} packet_p99_ms={p99:.3f} marathon_s={marathon:.2f}"
        f"  # {t.size} samples ({args.hours:g} h simulated, 200 Hz), {n_steps} steps,"
        f" CPU {cpu:.2f} s = {t.size / cpu:.3g} samples/s, first run in the process {first:.2f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
