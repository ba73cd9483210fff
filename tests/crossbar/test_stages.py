"""Each device stage against its closed form and the profile's statistics (within sampling error)."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from crossbar import Chip, ChipConfig, ScaleMode, Stages, TileConfig, TileGrid, load_profile
from crossbar.drift import drift_exponent_distribution, drift_factor, effective_time_sec, temperature_factor
from crossbar.mapping import map_weights
from crossbar.profiles import BOLTZMANN_EV_PER_KELVIN
from crossbar.programming import STUCK_AT_GMAX, STUCK_AT_GMIN, program_devices, programming_noise_std
from crossbar.read_noise import flicker_variance, fresh_read_variance
from tests.crossbar.profiles_for_tests import noisy_profile

# ------------------------------------------------------------------------------------------ tiling


@given(n_in=st.integers(1, 300), n_out=st.integers(1, 300), rows=st.integers(1, 64), cols=st.integers(1, 64))
def test_tiles_partition_the_matrix(n_in: int, n_out: int, rows: int, cols: int) -> None:
    grid = TileGrid(in_features=n_in, out_features=n_out, rows=rows, cols=cols)
    covered = np.zeros((n_in, n_out), dtype=int)
    for _, _, rs, cs in grid.tiles():
        assert rs.stop - rs.start <= rows and cs.stop - cs.start <= cols
        covered[rs, cs] += 1
    assert (covered == 1).all()
    assert grid.n_tiles == math.ceil(n_in / rows) * math.ceil(n_out / cols)


# ----------------------------------------------------------------------------------------- mapping


@settings(max_examples=40, deadline=None)
@given(
    n_in=st.integers(1, 40),
    n_out=st.integers(1, 40),
    rows=st.integers(1, 16),
    cols=st.integers(1, 16),
    mode=st.sampled_from(list(ScaleMode)),
    seed=st.integers(0, 10_000),
)
def test_mapping_is_exact_and_uses_the_window(n_in: int, n_out: int, rows: int, cols: int, mode: ScaleMode, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((n_out, n_in)) * (rng.random((n_out, n_in)) > 0.2)
    grid = TileGrid(in_features=n_in, out_features=n_out, rows=rows, cols=cols)
    g_min, g_max = 1e-7, 2.5e-5
    t = map_weights(w, grid, g_min_siemens=g_min, g_max_siemens=g_max, scale_mode=mode)
    g = t.g_target_siemens
    assert g.min() >= g_min and g.max() <= g_max
    assert ((g[0] == g_min) | (g[1] == g_min)).all(), "one device of each pair sits at g_min"
    for k, c, rs, cs in grid.tiles():
        diff = g[0][rs, cs] - g[1][rs, cs]
        np.testing.assert_allclose(diff, t.siemens_per_weight[k, cs] * w.T[rs, cs], rtol=1e-12, atol=1e-20)
        block = np.abs(w.T[rs, cs])
        if mode is ScaleMode.PER_COLUMN:  # every nonzero column's largest weight spans the window
            peaks = block.max(axis=0)
            np.testing.assert_allclose(np.abs(diff).max(axis=0)[peaks > 0], g_max - g_min, rtol=1e-12)
        elif block.max() > 0:  # the tile's largest weight spans the window
            assert np.abs(diff).max() == pytest.approx(g_max - g_min, rel=1e-12)


# ------------------------------------------------------------------------------------- programming


def _flat_targets(profile, n: int = 200_000) -> np.ndarray:
    g = np.linspace(profile.conductance.g_min_siemens, profile.conductance.g_max_siemens, 8)
    return np.repeat(g, n // 8).reshape(2, 1, -1)


def test_programming_noise_std_matches_the_profile_polynomial() -> None:
    prof = dataclasses.replace(noisy_profile(), programming=dataclasses.replace(noisy_profile().programming, mismatch_std_rel=0.0))
    g_t = _flat_targets(prof)
    state = program_devices(g_t, prof, Stages.only("programming_noise"), np.random.default_rng(0))
    for level in np.unique(g_t):
        sel = g_t == level
        err = state.programmed_siemens[sel] - g_t[sel]
        sigma = programming_noise_std(np.array([level]), prof)[0]
        n = err.size
        if level - 4 * sigma > 0:  # away from the clip at zero
            assert abs(err.mean()) < 5 * sigma / math.sqrt(n)
            assert abs(err.std() / sigma - 1) < 5 * math.sqrt(1 / (2 * n))
    g_norm = 0.5
    expected = sum(c * g_norm**k for k, c in enumerate(prof.programming.poly_siemens))
    assert programming_noise_std(np.array([0.5 * prof.conductance.g_max_siemens]), prof)[0] == pytest.approx(expected)


def test_mismatch_is_a_multiplicative_spread_with_the_profile_std() -> None:
    prof = noisy_profile()
    g_t = np.full((2, 1, 100_000), 1e-5)
    state = program_devices(g_t, prof, Stages.only("mismatch"), np.random.default_rng(1))
    ratio = state.programmed_siemens / g_t
    assert abs(ratio.mean() - 1) < 5 * prof.programming.mismatch_std_rel / math.sqrt(ratio.size)
    assert ratio.std() == pytest.approx(prof.programming.mismatch_std_rel, rel=0.02)


def test_stuck_at_fault_rates_match_the_profile() -> None:
    prof = noisy_profile()
    g_t = np.full((2, 1, 200_000), 1e-5)
    state = program_devices(g_t, prof, Stages.only("stuck_at_faults", "drift"), np.random.default_rng(2))
    n = g_t.size
    for code, p, level in (
        (STUCK_AT_GMIN, prof.faults.stuck_at_gmin_prob, prof.conductance.g_min_siemens),
        (STUCK_AT_GMAX, prof.faults.stuck_at_gmax_prob, prof.conductance.g_max_siemens),
    ):
        count = (state.stuck == code).sum()
        assert abs(count - p * n) < 5 * math.sqrt(n * p * (1 - p))
        assert (state.programmed_siemens[state.stuck == code] == level).all()
        assert (state.nu[state.stuck == code] == 0).all(), "stuck devices do not drift"


def test_drift_exponents_follow_the_profile_distribution() -> None:
    prof = noisy_profile()
    state = program_devices(np.full((2, 1, 100_000), 1e-5), prof, Stages.only("drift"), np.random.default_rng(3))
    nu = state.nu.ravel()
    assert nu.mean() == pytest.approx(prof.drift.nu_mean, abs=5 * prof.drift.nu_std / math.sqrt(nu.size))
    assert nu.std() == pytest.approx(prof.drift.nu_std, rel=0.02)


def test_switching_one_stage_off_keeps_the_other_draws() -> None:
    prof = noisy_profile()
    g_t = np.full((2, 3, 50), 1e-5)
    a = program_devices(g_t, prof, Stages(), np.random.default_rng(4))
    b = program_devices(g_t, prof, Stages(programming_noise=False), np.random.default_rng(4))
    np.testing.assert_array_equal(a.stuck, b.stuck)
    np.testing.assert_array_equal(a.nu, b.nu)


# ------------------------------------------------------------------------------- drift, temperature


def test_drift_at_t0_and_before_is_the_identity() -> None:
    prof = noisy_profile()
    nu = np.random.default_rng(5).random(100) * 0.1
    for t in (0.0, 1.0, prof.drift.t0_sec):
        np.testing.assert_array_equal(drift_factor(nu, t, 300.0, prof, temperature=True), 1.0)


def test_drift_follows_the_power_law() -> None:
    prof = noisy_profile()
    nu = np.array([0.0, 0.05, 0.1])
    t = 1e6
    np.testing.assert_allclose(drift_factor(nu, t, 300.0, prof, temperature=True), (t / prof.drift.t0_sec) ** -nu, rtol=1e-14)


def test_hot_chip_drifts_as_if_older_and_conducts_more() -> None:
    prof = noisy_profile()
    tp = prof.temperature
    t_hot = effective_time_sec(100.0, 350.0, prof, temperature=True)
    expected = 100.0 * math.exp(tp.drift_activation_energy_ev / BOLTZMANN_EV_PER_KELVIN * (1 / 300.0 - 1 / 350.0))
    assert t_hot == pytest.approx(expected, rel=1e-14) and t_hot > 100.0
    assert effective_time_sec(100.0, 350.0, prof, temperature=False) == 100.0
    f = temperature_factor(350.0, prof)
    arrhenius = math.exp(-tp.conductance_activation_energy_ev / BOLTZMANN_EV_PER_KELVIN * (1 / 350.0 - 1 / 300.0))
    assert f == pytest.approx(arrhenius * (1 + tp.conductance_tcr_per_kelvin * 50.0), rel=1e-14)
    assert temperature_factor(300.0, prof) == 1.0


def test_chip_conductances_combine_drift_and_temperature_and_leave_stuck_devices() -> None:
    prof = noisy_profile()
    w = np.random.default_rng(6).standard_normal((30, 40))
    stages = Stages.only("drift", "temperature", "stuck_at_faults")
    m = Chip(prof, ChipConfig(stages=stages), seed=1).program(w)
    g0 = m.conductances_siemens()
    np.testing.assert_array_equal(g0, m.devices.programmed_siemens)
    g = m.conductances_siemens(1e5, 330.0)
    working = m.devices.stuck == 0
    t_eff = effective_time_sec(1e5, 330.0, prof, temperature=True)
    expected = g0 * (t_eff / prof.drift.t0_sec) ** -m.devices.nu * temperature_factor(330.0, prof)
    np.testing.assert_allclose(g[working], expected[working], rtol=1e-12)
    np.testing.assert_array_equal(g[~working], g0[~working])


# ------------------------------------------------------------------------------------- read noise


def test_fresh_read_noise_variance_is_proportional_to_conductance() -> None:
    prof = noisy_profile(alpha_siemens=3e-10)
    g = np.array([0.0, 1e-6, 1e-5])
    np.testing.assert_allclose(fresh_read_variance(g, prof), 3e-10 * g)


def test_flicker_variance_follows_the_published_form() -> None:
    prof = noisy_profile()
    rn = prof.read_noise
    g = np.array([1e-6, 1e-5, 2.5e-5])
    t = 3600.0
    q = np.minimum(rn.flicker_q_rel * (g / rn.flicker_g_ref_siemens) ** -rn.flicker_exponent, rn.flicker_q_max_rel)
    expected = (g * q) ** 2 * math.log((t + rn.read_time_sec) / (2 * rn.read_time_sec))
    np.testing.assert_allclose(flicker_variance(g, t, prof), expected, rtol=1e-14)
    assert (flicker_variance(g, 0.0, prof) == 0).all()
    assert flicker_variance(np.array([0.0]), t, prof)[0] == 0.0


def test_chip_output_noise_variance_is_sum_of_device_variances_times_voltage_squared() -> None:
    """Per-sample read noise: var(y_bi) = gain_i^2 s_b^2 sum_j var_ji V_bj^2, checked by sampling."""
    prof = noisy_profile(alpha_siemens=2e-9)
    rng = np.random.default_rng(7)
    w = rng.standard_normal((5, 48))
    x = np.repeat(rng.standard_normal((2, 48)), 20_000, axis=0)
    m = Chip(prof, ChipConfig(tile=TileConfig(rows=16), stages=Stages.only("read_noise")), seed=3).program(w)
    y = m.matvec(x).reshape(2, 20_000, 5)
    state = m.read_state()
    mean_expected = np.array([m._run(x[i * 20_000 : i * 20_000 + 1], state, np.dtype(np.float64), rng, {"read": np.zeros((3, 1, 5))})[0] for i in range(2)])
    v_read = m.config.tile.read_voltage_volt
    for b in range(2):
        xb = x[b * 20_000]
        s = np.abs(xb).max()
        volts = xb / s * v_read
        var = np.zeros(5)
        for k in range(m.grid.n_row_tiles):
            rs = m.grid.row_slice(k)
            var += (state.gain[k] * s) ** 2 * (volts[rs] ** 2 @ state.variance_siemens2[0][rs])
        n = 20_000
        np.testing.assert_allclose(y[b].mean(axis=0), mean_expected[b], atol=float(5 * np.sqrt(var.max() / n)))
        np.testing.assert_allclose(y[b].var(axis=0) / var, 1.0, atol=5 * math.sqrt(2 / n))


def test_flicker_noise_is_held_within_a_state_and_redrawn_across_states() -> None:
    prof = noisy_profile(alpha_siemens=0.0)
    w = np.random.default_rng(8).standard_normal((10, 10))
    m = Chip(prof, ChipConfig(stages=Stages.only("read_noise")), seed=0).program(w)
    x = np.ones((3, 10))
    a, b = m.matvec(x, time_sec=1e4), m.matvec(x, time_sec=1e4)
    np.testing.assert_array_equal(a, b)  # no fresh noise: the 1/f deviation is held
    m._states.clear()
    np.testing.assert_array_equal(m.matvec(x, time_sec=1e4), a)  # and the same state draws the same deviation
    assert not np.array_equal(m.matvec(x, time_sec=2e4), a)
    dev = m.conductances_siemens(1e4) - m.devices.programmed_siemens
    expected = np.sqrt(flicker_variance(m.devices.programmed_siemens, 1e4, prof))
    assert stats.kstest((dev / expected).ravel(), "norm").pvalue > 1e-3


def test_more_read_noise_never_lowers_output_error() -> None:
    rng = np.random.default_rng(9)
    w, x = rng.standard_normal((20, 64)), rng.standard_normal((500, 64))
    errors = []
    for alpha in (0.0, 1e-10, 1e-9, 1e-8):
        m = Chip(noisy_profile(alpha_siemens=alpha), ChipConfig(stages=Stages.only("read_noise")), seed=1).program(w)
        errors.append(np.sqrt(np.mean((m.matvec(x) - x @ w.T) ** 2)))
    assert all(a < b for a, b in zip(errors, errors[1:])), errors


# -------------------------------------------------------------------------------------- profiles


def test_profile_numbers_feed_the_chip() -> None:
    """A shipped, physical profile programs with its own window and drifts with its own exponents."""
    pcm = load_profile("pcm")
    m = Chip(pcm, seed=0).program(np.random.default_rng(10).standard_normal((16, 16)))
    assert m.devices.target_siemens.max() <= pcm.conductance.g_max_siemens
    working = m.devices.stuck == 0
    mean, std = drift_exponent_distribution(m.devices.target_siemens, pcm)
    assert mean[working].max() > 0
    assert abs(m.devices.nu[working].mean() - mean[working].mean()) < 5 * std[working].max() / np.sqrt(working.sum())
