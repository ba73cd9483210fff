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
a max goes to its arg-max).

Everything runs on the device and dtype of the input (CPU or CUDA; float32 or float64).
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


class _RoundSTE(torch.autograd.Function):
    """``round(x)`` with a straight-through gradient (the identity)."""

    @staticmethod
    def forward(x: Tensor) -> Tensor:  # type: ignore[override]
        return torch.round(x)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        pass

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> Tensor:  # type: ignore[override]
        return grad


def _round_ste(x: Tensor) -> Tensor:
    return _RoundSTE.apply(x)


class _NoisyWeight(torch.autograd.Function):
    """``w_eff = m w / s + sqrt(max(q0 + q1 a + q2 a^2, 0)) z`` with ``a = |w| / s``, in one buffer.

    ``s`` broadcasts against ``w`` (the weight scale per tile row and output). Exact gradients with respect
    to ``w`` and ``s`` for the given ``z`` (with ``std_gradient=False`` the std is held constant); ``z`` gets
    none. Equivalent to the unfused torch ops, with two allocations instead of about ten.
    """

    @staticmethod
    def forward(w: Tensor, s: Tensor, z: Tensor, m: float, q0: float, q1: float, q2: float, std_gradient: bool) -> Tensor:  # type: ignore[override]
        out = w / s
        a = out.abs()
        if q2 != 0:
            var = a * q2
            var.add_(q1).mul_(a).add_(q0)
        else:
            var = a * q1
            var.add_(q0)
        std = var.clamp_min_(torch.finfo(var.dtype).tiny).sqrt_()
        if m != 1.0:
            out.mul_(m)
        return out.addcmul_(std, z)

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: Tensor) -> None:
        w, s, z, m, q0, q1, q2, std_gradient = inputs
        ctx.save_for_backward(w, s, z)
        ctx.coeffs = (m, q0, q1, q2, std_gradient)

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        w, s, z = ctx.saved_tensors
        m, q0, q1, q2, std_gradient = ctx.coeffs
        inv_s = 1.0 / s
        w_rel = w * inv_s
        # d w_eff / d w_rel = m + z std'(a) sign(w_rel), std' = (q1 + 2 q2 a) / (2 std) where var > 0
        d = torch.full_like(w_rel, m)
        if std_gradient:
            a = w_rel.abs()
            var = (a * q2 + q1) * a + q0
            pos = var > 0
            slope = torch.where(pos, (a * (2 * q2) + q1) / (2 * torch.sqrt(torch.where(pos, var, 1.0))), 0.0)
            d = d + z * slope * torch.sign(w_rel)
        g_rel = grad * d
        grad_w = g_rel * inv_s if ctx.needs_input_grad[0] else None
        grad_s = None
        if ctx.needs_input_grad[1]:
            full = -(g_rel * w_rel) * inv_s  # d w_rel / d s = -w_rel / s
            dims = [i for i, (n_s, n_w) in enumerate(zip(s.shape, full.shape)) if n_s == 1 and n_w != 1]
            grad_s = full.sum(dim=dims, keepdim=True) if dims else full
        return grad_w, grad_s, None, None, None, None, None, None


class _ReadOut(torch.autograd.Function):
    """One tile partial read out: ``out = scale * Q(clip(P + std z, -L, L))`` in one buffer.

    Gradients: with respect to P and std, ``scale * 1{|P + std z| <= L}`` (times z for std), rounding
    straight-through; with respect to the per-output scale, ``sum_b Q(...)``. ``z`` gets none (noise).
    Equivalent to the unfused torch ops, with one allocation instead of five.
    """

    @staticmethod
    def forward(partial: Tensor, std: Tensor | None, sigma: float, z: Tensor | None, limit: float, quantize: bool,  # type: ignore[override]
                scale: Tensor) -> Tensor:
        if z is None:
            out = partial.clone()
        elif std is None:
            out = torch.add(partial, z, alpha=sigma)
        else:
            out = torch.addcmul(partial, std, z)
        inside = None
        if math.isfinite(limit):
            inside = out.abs() <= limit
            out.clamp_(-limit, limit)
        if quantize:
            out.round_()
        out.mul_(scale)
        return out, inside

    @staticmethod
    def setup_context(ctx: Any, inputs: tuple[Any, ...], output: tuple[Tensor, Tensor | None]) -> None:
        _, std, _, z, _, _, scale = inputs
        out, inside = output
        ctx.mark_non_differentiable(*(t for t in (inside,) if t is not None))
        ctx.save_for_backward(out, inside, z if std is not None else None, scale)

    @staticmethod
    def backward(ctx: Any, grad: Tensor, _grad_inside: Any) -> tuple[Tensor | None, ...]:  # type: ignore[override]
        out, inside, z, scale = ctx.saved_tensors
        g = grad * scale
        if inside is not None:
            g = g * inside
        grad_std = g * z if ctx.needs_input_grad[1] else None
        grad_scale = (grad * out / scale).sum(dim=0) if ctx.needs_input_grad[6] else None
        return g, grad_std, None, None, None, None, grad_scale


