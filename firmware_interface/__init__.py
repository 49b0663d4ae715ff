"""Sensor wire protocol and device I/O (no DSP, no storage)."""
