"""Map the sensor clock to host UTC: offset and drift, robust to BLE delivery jitter and bursts.

Two kinds of observations feed one :class:`ClockSync`:

* **Packets**: a data packet whose last sample period ends at sensor time ``s`` is received at
  host time ``h >= s + offset + latency``. Delivery delay is one-sided (connection-interval wait,
  retransmissions, OS scheduling; after a reconnect or a radio stall whole bursts arrive late), so
  the *lower envelope* of ``d = h - s`` over sensor time is a line ``a + b s`` sitting one minimum
  latency above the true mapping, and its slope ``b`` is the drift.
* **TIME_SYNC round trips**: the sensor's clock read between the host's send and receive times.
  The midpoint has symmetric error of at most half the round trip; these calibrate the minimum
  latency of the envelope (``latency_s``) and give the mapping before any packet arrived.

Envelope fit (sliding window ``window_s`` of sensor time):

1. per bin of ``bin_s`` seconds, keep the observation with the smallest ``d`` (the fastest
   delivery of that bin);
2. the solution of the linear programme "line below every bin minimum, as high as possible at the
   mean time" is the edge of the lower convex hull above the mean time (the classic NTP/PTP skew
   estimator); bins more than ``tolerance_s`` above that line (late bursts, a bin with only delayed
   packets) are discarded;
3. a least-squares line through the remaining minima gives offset and drift.

Mapping: ``utc(s) = a + b s + s - latency_s`` where ``latency_s`` is the median over the fastest
quarter of the round trips (those whose midpoint is the least ambiguous) of ``(a + b s_i + s_i) - midpoint_i`` (0 with no round trips).

All times are float seconds. Sensor times are unwrapped (see :class:`SensorClockUnwrapper`).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

__all__ = ["ClockEstimate", "ClockSync", "RoundTrip", "SensorClockUnwrapper"]

_U32 = 1 << 32
_U32_HALF = 1 << 31


class SensorClockUnwrapper:
    """Unwrap the u32 microsecond sensor clock (signed modular steps, like the packet decoder).

    The first value is taken as is; every later value is placed within ``2**31`` us of the
    previous one. Feed values in arrival order (TIME_SYNC replies and packet ``t0_us``).
    """

    def __init__(self) -> None:
        self._last_raw: int | None = None
        self._last = 0

    def unwrap(self, raw_us: int) -> int:
        """Unwrapped microseconds of ``raw_us`` (taken modulo 2**32)."""
        raw = int(raw_us) % _U32
        if self._last_raw is None:
            self._last_raw, self._last = raw, raw
            return raw
        step = (raw - self._last_raw) % _U32
        if step >= _U32_HALF:
            step -= _U32
        self._last_raw = raw
        self._last += step
        return self._last

    def peek(self, raw_us: int) -> int:
        """Like :meth:`unwrap` without changing the state."""
        raw = int(raw_us) % _U32
        if self._last_raw is None:
            return raw
        step = (raw - self._last_raw) % _U32
        if step >= _U32_HALF:
            step -= _U32
        return self._last + step


@dataclass(frozen=True, slots=True)
class RoundTrip:
    """One TIME_SYNC exchange.

    Attributes:
        host_send_s: host UTC when the request was written.
        sensor_s: sensor clock in the reply (unwrapped, seconds).
        host_recv_s: host UTC when the reply arrived.
    """

    host_send_s: float
    sensor_s: float
    host_recv_s: float

    @property
    def rtt_s(self) -> float:
        return self.host_recv_s - self.host_send_s

    @property
    def midpoint_s(self) -> float:
        return 0.5 * (self.host_send_s + self.host_recv_s)


@dataclass(frozen=True, slots=True)
class ClockEstimate:
    """Current mapping: ``utc(s) = s + offset_s + drift_ppm * 1e-6 * (s - ref_sensor_s)``.

    Attributes:
        ref_sensor_s: sensor time the offset refers to.
        offset_s: ``utc - sensor`` at ``ref_sensor_s`` (latency already removed).
        drift_ppm: sensor clock rate error relative to the host (positive = sensor slow).
        latency_s: minimum packet latency removed from the envelope (from round trips).
        bins_used: envelope bins in the fit (0 = round trips only).
        round_trips: TIME_SYNC exchanges available.
        residual_s: RMS of the used bin minima around the fit (jitter floor).
    """

    ref_sensor_s: float
    offset_s: float
    drift_ppm: float
    latency_s: float
    bins_used: int
    round_trips: int
    residual_s: float


class ClockSync:
    """Sensor clock -> host UTC, updated online; see the module docstring for the method.

    Args:
        window_s: sliding window of sensor time used for the fit.
        bin_s: width of a min-delay bin (several packets per bin).
        tolerance_s: bins further above the hull line than this are outliers (bursts).
        max_round_trips: most recent TIME_SYNC exchanges kept.
        default_latency_s: latency assumed when there are no round trips.
    """

    def __init__(
        self,
        *,
        window_s: float = 300.0,
        bin_s: float = 2.0,
        tolerance_s: float = 0.003,
        max_round_trips: int = 64,
        default_latency_s: float = 0.0,
    ) -> None:
        self.window_s = float(window_s)
        self.bin_s = float(bin_s)
        self.tolerance_s = float(tolerance_s)
        self.default_latency_s = float(default_latency_s)
        self._ref_s: float | None = None  # sensor time origin of the fit (precision)
        self._ref_d: float = 0.0  # offset origin (precision: d is ~1.7e9 s)
        self._bins: dict[int, tuple[float, float]] = {}  # bin -> (s - ref, d - ref_d) of the min
        self._round_trips: deque[RoundTrip] = deque(maxlen=max_round_trips)
        self._estimate: ClockEstimate | None = None
        self._dirty = True
        self.observations = 0

    # --- input -----------------------------------------------------------------------------
    def _origin(self, sensor_s: float, d: float) -> None:
        if self._ref_s is None:
            self._ref_s = float(sensor_s)
            self._ref_d = float(d)

    def add_packet(self, sensor_s: float, host_rx_s: float) -> None:
        """A packet whose sample period ended at ``sensor_s`` arrived at ``host_rx_s`` (UTC)."""
        d = host_rx_s - sensor_s
        self._origin(sensor_s, d)
        assert self._ref_s is not None
        x, y = sensor_s - self._ref_s, d - self._ref_d
        k = math.floor(x / self.bin_s)
        cur = self._bins.get(k)
        if cur is None or y < cur[1]:
            self._bins[k] = (x, y)
            self._dirty = True
        self.observations += 1
        if len(self._bins) > 2 * self.window_s / self.bin_s + 4:
            self._prune()

    def add_packets(self, sensor_s: npt.ArrayLike, host_rx_s: npt.ArrayLike) -> None:
        """Vectorised :meth:`add_packet`."""
        for s, h in zip(
            np.asarray(sensor_s, float).tolist(), np.asarray(host_rx_s, float).tolist(), strict=True
        ):
            self.add_packet(s, h)

    def add_round_trip(self, rt: RoundTrip) -> None:
        """A TIME_SYNC exchange (sensor time unwrapped, seconds)."""
        self._origin(rt.sensor_s, rt.midpoint_s - rt.sensor_s)
        self._round_trips.append(rt)
        self._dirty = True

    def _prune(self) -> None:
        if not self._bins:
            return
        newest = max(self._bins)
        floor = newest - math.ceil(self.window_s / self.bin_s)
        for k in [k for k in self._bins if k < floor]:
            del self._bins[k]

    # --- output ----------------------------------------------------------------------------
    @property
    def ready(self) -> bool:
        """True once there is any observation."""
        return self._ref_s is not None

    @property
    def round_trips(self) -> Sequence[RoundTrip]:
        return tuple(self._round_trips)

    def estimate(self) -> ClockEstimate:
        """The current mapping.

        Raises:
            ValueError: no observation yet.
        """
        if self._ref_s is None:
            raise ValueError("clock sync has no observation yet")
        if self._dirty or self._estimate is None:
            self._estimate = self._fit()
            self._dirty = False
        return self._estimate

    def to_utc(self, sensor_s: float) -> float:
        """Host UTC (seconds since the epoch) of sensor time ``sensor_s`` (unwrapped seconds)."""
        e = self.estimate()
        x = sensor_s - e.ref_sensor_s
        return sensor_s + e.offset_s + e.drift_ppm * 1e-6 * x

    def to_utc_array(self, sensor_s: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Vectorised :meth:`to_utc`."""
        e = self.estimate()
        s = np.asarray(sensor_s, dtype=np.float64)
        return s + e.offset_s + e.drift_ppm * 1e-6 * (s - e.ref_sensor_s)

    def _fit(self) -> ClockEstimate:
        assert self._ref_s is not None
        self._prune()
        pts = np.array(sorted(self._bins.values()), dtype=np.float64).reshape(-1, 2)
        rts = list(self._round_trips)
        if len(pts) == 0:
            return self._fit_round_trips_only(rts)
        x, y = pts[:, 0], pts[:, 1]
        if len(pts) == 1:
            a, b, used, resid = float(y[0]), 0.0, 1, 0.0
        else:
            a0, b0 = _hull_line(x, y)
            keep = (y - (a0 + b0 * x)) <= self.tolerance_s
            xs, ys = x[keep], y[keep]
            if len(xs) >= 2 and np.ptp(xs) > 0:
                b, a = np.polyfit(xs, ys, 1)
            else:
                a, b = a0, b0
            resid = float(np.sqrt(np.mean((ys - (a + b * xs)) ** 2))) if len(xs) else 0.0
            used = int(keep.sum())
        latency = self.default_latency_s
        if rts:
            rts_sorted = sorted(rts, key=lambda r: r.rtt_s)
            fast = rts_sorted[: max(1, (len(rts_sorted) + 3) // 4)]
            env = np.array(
                [
                    self._ref_d + a + b * (r.sensor_s - self._ref_s) + r.sensor_s - r.midpoint_s
                    for r in fast
                ]
            )
            latency = float(np.median(env))
        # utc(s) = s + ref_d + a + b (s - ref) - latency
        return ClockEstimate(
            ref_sensor_s=self._ref_s,
            offset_s=self._ref_d + float(a) - latency,
            drift_ppm=float(b) * 1e6,
            latency_s=latency,
            bins_used=used,
            round_trips=len(rts),
            residual_s=resid,
        )

    def _fit_round_trips_only(self, rts: list[RoundTrip]) -> ClockEstimate:
        assert self._ref_s is not None
        xs = np.array([r.sensor_s - self._ref_s for r in rts])
        ys = np.array([r.midpoint_s - r.sensor_s - self._ref_d for r in rts])
        rtt = np.array([r.rtt_s for r in rts])
        if len(rts) >= 3 and np.ptp(xs) > 10.0:
            w = 1.0 / np.maximum(rtt, 1e-4)
            b, a = np.polyfit(xs, ys, 1, w=w)
        else:
            best = int(np.argmin(rtt))
            a, b = float(ys[best]), 0.0
        return ClockEstimate(
            self._ref_s, self._ref_d + float(a), float(b) * 1e6, 0.0, 0, len(rts), 0.0
        )


def _hull_line(x: npt.NDArray[np.float64], y: npt.NDArray[np.float64]) -> tuple[float, float]:
    """Edge of the lower convex hull of (x, y) above mean(x): the highest line below all points there.

    ``x`` sorted ascending, at least two points. Returns (intercept, slope).
    """
    hull: list[int] = []
    for i in range(len(x)):
        while len(hull) >= 2:
            i0, i1 = hull[-2], hull[-1]
            cross = (x[i1] - x[i0]) * (y[i] - y[i0]) - (y[i1] - y[i0]) * (x[i] - x[i0])
            if cross <= 0:
                hull.pop()
            else:
                break
        hull.append(i)
    xm = float(np.mean(x))
    for j in range(len(hull) - 1):
        i0, i1 = hull[j], hull[j + 1]
        if x[i0] <= xm <= x[i1] and x[i1] > x[i0]:
            b = (y[i1] - y[i0]) / (x[i1] - x[i0])
            return float(y[i0] - b * x[i0]), float(b)
    i0, i1 = hull[0], hull[-1]
    if x[i1] == x[i0]:
        return float(np.min(y)), 0.0
    b = (y[i1] - y[i0]) / (x[i1] - x[i0])
    return float(y[i0] - b * x[i0]), float(b)
