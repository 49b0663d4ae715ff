"""BLE link to a v1 sensor over bleak (the only module that imports bleak).

:func:`find_sensor` scans for our service UUID (or an address / name); :class:`SensorLink` is an
async context manager that connects, negotiates the MTU, reads ``DEVICE_INFO``, configures the
sensor (``SET_CONFIG`` with a ``samples_per_packet`` that fits ``MTU - 3``), synchronises clocks
(``TIME_SYNC``), starts the stream and keeps it alive::

    device = await find_sensor("PelvisIMU", timeout_s=10)
    async with SensorLink(device, StreamConfig(sample_rate_hz=200)) as link:
        async for batch in link.batches():
            pipeline.feed_packets([p.data for p in batch])

Rules (see ``docs/ble.md``):

* The notification callback only stamps the host time and enqueues the bytes into a bounded
  :class:`asyncio.Queue`; when it is full the named :attr:`SensorLink.drop_policy` applies
  (``"drop_oldest"`` by default) and every drop is counted in :attr:`LinkStats.queue_drops`.
* Duplicates (bleak#2002 delivers every notification twice after a reconnect on BlueZ; radios
  may repeat) are dropped by sequence number before anything else sees them.
* On an unsolicited disconnect the old client is ALWAYS disconnected first (bleak#2002), then
  reconnection runs with capped, jittered exponential backoff through
  ``bleak_retry_connector.establish_connection``; after each reconnect the sensor is configured
  again, re-synchronised and the stream restarted. The outage is reported as a ``"gap"``
  :class:`LinkEvent` (sensor-time span and estimated missing samples).
* Errors: every failure is a :class:`BleError` (a :class:`~firmware_interface.errors.ProtocolError`)
  carrying data; bleak's exceptions are translated here with ``raise ... from``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import struct
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any, Literal, NamedTuple

from bleak import BleakClient, BleakScanner
from bleak.backends.client import BaseBleakClient
from bleak.backends.device import BLEDevice
from bleak.backends.scanner import AdvertisementData, BaseBleakScanner
from bleak.exc import BleakError

from firmware_interface.clock_sync import ClockSync, RoundTrip, SensorClockUnwrapper
from firmware_interface.control import (
    DeviceInfo,
    decode_control_response,
    decode_device_info,
    decode_time_sync,
)
from firmware_interface.errors import CommandError, ProtocolError
from firmware_interface.protocol import (
    CONTROL_CHAR_UUID,
    CRC_BYTES,
    DATA_CHAR_UUID,
    HEADER_BYTES,
    MAX_SAMPLES_PER_PACKET,
    PROTOCOL_VERSION,
    SAMPLE_BYTES,
    SERVICE_UUID,
    Command,
    PacketType,
    Status,
    encode_device_info_request,
    encode_set_config,
    encode_start_stream,
    encode_stop_stream,
    encode_time_sync,
)

log = logging.getLogger(__name__)

__all__ = [
    "BleError",
    "CommandRejectedError",
    "CommandTimeoutError",
    "ConnectionLostError",
    "DeviceNotFoundError",
    "LinkEvent",
    "LinkStats",
    "MtuTooSmallError",
    "Received",
    "ReconnectPolicy",
    "SensorLink",
    "ServiceNotFoundError",
    "StreamConfig",
    "VendorLink",
    "find_sensor",
    "max_samples_for_mtu",
]

DropPolicy = Literal["drop_oldest", "drop_newest"]
ATT_HEADER_BYTES = 3
DEFAULT_MTU = 23
_HDR = struct.Struct("<BBHIHBHB")


# --- errors --------------------------------------------------------------------------------------
class BleError(ProtocolError):
    """Root of the BLE link errors (a :class:`ProtocolError`)."""


class DeviceNotFoundError(BleError):
    """No sensor matching ``identifier`` was seen within ``timeout_s``."""

    def __init__(self, identifier: str, timeout_s: float) -> None:
        self.identifier = identifier
        self.timeout_s = timeout_s
        super().__init__(
            f"no sensor matching {identifier!r} found within {timeout_s:g} s "
            "(is it powered on, in range and not connected to another host?)"
        )


class ConnectionLostError(BleError):
    """The link to ``address`` was lost and could not be re-established."""

    def __init__(self, address: str, attempts: int, reason: str) -> None:
        self.address = address
        self.attempts = attempts
        self.reason = reason
        super().__init__(
            f"lost connection to {address} after {attempts} reconnect attempts: {reason}"
        )


class ServiceNotFoundError(BleError):
    """The device does not expose our IMU service / characteristic ``uuid``."""

    def __init__(self, address: str, uuid: str) -> None:
        self.address = address
        self.uuid = uuid
        super().__init__(f"{address} has no characteristic {uuid} (not a v1 IMU sensor?)")


class CommandTimeoutError(BleError):
    """No response to ``command`` within ``timeout_s``."""

    def __init__(self, command: str, timeout_s: float) -> None:
        self.command = command
        self.timeout_s = timeout_s
        super().__init__(f"no response to {command} within {timeout_s:g} s")


class CommandRejectedError(BleError):
    """The sensor answered ``command`` with a non-OK ``status``."""

    def __init__(self, command: str, status: Status, detail: str = "") -> None:
        self.command = command
        self.status = status
        self.detail = detail
        extra = f" ({detail})" if detail else ""
        super().__init__(f"sensor rejected {command}: {status.name}{extra}")


class MtuTooSmallError(BleError):
    """A packet of ``needed_bytes`` cannot travel in one notification at ATT MTU ``mtu``."""

    def __init__(self, mtu: int, needed_bytes: int, samples_per_packet: int) -> None:
        self.mtu = mtu
        self.needed_bytes = needed_bytes
        self.samples_per_packet = samples_per_packet
        super().__init__(
            f"{samples_per_packet} samples per packet need {needed_bytes}-byte notifications but the "
            f"negotiated MTU {mtu} carries at most {mtu - ATT_HEADER_BYTES} bytes"
        )


# --- configuration -------------------------------------------------------------------------------
def packet_bytes(samples_per_packet: int) -> int:
    """Length of a v1 data packet with ``samples_per_packet`` samples."""
    return HEADER_BYTES + SAMPLE_BYTES * samples_per_packet + CRC_BYTES


def max_samples_for_mtu(mtu: int) -> int:
    """Largest ``samples_per_packet`` whose packet fits one notification (``MTU - 3`` bytes); 0 if none."""
    room = mtu - ATT_HEADER_BYTES - HEADER_BYTES - CRC_BYTES
    return max(0, min(MAX_SAMPLES_PER_PACKET, room // SAMPLE_BYTES))


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What the host asks the sensor for.

    Attributes:
        sample_rate_hz: output data rate.
        acc_range_g: accelerometer full scale.
        gyr_range_dps: gyroscope full scale.
        samples_per_packet: ``None`` = the largest that fits the negotiated MTU (and is accepted
            by the sensor: on BAD_VALUE the host retries with fewer); an explicit value is used as
            is and a value too large for the MTU raises :class:`MtuTooSmallError`.
    """

    sample_rate_hz: int = 200
    acc_range_g: int = 16
    gyr_range_dps: int = 2000
    samples_per_packet: int | None = None


