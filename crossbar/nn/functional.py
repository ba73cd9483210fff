"""Functional core of the torch bridge: linear maps and convolutions computed on a programmed crossbar.

The modules of :mod:`crossbar.nn.layers` are thin wrappers around these functions; they own the chip,
decide when to (re)program it and pass the :class:`~crossbar.chip.ProgrammedMatrix` in. Every function
here takes the programmed matrix explicitly and never programs.

Gradient semantics (straight-through)
-------------------------------------
The forward pass is the chip's output ``y = chip(x) + b`` with every enabled stage (quantization,
noise, drift, ...). The backward pass is that of the *ideal* digital layer with the weights ``W`` the
chip was programmed from: for a linear map ``dL/dx = g W``, ``dL/dW = g^T x``, ``dL/db = sum g`` for an
upstream gradient ``g``; for a convolution the gradients of ``torch.nn.functional.conv2d``. This is a
straight-through estimator: the chip is treated as the identity around the ideal product, so stock
torch optimizers train the digital weights chip-in-the-loop. It is exact (and
``torch.autograd.gradcheck`` passes) when every stage is off and the converters are ideal. Biases are
added digitally after the chip, so their gradient is always exact.

Data movement and its cost
--------------------------
The chip runs in NumPy on the CPU. CPU tensors are shared with NumPy without a copy (a non-contiguous
input is made contiguous once); float32 stays float32 and float64 stays float64, nothing is cast. The
output array of the chip becomes the output tensor without a copy, and the bias is added to it in
place. Inputs are checked for NaN and infinity in NumPy (one pass; ``torch.isfinite(x).all()`` costs
about 20 times more on the CPU). When no gradient is needed (``torch.no_grad``, inference mode or no
input requiring grad) the chip is called directly, without an autograd node.

CUDA tensors are accepted: the input is copied to host memory, the chip runs on the CPU and the output
is copied back, i.e. two synchronous device-host transfers per layer and call, of ``batch x in`` and
``batch x out`` numbers for a linear layer and of the input image and the ``N x out_channels x H_out x
W_out`` output for a convolution (the unfold runs on the host, so the larger unfolded matrix never
crosses the bus). Each transfer synchronizes the stream. The backward pass runs on the device.

Convolutions
------------
A convolution is one MVM of every receptive field of the batch (``N H_out W_out`` vectors of
``C kh kw`` numbers, in the order of ``weight.reshape(out_channels, -1)``, i.e. channel, kernel row,
kernel column, as :func:`torch.nn.functional.unfold`). The unfolded matrix is gathered in NumPy from
a strided window view of the input, in the faster layout for the channel count (:func:`_im2col`); the
chip's output becomes the (N, out_channels, H_out, W_out) tensor in one pass that also adds the bias.
The unfolded matrix is not kept for the backward pass: that is the ideal convolution's, computed from
the input.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from crossbar.chip import ProgrammedMatrix

__all__ = ["AnalogConv2dFunction", "AnalogMatmul", "analog_conv2d", "analog_linear", "conv_weight_matrix"]

_FLOAT_DTYPES = (torch.float32, torch.float64)


def _check_float(t: Tensor, name: str, where: str) -> None:
    if t.dtype not in _FLOAT_DTYPES:
        raise ValueError(f"{where}: {name} has dtype {t.dtype}; the chip runs float32 or float64 tensors")


def _check_same(input: Tensor, weight: Tensor, where: str) -> None:
    if input.dtype != weight.dtype:
        raise ValueError(f"{where}: input dtype {input.dtype} does not match weight dtype {weight.dtype}")
    if input.device != weight.device:
        raise ValueError(f"{where}: input is on {input.device} but the weight on {weight.device}")


def _check_finite(t: Tensor, name: str, where: str) -> None:
    """Raise a ``ValueError`` naming the first non-finite entry of ``t``; checked in NumPy on the CPU."""
    t = t.detach()
    if t.device.type == "cpu":
        a = t.numpy()
        if np.isfinite(a).all():
            return
        idx = tuple(int(i) for i in np.argwhere(~np.isfinite(a))[0])
    else:
        finite = torch.isfinite(t)
        if bool(finite.all()):
            return
        idx = tuple(int(i) for i in torch.nonzero(~finite)[0])
    raise ValueError(f"{where}: {name} contains a non-finite value ({t[idx].item()}) at index {idx}")


def _check_matrix(matrix: Any, out_features: int, in_features: int, where: str, what: str) -> None:
    if not isinstance(matrix, ProgrammedMatrix):
        raise ValueError(f"{where}: matrix must be a crossbar ProgrammedMatrix, got {type(matrix).__name__}")
    if (matrix.out_features, matrix.in_features) != (out_features, in_features):
        raise ValueError(
            f"{where}: the programmed matrix is {matrix.out_features} x {matrix.in_features} but the {what} is "
            f"{out_features} x {in_features}; re-program the chip after changing shapes"
        )


def _check_bias(bias: Tensor | None, n_out: int, dtype: torch.dtype, device: torch.device, where: str) -> None:
    if bias is None:
        return
    if tuple(bias.shape) != (n_out,):
        raise ValueError(f"{where}: bias has shape {tuple(bias.shape)}; expected ({n_out},)")
    if bias.dtype != dtype:
        raise ValueError(f"{where}: bias dtype {bias.dtype} does not match input dtype {dtype}")
    if bias.device != device:
        raise ValueError(f"{where}: bias is on {bias.device} but the input on {device}")


def _needs_grad(*tensors: Tensor | None) -> bool:
    return torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in tensors)


def _host(t: Tensor) -> Tensor:
    """``t`` detached, on the CPU (one device-to-host copy for CUDA tensors)."""
    t = t.detach()
    return t if t.device.type == "cpu" else t.cpu()


def _chip_matvec(
    x2d: Tensor,
    bias: Tensor | None,
    matrix: ProgrammedMatrix,
    time_sec: float | None,
    temperature_kelvin: float | None,
    device: torch.device,
) -> Tensor:
    """``matrix.matvec(x2d) + bias`` for a 2-D host tensor; the result is on ``device`` in ``x2d``'s dtype.

    No copies on the CPU beyond what the chip does: the input is shared with NumPy and the chip's output
    array becomes the output tensor, with the bias added in place.
    """
    a = x2d.numpy() if x2d.is_contiguous() else x2d.contiguous().numpy()
    y = matrix.matvec(a, time_sec=time_sec, temperature_kelvin=temperature_kelvin)
    if y.dtype != a.dtype or not y.flags.writeable or not y.flags.c_contiguous:
        y = np.array(y, dtype=a.dtype, order="C")
    on_cpu = device.type == "cpu"
    if bias is not None and on_cpu:
        np.add(y, bias.detach().numpy(), out=y)
    out = torch.from_numpy(y)
    if on_cpu:
        return out
    out = out.to(device)  # one host-to-device copy
    return out if bias is None else out.add_(bias.detach())


class AnalogMatmul(torch.autograd.Function):
    """``y = chip(x) + b ~ x W^T + b`` for ``x`` of shape (batch, in) on a programmed matrix ``W`` (out, in).

    Forward: :meth:`crossbar.chip.ProgrammedMatrix.matvec` at the given time since programming and
    temperature, with every stage the chip enables, and the bias added digitally. Backward:
    **straight-through** with respect to the digital weights, i.e. the exact gradient of the ideal
    ``x W^T + b``: ``grad_x = g W``, ``grad_W = g^T x`` and ``grad_b = sum_batch g``. Exact when every
    stage is off; otherwise an estimator that ignores quantization, clipping and noise. ``weight`` must
    be the tensor ``matrix`` was programmed from (it only enters the backward pass). ``matrix``, the
    time and the temperature get no gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        matrix: ProgrammedMatrix,
        time_sec: float | None,
        temperature_kelvin: float | None,
    ) -> Tensor:
        return _chip_matvec(_host(x), bias, matrix, time_sec, temperature_kelvin, x.device)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, weight, bias = inputs[0], inputs[1], inputs[2]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        grad_x = grad_y @ weight if ctx.needs_input_grad[0] else None
        grad_w = grad_y.t() @ x if ctx.needs_input_grad[1] else None
        grad_b = grad_y.sum(0) if ctx.has_bias and ctx.needs_input_grad[2] else None
        return grad_x, grad_w, grad_b, None, None, None


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
    _check_same(input, weight, where)
    n_out, n_in = weight.shape
    if input.ndim == 0 or input.shape[-1] != n_in:
        raise ValueError(f"{where}: input has shape {tuple(input.shape)}; expected (*, {n_in})")
    _check_bias(bias, n_out, input.dtype, input.device, where)
    _check_matrix(matrix, n_out, n_in, where, "weight")
    _check_finite(input, "input", where)
    lead = input.shape[:-1]
    x2d = input.reshape(-1, n_in)
    if x2d.shape[0] == 0:
        y = F.linear(x2d, weight, bias)  # empty: nothing reaches the chip
    elif _needs_grad(input, weight, bias):
        y = AnalogMatmul.apply(x2d, weight, bias, matrix, time_sec, temperature_kelvin)
    else:
        y = _chip_matvec(_host(x2d), bias, matrix, time_sec, temperature_kelvin, input.device)
    return y.reshape(*lead, n_out)


