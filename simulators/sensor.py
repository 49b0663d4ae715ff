"""Simulated IMU: sampling of a :class:`~simulators.runner.RunnerMotion`, sensor errors and the
wire packets of protocol v1.

Clocks: the motion runs on *true* time ``t`` (s since the session start, also the host clock).
The sensor clock is ``tau = clock_offset_s + (1 + clock_drift_ppm * 1e-6) * t``.  Sample ``i``
is nominally taken at sensor time ``clock_offset_s + i / sample_rate_hz``; with jitter the
*actual* instant is ``clock_offset_s + i / rate + j_i`` (``j_i`` ~ N(0, time_jitter_s), clipped
to +-0.25 sample, ``j_0 >= 0``).  A packet's ``t0_us`` is the actual sensor time of its first
sample (rounded to 1 us, modulo 2**32); the decoder's ``t0 + i / rate`` differs from the actual
instants of the other samples by their jitter.

Signals in the sensor frame: ``x_sensor = M @ x_body`` with ``M`` the mounting rotation
(sensor <- body).  Errors, in this order: constant bias + random-walk bias drift, white noise,
then int16 quantisation with saturation at the full-scale range.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import numpy.typing as npt
from scipy.spatial.transform import Rotation

from firmware_interface.protocol import (
    ACC_RANGES_G,
    GYR_RANGES_DPS,
    MAX_RATE_HZ,
    MAX_SAMPLES_PER_PACKET,
    MIN_RATE_HZ,
    STANDARD_GRAVITY_MPS2,
    encode_data_packet,
    to_raw,
)
from simulators.runner import RunnerMotion

__all__ = [
    "SACRAL_IC_TEMPLATE_G",
    "SACRAL_TO_TEMPLATE_G",
    "LinkStats",
    "SensorConfig",
    "SensorSamples",
    "mounting_matrix",
    "packetize",
    "random_mounting",
    "sample_motion",
]

F8 = npt.NDArray[np.float64]
_EVAL_CHUNK = 100_000

#: Skin-mounted sacral sensor, running: what it adds (g, along the world vertical) to the
#: whole-body vertical acceleration GRF/m, on a 2 ms grid from 30 ms before to 100 ms after each
#: initial contact (impact overshoot ~+1.1 g at IC + 30 ms, dip at + 50 ms) and from 60 ms before
#: to 50 ms after each toe-off (shoulder ~+0.44 g at TO, gone at TO + 40 ms). Mean of (sacral
#: acc - GRF) over the ODD trials of the Alcantara force-treadmill data (15 trials, ~230
#: contacts; `benchmarks.realdata.sacral_waveform_templates("odd")`, Tukey-tapered). Both signals
#: were low-passed at 20 Hz by the data's authors, so the tables are band-limited to ~20 Hz: the
#: real raw waveform may be sharper. Even trials: held out (docs/dsp.md).
SACRAL_IC_WINDOW_S = (-0.03, 0.10)
SACRAL_TO_WINDOW_S = (-0.06, 0.05)
# fmt: off
SACRAL_IC_TEMPLATE_G = np.array([
    0.0, 0.003, 0.013, 0.031, 0.055, 0.085, 0.114, 0.138, 0.151, 0.152, 0.15, 0.143,
    0.133, 0.12, 0.106, 0.096, 0.093, 0.099, 0.119, 0.158, 0.216, 0.295, 0.395, 0.512,
    0.641, 0.775, 0.902, 1.012, 1.091, 1.129, 1.119, 1.057, 0.95, 0.804, 0.633, 0.451,
    0.273, 0.111, -0.026, -0.132, -0.202, -0.238, -0.24, -0.21, -0.157, -0.086, -0.003, 0.083,
    0.166, 0.241, 0.301, 0.344, 0.368, 0.372, 0.359, 0.331, 0.292, 0.246, 0.188, 0.124,
    0.068, 0.028, 0.007, -0.001, -0.001, 0.0,
])
SACRAL_TO_TEMPLATE_G = np.array([
    0.0, 0.006, 0.021, 0.04, 0.056, 0.065, 0.065, 0.057, 0.048, 0.041, 0.037, 0.036, 0.038, 0.044,
    0.053, 0.066, 0.083, 0.103, 0.125, 0.15, 0.177, 0.205, 0.235, 0.266, 0.296, 0.326, 0.354, 0.379,
    0.4, 0.418, 0.43, 0.436, 0.438, 0.433, 0.423, 0.407, 0.387, 0.362, 0.335, 0.305, 0.272, 0.237,
    0.202, 0.168, 0.137, 0.107, 0.081, 0.058, 0.04, 0.024, 0.013, 0.007, 0.003, 0.001, 0.0, 0.0,
])
# fmt: on
#: per-step SD of the templates' timing (random shift of each IC / TO template): the within-trial
#: SD of the single-level IC / TO errors on the ODD Alcantara trials (4.3 / 6.4 ms; the detector
#: alone adds ~1 ms on the simulator)
SACRAL_IC_JITTER_S = 0.004
SACRAL_TO_JITTER_S = 0.006


@dataclass(frozen=True)
class SensorConfig:
    """Sensor and link model. Probabilities are per packet."""

    sample_rate_hz: int = 200
    #: sensor <- body rotation (3x3 matrix or scipy Rotation); None = random from the seed
    mounting: Any = None
    acc_range_g: int = 16
    gyr_range_dps: int = 2000
    acc_noise_mps2: float = 0.015  # white noise SD per sample
    gyr_noise_dps: float = 0.07
    acc_bias_mps2: float = 0.05  # SD of the constant per-axis bias
    gyr_bias_dps: float = 0.3
    acc_bias_drift_mps2_per_sqrt_s: float = 0.0005  # random-walk bias drift
    gyr_bias_drift_dps_per_sqrt_s: float = 0.002
    time_jitter_s: float = 20e-6
    clock_drift_ppm: float = 20.0
    clock_offset_s: float = 0.0
    samples_per_packet: int = 10
    packet_loss: float = 0.002
    corruption: float = 0.0005  # random byte flips (CRC then fails)
    duplication: float = 0.0005
    reordering: float = 0.001  # packet arrives after its successor
    rx_latency_s: float = 0.015  # mean BLE latency (sample -> host), plus exponential jitter
    #: skin-mounted sacral waveform (impact overshoot, toe-off shoulder, per-step timing jitter)
    #: added to running steps, fitted on real sacral data; False = rigid pelvis (the sensor reads
    #: the pelvis' own specific force, GRF/m)
    sacral_soft_tissue: bool = True
    seed: int | None = None  # None = the run's seed

    def __post_init__(self) -> None:
        if not MIN_RATE_HZ <= self.sample_rate_hz <= MAX_RATE_HZ:
            raise ValueError(f"sample rate {self.sample_rate_hz} Hz outside 100..400")
        if self.acc_range_g not in ACC_RANGES_G:
            raise ValueError(f"acc range {self.acc_range_g} g not in {ACC_RANGES_G}")
        if self.gyr_range_dps not in GYR_RANGES_DPS:
            raise ValueError(f"gyro range {self.gyr_range_dps} dps not in {GYR_RANGES_DPS}")
        if not 1 <= self.samples_per_packet <= MAX_SAMPLES_PER_PACKET:
            raise ValueError(f"samples per packet {self.samples_per_packet} outside 1..19")
        for name in ("packet_loss", "corruption", "duplication", "reordering"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name} must be a probability, got {getattr(self, name)}")
        if self.clock_offset_s < 0:
            raise ValueError("clock_offset_s must be >= 0")
        if self.mounting is not None:
            mounting_matrix(self.mounting)  # validates

    @classmethod
    def ideal(cls, **overrides: Any) -> SensorConfig:
        """No noise, bias, jitter, clock error or link errors (quantisation remains), and a rigid
        sensor (no sacral soft tissue): it reads the pelvis' own specific force."""
        base: dict[str, Any] = {
            "sacral_soft_tissue": False,
            "acc_noise_mps2": 0.0,
            "gyr_noise_dps": 0.0,
            "acc_bias_mps2": 0.0,
            "gyr_bias_dps": 0.0,
            "acc_bias_drift_mps2_per_sqrt_s": 0.0,
            "gyr_bias_drift_dps_per_sqrt_s": 0.0,
            "time_jitter_s": 0.0,
            "clock_drift_ppm": 0.0,
            "packet_loss": 0.0,
            "corruption": 0.0,
            "duplication": 0.0,
            "reordering": 0.0,
        }
        base.update(overrides)
        return cls(**base)

    @property
    def clock_scale(self) -> float:
        """Sensor seconds per true second."""
        return 1.0 + self.clock_drift_ppm * 1e-6

    def to_sensor_clock(self, t_true_s: npt.ArrayLike) -> F8:
        return self.clock_offset_s + self.clock_scale * np.asarray(t_true_s, dtype=np.float64)


