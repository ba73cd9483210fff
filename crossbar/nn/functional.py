"""Functional core of the torch bridge: linear maps and convolutions computed on a programmed crossbar.

The modules of :mod:`crossbar.nn.layers` are thin wrappers around these functions; they own the chip,
decide when to (re)program it and pass the :class:`~crossbar.chip.ProgrammedMatrix` in. Every function
here takes the programmed matrix explicitly and never programs.

Gradient semantics (straight-through)
-------------------------------------
The forward pass is the chip's output ``y = chip(x)`` with every enabled stage (quantization, noise,
drift, ...). The backward pass is that of the *ideal* linear map ``y = x W^T`` with the digital weights
``W`` the chip was programmed from: ``dL/dx = g W`` and ``dL/dW = g^T x`` for an upstream gradient
``g``. This is a straight-through estimator: the chip is treated as the identity around the ideal
product, so stock torch optimizers train the digital weights chip-in-the-loop. It is exact (and
``torch.autograd.gradcheck`` passes) when every stage is off and the converters are ideal. Biases are
added digitally in torch after the chip, so their gradient is always exact.

Data movement
-------------
The chip runs in NumPy on the CPU. CPU tensors are shared with NumPy without a copy (a non-contiguous
input is made contiguous once); float32 stays float32 and float64 stays float64. CUDA tensors are
accepted: the input is copied to host memory, the chip runs on the CPU and the output is copied back,
i.e. two device-host transfers of ``batch x in`` and ``batch x out`` numbers per call, and a
synchronization of the stream; the backward pass runs on the device.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from crossbar.chip import ProgrammedMatrix

__all__ = ["AnalogMatmul", "analog_conv2d", "analog_linear"]

_FLOAT_DTYPES = (torch.float32, torch.float64)


def _check_float(t: Tensor, name: str, where: str) -> None:
    if t.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{where}: {name} has dtype {t.dtype}; the chip runs float32 or float64 tensors")


def _check_finite(t: Tensor, name: str, where: str) -> None:
    finite = torch.isfinite(t)
    if not bool(finite.all()):
        idx = tuple(int(i) for i in torch.nonzero(~finite)[0])
        raise ValueError(f"{where}: {name} contains a non-finite value ({t[idx].item()}) at index {idx}")


def _check_matrix(matrix: Any, weight2d: Tensor, where: str) -> None:
    if not isinstance(matrix, ProgrammedMatrix):
        raise ValueError(f"{where}: matrix must be a crossbar ProgrammedMatrix, got {type(matrix).__name__}")
    if (matrix.out_features, matrix.in_features) != tuple(weight2d.shape):
        raise ValueError(
            f"{where}: the programmed matrix is {matrix.out_features} x {matrix.in_features} but the weight is "
            f"{tuple(weight2d.shape)}; re-program the chip after changing shapes"
        )


def _chip_product(x2d: Tensor, matrix: ProgrammedMatrix, time_sec: float | None, temperature_kelvin: float | None) -> Tensor:
    """``matrix.matvec`` on a 2-D tensor; the result has the tensor's dtype and device."""
    x = x2d.detach()
    device = x.device
    if device.type != "cpu":
        x = x.cpu()  # one device-to-host copy (synchronizes); see the module notes
    y = matrix.matvec(x.numpy(), time_sec=time_sec, temperature_kelvin=temperature_kelvin)
    out = torch.from_numpy(y)
    return out if device.type == "cpu" else out.to(device)


