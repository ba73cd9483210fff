"""Noise characterization: measure a chip as one would measure a real one, and fit its noise model.

>>> from crossbar import Chip, ChipConfig, TileConfig
>>> from crossbar.characterization import CharacterizationProtocol, characterize
>>> chip = Chip("pcm", ChipConfig(tile=TileConfig(rows=64, cols=64)), seed=0)
>>> char = characterize(chip, protocol=CharacterizationProtocol(n_inputs=512, times_sec=(), temperatures_kelvin=()))
>>> char.surrogate_params.read_noise_alpha_rel > 0
True

The chip is a black box: known weight matrices are programmed (random, structured, or real layer weights
passed by the user), input sets with controlled statistics are applied, every vector is read several
times, and the outputs are compared with the exact product ``x W^T``. What the characterization uses
besides inputs and outputs is the chip's *design* (``ChipConfig``: tiling, weight and input scaling,
converter bits and ranges), which the person measuring a real chip knows too; the device physics is not
looked at. Work streams over chunks of input vectors with online statistics, so memory does not grow
with the number of vectors (only a bounded subset of raw samples is kept).

What is estimated (units: :mod:`crossbar.fitting`, "Normalized units")
-------------------------------------------------------------------------
* Per-read noise: with R reads of each vector, the sample variance ``s2_bi`` of output i of vector b
  has expectation ``sum_k f_k theta_k`` over the features (per tile row, ``a = s_x s_w``)::

      f_out = n_ch sum_tiles a^2                      theta = sigma_out^2 (+ ADC step^2/12)
      f_alpha = sum_tiles a^2 sum_j |w~_ij| x~_bj^2    theta = alpha
      f_offset = sum_tiles a^2 sum_j x~_bj^2           theta = alpha0
      f_beta = sum_tiles a^2 |I~_bi|                   theta = g beta
      f_act = 1                                        theta = s_c^2 + s_u^2  (activation noise)

  (the data-dependent noise follows the realized current ``g I~``, g the global gain, while the feature
  uses the exact ``I~``, so the fit reports ``beta = theta / g``, in the surrogate's convention), fitted
  by weighted least squares with weights ``1 / v_pilot^2`` (iteratively reweighted on the first
  chunk, then fixed, so the stream needs one pass); the ADC's quantization variance step^2/12 is taken
  off sigma_out^2 (Sheppard's correction; the surrogate quantizes by itself). With digital differential
  readout (two ADC reads per tile partial) the surrogate's one read-out carries the noise of both.
* Correlated noise: for i != k the deviations from the mean over reads have
  ``E[sum_reads d_i d_k] = (R - 1) s_c^2``, estimated from ``(sum_i d_i)^2 - sum_i d_i^2``.
* Static errors per device: least squares of the read-averaged, input-normalized outputs on the
  normalized (DAC-quantized) inputs gives the effective weights ``W_eff``; ``dw~ = (W_eff - g W) / s_w``
  with the global gain g. The estimate's own variance ``v_est`` (residual variance times
  ``[(X^T X)^-1]_jj``) is subtracted, so ``dw~^2 - v_est`` is unbiased for the device's static variance;
  per-|w~| bins give ``var = c0 + c1 |w~| + c2 w~^2`` and per-tile sigmas.
* Gain and drift: the global gain ``g = sum y I / sum I^2`` (normalized units) at every time of the
  sweep, then the power law :func:`crossbar.fitting.fit_drift_law`; temperature: the gain's apparent
  activation energy (:func:`crossbar.fitting.fit_arrhenius`).
* Effective number of bits (:func:`crossbar.fitting.effective_bits`) of the total and of the read-to-read
  error; ``pi_hw``: level occupancy of the realized normalized weights ``W_eff / s_w``.

Standard errors of the read-noise coefficients come from batch means: the vectors are split into
``n_groups`` blocks of consecutive vectors (each mixing every input set), each block is fitted on its
own, and ``SE = std(theta_g) / sqrt(G)``.
This is robust to non-Gaussian reads (ADC steps) and to correlations between the outputs of a vector.

Limits: the activation must be the identity and activation noise additive; stuck-at faults are not
modelled separately (they show up as the outlier fraction of static errors); IR drop is systematic
(position-dependent) but is seen, like every deterministic per-device error, as static error with a
variance by |w~|; digital differential readout is approximated in the surrogate by one read-out per tile
partial carrying the noise of both reads.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from dataclasses import dataclass, field
from typing import Any, Iterator, Mapping

import numpy as np

from crossbar._checks import check_float, check_int
from crossbar.chip import Chip, ProgrammedMatrix
from crossbar.config import Activation, ChipConfig, DifferentialReadout, InputRange, NoiseKind
from crossbar.fitting import (
    ArrheniusFit,
    DriftFit,
    LinearFit,
    PiHW,
    SurrogateParams,
    _r2_chi2,
    effective_bits,
    fit_arrhenius,
    fit_drift_law,
    fit_static_variance,
    pi_hw_from_weights,
    weight_scales,
)
from crossbar.profiles import DeviceProfile

__all__ = [
    "DEFAULT_INPUT_SETS",
    "READ_NOISE_TERMS",
    "Characterization",
    "CharacterizationProtocol",
    "InputDistribution",
    "InputSet",
    "MatrixCharacterization",
    "MatrixKind",
    "SweepTable",
    "characterize",
    "normalized_errors",
    "probe_matrix",
]

SECONDS_PER_YEAR = 365.25 * 24 * 3600.0

READ_NOISE_TERMS = ("output_var_rel", "alpha_rel", "offset_rel", "beta_rel", "activation_var_rel")
"""Names of the per-read noise coefficients, in the order of the features (module docstring)."""

_SATURATION_REL = 0.9
"""An ideal tile partial beyond this fraction of the ADC full scale counts as saturated (excluded from fits)."""
_OUTLIER_SIGMAS = 6.0
"""A static error beyond this many standard deviations of the fitted model counts as an outlier."""
_KS_MAX_SAMPLES = 200_000
"""Largest sample of a Gaussianity check (a deterministic subsample beyond)."""
_PILOT_SAMPLES = 4096
"""(vector, output) samples of the first chunk used by the pilot fit that sets the regression weights."""


# --------------------------------------------------------------------------------------------------
# Probe inputs and matrices
# --------------------------------------------------------------------------------------------------


class InputDistribution(enum.Enum):
    """Distribution of the nonzero entries of probe input vectors."""

    GAUSSIAN = "gaussian"
    """Standard normal entries."""
    UNIFORM = "uniform"
    """Uniform on [-1, 1]."""
    BINARY = "binary"
    """Random signs +-1."""


@dataclass(frozen=True, kw_only=True)
class InputSet:
    """A family of probe input vectors with controlled statistics."""

    distribution: InputDistribution = InputDistribution.GAUSSIAN
    """Distribution of the nonzero entries."""
    density_rel: float = 1.0
    """Fraction of entries that are nonzero (each entry independently)."""
    amplitude: float = 1.0
    """Scale of the entries, in units of x (changes the input scale s_x and so separates noise that
    scales with the input from noise in output units)."""
    nonnegative: bool = False
    """Take |x| (inputs like post-ReLU activations)."""

    def __post_init__(self) -> None:
        if not isinstance(self.distribution, InputDistribution):
            try:
                object.__setattr__(self, "distribution", InputDistribution(self.distribution))
            except ValueError:
                raise ValueError(f"InputSet.distribution = {self.distribution!r} must be one of "
                                 f"{', '.join(repr(m.value) for m in InputDistribution)}") from None
        check_float(self, "density_rel", 0.0, 1.0, open_low=True)
        check_float(self, "amplitude", 0.0, 1e30, open_low=True)
        if not isinstance(self.nonnegative, bool):
            raise ValueError(f"InputSet.nonnegative = {self.nonnegative!r} must be True or False")

    def sample(self, rng: np.random.Generator, n: int, n_in: int) -> np.ndarray:
        """``n`` vectors of length ``n_in`` (float64)."""
        if self.distribution is InputDistribution.GAUSSIAN:
            x = rng.standard_normal((n, n_in))
        elif self.distribution is InputDistribution.UNIFORM:
            x = rng.uniform(-1.0, 1.0, (n, n_in))
        else:
            x = rng.choice(np.array([-1.0, 1.0]), size=(n, n_in))
        if self.density_rel < 1.0:
            x *= rng.random((n, n_in)) < self.density_rel
        if self.nonnegative:
            np.abs(x, out=x)
        x *= self.amplitude
        return x


DEFAULT_INPUT_SETS: tuple[InputSet, ...] = (
    InputSet(),
    InputSet(distribution=InputDistribution.UNIFORM, nonnegative=True),
    InputSet(density_rel=0.25, amplitude=4.0),
    InputSet(distribution=InputDistribution.BINARY, density_rel=0.5, amplitude=0.25),
)
"""Dense Gaussian; post-ReLU-like uniform [0, 1]; sparse Gaussian of large amplitude; sparse signs of
small amplitude. Vector b of a stream belongs to set ``b % len(input_sets)``."""


class MatrixKind(enum.Enum):
    """Structured probe weight matrices (:func:`probe_matrix`)."""

    GAUSSIAN = "gaussian"
    """I.i.d. standard normal."""
    UNIFORM = "uniform"
    """I.i.d. uniform on [-1, 1]."""
    SPARSE = "sparse"
    """Standard normal with 10 % of the entries nonzero."""
    DENSITY_RAMP = "density_ramp"
    """Standard normal; output i keeps a fraction of its inputs that falls log-evenly from 1 to 1/32 over
    the outputs (columns of very different mean |w~|: separates per-device noise proportional to |w|
    from noise that is not)."""
    LOW_RANK = "low_rank"
    """Product of two Gaussian factors of rank 4 (strongly correlated columns)."""


def probe_matrix(kind: MatrixKind | str, shape: tuple[int, int], *, seed: int = 0) -> np.ndarray:
    """A probe weight matrix (out, in) of a structured kind, from its own seeded generator."""
    kind = MatrixKind(kind) if not isinstance(kind, MatrixKind) else kind
    if len(shape) != 2 or not all(isinstance(s, (int, np.integer)) and s >= 1 for s in shape):
        raise ValueError(f"shape = {shape!r} must be (out_features, in_features) with positive integers")
    n_out, n_in = int(shape[0]), int(shape[1])
    rng = np.random.default_rng([int(seed), 0x70726F62, list(MatrixKind).index(kind)])
    if kind is MatrixKind.GAUSSIAN:
        return rng.standard_normal((n_out, n_in))
    if kind is MatrixKind.UNIFORM:
        return rng.uniform(-1.0, 1.0, (n_out, n_in))
    if kind is MatrixKind.SPARSE:
        w = rng.standard_normal((n_out, n_in)) * (rng.random((n_out, n_in)) < 0.1)
    elif kind is MatrixKind.DENSITY_RAMP:
        keep = np.exp(np.linspace(0.0, math.log(1.0 / 32.0), n_out))[:, None]
        w = rng.standard_normal((n_out, n_in)) * (rng.random((n_out, n_in)) < keep)
    else:
        w = rng.standard_normal((n_out, 4)) @ rng.standard_normal((4, n_in))
    # every output keeps at least one nonzero weight
    empty = ~np.any(w != 0, axis=1)
    w[empty, rng.integers(0, n_in, size=int(empty.sum()))] = 1.0
    return w


# --------------------------------------------------------------------------------------------------
# Protocol and results
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class CharacterizationProtocol:
    """What to measure and how much: inputs, repeats, sweeps, binning."""

    n_inputs: int = 8192
    """Input vectors per matrix at the operating point (>= 2 in_features for the per-device estimate)."""
    n_repeats: int = 4
    """Reads of every vector (>= 2: the read-to-read variance needs two)."""
    chunk_size: int = 1024
    """Vectors per chunk: bounds memory (about n_repeats + 8 arrays of chunk x out floats)."""
    input_sets: tuple[InputSet, ...] = DEFAULT_INPUT_SETS
    """Families of input vectors, used in turn."""
    time_sec: float | None = None
    """Operating point: time since programming of the main measurement, s (``None``: the profile's t0)."""
    temperature_kelvin: float | None = None
    """Operating point: chip temperature of the main measurement, K (``None``: programming temperature)."""
    times_sec: tuple[float, ...] | None = None
    """Drift sweep, ascending, s; ``None``: t0 times 1, 10, 100, ... up to one year; ``()``: no sweep."""
    temperatures_kelvin: tuple[float, ...] | None = None
    """Temperature sweep, K; ``None``: T_ref - 25, T_ref, T_ref + 25, T_ref + 50; ``()``: no sweep."""
    n_sweep_inputs: int = 1024
    """Input vectors per matrix and sweep point."""
    n_abs_bins: int = 12
    """Bins of |W x| (normalized) for error distributions; equal counts on the first chunk."""
    n_static_bins: int = 16
    """Bins of |w~| on [0, 1] for the static-error model."""
    pi_hw_bits: int = 4
    """Resolution of the level grid of pi_hw (match the physics-informed loss's ``bits``)."""
    pi_hw_pseudo_count: float = 0.5
    """Count added to every level of pi_hw."""
    raw_vectors: int = 256
    """Vectors per matrix whose inputs and every read are kept as raw samples."""
    n_groups: int = 16
    """Groups of vectors for batch-means standard errors (>= 2)."""
    seed: int = 0
    """Seed of the probe inputs and probe matrices."""

    def __post_init__(self) -> None:
        check_int(self, "n_inputs", 2)
        check_int(self, "n_repeats", 2, 1 << 16)
        check_int(self, "chunk_size", 1)
        if not isinstance(self.input_sets, tuple) or not self.input_sets or not all(isinstance(s, InputSet) for s in self.input_sets):
            raise ValueError("CharacterizationProtocol.input_sets must be a non-empty tuple of InputSet")
        for name in ("time_sec", "temperature_kelvin"):
            if getattr(self, name) is not None:
                check_float(self, name, 0.0, 1e30, " s" if name == "time_sec" else " K", open_low=name != "time_sec")
        for name, unit in (("times_sec", " s"), ("temperatures_kelvin", " K")):
            value = getattr(self, name)
            if value is None:
                continue
            try:
                values = tuple(float(v) for v in value)
            except (TypeError, ValueError):
                raise ValueError(f"CharacterizationProtocol.{name} = {value!r} must be a tuple of numbers{unit}") from None
            if any(not math.isfinite(v) or v <= 0 for v in values) or any(b <= a for a, b in zip(values, values[1:])):
                raise ValueError(f"CharacterizationProtocol.{name} = {value!r} must be positive, finite and ascending{unit}")
            object.__setattr__(self, name, values)
        check_int(self, "n_sweep_inputs", 2)
        check_int(self, "n_abs_bins", 1, 1000)
        check_int(self, "n_static_bins", 3, 1000)
        check_int(self, "pi_hw_bits", 2, 16)
        check_float(self, "pi_hw_pseudo_count", 0.0, 1e9)
        check_int(self, "raw_vectors", 0)
        check_int(self, "n_groups", 2, 1 << 16)
        if self.n_inputs < 2 * self.n_groups:
            raise ValueError(
                f"CharacterizationProtocol.n_inputs = {self.n_inputs} must be >= 2 n_groups = {2 * self.n_groups} "
                "(every group of the standard errors needs vectors)"
            )
        check_int(self, "seed", 0, (1 << 63) - 1)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict."""
        out = dataclasses.asdict(self)
        out["input_sets"] = [{**dataclasses.asdict(s), "distribution": s.distribution.value} for s in self.input_sets]
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> CharacterizationProtocol:
        d = dict(data)
        d["input_sets"] = tuple(InputSet(**s) for s in d.get("input_sets", ()))
        for key in ("times_sec", "temperatures_kelvin"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)


@dataclass(frozen=True, kw_only=True, eq=False)
class SweepTable:
    """One matrix measured at every point of a sweep (normalized units per ADC read)."""

    quantity: str
    """``"time_sec"`` or ``"temperature_kelvin"``."""
    values: np.ndarray
    """The swept values (s or K)."""
    gain: np.ndarray
    """Global gain g at each point."""
    rms_total_rel: np.ndarray
    """RMS of the error against the exact product (one read), I_dev."""
    rms_dynamic_rel: np.ndarray
    """RMS read-to-read noise, I_dev."""
    rms_static_rel: np.ndarray
    """RMS of the read-averaged error after the gain g is taken out (estimate, noise-corrected), I_dev."""
    enob_total_bits: np.ndarray
    """Effective number of bits of the total error."""


@dataclass(frozen=True, kw_only=True, eq=False)
class MatrixCharacterization:
    """What was measured on one programmed matrix."""

    name: str
    """Name of the matrix (a probe kind or the user's name for a layer)."""
    weights: np.ndarray
    """The programmed weights (out, in), weight units."""
    weight_scale: np.ndarray
    """s_w per (tile row, output), weight units."""
    gain_rel: float
    """Global gain g at the operating point."""
    rms_total_rel: float
    """RMS error of one read against the exact product, I_dev per ADC read."""
    rms_dynamic_rel: float
    """RMS read-to-read noise, I_dev per ADC read."""
    rms_static_rel: float
    """RMS of the read-averaged error after removing the gain, I_dev per ADC read."""
    enob_total_bits: float
    """ENOB of the total error."""
    enob_dynamic_bits: float
    """ENOB of the read-to-read noise alone."""
    saturated_fraction: float
    """Fraction of outputs with an ideal tile partial beyond 90 % of the ADC full scale (left out of fits)."""
    static_error_rel: np.ndarray
    """Estimated static error dw~ of every weight (out, in), normalized weight units."""
    static_residual_var: np.ndarray
    """Residual variance of the least-squares estimate per output (out,), weight units^2."""
    static_inverse_gram_diag: np.ndarray
    """Diagonal of (X~^T X~)^-1 per input (in,): with the residual variance, the estimate's variance."""
    tile_static_std_rel: np.ndarray
    """Static error std per tile (n_row_tiles, n_col_tiles), noise-corrected, normalized weight units."""
    bin_edges_rel: np.ndarray
    """Edges of the |W x| bins (normalized, I_dev per ADC read)."""
    bin_count: np.ndarray
    """Samples (vector, output) per bin."""
    bin_mean_error_rel: np.ndarray
    """Mean error per bin (one read)."""
    bin_std_total_rel: np.ndarray
    """Std of the error per bin (one read)."""
    bin_std_dynamic_rel: np.ndarray
    """RMS read-to-read std per bin, measured."""
    bin_std_dynamic_model_rel: np.ndarray
    """RMS read-to-read std per bin, predicted by the fitted model."""
    raw_inputs: np.ndarray
    """Raw samples: the first ``raw_vectors`` input vectors (K, in)."""
    raw_outputs: np.ndarray
    """Raw samples: every read of those vectors (n_repeats, K, out)."""
    time_sweep: SweepTable | None = None
    """The drift sweep of this matrix."""
    temperature_sweep: SweepTable | None = None
    """The temperature sweep of this matrix."""


@dataclass(frozen=True, kw_only=True, eq=False)
class Characterization:
    """A characterization of one chip: the measurements, the fitted model and the surrogate's parameters."""

    profile: DeviceProfile
    """The chip's device profile (recorded as provenance; not used by the fits)."""
    config: ChipConfig
    """The chip's configuration (its design: tiling, converters, ranges)."""
    chip_seed: int
    """Seed of the chip."""
    protocol: CharacterizationProtocol
    """How it was measured."""
    time_sec: float
    """Operating point: time since programming, s."""
    temperature_kelvin: float
    """Operating point: temperature, K."""
    matrices: tuple[MatrixCharacterization, ...]
    """Per programmed matrix."""
    read_noise: LinearFit
    """Per-read noise coefficients (:data:`READ_NOISE_TERMS`) in y units made relative by the features;
    standard errors by batch means; R^2 and chi^2/dof over the |W x| bins (chi^2 assumes Gaussian reads)."""
    correlated_var_rel: float
    """s_c^2: variance of the noise shared by all outputs of a vector, output units^2."""
    correlated_var_std_error: float
    """Its standard error (batch means)."""
    static: LinearFit
    """Static error variance model (c0, c1, c2) over |w~|; SEs from the bins; R^2, chi^2/dof over bins."""
    static_bin_edges_rel: np.ndarray
    """Edges of the |w~| bins."""
    static_bin_count: np.ndarray
    """Devices per bin."""
    static_bin_var_rel: np.ndarray
    """Measured static variance per bin (noise-corrected)."""
    static_bin_var_se: np.ndarray
    """Its standard error per bin."""
    static_outlier_fraction: float
    """Fraction of devices whose static error exceeds 6 model standard deviations (e.g. stuck devices)."""
    static_ks_statistic: float
    """Kolmogorov-Smirnov distance of the standardized static errors from N(0, 1) (0: Gaussian)."""
    dynamic_ks_statistic: float
    """Kolmogorov-Smirnov distance of the standardized read-to-read deviations from N(0, 1)."""
    enob_total_bits: float
    """ENOB of the total error, pooled over matrices."""
    enob_dynamic_bits: float
    """ENOB of the read-to-read noise, pooled over matrices."""
    drift: DriftFit | None
    """The drift law fitted to the pooled gain of the time sweep (``None`` without a sweep)."""
    temperature: ArrheniusFit | None
    """The apparent activation energy of the gain over the temperature sweep (``None`` without)."""
    pi_hw: PiHW
    """Level occupancy of the realized normalized weights (pooled over matrices)."""
    surrogate_params: SurrogateParams
    """The parameters of the differentiable surrogate at the operating point."""

    def static_estimate_var_rel(self, name: str) -> np.ndarray:
        """Variance of each device's static-error estimate of matrix ``name`` (out, in), normalized units^2
        (the residual variance per output times ``[(X~^T X~)^-1]_jj``, over s_w^2)."""
        m = self.matrix(name)
        s_w = _per_input(m.weight_scale, m.weights.shape[1], self.config.tile.rows)
        return m.static_residual_var[:, None] * m.static_inverse_gram_diag[None, :] / s_w**2

    def matrix(self, name: str) -> MatrixCharacterization:
        """The measurements of the matrix called ``name``."""
        for m in self.matrices:
            if m.name == name:
                return m
        raise KeyError(f"no matrix {name!r}; characterized: {', '.join(m.name for m in self.matrices)}")

    def summary(self) -> str:
        """A short human-readable table of the fitted parameters with standard errors."""
        rn = self.read_noise
        lines = [f"characterization of {self.profile.name!r} at t = {self.time_sec:g} s, T = {self.temperature_kelvin:g} K"]
        for name, value, se in zip(rn.names, rn.coefficients, rn.std_errors):
            lines.append(f"  {name:<22} {value: .4e} +- {se:.1e}")
        lines.append(f"  {'correlated_var_rel':<22} {self.correlated_var_rel: .4e} +- {self.correlated_var_std_error:.1e}")
        lines.append(f"  read noise: R^2 = {rn.r2:.4f}, chi^2/dof = {rn.chi2_per_dof:.2f}")
        for name, value, se in zip(self.static.names, self.static.coefficients, self.static.std_errors):
            lines.append(f"  static {name:<15} {value: .4e} +- {se:.1e}")
        lines.append(f"  static: R^2 = {self.static.r2:.4f}, chi^2/dof = {self.static.chi2_per_dof:.2f}, "
                     f"outliers {self.static_outlier_fraction:.2e}, KS {self.static_ks_statistic:.3f}")
        lines.append(f"  ENOB total {self.enob_total_bits:.2f} bits, dynamic {self.enob_dynamic_bits:.2f} bits")
        if self.drift is not None:
            lines.append(f"  drift nu = {self.drift.nu:.4f} +- {self.drift.nu_std_error:.1e} (R^2 = {self.drift.r2:.4f})")
        if self.temperature is not None:
            t = self.temperature
            lines.append(f"  apparent activation energy {t.activation_energy_ev:.4f} +- {t.activation_energy_std_error_ev:.1e} eV")
        return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# The per-matrix probe: normalization and features (the chip's design, in NumPy)
# --------------------------------------------------------------------------------------------------


def _input_scale(x: np.ndarray, design: SurrogateParams) -> np.ndarray:
    """s_x per vector: max |x_j| (1 for a zero vector) or the fixed DAC range (``crossbar._kernels.dac``)."""
    if design.input_range is InputRange.PER_SAMPLE_ABSMAX:
        peak = np.max(np.abs(x), axis=1)
        return np.where(peak > 0, peak, 1.0)
    return np.full(x.shape[0], design.input_max)


def _per_input(weight_scale: np.ndarray, n_in: int, tile_rows: int) -> np.ndarray:
    """s_w expanded to (out, in): entry (i, j) is the scale of the tile row holding input j."""
    return np.repeat(weight_scale, tile_rows, axis=0)[:n_in].T


class _Probe:
    """One programmed matrix with the design quantities the features need."""

    def __init__(self, matrix: ProgrammedMatrix, design: SurrogateParams, n_channels: int) -> None:
        self.matrix = matrix
        self.design = design
        self.n_channels = n_channels
        w = np.asarray(matrix.weights, dtype=np.float64)
        self.w = w
        self.n_out, self.n_in = w.shape
        self.s_w = weight_scales(w, tile_rows=design.tile_rows, tile_cols=design.tile_cols, scale_mode=design.scale_mode)
        self.rows = [slice(k * design.tile_rows, min((k + 1) * design.tile_rows, self.n_in)) for k in range(self.s_w.shape[0])]
        self.w_rel_t = [np.ascontiguousarray((w[:, rs] / self.s_w[k][:, None]).T, dtype=np.float32) for k, rs in enumerate(self.rows)]
        self.w_abs_rel_t = [np.abs(m) for m in self.w_rel_t]
        self.s_w_full = _per_input(self.s_w, self.n_in, design.tile_rows)

    def dac(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Normalized, quantized inputs x~ and the input scale s_x per vector (the chip's DAC)."""
        d = self.design
        s_x = _input_scale(x, d)
        xn = x / s_x[:, None]
        if d.input_range is InputRange.FIXED and d.clip_inputs:
            xn = np.clip(xn, -1.0, 1.0)
        if d.dac_bits is not None:
            n = (1 << (d.dac_bits - 1)) - 1
            xn = np.rint(xn * n) / n
        return xn, s_x

    def norm2(self, s_x: np.ndarray) -> np.ndarray:
        """``n_ch sum_tiles (s_x s_w)^2`` per (vector, output): the squared unit of one ADC read in y units."""
        return self.n_channels * (s_x**2)[:, None] * np.sum(self.s_w**2, axis=0)[None, :]

    def features(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """Features (5, B, out) in y units^2 (``f[0]`` is norm^2), the saturation mask (B, out), x~ and s_x.

        The two GEMMs per tile row run in float32: features need about four digits, the ideal product
        (computed elsewhere) stays float64.
        """
        xq, s_x = self.dac(x)
        n_b = x.shape[0]
        f = np.zeros((5, n_b, self.n_out))
        peak = np.zeros((n_b, self.n_out), dtype=np.float32)
        sx2 = (s_x**2)[:, None]
        for k, rs in enumerate(self.rows):
            xk = xq[:, rs].astype(np.float32)
            xk2 = xk * xk
            partial = np.abs(xk @ self.w_rel_t[k])
            a2 = sx2 * (self.s_w[k] ** 2)[None, :]
            f[0] += a2
            f[1] += a2 * (xk2 @ self.w_abs_rel_t[k])
            f[2] += a2 * xk2.sum(axis=1, dtype=np.float64)[:, None]
            f[3] += a2 * partial
            np.maximum(peak, partial, out=peak)
        f[0] *= self.n_channels
        f[4] = 1.0
        fs = self.design.adc_full_scale_rel
        saturated = peak > _SATURATION_REL * fs if math.isfinite(fs) else np.zeros(peak.shape, dtype=bool)
        return f, saturated, xq, s_x


# --------------------------------------------------------------------------------------------------
# Streaming
# --------------------------------------------------------------------------------------------------


def _input_chunks(protocol: CharacterizationProtocol, n_in: int, n_total: int, stream: tuple[int, ...]) -> Iterator[np.ndarray]:
    """The probe vectors of one stream in chunks; vector b belongs to input set ``b % n_sets``."""
    sets = protocol.input_sets
    for start in range(0, n_total, protocol.chunk_size):
        n = min(protocol.chunk_size, n_total - start)
        rng = np.random.default_rng([protocol.seed, 0x63686172, *stream, start])
        x = np.empty((n, n_in))
        owner = (np.arange(start, start + n)) % len(sets)
        for s_idx, s in enumerate(sets):
            rows = np.flatnonzero(owner == s_idx)
            if rows.size:
                x[rows] = s.sample(rng, rows.size, n_in)
        yield x


def _reads(m: ProgrammedMatrix, x: np.ndarray, n_repeats: int, time_sec: float, temperature_kelvin: float) -> np.ndarray:
    return np.stack([m.matvec(x, time_sec=time_sec, temperature_kelvin=temperature_kelvin) for _ in range(n_repeats)])


class _Pilot:
    """Weights 1 / v^2 of the variance regression from an iteratively reweighted fit on the first chunk."""

    def __init__(self, f: np.ndarray, s2: np.ndarray) -> None:
        from scipy.optimize import nnls

        fr = f.reshape(-1, f.shape[-1])
        y = s2.ravel()
        if y.size > _PILOT_SAMPLES:  # the pilot only sets weights: a fixed subsample is plenty
            rows = np.random.default_rng(0x70696C6F74).choice(y.size, _PILOT_SAMPLES, replace=False)
            fr, y = fr[rows], y[rows]
        scale = fr[:, 0] + float(np.mean(fr[:, 0]))
        w = 1.0 / scale**2
        theta = np.zeros(fr.shape[1])
        # floor of a predicted variance, relative to the sample's own scale f_out (= norm^2 > 0)
        self.floor_rel = max(1e-3 * float(np.mean(y / fr[:, 0])), 1e-12)
        # every variance component is >= 0: non-negative least squares keeps the weights sane
        col = np.sqrt(np.mean(fr * fr, axis=0)) + 1e-300
        for _ in range(5):
            sw = np.sqrt(w)
            theta = nnls((fr / col) * sw[:, None], y * sw)[0] / col
            w = 1.0 / np.maximum(fr @ theta, self.floor_rel * fr[:, 0]) ** 2
        self.theta = theta


@dataclass
class _Pooled:
    """Accumulators shared by every matrix (the pooled model)."""

    p: int
    n_groups: int
    a: np.ndarray = field(init=False)
    b: np.ndarray = field(init=False)
    corr_sum: np.ndarray = field(init=False)
    corr_count: np.ndarray = field(init=False)
    pilot: _Pilot | None = None

    def __post_init__(self) -> None:
        self.a = np.zeros((self.n_groups, self.p, self.p))
        self.b = np.zeros((self.n_groups, self.p))
        self.corr_sum = np.zeros(self.n_groups)
        self.corr_count = np.zeros(self.n_groups)


class _MatrixStats:
    """Accumulators of one matrix at the operating point."""

    def __init__(self, probe: _Probe, protocol: CharacterizationProtocol) -> None:
        n_in, n_out = probe.n_in, probe.n_out
        self.probe = probe
        self.protocol = protocol
        self.gram = np.zeros((n_in, n_in))
        self.cross = np.zeros((n_in, n_out))
        self.yy = np.zeros(n_out)
        self.n_ls = 0
        self.sum_yi = 0.0
        self.sum_ii = 0.0
        self.sum_yy = 0.0
        self.sum_s2_gain = 0.0
        self.n_gain = 0
        self.sum_e2 = 0.0
        self.sum_s2 = 0.0
        self.n = 0
        self.n_saturated = 0
        self.edges: np.ndarray | None = None
        nb = protocol.n_abs_bins
        self.bin_n = np.zeros(nb)
        self.bin_e = np.zeros(nb)
        self.bin_e2 = np.zeros(nb)
        self.bin_s2 = np.zeros(nb)
        self.bin_f = np.zeros((nb, 5))
        self.bin_pred2 = np.zeros(nb)
        self.raw_x: list[np.ndarray] = []
        self.raw_y: list[np.ndarray] = []
        self.n_raw = 0

    def add(self, x: np.ndarray, ys: np.ndarray, pooled: _Pooled, start: int) -> None:
        """Fold one chunk of vectors (global index ``start`` on) and their reads into the statistics."""
        probe, protocol = self.probe, self.protocol
        r = ys.shape[0]
        f, saturated, xq, s_x = probe.features(x)
        norm2 = f[0]
        keep = ~saturated
        ideal = x @ probe.w.T
        ybar = ys.mean(axis=0)
        s2 = ys.var(axis=0, ddof=1)
        if pooled.pilot is None:
            pooled.pilot = _Pilot(f[:, keep].T, s2[keep])
        pilot_var = np.tensordot(pooled.pilot.theta, f, axes=1)

        if self.n_raw < protocol.raw_vectors:
            take = min(protocol.raw_vectors - self.n_raw, x.shape[0])
            self.raw_x.append(x[:take].copy())
            self.raw_y.append(ys[:, :take].copy())
            self.n_raw += take

        # per-read noise regression and correlated noise, per group (contiguous blocks of vectors)
        w = keep / np.maximum(pilot_var, pooled.pilot.floor_rel * norm2) ** 2
        fw = f * w
        # sum_reads [(sum_i d_i)^2 - sum_i d_i^2] with d = y - mean over reads, without forming d
        totals = ys.sum(axis=2)
        corr_b = ((totals - totals.mean(axis=0)) ** 2).sum(axis=0) - (r - 1) * s2.sum(axis=1)
        group = (start + np.arange(x.shape[0])) * pooled.n_groups // protocol.n_inputs
        for g in np.unique(group):
            b0, b1 = np.searchsorted(group, [g, g + 1])
            fg = f[:, b0:b1].reshape(5, -1)
            pooled.a[g] += fw[:, b0:b1].reshape(5, -1) @ fg.T
            pooled.b[g] += fw[:, b0:b1].reshape(5, -1) @ s2[b0:b1].ravel()
            pooled.corr_sum[g] += corr_b[b0:b1].sum()
            pooled.corr_count[g] += (b1 - b0) * (r - 1) * probe.n_out * (probe.n_out - 1)

        # least squares of the read-averaged normalized outputs on the normalized inputs
        sample_ok = ~saturated.any(axis=1)
        if sample_ok.all():
            xs, ys_n = xq, ybar / s_x[:, None]
        else:
            xs, ys_n = xq[sample_ok], ybar[sample_ok] / s_x[sample_ok, None]
        self.gram += xs.T @ xs
        self.cross += xs.T @ ys_n
        self.yy += np.einsum("bi,bi->i", ys_n, ys_n)
        self.n_ls += xs.shape[0]

        # gain, RMS errors, bins (normalized units per ADC read)
        inv = 1.0 / np.sqrt(norm2)
        i_n = ideal * inv
        y_n = ybar * inv
        e0 = (ys[0] - ideal) * inv
        s2_n = s2 / norm2
        # The gain and the static error are fitted on unsaturated outputs only: a clipped output is the
        # ADC's doing (which the surrogate models itself), not a smaller conductance.
        y_k, i_k = y_n[keep], i_n[keep]
        self.sum_yi += float(np.dot(y_k, i_k))
        self.sum_ii += float(np.dot(i_k, i_k))
        self.sum_yy += float(np.dot(y_k, y_k))
        self.sum_s2_gain += float(s2_n[keep].sum())
        self.n_gain += int(y_k.size)
        self.sum_e2 += float(np.vdot(e0, e0))
        self.sum_s2 += float(s2_n.sum())
        self.n += e0.size
        self.n_saturated += int(saturated.sum())
        a = np.abs(i_n)
        nb = protocol.n_abs_bins
        if self.edges is None:
            q = np.quantile(a, np.linspace(0.0, 1.0, nb + 1))
            q[0], q[-1] = 0.0, np.inf
            self.edges = np.maximum.accumulate(q)
        idx = np.clip(np.searchsorted(self.edges, a.ravel(), side="right") - 1, 0, nb - 1)
        self.bin_n += np.bincount(idx, minlength=nb)
        self.bin_e += np.bincount(idx, weights=e0.ravel(), minlength=nb)
        self.bin_e2 += np.bincount(idx, weights=(e0 * e0).ravel(), minlength=nb)
        self.bin_s2 += np.bincount(idx, weights=s2_n.ravel(), minlength=nb)
        for k in range(5):
            self.bin_f[:, k] += np.bincount(idx, weights=(f[k] / norm2).ravel(), minlength=nb)
        self.bin_pred2 += np.bincount(idx, weights=(np.maximum(pilot_var, 0.0) / norm2).ravel() ** 2, minlength=nb)


class _SweepStats:
    """Accumulators of one matrix at one sweep point."""

    def __init__(self) -> None:
        self.sum_yi = self.sum_ii = self.sum_yy = self.sum_e2 = self.sum_s2 = self.sum_s2_gain = 0.0
        self.n = self.n_gain = 0

    def add(self, probe: _Probe, x: np.ndarray, ys: np.ndarray) -> None:
        f, saturated, _, _ = probe.features(x)
        inv = 1.0 / np.sqrt(f[0])  # f[0] is norm^2 (Probe.norm2)
        keep = ~saturated
        ideal = x @ probe.w.T
        ybar = ys.mean(axis=0)
        s2_n = ys.var(axis=0, ddof=1) * inv * inv
        i_n, y_n, e0 = ideal * inv, ybar * inv, (ys[0] - ideal) * inv
        # gain and static error on unsaturated outputs (as at the operating point); total error on all
        self.sum_yi += float(np.sum(y_n[keep] * i_n[keep]))
        self.sum_ii += float(np.sum(i_n[keep] ** 2))
        self.sum_yy += float(np.sum(y_n[keep] ** 2))
        self.sum_s2_gain += float(np.sum(s2_n[keep]))
        self.n_gain += int(keep.sum())
        self.sum_e2 += float(np.sum(e0 * e0))
        self.sum_s2 += float(np.sum(s2_n))
        self.n += e0.size

    def summary(self, n_repeats: int, fs: float) -> tuple[float, float, float, float, float]:
        g = self.sum_yi / self.sum_ii if self.sum_ii > 0 else math.nan
        rms_total = math.sqrt(self.sum_e2 / self.n)
        rms_dyn = math.sqrt(self.sum_s2 / self.n)
        n_gain = max(self.n_gain, 1)
        static = (self.sum_yy - 2 * g * self.sum_yi + g * g * self.sum_ii) / n_gain - self.sum_s2_gain / n_gain / n_repeats
        return g, rms_total, rms_dyn, math.sqrt(max(static, 0.0)), effective_bits(rms_total, fs)


# --------------------------------------------------------------------------------------------------
# The characterization
# --------------------------------------------------------------------------------------------------


def _default_times(t0: float) -> tuple[float, ...]:
    times = [t0 * 10.0**k for k in range(12) if t0 * 10.0**k < SECONDS_PER_YEAR]
    return tuple(times) + (SECONDS_PER_YEAR,)


def _resolve_matrices(
    matrices: Mapping[str, Any] | None, config: ChipConfig, protocol: CharacterizationProtocol
) -> list[tuple[str, np.ndarray]]:
    if matrices is None:
        shape = (config.tile.cols, config.tile.rows)
        return [(k.value, probe_matrix(k, shape, seed=protocol.seed)) for k in (MatrixKind.GAUSSIAN, MatrixKind.DENSITY_RAMP)]
    if not isinstance(matrices, Mapping) or not matrices:
        raise ValueError("matrices must be a non-empty mapping of name -> weight matrix (out, in), or None for the probes")
    out = []
    for name, w in matrices.items():
        if not isinstance(name, str) or not name or "/" in name:
            raise ValueError(f"matrix name {name!r} must be a non-empty string without '/'")
        if isinstance(w, (MatrixKind, str)) and not isinstance(w, np.ndarray):
            w = probe_matrix(w, (config.tile.cols, config.tile.rows), seed=protocol.seed)
        arr = np.asarray(w, dtype=np.float64)
        if arr.ndim != 2 or arr.size == 0 or not np.isfinite(arr).all():
            raise ValueError(f"matrix {name!r} has shape {arr.shape}; expected a finite 2-D matrix (out_features, in_features)")
        if not np.any(arr != 0):
            raise ValueError(f"matrix {name!r} is all zero; nothing to measure")
        out.append((name, arr))
    return out


def characterize(
    chip: Chip,
    matrices: Mapping[str, Any] | None = None,
    *,
    protocol: CharacterizationProtocol | None = None,
    progress: bool = False,
) -> Characterization:
    """Characterize the noise of a chip and fit the parameters of its differentiable surrogate.

    Parameters
    ----------
    chip : Chip
        The chip; it is treated as a black box apart from its design (``chip.config``). Anything with
        the chip's interface works too: ``config``, ``profile``, ``seed`` and ``program(weights)``
        returning an object with ``weights`` and ``matvec(x, *, time_sec, temperature_kelvin)``.
    matrices : mapping of str to array_like or MatrixKind, optional
        Weight matrices (out, in) to program, by name: real layer weights (e.g.
        ``{"fc1": model.fc1.weight.detach().numpy()}``) or probe kinds (``{"ramp": MatrixKind.DENSITY_RAMP}``,
        one tile in size). Default: a Gaussian and a density-ramp probe of one tile.
    protocol : CharacterizationProtocol, optional
        Inputs, repeats, sweeps and binning (default ``CharacterizationProtocol()``).
    progress : bool
        Show a progress bar (tqdm, on stderr) over the chunks.

    Returns
    -------
    Characterization
        Measurements per matrix, the fitted model with standard errors and goodness of fit, and
        ``surrogate_params``. Write it with :func:`crossbar.characterization_io.write_characterization`.

    Notes
    -----
    Module docstring: the estimators. Each matrix is programmed once (fresh device draws); the
    operating point, the drift sweep (at the operating temperature) and the temperature sweep (at the
    operating time) read the same programmed devices.
    """
    if not isinstance(chip, Chip) and not all(hasattr(chip, a) for a in ("program", "config", "profile", "seed")):
        raise ValueError(f"chip must be a crossbar.Chip (or have its program/config/profile/seed interface), got {type(chip).__name__}")
    if not isinstance(chip.config, ChipConfig) or not isinstance(chip.profile, DeviceProfile):
        raise ValueError("chip.config must be a ChipConfig and chip.profile a DeviceProfile")
    protocol = CharacterizationProtocol() if protocol is None else protocol
    if not isinstance(protocol, CharacterizationProtocol):
        raise ValueError(f"protocol must be a CharacterizationProtocol, got {type(protocol).__name__}")
    cfg = chip.config
    if cfg.activation.function is not Activation.IDENTITY:
        raise ValueError(
            f"chip.config.activation.function = {cfg.activation.function.value!r}: characterize the array with the "
            "identity activation (the error is measured against the linear product x W^T)"
        )
    if cfg.stages.activation_noise and cfg.activation.kind is not NoiseKind.ADDITIVE and (
        cfg.activation.correlated_std_rel > 0 or cfg.activation.uncorrelated_std_rel > 0
    ):
        raise ValueError("characterize: multiplicative activation noise is not in the fitted model; use additive noise")
    from tqdm.auto import tqdm

    profile = chip.profile
    t_op = profile.drift.t0_sec if protocol.time_sec is None else protocol.time_sec
    temp_op = profile.temperature.reference_kelvin if protocol.temperature_kelvin is None else protocol.temperature_kelvin
    times = _default_times(profile.drift.t0_sec) if protocol.times_sec is None else protocol.times_sec
    t_ref = profile.temperature.reference_kelvin
    temps = tuple(t_ref + d for d in (-25.0, 0.0, 25.0, 50.0)) if protocol.temperatures_kelvin is None else protocol.temperatures_kelvin
    n_channels = 1 if cfg.tile.differential is DifferentialReadout.ANALOG else 2
    design = SurrogateParams.design(cfg)
    named = _resolve_matrices(matrices, cfg, protocol)
    for name, w in named:
        if protocol.n_inputs < 2 * w.shape[1]:
            raise ValueError(
                f"CharacterizationProtocol.n_inputs = {protocol.n_inputs} is too few for matrix {name!r} with "
                f"{w.shape[1]} inputs: the per-device static estimate needs n_inputs >= 2 in_features = {2 * w.shape[1]}"
            )

    n_main = -(-protocol.n_inputs // protocol.chunk_size)
    n_sweep = -(-protocol.n_sweep_inputs // protocol.chunk_size)
    bar = tqdm(total=len(named) * (n_main + (len(times) + len(temps)) * n_sweep), desc="characterize", unit="chunk",
               disable=not progress, leave=False)
    pooled = _Pooled(p=5, n_groups=protocol.n_groups)
    stats: list[_MatrixStats] = []
    sweeps: list[tuple[list[_SweepStats], list[_SweepStats]]] = []
    try:
        for m_idx, (_name, w) in enumerate(named):
            probe = _Probe(chip.program(w), design, n_channels)
            st = _MatrixStats(probe, protocol)
            for c_idx, x in enumerate(_input_chunks(protocol, probe.n_in, protocol.n_inputs, (m_idx, 0))):
                st.add(x, _reads(probe.matrix, x, protocol.n_repeats, t_op, temp_op), pooled, c_idx * protocol.chunk_size)
                bar.update(1)
            stats.append(st)
            per_time, per_temp = [], []
            for values, out, point in ((times, per_time, lambda v: (v, temp_op)), (temps, per_temp, lambda v: (t_op, v))):
                for v in values:
                    sw = _SweepStats()
                    t, temp = point(v)
                    for x in _input_chunks(protocol, probe.n_in, protocol.n_sweep_inputs, (m_idx, 1)):
                        sw.add(probe, x, _reads(probe.matrix, x, protocol.n_repeats, t, temp))
                        bar.update(1)
                    out.append(sw)
            sweeps.append((per_time, per_temp))
    finally:
        bar.close()
    return _fit(chip, protocol, design, n_channels, t_op, temp_op, times, temps, named, stats, sweeps, pooled)


def _fit(
    chip: Chip,
    protocol: CharacterizationProtocol,
    design: SurrogateParams,
    n_channels: int,
    t_op: float,
    temp_op: float,
    times: tuple[float, ...],
    temps: tuple[float, ...],
    named: list[tuple[str, np.ndarray]],
    stats: list[_MatrixStats],
    sweeps: list[tuple[list[_SweepStats], list[_SweepStats]]],
    pooled: _Pooled,
) -> Characterization:
    from scipy import stats as sps

    fs = design.adc_full_scale_rel
    # ---- per-read noise: pooled weighted least squares, batch-means standard errors
    a_tot, b_tot = pooled.a.sum(axis=0), pooled.b.sum(axis=0)
    theta = np.linalg.lstsq(a_tot, b_tot, rcond=None)[0]
    per_group = np.array([np.linalg.lstsq(pooled.a[g], pooled.b[g], rcond=None)[0] for g in range(pooled.n_groups)])
    theta_se = per_group.std(axis=0, ddof=1) / math.sqrt(pooled.n_groups)
    with np.errstate(invalid="ignore", divide="ignore"):
        corr_g = pooled.corr_sum / pooled.corr_count
    corr_var = float(pooled.corr_sum.sum() / pooled.corr_count.sum()) if pooled.corr_count.sum() > 0 else math.nan
    corr_se = float(np.std(corr_g, ddof=1) / math.sqrt(pooled.n_groups)) if pooled.corr_count.sum() > 0 else math.nan

    # goodness of fit over the |W x| bins of every matrix (chi^2 with the Gaussian variance of s^2)
    r = protocol.n_repeats
    meas, pred, se = [], [], []
    for st in stats:
        with np.errstate(invalid="ignore", divide="ignore"):
            meas.append(st.bin_s2 / st.bin_n)
            pred.append((st.bin_f @ theta) / st.bin_n)
            se.append(np.sqrt(2.0 / (r - 1) * st.bin_pred2) / st.bin_n)
    meas_a, pred_a, se_a = np.concatenate(meas), np.concatenate(pred), np.concatenate(se)
    r2, chi2 = _r2_chi2(meas_a, pred_a, se_a, len(theta))
    # beta multiplies the realized current g |I~| in the model, the exact |I~| in the feature (module docstring)
    gain_all = sum(st.sum_yi for st in stats) / max(sum(st.sum_ii for st in stats), 1e-300)
    to_model = np.ones_like(theta)
    if gain_all > 0:
        to_model[READ_NOISE_TERMS.index("beta_rel")] = 1.0 / gain_all
    read_fit = LinearFit(names=READ_NOISE_TERMS, coefficients=theta * to_model, std_errors=theta_se * to_model, r2=r2,
                         chi2_per_dof=chi2)

    # ---- static errors: per-device least squares, pooled per |w~| bin
    nsb = protocol.n_static_bins
    static_edges = np.linspace(0.0, 1.0, nsb + 1)
    u_sum, u2_sum, cnt, t_sum, t2_sum = (np.zeros(nsb) for _ in range(5))
    per_matrix_static = []
    for st in stats:
        probe = st.probe
        if st.n_ls <= probe.n_in:
            raise ValueError(
                f"too few unsaturated input vectors ({st.n_ls}) for the per-device estimate of a matrix with "
                f"{probe.n_in} inputs; use more inputs or inputs that keep the ADC out of saturation"
            )
        gain = st.sum_yi / st.sum_ii
        gram_inv = _inverse_gram(st.gram)
        w_eff_t = gram_inv @ st.cross  # (in, out)
        resid = np.maximum(st.yy - np.einsum("jo,jo->o", w_eff_t, st.cross), 0.0) / (st.n_ls - probe.n_in)
        inv_diag = np.diag(gram_inv).copy()
        w_rel = probe.w / probe.s_w_full
        dw = (w_eff_t.T - gain * probe.w) / probe.s_w_full
        v_est = resid[:, None] * inv_diag[None, :] / probe.s_w_full**2
        t = dw * dw - v_est
        u = np.abs(w_rel)
        idx = np.clip(np.searchsorted(static_edges, u, side="right") - 1, 0, nsb - 1).ravel()
        u_sum += np.bincount(idx, weights=u.ravel(), minlength=nsb)
        u2_sum += np.bincount(idx, weights=(u * u).ravel(), minlength=nsb)
        cnt += np.bincount(idx, minlength=nsb)
        t_sum += np.bincount(idx, weights=t.ravel(), minlength=nsb)
        t2_sum += np.bincount(idx, weights=(t * t).ravel(), minlength=nsb)
        per_matrix_static.append((gain, w_eff_t, resid, inv_diag, dw, v_est, u))
    static_fit, bin_var, bin_se = fit_static_variance(u_sum, u2_sum, cnt, t_sum, t2_sum)
    c = np.nan_to_num(static_fit.coefficients)

    # outliers and Gaussianity of the static errors
    rng = np.random.default_rng([protocol.seed, 0x6B73])
    z_all, n_out_total, n_dev = [], 0, 0
    for _, _, _, _, dw, v_est, u in per_matrix_static:
        var = np.maximum(c[0] + c[1] * u + c[2] * u * u, 0.0) + v_est
        z = dw / np.sqrt(np.maximum(var, 1e-300))
        n_out_total += int(np.sum(np.abs(z) > _OUTLIER_SIGMAS))
        n_dev += z.size
        z_all.append(z.ravel())
    z_cat = np.concatenate(z_all)
    if z_cat.size > _KS_MAX_SAMPLES:
        z_cat = rng.choice(z_cat, _KS_MAX_SAMPLES, replace=False)
    static_ks = float(sps.kstest(z_cat, "norm").statistic)

    # ---- matrices: per-matrix results
    results = []
    e2_tot = s2_tot = n_tot = 0.0
    yi_tot = ii_tot = 0.0
    dyn_z = []
    w_real_rel = []
    for (name, _w), st, (per_time, per_temp), (gain, w_eff_t, resid, inv_diag, dw, v_est, _u) in zip(
        named, stats, sweeps, per_matrix_static
    ):
        probe = st.probe
        grid_r, grid_c = probe.s_w.shape[0], -(-probe.n_out // design.tile_cols)
        tile_std = np.zeros((grid_r, grid_c))
        t_dev = dw * dw - v_est
        for k, rs in enumerate(probe.rows):
            for cc in range(grid_c):
                block = t_dev[cc * design.tile_cols : (cc + 1) * design.tile_cols, rs]
                tile_std[k, cc] = math.sqrt(max(float(block.mean()), 0.0))
        rms_total = math.sqrt(st.sum_e2 / st.n)
        rms_dyn = math.sqrt(st.sum_s2 / st.n)
        n_gain = max(st.n_gain, 1)
        static_ms = (st.sum_yy - 2 * gain * st.sum_yi + gain * gain * st.sum_ii) / n_gain - st.sum_s2_gain / n_gain / r
        raw_x = np.concatenate(st.raw_x) if st.raw_x else np.zeros((0, probe.n_in))
        raw_y = np.concatenate(st.raw_y, axis=1) if st.raw_y else np.zeros((r, 0, probe.n_out))
        if raw_x.shape[0]:
            f_raw, sat_raw, _, _ = probe.features(raw_x)
            v = np.maximum(np.tensordot(theta, f_raw, axes=1), 1e-300) * (r - 1) / r
            d = (raw_y - raw_y.mean(axis=0)) / np.sqrt(v)
            dyn_z.append(d[:, ~sat_raw])
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_e = st.bin_e / st.bin_n
            std_t = np.sqrt(np.maximum(st.bin_e2 / st.bin_n - mean_e**2, 0.0) * st.bin_n / (st.bin_n - 1))
            std_d = np.sqrt(st.bin_s2 / st.bin_n)
            std_m = np.sqrt(np.maximum(st.bin_f @ theta, 0.0) / st.bin_n)

        def table(quantity: str, values: tuple[float, ...], points: list[_SweepStats]) -> SweepTable | None:
            if not values:
                return None
            cols = np.array([p.summary(r, fs) for p in points])
            return SweepTable(quantity=quantity, values=np.array(values), gain=cols[:, 0], rms_total_rel=cols[:, 1],
                              rms_dynamic_rel=cols[:, 2], rms_static_rel=cols[:, 3], enob_total_bits=cols[:, 4])

        results.append(
            MatrixCharacterization(
                name=name,
                weights=probe.w,
                weight_scale=probe.s_w,
                gain_rel=float(gain),
                rms_total_rel=rms_total,
                rms_dynamic_rel=rms_dyn,
                rms_static_rel=math.sqrt(max(static_ms, 0.0)),
                enob_total_bits=effective_bits(rms_total, fs),
                enob_dynamic_bits=effective_bits(rms_dyn, fs),
                saturated_fraction=st.n_saturated / st.n,
                static_error_rel=dw.astype(np.float32),
                static_residual_var=resid,
                static_inverse_gram_diag=inv_diag,
                tile_static_std_rel=tile_std,
                bin_edges_rel=st.edges if st.edges is not None else np.array([0.0, np.inf]),
                bin_count=st.bin_n,
                bin_mean_error_rel=mean_e,
                bin_std_total_rel=std_t,
                bin_std_dynamic_rel=std_d,
                bin_std_dynamic_model_rel=std_m,
                raw_inputs=raw_x,
                raw_outputs=raw_y,
                time_sweep=table("time_sec", times, per_time),
                temperature_sweep=table("temperature_kelvin", temps, per_temp),
            )
        )
        e2_tot += st.sum_e2
        s2_tot += st.sum_s2
        n_tot += st.n
        yi_tot += st.sum_yi
        ii_tot += st.sum_ii
        w_real_rel.append((w_eff_t.T / probe.s_w_full).ravel())
    dz = np.concatenate([d.ravel() for d in dyn_z]) if dyn_z else np.zeros(0)
    if dz.size > _KS_MAX_SAMPLES:
        dz = rng.choice(dz, _KS_MAX_SAMPLES, replace=False)
    dynamic_ks = float(sps.kstest(dz, "norm").statistic) if dz.size else math.nan

    # ---- sweeps: pooled gain per point, drift law and apparent activation energy
    drift = temperature = None
    if len(times) >= 2:
        g_t = [sum(sw[0][k].sum_yi for sw in sweeps) / sum(sw[0][k].sum_ii for sw in sweeps) for k in range(len(times))]
        if all(g > 0 for g in g_t):
            drift = fit_drift_law(times, g_t)
    if len(temps) >= 2:
        g_T = [sum(sw[1][k].sum_yi for sw in sweeps) / sum(sw[1][k].sum_ii for sw in sweeps) for k in range(len(temps))]
        if all(g > 0 for g in g_T):
            temperature = fit_arrhenius(temps, g_T, temp_op)

    pi_hw = pi_hw_from_weights(
        np.concatenate(w_real_rel),
        protocol.pi_hw_bits,
        pseudo_count=protocol.pi_hw_pseudo_count,
        source=f"characterization of {chip.profile.name!r} (chip seed {chip.seed}) at t = {t_op:g} s, T = {temp_op:g} K: "
        f"realized weights of {', '.join(n for n, _ in named)}, normalized by the chip's weight scale",
    )

    # ---- the surrogate's parameters at the operating point
    # theta[0] is per ADC read, quantization included; the surrogate reads each tile partial once (the
    # difference of the two reads for digital readout) and quantizes it itself: take one step^2/12 off.
    step = design.adc_step_rel
    out_var = n_channels * theta[0] - (step * step / 12.0 if step is not None else 0.0)
    corr = max(corr_var, 0.0) if math.isfinite(corr_var) else 0.0
    params = design.replace(
        gain_rel=max(yi_tot / ii_tot, 0.0),
        static_var_c0_rel=float(c[0]),
        static_var_c1_rel=float(c[1]),
        static_var_c2_rel=float(c[2]),
        read_noise_alpha_rel=max(float(theta[1]), 0.0),
        read_noise_offset_rel=max(float(theta[2]), 0.0),
        output_noise_std_rel=math.sqrt(max(out_var, 0.0)),
        beta_rel=max(read_fit["beta_rel"], 0.0),
        activation_correlated_std_rel=math.sqrt(corr),
        activation_uncorrelated_std_rel=math.sqrt(max(float(theta[4]) - corr, 0.0)),
        time_sec=t_op,
        temperature_kelvin=temp_op,
        source=f"characterization of {chip.profile.name!r} (chip seed {chip.seed}), protocol seed {protocol.seed}",
    )
    return Characterization(
        profile=chip.profile,
        config=chip.config,
        chip_seed=chip.seed,
        protocol=protocol,
        time_sec=t_op,
        temperature_kelvin=temp_op,
        matrices=tuple(results),
        read_noise=read_fit,
        correlated_var_rel=corr_var,
        correlated_var_std_error=corr_se,
        static=static_fit,
        static_bin_edges_rel=static_edges,
        static_bin_count=cnt,
        static_bin_var_rel=bin_var,
        static_bin_var_se=bin_se,
        static_outlier_fraction=n_out_total / n_dev,
        static_ks_statistic=static_ks,
        dynamic_ks_statistic=dynamic_ks,
        enob_total_bits=effective_bits(math.sqrt(e2_tot / n_tot), fs),
        enob_dynamic_bits=effective_bits(math.sqrt(s2_tot / n_tot), fs),
        drift=drift,
        temperature=temperature,
        pi_hw=pi_hw,
        surrogate_params=params,
    )


def _inverse_gram(gram: np.ndarray) -> np.ndarray:
    """(X^T X)^-1 from its Cholesky factor (LAPACK potrf, potri); the pseudo-inverse when the inputs do
    not span every direction."""
    from scipy.linalg import lapack

    factor, info = lapack.dpotrf(gram, lower=False)
    if info == 0:
        inv, info = lapack.dpotri(factor, lower=False)
        if info == 0:
            upper = np.triu(inv)
            return upper + np.triu(inv, 1).T
    return np.linalg.pinv(gram, hermitian=True)


def normalized_errors(
    weights: np.ndarray, inputs: np.ndarray, outputs: np.ndarray, design: SurrogateParams, *, n_channels: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """|W x| and the error ``y - x W^T`` of outputs, in normalized units per ADC read (I_dev).

    Parameters
    ----------
    weights : ndarray (out, in)
    inputs : ndarray (B, in)
    outputs : ndarray (..., B, out)
        Any number of reads of the chip (or the surrogate) for ``inputs``.
    design : SurrogateParams
        The design (tiling, scaling, DAC) the outputs were made with.

    Returns
    -------
    abs_signal, error : ndarray
        ``|x W^T| / norm`` broadcast to the outputs' shape, and ``(y - x W^T) / norm``, with
        ``norm^2 = n_ch sum_tiles (s_x s_w)^2`` (for one tile and analog readout, ``norm = s_x s_w``).
    """
    w = np.asarray(weights, dtype=np.float64)
    x = np.asarray(inputs, dtype=np.float64)
    y = np.asarray(outputs, dtype=np.float64)
    s_w = weight_scales(w, tile_rows=design.tile_rows, tile_cols=design.tile_cols, scale_mode=design.scale_mode)
    s_x = _input_scale(x, design)
    norm = np.sqrt(n_channels * (s_x**2)[:, None] * np.sum(s_w**2, axis=0)[None, :])
    ideal = x @ w.T
    return np.broadcast_to(np.abs(ideal) / norm, y.shape), (y - ideal) / norm