def mounting_matrix(mounting: Any) -> F8:
    """3x3 proper rotation matrix (sensor <- body) from a matrix or a scipy Rotation."""
    if isinstance(mounting, Rotation):
        m = mounting.as_matrix()
    else:
        m = np.asarray(mounting, dtype=np.float64)
    if m.shape != (3, 3):
        raise ValueError(f"mounting must be a 3x3 rotation, got shape {m.shape}")
    if not np.allclose(m @ m.T, np.eye(3), atol=1e-6) or np.linalg.det(m) < 0:
        raise ValueError("mounting must be a proper rotation matrix")
    return np.asarray(m, dtype=np.float64)


def random_mounting(rng: np.random.Generator) -> F8:
    """Uniformly random orientation (any, including upside down): sensor <- body."""
    return np.asarray(Rotation.random(random_state=rng).as_matrix(), dtype=np.float64)


class SensorSamples(NamedTuple):
    """Quantised sensor output (sensor frame). Unpacks as ``t, acc, gyr``."""

    t_s: F8  # actual sampling instants, sensor clock
    acc_mps2: F8  # (n, 3)
    gyr_dps: F8  # (n, 3)


@dataclass
class _Sampled:
    samples: SensorSamples
    raw: npt.NDArray[np.int16]  # (n, 6)
    t_true_s: F8
    acc_bias_mps2: F8  # (3,) constant part
    gyr_bias_dps: F8


