"""Evaluation on the simulated chip: time, temperature and device-noise sweeps with repeated draws."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from crossbar import ActivationConfig, Chip, ChipConfig, Stages, TileConfig, load_profile
from crossbar.nn import ReadConditions, convert_to_analog, program_analog, reseed_analog, set_read_conditions
from tests.crossbar.profiles_for_tests import noisy_profile
from tests.training.helpers import make_tiny_dataset
from training.chip_eval import (
    SECONDS_PER_YEAR,
    chip_accuracy,
    chip_accuracy_vs_temperature,
    chip_accuracy_vs_time,
    chip_seed,
    chip_weight_noise_sweep,
    log_spaced_times,
    scaled_noise_profile,
)
from training.evaluation import evaluate_accuracy, noise_sweep
from training.models import MLP, ResidualMLP
from training.quantization import prepare_qat
from training.srl import SRLConfig
from training.trainer import TrainConfig, Trainer

TILES = TileConfig(rows=16, cols=8)
"""Smaller than the layers, so the tiled MVM and its digital partial sums are exercised."""


def _chip(profile=None, *, stages: Stages | None = None, seed: int = 3, **config) -> Chip:
    profile = noisy_profile() if profile is None else profile
    return Chip(profile, ChipConfig(tile=TILES, stages=Stages() if stages is None else stages, **config), seed=seed)


@pytest.fixture(scope="module")
def trained():
    data = make_tiny_dataset()
    model = MLP((64, 32, 32, 4), generator=torch.Generator().manual_seed(0))
    Trainer(model, data, config=TrainConfig(epochs=15, batch_size=16, learning_rate=1e-2), progress=False).fit()
    return model, data


def test_log_spaced_times_cover_one_second_to_one_year():
    t = log_spaced_times()
    assert len(t) == 9 and t[0] == pytest.approx(1.0) and t[-1] == pytest.approx(SECONDS_PER_YEAR)
    assert np.allclose(np.diff(np.log(t)), math.log(SECONDS_PER_YEAR) / 8)
    with pytest.raises(ValueError, match="t_min_sec"):
        log_spaced_times(0.0)


def test_ideal_chip_reproduces_the_digital_accuracy(trained):
    model, data = trained
    acc = chip_accuracy(model, data, _chip(stages=Stages.all_off()), n_chips=2, n_reads=2)
    assert acc.shape == (4,)
    np.testing.assert_array_equal(acc, evaluate_accuracy(model, data))


def test_time_sweep_matches_a_direct_use_of_the_bridge(trained):
    """Reference: convert, program and read by hand in the documented order (chip-major draws)."""
    model, data = trained
    chip = _chip()
    times = (1.0, 1e4, SECONDS_PER_YEAR)
    sweep = chip_accuracy_vs_time(model, data, chip, times_sec=times, n_chips=2, n_reads=2, batch_size=25)
    assert sweep.accuracies.shape == (3, 4) and sweep.levels == times
    for c in range(2):
        analog = convert_to_analog(model, Chip(chip.profile, chip.config, seed=chip_seed(chip, c)))
        program_analog(analog)
        for i in reversed(range(3)):  # any read order: each chip is programmed once and read at every time
            set_read_conditions(analog, ReadConditions(time_sec=times[i]))
            for r in range(2):
                reseed_analog(analog, r)
                assert sweep.accuracies[i, 2 * c + r] == evaluate_accuracy(analog, data, batch_size=25)
    again = chip_accuracy_vs_time(model, data, chip, times_sec=times, n_chips=2, n_reads=2)
    np.testing.assert_array_equal(sweep.accuracies, again.accuracies)  # same seed, same sweep


def test_chips_differ_and_reads_differ(trained):
    model, data = trained
    chip = _chip(stages=Stages.only("programming_noise", "read_noise"),
                 profile=scaled_noise_profile(noisy_profile(), 30.0))
    acc = chip_accuracy(model, data, chip, n_chips=3, n_reads=3)
    per_chip = acc.reshape(3, 3)
    assert len(set(per_chip[:, 0].tolist())) > 1  # programmings differ
    assert any(len(set(row.tolist())) > 1 for row in per_chip)  # fresh read noise differs within a chip


def test_reads_before_t0_see_the_programmed_state_and_drift_compensation_restores_accuracy(trained):
    model, data = trained
    chip = _chip(stages=Stages.only("drift"))
    t0 = chip.profile.drift.t0_sec
    plain = chip_accuracy_vs_time(model, data, chip, times_sec=(1.0, t0, 1e3 * SECONDS_PER_YEAR), n_chips=2)
    np.testing.assert_array_equal(plain.accuracies[0], plain.accuracies[1])
    comp = chip_accuracy_vs_time(model, data, chip, times_sec=(1e3 * SECONDS_PER_YEAR,), n_chips=2,
                                 drift_compensation=True)
    digital = evaluate_accuracy(model, data)
    assert abs(float(comp.mean[0]) - digital) <= abs(float(plain.mean[2]) - digital) + 1e-12


def test_temperature_changes_reads_only_when_the_profile_has_coefficients(trained):
    model, data = trained
    temps = (280.0, 300.0, 360.0)
    cold_profile = replace(noisy_profile(), temperature=replace(noisy_profile().temperature,
                                                                 conductance_activation_energy_ev=0.0,
                                                                 conductance_tcr_per_kelvin=0.0,
                                                                 drift_activation_energy_ev=0.0))
    flat = chip_accuracy_vs_temperature(model, data, _chip(cold_profile, stages=Stages.only("drift", "temperature")),
                                        temperatures_kelvin=temps, time_sec=1e6, n_chips=2)
    assert np.all(flat.accuracies == flat.accuracies[:1])
    # With coefficients, conductances and drift change with T: the logits on the chip differ.
    chip = _chip(stages=Stages.only("drift", "temperature"))
    sweep = chip_accuracy_vs_temperature(model, data, chip, temperatures_kelvin=temps, time_sec=1e6, n_chips=1)
    assert sweep.levels == temps and sweep.accuracies.shape == (3, 1)
    analog = convert_to_analog(model, Chip(chip.profile, chip.config, seed=chip_seed(chip, 0)))
    outs = []
    for k in (300.0, 360.0):
        set_read_conditions(analog, ReadConditions(time_sec=1e6, temperature_kelvin=k))
        with torch.no_grad():
            outs.append(analog(data.images))
    assert not torch.allclose(outs[0], outs[1])


def test_scaled_noise_profile_scales_every_noise_std():
    base = noisy_profile()
    p2 = scaled_noise_profile(base, 2.0)
    assert p2.programming.poly_siemens == pytest.approx(tuple(2 * c for c in base.programming.poly_siemens))
    assert p2.programming.mismatch_std_rel == pytest.approx(2 * base.programming.mismatch_std_rel)
    assert p2.read_noise.alpha_siemens == pytest.approx(4 * base.read_noise.alpha_siemens)
    assert p2.read_noise.flicker_q_rel == pytest.approx(2 * base.read_noise.flicker_q_rel)
    assert p2.drift == base.drift and p2.faults == base.faults and p2.conductance == base.conductance
    assert p2.toml_text == "" and "x2" in p2.name
    p0 = scaled_noise_profile(base, 0.0)
    assert all(c == 0 for c in p0.programming.poly_siemens) and p0.read_noise.alpha_siemens == 0
    with pytest.raises(ValueError, match="factor"):
        scaled_noise_profile(base, -1.0)


def test_more_device_noise_never_raises_expected_accuracy(trained):
    model, data = trained
    chip = _chip(stages=Stages.only("programming_noise", "mismatch", "read_noise"))
    sweep = chip_weight_noise_sweep(model, data, chip, factors=(0.0, 1.0, 30.0), n_chips=4)
    assert sweep.accuracies.shape == (3, 4)
    np.testing.assert_array_equal(sweep.accuracies[0], evaluate_accuracy(model, data))  # no noise: exact
    assert sweep.mean[0] >= sweep.mean[1] - 0.02 >= sweep.mean[2] - 0.02
    assert sweep.mean[2] < sweep.mean[0] - 0.1


def test_qat_models_run_quantized_on_the_chip(trained):
    _, data = trained
    model = MLP((64, 32, 32, 4), generator=torch.Generator().manual_seed(1))
    prepare_qat(model, 4)
    acc = chip_accuracy(model, data, _chip(stages=Stages.all_off()), n_chips=1)  # no "left digital" warning
    assert acc[0] == evaluate_accuracy(model, data)
    assert hasattr(model.output, "parametrizations")  # the caller's model is untouched


def test_srl_blocks_run_on_the_chip():
    torch.manual_seed(0)
    model = ResidualMLP(in_features=12, width=10, n_blocks=1, n_classes=3, srl=SRLConfig(beta=0.1, bits=None),
                        generator=torch.Generator().manual_seed(0)).eval()
    x = torch.rand(6, 12)
    ideal = convert_to_analog(model, _chip(stages=Stages.all_off()))
    torch.testing.assert_close(ideal(x), model(x), rtol=1e-5, atol=1e-6)
    noisy = convert_to_analog(model, _chip(scaled_noise_profile(noisy_profile(), 30.0),
                                           stages=Stages.only("programming_noise")))
    out = noisy(x)
    # Programming noise on the input layer alone would be seen too; switch the block's chip off to isolate it.
    noisy.blocks[0].linear = model.blocks[0].linear
    assert not torch.allclose(out, noisy(x))


def test_chip_activation_noise_matches_the_training_noise_model(trained):
    """The chip's analog activation noise (crossbar.nn.AnalogActivation) and training.noise's model agree."""
    model, data = trained
    chip = _chip(stages=Stages.only("activation_noise"), activation=ActivationConfig(uncorrelated_std_rel=0.5))
    on_chip = chip_accuracy(model, data, chip, n_chips=1, n_reads=40)
    digital = noise_sweep(model, data, variances=(0.25,), n_draws=40, generator=torch.Generator().manual_seed(0))
    se = math.sqrt(on_chip.var(ddof=1) / 40 + digital.accuracies.var(ddof=1) / 40)
    assert abs(on_chip.mean() - digital.mean[0]) < 4 * se + 1e-9
    assert on_chip.mean() < evaluate_accuracy(model, data)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda m, d, c: chip_accuracy(m, d, c, n_chips=0), "n_chips"),
        (lambda m, d, c: chip_accuracy(m, d, c, n_reads=1.5), "n_reads"),
        (lambda m, d, c: chip_accuracy_vs_time(m, d, c, times_sec=(-1.0,)), "times_sec"),
        (lambda m, d, c: chip_accuracy_vs_temperature(m, d, c, temperatures_kelvin=()), "temperatures_kelvin"),
        (lambda m, d, c: chip_weight_noise_sweep(m, d, c, factors=(float("nan"),)), "factors"),
        (lambda m, d, c: chip_seed(c, -1), "index"),
    ],
    ids=["n_chips", "n_reads", "times", "temperatures", "factors", "seed-index"],
)
def test_argument_validation(trained, call, message):
    model, data = trained
    with pytest.raises(ValueError, match=message):
        call(model, data, _chip(load_profile("ideal"), stages=Stages.all_off()))
