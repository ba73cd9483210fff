"""Networks with analog-noise injection points: the MLP, a small CNN and a residual MLP with SRL blocks.

Every model puts a :class:`~training.noise.NoisePoint` on each hidden layer's output, after the
activation, where analog neurons add their noise. Besides ``forward`` (logits), every model has
``trace(x)``, which also returns the pre-activations of the layers whose input is noisy (the saturation
regularizer needs them), and ``downstream_layers()``, the weight layers fed by a noisy layer (row-sum and
L2 regularizers act on them; the last one is the output layer). Initial weights are drawn from an explicit
generator.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from training._init import init_layer_
from training.activations import ActivationKind, make_activation
from training.noise import NoisePoint
from training.srl import SRLConfig, StochasticResidualLayer

__all__ = ["MLP", "ForwardTrace", "NoiseAwareModel", "ResidualMLP", "SmallCNN"]


@dataclass(frozen=True, eq=False)
class ForwardTrace:
    """What one forward pass leaves behind for the regularizers."""

    logits: torch.Tensor
    """Network output, shape (batch, n_classes)."""
    noisy_preactivations: tuple[torch.Tensor, ...]
    """Pre-activations (arguments of phi) of the hidden layers whose input comes through a noise point."""


def _check_positive_int(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} = {value!r} must be a positive integer")
    return value


class NoiseAwareModel(nn.Module, abc.ABC):
    """Base of the models here: ``forward`` returns logits; ``trace`` and ``downstream_layers`` serve the
    regularizers."""

    activation_kind: ActivationKind

    @abc.abstractmethod
    def trace(self, x: torch.Tensor) -> ForwardTrace:
        """Forward pass that also returns the noisy-input pre-activations."""

    @abc.abstractmethod
    def downstream_layers(self) -> list[nn.Module]:
        """Weight layers whose input is a noisy activation, in order; the last is the output layer."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.trace(x).logits

    def programmed_weights(self) -> list[torch.Tensor]:
        """Weights of every ``nn.Linear``/``nn.Conv2d`` (the matrices a chip would hold)."""
        return [m.weight for m in self.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


class MLP(NoiseAwareModel):
    """Fully connected network, e.g. the 784-300-300-10 sigmoid MLP of the noise-resilience studies.

    Parameters
    ----------
    sizes : sequence of int
        Layer widths from input to output; ``(784, 300, 300, 10)`` by default. Inputs are flattened.
    activation : ActivationKind
        Hidden activation (sigmoid by default).
    generator : torch.Generator, optional
        Source of the initial weights.
    """

    def __init__(
        self,
        sizes: Sequence[int] = (784, 300, 300, 10),
        *,
        activation: ActivationKind = ActivationKind.SIGMOID,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        sizes = tuple(sizes)
        if len(sizes) < 2:
            raise ValueError(f"sizes = {sizes!r} needs at least an input and an output width")
        for i, s in enumerate(sizes):
            _check_positive_int(f"sizes[{i}]", s)
        self.sizes = sizes
        self.activation_kind = ActivationKind(activation)
        self.hidden = nn.ModuleList(nn.Linear(a, b) for a, b in zip(sizes[:-2], sizes[1:-1]))
        self.noise = nn.ModuleList(NoisePoint() for _ in self.hidden)
        self.output = nn.Linear(sizes[-2], sizes[-1])
        self.activation = make_activation(self.activation_kind)
        for layer in (*self.hidden, self.output):
            init_layer_(layer, generator)

    def trace(self, x: torch.Tensor) -> ForwardTrace:
        h = x.flatten(1)
        pre = []
        for i, (layer, point) in enumerate(zip(self.hidden, self.noise)):
            z = layer(h)
            if i > 0:
                pre.append(z)
            h = point(self.activation(z))
        return ForwardTrace(self.output(h), tuple(pre))

    def downstream_layers(self) -> list[nn.Module]:
        return [*self.hidden[1:], self.output] if len(self.hidden) else []

    def extra_repr(self) -> str:
        return f"sizes={self.sizes}, activation={self.activation_kind.value}"


class SmallCNN(NoiseAwareModel):
    """Two 3x3 conv layers (each followed by phi, a noise point and 2x2 max-pooling) and a linear readout.

    Parameters
    ----------
    in_channels : int
        1 for MNIST / Fashion-MNIST, 3 for CIFAR-10.
    image_size : int
        Height = width of the input (28 or 32); must be divisible by 4.
    channels : tuple of two ints
        Output channels of the two conv layers.
    n_classes : int
        Number of classes.
    activation : ActivationKind
        Hidden activation.
    generator : torch.Generator, optional
        Source of the initial weights.
    """

    def __init__(
        self,
        *,
        in_channels: int = 1,
        image_size: int = 28,
        channels: tuple[int, int] = (8, 16),
        n_classes: int = 10,
        activation: ActivationKind = ActivationKind.SIGMOID,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        _check_positive_int("in_channels", in_channels)
        _check_positive_int("image_size", image_size)
        _check_positive_int("n_classes", n_classes)
        if image_size % 4:
            raise ValueError(f"image_size = {image_size} must be divisible by 4 (two 2x2 poolings)")
        if len(channels) != 2:
            raise ValueError(f"channels = {channels!r} must hold two widths")
        c1, c2 = (_check_positive_int(f"channels[{i}]", c) for i, c in enumerate(channels))
        self.activation_kind = ActivationKind(activation)
        self.conv1 = nn.Conv2d(in_channels, c1, 3, padding=1)
        self.conv2 = nn.Conv2d(c1, c2, 3, padding=1)
        self.noise = nn.ModuleList([NoisePoint(), NoisePoint()])
        self.pool = nn.MaxPool2d(2)
        self.output = nn.Linear(c2 * (image_size // 4) ** 2, n_classes)
        self.activation = make_activation(self.activation_kind)
        for layer in (self.conv1, self.conv2, self.output):
            init_layer_(layer, generator)

    def trace(self, x: torch.Tensor) -> ForwardTrace:
        h = self.pool(self.noise[0](self.activation(self.conv1(x))))
        z2 = self.conv2(h)
        h = self.pool(self.noise[1](self.activation(z2)))
        return ForwardTrace(self.output(h.flatten(1)), (z2,))

    def downstream_layers(self) -> list[nn.Module]:
        return [self.conv2, self.output]


class ResidualMLP(NoiseAwareModel):
    """Input layer, ``n_blocks`` stochastic residual layers of width ``width``, linear readout.

    With ``n_blocks=1`` and ``width=300`` on MNIST this has the topology 784-300-300-10 of :class:`MLP`
    with a residual second layer. ``SRLConfig(mode=SRLMode.VANILLA)`` gives the vanilla-residual ablation.

    Parameters
    ----------
    in_features, width, n_classes : int
        Input size (inputs are flattened), hidden width, number of classes.
    n_blocks : int
        Number of residual blocks.
    srl : SRLConfig, optional
        Configuration shared by all blocks.
    activation : ActivationKind
        phi of the input layer and of the blocks.
    generator : torch.Generator, optional
        Source of the initial weights and of the blocks' noise.
    """

    def __init__(
        self,
        *,
        in_features: int = 784,
        width: int = 300,
        n_blocks: int = 1,
        n_classes: int = 10,
        srl: SRLConfig | None = None,
        activation: ActivationKind = ActivationKind.SIGMOID,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        for name, value in (("in_features", in_features), ("width", width), ("n_blocks", n_blocks),
                            ("n_classes", n_classes)):
            _check_positive_int(name, value)
        self.activation_kind = ActivationKind(activation)
        self.input = nn.Linear(in_features, width)
        self.blocks = nn.ModuleList(
            StochasticResidualLayer(width, config=srl, activation=self.activation_kind, generator=generator)
            for _ in range(n_blocks)
        )
        self.noise = nn.ModuleList(NoisePoint() for _ in range(n_blocks + 1))
        self.output = nn.Linear(width, n_classes)
        self.activation = make_activation(self.activation_kind)
        for layer in (self.input, self.output):
            init_layer_(layer, generator)

    def trace(self, x: torch.Tensor) -> ForwardTrace:
        h = self.noise[0](self.activation(self.input(x.flatten(1))))
        pre = []
        for block, point in zip(self.blocks, self.noise[1:]):
            h, z = block.forward_trace(h)
            pre.append(z)
            h = point(h)
        return ForwardTrace(self.output(h), tuple(pre))

    def downstream_layers(self) -> list[nn.Module]:
        return [*(b.linear for b in self.blocks), self.output]
