"""Knowledge distillation from a clean teacher into a student trained under noise.

References
----------
G. Hinton, O. Vinyals and J. Dean, "Distilling the Knowledge in a Neural Network", arXiv:1503.02531 (2015),
doi:10.48550/arXiv.1503.02531.
C. Zhou, P. Kadambi, M. Mattina and P. N. Whatmough, "Noisy Machines: Understanding noisy neural networks
and enhancing robustness to analog hardware errors using distillation", arXiv:2001.04974 (2020),
doi:10.48550/arXiv.2001.04974 (a clean teacher and a noise-injected student).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch.nn import functional as F

from training._checks import check_float

__all__ = ["Distillation", "distillation_loss"]


@dataclass(frozen=True, kw_only=True)
class Distillation:
    """Settings of the distillation loss."""

    temperature: float = 4.0
    """Softmax temperature T applied to both teacher and student logits (dimensionless)."""
    alpha: float = 0.9
    """Weight of the soft (teacher) term; 1 - alpha weighs the cross-entropy with the labels."""

    def __post_init__(self) -> None:
        check_float(self, "temperature", 0.0, 1e3, open_low=True)
        check_float(self, "alpha", 0.0, 1.0)


def distillation_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    config: Distillation,
) -> torch.Tensor:
    """alpha T^2 KL(softmax(t/T) || softmax(s/T)) + (1 - alpha) CE(s, y), averaged over the batch.

    Notes
    -----
    .. math:: L = \\alpha T^2\\, \\frac{1}{B}\\sum_b \\mathrm{KL}\\big(\\mathrm{softmax}(t_b/T)\\,\\Vert\\,
              \\mathrm{softmax}(s_b/T)\\big) + (1 - \\alpha)\\, \\mathrm{CE}(s, y)

    The T^2 factor keeps the soft term's gradient scale independent of T (Hinton et al. 2015). The teacher
    logits are detached.
    """
    if not isinstance(config, Distillation):
        raise ValueError(f"config = {config!r} must be a Distillation")
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            f"student and teacher logits differ in shape: {tuple(student_logits.shape)} vs "
            f"{tuple(teacher_logits.shape)}"
        )
    t = config.temperature
    soft = F.kl_div(
        F.log_softmax(student_logits / t, dim=1),
        F.log_softmax(teacher_logits.detach() / t, dim=1),
        log_target=True,
        reduction="batchmean",
    )
    hard = F.cross_entropy(student_logits, labels)
    return config.alpha * t * t * soft + (1.0 - config.alpha) * hard
