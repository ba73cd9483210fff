"""Convert a torch model to run its linear maps and convolutions on a simulated crossbar chip."""

from __future__ import annotations

import copy
import warnings
from dataclasses import replace

import numpy as np
from torch import nn
from torch.nn.utils import parametrize

from crossbar.chip import Chip
from crossbar.config import Activation
from crossbar.nn.layers import AnalogActivation, AnalogConv2d, AnalogLayer, AnalogLinear, ReadConditions, activation_noise_active

__all__ = ["AnalogConversionWarning", "convert_to_analog"]


class AnalogConversionWarning(UserWarning):
    """Some layers of a model were left digital by :func:`convert_to_analog`."""


_ACTIVATIONS: dict[type[nn.Module], Activation] = {nn.ReLU: Activation.RELU, nn.Sigmoid: Activation.SIGMOID, nn.Tanh: Activation.TANH}

# Weight-bearing modules that compute a matrix product the bridge does not map (yet): left digital,
# listed in the warning, not searched inside (their children are driven by their own forward).
_UNSUPPORTED: tuple[type[nn.Module], ...] = (
    nn.modules.conv._ConvNd,
    nn.Bilinear,
    nn.RNNBase,
    nn.RNNCellBase,
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
)
# Modules with 2-D parameters that are not matrix products (lookups): digital by nature, no warning.
_DIGITAL: tuple[type[nn.Module], ...] = (nn.Embedding, nn.EmbeddingBag)


def _unsupported_reason(module: nn.Module) -> tuple[str, bool] | None:
    """Why ``module`` is left digital and whether to look inside it; ``None`` when it is no product at all."""
    if parametrize.is_parametrized(module):
        return "parametrized weights", False
    if isinstance(module, nn.Linear):
        return "subclass of nn.Linear", False
    if isinstance(module, nn.Conv2d):
        return (f"groups={module.groups}" if type(module) is nn.Conv2d else "subclass of nn.Conv2d"), False
    if isinstance(module, _UNSUPPORTED):
        return "not supported", False
    if isinstance(module, _DIGITAL):
        return None
    if any(p.ndim >= 2 for p in module.parameters(recurse=False)):
        return "own weight matrix", True
    return None


def convert_to_analog(
    model: nn.Module,
    chip: Chip | None = None,
    *,
    read_conditions: ReadConditions | None = None,
    inplace: bool = False,
) -> nn.Module:
    """Run every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` on a simulated crossbar chip.

    Each ``nn.Linear`` becomes an :class:`~crossbar.nn.AnalogLinear` and each ``nn.Conv2d`` (groups 1)
    an :class:`~crossbar.nn.AnalogConv2d` sharing its parameters; everything else is kept. All analog
    layers share ``chip``. When the chip's configuration enables activation noise, every ``nn.ReLU``,
    ``nn.Sigmoid`` and ``nn.Tanh`` becomes an :class:`~crossbar.nn.AnalogActivation` carrying that
    noise (the chip's ``activation.function`` must stay identity: the model's activations are kept).

    Parameters
    ----------
    model : nn.Module
        Any model; an ``nn.Linear`` or ``nn.Conv2d`` itself is converted too.
    chip : Chip, optional
        Profile, configuration and seed of the chip; default ``Chip()`` (ideal devices, default
        converters and noise).
    read_conditions : ReadConditions, optional
        Initial read conditions of every analog layer (see :func:`~crossbar.nn.set_read_conditions`).
    inplace : bool
        Modify ``model`` itself instead of a deep copy.

    Returns
    -------
    nn.Module
        The converted model (``model`` itself when ``inplace``). Nothing is programmed yet: layers
        program lazily at their first forward, or all at once with :func:`~crossbar.nn.program_analog`.

    Warns
    -----
    AnalogConversionWarning
        Once, listing every weight-bearing layer left digital (other convolutions, grouped
        convolutions, recurrent and attention layers, ``nn.Linear`` subclasses, parametrized layers,
        custom modules with weight matrices) and missing activation modules when the chip's activation
        noise has nowhere to go (activations called functionally, e.g. ``F.relu``).
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if chip is None:
        chip = Chip()
    if not isinstance(chip, Chip):
        raise ValueError(f"chip must be a crossbar.Chip, got {type(chip).__name__}")
    if chip.config.activation.function is not Activation.IDENTITY:
        raise ValueError(
            f"chip.config.activation.function = {chip.config.activation.function.value!r} must be 'identity': the model's "
            "own activations are kept (with the chip's activation noise when it is enabled)"
        )
    if read_conditions is not None and not isinstance(read_conditions, ReadConditions):
        raise ValueError(f"read_conditions must be a ReadConditions, got {type(read_conditions).__name__}")
    if not inplace:
        model = copy.deepcopy(model)
    with_activations = activation_noise_active(chip.config)
    state = _Conversion(chip, read_conditions, with_activations)
    model = state.convert(model, "")
    problems = [f"{name or '<model>'} ({kind}: {reason})" for name, kind, reason in state.left_digital]
    if with_activations and state.n_activations == 0:
        problems.append("no nn.ReLU/nn.Sigmoid/nn.Tanh module to carry the chip's activation noise (functional activations are not seen)")
    if problems:
        warnings.warn(
            f"convert_to_analog left {len(problems)} item(s) digital: " + "; ".join(problems),
            AnalogConversionWarning,
            stacklevel=2,
        )
    return model


class _Conversion:
    def __init__(self, chip: Chip, read_conditions: ReadConditions | None, with_activations: bool) -> None:
        self.chip = chip
        self.read_conditions = read_conditions
        self.with_activations = with_activations
        self.left_digital: list[tuple[str, str, str]] = []
        self.n_activations = 0

    def convert(self, module: nn.Module, name: str) -> nn.Module:
        new = self._replacement(module, name)
        if new is not None:
            return new
        for child_name, child in list(module.named_children()):
            new_child = self.convert(child, f"{name}.{child_name}" if name else child_name)
            if new_child is not child:
                setattr(module, child_name, new_child)
        return module

    def _replacement(self, module: nn.Module, name: str) -> nn.Module | None:
        """The module that replaces ``module``; ``module`` itself to stop descending; ``None`` to descend."""
        if isinstance(module, (AnalogLayer, AnalogActivation)):
            return module
        kind = type(module)
        if kind is nn.Linear and not parametrize.is_parametrized(module):
            return AnalogLinear.from_linear(module, chip=self.chip, read_conditions=self.read_conditions)
        if kind is nn.Conv2d and module.groups == 1 and not parametrize.is_parametrized(module):
            return AnalogConv2d.from_conv2d(module, chip=self.chip, read_conditions=self.read_conditions)
        if self.with_activations and kind in _ACTIVATIONS:
            config = replace(self.chip.config.activation, function=_ACTIVATIONS[kind])
            seed = np.random.SeedSequence([self.chip.seed, 0x61637476, self.n_activations]).generate_state(1, np.uint64)[0]
            self.n_activations += 1
            return AnalogActivation(config, seed=int(seed))
        found = _unsupported_reason(module)
        if found is None:
            return None
        reason, descend = found
        self.left_digital.append((name, kind.__name__, reason))
        return None if descend else module
