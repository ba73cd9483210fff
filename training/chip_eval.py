"""Evaluation on the simulated chip: accuracy vs time since programming, temperature and device noise.

A trained model's ``nn.Linear`` layers are run on a :class:`crossbar.Chip` through
:func:`crossbar.nn.convert_to_analog` (the model's own activations and noise points are kept); every
other part of the model stays digital. Two kinds of repetition give the spread of each point:

* chips: each is a fresh programming of the weights (programming noise, mismatch, stuck-at faults and
  drift exponents drawn anew), from a chip seed derived from the given chip's seed and the chip index;
* reads: the same programmed chip read again with fresh read noise (:func:`crossbar.nn.reseed_analog`
  with the read index), at every swept condition alike.

A time or temperature sweep programs each chip once and reads the same devices at every condition, as a
real chip ages after one programming. The draws of a point are ``n_chips * n_reads`` accuracies, returned
in a :class:`~training.evaluation.NoiseSweep` (levels are times in s or temperatures in K).
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from crossbar import Chip, DeviceProfile
from crossbar.nn import ReadConditions, convert_to_analog, program_analog, reseed_analog, set_read_conditions
from training.datasets import Dataset
from training.evaluation import NoiseSweep, evaluate_accuracy

__all__ = [
    "SECONDS_PER_YEAR",
    "chip_accuracy",
    "chip_accuracy_vs_temperature",
    "chip_accuracy_vs_time",
    "chip_seed",
    "chip_weight_noise_sweep",
    "log_spaced_times",
    "scaled_noise_profile",
]

SECONDS_PER_YEAR = 365.25 * 86400.0
"""One Julian year, s."""


def log_spaced_times(t_min_sec: float = 1.0, t_max_sec: float = SECONDS_PER_YEAR, n: int = 9) -> tuple[float, ...]:
    """``n`` times since programming log-spaced from ``t_min_sec`` to ``t_max_sec`` inclusive, s."""
    if not (0 < t_min_sec <= t_max_sec and math.isfinite(t_max_sec)):
        raise ValueError(f"need 0 s < t_min_sec <= t_max_sec < inf, got {t_min_sec!r} s and {t_max_sec!r} s")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"n = {n!r} must be a positive integer")
    if n == 1:
        return (float(t_max_sec),)
    return tuple(float(t) for t in np.logspace(math.log10(t_min_sec), math.log10(t_max_sec), n))


def chip_seed(chip: Chip, index: int) -> int:
    """Seed of the ``index``-th chip drawn from ``chip``: independent streams from (chip.seed, index)."""
    if isinstance(index, bool) or not isinstance(index, int) or index < 0:
        raise ValueError(f"index = {index!r} must be a non-negative integer")
    state = np.random.SeedSequence([chip.seed, 0x63686970, index]).generate_state(1, np.uint64)[0]
    return int(state >> np.uint64(1))


def _check_counts(n_chips: object, n_reads: object) -> None:
    for name, value in (("n_chips", n_chips), ("n_reads", n_reads)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} = {value!r} must be a positive integer")


def _plain_layer(layer: nn.Module) -> nn.Module:
    """An unparametrized ``nn.Linear``/``nn.Conv2d`` holding ``layer``'s effective (e.g. quantized) weight."""
    w = layer.weight.detach()
    bias = layer.bias is not None
    if isinstance(layer, nn.Linear):
        plain: nn.Module = nn.Linear(layer.in_features, layer.out_features, bias=bias, dtype=w.dtype, device=w.device)
    else:
        plain = nn.Conv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride, layer.padding,
                          layer.dilation, layer.groups, bias, layer.padding_mode, dtype=w.dtype, device=w.device)
    with torch.no_grad():
        plain.weight.copy_(w)
        if bias:
            plain.bias.copy_(layer.bias.detach())
    return plain.train(layer.training)