@dataclass(frozen=True, slots=True)
class ReconnectPolicy:
    """Capped, jittered exponential backoff between reconnect attempts.

    Attempt ``k`` (0-based) waits ``min(cap_s, base_s * 2**k) * (1 - jitter * u)`` with ``u``
    uniform in [0, 1) from ``rng`` (inject a seeded ``random.Random`` in tests).

    Attributes:
        base_s: first delay.
        cap_s: longest delay.
        jitter: fraction of the delay that is randomised (0 = none, 1 = "full jitter").
        max_attempts: attempts before :class:`ConnectionLostError` (``None`` = forever).
        connect_timeout_s: timeout of one connect attempt (bleak-retry-connector's ``BLEAK_TIMEOUT``
            applies inside it as well).
        rng: source of the jitter.
    """

    base_s: float = 0.25
    cap_s: float = 8.0
    jitter: float = 0.5
    max_attempts: int | None = 20
    connect_timeout_s: float = 20.0
    rng: random.Random = field(default_factory=random.Random, compare=False)

    def delay_s(self, attempt: int) -> float:
        base = min(self.cap_s, self.base_s * (2.0 ** min(attempt, 30)))
        return base * (1.0 - self.jitter * self.rng.random())


class Received(NamedTuple):
    """One notification: host UTC receive time (s) and the bytes as received."""

    rx_time_s: float
    data: bytes


