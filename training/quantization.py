"""Uniform quantization with a straight-through gradient, and quantization-aware training (QAT).

The quantizer is the signed mid-tread one the chip's converters use: ``2**bits - 1`` levels
``k * step``, ``k = -(2**(bits-1) - 1) ... 2**(bits-1) - 1``, ``step = x_max / (2**(bits-1) - 1)``; zero is
a level and the range is symmetric. For 2 bits that is the ternary set ``{-x_max, 0, x_max}``.

References
----------
Y. Bengio, N. Leonard and A. Courville, "Estimating or propagating gradients through stochastic neurons for
conditional computation", arXiv:1308.3432 (2013), doi:10.48550/arXiv.1308.3432 (straight-through estimator).
B. Jacob et al., "Quantization and training of neural networks for efficient integer-arithmetic-only
inference", CVPR 2018, doi:10.1109/CVPR.2018.00286 (fake quantization during training).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

__all__ = [
    "MAX_BITS",
    "MIN_BITS",
    "WeightQuantizer",
    "prepare_qat",
    "quantization_levels",
    "quantize_ste",
    "strip_qat",
]

MIN_BITS = 2
"""Fewest bits of the signed mid-tread quantizer (3 levels)."""
MAX_BITS = 16
"""Most bits accepted (float32 resolves them all)."""


def _check_bits(bits: object, name: str = "bits") -> int:
    if isinstance(bits, bool) or not isinstance(bits, int) or not MIN_BITS <= bits <= MAX_BITS:
        raise ValueError(f"{name} = {bits!r} must be an integer in [{MIN_BITS}, {MAX_BITS}]")
    return bits


def _n_positive_levels(bits: int) -> int:
    return (1 << (bits - 1)) - 1


def quantization_levels(bits: int, x_max: float) -> torch.Tensor:
    """The ``2**bits - 1`` levels of the quantizer on ``[-x_max, x_max]`` (float64, ascending)."""
    bits = _check_bits(bits)
    if not x_max > 0:
        raise ValueError(f"x_max = {x_max!r} must be > 0")
    n = _n_positive_levels(bits)
    return torch.arange(-n, n + 1, dtype=torch.float64) * (float(x_max) / n)


class _QuantizeSTE(torch.autograd.Function):
    """Round to the nearest level and clip; gradient straight-through inside the range, zero outside.

    Gradient semantics: straight-through (not the derivative of the staircase, which is zero almost
    everywhere): d out / d x = 1 for |x| <= x_max, 0 beyond (the clipped region really is flat). No
    gradient flows to ``step``.
    """

    @staticmethod
    def forward(x: torch.Tensor, step: torch.Tensor, n: int) -> torch.Tensor:
        return torch.clamp(torch.round(x / step), -n, n) * step

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
        x, step, n = inputs
        ctx.save_for_backward(x, step)
        ctx.n = n

    @staticmethod
    def backward(ctx: Any, grad_out: torch.Tensor) -> tuple[torch.Tensor | None, None, None]:
        x, step = ctx.saved_tensors
        inside = x.abs() <= step * ctx.n
        return grad_out * inside.to(grad_out.dtype), None, None


def quantize_ste(x: torch.Tensor, *, bits: int, x_max: float | torch.Tensor) -> torch.Tensor:
    """Quantize ``x`` to ``bits`` bits on ``[-x_max, x_max]`` with a straight-through gradient.

    Parameters
    ----------
    x : torch.Tensor
        Values to quantize.
    bits : int
        Resolution, 2 to 16; ``2**bits - 1`` levels.
    x_max : float or torch.Tensor
        Full scale (a positive number, or a 0-d tensor such as ``w.abs().max()``; it is detached).

    Returns
    -------
    torch.Tensor
        ``clip(round(x / step), -n, n) * step`` with ``n = 2**(bits-1) - 1`` and ``step = x_max / n``.

    Notes
    -----
    Backward: :math:`\\partial Q / \\partial x = \\mathbb{1}[|x| \\le x_{max}]` (clipped straight-through).
    """
    bits = _check_bits(bits)
    n = _n_positive_levels(bits)
    if isinstance(x_max, torch.Tensor):
        if x_max.numel() != 1:
            raise ValueError(f"x_max must be a scalar, got a tensor of shape {tuple(x_max.shape)}")
        step = (x_max.detach().to(device=x.device, dtype=x.dtype) / n).reshape(())
        if not bool(step > 0):
            raise ValueError(f"x_max = {float(x_max.detach()):g} must be > 0")
    else:
        if isinstance(x_max, bool) or not isinstance(x_max, (int, float)) or not x_max > 0:
            raise ValueError(f"x_max = {x_max!r} must be a number > 0")
        step = torch.tensor(float(x_max) / n, device=x.device, dtype=x.dtype)
    return _QuantizeSTE.apply(x, step, n)


class WeightQuantizer(nn.Module):
    """Parametrization that fake-quantizes a weight to ``bits`` bits over its own ``[-max|W|, max|W|]``.

    One scale per tensor, as the chip maps a tile's largest weight to the full conductance window. The
    float weight stays the trainable master copy; the forward pass sees the quantized one (QAT).
    """

    def __init__(self, bits: int):
        super().__init__()
        self.bits = _check_bits(bits)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        scale = w.detach().abs().max()
        if not bool(scale > 0):
            return w
        return quantize_ste(w, bits=self.bits, x_max=scale)

    def extra_repr(self) -> str:
        return f"bits={self.bits}"


def _quantizable(model: nn.Module) -> list[nn.Module]:
    return [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]


def prepare_qat(model: nn.Module, bits: int) -> nn.Module:
    """Fake-quantize the weight of every ``nn.Linear`` and ``nn.Conv2d`` of ``model`` in place.

    Biases stay in float (they are added digitally). Call before building the optimizer; the state dict
    then holds ``...parametrizations.weight.original``. Raises ``ValueError`` if already prepared.
    """
    bits = _check_bits(bits)
    layers = _quantizable(model)
    if not layers:
        raise ValueError(f"model {type(model).__name__} has no nn.Linear or nn.Conv2d to quantize")
    for layer in layers:
        if parametrize.is_parametrized(layer, "weight"):
            raise ValueError(f"{type(layer).__name__} weight is already parametrized; prepare_qat once only")
    for layer in layers:
        parametrize.register_parametrization(layer, "weight", WeightQuantizer(bits))
    return model


def strip_qat(model: nn.Module) -> nn.Module:
    """Replace every fake-quantized weight by its quantized value and remove the parametrization.

    Works in place. Do not apply it to a ``copy.deepcopy`` of a QAT model while the original is still in
    use: the copy shares torch's generated parametrized class with the original, and removing the
    parametrization deletes the weight property from that class (the original then has no ``weight``).
    """
    for layer in _quantizable(model):
        if parametrize.is_parametrized(layer, "weight"):
            parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return model
