"""InfluxSink delivery logic against a fake transport (no server, no sleeping: delays recorded)."""

from __future__ import annotations

import logging
import random
import threading
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from storage.config import InfluxConfig, Secret
from storage.errors import StorageError, StorageUnavailableError, WriteRejectedError
from storage.influx import (
    Backoff,
    InfluxSink,
    RetryableWriteError,
    SinkClosedError,
    _raise_for_status,
    parse_retry_after,
)
from storage.records import Record
from storage.spool import Spool


class FakeTransport:
    """Records acknowledged batches; ``fail(n_lines, call_index)`` may return an exception."""

    def __init__(self, fail: Callable[[int, int], Exception | None] | None = None) -> None:
        self.batches: list[list[str]] = []
        self.calls = 0
        self.fail = fail
        self.lock = threading.Lock()
        self.closed = False

    def write(self, lines: Sequence[str]) -> None:
        with self.lock:
            i = self.calls
            self.calls += 1
        exc = self.fail(len(lines), i) if self.fail else None
        if exc is not None:
            raise exc
        with self.lock:
            self.batches.append(list(lines))

    def close(self) -> None:
        self.closed = True

    @property
    def lines(self) -> list[str]:
        return [ln for b in self.batches for ln in b]


def recs(n: int, start: int = 0) -> list[Record]:
    return [
        Record("steps", 1_000 + i, {"runner": "r", "session": "s"}, {"cadence_spm": float(i)})
        for i in range(start, start + n)
    ]


def cfg(tmp_path: Path, **kw: object) -> InfluxConfig:
    base: dict[str, object] = {
        "url": "http://fake:1",
        "database": "db",
        "batch_size": 10,
        "flush_interval_s": 60.0,
        "retry_base_s": 0.1,
        "retry_cap_s": 1.0,
        "max_retries": 2,
        "spool_dir": tmp_path / "spool",
    }
    base.update(kw)
    return InfluxConfig.from_mapping(base)


def make_sink(
    tmp_path: Path, transport: FakeTransport, **kw: object
) -> tuple[InfluxSink, list[float]]:
    delays: list[float] = []
    sink = InfluxSink(
        cfg(tmp_path, **kw), transport=transport, rng=random.Random(1), sleep=delays.append
    )
    return sink, delays