@dataclass(frozen=True, slots=True)
class LinkEvent:
    """Something that happened on the link, for the recording and the live view.

    ``type`` is one of ``connected``, ``disconnected``, ``reconnected``, ``gap``, ``time_sync``,
    ``config``, ``closed``; ``data`` is JSON-safe.
    """

    type: str
    host_time_s: float
    data: dict[str, Any]


@dataclass(slots=True)
class LinkStats:
    """Link-level counters (the decoder counts packet-level loss and corruption).

    Attributes:
        notifications: data notifications received (duplicates included).
        queue_drops: notifications dropped because the queue was full (drop policy).
        duplicates: notifications dropped as repeats of a recent sequence number.
        connects: successful connections (first one included).
        reconnects: successful reconnections.
        disconnects: unsolicited disconnects.
        reconnect_attempts: connect attempts made while reconnecting.
        gaps: outages; total seconds of sensor time missing in ``gap_s``.
        mtu: negotiated ATT MTU.
        samples_per_packet: in force.
        connected: link up now.
        last_reconnect_s: duration of the last outage (disconnect -> stream running again).
    """

    notifications: int = 0
    queue_drops: int = 0
    duplicates: int = 0
    connects: int = 0
    reconnects: int = 0
    disconnects: int = 0
    reconnect_attempts: int = 0
    gaps: int = 0
    gap_s: float = 0.0
    mtu: int = 0
    samples_per_packet: int = 0
    connected: bool = False
    last_reconnect_s: float = 0.0


# --- scanning ------------------------------------------------------------------------------------
def _matcher(
    identifier: str | None, service_uuid: str
) -> Callable[[BLEDevice, AdvertisementData], bool]:
    ident = identifier.lower() if identifier else None

    def match(device: BLEDevice, ad: AdvertisementData) -> bool:
        if ident is None:
            return service_uuid in [u.lower() for u in ad.service_uuids]
        name = (ad.local_name or device.name or "").lower()
        return device.address.lower() == ident or (bool(name) and name == ident)

    return match


async def find_sensor(
    identifier: str | None = None,
    *,
    timeout_s: float = 10.0,
    service_uuid: str = SERVICE_UUID,
    scanner_backend: type[BaseBleakScanner] | None = None,
) -> BLEDevice:
    """Scan for a sensor.

    Args:
        identifier: address (``AA:BB:...``, or a UUID on macOS) or advertised name; ``None`` = the
            first device advertising ``service_uuid``.
        timeout_s: give up after this long.
        service_uuid: service to look for when no identifier is given.
        scanner_backend: bleak scanner backend (tests: the Bumble backend).

    Raises:
        DeviceNotFoundError: nothing matched within ``timeout_s``.
        BleError: the OS Bluetooth stack failed (adapter off, no permission, ...).
    """
    kwargs: dict[str, Any] = {}
    if scanner_backend is not None:
        kwargs["backend"] = scanner_backend
    try:
        device = await BleakScanner.find_device_by_filter(
            _matcher(identifier, service_uuid.lower()), timeout=timeout_s, **kwargs
        )
    except BleakError as exc:
        raise BleError(f"scanning failed: {exc}") from exc
    if device is None:
        raise DeviceNotFoundError(identifier or f"service {service_uuid}", timeout_s)
    return device


