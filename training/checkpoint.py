"""Atomic checkpoints of plain tensors and Python values (``torch.save``; loaded with ``weights_only=True``).

A checkpoint is written to a temporary file in the same directory, flushed to disk and renamed over the
old one with ``os.replace``, so a crash never leaves a half-written file where a good one was. Loading uses
``torch.load(..., weights_only=True)``: only tensors and plain containers/numbers/strings are accepted,
never arbitrary pickled objects.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

__all__ = ["load_checkpoint", "save_checkpoint"]


def save_checkpoint(path: str | os.PathLike[str], state: dict[str, Any]) -> None:
    """Write ``state`` (tensors, dicts, lists, numbers, strings) to ``path`` atomically."""
    if not isinstance(state, dict):
        raise ValueError(f"state must be a dict, got {type(state).__name__}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            torch.save(state, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        _unlink_quietly(tmp)
        raise


def _unlink_quietly(path: str) -> None:
    """Remove a leftover temporary file, ignoring one that is already gone."""
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint written by :func:`save_checkpoint` onto the CPU (``weights_only=True``)."""
    state = torch.load(Path(path), map_location="cpu", weights_only=True)
    if not isinstance(state, dict):
        raise ValueError(f"{path}: not a checkpoint (top level is {type(state).__name__}, not a dict)")
    return state
