"""Seeded parameter initialization (PyTorch's default bounds, drawn from an explicit generator)."""

from __future__ import annotations

import math

import torch
from torch import nn

__all__ = ["init_layer_"]


@torch.no_grad()
def init_layer_(layer: nn.Linear | nn.Conv2d, generator: torch.Generator | None) -> None:
    """Re-draw ``layer``'s weight and bias from U(-1/sqrt(fan_in), 1/sqrt(fan_in)).

    These are the bounds of ``nn.Linear.reset_parameters`` (Kaiming-uniform with a = sqrt(5)), drawn from
    ``generator`` so that the same seed gives the same network.
    """
    fan_in = layer.weight[0].numel()
    bound = 1.0 / math.sqrt(fan_in)
    layer.weight.uniform_(-bound, bound, generator=generator)
    if layer.bias is not None:
        layer.bias.uniform_(-bound, bound, generator=generator)
