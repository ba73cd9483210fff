"""Evaluation under noise: accuracy, noise sweeps with repeated draws, worst case, convergence speed.

Everything takes any ``nn.Module`` mapping images to logits. Activation noise needs the model to have
:class:`~training.noise.NoisePoint` modules (the models of :mod:`training.models` do); a chip-backed model
from ``crossbar.nn`` plugs in the same way. Every random draw comes from the ``generator`` passed in.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from training._checks import check_positive_ints
from training.datasets import Dataset
from training.noise import (
    ActivationNoise,
    GaussianNoiseSource,
    NoiseCorrelation,
    NoiseKind,
    injected_noise,
)

__all__ = [
    "NoiseSweep",
    "epochs_to_fraction_of_best",
    "evaluate_accuracy",
    "log_spaced_variances",
    "noise_sweep",
    "perturbed_weights",
    "weight_noise_sweep",
]


def _check_batch_size(batch_size: object) -> int:
    check_positive_ints(batch_size=batch_size)
    return batch_size


@torch.no_grad()
def evaluate_accuracy(
    model: nn.Module,
    data: Dataset,
    *,
    noise: ActivationNoise | Sequence[ActivationNoise] | None = None,
    generator: torch.Generator | None = None,
    batch_size: int = 2000,
) -> float:
    """Fraction of ``data`` classified correctly, with ``model`` in eval mode and optional activation noise.

    Parameters
    ----------
    model : nn.Module
        Maps a batch of images to logits.
    data : Dataset
        The split to score.
    noise : ActivationNoise or sequence of them, optional
        Noise on every noise point of ``model`` (fresh draws for every sample).
    generator : torch.Generator, optional
        Source of the noise draws.
    batch_size : int
        Samples per forward pass.

    Returns
    -------
    float
        Accuracy in [0, 1].
    """
    batch_size = _check_batch_size(batch_size)
    if len(data) == 0:
        raise ValueError("cannot evaluate on an empty dataset")
    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    source = None if noise is None else GaussianNoiseSource(noise, generator=generator)
    correct = 0
    try:
        with injected_noise(model, source):
            for start in range(0, len(data), batch_size):
                x = data.images[start : start + batch_size].to(device)
                y = data.labels[start : start + batch_size].to(device)
                correct += int((model(x).argmax(dim=1) == y).sum())
    finally:
        model.train(was_training)
    return correct / len(data)


def log_spaced_variances(v_min: float = 1e-3, v_max: float = 1.0, n: int = 40) -> tuple[float, ...]:
    """``n`` variances log-spaced from ``v_min`` to ``v_max`` inclusive."""
    if not 0 < v_min <= v_max or not math.isfinite(v_max):
        raise ValueError(f"need 0 < v_min <= v_max < inf, got v_min = {v_min!r}, v_max = {v_max!r}")
    check_positive_ints(n=n)
    if n == 1:
        return (float(v_max),)
    return tuple(float(v) for v in np.logspace(math.log10(v_min), math.log10(v_max), n))


@dataclass(frozen=True, eq=False)
class NoiseSweep:
    """Accuracy at each noise level over repeated draws."""

    levels: tuple[float, ...]
    """Swept values, ascending: variance v for activation noise, alpha for weight noise; for chip sweeps
    (:mod:`training.chip_eval`) the time since programming in s, the temperature in K or a noise factor."""
    accuracies: np.ndarray
    """Accuracy per level and draw, shape (n_levels, n_draws)."""
    label: str
    """What was swept, e.g. ``"additive uncorrelated activation noise"``."""

    @property
    def mean(self) -> np.ndarray:
        """Mean accuracy per level over the draws."""
        return self.accuracies.mean(axis=1)

    @property
    def std(self) -> np.ndarray:
        """Sample standard deviation per level over the draws (0 with one draw)."""
        n = self.accuracies.shape[1]
        return self.accuracies.std(axis=1, ddof=1) if n > 1 else np.zeros(len(self.levels))

    def at(self, level: float) -> tuple[float, float]:
        """``(mean, std)`` at the swept level equal to ``level``, else the closest one in log scale."""
        lv = np.asarray(self.levels, dtype=float)
        exact = np.flatnonzero(lv == level)
        if exact.size:
            i = int(exact[0])
        else:
            positive = np.flatnonzero(lv > 0)
            if not level > 0 or positive.size == 0:
                raise ValueError(f"level = {level!r} is not a swept level and cannot be matched in log scale")
            i = int(positive[np.argmin(np.abs(np.log(lv[positive]) - math.log(level)))])
        return float(self.mean[i]), float(self.std[i])

    def to_json(self) -> dict[str, object]:
        """Plain-JSON form (levels, accuracies per level and draw, label)."""
        return {"levels": list(self.levels), "accuracies": self.accuracies.tolist(), "label": self.label}

    @classmethod
    def from_json(cls, data: dict[str, object]) -> NoiseSweep:
        """Inverse of :meth:`to_json`."""
        levels = tuple(float(v) for v in data["levels"])  # type: ignore[union-attr]
        acc = np.asarray(data["accuracies"], dtype=float)
        if acc.ndim != 2 or acc.shape[0] != len(levels):
            raise ValueError(f"NoiseSweep JSON: accuracies of shape {acc.shape} do not match {len(levels)} levels")
        return cls(levels=levels, accuracies=acc, label=str(data["label"]))

    def worst_case(self, low: float | None = None, high: float | None = None) -> float:
        """Lowest accuracy of any single draw at any level in ``[low, high]`` (the whole sweep by default).

        This is the pessimistic figure for a chip whose noise level is only known to lie in the range.
        """
        lv = np.asarray(self.levels)
        mask = np.ones(len(lv), dtype=bool)
        if low is not None:
            mask &= lv >= low * (1 - 1e-12)
        if high is not None:
            mask &= lv <= high * (1 + 1e-12)
        if not mask.any():
            raise ValueError(f"no swept level in [{low}, {high}]")
        return float(self.accuracies[mask].min())


def _check_sweep_args(levels: Sequence[float], n_draws: int) -> tuple[float, ...]:
    levels = tuple(float(v) for v in levels)
    if not levels or any(not (v >= 0 and math.isfinite(v)) for v in levels):
        raise ValueError(f"levels = {levels!r} must be a non-empty sequence of finite numbers >= 0")
    check_positive_ints(n_draws=n_draws)
    return levels


def _sweep(levels: tuple[float, ...], n_draws: int, one: Callable[[float], float], label: str,
           progress: bool) -> NoiseSweep:
    from tqdm.auto import tqdm

    acc = np.empty((len(levels), n_draws))
    with tqdm(total=len(levels) * n_draws, desc=label, disable=not progress, leave=False) as bar:
        for i, v in enumerate(levels):
            for d in range(n_draws):
                acc[i, d] = one(v)
                bar.update()
    return NoiseSweep(levels=levels, accuracies=acc, label=label)


def noise_sweep(
    model: nn.Module,
    data: Dataset,
    *,
    variances: Sequence[float],
    kind: NoiseKind = NoiseKind.ADDITIVE,
    correlation: NoiseCorrelation = NoiseCorrelation.UNCORRELATED,
    n_draws: int = 3,
    generator: torch.Generator | None = None,
    batch_size: int = 2000,
    progress: bool = False,
) -> NoiseSweep:
    """Accuracy vs activation-noise variance, ``n_draws`` independent draws per level.

    Each draw scores the whole of ``data`` with fresh noise on every noise point of the model.
    """
    levels = _check_sweep_args(variances, n_draws)
    kind, correlation = NoiseKind(kind), NoiseCorrelation(correlation)

    def one(v: float) -> float:
        noise = ActivationNoise(variance=v, kind=kind, correlation=correlation)
        return evaluate_accuracy(model, data, noise=noise, generator=generator, batch_size=batch_size)

    return _sweep(levels, n_draws, one, f"{kind.value} {correlation.value} activation noise", progress)


@contextlib.contextmanager
def perturbed_weights(model: nn.Module, alpha: float, *, generator: torch.Generator | None = None) -> Iterator[None]:
    """Add weight noise ``W + sqrt(alpha |W|) n`` to every ``nn.Linear``/``nn.Conv2d`` weight inside the block.

    One draw for the whole block (a programmed state), restored exactly on exit. This is the seed model
    of DESIGN.md (Var = alpha |W|); per-MVM read noise on a simulated chip belongs to ``crossbar.nn``.
    """
    if not (alpha >= 0 and math.isfinite(alpha)):
        raise ValueError(f"alpha = {alpha!r} must be a finite number >= 0")
    layers = [m for m in model.modules() if isinstance(m, (nn.Linear, nn.Conv2d))]
    for layer in layers:
        if parametrize.is_parametrized(layer, "weight"):
            raise ValueError("perturbed_weights needs plain weights; call training.quantization.strip_qat first")
    saved = [layer.weight.detach().clone() for layer in layers]
    try:
        with torch.no_grad():
            for layer in layers:
                w = layer.weight
                n = torch.randn(w.shape, generator=generator, dtype=w.dtype, device=w.device)
                w.add_(torch.sqrt(alpha * w.abs()) * n)
        yield
    finally:
        with torch.no_grad():
            for layer, w0 in zip(layers, saved):
                layer.weight.copy_(w0)


def weight_noise_sweep(
    model: nn.Module,
    data: Dataset,
    *,
    alphas: Sequence[float],
    n_draws: int = 3,
    generator: torch.Generator | None = None,
    batch_size: int = 2000,
    progress: bool = False,
) -> NoiseSweep:
    """Accuracy vs weight-noise coefficient alpha (Var(dW) = alpha |W|), one weight draw per repetition."""
    levels = _check_sweep_args(alphas, n_draws)

    def one(alpha: float) -> float:
        with perturbed_weights(model, alpha, generator=generator):
            return evaluate_accuracy(model, data, batch_size=batch_size)

    return _sweep(levels, n_draws, one, "weight noise", progress)


def epochs_to_fraction_of_best(accuracies: Sequence[float], fraction: float = 0.9) -> int:
    """First epoch (1-based) whose accuracy reaches ``fraction`` of the best accuracy in ``accuracies``."""
    acc = [float(a) for a in accuracies]
    if not acc:
        raise ValueError("accuracies must not be empty")
    if not 0 < fraction <= 1:
        raise ValueError(f"fraction = {fraction!r} must be in (0, 1]")
    target = fraction * max(acc)
    return next(i + 1 for i, a in enumerate(acc) if a >= target)
