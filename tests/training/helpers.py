"""Paths and markers shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest

REAL_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
"""The real MNIST IDX files, ../shared/data/mnist relative to the repository (present on the dev machines)."""

needs_real_mnist = pytest.mark.skipif(
    not (REAL_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST not found at {REAL_MNIST} (../shared/data/mnist relative to the repository)",
)
