"""Noise characterization: the fits recover the parameters a chip was configured with.

"Within sampling error" means: every coefficient within 4 of its reported standard errors (batch means
over 16 groups of input vectors; on 20 chips the z-scores of every read-noise coefficient had a std
between 0.8 and 1.1, so 4 SE is a false-alarm rate below 1e-3 per check), and the standard error itself
small enough that the check is not vacuous. Small tiles and a few thousand vectors keep each
characterization near one second.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossbar import ADCConfig, ActivationConfig, Chip, ChipConfig, DACConfig, InputRange, ScaleMode, Stages, TileConfig
from crossbar.characterization import (
    CharacterizationProtocol,
    InputDistribution,
    InputSet,
    MatrixKind,
    characterize,
    normalized_errors,
    probe_matrix,
)
from crossbar.fitting import (
    SurrogateParams,
    effective_bits,
    fit_arrhenius,
    fit_drift_law,
    pi_hw_from_weights,
    quantize_levels,
    weight_scales,
)
from crossbar.profiles import BOLTZMANN_EV_PER_KELVIN, DeviceProfile, parse_profile
from crossbar.programming import programming_noise_std

G_MIN = 2e-6
G_MAX = 2e-5
ALPHA = 4e-9
POLY = (3e-7, 1e-6)
MISMATCH = 0.02

_TOML = """
schema_version = 1
name = "characterization-test"
technology = "synthetic: known parameters for the characterization tests"
description = "Test fixture; not a physical device."
[conductance]
g_min_siemens = {g_min}
g_max_siemens = {g_max}
[programming]
poly_siemens = [{p0}, {p1}]
mismatch_std_rel = {mismatch}
[read_noise]
alpha_siemens = {alpha}
[drift]
nu_mean = {nu_mean}
nu_std = {nu_std}
t0_sec = 10.0
[temperature]
reference_kelvin = 300.0
conductance_activation_energy_ev = {ea}
[source]
summary = "Synthetic values for tests."
references = {{ synthetic = "test fixture" }}
fields = {{ {fields} }}
"""
_FIELDS = (
    "conductance.g_min_siemens", "conductance.g_max_siemens", "programming.poly_siemens", "programming.mismatch_std_rel",
    "read_noise.alpha_siemens", "drift.nu_mean", "drift.nu_std", "drift.t0_sec", "temperature.reference_kelvin",
    "temperature.conductance_activation_energy_ev",
)


def known_profile(*, nu_mean: float = 0.05, nu_std: float = 0.002, ea: float = 0.2) -> DeviceProfile:
    """A profile with every number known: g_min > 0 (no programming noise clipped at 0 S), no 1/f noise."""
    text = _TOML.format(
        g_min=G_MIN, g_max=G_MAX, p0=POLY[0], p1=POLY[1], mismatch=MISMATCH, alpha=ALPHA, nu_mean=nu_mean, nu_std=nu_std,
        ea=ea, fields=", ".join(f'"{f}" = "synthetic"' for f in _FIELDS),
    )
    return parse_profile(text, origin="tests/characterization")


SMALL = TileConfig(rows=64, cols=32)
NO_SWEEPS = dict(times_sec=(), temperatures_kelvin=())


def _within(value: float, truth: float, se: float, name: str, *, max_rel_se: float | None = None) -> None:
    assert math.isfinite(se) and se > 0, f"{name}: no standard error"
    assert abs(value - truth) <= 4 * se, f"{name} = {value:.5g}, truth {truth:.5g}, SE {se:.2g} (z = {(value - truth) / se:.2f})"
    if max_rel_se is not None:
        assert se <= max_rel_se * abs(truth), f"{name}: SE {se:.2g} is more than {max_rel_se:.0%} of {truth:.5g}"


# --------------------------------------------------------------------------------------------------
# Recovery of known parameters
# --------------------------------------------------------------------------------------------------


def test_read_noise_alpha_offset_and_output_noise_are_recovered() -> None:
    """Only fresh read noise and output noise, ideal ADC: the variance model is exact for this chip.

    Per device var = alpha_siemens (G+ + G-) with G+ = g_min + g_range |w~|, G- = g_min, so in I_dev^2:
    alpha = alpha_siemens / g_range and alpha0 = 2 alpha_siemens g_min / g_range^2; beta = 0.
    """
    prof = known_profile()
    g_range = G_MAX - G_MIN
    cfg = ChipConfig(tile=SMALL, adc=ADCConfig(bits=None, output_noise_std_rel=0.05), dac=DACConfig(bits=8),
                     stages=Stages.only("read_noise", "dac", "output_noise"))
    char = characterize(Chip(prof, cfg, seed=1), protocol=CharacterizationProtocol(n_inputs=2048, seed=1, **NO_SWEEPS))
    rn = char.read_noise
    _within(rn["output_var_rel"], 0.05**2, rn.std_error("output_var_rel"), "sigma_out^2", max_rel_se=0.02)
    _within(rn["alpha_rel"], ALPHA / g_range, rn.std_error("alpha_rel"), "alpha", max_rel_se=0.05)
    _within(rn["offset_rel"], 2 * ALPHA * G_MIN / g_range**2, rn.std_error("offset_rel"), "alpha0", max_rel_se=0.1)
    _within(rn["beta_rel"], 0.0, rn.std_error("beta_rel"), "beta")
    _within(rn["activation_var_rel"], 0.0, rn.std_error("activation_var_rel"), "activation variance")
    _within(char.correlated_var_rel, 0.0, char.correlated_var_std_error, "correlated variance")
    assert rn.r2 > 0.99 and rn.chi2_per_dof < 2.0
    for m in char.matrices:  # the fitted model predicts the read-to-read std of every |W x| bin
        np.testing.assert_allclose(m.bin_std_dynamic_model_rel, m.bin_std_dynamic_rel, rtol=0.02)
    assert char.dynamic_ks_statistic < 0.01  # the reads are Gaussian
    p = char.surrogate_params
    assert p.output_noise_std_rel == pytest.approx(0.05, rel=0.02)
    assert p.read_noise_alpha_rel == pytest.approx(ALPHA / g_range, rel=0.2)


def test_digital_readout_counts_the_noise_of_both_reads() -> None:
    """Digital differential readout digitizes G+ and G- separately: two output-noise draws per tile partial."""
    from crossbar import DifferentialReadout

    cfg = ChipConfig(tile=TileConfig(rows=64, cols=32, differential=DifferentialReadout.DIGITAL),
                     adc=ADCConfig(bits=None, output_noise_std_rel=0.05), dac=DACConfig(bits=8), stages=Stages.only("dac", "output_noise"))
    char = characterize(Chip(known_profile(), cfg, seed=8), protocol=CharacterizationProtocol(n_inputs=1024, seed=8, **NO_SWEEPS))
    rn = char.read_noise
    _within(rn["output_var_rel"], 0.05**2, rn.std_error("output_var_rel"), "sigma_out^2 per read", max_rel_se=0.02)
    assert char.surrogate_params.output_noise_std_rel == pytest.approx(0.05 * math.sqrt(2), rel=0.02)


def test_correlated_and_uncorrelated_activation_noise_are_separated() -> None:
    """Activation noise in output units: one draw per vector shared by every output, one per output."""
    cfg = ChipConfig(tile=SMALL, adc=ADCConfig(bits=None, output_noise_std_rel=0.05), dac=DACConfig(bits=8),
                     activation=ActivationConfig(correlated_std_rel=0.3, uncorrelated_std_rel=0.4),
                     stages=Stages.only("read_noise", "dac", "output_noise", "activation_noise"))
    char = characterize(Chip(known_profile(), cfg, seed=2), protocol=CharacterizationProtocol(n_inputs=2048, seed=2, **NO_SWEEPS))
    rn = char.read_noise
    _within(char.correlated_var_rel, 0.3**2, char.correlated_var_std_error, "s_c^2", max_rel_se=0.05)
    _within(rn["activation_var_rel"], 0.3**2 + 0.4**2, rn.std_error("activation_var_rel"), "s_c^2 + s_u^2", max_rel_se=0.05)
    _within(rn["output_var_rel"], 0.05**2, rn.std_error("output_var_rel"), "sigma_out^2", max_rel_se=0.05)
    p = char.surrogate_params
    assert p.activation_correlated_std_rel == pytest.approx(0.3, rel=0.05)
    assert p.activation_uncorrelated_std_rel == pytest.approx(0.4, rel=0.05)


def _expected_static_variance(u: np.ndarray) -> np.ndarray:
    """Slow, obvious reference: variance of (G+ - G-) / g_range for a pair programmed to (g_min + g_range u, g_min).

    Each device: G = (G_T + s(G_T) z1)(1 + m z2), so var = s^2 (1 + m^2) + (m G_T)^2 (independent z1, z2).
    """
    prof = known_profile()
    g_range = G_MAX - G_MIN
    total = np.zeros_like(u)
    for g_t in (G_MIN + g_range * u, np.full_like(u, G_MIN)):
        s = programming_noise_std(g_t, prof)
        total += s**2 * (1 + MISMATCH**2) + (MISMATCH * g_t) ** 2
    return total / g_range**2


def test_static_programming_noise_and_mismatch_are_recovered_per_weight_magnitude() -> None:
    cfg = ChipConfig(tile=SMALL, adc=ADCConfig(bits=None, output_noise_std_rel=0.02), dac=DACConfig(bits=8),
                     stages=Stages.only("programming_noise", "mismatch", "read_noise", "dac", "output_noise"))
    char = characterize(Chip(known_profile(), cfg, seed=3), protocol=CharacterizationProtocol(n_inputs=2048, seed=3, **NO_SWEEPS))
    # per |w~| bin: measured variance against the reference averaged over the devices of the bin
    edges = char.static_bin_edges_rel
    ref_sum = np.zeros(len(edges) - 1)
    for m in char.matrices:
        u = np.abs(m.weights / np.repeat(m.weight_scale, SMALL.rows, axis=0)[: m.weights.shape[1]].T).ravel()
        idx = np.clip(np.searchsorted(edges, u, side="right") - 1, 0, len(edges) - 2)
        ref_sum += np.bincount(idx, weights=_expected_static_variance(u), minlength=len(edges) - 1)
    ref = ref_sum / char.static_bin_count
    ok = char.static_bin_count > 30
    z = (char.static_bin_var_rel[ok] - ref[ok]) / char.static_bin_var_se[ok]
    assert np.all(np.abs(z) < 4), z
    well_filled = char.static_bin_count >= 150
    assert well_filled.sum() >= 6 and np.all(char.static_bin_var_se[well_filled] < 0.2 * ref[well_filled])
    # the quadratic model is exact here: compare the coefficients with the reference's
    u = np.linspace(0, 1, 101)
    truth = np.polynomial.polynomial.polyfit(u, _expected_static_variance(u), 2)
    for name, t in zip(("c0", "c1", "c2"), truth):
        _within(char.static[name], t, char.static.std_error(name), f"static {name}")
    assert char.static.std_error("c0") < 0.1 * truth[0]
    assert char.static_outlier_fraction < 1e-3 and char.static_ks_statistic < 0.03


def test_drift_law_is_recovered_from_a_time_sweep() -> None:
    """Gain g(t) = E[(t / t0)^-nu]: with nu_std = 0.002 the curvature from the spread (nu_std^2 ln(t/t0) / 2
    <= 3e-5) is far below the 1 % tolerance."""
    prof = known_profile(nu_mean=0.05, nu_std=0.002)
    cfg = ChipConfig(tile=SMALL, adc=ADCConfig(bits=None, output_noise_std_rel=0.01), dac=DACConfig(bits=None),
                     stages=Stages.only("drift", "output_noise"))
    times = (10.0, 100.0, 1e3, 1e4, 1e5, 1e6)
    protocol = CharacterizationProtocol(n_inputs=256, n_sweep_inputs=256, times_sec=times, temperatures_kelvin=(), seed=4)
    char = characterize(Chip(prof, cfg, seed=4), {"w": probe_matrix(MatrixKind.GAUSSIAN, (32, 64), seed=4)}, protocol=protocol)
    assert char.drift is not None
    assert char.drift.nu == pytest.approx(0.05, rel=0.01)
    assert char.drift.r2 > 0.9999
    assert char.drift.gain(10.0) == pytest.approx(1.0, abs=0.01)
    sweep = char.matrices[0].time_sweep
    assert sweep is not None and list(sweep.values) == list(times)
    assert np.all(np.diff(sweep.gain) < 0)  # conductances fall with time
    np.testing.assert_allclose(sweep.gain, (np.array(times) / 10.0) ** -0.05, rtol=0.01)
    assert char.temperature is None


def test_apparent_activation_energy_is_recovered_from_a_temperature_sweep() -> None:
    prof = known_profile(ea=0.2)
    cfg = ChipConfig(tile=SMALL, adc=ADCConfig(bits=None, output_noise_std_rel=0.01), dac=DACConfig(bits=None),
                     stages=Stages.only("temperature", "output_noise"))
    temps = (275.0, 300.0, 325.0, 350.0)
    protocol = CharacterizationProtocol(n_inputs=256, n_sweep_inputs=256, times_sec=(), temperatures_kelvin=temps, seed=5)
    char = characterize(Chip(prof, cfg, seed=5), {"w": probe_matrix(MatrixKind.GAUSSIAN, (32, 64), seed=5)}, protocol=protocol)
    assert char.temperature is not None
    assert char.temperature.activation_energy_ev == pytest.approx(0.2, rel=0.01)
    expected = np.exp(-(0.2 / BOLTZMANN_EV_PER_KELVIN) * (1 / np.array(temps) - 1 / 300.0))
    np.testing.assert_allclose(char.matrices[0].temperature_sweep.gain, expected, rtol=0.005)


@pytest.mark.parametrize("bits", [5, 7], ids=["5bit", "7bit"])
def test_effective_bits_of_a_noiseless_chip_are_its_adc_bits(bits: int) -> None:
    """Only the ADC: the total error is the quantization error of signals spread over many steps, so
    ENOB = log2(2^b - 2) (IEEE 1241 definition) within 0.1 bit."""
    cfg = ChipConfig(tile=SMALL, adc=ADCConfig(bits=bits, full_scale_rel=8.0), dac=DACConfig(bits=None), stages=Stages.only("adc"))
    char = characterize(Chip(known_profile(), cfg, seed=6), protocol=CharacterizationProtocol(n_inputs=512, seed=6, **NO_SWEEPS))
    assert char.enob_total_bits == pytest.approx(math.log2(2**bits - 2), abs=0.1)
    assert math.isinf(char.enob_dynamic_bits)  # no read-to-read noise at all


def test_effective_bits_formula_matches_an_ideal_quantizer() -> None:
    """Reference: quantize a uniform signal with numpy and compare the measured RMS error."""
    rng = np.random.default_rng(0)
    v = rng.uniform(-10.0, 10.0, 200_000)
    for bits in (4, 6, 8, 10):
        rms = float(np.sqrt(np.mean((quantize_levels(v, bits, 10.0) - v) ** 2)))
        assert effective_bits(rms, 10.0) == pytest.approx(math.log2(2**bits - 2), abs=0.02)


def test_pi_hw_of_an_ideal_chip_is_the_histogram_of_its_quantized_normalized_weights() -> None:
    cfg = ChipConfig(tile=TileConfig(rows=16, cols=8), dac=DACConfig(bits=None), adc=ADCConfig(bits=None), stages=Stages.all_off())
    w = probe_matrix(MatrixKind.SPARSE, (20, 40), seed=7)
    char = characterize(Chip(known_profile(), cfg, seed=7), {"w": w},
                        protocol=CharacterizationProtocol(n_inputs=200, pi_hw_bits=3, pi_hw_pseudo_count=0.0, **NO_SWEEPS))
    w_rel = w / np.repeat(weight_scales(w, tile_rows=16, tile_cols=8, scale_mode=ScaleMode.PER_COLUMN), 16, axis=0)[:40].T
    expected = pi_hw_from_weights(w_rel, 3, pseudo_count=0.0)
    np.testing.assert_array_equal(char.pi_hw.counts, expected.counts)
    np.testing.assert_allclose(char.pi_hw.probabilities, expected.probabilities)
    np.testing.assert_allclose(char.pi_hw.levels, np.arange(-3, 4) / 3)
    assert char.pi_hw.bin_edges[0] < -1 < 1 < char.pi_hw.bin_edges[-1]
    # an ideal chip has no error at all
    np.testing.assert_allclose(char.matrices[0].static_error_rel, 0.0, atol=1e-5)
    assert char.matrices[0].rms_total_rel < 1e-9


def test_pi_hw_scaling_and_smoothing() -> None:
    p = pi_hw_from_weights(np.array([-1.0, 0.0, 0.0, 0.5, 1.0, 3.0]), 2, pseudo_count=1.0)
    np.testing.assert_array_equal(p.counts, [1.0, 3.0, 2.0])  # 0.5 rounds to 0 (half to even), 3.0 clips to 1
    np.testing.assert_allclose(p.probabilities, [2 / 9, 4 / 9, 3 / 9])
    q = p.scaled(0.25)
    np.testing.assert_allclose(q.levels, [-0.25, 0.0, 0.25])
    np.testing.assert_allclose(q.bin_edges, [-0.375, -0.125, 0.125, 0.375])
    with pytest.raises(ValueError, match="w_max"):
        p.scaled(-1.0)


# --------------------------------------------------------------------------------------------------
# Units and normalization
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", [ScaleMode.PER_COLUMN, ScaleMode.PER_TILE], ids=["per-column", "per-tile"])
def test_weight_scales_match_the_chip_mapping(mode: ScaleMode) -> None:
    """s_w is what the chip's mapping divides by: (g_max - g_min) / siemens_per_weight."""
    prof = known_profile()
    cfg = ChipConfig(tile=TileConfig(rows=16, cols=8, scale_mode=mode), stages=Stages.all_off())
    w = probe_matrix(MatrixKind.DENSITY_RAMP, (20, 40), seed=1)
    m = Chip(prof, cfg, seed=0).program(w)
    s_w = weight_scales(w, tile_rows=16, tile_cols=8, scale_mode=mode)
    np.testing.assert_allclose(s_w, prof.g_range_siemens / m.targets.siemens_per_weight, rtol=1e-12)


