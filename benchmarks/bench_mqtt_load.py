"""MQTT bridge load test: N simulated phones at 200 Hz against ONE ``imu serve`` process.

``python -m benchmarks.bench_mqtt_load --runners 1 200 500 1000 --seconds 40`` (the issue-6 table)

Everything runs on loopback: a fresh Mosquitto (``tests/mqtt_broker.py``, ``max_queued_messages``
raised; or ``--mqtt URL``), one server process (``imu serve --no-store`` unless ``--store``, plus
any ``--server-arg``; the bench waits for its first stats message, i.e. after its pipeline
warm-up) and ``--procs`` load-generator processes. A simulated run is generated once; every phone
replays it from its own offset in the running part (``--start-s``; the run stands ~20 s and walks
~30 s first), sending one raw batch every ``--batch`` seconds (session starts spread over
``--stagger`` s), then ``status stop``, and waits for its summary. Every payload is encoded before
the start (``rx_time_us`` = its planned send time).

Load generator: ONE MQTT connection per process publishes and subscribes for all its phones (the
bench broker has no ACL; to the server this is the same stream as one connection per phone: same
topics, batches, QoS 1, pacing). ``--phone-mqtt 3.1.1`` (default): a minimal raw-socket client
(pre-encoded PUBLISH packets, one ``sendall`` per group of due batches, PUBACKs and steps parsed
by the server's stream parser): ~4 % of a core at N = 200 where paho needed ~15 %, which on the
2-core VM came out of the server's share. ``--phone-mqtt 5``: paho with MQTT v5.

Measured per N (columns explained in ``LEGEND``, printed with the table):

* ``lost``: packets sent by the phones (PUBACKed) minus packets the server received, plus
  packets the server dropped for overload; sessions without a summary count all their packets.
* Step latency of RUNNING steps (the criterion): arrival at the phone minus the moment the
  sensor sampled the step's *closing* initial contact (IC_{k+1} = time_s + 60/cadence; step k
  cannot exist before it). That moment is mapped to the load generator's clock through the batch
  carrying it: due time of the batch minus (end of its last packet - contact time); the bench
  models no BLE delay (real links add ~10-20 ms) and a phone that sends each batch when its span
  ends. It includes the DSP's look-ahead, the phone's batching, any load-generator lag (reported
  as ``late99``), the server's queueing, reorder wait and processing, and MQTT both ways.
  Also reported: from the step's OWN contact (one step time more: ~0.35 s when running, so a
  250 ms target can only mean the closing contact), from the send of the batch carrying the
  closing contact (the earlier definition), and walking steps separately (their toe-off is
  found after the next contact: ~300 ms of DSP look-ahead).
* CPU: server / broker / load generators / everything else on the machine (other jobs), % of
  one core over the measured phase (/proc/<pid>/stat, /proc/stat), and the 1-minute load
  average at the start and end of each run.

``--components`` prints only the in-process CPU cost per pipeline call of the server's parts (see
:func:`components`).

Steps of the first ``--warmup`` seconds are not counted. ``BENCH_PYSPY=/path/to/py-spy`` records
the server with py-spy (raw collapsed stacks to ``BENCH_PYSPY_OUT``) during the measured phase.
"""

from __future__ import annotations

import argparse
import contextlib
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
def _mqtt_packet(first: int, body: bytes) -> bytes:
    from imu.server import mqtt_fixed_header  # the server's encoder (imported by the children)

    return mqtt_fixed_header(first, len(body)) + body


def _str16(b: bytes) -> bytes:
    return len(b).to_bytes(2, "big") + b