# --- the link ------------------------------------------------------------------------------------
class SensorLink:
    """A streaming connection to one v1 sensor; an async context manager, reusable, not reentrant.

    Args:
        device: from :func:`find_sensor` (or an address: then it is scanned for first).
        config: requested stream configuration.
        reconnect: backoff policy after an unsolicited disconnect.
        queue_size: bound of the notification queue (packets).
        drop_policy: what a full queue does: ``"drop_oldest"`` keeps the newest data (live
            view stays current), ``"drop_newest"`` keeps the backlog intact. Drops are counted.
        command_timeout_s: wait for each control response (protocol: 2 s).
        time_sync_rounds: TIME_SYNC exchanges after every (re)connect.
        time_sync_interval_s: TIME_SYNC period while streaming (0 = never).
        clock: clock sync to update (one per session; survives reconnects).
        on_event: called with every :class:`LinkEvent` (recording, live view).
        client_backend / scanner_backend: bleak backends (tests: Bumble).
        request_mtu: keyword forwarded to the client backend where supported.
    """

    def __init__(
        self,
        device: BLEDevice | str,
        config: StreamConfig | None = None,
        *,
        reconnect: ReconnectPolicy | None = None,
        queue_size: int = 4096,
        drop_policy: DropPolicy = "drop_oldest",
        command_timeout_s: float = 2.0,
        time_sync_rounds: int = 5,
        time_sync_interval_s: float = 30.0,
        clock: ClockSync | None = None,
        on_event: Callable[[LinkEvent], None] | None = None,
        client_backend: type[BaseBleakClient] | None = None,
        scanner_backend: type[BaseBleakScanner] | None = None,
        client_kwargs: dict[str, Any] | None = None,
    ) -> None:
        if drop_policy not in ("drop_oldest", "drop_newest"):
            raise ValueError(f"unknown drop policy {drop_policy!r}")
        self._device_arg = device
        self.device: BLEDevice | None = device if isinstance(device, BLEDevice) else None
        self.address = device.address if isinstance(device, BLEDevice) else device
        self.config = config or StreamConfig()
        self.reconnect_policy = reconnect or ReconnectPolicy()
        self.drop_policy: DropPolicy = drop_policy
        self.command_timeout_s = command_timeout_s
        self.time_sync_rounds = time_sync_rounds
        self.time_sync_interval_s = time_sync_interval_s
        self.clock = clock or ClockSync()
        self.unwrapper = SensorClockUnwrapper()
        self.stats = LinkStats()
        self.info: DeviceInfo | None = None
        self.events: list[LinkEvent] = []
        self._on_event = on_event
        self._client_backend = client_backend
        self._scanner_backend = scanner_backend
        self._client_kwargs = dict(client_kwargs or {})
        self._queue: asyncio.Queue[Received] = asyncio.Queue(maxsize=queue_size)
        self._client: BleakClient | None = None
        self._responses: asyncio.Queue[bytes] = asyncio.Queue()
        self._command_lock = asyncio.Lock()
        self._lost = asyncio.Event()
        self._closed = asyncio.Event()
        self._failure: BleError | None = None
        self._supervisor: asyncio.Task[None] | None = None
        self._syncer: asyncio.Task[None] | None = None
        self._recent: deque[int] = deque(maxlen=256)
        self._recent_set: set[int] = set()
        self._last_end_s: float | None = None  # sensor time (unwrapped s) of the last sample end
        self._last_rx_s: float | None = None
        self._outage_start: float | None = None
        self._pending_gap: dict[str, Any] | None = None
        self._entered = False

    # --- context manager -----------------------------------------------------------------------
    async def __aenter__(self) -> SensorLink:
        if self._entered:
            raise RuntimeError("SensorLink is not reentrant")
        self._entered = True
        self._closed.clear()
        self._failure = None
        try:
            if self.device is None:
                self.device = await find_sensor(
                    self.address,
                    timeout_s=self.reconnect_policy.connect_timeout_s,
                    scanner_backend=self._scanner_backend,
                )
            await self._connect_and_start(first=True)
        except BaseException:
            await self._teardown_client()
            self._entered = False
            raise
        self._supervisor = asyncio.create_task(
            self._supervise(), name=f"imu[{self.address}].supervise"
        )
        if self.time_sync_interval_s > 0:
            self._syncer = asyncio.create_task(
                self._periodic_sync(), name=f"imu[{self.address}].time_sync"
            )
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Stop the stream (best effort), disconnect and end :meth:`batches`. Idempotent."""
        self._closed.set()
        for task in (self._supervisor, self._syncer):
            if task is not None and task is not asyncio.current_task():
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        self._supervisor = self._syncer = None
        client = self._client
        if client is not None and client.is_connected:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(
                    client.write_gatt_char(CONTROL_CHAR_UUID, encode_stop_stream(), response=True),
                    1.0,
                )
        await self._teardown_client()
        if self._entered:
            self._emit("closed", {})
        self._entered = False

    # --- data out ------------------------------------------------------------------------------
    async def batches(
        self, max_batch: int = 512, max_wait_s: float = 0.1
    ) -> AsyncIterator[list[Received]]:
        """Yield the received data packets in arrival order, in batches.

        A batch holds what is queued (at most ``max_batch``), waiting at most ``max_wait_s`` for
        the first packet (empty batches are not yielded). Duplicates by sequence number are
        already removed. Ends when the link is closed.

        Raises:
            ConnectionLostError: reconnection gave up.
        """
        while True:
            if self._failure is not None:
                raise self._failure
            if self._closed.is_set() and self._queue.empty():
                return
            try:
                first = await asyncio.wait_for(self._queue.get(), max_wait_s)
            except TimeoutError:
                continue
            batch = [first]
            while len(batch) < max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            batch = self._accept(batch)
            if batch:
                yield batch

    def _accept(self, batch: list[Received]) -> list[Received]:
        """Drop duplicates by sequence number; feed the clock sync; detect outage gaps."""
        out: list[Received] = []
        for item in batch:
            data = item.data
            if (
                len(data) < HEADER_BYTES
                or data[0] != PROTOCOL_VERSION
                or data[1] != PacketType.IMU_DATA
            ):
                out.append(item)  # not ours to judge: the decoder counts it
                continue
            _v, _t, seq, t0_us, rate, _a, _g, n = _HDR.unpack_from(data)
            if seq in self._recent_set:
                self.stats.duplicates += 1
                continue
            if len(self._recent) == self._recent.maxlen:
                self._recent_set.discard(self._recent[0])
            self._recent.append(seq)
            self._recent_set.add(seq)
            if rate > 0 and n > 0:
                t0_s = self.unwrapper.unwrap(t0_us) / 1e6
                end_s = t0_s + n / rate
                if self._pending_gap is not None and self._last_end_s is not None:
                    self._record_gap(t0_s, rate, item.rx_time_s)
                self.clock.add_packet(end_s, item.rx_time_s)
                self._last_end_s = end_s
                self._last_rx_s = item.rx_time_s
            out.append(item)
        return out

    def _record_gap(self, t0_s: float, rate: int, rx_s: float) -> None:
        assert self._pending_gap is not None
        assert self._last_end_s is not None
        gap_s = max(0.0, t0_s - self._last_end_s)
        data = dict(self._pending_gap)
        data.update(
            {
                "sensor_from_s": round(self._last_end_s, 6),
                "sensor_to_s": round(t0_s, 6),
                "gap_s": round(gap_s, 6),
                "missing_samples": round(gap_s * rate),
                "host_resumed_s": rx_s,
            }
        )
        self._pending_gap = None
        self.stats.gaps += 1
        self.stats.gap_s += gap_s
        self._emit("gap", data)

    # --- notifications (callbacks: enqueue only) -----------------------------------------------
    def _on_data(self, _char: Any, data: bytearray) -> None:
        self.stats.notifications += 1
        item = Received(time.time(), bytes(data))
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.stats.queue_drops += 1
            if self.drop_policy == "drop_oldest":
                with contextlib.suppress(asyncio.QueueEmpty):
                    self._queue.get_nowait()
                self._queue.put_nowait(item)

    def _on_control(self, _char: Any, data: bytearray) -> None:
        self._responses.put_nowait(bytes(data))

    def _on_disconnect(self, client: BleakClient) -> None:
        if client is self._client and not self._closed.is_set():
            self._lost.set()

    # --- control -------------------------------------------------------------------------------
    async def command(self, request: bytes) -> bytes:
        """Write one control command and wait for its response payload (status OK).

        Raises:
            CommandTimeoutError: no response in time.
            CommandRejectedError: status not OK.
            BleError: the write failed (link down).
        """
        client = self._client
        name = _command_name(request)
        if client is None:
            raise BleError(f"{name}: not connected")
        async with self._command_lock:
            while not self._responses.empty():  # stale responses of timed-out commands
                self._responses.get_nowait()
            try:
                await client.write_gatt_char(CONTROL_CHAR_UUID, request, response=True)
            except (BleakError, OSError) as exc:
                raise BleError(f"{name}: write failed: {exc}") from exc
            deadline = time.monotonic() + self.command_timeout_s
            while True:
                remaining = deadline - time.monotonic()
                try:
                    raw = await asyncio.wait_for(self._responses.get(), max(remaining, 0.0))
                except TimeoutError:
                    raise CommandTimeoutError(name, self.command_timeout_s) from None
                try:
                    resp = decode_control_response(raw)
                except CommandError:
                    continue
                if resp.command != request[0]:
                    continue
                if not resp.ok:
                    raise CommandRejectedError(name, resp.status)
                return resp.payload

    async def time_sync(self) -> RoundTrip:
        """One TIME_SYNC exchange, added to :attr:`clock`."""
        send = time.time()
        payload = await self.command(encode_time_sync(round(send * 1e6)))
        recv = time.time()
        reply = decode_time_sync(payload)
        rt = RoundTrip(send, self.unwrapper.unwrap(reply.sensor_time_us) / 1e6, recv)
        self.clock.add_round_trip(rt)
        return rt

    # --- connection management -----------------------------------------------------------------
    async def _connect(self) -> BleakClient:
        from bleak_retry_connector import establish_connection

        assert self.device is not None
        kwargs: dict[str, Any] = dict(self._client_kwargs)
        if self._client_backend is not None:
            kwargs["backend"] = self._client_backend
        try:
            client = await asyncio.wait_for(
                establish_connection(
                    BleakClient,
                    self.device,
                    self.device.name or self.address,
                    disconnected_callback=self._on_disconnect,
                    max_attempts=1,
                    **kwargs,
                ),
                self.reconnect_policy.connect_timeout_s + 5.0,
            )
        except TimeoutError as exc:
            raise DeviceNotFoundError(
                self.address, self.reconnect_policy.connect_timeout_s
            ) from exc
        except BleakError as exc:
            name = type(exc).__name__
            if "NotFound" in name:
                raise DeviceNotFoundError(
                    self.address, self.reconnect_policy.connect_timeout_s
                ) from exc
            raise BleError(f"connect to {self.address} failed: {exc}") from exc
        return client

    async def _connect_and_start(self, *, first: bool) -> None:
        self._lost.clear()
        client = await self._connect()
        self._client = client
        try:
            await self._setup(client)
        except BaseException:
            await self._teardown_client()
            raise
        self.stats.connected = True
        self.stats.connects += 1

    async def _setup(self, client: BleakClient) -> None:
        mtu = await _negotiated_mtu(client)
        self.stats.mtu = mtu
        try:
            await client.start_notify(CONTROL_CHAR_UUID, self._on_control)
            await client.start_notify(DATA_CHAR_UUID, self._on_data)
        except BleakError as exc:
            if "not found" in str(exc).lower():
                missing = (
                    CONTROL_CHAR_UUID
                    if client.services.get_characteristic(CONTROL_CHAR_UUID) is None
                    else DATA_CHAR_UUID
                )
                raise ServiceNotFoundError(self.address, missing) from exc
            raise BleError(f"subscribe failed on {self.address}: {exc}") from exc
        self.info = decode_device_info(await self.command(encode_device_info_request()))
        if self.info.protocol_version != PROTOCOL_VERSION:
            raise BleError(
                f"{self.address} speaks protocol v{self.info.protocol_version}, this host v{PROTOCOL_VERSION}"
            )
        spp = await self._configure(mtu)
        self.stats.samples_per_packet = spp
        for _ in range(self.time_sync_rounds):
            await self.time_sync()
        await self.command(encode_start_stream())
        cfg = self.config
        self._emit(
            "config",
            {
                "mtu": mtu,
                "sample_rate_hz": cfg.sample_rate_hz,
                "acc_range_g": cfg.acc_range_g,
                "gyr_range_dps": cfg.gyr_range_dps,
                "samples_per_packet": spp,
                "model": self.info.model,
                "serial": self.info.serial,
                "firmware": ".".join(map(str, self.info.firmware_version)),
            },
        )

    async def _configure(self, mtu: int) -> int:
        """SET_CONFIG with the largest samples_per_packet that fits; fewer while the sensor refuses."""
        cfg = self.config
        fit = max_samples_for_mtu(mtu)
        if cfg.samples_per_packet is not None:
            if cfg.samples_per_packet > fit:
                raise MtuTooSmallError(
                    mtu, packet_bytes(cfg.samples_per_packet), cfg.samples_per_packet
                )
            candidates = [cfg.samples_per_packet]
        else:
            if fit == 0:
                raise MtuTooSmallError(mtu, packet_bytes(1), 1)
            candidates = list(range(fit, 0, -1))
        if (
            self.info is not None
            and self.info.supported_rates_hz
            and cfg.sample_rate_hz not in self.info.supported_rates_hz
        ):
            raise CommandRejectedError(
                "SET_CONFIG",
                Status.BAD_VALUE,
                f"{cfg.sample_rate_hz} Hz not in {self.info.supported_rates_hz}",
            )
        last: CommandRejectedError | None = None
        for spp in candidates:
            request = encode_set_config(cfg.sample_rate_hz, cfg.acc_range_g, cfg.gyr_range_dps, spp)
            try:
                await self.command(request)
            except CommandRejectedError as exc:
                if exc.status is not Status.BAD_VALUE:
                    raise
                last = exc
                log.info("%s refused %d samples per packet; trying fewer", self.address, spp)
                continue
            return spp
        assert last is not None
        raise CommandRejectedError(
            "SET_CONFIG",
            last.status,
            f"refused every samples_per_packet from {candidates[0]} down to {candidates[-1]}",
        )

    async def _teardown_client(self) -> None:
        """Disconnect the current client, ALWAYS (bleak#2002: a dead client keeps its callbacks)."""
        client, self._client = self._client, None
        self.stats.connected = False
        if client is None:
            return
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5.0)

    async def _supervise(self) -> None:
        """Wait for link loss; reconnect with capped jittered backoff; restart the stream."""
        while not self._closed.is_set():
            await self._lost.wait()
            if self._closed.is_set():
                return
            lost_at = time.time()
            self.stats.disconnects += 1
            self.stats.connected = False
            self._emit("disconnected", {"address": self.address})
            await self._teardown_client()
            self._pending_gap = {"host_lost_s": lost_at}
            attempt = 0
            policy = self.reconnect_policy
            while not self._closed.is_set():
                if policy.max_attempts is not None and attempt >= policy.max_attempts:
                    self._failure = ConnectionLostError(
                        self.address, attempt, "reconnect attempts exhausted"
                    )
                    self._closed.set()
                    return
                delay = policy.delay_s(attempt)
                attempt += 1
                self.stats.reconnect_attempts += 1
                await asyncio.sleep(delay)
                try:
                    await self._connect_and_start(first=False)
                except (BleError, TimeoutError, OSError) as exc:
                    log.info("reconnect attempt %d to %s failed: %s", attempt, self.address, exc)
                    if isinstance(
                        exc, (CommandRejectedError, MtuTooSmallError, ServiceNotFoundError)
                    ):
                        self._failure = ConnectionLostError(self.address, attempt, str(exc))
                        self._closed.set()
                        return
                    continue
                self.stats.reconnects += 1
                self.stats.last_reconnect_s = time.time() - lost_at
                self._emit(
                    "reconnected",
                    {"attempts": attempt, "outage_s": round(self.stats.last_reconnect_s, 4)},
                )
                break

    async def _periodic_sync(self) -> None:
        while not self._closed.is_set():
            await asyncio.sleep(self.time_sync_interval_s)
            if self._client is None or not self.stats.connected:
                continue
            try:
                await self.time_sync()
            except BleError as exc:
                log.debug("periodic TIME_SYNC failed: %s", exc)

    def _emit(self, kind: str, data: dict[str, Any]) -> None:
        ev = LinkEvent(kind, time.time(), data)
        self.events.append(ev)
        if self._on_event is not None:
            try:
                self._on_event(ev)
            except Exception:  # a consumer bug must not kill the link
                log.exception("link event callback failed")