def test_normalized_errors_of_one_tile_are_in_units_of_the_input_and_weight_scales() -> None:
    rng = np.random.default_rng(0)
    w = rng.standard_normal((6, 10))
    x = rng.standard_normal((5, 10))
    y = x @ w.T + 0.1
    design = SurrogateParams(tile_rows=16, tile_cols=16)
    a, e = normalized_errors(w, x, y[None], design)
    s_x = np.abs(x).max(axis=1)[:, None]
    s_w = np.abs(w).max(axis=1)[None, :]
    np.testing.assert_allclose(e[0], 0.1 / (s_x * s_w))
    np.testing.assert_allclose(a[0], np.abs(x @ w.T) / (s_x * s_w))


def test_input_sets_have_the_requested_statistics() -> None:
    rng = np.random.default_rng(0)
    x = InputSet(distribution=InputDistribution.BINARY, density_rel=0.25, amplitude=3.0).sample(rng, 400, 100)
    assert set(np.unique(x)) <= {-3.0, 0.0, 3.0}
    assert np.mean(x != 0) == pytest.approx(0.25, abs=0.01)
    y = InputSet(distribution=InputDistribution.UNIFORM, nonnegative=True).sample(rng, 400, 100)
    assert y.min() >= 0 and y.max() <= 1 and np.mean(y) == pytest.approx(0.5, abs=0.01)


