"""Programming: target conductances land with noise, mismatch and stuck-at faults, drawn once.

All device draws of one programming (programming noise, mismatch, fault lottery, drift exponent) are
made whether or not their stage is on, in a fixed order, so that switching one stage off leaves the
draws of the others unchanged: an ablation compares the same chip with and without one effect.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from crossbar.config import Stages
from crossbar.drift import drift_exponent_distribution
from crossbar.profiles import DeviceProfile

__all__ = ["STUCK_AT_GMAX", "STUCK_AT_GMIN", "DeviceState", "program_devices", "programming_noise_std"]

STUCK_AT_GMIN = 1
"""Code in :attr:`DeviceState.stuck` of a device stuck at g_min."""
STUCK_AT_GMAX = 2
"""Code in :attr:`DeviceState.stuck` of a device stuck at g_max."""


@dataclass(frozen=True, kw_only=True, eq=False)
class DeviceState:
    """Per-device state fixed at programming time; arrays of shape (2, in, out) (G+ array, G- array)."""

    target_siemens: np.ndarray
    """Target conductances from the mapping, S."""
    programmed_siemens: np.ndarray
    """Conductances at t0 and the reference temperature, after noise, mismatch and faults, S."""
    nu: np.ndarray
    """Drift exponent of each device (0 where drift is off or the device is stuck)."""
    stuck: np.ndarray
    """0 for a working device, ``STUCK_AT_GMIN`` or ``STUCK_AT_GMAX`` (int8)."""


def programming_noise_std(g_target_siemens: np.ndarray, profile: DeviceProfile) -> np.ndarray:
    """Std of programming noise at the target conductance, S.

    Notes
    -----
    ``sigma(G_T) = max(0, sum_k c_k (G_T / g_max)^k)`` with ``c = profile.programming.poly_siemens``;
    for PCM the quadratic fit of Nandakumar et al. (2019), doi:10.1109/ISCAS.2019.8702528.
    """
    g_norm = np.asarray(g_target_siemens, dtype=np.float64) / profile.conductance.g_max_siemens
    sigma = np.zeros_like(g_norm)
    for c in reversed(profile.programming.poly_siemens):  # Horner
        sigma = sigma * g_norm + c
    return np.maximum(sigma, 0.0)


def program_devices(
    g_target_siemens: np.ndarray,
    profile: DeviceProfile,
    stages: Stages,
    rng: np.random.Generator,
) -> DeviceState:
    """Program target conductances: add programming noise, mismatch, faults; draw drift exponents.

    Parameters
    ----------
    g_target_siemens : ndarray, shape (2, in, out)
        Targets from :func:`crossbar.mapping.map_weights`, S.
    profile : DeviceProfile
    stages : Stages
        Which effects are on.
    rng : numpy.random.Generator
        Source of every draw.

    Returns
    -------
    DeviceState

    Notes
    -----
    ``G_p = max(0, G_T + sigma(G_T) z1) * max(0, 1 + m z2)``, then a device is stuck at g_min with
    probability p_min and at g_max with probability p_max (one uniform draw u: ``u < p_min`` or
    ``p_min <= u < p_min + p_max``). Drift exponents ``nu = max(0, mu_nu(G_T) + sigma_nu(G_T) z3)``
    (:func:`crossbar.drift.drift_exponent_distribution`; constant unless the profile makes them depend
    on the target conductance); stuck devices do not drift.
    """
    g_t = np.asarray(g_target_siemens, dtype=np.float64)
    shape = g_t.shape
    z_prog = rng.standard_normal(shape)
    z_mismatch = rng.standard_normal(shape)
    u_fault = rng.random(shape)
    z_nu = rng.standard_normal(shape)

    g = g_t.copy()
    if stages.programming_noise:
        g += programming_noise_std(g_t, profile) * z_prog
        np.maximum(g, 0.0, out=g)
    if stages.mismatch and profile.programming.mismatch_std_rel > 0:
        g *= np.maximum(1.0 + profile.programming.mismatch_std_rel * z_mismatch, 0.0)

    stuck = np.zeros(shape, dtype=np.int8)
    if stages.stuck_at_faults:
        p_min = profile.faults.stuck_at_gmin_prob
        p_max = profile.faults.stuck_at_gmax_prob
        stuck[u_fault < p_min] = STUCK_AT_GMIN
        stuck[(u_fault >= p_min) & (u_fault < p_min + p_max)] = STUCK_AT_GMAX
        g[stuck == STUCK_AT_GMIN] = profile.conductance.g_min_siemens
        g[stuck == STUCK_AT_GMAX] = profile.conductance.g_max_siemens

    if stages.drift:
        nu_mean, nu_std = drift_exponent_distribution(g_t, profile)
        nu = np.maximum(nu_mean + nu_std * z_nu, 0.0)
        nu[stuck != 0] = 0.0
    else:
        nu = np.zeros(shape)
    return DeviceState(target_siemens=g_t, programmed_siemens=g, nu=nu, stuck=stuck)
