"""The stochastic residual layer (SRL): a residual block that trains through the chip's noise model.

.. math:: h' = \\varphi\\big(Q_b(W h + b + \\varepsilon)\\big) + h, \\qquad
          \\varepsilon = \\sqrt{\\beta\\,|W h|}\\;\\xi, \\quad \\xi \\sim N(0, 1)

The noise is data dependent (its variance grows with the magnitude of the analog product, as read noise
of a crossbar does, DESIGN.md stage 4) and reparameterized, so gradients reach W and h through the noise
amplitude. ``Q_b`` is the ADC: a ``b``-bit signed mid-tread quantizer on ``[-preact_max, preact_max]`` with
a straight-through gradient (:func:`training.quantization.quantize_ste`). The identity path carries the
signal past the noisy, quantized branch. ``SRLMode.VANILLA`` is the ablation: a plain residual block
``phi(W h + b) + h`` with no noise and no quantization.

The layer form is the project's (DESIGN.md, "Training"); our literature search found no citable source
for this exact layer, so it is documented here rather than attributed. Its ingredients are published:
residual learning (K. He, X. Zhang, S. Ren and J. Sun, CVPR 2016, doi:10.1109/CVPR.2016.90), the
reparameterization of Gaussian noise (D. P. Kingma and M. Welling, arXiv:1312.6114,
doi:10.48550/arXiv.1312.6114) and the straight-through estimator (Bengio et al., doi:10.48550/arXiv.1308.3432).
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

import torch
from torch import nn

from training._checks import check_enum, check_float, check_int
from training._init import init_layer_
from training.activations import ActivationKind, make_activation
from training.quantization import MAX_BITS, MIN_BITS, quantize_ste

__all__ = ["SRLConfig", "SRLMode", "StochasticResidualLayer", "bind_generator"]

_VARIANCE_FLOOR = 1e-12
"""Added to beta |W h| under the square root so its gradient stays finite where W h = 0."""


class SRLMode(enum.Enum):
    """Stochastic residual layer or the vanilla-residual ablation."""

    STOCHASTIC = "stochastic"
    """phi(Q_b(W h + b + eps)) + h with data-dependent noise eps."""
    VANILLA = "vanilla"
    """phi(W h + b) + h: no noise, no quantization (ablation)."""


@dataclass(frozen=True, kw_only=True)
class SRLConfig:
    """Parameters of a :class:`StochasticResidualLayer`."""

    beta: float = 0.01
    """Data-dependent noise coefficient: Var(eps) = beta |W h| (dimensionless, in pre-activation units)."""
    bits: int | None = 8
    """ADC resolution of Q_b (2^bits - 1 levels); ``None`` for no quantization."""
    preact_max: float = 8.0
    """Full scale of Q_b: pre-activations are clipped to [-preact_max, preact_max] (dimensionless)."""
    mode: SRLMode = SRLMode.STOCHASTIC
    """Stochastic residual layer or the vanilla-residual ablation."""
    noise_in_eval: bool = False
    """Keep drawing eps in ``eval()`` mode (``False``: eps only while training; Q_b always applies)."""

    def __post_init__(self) -> None:
        check_float(self, "beta", 0.0, 1e3)
        check_int(self, "bits", MIN_BITS, MAX_BITS, allow_none=True)
        check_float(self, "preact_max", 0.0, 1e6, open_low=True)
        check_enum(self, "mode", SRLMode)
        if not isinstance(self.noise_in_eval, bool):
            raise ValueError(f"SRLConfig.noise_in_eval = {self.noise_in_eval!r} must be True or False")


class StochasticResidualLayer(nn.Module):
    """h' = phi(Q_b(W h + b + eps)) + h with eps = sqrt(beta |W h|) xi (see the module docstring).

    Parameters
    ----------
    features : int
        Width of h and h' (the block is square so the identity path needs no projection).
    config : SRLConfig
        Noise, quantization and mode.
    activation : ActivationKind
        phi.
    generator : torch.Generator, optional
        Source of xi and of the initial weights; the trainer re-binds it with :func:`bind_generator`.

    Notes
    -----
    Gradients: exact through W h + b, the noise amplitude sqrt(beta |W h| + 1e-12) and phi; straight-through
    (clipped) through Q_b.
    """

    def __init__(
        self,
        features: int,
        *,
        config: SRLConfig | None = None,
        activation: ActivationKind = ActivationKind.SIGMOID,
        generator: torch.Generator | None = None,
    ):
        super().__init__()
        if isinstance(features, bool) or not isinstance(features, int) or features < 1:
            raise ValueError(f"features = {features!r} must be a positive integer")
        config = SRLConfig() if config is None else config
        if not isinstance(config, SRLConfig):
            raise ValueError(f"config = {config!r} must be an SRLConfig")
        self.config = config
        self.activation_kind = ActivationKind(activation)
        self.linear = nn.Linear(features, features)
        self.activation = make_activation(self.activation_kind)
        self.generator = generator
        init_layer_(self.linear, generator)

    def preactivation(self, h: torch.Tensor) -> torch.Tensor:
        """The argument of phi: Q_b(W h + b + eps) (stochastic) or W h + b (vanilla)."""
        # Through the module (not F.linear), so that convert_to_analog runs W h on the chip.
        z = self.linear(h)
        wh = z - self.linear.bias
        cfg = self.config
        if cfg.mode is SRLMode.VANILLA:
            return z
        if cfg.beta > 0.0 and (self.training or cfg.noise_in_eval):
            xi = torch.randn(wh.shape, generator=self.generator, dtype=wh.dtype, device=wh.device)
            z = z + torch.sqrt(cfg.beta * wh.abs() + _VARIANCE_FLOOR) * xi
        if cfg.bits is not None:
            z = quantize_ste(z, bits=cfg.bits, x_max=cfg.preact_max)
        return z

    def forward_trace(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(h', z)`` where z is the pre-activation fed to phi."""
        z = self.preactivation(h)
        return self.activation(z) + h, z

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        return self.forward_trace(h)[0]

    def extra_repr(self) -> str:
        c = self.config
        return f"mode={c.mode.value}, beta={c.beta:g}, bits={c.bits}, preact_max={c.preact_max:g}"


def bind_generator(model: nn.Module, generator: torch.Generator | None) -> None:
    """Make every :class:`StochasticResidualLayer` of ``model`` draw its noise from ``generator``."""
    for m in model.modules():
        if isinstance(m, StochasticResidualLayer):
            m.generator = generator
