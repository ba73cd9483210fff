"""Explainable regularizers against noise on analog activations (Duque et al., 2024).

Each term removes one mechanism by which activation noise reaches the output. Let layer l's outputs carry
noise n_j and let W be the next layer's weights (rows i = output neurons, columns j = inputs).

* Correlated additive noise (one draw c per sample shared by the layer) shifts the next pre-activation by
  ``c * sum_j W_ij``: zero row sums make the next layer blind to it -> :func:`row_sum_penalty`.
* Uncorrelated noise of variance v adds variance ``v * sum_j W_ij**2`` to the next pre-activation ->
  :func:`l2_penalty` on the hidden and output weights downstream of noise.
* Noise on a pre-activation z reaches the layer's output with gain phi'(z): saturated neurons (small
  phi') suppress it -> :func:`saturation_penalty`, the sum of phi' at the pre-activations of layers fed by a
  noisy layer.

References
----------
A. Duque, P. Freire, E. Manuylovich, D. Stoliarov, J. Prilepsky and S. Turitsyn, "Improving Analog Neural
Network Robustness: A Noise-Agnostic Approach with Explainable Regularizations", arXiv:2409.08633 (2024),
doi:10.48550/arXiv.2409.08633.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from training._checks import check_float
from training.activations import ActivationKind, activation_derivative
from training.models import ForwardTrace, NoiseAwareModel

__all__ = [
    "ExplainableRegularization",
    "explainable_penalty",
    "l2_penalty",
    "row_sum_penalty",
    "saturation_penalty",
]


def _check_weights(weights: Sequence[torch.Tensor]) -> None:
    if isinstance(weights, torch.Tensor):
        raise ValueError("weights must be a sequence of tensors, not one tensor (wrap it in a list)")
    for i, w in enumerate(weights):
        if not isinstance(w, torch.Tensor) or w.dim() < 2:
            raise ValueError(f"weights[{i}] must be a weight tensor with >= 2 dims (out, in, ...)")


def row_sum_penalty(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum over layers and output neurons of |row sum|: ``sum_l sum_i |sum_j W_l[i, j]|``.

    Conv weights (out, in, kh, kw) sum over everything but the output channel, the shift a correlated
    draw on every input pixel and channel causes.

    Notes
    -----
    .. math:: R_{corr} = \\sum_l \\sum_i \\Big|\\sum_j W^{(l)}_{ij}\\Big|
    """
    _check_weights(weights)
    if not weights:
        raise ValueError("row_sum_penalty needs at least one weight tensor")
    return sum(w.flatten(1).sum(dim=1).abs().sum() for w in weights)


def l2_penalty(weights: Sequence[torch.Tensor]) -> torch.Tensor:
    """Sum of squared weights: ``sum_l ||W_l||_F**2``.

    Notes
    -----
    .. math:: R_{L2} = \\sum_l \\sum_{ij} \\big(W^{(l)}_{ij}\\big)^2
    """
    _check_weights(weights)
    if not weights:
        raise ValueError("l2_penalty needs at least one weight tensor")
    return sum(w.pow(2).sum() for w in weights)


def saturation_penalty(preactivations: Sequence[torch.Tensor], activation: ActivationKind) -> torch.Tensor:
    """Sum over layers and neurons of phi'(z), averaged over the batch.

    Parameters
    ----------
    preactivations : sequence of torch.Tensor
        Pre-activations z of shape (batch, ...) of the layers whose input is noisy.
    activation : ActivationKind
        phi.

    Notes
    -----
    .. math:: R_{sat} = \\sum_l \\frac{1}{B} \\sum_{b=1}^{B} \\sum_i \\varphi'\\big(z^{(l)}_{bi}\\big)

    Duque et al. sum over the batch too; the mean makes the weight independent of the batch size.
    """
    if isinstance(preactivations, torch.Tensor):
        raise ValueError("preactivations must be a sequence of tensors, not one tensor (wrap it in a list)")
    if not preactivations:
        raise ValueError("saturation_penalty needs at least one pre-activation tensor")
    kind = ActivationKind(activation)
    return sum(activation_derivative(kind, z).flatten(1).sum(dim=1).mean() for z in preactivations)


@dataclass(frozen=True, kw_only=True)
class ExplainableRegularization:
    """Weights of the explainable regularizers (all dimensionless; 0 switches a term off).

    Duque et al. tune the uncorrelated-noise recipe as ``6e-3 * (0.01 R_sat + 0.015 ||W_2||^2 +
    3.0 ||W_out||^2)`` (saturation sum over a batch) and the correlated-noise one as the row-sum penalty on
    W_2 and W_out.
    """

    row_sum: float = 0.0
    """Weight of :func:`row_sum_penalty` on every downstream layer (against correlated noise)."""
    saturation: float = 0.0
    """Weight of :func:`saturation_penalty` on the noisy-input pre-activations."""
    l2_hidden: float = 0.0
    """Weight of :func:`l2_penalty` on the hidden downstream layers (all but the output layer)."""
    l2_output: float = 0.0
    """Weight of :func:`l2_penalty` on the output layer."""

    def __post_init__(self) -> None:
        for name in ("row_sum", "saturation", "l2_hidden", "l2_output"):
            check_float(self, name, 0.0, 1e6)

    def scaled(self, factor: float) -> ExplainableRegularization:
        """Every weight multiplied by ``factor`` (a strength knob for trade-off sweeps)."""
        if not factor >= 0:
            raise ValueError(f"factor = {factor!r} must be >= 0")
        return ExplainableRegularization(
            row_sum=self.row_sum * factor,
            saturation=self.saturation * factor,
            l2_hidden=self.l2_hidden * factor,
            l2_output=self.l2_output * factor,
        )


def explainable_penalty(
    model: NoiseAwareModel, trace: ForwardTrace, config: ExplainableRegularization
) -> torch.Tensor:
    """The weighted sum of the explainable regularizers for one forward pass of ``model``.

    Notes
    -----
    .. math:: R = \\lambda_{rs} R_{corr}(W_{down}) + \\lambda_{sat} R_{sat}
              + \\lambda_h R_{L2}(W_{down,hidden}) + \\lambda_o R_{L2}(W_{out})

    where :math:`W_{down}` are the layers fed by a noise point (``model.downstream_layers()``).
    """
    if not isinstance(config, ExplainableRegularization):
        raise ValueError(f"config = {config!r} must be an ExplainableRegularization")
    layers = model.downstream_layers()
    device = trace.logits.device
    total = torch.zeros((), device=device, dtype=trace.logits.dtype)
    if not layers:
        return total
    weights = [layer.weight for layer in layers]
    if config.row_sum:
        total = total + config.row_sum * row_sum_penalty(weights)
    if config.saturation and trace.noisy_preactivations:
        total = total + config.saturation * saturation_penalty(trace.noisy_preactivations, model.activation_kind)
    if config.l2_hidden and len(weights) > 1:
        total = total + config.l2_hidden * l2_penalty(weights[:-1])
    if config.l2_output:
        total = total + config.l2_output * l2_penalty(weights[-1:])
    return total
