"""Every InfluxQL query of grafana/dashboard.json runs on InfluxDB 1.6 and returns data."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from dsp.types import STEP_DTYPE, STEP_METRICS
from storage.config import InfluxConfig
from storage.convert import session_record, step_records
from storage.influx import InfluxSink
from storage.records import Record
from storage.testing_servers import InfluxD

DASHBOARD = Path(__file__).resolve().parents[2] / "grafana" / "dashboard.json"


def queries(dash: dict[str, Any]) -> list[str]:
    out = [t["query"] for p in dash["panels"] for t in p.get("targets", [])]
    out += [a["query"] for a in dash["annotations"]["list"] if "query" in a]
    out += [v["query"] for v in dash["templating"]["list"]]
    return out


def expand(q: str) -> str:
    return (
        q.replace("$timeFilter", "time > now() - 3650d")
        .replace("$__interval", "1s")
        .replace("$runner", ".*")
        .replace("$session", ".*")
    )


def test_dashboard_is_valid_json_with_datasource_uid() -> None:
    dash = json.loads(DASHBOARD.read_text())
    assert dash["uid"] == "imu-running-form"
    assert len(queries(dash)) >= 10
    for p in dash["panels"]:
        assert p["datasource"]["uid"] == "imu-influx"


@pytest.mark.services
def test_dashboard_queries_run(influxd: InfluxD, influx_db: str, tmp_path: Path) -> None:
    t0 = (time.time_ns() // 10**9 - 600) * 10**9  # ten minutes ago: inside $timeFilter
    steps = np.zeros(20, dtype=STEP_DTYPE)
    steps["time_s"] = np.arange(20) * 0.35
    steps["side"] = 1 + np.arange(20) % 2
    steps["activity"] = 2
    for m in STEP_METRICS:
        steps[m] = 1.5
    records: list[Record] = step_records(steps, start_utc_ns=t0, runner="ana", session="live1")
    records.append(
        session_record(
            start_utc_ns=t0,
            runner="ana",
            session="live1",
            fields={"duration_s": 7.0, "distance_m": 20.0, "steps": 20},
        )
    )
    alert_tags = {"runner": "ana", "session": "live1", "metric": "pelvic_drop_deg"}
    alert_tags.update({"side": "left", "level": "warn"})
    records.append(
        Record("alerts", t0 + 10**9, alert_tags, {"value": 9.0, "active": True, "message": "drop"})
    )
    cfg = InfluxConfig(url=influxd.url, database=influx_db, spool_dir=tmp_path / "spool")
    with InfluxSink(cfg) as sink:
        sink.write(records)
        assert sink.flush(10) == 0
    dash = json.loads(DASHBOARD.read_text())
    for q in queries(dash):
        result = influxd.query(expand(q), influx_db)
        assert result.get("series"), f"no data for {q}"
    by_side = influxd.query(expand(dash["panels"][2]["targets"][0]["query"]), influx_db)
    assert {s["tags"]["side"] for s in by_side["series"]} == {"left", "right"}
