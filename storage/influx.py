"""InfluxDB sinks: InfluxDB 1.x (HTTP ``/write``) and 2.x/3.x (``influxdb-client`` v2 write API).

:class:`InfluxSink` is a :class:`~storage.records.Sink`: ``write(records)`` turns records into line
protocol and puts them on a bounded in-memory queue (it blocks while the queue is full) and a
background thread delivers them:

* a batch closes at ``batch_size`` points or ``flush_interval_s`` after its first point;
* a failed write is retried when retrying can help (HTTP 5xx, 429, timeouts, connection errors)
  with capped, jittered exponential backoff (:class:`Backoff`, injectable rng), honouring
  ``Retry-After``; any other 4xx is a :class:`~storage.errors.WriteRejectedError`: counted,
  the batch appended to ``rejected.lp`` in the spool directory with the reason, and dropped;
* after ``max_retries`` the server counts as unreachable: the batch, and every later one, goes to
  the durable :class:`~storage.spool.Spool`; the spool is probed with backoff and replayed in order
  when the server is back, each spooled file deleted only after the server acknowledged it;
* ``flush()`` returns when everything written before it is on the server (or spooled, if the
  server is unreachable); ``drain_and_close(timeout_s)`` drains within the deadline, spools what
  is left and returns the number of points left in the spool (replayed by the next sink on that
  spool); ``close(timeout_s)`` does the same and returns None (the Sink protocol), keeping the
  count in ``points_left_spooled``.

Points are idempotent (tags + ns timestamp identify a point), so a batch re-sent after a lost
acknowledgement does not duplicate data in InfluxDB.
"""

from __future__ import annotations

import base64
import contextlib
import email.utils
import gzip
import hashlib
import json
import logging
import os
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from enum import Enum
from pathlib import Path
from types import TracebackType
from typing import Any, Protocol, cast
from urllib.parse import urlencode, urlsplit

import urllib3

from storage.config import InfluxConfig
from storage.errors import StorageError, StorageUnavailableError, WriteRejectedError
from storage.lineproto import records_to_lines
from storage.records import Record
from storage.spool import Spool, SpoolError

__all__ = [
    "Backoff",
    "InfluxQLClient",
    "InfluxSink",
    "InfluxSinkStats",
    "RetryableWriteError",
    "SinkClosedError",
    "Transport",
    "V1Transport",
    "V2Transport",
    "default_spool_dir",
    "make_transport",
]

log = logging.getLogger(__name__)

RETRYABLE_STATUS = frozenset({429, 500, 502, 503, 504}) | frozenset(range(500, 600))
#: the longest Retry-After we wait for before counting the server as unreachable (spooling)
RETRY_AFTER_CAP_S = 120.0


class RetryableWriteError(StorageError):
    """A write failed for a reason retrying may fix (5xx, 429, timeout, connection)."""

    def __init__(
        self, reason: str, *, status: int | None = None, retry_after_s: float | None = None
    ):
        self.reason = reason
        self.status = status
        self.retry_after_s = retry_after_s
        super().__init__(f"retryable write failure: {reason}")


class SinkClosedError(StorageError):
    """``write`` after ``close``."""

    def __init__(self, target: str) -> None:
        self.target = target
        super().__init__(f"influx sink {target} is closed")


class Transport(Protocol):
    """One HTTP write of line-protocol lines.

    Raises :class:`RetryableWriteError` or :class:`~storage.errors.WriteRejectedError`.
    """

    def write(self, lines: Sequence[str]) -> None: ...

    def close(self) -> None: ...


# -- backoff ----------------------------------------------------------------------------------------
class _Rng(Protocol):
    def random(self) -> float: ...


class Backoff:
    """Capped exponential backoff with "equal jitter": ``d = min(cap_s, base_s * 2**attempt)``,
    delay uniform in ``[d/2, d]``.

    Args:
        base_s: first delay scale.
        cap_s: largest delay.
        rng: anything with ``random() -> float in [0, 1)`` (pin it in tests).
    """

    def __init__(self, base_s: float = 0.5, cap_s: float = 30.0, rng: _Rng | None = None) -> None:
        if base_s <= 0 or cap_s < base_s:
            raise ValueError("need 0 < base_s <= cap_s")
        self.base_s = base_s
        self.cap_s = cap_s
        self.rng: _Rng = rng if rng is not None else random.Random()

    def delay(self, attempt: int) -> float:
        d = min(self.cap_s, self.base_s * 2.0 ** min(attempt, 62))
        return d / 2 + self.rng.random() * d / 2


