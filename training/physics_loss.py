"""The physics-informed loss: keep weights inside the programmable range and distributed like the hardware.

.. math:: L_{phys} = \\lambda_1 \\lVert W - \\mathrm{clip}(W, -w_{max}, w_{max}) \\rVert^2
          + \\lambda_2\\, \\mathrm{KL}\\big(\\hat p(Q_b(W)) \\,\\Vert\\, \\pi_{hw}\\big)

The first term pulls weights back into the conductance window the chip can program; the second makes the
distribution of the programmed (quantized) weights match the level occupancy ``pi_hw`` of the hardware.
``p-hat`` is a soft histogram: each value belongs to bin k with weight
``sigmoid((x - e_k)/tau) - sigmoid((x - e_{k+1})/tau)``, which is differentiable in x, so the KL term has a
gradient (through Q_b straight-through). ``pi_hw`` is a :class:`HardwarePrior` (bin edges and
probabilities); it will come from the characterization file (written by the chip-characterization work);
until then :func:`uniform_level_prior` gives the placeholder "every level of the b-bit grid equally used".

The loss form is the project's (DESIGN.md, "Training"); our literature search found no citable source for
this exact combination. The KL divergence is the standard one (S. Kullback and R. A. Leibler, Ann. Math.
Statist. 22(1), 79-86 (1951), doi:10.1214/aoms/1177729694).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from training._checks import check_float, check_int
from training.quantization import MAX_BITS, MIN_BITS, quantization_levels, quantize_ste

__all__ = [
    "HardwarePrior",
    "PhysicsInformedLoss",
    "clip_penalty",
    "kl_divergence",
    "physics_informed_penalty",
    "prior_from_counts",
    "prior_from_pi_hw",
    "read_hardware_prior",
    "soft_histogram",
    "uniform_level_prior",
]

_CHUNK_ELEMENTS = 1 << 22
"""Values x edges evaluated at once by :func:`soft_histogram` (bounds its temporary memory to ~16 MB in float32)."""


def _as_float_tuple(obj: object, name: str, value: object) -> tuple[float, ...]:
    try:
        out = tuple(float(v) for v in torch.as_tensor(value, dtype=torch.float64).reshape(-1).tolist())
    except (TypeError, ValueError, RuntimeError):
        raise ValueError(f"{type(obj).__name__}.{name} = {value!r} must be a sequence of numbers") from None
    object.__setattr__(obj, name, out)
    return out


@dataclass(frozen=True, kw_only=True)
class HardwarePrior:
    """A distribution over weight bins: ``pi_hw`` of the physics-informed loss."""

    bin_edges: tuple[float, ...]
    """Ascending bin edges e_0 < ... < e_K, in weight units (same units as W and ``w_max``)."""
    probabilities: tuple[float, ...]
    """Probability of each of the K bins; non-negative, summing to 1."""
    source: str = ""
    """Where the prior comes from (a characterization file, or how a placeholder was built)."""

    def __post_init__(self) -> None:
        edges = _as_float_tuple(self, "bin_edges", self.bin_edges)
        probs = _as_float_tuple(self, "probabilities", self.probabilities)
        if len(edges) < 2:
            raise ValueError(f"HardwarePrior.bin_edges has {len(edges)} edges; needs at least 2")
        if not all(math.isfinite(e) for e in edges) or any(b <= a for a, b in zip(edges, edges[1:])):
            raise ValueError("HardwarePrior.bin_edges must be finite and strictly ascending")
        if len(probs) != len(edges) - 1:
            raise ValueError(
                f"HardwarePrior.probabilities has {len(probs)} values; {len(edges) - 1} bins need as many"
            )
        if any(not math.isfinite(p) or p < 0 for p in probs) or abs(sum(probs) - 1.0) > 1e-6:
            raise ValueError(f"HardwarePrior.probabilities must be >= 0 and sum to 1 (sum = {sum(probs):.9g})")
        if not isinstance(self.source, str):
            raise ValueError(f"HardwarePrior.source = {self.source!r} must be a string")

    @property
    def n_bins(self) -> int:
        """K, the number of bins."""
        return len(self.probabilities)


def prior_from_counts(bin_edges: Sequence[float], counts: Sequence[float], *, source: str) -> HardwarePrior:
    """``pi_hw`` from a measured histogram: ``counts`` per bin (e.g. a characterization file's level
    occupancy), normalized to probabilities.

    Raises ``ValueError`` for negative or non-finite counts, an all-zero histogram, or a count/edge mismatch
    (the edges are checked by :class:`HardwarePrior`).
    """
    c = torch.as_tensor(counts, dtype=torch.float64).reshape(-1)
    if c.numel() == 0 or not bool(torch.isfinite(c).all()) or bool((c < 0).any()):
        raise ValueError("counts must be a non-empty sequence of finite numbers >= 0")
    total = float(c.sum())
    if total <= 0:
        raise ValueError("counts are all zero: no distribution to match")
    return HardwarePrior(bin_edges=tuple(bin_edges), probabilities=tuple((c / total).tolist()), source=source)


def prior_from_pi_hw(pi_hw: Any, *, w_max: float | None = None) -> HardwarePrior:
    """``pi_hw`` of a characterization (:class:`crossbar.fitting.PiHW`) as the loss's prior.

    Parameters
    ----------
    pi_hw : crossbar.fitting.PiHW
        Level occupancy measured on the chip (``Characterization.pi_hw``), on its grid ``[-w_max, w_max]``
        (normalized weights: ``w_max = 1``).
    w_max : float, optional
        Put the grid on ``[-w_max, w_max]`` in the model's weight units (the loss's
        ``PhysicsInformedLoss.w_max``); default: the characterization's own.

    Notes
    -----
    Use the same ``bits`` in :class:`PhysicsInformedLoss` as the characterization's grid
    (``CharacterizationProtocol.pi_hw_bits``) so that Q_b's levels sit at the centres of the bins.
    """
    for name in ("bin_edges", "probabilities", "w_max", "source"):
        if not hasattr(pi_hw, name):
            raise ValueError(f"pi_hw = {type(pi_hw).__name__} has no {name!r}: expected crossbar.fitting.PiHW")
    if w_max is not None:
        pi_hw = pi_hw.scaled(float(w_max))
    source = pi_hw.source or "characterization"
    return HardwarePrior(bin_edges=tuple(float(e) for e in pi_hw.bin_edges),
                         probabilities=tuple(float(p) for p in pi_hw.probabilities),
                         source=f"{source} ({pi_hw.bits}-bit level occupancy on [-{pi_hw.w_max:g}, {pi_hw.w_max:g}])")


def read_hardware_prior(path: str | os.PathLike[str], *, w_max: float | None = None) -> tuple[HardwarePrior, int]:
    """The prior and grid resolution (bits) stored in a characterization file (``crossbar characterize``).

    Raises ``crossbar.hdf5io.HDF5FormatError`` (one line) for a missing, damaged or foreign file.
    """
    from crossbar.characterization_io import read_characterization

    pi_hw = read_characterization(path).pi_hw
    prior = prior_from_pi_hw(pi_hw, w_max=w_max)
    return dataclasses.replace(prior, source=f"{os.fspath(path)}: {prior.source}"), int(pi_hw.bits)


def uniform_level_prior(bits: int, w_max: float) -> HardwarePrior:
    """Uniform ``pi_hw`` over the ``2**bits - 1`` levels of the b-bit grid on ``[-w_max, w_max]``.

    Bins are centred on the levels, with edges halfway between levels (the outer edges half a step beyond
    +-w_max). This is the prior of a chip whose every conductance level is equally usable; it stands in
    until a measured one is read from a characterization file.
    """
    levels = quantization_levels(bits, w_max)
    step = float(levels[1] - levels[0])
    edges = torch.cat([levels[:1] - step / 2, (levels[:-1] + levels[1:]) / 2, levels[-1:] + step / 2])
    k = levels.numel()
    return HardwarePrior(
        bin_edges=tuple(edges.tolist()),
        probabilities=(1.0 / k,) * k,
        source=f"uniform over the {k} levels of a {bits}-bit grid on [-{w_max:g}, {w_max:g}] (placeholder)",
    )


def soft_histogram(
    x: torch.Tensor,
    edges: torch.Tensor | Sequence[float],
    bandwidth: float,
    *,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Differentiable histogram of the values of ``x``, normalized to a probability vector.

    Parameters
    ----------
    x : torch.Tensor
        Values (any shape; flattened).
    edges : torch.Tensor or sequence of float
        Ascending bin edges e_0 ... e_K.
    bandwidth : float
        Kernel width tau, in the units of x (e.g. a quarter of the bin width).
    weights : torch.Tensor, optional
        Non-negative multiplicity of each value (shape of ``x`` flattened); default 1 each. A histogram of
        many repeated values (e.g. quantized weights) is that of its distinct values weighted by their counts.

    Returns
    -------
    torch.Tensor
        ``p`` of shape (K,), ``p >= 0``, ``p.sum() == 1``.

    Notes
    -----
    .. math:: m_k(x) = \\sigma\\Big(\\frac{x - e_k}{\\tau}\\Big) - \\sigma\\Big(\\frac{x - e_{k+1}}{\\tau}\\Big),
              \\qquad \\hat p_k = \\frac{\\sum_n m_k(x_n)}{\\sum_{k'} \\sum_n m_{k'}(x_n)}

    Memberships telescope, so with :math:`S_k = \\sum_n \\sigma((x_n - e_k)/\\tau)` the unnormalized
    histogram is :math:`S_k - S_{k+1}` and the normalization :math:`S_0 - S_K`: K + 1 sums of sigmoids
    (exact, no truncation), O(N K) work in chunks of values and O(K) memory per value of a chunk; the sums
    accumulate in float64. Values outside the edges count only partially (their membership tails off over
    a few tau).
    """
    if not bandwidth > 0:
        raise ValueError(f"bandwidth = {bandwidth!r} must be > 0")
    e = torch.as_tensor(edges, dtype=x.dtype, device=x.device).reshape(-1)
    if e.numel() < 2 or bool((e[1:] <= e[:-1]).any()):
        raise ValueError("edges must hold at least 2 strictly ascending values")
    values = x.reshape(-1)
    if values.numel() == 0:
        raise ValueError("soft_histogram needs at least one value")
    if weights is not None:
        weights = weights.reshape(-1).to(device=x.device, dtype=torch.float64)
        if weights.numel() != values.numel() or bool((weights < 0).any()) or not bool(weights.sum() > 0):
            raise ValueError("weights must be non-negative, one per value, and not all zero")
    chunk = max(1, _CHUNK_ELEMENTS // e.numel())
    sums = torch.zeros(e.numel(), dtype=torch.float64, device=x.device)
    for start in range(0, values.numel(), chunk):
        v = values[start : start + chunk]
        sig = torch.sigmoid((v[:, None] - e[None, :]) / bandwidth).to(torch.float64)
        if weights is None:
            sums = sums + sig.sum(dim=0)
        else:
            sums = sums + weights[start : start + chunk] @ sig
    hist = (sums[:-1] - sums[1:]).clamp_min(0.0)
    return (hist / (sums[0] - sums[-1])).to(x.dtype)


def kl_divergence(p: torch.Tensor, q: torch.Tensor, *, eps: float = 1e-12) -> torch.Tensor:
    """KL(p || q) = sum_k p_k log(p_k / q_k) in nats, with p and q floored at ``eps`` inside the logs.

    Notes
    -----
    .. math:: \\mathrm{KL}(p \\Vert q) = \\sum_k p_k \\big(\\log \\max(p_k, \\epsilon) - \\log \\max(q_k, \\epsilon)\\big)
    """
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {tuple(p.shape)} and {tuple(q.shape)}")
    return (p * (p.clamp_min(eps).log() - q.clamp_min(eps).log())).sum()


def clip_penalty(weights: Sequence[torch.Tensor], w_max: float) -> torch.Tensor:
    """``sum_l ||W_l - clip(W_l, -w_max, w_max)||**2``: the squared excess beyond the programmable range.

    Notes
    -----
    .. math:: R_{clip} = \\sum_l \\sum_{ij} \\big(W_{ij} - \\mathrm{clip}(W_{ij}, -w_{max}, w_{max})\\big)^2
              = \\sum \\max(|W| - w_{max}, 0)^2
    """
    if isinstance(weights, torch.Tensor) or not weights:
        raise ValueError("weights must be a non-empty sequence of tensors")
    if not w_max > 0:
        raise ValueError(f"w_max = {w_max!r} must be > 0")
    return sum((w - w.clamp(-w_max, w_max)).pow(2).sum() for w in weights)


@dataclass(frozen=True, kw_only=True)
class PhysicsInformedLoss:
    """Weights and grid of the physics-informed loss."""

    lambda_clip: float = 1.0
    """lambda_1, weight of the range term (dimensionless per squared weight unit)."""
    lambda_kl: float = 0.01
    """lambda_2, weight of the KL term (per nat)."""
    w_max: float = 1.0
    """Largest programmable |weight|, in weight units; also the full scale of Q_b."""
    bits: int = 4
    """Resolution of Q_b applied to W before the histogram (2^bits - 1 levels)."""
    bandwidth_rel: float = 0.25
    """Soft-histogram kernel width, in units of the narrowest bin of the prior."""

    def __post_init__(self) -> None:
        check_float(self, "lambda_clip", 0.0, 1e9)
        check_float(self, "lambda_kl", 0.0, 1e9)
        check_float(self, "w_max", 0.0, 1e6, open_low=True)
        check_int(self, "bits", MIN_BITS, MAX_BITS)
        check_float(self, "bandwidth_rel", 0.0, 10.0, open_low=True)


def _levels_with_counts(q: torch.Tensor, config: PhysicsInformedLoss) -> tuple[torch.Tensor, torch.Tensor]:
    """The distinct levels of quantized values ``q`` and their counts, differentiable in ``q``.

    Each level is the mean of the values on it (equal to the level itself), so the gradient of a function
    of the levels weighted by their counts reaches every value exactly as if it were evaluated per value:
    d/dq_n [c_u f(mean_u)] = f'(u). The histogram then costs O(levels x bins) instead of O(N x bins).
    """
    n = (1 << (config.bits - 1)) - 1
    index = (torch.round(q.detach() * (n / config.w_max)) + n).long().clamp(0, 2 * n)
    counts = torch.zeros(2 * n + 1, dtype=q.dtype, device=q.device).index_add(0, index, torch.ones_like(q))
    sums = torch.zeros(2 * n + 1, dtype=q.dtype, device=q.device).index_add(0, index, q)
    used = counts > 0
    return sums[used] / counts[used], counts[used]


def physics_informed_penalty(
    weights: Sequence[torch.Tensor], *, config: PhysicsInformedLoss, prior: HardwarePrior
) -> torch.Tensor:
    """lambda_1 clip term + lambda_2 KL(soft histogram of Q_b(W) || pi_hw) over all ``weights`` pooled.

    Raises ``ValueError`` when the prior's edges do not cover ``[-w_max, w_max]`` (the quantized weights
    would fall outside every bin).
    """
    if not isinstance(config, PhysicsInformedLoss):
        raise ValueError(f"config = {config!r} must be a PhysicsInformedLoss")
    if not isinstance(prior, HardwarePrior):
        raise ValueError(f"prior = {prior!r} must be a HardwarePrior")
    if prior.bin_edges[0] > -config.w_max or prior.bin_edges[-1] < config.w_max:
        raise ValueError(
            f"prior bin edges [{prior.bin_edges[0]:g}, {prior.bin_edges[-1]:g}] must cover "
            f"[-w_max, w_max] = [{-config.w_max:g}, {config.w_max:g}]"
        )
    if isinstance(weights, torch.Tensor) or not weights:
        raise ValueError("weights must be a non-empty sequence of tensors")
    flat = torch.cat([w.reshape(-1) for w in weights])
    total = flat.new_zeros(())
    if config.lambda_clip:
        total = total + config.lambda_clip * clip_penalty([flat], config.w_max)
    if config.lambda_kl:
        edges = torch.tensor(prior.bin_edges, dtype=flat.dtype, device=flat.device)
        q = torch.tensor(prior.probabilities, dtype=flat.dtype, device=flat.device)
        bandwidth = config.bandwidth_rel * float((edges[1:] - edges[:-1]).min())
        values, counts = _levels_with_counts(quantize_ste(flat, bits=config.bits, x_max=config.w_max), config)
        p = soft_histogram(values, edges, bandwidth, weights=counts)
        total = total + config.lambda_kl * kl_divergence(p, q)
    return total