class _RawMqtt:
    """A minimal MQTT 3.1.1 client for the load generator: QoS 1 publishes pre-encoded and sent
    back to back in one ``sendall`` per due group, PUBACKs and incoming PUBLISHes parsed by
    :func:`imu.server.parse_mqtt_stream` in a reader thread. (paho costs ~4x more CPU per message,
    which on the 2-core VM came out of the server's share.)
    """

    def __init__(
        self,
        port: int,
        client_id: str,
        on_puback: Any,
        on_message: Any,
    ) -> None:
        import threading

        self._sock = socket.create_connection(("127.0.0.1", port))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._send_lock = threading.Lock()
        self._on_puback = on_puback
        self._on_message = on_message
        self._mid = 0
        body = _str16(b"MQTT") + bytes((4, 0x02)) + (0).to_bytes(2, "big")  # clean, no keepalive
        self._sock.sendall(_mqtt_packet(0x10, body + _str16(client_id.encode())))
        connack = self._sock.recv(4)
        if len(connack) != 4 or connack[0] != 0x20 or connack[3] != 0:
            raise RuntimeError(f"CONNACK refused: {connack!r}")
        self.subacks = 0
        self._reader = threading.Thread(target=self._read, name="lg-reader", daemon=True)
        self._reader.start()

    def next_mid(self) -> int:
        self._mid = self._mid % 65535 + 1
        return self._mid

    @staticmethod
    def publish_packet(topic_b: bytes, payload: bytes, mid: int) -> bytes:
        return _mqtt_packet(0x32, _str16(topic_b) + mid.to_bytes(2, "big") + payload)

    def send(self, data: bytes) -> None:
        with self._send_lock:
            self._sock.sendall(data)

    def subscribe(self, topics: list[str], qos: int) -> None:
        body = self.next_mid().to_bytes(2, "big")
        body += b"".join(_str16(t.encode()) + bytes((qos,)) for t in topics)
        self.send(_mqtt_packet(0x82, body))

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.send(b"\xe0\x00")  # DISCONNECT
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._reader.join(5)
        self._sock.close()

    def _read(self) -> None:
        from imu.server import parse_mqtt_stream

        buf = bytearray()
        while True:
            try:
                data = self._sock.recv(1 << 18)
            except OSError:
                return
            if not data:
                return
            buf += data
            used, packets = parse_mqtt_stream(buf, v5=False)
            acks = bytearray()
            for cmd, topic_b, body, mid in packets:
                kind = cmd & 0xF0
                if kind == 0x40:  # PUBACK of one of our publishes
                    self._on_puback((body[0] << 8) | body[1])
                elif kind == 0x90:
                    self.subacks += 1
                elif kind == 0x30:
                    if mid < 0:  # QoS 0: topic still in the body
                        n = (body[0] << 8) | body[1]
                        topic_b, body = body[2 : 2 + n], body[2 + n :]
                    else:
                        acks += bytes((0x40, 2, mid >> 8, mid & 0xFF))
                    self._on_message(bytes(topic_b).decode(), bytes(body))
            del buf[:used]
            if acks:
                self.send(bytes(acks))