def parse_retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def _scrub(text: str, secrets: Sequence[str]) -> str:
    for s in secrets:
        if s:
            text = text.replace(s, "***")
    return text


# -- transports -------------------------------------------------------------------------------------
class V1Transport:
    """InfluxDB 1.x ``POST /write?db=...&precision=ns`` (also VictoriaMetrics' ``/write``)."""

    def __init__(self, config: InfluxConfig) -> None:
        if not config.database:
            raise ValueError("V1Transport needs a database")
        self.config = config
        self._base = config.url.rstrip("/")
        self._http = urllib3.PoolManager(
            num_pools=2,
            maxsize=2,
            retries=False,
            timeout=urllib3.Timeout(total=config.timeout_s),
            cert_reqs="CERT_REQUIRED" if config.verify_ssl else "CERT_NONE",
        )
        self._headers = {"Content-Type": "text/plain; charset=utf-8"}
        if config.username:
            pw = config.password.reveal() if config.password else ""
            cred = base64.b64encode(f"{config.username}:{pw}".encode()).decode()
            self._headers["Authorization"] = f"Basic {cred}"
        if config.gzip:
            self._headers["Content-Encoding"] = "gzip"
        self._write_url = f"{self._base}/write?" + urlencode(
            {"db": config.database, "precision": "ns"}
        )
        self._created = False

    def write(self, lines: Sequence[str]) -> None:
        body = "\n".join(lines).encode()
        if self.config.gzip:
            body = gzip.compress(body, compresslevel=1)
        status, text, headers = self._request("POST", self._write_url, body)
        if (
            status == 404
            and "database not found" in text
            and self.config.create_database
            and not self._created
        ):
            self._created = True
            self.create_database()
            status, text, headers = self._request("POST", self._write_url, body)
        _raise_for_status(status, text, headers.get("Retry-After"), self.config.secrets())

    def create_database(self) -> None:
        q = f'CREATE DATABASE "{_influxql_ident(self.config.database or "")}"'
        status, text, headers = self._request(
            "POST", f"{self._base}/query?" + urlencode({"q": q}), b""
        )
        _raise_for_status(status, text, headers.get("Retry-After"), self.config.secrets())

    def _request(self, method: str, url: str, body: bytes) -> tuple[int, str, Mapping[str, str]]:
        try:
            r = self._http.request(method, url, body=body, headers=self._headers, redirect=False)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RetryableWriteError(
                _scrub(f"{type(exc).__name__}: {exc}", self.config.secrets())
            ) from None
        return r.status, r.data.decode("utf-8", "replace"), r.headers

    def close(self) -> None:
        self._http.clear()


class V2Transport:
    """InfluxDB 2.x/3.x ``/api/v2/write`` through ``influxdb-client`` (synchronous write API)."""

    def __init__(self, config: InfluxConfig) -> None:
        # imported here: only the v2 path pays for influxdb-client's import time
        from influxdb_client.client.influxdb_client import InfluxDBClient
        from influxdb_client.client.write_api import SYNCHRONOUS

        if not config.bucket or not config.token:
            raise ValueError("V2Transport needs a bucket and a token")
        self.config = config
        self._client = InfluxDBClient(
            url=config.url,
            token=config.token.reveal(),
            org=config.org or "",
            timeout=int(config.timeout_s * 1000),  # influxdb-client takes ms
            verify_ssl=config.verify_ssl,
            enable_gzip=config.gzip,
            retries=False,  # we retry
        )
        self._write_api = self._client.write_api(write_options=SYNCHRONOUS)

    def write(self, lines: Sequence[str]) -> None:
        from influxdb_client.client.write.point import WritePrecision
        from influxdb_client.rest import ApiException

        try:
            self._write_api.write(
                bucket=self.config.bucket or "",
                org=self.config.org or "",
                record="\n".join(lines).encode(),
                write_precision=cast(Any, WritePrecision.NS),
            )
        except ApiException as exc:
            status = int(exc.status or 0)
            headers: Mapping[str, str] = exc.headers or {}
            body = (
                exc.body.decode("utf-8", "replace")
                if isinstance(exc.body, bytes)
                else str(exc.body or exc.reason or "")
            )
            _raise_for_status(status, body, headers.get("Retry-After"), self.config.secrets())
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise RetryableWriteError(
                _scrub(f"{type(exc).__name__}: {exc}", self.config.secrets())
            ) from None

    def close(self) -> None:
        self._write_api.close()
        self._client.close()


