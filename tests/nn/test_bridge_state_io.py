"""Save and load of an analog model (crossbar.nn.state_io): bit-for-bit repeats, provenance checks, bad files."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from crossbar import ActivationConfig, Chip, ChipConfig, DACConfig, ReadNoiseSampling, Stages, TileConfig
from crossbar.hdf5io import HDF5FormatError, read_config
from crossbar.nn import (
    AnalogActivation,
    ReadConditions,
    analog_layers,
    convert_to_analog,
    load_analog_state,
    program_analog,
    programming_count,
    reseed_analog,
    save_analog_state,
    set_read_conditions,
)
from tests.crossbar.profiles_for_tests import noisy_profile
from tests.nn.test_bridge_layers import SMALL_TILES, cnn, mlp

NOISY_ACTIVATION = ActivationConfig(uncorrelated_std_rel=0.05, correlated_std_rel=0.02)


def chip_config(**changes: object) -> ChipConfig:
    """Every stage on (drift compensation too), small tiles, activation noise: every kind of saved state."""
    base = ChipConfig(tile=SMALL_TILES, activation=NOISY_ACTIVATION, stages=replace(Stages(), drift_compensation=True))
    return replace(base, **changes)  # type: ignore[arg-type]


def make_chip(seed: int = 3, profile: object = None, config: ChipConfig | None = None) -> Chip:
    """The synthetic profile has every effect, 1/f noise and temperature coefficients included."""
    return Chip(noisy_profile() if profile is None else profile, config or chip_config(), seed=seed)


class CountingChip(Chip):
    """A chip that counts its programmings independently of the layers' own counters."""

    calls = 0

    def program(self, weights, bias=None):  # type: ignore[override]
        self.calls += 1
        return super().program(weights, bias)


def analog_cnn(chip: Chip, init_seed: int) -> nn.Module:
    torch.manual_seed(init_seed)
    return convert_to_analog(cnn(), chip)


def test_round_trip_repeats_the_evaluation_bit_for_bit_and_continues_the_noise_streams(tmp_path: Path) -> None:
    model = analog_cnn(make_chip(), init_seed=0)
    assert sum(isinstance(m, AnalogActivation) for m in model.modules()) == 2  # ReLU and Tanh carry the noise
    x = torch.randn(4, 2, 8, 8, generator=torch.Generator().manual_seed(1))
    set_read_conditions(model, ReadConditions(time_sec=3600.0, temperature_kelvin=310.0))
    with torch.no_grad():
        model(x)  # programs every layer and moves every noise stream forward
    path = save_analog_state(model, tmp_path / "model.h5")
    with torch.no_grad():
        expected = [model(x) for _ in range(3)]  # what the saved model computes next
        later = model(x)
    assert not torch.equal(expected[0], expected[1])  # fresh read and activation noise at every call

    chip = CountingChip(noisy_profile(), chip_config(), seed=3)
    other = analog_cnn(chip, init_seed=99)  # other torch weights, nothing programmed
    load_analog_state(other, path)
    with torch.no_grad():
        got = [other(x) for _ in range(3)]
    for a, b in zip(got, expected):
        assert torch.equal(a, b)
    assert chip.calls == 0  # the loaded devices are used, nothing is drawn again
    assert programming_count(other) == programming_count(model) == 3
    for (_, a), (_, b) in zip(analog_layers(other), analog_layers(model)):
        assert a.read_conditions == b.read_conditions
        np.testing.assert_array_equal(a.programmed_matrix.conductances_siemens(), b.programmed_matrix.conductances_siemens())
    with torch.no_grad():
        assert torch.equal(other(x), later)

    # reseeding after a load is the same operation as on the original
    reseed_analog(model, 11)
    reseed_analog(other, 11)
    with torch.no_grad():
        assert torch.equal(model(x), other(x))


def test_round_trip_keeps_the_torch_state_and_a_later_weight_change_reprograms(tmp_path: Path) -> None:
    torch.manual_seed(2)
    model = convert_to_analog(nn.Sequential(nn.Linear(20, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3)), make_chip())
    x = torch.randn(16, 20)
    model(x)  # training mode: updates the batch-norm running statistics
    path = save_analog_state(model, tmp_path / "m.h5")
    chip = CountingChip(noisy_profile(), chip_config(), seed=3)
    torch.manual_seed(3)
    other = convert_to_analog(nn.Sequential(nn.Linear(20, 12), nn.BatchNorm1d(12), nn.ReLU(), nn.Linear(12, 3)), chip)
    load_analog_state(other, path)
    for key, value in model.state_dict().items():
        assert torch.equal(other.state_dict()[key], value), key
    other.eval()
    model.eval()
    with torch.no_grad():
        assert torch.equal(other(x), model(x))
    assert chip.calls == 0
    with torch.no_grad():
        other[0].weight.mul_(0.5)
    other(x)
    assert chip.calls == 1 and other[0].n_programmings == 2  # saved count 1, plus the re-programming


