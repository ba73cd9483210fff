"""Fitting the chip's noise model: the parameters of the differentiable surrogate and their estimators.

Everything here is NumPy (``import crossbar`` does not import torch). :mod:`crossbar.characterization`
measures a chip and calls these estimators; :mod:`crossbar.nn.surrogate` turns a
:class:`SurrogateParams` into a differentiable torch model.

Normalized units
----------------
The chip maps every tile column (or tile) so that its largest |w| uses the whole conductance window and
scales every input vector to the DAC range (``crossbar.mapping``, ``crossbar._kernels.dac``); the noise
model is written in those units, so one set of numbers describes any layer on the chip:

* weights ``w~ = w / s_w`` with ``s_w`` the largest |w| of the weight's tile column (``PER_COLUMN``) or
  tile (``PER_TILE``), so ``|w~| <= 1``;
* inputs ``x~ = x / s_x`` with ``s_x = max_j |x_j|`` per vector (``PER_SAMPLE_ABSMAX``) or the fixed
  DAC range, so ``|x~| <= 1``;
* currents in units of ``I_dev = (g_max - g_min) V_read``, the current of one device at full window and
  full input: a tile's partial product is ``I~ = sum_j w~_j x~_j`` and ``y = s_x s_w I~``.

The model of one tile partial, per sample b and output i (suffix ``_rel`` = in these units)::

    w~_eff = g w~ + sqrt(c0 + c1 |w~| + c2 w~^2) z                 (static, per device, per programming)
    I~     = sum_j w~_eff_ij x~_bj
           + sqrt(sigma_out^2 + sum_j (alpha |w~_ij| + alpha0) x~_bj^2 + beta |I~_bi|) xi   (per read)
    I~_q   = ADC(clip(I~, +-fs))                                    (b_adc bits)
    y      = s_x sum_tiles s_w I~_q + bias + s_c n_b + s_u n_bi     (activation noise, output units)

with z, xi, n ~ N(0, 1): ``n_b`` shared by all outputs of a sample (correlated), ``n_bi`` per output.
"""

from __future__ import annotations

import dataclasses
import enum
import json
import math
from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np

from crossbar._checks import check_enum, check_float, check_int
from crossbar.config import MAX_CONVERTER_BITS, ChipConfig, DifferentialReadout, InputRange, NoiseKind, ScaleMode
from crossbar.profiles import BOLTZMANN_EV_PER_KELVIN, DeviceProfile
from crossbar.programming import programming_noise_std
from crossbar.read_noise import flicker_variance

__all__ = [
    "ArrheniusFit",
    "DriftFit",
    "LinearFit",
    "PiHW",
    "SurrogateParams",
    "binned_std",
    "effective_bits",
    "fit_arrhenius",
    "fit_drift_law",
    "fit_static_variance",
    "pi_hw_from_weights",
    "quantize_levels",
    "weight_scales",
]

MAX_BITS = MAX_CONVERTER_BITS
"""Finest converter resolution a surrogate accepts (:data:`crossbar.config.MAX_CONVERTER_BITS`)."""