def _raise_for_status(
    status: int, body: str, retry_after: str | None, secrets: Sequence[str]
) -> None:
    if 200 <= status < 300:
        return
    body = _scrub(body.strip(), secrets)
    with contextlib.suppress(ValueError, TypeError, AttributeError):
        err = json.loads(body)
        if isinstance(err, dict):
            body = str(err.get("error") or err.get("message") or body)
    if status == 0 or status in RETRYABLE_STATUS:
        raise RetryableWriteError(
            f"HTTP {status}: {body[:200]}",
            status=status,
            retry_after_s=parse_retry_after(retry_after),
        )
    raise WriteRejectedError(status, body)


def _influxql_ident(name: str) -> str:
    return name.replace("\\", "\\\\").replace('"', '\\"')


def make_transport(config: InfluxConfig) -> Transport:
    """The transport of the configured API (bucket -> v2, database -> v1)."""
    return V2Transport(config) if config.api == "v2" else V1Transport(config)


def default_spool_dir(config: InfluxConfig) -> Path:
    """``config.spool_dir``, else ``$IMU_HOME/spool/<target>`` (or ``~/.local/share/imu/spool/...``)."""
    if config.spool_dir is not None:
        return config.spool_dir
    home = os.environ.get("IMU_HOME")
    base = Path(home).expanduser() if home else Path.home() / ".local" / "share" / "imu"
    p = urlsplit(config.url)
    name = config.bucket or config.database or ""
    digest = hashlib.sha256(f"{config.url}|{config.api}|{name}".encode()).hexdigest()[:8]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in f"{p.hostname}-{p.port}-{name}")
    return base / "spool" / f"{safe}-{digest}"


# -- the sink ---------------------------------------------------------------------------------------
@dataclass
class InfluxSinkStats:
    """Counters (cumulative) and gauges of an :class:`InfluxSink`.

    Attributes:
        points_sent: points accepted by ``write`` (records without fields are not points).
        points_written: points acknowledged by the server (2xx); a batch re-sent after a lost
            acknowledgement counts again, so this may exceed the distinct points stored.
        points_spooled: points put into the spool (each time).
        points_replayed: spooled points later acknowledged by the server.
        batches_written: HTTP writes acknowledged.
        batches_retried: retry attempts (after a retryable failure).
        points_rejected: points in batches the server refused (4xx); see ``rejected.lp``.
        spool_pending_points: points in the spool now.
        queue_points: points in the in-memory queue now.
        last_error: the last failure, as text (no secrets).
    """

    points_sent: int = 0
    points_written: int = 0
    points_spooled: int = 0
    points_replayed: int = 0
    batches_written: int = 0
    batches_retried: int = 0
    points_rejected: int = 0
    spool_pending_points: int = 0
    queue_points: int = 0
    last_error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class _Outcome(Enum):
    WRITTEN = 1
    REJECTED = 2
    UNREACHABLE = 3


