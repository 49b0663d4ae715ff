"""Bad input to the CLI: one line naming the problem, exit status 2, never a traceback."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from imu.cli import cli


@pytest.fixture
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("IMU_HOME", str(tmp_path / "home"))
    return CliRunner()


def _write_csv(path: Path, header: str, rows: np.ndarray) -> Path:
    path.write_text(header + "\n" + "\n".join(",".join(f"{v:.6f}" for v in r) for r in rows) + "\n")
    return path


def _standing(n: int = 400, g: float = 9.80665) -> np.ndarray:
    t = np.arange(n) / 100.0
    acc = np.tile([0.0, 0.0, g], (n, 1))
    gyr = np.zeros((n, 3))
    return np.column_stack([t, acc, gyr])


def _assert_one_line_error(result, needle: str) -> None:
    assert result.exit_code == 2, (result.exit_code, result.output, result.stderr)
    err = result.stderr.strip()
    assert "Traceback" not in result.output + result.stderr
    assert len(err.splitlines()) == 1, err
    assert err.startswith("imu: error:"), err
    assert needle in err, err


HEADER = "time_s,acc_x,acc_y,acc_z,gyr_x,gyr_y,gyr_z"


def test_missing_columns(runner: CliRunner, tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "a.csv", "time_s,acc_x,acc_y", _standing()[:, :3])
    _assert_one_line_error(
        runner.invoke(cli, ["analyze", str(p), "--out", str(tmp_path / "o")]),
        "missing column(s) acc_z",
    )


def test_non_monotonic_time(runner: CliRunner, tmp_path: Path) -> None:
    rows = _standing()
    rows[50, 0] = rows[48, 0]
    p = _write_csv(tmp_path / "a.csv", HEADER, rows)
    _assert_one_line_error(
        runner.invoke(cli, ["analyze", str(p), "--out", str(tmp_path / "o")]),
        "not strictly increasing",
    )


def test_nan(runner: CliRunner, tmp_path: Path) -> None:
    rows = _standing()
    rows[10, 2] = np.nan
    p = _write_csv(tmp_path / "a.csv", HEADER, rows)
    _assert_one_line_error(
        runner.invoke(cli, ["analyze", str(p), "--out", str(tmp_path / "o")]), "NaN"
    )


def test_empty_file(runner: CliRunner, tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text("")
    _assert_one_line_error(
        runner.invoke(cli, ["analyze", str(p), "--out", str(tmp_path / "o")]), "empty"
    )


def test_header_only(runner: CliRunner, tmp_path: Path) -> None:
    p = tmp_path / "a.csv"
    p.write_text(HEADER + "\n")
    _assert_one_line_error(
        runner.invoke(cli, ["analyze", str(p), "--out", str(tmp_path / "o")]), "no data rows"
    )


def test_non_numeric(runner: CliRunner, tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "a.csv", HEADER, _standing())
    lines = p.read_text().splitlines()
    lines[5] = lines[5].replace(lines[5].split(",")[3], "abc", 1)
    p.write_text("\n".join(lines) + "\n")
    _assert_one_line_error(
        runner.invoke(cli, ["analyze", str(p), "--out", str(tmp_path / "o")]),
        "non-numeric value 'abc'",
    )


def test_acc_in_g_passed_as_mps2(runner: CliRunner, tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "a.csv", HEADER, _standing(g=1.0))
    _assert_one_line_error(
        runner.invoke(cli, ["analyze", str(p), "--out", str(tmp_path / "o")]), "--acc-unit g"
    )


def test_acc_in_mps2_passed_as_g(runner: CliRunner, tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "a.csv", HEADER, _standing())
    result = runner.invoke(
        cli, ["analyze", str(p), "--out", str(tmp_path / "o"), "--acc-unit", "g"]
    )
    _assert_one_line_error(result, "--acc-unit mps2")


def test_missing_file(runner: CliRunner, tmp_path: Path) -> None:
    _assert_one_line_error(
        runner.invoke(cli, ["analyze", str(tmp_path / "nope.csv"), "--out", str(tmp_path / "o")]),
        "no such file",
    )


def test_random_bytes_as_recording(runner: CliRunner, tmp_path: Path) -> None:
    p = tmp_path / "junk.rec"
    p.write_bytes(os.urandom(4096))
    _assert_one_line_error(
        runner.invoke(cli, ["replay", str(p), "--out", str(tmp_path / "o")]), str(p)
    )


def test_empty_recording(runner: CliRunner, tmp_path: Path) -> None:
    p = tmp_path / "empty.rec"
    p.write_bytes(b"")
    _assert_one_line_error(
        runner.invoke(cli, ["replay", str(p), "--out", str(tmp_path / "o")]), str(p)
    )


def test_standing_gives_no_steps(runner: CliRunner, tmp_path: Path) -> None:
    p = _write_csv(tmp_path / "a.csv", HEADER, _standing(3000))
    result = runner.invoke(cli, ["analyze", str(p), "--out", str(tmp_path / "o"), "--no-store"])
    assert result.exit_code == 0, result.output + result.stderr
    steps = (tmp_path / "o" / "steps.csv").read_text().splitlines()
    assert steps == [
        "time_s,side,cadence_spm,contact_time_s,flight_time_s,vertical_oscillation_m,pelvic_drop_deg,pelvic_rotation_deg,pelvic_tilt_deg"
    ]


@pytest.mark.parametrize("cmd", [[], ["simulate"], ["replay"], ["analyze"], ["sessions"], ["show"]])
def test_help(runner: CliRunner, cmd: list[str]) -> None:
    result = runner.invoke(cli, [*cmd, "--help"])
    assert result.exit_code == 0
    assert len(result.output) > 200
