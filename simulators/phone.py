"""A simulated phone on the MQTT bridge: streams a run's sensor packets like the phone app would.

Status ``start``, then raw batches (every ``batch_s`` of packets by receive time, paced in real time
or faster), then status ``stop``; meanwhile it collects the ``steps`` and ``alerts`` the server
sends back, until the server's final ``summary`` arrives. A lost broker connection is retried with
capped jittered backoff and every batch not acknowledged (PUBACK) is sent again with its number.

Note: this module speaks the bridge protocol of :mod:`firmware_interface.bridge` (pure encoders).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import socket
import ssl
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import aiomqtt
import numpy as np
import numpy.typing as npt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_interface.bridge import Status, encode_raw_batch, encode_status, topic
from firmware_interface.protocol import HEADER_STRUCT, crc16

__all__ = [
    "PhoneConfig",
    "PhoneReport",
    "batch_packets",
    "packet_end_times",
    "run_phone",
    "summarize_report",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PhoneConfig:
    """Where and how the simulated phone streams.

    Attributes:
        speed: 1.0 = real time; ``math.inf`` = as fast as the broker accepts.
        batch_s: receive-time span of packets per raw message.
        window: raw publishes awaiting their PUBACK at once.
        results_timeout_s: how long to wait for the server's summary after ``stop``.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    runner: str = "sim-runner"
    session: str = "sim-session"
    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None
    speed: float = 1.0
    batch_s: float = 0.1
    window: int = 20
    results_timeout_s: float = 30.0
    backoff_base_s: float = 0.1
    backoff_cap_s: float = 2.0
    max_connect_attempts: int = 50


@dataclass(slots=True)
class PhoneReport:
    """What the phone sent and received."""

    runner: str
    session: str
    batches_sent: int = 0
    packets_sent: int = 0
    resent_batches: int = 0
    connects: int = 0
    steps: list[dict[str, Any]] = field(default_factory=list)
    alerts: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] | None = None
    bridge: dict[str, Any] | None = None
    #: per received step: arrival - send time of the batch whose processing emitted it (s)
    emit_latency_s: list[float] = field(default_factory=list)
    #: per received step: arrival - send time of the batch carrying its closing initial contact
    close_latency_s: list[float] = field(default_factory=list)
    bad_messages: int = 0
    duplicate_steps: int = 0
    send_s: float = 0.0


def batch_packets(
    packets: Sequence[tuple[float, bytes]], batch_s: float
) -> list[list[tuple[float, bytes]]]:
    """Group ``(rx_time_s, packet)`` by receive time into batches spanning at most ``batch_s``."""
    out: list[list[tuple[float, bytes]]] = []
    cur: list[tuple[float, bytes]] = []
    edge = -math.inf
    for rx_s, pkt in packets:
        if (rx_s >= edge or len(cur) >= 1000) and cur:
            out.append(cur)
            cur = []
        if not cur:
            edge = rx_s + batch_s
        cur.append((rx_s, pkt))
    if cur:
        out.append(cur)
    return out


def packet_end_times(packets: Sequence[bytes]) -> npt.NDArray[np.float64]:
    """Session time (s since the first valid packet's first sample) of each packet's last sample.

    Packets with a bad CRC or header get their predecessor's time; ``u32`` microsecond wraps are
    unwrapped. Used to find which packet carried the sample at a step's time.
    """
    out = np.zeros(len(packets))
    origin: int | None = None
    last_raw = 0
    unwrapped = 0
    prev = 0.0
    for i, pkt in enumerate(packets):
        ok = len(pkt) >= 16 and crc16(pkt[:-2]) == int.from_bytes(pkt[-2:], "little")
        if ok:
            try:
                _, _, _, t0_us, rate, _, _, n = HEADER_STRUCT.unpack_from(pkt, 0)
            except struct.error:
                ok = False
        if not ok or rate <= 0:
            out[i] = prev
            continue
        if origin is None:
            origin = unwrapped = last_raw = t0_us
        else:
            step = (t0_us - last_raw) & 0xFFFFFFFF
            if step >= 1 << 31:
                step -= 1 << 32
            unwrapped += step
            last_raw = t0_us
        prev = out[i] = (unwrapped - origin) / 1e6 + (n - 1) / rate
    return out