def sample_motion(
    motion: RunnerMotion,
    config: SensorConfig,
    mounting: F8,
    rng: np.random.Generator,
) -> _Sampled:
    """Sample the motion at the sensor's actual sampling instants over ``[0, duration]``."""
    rate = float(config.sample_rate_hz)
    scale = config.clock_scale
    n = math.floor(motion.duration_s * scale * rate) + 1
    i = np.arange(n, dtype=np.float64)
    r_time, r_noise, r_bias = rng.spawn(3)
    shifts: tuple[F8, F8] | None = None
    if config.sacral_soft_tissue:
        r_soft = rng.spawn(1)[0]  # after the three above: their streams are unchanged
        n_run = motion.running_contacts()[0].size
        shifts = (
            r_soft.normal(0.0, SACRAL_IC_JITTER_S, n_run),
            r_soft.normal(0.0, SACRAL_TO_JITTER_S, n_run),
        )
    jit = np.zeros(n)
    if config.time_jitter_s > 0:
        jit = np.clip(r_time.normal(0.0, config.time_jitter_s, n), -0.25 / rate, 0.25 / rate)
        jit[0] = abs(jit[0])
    tau = config.clock_offset_s + i / rate + jit
    t_true = (tau - config.clock_offset_s) / scale
    keep = t_true <= motion.duration_s
    tau, t_true = tau[keep], t_true[keep]
    n = tau.size
    f_body = np.empty((n, 3))
    w_body = np.empty((n, 3))
    for c0 in range(0, n, _EVAL_CHUNK):
        st = motion.evaluate(t_true[c0 : c0 + _EVAL_CHUNK], position=False)
        f_body[c0 : c0 + _EVAL_CHUNK] = st.specific_force_body_mps2
        w_body[c0 : c0 + _EVAL_CHUNK] = np.degrees(st.omega_body_rps)
        if shifts is not None:  # along the world vertical (row 2 of body -> world)
            up = st.rot[:, 2, :]
            soft = sacral_soft_tissue_mps2(motion, st.t_s, *shifts)
            f_body[c0 : c0 + _EVAL_CHUNK] += soft[:, None] * up
    acc = f_body @ mounting.T
    gyr = w_body @ mounting.T
    acc_b0 = r_bias.normal(0.0, 1.0, 3) * config.acc_bias_mps2
    gyr_b0 = r_bias.normal(0.0, 1.0, 3) * config.gyr_bias_dps
    dt = 1.0 / rate
    acc = acc + acc_b0
    gyr = gyr + gyr_b0
    if config.acc_bias_drift_mps2_per_sqrt_s > 0:
        step = config.acc_bias_drift_mps2_per_sqrt_s * math.sqrt(dt)
        acc += np.cumsum(r_bias.normal(0.0, step, (n, 3)), axis=0)
    if config.gyr_bias_drift_dps_per_sqrt_s > 0:
        step = config.gyr_bias_drift_dps_per_sqrt_s * math.sqrt(dt)
        gyr += np.cumsum(r_bias.normal(0.0, step, (n, 3)), axis=0)
    if config.acc_noise_mps2 > 0:
        acc += r_noise.normal(0.0, config.acc_noise_mps2, (n, 3))
    if config.gyr_noise_dps > 0:
        gyr += r_noise.normal(0.0, config.gyr_noise_dps, (n, 3))
    acc_fs = config.acc_range_g * STANDARD_GRAVITY_MPS2
    gyr_fs = float(config.gyr_range_dps)
    raw = np.empty((n, 6), dtype=np.int16)
    raw[:, :3] = to_raw(acc, acc_fs)
    raw[:, 3:] = to_raw(gyr, gyr_fs)
    samples = SensorSamples(
        t_s=tau,
        acc_mps2=raw[:, :3].astype(np.float64) * (acc_fs / 32768.0),
        gyr_dps=raw[:, 3:].astype(np.float64) * (gyr_fs / 32768.0),
    )
    return _Sampled(samples, raw, t_true, acc_b0, gyr_b0)


