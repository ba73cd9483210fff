"""Reproducible speed and accuracy benchmarks; run with ``python -m benchmarks [--quick]``."""
