"""The whole MVM: invariants, the kernel pipeline against the slow reference, determinism, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossbar import (
    ADCConfig,
    Activation,
    ActivationConfig,
    Chip,
    ChipConfig,
    DACConfig,
    DifferentialReadout,
    InputRange,
    NoiseKind,
    ReadNoiseSampling,
    ScaleMode,
    Stages,
    TileConfig,
    load_profile,
)
from tests.crossbar import reference
from tests.crossbar.profiles_for_tests import noisy_profile


def _wx(rng: np.random.Generator, n_out: int, n_in: int, batch: int) -> tuple[np.ndarray, np.ndarray]:
    return rng.standard_normal((n_out, n_in)), rng.standard_normal((batch, n_in))


@pytest.mark.parametrize("profile", ["ideal", "pcm", "rram_hfox", "ecram", "fefet"])
@pytest.mark.parametrize("scale_mode", list(ScaleMode), ids=lambda s: s.value)
@pytest.mark.parametrize("differential", list(DifferentialReadout), ids=lambda d: d.value)
def test_all_stages_off_gives_ideal_product(profile: str, scale_mode: ScaleMode, differential: DifferentialReadout) -> None:
    rng = np.random.default_rng(1)
    w, x = _wx(rng, 37, 300, 9)
    bias = rng.standard_normal(37)
    cfg = ChipConfig(tile=TileConfig(rows=64, cols=16, scale_mode=scale_mode, differential=differential), stages=Stages.all_off())
    m = Chip(profile, cfg, seed=3).program(w, bias)
    expected = x @ w.T + bias
    np.testing.assert_allclose(m.matvec(x), expected, rtol=0, atol=1e-12 * np.abs(expected).max())
    y32 = m.matvec(x.astype(np.float32))
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, expected, rtol=0, atol=2e-5 * np.abs(expected).max())


def test_all_off_holds_at_any_time_and_temperature_for_a_drifting_device() -> None:
    rng = np.random.default_rng(2)
    w, x = _wx(rng, 20, 30, 5)
    m = Chip("pcm", ChipConfig.ideal(), seed=0).program(w)
    np.testing.assert_allclose(m.matvec(x, time_sec=3e7, temperature_kelvin=360.0), x @ w.T, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("batch", [1, 7, 33])
def test_tiling_does_not_change_the_result_when_stages_are_off(batch: int) -> None:
    rng = np.random.default_rng(3)
    w, x = _wx(rng, 70, 130, batch)
    ys = []
    for rows, cols in [(512, 512), (64, 64), (17, 9), (1, 1)]:
        cfg = ChipConfig(tile=TileConfig(rows=rows, cols=cols), stages=Stages.all_off())
        ys.append(Chip("ideal", cfg, seed=0).program(w).matvec(x))
    for y in ys[1:]:
        np.testing.assert_allclose(y, ys[0], rtol=1e-11, atol=1e-11)


def test_infinite_converter_bits_equal_the_analog_result() -> None:
    """bits=None with clipping ranges that are never reached gives exactly the no-converter result."""
    rng = np.random.default_rng(4)
    w, x = _wx(rng, 12, 40, 6)
    base = Stages.only("programming_noise", "drift")
    analog = Chip("pcm", ChipConfig(stages=base), seed=5).program(w)
    ideal_conv = ChipConfig(
        dac=DACConfig(bits=None), adc=ADCConfig(bits=None, full_scale_rel=1e6), stages=dataclasses.replace(base, dac=True, adc=True)
    )
    converted = Chip("pcm", ideal_conv, seed=5).program(w)
    np.testing.assert_array_equal(converted.matvec(x, time_sec=100.0), analog.matvec(x, time_sec=100.0))


def test_many_converter_bits_approach_the_analog_result() -> None:
    rng = np.random.default_rng(5)
    w, x = _wx(rng, 12, 40, 6)
    analog = Chip("ideal", ChipConfig.ideal(), seed=0).program(w).matvec(x)
    errors = []
    for bits in (4, 8, 12, 16, 20):
        cfg = ChipConfig(dac=DACConfig(bits=bits), adc=ADCConfig(bits=bits, full_scale_rel=40.0), stages=Stages.only("dac", "adc"))
        errors.append(np.abs(Chip("ideal", cfg, seed=0).program(w).matvec(x) - analog).max())
    assert all(a > b for a, b in zip(errors, errors[1:])), errors
    assert errors[-1] < 1e-4 * np.abs(analog).max()


def _full_config(**overrides: object) -> ChipConfig:
    base = dict(
        tile=TileConfig(rows=16, cols=8),
        dac=DACConfig(bits=6),
        adc=ADCConfig(bits=7, full_scale_rel=6.0, output_noise_std_rel=0.05),
        activation=ActivationConfig(function=Activation.SIGMOID, uncorrelated_std_rel=0.02, correlated_std_rel=0.03),
        stages=Stages(drift_compensation=True),
    )
    base.update(overrides)
    return ChipConfig(**base)  # type: ignore[arg-type]


CONFIGS = {
    "default": _full_config(),
    "digital-readout": _full_config(tile=TileConfig(rows=16, cols=8, differential=DifferentialReadout.DIGITAL)),
    "fixed-range-dac-relu-mult": _full_config(
        dac=DACConfig(bits=5, range_mode=InputRange.FIXED, input_max=1.5),
        activation=ActivationConfig(function=Activation.RELU, kind=NoiseKind.MULTIPLICATIVE, uncorrelated_std_rel=0.1, correlated_std_rel=0.05),
    ),
    "per-tile-tanh": _full_config(
        tile=TileConfig(rows=10, cols=3, scale_mode=ScaleMode.PER_TILE),
        activation=ActivationConfig(function=Activation.TANH),
    ),
}


@pytest.mark.parametrize("name", list(CONFIGS))
def test_kernel_pipeline_matches_slow_reference(name: str) -> None:
    cfg = CONFIGS[name]
    rng = np.random.default_rng(6)
    w, x = _wx(rng, 19, 37, 11)
    bias = rng.standard_normal(19) * 0.1
    m = Chip(noisy_profile(), cfg, seed=7).program(w, bias)
    state = m.read_state(3600.0, 310.0, np.float64)
    n_part = len(state.signal_siemens) * m.grid.n_row_tiles
    z_read = rng.standard_normal((n_part, 11, 19))
    z_corr = rng.standard_normal(11)
    z_unc = rng.standard_normal((11, 19))
    fast = m._run(np.ascontiguousarray(x), state, np.dtype(np.float64), np.random.default_rng(0), {"read": z_read, "corr": z_corr, "unc": z_unc})
    slow = reference.mvm(m, x, state, z_read, z_corr, z_unc)
    # Summation order differs (BLAS vs np.dot) by ~1e-16 relative; an ADC decision could flip only for a
    # current that close to a threshold, which random data does not produce.
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    n_out=st.integers(1, 12),
    n_in=st.integers(1, 40),
    batch=st.integers(1, 5),
    rows=st.integers(1, 16),
    cols=st.integers(1, 8),
    dac_bits=st.one_of(st.none(), st.integers(2, 10)),
    adc_bits=st.one_of(st.none(), st.integers(2, 10)),
    seed=st.integers(0, 2**32 - 1),
)
def test_kernel_pipeline_matches_reference_over_shapes(n_out: int, n_in: int, batch: int, rows: int, cols: int, dac_bits: int | None, adc_bits: int | None, seed: int) -> None:
    rng = np.random.default_rng(seed)
    w, x = _wx(rng, n_out, n_in, batch)
    cfg = _full_config(tile=TileConfig(rows=rows, cols=cols), dac=DACConfig(bits=dac_bits), adc=ADCConfig(bits=adc_bits, full_scale_rel=4.0))
    m = Chip(noisy_profile(), cfg, seed=seed).program(w)
    state = m.read_state(50.0, 300.0, np.float64)
    n_part = len(state.signal_siemens) * m.grid.n_row_tiles
    z = {"read": rng.standard_normal((n_part, batch, n_out)), "corr": rng.standard_normal(batch), "unc": rng.standard_normal((batch, n_out))}
    fast = m._run(np.ascontiguousarray(x), state, np.dtype(np.float64), np.random.default_rng(0), z)
    slow = reference.mvm(m, x, state, z["read"], z["corr"], z["unc"])
    np.testing.assert_allclose(fast, slow, rtol=1e-9, atol=1e-12)


def test_same_seed_same_chip_same_outputs_bit_for_bit() -> None:
    rng = np.random.default_rng(8)
    w, x = _wx(rng, 30, 50, 20)
    runs = []
    for _ in range(2):
        chip = Chip(noisy_profile(), _full_config(), seed=42)
        m = chip.program(w)
        runs.append((m.conductances_siemens(1e4, 320.0), m.matvec(x, time_sec=1e4, temperature_kelvin=320.0), m.matvec(x)))
    for a, b in zip(runs[0], runs[1]):
        np.testing.assert_array_equal(a, b)


def test_different_seeds_and_repeated_reads_differ() -> None:
    rng = np.random.default_rng(9)
    w, x = _wx(rng, 30, 50, 20)
    m1 = Chip(noisy_profile(), _full_config(), seed=1).program(w)
    m2 = Chip(noisy_profile(), _full_config(), seed=2).program(w)
    assert not np.array_equal(m1.devices.programmed_siemens, m2.devices.programmed_siemens)
    assert not np.array_equal(m1.matvec(x), m1.matvec(x))  # fresh noise at every read


def test_results_do_not_depend_on_the_thread_count(monkeypatch: pytest.MonkeyPatch) -> None:
    import numba

    import crossbar.chip

    monkeypatch.setattr(crossbar.chip, "_PARALLEL_MIN_ELEMENTS", 1 << 15)  # small data, threaded kernels
    _PARALLEL_MIN_ELEMENTS = crossbar.chip._PARALLEL_MIN_ELEMENTS
    rng = np.random.default_rng(10)
    w, x = _wx(rng, 40, 64, 1000)
    assert x.size >= _PARALLEL_MIN_ELEMENTS and 40 * x.shape[0] >= _PARALLEL_MIN_ELEMENTS  # the threaded kernels run
    outputs = []
    for threads in (1, numba.config.NUMBA_NUM_THREADS):
        numba.set_num_threads(threads)
        try:
            m = Chip(noisy_profile(), _full_config(), seed=5).program(w)
            outputs.append(m.matvec(x))
        finally:
            numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_kth_programmed_matrix_is_reproducible() -> None:
    w = np.random.default_rng(11).standard_normal((8, 8))
    chip_a, chip_b = Chip("pcm", seed=3), Chip("pcm", seed=3)
    chip_a.program(w)
    second_a = chip_a.program(w)
    chip_b.program(np.ones((2, 2)))
    second_b = chip_b.program(w)
    np.testing.assert_array_equal(second_a.devices.programmed_siemens, second_b.devices.programmed_siemens)


def test_one_dimensional_input_returns_one_dimensional_output() -> None:
    w = np.random.default_rng(12).standard_normal((5, 7))
    m = Chip("ideal", ChipConfig.ideal()).program(w)
    x = np.arange(7.0)
    assert m.matvec(x).shape == (5,)
    np.testing.assert_allclose(m.matvec(x), w @ x, atol=1e-12)


def test_per_batch_read_noise_has_the_same_output_variance_as_per_sample() -> None:
    """Both samplings have the right marginal variance; only the per-sample one is independent across a batch."""
    rng = np.random.default_rng(13)
    w = rng.standard_normal((6, 64))
    x = np.repeat(rng.standard_normal((1, 64)), 4000, axis=0)
    stages = Stages.only("read_noise")
    out = {}
    for mode in ReadNoiseSampling:
        m = Chip(noisy_profile(alpha_siemens=2e-9), ChipConfig(stages=stages, read_noise_sampling=mode), seed=1).program(w)
        if mode is ReadNoiseSampling.PER_SAMPLE:
            out[mode] = m.matvec(x)
        else:
            out[mode] = np.concatenate([m.matvec(x[:1]) for _ in range(4000)])
    v_sample = out[ReadNoiseSampling.PER_SAMPLE].var(axis=0)
    v_batch = out[ReadNoiseSampling.PER_BATCH].var(axis=0)
    np.testing.assert_allclose(v_batch / v_sample, 1.0, atol=0.12)
    # Within one per-batch call every vector sees the same draw: identical inputs give identical outputs.
    m = Chip(noisy_profile(alpha_siemens=2e-9), ChipConfig(stages=stages, read_noise_sampling=ReadNoiseSampling.PER_BATCH), seed=1).program(w)
    y = m.matvec(x[:10])
    np.testing.assert_array_equal(y, np.repeat(y[:1], 10, axis=0))


def test_digital_and_analog_readout_agree_without_converters_and_noise() -> None:
    rng = np.random.default_rng(14)
    w, x = _wx(rng, 9, 21, 4)
    stages = Stages.only("programming_noise", "drift", "stuck_at_faults")
    ys = [
        Chip("pcm", ChipConfig(tile=TileConfig(rows=8, cols=4, differential=d), stages=stages), seed=2).program(w).matvec(x, time_sec=1e5)
        for d in DifferentialReadout
    ]
    np.testing.assert_allclose(ys[0], ys[1], rtol=1e-10, atol=1e-12)


def test_drift_compensation_restores_the_scale_after_uniform_drift() -> None:
    """With a drift exponent identical for every device, drift is a global gain that compensation undoes."""
    pcm = load_profile("pcm")
    profile = dataclasses.replace(
        pcm, drift=dataclasses.replace(pcm.drift, nu_std=0.0, nu_mean_log_slope=0.0, nu_std_log_slope=0.0)
    )
    rng = np.random.default_rng(15)
    w, x = _wx(rng, 16, 32, 8)
    on = Stages.only("drift", "drift_compensation")
    off = Stages.only("drift")
    m_on = Chip(profile, ChipConfig(stages=on), seed=0).program(w)
    m_off = Chip(profile, ChipConfig(stages=off), seed=0).program(w)
    t = 3e7
    np.testing.assert_allclose(m_on.matvec(x, time_sec=t), x @ w.T, rtol=1e-10, atol=1e-10)
    shrink = (t / profile.drift.t0_sec) ** -profile.drift.nu_mean
    np.testing.assert_allclose(m_off.matvec(x, time_sec=t), shrink * (x @ w.T), rtol=1e-10, atol=1e-10)


def test_adc_clips_at_full_scale() -> None:
    w = np.ones((1, 64))
    x = np.ones((1, 64))
    cfg = ChipConfig(adc=ADCConfig(bits=None, full_scale_rel=10.0), stages=Stages.only("adc"))
    m = Chip("ideal", cfg).program(w)
    # 64 devices at full window under full input would give 64 I_dev; the ADC stops at 10.
    np.testing.assert_allclose(m.matvec(x), [[10.0]], rtol=1e-12)


def test_activation_noise_correlated_is_shared_by_neurons_and_uncorrelated_is_not() -> None:
    w = np.zeros((50, 4))
    x = np.ones((3000, 4))
    corr = Chip("ideal", ChipConfig(activation=ActivationConfig(correlated_std_rel=0.5), stages=Stages.only("activation_noise"))).program(w)
    unc = Chip("ideal", ChipConfig(activation=ActivationConfig(uncorrelated_std_rel=0.5), stages=Stages.only("activation_noise"))).program(w)
    yc, yu = corr.matvec(x), unc.matvec(x)
    assert np.allclose(yc, yc[:, :1])  # the same draw across the layer
    assert abs(yc[:, 0].std() - 0.5) < 0.03
    c = np.corrcoef(yu[:, 0], yu[:, 1])[0, 1]
    assert abs(c) < 0.06 and abs(yu.std() - 0.5) < 0.01


# ----------------------------------------------------------------------------- bad input
BAD_INPUTS = {
    "nan": (np.array([[np.nan, 1.0, 2.0]]), "non-finite"),
    "inf": (np.array([[np.inf, 1.0, 2.0]]), "non-finite"),
    "wrong-width": (np.ones((2, 4)), "expected"),
    "3-d": (np.ones((2, 3, 1)), "expected"),
    "empty": (np.ones((0, 3)), "zero-size"),
    "complex": (np.ones((2, 3), dtype=complex), "dtype"),
    "string": (np.array([["a", "b", "c"]]), "dtype"),
    "bool": (np.ones((2, 3), dtype=bool), "dtype"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
def test_bad_inputs_give_clear_value_errors(name: str) -> None:
    x, match = BAD_INPUTS[name]
    m = Chip("pcm").program(np.ones((2, 3)))
    with pytest.raises(ValueError, match=match):
        m.matvec(x)


@pytest.mark.parametrize(
    "weights, match",
    [
        (np.array([[1.0, np.nan]]), "non-finite"),
        (np.ones(3), "2-D"),
        (np.ones((0, 3)), "zero-size"),
        (np.ones((2, 2), dtype=complex), "dtype"),
    ],
    ids=["nan", "1-d", "empty", "complex"],
)
def test_bad_weights_give_clear_value_errors(weights: np.ndarray, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Chip("pcm").program(weights)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"time_sec": -1.0}, "time_sec"),
        ({"time_sec": float("nan")}, "time_sec"),
        ({"temperature_kelvin": 0.0}, "temperature_kelvin"),
        ({"temperature_kelvin": 5000.0}, "temperature_kelvin"),
        ({"time_sec": "1"}, "time_sec"),
    ],
    ids=["negative-time", "nan-time", "zero-kelvin", "absurd-kelvin", "string-time"],
)
def test_bad_read_conditions_give_clear_value_errors(kwargs: dict, match: str) -> None:
    m = Chip("pcm").program(np.ones((2, 3)))
    with pytest.raises(ValueError, match=match):
        m.matvec(np.ones(3), **kwargs)


def test_bias_shape_and_seed_are_checked() -> None:
    with pytest.raises(ValueError, match="bias"):
        Chip("pcm").program(np.ones((2, 3)), bias=np.ones(3))
    with pytest.raises(ValueError, match="seed"):
        Chip("pcm", seed=-1)
    with pytest.raises(ValueError, match="config"):
        Chip("pcm", config="fast")  # type: ignore[arg-type]


def test_restore_reproduces_a_programmed_matrix_bit_for_bit() -> None:
    rng = np.random.default_rng(16)
    w, x = _wx(rng, 20, 33, 6)
    chip = Chip(noisy_profile(), _full_config(), seed=9)
    chip.program(w)  # the restored one is the second programmed matrix of the chip
    m = chip.program(w, bias=np.arange(20.0))
    m.matvec(x)  # advance the read stream
    arrays = {k: np.array(v) for k, v in m.state_arrays().items()}
    rng_state = m.read_rng.bit_generator.state
    restored = Chip(noisy_profile(), _full_config(), seed=9).restore(arrays, spawn_key=m.spawn_key, read_rng_state=rng_state)
    np.testing.assert_array_equal(restored.matvec(x, time_sec=1e5, temperature_kelvin=320.0), m.matvec(x, time_sec=1e5, temperature_kelvin=320.0))
    # a chip that restored its second matrix programs the next one as the original chip would: new devices
    fresh_chip = Chip(noisy_profile(), _full_config(), seed=9)
    fresh_chip.restore(arrays, spawn_key=m.spawn_key)
    assert fresh_chip.program(w).spawn_key == chip.program(w).spawn_key == (2,)
    bad = dict(arrays, nu=arrays["nu"][:, :-1])
    with pytest.raises(ValueError, match="'nu' has shape"):
        Chip(noisy_profile(), _full_config(), seed=9).restore(bad, spawn_key=m.spawn_key)
    with pytest.raises(ValueError, match="missing"):
        Chip(noisy_profile(), _full_config(), seed=9).restore({"weights": w}, spawn_key=m.spawn_key)


def test_config_round_trips_through_a_plain_dict() -> None:
    from crossbar.config import config_from_dict, config_to_dict

    cfg = _full_config(tile=TileConfig(rows=8, differential=DifferentialReadout.DIGITAL), dac=DACConfig(bits=None))
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ValueError, match="unknown key 'bitz' in \\[adc\\]"):
        config_from_dict({"adc": {"bitz": 4}}, origin="run.toml")
