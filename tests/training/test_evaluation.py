"""Evaluation: accuracy under noise, sweeps with repeated draws, worst case, convergence speed."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from training.evaluation import (
    NoiseSweep,
    epochs_to_fraction_of_best,
    evaluate_accuracy,
    log_spaced_variances,
    noise_sweep,
    perturbed_weights,
    weight_noise_sweep,
)
from training.models import MLP
from training.noise import ActivationNoise, NoiseCorrelation
from training.trainer import TrainConfig, Trainer


@pytest.fixture
def trained(tiny_dataset):
    model = MLP((64, 32, 32, 4), generator=torch.Generator().manual_seed(0))
    Trainer(model, tiny_dataset, config=TrainConfig(epochs=15, batch_size=16, learning_rate=1e-2),
            progress=False).fit()
    return model


def test_clean_accuracy_matches_a_direct_count(trained, tiny_dataset):
    with torch.no_grad():
        direct = float((trained(tiny_dataset.images).argmax(1) == tiny_dataset.labels).float().mean())
    assert evaluate_accuracy(trained, tiny_dataset, batch_size=7) == pytest.approx(direct)
    assert direct > 0.8


@pytest.mark.parametrize("correlation", list(NoiseCorrelation), ids=[c.value for c in NoiseCorrelation])
def test_more_noise_never_raises_expected_accuracy(trained, tiny_dataset, correlation):
    g = torch.Generator().manual_seed(0)
    sweep = noise_sweep(trained, tiny_dataset, variances=(1e-4, 1.0, 100.0), correlation=correlation,
                        n_draws=20, generator=g)
    assert sweep.accuracies.shape == (3, 20)
    mean = sweep.mean
    assert mean[0] >= mean[1] - 0.02 and mean[1] >= mean[2] - 0.02
    assert mean[2] < mean[0] - 0.2  # a variance of 100 on sigmoid outputs destroys the signal
    assert sweep.worst_case() == pytest.approx(float(sweep.accuracies.min()))
    assert sweep.worst_case(1e-4, 1e-4) == pytest.approx(float(sweep.accuracies[0].min()))


def test_same_generator_seed_same_sweep(trained, tiny_dataset):
    runs = [noise_sweep(trained, tiny_dataset, variances=(0.5,), n_draws=3, generator=torch.Generator().manual_seed(4))
            for _ in range(2)]
    np.testing.assert_array_equal(runs[0].accuracies, runs[1].accuracies)


def test_noise_needs_noise_points(tiny_dataset):
    plain = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 4))
    with pytest.raises(ValueError, match="no NoisePoint"):
        evaluate_accuracy(plain, tiny_dataset, noise=ActivationNoise(variance=0.1))


def test_weight_noise_sweep_and_restore(trained, tiny_dataset):
    before = {k: v.clone() for k, v in trained.state_dict().items()}
    with perturbed_weights(trained, 0.5, generator=torch.Generator().manual_seed(0)):
        assert not torch.equal(trained.output.weight, before["output.weight"])
    assert all(torch.equal(before[k], v) for k, v in trained.state_dict().items())
    sweep = weight_noise_sweep(trained, tiny_dataset, alphas=(0.0, 10.0), n_draws=4,
                               generator=torch.Generator().manual_seed(1))
    assert sweep.accuracies[0].std() == 0 and sweep.mean[1] < sweep.mean[0]


def test_log_spaced_variances():
    v = log_spaced_variances(1e-3, 1.0, 40)
    assert len(v) == 40 and v[0] == pytest.approx(1e-3) and v[-1] == pytest.approx(1.0)
    assert np.allclose(np.diff(np.log10(v)), 3 / 39)
    with pytest.raises(ValueError, match="v_min"):
        log_spaced_variances(0.0, 1.0)


def test_sweep_statistics_and_lookup():
    sweep = NoiseSweep(levels=(0.01, 0.1, 1.0), accuracies=np.array([[0.9, 0.92], [0.8, 0.84], [0.5, 0.7]]), label="x")
    np.testing.assert_allclose(sweep.mean, [0.91, 0.82, 0.6])
    np.testing.assert_allclose(sweep.std, [np.std([0.9, 0.92], ddof=1), np.std([0.8, 0.84], ddof=1),
                                           np.std([0.5, 0.7], ddof=1)])
    assert sweep.at(0.9) == pytest.approx((0.6, np.std([0.5, 0.7], ddof=1)))
    assert sweep.worst_case(0.01, 0.1) == pytest.approx(0.8)
    with pytest.raises(ValueError, match="no swept level"):
        sweep.worst_case(2.0, 3.0)


@pytest.mark.parametrize(
    "acc, fraction, expected",
    [([0.1, 0.5, 0.85, 0.9, 0.95], 0.9, 4), ([0.9, 0.2], 0.9, 1), ([0.1, 0.2, 0.3], 1.0, 3)],
    ids=["typical", "first", "exact-best"],
)
def test_epochs_to_fraction_of_best(acc, fraction, expected):
    assert epochs_to_fraction_of_best(acc, fraction) == expected


def test_epochs_to_fraction_validation():
    with pytest.raises(ValueError, match="fraction"):
        epochs_to_fraction_of_best([0.5], 0.0)
    with pytest.raises(ValueError, match="empty"):
        epochs_to_fraction_of_best([])