def test_a_model_saved_before_programming_programs_lazily_after_loading(tmp_path: Path) -> None:
    model = analog_cnn(make_chip(), init_seed=4)
    path = save_analog_state(model, tmp_path / "fresh.h5")
    with h5py.File(path, "r") as fh:
        assert not any(bool(g.attrs["programmed"]) for g in fh["analog_layers"].values())
    chip = CountingChip(noisy_profile(), chip_config(), seed=3)
    other = analog_cnn(chip, init_seed=5)
    load_analog_state(other, path)
    x = torch.randn(2, 2, 8, 8)
    with torch.no_grad():
        assert torch.equal(other(x), model(x))  # same weights, same seed: the same first programming
    assert chip.calls == 3


def test_file_holds_the_chip_config_profile_and_units(tmp_path: Path) -> None:
    config = chip_config(
        tile=TileConfig(rows=12, cols=6, read_voltage_volt=0.15),
        dac=DACConfig(bits=6),
        read_noise_sampling=ReadNoiseSampling.PER_BATCH,
    )
    model = convert_to_analog(mlp(), make_chip(config=config, seed=8))
    program_analog(model)
    path = save_analog_state(model, tmp_path / "m.h5")
    with h5py.File(path, "r") as fh:
        assert read_config(fh) == config  # every config field round-trips through crossbar.hdf5io
        assert fh.attrs["profile_toml"] == noisy_profile().toml_text and int(fh.attrs["seed"]) == 8
        layer = fh["analog_layers/0000"]
        units = {key: layer[key].attrs["units"] for key in layer}
    assert units == {"weights": "1", "g_target_siemens": "S", "siemens_per_weight": "S", "g_programmed_siemens": "S", "nu": "1", "stuck": "1"}


# ---------------------------------------------------------------------------------------- clear errors
@pytest.fixture
def saved(tmp_path: Path) -> Path:
    model = convert_to_analog(mlp(), make_chip())
    program_analog(model)
    return save_analog_state(model, tmp_path / "saved.h5")


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: convert_to_analog(mlp(), make_chip(profile="pcm")), r"written with device profile 'test-noisy', but layer '0' is on a chip with profile 'pcm'"),
        (lambda: convert_to_analog(mlp(), make_chip(config=chip_config(dac=DACConfig(bits=6)))), r"another chip configuration .*\(dac\.bits = 8 vs 6\)"),
        (lambda: convert_to_analog(mlp(), make_chip(config=chip_config(tile=TileConfig(rows=32, cols=8)))), r"tile\.rows = 16 vs 32"),
        (lambda: convert_to_analog(mlp(), make_chip(config=chip_config(stages=Stages()))), r"stages\.drift_compensation = True vs False"),
        (lambda: convert_to_analog(mlp(), make_chip(seed=4)), "written with chip seed 3, but layer '0' is on a chip with seed 4"),
        (lambda: convert_to_analog(mlp(sizes=(20, 16, 12, 4)), make_chip()), r"analog layer '0' was programmed with weights \(24, 20\), the model's are \(16, 20\)"),
        (lambda: convert_to_analog(mlp(sizes=(20, 24, 12)), make_chip()), r"the file has analog layer '4', the model has none of that name"),
        (lambda: convert_to_analog(mlp(sizes=(20, 24, 12, 4, 2)), make_chip()), r"the model's analog layer\(s\) \['6'\] are not in the file"),
    ],
    ids=["profile", "config", "tiles", "stages", "seed", "shape", "fewer-layers", "more-layers"],
)
def test_loading_into_another_chip_or_model_gives_a_clear_error_and_changes_nothing(saved: Path, build, match: str) -> None:
    model = build()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=match):
        load_analog_state(model, saved)
    for key, value in model.state_dict().items():
        assert torch.equal(value, before[key])
    assert programming_count(model) == 0 and all(layer.programmed_matrix is None for _, layer in analog_layers(model))


def test_bad_files_give_clear_errors(saved: Path, tmp_path: Path) -> None:
    model = convert_to_analog(mlp(), make_chip())
    with pytest.raises(HDF5FormatError, match="no such file"):
        load_analog_state(model, tmp_path / "missing.h5")
    truncated = tmp_path / "truncated.h5"
    truncated.write_bytes(saved.read_bytes()[:2000])
    with pytest.raises(HDF5FormatError, match="not a readable HDF5 file"):
        load_analog_state(model, truncated)
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as fh:
        fh.attrs["x"] = 1
    with pytest.raises(HDF5FormatError, match="not a crossbar file"):
        load_analog_state(model, foreign)
    with pytest.raises(ValueError, match="the model has no analog layers"):
        save_analog_state(mlp(), tmp_path / "digital.h5")
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        load_analog_state("model", saved)  # type: ignore[arg-type]


def test_saving_a_model_on_two_chips_is_refused(tmp_path: Path) -> None:
    model = mlp()
    plain = chip_config(activation=ActivationConfig())
    model[0] = convert_to_analog(model[0], make_chip(seed=1, config=plain))
    model[2] = convert_to_analog(model[2], make_chip(seed=2, config=plain))
    with pytest.raises(ValueError, match="layer '2' is on another chip .* one file holds one chip"):
        save_analog_state(model, tmp_path / "two.h5")
