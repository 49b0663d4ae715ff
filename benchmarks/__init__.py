"""Accuracy and speed benchmarks of the DSP (``python -m benchmarks.accuracy``, ``bench_pipeline``)."""
