"""Chip-in-the-loop torch layers: ``AnalogLinear``, ``AnalogConv2d`` and ``AnalogActivation``.

``AnalogLinear`` and ``AnalogConv2d`` are ``nn.Linear`` and ``nn.Conv2d`` whose product runs on a
simulated crossbar chip (:mod:`crossbar.nn.functional`); they keep the torch parameters, ``state_dict``
keys and ``isinstance`` checks of the digital layers, so optimizers, checkpoints and code that walks a
model's ``nn.Linear``/``nn.Conv2d`` modules work unchanged.

Lazy programming
----------------
A layer programs its weights onto the chip at its first forward and re-programs at a forward only when
the weights changed since: the weight is another tensor, or the same tensor modified in place (its
version counter moved: an optimizer step, ``copy_``, ``load_state_dict``) *and* its values differ from
the programmed ones. Every programming is a fresh draw of the devices (programming noise, mismatch,
drift exponents, faults), like re-programming a real chip, and is counted in ``n_programmings``.
Inference (train or eval mode) does not modify weights, so it never re-programs a programmed layer;
changing the read conditions, reseeding or saving never re-programs either. :meth:`AnalogLayer.program`
re-programs explicitly. Writes that bypass torch's version counter (through ``.numpy()`` views) are
not seen: call :meth:`~AnalogLayer.program` after them.

Activation noise
----------------
The layers add their bias digitally after the array, so the chip's analog activation (function and
noise, ``ChipConfig.activation``) cannot run inside them: a layer requires ``Activation.IDENTITY`` and
reads the array without activation noise. The nonlinearity is the model's own (a torch activation);
analog activation noise is applied by :class:`AnalogActivation`, which carries crossbar's
activation-noise model (``ActivationConfig``) in torch. :func:`~crossbar.nn.convert_to_analog` puts
one in place of every ``nn.ReLU``/``nn.Sigmoid``/``nn.Tanh`` when the chip's configuration enables
activation noise.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from crossbar._checks import check_positive_ints
from crossbar.chip import Chip, ProgrammedMatrix
from crossbar.config import Activation, ActivationConfig, ChipConfig, NoiseKind
from crossbar.drift import MAX_TEMPERATURE_KELVIN
from crossbar.nn.functional import analog_conv2d, analog_linear, conv_weight_matrix

__all__ = ["AnalogActivation", "AnalogConv2d", "AnalogLayer", "AnalogLinear", "ReadConditions"]


@dataclass(frozen=True, kw_only=True)
class ReadConditions:
    """When and how an analog layer's chip is read: time since programming, temperature, compensation."""

    time_sec: float | None = None
    """Time since programming of every read, s; ``None``: the profile's t0 (no drift)."""
    temperature_kelvin: float | None = None
    """Chip temperature during reads, K; ``None``: the programming temperature."""
    drift_compensation: bool | None = None
    """Global drift compensation (a calibration read per tile rescales outputs digitally);
    ``None``: as the chip's ``Stages.drift_compensation``."""

    def __post_init__(self) -> None:
        t, temp, dc = self.time_sec, self.temperature_kelvin, self.drift_compensation
        if t is not None:
            if isinstance(t, bool) or not isinstance(t, (int, float, np.integer, np.floating)) or not math.isfinite(t) or t < 0:
                raise ValueError(f"ReadConditions.time_sec = {t!r} s must be a finite time since programming >= 0 s or None")
            object.__setattr__(self, "time_sec", float(t))
        if temp is not None:
            ok = not isinstance(temp, bool) and isinstance(temp, (int, float, np.integer, np.floating))
            if not ok or not math.isfinite(temp) or not 0 < temp <= MAX_TEMPERATURE_KELVIN:
                raise ValueError(
                    f"ReadConditions.temperature_kelvin = {temp!r} K must be in (0, {MAX_TEMPERATURE_KELVIN:g}] K or None"
                )
            object.__setattr__(self, "temperature_kelvin", float(temp))
        if dc is not None and not isinstance(dc, bool):
            raise ValueError(f"ReadConditions.drift_compensation = {dc!r} must be True, False or None")


