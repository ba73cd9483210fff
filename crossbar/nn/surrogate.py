"""The differentiable surrogate of the chip: a pure-torch model of its noise, quantization and clipping.

Training backpropagates through this model instead of the chip. Its parameters are a
:class:`~crossbar.fitting.SurrogateParams` fitted by :func:`crossbar.characterization.characterize`
(``read_characterization(path).surrogate_params``) or built directly; the model, stage by stage, with
the normalized units of :mod:`crossbar.fitting`:

1. DAC: ``x~ = Q_dac(x / s_x)``, ``s_x = max_j |x_j|`` per vector (or the fixed range, clipped).
2. Mapping: ``w~ = w / s_w``, ``s_w`` the largest |w| of the tile column (or tile); one tile row per
   ``tile_rows`` inputs.
3. Static error, per device: ``w~_eff = g w~ + sqrt(c0 + c1 |w~| + c2 w~^2) z_s``.
4. Per-read noise: per device ``sqrt(alpha |w~| + alpha0) z_r`` on the weight, and per tile partial
   ``sqrt(sigma_out^2 + beta |I~|) xi`` on the current ``I~ = x~ w~_eff^T``.
5. ADC per tile partial: clip to +-fs, round to 2^b - 1 levels; digital: ``y = s_x sum_k s_w,k I~_k + b``.
6. Activation noise after the digital stage: ``y + s_c n_b + s_u n_bi`` (correlated, uncorrelated).

Read-noise sampling (:class:`crossbar.ReadNoiseSampling`): ``PER_BATCH`` (default) draws one weight-noise
matrix per forward, shared by the vectors of the batch; every output then has exactly the chip's
per-read variance ``sum_j (alpha |w~_ij| + alpha0) x~_bj^2`` and the cost is one GEMM. ``PER_SAMPLE``
gives every vector its own draw, exactly as the chip, with one more GEMM for the variance.

Gradient semantics
------------------
Reparameterized: the noise is ``std(w, x) * z`` with ``z`` drawn independently of the parameters, so
the gradient of one forward is the exact gradient of the surrogate for the drawn ``z`` (including the
dependence of the noise std on the weights and inputs, unless ``noise_std_gradient=False``, which holds
the std constant in the backward pass), except for the two quantizers: rounding is **straight-through**
(gradient 1 inside the range); clipping is exact (gradient 0 beyond the range). With ideal converters,
the function is smooth almost everywhere and ``torch.autograd.gradcheck`` passes in float64 with the
noise frozen (:class:`SurrogateNoise`). The scales s_x and s_w are differentiated too (the gradient of
a max goes to its arg-max, shared equally by ties as ``torch.amax``).

Everything runs on the device and dtype of the input (CPU or CUDA; float32 or float64).

Cost
----
One GEMM per forward (two with ``PER_SAMPLE``): the tile rows are one batched product of (K, B, R)
input codes and (K, n_out, R) weight blocks, the inputs zero-padded to whole tile rows. Normals:
``n_out n_in`` for the weights (the static error drawn afresh and the per-batch read noise are
independent Gaussians whose variances add, so one draw with the summed variance, the same
distribution, replaces two; not where the static polynomial is negative on [0, 1], whose clamp at 0
does not commute with the sum) and ``K B n_out`` for the outputs. On the CPU the normals come from the
counter-based streams of :mod:`crossbar._rng` seeded from the torch generator (five times faster than
torch's), and every element-wise stage is one serial numba pass (:mod:`crossbar._surrogate_kernels`:
scales and DAC codes, the noisy weight, the read-out, ADC and digital stage); other devices run the
same stages as torch ops, which the tests compare with the kernels on the CPU. Without gradients the
stages work in place and the scratch buffers come from one allocation. With gradients the forward pass
keeps what the backward pass needs as ready factors (``d w_eff / d w~`` and the ADC's clip gate), so
the backward pass is a few element-wise products besides the GEMMs.

Measured on one thread of the 2-core development machine (CPU time, PCM design values, 8-bit
converters, float32, batch 1024; ``benchmarks/bench_characterization.py``): forward 1.3x a plain
``nn.Linear`` at 512 x 512 and 1.2x at 1024 x 1024 (before: 2.0x and 1.65x), forward + backward 1.3x
(1.7x), ``PER_SAMPLE`` 2.4x (3.2x); a 784-64-10 MLP training step at batch 128 3.1x (5.6x).
"""

from __future__ import annotations

import copy
import enum
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from crossbar import _surrogate_kernels as _kernels
from crossbar._checks import check_positive_ints
from crossbar.config import InputRange, ReadNoiseSampling, ScaleMode
from crossbar.fitting import SurrogateParams

__all__ = [
    "StaticNoise",
    "SurrogateLinear",
    "SurrogateNoise",
    "convert_to_surrogate",
    "strip_surrogate",
    "surrogate_activation_noise",
    "surrogate_layers",
    "surrogate_linear",
    "surrogate_outputs",
    "update_surrogate_params",
]


class StaticNoise(enum.Enum):
    """When the static (programming-time) weight error of a :class:`SurrogateLinear` is drawn."""

    PER_FORWARD = "per_forward"
    """A fresh draw at every forward: training sees a new programming each step (noise injection)."""
    FROZEN = "frozen"
    """One draw of standard normals held until :meth:`SurrogateLinear.resample_static` (one programmed
    chip); its std still follows the current weights."""


