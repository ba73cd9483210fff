"""IR drop: the fast mesh solvers against the sparse nodal reference, closed forms and invariants."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossbar import Chip, ChipConfig, CircuitConfig, DifferentialReadout, Stages, TileConfig
from crossbar.config import config_from_dict, config_to_dict
from crossbar.irdrop import effective_conductances, read_noise_variance_scale, solve_mesh
from tests.crossbar import reference_irdrop as ref

G_MAX = 25e-6  # PCM-like window top, S


def _circuit(r_w: float, r_b: float, r_d: float = 0.0, r_s: float = 0.0, **kw: float) -> CircuitConfig:
    return CircuitConfig(word_line_segment_ohm=r_w, bit_line_segment_ohm=r_b, driver_ohm=r_d, sense_ohm=r_s, **kw)


def _rel(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a - b).max() / np.abs(b).max())


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 7),
    cols=st.integers(1, 7),
    r_w=st.floats(0.05, 20.0),
    r_b=st.floats(0.05, 20.0),
    r_d=st.floats(0.0, 500.0),
    r_s=st.floats(0.0, 500.0),
    g_top=st.floats(1e-7, 1e-3),
    zero_frac=st.floats(0.0, 0.5),
    seed=st.integers(0, 2**32 - 1),
)
def test_fast_solvers_match_the_sparse_nodal_reference(rows, cols, r_w, r_b, r_d, r_s, g_top, zero_frac, seed) -> None:
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.0, g_top, (rows, cols)) * (rng.random((rows, cols)) >= zero_frac)
    circuit = _circuit(r_w, r_b, r_d, r_s)
    expected = ref.effective_conductances(g, circuit)
    scale = max(np.abs(expected).max(), 1e-30)
    np.testing.assert_allclose(effective_conductances(g, circuit), expected, rtol=0, atol=1e-9 * scale)
    v = rng.uniform(-0.3, 0.3, (3, rows))
    sol = solve_mesh(g, v, circuit, node_voltages=True)
    word, bit = ref.node_voltages(g, v, circuit)
    np.testing.assert_allclose(sol.column_current_amp, v @ expected, rtol=0, atol=1e-8 * scale * 0.3 * rows)
    np.testing.assert_allclose(sol.word_line_volt, word, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sol.bit_line_volt, bit, rtol=0, atol=1e-9)
    np.testing.assert_allclose(sol.device_volt, word - bit, rtol=0, atol=1e-9)


@pytest.mark.parametrize(
    "r_b, r_d, r_s",
    [(1.0, 20.0, 10.0), (1e-6, 0.0, 0.0), (0.0, 50.0, 30.0)],
    ids=["pipelined-inverse", "serial-cholesky", "ideal-bit-lines"],
)
def test_large_tile_lapack_paths_match_the_reference(r_b: float, r_d: float, r_s: float) -> None:
    """Tiles with more than 64 columns go through LAPACK (two update forms); smaller ones through numba."""
    rng = np.random.default_rng(8)
    g = rng.uniform(1e-7, G_MAX, (70, 66))
    circuit = _circuit(1.5, r_b, r_d, r_s)
    fast = effective_conductances(g, circuit)
    if r_b > 0 and r_s + r_b > 0:
        expected = ref.effective_conductances(g, circuit)
        np.testing.assert_allclose(fast, expected, rtol=0, atol=1e-8 * np.abs(expected).max())
    v = rng.uniform(-0.2, 0.2, (2, 70))
    np.testing.assert_allclose(solve_mesh(g, v, circuit).column_current_amp, v @ fast, rtol=0, atol=1e-9 * np.abs(v @ fast).max())
    import crossbar.irdrop as irdrop_module

    limit = irdrop_module._SMALL_TILE_COLS
    irdrop_module._SMALL_TILE_COLS = 10**6  # the all-numba path on the same tile
    try:
        np.testing.assert_allclose(effective_conductances(g, circuit), fast, rtol=0, atol=1e-11 * np.abs(fast).max())
    finally:
        irdrop_module._SMALL_TILE_COLS = limit


@pytest.mark.parametrize("shape", [(1, 1), (1, 9), (9, 1), (16, 12)], ids=str)
def test_zero_wire_resistance_gives_the_device_conductances_exactly(shape) -> None:
    rng = np.random.default_rng(1)
    g = rng.uniform(0, G_MAX, shape)
    ideal = _circuit(0.0, 0.0)
    np.testing.assert_array_equal(effective_conductances(g, ideal), g)
    v = rng.uniform(-0.2, 0.2, (4, shape[0]))
    sol = solve_mesh(g, v, ideal, node_voltages=True)
    np.testing.assert_array_equal(sol.bit_line_volt, 0.0)
    np.testing.assert_array_equal(sol.word_line_volt, np.broadcast_to(v[:, :, None], sol.word_line_volt.shape))
    np.testing.assert_allclose(sol.column_current_amp, v @ g, rtol=1e-13, atol=0)


def _ladder_currents(g: float, n: int, v: float, r_seg: float, r_end: float) -> np.ndarray:
    """Closed form of a uniform ladder: n devices g on a line with segments r_seg, fed at one end
    through r_end, the other ends of the devices at a fixed potential difference v.

    Node equation g e_k = g_seg (e_{k-1} - 2 e_k + e_{k+1}) with an open far end gives
    e_k = K cosh(theta (n - 1/2 - k)), cosh(theta) = 1 + g r_seg / 2; the feed fixes K.
    """
    theta = np.arccosh(1.0 + 0.5 * g * r_seg)
    k = np.arange(n)
    c_lo, c_hi = np.cosh(theta * (n - 0.5)), np.cosh(theta * (n + 0.5))
    amp = v / (c_lo + (r_end / r_seg) * (c_hi - c_lo))
    return g * amp * np.cosh(theta * (n - 0.5 - k))


@pytest.mark.parametrize("n, r_seg, r_feed", [(1, 1.0, 0.0), (7, 2.0, 30.0), (64, 1.0, 0.0), (200, 0.5, 100.0)])
def test_single_row_matches_the_closed_form_ladder(n, r_seg, r_feed) -> None:
    """One word line, bit lines at ideal virtual ground: device i carries g u_i."""
    g = 2e-5
    circuit = _circuit(r_seg, 0.0, r_d=r_feed)
    expected = _ladder_currents(g, n, 1.0, r_seg, r_feed + r_seg)
    g_eff = effective_conductances(np.full((1, n), g), circuit)
    np.testing.assert_allclose(g_eff[0], expected, rtol=1e-11)
    sol = solve_mesh(np.full((1, n), g), np.array([[0.2]]), circuit)
    np.testing.assert_allclose(sol.column_current_amp[0], 0.2 * expected, rtol=1e-9)


@pytest.mark.parametrize("n, r_seg, r_sense", [(1, 1.0, 5.0), (9, 3.0, 0.0), (128, 1.0, 50.0)])
def test_single_column_matches_the_closed_form_ladder(n, r_seg, r_sense) -> None:
    """One bit line, ideal word lines all at V: the bit line is the same ladder seen from the amplifier."""
    g = 1.5e-5
    circuit = _circuit(0.0, r_seg, r_s=r_sense)
    expected = _ladder_currents(g, n, 1.0, r_seg, r_sense + r_seg).sum()  # device k counted from the open end
    g_eff = effective_conductances(np.full((n, 1), g), circuit)
    np.testing.assert_allclose(g_eff.sum(), expected, rtol=1e-11)
    sol = solve_mesh(np.full((n, 1), g), np.full((1, n), 0.1), circuit)
    np.testing.assert_allclose(sol.column_current_amp[0, 0], 0.1 * expected, rtol=1e-9)


@pytest.mark.parametrize("alpha", [0.0, 4.0], ids=["ohmic", "sinh"])
def test_kirchhoff_current_law_holds_at_every_node(alpha: float) -> None:
    rng = np.random.default_rng(2)
    g = rng.uniform(1e-7, G_MAX, (12, 10))
    circuit = _circuit(1.0, 1.5, 20.0, 10.0)
    v = rng.uniform(-0.2, 0.2, (3, 12))
    sol = solve_mesh(g, v, circuit, sinh_alpha_per_volt=alpha, node_voltages=True)
    i_scale = G_MAX * 0.2
    for b in range(3):
        net = ref.kcl_residual(g, v[b], sol.word_line_volt[b], sol.bit_line_volt[b], circuit, alpha)
        assert np.abs(net).max() < 1e-9 * i_scale, np.abs(net).max() / i_scale


def test_ir_drop_error_grows_with_array_size_and_wire_resistance() -> None:
    rng = np.random.default_rng(3)
    errors = {}
    for r in (0.1, 0.5, 2.0):
        for n in (8, 16, 32, 64):
            g = rng.uniform(1e-7, G_MAX, (n, n))
            g_eff = effective_conductances(g, _circuit(r, r))
            errors[r, n] = np.abs(g_eff - g).sum() / g.sum()
    for r in (0.1, 0.5, 2.0):
        by_size = [errors[r, n] for n in (8, 16, 32, 64)]
        assert all(a < b for a, b in zip(by_size, by_size[1:])), by_size
    for n in (8, 16, 32, 64):
        by_r = [errors[r, n] for r in (0.1, 0.5, 2.0)]
        assert all(a < b for a, b in zip(by_r, by_r[1:])), by_r
    # IR drop only ever loses current for a passive mesh with positive inputs
    g = rng.uniform(1e-7, G_MAX, (32, 32))
    assert (effective_conductances(g, _circuit(1.0, 1.0)).sum(axis=0) < g.sum(axis=0)).all()


def test_nonlinear_solve_matches_the_nodal_newton_reference() -> None:
    rng = np.random.default_rng(4)
    g = rng.uniform(1e-6, G_MAX, (6, 5))
    circuit = _circuit(2.0, 1.0, 30.0, 10.0)
    v = rng.uniform(-0.3, 0.3, (4, 6))
    sol = solve_mesh(g, v, circuit, sinh_alpha_per_volt=4.0, node_voltages=True)
    for b in range(4):
        word, bit, current = ref.solve_nonlinear(g, v[b], circuit, 4.0)
        np.testing.assert_allclose(sol.column_current_amp[b], current, rtol=0, atol=1e-9 * np.abs(current).max())
        np.testing.assert_allclose(sol.word_line_volt[b], word, rtol=0, atol=1e-10)
        np.testing.assert_allclose(sol.bit_line_volt[b], bit, rtol=0, atol=1e-10)
    assert (sol.newton_iterations >= 2).all()  # it is a nonlinear solve


def test_nonlinear_solve_reduces_to_the_linear_one_as_the_nonlinearity_vanishes() -> None:
    rng = np.random.default_rng(5)
    g = rng.uniform(1e-7, G_MAX, (24, 20))
    circuit = _circuit(1.0, 1.0, 10.0, 10.0)
    v = rng.uniform(0.05, 0.2, (3, 24))
    linear = v @ effective_conductances(g, circuit)
    gaps = []
    for alpha in (2.0, 0.2, 0.02, 0.002):
        gaps.append(_rel(solve_mesh(g, v, circuit, sinh_alpha_per_volt=alpha).column_current_amp, linear))
    # I = G sinh(a V)/a = G V (1 + (a V)^2 / 6 + ...): the gap shrinks like a^2
    ratios = [a / b for a, b in zip(gaps, gaps[1:])]
    assert all(80 < r < 120 for r in ratios), (gaps, ratios)
    assert gaps[-1] < 1e-7


def test_non_convergence_raises_naming_tile_input_and_residual() -> None:
    g = np.full((8, 8), 1e-3)
    circuit = _circuit(5.0, 5.0, newton_max_iterations=1, newton_tolerance_rel=1e-12)
    with pytest.raises(RuntimeError, match=r"tile \(2, 3\).*input 0.*residual"):
        solve_mesh(g, np.full((2, 8), 0.5), circuit, sinh_alpha_per_volt=10.0, tile=(2, 3))


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"word_line_segment_ohm": -1.0}, "word_line_segment_ohm"),
        ({"sense_ohm": float("nan")}, "sense_ohm"),
        ({"newton_tolerance_rel": 0.0}, "newton_tolerance_rel"),
        ({"newton_max_iterations": 0}, "newton_max_iterations"),
    ],
    ids=["negative-wire", "nan-sense", "zero-tolerance", "zero-iterations"],
)
def test_circuit_config_is_validated(kwargs, match) -> None:
    with pytest.raises(ValueError, match=match):
        CircuitConfig(**kwargs)


def test_bad_mesh_inputs_give_clear_errors() -> None:
    with pytest.raises(ValueError, match="non-negative"):
        effective_conductances(-np.ones((2, 2)), _circuit(1, 1))
    with pytest.raises(ValueError, match="expected"):
        solve_mesh(np.ones((2, 2)) * 1e-6, np.ones((1, 3)), _circuit(1, 1))


def test_circuit_config_round_trips_and_stage_is_opt_in() -> None:
    cfg = ChipConfig(circuit=_circuit(1.0, 2.0, 3.0, 4.0), stages=Stages.only("ir_drop", "adc"))
    assert config_from_dict(config_to_dict(cfg)) == cfg
    assert Stages().ir_drop is False and Stages.all_off().ir_drop is False
    assert Stages.only("ir_drop").ir_drop and not Stages.only("ir_drop").adc


def _pipeline_reference(m, x: np.ndarray, alpha: float) -> np.ndarray:
    """The chip output with only IR drop on, from the sparse nodal reference per tile and array."""
    cfg = m.config
    g = m.conductances_siemens()
    peak = np.abs(x).max(axis=1, keepdims=True)
    v = x / peak * cfg.tile.read_voltage_volt
    y = np.zeros((x.shape[0], m.out_features))
    for k, c, rs, cs in m.grid.tiles():
        for a, sign in ((0, 1.0), (1, -1.0)):
            if alpha == 0:
                cur = ref.column_currents(g[a, rs, cs], v[:, rs], cfg.circuit)
            else:
                cur = np.array([ref.solve_nonlinear(g[a, rs, cs], vb, cfg.circuit, alpha)[2] for vb in v[:, rs]])
            y[:, cs] += sign * cur / (m.targets.siemens_per_weight[k, cs] * cfg.tile.read_voltage_volt)
    return y * peak


@pytest.mark.parametrize("profile", ["pcm", "rram_hfox"])
@pytest.mark.parametrize("differential", list(DifferentialReadout), ids=lambda d: d.value)
def test_chip_with_only_ir_drop_on_matches_the_reference(profile: str, differential: DifferentialReadout) -> None:
    rng = np.random.default_rng(6)
    w, x = rng.standard_normal((10, 23)), rng.standard_normal((4, 23))
    circuit = _circuit(2.0, 1.5, 50.0, 20.0)
    cfg = ChipConfig(tile=TileConfig(rows=8, cols=6, differential=differential), stages=Stages.only("ir_drop"), circuit=circuit)
    m = Chip(profile, cfg, seed=1).program(w)
    y = m.matvec(x)
    expected = _pipeline_reference(m, x, m.profile.iv.sinh_alpha_per_volt)
    np.testing.assert_allclose(y, expected, rtol=0, atol=1e-9 * np.abs(expected).max())
    assert _rel(y, x @ w.T) > 1e-4  # the stage does something
    off = Chip(profile, dataclasses.replace(cfg, stages=Stages.all_off()), seed=1).program(w)
    np.testing.assert_allclose(off.matvec(x), x @ w.T, rtol=1e-10, atol=1e-12)


def test_chip_effective_matrix_and_tile_mesh_are_consistent() -> None:
    rng = np.random.default_rng(7)
    w, x = rng.standard_normal((7, 12)), rng.standard_normal((3, 12))
    cfg = ChipConfig(tile=TileConfig(rows=8, cols=4), stages=Stages.only("ir_drop"), circuit=_circuit(3.0, 3.0))
    m = Chip("pcm", cfg, seed=2).program(w)
    g_eff = m.array_conductances_siemens()
    g_dev = m.conductances_siemens()
    assert g_eff.shape == g_dev.shape and not np.allclose(g_eff, g_dev)
    sol = m.tile_mesh(x, tile=(1, 0), array=1)
    v = x / np.abs(x).max(axis=1, keepdims=True) * cfg.tile.read_voltage_volt
    np.testing.assert_allclose(sol.column_current_amp, v[:, 8:] @ g_eff[1, 8:, 0:4], rtol=1e-9)
    np.testing.assert_allclose(sol.device_volt, sol.word_line_volt - sol.bit_line_volt, atol=1e-15)


def test_read_noise_variance_scale_is_a_clipped_attenuation() -> None:
    g = np.array([[1e-5, 0.0, 2e-6]])
    g_eff = np.array([[0.9e-5, -1e-9, 2.2e-6]])
    np.testing.assert_allclose(read_noise_variance_scale(g, g_eff), [[0.81, 1.0, 1.0]])


def test_heat_map_of_the_conductance_error_is_written(tmp_path) -> None:
    from crossbar.plots import plot_ir_drop_error

    rng = np.random.default_rng(9)
    g = rng.uniform(0, G_MAX, (16, 12))
    g[3, 4] = 0.0
    out = plot_ir_drop_error(g, effective_conductances(g, _circuit(2.0, 2.0)), tmp_path / "irdrop.png")
    assert out.exists() and out.stat().st_size > 1000
    with pytest.raises(ValueError, match="one shape"):
        plot_ir_drop_error(g, g[:, :3], tmp_path / "bad.png")


GOLDEN = __import__("pathlib").Path(__file__).resolve().parents[1] / "golden" / "irdrop_badcrossbar.npz"


@pytest.mark.parametrize("case", ["small", "rect", "strong"])
def test_against_golden_files_from_an_independent_solver(case: str) -> None:
    """badcrossbar (Joksas & Mehonic 2020) solved these meshes; tests/golden/make_irdrop_golden.py."""
    data = np.load(GOLDEN, allow_pickle=False)
    g, v = data[f"{case}_g_siemens"], data[f"{case}_v_volt"]
    r_w, r_b = data[f"{case}_r_ohm"]
    circuit = _circuit(float(r_w), float(r_b))
    current = data[f"{case}_current_amp"]
    scale = np.abs(current).max()
    np.testing.assert_allclose(v @ effective_conductances(g, circuit), current, rtol=0, atol=1e-10 * scale)
    sol = solve_mesh(g, v, circuit, node_voltages=True)
    np.testing.assert_allclose(sol.column_current_amp, current, rtol=0, atol=1e-9 * scale)
    np.testing.assert_allclose(sol.word_line_volt, data[f"{case}_word_volt"], rtol=0, atol=1e-11)
    np.testing.assert_allclose(sol.bit_line_volt, data[f"{case}_bit_volt"], rtol=0, atol=1e-11)


_R_OR_ZERO = st.one_of(st.just(0.0), st.floats(0.05, 20.0))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    rows=st.integers(1, 9),
    cols=st.integers(1, 9),
    r_w=_R_OR_ZERO,
    r_b=_R_OR_ZERO,
    r_d=st.one_of(st.just(0.0), st.floats(1.0, 500.0)),
    r_s=st.one_of(st.just(0.0), st.floats(1.0, 500.0)),
    seed=st.integers(0, 2**32 - 1),
)
def test_direct_extraction_and_per_input_solve_agree_with_zero_resistances(rows, cols, r_w, r_b, r_d, r_s, seed) -> None:
    """Two independent algorithms (structured elimination; resistance-form Newton-CG) on meshes where any
    resistance may be exactly zero (ideal lines, drivers or virtual grounds), which the nodal reference
    cannot represent."""
    rng = np.random.default_rng(seed)
    g = rng.uniform(0.0, 1e-4, (rows, cols))
    circuit = _circuit(r_w, r_b, r_d, r_s)
    v = rng.uniform(-0.3, 0.3, (3, rows))
    g_eff = effective_conductances(g, circuit)
    currents = solve_mesh(g, v, circuit).column_current_amp
    np.testing.assert_allclose(currents, v @ g_eff, rtol=0, atol=1e-9 * max(np.abs(v @ g).max(), 1e-30))
    if r_b == 0 and r_s == 0:  # bit lines at virtual ground: columns decouple, each device sees its word line only
        assert (g_eff <= g * (1 + 1e-12)).all()


def test_drift_compensation_uses_the_effective_matrix_and_is_the_identity_at_t0() -> None:
    rng = np.random.default_rng(10)
    w, x = rng.standard_normal((6, 20)), rng.standard_normal((3, 20))
    cfg = ChipConfig(tile=TileConfig(rows=8, cols=4), stages=Stages.only("ir_drop", "drift", "drift_compensation"), circuit=_circuit(3.0, 3.0))
    m = Chip("pcm", cfg, seed=3).program(w)
    np.testing.assert_array_equal(m.read_state().drift_compensation, 1.0)
    plain = Chip("pcm", dataclasses.replace(cfg, stages=Stages.only("ir_drop")), seed=3).program(w)
    np.testing.assert_allclose(m.matvec(x), plain.matvec(x), rtol=1e-12, atol=1e-12)
    assert not np.allclose(m.read_state(time_sec=1e6).drift_compensation, 1.0)


@pytest.mark.parametrize("sampling", ["per_sample", "per_batch"])
def test_every_stage_on_with_ir_drop_and_a_nonlinear_device_runs_deterministically(sampling: str) -> None:
    from tests.crossbar.profiles_for_tests import noisy_profile

    rng = np.random.default_rng(11)
    w, x = rng.standard_normal((9, 30)), rng.standard_normal((5, 30))
    cfg = ChipConfig(tile=TileConfig(rows=16, cols=8), stages=Stages(ir_drop=True, drift_compensation=True), read_noise_sampling=sampling)
    ys = [Chip(noisy_profile(), cfg, seed=4).program(w).matvec(x, time_sec=1e4, temperature_kelvin=320.0) for _ in range(2)]
    assert np.isfinite(ys[0]).all()
    np.testing.assert_array_equal(ys[0], ys[1])


@pytest.mark.slow
def test_a_128_tile_matches_the_reference() -> None:
    g = np.random.default_rng(12).uniform(1e-7, G_MAX, (128, 128))
    circuit = _circuit(1.0, 1.0, 10.0, 10.0)
    expected = ref.effective_conductances(g, circuit)
    np.testing.assert_allclose(effective_conductances(g, circuit), expected, rtol=0, atol=1e-9 * np.abs(expected).max())


def test_concurrent_extractions_equal_one_by_one_bit_for_bit() -> None:
    from crossbar.irdrop import effective_conductances_many

    rng = np.random.default_rng(13)
    blocks = [rng.uniform(1e-7, G_MAX, (72, 66)) for _ in range(4)]
    circuit = _circuit(1.0, 1.0, 5.0, 5.0)
    one_by_one = [effective_conductances(b, circuit) for b in blocks]
    for _ in range(3):
        for a, b in zip(effective_conductances_many(blocks, circuit), one_by_one):
            np.testing.assert_array_equal(a, b)