def test_probe_matrices_have_their_structure() -> None:
    ramp = probe_matrix("density_ramp", (64, 256), seed=0)
    density = np.mean(ramp != 0, axis=1)
    assert density[0] > 0.95 and density[-1] < 0.08 and np.all(np.any(ramp != 0, axis=1))
    assert np.linalg.matrix_rank(probe_matrix(MatrixKind.LOW_RANK, (30, 40))) == 4
    np.testing.assert_array_equal(probe_matrix("gaussian", (3, 4), seed=2), probe_matrix("gaussian", (3, 4), seed=2))


def test_static_estimate_variance_is_the_one_the_fit_subtracted() -> None:
    """Ragged tiles (20 inputs on 8-row tiles): the per-device estimate variance the file lets one rebuild
    is the one taken off in the static bins (sum over devices of dw~^2 - v_est)."""
    cfg = ChipConfig(tile=TileConfig(rows=8, cols=4))
    char = characterize(Chip(known_profile(), cfg, seed=1), {"w": probe_matrix("gaussian", (6, 20))},
                        protocol=CharacterizationProtocol(n_inputs=200, **NO_SWEEPS))
    m = char.matrix("w")
    v = char.static_estimate_var_rel("w")
    assert v.shape == (6, 20) and np.all(v > 0)
    total = np.sum(m.static_error_rel.astype(np.float64) ** 2 - v)
    assert total == pytest.approx(np.sum(char.static_bin_var_rel * char.static_bin_count), rel=1e-5)