def conv_weight_matrix(weight: Tensor) -> Tensor:
    """The (out_channels, C kh kw) matrix a convolution weight (out_channels, C, kh, kw) is programmed as.

    Columns are in the order of the unfolded input: channel, kernel row, kernel column.
    """
    return weight.reshape(weight.shape[0], -1)


def _pair(v: Any, name: str, where: str, low: int) -> tuple[int, int]:
    pair = (v, v) if isinstance(v, int) and not isinstance(v, bool) else tuple(v)
    if len(pair) != 2 or not all(isinstance(p, int) and not isinstance(p, bool) and p >= low for p in pair):
        raise ValueError(f"{where}: {name} = {v!r} must be an int or a pair of ints >= {low}")
    return pair  # type: ignore[return-value]


def _im2col(
    x: Tensor, kernel: tuple[int, int], stride: tuple[int, int], padding: tuple[int, int], dilation: tuple[int, int]
) -> Tensor:
    """Every receptive field of ``x`` (N, C, H, W) as a row: shape (N H_out W_out, C kh kw), C-contiguous.

    The same matrix as ``F.unfold(x, ...).transpose(1, 2).reshape(-1, C kh kw)``, built from a strided
    window view of the (padded) input, in NumPy, instead of unfold's copy plus torch's generic 3-D
    transposing copy (3 to 6 times slower on one CPU thread for 3 to 64 channels). With 8 channels or
    more the windows are gathered from a zero-padded channels-last copy of the input in (kh, kw, C)
    order (contiguous runs of C numbers), then each row's (kh kw, C) block is transposed to (C, kh kw), a
    cache-local copy; with fewer channels the windows are gathered directly in (C, kh, kw) order (runs of
    kw numbers), which is faster there. ``x`` is a CPU tensor without grad.
    """
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel, stride, padding, dilation
    n, c, h, w = x.shape
    hp, wp = h + 2 * ph, w + 2 * pw
    h_out = (hp - dh * (kh - 1) - 1) // sh + 1
    w_out = (wp - dw * (kw - 1) - 1) // sw + 1
    rows, k = n * h_out * w_out, c * kh * kw
    src = x.numpy()
    strided = np.lib.stride_tricks.as_strided
    if c >= 8:
        # channels last and zero-padded in one copy: (N, H + 2 ph, W + 2 pw, C)
        a = np.zeros((n, hp, wp, c), dtype=src.dtype) if ph or pw else np.empty((n, hp, wp, c), dtype=src.dtype)
        a[:, ph : ph + h, pw : pw + w, :] = src.transpose(0, 2, 3, 1)
        s_n, s_h, s_w, s_c = a.strides
        windows = strided(a, (n, h_out, w_out, kh, kw, c), (s_n, s_h * sh, s_w * sw, s_h * dh, s_w * dw, s_c), writeable=False)
        gathered = np.ascontiguousarray(windows).reshape(rows, kh * kw, c)  # contiguous runs of C numbers
        cols = np.ascontiguousarray(gathered.transpose(0, 2, 1))  # (kh kw, C) -> (C, kh kw) per row
    else:
        if ph or pw:
            a = np.zeros((n, c, hp, wp), dtype=src.dtype)
            a[:, :, ph : ph + h, pw : pw + w] = src
        else:
            a = np.ascontiguousarray(src)
        s_n, s_c, s_h, s_w = a.strides
        windows = strided(a, (n, h_out, w_out, c, kh, kw), (s_n, s_h * sh, s_w * sw, s_c, s_h * dh, s_w * dw), writeable=False)
        cols = np.ascontiguousarray(windows)  # runs of kw numbers
    if not cols.flags.writeable:  # the windows were the array itself (1 x 1 kernel, stride 1): a view
        cols = cols.copy()
    return torch.from_numpy(cols.reshape(rows, k))


