"""A device profile with every effect switched on, built in code for tests (not a shipped profile)."""

from __future__ import annotations

from crossbar.profiles import DeviceProfile, parse_profile

_TEMPLATE = """
schema_version = 1
name = "test-noisy"
technology = "synthetic: every effect on, magnitudes of PCM"
description = "Test fixture; not a physical device."
[conductance]
g_min_siemens = 1e-7
g_max_siemens = 2.5e-5
[programming]
poly_siemens = [2.6e-7, 1.97e-6, -1.17e-6]
mismatch_std_rel = 0.03
[faults]
stuck_at_gmin_prob = 0.01
stuck_at_gmax_prob = 0.005
[read_noise]
alpha_siemens = {alpha}
flicker_q_rel = 0.0088
flicker_g_ref_siemens = 2.5e-5
flicker_exponent = 0.65
flicker_q_max_rel = 0.2
[drift]
nu_mean = 0.05
nu_std = 0.01
t0_sec = 20.0
[temperature]
reference_kelvin = 300.0
conductance_activation_energy_ev = 0.2
conductance_tcr_per_kelvin = 0.001
drift_activation_energy_ev = 0.3
[iv]
sinh_alpha_per_volt = 2.0
[source]
summary = "Synthetic values for tests."
references = {{ synthetic = "test fixture" }}
fields = {fields}
"""

_FIELDS = [
    "conductance.g_min_siemens", "conductance.g_max_siemens", "programming.poly_siemens",
    "programming.mismatch_std_rel", "faults.stuck_at_gmin_prob", "faults.stuck_at_gmax_prob",
    "read_noise.alpha_siemens", "read_noise.flicker_q_rel", "read_noise.flicker_g_ref_siemens",
    "read_noise.flicker_exponent", "read_noise.flicker_q_max_rel", "drift.nu_mean", "drift.nu_std",
    "drift.t0_sec", "temperature.reference_kelvin", "temperature.conductance_activation_energy_ev",
    "temperature.conductance_tcr_per_kelvin", "temperature.drift_activation_energy_ev", "iv.sinh_alpha_per_volt",
]


def noisy_profile(alpha_siemens: float = 5e-10) -> DeviceProfile:
    """Every effect on: programming noise, mismatch, faults, fresh and 1/f read noise, drift, temperature."""
    fields = "{ " + ", ".join(f'"{f}" = "synthetic"' for f in _FIELDS) + " }"
    return parse_profile(_TEMPLATE.format(alpha=alpha_siemens, fields=fields), origin="tests/noisy")