class InfluxSink:
    """Batched, retried, spooled writes to InfluxDB; see the module docstring.

    Args:
        config: target and delivery settings.
        transport: override the HTTP transport (tests: a fake; default from ``config.api``).
        spool: the spool, or its directory (default :func:`default_spool_dir`).
        rng: randomness of the backoff jitter.
        sleep: ``sleep(seconds)`` used between retries (tests: record instead of sleeping);
            default an interruptible wait that ``close`` cuts at its deadline.
        on_error: called (in the writer thread) with each :class:`WriteRejectedError` and with a
            :class:`StorageUnavailableError` when a batch goes to the spool; exceptions it raises
            are logged and ignored.
        clock: monotonic clock (seconds).
    """

    def __init__(
        self,
        config: InfluxConfig,
        *,
        transport: Transport | None = None,
        spool: Spool | str | Path | None = None,
        rng: _Rng | None = None,
        sleep: Callable[[float], None] | None = None,
        on_error: Callable[[StorageError], None] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config = config
        self.batch_size = config.batch_size
        self.flush_interval_s = config.flush_interval_s
        self.max_queue_points = config.max_queue_points
        self.max_retries = config.max_retries
        self.backoff = Backoff(config.retry_base_s, config.retry_cap_s, rng)
        self._clock = clock
        self._sleep_fn = sleep
        self._on_error = on_error
        if isinstance(spool, Spool):
            self.spool = spool
        else:
            self.spool = Spool(spool if spool is not None else default_spool_dir(config))
        self._transport = transport if transport is not None else make_transport(config)
        self._secrets = config.secrets()

        self._cv = threading.Condition()
        self._queue: deque[str] = deque()
        self._batch_started: float | None = None  # clock time of the oldest queued point
        self._flush_requested = 0
        self._flush_done = 0
        self._closing = False
        self._closed = False
        self._deadline: float | None = None
        self._closing_evt = threading.Event()
        self._offline = bool(self.spool.pending_batches)  # leftovers: replay before new data
        self._probe_attempt = 0
        self._next_probe = clock()
        self._stats = InfluxSinkStats()
        self._stats_lock = threading.Lock()
        #: points left in the spool at close (None while open)
        self.points_left_spooled: int | None = None
        self._thread = threading.Thread(
            target=self._run, name=f"imu-influx[{config.target}]", daemon=True
        )
        self._thread.start()

    # -- public API ------------------------------------------------------------------------------
    def write(self, records: Sequence[Record]) -> None:
        """Queue records (blocks while the queue is full).

        Raises:
            SinkClosedError: after :meth:`close`.
        """
        lines = records_to_lines(records)
        if not lines:
            return
        i = 0
        with self._cv:
            while i < len(lines):
                if self._closing:
                    raise SinkClosedError(self.config.target)
                room = self.max_queue_points - len(self._queue)
                if room <= 0:
                    if not self._thread.is_alive():
                        raise StorageError("influx writer thread is not running")
                    self._cv.wait(0.5)
                    continue
                chunk = lines[i : i + room]
                if not self._queue:
                    self._batch_started = self._clock()
                self._queue.extend(chunk)
                i += len(chunk)
                with self._stats_lock:
                    self._stats.points_sent += len(chunk)
                self._cv.notify_all()

    def flush(self, timeout_s: float | None = None) -> int:
        """Deliver everything queued so far; returns the points left in the spool (0 = all on the
        server). If the server is unreachable the queue goes to the spool after the retries.

        Raises:
            TimeoutError: not done within ``timeout_s``.
        """
        with self._cv:
            self._flush_requested += 1
            gen = self._flush_requested
            self._cv.notify_all()
            end = None if timeout_s is None else self._clock() + timeout_s
            while self._flush_done < gen:
                if not self._thread.is_alive():
                    break
                remaining = None if end is None else end - self._clock()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"flush of {self.config.target} not done in {timeout_s} s")
                self._cv.wait(remaining if remaining is not None else 1.0)
        return self.spool.pending_points

    def close(self, timeout_s: float = 30.0) -> None:
        """:meth:`drain_and_close`; the count of points left in the spool is logged and kept in
        :attr:`points_left_spooled` (``close`` returns None to match the Sink protocol)."""
        self.drain_and_close(timeout_s)

    def drain_and_close(self, timeout_s: float = 30.0) -> int:
        """Stop accepting writes, deliver the queue and the spool within ``timeout_s`` (then spool
        what is left) and return the number of points left in the spool. Idempotent."""
        with self._cv:
            if not self._closing:
                self._closing = True
                self._deadline = self._clock() + timeout_s
            self._cv.notify_all()
        self._closing_evt.set()
        self._thread.join(timeout_s + self.config.timeout_s + 5.0)
        if self._thread.is_alive():  # stuck in an HTTP call: keep the queue durable
            with self._cv:
                lines = list(self._queue)
                self._queue.clear()
            if lines:
                self._spool_lines(lines)
        if not self._closed:
            self._closed = True
            with contextlib.suppress(Exception):
                self._transport.close()
            self.spool.close()
        left = self.spool.pending_points
        self.points_left_spooled = left
        if left:
            log.warning(
                "influx %s: %d points left in the spool %s",
                self.config.target,
                left,
                self.spool.path,
            )
        return left

    @property
    def stats(self) -> InfluxSinkStats:
        with self._stats_lock:
            s = InfluxSinkStats(**asdict(self._stats))
        s.spool_pending_points = self.spool.pending_points
        with self._cv:
            s.queue_points = len(self._queue)
        return s

    def __enter__(self) -> InfluxSink:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"InfluxSink({self.config!r})"

    # -- writer thread ---------------------------------------------------------------------------
    def _count(self, **inc: int) -> None:
        with self._stats_lock:
            for k, v in inc.items():
                setattr(self._stats, k, getattr(self._stats, k) + v)

    def _error(self, exc: StorageError) -> None:
        with self._stats_lock:
            self._stats.last_error = str(exc)
        if self._on_error is not None:
            try:
                self._on_error(exc)
            except Exception:
                log.exception("influx on_error callback failed")

    def _run(self) -> None:
        while True:
            try:
                if not self._step():
                    return
            except Exception as exc:  # never let the writer die silently
                log.exception("influx writer %s: unexpected error", self.config.target)
                with self._stats_lock:
                    self._stats.last_error = f"{type(exc).__name__}: {exc}"
                self._pause(self.backoff.delay(self._probe_attempt))

    def _step(self) -> bool:
        """One round: take a batch (or nothing) and deliver it. False = finished (closed)."""
        with self._cv:
            while True:
                now = self._clock()
                n = len(self._queue)
                flushing = self._flush_requested > self._flush_done
                age = now - self._batch_started if (n and self._batch_started is not None) else 0.0
                if n >= self.batch_size or (
                    n and (age >= self.flush_interval_s or flushing or self._closing)
                ):
                    break
                probe_due = self._offline and now >= self._next_probe
                if n == 0 and (flushing or self._closing or probe_due or self._unsettled()):
                    break
                timeouts = []
                if n:
                    timeouts.append(self.flush_interval_s - age)
                if self._offline:
                    timeouts.append(self._next_probe - now)
                self._cv.wait(max(0.0, min(timeouts)) if timeouts else None)
            take = min(n, self.batch_size)
            lines = [self._queue.popleft() for _ in range(take)]
            self._batch_started = self._clock() if self._queue else None
            gen = self._flush_requested
            closing = self._closing
            self._cv.notify_all()  # room for blocked writers

        if lines:
            self._deliver(lines)
            drained = False
        else:
            if self.spool.pending_batches:
                self._drain_spool()
            drained = True

        with self._cv:
            idle = not self._queue
            pending = self.spool.pending_batches > 0
            past = self._past_deadline()
            if (
                idle
                and gen > self._flush_done
                and (drained or not pending or self._offline or past)
            ):
                self._flush_done = gen
                self._cv.notify_all()
            return not (closing and idle and (drained or not pending or past))

    def _unsettled(self) -> bool:
        """Spooled data while the server counts as reachable (left from an earlier run)."""
        return not self._offline and self.spool.pending_batches > 0

    def _past_deadline(self) -> bool:
        return self._deadline is not None and self._clock() >= self._deadline

    def _deliver(self, lines: list[str]) -> None:
        if self.spool.pending_batches or self._offline or self._past_deadline():
            # keep the order: behind what is already spooled
            self._spool_lines(lines)
            if not self._past_deadline() and (
                not self._offline or self._clock() >= self._next_probe
            ):
                self._drain_spool()
            return
        outcome = self._send(lines, self.max_retries)
        if outcome is _Outcome.UNREACHABLE:
            self._spool_lines(lines)
            self._go_offline()

    def _spool_lines(self, lines: list[str]) -> None:
        while True:
            try:
                self.spool.append(lines)
                break
            except SpoolError as exc:  # disk full, ...: keep trying, data stays in memory
                self._error(exc)
                log.error("influx %s: cannot spool: %s", self.config.target, exc)
                if self._past_deadline():
                    return
                self._pause(1.0)
        self._count(points_spooled=len(lines))

    def _go_offline(self) -> None:
        self._offline = True
        self._next_probe = self._clock() + self.backoff.delay(self._probe_attempt)
        self._probe_attempt += 1

    def _drain_spool(self) -> None:
        """Replay the spool oldest first while the server acknowledges."""
        while self.spool.pending_batches:
            if self._past_deadline():
                return
            entries = self.spool.peek(self.batch_size)
            lines: list[str] = []
            for e in entries:
                lines.extend(Spool.read(e))
            # offline: one probe per attempt; online: the normal retries
            outcome = self._send(lines, 0 if self._offline else self.max_retries)
            if outcome is _Outcome.UNREACHABLE:
                self._go_offline()
                return
            self.spool.remove(entries)
            if outcome is _Outcome.WRITTEN:
                self._count(points_replayed=len(lines))
            if self._offline:
                log.info("influx %s: server is back, replaying the spool", self.config.target)
            self._offline = False
            self._probe_attempt = 0
        self._offline = False
        self._probe_attempt = 0

    def _send(self, lines: list[str], max_retries: int) -> _Outcome:
        attempt = 0
        while True:
            try:
                self._transport.write(lines)
            except WriteRejectedError as raw:
                rej = WriteRejectedError(raw.status, _scrub(raw.body, self._secrets))
                if rej.status == 413 and len(lines) > 1:  # too large: split
                    half = len(lines) // 2
                    a = self._send(lines[:half], max_retries)
                    if a is _Outcome.UNREACHABLE:
                        return a
                    return self._send(lines[half:], max_retries)
                self._count(points_rejected=len(lines))
                log.error("influx %s: %d points rejected: %s", self.config.target, len(lines), rej)
                try:
                    self.spool.reject(lines, f"HTTP {rej.status}: {rej.body}")
                except SpoolError as serr:
                    log.error("influx %s: cannot save rejected batch: %s", self.config.target, serr)
                self._error(rej)
                return _Outcome.REJECTED
            except RetryableWriteError as raw:
                exc = RetryableWriteError(
                    _scrub(raw.reason, self._secrets),
                    status=raw.status,
                    retry_after_s=raw.retry_after_s,
                )
                if attempt >= max_retries or self._past_deadline():
                    self._error(StorageUnavailableError(attempt + 1, exc.reason))
                    log.warning(
                        "influx %s unreachable after %d attempts (%s); spooling",
                        self.config.target,
                        attempt + 1,
                        exc.reason,
                    )
                    return _Outcome.UNREACHABLE
                delay = self.backoff.delay(attempt)
                if exc.retry_after_s is not None:
                    if exc.retry_after_s > RETRY_AFTER_CAP_S:
                        self._error(StorageUnavailableError(attempt + 1, exc.reason))
                        return _Outcome.UNREACHABLE
                    delay = max(delay, exc.retry_after_s)
                attempt += 1
                self._count(batches_retried=1)
                log.info(
                    "influx %s: retry %d in %.2f s (%s)",
                    self.config.target,
                    attempt,
                    delay,
                    exc.reason,
                )
                self._pause(delay)
            else:
                self._count(points_written=len(lines), batches_written=1)
                return _Outcome.WRITTEN

    def _pause(self, delay_s: float) -> None:
        if self._sleep_fn is not None:
            self._sleep_fn(delay_s)
            return
        end = self._clock() + delay_s
        while True:
            now = self._clock()
            stop = end if self._deadline is None else min(end, self._deadline)
            if now >= stop:
                return
            if self._closing_evt.is_set():
                time.sleep(min(stop - now, 0.05))
            else:
                self._closing_evt.wait(stop - now)


