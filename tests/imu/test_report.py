"""Post-run report: HTML + PNG files with the plots and a readable summary."""

from __future__ import annotations

import base64
import re
from pathlib import Path

import numpy as np
import pytest
from alerts_synth import Ramp, Segment, synth_steps

from dsp.types import EVENT_DTYPE, STEP_DTYPE
from imu.alerts import run_alerts
from imu.errors import InputError
from imu.report import write_report

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def fatigued_run() -> tuple[np.ndarray, list]:
    segs = [
        Segment(420, "run", 3.0),
        Segment(600, "run", 3.3),
        Segment(60, "walk"),
        Segment(30, "stand"),
        Segment(1500, "run", 3.3),
    ]
    steps, _ = synth_steps(segs, seed=3, ramp=Ramp(1500, 700, 2.5, "right", recover_at_s=2500))
    alerts, _ = run_alerts(steps)
    return steps, alerts


def test_report_files_and_plots(tmp_path: Path, fatigued_run: tuple[np.ndarray, list]) -> None:
    steps, alerts = fatigued_run
    assert any(a.active for a in alerts)
    meta = {"session": "s-42", "runner": "ana", "start_utc_s": 1.7e9}
    path = write_report(steps, np.zeros(5, EVENT_DTYPE), alerts, meta, tmp_path / "rep")
    assert path == tmp_path / "rep" / "report.html"
    assert path.exists()
    page = path.read_text(encoding="utf-8")
    pngs = sorted(p.name for p in (tmp_path / "rep").glob("*.png"))
    for name in (
        "report_pelvic_drop_deg.png",
        "report_contact_time_s.png",
        "report_asymmetry.png",
        "report_cadence_spm.png",
    ):
        assert name in pngs
        data = (tmp_path / "rep" / name).read_bytes()
        assert data.startswith(PNG_MAGIC)
        assert len(data) > 10_000
        assert name in page
    inline = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page)
    assert len(inline) == len(pngs)
    assert base64.b64decode(inline[0]).startswith(PNG_MAGIC)
    # readable summary: session, per-side table, when form broke down, alert messages
    assert "s-42" in page
    assert "ana" in page
    assert "Per-side averages" in page
    assert "Pelvic drop (deg)" in page
    assert "Form broke down" in page
    assert "pelvic drop (right stance)" in page
    assert "back to normal" in page  # the cleared record is listed
    assert alerts[0].message.split(":")[0][:40] in page.replace("&#x27;", "'")


def test_report_accepts_stored_alert_dicts_and_no_alerts(tmp_path: Path) -> None:
    steps, _ = synth_steps([Segment(600, "run", 3.3)], seed=1)
    alerts, _ = run_alerts(steps)
    assert alerts == []
    p = write_report(steps, None, [], {"session": "quiet"}, tmp_path)
    assert "No alerts" in p.read_text()
    stored = [
        {
            "sensor_time_s": 400.0,
            "metric": "pelvic_drop_deg",
            "side": "left",
            "level": "warning",
            "active": True,
            "message": "drop <left>",
            "deviation": 1.2,
            "since_s": 380.0,
        },
    ]
    page = write_report(steps, None, stored, {"session": "x"}, tmp_path / "b").read_text()
    assert "drop &lt;left&gt;" in page


def test_report_rejects_wrong_dtype(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        write_report(np.zeros(3, EVENT_DTYPE), None, [], {}, tmp_path)
    # an empty session still gives a page
    assert write_report(np.zeros(0, STEP_DTYPE), None, [], {}, tmp_path / "e").exists()