def _digital_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` with quantization-aware parametrizations folded in (the chip programs them).

    Parametrized layers are replaced in the copy by plain ones, rather than un-parametrized with
    :func:`~training.quantization.strip_qat`: a deep copy shares the parametrized class with the original,
    and removing a parametrization edits that class.
    """
    out = copy.deepcopy(model)
    if isinstance(out, (nn.Linear, nn.Conv2d)) and parametrize.is_parametrized(out, "weight"):
        return _plain_layer(out).eval()
    for parent in list(out.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, (nn.Linear, nn.Conv2d)) and parametrize.is_parametrized(child, "weight"):
                setattr(parent, name, _plain_layer(child))
    return out.eval()


def _analog(model: nn.Module, chip: Chip, index: int) -> nn.Module:
    analog = convert_to_analog(model, Chip(chip.profile, chip.config, seed=chip_seed(chip, index)), inplace=False)
    program_analog(analog)
    return analog


def _sweep_conditions(
    model: nn.Module,
    data: Dataset,
    chip: Chip,
    levels: tuple[float, ...],
    conditions: Callable[[float], ReadConditions],
    *,
    n_chips: int,
    n_reads: int,
    batch_size: int,
    label: str,
) -> NoiseSweep:
    _check_counts(n_chips, n_reads)
    digital = _digital_copy(model)
    acc = np.empty((len(levels), n_chips * n_reads))
    for c in range(n_chips):
        analog = _analog(digital, chip, c)
        for i, level in enumerate(levels):
            set_read_conditions(analog, conditions(level))
            for r in range(n_reads):
                reseed_analog(analog, r)
                acc[i, c * n_reads + r] = evaluate_accuracy(analog, data, batch_size=batch_size)
    return NoiseSweep(levels=levels, accuracies=acc, label=label)


def _check_levels(levels: Sequence[float], name: str, unit: str) -> tuple[float, ...]:
    out = tuple(float(v) for v in levels)
    if not out or any(not (math.isfinite(v) and v > 0) for v in out):
        raise ValueError(f"{name} = {levels!r} must be a non-empty sequence of finite values > 0 {unit}")
    return out


def chip_accuracy(
    model: nn.Module,
    data: Dataset,
    chip: Chip,
    *,
    conditions: ReadConditions | None = None,
    n_chips: int = 3,
    n_reads: int = 1,
    batch_size: int = 2000,
) -> np.ndarray:
    """Accuracies of ``model`` run on ``n_chips`` programmings of ``chip``, ``n_reads`` reads each.

    Parameters
    ----------
    model : nn.Module
        A trained model (left untouched: a converted copy runs on the chip).
    data : Dataset
        The split to score.
    chip : Chip
        Profile, configuration and base seed of the chips.
    conditions : ReadConditions, optional
        Time since programming, temperature and drift compensation of the reads (default: at t0, at the
        programming temperature).
    n_chips, n_reads : int
        Programmings and fresh-read-noise repetitions per programming.
    batch_size : int
        Samples per forward pass.

    Returns
    -------
    numpy.ndarray
        Shape ``(n_chips * n_reads,)``, chip-major.
    """
    cond = ReadConditions() if conditions is None else conditions
    sweep = _sweep_conditions(
        model, data, chip, (1.0,), lambda _: cond, n_chips=n_chips, n_reads=n_reads, batch_size=batch_size,
        label="chip",
    )
    return sweep.accuracies[0]


def chip_accuracy_vs_time(
    model: nn.Module,
    data: Dataset,
    chip: Chip,
    *,
    times_sec: Sequence[float] | None = None,
    temperature_kelvin: float | None = None,
    drift_compensation: bool | None = None,
    n_chips: int = 3,
    n_reads: int = 1,
    batch_size: int = 2000,
) -> NoiseSweep:
    """Accuracy vs time since programming (default 1 s to 1 year, 9 log-spaced points).

    Each chip is programmed once and read at every time (drift and the time-dependent 1/f read noise
    of the profile act); ``temperature_kelvin`` and ``drift_compensation`` are held fixed. Levels of the
    returned sweep are the times, s.
    """
    times = _check_levels(log_spaced_times() if times_sec is None else times_sec, "times_sec", "s")
    times = tuple(sorted(times))
    return _sweep_conditions(
        model, data, chip, times,
        lambda t: ReadConditions(time_sec=t, temperature_kelvin=temperature_kelvin, drift_compensation=drift_compensation),
        n_chips=n_chips, n_reads=n_reads, batch_size=batch_size,
        label=f"chip {chip.profile.name}: accuracy vs time since programming"
        + (", drift compensation" if drift_compensation else ""),
    )


def chip_accuracy_vs_temperature(
    model: nn.Module,
    data: Dataset,
    chip: Chip,
    *,
    temperatures_kelvin: Sequence[float],
    time_sec: float | None = None,
    drift_compensation: bool | None = None,
    n_chips: int = 3,
    n_reads: int = 1,
    batch_size: int = 2000,
) -> NoiseSweep:
    """Accuracy vs chip temperature during reads, at a fixed time since programming.

    Temperature acts through the profile's ``[temperature]`` coefficients (conductance and drift rate);
    a profile without them gives a flat curve. Levels of the returned sweep are temperatures, K.
    """
    temps = tuple(sorted(_check_levels(temperatures_kelvin, "temperatures_kelvin", "K")))
    return _sweep_conditions(
        model, data, chip, temps,
        lambda k: ReadConditions(time_sec=time_sec, temperature_kelvin=k, drift_compensation=drift_compensation),
        n_chips=n_chips, n_reads=n_reads, batch_size=batch_size,
        label=f"chip {chip.profile.name}: accuracy vs temperature",
    )


def scaled_noise_profile(profile: DeviceProfile, factor: float) -> DeviceProfile:
    """``profile`` with every device-noise standard deviation multiplied by ``factor``.

    Scaled: the programming-noise polynomial and the mismatch std (static, per programming) and the
    read noise (``alpha_siemens`` by ``factor**2`` since it is a variance coefficient; the 1/f amplitude
    ``flicker_q_rel`` and its cap by ``factor``). Conductance window, faults, drift and temperature are
    kept. The result is built in code: its ``toml_text`` and ``path`` are empty and its name says the factor.
    The profile's plausibility bounds still apply (e.g. a mismatch std above 1 is refused with a
    ``ValueError`` naming the field).
    """
    if isinstance(factor, bool) or not isinstance(factor, (int, float)) or not (math.isfinite(factor) and factor >= 0):
        raise ValueError(f"factor = {factor!r} must be a finite number >= 0")
    f = float(factor)
    prog = profile.programming
    read = profile.read_noise
    return replace(
        profile,
        name=f"{profile.name}-noise-x{f:g}",
        description=f"{profile.description} [device-noise stds scaled by {f:g}]",
        programming=replace(prog, poly_siemens=tuple(c * f for c in prog.poly_siemens),
                            mismatch_std_rel=prog.mismatch_std_rel * f),
        read_noise=replace(read, alpha_siemens=read.alpha_siemens * f * f, flicker_q_rel=read.flicker_q_rel * f,
                           flicker_q_max_rel=read.flicker_q_max_rel * f),
        toml_text="",
        path="",
    )


def chip_weight_noise_sweep(
    model: nn.Module,
    data: Dataset,
    chip: Chip,
    *,
    factors: Sequence[float],
    conditions: ReadConditions | None = None,
    n_chips: int = 3,
    n_reads: int = 1,
    batch_size: int = 2000,
) -> NoiseSweep:
    """Accuracy vs the chip's device-noise level: stds of ``chip.profile`` scaled by each factor.

    Factor 1 is the profile as measured; 0 removes programming, mismatch and read noise (drift, faults and
    converters stay as configured). Each factor and chip index uses the same chip seed, so the curves
    differ only in the noise amplitude (common random numbers). Levels of the returned sweep are the factors.
    """
    levels = tuple(float(f) for f in factors)
    if not levels or any(not (math.isfinite(f) and f >= 0) for f in levels):
        raise ValueError(f"factors = {factors!r} must be a non-empty sequence of finite numbers >= 0")
    _check_counts(n_chips, n_reads)
    cond = ReadConditions() if conditions is None else conditions
    digital = _digital_copy(model)
    acc = np.empty((len(levels), n_chips * n_reads))
    for i, f in enumerate(levels):
        scaled = Chip(scaled_noise_profile(chip.profile, f), chip.config, seed=chip.seed)
        for c in range(n_chips):
            analog = _analog(digital, scaled, c)
            set_read_conditions(analog, cond)
            for r in range(n_reads):
                reseed_analog(analog, r)
                acc[i, c * n_reads + r] = evaluate_accuracy(analog, data, batch_size=batch_size)
    return NoiseSweep(levels=levels, accuracies=acc, label=f"chip {chip.profile.name}: device-noise scale")