def test_backoff_schedule_is_capped_and_jittered() -> None:
    class Const:
        def __init__(self, v: float) -> None:
            self.v = v

        def random(self) -> float:
            return self.v

    lo = Backoff(0.5, 4.0, Const(0.0))
    hi = Backoff(0.5, 4.0, Const(0.999999))
    assert [lo.delay(i) for i in range(6)] == [0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    assert [round(hi.delay(i), 3) for i in range(6)] == [0.5, 1.0, 2.0, 4.0, 4.0, 4.0]
    assert Backoff(0.5, 4.0).delay(10_000) <= 4.0


def test_retry_after_parsing() -> None:
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("garbage") is None
    assert parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == pytest.approx(
        10.0
    )


def test_status_classification() -> None:
    _raise_for_status(204, "", None, [])
    for status in (500, 503, 429):
        with pytest.raises(RetryableWriteError) as ei:
            _raise_for_status(status, "busy", "2", [])
        assert ei.value.retry_after_s == 2.0
        assert ei.value.status == status
    with pytest.raises(WriteRejectedError) as rej:
        _raise_for_status(400, '{"error":"partial write: field type conflict"}', None, [])
    assert rej.value.status == 400
    assert rej.value.body == "partial write: field type conflict"


def test_batches_close_by_size_and_flush(tmp_path: Path) -> None:
    t = FakeTransport()
    sink, _ = make_sink(tmp_path, t)
    sink.write(recs(25))
    assert sink.flush(10) == 0
    assert [len(b) for b in t.batches] == [10, 10, 5]
    assert len(t.lines) == 25
    assert t.lines[0].startswith("steps,runner=r,session=s cadence_spm=0.0 1000")
    s = sink.stats
    assert (s.points_sent, s.points_written, s.points_spooled, s.points_rejected) == (25, 25, 0, 0)
    assert sink.drain_and_close() == 0
    assert t.closed


def test_batch_closes_by_time(tmp_path: Path) -> None:
    t = FakeTransport()
    sink, _ = make_sink(tmp_path, t, flush_interval_s=0.05)
    done = threading.Event()
    sink.write(recs(3))
    # no flush(): the interval closes the batch
    for _ in range(200):
        if t.batches:
            done.set()
            break
        threading.Event().wait(0.01)
    assert done.is_set()
    assert [len(b) for b in t.batches] == [3]
    sink.close()


def test_retries_then_success_with_retry_after(tmp_path: Path) -> None:
    def fail(n: int, i: int) -> Exception | None:
        if i == 0:
            return RetryableWriteError("HTTP 503", status=503)
        if i == 1:
            return RetryableWriteError("HTTP 429", status=429, retry_after_s=7.0)
        return None

    t = FakeTransport(fail)
    sink, delays = make_sink(tmp_path, t)
    sink.write(recs(10))
    assert sink.flush(10) == 0
    assert len(t.lines) == 10
    assert sink.stats.batches_retried == 2
    assert 0.05 <= delays[0] <= 0.1  # backoff(0) in [base/2, base]
    assert delays[1] == 7.0  # Retry-After honoured (longer than the backoff)
    sink.close()


def test_rejected_batch_is_counted_saved_and_dropped(tmp_path: Path) -> None:
    def fail(n: int, i: int) -> Exception | None:
        return WriteRejectedError(400, "unable to parse 'x'") if i == 0 else None

    errors: list[StorageError] = []
    t = FakeTransport(fail)
    sink = InfluxSink(cfg(tmp_path), transport=t, sleep=lambda s: None, on_error=errors.append)
    sink.write(recs(15))
    sink.flush(10)
    s = sink.stats
    assert s.points_rejected == 10
    assert s.points_written == 5
    assert s.batches_retried == 0
    assert isinstance(errors[0], WriteRejectedError)
    text = (tmp_path / "spool" / "rejected.lp").read_text().splitlines()
    assert text[0].startswith("# ")
    assert "HTTP 400: unable to parse 'x'" in text[0]
    assert len(text) == 11
    sink.close()


def test_on_error_callback_cannot_crash_writer(tmp_path: Path) -> None:
    def fail(n: int, i: int) -> Exception | None:
        return WriteRejectedError(422, "bad") if i == 0 else None

    def boom(exc: StorageError) -> None:
        raise RuntimeError("callback bug")

    t = FakeTransport(fail)
    sink = InfluxSink(cfg(tmp_path), transport=t, sleep=lambda s: None, on_error=boom)
    sink.write(recs(20))
    sink.flush(10)
    assert len(t.lines) == 10
    sink.close()


def test_too_large_batch_is_split(tmp_path: Path) -> None:
    def fail(n: int, i: int) -> Exception | None:
        return WriteRejectedError(413, "too large") if n > 3 else None

    t = FakeTransport(fail)
    sink, _ = make_sink(tmp_path, t)
    sink.write(recs(10))
    sink.flush(10)
    assert sorted(t.lines) == sorted(
        f"steps,runner=r,session=s cadence_spm={float(i)} {1000 + i}" for i in range(10)
    )
    assert sink.stats.points_rejected == 0
    sink.close()


def test_unreachable_spools_in_order_then_replays(tmp_path: Path) -> None:
    up = threading.Event()

    def fail(n: int, i: int) -> Exception | None:
        return None if up.is_set() else RetryableWriteError("connection refused")

    errors: list[StorageError] = []
    t = FakeTransport(fail)
    sink = InfluxSink(cfg(tmp_path), transport=t, sleep=lambda s: None, on_error=errors.append)
    for k in range(5):
        sink.write(recs(10, start=10 * k))
        sink.flush(10)  # each flush: retries exhausted -> spooled
    s = sink.stats
    assert s.points_written == 0
    assert s.points_spooled == 50
    assert s.spool_pending_points == 50
    assert any(isinstance(e, StorageUnavailableError) for e in errors)
    assert s.batches_retried == 2  # only the first batch retries; then offline -> straight to spool
    up.set()
    assert sink.flush(10) == 0
    assert t.lines == [
        f"steps,runner=r,session=s cadence_spm={float(i)} {1000 + i}" for i in range(50)
    ]
    assert sink.stats.points_replayed == 50
    assert not list((tmp_path / "spool").glob("*.lp"))
    assert sink.drain_and_close() == 0


def test_close_spools_when_down_and_next_sink_replays(tmp_path: Path) -> None:
    down = FakeTransport(lambda n, i: RetryableWriteError("down"))
    sink, _ = make_sink(tmp_path, down)
    sink.write(recs(23))
    assert sink.drain_and_close(timeout_s=5) == 23
    sink.close()  # idempotent; the Sink-protocol close keeps the count
    assert sink.points_left_spooled == 23
    with pytest.raises(SinkClosedError):
        sink.write(recs(1))
    up = FakeTransport()
    sink2, _ = make_sink(tmp_path, up)
    sink2.write(recs(2, start=100))
    assert sink2.flush(10) == 0
    # old points first, in order, then the new ones
    assert [ln.rsplit(" ", 1)[1] for ln in up.lines] == [
        str(1000 + i) for i in [*range(23), 100, 101]
    ]
    assert sink2.drain_and_close() == 0


def test_write_blocks_when_queue_full(tmp_path: Path) -> None:
    gate = threading.Event()

    class Slow(FakeTransport):
        def write(self, lines: Sequence[str]) -> None:
            gate.wait(10)
            super().write(lines)

    t = Slow()
    sink, _ = make_sink(tmp_path, t, batch_size=5, max_queue_points=10)
    finished = threading.Event()

    def producer() -> None:
        sink.write(recs(40))
        finished.set()

    th = threading.Thread(target=producer)
    th.start()
    assert not finished.wait(0.2)  # blocked: 5 in flight + 10 queued < 40
    assert sink.stats.queue_points <= 10
    gate.set()
    th.join(10)
    assert finished.is_set()
    sink.flush(10)
    assert len(t.lines) == 40
    sink.close()


def test_secrets_never_in_repr_logs_or_errors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    token = "s3cr3t-T0KEN-value"
    c = InfluxConfig(
        url="http://127.0.0.1:9",
        bucket="b",
        org="o",
        token=Secret(token),
        spool_dir=tmp_path / "sp",
        max_retries=0,
        retry_base_s=0.01,
        retry_cap_s=0.01,
        timeout_s=0.5,
    )

    def fail(n: int, i: int) -> Exception | None:
        return (
            WriteRejectedError(401, f"bad token {token}")
            if i == 0
            else RetryableWriteError(f"connect to 127.0.0.1 with {token}")
        )

    caplog.set_level(logging.DEBUG)
    errors: list[StorageError] = []
    # the real v2 transport scrubs foreign texts; the fake one here simulates a leaky server
    sink = InfluxSink(
        c, transport=FakeTransport(fail), sleep=lambda s: None, on_error=errors.append
    )
    sink.write(recs(3))
    sink.flush(5)
    assert token not in repr(c)
    assert token not in str(c)
    assert token not in repr(sink)
    assert token not in f"{c.token}"
    sink.close()
    assert errors
    assert all(token not in str(e) for e in errors)
    assert token not in caplog.text
    assert token not in (tmp_path / "sp" / "rejected.lp").read_text()
    assert token not in str(sink.stats)
    assert c.token is not None
    assert c.token.reveal() == token


def test_transport_errors_are_scrubbed(tmp_path: Path) -> None:
    from storage.influx import V1Transport, V2Transport

    token = "another-secret-123"
    v2 = V2Transport(
        InfluxConfig(
            url="http://127.0.0.1:9", bucket="b", org="o", token=Secret(token), timeout_s=0.5
        )
    )
    with pytest.raises(RetryableWriteError) as e2:
        v2.write(["m f=1 1"])
    assert token not in str(e2.value)
    v2.close()
    v1 = V1Transport(
        InfluxConfig(url=f"http://bob:{token}@127.0.0.1:9", database="d", timeout_s=0.5)
    )
    with pytest.raises(RetryableWriteError) as e1:
        v1.write(["m f=1 1"])
    assert token not in str(e1.value)
    assert token not in repr(v1.config)
    with pytest.raises(WriteRejectedError) as e3:
        _raise_for_status(401, f"token {token} invalid", None, [token])
    assert token not in str(e3.value)
    v1.close()


def test_spool_is_exclusive_and_survives_tmp_leftovers(tmp_path: Path) -> None:
    d = tmp_path / "sp"
    with Spool(d) as sp:
        sp.append(["a 1", "b 2"])
        sp.append(["c 3"])
        with pytest.raises(StorageError):
            Spool(d)
    (d / "000000000009-1.lp.tmp").write_text("partial")
    with Spool(d) as sp:
        assert not list(d.glob("*.tmp"))
        assert sp.pending_points == 3
        entries = sp.peek(2)
        assert [Spool.read(e) for e in entries] == [["a 1", "b 2"]]
        assert len(sp.peek(3)) == 2
        sp.remove(entries)
        e = sp.append(["d 4"])
        assert e.seq == 3
        assert [Spool.read(x) for x in sp.peek()] == [["c 3"], ["d 4"]]