@dataclass(frozen=True, kw_only=True, eq=False)
class SurrogateNoise:
    """Standard-normal draws to use instead of the generator (any field ``None`` is drawn).

    Shapes for an input of B vectors, ``n_out`` outputs, ``n_in`` inputs and K tile rows.
    """

    static: Tensor | None = None
    """(n_out, n_in): the static weight error's z_s."""
    read_weight: Tensor | None = None
    """(n_out, n_in): the per-read weight noise z_r (``PER_BATCH`` sampling)."""
    read_output: Tensor | None = None
    """(K, B, n_out): per tile partial, xi of the output noise (and the per-read noise with ``PER_SAMPLE``)."""
    correlated: Tensor | None = None
    """(B,): n_b of the correlated activation noise."""
    uncorrelated: Tensor | None = None
    """(B, n_out): n_bi of the uncorrelated activation noise."""

    @classmethod
    def draw(cls, batch: int, n_out: int, n_in: int, params: SurrogateParams, *, generator: torch.Generator | None = None,
             dtype: torch.dtype = torch.float64, device: Any = None) -> SurrogateNoise:
        """Every draw of one forward, explicitly (e.g. to freeze the noise for ``gradcheck``)."""
        k = -(-n_in // params.tile_rows)

        def z(*shape: int) -> Tensor:
            return torch.randn(shape, generator=generator, dtype=dtype, device=device)

        return cls(static=z(n_out, n_in), read_weight=z(n_out, n_in), read_output=z(k, batch, n_out),
                   correlated=z(batch), uncorrelated=z(batch, n_out))


# --------------------------------------------------------------------------------------------------
# Random numbers and the CPU kernels
# --------------------------------------------------------------------------------------------------

_CPU_KERNELS = True
"""Run the element-wise stages of CPU tensors in the numba kernels of :mod:`crossbar._surrogate_kernels`
(``False``: in torch ops, as on other devices; the tests run both and compare them)."""


def _cpu_kernels(t: Tensor) -> bool:
    return _CPU_KERNELS and t.device.type == "cpu"


def _np(t: Tensor) -> np.ndarray:
    """A writable NumPy view of a contiguous CPU tensor (no copy)."""
    return t.detach().numpy() if t.requires_grad else t.numpy()


def _randn(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None, out: Tensor | None = None) -> Tensor:
    """Standard normals of ``shape`` on the device and in the dtype of ``like``, from ``generator``.

    CPU: one 63-bit seed from ``generator`` (torch's global CPU generator if ``None``) and the draw of
    that seed by the counter-based xoshiro256++ / Box-Muller streams of :mod:`crossbar._rng` (about
    1 ns per normal, five times faster than torch's mt19937 normals, which were the surrogate's largest
    cost after its GEMM; :func:`crossbar._surrogate_kernels.fill_standard_normal`). They are standard
    normal to float32 precision in either dtype (radius truncated at 6.66, probability 2^-32;
    ``tests/crossbar/test_rng.py``). Other devices: ``torch.randn``. Either way the same generator
    state gives the same numbers. ``out``: a contiguous CPU buffer of ``shape`` to fill instead.
    """
    if like.device.type != "cpu":
        return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)
    seed = int(torch.randint(0, 2**63 - 1, (), generator=generator))
    out = torch.empty(shape, dtype=like.dtype) if out is None else out
    if out.numel():
        _kernels.fill_standard_normal(_np(out).reshape(-1), np.uint64(seed))
    return out


# --------------------------------------------------------------------------------------------------
# Fused stages (autograd Functions)
# --------------------------------------------------------------------------------------------------
#
# Old-style Functions (``forward(ctx, ...)``): with a separate ``setup_context`` torch binds the
# arguments through ``inspect.signature`` at every call (measured: 36 us per call against 6 us), which
# at training shapes (a 784 x 64 layer, batch 128) cost more than the layer's arithmetic. Tensors the
# backward pass needs are saved with ``save_for_backward``, intermediates included (no double backward).


class _RoundSTE(torch.autograd.Function):
    """``round(x)`` with a straight-through gradient (the identity)."""

    @staticmethod
    def forward(ctx: Any, x: Tensor) -> Tensor:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


def _round_ste(x: Tensor) -> Tensor:
    return _RoundSTE.apply(x)


def _row_scales(t: Tensor) -> tuple[Tensor, Tensor]:
    """``(peak, s)`` per row of ``t`` (n, m): ``peak = max_j |t_j|``, ``s = peak`` or 1 for a row of zeros."""
    if _cpu_kernels(t):
        t = t.contiguous()
        peak = t.new_empty(t.shape[0])
        s = t.new_empty(t.shape[0])
        _kernels.row_scales(_np(t), _np(peak), _np(s))
        return peak, s
    peak = torch.maximum(t.amax(dim=1), t.amin(dim=1).neg_())  # max |t| without an |t| buffer
    return peak, torch.where(peak > 0, peak, 1.0)


def _add_row_scale_grad(t: Tensor, peak: Tensor, grad: Tensor, out: Tensor) -> Tensor:
    """``out`` plus the gradient of the row scales through ``max_j |t_j|``: ``grad`` shared equally by the
    ties of the maximum, times their sign (as ``torch.amax``); none for rows of zeros (constant scale 1)."""
    if _cpu_kernels(t):
        _kernels.abs_max_backward(_np(t.contiguous()), _np(peak), _np(grad.contiguous()), _np(out))
        return out
    ties = t.abs() == peak.unsqueeze(1)
    share = torch.where(peak > 0, grad, 0.0) / ties.sum(dim=1)
    return out.addcmul_(torch.sign(t) * ties, share.unsqueeze(1))


class _RowScale(torch.autograd.Function):
    """The scale of every row of ``t`` (n, m): ``s = max_j |t_j|``, 1 for a row of zeros (as the chip's mapping).

    Gradient as ``torch.amax``'s: shared equally by the ties of the maximum, times their sign; none for
    a row of zeros (its scale is the constant 1). Hand-written: through autograd the abs, amax and
    where nodes cost ten times the forward pass (measured: 220 us against 20 us for a 256 x 256 weight).
    """

    @staticmethod
    def forward(ctx: Any, t: Tensor) -> Tensor:  # type: ignore[override]
        peak, s = _row_scales(t)
        ctx.save_for_backward(t, peak)
        return s

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        t, peak = ctx.saved_tensors
        return _add_row_scale_grad(t, peak, grad, torch.zeros_like(t))