def sacral_soft_tissue_mps2(
    motion: RunnerMotion,
    t_s: F8,
    ic_shift_s: F8 | None = None,
    to_shift_s: F8 | None = None,
) -> F8:
    """Vertical specific force (m/s^2) a skin-mounted sacral sensor adds at the true times
    ``t_s`` (sorted): the IC / TO templates at every running contact (shifted per step by
    ``ic_shift_s`` / ``to_shift_s``, one value per contact of ``motion.running_contacts()``),
    minus their mean over the step (a constant per step, so the sensor still averages to gravity
    and the skin does not drift: it lowers the flight level by ~0.15 g)."""
    ic, to, end = motion.running_contacts()
    out = np.zeros(t_s.size)
    g = STANDARD_GRAVITY_MPS2
    ic_w = ic + (ic_shift_s if ic_shift_s is not None else 0.0)
    to_w = to + (to_shift_s if to_shift_s is not None else 0.0)
    for ev, (lo, hi), tab in (
        (ic_w, SACRAL_IC_WINDOW_S, SACRAL_IC_TEMPLATE_G),
        (to_w, SACRAL_TO_WINDOW_S, SACRAL_TO_TEMPLATE_G),
    ):
        tau = np.linspace(lo, hi, tab.size)
        area = float(np.sum(tab)) * (tau[1] - tau[0])
        a = np.searchsorted(t_s, ev + lo)
        b = np.searchsorted(t_s, ev + hi, side="right")
        for e, i0, i1 in zip(ev.tolist(), a.tolist(), b.tolist(), strict=True):
            if i1 > i0:
                out[i0:i1] += g * np.interp(t_s[i0:i1] - e, tau, tab)
        # per-step mean removal
        sa = np.searchsorted(t_s, ic)
        sb = np.searchsorted(t_s, end)
        for i0, i1, d in zip(sa.tolist(), sb.tolist(), (end - ic).tolist(), strict=True):
            if i1 > i0:
                out[i0:i1] -= g * area / d
    return out