def test_same_seed_gives_the_same_characterization() -> None:
    cfg = ChipConfig(tile=TileConfig(rows=16, cols=8))
    protocol = CharacterizationProtocol(n_inputs=128, n_sweep_inputs=32, times_sec=(10.0, 100.0), temperatures_kelvin=(300.0, 320.0))
    a = characterize(Chip(known_profile(), cfg, seed=9), protocol=protocol)
    b = characterize(Chip(known_profile(), cfg, seed=9), protocol=protocol)
    assert a.surrogate_params == b.surrogate_params
    np.testing.assert_array_equal(a.matrices[0].raw_outputs, b.matrices[0].raw_outputs)
    assert a.summary() == b.summary()


def test_fixed_input_range_and_saturation_are_handled() -> None:
    """A fixed DAC range scales inputs by input_max; outputs pushed into the ADC's clipping are left out of
    the fits and counted."""
    cfg = ChipConfig(tile=TileConfig(rows=32, cols=16), dac=DACConfig(bits=8, range_mode=InputRange.FIXED, input_max=2.0),
                     adc=ADCConfig(bits=8, full_scale_rel=3.0))
    protocol = CharacterizationProtocol(n_inputs=256, input_sets=(InputSet(), InputSet(amplitude=0.1)), **NO_SWEEPS)
    char = characterize(Chip(known_profile(), cfg, seed=0), {"w": probe_matrix("gaussian", (16, 32))}, protocol=protocol)
    assert 0.0 < char.matrices[0].saturated_fraction < 0.5
    assert char.surrogate_params.input_range is InputRange.FIXED and char.surrogate_params.input_max == 2.0