class _Dac(torch.autograd.Function):
    """The DAC with per-vector scaling: ``s = max_j |x_j|`` per vector (1 for a vector of zeros) and the input
    codes per tile row, (K, B, R): ``u = Q(x c)``, ``c = inv_unit / s``, zero-padded. Returns ``(u, s)``, s (B, 1).

    ``Q`` is rounding (``quantize``) or the identity; tile row k holds inputs ``k R ... (k + 1) R - 1``.
    Gradients, rounding straight-through: ``du/dx = c`` and ``du/ds = -x c / s``; the padding gets none;
    the gradient of s (from the codes and from its use downstream) goes to the arg-max of ``|x|``
    (:class:`_RowScale`). ``out``: a (K, B, R) buffer for the codes (no gradient wanted).
    """

    @staticmethod
    def forward(ctx: Any, x: Tensor, inv_unit: float, quantize: bool, k_tiles: int, rows: int,  # type: ignore[override]
                out: Tensor | None) -> tuple[Tensor, Tensor]:
        n_b, n_in = x.shape
        if _cpu_kernels(x):
            x = x.contiguous()
            u = x.new_empty((k_tiles, n_b, rows)) if out is None else out
            peak, s = x.new_empty(n_b), x.new_empty(n_b)
            _kernels.dac_codes(_np(x), _np(peak), _np(s), _np(x).dtype.type(inv_unit), quantize, _np(u))
            s = s.unsqueeze(1)
        else:
            peak, s = _row_scales(x)
            s = s.unsqueeze(1)
            c = s.reciprocal().mul_(inv_unit)
            if k_tiles == 1:
                u = torch.mul(x, c).unsqueeze(0)
            else:
                u = x.new_empty((k_tiles, n_b, rows))
                full = n_in // rows
                if full:
                    torch.mul(x[:, : full * rows].view(n_b, full, rows).transpose(0, 1), c, out=u[:full])
                if full < k_tiles:
                    last = n_in - full * rows
                    torch.mul(x[:, full * rows :], c, out=u[full, :, :last])
                    u[full, :, last:].zero_()
            if quantize:
                u.round_()
        ctx.save_for_backward(x, s, peak)
        ctx.inv_unit = inv_unit
        return u, s

    @staticmethod
    def backward(ctx: Any, grad_u: Tensor | None, grad_s: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        x, s, peak = ctx.saved_tensors
        n_b, n_in = x.shape
        c = ctx.inv_unit / s
        if grad_u is None:
            grad_x, g_s = torch.zeros_like(x), torch.zeros_like(peak)
        else:
            g = grad_u[0] if grad_u.shape[0] == 1 else grad_u.transpose(0, 1).reshape(n_b, -1)[:, :n_in]
            grad_x = (g * c).contiguous()
            g_s = (g * x).sum(dim=1).mul_((-c / s).view(n_b))  # through du/ds
        if grad_s is not None:
            g_s = g_s + grad_s.view(n_b)
        return _add_row_scale_grad(x, peak, g_s, grad_x), None, None, None, None, None


_Coefficients = tuple[float, float, float]


def _static_std(w_rel: Tensor, q: _Coefficients) -> Tensor:
    """``sqrt(max(q0 + q1 |w_rel| + q2 w_rel^2, tiny))`` in one new buffer."""
    q0, q1, q2 = q
    std = w_rel.abs().mul_(q1).add_(q0)
    if q2 != 0:
        std.addcmul_(w_rel, w_rel, value=q2)
    return std.clamp_min_(torch.finfo(std.dtype).tiny).sqrt_()


def _surely_positive(q: _Coefficients) -> bool:
    """Whether ``q0 + q1 a + q2 a^2`` is clearly positive for every a in [0, 1] (|w~| <= 1 by the mapping),
    so that no variance is clamped, also after rounding."""
    q0, q1, q2 = q
    low = min(q0, q0 + q1 + q2)
    if q2 > 0 and 0 < -q1 / (2 * q2) < 1:
        low = min(low, q0 - q1 * q1 / (4 * q2))
    return low > 1e-6 * (abs(q0) + abs(q1) + abs(q2))


def _std_slope(w_rel: Tensor, std: Tensor, q: _Coefficients) -> Tensor:
    """``d std / d w_rel = (q1 sign(w_rel) + 2 q2 w_rel) / (2 std)``, 0 where the variance was clamped."""
    _, q1, q2 = q
    slope = torch.sign(w_rel).mul_(0.5 * q1)
    if q2 != 0:
        slope.add_(w_rel, alpha=q2)
    slope.div_(std)
    if not _surely_positive(q):
        slope.masked_fill_(std <= math.sqrt(torch.finfo(std.dtype).tiny), 0.0)
    return slope


class _NoisyWeight(torch.autograd.Function):
    """``w_eff = m w / s + sum_t sqrt(max(q0_t + q1_t a + q2_t a^2, 0)) z_t``, ``a = |w| / s``, one or two terms.

    ``w`` (K, n_out, R) tile-row blocks. ``s`` (K, n_out, 1), the weight scale per tile row and output,
    or ``None``: then ``s`` is each block row's max |w| (1 for zeros), formed here in the same pass, and
    returned: the result is ``(w_eff, s)`` (``s`` (K, n_out)), else ``(w_eff, None)``. Exact gradients
    with respect to ``w`` and ``s`` for the given ``z_t`` (with ``std_gradient=False`` the std is held
    constant; a formed ``s`` passes its gradient to the arg-max as :class:`_RowScale`); the ``z_t`` get
    none. ``overwrite[t]`` (no gradient wanted, draw t owned by the caller): the torch ops may reuse draw
    t's buffer; ``out``: the result's buffer (CPU, no gradient wanted). With ``need_grad`` the forward
    pass also forms ``d w_eff / d(w / s)`` (one buffer of the weight's size), so the backward pass is a
    few element-wise products and a sum.
    """

    @staticmethod
    def forward(ctx: Any, w: Tensor, s: Tensor | None, m: float, z1: Tensor, q1: _Coefficients, z2: Tensor | None,  # type: ignore[override]
                q2: _Coefficients, std_gradient: bool, overwrite: tuple[bool, bool], need_grad: bool,
                out: Tensor | None) -> tuple[Tensor, Tensor | None]:
        want_slope = need_grad and std_gradient
        given = s is not None
        if _cpu_kernels(w):
            out, slope, s, peak = _NoisyWeight._cpu(w, s, m, z1, q1, z2, q2, out, want_slope)
        else:
            peak = None
            if s is None:
                k, n_out, rows = w.shape
                peak, s_flat = _row_scales(w.reshape(k * n_out, rows))
                s = s_flat.view(k, n_out, 1)
            out, slope = _NoisyWeight._torch(w, s, m, z1, q1, z2, q2, overwrite, want_slope)
        if need_grad:
            ctx.save_for_backward(w, s, slope, peak)
            ctx.m = m
            ctx.given = given
        return out, None if given else s.view(s.shape[0], s.shape[1])

    @staticmethod
    def _cpu(w: Tensor, s: Tensor | None, m: float, z1: Tensor, q1: _Coefficients, z2: Tensor | None, q2: _Coefficients,
             out: Tensor | None, want_slope: bool) -> tuple[Tensor, Tensor | None, Tensor, Tensor | None]:
        k, n_out, rows = w.shape
        w = w.contiguous()
        z1 = z1.contiguous()
        out = torch.empty_like(w) if out is None else out
        slope = torch.empty_like(w) if want_slope else None
        peak = None
        if s is None:
            s, peak = w.new_empty((k, n_out, 1)), w.new_empty(k * n_out)

        def arr(t: Tensor) -> np.ndarray:
            return _np(t).reshape(k * n_out, rows)

        w2, out2 = arr(w), arr(out)
        dt = w2.dtype.type
        s_flat = _np(s.contiguous()).reshape(k * n_out)
        _kernels.noisy_weight(
            w2, s_flat, s_flat if peak is None else _np(peak), peak is not None, dt(m), arr(z1), dt(q1[0]), dt(q1[1]),
            dt(q1[2]), arr(z1) if z2 is None else arr(z2.contiguous()), dt(q2[0]), dt(q2[1]), dt(q2[2]), z2 is not None,
            dt(torch.finfo(w.dtype).tiny), out2, out2 if slope is None else arr(slope), want_slope,
        )
        return out, slope, s, peak

    @staticmethod
    def _torch(w: Tensor, s: Tensor, m: float, z1: Tensor, q1: _Coefficients, z2: Tensor | None, q2: _Coefficients,
               overwrite: tuple[bool, bool], want_slope: bool) -> tuple[Tensor, Tensor | None]:
        w_rel = w / s
        out = slope = None
        for z, q, mine in ((z1, q1, overwrite[0]), (z2, q2, overwrite[1])):
            if z is None:
                continue
            if q[1] == 0 and q[2] == 0:
                sd = math.sqrt(max(q[0], torch.finfo(w.dtype).tiny))
                term = z.mul_(sd) if mine else z * sd
            else:
                std = _static_std(w_rel, q)
                if want_slope:
                    d = _std_slope(w_rel, std, q).mul_(z)
                    slope = d if slope is None else slope.add_(d)
                term = z.mul_(std) if mine else std.mul_(z)
            out = term if out is None else out.add_(term)
        assert out is not None
        return out.add_(w_rel, alpha=m), None if slope is None else slope.add_(m)

    @staticmethod
    def backward(ctx: Any, grad: Tensor, grad_s_out: Tensor | None) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        w, s, slope, peak = ctx.saved_tensors
        g_rel = grad * ctx.m if slope is None else grad * slope  # d w_eff / d w_rel = m + sum_t z_t std_t'
        grad_w = g_rel / s
        # d w_rel / d s = -w_rel / s: the minus and 1/s after the sum over the block row
        grad_s = g_rel.mul_(w).div_(s).sum(dim=2, keepdim=True).div_(s).neg_()
        if ctx.given:
            return grad_w, grad_s, None, None, None, None, None, None, None, None, None
        k, n_out, rows = w.shape
        g_s = grad_s.view(k * n_out) if grad_s_out is None else grad_s.view(k * n_out) + grad_s_out.reshape(k * n_out)
        grad_w = _add_row_scale_grad(w.reshape(k * n_out, rows), peak, g_s, grad_w.contiguous().view(k * n_out, rows))
        return grad_w.view(k, n_out, rows), None, None, None, None, None, None, None, None, None, None


class _ReadOut(torch.autograd.Function):
    """Every tile partial read out: ``out = scale Q(clip(P + std z, -L, L))``, in one buffer.

    Shapes (K, B, n_out), ``scale`` (K, 1, n_out); ``std`` is a tensor (data-dependent noise) or
    ``None`` for the constant ``sigma``; ``z`` ``None``: no noise. Gradients: with respect to P and std,
    ``scale 1{|P + std z| <= L}`` (times z for std), rounding straight-through, clipping exact; with
    respect to the scale, ``sum_b Q(...)``; ``z`` gets none (noise). ``overwrite``: build the result in
    P's buffer (no gradient wanted); ``z_owned``: in z's buffer when ``std`` is ``None`` (z is then not
    needed for the gradient). ``need_grad``: keep ``scale 1{...}`` for the backward pass.
    """

    @staticmethod
    def forward(ctx: Any, partial: Tensor, std: Tensor | None, z: Tensor | None, sigma: float, limit: float,  # type: ignore[override]
                quantize: bool, scale: Tensor, overwrite: bool, z_owned: bool, need_grad: bool) -> Tensor:
        if _cpu_kernels(partial):
            out, gate = _ReadOut._cpu(partial, std, z, sigma, limit, quantize, scale, overwrite, need_grad)
        else:
            out, gate = _ReadOut._torch(partial, std, z, sigma, limit, quantize, scale, overwrite, z_owned, need_grad)
        if need_grad:
            ctx.save_for_backward(gate, out, z if std is not None else None, scale)
        return out

    @staticmethod
    def _cpu(partial: Tensor, std: Tensor | None, z: Tensor | None, sigma: float, limit: float, quantize: bool,
             scale: Tensor, overwrite: bool, need_grad: bool) -> tuple[Tensor, Tensor]:
        p = partial.contiguous()
        out = p if overwrite else torch.empty_like(p)
        gate = torch.empty_like(p) if need_grad else out
        pa = _np(p)
        dt = pa.dtype.type
        _kernels.read_out(
            pa, pa if z is None else _np(z.contiguous()), pa if std is None else _np(std.contiguous()), std is not None,
            dt(sigma), z is not None, dt(limit), quantize, _np(scale.contiguous()).reshape(p.shape[0], p.shape[2]), dt(0),
            _np(out), _np(gate), need_grad,
        )
        return out, gate

    @staticmethod
    def _torch(partial: Tensor, std: Tensor | None, z: Tensor | None, sigma: float, limit: float, quantize: bool,
               scale: Tensor, overwrite: bool, z_owned: bool, need_grad: bool) -> tuple[Tensor, Tensor]:
        if z is None:
            out = partial if overwrite else partial.clone()
        elif std is not None:
            out = partial.addcmul_(std, z) if overwrite else torch.addcmul(partial, std, z)
        elif overwrite:
            out = partial.add_(z, alpha=sigma)
        elif z_owned:
            out = z.mul_(sigma).add_(partial)
        else:
            out = torch.add(partial, z, alpha=sigma)
        gate = scale
        if math.isfinite(limit):
            if need_grad:
                gate = out.abs().le_(limit).mul_(scale)  # d out / d P: scale inside the range, 0 beyond
            out.clamp_(-limit, limit)
        if quantize:
            out.round_()
        return out.mul_(scale), gate

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        gate, out, z, scale = ctx.saved_tensors
        g = grad * gate
        grad_std = g * z if ctx.needs_input_grad[1] else None
        grad_scale = (grad * out).sum(dim=1, keepdim=True).div_(scale) if ctx.needs_input_grad[6] else None
        return g, grad_std, None, None, None, None, grad_scale, None, None, None


# --------------------------------------------------------------------------------------------------
# The functional surrogate
# --------------------------------------------------------------------------------------------------


def _check_params(params: Any, where: str) -> SurrogateParams:
    if not isinstance(params, SurrogateParams):
        raise ValueError(f"{where}: params must be a crossbar SurrogateParams, got {type(params).__name__}")
    return params


def _weight_scales(blocks: Tensor, params: SurrogateParams) -> Tensor:
    """s_w per (tile row, output), shape (K, n_out), of the weight as (K, n_out, tile_rows) blocks (zero-padded);
    a block of zeros gets 1 (as the chip's mapping)."""
    k, n_out, rows = blocks.shape
    if params.scale_mode is ScaleMode.PER_COLUMN:
        return _RowScale.apply(blocks.reshape(k * n_out, rows)).view(k, n_out)
    peak = blocks.abs().amax(dim=2)
    if params.scale_mode is ScaleMode.PER_TILE:
        cols = params.tile_cols
        c = -(-n_out // cols)
        pad = c * cols - n_out
        p = torch.nn.functional.pad(peak, (0, pad)) if pad else peak
        peak = p.reshape(k, c, cols).amax(dim=2, keepdim=True).expand(k, c, cols).reshape(k, c * cols)[:, :n_out]
    return torch.where(peak > 0, peak, 1.0)


def _std(var: Tensor, keep_gradient: bool, *, positive: bool = False) -> Tensor:
    """sqrt(var); a variance not positive by construction is clamped at the smallest normal number first."""
    std = torch.sqrt(var if positive else var.clamp_min(torch.finfo(var.dtype).tiny))
    return std if keep_gradient else std.detach()


def _checked_noise(t: Tensor | None, shape: tuple[int, ...], like: Tensor, name: str) -> Tensor | None:
    if t is None:
        return None
    if tuple(t.shape) != shape:
        raise ValueError(f"surrogate_linear: noise.{name} has shape {tuple(t.shape)}, expected {shape}")
    return t.detach().to(dtype=like.dtype, device=like.device)  # noise gets no gradient


def _nonnegative_on_unit_interval(q0: float, q1: float, q2: float) -> bool:
    """Whether ``q0 + q1 a + q2 a^2 >= 0`` for every a in [0, 1] (|w~| <= 1 by the mapping)."""
    values = [q0, q0 + q1 + q2]
    if q2 > 0 and 0 < -q1 / (2 * q2) < 1:
        values.append(q0 - q1 * q1 / (4 * q2))
    return min(values) >= 0


def _blocks(t: Tensor, k_tiles: int, rows: int) -> Tensor:
    """A (n, n_in) tensor as (K, n, rows) tile-row blocks, zero-padded (a copy when K > 1)."""
    if k_tiles == 1:
        return t.unsqueeze(0)
    n_out, n_in = t.shape
    pad = k_tiles * rows - n_in
    return (torch.nn.functional.pad(t, (0, pad)) if pad else t).view(n_out, k_tiles, rows).transpose(0, 1).contiguous()


def _tile_product(u: Tensor, w: Tensor, out: Tensor | None = None) -> Tensor:
    """Every tile row's partial product, (K, B, n_out), of inputs (K, B, R) and weights (K, n_out, R)
    (into ``out`` when given: no gradient wanted)."""
    if out is not None:
        if w.shape[0] == 1:
            torch.mm(u[0], w[0].t(), out=out[0])
        else:
            torch.bmm(u, w.transpose(1, 2), out=out)
        return out
    if w.shape[0] == 1:
        return torch.mm(u[0], w[0].t()).unsqueeze(0)
    return torch.bmm(u, w.transpose(1, 2))


class _Scratch:
    """The scratch buffers of one forward without gradients on the CPU, carved from one allocation.

    Separate buffers (7 MB for a 512 x 512 layer at batch 1024) freed at the end of every call made
    glibc return the top of its heap to the system and fault the pages in again at the next call
    (measured: 750-1500 page faults and up to 2.5 ms per forward on the development machine); one
    allocation of their total size raises glibc's mmap and trim thresholds to it, after which the
    memory is reused.
    """

    def __init__(self, shapes: list[tuple[int, ...]], like: Tensor) -> None:
        self._buf = torch.empty(sum(math.prod(shape) for shape in shapes), dtype=like.dtype)
        self._at = 0

    def take(self, shape: tuple[int, ...]) -> Tensor:
        n = math.prod(shape)
        view = self._buf[self._at : self._at + n].view(shape)
        self._at += n
        return view


def _read_out_sum(partial: Tensor, var: Tensor | None, beta: float, z: Tensor | None, sigma: float, limit: float,
                  quantize: bool, scale: Tensor, s_x: Tensor | float, bias: Tensor | None) -> Tensor:
    """``s_x sum_k scale_k Q(clip(P_k + std_k z_k)) + bias``, ``std = sqrt(var + beta |P| + sigma^2)``, without
    gradients on the CPU (one kernel pass)."""
    k, n_b, n_out = partial.shape
    partial = partial.contiguous()
    p = _np(partial)
    dt = p.dtype.type
    y = torch.empty((n_b, n_out), dtype=partial.dtype)
    sx = s_x.reshape(n_b) if isinstance(s_x, Tensor) else torch.full((n_b,), s_x, dtype=partial.dtype)
    _kernels.read_out_sum(
        p, p if z is None else _np(z.contiguous()), p if var is None else _np(var.contiguous()), var is not None, dt(beta),
        dt(sigma), z is not None, dt(torch.finfo(partial.dtype).tiny), dt(limit), quantize,
        _np(scale.contiguous()).reshape(k, n_out), _np(sx.contiguous()), _np(sx) if bias is None else _np(bias.contiguous()),
        bias is not None, dt(0), _np(y),
    )
    return y


def _add_activation_noise(y: Tensor, params: SurrogateParams, generator: torch.Generator | None,
                          correlated: Tensor | None, uncorrelated: Tensor | None, inplace: bool) -> Tensor:
    s_c, s_u = params.activation_correlated_std_rel, params.activation_uncorrelated_std_rel
    if s_c > 0:
        n_b = correlated if correlated is not None else _randn((y.shape[0],), y, generator)
        n_b = n_b.reshape((-1,) + (1,) * (y.ndim - 1))
        y = y.add_(n_b, alpha=s_c) if inplace else torch.add(y, n_b, alpha=s_c)
    if s_u > 0:
        n_bi = uncorrelated if uncorrelated is not None else _randn(tuple(y.shape), y, generator)
        y = y.add_(n_bi, alpha=s_u) if inplace else torch.add(y, n_bi, alpha=s_u)
    return y


def surrogate_activation_noise(
    y: Tensor,
    params: SurrogateParams,
    *,
    generator: torch.Generator | None = None,
    correlated: Tensor | None = None,
    uncorrelated: Tensor | None = None,
) -> Tensor:
    """``y + s_c n_b + s_u n_bi``: the chip's additive activation noise (first dimension = vectors).

    ``correlated`` (shape (B,)) and ``uncorrelated`` (shape of ``y``) replace the draws when given.
    """
    return _add_activation_noise(y, params, generator, correlated, uncorrelated, inplace=False)


def surrogate_linear(
    input: Tensor,
    weight: Tensor,
    bias: Tensor | None = None,
    *,
    params: SurrogateParams,
    generator: torch.Generator | None = None,
    noise: SurrogateNoise | None = None,
    read_noise_sampling: ReadNoiseSampling = ReadNoiseSampling.PER_BATCH,
    noise_std_gradient: bool = True,
    activation_noise: bool = True,
) -> Tensor:
    """``y = surrogate(x W^T) + b``: the differentiable model of the chip's linear map (module docstring).

    Parameters
    ----------
    input : Tensor, shape (*, in_features)
        float32 or float64, any device.
    weight : Tensor, shape (out_features, in_features)
    bias : Tensor, shape (out_features,), optional
        Added digitally (exact).
    params : SurrogateParams
        The noise model, converters and tiling.
    generator : torch.Generator, optional
        Source of the noise (on the input's device); default: torch's global generator.
    noise : SurrogateNoise, optional
        Explicit draws; fields left ``None`` are drawn from ``generator``.
    read_noise_sampling : ReadNoiseSampling
        ``PER_BATCH`` (one weight-noise draw per call, one GEMM) or ``PER_SAMPLE`` (exact, one more GEMM).
    noise_std_gradient : bool
        Differentiate the noise std with respect to weights and inputs (exact reparameterized gradient);
        ``False`` holds it constant in the backward pass.
    activation_noise : bool
        Add the activation noise of ``params`` at the output.

    Returns
    -------
    Tensor, shape (*, out_features), dtype and device of ``input``.

    Notes
    -----
    Cost (module docstring, "Cost"): one GEMM (two with ``PER_SAMPLE``), ``n_out n_in`` weight-noise
    normals (one draw for the static error drawn afresh and the per-batch read noise, whose variances
    add) and ``K B n_out`` output-noise normals; without gradients the element-wise stages work in
    place. The same generator state gives the same result.
    """
    where = "surrogate_linear"
    params = _check_params(params, where)
    if input.dtype not in (torch.float32, torch.float64):
        raise ValueError(f"{where}: input has dtype {input.dtype}; expected float32 or float64")
    if weight.ndim != 2:
        raise ValueError(f"{where}: weight has shape {tuple(weight.shape)}; expected (out_features, in_features)")
    if weight.dtype != input.dtype:
        raise ValueError(f"{where}: input dtype {input.dtype} does not match weight dtype {weight.dtype}")
    n_out, n_in = weight.shape
    if input.ndim == 0 or input.shape[-1] != n_in:
        raise ValueError(f"{where}: input has shape {tuple(input.shape)}; expected (*, {n_in})")
    if bias is not None and tuple(bias.shape) != (n_out,):
        raise ValueError(f"{where}: bias has shape {tuple(bias.shape)}; expected ({n_out},)")
    if not isinstance(read_noise_sampling, ReadNoiseSampling):
        read_noise_sampling = ReadNoiseSampling(read_noise_sampling)
    noise = noise if noise is not None else SurrogateNoise()
    lead = input.shape[:-1]
    x = input.reshape(-1, n_in)
    n_b = x.shape[0]
    rows = min(params.tile_rows, n_in)
    k_tiles = -(-n_in // rows)  # tile rows; the inputs are zero-padded to k_tiles * rows
    # Without gradients every element-wise stage works in place on buffers it owns.
    track = torch.is_grad_enabled() and (input.requires_grad or weight.requires_grad or (bias is not None and bias.requires_grad))
    kernels = _cpu_kernels(x)

    # the weight-noise terms: (variance coefficients q0, q1, q2 of |w~|, draw or None for a fresh one)
    c0, c1, c2 = params.static_var_c0_rel, params.static_var_c1_rel, params.static_var_c2_rel
    alpha, alpha0 = params.read_noise_alpha_rel, params.read_noise_offset_rel
    has_static = c0 != 0 or c1 != 0 or c2 != 0
    has_read = alpha > 0 or alpha0 > 0
    per_batch = read_noise_sampling is ReadNoiseSampling.PER_BATCH

    def weight_noise(t: Tensor | None, name: str) -> Tensor | None:
        t = _checked_noise(t, (n_out, n_in), x, name)
        return None if t is None else _blocks(t, k_tiles, rows)

    z_static = weight_noise(noise.static, "static")
    z_read_w = weight_noise(noise.read_weight, "read_weight")
    terms: list[tuple[_Coefficients, Tensor | None]] = []
    if (per_batch and has_static and has_read and z_static is None and z_read_w is None
            and _nonnegative_on_unit_interval(c0, c1, c2)):
        # both drawn afresh: independent Gaussians, one draw with the summed variance (the same distribution)
        terms.append(((c0 + alpha0, c1 + alpha, c2), None))
    else:
        if has_static:
            terms.append(((c0, c1, c2), z_static))
        if has_read and per_batch:
            terms.append(((alpha0, alpha, 0.0), z_read_w))
    unit_out = params.adc_step_rel if params.adc_step_rel is not None else 1.0
    sigma = params.output_noise_std_rel / unit_out
    z_out = _checked_noise(noise.read_output, (k_tiles, n_b, n_out), x, "read_output")
    fresh_out = z_out is None and (sigma > 0 or params.beta_rel > 0 or (has_read and not per_batch))
    per_sample_dac = params.input_range is InputRange.PER_SAMPLE_ABSMAX
    scratch = None
    if not track and kernels:
        shapes = [(k_tiles, n_b, rows)] if per_sample_dac else []
        shapes += [(k_tiles, n_out, rows) for _, z in terms if z is None] + [(k_tiles, n_out, rows)] * bool(terms)
        shapes += [(k_tiles, n_b, n_out)] * (1 + fresh_out)
        scratch = _Scratch(shapes, x)

    def buffer(shape: tuple[int, ...]) -> Tensor | None:
        return None if scratch is None else scratch.take(shape)

    # 1. DAC: u = x~ / unit_x, the quantizer's integer code (or x / s_x when ideal), per tile row (K, B, rows)
    unit_x = 1.0
    if params.dac_bits is not None:
        unit_x = 1.0 / ((1 << (params.dac_bits - 1)) - 1)
    s_x: Tensor | float
    if per_sample_dac:
        u, s_x = _Dac.apply(x, 1.0 / unit_x, params.dac_bits is not None, k_tiles, rows, buffer((k_tiles, n_b, rows)))
    else:
        s_x = params.input_max
        if params.clip_inputs:
            v = (x * (1.0 / s_x)).clamp(-1.0, 1.0)
            if unit_x != 1.0:
                v = v * (1.0 / unit_x)
        else:
            v = x * (1.0 / (s_x * unit_x))
        if params.dac_bits is not None:
            v = _round_ste(v)
        u = _blocks(v, k_tiles, rows)  # (B, n_in) -> (K, B, rows)

    # Currents are carried in units of the ADC step (of I_dev without ADC quantization): the scale from
    # input codes to those units, to_out, is folded into the weights and their noise.
    to_out = unit_x / unit_out
    k2 = to_out * to_out

    # 2.-4. mapping, static error and per-read weight noise (variances scaled by to_out^2), on the
    # weight's tile-row blocks (K, n_out, rows); s_w (K, n_out)
    w_blocks = _blocks(weight, k_tiles, rows)
    mean_scale = params.gain_rel * to_out
    # per column, the noisy-weight pass forms the scales itself (one read of the weight)
    s_w = None if terms and params.scale_mode is ScaleMode.PER_COLUMN else _weight_scales(w_blocks, params)
    if not terms:
        assert s_w is not None
        w_eff = w_blocks * (mean_scale / s_w.unsqueeze(2))
    else:
        shape_w = tuple(w_blocks.shape)
        zs = [(z if z is not None else _randn(shape_w, x, generator, buffer(shape_w)), z is None) for _, z in terms]
        qs = [(k2 * q0, k2 * q1, k2 * q2) for (q0, q1, q2), _ in terms]
        if len(zs) == 1:
            zs.append((None, False))
            qs.append((0.0, 0.0, 0.0))
        w_eff, formed = _NoisyWeight.apply(
            w_blocks, None if s_w is None else s_w.unsqueeze(2), mean_scale, zs[0][0], qs[0], zs[1][0], qs[1],
            noise_std_gradient, (not track and zs[0][1], not track and zs[1][1]), track, buffer(shape_w),
        )
        s_w = formed if s_w is None else s_w
    s_b = s_w.unsqueeze(2)

    # 4.-5. every tile row's partial current at once (K, B, n_out), output noise, ADC; digital rescale and sum
    partial = _tile_product(u, w_eff, buffer((k_tiles, n_b, n_out)))
    beta = params.beta_rel / unit_out  # beta |I~| in I_dev^2 is (beta / unit_out) |I~ / unit_out| in unit_out^2
    fused = not track and kernels  # read-out (its data-dependent std too), sum over tile rows, digital stage: one pass
    var = None
    if has_read and not per_batch:
        with torch.set_grad_enabled(torch.is_grad_enabled() and noise_std_gradient):
            if fused:
                var_read = torch.empty_like(w_blocks)
                _kernels.read_variance(_np(w_blocks.contiguous()).reshape(-1, rows), _np(s_w.contiguous()).reshape(-1),
                                       _np(var_read).dtype.type(k2 * alpha), _np(var_read).dtype.type(k2 * alpha0),
                                       _np(var_read).reshape(-1, rows))
            else:
                var_read = (w_blocks / s_b).abs().mul(k2 * alpha).add(k2 * alpha0)
            var = _tile_product(u * u, var_read)
    if beta > 0 and not fused:
        term = partial.abs() * beta
        var = term if var is None else var + term
    z_owned = z_out is None
    std = None
    if var is not None or sigma > 0 or beta > 0:
        if z_out is None:
            z_out = _randn((k_tiles, n_b, n_out), x, generator, buffer((k_tiles, n_b, n_out)))
        if var is not None and not fused:
            std = _std(var + sigma * sigma, noise_std_gradient, positive=sigma > 0)
    scale = (s_w * unit_out if unit_out != 1.0 else s_w).unsqueeze(1)  # (K, 1, n_out)
    limit = params.adc_full_scale_rel / unit_out
    quantize = params.adc_bits is not None
    if fused:
        y = _read_out_sum(partial, var, beta, z_out, sigma, limit, quantize, scale, s_x, bias)
    else:
        out = _ReadOut.apply(partial, std, z_out, sigma, limit, quantize, scale, not track, z_owned, track)
        y = out[0] if k_tiles == 1 else out.sum(dim=0)
        if not track:
            y = y.mul_(s_x)
            if bias is not None:
                y = y.add_(bias)
        elif bias is not None:
            y = torch.addcmul(bias, y, s_x) if isinstance(s_x, Tensor) else torch.add(bias, y, alpha=s_x)
        else:
            y = y * s_x
    if activation_noise:
        y = _add_activation_noise(
            y, params, generator, _checked_noise(noise.correlated, (n_b,), x, "correlated"),
            _checked_noise(noise.uncorrelated, (n_b, n_out), x, "uncorrelated"), inplace=not track,
        )
    return y.reshape(*lead, n_out)


# --------------------------------------------------------------------------------------------------
# The layer
# --------------------------------------------------------------------------------------------------


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"seed = {seed!r} must be a non-negative integer")
    return int(seed)


class SurrogateLinear(nn.Linear):
    """``nn.Linear`` whose forward is the differentiable surrogate of the chip (:func:`surrogate_linear`).

    Parameters
    ----------
    in_features, out_features, bias
        As for ``nn.Linear``.
    params : SurrogateParams
        The noise model; replace it in place with :meth:`update_params` (e.g. after re-characterizing).
    seed : int
        Seed of the layer's noise generators (one per device), so runs repeat.
    read_noise_sampling : ReadNoiseSampling
        ``PER_BATCH`` (default, one GEMM) or ``PER_SAMPLE`` (exact per-vector read noise).
    static_noise : StaticNoise
        A fresh static draw every forward (default) or one frozen draw (one programmed chip).
    noise_std_gradient : bool
        Differentiate the noise std (see :func:`surrogate_linear`).
    activation_noise : bool
        Add the activation noise of ``params`` at the output of the layer.
    device, dtype
        Of the parameters.

    Notes
    -----
    Noise is drawn in train and eval mode alike: the surrogate models the chip, which is noisy in
    inference too. Keeps ``nn.Linear``'s parameters, ``state_dict`` keys and ``isinstance`` checks.
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        params: SurrogateParams,
        seed: int = 0,
        read_noise_sampling: ReadNoiseSampling = ReadNoiseSampling.PER_BATCH,
        static_noise: StaticNoise = StaticNoise.PER_FORWARD,
        noise_std_gradient: bool = True,
        activation_noise: bool = True,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_positive_ints(in_features=in_features, out_features=out_features)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_surrogate(params, seed, read_noise_sampling, static_noise, noise_std_gradient, activation_noise)

    def _init_surrogate(self, params: SurrogateParams, seed: int, sampling: Any, static: Any, std_grad: bool, act: bool) -> None:
        self._params = _check_params(params, "SurrogateLinear")
        self.seed = _check_seed(seed)
        self.read_noise_sampling = ReadNoiseSampling(sampling)
        self.static_noise = StaticNoise(static)
        for name, value in (("noise_std_gradient", std_grad), ("activation_noise", act)):
            if not isinstance(value, bool):
                raise ValueError(f"SurrogateLinear.{name} = {value!r} must be True or False")
        self.noise_std_gradient = std_grad
        self.activation_noise = act
        self._generators: dict[str, torch.Generator] = {}
        self._z_static: Tensor | None = None

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, params: SurrogateParams, seed: int = 0, **kwargs: Any) -> SurrogateLinear:
        """A surrogate layer sharing ``linear``'s parameters (the same tensors, not copies)."""
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"expected an nn.Linear, got {type(linear).__name__}")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = linear.in_features, linear.out_features
        layer.weight = linear.weight
        layer.bias = linear.bias
        layer._init_surrogate(
            params, seed, kwargs.pop("read_noise_sampling", ReadNoiseSampling.PER_BATCH),
            kwargs.pop("static_noise", StaticNoise.PER_FORWARD), kwargs.pop("noise_std_gradient", True),
            kwargs.pop("activation_noise", True),
        )
        if kwargs:
            raise ValueError(f"SurrogateLinear.from_linear: unknown argument(s) {sorted(kwargs)}")
        layer.train(linear.training)
        return layer

    # ------------------------------------------------------------------ parameters of the model
    @property
    def params(self) -> SurrogateParams:
        """The current noise model (frozen; replace it with :meth:`update_params`)."""
        return self._params

    def update_params(self, params: SurrogateParams, *, resample_static: bool = True) -> None:
        """Install a newer :class:`SurrogateParams` in place (no new module, optimizer state kept).

        With ``StaticNoise.FROZEN`` the static draw is redrawn unless ``resample_static=False`` (a newer
        characterization is a new programming of the chip).
        """
        self._params = _check_params(params, "SurrogateLinear.update_params")
        if resample_static:
            self._z_static = None

    def resample_static(self) -> None:
        """Draw a new frozen static error at the next forward (``StaticNoise.FROZEN``)."""
        self._z_static = None

    def reseed(self, seed: int) -> None:
        """Restart the noise streams from ``seed`` (and redraw a frozen static error)."""
        self.seed = _check_seed(seed)
        self._generators = {}
        self._z_static = None

    def generator(self, device: torch.device) -> torch.Generator:
        """The layer's generator on ``device`` (created and seeded with :attr:`seed` on first use)."""
        key = str(device)
        gen = self._generators.get(key)
        if gen is None:
            gen = torch.Generator(device=device)
            gen.manual_seed(self.seed)
            self._generators[key] = gen
        return gen

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_generators"] = {}  # generators do not pickle or deep-copy; the stream restarts from the seed
        return state

    def __deepcopy__(self, memo: dict[int, Any]) -> SurrogateLinear:
        new = self.__class__.__new__(self.__class__)
        memo[id(self)] = new
        for key, value in self.__dict__.items():
            setattr(new, key, {} if key == "_generators" else copy.deepcopy(value, memo))
        return new

    def forward(self, input: Tensor) -> Tensor:
        gen = self.generator(input.device)
        noise = None
        if self.static_noise is StaticNoise.FROZEN:
            z = self._z_static
            if z is None or tuple(z.shape) != tuple(self.weight.shape) or z.device != self.weight.device or z.dtype != self.weight.dtype:
                z = _randn(tuple(self.weight.shape), self.weight, gen)
                self._z_static = z
            noise = SurrogateNoise(static=z)
        return surrogate_linear(
            input, self.weight, self.bias, params=self._params, generator=gen, noise=noise,
            read_noise_sampling=self.read_noise_sampling, noise_std_gradient=self.noise_std_gradient,
            activation_noise=self.activation_noise,
        )

    def extra_repr(self) -> str:
        p = self._params
        return (
            f"{nn.Linear.extra_repr(self)}, tiles={p.tile_rows}x{p.tile_cols}, dac_bits={p.dac_bits}, adc_bits={p.adc_bits}, "
            f"read_noise={self.read_noise_sampling.value}, static={self.static_noise.value}, seed={self.seed}"
        )


# --------------------------------------------------------------------------------------------------
# Models
# --------------------------------------------------------------------------------------------------


def _params_for(params: SurrogateParams | Mapping[str, SurrogateParams], name: str) -> SurrogateParams | None:
    if isinstance(params, SurrogateParams):
        return params
    return params.get(name)


def _check_params_arg(params: Any, where: str) -> None:
    if isinstance(params, SurrogateParams):
        return
    if not isinstance(params, Mapping) or not all(isinstance(v, SurrogateParams) for v in params.values()):
        raise ValueError(f"{where}: params must be a SurrogateParams or a mapping of layer name -> SurrogateParams")


def convert_to_surrogate(
    model: nn.Module,
    params: SurrogateParams | Mapping[str, SurrogateParams],
    *,
    seed: int = 0,
    inplace: bool = False,
    **layer_options: Any,
) -> nn.Module:
    """Replace every ``nn.Linear`` of ``model`` by a :class:`SurrogateLinear` sharing its parameters.

    Parameters
    ----------
    model : nn.Module
        Any model; an ``nn.Linear`` itself is converted too. Subclasses of ``nn.Linear`` (e.g.
        :class:`~crossbar.nn.AnalogLinear`) and other layers are left as they are.
    params : SurrogateParams or mapping of str to SurrogateParams
        One model for every layer, or one per layer name (``model.named_modules()`` names); layers
        without an entry stay digital.
    seed : int
        Layer i (in module order) gets the noise seed derived from ``(seed, i)``.
    inplace : bool
        Modify ``model`` itself instead of a deep copy.
    **layer_options
        ``read_noise_sampling``, ``static_noise``, ``noise_std_gradient``, ``activation_noise`` of the layers.
    """
    if not isinstance(model, nn.Module):
        raise ValueError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    _check_params_arg(params, "convert_to_surrogate")
    seed = _check_seed(seed)
    if not inplace:
        model = copy.deepcopy(model)
    counter = [0]

    def layer_seed() -> int:
        value = np.random.SeedSequence([seed, 0x73757272, counter[0]]).generate_state(1, np.uint64)[0]
        counter[0] += 1
        return int(value) & ((1 << 63) - 1)

    def convert(module: nn.Module, name: str) -> nn.Module:
        if type(module) is nn.Linear:
            p = _params_for(params, name)
            if p is not None:
                return SurrogateLinear.from_linear(module, params=p, seed=layer_seed(), **layer_options)
            return module
        for child_name, child in list(module.named_children()):
            new = convert(child, f"{name}.{child_name}" if name else child_name)
            if new is not child:
                setattr(module, child_name, new)
        return module

    return convert(model, "")


def surrogate_layers(model: nn.Module) -> list[tuple[str, SurrogateLinear]]:
    """Every :class:`SurrogateLinear` of ``model`` with its name, in module order."""
    return [(name, m) for name, m in model.named_modules() if isinstance(m, SurrogateLinear)]


def update_surrogate_params(
    model: nn.Module, params: SurrogateParams | Mapping[str, SurrogateParams], *, resample_static: bool = True
) -> int:
    """Install newer parameters in every surrogate layer (or those named in ``params``); returns how many."""
    _check_params_arg(params, "update_surrogate_params")
    n = 0
    for name, layer in surrogate_layers(model):
        p = _params_for(params, name)
        if p is not None:
            layer.update_params(p, resample_static=resample_static)
            n += 1
    return n


def strip_surrogate(model: nn.Module, *, inplace: bool = False) -> nn.Module:
    """Replace every :class:`SurrogateLinear` by a plain ``nn.Linear`` sharing its parameters.

    E.g. to program a surrogate-trained model onto the chip with :func:`~crossbar.nn.convert_to_analog`.
    """
    if not inplace:
        model = copy.deepcopy(model)

    def plain(layer: SurrogateLinear) -> nn.Linear:
        lin = nn.Linear.__new__(nn.Linear)
        nn.Module.__init__(lin)
        lin.in_features, lin.out_features = layer.in_features, layer.out_features
        lin.weight, lin.bias = layer.weight, layer.bias
        lin.train(layer.training)
        return lin

    if isinstance(model, SurrogateLinear):
        return plain(model)
    for name, layer in surrogate_layers(model):
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, plain(layer))
    return model


def surrogate_outputs(
    params: SurrogateParams,
    weights: Any,
    inputs: Any,
    *,
    n_repeats: int = 1,
    seed: int = 0,
    read_noise_sampling: ReadNoiseSampling = ReadNoiseSampling.PER_SAMPLE,
) -> np.ndarray:
    """NumPy in, NumPy out: ``n_repeats`` reads of the surrogate with one frozen static draw, (R, B, out).

    The counterpart of reading one programmed chip matrix ``n_repeats`` times (for comparisons with
    :func:`crossbar.characterization.normalized_errors` and plots); float64 on the CPU.
    """
    check_positive_ints(n_repeats=n_repeats)
    w = torch.tensor(np.asarray(weights, dtype=np.float64))  # copies: the chip's weights are read-only
    x = torch.tensor(np.asarray(inputs, dtype=np.float64))
    gen = torch.Generator().manual_seed(_check_seed(seed))
    z_static = _randn(tuple(w.shape), w, gen)
    with torch.no_grad():
        reads = [
            surrogate_linear(x, w, params=params, generator=gen, noise=SurrogateNoise(static=z_static),
                             read_noise_sampling=read_noise_sampling).numpy()
            for _ in range(n_repeats)
        ]
    return np.stack(reads)