def _check_params(params: Any, where: str) -> SurrogateParams:
    if not isinstance(params, SurrogateParams):
        raise ValueError(f"{where}: params must be a crossbar SurrogateParams, got {type(params).__name__}")
    return params


def _weight_scales(weight: Tensor, params: SurrogateParams) -> Tensor:
    """s_w per (tile row, output), shape (K, n_out); a block of zeros gets 1 (as the chip's mapping)."""
    n_out, n_in = weight.shape
    rows = params.tile_rows
    k = -(-n_in // rows)
    a = weight.abs()
    if k == 1:
        peak = a.amax(dim=1, keepdim=True).t()
    else:
        pad = k * rows - n_in
        if pad:
            a = torch.nn.functional.pad(a, (0, pad))
        peak = a.reshape(n_out, k, rows).amax(dim=2).t()
    if params.scale_mode is ScaleMode.PER_TILE:
        cols = params.tile_cols
        c = -(-n_out // cols)
        pad = c * cols - n_out
        p = torch.nn.functional.pad(peak, (0, pad)) if pad else peak
        peak = p.reshape(k, c, cols).amax(dim=2, keepdim=True).expand(k, c, cols).reshape(k, c * cols)[:, :n_out]
    return torch.where(peak > 0, peak, torch.ones_like(peak))


def _std(var: Tensor, keep_gradient: bool, *, positive: bool = False) -> Tensor:
    """sqrt(var); a variance not positive by construction is clamped at the smallest normal number first."""
    std = torch.sqrt(var if positive else var.clamp_min(torch.finfo(var.dtype).tiny))
    return std if keep_gradient else std.detach()


def _randn(shape: tuple[int, ...], like: Tensor, generator: torch.Generator | None) -> Tensor:
    return torch.randn(shape, generator=generator, dtype=like.dtype, device=like.device)


def _checked_noise(t: Tensor | None, shape: tuple[int, ...], like: Tensor, name: str) -> Tensor | None:
    if t is None:
        return None
    if tuple(t.shape) != shape:
        raise ValueError(f"surrogate_linear: noise.{name} has shape {tuple(t.shape)}, expected {shape}")
    return t.to(dtype=like.dtype, device=like.device)


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
    s_c, s_u = params.activation_correlated_std_rel, params.activation_uncorrelated_std_rel
    if s_c > 0:
        n_b = correlated if correlated is not None else _randn((y.shape[0],), y, generator)
        y = y + s_c * n_b.reshape((-1,) + (1,) * (y.ndim - 1))
    if s_u > 0:
        n_bi = uncorrelated if uncorrelated is not None else _randn(tuple(y.shape), y, generator)
        y = y + s_u * n_bi
    return y


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
    rows = params.tile_rows
    k_tiles = -(-n_in // rows)

    # 1. DAC: x~ = unit_x * u with u the quantizer's integer code (or x / s_x when ideal)
    if params.input_range is InputRange.PER_SAMPLE_ABSMAX:
        peak = x.abs().amax(dim=1, keepdim=True)
        s_x: Tensor | float = torch.where(peak > 0, peak, torch.ones_like(peak))
    else:
        s_x = params.input_max
    unit_x = 1.0
    if params.dac_bits is not None:
        n_dac = (1 << (params.dac_bits - 1)) - 1
        unit_x = 1.0 / n_dac
    if params.input_range is InputRange.FIXED and params.clip_inputs:
        u = (x * (1.0 / params.input_max)).clamp(-1.0, 1.0)
        if unit_x != 1.0:
            u = u * (1.0 / unit_x)
    else:
        u = x * (1.0 / (s_x * unit_x)) if isinstance(s_x, float) else x / (s_x * unit_x)
    if params.dac_bits is not None:
        u = _round_ste(u)

    # Currents are carried in units of the ADC step (of I_dev without ADC quantization): the scale from
    # input codes to those units, to_out, is folded into the weights and their noise.
    unit_out = params.adc_step_rel if params.adc_step_rel is not None else 1.0
    to_out = unit_x / unit_out
    k2 = to_out * to_out

    # 2.-4. mapping, static error and per-read weight noise (variances scaled by to_out^2)
    s_w = _weight_scales(weight, params)  # (K, out)
    s_full = s_w.t() if k_tiles == 1 else s_w.repeat_interleave(rows, dim=0)[:n_in].t()
    c0, c1, c2 = params.static_var_c0_rel, params.static_var_c1_rel, params.static_var_c2_rel
    alpha, alpha0 = params.read_noise_alpha_rel, params.read_noise_offset_rel
    has_static = c0 != 0 or c1 != 0 or c2 != 0
    has_read = alpha > 0 or alpha0 > 0
    per_batch = read_noise_sampling is ReadNoiseSampling.PER_BATCH
    mean_scale = params.gain_rel * to_out
    z_static = _checked_noise(noise.static, (n_out, n_in), x, "static")
    z_read_w = _checked_noise(noise.read_weight, (n_out, n_in), x, "read_weight")
    # the weight-noise terms: (variance coefficients q0, q1, q2 of |w~|, draw)
    terms: list[tuple[float, float, float, Tensor | None]] = []
    if per_batch and has_static and has_read and z_static is None and z_read_w is None:
        terms.append((c0 + alpha0, c1 + alpha, c2, None))  # both fresh: one draw with the summed variance
    else:
        if has_static:
            terms.append((c0, c1, c2, z_static))
        if has_read and per_batch:
            terms.append((alpha0, alpha, 0.0, z_read_w))
    if not terms:
        w_eff = weight / s_full if mean_scale == 1.0 else weight * (mean_scale / s_full)
    else:
        w_eff = None
        for q0, q1, q2, z in terms:
            zz = z if z is not None else _randn((n_out, n_in), x, generator)
            noisy = _NoisyWeight.apply(weight, s_full, zz, mean_scale if w_eff is None else 0.0, k2 * q0, k2 * q1, k2 * q2,
                                       noise_std_gradient)
            w_eff = noisy if w_eff is None else w_eff + noisy
    var_read = None
    if has_read and not per_batch:
        var_read = (weight / s_full).abs() * (k2 * alpha) + k2 * alpha0

    # 4.-5. per tile row: partial current, output noise, ADC; digital rescale and sum
    z_out = _checked_noise(noise.read_output, (k_tiles, n_b, n_out), x, "read_output")
    sigma = params.output_noise_std_rel / unit_out
    beta = params.beta_rel / unit_out  # beta |I~| in I_dev^2 is (beta / unit_out) |I~ / unit_out| in unit_out^2
    limit = params.adc_full_scale_rel / unit_out
    y: Tensor | None = None
    for k in range(k_tiles):
        if k_tiles == 1:
            uk, wk = u, w_eff
        else:
            uk, wk = u[:, k * rows : (k + 1) * rows], w_eff[:, k * rows : (k + 1) * rows]
        partial = uk @ wk.t()
        var = None
        if var_read is not None:
            vk = var_read if k_tiles == 1 else var_read[:, k * rows : (k + 1) * rows]
            var = (uk * uk) @ vk.t()
        if beta > 0:
            term = partial.abs() * beta
            var = term if var is None else var + term
        zk = std = None
        if var is not None or sigma > 0:
            zk = z_out[k] if z_out is not None else _randn((n_b, n_out), x, generator)
            if var is not None:
                std = _std(var + sigma * sigma, noise_std_gradient, positive=sigma > 0)
        scale_k = s_w[k] * unit_out if unit_out != 1.0 else s_w[k]
        contrib, _ = _ReadOut.apply(partial, std, sigma, zk, limit, params.adc_step_rel is not None, scale_k)
        y = contrib if y is None else y + contrib
    assert y is not None
    if bias is not None:
        y = torch.addcmul(bias, y, s_x) if isinstance(s_x, Tensor) else torch.add(bias, y, alpha=s_x)
    else:
        y = y * s_x
    if activation_noise:
        y = surrogate_activation_noise(
            y, params, generator=generator,
            correlated=_checked_noise(noise.correlated, (n_b,), x, "correlated"),
            uncorrelated=_checked_noise(noise.uncorrelated, (n_b, n_out), x, "uncorrelated"),
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
        for name, value in (("in_features", in_features), ("out_features", out_features)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} = {value!r} must be a positive integer")
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
                z = torch.randn(tuple(self.weight.shape), generator=gen, dtype=self.weight.dtype, device=self.weight.device)
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
    if isinstance(n_repeats, bool) or not isinstance(n_repeats, int) or n_repeats < 1:
        raise ValueError(f"n_repeats = {n_repeats!r} must be a positive integer")
    w = torch.tensor(np.asarray(weights, dtype=np.float64))  # copies: the chip's weights are read-only
    x = torch.tensor(np.asarray(inputs, dtype=np.float64))
    gen = torch.Generator().manual_seed(_check_seed(seed))
    z_static = torch.randn(tuple(w.shape), generator=gen, dtype=torch.float64)
    with torch.no_grad():
        reads = [
            surrogate_linear(x, w, params=params, generator=gen, noise=SurrogateNoise(static=z_static),
                             read_noise_sampling=read_noise_sampling).numpy()
            for _ in range(n_repeats)
        ]
    return np.stack(reads)