def test_saturated_outputs_do_not_bias_the_gain() -> None:
    """An all-positive matrix driven by nonnegative inputs pushes many partials into the ADC's clipping;
    the clipped outputs are the converter's doing, not a smaller conductance, so the fitted gain stays 1
    (for trained MLP weights it read 0.76-0.84 before saturated outputs were left out of the gain)."""
    cfg = ChipConfig(tile=TileConfig(rows=64, cols=16), adc=ADCConfig(bits=8, full_scale_rel=8.0),
                     stages=Stages.only("dac", "adc", "read_noise", "output_noise"))
    w = np.abs(probe_matrix("gaussian", (16, 64), seed=3))
    sets = (InputSet(distribution=InputDistribution.UNIFORM, nonnegative=True), InputSet(amplitude=0.5))
    protocol = CharacterizationProtocol(n_inputs=1024, input_sets=sets, **NO_SWEEPS)
    char = characterize(Chip(known_profile(), cfg, seed=0), {"w": w}, protocol=protocol)
    assert char.matrices[0].saturated_fraction > 0.3  # 0.48
    assert char.surrogate_params.gain_rel == pytest.approx(1.0, abs=0.01)  # 0.75 with clipped outputs counted
    assert char.matrices[0].rms_static_rel < 0.05  # no static error on this chip; 0.93 with clipped outputs