def _loadgen(spec: dict[str, Any]) -> dict[str, Any]:
    """ONE paho connection (network thread) publishes and subscribes for all of this process's phones.

    The bench broker is anonymous without ACL, so one connection may publish under every runner's
    topics; to the server this is the same stream as one connection per phone (same topics,
    batches, QoS 1, pacing; MQTT keeps each topic's order either way). Every payload is encoded
    before the start (its ``rx_time_us`` = the planned send time), so the send loop only publishes.
    PUBACKs are counted in ``on_publish``; steps arrive on per-runner subscriptions.
    """
    import threading

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
    t_measure = spec["t_start_monotonic_wall"] + spec["warmup_s"]
    t_start = spec["t_start_monotonic_wall"]
    wall_minus_mono = time.time() - time.monotonic()
    # runner i's batch k is due at due[i] + k * batch_s and carries packets off + k*ppb ...
    due0 = [t_start + r["phase"] + batch_s for r in runners]
    payloads = [
        [
            encode_raw_batch(
                k,
                [
                    (int((due0[i] + k * batch_s + wall_minus_mono) * 1e6), p)
                    for p in packets[r["offset"] + k * ppb : r["offset"] + (k + 1) * ppb]
                ],
            )
            for k in range(n_batches)
        ]
        for i, r in enumerate(runners)
    ]
    # per step: (activity, lat_close_ic, lat_own_ic, lat_close_batch, lat_emit)
    rows: list[tuple[int, float, float, float, float]] = []
    late: list[float] = []  # send time minus due time of each raw batch
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
    activity_code = {"running": 2, "walking": 1}

    def wall_of(i: int, t_data: float) -> float | None:
        """When the phone-side sensor sampled data time ``t_data`` (monotonic clock).

        The batch carrying that sample is due at ``due``; its last packet ends at ``end``: the
        sample was taken ``end - t_data`` before (the bench models no BLE delay and a phone that
        sends a batch as its last packet arrives).
        """
        off = runners[i]["offset"]
        j = int(np.searchsorted(end_t, t_data - 1e-9))
        k = (j - off) // ppb
        if not 0 <= k < n_batches:
            return None
        last = min(off + (k + 1) * ppb, len(end_t)) - 1
        return due0[i] + k * batch_s - (end_t[last] - t_data)

    def batch_of(i: int, t_data: float) -> int:
        j = int(np.searchsorted(end_t, t_data - 1e-9))
        return (j - runners[i]["offset"]) // ppb

    def on_ack(mid: int) -> None:
        with lock:
            item = mids.pop(mid, None)
            if item is not None:
                acked[item[0]] += item[1]

    def on_message(topic_name: str, payload: bytes) -> None:
        now = time.monotonic()
        i = by_topic.get(topic_name)
        if i is None:
            return
        r = runners[i]
        obj = json.loads(payload)
        if obj["type"] == "steps":
            b = obj.get("batch")
            t_b = sent[i][b] if b is not None and 0 <= b < n_batches and sent[i][b] else math.nan
            origin = first_t[r["offset"]]  # the pipeline's session time 0: the first sample
            for s in obj["steps"]:
                steps[i] += 1
                cad = s.get("cadence_spm")
                if not cad:
                    continue
                t_own = origin + s["time_s"]
                t_close = t_own + 60.0 / cad
                w_own, w_close = wall_of(i, t_own), wall_of(i, t_close)
                if w_own is None or w_close is None or w_own < t_measure:
                    continue
                kc = batch_of(i, t_close)
                rows.append(
                    (
                        activity_code.get(s.get("activity"), 0),
                        now - w_close,
                        now - w_own,
                        now - sent[i][kc] if sent[i][kc] else math.nan,
                        now - t_b,
                    )
                )
        elif obj["type"] == "summary" and summaries[i] is None:
            summaries[i] = obj
            n_done[0] += 1
            if n_done[0] == len(runners):
                all_done.set()

    raw = spec["phone_mqtt"] == "3.1.1"
    link: Any
    if raw:
        link = _RawMqtt(spec["port"], f"lg-raw-{os.getpid()}", on_ack, on_message)

        def publish_many(items: list[tuple[str, bytes, int, int]]) -> None:
            data = []
            with lock:
                for t, payload, i, npk in items:
                    mid = link.next_mid()
                    mids[mid] = (i, npk)
                    data.append(_RawMqtt.publish_packet(t.encode(), payload, mid))
            link.send(b"".join(data))
    else:
        import paho.mqtt.client as mqtt
        from paho.mqtt.enums import CallbackAPIVersion

        link = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"lg-paho-{os.getpid()}", protocol=mqtt.MQTTv5
        )
        link.max_inflight_messages_set(1000)
        link.max_queued_messages_set(0)
        early: set[int] = set()  # PUBACKs that arrived before publish() returned the mid

        def on_publish(c: Any, u: Any, mid: int, rc: Any, props: Any) -> None:
            with lock:
                if mid not in mids:
                    early.add(mid)
            on_ack(mid)

        link.on_publish = on_publish
        link.on_message = lambda c, u, msg: on_message(msg.topic, msg.payload)
        link.connect("127.0.0.1", spec["port"], keepalive=60)
        sock = link.socket()
        if isinstance(sock, socket.socket):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        link.loop_start()

        def publish_many(items: list[tuple[str, bytes, int, int]]) -> None:
            # never hold `lock` inside paho: its network thread calls on_publish with its locks
            for t, payload, i, npk in items:
                info = link.publish(t, payload, qos=1)
                with lock:
                    if info.mid in early:
                        early.discard(info.mid)
                        acked[i] += npk
                    else:
                        mids[info.mid] = (i, npk)

    try:
        topics = list(by_topic)
        for j in range(0, len(topics), 100):
            if raw:
                link.subscribe(topics[j : j + 100], spec["steps_qos"])
            else:
                link.subscribe([(t, spec["steps_qos"]) for t in topics[j : j + 100]])
        time.sleep(0.5)  # SUBACKs
        start = encode_status(Status(type="start", start_utc_s=time.time(), sample_rate_hz=200.0))
        publish_many(
            [
                (topic(r["runner"], r["session"], "status"), start, i, 0)
                for i, r in enumerate(runners)
            ]
        )
        raw_t = [topic(r["runner"], r["session"], "raw") for r in runners]
        schedule = sorted(
            (due0[i] + k * batch_s, i, k) for i in range(len(runners)) for k in range(n_batches)
        )
        pos = 0
        while pos < len(schedule):
            delay = schedule[pos][0] - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            now = time.monotonic()
            group = []
            while pos < len(schedule) and schedule[pos][0] <= now:
                due, i, k = schedule[pos]
                pos += 1
                sent[i][k] = now
                group.append((raw_t[i], payloads[i][k], i, ppb))
                if due >= t_measure:
                    late.append(now - due)
            publish_many(group)
        deadline = time.monotonic() + 60
        while mids and time.monotonic() < deadline:  # PUBACKs of the raw batches
            time.sleep(0.05)
        stop = encode_status(Status(type="stop"))
        publish_many(
            [
                (topic(r["runner"], r["session"], "status"), stop, i, 0)
                for i, r in enumerate(runners)
            ]
        )
        all_done.wait(spec["results_timeout_s"])
    finally:
        if raw:
            link.close()
        else:
            link.disconnect()
            link.loop_stop()
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
            }
        )
    return {"rows": rows, "late": late, "per_runner": per}


