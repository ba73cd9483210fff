"""Test configuration shared by every test folder."""

from __future__ import annotations

import pytest
from hypothesis import settings

# Deterministic property tests: the same examples on every run and machine, no wall-clock deadline
# (CI machines are slow and shared; speed is measured in benchmarks/, never asserted in tests).
settings.register_profile("default", deadline=None, derandomize=True, print_blob=True)
settings.load_profile("default")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip tests marked ``gpu`` when CUDA is not available (CI never has a GPU)."""
    gpu_items = [item for item in items if "gpu" in item.keywords]
    if not gpu_items:
        return
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:  # pragma: no cover - torch is a dependency
        has_cuda = False
    if has_cuda:
        return
    skip = pytest.mark.skip(reason="needs CUDA; no GPU on this machine")
    for item in gpu_items:
        item.add_marker(skip)