# --------------------------------------------------------------------------------------------------
# Bad arguments
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"n_repeats": 1}, "n_repeats"),
        ({"n_inputs": 0}, "n_inputs"),
        ({"times_sec": (10.0, 5.0)}, "ascending"),
        ({"input_sets": ()}, "input_sets"),
        ({"pi_hw_bits": 1}, "pi_hw_bits"),
        ({"temperature_kelvin": -3.0}, "temperature_kelvin"),
        ({"n_inputs": 20, "n_groups": 16}, "n_groups"),
    ],
    ids=["one-read", "no-inputs", "times-order", "no-input-sets", "pi-bits", "temperature", "groups"],
)
def test_bad_protocols_are_rejected(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CharacterizationProtocol(**kwargs)


def test_characterize_rejects_what_it_cannot_measure() -> None:
    prof = known_profile()
    with pytest.raises(ValueError, match="identity"):
        from crossbar import Activation

        characterize(Chip(prof, ChipConfig(activation=ActivationConfig(function=Activation.RELU))))
    with pytest.raises(ValueError, match="n_inputs"):
        characterize(Chip(prof, ChipConfig(tile=SMALL)), {"w": np.ones((4, 64))}, protocol=CharacterizationProtocol(n_inputs=100))
    with pytest.raises(ValueError, match="all zero"):
        characterize(Chip(prof, ChipConfig(tile=SMALL)), {"w": np.zeros((4, 8))})
    with pytest.raises(ValueError, match="chip"):
        characterize("pcm")  # type: ignore[arg-type]


def test_surrogate_params_validate_fields() -> None:
    with pytest.raises(ValueError, match="output_noise_std_rel"):
        SurrogateParams(output_noise_std_rel=-0.1)
    with pytest.raises(ValueError, match="adc_bits"):
        SurrogateParams(adc_bits=1)
    with pytest.raises(ValueError, match="finite adc_full_scale_rel"):
        SurrogateParams(adc_bits=8)
    p = SurrogateParams(adc_bits=8, adc_full_scale_rel=12.0, scale_mode="per_tile")
    assert p.scale_mode is ScaleMode.PER_TILE and p.adc_step_rel == pytest.approx(12.0 / 127)
    assert SurrogateParams.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="unknown"):
        SurrogateParams.from_dict({"bogus": 1})


