"""Noise on analog activations: the noise models, the injection points and VANT's per-sample noise.

A model marks every place where an analog neuron's output can be perturbed with a :class:`NoisePoint`
(after the activation function). A noise point is the identity until a *noise source* is attached, which
:func:`injected_noise` does for the duration of a ``with`` block. Evaluation sweeps and noise-aware
training attach a :class:`GaussianNoiseSource`; VANT attaches a :class:`VANTNoiseSource` whose per-sample
standard deviation is shared by every layer for that sample. Every draw comes from an explicit
``torch.Generator``.

References
----------
N. Semenova, X. Porte, L. Andreoli, M. Jacquot, L. Larger and D. Brunner, "Fundamental aspects of noise in
analog-hardware neural networks", Chaos 29, 103128 (2019), doi:10.1063/1.5120824 (additive/multiplicative,
correlated/uncorrelated activation noise).
X. Wang, H. Borras, B. Klein and H. Froening, "Variance-Aware Noisy Training: Hardening DNNs against
Unstable Analog Computations", arXiv:2503.16183 (2025), doi:10.48550/arXiv.2503.16183 (VANT).
"""

from __future__ import annotations

import contextlib
import enum
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import torch
from torch import nn

from training._checks import check_enum, check_float

__all__ = [
    "ActivationNoise",
    "GaussianNoiseSource",
    "NoiseCorrelation",
    "NoiseKind",
    "NoisePoint",
    "NoiseSource",
    "VANTConfig",
    "VANTNoiseSource",
    "apply_gaussian_noise",
    "injected_noise",
    "noise_points",
    "sample_vant_std",
]

NoiseSource = Callable[[torch.Tensor], torch.Tensor]
"""Anything that maps a layer's clean activations to noisy ones."""


class NoiseKind(enum.Enum):
    """How the noise enters the activation y."""

    ADDITIVE = "additive"
    """y + s n."""
    MULTIPLICATIVE = "multiplicative"
    """y (1 + s n)."""


class NoiseCorrelation(enum.Enum):
    """How draws are shared across the neurons of a layer."""

    UNCORRELATED = "uncorrelated"
    """One draw per neuron and sample."""
    CORRELATED = "correlated"
    """One draw per sample, shared by every neuron of the layer (every channel and pixel for conv layers)."""


@dataclass(frozen=True, kw_only=True)
class ActivationNoise:
    """Gaussian noise of variance ``variance`` on the outputs of every noise point of a model."""

    variance: float
    """Variance v of the standard normal draw n scaled by sqrt(v) (dimensionless, in units of the
    activation output for additive noise, relative for multiplicative noise)."""
    kind: NoiseKind = NoiseKind.ADDITIVE
    """Additive or multiplicative."""
    correlation: NoiseCorrelation = NoiseCorrelation.UNCORRELATED
    """Per neuron or shared by the layer."""

    def __post_init__(self) -> None:
        check_float(self, "variance", 0.0, 1e6)
        check_enum(self, "kind", NoiseKind)
        check_enum(self, "correlation", NoiseCorrelation)

    @property
    def std(self) -> float:
        """sqrt(variance)."""
        return math.sqrt(self.variance)


@dataclass(frozen=True, kw_only=True)
class VANTConfig:
    """Variance-aware noisy training: a per-sample noise std ``a * sigma_train + theta * |z|``, z ~ N(0, 1).

    One std is drawn per training sample and shared by every noise point of the network for that sample,
    so the network sees a spread of noise levels around ``a * sigma_train`` instead of one fixed level.
    """

    sigma_train: float
    """Nominal noise standard deviation (dimensionless, like :attr:`ActivationNoise.std`)."""
    a: float = 1.0
    """Scale of the nominal std (dimensionless)."""
    theta: float = 0.0
    """Scale of the half-normal spread |z| added to the std (dimensionless)."""
    kind: NoiseKind = NoiseKind.ADDITIVE
    """Additive or multiplicative."""
    correlation: NoiseCorrelation = NoiseCorrelation.UNCORRELATED
    """Per neuron or shared by the layer."""

    def __post_init__(self) -> None:
        check_float(self, "sigma_train", 0.0, 1e3)
        check_float(self, "a", 0.0, 1e3)
        check_float(self, "theta", 0.0, 1e3)
        check_enum(self, "kind", NoiseKind)
        check_enum(self, "correlation", NoiseCorrelation)


class NoisePoint(nn.Module):
    """An injection point on a hidden layer's output; the identity unless a noise source is attached.

    The source is attached and removed by :func:`injected_noise`; it is not a parameter or a buffer and
    is never saved in a state dict.
    """

    def __init__(self) -> None:
        super().__init__()
        self.source: NoiseSource | None = None

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return h if self.source is None else self.source(h)

    def extra_repr(self) -> str:
        return "" if self.source is None else f"source={self.source!r}"


def noise_points(model: nn.Module) -> list[NoisePoint]:
    """Every :class:`NoisePoint` of ``model``, in module order."""
    return [m for m in model.modules() if isinstance(m, NoisePoint)]