# -- reading (InfluxQL over the 1.x HTTP API) --------------------------------------------------------
class InfluxQLClient:
    """Minimal InfluxQL reader (``GET /query``) for InfluxDB 1.x and 2.x/3.x's v1 compatibility API.

    Args:
        config: the same configuration as the sink; v2/v3 need a DBRP mapping (``docs/storage.md``)
            and use the token as the password.
    """

    def __init__(self, config: InfluxConfig) -> None:
        self.config = config
        self._http = urllib3.PoolManager(
            retries=False, timeout=urllib3.Timeout(total=config.timeout_s)
        )
        self._headers: dict[str, str] = {}
        if config.api == "v2" and config.token:
            self._headers["Authorization"] = f"Token {config.token.reveal()}"
        elif config.username:
            pw = config.password.reveal() if config.password else ""
            cred = base64.b64encode(f"{config.username}:{pw}".encode()).decode()
            self._headers["Authorization"] = f"Basic {cred}"
        self.database = config.database or config.bucket or ""

    def query(self, q: str, *, epoch: str = "ns") -> list[dict[str, Any]]:
        """Series of the first statement: ``[{"name", "tags", "columns", "values"}]``."""
        url = f"{self.config.url.rstrip('/')}/query?" + urlencode(
            {"db": self.database, "q": q, "epoch": epoch}
        )
        try:
            r = self._http.request("GET", url, headers=self._headers)
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise StorageUnavailableError(1, _scrub(str(exc), self.config.secrets())) from None
        text = r.data.decode("utf-8", "replace")
        if r.status != 200:
            raise WriteRejectedError(r.status, _scrub(text, self.config.secrets()))
        data = json.loads(text)
        results = data.get("results") or [{}]
        if "error" in results[0]:
            raise StorageError(f"InfluxQL error: {results[0]['error']}")
        series: list[dict[str, Any]] = results[0].get("series") or []
        return series

    def rows(self, q: str) -> list[dict[str, Any]]:
        """Flattened rows (tags of a GROUP BY merged in)."""
        out = []
        for s in self.query(q):
            tags = s.get("tags") or {}
            for v in s.get("values") or []:
                row = dict(zip(s["columns"], v, strict=True))
                row.update(tags)
                out.append(row)
        return out

    def close(self) -> None:
        self._http.clear()