def test_nominal_params_follow_the_profile() -> None:
    prof = known_profile()
    cfg = ChipConfig(tile=SMALL)
    p = SurrogateParams.nominal(prof, cfg)
    g_range = G_MAX - G_MIN
    assert p.read_noise_alpha_rel == pytest.approx(ALPHA / g_range)
    assert p.read_noise_offset_rel == pytest.approx(2 * ALPHA * G_MIN / g_range**2)
    u = np.linspace(0, 1, 11)
    np.testing.assert_allclose(p.static_std_rel(u) ** 2, _expected_static_variance(u), rtol=0.02)
    assert p.tile_rows == 64 and p.adc_bits == 8 and p.dac_bits == 8


def test_fit_helpers_on_exact_data() -> None:
    t = np.array([20.0, 200.0, 2000.0, 2e4])
    d = fit_drift_law(t, 0.9 * (t / 20.0) ** -0.07)
    assert d.nu == pytest.approx(0.07) and math.exp(d.log_gain_at_reference) == pytest.approx(0.9)
    assert d.max_abs_residual < 1e-12
    temps = np.array([280.0, 300.0, 340.0])
    a = fit_arrhenius(temps, np.exp(-(0.3 / BOLTZMANN_EV_PER_KELVIN) * (1 / temps - 1 / 300.0)), 300.0)
    assert a.activation_energy_ev == pytest.approx(0.3) and a.r2 == pytest.approx(1.0)
    with pytest.raises(ValueError):
        fit_drift_law([1.0], [1.0])
