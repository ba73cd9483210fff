"""Model-level controls of an analog model: program, read conditions (drift, temperature, compensation), reseed.

Functions over any ``nn.Module`` that contains analog layers (e.g. from
:func:`~crossbar.nn.convert_to_analog`); they hold no state of their own, so they stay right when the
model changes.

>>> import torch
>>> from crossbar import Chip
>>> from crossbar.nn import ReadConditions, convert_to_analog, program_analog, set_read_conditions
>>> model = convert_to_analog(torch.nn.Sequential(torch.nn.Linear(8, 4)), Chip("pcm", seed=0))
>>> program_analog(model)
1
>>> set_read_conditions(model, ReadConditions(time_sec=86400.0, temperature_kelvin=330.0, drift_compensation=True))
>>> set_read_conditions(model, time_sec=3.15e7)  # a year after programming, still at 330 K, compensated
>>> model[0].read_conditions
ReadConditions(time_sec=31500000.0, temperature_kelvin=330.0, drift_compensation=True)
"""

from __future__ import annotations

from dataclasses import fields, replace
from typing import Any

import numpy as np
from torch import nn

from crossbar.nn.layers import AnalogActivation, AnalogLayer, ReadConditions

__all__ = ["analog_layers", "program_analog", "programming_count", "reseed_analog", "set_read_conditions"]


def _check_model(model: object) -> nn.Module:
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    return model


def analog_layers(model: nn.Module) -> list[tuple[str, AnalogLayer]]:
    """``(qualified name, layer)`` of every analog layer of ``model``, in module order."""
    return [(name, m) for name, m in _check_model(model).named_modules() if isinstance(m, AnalogLayer)]


def program_analog(model: nn.Module, *, only_changed: bool = False) -> int:
    """Program every analog layer now; returns how many were programmed.

    Parameters
    ----------
    model : nn.Module
    only_changed : bool
        Program only the layers whose weights changed since their last programming (or that were
        never programmed); by default every layer is re-programmed, with fresh device draws.
    """
    count = 0
    for _, layer in analog_layers(model):
        if not only_changed or layer.weights_changed():
            layer.program()
            count += 1
    return count


def set_read_conditions(model: nn.Module, conditions: ReadConditions | None = None, /, **changes: Any) -> None:
    """Read every analog layer at new conditions: time since programming, temperature, drift compensation.

    Parameters
    ----------
    model : nn.Module
    conditions : ReadConditions, optional
        The conditions of every layer. Without it, each layer keeps its own conditions except the
        fields named in ``changes``.
    **changes
        Fields of :class:`ReadConditions` to set (``time_sec``, ``temperature_kelvin``,
        ``drift_compensation``), applied on top of ``conditions`` or of each layer's current conditions.

    Notes
    -----
    Never re-programs: the programmed devices are read at the new time and temperature (the chip caches
    one read state per condition, so switching back and forth is cheap). ``set_read_conditions(model,
    time_sec=3.15e7)`` reads a year after programming at each layer's temperature and compensation.
    """
    if conditions is not None and not isinstance(conditions, ReadConditions):
        raise ValueError(f"conditions must be a ReadConditions, got {type(conditions).__name__}")
    known = {f.name for f in fields(ReadConditions)}
    unknown = sorted(set(changes) - known)
    if unknown:
        raise ValueError(f"unknown read condition {unknown[0]!r}; read conditions are {', '.join(sorted(known))}")
    if conditions is None and not changes:
        raise ValueError("set_read_conditions: give a ReadConditions or the fields to change (e.g. time_sec=3600.0)")
    for _, layer in analog_layers(model):
        layer.read_conditions = replace(conditions if conditions is not None else layer.read_conditions, **changes)


def reseed_analog(model: nn.Module, seed: int) -> None:
    """Restart every fresh-noise stream of the model (read noise of each layer, activation noise) from ``seed``.

    Device draws are unchanged. Each module gets its own stream, derived from ``seed`` and its position
    in the model, so two reseeds with the same seed repeat the same evaluation bit for bit.
    """
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"seed = {seed!r} must be a non-negative integer")
    modules = [m for m in _check_model(model).modules() if isinstance(m, (AnalogLayer, AnalogActivation))]
    for index, module in enumerate(modules):
        child = np.random.SeedSequence(int(seed), spawn_key=(index,)).generate_state(1, np.uint64)[0]
        module.reseed(int(child))


def programming_count(model: nn.Module) -> int:
    """Total number of programmings of the model's analog layers."""
    return sum(layer.n_programmings for _, layer in analog_layers(model))