def _chip_conv2d(
    x: Tensor,
    weight_shape: tuple[int, int, int, int],
    bias: Tensor | None,
    matrix: ProgrammedMatrix,
    stride: tuple[int, int],
    padding: tuple[int, int],
    dilation: tuple[int, int],
    time_sec: float | None,
    temperature_kelvin: float | None,
) -> Tensor:
    """The convolution of ``x`` (N, C, H, W) on the chip; the result is on ``x``'s device and contiguous."""
    n_out, _, kh, kw = weight_shape
    xh = _host(x)
    cols = _im2col(xh, (kh, kw), stride, padding, dilation)
    n = x.shape[0]
    h_out = (x.shape[2] + 2 * padding[0] - dilation[0] * (kh - 1) - 1) // stride[0] + 1
    w_out = (x.shape[3] + 2 * padding[1] - dilation[1] * (kw - 1) - 1) // stride[1] + 1
    y2d = _chip_matvec(cols, None, matrix, time_sec, temperature_kelvin, torch.device("cpu"))  # (N L, out)
    # (N L, out) -> (N, out, H_out, W_out) and the bias, in one pass
    y = torch.empty((n, n_out, h_out, w_out), dtype=y2d.dtype)
    src = y2d.view(n, h_out * w_out, n_out).transpose(1, 2)
    if bias is None:
        y.view(n, n_out, -1).copy_(src)
    else:
        torch.add(src, _host(bias).view(1, n_out, 1), out=y.view(n, n_out, -1))
    return y if x.device.type == "cpu" else y.to(x.device)


