"""Read noise: short-term noise fresh at every MVM, and 1/f noise accumulated since programming.

Notes
-----
Two parts with different time statistics (the split aihwkit makes for PCM, see Joshi et al.,
Nat. Commun. 11, 2473 (2020), doi:10.1038/s41467-020-16108-9):

* Fresh (short-term) read noise, independent at every read and every device, with the variance
  proportional to |G| of the project's seed model (dynamic weight noise DeltaW ~ N(0, alpha |W|))::

      var_fresh(G) = alpha G.

* Accumulated low-frequency (1/f) noise. Integrating ``S_G / G^2 = Q / f`` over the band from 1/t to
  1/(2 t_r) gives the std of the conductance at time t after programming (Nandakumar et al., ICECS 2019,
  doi:10.1109/ICECS46596.2019.8964852)::

      var_1f(G, t) = (G Q(G))^2 ln((t + t_r) / (2 t_r)),   Q(G) = min(q (G / G_ref)^(-e), Q_max).

  Its spectrum is dominated by frequencies near 1/t, so reads microseconds apart see almost the same
  deviation: it is drawn once per (time, temperature) state and held for every MVM at that state, not
  redrawn per read. The log factor is clipped at zero for t < t_r.
"""

from __future__ import annotations

import math

import numpy as np

from crossbar.profiles import DeviceProfile

__all__ = ["flicker_variance", "fresh_read_variance", "has_flicker_noise", "has_fresh_read_noise"]


def has_fresh_read_noise(profile: DeviceProfile) -> bool:
    """Whether the profile has short-term read noise (alpha > 0)."""
    return profile.read_noise.alpha_siemens > 0


def has_flicker_noise(profile: DeviceProfile) -> bool:
    """Whether the profile has accumulated 1/f noise (q > 0)."""
    return profile.read_noise.flicker_q_rel > 0


def fresh_read_variance(g_siemens: np.ndarray, profile: DeviceProfile) -> np.ndarray:
    """Variance of the fresh per-read noise of devices at conductance ``g_siemens``, S^2."""
    return profile.read_noise.alpha_siemens * np.abs(np.asarray(g_siemens, dtype=np.float64))


def flicker_variance(g_siemens: np.ndarray, time_sec: float, profile: DeviceProfile) -> np.ndarray:
    """Variance of the 1/f deviation accumulated between programming and ``time_sec``, S^2."""
    rn = profile.read_noise
    g = np.abs(np.asarray(g_siemens, dtype=np.float64))
    if rn.flicker_q_rel == 0:
        return np.zeros_like(g)
    band = math.log(max((time_sec + rn.read_time_sec) / (2.0 * rn.read_time_sec), 1.0))
    with np.errstate(divide="ignore"):
        q = np.minimum(rn.flicker_q_rel * np.power(g / rn.flicker_g_ref_siemens, -rn.flicker_exponent), rn.flicker_q_max_rel)
    return (g * q) ** 2 * band
