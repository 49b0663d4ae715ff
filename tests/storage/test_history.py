"""runner_history over the embedded store and over InfluxDB 1.x (same data -> same history)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import numpy as np
import pytest

from dsp.types import STEP_DTYPE, STEP_METRICS
from storage.config import InfluxConfig
from storage.convert import session_record, step_records
from storage.embedded import EmbeddedStore
from storage.history import runner_history
from storage.influx import InfluxQLClient, InfluxSink
from storage.records import Record
from storage.testing_servers import InfluxD


def _ns(y: int, m: int, d: int, h: int = 7) -> int:
    return int(dt.datetime(y, m, d, h, tzinfo=dt.UTC).timestamp()) * 10**9


def _steps(n: int, cadence: float) -> np.ndarray:
    s = np.zeros(n, dtype=STEP_DTYPE)
    s["time_s"] = 1.0 + np.arange(n) * 0.5
    s["side"] = 1 + np.arange(n) % 2
    s["activity"] = 2
    for m in STEP_METRICS:
        s[m] = 1.0
    s["cadence_spm"] = cadence
    return s


def history_records() -> list[Record]:
    out: list[Record] = []
    # week 2026-W45 (Nov 2-8): two sessions; W46 none; W47 (Nov 16-22): one; a crashed one in W47
    plan = [
        ("s1", _ns(2026, 11, 3), 5000.0, 1800.0, 10, 170.0),
        ("s2", _ns(2026, 11, 5), 3000.0, 1200.0, 10, 174.0),
        ("s3", _ns(2026, 11, 17), 10000.0, 3600.0, 20, 180.0),
    ]
    for name, t0, dist, dur, n, cad in plan:
        out.append(
            session_record(
                start_utc_ns=t0,
                runner="ana",
                session=name,
                device="d",
                source="sim",
                fields={"duration_s": dur, "distance_m": dist, "steps": n},
            )
        )
        out += step_records(_steps(n, cad), start_utc_ns=t0, runner="ana", session=name, device="d")
    out += step_records(
        _steps(5, 160.0), start_utc_ns=_ns(2026, 11, 19), runner="ana", session="s4"
    )
    out += step_records(_steps(5, 150.0), start_utc_ns=_ns(2026, 11, 19), runner="bo", session="b1")
    return out


def check(h: dict) -> None:
    assert h["runner"] == "ana"
    assert [s["session"] for s in h["sessions"]] == ["s1", "s2", "s3", "s4"]
    s1, _s2, s3, s4 = h["sessions"]
    assert s1["start_utc"] == "2026-11-03T07:00:00Z"
    assert s1["week"] == "2026-W45"
    assert (s1["distance_m"], s1["duration_s"], s1["steps"]) == (5000.0, 1800.0, 10)
    assert s1["averages"]["cadence_spm"] == pytest.approx(170.0)
    assert s3["averages"]["cadence_spm"] == pytest.approx(180.0)
    assert s4["distance_m"] is None
    assert s4["steps"] == 5
    assert s4["duration_s"] == pytest.approx(2.0)
    weeks = h["weeks"]
    assert [w["week"] for w in weeks] == ["2026-W45", "2026-W46", "2026-W47"]
    assert weeks[0]["week_start"] == "2026-11-02"
    assert (weeks[0]["sessions"], weeks[0]["distance_m"], weeks[0]["steps"]) == (2, 8000.0, 20)
    assert weeks[1]["distance_m"] == 0.0
    assert weeks[1]["change_pct"]["distance_m"] == -100.0
    assert weeks[2]["change_pct"]["distance_m"] is None  # previous week was empty
    assert weeks[2]["sessions"] == 2
    assert weeks[2]["steps"] == 25
    assert h["totals"]["distance_m"] == 18000.0
    assert h["totals"]["steps"] == 45
    assert h["totals"]["averages"]["cadence_spm"] == pytest.approx(
        (170 * 10 + 174 * 10 + 180 * 20 + 160 * 5) / 45
    )


def test_history_embedded(tmp_path: Path) -> None:
    with EmbeddedStore(tmp_path / "imu.db") as st:
        st.write(history_records())
        check(runner_history(st, "ana"))
        assert runner_history(st, "nobody") == {
            "runner": "nobody",
            "sessions": [],
            "weeks": [],
            "totals": {
                "sessions": 0,
                "duration_s": 0.0,
                "distance_m": 0.0,
                "steps": 0,
                "averages": dict.fromkeys(STEP_METRICS),
            },
        }


@pytest.mark.services
def test_history_influx_v1(influxd: InfluxD, influx_db: str, tmp_path: Path) -> None:
    cfg = InfluxConfig(url=influxd.url, database=influx_db, spool_dir=tmp_path / "spool")
    with InfluxSink(cfg) as sink:
        sink.write(history_records())
        assert sink.flush(10) == 0
    client = InfluxQLClient(cfg)
    check(runner_history(client, "ana"))
    client.close()