async def run_phone(
    packets: Sequence[tuple[float, bytes]], cfg: PhoneConfig, *, rng: random.Random | None = None
) -> PhoneReport:
    """Stream ``packets`` (``(rx_time_s, wire packet)``, as from ``simulate_run(...).packets``)."""
    return await _Phone(packets, cfg, rng or random.Random()).run()


class _Phone:
    def __init__(
        self, packets: Sequence[tuple[float, bytes]], cfg: PhoneConfig, rng: random.Random
    ) -> None:
        self.cfg = cfg
        self.rng = rng
        self.batches = batch_packets(packets, cfg.batch_s)
        self.rep = PhoneReport(cfg.runner, cfg.session)
        self.start_utc_s = time.time()
        self.rx0 = packets[0][0] if packets else 0.0
        self.acked = [False] * len(self.batches)
        self.sent_at: dict[int, float] = {}
        self.started = False
        self.stopped = False
        self.done = asyncio.Event()
        ends = packet_end_times([p for _, p in packets])
        self.batch_end_t = (
            np.array([ends[j - 1] for j in np.cumsum([len(b) for b in self.batches])])
            if self.batches
            else np.zeros(0)
        )
        self.t_wall0: float | None = None
        self.seen_steps: set[float] = set()

    def _client(self) -> aiomqtt.Client:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = 300
        client = aiomqtt.Client(
            self.cfg.host,
            self.cfg.port,
            username=self.cfg.username,
            password=self.cfg.password,
            identifier=f"phone-{self.cfg.runner}-{self.cfg.session}",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            tls_context=self.cfg.tls_context,
            timeout=10,
            socket_options=[
                (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ],  # no Nagle/delayed-ACK 40 ms
            max_inflight_messages=max(20, self.cfg.window),
        )
        client.pending_calls_threshold = 10 * max(
            20, self.cfg.window
        )  # no 'pending publish calls' warnings
        return client

    async def run(self) -> PhoneReport:
        attempt = 0
        while not self.done.is_set():
            try:
                async with self._client() as client:
                    self.rep.connects += 1
                    attempt = 0
                    await client.subscribe(topic(self.cfg.runner, self.cfg.session, "steps"), qos=1)
                    await client.subscribe(
                        topic(self.cfg.runner, self.cfg.session, "alerts"), qos=1
                    )
                    async with asyncio.TaskGroup() as tg:
                        reader = tg.create_task(
                            self._read(client), name=f"phone[{self.cfg.runner}].read"
                        )
                        await self._send(client)
                        try:
                            await asyncio.wait_for(self.done.wait(), self.cfg.results_timeout_s)
                        except TimeoutError:
                            log.warning(
                                "phone %s: no summary from the server after %.0f s",
                                self.cfg.runner,
                                self.cfg.results_timeout_s,
                            )
                            self.done.set()
                        reader.cancel()
            except* aiomqtt.MqttError as eg:
                attempt += 1
                if attempt > self.cfg.max_connect_attempts:
                    raise
                log.info(
                    "phone %s: broker connection lost (%s); retrying",
                    self.cfg.runner,
                    eg.exceptions[0],
                )
                await asyncio.sleep(
                    self.rng.uniform(
                        0, min(self.cfg.backoff_cap_s, self.cfg.backoff_base_s * 2**attempt)
                    )
                )
        return self.rep

    async def _send(self, client: aiomqtt.Client) -> None:
        cfg = self.cfg
        raw_topic = topic(cfg.runner, cfg.session, "raw")
        status_topic = topic(cfg.runner, cfg.session, "status")
        if not self.started:
            start = Status(
                type="start",
                time_utc_s=time.time(),
                start_utc_s=self.start_utc_s,
                battery_pct=87.0,
                ble="connected",
                device={"name": "simulated-sacrum-imu", "firmware": "sim-1"},
                app="imu phone-sim",
                sample_rate_hz=200.0,
            )
            await client.publish(status_topic, encode_status(start), qos=1)
            self.started = True
        if self.t_wall0 is None:
            self.t_wall0 = time.monotonic()
        sem = asyncio.Semaphore(cfg.window)
        async with asyncio.TaskGroup() as tg:
            for i, batch in enumerate(self.batches):
                if self.acked[i]:
                    continue
                if math.isfinite(cfg.speed):
                    due = self.t_wall0 + (batch[-1][0] - self.rx0) / cfg.speed
                    delay = due - time.monotonic()
                    if delay > 0:
                        await asyncio.sleep(delay)
                await sem.acquire()
                payload = encode_raw_batch(
                    i, [(round((self.start_utc_s + rx) * 1e6), p) for rx, p in batch]
                )
                if i in self.sent_at:
                    self.rep.resent_batches += 1
                else:
                    self.sent_at[i] = time.monotonic()
                tg.create_task(
                    self._publish(client, raw_topic, payload, i, sem),
                    name=f"phone[{cfg.runner}].raw[{i}]",
                )
        self.rep.send_s = time.monotonic() - self.t_wall0
        if not self.stopped:
            stop = Status(type="stop", time_utc_s=time.time(), battery_pct=86.0, ble="connected")
            await client.publish(status_topic, encode_status(stop), qos=1)
            self.stopped = True

    async def _publish(
        self, client: aiomqtt.Client, t: str, payload: bytes, i: int, sem: asyncio.Semaphore
    ) -> None:
        try:
            await client.publish(t, payload, qos=1)
            if not self.acked[i]:
                self.acked[i] = True
                self.rep.batches_sent += 1
                self.rep.packets_sent += len(self.batches[i])
        finally:
            sem.release()

    async def _read(self, client: aiomqtt.Client) -> None:
        async for msg in client.messages:
            now = time.monotonic()
            try:
                obj = json.loads(
                    msg.payload if isinstance(msg.payload, (bytes, bytearray)) else b""
                )
                kind = obj["type"]
            except (ValueError, KeyError, TypeError):
                self.rep.bad_messages += 1
                continue
            if kind == "steps":
                self._on_steps(obj, now)
            elif kind == "alerts":
                self.rep.alerts.extend(obj.get("alerts", []))
            elif kind == "summary":
                self.rep.summary = obj.get("summary")
                self.rep.bridge = obj.get("bridge")
                self.done.set()

    def _on_steps(self, obj: dict[str, Any], now: float) -> None:
        steps = [s for s in obj.get("steps", []) if s.get("time_s") not in self.seen_steps]
        self.rep.duplicate_steps += len(obj.get("steps", [])) - len(steps)
        self.seen_steps.update(s.get("time_s") for s in steps)
        self.rep.steps.extend(steps)
        sent = self.sent_at.get(obj.get("batch", -1))
        for s in steps:
            if sent is not None:
                self.rep.emit_latency_s.append(now - sent)
            cad = s.get("cadence_spm")
            if cad and len(self.batch_end_t):
                t_close = s["time_s"] + 60.0 / cad
                j = int(np.searchsorted(self.batch_end_t, t_close - 1e-9))
                if j < len(self.batches) and j in self.sent_at:
                    self.rep.close_latency_s.append(now - self.sent_at[j])


def summarize_report(rep: PhoneReport) -> dict[str, Any]:
    """Short JSON-able description of a :class:`PhoneReport`."""

    def pct(xs: list[float], q: float) -> float | None:
        return round(float(np.percentile(xs, q)) * 1000, 1) if xs else None

    return {
        "runner": rep.runner,
        "session": rep.session,
        "batches_sent": rep.batches_sent,
        "packets_sent": rep.packets_sent,
        "resent_batches": rep.resent_batches,
        "connects": rep.connects,
        "steps_received": len(rep.steps),
        "alerts_received": len(rep.alerts),
        "summary_received": rep.summary is not None,
        "emit_latency_ms": {"p50": pct(rep.emit_latency_s, 50), "p99": pct(rep.emit_latency_s, 99)},
        "close_latency_ms": {
            "p50": pct(rep.close_latency_s, 50),
            "p99": pct(rep.close_latency_s, 99),
        },
        "send_s": round(rep.send_s, 2),
    }