class AnalogConv2dFunction(torch.autograd.Function):
    """2-D convolution on the chip (one MVM of the unfolded input) with a straight-through backward.

    Forward: every receptive field of ``x`` (N, C, H, W), zero-padded symmetrically by ``padding``, is
    one input vector of ``matrix`` (programmed from :func:`conv_weight_matrix` of ``weight``); the bias is
    added digitally. Backward: **straight-through** with respect to the digital weights, i.e. the exact
    gradients of ``F.conv2d(x, weight, bias, stride, padding, dilation)`` (via ``torch.nn.grad``),
    computed from the saved input and weight (the unfolded matrix is not kept). Exact when every stage
    is off. ``matrix``, the geometry and the read conditions get no gradient.
    """

    @staticmethod
    def forward(  # type: ignore[override]
        x: Tensor,
        weight: Tensor,
        bias: Tensor | None,
        matrix: ProgrammedMatrix,
        stride: tuple[int, int],
        padding: tuple[int, int],
        dilation: tuple[int, int],
        time_sec: float | None,
        temperature_kelvin: float | None,
    ) -> Tensor:
        return _chip_conv2d(x, tuple(weight.shape), bias, matrix, stride, padding, dilation, time_sec, temperature_kelvin)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        x, weight, bias, _, stride, padding, dilation = inputs[:7]
        ctx.save_for_backward(x, weight)
        ctx.has_bias = bias is not None
        ctx.geometry = (stride, padding, dilation)

    @staticmethod
    def backward(ctx: Any, grad_y: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, weight = ctx.saved_tensors
        stride, padding, dilation = ctx.geometry
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = torch.nn.grad.conv2d_input(x.shape, weight, grad_y, stride, padding, dilation)
        if ctx.needs_input_grad[1]:
            grad_w = torch.nn.grad.conv2d_weight(x, weight.shape, grad_y, stride, padding, dilation)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad_y.sum((0, 2, 3))
        return grad_x, grad_w, grad_b, None, None, None, None, None, None


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
    matrix programmed from :func:`conv_weight_matrix` of ``weight`` (``weight.reshape(out_channels,
    -1)``), so a batch of N images of L output positions is one MVM of N L vectors. Zero padding only;
    other padding modes are applied by the caller (see :class:`~crossbar.nn.AnalogConv2d`). ``groups``
    must be 1.

    Parameters
    ----------
    input : Tensor, shape (N, C, H, W) or (C, H, W)
        float32 or float64; CPU or CUDA (copied to the host and back).
    weight : Tensor, shape (out_channels, C, kh, kw)
        The digital weights ``matrix`` was programmed from (used by the backward pass only).
    bias : Tensor, shape (out_channels,), optional
        Added digitally after the chip.
    stride, padding, dilation
        As for :func:`torch.nn.functional.conv2d`; ``padding`` may be ``"valid"`` or ``"same"``.
    matrix, time_sec, temperature_kelvin
        As for :func:`analog_linear`.

    Returns
    -------
    Tensor, shape (N, out_channels, H_out, W_out) or (out_channels, H_out, W_out), contiguous, same
    dtype and device as ``input``.

    Notes
    -----
    The gradient is straight-through (see :class:`AnalogConv2dFunction`): that of the ideal convolution.
    """
    where = "analog_conv2d"
    _check_float(input, "input", where)
    if weight.ndim != 4:
        raise ValueError(f"{where}: weight has shape {tuple(weight.shape)}; expected (out_channels, in_channels, kh, kw)")
    _check_same(input, weight, where)
    n_out, n_ch, kh, kw = weight.shape
    if input.ndim not in (3, 4) or input.shape[-3] != n_ch:
        raise ValueError(f"{where}: input has shape {tuple(input.shape)}; expected (N, {n_ch}, H, W) or ({n_ch}, H, W)")
    _check_bias(bias, n_out, input.dtype, input.device, where)
    stride_ = _pair(stride, "stride", where, 1)
    dilation_ = _pair(dilation, "dilation", where, 1)
    _check_matrix(matrix, n_out, n_ch * kh * kw, where, "unfolded weight")
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
            pad = (total[0] // 2, total[1] // 2)
            if total[0] % 2 or total[1] % 2:
                # torch's convention: the extra pixel of an odd total goes to the bottom/right
                x = F.pad(x, (0, total[1] % 2, 0, total[0] % 2))
        else:
            raise ValueError(f"{where}: padding = {padding!r} must be 'valid', 'same', an int or a pair of ints")
    else:
        pad = _pair(padding, "padding", where, 0)
    h, w = x.shape[2], x.shape[3]
    h_out = math.floor((h + 2 * pad[0] - dilation_[0] * (kh - 1) - 1) / stride_[0] + 1)
    w_out = math.floor((w + 2 * pad[1] - dilation_[1] * (kw - 1) - 1) / stride_[1] + 1)
    if h_out < 1 or w_out < 1:
        raise ValueError(f"{where}: input of spatial size {(h, w)} is smaller than the kernel {(kh, kw)} (dilated, padded)")
    if x.shape[0] == 0:
        y = F.conv2d(x, weight, bias, stride_, pad, dilation_)  # empty: nothing reaches the chip
    elif _needs_grad(x, weight, bias):
        y = AnalogConv2dFunction.apply(x, weight, bias, matrix, stride_, pad, dilation_, time_sec, temperature_kelvin)
    else:
        y = _chip_conv2d(x, tuple(weight.shape), bias, matrix, stride_, pad, dilation_, time_sec, temperature_kelvin)
    return y.squeeze(0) if unbatched else y
