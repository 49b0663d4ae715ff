"""Numba DSP kernels: resampling, alignment, orientation, gait events, per-step metrics."""
