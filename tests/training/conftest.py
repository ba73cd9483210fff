"""Shared fixtures of the training tests: tiny datasets and models that keep every test fast."""

from __future__ import annotations

import pytest

from tests.training.helpers import make_tiny_dataset
from training.datasets import Dataset


@pytest.fixture
def tiny_dataset() -> Dataset:
    """96 noisy 1x8x8 'images' whose label is the quadrant that is brighter (4 classes, easy to learn)."""
    return make_tiny_dataset()
