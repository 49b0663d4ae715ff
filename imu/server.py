"""MQTT bridge server: phones' raw sensor packets in, per-step metrics and alerts out.

One :class:`imu.pipeline.Pipeline` per ``(runner, session)``: the same code path as the simulator,
recordings and CSV files. The MQTT byte stream is read by :class:`_StreamReader` (in the socket
read callback of :class:`_DirectClient`: no task or paho object per message); incoming messages
are validated, split and queued there; a separate task feeds every session's queued packets to
its pipeline (when they may complete a step: ``ServerConfig.step_sync``) once per tick and yields
to the I/O after each ``ServerConfig.process_slice_s`` of pipeline work.

Tasks (one :class:`asyncio.TaskGroup`, named): ``imu-server.connection`` (connect, subscribe,
reconnect with capped jittered backoff), inside it per connection ``imu-server.read``,
``imu-server.publish`` and ``imu-server.stats``; next to it ``imu-server.process`` (pipelines,
idle timeout) and ``imu-server.lag`` (event-loop lag monitor).

Drop policies (every drop is counted): outgoing ``steps`` messages ``drop_oldest`` beyond
``ServerConfig.publish_queue``; alerts and summaries are never dropped; raw packets waiting for
the pipeline ``drop_oldest`` beyond ``ServerConfig.max_pending_packets`` per session (counted in
the session's ``overload_dropped`` and seen by the decoder as lost packets).
"""

from __future__ import annotations

import asyncio
import binascii
import contextlib
import gc
import logging
import os
import queue
import random
import select
import socket
import ssl
import struct
import threading
import time
import zlib
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

import aiomqtt
import numpy.typing as npt
import paho.mqtt as paho_mqtt
import paho.mqtt.client as mqtt
from paho.mqtt.enums import MQTTErrorCode
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from firmware_interface.bridge import (
    BRIDGE_VERSION,
    BridgeFormatError,
    Status,
    decode_raw_batch,
    decode_status,
    encode_alerts,
    encode_steps,
    encode_summary,
    json_bytes,
    parse_topic,
    server_stats_topic,
    topic,
)
from firmware_interface.decoder import RESTART_BACK_S, RESTART_GAP_S
from firmware_interface.protocol import HEADER_STRUCT, PROTOCOL_VERSION, PacketType
from imu.alerts import AlertConfig
from imu.pipeline import Pipeline, SessionInfo
from storage.records import Record, Sink

__all__ = ["BridgeServer", "ReorderBuffer", "ServerConfig", "partition_of"]

log = logging.getLogger(__name__)

_MAX_BAD_RUNNERS: Final = 10_000


