"""Activation functions of the analog neurons and their derivatives.

The saturation regularizer needs phi'(z) as a differentiable tensor expression, so every activation here
comes with a closed-form derivative.

References
----------
G. Mourgias-Alexandris, A. Tsakyridis, N. Passalis, A. Tefas, K. Vyrsokinos and N. Pleros, "An all-optical
neuron with sigmoid activation function", Opt. Express 27(7), 9620-9630 (2019), doi:10.1364/OE.27.009620
(the photonic sigmoid: a logistic fit of an SOA-MZI + SOA-XGM transfer function).
"""

from __future__ import annotations

import enum

import torch
from torch import nn

__all__ = [
    "PHOTONIC_SIGMOID_A1",
    "PHOTONIC_SIGMOID_A2",
    "PHOTONIC_SIGMOID_D",
    "PHOTONIC_SIGMOID_X0",
    "ActivationKind",
    "PhotonicSigmoid",
    "activation_derivative",
    "make_activation",
    "photonic_sigmoid",
]

PHOTONIC_SIGMOID_A1 = 0.060
"""Lower plateau of the photonic sigmoid (output for z << x0), normalized optical power."""
PHOTONIC_SIGMOID_A2 = 1.005
"""Upper plateau of the photonic sigmoid (output for z >> x0), normalized optical power."""
PHOTONIC_SIGMOID_X0 = 0.145
"""Input at the midpoint of the photonic sigmoid, normalized optical power."""
PHOTONIC_SIGMOID_D = 0.033
"""Width of the transition of the photonic sigmoid, normalized optical power."""


class ActivationKind(enum.Enum):
    """Which activation function the hidden neurons apply."""

    SIGMOID = "sigmoid"
    """Logistic sigmoid 1 / (1 + exp(-z))."""
    PHOTONIC_SIGMOID = "photonic_sigmoid"
    """Saturating photonic sigmoid A1 + (A2 - A1) sigmoid((z - x0) / d) (Mourgias-Alexandris et al. 2019)."""
    TANH = "tanh"
    """Hyperbolic tangent."""
    RELU = "relu"
    """max(z, 0)."""


def photonic_sigmoid(z: torch.Tensor) -> torch.Tensor:
    """The photonic sigmoid of Mourgias-Alexandris et al. (2019).

    Parameters
    ----------
    z : torch.Tensor
        Pre-activation (normalized input optical power).

    Returns
    -------
    torch.Tensor
        ``A1 + (A2 - A1) * sigmoid((z - x0) / d)``, in ``(A1, A2)``.

    Notes
    -----
    The published form is

    .. math:: f(z) = A_2 + \\frac{A_1 - A_2}{1 + e^{(z - x_0)/d}}
              = A_1 + (A_2 - A_1)\\,\\sigma\\!\\left(\\frac{z - x_0}{d}\\right)

    with :math:`A_1 = 0.060`, :math:`A_2 = 1.005`, :math:`x_0 = 0.145`, :math:`d = 0.033`. Writing it with
    the logistic :math:`\\sigma` avoids the overflow of :math:`e^{(z - x_0)/d}` that implementations of the
    first form cut off by hand.
    """
    u = (z - PHOTONIC_SIGMOID_X0) / PHOTONIC_SIGMOID_D
    return PHOTONIC_SIGMOID_A1 + (PHOTONIC_SIGMOID_A2 - PHOTONIC_SIGMOID_A1) * torch.sigmoid(u)


class PhotonicSigmoid(nn.Module):
    """Module form of :func:`photonic_sigmoid`."""

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return photonic_sigmoid(z)


def make_activation(kind: ActivationKind) -> nn.Module:
    """A fresh module computing the activation ``kind``."""
    kind = ActivationKind(kind)
    if kind is ActivationKind.SIGMOID:
        return nn.Sigmoid()
    if kind is ActivationKind.PHOTONIC_SIGMOID:
        return PhotonicSigmoid()
    if kind is ActivationKind.TANH:
        return nn.Tanh()
    return nn.ReLU()


def activation_derivative(kind: ActivationKind, z: torch.Tensor) -> torch.Tensor:
    """phi'(z) as a differentiable expression (so penalties on it have gradients).

    Notes
    -----
    Sigmoid: :math:`\\sigma(z)(1 - \\sigma(z))`; photonic sigmoid:
    :math:`\\frac{A_2 - A_1}{d}\\,\\sigma(u)(1 - \\sigma(u))`, :math:`u = (z - x_0)/d`;
    tanh: :math:`1 - \\tanh^2 z`; ReLU: the step :math:`[z > 0]` (zero second derivative).
    """
    kind = ActivationKind(kind)
    if kind is ActivationKind.SIGMOID:
        s = torch.sigmoid(z)
        return s * (1.0 - s)
    if kind is ActivationKind.PHOTONIC_SIGMOID:
        s = torch.sigmoid((z - PHOTONIC_SIGMOID_X0) / PHOTONIC_SIGMOID_D)
        return (PHOTONIC_SIGMOID_A2 - PHOTONIC_SIGMOID_A1) / PHOTONIC_SIGMOID_D * s * (1.0 - s)
    if kind is ActivationKind.TANH:
        t = torch.tanh(z)
        return 1.0 - t * t
    return (z > 0).to(z.dtype)
