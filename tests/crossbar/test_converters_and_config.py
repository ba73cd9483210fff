"""Converter kernels against the reference, quantizer level counts, and configuration validation."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from crossbar import ADCConfig, ActivationConfig, Chip, ChipConfig, DACConfig, InputRange, Stages, TileConfig
from crossbar import _kernels
from crossbar.config import MAX_CONVERTER_BITS
from tests.crossbar import reference


@settings(max_examples=60, deadline=None)
@given(
    x=hnp.arrays(np.float64, hnp.array_shapes(min_dims=2, max_dims=2, max_side=20), elements=st.floats(-1e3, 1e3)),
    bits=st.one_of(st.none(), st.integers(2, 16)),
    mode=st.sampled_from(list(InputRange)),
    input_max=st.floats(0.01, 100.0),
)
def test_dac_kernel_matches_reference(x: np.ndarray, bits: int | None, mode: InputRange, input_max: float) -> None:
    cfg = ChipConfig(dac=DACConfig(bits=bits, range_mode=mode, input_max=input_max), stages=Stages.only("dac"))
    m = Chip("ideal", cfg).program(np.ones((1, x.shape[1])))
    v = np.empty_like(x)
    scale = np.empty(x.shape[0])
    per_sample = mode is InputRange.PER_SAMPLE_ABSMAX
    n = (1 << (bits - 1)) - 1 if bits else 0
    _kernels.dac(np.ascontiguousarray(x), per_sample, input_max, not per_sample, n, 0.2, v, np.empty((0, 0)), scale)
    for b in range(x.shape[0]):
        volts, s = reference.dac(x[b], m)
        np.testing.assert_array_equal(v[b], volts)
        assert scale[b] == s


@pytest.mark.parametrize("bits", [2, 3, 4, 8])
def test_quantizers_have_at_most_two_to_the_bits_levels_and_clip(bits: int) -> None:
    x = np.linspace(-3, 3, 20_001)
    v = np.empty((1, x.size))
    _kernels.dac(x[None, :], False, 1.0, True, (1 << (bits - 1)) - 1, 1.0, v, np.empty((0, 0)), np.empty(1))
    levels = np.unique(v)
    assert len(levels) <= 2**bits and len(levels) == 2**bits - 1
    assert v.max() == 1.0 and v.min() == -1.0  # clipped at the range
    # ADC: a single-column chip sweeping its output through and beyond full scale
    # (fixed input range: a per-sample input scale would multiply each output by its own factor)
    adc_cfg = ChipConfig(dac=DACConfig(range_mode=InputRange.FIXED), adc=ADCConfig(bits=bits, full_scale_rel=1.0), stages=Stages.only("adc"))
    m = Chip("ideal", adc_cfg).program(np.ones((1, 1)))
    y = m.matvec(x[:, None]).ravel()
    assert len(np.unique(y)) <= 2**bits
    np.testing.assert_allclose([y.min(), y.max()], [-1.0, 1.0])


@pytest.mark.parametrize(
    "factory, match",
    [
        (lambda: DACConfig(bits=1), "DACConfig.bits = 1"),
        (lambda: DACConfig(bits=MAX_CONVERTER_BITS + 1), "DACConfig.bits"),
        (lambda: ADCConfig(bits=0), "ADCConfig.bits = 0"),
        (lambda: ADCConfig(bits=2.5), "ADCConfig.bits"),  # type: ignore[arg-type]
        (lambda: ADCConfig(full_scale_rel=0.0), "full_scale_rel"),
        (lambda: ADCConfig(output_noise_std_rel=-1.0), "output_noise_std_rel"),
        (lambda: TileConfig(rows=0), "TileConfig.rows"),
        (lambda: TileConfig(read_voltage_volt=-0.1), "read_voltage_volt"),
        (lambda: TileConfig(scale_mode="sideways"), "scale_mode"),  # type: ignore[arg-type]
        (lambda: DACConfig(input_max=float("inf")), "input_max"),
        (lambda: ActivationConfig(uncorrelated_std_rel=-0.1), "uncorrelated_std_rel"),
        (lambda: Stages(dac="yes"), "Stages.dac"),  # type: ignore[arg-type]
        (lambda: Stages.only("warp_drive"), "unknown stage"),
        (lambda: ChipConfig(tile=None), "ChipConfig.tile"),  # type: ignore[arg-type]
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_absurd_configuration_is_rejected(factory, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        factory()


def test_enum_fields_accept_their_string_values() -> None:
    assert TileConfig(scale_mode="per_tile").scale_mode.value == "per_tile"  # type: ignore[arg-type]
