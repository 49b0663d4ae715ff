"""The embedded default store: one SQLite file (stdlib ``sqlite3``), used when no server is configured.

Layout: one table per measurement of :mod:`storage.schema` (``steps``, ``events``, ``alerts``,
``sessions``) with one TEXT column per tag (``''`` = tag absent), one column per field (REAL, INTEGER
for ``count``/``bool``, TEXT for ``text``) and ``time_ns`` (UTC ns). Tags/fields outside the schema go
to the JSON columns ``extra_tags`` (part of the identity) / ``extra_fields``. Measurements outside
the schema go to a generic ``points`` table (tags and fields as JSON).

Identity = tags + time, like InfluxDB: ``UNIQUE(<tags>, extra_tags, time_ns)``. Writing a point
again is an upsert: fields of the new write replace the stored ones, fields it does not carry (or
carries as NaN) keep their stored value. So writing the same records twice keeps one row each, and
a ``sessions`` record written at the start and again at the end (same tags + time) is updated in
place.

Concurrency: WAL mode, ``synchronous=NORMAL``; one writer (any thread; calls are serialised by a
lock) plus any number of readers, in this or other processes.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
from numpy.typing import NDArray

from dsp.types import EVENT_DTYPE, STEP_DTYPE, STEP_METRICS
from storage.convert import ACTIVITY_CODES, EVENT_CODES, SIDE_CODES
from storage.errors import SessionNotFoundError, StorageError
from storage.records import FieldValue, Record
from storage.schema import (
    FIELDS,
    MEASUREMENT_ALERTS,
    MEASUREMENT_SESSIONS,
    TAGS,
)

__all__ = ["EmbeddedStore", "EmbeddedStoreError", "default_db_path"]

SCHEMA_VERSION = 1


class EmbeddedStoreError(StorageError):
    """The SQLite file could not be opened, read or written."""

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"embedded store {path}: {reason}")


def default_db_path() -> Path:
    """``$IMU_HOME/imu.db``, else ``~/.local/share/imu/imu.db``."""
    home = os.environ.get("IMU_HOME")
    if home:
        return Path(home).expanduser() / "imu.db"
    return Path.home() / ".local" / "share" / "imu" / "imu.db"


def _sql_type(unit: str) -> str:
    if unit in ("count", "bool"):
        return "INTEGER"
    if unit == "text":
        return "TEXT"
    return "REAL"


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


class _Table:
    """SQL of one measurement table."""

    def __init__(self, measurement: str) -> None:
        self.measurement = measurement
        self.tags = TAGS[measurement]
        self.fields = tuple(FIELDS[measurement])
        self.units = FIELDS[measurement]
        self.bool_fields = frozenset(k for k, u in self.units.items() if u == "bool")
        self.int_fields = frozenset(k for k, u in self.units.items() if u == "count")
        self._tag_set = frozenset(self.tags)
        # (field, unit, plain float fast path allowed) in column order
        self._field_units = tuple((f, u, u != "count") for f, u in self.units.items())
        key = [*self.tags, "extra_tags", "time_ns"]
        cols = (
            ["time_ns INTEGER NOT NULL"]
            + [f"{_q(t)} TEXT NOT NULL DEFAULT ''" for t in self.tags]
            + ["extra_tags TEXT NOT NULL DEFAULT ''"]
            + [f"{_q(f)} {_sql_type(u)}" for f, u in self.units.items()]
            + ["extra_fields TEXT"]
        )
        self.create = [
            f"CREATE TABLE IF NOT EXISTS {_q(measurement)} ({', '.join(cols)}, "
            f"UNIQUE({', '.join(_q(k) for k in key)}))",
            f"CREATE INDEX IF NOT EXISTS {_q(measurement + '_session_time')} "
            f"ON {_q(measurement)} (session, time_ns)",
            f"CREATE INDEX IF NOT EXISTS {_q(measurement + '_runner_time')} "
            f"ON {_q(measurement)} (runner, time_ns)",
        ]
        all_cols = ["time_ns", *self.tags, "extra_tags", *self.fields, "extra_fields"]
        updates = [f"{_q(f)} = COALESCE(excluded.{_q(f)}, {_q(f)})" for f in self.fields]
        updates.append(
            "extra_fields = CASE WHEN excluded.extra_fields IS NULL THEN extra_fields "
            "WHEN extra_fields IS NULL THEN excluded.extra_fields "
            "ELSE json_patch(extra_fields, excluded.extra_fields) END"
        )
        self.upsert = (
            f"INSERT INTO {_q(measurement)} ({', '.join(_q(c) for c in all_cols)}) "
            f"VALUES ({', '.join('?' for _ in all_cols)}) "
            f"ON CONFLICT({', '.join(_q(k) for k in key)}) DO UPDATE SET {', '.join(updates)}"
        )

    def row(self, r: Record) -> tuple[Any, ...] | None:
        """Parameters of the upsert, or ``None`` if the record has no writable field."""
        tags = r.tags
        fields = r.fields
        extra_tags = (
            {k: v for k, v in tags.items() if k not in self._tag_set and v != ""}
            if not tags.keys() <= self._tag_set
            else None
        )
        values: list[Any] = [int(r.time_ns)]
        values += [str(tags.get(t, "")) for t in self.tags]
        values.append(json.dumps(extra_tags, sort_keys=True) if extra_tags else "")
        n = 0
        get = fields.get
        isfinite = math.isfinite
        for f, unit, plain in self._field_units:
            v = get(f)
            if v is None:
                values.append(None)
                continue
            if plain and type(v) is float:  # the common case of _db_value
                if isfinite(v):
                    n += 1
                    values.append(v)
                else:
                    values.append(None)
                continue
            v = _db_value(v, unit)
            n += v is not None
            values.append(v)
        extra_fields = (
            {k: v for k, v in fields.items() if k not in self.units and _db_value(v) is not None}
            if not fields.keys() <= self.units.keys()
            else None
        )
        if extra_fields:
            n += len(extra_fields)
        if n == 0:
            return None
        values.append(json.dumps(extra_fields, sort_keys=True) if extra_fields else None)
        return tuple(values)

    def decode(self, row: sqlite3.Row) -> dict[str, Any]:
        out: dict[str, Any] = {"time_ns": row["time_ns"]}
        for t in self.tags:
            out[t] = row[t]
        if row["extra_tags"]:
            out.update(json.loads(row["extra_tags"]))
        for f in self.fields:
            v = row[f]
            if v is not None and f in self.bool_fields:
                v = bool(v)
            out[f] = v
        if row["extra_fields"]:
            out.update(json.loads(row["extra_fields"]))
        return out


def _db_value(v: FieldValue | None, unit: str | None = None) -> FieldValue | None:
    """Value as stored: NaN/inf/None -> None (field absent); numpy scalars -> Python."""
    if v is None:
        return None
    if isinstance(v, str):
        return v
    if isinstance(v, bool | np.bool_):
        return int(bool(v)) if unit is not None else bool(v)
    if isinstance(v, int | np.integer):
        return int(v)
    f = float(v)
    if not math.isfinite(f):
        return None
    if unit == "count" and f.is_integer():
        return int(f)
    return f


_TABLES = {m: _Table(m) for m in TAGS}

_GENERIC = [
    "CREATE TABLE IF NOT EXISTS points (measurement TEXT NOT NULL, tags TEXT NOT NULL, "
    "time_ns INTEGER NOT NULL, fields TEXT NOT NULL, UNIQUE(measurement, tags, time_ns))",
]
_GENERIC_UPSERT = (
    "INSERT INTO points (measurement, tags, time_ns, fields) VALUES (?, ?, ?, ?) "
    "ON CONFLICT(measurement, tags, time_ns) DO UPDATE SET fields = json_patch(fields, excluded.fields)"
)


class EmbeddedStore:
    """SQLite result store; a :class:`~storage.records.Sink` and the query API of the CLI.

    Args:
        path: database file; default :func:`default_db_path`. Parent directories are created.
            ``":memory:"`` gives a private in-memory store (tests).
        timeout_s: how long a call waits for another process's write lock.

    Example::

        with EmbeddedStore(tmp / "imu.db") as store:
            store.write(records)
            store.list_sessions(runner="ana")
    """

    def __init__(self, path: str | Path | None = None, *, timeout_s: float = 5.0) -> None:
        self.path = str(path) if path is not None else str(default_db_path())
        if self.path != ":memory:":
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        try:
            self._conn = sqlite3.connect(
                self.path, timeout=timeout_s, isolation_level=None, check_same_thread=False
            )
            self._conn.row_factory = sqlite3.Row
            if self.path != ":memory:":
                self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")
            self._create_schema()
        except sqlite3.Error as exc:
            raise EmbeddedStoreError(self.path, str(exc)) from exc
        self._closed = False

    # -- lifecycle -------------------------------------------------------------------------------
    def _create_schema(self) -> None:
        with self._lock:
            version = self._conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise EmbeddedStoreError(
                    self.path,
                    f"schema version {version} is newer than this program's {SCHEMA_VERSION}",
                )
            self._conn.execute("BEGIN IMMEDIATE")
            try:
                for table in _TABLES.values():
                    for sql in table.create:
                        self._conn.execute(sql)
                for sql in _GENERIC:
                    self._conn.execute(sql)
                self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
                self._conn.execute("COMMIT")
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise

    def close(self) -> None:
        """Close the database (idempotent)."""
        with self._lock:
            if not self._closed:
                self._closed = True
                self._conn.close()

    def __enter__(self) -> EmbeddedStore:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"EmbeddedStore({self.path!r})"

    # -- writing ---------------------------------------------------------------------------------
    def write(self, records: Sequence[Record]) -> None:
        """Upsert records in one transaction (idempotent: same tags + time -> one row)."""
        by_table: dict[str, list[tuple[Any, ...]]] = {}
        generic: list[tuple[Any, ...]] = []
        for r in records:
            table = _TABLES.get(r.measurement)
            if table is None:
                fields = {k: _db_value(v) for k, v in r.fields.items()}
                fields = {k: v for k, v in fields.items() if v is not None}
                if fields:
                    tags = {k: v for k, v in r.tags.items() if v != ""}
                    generic.append(
                        (
                            r.measurement,
                            json.dumps(tags, sort_keys=True),
                            int(r.time_ns),
                            json.dumps(fields, sort_keys=True),
                        )
                    )
                continue
            row = table.row(r)
            if row is not None:
                by_table.setdefault(r.measurement, []).append(row)
        if not by_table and not generic:
            return
        with self._lock:
            self._check_open()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    for m, rows in by_table.items():
                        self._conn.executemany(_TABLES[m].upsert, rows)
                    if generic:
                        self._conn.executemany(_GENERIC_UPSERT, generic)
                    self._conn.execute("COMMIT")
                except BaseException:
                    self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.Error as exc:
                raise EmbeddedStoreError(self.path, str(exc)) from exc

    def flush(self) -> None:
        """Nothing is buffered: every :meth:`write` is committed when it returns."""

    def _check_open(self) -> None:
        if self._closed:
            raise EmbeddedStoreError(self.path, "store is closed")

    # -- reading ---------------------------------------------------------------------------------
    def _query(self, sql: str, params: Iterable[Any] = ()) -> list[sqlite3.Row]:
        with self._lock:
            self._check_open()
            try:
                return self._conn.execute(sql, tuple(params)).fetchall()
            except sqlite3.Error as exc:
                raise EmbeddedStoreError(self.path, str(exc)) from exc

    def rows(
        self,
        measurement: str,
        *,
        session: str | None = None,
        runner: str | None = None,
    ) -> list[dict[str, Any]]:
        """Rows of a schema measurement as dicts (``time_ns``, tags, fields; absent field = None),
        ordered by time."""
        table = _TABLES.get(measurement)
        if table is None:
            raise EmbeddedStoreError(self.path, f"unknown measurement {measurement!r}")
        where, params = [], []
        if session is not None:
            where.append("session = ?")
            params.append(session)
        if runner is not None:
            where.append("runner = ?")
            params.append(runner)
        sql = f"SELECT * FROM {_q(measurement)}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY time_ns"
        return [table.decode(r) for r in self._query(sql, params)]

    def list_sessions(self, runner: str | None = None) -> list[dict[str, Any]]:
        """Sessions, oldest first.

        Each dict: ``runner, session, device, source, time_ns`` (start, UTC ns), the ``sessions``
        fields (``start_utc_s, duration_s, steps, distance_m, ...``; None when not written) and
        ``step_count`` (rows in ``steps``). A session that has steps but no ``sessions`` record
        (e.g. a crashed run) is listed too, its ``time_ns``/``start_utc_s`` from its first step and
        ``duration_s`` from the sensor times of its first and last steps.
        """
        sessions: dict[str, dict[str, Any]] = {}
        for row in self.rows(MEASUREMENT_SESSIONS, runner=runner):
            s = sessions.get(row["session"])
            if s is None:
                sessions[row["session"]] = row
            else:  # several records of one session: first one's tags/time, later fields win
                keep = (*TAGS[MEASUREMENT_SESSIONS], "time_ns")
                s.update({k: v for k, v in row.items() if v is not None and k not in keep})
        sql = (
            "SELECT session, runner, device, COUNT(*) AS n, MIN(time_ns) AS t0, "
            "MIN(sensor_time_s) AS s0, MAX(sensor_time_s) AS s1 FROM steps"
        )
        params: list[Any] = []
        if runner is not None:
            sql += " WHERE runner = ?"
            params.append(runner)
        sql += " GROUP BY session, runner, device"
        for r in self._query(sql, params):
            s = sessions.get(r["session"])
            if s is None:
                s = {"time_ns": r["t0"], "runner": r["runner"], "session": r["session"]}
                s.update({"device": r["device"], "source": ""})
                s.update(dict.fromkeys(FIELDS[MEASUREMENT_SESSIONS]))
                s["start_utc_s"] = r["t0"] / 1e9
                if r["s0"] is not None and r["s1"] is not None:
                    s["duration_s"] = r["s1"] - r["s0"]
                s["step_count"] = 0
                sessions[r["session"]] = s
            s["step_count"] = s.get("step_count", 0) + r["n"]
        out = list(sessions.values())
        for s in out:
            s.setdefault("step_count", 0)
        out.sort(key=lambda s: (s["time_ns"], s["session"]))
        return out

    def get_session(self, session: str) -> dict[str, Any]:
        """One session as in :meth:`list_sessions`.

        Raises:
            SessionNotFoundError: neither a ``sessions`` record nor steps of this session exist.
        """
        for s in self._sessions_matching(session):
            return s
        raise SessionNotFoundError(session)

    def _sessions_matching(self, session: str) -> list[dict[str, Any]]:
        runners = {
            r["runner"]
            for r in self._query(
                "SELECT DISTINCT runner FROM sessions WHERE session = ? "
                "UNION SELECT DISTINCT runner FROM steps WHERE session = ?",
                (session, session),
            )
        }
        out: list[dict[str, Any]] = []
        for runner in sorted(runners):
            out.extend(s for s in self.list_sessions(runner) if s["session"] == session)
        return out

    def steps(self, session: str) -> NDArray[np.void]:
        """Steps of a session as a ``STEP_DTYPE`` array (sensor times, side/activity codes), by
        time; absent metrics are NaN. Empty if the session has no steps. The UTC times are in
        ``rows("steps", session=...)``."""
        cols = ", ".join(["sensor_time_s", "side", "activity", *(_q(m) for m in STEP_METRICS)])
        rows = self._query(
            f"SELECT {cols} FROM steps WHERE session = ? ORDER BY time_ns", (session,)
        )
        out = np.empty(len(rows), dtype=STEP_DTYPE)
        if not rows:
            return out
        nan = math.nan
        out["time_s"] = [nan if r[0] is None else r[0] for r in rows]
        out["side"] = [SIDE_CODES.get(r[1], 0) for r in rows]
        out["activity"] = [ACTIVITY_CODES.get(r[2], 0) for r in rows]
        for i, m in enumerate(STEP_METRICS, start=3):
            out[m] = [nan if r[i] is None else r[i] for r in rows]
        return out

    def events(self, session: str) -> NDArray[np.void]:
        """Gait events of a session as an ``EVENT_DTYPE`` array, by time."""
        rows = self._query(
            "SELECT sensor_time_s, event, side FROM events WHERE session = ? ORDER BY time_ns",
            (session,),
        )
        out = np.empty(len(rows), dtype=EVENT_DTYPE)
        if rows:
            out["time_s"] = [math.nan if r[0] is None else r[0] for r in rows]
            out["kind"] = [EVENT_CODES.get(r[1], -1) for r in rows]
            out["side"] = [SIDE_CODES.get(r[2], 0) for r in rows]
        return out

    def alerts(self, session: str) -> list[dict[str, Any]]:
        """Alert records of a session as dicts (``time_ns``, tags, fields), by time."""
        return self.rows(MEASUREMENT_ALERTS, session=session)

    def step_averages(self, runner: str | None = None) -> dict[str, dict[str, float | None]]:
        """Mean of every step metric per session (``{session: {metric: mean or None}}``)."""
        means = ", ".join(f"AVG({_q(m)})" for m in STEP_METRICS)
        sql = f"SELECT session, {means} FROM steps"
        params: tuple[Any, ...] = ()
        if runner is not None:
            sql += " WHERE runner = ?"
            params = (runner,)
        sql += " GROUP BY session"
        return {
            r[0]: {m: r[i] for i, m in enumerate(STEP_METRICS, start=1)}
            for r in self._query(sql, params)
        }

    def count(self, measurement: str, session: str | None = None) -> int:
        """Number of rows of a schema measurement (optionally of one session)."""
        if measurement not in _TABLES:
            raise EmbeddedStoreError(self.path, f"unknown measurement {measurement!r}")
        sql = f"SELECT COUNT(*) FROM {_q(measurement)}"
        params: tuple[Any, ...] = ()
        if session is not None:
            sql += " WHERE session = ?"
            params = (session,)
        return int(self._query(sql, params)[0][0])

    def points(self, measurement: str) -> list[dict[str, Any]]:
        """Points of a measurement outside the schema (generic table), by time."""
        out = []
        for r in self._query(
            "SELECT tags, time_ns, fields FROM points WHERE measurement = ? ORDER BY time_ns",
            (measurement,),
        ):
            d: dict[str, Any] = {"time_ns": r["time_ns"]}
            d.update(json.loads(r["tags"]))
            d.update(json.loads(r["fields"]))
            out.append(d)
        return out