@dataclass
class LinkStats:
    """What the link did to the packets (counts of original packets)."""

    packets: int = 0
    lost: int = 0
    corrupted: int = 0
    duplicated: int = 0
    reordered: int = 0


def packetize(
    sampled: _Sampled, config: SensorConfig, rng: np.random.Generator
) -> tuple[list[tuple[float, bytes]], LinkStats]:
    """Wire packets in host arrival order: ``(host_rx_time_s, bytes)``.

    Host time = true time.  A packet leaves after its last sample, arriving ``rx_latency_s``
    (+ exponential jitter) later; a reordered packet arrives just after its successor; a duplicate
    arrives again a little later; a lost packet never arrives; a corrupted one has 1-3 random
    bytes flipped.
    """
    spp = config.samples_per_packet
    n = sampled.raw.shape[0]
    starts = np.arange(0, n, spp)
    n_pk = starts.size
    t0_us = np.round(sampled.samples.t_s[starts] * 1e6).astype(np.int64) & 0xFFFFFFFF
    last = np.minimum(starts + spp, n) - 1
    interval = spp / config.sample_rate_hz
    r_lat, r_loss, r_cor, r_dup, r_ord = rng.spawn(5)
    # FIFO link: latency jitter never reorders by itself
    rx = np.maximum.accumulate(
        sampled.t_true_s[last] + config.rx_latency_s + r_lat.exponential(0.005, n_pk)
    )
    lost = r_loss.random(n_pk) < config.packet_loss
    corrupt = r_cor.random(n_pk) < config.corruption
    dup = r_dup.random(n_pk) < config.duplication
    reorder = r_ord.random(n_pk) < config.reordering
    reorder[-1] = False
    nxt = np.append(rx[1:], rx[-1])
    rx = np.where(reorder, np.maximum(rx + interval, nxt) + 0.001, rx)
    stats = LinkStats(
        packets=n_pk,
        lost=int(lost.sum()),
        corrupted=int((corrupt & ~lost).sum()),
        duplicated=int((dup & ~lost).sum()),
        reordered=int((reorder & ~lost).sum()),
    )
    out: list[tuple[float, bytes]] = []
    raw = sampled.raw
    rate = config.sample_rate_hz
    for k in np.flatnonzero(~lost).tolist():
        s0 = int(starts[k])
        pkt = encode_data_packet(
            k & 0xFFFF,
            int(t0_us[k]),
            rate,
            config.acc_range_g,
            config.gyr_range_dps,
            raw[s0 : s0 + spp],
        )
        if corrupt[k]:
            buf = bytearray(pkt)
            nflip = int(r_cor.integers(1, 4))
            for pos in r_cor.choice(len(buf), size=nflip, replace=False).tolist():
                buf[pos] ^= int(r_cor.integers(1, 256))
            pkt = bytes(buf)
        out.append((float(rx[k]), pkt))
        if dup[k]:
            out.append((float(rx[k] + 0.001 + r_dup.exponential(0.01)), pkt))
    out.sort(key=lambda item: item[0])
    return out, stats