@contextlib.contextmanager
def injected_noise(model: nn.Module, source: NoiseSource | None) -> Iterator[None]:
    """Attach ``source`` to every noise point of ``model`` inside the ``with`` block.

    ``source=None`` leaves the model clean (handy for code that is noisy only sometimes). Raises
    ``ValueError`` when a source is given and the model has no noise point.
    """
    if source is None:
        yield
        return
    points = noise_points(model)
    if not points:
        raise ValueError(f"model {type(model).__name__} has no NoisePoint to inject activation noise into")
    previous = [p.source for p in points]
    for p in points:
        p.source = source
    try:
        yield
    finally:
        for p, old in zip(points, previous):
            p.source = old


def _standard_normal(shape: Sequence[int], like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(tuple(shape), generator=generator, dtype=like.dtype, device=like.device)


def apply_gaussian_noise(
    h: torch.Tensor,
    std: float | torch.Tensor,
    *,
    kind: NoiseKind,
    correlation: NoiseCorrelation,
    generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Return ``h`` with Gaussian noise of standard deviation ``std``.

    Parameters
    ----------
    h : torch.Tensor
        Activations, shape ``(batch, ...)``.
    std : float or torch.Tensor
        Noise std; a tensor of shape ``(batch,)`` gives each sample its own std (VANT).
    kind, correlation
        See :class:`NoiseKind` and :class:`NoiseCorrelation`.
    generator : torch.Generator, optional
        Source of the draws (the global generator when ``None``).

    Notes
    -----
    With n ~ N(0, 1): additive :math:`y + s n`, multiplicative :math:`y (1 + s n)`; n has the shape of
    ``h`` (uncorrelated) or ``(batch, 1, ..., 1)`` (correlated). The noise is reparameterized, so gradients
    flow to ``h`` (and to ``std`` when it is a tensor).
    """
    if h.dim() == 0:
        raise ValueError("activation noise needs a batch dimension; got a 0-d tensor")
    ones = (1,) * (h.dim() - 1)
    shape = h.shape if correlation is NoiseCorrelation.UNCORRELATED else (h.shape[0], *ones)
    if isinstance(std, torch.Tensor):
        if std.shape != (h.shape[0],):
            raise ValueError(f"per-sample std must have shape ({h.shape[0]},), got {tuple(std.shape)}")
        std = std.reshape(h.shape[0], *ones)
    elif std == 0.0:
        return h
    noise = std * _standard_normal(shape, h, generator)
    if kind is NoiseKind.ADDITIVE:
        return h + noise
    return h * (1.0 + noise)


class GaussianNoiseSource:
    """A noise source applying one or more :class:`ActivationNoise` models in turn.

    Parameters
    ----------
    noise : ActivationNoise or sequence of ActivationNoise
        The noise models; several (e.g. uncorrelated and correlated) are applied one after the other.
    generator : torch.Generator, optional
        Source of the draws.
    """

    def __init__(self, noise: ActivationNoise | Sequence[ActivationNoise], *, generator: torch.Generator | None = None):
        models = (noise,) if isinstance(noise, ActivationNoise) else tuple(noise)
        for m in models:
            if not isinstance(m, ActivationNoise):
                raise ValueError(f"GaussianNoiseSource.noise must hold ActivationNoise objects, got {m!r}")
        self.noise = models
        self.generator = generator

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        for m in self.noise:
            h = apply_gaussian_noise(h, m.std, kind=m.kind, correlation=m.correlation, generator=self.generator)
        return h

    def __repr__(self) -> str:
        return f"GaussianNoiseSource({', '.join(repr(m) for m in self.noise)})"


def sample_vant_std(config: VANTConfig, batch_size: int, *, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per-sample noise std of VANT, shape ``(batch_size,)``.

    Notes
    -----
    :math:`\\sigma_i = a\\,\\sigma_{train} + \\theta\\,|z_i|`, :math:`z_i \\sim N(0, 1)` i.i.d. per sample,
    so :math:`E[\\sigma_i] = a\\sigma_{train} + \\theta\\sqrt{2/\\pi}` and
    :math:`Var[\\sigma_i] = \\theta^2 (1 - 2/\\pi)` (half-normal). Wang et al. (2025),
    doi:10.48550/arXiv.2503.16183.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size = {batch_size!r} must be a positive integer")
    device = generator.device if generator is not None else None
    z = torch.randn(batch_size, generator=generator, device=device)
    return config.a * config.sigma_train + config.theta * z.abs()


class VANTNoiseSource:
    """A noise source with one std per sample of the current batch, shared by every noise point.

    Build one per batch: the per-sample stds are drawn at construction (:func:`sample_vant_std`), and every
    noise point of the forward pass uses the same ones with fresh standard-normal draws.
    """

    def __init__(self, config: VANTConfig, batch_size: int, *, generator: torch.Generator | None = None):
        if not isinstance(config, VANTConfig):
            raise ValueError(f"VANTNoiseSource.config must be a VANTConfig, got {config!r}")
        self.config = config
        self.generator = generator
        self.std = sample_vant_std(config, batch_size, generator=generator)

    def __call__(self, h: torch.Tensor) -> torch.Tensor:
        std = self.std.to(device=h.device, dtype=h.dtype)
        return apply_gaussian_noise(
            h, std, kind=self.config.kind, correlation=self.config.correlation, generator=self.generator
        )

    def __repr__(self) -> str:
        return f"VANTNoiseSource({self.config!r})"
