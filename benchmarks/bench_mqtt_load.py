"""MQTT bridge load test: N simulated phones at 200 Hz against ONE ``imu serve`` process.

``python -m benchmarks.bench_mqtt_load --runners 100 300 1000 --seconds 60``

Everything runs on loopback: a fresh Mosquitto (``tests/mqtt_broker.py``, ``max_queued_messages``
raised; or ``--mqtt URL``), one server process (``imu serve --no-store`` unless ``--store``; the
bench waits for its first stats message, i.e. after its pipeline warm-up), ``--procs``
load-generator processes. A simulated run is generated once; every phone replays it from its own
offset (so phones are out of phase), sending one raw batch every ``--batch`` seconds (session
starts spread over ``--stagger`` s), then ``status stop``, and waits for its summary.

Load generator (``--loadgen``): ``shared`` (default) = each process has ONE paho connection that
publishes (QoS 1, PUBACKs counted in a callback, nothing awaited per message) and subscribes for
all its phones; the broker has no ACL here, so this is allowed, and the server sees exactly the
same topics and stream. ``per-phone`` = one aiomqtt connection per phone (the original
generator; at N >= 500 on 2 cores it costs more CPU than the server).

Measured (per N):

* ``packets/s``: sensor packets the server received per second (its summary ``packets_in``).
* ``lost``: packets sent by the phones (PUBACKed) minus packets the server received, plus
  packets the server dropped for overload; sessions without a summary count all their packets.
* ``step`` latency (**the criterion**): arrival at the phone of a step's metrics minus the time
  the phone sent the raw batch carrying the packet with the step's *closing* initial contact
  (IC_{k+1} = time_s + 60/cadence; step k cannot exist before it). It includes the DSP's
  look-ahead after IC_{k+1}, the server's reorder wait, queueing, decode/DSP, MQTT both ways.
  PASS = no lost packet, every summary, ``p99 step`` <= 250 ms.
* ``emit`` latency: arrival of a ``steps`` message minus the send time of the raw batch echoed
  in it (the *newest* batch of the processing call that produced it): under overload, when one
  call feeds several batches, it under-states the delay; shown for comparison only.
* CPU: server / broker / load generators / everything else on the machine (other jobs), % of
  one core over the measured phase (/proc/<pid>/stat, /proc/stat).

Steps of the first ``--warmup`` seconds are not counted (numba compilation in a fresh server).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import pickle
import random
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")


def _cpu_s(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def _machine_cpu_s() -> float:
    """CPU seconds (user+nice+system+irq+softirq) of the whole machine, all cores."""
    f = Path("/proc/stat").read_text().split("\n", 1)[0].split()
    return sum(int(x) for x in (f[1], f[2], f[3], f[6], f[7])) / CLK_TCK


# --- load generator (child process) --------------------------------------------------------------
async def _loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    import aiomqtt

    from firmware_interface.bridge import Status, encode_raw_batch, encode_status, topic

    with Path(spec["packets_file"]).open("rb") as f:
        data = pickle.load(f)
    packets: list[bytes] = data["packets"]
    end_t = np.asarray(data["end_t"])
    first_t = np.asarray(data["first_t"])
    ppb: int = spec["packets_per_batch"]
    batch_s: float = spec["batch_s"]
    n_batches: int = spec["n_batches"]
    runners: list[dict[str, Any]] = spec["runners"]
    warmup_s: float = spec["warmup_s"]
    emit: list[float] = []
    close: list[float] = []
    state: dict[str, dict[str, Any]] = {}
    t_start = spec["t_start_monotonic_wall"]

    async def reader(r: dict[str, Any], client: aiomqtt.Client) -> None:
        st = state[r["runner"]]
        async for msg in client.messages:
            now = time.monotonic()
            obj = json.loads(msg.payload)
            if obj["type"] == "steps":
                sent = st["sent"]
                b = obj.get("batch")
                t_b = sent[b] if b is not None and b < len(sent) else None
                for s in obj["steps"]:
                    st["steps"] += 1
                    if t_b is None or t_b - t_start < warmup_s:
                        continue
                    emit.append(now - t_b)
                    cad = s.get("cadence_spm")
                    if cad:
                        t_close = first_t[r["offset"]] + s["time_s"] + 60.0 / cad
                        j = int(np.searchsorted(end_t, t_close - 1e-9))
                        k = (j - r["offset"]) // ppb
                        if 0 <= k < len(sent) and sent[k] is not None:
                            close.append(now - sent[k])
            elif obj["type"] == "summary":
                st["summary"] = obj
                st["done"].set()
                return

    async def phone(r: dict[str, Any]) -> None:
        runner, sess, off = r["runner"], r["session"], r["offset"]
        st = state[runner] = {
            "sent": [None] * n_batches,
            "acked": 0,
            "steps": 0,
            "summary": None,
            "done": asyncio.Event(),
            "errors": 0,
            "t0": 0.0,
        }
        async with aiomqtt.Client(
            "127.0.0.1",
            spec["port"],
            identifier=f"lg-{runner}",
            protocol=aiomqtt.ProtocolVersion.V5,
            timeout=60,
            max_inflight_messages=20,
            socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
        ) as client:
            client.pending_calls_threshold = 1000
            await client.subscribe(topic(runner, sess, "steps"), qos=spec["steps_qos"])
            rd = asyncio.create_task(reader(r, client))
            raw_t = topic(runner, sess, "raw")
            status_t = topic(runner, sess, "status")
            await client.publish(
                status_t,
                encode_status(Status(type="start", start_utc_s=time.time(), sample_rate_hz=200.0)),
                qos=1,
            )
            # session starts spread evenly over --stagger seconds (real runners do not start in step)
            t0 = t_start + r["phase"]
            st["t0"] = t0
            pending: set[asyncio.Task[None]] = set()

            async def pub(k: int, payload: bytes) -> None:
                try:
                    await client.publish(raw_t, payload, qos=1)
                    st["acked"] += ppb
                except aiomqtt.MqttError:
                    st["errors"] += 1

            for k in range(n_batches):
                due = t0 + (k + 1) * batch_s
                delay = due - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                lo = off + k * ppb
                now_us = int(time.time() * 1e6)
                payload = encode_raw_batch(k, [(now_us, p) for p in packets[lo : lo + ppb]])
                st["sent"][k] = time.monotonic()
                t = asyncio.create_task(pub(k, payload))
                pending.add(t)
                t.add_done_callback(pending.discard)
            if pending:
                await asyncio.gather(*pending)
            await client.publish(status_t, encode_status(Status(type="stop")), qos=1)
            try:
                await asyncio.wait_for(st["done"].wait(), spec["results_timeout_s"])
            except TimeoutError:
                rd.cancel()

    results = await asyncio.gather(*(phone(r) for r in runners), return_exceptions=True)
    failures = [repr(x) for x in results if isinstance(x, BaseException)]
    per = []
    for r in runners:
        st = state.get(r["runner"], {})
        summ = st.get("summary") or {}
        bridge = summ.get("bridge") or {}
        per.append(
            {
                "runner": r["runner"],
                "acked_packets": st.get("acked", 0),
                "server_packets_in": bridge.get("packets_in"),
                "overload_dropped": bridge.get("overload_dropped", 0),
                "steps": st.get("steps", 0),
                "errors": st.get("errors", 0),
            }
        )
    return {"emit": emit, "close": close, "per_runner": per, "failures": failures[:5]}


def _loadgen_shared(spec: dict[str, Any]) -> dict[str, Any]:
    """Light load generator: ONE paho connection (network thread) publishes for all its runners.

    The bench broker is anonymous without ACL, so one connection may publish under every runner's
    topics; to the server this is the same stream as one connection per phone (same topics,
    batches, QoS 1, pacing). PUBACKs are counted in ``on_publish`` (no task or await per
    message); steps arrive on per-runner subscriptions of the same connection.
    """
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    from firmware_interface.bridge import Status, encode_raw_batch, encode_status, topic

    with Path(spec["packets_file"]).open("rb") as f:
        data = pickle.load(f)
    packets: list[bytes] = data["packets"]
    end_t = np.asarray(data["end_t"])
    first_t = np.asarray(data["first_t"])
    ppb: int = spec["packets_per_batch"]
    batch_s: float = spec["batch_s"]
    n_batches: int = spec["n_batches"]
    runners: list[dict[str, Any]] = spec["runners"]
    warmup_s: float = spec["warmup_s"]
    t_start = spec["t_start_monotonic_wall"]
    emit: list[float] = []
    close: list[float] = []
    by_topic: dict[str, int] = {}
    sent = [[0.0] * n_batches for _ in runners]
    acked = [0] * len(runners)
    steps = [0] * len(runners)
    summaries: list[dict[str, Any] | None] = [None] * len(runners)
    mids: dict[int, tuple[int, int]] = {}
    lock = threading.Lock()
    all_done = threading.Event()
    n_done = [0]
    for i, r in enumerate(runners):
        by_topic[topic(r["runner"], r["session"], "steps")] = i

    early: set[int] = set()  # PUBACKs that arrived before publish() returned the mid

    def on_publish(c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
        if getattr(rc, "is_failure", False):
            return
        with lock:
            item = mids.pop(mid, None)
            if item is None:
                early.add(mid)
            else:
                acked[item[0]] += item[1]

    def on_message(c: Any, u: Any, msg: Any) -> None:
        now = time.monotonic()
        i = by_topic.get(msg.topic)
        if i is None:
            return
        r = runners[i]
        obj = json.loads(msg.payload)
        if obj["type"] == "steps":
            b = obj.get("batch")
            t_b = sent[i][b] if b is not None and 0 <= b < n_batches and sent[i][b] else None
            for s in obj["steps"]:
                steps[i] += 1
                if t_b is None or t_b - t_start < warmup_s:
                    continue
                emit.append(now - t_b)
                cad = s.get("cadence_spm")
                if cad:
                    t_close = first_t[r["offset"]] + s["time_s"] + 60.0 / cad
                    j = int(np.searchsorted(end_t, t_close - 1e-9))
                    k = (j - r["offset"]) // ppb
                    if 0 <= k < n_batches and sent[i][k]:
                        close.append(now - sent[i][k])
        elif obj["type"] == "summary" and summaries[i] is None:
            summaries[i] = obj
            n_done[0] += 1
            if n_done[0] == len(runners):
                all_done.set()

    client = mqtt.Client(
        CallbackAPIVersion.VERSION2,
        client_id=f"lg-shared-{os.getpid()}",
        protocol=mqtt.MQTTv5,
    )
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.on_publish = on_publish
    client.on_message = on_message
    client.connect("127.0.0.1", spec["port"], keepalive=60)
    sock = client.socket()
    if isinstance(sock, socket.socket):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client.loop_start()

    def publish(t: str, payload: bytes, i: int, npk: int) -> None:
        # never hold `lock` inside paho: its network thread calls on_publish with paho's locks held
        info = client.publish(t, payload, qos=1)
        with lock:
            if info.mid in early:
                early.discard(info.mid)
                acked[i] += npk
            else:
                mids[info.mid] = (i, npk)

    try:
        topics = list(by_topic)
        for j in range(0, len(topics), 100):
            res, _ = client.subscribe([(t, spec["steps_qos"]) for t in topics[j : j + 100]])
            if res != mqtt.MQTT_ERR_SUCCESS:
                raise RuntimeError(f"subscribe failed: {res}")
        time.sleep(0.5)  # SUBACKs
        for i, r in enumerate(runners):
            start = Status(type="start", start_utc_s=time.time(), sample_rate_hz=200.0)
            publish(topic(r["runner"], r["session"], "status"), encode_status(start), i, 0)
        raw_t = [topic(r["runner"], r["session"], "raw") for r in runners]
        # send schedule: runner i's batch k is due at t_start + phase_i + (k + 1) * batch_s
        schedule = sorted(
            (t_start + r["phase"] + (k + 1) * batch_s, i, k)
            for i, r in enumerate(runners)
            for k in range(n_batches)
        )
        for due, i, k in schedule:
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            lo = runners[i]["offset"] + k * ppb
            now_us = int(time.time() * 1e6)
            payload = encode_raw_batch(k, [(now_us, p) for p in packets[lo : lo + ppb]])
            sent[i][k] = time.monotonic()
            publish(raw_t[i], payload, i, ppb)
        deadline = time.monotonic() + 60
        while mids and time.monotonic() < deadline:  # PUBACKs of the raw batches
            time.sleep(0.05)
        for i, r in enumerate(runners):
            publish(
                topic(r["runner"], r["session"], "status"), encode_status(Status(type="stop")), i, 0
            )
        all_done.wait(spec["results_timeout_s"])
    finally:
        client.disconnect()
        client.loop_stop()
    per = []
    for i, r in enumerate(runners):
        bridge = (summaries[i] or {}).get("bridge") or {}
        per.append(
            {
                "runner": r["runner"],
                "acked_packets": acked[i],
                "server_packets_in": bridge.get("packets_in"),
                "overload_dropped": bridge.get("overload_dropped", 0),
                "steps": steps[i],
                "errors": 0,
            }
        )
    return {"emit": emit, "close": close, "per_runner": per, "failures": []}


def _loadgen_main(spec_file: str, out_file: str) -> None:
    import logging

    logging.getLogger("mqtt").setLevel(logging.ERROR)
    spec = json.loads(Path(spec_file).read_text())
    import gc

    gc.collect()
    gc.freeze()  # no full-collection pauses over the imported modules while timing
    per_phone = spec.get("mode") == "per-phone"
    res = asyncio.run(_loadgen(spec)) if per_phone else _loadgen_shared(spec)
    Path(out_file).write_text(json.dumps(res))


def _wait_server_ready(host: str, port: int, server_id: str, timeout_s: float) -> float:
    """Seconds until the server's first stats message (it connects after its warm-up)."""
    import threading

    import paho.mqtt.client as mqtt
    from paho.mqtt.enums import CallbackAPIVersion

    got = threading.Event()
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"bench-wait-{os.getpid()}")
    c.on_message = lambda *a: got.set()
    t0 = time.monotonic()
    c.connect(host, port)
    c.subscribe(f"imu/_server/{server_id}/stats", 0)
    c.loop_start()
    try:
        if not got.wait(timeout_s):
            raise RuntimeError(f"server not ready after {timeout_s:.0f} s")
    finally:
        c.disconnect()
        c.loop_stop()
    return time.monotonic() - t0