def activation_noise_active(config: ChipConfig) -> bool:
    """Whether ``config`` adds analog activation noise (stage on and a nonzero std)."""
    act = config.activation
    return config.stages.activation_noise and (act.uncorrelated_std_rel > 0 or act.correlated_std_rel > 0)


class AnalogLayer(nn.Module):
    """Base of the layers whose product runs on a crossbar chip; owns the programming and the read setup.

    Not instantiated directly: see :class:`AnalogLinear` and :class:`AnalogConv2d`. The module
    docstring states the lazy-programming rule.

    Attributes
    ----------
    chip : Chip
        The chip the layer programs onto (profile, configuration and seed); shared by every layer of a
        converted model, so the k-th programming of the model is the same for a given seed.
    n_programmings : int
        How many times this layer has programmed the chip.
    """

    chip: Chip
    n_programmings: int

    def _init_analog(self, chip: Chip | None, read_conditions: ReadConditions | None) -> None:
        if chip is None:
            chip = Chip()
        if not isinstance(chip, Chip):
            raise ValueError(f"chip must be a crossbar.Chip, got {type(chip).__name__}")
        if chip.config.activation.function is not Activation.IDENTITY:
            raise ValueError(
                f"chip.config.activation.function = {chip.config.activation.function.value!r}: analog layers add the bias "
                "digitally after the array, so the chip activation must be 'identity' (use a torch activation or AnalogActivation)"
            )
        self.chip = chip
        self.n_programmings = 0
        self._read_conditions = _check_conditions(read_conditions)
        self._matrix: ProgrammedMatrix | None = None
        self._weight_ref: weakref.ref[Tensor] | None = None
        self._weight_key: tuple[int, int] | None = None
        self._pending_seed: int | None = None

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_weight_ref"] = None  # weak references do not pickle; the next forward compares values
        state["_weight_key"] = None
        return state

    # ------------------------------------------------------------------ to be provided by the layer
    def _weight_matrix(self) -> Tensor:
        """The weight as the (out, in) matrix that is programmed."""
        raise NotImplementedError

    # ------------------------------------------------------------------ read conditions
    @property
    def read_conditions(self) -> ReadConditions:
        """Time since programming, temperature and drift compensation of every read of this layer."""
        return self._read_conditions

    @read_conditions.setter
    def read_conditions(self, conditions: ReadConditions) -> None:
        self._read_conditions = _check_conditions(conditions)
        if self._matrix is not None:
            self._matrix = self._for_reading(self._matrix)

    def read_config(self) -> ChipConfig:
        """The chip configuration the layer reads with: the chip's, with the drift compensation of
        :attr:`read_conditions` and without analog activation (identity, no activation noise)."""
        cfg = self.chip.config
        stages = cfg.stages
        dc = self._read_conditions.drift_compensation
        if dc is not None and dc != stages.drift_compensation:
            stages = replace(stages, drift_compensation=dc)
        activation = ActivationConfig() if activation_noise_active(cfg) else cfg.activation
        if stages is cfg.stages and activation is cfg.activation:
            return cfg
        return replace(cfg, stages=stages, activation=activation)

    def _for_reading(self, matrix: ProgrammedMatrix) -> ProgrammedMatrix:
        """``matrix`` with the same devices and read stream, under :meth:`read_config` (no new draws)."""
        cfg = self.read_config()
        if matrix.config == cfg:
            return matrix
        reader = Chip(self.chip.profile, cfg, seed=self.chip.seed)
        return reader.restore(matrix.state_arrays(), spawn_key=matrix.spawn_key, read_rng_state=matrix.read_rng.bit_generator.state)

    # ------------------------------------------------------------------ programming
    @property
    def programmed_matrix(self) -> ProgrammedMatrix | None:
        """The programmed chip matrix the layer reads (``None`` before the first programming)."""
        return self._matrix

    def _weight_unchanged(self) -> bool:
        """Fast check: the programmed weight tensor, not modified in place since (version, storage)."""
        w = self.weight
        ref = self._weight_ref
        return ref is not None and ref() is w and self._weight_key == (w._version, w.data_ptr())

    def _remember_weight(self) -> None:
        w = self.weight
        self._weight_ref = weakref.ref(w)
        self._weight_key = (w._version, w.data_ptr())

    def weights_changed(self) -> bool:
        """Whether the weights differ from the programmed ones (``True`` when never programmed)."""
        if self._matrix is None:
            return True
        if self._weight_unchanged():
            return False
        w = self._weight_matrix().detach()
        if tuple(w.shape) != self._matrix.weights.shape or not np.array_equal(self._matrix.weights, w.cpu().numpy()):
            return True
        self._remember_weight()  # touched but equal (e.g. restored by load_state_dict): nothing to program
        return False

    def program(self) -> ProgrammedMatrix:
        """Program the current weights onto the chip now (fresh device draws), changed or not."""
        w = self._weight_matrix().detach()
        if w.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"{self._get_name()}: weight has dtype {w.dtype}; the chip programs float32 or float64 weights")
        try:
            matrix = self.chip.program(w.cpu().numpy())
        except ValueError as exc:
            raise ValueError(f"{self._get_name()}: cannot program the weights: {exc}") from None
        self._matrix = self._for_reading(matrix)
        self._remember_weight()
        self.n_programmings += 1
        if self._pending_seed is not None:
            self._matrix.reseed(self._pending_seed)
            self._pending_seed = None
        return self._matrix

    def _matrix_for_forward(self) -> ProgrammedMatrix:
        if self.weights_changed():
            return self.program()
        assert self._matrix is not None  # weights_changed() is True without a matrix
        return self._matrix

    def reseed(self, seed: int) -> None:
        """Restart the read-noise stream from ``seed`` (device draws unchanged).

        Before the first programming the seed is kept and applied to the next programmed matrix.
        """
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
            raise ValueError(f"seed = {seed!r} must be a non-negative integer")
        if self._matrix is None:
            self._pending_seed = int(seed)
        else:
            self._matrix.reseed(int(seed))

    def _restore(
        self, arrays: dict[str, np.ndarray] | None, spawn_key: tuple[int, ...], read_rng_state: dict | None, n_programmings: int
    ) -> None:
        """Install a saved programmed state (:mod:`crossbar.nn.state_io`); never draws devices.

        ``arrays`` is ``None`` for a layer saved before its first programming.
        """
        if arrays is None:
            self._matrix = None
        else:
            reader = Chip(self.chip.profile, self.read_config(), seed=self.chip.seed)
            self._matrix = reader.restore(arrays, spawn_key=spawn_key, read_rng_state=read_rng_state)
        self._weight_ref = None  # the next forward compares the weights with the restored ones
        self._weight_key = None
        self.n_programmings = int(n_programmings)
        self._pending_seed = None

    def _analog_repr(self) -> str:
        parts = [f"profile={self.chip.profile.name!r}", f"seed={self.chip.seed}"]
        c = self._read_conditions
        if c.time_sec is not None:
            parts.append(f"time_sec={c.time_sec:g}")
        if c.temperature_kelvin is not None:
            parts.append(f"temperature_kelvin={c.temperature_kelvin:g}")
        if c.drift_compensation is not None:
            parts.append(f"drift_compensation={c.drift_compensation}")
        return ", ".join(parts)


