"""EmbeddedStore (SQLite): schema, idempotent upserts, query API, concurrency."""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from dsp.types import EVENT_DTYPE, STEP_DTYPE, STEP_METRICS
from storage.convert import event_records, session_record, step_records
from storage.embedded import EmbeddedStore, EmbeddedStoreError, default_db_path
from storage.errors import SessionNotFoundError, StorageError
from storage.records import Record

T0 = 1_763_900_000_000_000_000  # UTC ns of sensor time 0


def make_steps(n: int, *, seed: int = 0, t_start: float = 1.0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    s = np.zeros(n, dtype=STEP_DTYPE)
    s["time_s"] = t_start + np.arange(n) * 0.35
    s["side"] = np.where(np.arange(n) % 2 == 0, 1, 2)
    s["activity"] = 2
    for m in STEP_METRICS:
        s[m] = rng.normal(1.0, 0.1, n)
    s["braking_mps2"][0] = np.nan
    return s


@pytest.fixture
def store(tmp_path: Path) -> Iterator[EmbeddedStore]:
    with EmbeddedStore(tmp_path / "imu.db") as st:
        yield st


def test_default_path(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("IMU_HOME", str(tmp_path / "home"))
    assert default_db_path() == tmp_path / "home" / "imu.db"
    with EmbeddedStore() as st:
        assert Path(st.path) == tmp_path / "home" / "imu.db"
    assert (tmp_path / "home" / "imu.db").exists()
    monkeypatch.delenv("IMU_HOME")
    assert default_db_path() == Path.home() / ".local" / "share" / "imu" / "imu.db"


def test_wal_mode(store: EmbeddedStore) -> None:
    con = sqlite3.connect(store.path)
    assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    con.close()


def test_steps_round_trip_and_idempotent(store: EmbeddedStore) -> None:
    steps = make_steps(50)
    recs = step_records(steps, start_utc_ns=T0, runner="ana", session="s1", device="d1")
    store.write(recs)
    store.write(recs)  # same points again -> still one row each
    assert store.count("steps") == 50
    got = store.steps("s1")
    assert got.dtype == STEP_DTYPE
    for name in STEP_DTYPE.names or ():
        np.testing.assert_array_equal(got[name], steps[name])
    assert math.isnan(got["braking_mps2"][0])
    rows = store.rows("steps", session="s1")
    assert rows[0]["time_ns"] == T0 + 1_000_000_000
    assert rows[0]["side"] == "left"
    assert rows[1]["side"] == "right"
    assert rows[0]["activity"] == "running"
    assert rows[0]["braking_mps2"] is None


def test_upsert_merges_fields(store: EmbeddedStore) -> None:
    tags = {"runner": "r", "session": "s", "side": "left", "activity": "running"}
    store.write([Record("steps", 5, tags, {"cadence_spm": 170.0, "braking_mps2": 3.0})])
    store.write([Record("steps", 5, tags, {"cadence_spm": 171.0, "braking_mps2": math.nan})])
    (row,) = store.rows("steps")
    assert row["cadence_spm"] == 171.0
    assert row["braking_mps2"] == 3.0  # NaN = not computed: keeps the stored value
    # a different tag value is a different point
    store.write([Record("steps", 5, {**tags, "side": "right"}, {"cadence_spm": 1.0})])
    assert store.count("steps") == 2


def test_points_without_fields_are_skipped(store: EmbeddedStore) -> None:
    store.write([Record("steps", 1, {"session": "s"}, {"cadence_spm": math.nan})])
    store.write([])
    assert store.count("steps") == 0


def test_events(store: EmbeddedStore) -> None:
    ev = np.zeros(4, dtype=EVENT_DTYPE)
    ev["time_s"] = [1.0, 1.2, 1.35, 1.55]
    ev["kind"] = [0, 1, 0, 1]
    ev["side"] = [1, 1, 2, 2]
    store.write(event_records(ev, start_utc_ns=T0, runner="r", session="s"))
    store.write(event_records(ev, start_utc_ns=T0, runner="r", session="s"))
    got = store.events("s")
    assert got.dtype == EVENT_DTYPE
    np.testing.assert_array_equal(got, ev)
    assert store.events("other").shape == (0,)


def test_alerts(store: EmbeddedStore) -> None:
    tags = {
        "runner": "r",
        "session": "s",
        "side": "left",
        "metric": "pelvic_drop_deg",
        "level": "warn",
    }
    store.write(
        [
            Record(
                "alerts",
                T0 + 10,
                tags,
                {"value": 9.5, "baseline": 6.0, "active": True, "message": 'left drop "high"'},
            ),
            Record("alerts", T0 + 20, tags, {"value": 6.1, "active": False, "message": "ok"}),
        ]
    )
    a = store.alerts("s")
    assert [x["active"] for x in a] == [True, False]
    assert a[0]["message"] == 'left drop "high"'
    assert a[0]["metric"] == "pelvic_drop_deg"
    assert a[1]["baseline"] is None


def test_session_lifecycle_and_listing(store: EmbeddedStore) -> None:
    store.write(
        [session_record(start_utc_ns=T0, runner="ana", session="s1", device="d", source="sim")]
    )
    store.write(
        step_records(make_steps(10), start_utc_ns=T0, runner="ana", session="s1", device="d")
    )
    s = store.get_session("s1")
    assert s["steps"] is None
    assert s["step_count"] == 10
    store.write(
        [
            session_record(
                start_utc_ns=T0,
                runner="ana",
                session="s1",
                device="d",
                source="sim",
                fields={"duration_s": 60.0, "steps": 10, "distance_m": 150.0, "packets_lost": 0},
            )
        ]
    )
    assert store.count("sessions") == 1  # upsert, same tags + time
    s = store.get_session("s1")
    assert s["duration_s"] == 60.0
    assert s["steps"] == 10
    assert isinstance(s["steps"], int)
    assert s["start_utc_s"] == T0 / 1e9
    assert s["source"] == "sim"

    # a crashed session: steps but no sessions record
    store.write(step_records(make_steps(4), start_utc_ns=T0 + 10**12, runner="bo", session="s2"))
    store.write([session_record(start_utc_ns=T0 + 2 * 10**12, runner="ana", session="s3")])
    assert [x["session"] for x in store.list_sessions()] == ["s1", "s2", "s3"]
    assert [x["session"] for x in store.list_sessions(runner="ana")] == ["s1", "s3"]
    s2 = store.get_session("s2")
    assert s2["runner"] == "bo"
    assert s2["step_count"] == 4
    assert s2["duration_s"] == pytest.approx(3 * 0.35)
    assert s2["time_ns"] == T0 + 10**12 + 10**9
    assert store.get_session("s3")["step_count"] == 0


def test_session_not_found(store: EmbeddedStore) -> None:
    with pytest.raises(SessionNotFoundError) as ei:
        store.get_session("nope")
    assert ei.value.session == "nope"
    assert isinstance(ei.value, StorageError)


def test_extra_tags_and_fields_and_unknown_measurement(store: EmbeddedStore) -> None:
    tags = {"runner": "r", "session": "s", "shoe": "x1"}
    store.write([Record("steps", 1, tags, {"cadence_spm": 1.0, "hr_bpm": 150})])
    store.write([Record("steps", 1, {**tags, "shoe": "x2"}, {"cadence_spm": 2.0})])
    rows = store.rows("steps")
    assert len(rows) == 2
    assert rows[0]["shoe"] == "x1"
    assert rows[0]["hr_bpm"] == 150
    store.write([Record("gps", 7, {"runner": "r"}, {"lat": 1.5, "bad": math.nan})])
    store.write([Record("gps", 7, {"runner": "r"}, {"lon": 2.5})])
    assert store.points("gps") == [{"time_ns": 7, "runner": "r", "lat": 1.5, "lon": 2.5}]


def test_closed_store_raises(tmp_path: Path) -> None:
    st = EmbeddedStore(tmp_path / "x.db")
    st.close()
    st.close()
    with pytest.raises(EmbeddedStoreError):
        st.write([Record("steps", 1, {}, {"cadence_spm": 1.0})])


def test_memory_store() -> None:
    with EmbeddedStore(":memory:") as st:
        st.write(step_records(make_steps(3), start_utc_ns=T0, runner="r", session="s"))
        assert len(st.steps("s")) == 3


def test_bad_file_is_a_storage_error(tmp_path: Path) -> None:
    p = tmp_path / "garbage.db"
    p.write_bytes(b"not a database" * 100)
    with pytest.raises(EmbeddedStoreError) as ei:
        EmbeddedStore(p)
    assert ei.value.path == str(p)


def test_one_writer_thread_and_reader_connection(tmp_path: Path) -> None:
    path = tmp_path / "imu.db"
    writer = EmbeddedStore(path)
    steps = make_steps(400)
    recs = step_records(steps, start_utc_ns=T0, runner="r", session="s")
    seen: list[int] = []
    errors: list[BaseException] = []

    def read() -> None:
        try:
            with EmbeddedStore(path) as reader:
                for _ in range(30):
                    seen.append(reader.count("steps"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    t = threading.Thread(target=read)
    t.start()
    for i in range(0, 400, 20):
        writer.write(recs[i : i + 20])
    t.join()
    writer.close()
    assert not errors
    assert seen == sorted(seen)  # readers see only committed, growing prefixes
    assert all(n % 20 == 0 for n in seen)
    with EmbeddedStore(path) as st:
        assert st.count("steps") == 400