def partition_of(runner: str, n: int) -> int:
    """Stable partition of a runner: ``crc32(utf-8 runner id) mod n``."""
    return zlib.crc32(runner.encode()) % n


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Settings of :class:`BridgeServer` (durations in seconds).

    Attributes:
        host, port: the MQTT broker.
        username, password: broker credentials (the server user reads and writes ``imu/#``).
        tls_context: TLS for the broker connection, ``None`` for plain TCP.
        partition: ``(i, n)``: handle only runners with :func:`partition_of` ``== i``.
        server_id: names the stats topic and the MQTT client id (``imu-server-<id>``).
        idle_timeout_s: close a session after this long without raw data while connected.
        reorder_window: packets held back to put late packets back in sequence order (0 = off).
        reorder_hold_s: longest a packet waits for a missing predecessor.
        reorder_fast_window: the window used while the session's raw batches arrive with
            contiguous ``batch_seq`` (nothing in transit: a missing sensor packet was lost on
            BLE and will not come, so waiting ``reorder_hold_s`` would only delay every step
            after it). After a ``batch_seq`` gap (a batch still to come, e.g. resent after a
            reconnect) the full window and hold apply for ``reorder_hold_s``. 0 = always the
            full window. The default 1 still fixes an adjacent swap (the packet after a gap
            waits for the next packet, in the next batch if it was a batch's last) and costs at
            most one packet or one batch after a BLE loss (4 cost ~200 ms, a p99 of ~1 % of
            running steps at 0.1 s batches).
        step_sync: feed a running session's queued packets only when they may complete its
            next step: a step is complete (its metrics exist) only a few tens of ms after the
            next initial contact, which the last emitted step predicts (its closing contact
            ``time_s + 60 / cadence`` plus one step time). Packets are held until their data
            reach ``step_sync`` x that step time past the last closing contact (0.8: ~70 ms
            early at 170 steps/min), then fed with every batch until the step comes; never
            longer than ``step_sync_max_s``. The steps come out in the same pipeline call as
            with feeding every batch (results are chunking-independent), with ~half the calls
            (each costs ~65 us of per-call overhead). 0 = feed every batch.
        step_sync_max_s: longest packets are held back by ``step_sync``.
        tick_s: how often queued packets are fed to the pipelines.
        process_slice_s: the processing task yields to the event loop (I/O) after this much
            pipeline work; sessions of one tick are processed back to back within a slice.
        stats_interval_s: period of the ``imu/_server/<id>/stats`` message (0 = never).
        steps_qos: QoS of ``steps`` messages (alerts and summaries always use QoS 1).
        publishers: outgoing QoS 1 messages awaiting their PUBACK at most (the window; the
            broker's MQTT v5 Receive Maximum, Mosquitto's ``max_inflight_messages``, caps it).
        publish_queue: bound of the outgoing queue (steps beyond it: drop_oldest).
        max_pending_packets: per-session bound of packets waiting for the pipeline.
        session_expiry_s: broker keeps the server's subscriptions and queued messages this long
            while the server is away (MQTT v5 session expiry, ``clean_start`` false).
        backoff_base_s, backoff_cap_s: reconnect delay: uniform(0, min(cap, base * 2**attempt)).
        alert_config: thresholds of every session's alert engine (default :class:`AlertConfig`).
        warm_up: before connecting, run a short simulated session through a pipeline, so that
            the DSP's JIT compilation (seconds; much longer with a stale numba cache) does not
            stall the event loop while the first real sessions stream; then ``gc.freeze()`` the
            heap (imports, compiled code), which full garbage collections no longer walk.
    """

    host: str = "127.0.0.1"
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls_context: ssl.SSLContext | None = None
    partition: tuple[int, int] = (0, 1)
    server_id: str = field(default_factory=lambda: f"{socket.gethostname()}-{os.getpid()}")
    idle_timeout_s: float = 120.0
    reorder_window: int = 32
    reorder_hold_s: float = 1.0
    reorder_fast_window: int = 1
    step_sync: float = 0.8
    step_sync_max_s: float = 0.5
    tick_s: float = 0.005
    process_slice_s: float = 0.005
    stats_interval_s: float = 10.0
    steps_qos: int = 1
    publishers: int = 1000
    publish_queue: int = 50_000
    max_pending_packets: int = 2_000
    session_expiry_s: int = 600
    backoff_base_s: float = 0.2
    backoff_cap_s: float = 10.0
    alert_config: AlertConfig | None = None
    warm_up: bool = False


# --- reorder window ---------------------------------------------------------------------------
class ReorderBuffer:
    """Puts sensor packets back in sequence order and drops exact re-deliveries.

    Only packets whose length and CRC are valid are ordered (the sequence number of a corrupt
    packet cannot be trusted); others pass straight through for the decoder to count. A packet
    waits for a missing predecessor until ``window`` packets are held or ``hold_s`` passed; then
    the gap is skipped (the decoder counts it as lost). A packet older than the released stream
    is a duplicate if it was released recently, else it is passed on late (the decoder counts it
    as reordered). A packet whose sensor clock is more than ``RESTART_BACK_S`` behind the newest
    (the sensor rebooted: new sequence numbers and clock) releases everything held and starts
    the ordering afresh (``restarts``), as the decoder starts a new stream segment there.
    """

    def __init__(self, window: int, hold_s: float, *, remember: int = 4096) -> None:
        self.window = window
        self.hold_s = hold_s
        self._next: int | None = None  # unwrapped sequence number expected next
        self._held: dict[int, bytes] = {}
        self._held_since = 0.0
        self._recent: set[int] = set()
        self._recent_order: deque[int] = deque()
        self._remember = remember
        self.duplicates = 0
        self.late = 0
        self.reordered_fixed = 0
        self.skipped = 0
        self.restarts = 0
        self._newest_t0_us: int | None = None  # raw u32 sensor clock of the newest packet

    @property
    def held(self) -> int:
        return len(self._held)

    def push(
        self, packets: Sequence[bytes], now_s: float, *, window: int | None = None
    ) -> list[bytes]:
        """Add packets in arrival order; returns those released in sequence order.

        ``window`` (at most :attr:`window`) bounds the held packets for this call only: the
        server passes a small one while the raw batches arrive without a ``batch_seq`` gap.
        """
        limit = self.window if window is None else min(window, self.window)
        out: list[bytes] = []
        for pkt in packets:
            header = _trusted_header(pkt)
            if header is None:
                out.append(pkt)
                continue
            seq, t0_us = header
            newest = self._newest_t0_us
            if newest is None:
                self._newest_t0_us = t0_us
            else:
                dt = (t0_us - newest) & 0xFFFFFFFF
                if dt >= 1 << 31:
                    if (1 << 32) - dt > _RESTART_BACK_US:  # the sensor restarted
                        self.restarts += 1
                        out += self.flush()
                        self._next = None
                        self._recent.clear()
                        self._recent_order.clear()
                        self._newest_t0_us = t0_us
                else:
                    self._newest_t0_us = t0_us
            if self._next is None:
                self._next = seq
            nxt = self._next
            diff = (seq - nxt) & 0xFFFF
            if diff >= 0x8000:
                diff -= 0x10000
            u = nxt + diff
            if u < nxt:
                if u in self._recent:
                    self.duplicates += 1
                else:
                    self.late += 1
                    out.append(pkt)
                continue
            if u == nxt and not self._held:  # in order, nothing held: what _release does
                out.append(pkt)
                self._recent.add(u)
                self._recent_order.append(u)
                self._next = u + 1
                if len(self._recent_order) > self._remember:
                    self._recent.discard(self._recent_order.popleft())
                continue
            if u in self._held:
                self.duplicates += 1
                continue
            if u != nxt:
                if not self._held:
                    self._held_since = now_s
                elif u < max(self._held):
                    self.reordered_fixed += 1
            self._held[u] = pkt
            self._release(out)
            while len(self._held) > limit:
                self._skip(out)
        while len(self._held) > limit:
            self._skip(out)
        return out

    def expire(self, now_s: float) -> list[bytes]:
        """Release what waited longer than ``hold_s`` for a missing packet."""
        out: list[bytes] = []
        if self._held and now_s - self._held_since >= self.hold_s:
            self._skip(out)
            if self._held:
                self._held_since = now_s
        return out

    def flush(self) -> list[bytes]:
        out: list[bytes] = []
        while self._held:
            self._skip(out)
        return out

    def _skip(self, out: list[bytes]) -> None:
        first = min(self._held)
        self.skipped += first - (self._next or first)
        self._next = first
        self._release(out)

    def _release(self, out: list[bytes]) -> None:
        nxt = self._next
        assert nxt is not None
        held = self._held
        while nxt in held:
            out.append(held.pop(nxt))
            self._recent.add(nxt)
            self._recent_order.append(nxt)
            nxt += 1
        self._next = nxt
        while len(self._recent_order) > self._remember:
            self._recent.discard(self._recent_order.popleft())


_RESTART_BACK_US: Final = round(RESTART_BACK_S * 1e6)
_UNSEEN: Final[Any] = object()
_MAX_TOPICS: Final = 100_000  # parsed-topic cache size (cleared when full)
_IMU_DATA: Final = int(PacketType.IMU_DATA)
_SEQ_T0: Final = struct.Struct("<BBHI")  # version, type, seq, t0_us


def _trusted_header(pkt: bytes) -> tuple[int, int] | None:
    """(seq, raw t0_us) of a data packet whose CRC holds, else None."""
    if len(pkt) < 16 or pkt[0] != PROTOCOL_VERSION or pkt[1] != _IMU_DATA:
        return None
    if binascii.crc_hqx(pkt[:-2], 0xFFFF) != pkt[-2] | pkt[-1] << 8:
        return None
    _, _, seq, t0_us = _SEQ_T0.unpack_from(pkt)
    return seq, t0_us


# --- sessions ---------------------------------------------------------------------------------
class _SensorClock:
    """Session time (s since the first fed packet's first sample) of a packet's last sample.

    From the packet header (``t0_us`` u32 wraps every ~71.6 min: differences to the previous
    reference are taken modulo 2**32). Only for :attr:`ServerConfig.step_sync`'s estimate of how
    far queued data reach; the pipeline's decoder keeps the authoritative clock.
    """

    __slots__ = ("_ref_raw", "_ref_s")

    def __init__(self) -> None:
        self._ref_raw: int | None = None
        self._ref_s = 0.0

    def end_s(self, pkt: bytes, *, update: bool) -> float | None:
        if len(pkt) < 16 or pkt[1] != _IMU_DATA:
            return None
        if binascii.crc_hqx(pkt[:-2], 0xFFFF) != pkt[-2] | pkt[-1] << 8:
            return None
        _, _, _, t0_us, rate, _, _, n = HEADER_STRUCT.unpack_from(pkt, 0)
        if rate <= 0:
            return None
        if self._ref_raw is None:
            t0_s = 0.0
        else:
            d = (t0_us - self._ref_raw) & 0xFFFFFFFF
            d = d - (1 << 32) if d >= 1 << 31 else d
            # a sensor restart: the decoder goes on RESTART_GAP_S after the last sample
            t0_s = self._ref_s + (RESTART_GAP_S if d < -_RESTART_BACK_US else d / 1e6)
        if update:
            self._ref_raw, self._ref_s = t0_us, t0_s
        return t0_s + (n - 1) / rate


@dataclass(slots=True)
class _Out:
    topic: str
    payload: bytes
    qos: int
    droppable: bool


class _Session:
    """Server-side state of one (runner, session)."""

    def __init__(self, runner: str, session: str, cfg: ServerConfig) -> None:
        self.runner = runner
        self.session = session
        self.pipeline: Pipeline | None = None
        self.reorder = ReorderBuffer(cfg.reorder_window, cfg.reorder_hold_s)
        self.pending: deque[tuple[int, list[bytes]]] = deque()
        self.pending_packets = 0
        self.pending_since = 0.0  # monotonic arrival of the oldest pending batch
        self.due_s: float | None = None  # session time the next step may complete (step_sync)
        self.clock = _SensorClock()
        self.status: dict[str, Any] = {}
        self.start_utc_s: float | None = None
        self.first_rx_utc_s: float | None = None
        self.last_data_s = time.monotonic()
        self.closing = False
        self.closed = False
        self.failed: str | None = None
        self.batch_context: int | None = None
        self.last_batch_seq: int | None = None
        self.fed_batch_seq: int | None = None  # highest batch_seq fed to the reorder buffer
        self.batch_gap_until = 0.0  # full reorder window until then (a batch is missing)
        self.messages = 0
        self.packets_in = 0
        self.batch_seq_regressions = 0
        self.overload_dropped = 0
        self.steps_sent = 0
        self.alerts_sent = 0
        self.broker_gaps: list[dict[str, float]] = []
        self.opened_monotonic = time.monotonic()

    @property
    def key(self) -> tuple[str, str]:
        return (self.runner, self.session)

    def bridge_stats(self) -> dict[str, Any]:
        return {
            "messages": self.messages,
            "packets_in": self.packets_in,
            "duplicates_dropped": self.reorder.duplicates,
            "late_packets": self.reorder.late,
            "reordered_fixed": self.reorder.reordered_fixed,
            "reorder_skipped": self.reorder.skipped,
            "sensor_restarts": self.reorder.restarts,
            "batch_seq_regressions": self.batch_seq_regressions,
            "overload_dropped": self.overload_dropped,
            "steps_sent": self.steps_sent,
            "alerts_sent": self.alerts_sent,
            "broker_gaps": list(self.broker_gaps),
            "status": dict(self.status),
            "failed": self.failed,
        }


# --- storage in a thread ----------------------------------------------------------------------
class _ThreadedSink:
    """Runs a blocking :class:`Sink` in a writer thread; ``write`` blocks only when
    ``max_batches`` batches wait.

    The thread writes at most once per ``interval_s``, everything queued by then in ONE
    ``sink.write`` call (one SQLite transaction: a commit costs 150-300 us, the pipelines of
    1,000 runners queue thousands of small batches a second; draining whatever was queued was
    not enough, as the thread mostly found one), up to ``max_records`` records per call. If such a combined write fails,
    its batches are written one by one, so a bad batch costs only itself (counted in ``errors``).

    Policy ``block``: storage is never dropped; a full queue slows the server down instead.
    """

    def __init__(
        self,
        sink: Sink,
        max_batches: int = 10_000,
        max_records: int = 50_000,
        interval_s: float = 0.25,
    ) -> None:
        self._sink = sink
        self._q: queue.Queue[list[Record] | None] = queue.Queue(max_batches)
        self._max_records = max_records
        self._interval_s = interval_s
        self._last_write = 0.0
        self.errors = 0
        self.writes = 0
        self._thread = threading.Thread(target=self._run, name="imu-server.store", daemon=True)
        self._thread.start()

    def write(self, records: Sequence[Record]) -> None:
        self._q.put(list(records))

    def close(self) -> None:
        self._q.put(None)
        self._thread.join(timeout=30)
        self._sink.close()

    def _run(self) -> None:
        stop = False
        while not stop:
            first = self._q.get()
            if first is None:
                return
            # at most one write per interval_s: the batches queued meanwhile go in the same one
            wait_s = self._last_write + self._interval_s - time.monotonic()
            if wait_s > 0:
                time.sleep(wait_s)
            batches = [first]
            n = len(first)
            while n < self._max_records:
                try:
                    more = self._q.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batches.append(more)
                n += len(more)
            self._write(batches)

    def _write(self, batches: list[list[Record]]) -> None:
        self._last_write = time.monotonic()
        self.writes += 1
        try:
            self._sink.write([r for b in batches for r in b] if len(batches) > 1 else batches[0])
            return
        except Exception:  # a storage error must not stop the writer; counted and logged
            if len(batches) == 1:
                self.errors += 1
                log.exception("store write failed (%d records)", len(batches[0]))
                return
        for batch in batches:
            try:
                self._sink.write(batch)
            except Exception:
                self.errors += 1
                log.exception("store write failed (%d records)", len(batch))


# --- MQTT client -------------------------------------------------------------------------------
_READ_BURST: Final = 256  # socket reads per wakeup at most
_RECV_BYTES: Final = 1 << 18
_PUBLISH_QOS1: Final = 0x32  # PUBLISH, QoS 1 (flags dup/retain masked off)
_PUBACK: Final = 0x40


class MqttStreamError(Exception):
    """The broker's byte stream is not valid MQTT (the connection is dropped)."""


def parse_mqtt_stream(
    buf: bytes | bytearray, *, v5: bool
) -> tuple[int, list[tuple[int, bytes | bytearray, bytes | bytearray, int]]]:
    """Split complete MQTT packets off the front of ``buf``.

    Returns ``(bytes consumed, packets)``; a packet is ``(first byte, topic, payload, packet id)``
    for a PUBLISH with QoS 1 (v5 properties skipped), else ``(first byte, b"", body, -1)`` (the
    variable header and payload after the fixed header). An incomplete packet at the end is left
    for the next call.
    """
    out: list[tuple[int, bytes | bytearray, bytes | bytearray, int]] = []
    n = len(buf)
    pos = 0
    while n - pos >= 2:
        cmd = buf[pos]
        i = pos + 1
        length = 0
        shift = 0
        while True:
            if i >= n:
                return pos, out
            b = buf[i]
            i += 1
            length |= (b & 0x7F) << shift
            if not b & 0x80:
                break
            shift += 7
            if shift > 21:
                raise MqttStreamError("remaining length longer than 4 bytes")
        end = i + length
        if end > n:
            break
        if cmd & 0xF6 == _PUBLISH_QOS1:
            j = i + 2 + ((buf[i] << 8) | buf[i + 1]) if length >= 2 else end + 1
            if j + 2 > end:
                raise MqttStreamError("PUBLISH shorter than its topic and packet id")
            topic_bytes = buf[i + 2 : j]
            mid = (buf[j] << 8) | buf[j + 1]
            j += 2
            if v5:
                plen = 0
                shift = 0
                while True:
                    if j >= end:
                        raise MqttStreamError("PUBLISH properties truncated")
                    b = buf[j]
                    j += 1
                    plen |= (b & 0x7F) << shift
                    if not b & 0x80:
                        break
                    shift += 7
                    if shift > 21:
                        raise MqttStreamError("property length longer than 4 bytes")
                j += plen
                if j > end:
                    raise MqttStreamError("PUBLISH properties longer than the packet")
            out.append((cmd, topic_bytes, buf[j:end], mid))
        else:
            out.append((cmd, b"", buf[i:end], -1))
        pos = end
    return pos, out


class _StreamReader:
    """Replaces paho's ``_packet_read`` (3+ ``recv`` calls and a v5 ``Properties`` object per
    message, then one ``send`` per PUBACK): one ``recv`` of up to 256 KiB, every complete QoS 1
    PUBLISH handed to ``on_message`` directly, their PUBACKs sent together in one write after
    the handler ran (at-least-once as before: a message is acknowledged once queued in
    memory). Other packets (CONNACK, SUBACK, PUBACKs of our publishes, PINGRESP, DISCONNECT,
    QoS 0/2 PUBLISH) go through paho's own ``_packet_handle``.
    """

    def __init__(self, paho: mqtt.Client, on_message: Callable[[str, bytes], None]) -> None:
        self._paho = paho
        self._on_message = on_message
        self._buf = bytearray()
        self._sock: object = None
        self._v5 = paho.protocol == mqtt.MQTTv5
        #: takes the packet id and reason code of a PUBACK; True = it was one of ours
        self.on_puback: Callable[[int, int], bool] | None = None

    def packet_read(self) -> MQTTErrorCode:
        paho = self._paho
        if paho._sock is not self._sock:  # a new connection: drop the old one's partial packet
            self._sock = paho._sock
            self._buf.clear()
        try:
            data = paho._sock_recv(_RECV_BYTES)
        except BlockingIOError:
            return MQTTErrorCode.MQTT_ERR_AGAIN
        except OSError as err:
            paho._easy_log(mqtt.MQTT_LOG_ERR, "failed to receive on socket: %s", err)
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        if not data:
            return MQTTErrorCode.MQTT_ERR_CONN_LOST
        buf = self._buf
        buf += data
        with paho._msgtime_mutex:
            paho._last_bytes_received = mqtt.time_func()
        try:
            used, packets = parse_mqtt_stream(buf, v5=self._v5)
        except MqttStreamError as exc:
            paho._easy_log(mqtt.MQTT_LOG_ERR, "malformed MQTT stream: %s", exc)
            return MQTTErrorCode.MQTT_ERR_PROTOCOL
        acks = bytearray()
        rc = MQTTErrorCode.MQTT_ERR_SUCCESS
        for cmd, topic_bytes, body, mid in packets:
            if mid >= 0:
                try:
                    name = bytes(topic_bytes).decode()
                except UnicodeDecodeError:
                    name = ""  # counted as bad_topic
                self._on_message(name, bytes(body))
                acks += bytes((_PUBACK, 2, mid >> 8, mid & 0xFF))
                continue
            if (
                cmd == _PUBACK
                and len(body) >= 2
                and self.on_puback is not None
                and self.on_puback((body[0] << 8) | body[1], body[2] if len(body) > 2 else 0)
            ):
                continue
            if acks:
                paho._packet_queue(_PUBACK, bytes(acks), 0, 0)
                acks = bytearray()
            paho._in_packet = _paho_in_packet(cmd, body)
            try:
                rc = paho._packet_handle()
            except Exception as exc:  # paho raises MalformedPacket (and others) on bad input
                paho._easy_log(mqtt.MQTT_LOG_ERR, "bad MQTT packet: %s", exc)
                rc = MQTTErrorCode.MQTT_ERR_PROTOCOL
            finally:
                paho._in_packet = _paho_in_packet(0, b"")
            if rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                break
        del buf[:used]
        if acks:
            paho._packet_queue(_PUBACK, bytes(acks), 0, 0)
        return rc


def _coalescing_writer(paho: mqtt.Client) -> Callable[[], MQTTErrorCode]:
    """Replaces paho's ``_packet_write`` (one ``send`` per queued MQTT packet): queued packets
    are joined into one ``send``; a QoS 0 PUBLISH or a DISCONNECT (which paho post-processes)
    and a lone packet go through paho's own writer.
    """
    single_write = paho._packet_write

    def packet_write() -> MQTTErrorCode:
        out = paho._out_packet
        while out:
            batch: list[Any] = []
            for pkt in out:
                kind = pkt["command"] & 0xF0
                if kind == 0xE0 or (kind == 0x30 and pkt["qos"] == 0) or len(batch) >= 1024:
                    break
                batch.append(pkt)
            if len(batch) <= 1:
                return single_write()
            data = b"".join(memoryview(p["packet"])[p["pos"] :] for p in batch)
            try:
                sent = paho._sock_send(data)
            except (AttributeError, ValueError):
                return MQTTErrorCode.MQTT_ERR_SUCCESS
            except BlockingIOError:
                return MQTTErrorCode.MQTT_ERR_AGAIN
            except OSError as err:
                paho._easy_log(mqtt.MQTT_LOG_ERR, "failed to send on socket: %s", err)
                return MQTTErrorCode.MQTT_ERR_CONN_LOST
            with paho._msgtime_mutex:
                paho._last_msg_out = mqtt.time_func()
            for pkt in batch:
                left = pkt["to_process"]
                if sent < left:  # the socket buffer is full: the rest when writable again
                    pkt["pos"] += sent
                    pkt["to_process"] -= sent
                    return MQTTErrorCode.MQTT_ERR_SUCCESS
                sent -= left
                pkt["pos"] += left
                pkt["to_process"] = 0
                out.popleft()
        return MQTTErrorCode.MQTT_ERR_SUCCESS

    return packet_write


def mqtt_fixed_header(first: int, length: int) -> bytes:
    """MQTT fixed header: the packet type/flags byte and the remaining length (varint)."""
    out = bytearray((first,))
    while True:
        length, b = length >> 7, length & 0x7F
        out.append(b | (0x80 if length else 0))
        if not length:
            return bytes(out)


def _paho_in_packet(cmd: int, body: bytes | bytearray) -> Any:
    return {
        "command": cmd,
        "have_remaining": 1 if cmd else 0,
        "remaining_count": [],
        "remaining_mult": 1,
        "remaining_length": len(body),
        "packet": bytearray(body),
        "to_process": 0,
        "pos": 0,
    }


#: paho-mqtt internals the fast I/O path (stream reader, coalescing writer, direct publisher)
#: replaces or calls; pyproject.toml pins paho-mqtt to the minor versions this was tested with.
PAHO_INTERNALS: Final = (
    "_packet_read",
    "_packet_write",
    "_packet_queue",
    "_packet_handle",
    "_sock_recv",
    "_sock_send",
    "_easy_log",
    "_msgtime_mutex",
    "_in_packet",
    "_out_packet",
    "_sock",
    "_last_bytes_received",
    "_last_msg_out",
)


def check_paho_internals(paho: mqtt.Client) -> None:
    """Fail at start-up, with one line, if this paho-mqtt lacks what the fast I/O path uses.

    Raises:
        RuntimeError: names the paho-mqtt version and the missing attributes.
    """
    missing = [a for a in PAHO_INTERNALS if not hasattr(paho, a)]
    if missing:
        version = getattr(paho_mqtt, "__version__", "?")
        raise RuntimeError(
            f"paho-mqtt {version} lacks {', '.join(missing)}: imu serve's MQTT I/O was written "
            "for paho-mqtt 2.1-2.2 (pip install 'paho-mqtt>=2.1,<2.3')"
        )


class _DirectClient(aiomqtt.Client):
    """An aiomqtt client that hands each incoming PUBLISH straight to ``on_message``.

    aiomqtt's ``client.messages`` iterator creates a task and an ``asyncio.wait`` for every
    message, i.e. two or more event-loop iterations per message; with the pipelines' work between
    iterations the server read ~500 messages/s however idle the CPU was, and the backlog grew in
    aiomqtt's unbounded queue (already PUBACKed, so invisible to the broker). Here the handler runs
    inside paho's read callback (``handle_message`` is cheap and never blocks), and one socket
    wakeup reads up to ``_READ_BURST`` packets (paho's ``loop_read`` reads only
    ``1 + in-flight`` packets per call). Nothing is put in ``client.messages``; iterating it still
    raises :class:`aiomqtt.MqttError` when the connection is lost.
    """

    def __init__(self, *args: Any, on_message: Callable[[str, bytes], None], **kw: Any) -> None:
        super().__init__(*args, **kw)
        self._direct_on_message = on_message
        paho = self._client
        check_paho_internals(paho)
        single_read = paho.loop_read
        #: the broker's MQTT v5 Receive Maximum (CONNACK): QoS 1 publishes unacknowledged at most
        self.receive_maximum = 65535
        aiomqtt_on_connect: Any = paho.on_connect

        def on_connect(c: mqtt.Client, u: Any, flags: Any, rc: Any, props: Any = None) -> None:
            rm = getattr(props, "ReceiveMaximum", None) if props is not None else None
            self.receive_maximum = int(rm) if rm else 65535
            aiomqtt_on_connect(c, u, flags, rc, props)

        paho.on_connect = on_connect

        def loop_read_burst(max_packets: int = 1) -> MQTTErrorCode:
            rc = MQTTErrorCode.MQTT_ERR_SUCCESS
            for _ in range(_READ_BURST):
                rc = single_read(max_packets)
                sock = paho.socket()
                if rc != MQTTErrorCode.MQTT_ERR_SUCCESS or sock is None:
                    break
                if isinstance(sock, ssl.SSLSocket) and sock.pending():
                    continue
                poller = select.poll()  # not select.select: fds >= 1024
                poller.register(sock.fileno(), select.POLLIN)
                if not poller.poll(0):
                    break
            return rc

        paho.loop_read = loop_read_burst  # type: ignore[method-assign]
        self._reader = _StreamReader(paho, on_message)
        paho._packet_read = self._reader.packet_read  # type: ignore[method-assign]
        paho._packet_write = _coalescing_writer(paho)  # type: ignore[method-assign]

    def _on_message(self, client: mqtt.Client, userdata: Any, message: mqtt.MQTTMessage) -> None:
        try:
            name = message.topic
        except UnicodeDecodeError:
            name = ""  # counted as bad_topic
        self._direct_on_message(name, bytes(message.payload))


# --- the server -------------------------------------------------------------------------------
class BridgeServer:
    """The MQTT bridge service. ``await server.run()`` until cancelled.

    Args:
        config: broker, partition and tuning settings.
        sinks: where every session's records go (owned by the server: closed on exit).
        rng: randomness of the reconnect jitter (pin it in tests).
    """

    def __init__(
        self, config: ServerConfig, sinks: Sequence[Sink] = (), *, rng: random.Random | None = None
    ) -> None:
        self.cfg = config
        i, n = config.partition
        if not (n >= 1 and 0 <= i < n):
            raise ValueError(f"partition {i}/{n}: need 0 <= i < n")
        self._sinks: list[Sink] = [_ThreadedSink(s) for s in sinks]
        self._rng = rng or random.Random()
        self.sessions: dict[tuple[str, str], _Session] = {}
        self.closed_sessions: dict[tuple[str, str], float] = {}
        self._dirty: dict[tuple[str, str], None] = {}
        self._out: deque[_Out] = deque()
        self._out_event = asyncio.Event()
        self._data_event = asyncio.Event()
        self.connected = asyncio.Event()
        self._disconnected_at: float | None = None
        self._started = time.monotonic()
        self.counters: dict[str, int] = {
            "messages_in": 0,
            "bytes_in": 0,
            "packets_in": 0,
            "other_partition": 0,
            "bad_topic": 0,
            "after_close": 0,
            "sessions_opened": 0,
            "sessions_closed": 0,
            "sessions_idle_closed": 0,
            "sessions_failed": 0,
            "publish_dropped": 0,
            "publish_errors": 0,
            "publish_refused": 0,
            "handler_errors": 0,
            "deferred": 0,
            "connects": 0,
            "disconnects": 0,
        }
        self.bad_payloads: dict[str, dict[str, int]] = {}
        # valid topics seen: (runner, session) key and kind, or None (another partition's)
        self._topics: dict[str, tuple[tuple[str, str], str] | None] = {}
        self.loop_lag_max_s = 0.0
        self.summaries: dict[tuple[str, str], dict[str, Any]] = {}
        self._stopping = False
        self._run_task: asyncio.Task[Any] | None = None

    # --- lifecycle -------------------------------------------------------------------------
    async def run(self) -> None:
        """Serve until cancelled (or :meth:`request_stop`); on exit close every session and the sinks."""
        self._run_task = asyncio.current_task()
        if self.cfg.warm_up:
            self.warm_up()
            # Imports and numba's compiled state are ~150k GC-tracked objects that live for
            # ever; each full (gen 2) collection walked them: ~100 ms event-loop stalls, seen
            # as 0.3-0.5 s latency spikes. Frozen, a full collection takes ~2 ms.
            gc.collect()
            gc.freeze()
        try:
            async with asyncio.TaskGroup() as tg:
                tg.create_task(self._connection_loop(), name="imu-server.connection")
                tg.create_task(self._process_loop(), name="imu-server.process")
                tg.create_task(self._lag_loop(), name="imu-server.lag")
        finally:
            for sess in list(self.sessions.values()):
                self._close_session(sess, reason="shutdown", publish=False)
            for sink in self._sinks:
                sink.close()

    def warm_up(self) -> float:
        """Feed 30 s of a simulated run through a throw-away pipeline; returns the seconds taken."""
        from simulators import simulate_run

        t0 = time.monotonic()
        run = simulate_run(0.5, 0)
        info = SessionInfo(
            session_id="warm-up", runner="warm-up", device="sim", source="mqtt", start_utc_s=0.0
        )
        pipeline = Pipeline(info, [], alert_config=self.cfg.alert_config)
        packets = [p for _, p in run.packets]
        for i in range(0, len(packets), 10):
            pipeline.feed_packets(packets[i : i + 10])
        pipeline.close()
        took = time.monotonic() - t0
        log.info("pipeline warm-up took %.1f s", took)
        return took

    def request_stop(self) -> None:
        """Stop :meth:`run` (signal handlers call this)."""
        self._stopping = True
        if self._run_task is not None:
            self._run_task.cancel()

    def _client(self) -> _DirectClient:
        props = Properties(PacketTypes.CONNECT)
        props.SessionExpiryInterval = self.cfg.session_expiry_s
        client = _DirectClient(
            self.cfg.host,
            self.cfg.port,
            on_message=self._on_paho_message,
            username=self.cfg.username,
            password=self.cfg.password,
            identifier=f"imu-server-{self.cfg.server_id}",
            protocol=aiomqtt.ProtocolVersion.V5,
            clean_start=False,
            properties=props,
            tls_context=self.cfg.tls_context,
            keepalive=30,
            timeout=10,
            socket_options=[
                (socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            ],  # no Nagle/delayed-ACK 40 ms
            max_inflight_messages=max(20, self.cfg.publishers),
        )
        client.pending_calls_threshold = 10 * max(
            20, self.cfg.publishers
        )  # no 'pending publish calls' warnings
        return client

    async def _connection_loop(self) -> None:
        attempt = 0
        while True:
            connected_at: float | None = None
            try:
                async with self._client() as client:
                    connected_at = time.monotonic()
                    await client.subscribe("imu/+/+/raw", qos=1)
                    await client.subscribe("imu/+/+/status", qos=1)
                    self._on_connected()
                    async with asyncio.TaskGroup() as tg:
                        tg.create_task(self._read_loop(client), name="imu-server.read")
                        tg.create_task(self._publish_loop(client), name="imu-server.publish")
                        if self.cfg.stats_interval_s > 0:
                            tg.create_task(self._stats_loop(client), name="imu-server.stats")
            except* aiomqtt.MqttError as eg:
                log.warning("broker connection lost or refused: %s", eg.exceptions[0])
            self._on_disconnected()
            if self._stopping:
                raise asyncio.CancelledError  # aiomqtt may turn a cancelled connect into MqttError
            if connected_at is not None and time.monotonic() - connected_at > 5.0:
                attempt = 0
            delay = self._rng.uniform(
                0, min(self.cfg.backoff_cap_s, self.cfg.backoff_base_s * 2**attempt)
            )
            attempt = min(attempt + 1, 30)
            log.info("reconnecting in %.2f s", delay)
            await asyncio.sleep(delay)

    def _on_connected(self) -> None:
        self.counters["connects"] += 1
        now = time.monotonic()
        if self._disconnected_at is not None:
            gap_s = now - self._disconnected_at
            now_utc = time.time()
            for sess in self.sessions.values():
                sess.broker_gaps.append(
                    {
                        "from_utc_s": now_utc - gap_s,
                        "to_utc_s": now_utc,
                        "duration_s": round(gap_s, 3),
                    }
                )
                sess.last_data_s = now  # the idle clock does not run while the broker is away
            log.info(
                "connected again after %.2f s; %d open sessions continue", gap_s, len(self.sessions)
            )
        self._disconnected_at = None
        self.connected.set()

    def _on_disconnected(self) -> None:
        if self.connected.is_set():
            self.counters["disconnects"] += 1
            self._disconnected_at = time.monotonic()
        self.connected.clear()

    # --- input -----------------------------------------------------------------------------
    async def _read_loop(self, client: aiomqtt.Client) -> None:
        # Messages are handled in _on_paho_message (inside the socket's read callback); the
        # iterator only ends the connection with MqttError when the broker goes away.
        async for msg in client.messages:  # pragma: no cover - _DirectClient queues nothing
            payload = msg.payload
            if not isinstance(payload, (bytes, bytearray)):
                payload = b"" if payload is None else str(payload).encode()
            self.handle_message(msg.topic.value, bytes(payload))

    def _on_paho_message(self, topic_name: str, payload: bytes) -> None:
        try:
            self.handle_message(topic_name, payload)
        except Exception:  # never let one message break paho's read loop (= the connection)
            self.counters["handler_errors"] += 1
            log.exception("handling a message on %r failed", topic_name)

    def handle_message(self, topic_name: str, payload: bytes) -> None:
        """Validate and queue one incoming message (cheap; never raises on bad input)."""
        self.counters["messages_in"] += 1
        self.counters["bytes_in"] += len(payload)
        cached = self._topics.get(topic_name, _UNSEEN)
        if cached is _UNSEEN:  # parse and check a topic once (one per session and kind)
            try:
                parts = parse_topic(topic_name)
            except BridgeFormatError as exc:
                self.counters["bad_topic"] += 1
                self._bad("?", exc)
                return
            i, n = self.cfg.partition
            mine = n <= 1 or partition_of(parts.runner, n) == i
            cached = ((parts.runner, parts.session), parts.kind) if mine else None
            if len(self._topics) >= _MAX_TOPICS:
                self._topics.clear()
            self._topics[topic_name] = cached
        if cached is None:
            self.counters["other_partition"] += 1
            return
        key, kind = cached
        try:
            if kind == "raw":
                self._on_raw(key, payload)
            elif kind == "status":
                self._on_status(key, decode_status(payload))
        except BridgeFormatError as exc:
            self._bad(key[0], exc)

    def _bad(self, runner: str, exc: BridgeFormatError) -> None:
        per = self.bad_payloads.get(runner)
        if per is None:
            if len(self.bad_payloads) >= _MAX_BAD_RUNNERS:
                runner = "*"
            per = self.bad_payloads.setdefault(runner, {})
        count = per.get(exc.reason, 0) + 1
        per[exc.reason] = count
        if count == 1 or count % 100 == 0:
            log.warning("bad payload from runner %s (%d so far): %s", runner, count, exc)

    def _session(self, key: tuple[str, str]) -> _Session | None:
        sess = self.sessions.get(key)
        if sess is None:
            if key in self.closed_sessions:
                self.counters["after_close"] += 1
                return None
            sess = _Session(key[0], key[1], self.cfg)
            self.sessions[key] = sess
            self.counters["sessions_opened"] += 1
            log.info("session %s/%s opened", *key)
        return sess

    def _on_raw(self, key: tuple[str, str], payload: bytes) -> None:
        batch = decode_raw_batch(payload)
        sess = self._session(key)
        if sess is None or sess.closing:
            return
        now = time.monotonic()
        sess.last_data_s = now
        sess.messages += 1
        sess.packets_in += len(batch.packets)
        self.counters["packets_in"] += len(batch.packets)
        if sess.first_rx_utc_s is None:
            sess.first_rx_utc_s = batch.rx_time_us[0] / 1e6
        if sess.last_batch_seq is not None and batch.batch_seq < sess.last_batch_seq:
            sess.batch_seq_regressions += 1
        sess.last_batch_seq = (
            batch.batch_seq
            if sess.last_batch_seq is None
            else max(sess.last_batch_seq, batch.batch_seq)
        )
        if not sess.pending:
            sess.pending_since = now
        sess.pending.append((batch.batch_seq, batch.packets))
        sess.pending_packets += len(batch.packets)
        while sess.pending_packets > self.cfg.max_pending_packets and len(sess.pending) > 1:
            _, dropped = sess.pending.popleft()
            sess.pending_packets -= len(dropped)
            sess.overload_dropped += len(dropped)
        self._dirty[key] = None
        self._data_event.set()

    def _on_status(self, key: tuple[str, str], status: Status) -> None:
        sess = self._session(key)
        if sess is None:
            return
        sess.status.update({k: v for k, v in status.as_dict().items() if k != "type"})
        if status.type == "start":
            if sess.start_utc_s is None:
                sess.start_utc_s = status.start_utc_s or status.time_utc_s
            log.info("session %s/%s: start (%s)", *key, status.device or {})
        elif status.type == "stop":
            sess.closing = True
            self._dirty[key] = None
            self._data_event.set()

    # --- processing ------------------------------------------------------------------------
    async def _process_loop(self) -> None:
        last_idle_check = last_stale_check = time.monotonic()
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._data_event.wait(), timeout=max(self.cfg.tick_s, 0.1))
            self._data_event.clear()
            await asyncio.sleep(self.cfg.tick_s)  # let a tick's worth of messages arrive together
            now = time.monotonic()
            keys = list(self._dirty)
            self._dirty.clear()
            budget_end = time.perf_counter() + self.cfg.process_slice_s
            for key in keys:
                sess = self.sessions.get(key)
                if sess is None:
                    continue
                self._process(sess, now)
                if time.perf_counter() >= budget_end:
                    # Let the I/O callbacks run (they read everything waiting in the socket),
                    # then continue with the next sessions of this pass.
                    await asyncio.sleep(0)
                    budget_end = time.perf_counter() + self.cfg.process_slice_s
            if now - last_stale_check >= 0.25:
                last_stale_check = now
                self._feed_stale(now)
            if now - last_idle_check >= 1.0:
                last_idle_check = now
                self._check_idle(now)

    def _process(self, sess: _Session, now: float, *, force: bool = False) -> None:
        if not force and self._defer(sess, now):
            self.counters["deferred"] += 1
            return
        packets: list[bytes] = []
        batch_seq: int | None = None
        while sess.pending:
            batch_seq, pkts = sess.pending.popleft()
            packets += sess.reorder.push(
                pkts, now, window=self._reorder_window(sess, batch_seq, now)
            )
        sess.pending_packets = 0
        packets += sess.reorder.expire(now)
        if sess.closing:
            packets += sess.reorder.flush()
        if sess.reorder.held:
            self._dirty[sess.key] = None  # come back to release what waits for a gap
        if packets and sess.failed is None:
            pipeline = self._pipeline(sess)
            sess.batch_context = batch_seq
            for pkt in packets:  # anchor the session clock of step_sync on a fed packet
                if sess.clock.end_s(pkt, update=True) is not None:
                    break
            try:
                pipeline.feed_packets(packets)
            except Exception as exc:  # one session's failure must not stop the others
                self._fail(sess, exc)
        if sess.closing:
            self._close_session(sess, reason="stop")

    def _defer(self, sess: _Session, now: float) -> bool:
        """True while the queued packets cannot complete the session's next step (step_sync)."""
        if (
            sess.due_s is None
            or not sess.pending
            or sess.closing
            or sess.reorder.held
            or now - sess.pending_since > self.cfg.step_sync_max_s
        ):
            return False
        end = sess.clock.end_s(sess.pending[-1][1][-1], update=False)
        return end is not None and end < sess.due_s

    def _reorder_window(self, sess: _Session, batch_seq: int, now: float) -> int | None:
        """Small window while batches arrive in sequence, full window after a batch_seq gap."""
        fast = self.cfg.reorder_fast_window
        prev = sess.fed_batch_seq
        if prev is None or batch_seq > prev:
            if prev is not None and batch_seq > prev + 1:
                sess.batch_gap_until = now + self.cfg.reorder_hold_s
            sess.fed_batch_seq = batch_seq
        else:  # a resent or late batch: more may follow
            sess.batch_gap_until = now + self.cfg.reorder_hold_s
        if fast <= 0 or now < sess.batch_gap_until:
            return None
        return fast

    def _pipeline(self, sess: _Session) -> Pipeline:
        if sess.pipeline is None:
            start = sess.start_utc_s or sess.first_rx_utc_s or time.time()
            device = sess.status.get("device") or {}
            info = SessionInfo(
                session_id=sess.session,
                runner=sess.runner,
                device=str(device.get("name", "unknown")),
                source="mqtt",
                start_utc_s=float(start),
                metadata={"server": self.cfg.server_id, "status": dict(sess.status)},
            )
            sess.pipeline = Pipeline(
                info,
                self._sinks,
                on_steps=self._steps_cb(sess),
                on_alerts=self._alerts_cb(sess),
                alert_config=self.cfg.alert_config,
            )
        return sess.pipeline

    def _steps_cb(self, sess: _Session) -> Callable[[npt.NDArray[Any]], None]:
        t = topic(sess.runner, sess.session, "steps")

        def cb(steps: npt.NDArray[Any]) -> None:
            sess.steps_sent += len(steps)
            sess.due_s = None
            if self.cfg.step_sync > 0 and len(steps):
                step_s = 60.0 / float(steps["cadence_spm"][-1])
                if 0.0 < step_s < 2.0:  # NaN (no cadence) fails too: feed every batch
                    close_s = float(steps["time_s"][-1]) + step_s
                    sess.due_s = close_s + self.cfg.step_sync * step_s
            self._enqueue(
                _Out(t, encode_steps(steps, batch_seq=sess.batch_context), self.cfg.steps_qos, True)
            )

        return cb

    def _alerts_cb(self, sess: _Session) -> Callable[[list[Any]], None]:
        t = topic(sess.runner, sess.session, "alerts")

        def cb(alerts: list[Any]) -> None:
            sess.alerts_sent += len(alerts)
            self._enqueue(_Out(t, encode_alerts(alerts, batch_seq=sess.batch_context), 1, False))

        return cb

    def _fail(self, sess: _Session, exc: Exception) -> None:
        sess.failed = f"{type(exc).__name__}: {exc}"[:300]
        self.counters["sessions_failed"] += 1
        log.exception(
            "session %s/%s failed; its data is dropped from now on", sess.runner, sess.session
        )

    def _feed_stale(self, now: float) -> None:
        """Feed packets that step_sync held longer than its limit and no new batch followed."""
        limit = self.cfg.step_sync_max_s
        for key, sess in self.sessions.items():
            if sess.pending and now - sess.pending_since > limit:
                self._dirty[key] = None
                self._data_event.set()

    def _check_idle(self, now: float) -> None:
        if not self.connected.is_set():
            return
        for sess in list(self.sessions.values()):
            if now - sess.last_data_s > self.cfg.idle_timeout_s:
                self.counters["sessions_idle_closed"] += 1
                self._process(sess, now, force=True)
                self._close_session(sess, reason="idle")

    def _close_session(self, sess: _Session, *, reason: str, publish: bool = True) -> None:
        if sess.closed:
            return
        sess.closed = True
        self.sessions.pop(sess.key, None)
        self._dirty.pop(sess.key, None)
        self.closed_sessions[sess.key] = time.monotonic()
        if len(self.closed_sessions) > 100_000:
            for k in list(self.closed_sessions)[:10_000]:
                del self.closed_sessions[k]
        self.counters["sessions_closed"] += 1
        summary: dict[str, Any] = {}
        if sess.pipeline is not None:
            sess.batch_context = sess.last_batch_seq
            try:
                summary = sess.pipeline.close().summary
            except Exception as exc:
                self._fail(sess, exc)
        bridge = {"close_reason": reason, **sess.bridge_stats()}
        self.summaries[sess.key] = {"summary": summary, "bridge": bridge}
        log.info(
            "session %s/%s closed (%s): %d packets in, %d steps, %d alerts",
            sess.runner,
            sess.session,
            reason,
            sess.packets_in,
            sess.steps_sent,
            sess.alerts_sent,
        )
        if publish:
            self._enqueue(
                _Out(
                    topic(sess.runner, sess.session, "steps"),
                    encode_summary(summary, bridge),
                    1,
                    False,
                )
            )

    # --- output ----------------------------------------------------------------------------
    def _enqueue(self, item: _Out) -> None:
        out = self._out
        if len(out) >= self.cfg.publish_queue and out[0].droppable:
            out.popleft()
            self.counters["publish_dropped"] += 1
        out.append(item)
        self._out_event.set()

    async def _publish_loop(self, client: _DirectClient) -> None:
        """Publish the queue: QoS 1 PUBLISH packets built here and queued on paho's writer,
        their PUBACKs taken by the stream reader (paho's publish and PUBACK handling cost ~45 us a
        message; aiomqtt's a future and a task wakeup more), at most ``publishers`` (and the
        broker's Receive Maximum) unacknowledged. Messages not acknowledged when the connection
        ends go back to the front of the queue, in order, and are sent again after the reconnect.
        QoS 0 messages go through paho.
        """
        out = self._out
        paho = client._client
        reader = client._reader
        window = max(1, min(self.cfg.publishers, client.receive_maximum))
        inflight: dict[int, _Out] = {}
        props = b"\x00" if paho.protocol == mqtt.MQTTv5 else b""
        mid = 0

        def on_puback(ack_mid: int, reason: int) -> bool:
            if inflight.pop(ack_mid, None) is None:
                return False
            if reason >= 0x80:  # e.g. 0x87 not authorised: nothing to resend
                self.counters["publish_refused"] += 1
            if len(inflight) == window - 1:
                self._out_event.set()
            return True

        reader.on_puback = on_puback
        try:
            while True:
                while not out or len(inflight) >= window:
                    self._out_event.clear()
                    await self._out_event.wait()
                while out and len(inflight) < window:
                    item = out.popleft()
                    if item.qos == 0:
                        info = paho.publish(item.topic, item.payload, qos=0)
                        if info.rc != MQTTErrorCode.MQTT_ERR_SUCCESS:
                            self.counters["publish_errors"] += 1
                            raise aiomqtt.MqttCodeError(info.rc, "could not publish")
                        continue
                    mid = mid % 65535 + 1
                    while mid in inflight:
                        mid = mid % 65535 + 1
                    inflight[mid] = item
                    t = item.topic.encode()
                    body = b"".join(
                        (len(t).to_bytes(2, "big"), t, mid.to_bytes(2, "big"), props, item.payload)
                    )
                    paho._packet_queue(
                        _PUBLISH_QOS1, mqtt_fixed_header(0x32, len(body)) + body, mid, 1
                    )
        finally:
            reader.on_puback = None
            out.extendleft(reversed(list(inflight.values())))

    async def _stats_loop(self, client: aiomqtt.Client) -> None:
        t = server_stats_topic(self.cfg.server_id)
        while True:
            await asyncio.sleep(self.cfg.stats_interval_s)
            await client.publish(t, json_bytes(self.stats()), qos=0)

    def stats(self) -> dict[str, Any]:
        """Counters for the stats topic and logs."""
        return {
            "v": BRIDGE_VERSION,
            "type": "stats",
            "server": self.cfg.server_id,
            "partition": list(self.cfg.partition),
            "uptime_s": round(time.monotonic() - self._started, 1),
            "connected": self.connected.is_set(),
            "sessions_open": len(self.sessions),
            "publish_queue": len(self._out),
            "loop_lag_max_s": round(self.loop_lag_max_s, 4),
            **self.counters,
            "bad_payloads": {r: dict(c) for r, c in self.bad_payloads.items()},
        }

    async def _lag_loop(self) -> None:
        period = 0.1
        while True:
            t0 = time.monotonic()
            await asyncio.sleep(period)
            self.loop_lag_max_s = max(self.loop_lag_max_s, time.monotonic() - t0 - period)


def tls_context(
    cafile: str | None, certfile: str | None = None, keyfile: str | None = None
) -> ssl.SSLContext:
    """A client TLS context verifying the broker against ``cafile`` (system CAs when ``None``)."""
    ctx = ssl.create_default_context(cafile=cafile)
    if certfile:
        ctx.load_cert_chain(certfile, keyfile)
    return ctx
