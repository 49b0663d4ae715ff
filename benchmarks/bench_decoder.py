"""Decoder throughput: ``python -m benchmarks.bench_decoder [--packets N] [--samples-per-packet n]``.

Prints one line per case::

    BENCH decoder_packets_per_s=<n> samples_per_s=<n> batch=<packets per decode() call>

``batch=all`` decodes the whole stream in one call (replay of a recording); ``batch=1`` is the live
case (one decode() call per BLE notification); ``batch=10`` is one MQTT raw batch (0.5 s at 200 Hz).
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from firmware_interface.decoder import PacketDecoder
from firmware_interface.protocol import encode_data_packet


def make_packets(count: int, n: int, seed: int = 0) -> list[bytes]:
    """``count`` valid packets of ``n`` random samples at 400 Hz."""
    rng = np.random.default_rng(seed)
    raw = rng.integers(-32768, 32768, (count, n, 6)).astype(np.int16)
    step_us = n * 1_000_000 // 400
    return [encode_data_packet(i, i * step_us, 400, 16, 2000, raw[i]) for i in range(count)]


def bench(packets: list[bytes], batch: int, repeats: int) -> tuple[float, int]:
    """Best-of-``repeats`` wall time of decoding ``packets`` in batches; returns (s, samples)."""
    best_s = float("inf")
    samples = 0
    for _ in range(repeats):
        dec = PacketDecoder()
        t = time.perf_counter()
        samples = sum(
            len(dec.decode(packets[i : i + batch])) for i in range(0, len(packets), batch)
        )
        best_s = min(best_s, time.perf_counter() - t)
        assert dec.stats.decoded == len(packets)
    return best_s, samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--packets", type=int, default=200_000)
    parser.add_argument("--live-packets", type=int, default=20_000)
    parser.add_argument("--samples-per-packet", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    packets = make_packets(args.packets, args.samples_per_packet)
    cases = [
        ("all", packets, len(packets)),
        ("1000", packets, 1000),
        ("10", packets[: args.live_packets], 10),
        ("1", packets[: args.live_packets], 1),
    ]
    for label, pkts, batch in cases:
        seconds, samples = bench(pkts, batch, args.repeats)
        print(
            f"BENCH decoder_packets_per_s={len(pkts) / seconds:.0f} "
            f"samples_per_s={samples / seconds:.0f} batch={label}"
        )


if __name__ == "__main__":
    main()