class AnalogMatmul(torch.autograd.Function):
    """``y = chip(x) ~ x W^T`` for ``x`` of shape (batch, in) on a programmed matrix ``W`` (out, in).

    Forward: :meth:`crossbar.chip.ProgrammedMatrix.matvec` at the given time since programming and
    temperature, with every stage the chip enables. Backward: **straight-through** with respect to the
    digital weights, i.e. the exact gradient of the ideal product ``x W^T``: ``grad_x = g W`` and
    ``grad_W = g^T x``. Exact when every stage is off; otherwise an estimator that ignores quantization,
    clipping and noise. ``weight`` must be the tensor ``matrix`` was programmed from (it only enters the
    backward pass). Arguments after ``weight`` get no gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        x: Tensor, weight: Tensor, matrix: ProgrammedMatrix, time_sec: float | None, temperature_kelvin: float | None
    ) -> Tensor:
        return _chip_product(x, matrix, time_sec, temperature_kelvin)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, weight = inputs[0], inputs[1]
        ctx.save_for_backward(x, weight)

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_y @ weight if ctx.needs_input_grad[0] else None
        grad_w = grad_y.t() @ x if ctx.needs_input_grad[1] else None
        return grad_x, grad_w, None, None, None


def analog_linear(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    matrix: ProgrammedMatrix,
    time_sec: float | None = None,
    temperature_kelvin: float | None = None,
) -> Tensor:
    """``y = chip(x W^T) + b`` on a matrix programmed from ``weight``; the analog counterpart of ``F.linear``.

    Parameters
    ----------
    input : Tensor, shape (*, in_features)
        float32 or float64; CPU or CUDA (CUDA is copied to the host and back).
    weight : Tensor, shape (out_features, in_features)
        The digital weights ``matrix`` was programmed from (used by the backward pass only).
    bias : Tensor, shape (out_features,), optional
        Added digitally after the chip (exact gradient).
    matrix : ProgrammedMatrix
        The programmed chip matrix that computes the product.
    time_sec, temperature_kelvin : float, optional
        Time since programming (s) and chip temperature (K) of the read; default: the programming
        conditions (no drift).

    Returns
    -------
    Tensor, shape (*, out_features), same dtype and device as ``input``.

    Notes
    -----
    The gradient is straight-through (see :class:`AnalogMatmul`).
    """
    where = "analog_linear"
    _check_float(input, "input", where)
    if weight.ndim != 2:
        raise ValueError(f"{where}: weight has shape {tuple(weight.shape)}; expected (out_features, in_features)")
    if input.dtype != weight.dtype:
        raise ValueError(f"{where}: input dtype {input.dtype} does not match weight dtype {weight.dtype}")
    n_out, n_in = weight.shape
    if input.ndim == 0 or input.shape[-1] != n_in:
        raise ValueError(f"{where}: input has shape {tuple(input.shape)}; expected (*, {n_in})")
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise ValueError(f"{where}: bias has shape {tuple(bias.shape)}; expected ({n_out},)")
    _check_matrix(matrix, weight, where)
    _check_finite(input, "input", where)
    lead = input.shape[:-1]
    x2d = input.reshape(-1, n_in)
    if x2d.shape[0] == 0:
        y = x2d @ weight.t()  # empty: nothing reaches the chip
    else:
        y = AnalogMatmul.apply(x2d, weight, matrix, time_sec, temperature_kelvin)
    y = y.reshape(*lead, n_out)
    return y if bias is None else y + bias


def _pair(v: Any, name: str, where: str, low: int) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) and not isinstance(v, bool) else tuple(v)
    if len(pair) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) and p >= low for p in pair):
        raise ValueError(f"{where}: {name} = {v!r} must be an int or a pair of ints >= {low}")
    return pair  # type: ignore[return-value]


def analog_conv2d(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    stride: int | tuple[int, int] = 1,
    padding: str | int | tuple[int, int] = 0,
    dilation: int | tuple[int, int] = 1,
    *,
    matrix: ProgrammedMatrix,
    time_sec: float | None = None,
    temperature_kelvin: float | None = None,
) -> Tensor:
    """2-D convolution on the chip by unfolding (im2col) onto one tiled MVM; the analog ``F.conv2d``.

    Every receptive field (``in_channels x kh x kw`` numbers) becomes one input vector of the chip
    matrix programmed from ``weight.reshape(out_channels, -1)``, so a batch of N images of L output
    positions is one MVM of N L vectors. Zero padding only; other padding modes are applied by the
    caller (see :class:`~crossbar.nn.AnalogConv2d`). ``groups`` must be 1.

    Parameters
    ----------
    input : Tensor, shape (N, C, H, W) or (C, H, W)
        float32 or float64; CPU or CUDA (copied to the host and back).
    weight : Tensor, shape (out_channels, C, kh, kw)
        The digital weights ``matrix`` was programmed from (reshaped to (out_channels, C kh kw)).
    bias : Tensor, shape (out_channels,), optional
        Added digitally after the chip.
    stride, padding, dilation
        As for :func:`torch.nn.functional.conv2d`; ``padding`` may be ``"valid"`` or ``"same"``.
    matrix, time_sec, temperature_kelvin
        As for :func:`analog_linear`.

    Notes
    -----
    The gradient is straight-through (see :class:`AnalogMatmul`); the unfold is differentiable, so the
    input gradient is that of the ideal convolution.
    """
    where = "analog_conv2d"
    _check_float(input, "input", where)
    if weight.ndim != 4:
        raise ValueError(f"{where}: weight has shape {tuple(weight.shape)}; expected (out_channels, in_channels, kh, kw)")
    if input.dtype != weight.dtype:
        raise ValueError(f"{where}: input dtype {input.dtype} does not match weight dtype {weight.dtype}")
    n_out, n_ch, kh, kw = weight.shape
    if input.ndim not in (3, 4) or input.shape[-3] != n_ch:
        raise ValueError(f"{where}: input has shape {tuple(input.shape)}; expected (N, {n_ch}, H, W) or ({n_ch}, H, W)")
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise ValueError(f"{where}: bias has shape {tuple(bias.shape)}; expected ({n_out},)")
    stride_ = _pair(stride, "stride", where, 1)
    dilation_ = _pair(dilation, "dilation", where, 1)
    w2d = weight.reshape(n_out, n_ch * kh * kw)
    _check_matrix(matrix, w2d, where)
    _check_finite(input, "input", where)

    unbatched = input.ndim == 3
    x = input.unsqueeze(0) if unbatched else input
    if isinstance(padding, str):
        if padding == "valid":
            pad = (0, 0)
        elif padding == "same":
            if stride_ != (1, 1):
                raise ValueError(f"{where}: padding='same' needs stride 1, got stride={stride!r}")
            total = (dilation_[0] * (kh - 1), dilation_[1] * (kw - 1))
            # torch's convention: the extra pixel of an odd total goes to the bottom/right
            x = F.pad(x, (total[1] // 2, total[1] - total[1] // 2, total[0] // 2, total[0] - total[0] // 2))
            pad = (0, 0)
        else:
            raise ValueError(f"{where}: padding = {padding!r} must be 'valid', 'same', an int or a pair of ints")
    else:
        pad = _pair(padding, "padding", where, 0)
    n, _, h, w = x.shape
    h_out = math.floor((h + 2 * pad[0] - dilation_[0] * (kh - 1) - 1) / stride_[0] + 1)
    w_out = math.floor((w + 2 * pad[1] - dilation_[1] * (kw - 1) - 1) / stride_[1] + 1)
    if h_out < 1 or w_out < 1:
        raise ValueError(f"{where}: input of spatial size {(h, w)} is smaller than the kernel {(kh, kw)} (dilated, padded)")
    cols = F.unfold(x, (kh, kw), dilation=dilation_, padding=pad, stride=stride_)  # (N, C kh kw, L)
    x2d = cols.transpose(1, 2).reshape(-1, n_ch * kh * kw)
    if x2d.shape[0] == 0:
        y2d = x2d @ w2d.t()
    else:
        y2d = AnalogMatmul.apply(x2d, w2d, matrix, time_sec, temperature_kelvin)
    y = y2d.reshape(n, h_out * w_out, n_out).transpose(1, 2).reshape(n, n_out, h_out, w_out)
    if bias is not None:
        y = y + bias.reshape(1, n_out, 1, 1)
    return y.squeeze(0) if unbatched else y


def _numpy_dtype(dtype: torch.dtype) -> np.dtype:
    return np.dtype(np.float32) if dtype == torch.float32 else np.dtype(np.float64)
