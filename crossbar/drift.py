"""Conductance drift over time and the temperature dependence of conductance and drift rate.

Notes
-----
Drift follows the empirical power law of amorphous phase-change materials,
``G(t) = G(t0) (t / t0)^(-nu)`` (Ielmini et al., IEEE TED 54(2), 2007, doi:10.1109/TED.2006.888752),
with ``nu`` drawn per device. The programmed state is defined at ``t0``: reads at ``t <= t0`` see
``G(t0)``, so drift at t0 is the identity. Temperature enters twice (Arrhenius-type):

* conductance: ``G(T) = G(T_ref) exp(-(Ea_G / k_B)(1/T - 1/T_ref)) (1 + tcr (T - T_ref))``;
* drift rate, by time-temperature superposition of structural relaxation:
  ``t_eff = t exp((Ea_drift / k_B)(1/T_ref - 1/T))``, so a hot chip drifts as if older.

The drift exponent of each device is drawn at programming from N(mu_nu, sigma_nu), whose mean and
spread may depend on the device's target conductance (:func:`drift_exponent_distribution`).
"""

from __future__ import annotations

import math

import numpy as np

from crossbar.profiles import BOLTZMANN_EV_PER_KELVIN, DeviceProfile

__all__ = [
    "drift_exponent_distribution",
    "drift_factor",
    "effective_time_sec",
    "temperature_factor",
    "validate_read_conditions",
]

MAX_TEMPERATURE_KELVIN = 1000.0

_MIN_RELATIVE_CONDUCTANCE = 1e-12
"""Floor of G_T / G_ref in the log of the conductance-dependent drift law (a device at G_T = 0)."""


def drift_exponent_distribution(g_target_siemens: np.ndarray, profile: DeviceProfile) -> tuple[np.ndarray, np.ndarray]:
    """Mean and std of the drift exponent of devices programmed to ``g_target_siemens``.

    Parameters
    ----------
    g_target_siemens : array_like
        Target conductances, S (any shape).
    profile : DeviceProfile

    Returns
    -------
    mean, std : ndarray
        Arrays of the shape of ``g_target_siemens`` (dimensionless).

    Notes
    -----
    With ``d = profile.drift`` and ``x = ln(max(|G_T| / d.nu_g_ref_siemens, 1e-12))``::

        mu_nu    = clip(d.nu_mean + d.nu_mean_log_slope x, d.nu_mean_min, d.nu_mean_max)
        sigma_nu = clip(d.nu_std  + d.nu_std_log_slope  x, d.nu_std_min,  d.nu_std_max)

    the clipped logarithmic law fitted to IBM PCM by Nandakumar et al., ICECS 2019,
    doi:10.1109/ICECS46596.2019.8964852 (low-conductance states drift faster). The floor on
    ``G_T / G_ref`` only matters for a device at G_T = 0, whose exponent then sits at a clip bound.
    With both slopes 0 every device gets ``(d.nu_mean, d.nu_std)``; the clip bounds belong to the
    conductance-dependent law and are then not applied.
    """
    d = profile.drift
    g = np.abs(np.asarray(g_target_siemens, dtype=np.float64))
    if not d.conductance_dependent:
        return np.full(g.shape, d.nu_mean), np.full(g.shape, d.nu_std)
    x = np.log(np.maximum(g / d.nu_g_ref_siemens, _MIN_RELATIVE_CONDUCTANCE))
    mean = np.clip(d.nu_mean + d.nu_mean_log_slope * x, d.nu_mean_min, d.nu_mean_max)
    std = np.clip(d.nu_std + d.nu_std_log_slope * x, d.nu_std_min, d.nu_std_max)
    return mean, std


def validate_read_conditions(time_sec: float, temperature_kelvin: float) -> tuple[float, float]:
    """Check a read's time since programming and temperature; return them as floats."""
    for name, value in (("time_sec", time_sec), ("temperature_kelvin", temperature_kelvin)):
        if isinstance(value, bool) or not isinstance(value, (int, float, np.floating, np.integer)):
            raise ValueError(f"{name} = {value!r} must be a real number")
    t, temp = float(time_sec), float(temperature_kelvin)
    if not math.isfinite(t) or t < 0:
        raise ValueError(f"time_sec = {t:g} s must be a finite time since programming >= 0 s")
    if not math.isfinite(temp) or not 0 < temp <= MAX_TEMPERATURE_KELVIN:
        raise ValueError(f"temperature_kelvin = {temp:g} K must be in (0, {MAX_TEMPERATURE_KELVIN:g}] K")
    return t, temp


def effective_time_sec(time_sec: float, temperature_kelvin: float, profile: DeviceProfile, *, temperature: bool) -> float:
    """Time since programming at the reference temperature that produces the same drift, s."""
    if not temperature:
        return time_sec
    tp = profile.temperature
    ea = tp.drift_activation_energy_ev
    if ea == 0.0:
        return time_sec
    exponent = (ea / BOLTZMANN_EV_PER_KELVIN) * (1.0 / tp.reference_kelvin - 1.0 / temperature_kelvin)
    return time_sec * math.exp(exponent)


def drift_factor(nu: np.ndarray, time_sec: float, temperature_kelvin: float, profile: DeviceProfile, *, temperature: bool) -> np.ndarray:
    """Per-device factor ``(max(t_eff, t0) / t0)^(-nu)`` multiplying the programmed conductance."""
    t_eff = effective_time_sec(time_sec, temperature_kelvin, profile, temperature=temperature)
    ratio = max(t_eff, profile.drift.t0_sec) / profile.drift.t0_sec
    if ratio == 1.0:
        return np.ones_like(nu)
    return np.exp(-np.asarray(nu) * math.log(ratio))


def temperature_factor(temperature_kelvin: float, profile: DeviceProfile) -> float:
    """Factor multiplying every conductance at temperature T relative to the reference temperature."""
    tp = profile.temperature
    arrhenius = math.exp(
        -(tp.conductance_activation_energy_ev / BOLTZMANN_EV_PER_KELVIN)
        * (1.0 / temperature_kelvin - 1.0 / tp.reference_kelvin)
    )
    linear = 1.0 + tp.conductance_tcr_per_kelvin * (temperature_kelvin - tp.reference_kelvin)
    if linear <= 0:
        raise ValueError(
            f"temperature_kelvin = {temperature_kelvin:g} K: the linear TCR term 1 + tcr (T - T_ref) = "
            f"{linear:g} is not positive for this profile"
        )
    return arrhenius * linear