# --- orchestration ------------------------------------------------------------------------------
def _prepare_packets(seconds: float, seed: int, workdir: Path) -> tuple[Path, int, float]:
    from simulators import simulate_run
    from simulators.phone import packet_end_times

    minutes = (seconds + 90) / 60
    run = simulate_run(minutes, seed)
    pk = [p for _, p in run.packets]
    end_t = packet_end_times(pk)
    rate = len(pk) / (run.packets[-1][0] - run.packets[0][0])
    path = workdir / "packets.pkl"
    with path.open("wb") as f:
        pickle.dump(
            {"packets": pk, "end_t": end_t.tolist(), "first_t": _first_sample_times(pk).tolist()}, f
        )
    return path, len(pk), rate


def _first_sample_times(packets: list[bytes]) -> np.ndarray:
    from simulators.phone import packet_end_times

    ends = packet_end_times(packets)
    n = np.array([p[13] if len(p) > 13 else 1 for p in packets], dtype=float)
    rate = np.array(
        [int.from_bytes(p[8:10], "little") if len(p) > 10 else 200 for p in packets], dtype=float
    )
    rate[rate <= 0] = 200.0
    return ends - (n - 1) / rate


def run_one(
    n_runners: int,
    args: argparse.Namespace,
    workdir: Path,
    packets_file: Path,
    n_packets: int,
    pkt_rate: float,
) -> dict[str, Any]:
    sys.path.insert(0, str(ROOT / "tests"))
    from mqtt_broker import Mosquitto

    broker = None
    if args.mqtt:
        from urllib.parse import urlsplit

        u = urlsplit(args.mqtt)
        host, port = u.hostname or "127.0.0.1", u.port or 1883
        if host not in ("127.0.0.1", "localhost", "::1"):
            raise SystemExit("only loopback brokers")
    else:
        broker = Mosquitto(workdir / f"mosq-{n_runners}", persistence=False)
        broker.start()
        host, port = broker.host, broker.port
    serve_args = [
        sys.executable, "-c", "import sys; from imu.cli_mqtt import serve; sys.argv[0]='imu serve'; serve()",
        "--mqtt", f"mqtt://{host}:{port}", "--server-id", "bench", "--stats-interval", "2",
        "--steps-qos", str(args.steps_qos),
    ]  # fmt: skip
    serve_args += (
        ["--store", str(workdir / f"bench-{n_runners}.db")] if args.store else ["--no-store"]
    )
    slog = (workdir / f"server-{n_runners}.log").open("wb")
    server = subprocess.Popen(serve_args, cwd=ROOT, stdout=slog, stderr=subprocess.STDOUT)
    try:
        _wait_server_ready(host, port, "bench", 300.0)
    except BaseException:
        server.kill()
        if broker is not None:
            broker.stop()
        raise
    ppb = max(1, round(args.batch * pkt_rate))
    n_batches = int(args.seconds / args.batch)
    max_off = n_packets - n_batches * ppb - 1
    rng = random.Random(args.seed)
    runners = [
        {
            "runner": f"lg{i:05d}",
            "session": f"b{n_runners}",
            "offset": rng.randrange(0, max(1, min(max_off, int(60 * pkt_rate)))),
            "phase": args.stagger * i / n_runners,
        }
        for i in range(n_runners)
    ]
    procs = max(1, min(args.procs, n_runners))
    t_start = time.monotonic() + 3.0 + n_runners / 400  # time to connect everyone
    loadgens = []
    for p in range(procs):
        spec = {
            "packets_file": str(packets_file), "port": port, "packets_per_batch": ppb, "batch_s": args.batch,
            "n_batches": n_batches, "runners": runners[p::procs], "warmup_s": args.warmup,
            "t_start_monotonic_wall": t_start, "results_timeout_s": 30.0 + n_runners / 50, "steps_qos": args.steps_qos,
            "mode": args.loadgen,
        }  # fmt: skip
        sf, of = workdir / f"spec-{n_runners}-{p}.json", workdir / f"out-{n_runners}-{p}.json"
        sf.write_text(json.dumps(spec))
        lf = (workdir / f"loadgen-{n_runners}-{p}.log").open("wb")
        cmd = [sys.executable, "-m", "benchmarks.bench_mqtt_load", "--_loadgen", str(sf), str(of)]
        loadgens.append((subprocess.Popen(cmd, cwd=ROOT, stdout=lf, stderr=subprocess.STDOUT), of))
    pids = {
        "server": [server.pid],
        "broker": [broker.pid] if broker and broker.pid else [],
        "loadgen": [lg.pid for lg, _ in loadgens],
    }
    time.sleep(max(0.0, t_start - time.monotonic()) + args.warmup)
    cpu0 = {k: sum(_cpu_s(p) for p in v) for k, v in pids.items()}
    cpu0["machine"] = _machine_cpu_s()
    w0 = time.monotonic()
    time.sleep(max(1.0, args.seconds - args.warmup - 1.0))
    cpu1 = {k: sum(_cpu_s(p) for p in v) for k, v in pids.items()}
    cpu1["machine"] = _machine_cpu_s()
    wall = time.monotonic() - w0
    try:
        for lg, _ in loadgens:
            lg.wait(timeout=args.seconds + 120 + n_runners / 10)
    finally:
        server.terminate()
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
        for lg, _ in loadgens:
            if lg.poll() is None:
                lg.kill()
        if broker is not None:
            broker.stop()
    emit: list[float] = []
    close: list[float] = []
    per: list[dict[str, Any]] = []
    failures: list[str] = []
    for _, of in loadgens:
        if not of.exists():
            failures.append(f"{of.name}: load generator produced no result")
            continue
        res = json.loads(of.read_text())
        emit += res["emit"]
        close += res["close"]
        per += res["per_runner"]
        failures += res["failures"]
    acked = sum(p["acked_packets"] for p in per)
    received = sum(p["server_packets_in"] or 0 for p in per)
    missing_summary = sum(p["server_packets_in"] is None for p in per)
    lost = sum(
        max(0, p["acked_packets"] - (p["server_packets_in"] or 0)) + (p["overload_dropped"] or 0)
        for p in per
    )
    lost += (n_runners - len(per)) * n_batches * ppb

    def pct(x: list[float], q: float) -> float:
        return float(np.percentile(x, q)) * 1000 if x else math.nan

    return {
        "runners": n_runners,
        "packets_per_s": received / args.seconds,
        "messages_per_s": n_runners / args.batch,
        "acked": acked,
        "received": received,
        "lost": lost,
        "missing_summaries": missing_summary,
        "steps": len(emit),
        "p50_emit_ms": pct(emit, 50),
        "p99_emit_ms": pct(emit, 99),
        "p50_step_ms": pct(close, 50),
        "p99_step_ms": pct(close, 99),
        "p90_step_ms": pct(close, 90),
        "p95_step_ms": pct(close, 95),
        "step_over_250ms_pct": 100 * float(np.mean(np.asarray(close) > 0.25))
        if close
        else math.nan,
        "emit_over_250ms_pct": 100 * float(np.mean(np.asarray(emit) > 0.25)) if emit else math.nan,
        "cpu_server_pct": 100 * (cpu1["server"] - cpu0["server"]) / wall,
        "cpu_broker_pct": 100 * (cpu1["broker"] - cpu0["broker"]) / wall,
        "cpu_loadgen_pct": 100 * (cpu1["loadgen"] - cpu0["loadgen"]) / wall,
        # everything else on the machine (other jobs; the bench's own orchestration)
        "cpu_other_pct": 100
        * (
            cpu1["machine"]
            - cpu0["machine"]
            - sum(cpu1[k] - cpu0[k] for k in ("server", "broker", "loadgen"))
        )
        / wall,
        "cores": os.cpu_count(),
        "failures": failures[:3],
    }