# --------------------------------------------------------------------------------------------------
# The surrogate's parameters
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True)
class SurrogateParams:
    """Every number the differentiable surrogate of a chip needs (module docstring: the model).

    Built by :func:`crossbar.characterization.characterize` from measurements
    (``Characterization.surrogate_params``), from a characterization file
    (``read_characterization(path).surrogate_params``), from the design values of a profile and
    configuration (:meth:`nominal`), or directly. Frozen: a newer characterization gives a new object,
    which :meth:`crossbar.nn.SurrogateLinear.update_params` installs in place.
    """

    tile_rows: int = 256
    """Inputs per tile: the row blocks whose partial products are digitized separately."""
    tile_cols: int = 256
    """Outputs per tile (matters for ``ScaleMode.PER_TILE`` only)."""
    scale_mode: ScaleMode = ScaleMode.PER_COLUMN
    """How the weight scale s_w is chosen (per tile column or per tile)."""
    input_range: InputRange = InputRange.PER_SAMPLE_ABSMAX
    """How the input scale s_x is chosen."""
    input_max: float = 1.0
    """Full-scale input for ``InputRange.FIXED``, in the units of x."""
    clip_inputs: bool = True
    """Whether inputs beyond ``input_max`` clip (``InputRange.FIXED`` only; the chip's DAC stage)."""
    dac_bits: int | None = None
    """Input quantizer resolution (2^bits - 1 levels on [-1, 1]); ``None``: ideal."""
    adc_bits: int | None = None
    """Output quantizer resolution per tile partial (2^bits - 1 levels on [-fs, fs]); ``None``: ideal."""
    adc_full_scale_rel: float = math.inf
    """Clipping bound fs of a tile partial, in units of I_dev; ``inf``: no clipping."""
    gain_rel: float = 1.0
    """Global conductance gain g at the operating point (drift, temperature; 1 at programming)."""
    static_var_c0_rel: float = 0.0
    """c0 of the static weight-error variance c0 + c1 |w~| + c2 w~^2 (normalized weight units squared)."""
    static_var_c1_rel: float = 0.0
    """c1 of the static weight-error variance, per unit |w~|."""
    static_var_c2_rel: float = 0.0
    """c2 of the static weight-error variance, per unit w~^2."""
    read_noise_alpha_rel: float = 0.0
    """alpha: per-read output variance per unit |w~| x~^2 and device, in I_dev^2 (the |W| seed model)."""
    read_noise_offset_rel: float = 0.0
    """alpha0: per-read output variance per unit x~^2 and device whatever its weight (e.g. from g_min)."""
    output_noise_std_rel: float = 0.0
    """sigma_out: std of input-independent noise per ADC read, in I_dev (sense amplifier, ADC)."""
    beta_rel: float = 0.0
    """beta: per-read output variance per unit |I~| (data-dependent noise, variance proportional to |W x|)."""
    activation_correlated_std_rel: float = 0.0
    """s_c: std of the noise shared by every output of a sample, in output units."""
    activation_uncorrelated_std_rel: float = 0.0
    """s_u: std of the per-output noise added after the digital stage, in output units."""
    time_sec: float | None = None
    """Time since programming the parameters describe, s (``None``: unknown or the programming time)."""
    temperature_kelvin: float | None = None
    """Chip temperature the parameters describe, K (``None``: unknown or the programming temperature)."""
    source: str = ""
    """Where the numbers come from (a characterization file, a profile's design values, ...)."""

    def __post_init__(self) -> None:
        check_int(self, "tile_rows", 1)
        check_int(self, "tile_cols", 1)
        check_enum(self, "scale_mode", ScaleMode)
        check_enum(self, "input_range", InputRange)
        check_float(self, "input_max", 1e-30, 1e30)
        if not isinstance(self.clip_inputs, bool):
            raise ValueError(f"SurrogateParams.clip_inputs = {self.clip_inputs!r} must be True or False")
        check_int(self, "dac_bits", 2, MAX_BITS, allow_none=True, none_means="ideal")
        check_int(self, "adc_bits", 2, MAX_BITS, allow_none=True, none_means="ideal")
        check_float(self, "adc_full_scale_rel", 1e-12, math.inf, " I_dev", allow_inf=True)
        if self.adc_bits is not None and math.isinf(self.adc_full_scale_rel):
            raise ValueError("SurrogateParams.adc_bits needs a finite adc_full_scale_rel (the quantizer's range)")
        check_float(self, "gain_rel", 0.0, 1e6)
        for name in ("static_var_c0_rel", "static_var_c1_rel", "static_var_c2_rel"):
            check_float(self, name, -1e6, 1e6)
        for name in (
            "read_noise_alpha_rel",
            "read_noise_offset_rel",
            "output_noise_std_rel",
            "beta_rel",
            "activation_correlated_std_rel",
            "activation_uncorrelated_std_rel",
        ):
            check_float(self, name, 0.0, 1e6)
        if self.time_sec is not None:
            check_float(self, "time_sec", 0.0, 1e30, " s")
        if self.temperature_kelvin is not None:
            check_float(self, "temperature_kelvin", 1e-9, 1e4, " K")
        if not isinstance(self.source, str):
            raise ValueError(f"SurrogateParams.source = {self.source!r} must be a string")

    # ------------------------------------------------------------------ derived quantities
    def static_std_rel(self, w_abs_rel: Any) -> np.ndarray:
        """Std of the static error of a weight of normalized magnitude |w~| (clipped at 0 variance)."""
        u = np.abs(np.asarray(w_abs_rel, dtype=np.float64))
        var = self.static_var_c0_rel + self.static_var_c1_rel * u + self.static_var_c2_rel * u * u
        return np.sqrt(np.maximum(var, 0.0))

    @property
    def adc_step_rel(self) -> float | None:
        """The ADC step in units of I_dev (``None`` for an ideal ADC)."""
        if self.adc_bits is None:
            return None
        return self.adc_full_scale_rel / ((1 << (self.adc_bits - 1)) - 1)

    @property
    def has_noise(self) -> bool:
        """Whether any noise term is nonzero."""
        return (
            self.static_var_c0_rel > 0
            or self.static_var_c1_rel > 0
            or self.static_var_c2_rel > 0
            or self.read_noise_alpha_rel > 0
            or self.read_noise_offset_rel > 0
            or self.output_noise_std_rel > 0
            or self.beta_rel > 0
            or self.activation_correlated_std_rel > 0
            or self.activation_uncorrelated_std_rel > 0
        )

    def replace(self, **changes: Any) -> SurrogateParams:
        """A copy with some fields changed (``dataclasses.replace``)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ plain-dict form (files)
    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serializable dict (enums as values; ``inf`` kept as a float)."""
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            out[f.name] = v.value if isinstance(v, enum.Enum) else v
        return out

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SurrogateParams:
        """Inverse of :meth:`to_dict`; unknown keys raise ``ValueError``."""
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"SurrogateParams: unknown key(s) {sorted(unknown)}")
        return cls(**data)

    def to_json(self) -> str:
        return json.dumps(self.to_dict())

    # ------------------------------------------------------------------ design values
    @classmethod
    def design(cls, config: ChipConfig, **noise: Any) -> SurrogateParams:
        """The converters, tiling and ranges of ``config`` (what a chip's designer knows), with the given noise.

        Stages that are off are ideal here too (``dac_bits``/``adc_bits`` ``None``, no clipping).
        """
        if not isinstance(config, ChipConfig):
            raise ValueError(f"config must be a ChipConfig, got {type(config).__name__}")
        st = config.stages
        return cls(
            tile_rows=config.tile.rows,
            tile_cols=config.tile.cols,
            scale_mode=config.tile.scale_mode,
            input_range=config.dac.range_mode,
            input_max=config.dac.input_max,
            clip_inputs=st.dac,
            dac_bits=config.dac.bits if st.dac else None,
            adc_bits=config.adc.bits if st.adc else None,
            adc_full_scale_rel=config.adc.full_scale_rel if st.adc else math.inf,
            **noise,
        )

    @classmethod
    def nominal(cls, profile: DeviceProfile, config: ChipConfig) -> SurrogateParams:
        """Design values of the noise model from a profile and configuration, at programming (t0, T_ref).

        Not a measurement: the numbers follow from the profile's laws (useful as the expected answer of a
        characterization, or to train before any chip is measured). Static variance: programming noise and
        mismatch of both devices of a pair plus the 1/f deviation at t0, fitted by c0 + c1|w~| + c2 w~^2 on
        a grid; read noise ``alpha = alpha_siemens / (g_max - g_min)`` and
        ``alpha0 = 2 alpha_siemens g_min / (g_max - g_min)^2``. Left out: stuck-at faults, the clipping of
        programming noise at 0 S, drift and temperature (gain 1). Analog differential readout only.
        """
        if not isinstance(profile, DeviceProfile):
            raise ValueError(f"profile must be a DeviceProfile, got {type(profile).__name__}")
        if config.tile.differential is not DifferentialReadout.ANALOG:
            raise ValueError("SurrogateParams.nominal: only analog differential readout is modelled")
        st = config.stages
        g_min, g_range = profile.conductance.g_min_siemens, profile.g_range_siemens
        u = np.linspace(0.0, 1.0, 101)
        g_pair = np.stack([g_min + g_range * u, np.full_like(u, g_min)])
        var = np.zeros_like(g_pair)
        if st.programming_noise:
            var += programming_noise_std(g_pair, profile) ** 2
        if st.mismatch:
            var += (profile.programming.mismatch_std_rel * g_pair) ** 2
        if st.read_noise:
            var += flicker_variance(g_pair, profile.drift.t0_sec, profile)
        var_w = var.sum(axis=0) / g_range**2
        c = np.polynomial.polynomial.polyfit(u, var_w, 2)
        alpha = profile.read_noise.alpha_siemens / g_range if st.read_noise else 0.0
        act = config.activation
        corr = act.correlated_std_rel if st.activation_noise else 0.0
        unc = act.uncorrelated_std_rel if st.activation_noise else 0.0
        if (corr > 0 or unc > 0) and act.kind is not NoiseKind.ADDITIVE:
            raise ValueError("SurrogateParams.nominal: only additive activation noise is modelled")
        return cls.design(
            config,
            static_var_c0_rel=float(c[0]),
            static_var_c1_rel=float(c[1]),
            static_var_c2_rel=float(c[2]),
            read_noise_alpha_rel=alpha,
            read_noise_offset_rel=2.0 * alpha * g_min / g_range,
            output_noise_std_rel=config.adc.output_noise_std_rel if st.output_noise else 0.0,
            activation_correlated_std_rel=corr,
            activation_uncorrelated_std_rel=unc,
            time_sec=profile.drift.t0_sec,
            temperature_kelvin=profile.temperature.reference_kelvin,
            source=f"design values of profile {profile.name!r} (SurrogateParams.nominal)",
        )


