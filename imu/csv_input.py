"""Reader for the public CSV contract of ``imu analyze``.

Columns ``time_s, acc_x, acc_y, acc_z[, gyr_x, gyr_y, gyr_z]`` with a header row, sensor frame,
accelerometer including gravity. Every problem becomes an :class:`~imu.errors.InputError` with a
one-line reason; nothing here prints a traceback.
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import numpy.typing as npt
from numba import njit

from firmware_interface.protocol import STANDARD_GRAVITY_MPS2
from imu.errors import InputError

AccUnit = Literal["g", "mps2"]
GyrUnit = Literal["dps", "rads"]

REQUIRED_COLUMNS = ("time_s", "acc_x", "acc_y", "acc_z")
GYRO_COLUMNS = ("gyr_x", "gyr_y", "gyr_z")


@dataclass(frozen=True, slots=True)
class CsvRecording:
    """Samples read from a CSV file, in SI units (m/s^2, deg/s)."""

    t_s: npt.NDArray[np.float64]
    acc_mps2: npt.NDArray[np.float64]
    gyr_dps: npt.NDArray[np.float64] | None
    sample_rate_hz: float


def read_csv(
    path: str | Path, *, acc_unit: AccUnit = "mps2", gyr_unit: GyrUnit = "dps"
) -> CsvRecording:
    """Read and validate an ``imu analyze`` input file."""
    name = str(path)
    p = Path(path)
    if not p.is_file():
        raise InputError(name, "no such file")
    with p.open("r", encoding="utf-8", errors="replace") as fh:
        header_line = fh.readline()
    if not header_line.strip():
        raise InputError(
            name,
            "the file is empty (expected a header row: time_s,acc_x,acc_y,acc_z[,gyr_x,gyr_y,gyr_z])",
        )
    header = [h.strip().lower() for h in header_line.strip().lstrip("\ufeff").split(",")]
    missing = [c for c in REQUIRED_COLUMNS if c not in header]
    if missing:
        raise InputError(
            name,
            f"missing column(s) {', '.join(missing)}; the header row must name time_s,acc_x,acc_y,acc_z"
            f" (found: {','.join(header)})",
        )
    gyro_present = [c for c in GYRO_COLUMNS if c in header]
    if gyro_present and len(gyro_present) != 3:
        raise InputError(
            name,
            f"gyro columns must be all of gyr_x,gyr_y,gyr_z (found only {','.join(gyro_present)})",
        )
    cols = [header.index(c) for c in REQUIRED_COLUMNS]
    if gyro_present:
        cols += [header.index(c) for c in GYRO_COLUMNS]
    data = _read_plain_decimal(p, len(header), cols)
    if data is None:  # anything unusual: numpy's reader (and its error reporting)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)  # "no data": handled below
                data = np.loadtxt(
                    p, delimiter=",", skiprows=1, usecols=cols, ndmin=2, dtype=np.float64
                )
        except ValueError as exc:
            raise InputError(name, _loadtxt_reason(str(exc))) from None
    if data.shape[0] == 0:
        raise InputError(name, "no data rows after the header")
    if data.shape[0] < 10:
        raise InputError(
            name, f"only {data.shape[0]} data rows; need at least a few seconds of samples"
        )
    bad = ~np.isfinite(data)
    if bad.any():
        row, col = np.argwhere(bad)[0]
        colname = (REQUIRED_COLUMNS + GYRO_COLUMNS)[col]
        raise InputError(
            name,
            f"NaN or infinite value in column {colname} at data row {row + 1} (line {row + 2})",
        )
    t = data[:, 0]
    dt = np.diff(t)
    nonmono = np.flatnonzero(dt <= 0)
    if nonmono.size:
        i = int(nonmono[0])
        raise InputError(
            name,
            f"time_s is not strictly increasing: line {i + 3} has {t[i + 1]!r} after {t[i]!r} on line {i + 2}",
        )
    sample_rate_hz = 1.0 / float(np.median(dt))
    if not 20.0 <= sample_rate_hz <= 2000.0:
        raise InputError(
            name,
            f"sample rate from time_s is {sample_rate_hz:.3g} Hz; expected 20..2000 Hz (is time_s in seconds?)",
        )
    acc = data[:, 1:4] * (STANDARD_GRAVITY_MPS2 if acc_unit == "g" else 1.0)
    _check_gravity(name, acc, acc_unit)
    gyr = None
    if gyro_present:
        gyr = data[:, 4:7] * (180.0 / math.pi if gyr_unit == "rads" else 1.0)
    return CsvRecording(
        t_s=t,
        acc_mps2=np.ascontiguousarray(acc),
        gyr_dps=None if gyr is None else np.ascontiguousarray(gyr),
        sample_rate_hz=sample_rate_hz,
    )


@njit(cache=True, nogil=True)
def _parse_plain_decimal(
    buf: npt.NDArray[np.uint8], ncol: int
) -> tuple[npt.NDArray[np.float64], int]:
    """Rows of ``ncol`` plain decimals (``-12.345``, no exponent, <= 15 significant digits).

    Returns (values, n_rows) or (empty, -1) on anything else. Value = integer mantissa / 10^d with
    both exact in float64, so the one IEEE division is correctly rounded: the same double as
    strtod / ``np.loadtxt``.
    """
    n = buf.shape[0]
    bad = (np.empty(0), -1)
    est = 1
    for i in range(n):
        if buf[i] == 10:
            est += 1
    out = np.empty(est * ncol)
    p10 = np.empty(23)
    p10[0] = 1.0
    for k in range(1, 23):
        p10[k] = p10[k - 1] * 10.0
    i = 0
    m = 0  # values written
    col = 0
    while i < n:
        c = buf[i]
        if c == 10 and col == 0:  # only a final newline / trailing empty line is accepted
            i += 1
            if i < n:
                return bad
            break
        neg = False
        if c in (45, 43):  # - +
            neg = c == 45
            i += 1
        mant = 0
        nd = 0  # significant digits
        frac = 0
        seen_dot = False
        any_digit = False
        while i < n:
            c = buf[i]
            if 48 <= c <= 57:
                any_digit = True
                if mant != 0 or c != 48:
                    nd += 1
                mant = mant * 10 + (c - 48)
                if seen_dot:
                    frac += 1
            elif c == 46 and not seen_dot:
                seen_dot = True
            else:
                break
            i += 1
        if not any_digit or nd > 15 or frac > 22:
            return bad
        v = mant / p10[frac]
        out[m] = -v if neg else v
        m += 1
        col += 1
        if i >= n:  # last row without a final newline
            if col != ncol:
                return bad
            col = 0
            break
        c = buf[i]
        i += 1
        if c == 44:  # ,
            if col >= ncol:
                return bad
        elif c == 10 or (c == 13 and i < n and buf[i] == 10):
            if c == 13:
                i += 1
            if col != ncol:
                return bad
            col = 0
        else:
            return bad
    if col != 0:
        return bad
    return out[:m], m // ncol


def _read_plain_decimal(p: Path, ncol: int, cols: list[int]) -> npt.NDArray[np.float64] | None:
    """Fast path of the common file (plain decimals, one header line); None = use np.loadtxt."""
    raw = p.read_bytes()
    start = raw.find(b"\n")
    if start < 0 or start + 1 >= len(raw):
        return None
    vals, nrow = _parse_plain_decimal(np.frombuffer(raw, dtype=np.uint8, offset=start + 1), ncol)
    if nrow <= 0:
        return None
    return np.ascontiguousarray(vals.reshape(nrow, ncol)[:, cols])


def _check_gravity(name: str, acc_mps2: npt.NDArray[np.float64], acc_unit: AccUnit) -> None:
    """The mean acceleration over the recording is gravity: its size tells whether units fit."""
    g_read = float(np.linalg.norm(acc_mps2.mean(axis=0)))
    if 6.0 <= g_read <= 14.0:
        return
    if acc_unit == "mps2" and 0.6 <= g_read <= 1.4:
        raise InputError(
            name,
            f"gravity reads {g_read:.2f} instead of 9.8 m/s^2: the accelerometer looks like it is in g; pass --acc-unit g",
        )
    if acc_unit == "g" and 60.0 <= g_read <= 140.0:
        raise InputError(
            name,
            f"gravity reads {g_read:.1f} m/s^2 after converting from g: the accelerometer is already in m/s^2; pass --acc-unit mps2",
        )
    raise InputError(
        name,
        f"gravity reads {g_read:.2f} m/s^2 (expected about 9.8): check the accelerometer units and that it includes gravity",
    )


def _loadtxt_reason(message: str) -> str:
    m = re.search(
        r"could not convert string '?(.*?)'? to float64 at row (\d+), column (\d+)", message
    )
    if m:
        value, row, _col = m.groups()
        return f"non-numeric value {value!r} at data row {int(row) + 1} (line {int(row) + 2})"
    m = re.search(r"the number of columns changed from (\d+) to (\d+) at row (\d+)", message)
    if m:
        a, b, row = m.groups()
        return f"row with {b} columns instead of {a} at data row {int(row)} (line {int(row) + 1})"
    first = message.strip().splitlines()[0] if message.strip() else "unreadable"
    return f"cannot parse as CSV: {first}"
