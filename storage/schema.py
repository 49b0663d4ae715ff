"""Measurements, tags and fields: one definition for the embedded store and InfluxDB."""

from __future__ import annotations

from dsp.types import STEP_METRICS

MEASUREMENT_STEPS = "steps"
MEASUREMENT_EVENTS = "events"
MEASUREMENT_ALERTS = "alerts"
MEASUREMENT_SESSIONS = "sessions"

#: tag keys per measurement (all strings)
TAGS: dict[str, tuple[str, ...]] = {
    MEASUREMENT_STEPS: ("runner", "session", "device", "side", "activity"),
    MEASUREMENT_EVENTS: ("runner", "session", "device", "side", "event"),
    MEASUREMENT_ALERTS: ("runner", "session", "device", "side", "metric", "level"),
    MEASUREMENT_SESSIONS: ("runner", "session", "device", "source"),
}

#: field keys per measurement with their units
FIELDS: dict[str, dict[str, str]] = {
    MEASUREMENT_STEPS: {
        "sensor_time_s": "s",
        "cadence_spm": "steps/min",
        "contact_time_s": "s",
        "flight_time_s": "s",
        "vertical_oscillation_m": "m",
        "pelvic_drop_deg": "deg",
        "pelvic_rotation_deg": "deg",
        "pelvic_tilt_deg": "deg",
        "braking_mps2": "m/s^2",
    },
    MEASUREMENT_EVENTS: {"sensor_time_s": "s"},
    MEASUREMENT_ALERTS: {
        "sensor_time_s": "s",
        "value": "metric unit",
        "baseline": "metric unit",
        "deviation": "metric unit",
        "since_s": "s",
        "active": "bool",
        "message": "text",
    },
    MEASUREMENT_SESSIONS: {
        "start_utc_s": "s",
        "duration_s": "s",
        "steps": "count",
        "distance_m": "m",
        "sample_rate_hz": "Hz",
        "packets_received": "count",
        "packets_lost": "count",
        "packets_corrupt": "count",
        "alignment_confidence": "0..1",
    },
}

assert set(STEP_METRICS) <= set(FIELDS[MEASUREMENT_STEPS])