# --------------------------------------------------------------------------------------------------
# Normalization shared by the characterization and the tests
# --------------------------------------------------------------------------------------------------


def weight_scales(weights: np.ndarray, *, tile_rows: int, tile_cols: int, scale_mode: ScaleMode) -> np.ndarray:
    """The weight scale s_w per (tile row, output), shape (n_row_tiles, out): the largest |w| mapped.

    ``PER_COLUMN``: max |w| of each output over the inputs of the tile row; ``PER_TILE``: max over the
    whole tile. A block of zeros gets 1 (as :func:`crossbar.mapping.map_weights`).
    """
    w = np.abs(np.asarray(weights, dtype=np.float64))
    n_out, n_in = w.shape
    n_rt = -(-n_in // tile_rows)
    out = np.empty((n_rt, n_out))
    for k in range(n_rt):
        block = w[:, k * tile_rows : (k + 1) * tile_rows]
        peak = block.max(axis=1)
        if scale_mode is ScaleMode.PER_TILE:
            for c in range(0, n_out, tile_cols):
                peak[c : c + tile_cols] = peak[c : c + tile_cols].max()
        out[k] = np.where(peak > 0, peak, 1.0)
    return out


def quantize_levels(values: np.ndarray, bits: int | None, full_scale: float = 1.0) -> np.ndarray:
    """Clip to [-fs, fs] and round to the signed mid-tread grid of 2^bits - 1 levels (``None``: clip only)."""
    v = np.clip(values, -full_scale, full_scale)
    if bits is None:
        return v
    n = (1 << (bits - 1)) - 1
    return np.rint(v * (n / full_scale)) * (full_scale / n)


def binned_std(abs_signal: np.ndarray, error: np.ndarray, edges: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Count, mean and std (ddof 1) of ``error`` in bins of ``abs_signal`` with ``edges`` (right-open)."""
    a = np.asarray(abs_signal, dtype=np.float64).ravel()
    e = np.asarray(error, dtype=np.float64).ravel()
    idx = np.clip(np.searchsorted(edges, a, side="right") - 1, 0, len(edges) - 2)
    n = np.bincount(idx, minlength=len(edges) - 1).astype(np.float64)
    s1 = np.bincount(idx, weights=e, minlength=len(edges) - 1)
    s2 = np.bincount(idx, weights=e * e, minlength=len(edges) - 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = s1 / n
        var = (s2 - n * mean**2) / (n - 1)
    return n, mean, np.sqrt(np.maximum(var, 0.0))


# --------------------------------------------------------------------------------------------------
# Linear least squares with standard errors
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class LinearFit:
    """A fitted linear model ``target = features @ coefficients`` with standard errors."""

    names: tuple[str, ...]
    """Name of each coefficient."""
    coefficients: np.ndarray
    """Estimates, shape (p,)."""
    std_errors: np.ndarray
    """Standard errors, shape (p,) (how they are estimated is said where the fit is made)."""
    r2: float
    """Coefficient of determination on the binned (or per-point) data the fit is judged on."""
    chi2_per_dof: float
    """Chi-square per degree of freedom on the same data with its standard errors (about 1 for a good fit)."""

    def __getitem__(self, name: str) -> float:
        return float(self.coefficients[self.names.index(name)])

    def std_error(self, name: str) -> float:
        return float(self.std_errors[self.names.index(name)])


def _solve(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least-squares solution of the normal equations ``a x = b`` (pseudo-inverse where singular)."""
    return np.linalg.lstsq(a, b, rcond=None)[0]


def _r2_chi2(measured: np.ndarray, predicted: np.ndarray, se: np.ndarray, n_params: int) -> tuple[float, float]:
    ok = np.isfinite(measured) & np.isfinite(predicted) & np.isfinite(se) & (se > 0)
    m, p, s = measured[ok], predicted[ok], se[ok]
    if m.size == 0:
        return math.nan, math.nan
    w = 1.0 / s**2
    mean = np.sum(w * m) / np.sum(w)
    ss_tot = float(np.sum(w * (m - mean) ** 2))
    ss_res = float(np.sum(w * (m - p) ** 2))
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0 else math.nan
    dof = m.size - n_params
    return r2, (ss_res / dof if dof > 0 else math.nan)


# --------------------------------------------------------------------------------------------------
# Static (programming-time) errors
# --------------------------------------------------------------------------------------------------


def fit_static_variance(
    u_sum: np.ndarray, u2_sum: np.ndarray, count: np.ndarray, t_sum: np.ndarray, t2_sum: np.ndarray
) -> tuple[LinearFit, np.ndarray, np.ndarray]:
    """Fit ``var(dw~) = c0 + c1 |w~| + c2 w~^2`` to per-|w~|-bin sums of unbiased per-device estimates.

    Parameters
    ----------
    u_sum, u2_sum : ndarray, shape (n_bins,)
        Sums of |w~| and w~^2 over the devices of each bin.
    count : ndarray
        Devices per bin.
    t_sum, t2_sum : ndarray
        Sums of ``t = dw~^2 - v_est`` and of ``t^2`` per bin, where ``dw~`` is a device's estimated static
        error and ``v_est`` the variance of that estimate (so ``E[t] = var(dw~)``).

    Returns
    -------
    fit : LinearFit
        Coefficients (c0, c1, c2); standard errors from the bin means' standard errors (weighted least
        squares over the bins, ``(F^T W F)^-1``); R^2 and chi^2/dof over the bins.
    bin_var, bin_se : ndarray
        Per-bin mean of ``t`` (the measured static variance) and its standard error.
    """
    n = np.asarray(count, dtype=np.float64)
    ok = n > 1
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_t = t_sum / n
        var_t = (t2_sum - n * mean_t**2) / (n - 1)
        se = np.sqrt(np.maximum(var_t, 0.0) / n)
        f = np.stack([np.ones_like(n), u_sum / n, u2_sum / n], axis=1)
    names = ("c0", "c1", "c2")
    if ok.sum() < 3:
        nan = np.full(3, math.nan)
        return LinearFit(names=names, coefficients=nan, std_errors=nan, r2=math.nan, chi2_per_dof=math.nan), mean_t, se
    floor = max(float(np.nanmax(se[ok])) * 1e-6, 1e-300)
    w = 1.0 / np.maximum(se[ok], floor) ** 2
    fk = f[ok]
    a = fk.T @ (w[:, None] * fk)
    coef = _solve(a, fk.T @ (w * mean_t[ok]))
    cov = np.linalg.pinv(a)
    r2, chi2 = _r2_chi2(mean_t[ok], fk @ coef, se[ok], 3)
    fit = LinearFit(names=names, coefficients=coef, std_errors=np.sqrt(np.maximum(np.diag(cov), 0.0)), r2=r2, chi2_per_dof=chi2)
    return fit, mean_t, se


# --------------------------------------------------------------------------------------------------
# Drift law and temperature
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class DriftFit:
    """The power-law drift of the global gain: ``g(t) = g(t_ref) (t / t_ref)^(-nu)``."""

    nu: float
    """Fitted drift exponent (dimensionless)."""
    nu_std_error: float
    """Standard error of nu from the log-log regression residuals."""
    reference_time_sec: float
    """t_ref: the first time of the sweep, s (the reference read)."""
    log_gain_at_reference: float
    """Fitted ln g(t_ref)."""
    r2: float
    """R^2 of the log-log fit."""
    max_abs_residual: float
    """Largest |ln g_measured - ln g_fitted| over the sweep."""

    def gain(self, time_sec: Any) -> np.ndarray:
        """Fitted global gain at ``time_sec`` (s); times before t_ref get g(t_ref)."""
        t = np.maximum(np.asarray(time_sec, dtype=np.float64), self.reference_time_sec)
        return np.exp(self.log_gain_at_reference - self.nu * np.log(t / self.reference_time_sec))


def fit_drift_law(times_sec: Sequence[float], gains: Sequence[float]) -> DriftFit:
    """Least-squares fit of ``ln g = ln g(t_ref) - nu ln(t / t_ref)`` over a time sweep.

    Notes
    -----
    The empirical power law of conductance drift, ``G(t) = G(t_c) (t / t_c)^(-nu)`` (Ielmini et al.,
    IEEE TED 54(2), 308-315 (2007), doi:10.1109/TED.2006.888752), measured on the global gain of the MVM
    as in Joshi et al., Nat. Commun. 11, 2473 (2020), doi:10.1038/s41467-020-16108-9 (t_c = first read).
    """
    t = np.asarray(times_sec, dtype=np.float64)
    g = np.asarray(gains, dtype=np.float64)
    if t.size < 2 or np.any(t <= 0) or np.any(g <= 0) or np.any(np.diff(t) <= 0):
        raise ValueError("fit_drift_law needs >= 2 ascending positive times and positive gains")
    x = np.log(t / t[0])
    y = np.log(g)
    design = np.stack([np.ones_like(x), -x], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    dof = t.size - 2
    s2 = float(resid @ resid) / dof if dof > 0 else math.nan
    cov = s2 * np.linalg.pinv(design.T @ design)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    r2 = 1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else math.nan
    return DriftFit(
        nu=float(coef[1]),
        nu_std_error=float(math.sqrt(max(cov[1, 1], 0.0))) if dof > 0 else math.nan,
        reference_time_sec=float(t[0]),
        log_gain_at_reference=float(coef[0]),
        r2=r2,
        max_abs_residual=float(np.max(np.abs(resid))),
    )


@dataclass(frozen=True, kw_only=True, eq=False)
class ArrheniusFit:
    """Apparent activation energy of the global gain: ``g(T) = g_ref exp(-(E_a / k_B)(1/T - 1/T_ref))``."""

    activation_energy_ev: float
    """Fitted apparent activation energy, eV (conductance and any drift acceleration combined)."""
    activation_energy_std_error_ev: float
    """Its standard error from the regression residuals, eV."""
    reference_kelvin: float
    """T_ref of the fit (the sweep's temperature closest to the operating point), K."""
    log_gain_at_reference: float
    """Fitted ln g(T_ref)."""
    r2: float
    """R^2 of ln g against 1/T."""


def fit_arrhenius(temperatures_kelvin: Sequence[float], gains: Sequence[float], reference_kelvin: float) -> ArrheniusFit:
    """Least-squares fit of ``ln g = ln g_ref - (E_a / k_B)(1/T - 1/T_ref)`` over a temperature sweep.

    Notes
    -----
    Arrhenius law of thermally activated conduction; k_B = 8.617333262e-5 eV/K (CODATA 2018).
    """
    temps = np.asarray(temperatures_kelvin, dtype=np.float64)
    g = np.asarray(gains, dtype=np.float64)
    if temps.size < 2 or np.any(temps <= 0) or np.any(g <= 0):
        raise ValueError("fit_arrhenius needs >= 2 positive temperatures and positive gains")
    x = 1.0 / temps - 1.0 / reference_kelvin
    y = np.log(g)
    design = np.stack([np.ones_like(x), -x / BOLTZMANN_EV_PER_KELVIN], axis=1)
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    resid = y - design @ coef
    dof = temps.size - 2
    s2 = float(resid @ resid) / dof if dof > 0 else math.nan
    cov = s2 * np.linalg.pinv(design.T @ design)
    ss_tot = float(np.sum((y - y.mean()) ** 2))
    return ArrheniusFit(
        activation_energy_ev=float(coef[1]),
        activation_energy_std_error_ev=float(math.sqrt(max(cov[1, 1], 0.0))) if dof > 0 else math.nan,
        reference_kelvin=float(reference_kelvin),
        log_gain_at_reference=float(coef[0]),
        r2=1.0 - float(resid @ resid) / ss_tot if ss_tot > 0 else math.nan,
    )


# --------------------------------------------------------------------------------------------------
# Effective number of bits
# --------------------------------------------------------------------------------------------------


def effective_bits(rms_error_rel: float, full_scale_rel: float) -> float:
    """ENOB = log2(FSR / (sqrt(12) e_rms)) with FSR = 2 fs: the bits of an ideal quantizer with the same error.

    Notes
    -----
    The definition of IEEE Std 1241-2010 (ADC testing), ``ENOB = log2(FSR / (NAD sqrt(12)))`` with NAD the
    RMS noise and distortion; applied to one tile partial of the MVM with fs the ADC's full scale and the
    RMS error in the same units (I_dev). An ideal b-bit mid-tread quantizer over [-fs, fs] with a signal
    spread over many steps has ENOB = log2(2^b - 2).
    """
    if not rms_error_rel > 0 or not math.isfinite(full_scale_rel):
        return math.nan if not math.isfinite(full_scale_rel) else math.inf
    return math.log2(2.0 * full_scale_rel / (math.sqrt(12.0) * rms_error_rel))


# --------------------------------------------------------------------------------------------------
# pi_hw: level occupancy of the programmed weights
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True, kw_only=True, eq=False)
class PiHW:
    """The empirical distribution of the chip's quantized weights (``pi_hw`` of the physics-informed loss).

    Bins are centred on the ``2^bits - 1`` levels of the signed b-bit grid on [-w_max, w_max], with edges
    halfway between levels and the outer edges half a step beyond +-w_max (the layout of
    ``training.physics_loss.uniform_level_prior``). Build the loss's prior with
    ``HardwarePrior(bin_edges=tuple(p.bin_edges), probabilities=tuple(p.probabilities), source=p.source)``
    and a ``PhysicsInformedLoss(w_max=p.w_max, bits=p.bits)``; :meth:`scaled` moves it to another w_max.
    """

    bits: int
    """Resolution of the level grid."""
    w_max: float
    """Weight magnitude of the outermost levels, in weight units (1: the chip's normalized weights)."""
    levels: np.ndarray
    """The 2^bits - 1 levels, ascending, weight units."""
    bin_edges: np.ndarray
    """2^bits edges, ascending, weight units."""
    counts: np.ndarray
    """Measured devices (differential pairs) per level."""
    probabilities: np.ndarray
    """(counts + pseudo_count) / (total + K pseudo_count): non-negative, summing to 1."""
    pseudo_count: float
    """Added to every level's count so that no level has probability 0."""
    source: str = ""
    """Where the distribution comes from."""

    def scaled(self, w_max: float) -> PiHW:
        """The same distribution with its grid on [-w_max, w_max] (weight units of a layer)."""
        if not (isinstance(w_max, (int, float)) and math.isfinite(w_max) and w_max > 0):
            raise ValueError(f"w_max = {w_max!r} must be a positive finite number (weight units)")
        f = float(w_max) / self.w_max
        return dataclasses.replace(self, w_max=float(w_max), levels=self.levels * f, bin_edges=self.bin_edges * f)


def pi_hw_from_weights(w_rel: np.ndarray, bits: int, *, pseudo_count: float = 0.5, source: str = "") -> PiHW:
    """Level occupancy of normalized realized weights ``w~`` (|w~| <= 1 nominally; beyond clips to +-1).

    Each value goes to its nearest level of the b-bit grid on [-1, 1]; probabilities get ``pseudo_count``
    added per level (additive smoothing) so the KL divergence of the physics-informed loss stays finite.
    """
    if isinstance(bits, bool) or not isinstance(bits, int) or not 2 <= bits <= 16:
        raise ValueError(f"bits = {bits!r} must be an integer in [2, 16]")
    if not (math.isfinite(pseudo_count) and pseudo_count >= 0):
        raise ValueError(f"pseudo_count = {pseudo_count!r} must be >= 0")
    n = (1 << (bits - 1)) - 1
    k = np.rint(np.clip(np.asarray(w_rel, dtype=np.float64).ravel(), -1.0, 1.0) * n).astype(np.int64) + n
    counts = np.bincount(k, minlength=2 * n + 1).astype(np.float64)
    levels = np.arange(-n, n + 1, dtype=np.float64) / n
    step = 1.0 / n
    edges = np.concatenate([[levels[0] - step / 2], (levels[:-1] + levels[1:]) / 2, [levels[-1] + step / 2]])
    total = counts.sum() + pseudo_count * counts.size
    if total <= 0:
        raise ValueError("pi_hw_from_weights needs at least one weight (or pseudo_count > 0)")
    return PiHW(
        bits=bits,
        w_max=1.0,
        levels=levels,
        bin_edges=edges,
        counts=counts,
        probabilities=(counts + pseudo_count) / total,
        pseudo_count=float(pseudo_count),
        source=source,
    )