def _loadgen_main(spec_file: str, out_file: str) -> None:
    import logging

    logging.getLogger("mqtt").setLevel(logging.ERROR)
    spec = json.loads(Path(spec_file).read_text())
    import gc

    gc.collect()
    gc.freeze()  # no full-collection pauses over the imported modules while timing
    Path(out_file).write_text(json.dumps(_loadgen(spec)))


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
        broker = Mosquitto(
            workdir / f"mosq-{n_runners}", persistence=False, max_inflight_messages=1000
        )
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
    serve_args += [a for arg in args.server_arg for a in arg.split()]
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
    lo = int(args.start_s * pkt_rate)
    hi = min(n_packets - n_batches * ppb - 1, lo + int(60 * pkt_rate))
    rng = random.Random(args.seed)
    runners = [
        {
            "runner": f"lg{i:05d}",
            "session": f"b{n_runners}",
            "offset": rng.randrange(lo, max(lo + 1, hi)),
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
            "phone_mqtt": args.phone_mqtt,
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
    if os.environ.get("BENCH_PYSPY"):  # profile the server (py-spy raw/collapsed stacks)
        subprocess.Popen(
            [os.environ["BENCH_PYSPY"], "record", "--pid", str(server.pid), "--format", "raw",
             "--duration", str(int(args.seconds - args.warmup - 2)), "--nonblocking", "-r", "200",
             "-o", os.environ.get("BENCH_PYSPY_OUT", "server-profile.txt")]
        )  # fmt: skip
    load0 = os.getloadavg()[0]
    cpu0 = {k: sum(_cpu_s(p) for p in v) for k, v in pids.items()}
    cpu0["machine"] = _machine_cpu_s()
    w0 = time.monotonic()
    time.sleep(max(1.0, args.seconds - args.warmup - 1.0))
    cpu1 = {k: sum(_cpu_s(p) for p in v) for k, v in pids.items()}
    cpu1["machine"] = _machine_cpu_s()
    wall = time.monotonic() - w0
    load1 = os.getloadavg()[0]
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
    rows: list[list[float]] = []
    late: list[float] = []
    per: list[dict[str, Any]] = []
    failures: list[str] = []
    for _, of in loadgens:
        if not of.exists():
            failures.append(f"{of.name}: load generator produced no result")
            continue
        res = json.loads(of.read_text())
        rows += res["rows"]
        late += res["late"]
        per += res["per_runner"]
    acked = sum(p["acked_packets"] for p in per)
    received = sum(p["server_packets_in"] or 0 for p in per)
    missing_summary = sum(p["server_packets_in"] is None for p in per)
    lost = sum(
        max(0, p["acked_packets"] - (p["server_packets_in"] or 0)) + (p["overload_dropped"] or 0)
        for p in per
    )
    lost += (n_runners - len(per)) * n_batches * ppb
    a = np.asarray(rows, dtype=float).reshape(-1, 5)
    run = a[a[:, 0] == 2]
    walk = a[a[:, 0] != 2]

    def pct(x: np.ndarray, q: float) -> float:
        x = x[np.isfinite(x)]
        return float(np.percentile(x, q)) * 1000 if x.size else math.nan

    cpu = {k: 100 * (cpu1[k] - cpu0[k]) / wall for k in ("server", "broker", "loadgen")}
    machine = 100 * (cpu1["machine"] - cpu0["machine"]) / wall
    return {
        "runners": n_runners,
        "batch_s": args.batch,
        "packets_per_s": received / args.seconds,
        "messages_per_s": n_runners / args.batch,
        "acked": acked,
        "received": received,
        "lost": lost,
        "missing_summaries": missing_summary,
        "steps_running": len(run),
        "steps_other": len(walk),
        # the criterion: running steps, from the closing initial contact (sensor sample time)
        "p50_close_ms": pct(run[:, 1], 50),
        "p90_close_ms": pct(run[:, 1], 90),
        "p99_close_ms": pct(run[:, 1], 99),
        "close_over_250ms_pct": 100 * float(np.mean(run[:, 1] > 0.25)) if len(run) else math.nan,
        "p50_own_ms": pct(run[:, 2], 50),
        "p99_own_ms": pct(run[:, 2], 99),
        "p99_close_batch_ms": pct(run[:, 3], 99),
        "p99_emit_ms": pct(run[:, 4], 99),
        "p99_close_walking_ms": pct(walk[:, 1], 99),
        "p99_send_late_ms": pct(np.asarray(late), 99),
        "cpu_server_pct": cpu["server"],
        "cpu_broker_pct": cpu["broker"],
        "cpu_loadgen_pct": cpu["loadgen"],
        # everything else on the machine (other jobs; the bench's own orchestration)
        "cpu_other_pct": machine - sum(cpu.values()),
        "server_cpu_ms_per_runner_s": 10 * cpu["server"] / n_runners,
        "loadavg_1min": [round(load0, 2), round(load1, 2)],
        "cores": os.cpu_count(),
        "failures": failures[:3],
    }


COLUMNS = (  # (header, result key, format)
    ("N", "runners", "{:>5}"),
    ("pkt/s", "packets_per_s", "{:>6.0f}"),
    ("msg/s", "messages_per_s", "{:>6.0f}"),
    ("lost", "lost", "{:>5}"),
    ("nosum", "missing_summaries", "{:>5}"),
    ("steps", "steps_running", "{:>6}"),
    ("p50cl", "p50_close_ms", "{:>6.0f}"),
    ("p90cl", "p90_close_ms", "{:>6.0f}"),
    ("p99cl", "p99_close_ms", "{:>6.0f}"),
    ("p99own", "p99_own_ms", "{:>6.0f}"),
    ("p99clb", "p99_close_batch_ms", "{:>6.0f}"),
    ("p99wlk", "p99_close_walking_ms", "{:>6.0f}"),
    ("late99", "p99_send_late_ms", "{:>6.0f}"),
    ("srv%", "cpu_server_pct", "{:>5.0f}"),
    ("mq%", "cpu_broker_pct", "{:>4.0f}"),
    ("lg%", "cpu_loadgen_pct", "{:>4.0f}"),
    ("oth%", "cpu_other_pct", "{:>5.0f}"),
    ("ms/rs", "server_cpu_ms_per_runner_s", "{:>5.2f}"),
)
LEGEND = """\
# pkt/s msg/s: sensor packets the server received / raw messages sent, per second; lost: packets
#   PUBACKed by the broker but not received by the server (or dropped for overload); nosum:
#   sessions without a summary; steps: running steps measured.
# Latencies (ms) of RUNNING steps, arrival at the phone minus:
#   p50cl/p90cl/p99cl  the step's CLOSING initial contact (the next contact: a step's metrics
#                      cannot exist earlier), as the time the sensor sampled it  <- criterion
#   p99own             the step's OWN initial contact (one step time + look-ahead more)
#   p99clb             the send of the raw batch carrying the closing contact (older definition)
#   p99wlk             walking/other steps from their closing contact (not in the criterion)
# late99: p99 of raw batch send time minus its due time (load generator lag; counted in p99cl).
# CPU (% of one core, measured phase): server / broker (mq) / load generators (lg) / everything
#   else on the machine (oth); ms/rs: server CPU ms per runner-second.
# PASS: lost == 0, every summary, p99cl <= 250 ms."""


def _row(r: dict[str, Any]) -> str:
    ok = r["lost"] == 0 and r["missing_summaries"] == 0 and r["p99_close_ms"] <= 250
    cells = [fmt.format(r[key]) for _, key, fmt in COLUMNS]
    load = "/".join(f"{x:.1f}" for x in r["loadavg_1min"])
    return " ".join(cells) + f"  {'PASS' if ok else 'no':>4}  {load}"


def components(minutes: float, seed: int, chunk: int, repeat: int) -> str:
    """In-process CPU cost of the server's per-call work, one line (``--components``).

    One simulated session (``minutes`` of running-start run) as 200 Hz wire packets, fed in
    ``chunk``-packet calls (4 ~ one step-synchronous call of ``imu serve``): the whole
    ``Pipeline.feed_packets`` with the server's steps encoding as ``on_steps``, then the same
    calls' parts alone: ``PacketDecoder.decode``, ``GaitAnalyzer.push``, ``AlertEngine.update``
    (calls with steps), ``encode_steps`` (calls with steps); and per packet the server's
    ``ReorderBuffer.push`` (2-packet messages). CPU microseconds per call (per packet for the
    reorder), best of ``repeat`` with the garbage collector off.
    """
    import gc

    from dsp.analyzer import GaitAnalyzer
    from firmware_interface.bridge import encode_steps
    from firmware_interface.decoder import PacketDecoder
    from imu.alerts import AlertConfig, AlertEngine
    from imu.pipeline import Pipeline, SessionInfo
    from imu.server import ReorderBuffer
    from simulators import simulate_run

    pk = [p for _, p in simulate_run(minutes, seed).packets]
    chunks = [pk[i : i + chunk] for i in range(0, len(pk), chunk)]

    def cpu(fn: Any) -> float:
        t0 = time.process_time()
        fn()
        return time.process_time() - t0

    def pipeline() -> None:
        p = Pipeline(SessionInfo("s"), on_steps=lambda st: encode_steps(st, batch_seq=1))
        for c in chunks:
            p.feed_packets(c)

    dec = PacketDecoder()
    decoded = [dec.decode(c) for c in chunks]
    origin = decoded[0].t_s[0]
    ins = [(d.t_s - origin, d.acc_mps2, d.gyr_dps) for d in decoded]
    an = GaitAnalyzer()
    steps = [s for s in (an.push(*x).steps for x in ins) if len(s)]

    def decode() -> None:
        d = PacketDecoder()
        for c in chunks:
            d.decode(c)

    def push() -> None:
        a = GaitAnalyzer()
        for x in ins:
            a.push(*x)

    def alerts() -> None:
        e = AlertEngine(AlertConfig(), runner="r", session="s")
        for s in steps:
            e.update(s)

    def encode() -> None:
        for s in steps:
            encode_steps(s, batch_seq=1)

    def reorder() -> None:
        r = ReorderBuffer(64, 1.0)
        for i in range(0, len(pk), 2):
            r.push(pk[i : i + 2], 0.0, window=1)

    pipeline()  # compile / warm up
    gc.disable()
    try:
        best = {
            name: min(cpu(fn) for _ in range(repeat))
            for name, fn in (
                ("pipeline", pipeline),
                ("decode", decode),
                ("push", push),
                ("alerts", alerts),
                ("encode", encode),
                ("reorder", reorder),
            )
        }
    finally:
        gc.enable()
    n, k = len(chunks), len(steps)
    return (
        f"COMPONENTS calls={n} (with steps {k}), CPU us per call: "
        f"feed_packets {best['pipeline'] / n * 1e6:.1f} = decode {best['decode'] / n * 1e6:.1f}"
        f" + push {best['push'] / n * 1e6:.1f} + alerts {best['alerts'] / k * 1e6:.1f} x {k / n:.2f}"
        f" + encode_steps {best['encode'] / k * 1e6:.1f} x {k / n:.2f} + rest; "
        f"ReorderBuffer.push {best['reorder'] / len(pk) * 1e6:.2f} us per packet"
    )


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
    ap.add_argument("--seconds", type=float, default=40.0, help="sending phase per N (bounded run)")
    ap.add_argument("--batch", type=float, default=0.1, help="seconds of packets per raw message")
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
    ap.add_argument(
        "--start-s",
        type=float,
        default=60.0,
        help="phones start streaming at a random point of [start, start + 60 s] of the simulated "
        "run (it stands ~20 s, walks ~30 s, then runs); 0 = include the walking start",
    )
    ap.add_argument("--steps-qos", type=int, default=1, choices=(0, 1))
    ap.add_argument(
        "--phone-mqtt",
        choices=("3.1.1", "5"),
        default="3.1.1",
        help="MQTT version of the simulated phones (the server always uses v5; the broker "
        "forwards the same PUBLISH either way; 3.1.1 costs the load generator less CPU)",
    )
    ap.add_argument(
        "--store",
        action="store_true",
        help="server writes to an embedded store (default --no-store)",
    )
    ap.add_argument("--mqtt", help="use this loopback broker instead of starting one")
    ap.add_argument(
        "--server-arg",
        action="append",
        default=[],
        help="extra 'imu serve' option(s), e.g. --server-arg='--step-sync 0' (repeatable)",
    )
    ap.add_argument("--seed", type=int, default=5)
    ap.add_argument("--json", action="store_true", help="also print each result as JSON")
    ap.add_argument(
        "--components",
        action="store_true",
        help="only print the in-process per-call CPU cost of the pipeline's parts (COMPONENTS line)",
    )
    args = ap.parse_args()
    if args.components:
        print(components(4.0, args.seed, 4, 5))
        return
    if args.seconds > 600 or max(args.runners) > 5000:
        raise SystemExit("bounded runs only: --seconds <= 600, --runners <= 5000")
    if args.seconds < args.warmup + 5:
        raise SystemExit("--seconds must exceed --warmup by 5 s or more")
    with tempfile.TemporaryDirectory(prefix="bench-mqtt-") as tmp:
        workdir = Path(tmp)
        packets_file, n_packets, pkt_rate = _prepare_packets(
            args.seconds + args.start_s, args.seed, workdir
        )
        print(
            f"# {pkt_rate:.1f} packets/s per phone, batch {args.batch} s, {args.seconds:.0f} s per "
            f"run, steps QoS {args.steps_qos}, store {'on' if args.store else 'off'}, "
            f"{os.cpu_count()} cores, load average at start {os.getloadavg()[0]:.2f}"
        )
        print(LEGEND)
        print(
            " ".join(
                f"{h:>{len(fmt.format(0)) if 'f' not in fmt else len(fmt.format(0.0))}}"
                for h, _, fmt in COLUMNS
            )
            + "  pass  load(start/end)"
        )
        for n in args.runners:
            r = run_one(n, args, workdir, packets_file, n_packets, pkt_rate)
            print(_row(r), flush=True)
            if r["failures"]:
                print(f"#   failures: {r['failures']}")
            if args.json:
                print(json.dumps(r))


if __name__ == "__main__":
    main()