def main() -> None:
    if len(sys.argv) == 4 and sys.argv[1] == "--_loadgen":
        _loadgen_main(sys.argv[2], sys.argv[3])
        return
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument(
        "--runners",
        type=int,
        nargs="+",
        default=[100],
        help="N values to run (one fresh server + broker each)",
    )
    ap.add_argument("--seconds", type=float, default=60.0, help="sending phase per N (bounded run)")
    ap.add_argument("--batch", type=float, default=0.5, help="seconds of packets per raw message")
    ap.add_argument("--procs", type=int, default=2, help="load-generator processes")
    ap.add_argument(
        "--stagger", type=float, default=10.0, help="session starts spread over this many seconds"
    )
    ap.add_argument(
        "--warmup",
        type=float,
        default=13.0,
        help="seconds after the first start not measured (>= stagger)",
    )
    ap.add_argument("--steps-qos", type=int, default=1, choices=(0, 1))
    ap.add_argument(
        "--loadgen",
        choices=("shared", "per-phone"),
        default="shared",
        help="shared: one paho connection per load-generator process publishes for all its phones "
        "(light); per-phone: one aiomqtt connection per phone (heavy: 2 cores cannot drive 1000)",
    )
    ap.add_argument(
        "--store",
        action="store_true",
        help="server writes to an embedded store (default --no-store)",
    )
    ap.add_argument("--mqtt", help="use this loopback broker instead of starting one")
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="also print each result as JSON")
    args = ap.parse_args()
    if args.seconds > 600 or max(args.runners) > 5000:
        raise SystemExit("bounded runs only: --seconds <= 600, --runners <= 5000")
    if args.seconds < args.warmup + 5:
        raise SystemExit("--seconds must exceed --warmup by 5 s or more")
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        workdir = Path(tmp)
        packets_file, n_packets, pkt_rate = _prepare_packets(args.seconds, args.seed, workdir)
        print(
            f"# {pkt_rate:.1f} packets/s per phone, batch {args.batch} s, {args.seconds:.0f} s per run, steps QoS {args.steps_qos}, store {'on' if args.store else 'off'}"
        )
        print(
            f"{'N':>6} {'packets/s':>10} {'lost':>6} {'no-summary':>10} {'p50 emit':>9} {'p99 emit':>9} {'p50 step':>9} {'p99 step':>9} {'CPU srv%':>8} {'broker%':>8} {'loadgen%':>8} {'other%':>7}  pass"
        )
        for n in args.runners:
            r = run_one(n, args, workdir, packets_file, n_packets, pkt_rate)
            ok = r["lost"] == 0 and r["missing_summaries"] == 0 and r["p99_step_ms"] <= 250
            print(
                f"{n:>6} {r['packets_per_s']:>10.0f} {r['lost']:>6} {r['missing_summaries']:>10} {r['p50_emit_ms']:>9.0f} {r['p99_emit_ms']:>9.0f} "
                f"{r['p50_step_ms']:>9.0f} {r['p99_step_ms']:>9.0f} {r['cpu_server_pct']:>8.0f} {r['cpu_broker_pct']:>8.0f} {r['cpu_loadgen_pct']:>8.0f} {r['cpu_other_pct']:>7.0f}  {'yes' if ok else 'NO'}",
                flush=True,
            )
            if r["failures"]:
                print(f"#   failures: {r['failures']}")
            if args.json:
                print(json.dumps(r))


if __name__ == "__main__":
    main()
