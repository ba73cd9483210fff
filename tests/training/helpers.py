"""Paths and markers shared by the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from training.datasets import Dataset

REAL_MNIST = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "mnist"
"""The real MNIST IDX files, ../shared/data/mnist relative to the repository (present on the dev machines)."""

needs_real_mnist = pytest.mark.skipif(
    not (REAL_MNIST / "train-images-idx3-ubyte.gz").is_file(),
    reason=f"real MNIST not found at {REAL_MNIST} (../shared/data/mnist relative to the repository)",
)


def make_tiny_dataset(n: int = 96, seed: int = 1234) -> Dataset:
    """``n`` noisy 1x8x8 'images' whose label is the quadrant that is brighter (4 classes, easy to learn)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n) % 4
    x = 0.5 * torch.rand(n, 1, 8, 8, generator=g)
    for i, label in enumerate(labels.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 0.5
    return Dataset(images=x, labels=labels, n_classes=4, name="tiny quadrants")
