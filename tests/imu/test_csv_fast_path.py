"""The numba fast path of imu.csv_input reads exactly what np.loadtxt reads (else it falls back)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from imu.csv_input import _read_plain_decimal, read_csv


def _write(path: Path, header: str, rows: list[str]) -> None:
    path.write_text(header + "\n" + "\n".join(rows) + "\n")


@pytest.mark.parametrize("fmt", ["%.6f", "%.3f", "%.15g", "%.9f", "%d"])
def test_fast_path_equals_loadtxt_bitwise(tmp_path: Path, fmt: str) -> None:
    rng = np.random.default_rng(0)
    n = 3000
    t = np.arange(n) / 200.0
    acc = rng.normal(0, 5, (n, 3)) + np.array([0.0, 0.0, 9.81])
    vals = np.column_stack([t, acc, rng.normal(0, 200, (n, 3))])
    if fmt == "%d":
        vals = np.column_stack([t, np.round(vals[:, 1:])])
    rows = [",".join((fmt if i else "%.6f") % v for i, v in enumerate(r)) for r in vals]
    p = tmp_path / "a.csv"
    header = "gyr_z,time_s,acc_x,acc_y,acc_z,gyr_x,gyr_y"  # any column order
    _write(p, header, [",".join([r.split(",")[6], *r.split(",")[:6]]) for r in rows])
    cols = [1, 2, 3, 4, 5, 6, 0]
    ref = np.loadtxt(p, delimiter=",", skiprows=1, usecols=cols, ndmin=2)
    fast = _read_plain_decimal(p, 7, cols)
    assert fast is not None
    assert fast.view(np.int64).tolist() == ref.view(np.int64).tolist()
    rec = read_csv(p)
    np.testing.assert_array_equal(rec.t_s, ref[:, 0])
    assert rec.gyr_dps is not None
    np.testing.assert_array_equal(rec.gyr_dps, ref[:, 4:7])


@pytest.mark.parametrize(
    "row",
    ["1e-3,0,0,9.81", " 0.1,0,0,9.81", "0.1,0,0,9.81,", "0.1,0,0", "nan,0,0,9.81", "0.1,,0,9.81"],
)
def test_unusual_rows_fall_back(tmp_path: Path, row: str) -> None:
    p = tmp_path / "b.csv"
    _write(p, "time_s,acc_x,acc_y,acc_z", [row])
    assert _read_plain_decimal(p, 4, [0, 1, 2, 3]) is None


def test_crlf_and_no_final_newline(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    p.write_bytes(b"time_s,acc_x,acc_y,acc_z\r\n0.0,1.5,-2,9.81\r\n0.005,1.25,-2.5,9.8")
    got = _read_plain_decimal(p, 4, [0, 1, 2, 3])
    assert got is not None
    np.testing.assert_array_equal(got, [[0.0, 1.5, -2.0, 9.81], [0.005, 1.25, -2.5, 9.8]])
