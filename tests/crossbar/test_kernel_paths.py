"""The hot-path kernels' execution paths agree: threaded and serial variants bit for bit, any thread
count bit for bit, float32 work arithmetic with float64 to float32 precision."""

from __future__ import annotations

import numba
import numpy as np
import pytest

from crossbar import ADCConfig, Activation, ActivationConfig, Chip, ChipConfig, DACConfig, NoiseKind, ReadNoiseSampling, Stages, TileConfig
from crossbar import _kernels
from crossbar._jit import atomic_add
from crossbar import chip as chip_module
from tests.crossbar.profiles_for_tests import noisy_profile


def _config(sampling: ReadNoiseSampling = ReadNoiseSampling.PER_SAMPLE, function: Activation = Activation.SIGMOID, kind: NoiseKind = NoiseKind.ADDITIVE) -> ChipConfig:
    return ChipConfig(
        tile=TileConfig(rows=48, cols=40),
        dac=DACConfig(bits=7),
        adc=ADCConfig(bits=8, full_scale_rel=6.0, output_noise_std_rel=0.05),
        activation=ActivationConfig(function=function, kind=kind, uncorrelated_std_rel=0.02, correlated_std_rel=0.03),
        read_noise_sampling=sampling,
        stages=Stages(drift_compensation=True),
    )


def _with_threads(n: int, fn):  # type: ignore[no-untyped-def]
    numba.set_num_threads(n)
    try:
        return fn()
    finally:
        numba.set_num_threads(numba.config.NUMBA_NUM_THREADS)


@pytest.mark.parametrize("sampling", list(ReadNoiseSampling), ids=lambda s: s.value)
@pytest.mark.parametrize("dtype", [np.float32, np.float64], ids=["f32", "f64"])
def test_threaded_matvec_is_bit_identical_for_any_thread_count(
    sampling: ReadNoiseSampling, dtype: type, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Large enough that every kernel takes its threaded path (threshold pinned at 2^15 elements)."""
    monkeypatch.setattr(chip_module, "_PARALLEL_MIN_ELEMENTS", 1 << 15)
    rng = np.random.default_rng(0)
    w = rng.standard_normal((100, 130))
    x = rng.standard_normal((400, 130)).astype(dtype)
    assert x.size >= chip_module._PARALLEL_MIN_ELEMENTS
    outs = [
        _with_threads(t, lambda: Chip(noisy_profile(), _config(sampling), seed=5).program(w).matvec(x, time_sec=1e3))
        for t in (1, numba.config.NUMBA_NUM_THREADS)
    ]
    np.testing.assert_array_equal(outs[0], outs[1])


def test_serial_and_threaded_kernels_are_bit_identical(monkeypatch: pytest.MonkeyPatch) -> None:
    """Small problems run the serial variants; forcing either path gives the same bits."""
    rng = np.random.default_rng(1)
    w = rng.standard_normal((60, 70))
    x = rng.standard_normal((90, 70))
    outs = []
    for threshold in (0, 1 << 40):  # always threaded, never threaded
        monkeypatch.setattr(chip_module, "_PARALLEL_MIN_ELEMENTS", threshold)
        for sampling in ReadNoiseSampling:
            m = Chip(noisy_profile(), _config(sampling), seed=2).program(w)
            outs.append(m.matvec(x, time_sec=50.0))
    for a, b in zip(outs[:2], outs[2:]):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "function, kind",
    [(Activation.SIGMOID, NoiseKind.ADDITIVE), (Activation.RELU, NoiseKind.MULTIPLICATIVE), (Activation.TANH, NoiseKind.ADDITIVE), (Activation.IDENTITY, NoiseKind.ADDITIVE)],
    ids=["sigmoid", "relu-mult", "tanh", "identity"],
)
def test_float32_work_arithmetic_agrees_with_float64(function: Activation, kind: NoiseKind) -> None:
    """With the same inputs and noise draws, the float32 pipeline (float32 GEMMs and epilogue) gives
    the float64 result to float32 precision, except where a current sits within float32 rounding of an
    ADC decision threshold: there the two differ by one ADC step of one partial."""
    rng = np.random.default_rng(2)
    w = rng.standard_normal((50, 97))
    x = rng.standard_normal((64, 97))
    m = Chip(noisy_profile(), _config(function=function, kind=kind), seed=3).program(w)
    s64 = m.read_state(100.0, 300.0, np.float64)
    s32 = m.read_state(100.0, 300.0, np.float32)
    n_part = len(s64.signal_siemens) * m.grid.n_row_tiles
    z = {"read": rng.standard_normal((n_part, 64, 50)), "corr": rng.standard_normal(64), "unc": rng.standard_normal((64, 50))}
    gen = np.random.default_rng(0)
    y64 = m._run(x, s64, np.dtype(np.float64), gen, z)
    y32 = m._run(x.astype(np.float32), s32, np.dtype(np.float32), gen, z)
    assert y32.dtype == np.float32
    scale = np.abs(y64).max()
    close = np.isclose(y32, y64, rtol=2e-5, atol=2e-6 * scale)
    assert close.mean() > 0.99
    # an ADC step in output units: full scale / levels, times the largest digital gain and input scale
    step = (m.config.adc.full_scale_rel * m.profile.g_range_siemens * m.config.tile.read_voltage_volt) / 127
    bound = 1.5 * step * np.abs(s64.gain).max() * np.abs(x).max(axis=1, keepdims=True) + 2e-6 * scale
    assert np.all(np.abs(y32 - y64) <= bound)


def test_epilogue_serial_equals_threaded_with_given_noise() -> None:
    """Kernel level: the two drivers share one chunk body, so they agree bit for bit."""
    rng = np.random.default_rng(4)
    n_part, batch, n_out = 3, 70, 33
    partial = rng.standard_normal((n_part, batch, n_out)) * 1e-5
    var = np.abs(rng.standard_normal((n_part, batch, n_out))) * 1e-12
    args = (partial, var, rng.random((n_part, n_out)) * 1e5, rng.random(batch) + 0.5, np.full(n_part, 4e-5), 63, True, 1e-13,
            rng.standard_normal(n_out) * 0.1, 2, False, 0.02, 0.03, np.uint64(99), 8,
            np.empty((0, 0, 0)), np.empty(0), np.empty((0, 0)))
    y1, y2 = np.empty((batch, n_out)), np.empty((batch, n_out))
    _kernels.epilogue(*args, y1)
    _kernels.epilogue_serial(*args, y2)
    np.testing.assert_array_equal(y1, y2)
    assert np.isfinite(y1).all() and not np.array_equal(y1[0], y1[1])


@numba.njit(parallel=True)
def _count_with_atomic_add(n_items: int, hits: np.ndarray) -> np.ndarray:
    counter = np.zeros(1, dtype=np.int64)
    for _ in numba.prange(64):
        while True:
            c = atomic_add(counter, 0, 1)
            if c >= n_items:
                break
            hits[c] += 1
    return counter


def test_atomic_counter_hands_out_every_chunk_exactly_once() -> None:
    """The dynamic scheduling of the parallel kernels: every work item is taken by exactly one thread."""
    hits = np.zeros(10_000, dtype=np.int64)
    counter = _count_with_atomic_add(10_000, hits)
    assert (hits == 1).all()
    assert counter[0] == 10_000 + min(64, 10_000)  # each slot's last, failed take counts once