def _check_conditions(conditions: ReadConditions | None) -> ReadConditions:
    if conditions is None:
        return ReadConditions()
    if not isinstance(conditions, ReadConditions):
        raise ValueError(f"read_conditions must be a ReadConditions, got {type(conditions).__name__}")
    return conditions


class AnalogLinear(AnalogLayer, nn.Linear):
    """``nn.Linear`` whose product ``x W^T`` runs on a simulated crossbar chip; the bias is digital.

    Parameters
    ----------
    in_features, out_features : int
        Sizes of each input and output sample.
    bias : bool
        Learn an additive bias, added digitally after the chip.
    chip : Chip, optional
        The chip to program onto; default ``Chip()`` (ideal devices, default converters). Layers of one
        model should share one chip (:func:`~crossbar.nn.convert_to_analog` does).
    read_conditions : ReadConditions, optional
        Time since programming, temperature and drift compensation of the reads.
    device, dtype
        Of the parameters, as for ``nn.Linear``.

    Notes
    -----
    Forward: ``chip(x W^T) + b`` with every stage the chip enables, programmed lazily (module docstring
    of :mod:`crossbar.nn.layers`). Backward: straight-through, the gradient of the ideal ``x W^T + b``
    (:class:`~crossbar.nn.functional.AnalogMatmul`).
    """

    def __init__(
        self,
        in_features: int,
        out_features: int,
        bias: bool = True,
        *,
        chip: Chip | None = None,
        read_conditions: ReadConditions | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        check_positive_ints(in_features=in_features, out_features=out_features)
        super().__init__(in_features, out_features, bias, device=device, dtype=dtype)
        self._init_analog(chip, read_conditions)

    @classmethod
    def from_linear(cls, linear: nn.Linear, *, chip: Chip | None = None, read_conditions: ReadConditions | None = None) -> AnalogLinear:
        """An analog layer sharing ``linear``'s parameters (the same tensors, not copies)."""
        if not isinstance(linear, nn.Linear):
            raise ValueError(f"expected an nn.Linear, got {type(linear).__name__}")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        layer.in_features, layer.out_features = linear.in_features, linear.out_features
        layer.weight = linear.weight
        layer.bias = linear.bias
        layer._init_analog(chip, read_conditions)
        layer.train(linear.training)
        return layer

    def _weight_matrix(self) -> Tensor:
        return self.weight

    def forward(self, input: Tensor) -> Tensor:
        matrix = self._matrix_for_forward()
        c = self._read_conditions
        return analog_linear(
            input, self.weight, self.bias, matrix=matrix, time_sec=c.time_sec, temperature_kelvin=c.temperature_kelvin
        )

    def extra_repr(self) -> str:
        return f"{nn.Linear.extra_repr(self)}, {self._analog_repr()}"


class AnalogConv2d(AnalogLayer, nn.Conv2d):
    """``nn.Conv2d`` computed on a simulated crossbar chip by unfolding onto one tiled MVM; bias digital.

    The weight (out_channels, in_channels, kh, kw) is programmed as an out_channels x (in_channels kh kw)
    matrix; every receptive field of the input is one input vector of the chip.

    Parameters
    ----------
    in_channels, out_channels, kernel_size, stride, padding, dilation, bias, padding_mode
        As for ``nn.Conv2d`` (``groups`` must be 1; non-zero padding modes are applied digitally before
        the unfold).
    chip : Chip, optional
        The chip to program onto; default ``Chip()``.
    read_conditions : ReadConditions, optional
        Time since programming, temperature and drift compensation of the reads.
    device, dtype
        Of the parameters.

    Notes
    -----
    Backward: straight-through, the gradient of the ideal convolution
    (:class:`~crossbar.nn.functional.AnalogConv2dFunction`).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: str | int | tuple[int, int] = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        *,
        chip: Chip | None = None,
        read_conditions: ReadConditions | None = None,
        device: Any = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if groups != 1:
            raise ValueError(f"groups = {groups!r}: AnalogConv2d supports groups = 1 only")
        super().__init__(
            in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias, padding_mode, device=device, dtype=dtype
        )
        self._init_analog(chip, read_conditions)

    @classmethod
    def from_conv2d(cls, conv: nn.Conv2d, *, chip: Chip | None = None, read_conditions: ReadConditions | None = None) -> AnalogConv2d:
        """An analog layer sharing ``conv``'s parameters (the same tensors, not copies)."""
        if not isinstance(conv, nn.Conv2d):
            raise ValueError(f"expected an nn.Conv2d, got {type(conv).__name__}")
        if conv.groups != 1:
            raise ValueError(f"groups = {conv.groups}: AnalogConv2d supports groups = 1 only")
        layer = cls.__new__(cls)
        nn.Module.__init__(layer)
        for name in ("in_channels", "out_channels", "kernel_size", "stride", "padding", "dilation", "transposed",
                     "output_padding", "groups", "padding_mode", "_reversed_padding_repeated_twice"):
            setattr(layer, name, getattr(conv, name))
        layer.weight = conv.weight
        layer.bias = conv.bias
        layer._init_analog(chip, read_conditions)
        layer.train(conv.training)
        return layer

    def _weight_matrix(self) -> Tensor:
        return conv_weight_matrix(self.weight)

    def forward(self, input: Tensor) -> Tensor:
        matrix = self._matrix_for_forward()
        c = self._read_conditions
        padding: Any = self.padding
        if self.padding_mode != "zeros":
            input = nn.functional.pad(input, self._reversed_padding_repeated_twice, mode=self.padding_mode)
            padding = 0
        return analog_conv2d(
            input,
            self.weight,
            self.bias,
            self.stride,
            padding,
            self.dilation,
            matrix=matrix,
            time_sec=c.time_sec,
            temperature_kelvin=c.temperature_kelvin,
        )

    def extra_repr(self) -> str:
        return f"{nn.Conv2d.extra_repr(self)}, {self._analog_repr()}"


_TORCH_ACTIVATIONS = {
    Activation.IDENTITY: lambda x: x,
    Activation.RELU: torch.relu,
    Activation.SIGMOID: torch.sigmoid,
    Activation.TANH: torch.tanh,
}


class AnalogActivation(nn.Module):
    """An analog activation with crossbar's activation-noise model, in torch.

    ``y = phi(x) + s_c n_b + s_u n_bi`` (additive) or ``y = phi(x) (1 + s_c n_b + s_u n_bi)``
    (multiplicative), with ``n_b`` one standard normal per sample shared by every neuron of the layer
    (correlated) and ``n_bi`` one per neuron (uncorrelated): the model of the chip's activation stage
    (:class:`crossbar.ActivationConfig`). Noise is drawn in train and eval mode alike from the module's
    own seeded NumPy generator, so evaluations repeat bit for bit; the gradient is exact for the drawn
    noise (reparameterized).

    Parameters
    ----------
    config : ActivationConfig
        The function and the noise (stds in units of the activation output).
    seed : int
        Seed of the noise generator.

    Notes
    -----
    The first dimension is the batch; an input of one dimension is one sample.
    """

    def __init__(self, config: ActivationConfig, *, seed: int = 0) -> None:
        super().__init__()
        if not isinstance(config, ActivationConfig):
            raise ValueError(f"config must be an ActivationConfig, got {type(config).__name__}")
        self.config = config
        self._rng = np.random.default_rng(_check_seed(seed))

    @property
    def rng(self) -> np.random.Generator:
        """The generator of the noise draws (its ``bit_generator.state`` can be saved and restored)."""
        return self._rng

    def reseed(self, seed: int) -> None:
        """Restart the noise stream from ``seed``."""
        self._rng = np.random.default_rng(_check_seed(seed))

    def forward(self, input: Tensor) -> Tensor:
        cfg = self.config
        if input.dtype not in (torch.float32, torch.float64):
            raise ValueError(f"AnalogActivation: input has dtype {input.dtype}; expected float32 or float64")
        y = _TORCH_ACTIVATIONS[cfg.function](input)
        s_c, s_u = cfg.correlated_std_rel, cfg.uncorrelated_std_rel
        if s_c == 0 and s_u == 0:
            return y
        np_dtype = np.float32 if input.dtype == torch.float32 else np.float64
        noise = torch.zeros((), dtype=input.dtype)
        if s_c > 0:
            shape = (input.shape[0],) + (1,) * (input.ndim - 1) if input.ndim >= 2 else ()
            noise = noise + s_c * torch.from_numpy(np.asarray(self._rng.standard_normal(shape, dtype=np_dtype)))
        if s_u > 0:
            noise = noise + s_u * torch.from_numpy(self._rng.standard_normal(tuple(input.shape), dtype=np_dtype))
        noise = noise.to(input.device)
        if cfg.kind is NoiseKind.MULTIPLICATIVE:
            return y * (1.0 + noise)
        return y + noise

    def extra_repr(self) -> str:
        cfg = self.config
        return (
            f"function={cfg.function.value}, kind={cfg.kind.value}, correlated_std_rel={cfg.correlated_std_rel:g}, "
            f"uncorrelated_std_rel={cfg.uncorrelated_std_rel:g}"
        )


def _check_seed(seed: Any) -> int:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or int(seed) < 0:
        raise ValueError(f"seed = {seed!r} must be a non-negative integer")
    return int(seed)
