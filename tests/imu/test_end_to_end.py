"""simulate -> record -> replay -> analyze, through the CLI, against the simulator's truth."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imu.cli import cli

STEPS_HEADER = "time_s,side,cadence_spm,contact_time_s,flight_time_s,vertical_oscillation_m,pelvic_drop_deg,pelvic_rotation_deg,pelvic_tilt_deg"


@pytest.fixture(scope="module")
def session_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One simulated 2-minute run, recorded, and analysed live."""
    d = tmp_path_factory.mktemp("e2e")
    runner = CliRunner(env={"IMU_HOME": str(d / "home")})
    result = runner.invoke(
        cli,
        [
            "simulate",
            "--minutes",
            "2",
            "--seed",
            "7",
            "--record",
            str(d / "run.rec"),
            "--out",
            str(d / "live"),
        ],
    )
    assert result.exit_code == 0, result.output + result.stderr
    return d


def _invoke(d: Path, *args: str):
    return CliRunner(env={"IMU_HOME": str(d / "home")}).invoke(cli, list(args))


def test_replay_is_deterministic_and_equals_live(session_dir: Path) -> None:
    d = session_dir
    for name in ("A", "B"):
        r = _invoke(d, "replay", str(d / "run.rec"), "--out", str(d / name))
        assert r.exit_code == 0, r.output + r.stderr
    a = (d / "A" / "steps.csv").read_bytes()
    assert a == (d / "B" / "steps.csv").read_bytes()
    assert a == (d / "live" / "steps.csv").read_bytes()
    assert (d / "A" / "events.csv").read_bytes() == (d / "live" / "events.csv").read_bytes()
    lines = a.decode().splitlines()
    assert lines[0] == STEPS_HEADER
    assert len(lines) - 1 > 250


def _matched_fraction(t_est: np.ndarray, t_true: np.ndarray, tol_s: float) -> float:
    if len(t_true) == 0:
        return 1.0
    nearest = np.abs(t_est[:, None] - t_true[None, :]).min(axis=0)
    return float((nearest <= tol_s).mean())


def test_steps_match_truth(session_dir: Path) -> None:
    """Every running contact within 50 ms; walking contacts within 100 ms (docs/dsp.md has the figures)."""
    from dsp.types import Activity
    from simulators import simulate_run
    from simulators.sensor import SensorConfig

    d = session_dir
    truth = simulate_run(2, 7, sensor=SensorConfig(sample_rate_hz=200, seed=7)).truth_steps
    steps = list(csv.DictReader((d / "live" / "steps.csv").open()))
    t_est = np.array([float(s["time_s"]) for s in steps])
    running = truth["time_s"][truth["activity"] == Activity.RUNNING]
    walking = truth["time_s"][truth["activity"] == Activity.WALKING]
    assert len(running) > 200
    assert _matched_fraction(t_est, running, 0.05) >= 0.99
    assert _matched_fraction(t_est, walking, 0.10) >= 0.9
    assert len(steps) <= 1.03 * len(truth)
    # the CSV truth written by `imu simulate` is the same truth
    truth_csv = list(csv.DictReader((d / "live" / "truth_steps.csv").open()))
    assert len(truth_csv) == len(truth)
    sides = {s["side"] for s in steps}
    assert {"left", "right"} <= sides


def test_summary_and_store(session_dir: Path) -> None:
    d = session_dir
    summary = json.loads((d / "live" / "summary.json").read_text())
    assert summary["steps"] > 250
    assert summary["per_side"]["left"]["steps"] > 100
    assert summary["per_side"]["right"]["steps"] > 100
    r = _invoke(d, "sessions")
    assert r.exit_code == 0, r.output + r.stderr
    assert summary["session"] in r.output
    r = _invoke(d, "show", summary["session"])
    assert r.exit_code == 0, r.output + r.stderr
    assert "pelvic_drop_deg" in r.output


def test_show_unknown_session(session_dir: Path) -> None:
    r = _invoke(session_dir, "show", "no-such-session")
    assert r.exit_code == 2
    assert r.stderr.startswith("imu: error:")


def test_truncated_recording_processed_with_warning(session_dir: Path) -> None:
    d = session_dir
    data = (d / "run.rec").read_bytes()
    cut = d / "cut.rec"
    cut.write_bytes(data[: len(data) // 2 + 7])
    r = _invoke(d, "replay", str(cut), "--out", str(d / "cut"))
    assert r.exit_code == 0, r.output + r.stderr
    assert "warning" in r.stderr
    assert "cut off" in r.stderr
    n_cut = len((d / "cut" / "steps.csv").read_text().splitlines()) - 1
    n_full = (
        len((d / "A" / "steps.csv").read_text().splitlines()) - 1 if (d / "A").exists() else 300
    )
    assert 50 < n_cut < n_full


def _sim_csv(path: Path, *, gyro: bool, minutes: float = 1.5, seed: int = 3) -> Path:
    from simulators import simulate_run

    run = simulate_run(minutes, seed)
    t, acc, gyr = run.samples
    cols = [t, acc[:, 0], acc[:, 1], acc[:, 2]]
    header = "time_s,acc_x,acc_y,acc_z"
    if gyro:
        cols += [gyr[:, 0], gyr[:, 1], gyr[:, 2]]
        header += ",gyr_x,gyr_y,gyr_z"
    np.savetxt(path, np.column_stack(cols), delimiter=",", header=header, comments="", fmt="%.6f")
    return path


def test_analyze_contract_with_gyro(tmp_path: Path) -> None:
    p = _sim_csv(tmp_path / "run.csv", gyro=True)
    r = CliRunner(env={"IMU_HOME": str(tmp_path)}).invoke(
        cli, ["analyze", str(p), "--out", str(tmp_path / "o")]
    )
    assert r.exit_code == 0, r.output + r.stderr
    out = tmp_path / "o"
    assert (out / "events.csv").read_text().splitlines()[0] == "time_s,event,side"
    assert (out / "alerts.csv").read_text().splitlines()[0] == "time_s,metric,level,message"
    steps = list(csv.DictReader((out / "steps.csv").open()))
    assert len(steps) > 150
    assert all(s["pelvic_drop_deg"] != "" for s in steps[10:-10] if s["side"] != "unknown")
    events = list(csv.DictReader((out / "events.csv").open()))
    assert {e["event"] for e in events} == {"initial_contact", "toe_off"}


def test_analyze_accelerometer_only(tmp_path: Path) -> None:
    p = _sim_csv(tmp_path / "run.csv", gyro=False)
    r = CliRunner(env={"IMU_HOME": str(tmp_path)}).invoke(
        cli, ["analyze", str(p), "--out", str(tmp_path / "o"), "--no-store"]
    )
    assert r.exit_code == 0, r.output + r.stderr
    steps = list(csv.DictReader((tmp_path / "o" / "steps.csv").open()))
    assert len(steps) > 150
    assert all(s["pelvic_drop_deg"] == "" for s in steps)
    assert all(s["contact_time_s"] != "" for s in steps[5:-5])
