"""Shared fixtures of the training tests: tiny datasets and models that keep every test fast."""

from __future__ import annotations

import pytest
import torch

from training.datasets import Dataset


@pytest.fixture
def tiny_dataset() -> Dataset:
    """96 noisy 1x8x8 'images' whose label is the quadrant that is brighter (4 classes, easy to learn)."""
    g = torch.Generator().manual_seed(1234)
    labels = torch.arange(96) % 4
    x = 0.5 * torch.rand(96, 1, 8, 8, generator=g)
    for i, label in enumerate(labels.tolist()):
        r, c = divmod(label, 2)
        x[i, 0, 4 * r : 4 * r + 4, 4 * c : 4 * c + 4] += 0.5
    return Dataset(images=x, labels=labels, n_classes=4, name="tiny quadrants")