async def _negotiated_mtu(client: BleakClient) -> int:
    """ATT MTU of the connection; on BlueZ acquire it first (bleak reports 23 until then)."""
    backend = getattr(client, "_backend", None)
    acquire = getattr(backend, "_acquire_mtu", None)
    if acquire is not None and client.mtu_size <= DEFAULT_MTU:
        with contextlib.suppress(Exception):
            await acquire()
    return int(client.mtu_size)


def _command_name(request: bytes) -> str:
    try:
        return Command(request[0]).name
    except (ValueError, IndexError):
        return f"command 0x{request[0]:02x}" if request else "empty command"


class VendorLink:
    """Notification stream from a third-party sensor (e.g. Movesense GSP) over bleak.

    Connects (``bleak-retry-connector``), subscribes to ``notify_uuid`` (the callback only stamps
    and enqueues, bounded queue, ``drop_oldest``), then writes ``start_commands`` to
    ``write_uuid``; :meth:`notifications` yields :class:`Received` batches. The vendor protocol is
    decoded by the caller (``firmware_interface.vendors``). No automatic reconnect (yet).
    """

    def __init__(
        self,
        device: BLEDevice,
        *,
        notify_uuid: str,
        write_uuid: str,
        start_commands: tuple[bytes, ...] = (),
        stop_commands: tuple[bytes, ...] = (),
        queue_size: int = 4096,
        connect_timeout_s: float = 20.0,
        client_backend: type[BaseBleakClient] | None = None,
    ) -> None:
        self.device = device
        self.notify_uuid = notify_uuid
        self.write_uuid = write_uuid
        self.start_commands = start_commands
        self.stop_commands = stop_commands
        self.connect_timeout_s = connect_timeout_s
        self.queue_drops = 0
        self.mtu = 0
        self._queue: asyncio.Queue[Received] = asyncio.Queue(maxsize=queue_size)
        self._client: BleakClient | None = None
        self._backend = client_backend
        self._lost = asyncio.Event()

    async def __aenter__(self) -> VendorLink:
        from bleak_retry_connector import establish_connection

        kwargs: dict[str, Any] = {"backend": self._backend} if self._backend is not None else {}
        try:
            self._client = await asyncio.wait_for(
                establish_connection(
                    BleakClient,
                    self.device,
                    self.device.name or self.device.address,
                    disconnected_callback=lambda _c: self._lost.set(),
                    max_attempts=2,
                    **kwargs,
                ),
                self.connect_timeout_s + 5.0,
            )
            self.mtu = await _negotiated_mtu(self._client)
            await self._client.start_notify(self.notify_uuid, self._on_data)
            for cmd in self.start_commands:
                await self._client.write_gatt_char(self.write_uuid, cmd, response=True)
        except TimeoutError as exc:
            await self.__aexit__(None, None, None)
            raise DeviceNotFoundError(self.device.address, self.connect_timeout_s) from exc
        except BleakError as exc:
            await self.__aexit__(None, None, None)
            raise BleError(f"{self.device.address}: {exc}") from exc
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        client, self._client = self._client, None
        if client is None:
            return
        with contextlib.suppress(Exception):
            for cmd in self.stop_commands:
                await asyncio.wait_for(
                    client.write_gatt_char(self.write_uuid, cmd, response=True), 1.0
                )
        with contextlib.suppress(Exception):
            await asyncio.wait_for(client.disconnect(), 5.0)

    def _on_data(self, _char: Any, data: bytearray) -> None:
        item = Received(time.time(), bytes(data))
        try:
            self._queue.put_nowait(item)
        except asyncio.QueueFull:
            self.queue_drops += 1
            with contextlib.suppress(asyncio.QueueEmpty):
                self._queue.get_nowait()
            self._queue.put_nowait(item)

    async def write(self, data: bytes) -> None:
        """Write a command to ``write_uuid``."""
        if self._client is None:
            raise BleError(f"{self.device.address}: not connected")
        try:
            await self._client.write_gatt_char(self.write_uuid, data, response=True)
        except BleakError as exc:
            raise BleError(f"{self.device.address}: write failed: {exc}") from exc

    async def notifications(self, max_wait_s: float = 0.1) -> AsyncIterator[list[Received]]:
        """Batches of notifications in arrival order; raises :class:`ConnectionLostError` on a drop."""
        while True:
            if self._lost.is_set() and self._queue.empty():
                raise ConnectionLostError(
                    self.device.address, 0, "link lost (no reconnect for vendor sensors)"
                )
            try:
                first = await asyncio.wait_for(self._queue.get(), max_wait_s)
            except TimeoutError:
                continue
            batch = [first]
            while True:
                try:
                    batch.append(self._queue.get_nowait())
                except asyncio.QueueEmpty:
                    break
            yield batch
