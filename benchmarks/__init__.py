"""Reproducible speed and accuracy benchmarks; run with ``python -m benchmarks [--quick]``."""

from crossbar import _threadenv  # noqa: F401  (first: thread-pool settings before NumPy/torch load)
